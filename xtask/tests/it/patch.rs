//! `cargo xtask upstream` and `cargo xtask patch` through the real binary and real git, against
//! small upstream repositories the tests create (their own content, no network). One opt-in
//! test applies the real series to a CozyStack clone named by `COZYSTACK_SRC`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use serde_json::Value;

/// git with a fixed identity and no user configuration.
fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.org")
        .env("GIT_AUTHOR_DATE", "2030-01-01T00:00:00+0000")
        .env("GIT_COMMITTER_DATE", "2030-01-01T00:00:00+0000");
    cmd
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_success(&out, &format!("{cmd:?}"));
    stdout(&out).trim().to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn set_exec(path: &Path, exec: bool) {
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_exec(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o111 != 0
}

/// Where the made-up upstreams keep their Talos packaging, as CozyStack does since v0.40.0.
const PKG: &str = "packages/core/talos";

const NOTES: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven\ntwelve\nthirteen\nfourteen\nfifteen\nsixteen\nseventeen\neighteen\n";

/// An upstream repository with a Talos packaging directory under `package`, tagged `tag`
/// (annotated, as upstream's release tags are). Returns the tagged commit.
fn make_upstream(dir: &Path, package: &str, tag: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    ok(git(dir).args(["init", "-q", "-b", "main"]));
    let pkg = dir.join(package);
    write(&dir.join("README"), "an upstream made up for a test\n");
    write(
        &pkg.join("Makefile"),
        "BUNDLE = out/bundle-amd64.tar\n\nall:\n\t@echo building $(BUNDLE)\n\nclean:\n\trm -f $(BUNDLE)\n",
    );
    write(
        &pkg.join("images/talos/profiles/installer.yaml"),
        "arch: amd64\nplatform: metal\nversion: v1.13.99\n",
    );
    write(
        &pkg.join("images/talos/profiles/iso.yaml"),
        "arch: amd64\nversion: v1.13.99\n",
    );
    write(&pkg.join("hack/tool.sh"), "#!/bin/sh\necho tool\n");
    write(&pkg.join("hack/run.sh"), "#!/bin/sh\necho run\n");
    set_exec(&pkg.join("hack/run.sh"), true);
    write(&pkg.join("notes.txt"), NOTES);
    ok(git(dir).args(["add", "-A"]));
    ok(git(dir).args(["commit", "-q", "-m", "upstream"]));
    ok(git(dir).args(["tag", "-a", "-m", "release", tag]));
    ok(git(dir).args(["rev-parse", "HEAD"]))
}

/// A patch made the way `git format-patch` makes them: edit a clone of `upstream` at `tag`,
/// commit with `subject`, and take the commit as a patch.
fn make_patch(upstream: &Path, tag: &str, subject: &str, edit: impl FnOnce(&Path)) -> String {
    let work = upstream.with_extension(format!("work-{}", subject.len()));
    let _ = std::fs::remove_dir_all(&work);
    ok(git(upstream.parent().unwrap()).args([
        "clone",
        "-q",
        upstream.to_str().unwrap(),
        work.to_str().unwrap(),
    ]));
    ok(git(&work).args(["checkout", "-q", "--detach", tag]));
    edit(&work);
    ok(git(&work).args(["add", "-A"]));
    ok(git(&work).args(["commit", "-q", "-m", subject]));
    let patch = ok(git(&work).args(["format-patch", "--stdout", "-1", "HEAD"]));
    std::fs::remove_dir_all(&work).unwrap();
    format!("{patch}\n")
}

/// A project root whose pin names `tag`/`commit` of a made-up upstream and whose series is
/// `patches` (name, text), in order.
fn make_project(root: &Path, tag: &str, commit: &str, patches: &[(&str, &str)]) {
    copy_dir(&fixture_dir().join("variants"), &root.join("variants"));
    let dir = root.join("patches");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir.join("upstream.json"),
        &format!(
            r#"{{"repository": "file:///nonexistent/cozystack.git", "tag": "{tag}", "commit": "{commit}"}}"#
        ),
    );
    let mut series = String::from("# test series\n");
    for (name, text) in patches {
        write(&dir.join(name), text);
        series.push_str(name);
        series.push('\n');
    }
    write(&dir.join("series"), &series);
}

fn xt(root: &Path) -> Command {
    let mut cmd = xtask(root);
    cmd.env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("COZYSTACK_SOURCE");
    cmd
}

#[track_caller]
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_failure(&out, &format!("{cmd:?}"))
}

