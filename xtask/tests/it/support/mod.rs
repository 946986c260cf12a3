//! Helpers shared by the integration tests: temporary directories, the real xtask binary,
//! and tool checks that skip locally but fail under `cargo xtask test` (XTASK_REQUIRE_TOOLS=1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory under cargo's per-target temp dir (or `XTASK_TEST_TMPDIR`, which the bump
/// test sets for the suite it runs inside its copy), removed first if a previous run left it.
pub fn temp_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XTASK_TEST_TMPDIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repository this test binary was built from, or `XTASK_TEST_REPO`: the bump test runs
/// this binary again on a copy of the repository whose pins it changed.
pub fn repo_root() -> PathBuf {
    match std::env::var_os("XTASK_TEST_REPO") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned(),
    }
}

/// A crate of the workspace, as `cargo metadata` describes it.
pub struct WorkspaceCrate {
    pub name: String,
    /// The directory of its Cargo.toml.
    pub dir: PathBuf,
    /// The workspace's crates it depends on, in any table (normal, dev, build; renamed or not).
    pub depends_on: std::collections::BTreeSet<String>,
}

/// The workspace's crates, read by cargo itself (`cargo metadata --no-deps`), so that the tests
/// about the layout follow what cargo builds rather than a reading of the manifests.
pub fn workspace_crates() -> Vec<WorkspaceCrate> {
    let out = run(Command::new(env!("CARGO")).current_dir(repo_root()).args([
        "metadata",
        "--offline",
        "--no-deps",
        "--format-version",
        "1",
    ]));
    assert_success(&out, "cargo metadata");
    let meta: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut crates: Vec<WorkspaceCrate> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| WorkspaceCrate {
            name: package["name"].as_str().unwrap().to_owned(),
            dir: Path::new(package["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_owned(),
            depends_on: package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["path"].is_string())
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .collect(),
        })
        .collect();
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    crates
}

/// The real xtask binary, run against `root` (a repository or a copy of one).
pub fn xtask(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.env("XTASK_ROOT", root).current_dir(root);
    // A scratch root has its own `target/`: a contributor's CARGO_TARGET_DIR would otherwise be
    // every scratch root's target directory (or, when the roots live under it, contain them).
    cmd.env_remove("CARGO_TARGET_DIR");
    for var in [
        "REGISTRY",
        "GITHUB_REPOSITORY_OWNER",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Fails the test (at the caller's line) unless `out` succeeded. The message names `what` (the
/// command that ran, with any context the test wants shown), the exit status, stdout and stderr.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    if !out.status.success() {
        panic!("{}", report(out, what, "failed"));
    }
}

/// Fails the test (at the caller's line) unless `out` failed with exit status 1, xtask's for a
/// failure that is not the command line's (a panic exits 101, a wrong command line 2: see
/// [`assert_usage`]), with the same message as [`assert_success`]; returns stderr, where a
/// failing xtask explains itself.
#[track_caller]
pub fn assert_failure(out: &Output, what: &str) -> String {
    if out.status.code() != Some(1) {
        panic!("{}", report(out, what, "must fail with exit status 1"));
    }
    stderr(out)
}

/// Fails the test unless another program (not xtask, whose statuses [`assert_failure`] pins)
/// exited unsuccessfully of its own accord, not killed by a signal; returns its stderr.
#[track_caller]
pub fn assert_tool_fails(out: &Output, what: &str) -> String {
    if out.status.success() || out.status.code().is_none() {
        panic!(
            "{}",
            report(out, what, "must fail (exit with a non-zero status)")
        );
    }
    stderr(out)
}

/// [`assert_failure`] for a wrong command line: exit status 2, as clap's own usage errors.
#[track_caller]
pub fn assert_usage(out: &Output, what: &str) -> String {
    if out.status.code() != Some(2) {
        panic!(
            "{}",
            report(
                out,
                what,
                "must fail as a wrong command line (exit status 2)"
            )
        );
    }
    stderr(out)
}

fn report(out: &Output, what: &str, verdict: &str) -> String {
    format!(
        "{what}: {verdict} ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Runs `cmd` with `text` on its stdin, capturing stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, text: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A PATH with git alone on it: a dry run needs no engine, registry client or qemu, and reads
/// the checkout's commit with git.
pub fn git_only_path() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("path-with-git-only");
        let git = which("git").expect("git is needed by every test");
        std::os::unix::fs::symlink(git, dir.join("git")).unwrap();
        dir
    })
    .clone()
}

