//! Subcommand: `cargo xtask test`: the one command that runs every test, on a fresh machine too.
//!
//! Tests run against real components (registry server, podman, skopeo, qemu, git), so this
//! first checks for them and, on Debian/Ubuntu as root, installs what is missing; then it runs
//! `cargo test` with `XTASK_REQUIRE_TOOLS=1`, which turns "tool missing, test skipped" into a
//! failure so that a green run means every test really ran.

use anyhow::{bail, Context, Result};

use infra::cmd::{Cmd, Io, Runner};
use infra::project::Project;

#[derive(clap::Args)]
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
    /// Packages that must come from bookworm-backports (qemu 10; see docs/dev/testing.md).
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
    // The tools the imager built from source runs (tests/imager.rs copies them into its image).
    tool("mksquashfs", "squashfs-tools"),
    tool("zstd", "zstd"),
    tool("pigz", "pigz"),
    tool("depmod", "kmod"),
    tool("mkfs.xfs", "xfsprogs"),
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
    // Go builds the conformance harness and the Go-pinned linters. Bookworm's own is 1.19, too old
    // to fetch a toolchain; bookworm-backports' 1.23 fetches the one go.mod asks for through the
    // module proxy (GOTOOLCHAIN, see harness::find_go).
    Tool {
        probe: "go",
        package: "golang-go",
        backports: true,
    },
];