fn makefile_patch(upstream: &Path, tag: &str) -> String {
    make_patch(upstream, tag, "build: take ARCH", |w| {
        let path = w.join("packages/core/talos/Makefile");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "BUNDLE = out/bundle-amd64.tar",
            "ARCH ?= amd64\nBUNDLE = out/bundle-$(ARCH).tar",
        );
        std::fs::write(path, text).unwrap();
    })
}

fn notes_patch(upstream: &Path, tag: &str) -> String {
    make_patch(upstream, tag, "notes: two hunks", |w| {
        let path = w.join("packages/core/talos/notes.txt");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("two\n", "TWO\n")
            .replace("fifteen\n", "FIFTEEN\n");
        std::fs::write(path, text).unwrap();
    })
}

#[test]
fn clean_series_applies_reports_changes_and_the_cache_stays_pristine_and_offline() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-clean");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v9.9.9");
    let p1 = makefile_patch(&upstream, "v9.9.9");
    let p2 = notes_patch(&upstream, "v9.9.9");
    let root = base.join("project");
    make_project(
        &root,
        "v9.9.9",
        &commit,
        &[("0001-arch.patch", &p1), ("0002-notes.patch", &p2)],
    );

    let fetched = ok(xt(&root).args(["upstream", "--source", upstream.to_str().unwrap()]));
    assert!(fetched.contains("fetched CozyStack v9.9.9"), "{fetched}");
    let cache = root.join("target/upstream").join(&commit);
    assert!(cache.join("packages/core/talos/Makefile").is_file());

    let json = ok(xt(&root).args(["patch", "--json"]));
    let summary: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(summary["upstream"]["commit"], commit.as_str());
    assert_eq!(summary["upstream"]["talos_version"], "v1.13.99");
    let patches = summary["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0]["file"], "0001-arch.patch");
    assert_eq!(patches[0]["subject"], "build: take ARCH");
    assert_eq!(
        patches[0]["changes"][0]["path"],
        "packages/core/talos/Makefile"
    );
    assert_eq!(patches[0]["changes"][0]["status"], "modified");
    assert_eq!(
        patches[1]["changes"][0]["path"],
        "packages/core/talos/notes.txt"
    );
    assert_eq!(summary["series_digest"].as_str().unwrap().len(), 64);

    let tree = root.join("target/patched");
    let makefile = std::fs::read_to_string(tree.join("packages/core/talos/Makefile")).unwrap();
    assert!(makefile.starts_with("ARCH ?= amd64\nBUNDLE = out/bundle-$(ARCH).tar\n"));
    assert!(
        std::fs::read_to_string(tree.join("packages/core/talos/notes.txt"))
            .unwrap()
            .contains("FIFTEEN")
    );
    assert!(
        is_exec(&tree.join("packages/core/talos/hack/run.sh")),
        "exec bits survive the copy"
    );
    let log = ok(git(&tree).args(["log", "--format=%s", &format!("{commit}..HEAD")]));
    assert_eq!(log, "notes: two hunks\nbuild: take ARCH");

    // The cache is never patched.
    assert_eq!(
        ok(git(&cache).args(["status", "--porcelain", "--ignored"])),
        ""
    );
    assert!(
        std::fs::read_to_string(cache.join("packages/core/talos/Makefile"))
            .unwrap()
            .starts_with("BUNDLE = out/bundle-amd64.tar")
    );

    // Offline: the source is gone and the pinned URL does not exist; the cache is reused.
    std::fs::rename(&upstream, base.join("gone")).unwrap();
    let again = ok(xt(&root).arg("upstream"));
    assert!(again.contains("is cached, verified"), "{again}");
    let check = ok(xt(&root).args(["patch", "--check"]));
    assert!(check.contains("ok: 2 patches apply cleanly"), "{check}");
    assert!(
        !root.join("target/patch-check").exists(),
        "--check leaves no tree behind"
    );

    // A directory this command did not make is never replaced.
    write(&root.join("mine/keep.txt"), "not a patched tree\n");
    let err = fails(xt(&root).args(["patch", "--out", "mine"]));
    assert!(
        err.contains("mine exists and is not a tree `cargo xtask patch` made"),
        "{err}"
    );
    assert!(root.join("mine/keep.txt").is_file());

    // A cache that is no longer the pinned commit, exactly, is never used: an edited file, an
    // added one, or another commit checked out there.
    let makefile = cache.join("packages/core/talos/Makefile");
    let pristine = std::fs::read(&makefile).unwrap();
    std::fs::write(&makefile, b"edited\n").unwrap();
    for command in [&["upstream"][..], &["patch", "--check"]] {
        let err = fails(xt(&root).args(command));
        assert!(
            err.contains("was modified; it must stay pristine")
                && err.contains("packages/core/talos/Makefile"),
            "{command:?}: {err}"
        );
    }
    std::fs::write(&makefile, &pristine).unwrap();
    write(&cache.join("stray.txt"), "added\n");
    assert!(fails(xt(&root).arg("upstream")).contains("stray.txt"));
    std::fs::remove_file(cache.join("stray.txt")).unwrap();
    ok(git(&cache).args([
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "moved",
    ]));
    let err = fails(xt(&root).arg("upstream"));
    assert!(err.contains(&format!("not the pinned {commit}")), "{err}");
}

