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
#[derive(Debug, Clone, Copy)]
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

/// Quotes words for display as one shell line (what `--dry-run` prints).
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
            {
                w.to_owned()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_only_what_needs_it() {
        assert_eq!(
            shell_line(&[
                "podman",
                "run",
                "--rm",
                "-i",
                "ghcr.io/siderolabs/imager:v1.13.6"
            ]),
            "podman run --rm -i ghcr.io/siderolabs/imager:v1.13.6"
        );
        assert_eq!(
            shell_line(&["echo", "a b", "it's", ""]),
            "echo 'a b' 'it'\\''s' ''"
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