fn probes(tools: &[&'static Tool]) -> Vec<&'static str> {
    tools.iter().map(|t| t.probe).collect()
}

pub fn missing_tools() -> Vec<&'static Tool> {
    TOOLS.iter().filter(|t| !is_present(t.probe)).collect()
}

/// A probe is a command on PATH, an absolute path, or `dpkg:<package>` (installed package).
fn is_present(probe: &str) -> bool {
    if let Some(package) = probe.strip_prefix("dpkg:") {
        return Cmd::new("dpkg-query")
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
    let runner = Runner::new(args.dry_run);
    let linters = Linters::new(project);
    if !install_tools(&args, runner, &linters)? {
        return Ok(());
    }
    // actionlint is built from the pinned Go module every time: a no-op when Go's build cache
    // has it, and a changed pin can never leave an old binary in place.
    runner.act(&linters.actionlint_build(), || {
        which::which("go").map_err(|_| {
            anyhow::anyhow!(
                "go is missing: the tests build actionlint from {} with Go >= 1.26\n    fix: install Go 1.26 (the workflow's test job uses actions/setup-go)",
                project.display(&linters.go_module)
            )
        })?;
        linters
            .actionlint_build()
            .run()
            .context("building actionlint from the pinned Go module")
    })?;

    // cosign (for the offline sign-and-verify test) links for ~20 s even from a warm Go cache:
    // rebuilt only when its pin changed.
    if !linters.cosign_current() {
        runner.act(&linters.cosign_build(), || {
            eprintln!(
                "building cosign from {} (a cold Go cache downloads and compiles for several minutes)",
                project.display(&linters.cosign_module)
            );
            linters
                .cosign_build()
                .run()
                .context("building cosign from the pinned Go module")?;
            std::fs::write(linters.cosign_stamp(), linters.cosign_pin()?)
                .context("writing the cosign stamp")
        })?;
    }

    // Talos's own code judges our artefacts (xtask/tests/conformance.rs): the harness needs the
    // Go its go.mod names; an older Go (1.21+) fetches that toolchain through the module proxy.
    // Built here once, timed, so the tests only relink it from Go's cache.
    let go = infra::harness::find_go(project)?.ok_or_else(|| {
        anyhow::anyhow!(
            "go is missing: the tests build {}/ (Talos's own code as the judge) with Go >= {}\n    fix: install Go (https://go.dev/doc/install; the workflow's test job uses actions/setup-go)",
            infra::harness::DIR,
            infra::harness::required_go(project).unwrap_or_default()
        )
    })?;
    let (harness, _) = infra::harness::build_command(project, &go, None);
    runner.act(&harness, || {
        let started = std::time::Instant::now();
        infra::harness::build(project, &go)?;
        eprintln!(
            "conformance harness ({}/, Talos's own code) ready in {:.1}s",
            infra::harness::DIR,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })?;

    // The linters installed by this command live under target/, not on PATH.
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.insert(0, linters.bin.clone().into());
    dirs.insert(0, linters.zizmor_dir.join("bin").into());
    let path = std::env::join_paths(dirs).context("building PATH")?;
    let path = path.to_str().context("PATH is not UTF-8")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Cmd::new(cargo)
        .current_dir(&project.root)
        .env("XTASK_REQUIRE_TOOLS", "1")
        .env("PATH", path);
    if let Some(toolchain) = &go.toolchain {
        test = test.env("GOTOOLCHAIN", toolchain);
    }
    let test = test
        .args(["test", "--workspace", "--locked", "--"])
        .args(&args.cargo_args)
        .stdout(Io::Inherit)
        .stderr(Io::Inherit);
    runner.run(&test).context("the test suite failed")
}

/// Installs what the suite needs and is missing (in a dry run: prints how). `false` when the
/// rest is not to run: a dry run with --no-install stops where a real run would fail.
fn install_tools(args: &Args, runner: Runner, linters: &Linters) -> Result<bool> {
    let missing = missing_tools();
    let needs_arm64 = !has_arm64_architecture();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    // The imager test downloads systemd-boot-efi:arm64 from bookworm-backports (the bookworm
    // build's stub has no .sbat section), so the suite needs that source even when qemu is
    // already installed.
    let needs_backports =
        is_bookworm(&os_release) && !read_apt_sources().contains("bookworm-backports");
    let needs_zizmor = !linters.zizmor_installed();
    // Debian's python3 comes without pip (python3-pip), e.g. in the rust:1-bookworm image.
    let needs_pip = needs_zizmor && !has_pip();
    if missing.is_empty() && !needs_arm64 && !needs_zizmor && !needs_backports {
        return Ok(true);
    }
    let zizmor = needs_zizmor.then_some(linters);
    let bookworm = is_bookworm(&os_release);
    let mut steps = install_steps(&missing, bookworm, needs_arm64, needs_pip, zizmor);
    if needs_backports
        && !steps
            .iter()
            .any(|s| s.len() > 1 && s[..2] == ["apt-get", "update"])
    {
        steps.insert(0, ["apt-get", "update", "-q"].map(String::from).to_vec());
    }
    // The backports source, written before the first `apt-get update`.
    let source = if needs_backports || steps.iter().flatten().any(|w| w == "bookworm-backports") {
        backports_source(&os_release, &read_apt_sources())?
    } else {
        None
    };
    let write_source = source.as_ref().map(|line| {
        // as the run writes it: the whole file, one line
        let line = domain::shell::quote(line.trim_end());
        format!("echo {line} > {BACKPORTS_LIST}")
    });
    let commands: Vec<Cmd> = steps.iter().map(|step| install_command(step)).collect();
    let mut what = probes(&missing);
    if needs_arm64 {
        what.push("the arm64 dpkg architecture");
    }
    if needs_zizmor {
        what.push("zizmor");
    }
    if needs_backports {
        what.push("the bookworm-backports apt source");
    }
    if args.no_install {
        // what the real run does: install nothing (and stop, naming what is missing)
        runner.note(&format!(
            "--no-install: nothing is installed; a real run stops here, missing: {}",
            what.join(", ")
        ));
    }
    if !runner.is_dry_run() && (args.no_install || !can_install()) {
        let mut lines: Vec<String> = write_source.iter().cloned().collect();
        lines.extend(commands.iter().map(Cmd::to_string));
        bail!(
            "test tools are missing: {}\n    install them with:\n      {}",
            what.join(", "),
            lines.join("\n      ")
        );
    }
    if args.no_install {
        return Ok(false);
    }
    if !runner.is_dry_run() {
        let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
        packages.extend(needs_pip.then_some("python3-pip"));
        packages.extend(needs_zizmor.then_some(ZIZMOR));
        eprintln!("installing test tools: {}", packages.join(" "));
    }
    if let (Some(shown), Some(line)) = (&write_source, &source) {
        runner.act(shown, || {
            std::fs::write(BACKPORTS_LIST, line)
                .with_context(|| format!("writing {BACKPORTS_LIST}"))
        })?;
    }
    for command in &commands {
        runner.run(command).context("installing test tools")?;
    }
    if !runner.is_dry_run() {
        let mut still = probes(&missing_tools());
        still.extend((!linters.zizmor_installed()).then_some("zizmor"));
        if !still.is_empty() {
            bail!("still missing after install: {}", still.join(", "));
        }
    }
    Ok(true)
}

/// One install step as run: apt never asks, and its progress shows.
fn install_command(step: &[String]) -> Cmd {
    let (program, rest) = step.split_first().expect("steps are non-empty");
    let mut cmd = Cmd::new(program);
    if program == "apt-get" {
        cmd = cmd.env("DEBIAN_FRONTEND", "noninteractive");
    }
    cmd.args(rest).stdout(Io::Inherit).stderr(Io::Inherit)
}

/// zizmor's PyPI name; version and hash are in [`Linters::requirements`].
const ZIZMOR: &str = "zizmor";

/// The workflow linters the tests run, pinned by version and hash in `xtask/tools/lint/`:
/// actionlint as a Go module (`go.mod` + `go.sum`), zizmor as a wheel (`requirements.txt`).
pub struct Linters {
    /// The Go module that pins actionlint.
    pub go_module: camino::Utf8PathBuf,
    /// The Go module that pins cosign (signing tests).
    pub cosign_module: camino::Utf8PathBuf,
    /// pip's requirements file that pins zizmor by hash.
    pub requirements: camino::Utf8PathBuf,
    /// Where actionlint is built to.
    pub bin: camino::Utf8PathBuf,
    /// pip's `--target` for zizmor.
    pub zizmor_dir: camino::Utf8PathBuf,
}

impl Linters {
    pub fn new(project: &Project) -> Linters {
        let go_module = project.root.join("xtask/tools/lint");
        let tools = project.target_dir().join("tools");
        Linters {
            cosign_module: project.root.join("xtask/tools/cosign"),
            requirements: go_module.join("requirements.txt"),
            go_module,
            bin: tools.join("bin"),
            zizmor_dir: tools.join("zizmor"),
        }
    }

    fn actionlint_build(&self) -> Cmd {
        go_build(
            &self.go_module,
            &self.bin.join("actionlint"),
            "github.com/rhysd/actionlint/cmd/actionlint",
        )
    }

    fn cosign_build(&self) -> Cmd {
        go_build(
            &self.cosign_module,
            &self.bin.join("cosign"),
            "github.com/sigstore/cosign/v3/cmd/cosign",
        )
    }

    fn cosign_stamp(&self) -> camino::Utf8PathBuf {
        self.bin.join(".cosign.pin")
    }

    /// The pin as built: sha256 of go.mod and go.sum.
    fn cosign_pin(&self) -> Result<String> {
        let mut bytes = std::fs::read(self.cosign_module.join("go.mod"))?;
        bytes.extend(std::fs::read(self.cosign_module.join("go.sum"))?);
        Ok(infra::fsutil::sha256_hex(&bytes))
    }

    fn cosign_current(&self) -> bool {
        self.bin.join("cosign").is_file()
            && std::fs::read_to_string(self.cosign_stamp()).ok() == self.cosign_pin().ok()
    }

    /// The version the requirements file pins, e.g. `1.32.0`.
    fn zizmor_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.requirements).ok()?;
        pinned_version(&text, ZIZMOR)
    }

    /// Installed at the pinned version (pip writes `<name>-<version>.dist-info`).
    fn zizmor_installed(&self) -> bool {
        self.zizmor_version().is_some_and(|v| {
            self.zizmor_dir
                .join(format!("{ZIZMOR}-{v}.dist-info"))
                .is_dir()
                && self.zizmor_dir.join("bin").join(ZIZMOR).is_file()
        })
    }
}

/// `go build` of `package` in `module` (its go.mod pins the version) into `out`.
fn go_build(module: &camino::Utf8Path, out: &camino::Utf8Path, package: &str) -> Cmd {
    Cmd::new("go")
        .current_dir(module)
        .args(["build", "-mod=readonly", "-o", out.as_str(), package])
        .stdout(Io::Inherit)
        .stderr(Io::Inherit)
}

/// `name==VERSION --hash=...` in a requirements file.
fn pinned_version(requirements: &str, name: &str) -> Option<String> {
    requirements.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.strip_prefix("==")?;
        Some(rest.split_whitespace().next()?.to_owned())
    })
}