#[test]
fn conflicting_patch_names_the_patch_file_and_hunk_and_keeps_the_tree() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-conflict");
    let upstream = base.join("upstream");
    make_upstream(&upstream, PKG, "v1.0.0");
    let p1 = makefile_patch(&upstream, "v1.0.0");
    let p2 = notes_patch(&upstream, "v1.0.0");
    // Upstream moves on: the context of the notes patch's second hunk changes.
    let notes = upstream.join("packages/core/talos/notes.txt");
    std::fs::write(&notes, NOTES.replace("sixteen\n", "SIXTEEN\n")).unwrap();
    ok(git(&upstream).args(["commit", "-q", "-am", "upstream moves"]));
    ok(git(&upstream).args(["tag", "-a", "-m", "release", "v1.1.0"]));
    let commit = ok(git(&upstream).args(["rev-parse", "HEAD"]));
    let root = base.join("project");
    make_project(
        &root,
        "v1.1.0",
        &commit,
        &[("0001-arch.patch", &p1), ("0002-notes.patch", &p2)],
    );

    let err = fails(xt(&root).args(["patch", "--source", upstream.to_str().unwrap()]));
    assert!(
        err.contains(
            "patch 0002-notes.patch (notes: two hunks) does not apply to CozyStack v1.1.0"
        ),
        "{err}"
    );
    assert!(
        err.contains("\n  file: packages/core/talos/notes.txt\n"),
        "{err}"
    );
    assert!(
        err.contains("hunk: #2 of that file, `@@ -12,7 +12,7 @@ eleven`"),
        "{err}"
    );
    assert!(
        err.contains("git: error: patch failed: packages/core/talos/notes.txt:12"),
        "{err}"
    );
    assert!(
        err.contains("cargo xtask patch --refresh --out target/patched"),
        "{err}"
    );

    // The tree is kept as git left it: the first patch committed, the second in progress.
    let tree = root.join("target/patched");
    let log = ok(git(&tree).args(["log", "-1", "--format=%s"]));
    assert_eq!(log, "build: take ARCH");
    assert!(tree.join(".git/rebase-apply").is_dir());
    // and no build takes it for a patched tree: its matchbox image would lack the second patch
    write(
        &tree.join("packages/core/talos/images/matchbox/Dockerfile"),
        "FROM scratch\n",
    );
    let out = run(xt(&root)
        .args(["build", "--dry-run", "--variant", "compute", "--tree"])
        .arg(&tree));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("target/patched: the last `cargo xtask patch` into it failed"),
        "{}",
        stderr(&out)
    );

    // --check says the same and keeps its copy for inspection too.
    let err = fails(xt(&root).args(["patch", "--check"]));
    assert!(err.contains("hunk: #2"), "{err}");
    assert!(root.join("target/patch-check/.git/rebase-apply").is_dir());
}