/// `root` as a checkout of its own: a fresh repository with every file committed.
pub fn checkout(root: &Path) {
    git(root, &["init", "-q", "-b", "main"]);
    commit_all(root, "the repository's files");
}

/// git that reads no user or system configuration, with a fixed identity, and ignores the
/// repository the test itself may run in.
pub fn git_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
}

/// `git args` in `dir` (see [`git_env`]), which must succeed; its stdout, trimmed.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(git_env(Command::new("git").current_dir(dir).args(args)));
    assert_success(&out, &format!("git {args:?} in {}", dir.display()));
    stdout(&out).trim().to_owned()
}

/// Commits everything in `dir`'s work tree.
pub fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", message]);
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The strings at `pointer` (a JSON pointer, "" for the item itself) in each item of a JSON array
/// from an xtask `--json` output: `strings(&plan["variants"], "/name")`.
#[track_caller]
pub fn strings<'a>(array: &'a serde_json::Value, pointer: &str) -> Vec<&'a str> {
    let items = array
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {array}"));
    items
        .iter()
        .map(|item| {
            item.pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("no string at {pointer:?} in {item}"))
        })
        .collect()
}

/// The Talos release the fixture lock (`tests/fixtures/repo/variants/extensions.lock`) is for: a
/// made-up patch release, so that no test tracks the version the repository pins today.
pub const FIXTURE_TALOS: &str = "v1.13.99";

/// The fixture repository: variants and a lock of the tests' own, in the repository's layout.
pub fn fixture_dir() -> PathBuf {
    repo_root().join("xtask/tests/fixtures/repo")
}

/// `variants/netboot.json` in `root`: a role built for arm64 and amd64 (in that order) that
/// netboots (kernel and initramfs), so that its installer and matchbox image are each an index.
pub fn write_netboot_role(root: &Path) {
    std::fs::write(
        root.join("variants/netboot.json"),
        r#"{"name": "netboot", "description": "two arches, netbooted", "arch": ["arm64", "amd64"],
            "extensions": ["drbd"], "repository": "talos-cozystack-netboot/talos",
            "outputs": ["installer", "kernel", "initramfs"]}"#,
    )
    .unwrap();
}

/// A scratch repository for tests that are not about today's pins: the fixture variants, lock,
/// upstream pin and (empty) series. A Talos or upstream bump of the live files leaves it alone.
pub fn copy_repo_data(dest: &Path) {
    for dir in ["variants", "patches"] {
        copy_dir(&fixture_dir().join(dir), &dest.join(dir));
    }
}

/// A scratch repository with the repository's own variants, lock and patches, for the tests
/// that are about the live pins (the bump test, the conformance harness at the pinned release).
pub fn copy_live_repo_data(dest: &Path) {
    for dir in ["variants", "patches"] {
        copy_dir(&repo_root().join(dir), &dest.join(dir));
    }
}

/// One shared scratch copy of the fixture repository, for tests that only read it (`plan`,
/// `schematic`, `config` to stdout): made once per test run.
pub fn fixture_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = temp_dir("fixture-repo");
        copy_repo_data(&root);
        root
    })
    .clone()
}

/// The Talos version the repository's live lock pins, for the few tests about the live files.
pub fn live_talos_version() -> String {
    let path = repo_root().join("variants/extensions.lock");
    let text = std::fs::read_to_string(&path).unwrap();
    let lock: serde_json::Value = serde_json::from_str(&text).unwrap();
    lock["talos_version"].as_str().unwrap().to_owned()
}

pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// True when every tool is on PATH. Otherwise the test is skipped with a visible `SKIPPED` line
/// (written past the test harness's capture, so it shows in a passing run), unless
/// XTASK_REQUIRE_TOOLS is set (as `cargo xtask test` does), when it fails.
pub fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("XTASK_REQUIRE_TOOLS").is_some() {
        panic!("required test tools missing: {missing:?} (run `cargo xtask test`, which installs them)");
    }
    skipped(&format!(
        "tools missing: {missing:?} (run `cargo xtask test` to install them)"
    ));
    false
}

/// Reports the running test as skipped, on the real stderr: `eprintln!` would be captured and
/// shown only if the test failed, and a skipped test must not pass silently.
pub fn skipped(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or(None)
}

pub mod arm64;
pub mod imager;
pub mod pipeline;
pub mod podman;
pub mod registry;