fn is_bookworm(os_release: &str) -> bool {
    os_release.lines().any(|l| l == "VERSION_CODENAME=bookworm")
}

/// The install commands, in order. `zizmor` is given when zizmor is to be installed;
/// `needs_pip` adds Debian's pip for that.
fn install_steps(
    missing: &[&Tool],
    bookworm: bool,
    needs_arm64: bool,
    needs_pip: bool,
    zizmor: Option<&Linters>,
) -> Vec<Vec<String>> {
    let mut steps = Vec::new();
    if needs_arm64 {
        // The smoke-boot tests download a real arm64 kernel and busybox with `apt-get download`.
        steps.push(words(&["dpkg", "--add-architecture", "arm64"]));
    }
    if !missing.is_empty() || needs_arm64 || needs_pip {
        steps.push(words(&["apt-get", "update", "-q"]));
    }
    // Off bookworm (e.g. a newer Debian or Ubuntu) the distribution's own qemu is recent enough.
    let (mut plain, mut backports) = (Vec::new(), Vec::new());
    for t in missing {
        if bookworm && t.backports {
            backports.push(t.package);
        } else {
            plain.push(t.package);
        }
    }
    if needs_pip {
        plain.push("python3-pip");
    }
    if !plain.is_empty() {
        steps.push(words(
            &[&["apt-get", "install", "-y", "-q"], &plain[..]].concat(),
        ));
    }
    if !backports.is_empty() {
        // qemu-utils comes from backports on these machines; installing qemu from plain
        // bookworm would remove it, so all three come from the same suite.
        let apt = ["apt-get", "install", "-y", "-q", "-t", "bookworm-backports"];
        steps.push(words(&[&apt[..], &backports, &["qemu-utils"]].concat()));
    }
    if let Some(linters) = zizmor {
        // Wheels only (never run a build), every file checked against the hash in the
        // requirements file. `--target` keeps it under target/: Debian's own python3 refuses
        // installs into the system (PEP 668, "externally-managed-environment"), and nothing
        // outside the project changes.
        steps.push(words(&[
            "python3",
            "-m",
            "pip",
            "install",
            "-q",
            "--only-binary=:all:",
            "--no-deps",
            "--require-hashes",
            "--upgrade",
            "--target",
            linters.zizmor_dir.as_str(),
            "-r",
            linters.requirements.as_str(),
        ]));
    }
    steps
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn has_pip() -> bool {
    Cmd::new("python3")
        .args(["-m", "pip", "--version"])
        .run()
        .is_ok()
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

fn has_arm64_architecture() -> bool {
    Cmd::new("dpkg")
        .arg("--print-foreign-architectures")
        .read()
        .map(|out| out.lines().any(|l| l.trim() == "arm64"))
        .unwrap_or(true)
}

/// Where the bookworm-backports source goes when no source names that suite yet.
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/xtask-bookworm-backports.list";

/// Every enabled apt source file: one-line `.list` files and deb822 `.sources` files (the only
/// kind Debian's bookworm container images, rust:1-bookworm among them, ship).
fn read_apt_sources() -> String {
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
            sources.push('\n');
        }
    }
    sources.push_str(&std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    sources
}

/// The one-line source to add for bookworm-backports: `None` when the system is not bookworm or
/// a source already names the suite; an error when no Debian mirror is configured to copy.
fn backports_source(os_release: &str, sources: &str) -> Result<Option<String>> {
    if !is_bookworm(os_release) {
        return Ok(None);
    }
    if sources.contains("bookworm-backports") {
        return Ok(None);
    }
    let uri = mirror_uri(sources)
        .context("no Debian mirror found in the apt sources to add bookworm-backports from")?;
    Ok(Some(format!("deb {uri} bookworm-backports main\n")))
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
    fn backports_are_added_on_bookworm_from_either_source_format() {
        let bookworm =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n";
        // rust:1-bookworm (and debian:bookworm): only /etc/apt/sources.list.d/debian.sources.
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            backports_source(bookworm, deb822).unwrap().as_deref(),
            Some("deb http://deb.debian.org/debian bookworm-backports main\n")
        );
        let one_line = "deb http://mirror.example/debian bookworm main\n";
        assert_eq!(
            backports_source(bookworm, one_line).unwrap().as_deref(),
            Some("deb http://mirror.example/debian bookworm-backports main\n")
        );
        let with_backports =
            format!("{deb822}\ndeb http://deb.debian.org/debian bookworm-backports main\n");
        assert_eq!(backports_source(bookworm, &with_backports).unwrap(), None);
        let trixie = "VERSION_CODENAME=trixie\n";
        assert_eq!(backports_source(trixie, deb822).unwrap(), None);
        let err =
            backports_source(bookworm, "deb http://x.example/ubuntu jammy main\n").unwrap_err();
        assert!(err.to_string().contains("no Debian mirror"), "{err}");
    }

    #[test]
    fn qemu_comes_from_backports_with_qemu_utils() {
        let missing: Vec<&Tool> = TOOLS
            .iter()
            .filter(|t| t.probe.starts_with("qemu") || t.probe == "skopeo")
            .collect();
        let steps = install_steps(&missing, true, false, false, None);
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

        let elsewhere = install_steps(&missing, false, false, false, None);
        assert!(
            elsewhere.iter().all(|s| !s.contains(&"-t".to_string())),
            "no backports suite off bookworm: {elsewhere:?}"
        );
        let plain = elsewhere.last().unwrap();
        assert!(plain.contains(&"qemu-system-arm".to_string()), "{plain:?}");
    }

    #[test]
    fn zizmor_installs_under_target_by_hash_with_pip_from_apt_when_python_has_none() {
        let linters = Linters {
            go_module: "/p/xtask/tools/lint".into(),
            cosign_module: "/p/xtask/tools/cosign".into(),
            requirements: "/p/xtask/tools/lint/requirements.txt".into(),
            bin: "/p/target/tools/bin".into(),
            zizmor_dir: "/p/target/tools/zizmor".into(),
        };
        let steps = install_steps(&[], true, false, true, Some(&linters));
        assert_eq!(steps[0], ["apt-get", "update", "-q"]);
        assert_eq!(steps[1], ["apt-get", "install", "-y", "-q", "python3-pip"]);
        let pip = &steps[2];
        assert_eq!(pip[..4], ["python3", "-m", "pip", "install"]);
        // Into the project's own directory: Debian's python3 refuses system installs.
        let target = pip.iter().position(|a| a == "--target").unwrap();
        assert_eq!(pip[target + 1], "/p/target/tools/zizmor");
        for flag in ["--only-binary=:all:", "--require-hashes", "--no-deps"] {
            assert!(pip.contains(&flag.to_string()), "{flag}: {pip:?}");
        }
        assert_eq!(
            pip[pip.len() - 2..],
            ["-r", "/p/xtask/tools/lint/requirements.txt"]
        );
        assert_eq!(steps.len(), 3);

        let with_pip = install_steps(&[], true, false, false, Some(&linters));
        assert_eq!(
            with_pip.len(),
            1,
            "no apt step when pip is there: {with_pip:?}"
        );
    }

    #[test]
    fn the_linters_are_pinned_by_version_and_hash() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/lint");
        let requirements = std::fs::read_to_string(root.join("requirements.txt")).unwrap();
        let line = requirements
            .lines()
            .find(|l| l.starts_with("zizmor=="))
            .expect("zizmor is pinned");
        let hash = line.split("--hash=sha256:").nth(1).expect("by hash");
        assert_eq!(hash.trim().len(), 64, "{line}");
        assert_eq!(
            pinned_version(&requirements, ZIZMOR).as_deref(),
            Some("1.32.0")
        );
        let go_mod = std::fs::read_to_string(root.join("go.mod")).unwrap();
        assert!(
            go_mod.contains("\ttool github.com/rhysd/actionlint/cmd/actionlint")
                || go_mod.contains("\ntool github.com/rhysd/actionlint/cmd/actionlint\n"),
            "{go_mod}"
        );
        assert!(
            go_mod.contains("github.com/rhysd/actionlint v1.7.12"),
            "{go_mod}"
        );
        let go_sum = std::fs::read_to_string(root.join("go.sum")).unwrap();
        assert!(
            go_sum.contains("github.com/rhysd/actionlint v1.7.12 h1:"),
            "{go_sum}"
        );
    }
}