#[test]
fn mode_changes_and_new_executables_are_preserved() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-modes");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v2.0.0");
    let patch = make_patch(
        &upstream,
        "v2.0.0",
        "hack: make the scripts executable",
        |w| {
            set_exec(&w.join("packages/core/talos/hack/tool.sh"), true);
            write(
                &w.join("packages/core/talos/hack/new.sh"),
                "#!/bin/sh\necho new\n",
            );
            set_exec(&w.join("packages/core/talos/hack/new.sh"), true);
            set_exec(&w.join("packages/core/talos/hack/run.sh"), false);
        },
    );
    assert!(patch.contains("new mode 100755") && patch.contains("new file mode 100755"));
    let root = base.join("project");
    make_project(&root, "v2.0.0", &commit, &[("0001-modes.patch", &patch)]);

    let json = ok(xt(&root).args(["patch", "--json", "--source", upstream.to_str().unwrap()]));
    let tree = root.join("target/patched");
    assert!(is_exec(&tree.join("packages/core/talos/hack/tool.sh")));
    assert!(is_exec(&tree.join("packages/core/talos/hack/new.sh")));
    assert!(!is_exec(&tree.join("packages/core/talos/hack/run.sh")));
    let staged = ok(git(&tree).args(["ls-files", "-s", "packages/core/talos/hack"]));
    let modes: Vec<(&str, &str)> = staged
        .lines()
        .map(|l| (l.split(' ').next().unwrap(), l.rsplit('\t').next().unwrap()))
        .collect();
    assert_eq!(
        modes,
        [
            ("100755", "packages/core/talos/hack/new.sh"),
            ("100644", "packages/core/talos/hack/run.sh"),
            ("100755", "packages/core/talos/hack/tool.sh")
        ]
    );
    let check = ok(xt(&root).args(["patch", "--check"]));
    assert!(check.contains("ok: 1 patch applies cleanly"), "{check}");
    let summary: Value = serde_json::from_str(&json).unwrap();
    let changes = summary["patches"][0]["changes"].as_array().unwrap();
    let tool = changes
        .iter()
        .find(|c| c["path"] == "packages/core/talos/hack/tool.sh")
        .unwrap();
    assert_eq!(tool["old_mode"], "100644");
    assert_eq!(tool["new_mode"], "100755");
    let new = changes
        .iter()
        .find(|c| c["path"] == "packages/core/talos/hack/new.sh")
        .unwrap();
    assert_eq!(new["status"], "added");
    assert_eq!(new["new_mode"], "100755");
}

#[test]
fn refresh_round_trip_gives_the_same_tree_and_stable_patches() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-refresh");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v3.0.0");
    let p1 = makefile_patch(&upstream, "v3.0.0");
    let p2 = notes_patch(&upstream, "v3.0.0");
    let root = base.join("project");
    make_project(
        &root,
        "v3.0.0",
        &commit,
        &[
            ("0001-build-take-ARCH.patch", &p1),
            ("0002-notes-two-hunks.patch", &p2),
        ],
    );
    ok(xt(&root).args(["patch", "--source", upstream.to_str().unwrap()]));
    let tree = root.join("target/patched");

    // Edit: fix up the first patch and add a third one that changes a mode.
    let makefile = tree.join("packages/core/talos/Makefile");
    let text = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, text.replace("ARCH ?= amd64", "ARCH ?= arm64")).unwrap();
    ok(git(&tree).args(["commit", "-q", "-a", "--fixup", "HEAD~1"]));
    ok(git(&tree)
        .args(["rebase", "-q", "-i", "--autosquash", &commit])
        .env("GIT_SEQUENCE_EDITOR", "true"));
    set_exec(&tree.join("packages/core/talos/hack/tool.sh"), true);
    write(
        &tree.join("packages/core/talos/extra.txt"),
        "added by a third patch\n",
    );
    ok(git(&tree).args(["add", "-A"]));
    ok(git(&tree).args(["commit", "-q", "-m", "hack: tool.sh is a script"]));
    let edited = ok(git(&tree).args(["rev-parse", "HEAD^{tree}"]));

    let report = ok(xt(&root).args(["patch", "--refresh"]));
    assert!(
        report.contains("updated   patches/0001-build-take-ARCH.patch"),
        "{report}"
    );
    assert!(
        report.contains("updated   patches/0002-notes-two-hunks.patch"),
        "{report}"
    );
    assert!(
        report.contains("added     patches/0003-hack-tool.sh-is-a-script.patch"),
        "{report}"
    );
    let series = std::fs::read_to_string(root.join("patches/series")).unwrap();
    assert_eq!(
        series,
        "# test series\n0001-build-take-ARCH.patch\n0002-notes-two-hunks.patch\n0003-hack-tool.sh-is-a-script.patch\n"
    );
    let third =
        std::fs::read_to_string(root.join("patches/0003-hack-tool.sh-is-a-script.patch")).unwrap();
    assert!(
        third.contains("old mode 100644\nnew mode 100755\n"),
        "{third}"
    );
    for name in series.lines().skip(1) {
        let text = std::fs::read_to_string(root.join("patches").join(name)).unwrap();
        assert!(!text.contains("\nDate: "), "{name} carries a date:\n{text}");
        assert!(
            !text.contains("\nindex "),
            "{name} carries blob ids:\n{text}"
        );
        assert!(text.starts_with("From 0000000000000000000000000000000000000000 "));
    }

    // Apply the refreshed series from scratch: the same tree as the edited one.
    ok(xt(&root).arg("patch"));
    assert_eq!(ok(git(&tree).args(["rev-parse", "HEAD^{tree}"])), edited);
    assert!(is_exec(&tree.join("packages/core/talos/hack/tool.sh")));

    // Refreshing again changes nothing, byte for byte.
    let before: Vec<Vec<u8>> = series
        .lines()
        .skip(1)
        .map(|n| std::fs::read(root.join("patches").join(n)).unwrap())
        .collect();
    let again = ok(xt(&root).args(["patch", "--refresh"]));
    assert!(
        again.contains("the series matches the tree's commits"),
        "{again}"
    );
    let after: Vec<Vec<u8>> = series
        .lines()
        .skip(1)
        .map(|n| std::fs::read(root.join("patches").join(n)).unwrap())
        .collect();
    assert_eq!(before, after);
    ok(xt(&root).args(["patch", "--refresh", "--check"]));

    // The user's git configuration changes neither what is applied nor what is written.
    let hooks = base.join("hooks");
    write(&hooks.join("applypatch-msg"), "#!/bin/sh\nexit 1\n");
    set_exec(&hooks.join("applypatch-msg"), true);
    let config = base.join("hostile.gitconfig");
    write(
        &config,
        &format!(
            "[diff]\n\tnoprefix = true\n[format]\n\tsignature = hostile\n\tnumbered = true\n[commit]\n\tgpgSign = true\n[core]\n\thooksPath = {}\n",
            hooks.display()
        ),
    );
    ok(xt(&root).arg("patch").env("GIT_CONFIG_GLOBAL", &config));
    assert_eq!(ok(git(&tree).args(["rev-parse", "HEAD^{tree}"])), edited);
    ok(xt(&root)
        .args(["patch", "--refresh", "--check"])
        .env("GIT_CONFIG_GLOBAL", &config));

    // A commit the series does not have: --check fails naming it, and patches/ stays as it is.
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let patches_before = snapshot(&root.join("patches"));
    write(
        &tree.join("packages/core/talos/later.txt"),
        "a fourth change\n",
    );
    ok(git(&tree).args(["add", "-A"]));
    ok(git(&tree).args(["commit", "-q", "-m", "notes: a fourth change"]));
    let err = fails(xt(&root).args(["patch", "--refresh", "--check"]));
    assert!(err.contains("0004-notes-a-fourth-change.patch"), "{err}");
    assert_eq!(
        snapshot(&root.join("patches")),
        patches_before,
        "--check wrote patches/"
    );
    ok(git(&tree).args(["reset", "-q", "--hard", "HEAD~1"]));

    // An uncommitted edit is not silently dropped.
    write(
        &tree.join("packages/core/talos/notes.txt"),
        "edited, not committed\n",
    );
    let err = fails(xt(&root).args(["patch", "--refresh"]));
    assert!(
        err.contains("has changes that are not committed")
            && err.contains("packages/core/talos/notes.txt"),
        "{err}"
    );
}

