//! The container engine (podman or docker) and the preflight that checks the tools a stage needs.

use std::fmt;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// The flag, else podman when installed (daemonless), else docker.
    pub fn detect(choice: Option<Engine>) -> Engine {
        choice.unwrap_or_else(|| {
            if which::which("podman").is_ok() || which::which("docker").is_err() {
                Engine::Podman
            } else {
                Engine::Docker
            }
        })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// A tool a stage needs and the Debian package that brings it.
pub struct Need {
    pub program: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

/// What `build --emulate` needs besides [`build_needs`]: qemu registered with binfmt_misc, so
/// the engine can run the arm64 imager image on another host.
pub const EMULATION: Need = Need {
    program: "qemu-aarch64-static",
    package: "qemu-user-static",
    why: "runs the arm64 imager under emulation (--emulate)",
};

/// Where the kernel lists registered binfmt_misc interpreters.
const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// `--emulate` runs foreign-architecture containers through binfmt_misc: qemu must be
/// registered for `arch` (a no-op for the host's own architecture).
pub fn check_emulation(arch: domain::Arch) -> anyhow::Result<()> {
    let registered = |handler: &str| std::path::Path::new(BINFMT).join(handler).exists();
    match emulation_problem(arch, std::env::consts::ARCH, registered) {
        Some(problem) => bail!(problem),
        None => Ok(()),
    }
}

/// Why `arch` images cannot run on a `host` machine, given which binfmt handlers exist.
fn emulation_problem(
    arch: domain::Arch,
    host: &str,
    registered: impl Fn(&str) -> bool,
) -> Option<String> {
    let handler = format!("qemu-{}", qemu_arch(arch));
    if qemu_arch(arch) == host || registered(&handler) {
        return None;
    }
    Some(format!(
        "--emulate: no binfmt_misc handler `{handler}` is registered, so the engine cannot run {arch} images here\n    \
         fix: register qemu (package qemu-user-static), as root: \
         mount -t binfmt_misc binfmt_misc {BINFMT} 2>/dev/null; \
         cat /usr/lib/binfmt.d/{handler}.conf > {BINFMT}/register; \
         or build without --emulate: the native imager builds {arch} outputs"
    ))
}

/// qemu's (and Rust's) name for a Talos architecture.
fn qemu_arch(arch: domain::Arch) -> &'static str {
    match arch {
        domain::Arch::Arm64 => "aarch64",
        domain::Arch::Amd64 => "x86_64",
    }
}

/// What `build` runs: the engine, tar, skopeo (lock and publishing) and git (upstream and patch).
pub fn build_needs(engine: Engine) -> Vec<Need> {
    vec![
        Need {
            program: engine.program(),
            package: match engine {
                Engine::Podman => "podman",
                // Debian's package of the docker engine
                Engine::Docker => "docker.io",
            },
            why: "runs the Talos imager",
        },
        Need {
            program: "tar",
            package: "tar",
            why: "unpacks the imager's output",
        },
        Need {
            program: "skopeo",
            package: "skopeo",
            why: "resolves the lock and publishes images",
        },
        Need {
            program: "git",
            package: "git",
            why: "fetches and patches upstream CozyStack",
        },
    ]
}

/// Fails listing every missing tool at once, with one install line.
pub fn preflight(needs: &[Need]) -> Result<()> {
    let missing: Vec<&Need> = needs
        .iter()
        .filter(|n| which::which(n.program).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut message = String::from("missing tools:");
    for need in &missing {
        message.push_str(&format!("\n  {} ({})", need.program, need.why));
    }
    let mut packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    packages.dedup();
    message.push_str(&format!(
        "\n    install them with: sudo apt-get install {}",
        packages.join(" ")
    ));
    bail!(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_needs_a_registered_handler_for_foreign_architectures_only() {
        use domain::Arch;
        assert_eq!(emulation_problem(Arch::Amd64, "x86_64", |_| false), None);
        assert_eq!(
            emulation_problem(Arch::Arm64, "x86_64", |h| h == "qemu-aarch64"),
            None
        );
        let problem = emulation_problem(Arch::Arm64, "x86_64", |_| false).unwrap();
        assert!(
            problem.contains("no binfmt_misc handler `qemu-aarch64`"),
            "{problem}"
        );
        assert!(
            problem.contains(
                "cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register"
            ),
            "{problem}"
        );
    }

    #[test]
    fn preflight_lists_every_missing_tool() {
        let err = preflight(&[
            Need {
                program: "xtask-no-such-tool-1",
                package: "pkg-one",
                why: "first",
            },
            Need {
                program: "sh",
                package: "dash",
                why: "present",
            },
            Need {
                program: "xtask-no-such-tool-2",
                package: "pkg-two",
                why: "second",
            },
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("xtask-no-such-tool-1 (first)")
                && err.contains("xtask-no-such-tool-2 (second)"),
            "{err}"
        );
        assert!(!err.contains("sh (present)"));
        assert!(
            err.ends_with("install them with: sudo apt-get install pkg-one pkg-two"),
            "{err}"
        );
    }
}