#[test]
fn a_tree_with_work_the_series_does_not_have_is_not_replaced() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-unsaved");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v4.0.0");
    let p1 = makefile_patch(&upstream, "v4.0.0");
    let root = base.join("project");
    make_project(
        &root,
        "v4.0.0",
        &commit,
        &[("0001-build-take-ARCH.patch", &p1)],
    );
    ok(xt(&root).args(["patch", "--source", upstream.to_str().unwrap()]));
    let tree = root.join("target/patched");
    let notes = tree.join("packages/core/talos/notes.txt");
    // a tree still at the head the command recorded is replaced as before
    ok(xt(&root).arg("patch"));

    // The refresh workflow edits the tree in place: a second `patch` before the refresh
    // would delete the edit, and then the commit.
    write(&notes, "my edit\n");
    let err = fails(xt(&root).arg("patch"));
    assert!(
        err.contains(&format!("not replacing {}", tree.display())),
        "{err}"
    );
    assert!(
        err.contains("has changes that are not committed") && err.contains("notes.txt"),
        "{err}"
    );
    assert!(
        err.contains(&format!("`rm -rf {}`", tree.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my edit\n");
    ok(git(&tree).args(["commit", "-q", "-a", "-m", "notes: mine"]));
    for args in [
        &["patch"][..],
        &["patch", "--check", "--out", tree.to_str().unwrap()],
    ] {
        let err = fails(xt(&root).args(args));
        assert!(
            err.contains("added patches/0002-notes-mine.patch"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("fix: cargo xtask patch --refresh --out"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        ok(git(&tree).args(["log", "-1", "--format=%s"])),
        "notes: mine"
    );

    // once the series has the work, the tree is the series' again
    ok(xt(&root).args(["patch", "--refresh"]));
    ok(xt(&root).arg("patch"));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my edit\n");
}

#[test]
fn pinned_commit_mismatch_is_a_clear_error() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-mismatch");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v4.0.0");
    let root = base.join("project");
    let pinned = "1111111111111111111111111111111111111111";
    make_project(&root, "v4.0.0", pinned, &[]);
    let err = fails(xt(&root).args(["upstream", "--source", upstream.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "tag v4.0.0 in {} is commit {commit}, but patches/upstream.json pins v4.0.0 to commit {pinned}",
            upstream.display()
        )),
        "{err}"
    );
    assert!(err.contains("fix: "), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("target/upstream"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "nothing is cached: {leftovers:?}");

    // A tag that is not there at all.
    make_project(&root, "v4.0.1", &commit, &[]);
    let err = fails(xt(&root).args(["upstream", "--source", upstream.to_str().unwrap()]));
    assert!(err.contains("fetching tag v4.0.1 from"), "{err}");
}

#[test]
fn missing_patch_file_in_the_series_is_named() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-missing");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v5.0.0");
    let p1 = makefile_patch(&upstream, "v5.0.0");
    let root = base.join("project");
    make_project(&root, "v5.0.0", &commit, &[("0001-arch.patch", &p1)]);
    let series = root.join("patches/series");
    let mut text = std::fs::read_to_string(&series).unwrap();
    text.push_str("0002-gone.patch\n");
    std::fs::write(&series, text).unwrap();
    let err = fails(xt(&root).args(["patch", "--source", upstream.to_str().unwrap()]));
    assert!(
        err.contains("patches/series: field `line 3` = \"0002-gone.patch\": patches/0002-gone.patch cannot be read"),
        "{err}"
    );
    assert!(err.contains("fix: add the patch file"), "{err}");
    assert!(!root.join("target/patched").exists(), "nothing is applied");
}

/// A pinned repository with credentials in its URL is fetched from (here `--source` stands in
/// for it), but its credentials are never shown: not in text, not in `--json`, not in the
/// summary kept in the patched tree.
#[test]
fn credentials_in_the_pinned_repository_are_never_shown() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-credentials");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v9.9.9");
    let p1 = makefile_patch(&upstream, "v9.9.9");
    let root = base.join("project");
    make_project(&root, "v9.9.9", &commit, &[("0001-arch.patch", &p1)]);
    write(
        &root.join("patches/upstream.json"),
        &format!(
            r#"{{"repository": "https://ci:ghp_S3CR3T@github.com/acme/cozystack.git", "tag": "v9.9.9", "commit": "{commit}"}}"#
        ),
    );
    let source = upstream.to_str().unwrap();
    let shown = "https://<redacted>@github.com/acme/cozystack.git";
    for args in [
        &["upstream", "--json", "--source", source][..],
        &["upstream", "--json"],
        &["upstream"],
        &["upstream", "--dry-run"],
        &["patch", "--json"],
        &["patch", "--check", "--json"],
        &["patch", "--variant", "compute", "--json"],
        &["patch"],
        &["patch", "--dry-run"],
    ] {
        let out = run(xt(&root).args(args));
        assert_success(&out, &format!("{args:?}"));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert!(
            !stdout.contains("S3CR3T") && !stderr.contains("S3CR3T"),
            "{args:?}\n{stdout}\n{stderr}"
        );
        if args.contains(&"--json") {
            let json: Value = serde_json::from_str(&stdout).unwrap();
            let repository = match args[0] {
                "upstream" => &json["repository"],
                _ => &json["upstream"]["repository"],
            };
            assert_eq!(repository, shown, "{args:?}");
        }
    }
    // `--check` removes its copy
    for tree in ["patched", "patched-compute"] {
        let marker = root.join("target").join(tree).join(".git/xtask-patch.json");
        let marker = std::fs::read_to_string(&marker).unwrap();
        assert!(!marker.contains("S3CR3T"), "{tree}: {marker}");
        assert!(marker.contains(shown), "{tree}: {marker}");
    }
}

/// The stretch: an older upstream keeps its Talos packaging in packages/core/installer. The
/// machinery finds it there, the variant's profiles land in it, and a series written for the
/// newer layout fails with a note that says so.
#[test]
fn installer_layout_is_found_and_gets_the_variant_profiles() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-layout");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, "packages/core/installer", "v0.39.0");
    let root = base.join("project");
    make_project(&root, "v0.39.0", &commit, &[]);
    let json = ok(xt(&root).args([
        "patch",
        "--json",
        "--variant",
        "compute",
        "--source",
        upstream.to_str().unwrap(),
    ]));
    let summary: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        summary["upstream"]["talos_package_dir"],
        "packages/core/installer"
    );
    let profiles =
        root.join("target/patched-compute/packages/core/installer/images/talos/profiles");
    let mut names: Vec<String> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "initramfs.yaml",
            "installer.yaml",
            "kernel.yaml",
            "metal.yaml"
        ]
    );
    assert_eq!(
        summary["variant"]["removed"][0],
        "packages/core/installer/images/talos/profiles/iso.yaml"
    );
    let golden = repo_root().join("xtask/tests/golden/profiles/compute");
    for name in &names {
        assert_eq!(
            std::fs::read_to_string(profiles.join(name)).unwrap(),
            std::fs::read_to_string(golden.join(name)).unwrap(),
            "{name} is the variant's locked profile"
        );
    }

    let patch = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: Test Author <author@example.org>\nSubject: [PATCH] talos: a change for the new layout\n\ndiff --git a/packages/core/talos/Makefile b/packages/core/talos/Makefile\n--- a/packages/core/talos/Makefile\n+++ b/packages/core/talos/Makefile\n@@ -1,2 +1,2 @@\n-BUNDLE = out/bundle-amd64.tar\n+BUNDLE = out/bundle-$(ARCH).tar\n \n";
    make_project(
        &root,
        "v0.39.0",
        &commit,
        &[("0001-new-layout.patch", patch)],
    );
    let err = fails(xt(&root).arg("patch"));
    assert!(err.contains("file: packages/core/talos/Makefile"), "{err}");
    assert!(
        err.contains("this upstream keeps its Talos packaging in packages/core/installer"),
        "{err}"
    );
}

/// Upstream reads one profile per kind: a role built for two architectures gets its first
/// architecture's, one file per kind, never the last one written over the others.
#[test]
fn a_two_arch_role_gets_its_first_architecture_s_profile_per_kind() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-two-arch");
    let upstream = base.join("upstream");
    let commit = make_upstream(&upstream, PKG, "v5.0.0");
    let root = base.join("project");
    make_project(&root, "v5.0.0", &commit, &[]);
    write_netboot_role(&root);
    ok(xt(&root).args([
        "patch",
        "--variant",
        "netboot",
        "--source",
        upstream.to_str().unwrap(),
    ]));
    let profiles = root.join(format!(
        "target/patched-netboot/{PKG}/images/talos/profiles"
    ));
    let mut names: Vec<String> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["initramfs.yaml", "installer.yaml", "kernel.yaml"]);
    for name in &names {
        let text = std::fs::read_to_string(profiles.join(name)).unwrap();
        assert!(text.starts_with("arch: arm64\n"), "{name}:\n{text}");
    }
}

/// A layout no release has used yet is found through upstream's root Makefile.
#[test]
fn moved_packaging_is_found_through_the_root_makefile() {
    if !have_tools(&["git"]) {
        return;
    }
    let base = temp_dir("patch-moved");
    let upstream = base.join("upstream");
    make_upstream(&upstream, "packages/os/talos", "v7.0.0");
    write(
        &upstream.join("Makefile"),
        "build:\n\tmake -C packages/os/docs image\n\tmake -C packages/os/talos image\n",
    );
    ok(git(&upstream).args(["add", "Makefile"]));
    ok(git(&upstream).args(["commit", "-q", "-m", "root Makefile"]));
    ok(git(&upstream).args(["tag", "-f", "-a", "-m", "release", "v7.0.0"]));
    let commit = ok(git(&upstream).args(["rev-parse", "HEAD"]));
    let root = base.join("project");
    make_project(&root, "v7.0.0", &commit, &[]);
    let json = ok(xt(&root).args([
        "patch",
        "--json",
        "--variant",
        "gateway",
        "--source",
        upstream.to_str().unwrap(),
    ]));
    let summary: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        summary["upstream"]["talos_package_dir"],
        "packages/os/talos"
    );
    assert_eq!(summary["upstream"]["talos_version"], "v1.13.99");
    let installer =
        root.join("target/patched-gateway/packages/os/talos/images/talos/profiles/installer.yaml");
    let text = std::fs::read_to_string(installer).unwrap();
    assert!(
        text.contains("tailscale") && text.contains("arch: arm64"),
        "{text}"
    );
}

/// Opt-in: `COZYSTACK_SRC=<CozyStack clone or mirror> cargo test -p xtask --test it patch::real`.
/// The real series applies cleanly at the pin, and the patched Makefile names the arm64
/// assets with ARCH=arm64 and upstream's amd64 ones without it.
#[test]
fn real_series_applies_at_the_pin_and_names_arm64_assets() {
    let Some(source) = std::env::var_os("COZYSTACK_SRC").map(PathBuf::from) else {
        skipped("set COZYSTACK_SRC to a CozyStack clone to run this test");
        return;
    };
    if !have_tools(&["git", "make"]) {
        return;
    }
    let root = temp_dir("patch-real");
    // about the live pins: the real tree at the pin names the Talos release the live lock pins
    copy_live_repo_data(&root);
    ok(xt(&root).args(["upstream", "--source", source.to_str().unwrap()]));
    let tree = root.join("tree");
    let report = ok(xt(&root).args([
        "patch",
        "--variant",
        "compute",
        "--out",
        tree.to_str().unwrap(),
    ]));
    assert!(report.contains("no stray files"), "{report}");
    let check = ok(xt(&root).args(["patch", "--check"]));
    assert!(check.contains("ok: 3 patches apply cleanly"), "{check}");
    let talos = tree.join("packages/core/talos");
    let installer =
        std::fs::read_to_string(talos.join("images/talos/profiles/installer.yaml")).unwrap();
    let version = format!("version: {}\n", live_talos_version());
    assert!(installer.contains("arch: arm64\n") && installer.contains(&version));

    let targets = [
        "talos-installer",
        "talos-kernel",
        "talos-initramfs",
        "talos-metal",
        "image-talos",
        "image-matchbox",
    ];
    let arm64 = ok(Command::new("make")
        .current_dir(&talos)
        .args(["-n", "ARCH=arm64"])
        .args(targets));
    for name in [
        "installer-arm64.tar",
        "kernel-arm64",
        "initramfs-metal-arm64.xz",
        "metal-arm64.raw.xz",
        "--build-arg ARCH=arm64",
    ] {
        assert!(
            arm64.contains(name),
            "make -n ARCH=arm64 does not name {name}:\n{arm64}"
        );
    }
    assert!(!arm64.contains("-amd64"), "{arm64}");
    let amd64 = ok(Command::new("make")
        .current_dir(&talos)
        .args(["-n"])
        .args(targets));
    for name in [
        "installer-amd64.tar",
        "kernel-amd64",
        "initramfs-metal-amd64.xz",
    ] {
        assert!(
            amd64.contains(name),
            "upstream's default changed: {name}:\n{amd64}"
        );
    }
    let dockerfile = std::fs::read_to_string(talos.join("images/matchbox/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("COPY _out/assets/kernel-${ARCH} "),
        "{dockerfile}"
    );
    let arm64_profile =
        std::fs::read_to_string(talos.join("images/matchbox/profiles/arm64/default.json")).unwrap();
    assert!(arm64_profile.contains("\"console=ttyAMA0\""));
    let amd64_profile =
        std::fs::read_to_string(talos.join("images/matchbox/profiles/amd64/default.json")).unwrap();
    assert!(amd64_profile.contains("\"console=ttyS0\""));
    // make -n ran upstream's git describe in the tree: it found the tag and fetched nothing.
    assert_eq!(ok(git(&tree).arg("remote")), "origin");
}

#[test]
fn a_dry_run_for_a_variant_that_does_not_exist_fails_as_the_run_would() {
    let root = temp_dir("patch-dry-run-unknown-variant");
    copy_repo_data(&root);
    let out = run(xtask(&root).args(["patch", "--dry-run", "--variant", "nope"]));
    let err = assert_usage(&out, "patch --dry-run --variant nope");
    assert!(err.contains("unknown variant `nope`"), "{err}");
    assert_eq!(stdout(&out), "", "no command printed");
}

#[test]
fn a_dry_run_does_not_show_replacing_a_directory_the_run_would_refuse() {
    let root = temp_dir("patch-dry-run-foreign-out");
    copy_repo_data(&root);
    let mine = root.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let out = run(xtask(&root)
        .args(["patch", "--dry-run", "--out"])
        .arg(&mine));
    let err = assert_failure(&out, "patch --dry-run --out <a directory of the user's>");
    assert!(
        err.contains("exists and is not a tree `cargo xtask patch` made"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "no `rm -rf` printed, nothing printed");
    assert!(mine.join("notes.txt").is_file());
}
