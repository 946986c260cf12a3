//! `cargo xtask changed` on real git repositories made in temporary directories: every case
//! where path filters are known to skip real changes, GitHub events, outputs, fail-closed
//! behaviour, and the CI workflow's decision and gating (its linters run in tidy.rs).

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;
use serde_json::{json, Value};

const NO_COMMIT: &str = "0000000000000000000000000000000000000000";
/// An object id no repository here has.
const GONE: &str = "dead0000beef0000dead0000beef0000dead0000";

/// A git repository with the project's rules, two variants, a patch and docs.
struct Repo {
    dir: PathBuf,
}

fn has_object(repo: &Repo, sha: &str) -> bool {
    run(git_env(Command::new("git").current_dir(&repo.dir).args([
        "cat-file",
        "-e",
        &format!("{sha}^{{commit}}"),
    ])))
    .status
    .success()
}

impl Repo {
    fn new(name: &str) -> Repo {
        if !have_tools(&["git"]) {
            panic!("git is required");
        }
        let dir = temp_dir(name).join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        std::fs::copy(
            repo_root().join("build-rules.json"),
            repo.dir.join("build-rules.json"),
        )
        .unwrap();
        repo.write("variants/compute.json", "{\"name\": \"compute\"}\n");
        repo.write("variants/gateway.json", "{\"name\": \"gateway\"}\n");
        repo.write("variants/extensions.lock", "{}\n");
        repo.write("patches/upstream.json", "{}\n");
        repo.write("patches/0001-arm64.patch", "a patch\n");
        repo.write("docs/guide.md", "# Guide\n");
        repo.write("README.md", "# Readme\n");
        repo.commit("initial");
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    fn xtask(&self) -> Command {
        let mut cmd = xtask(&self.dir);
        git_env(&mut cmd);
        for var in ["GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_SHA"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// `changed --format json` with these arguments; must exit 0.
    fn changed(&self, args: &[&str]) -> Value {
        let out = run(self
            .xtask()
            .arg("changed")
            .args(args)
            .args(["--format", "json"]));
        assert_success(&out, &format!("changed {args:?} --format json"));
        serde_json::from_slice(&out.stdout).expect("changed prints JSON")
    }

    fn since(&self, base: &str) -> Value {
        self.changed(&["--base", base])
    }

    /// `changed --github --format github` for an event; returns (outputs, summary, stdout, json).
    fn github(&self, event_name: &str, event: Value) -> Github {
        self.github_at(event_name, event, Some(&self.head()))
    }

    /// [`Repo::github`] with `GITHUB_SHA` set to `sha` (a pull request's merge commit), or unset.
    fn github_at(&self, event_name: &str, event: Value, sha: Option<&str>) -> Github {
        let dir = self.dir.parent().unwrap().join(format!("gh-{event_name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let event_path = dir.join("event.json");
        std::fs::write(&event_path, event.to_string()).unwrap();
        let output = dir.join("output");
        let summary = dir.join("summary");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&summary);
        let with_event = |format: &str| {
            let mut cmd = self.xtask();
            cmd.args(["changed", "--github", "--format", format])
                .env("GITHUB_EVENT_NAME", event_name)
                .env("GITHUB_EVENT_PATH", &event_path)
                .env("GITHUB_OUTPUT", &output)
                .env("GITHUB_STEP_SUMMARY", &summary);
            if let Some(sha) = sha {
                cmd.env("GITHUB_SHA", sha);
            }
            cmd
        };
        let out = run(&mut with_event("github"));
        assert_success(
            &out,
            &format!("changed --github --format github ({event_name})"),
        );
        let raw = std::fs::read_to_string(&output).unwrap();
        let json = run(&mut with_event("json"));
        assert_success(
            &json,
            &format!("changed --github --format json ({event_name})"),
        );
        Github {
            outputs: parse_github_output(&raw),
            raw,
            summary: std::fs::read_to_string(&summary).unwrap(),
            stdout: stdout(&out),
            decision: serde_json::from_slice(&json.stdout).unwrap(),
        }
    }
}

struct Github {
    outputs: Vec<(String, String)>,
    raw: String,
    summary: String,
    stdout: String,
    decision: Value,
}

impl Github {
    fn output(&self, key: &str) -> &str {
        &self
            .outputs
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no output {key} in {:?}", self.raw))
            .1
    }
}

/// `$GITHUB_OUTPUT` the way the runner reads it: `key=value` or `key<<DELIM` ... `DELIM`.
fn parse_github_output(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if let Some((key, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            loop {
                let next = lines.next().expect("heredoc is closed");
                if next == delimiter {
                    break;
                }
                value.push(next);
            }
            out.push((key.to_owned(), value.join("\n")));
        } else {
            let (key, value) = line.split_once('=').expect("key=value");
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    out
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn assert_builds(d: &Value, expected: &[&str]) {
    assert_eq!(names(&d["variants"]), expected, "{d:#}");
    assert_eq!(d["build"], !expected.is_empty(), "{d:#}");
}

fn assert_everything(d: &Value) {
    assert_builds(d, &["compute", "gateway"]);
    assert_eq!(d["all"], true, "{d:#}");
}

fn reason(d: &Value) -> &str {
    d["reason"].as_str().unwrap()
}

// --- what a change builds -------------------------------------------------------------------

#[test]
fn docs_only_builds_nothing() {
    let repo = Repo::new("changed-docs-only");
    let base = repo.head();
    repo.write("docs/guide.md", "# Guide\nmore\n");
    repo.write("docs/new/page.md", "new\n");
    repo.write("README.md", "# Readme!\n");
    repo.commit("docs");
    let d = repo.since(&base);
    assert_builds(&d, &[]);
    assert_eq!(d["test"], true, "docs are a test input: {d}");
    assert_eq!(d["files"], 3);
    assert!(reason(&d).contains("only documentation changed"), "{d}");
}

#[test]
fn one_variant_file_builds_only_that_variant() {
    let repo = Repo::new("changed-one-variant");
    let base = repo.head();
    repo.write(
        "variants/gateway.json",
        "{\"name\": \"gateway\", \"x\": 1}\n",
    );
    repo.write("docs/guide.md", "# Guide\nmore\n");
    repo.commit("gateway");
    let d = repo.since(&base);
    assert_builds(&d, &["gateway"]);
    assert_eq!(d["all"], false);
}

#[test]
fn a_patch_builds_every_variant() {
    let repo = Repo::new("changed-patch");
    let base = repo.head();
    repo.write("patches/0001-arm64.patch", "a better patch\n");
    repo.commit("patch");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).contains("patches/0001-arm64.patch is a global build input (rule `patches/**`)"),
        "{d}"
    );
}

#[test]
fn an_unknown_new_path_builds_everything_and_the_reason_names_it() {
    let repo = Repo::new("changed-unknown");
    let base = repo.head();
    repo.write("hack/gen.sh", "#!/bin/sh\n");
    repo.commit("script");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).starts_with("hack/gen.sh is not named by any rule in build-rules.json"),
        "{d}"
    );
}

#[test]
fn a_patch_renamed_into_docs_is_a_build_change() {
    let repo = Repo::new("changed-rename");
    let base = repo.head();
    repo.git(&["mv", "patches/0001-arm64.patch", "docs/0001-arm64.patch"]);
    repo.commit("move the patch into docs");
    // git itself calls this a rename: only the new path would be seen by a rename-aware filter.
    assert!(repo
        .git(&["diff", "--name-status", "-M", &base, "HEAD"])
        .starts_with('R'));
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).starts_with("patches/0001-arm64.patch is a global build input"),
        "{d}"
    );
    assert_eq!(d["files"], 2, "old and new path both count: {d}");
}

#[test]
fn a_copy_of_a_variant_file_builds_the_new_variant() {
    let repo = Repo::new("changed-copy");
    let base = repo.head();
    std::fs::copy(
        repo.dir.join("variants/gateway.json"),
        repo.dir.join("variants/edge.json"),
    )
    .unwrap();
    repo.commit("copy gateway to edge");
    let d = repo.since(&base);
    assert_builds(&d, &["edge"]);
}

#[test]
fn a_deleted_variant_is_reported_removed_and_not_built() {
    let repo = Repo::new("changed-deleted-variant");
    let base = repo.head();
    repo.git(&["rm", "-q", "variants/gateway.json"]);
    repo.commit("drop gateway");
    let d = repo.since(&base);
    assert_builds(&d, &[]);
    assert_eq!(names(&d["removed"]), ["gateway"]);
    let text = stdout(&run(repo.xtask().args(["changed", "--base", &base])));
    assert!(
        text.contains("removed: gateway (no longer built)"),
        "{text}"
    );

    // With a global change too, every remaining variant builds and the removed one does not.
    repo.write("patches/0001-arm64.patch", "changed\n");
    repo.commit("patch");
    let d = repo.since(&base);
    assert_builds(&d, &["compute"]);
    assert_eq!(names(&d["removed"]), ["gateway"]);
}

#[test]
fn a_mode_only_change_counts() {
    let repo = Repo::new("changed-mode");
    let base = repo.head();
    repo.git(&["update-index", "--chmod=+x", "variants/gateway.json"]);
    repo.git(&["commit", "-q", "-m", "mode only"]);
    assert_eq!(
        repo.git(&["diff", "--stat", &base, "HEAD"]),
        "variants/gateway.json | 0\n 1 file changed, 0 insertions(+), 0 deletions(-)"
    );
    let d = repo.since(&base);
    assert_builds(&d, &["gateway"]);
}

#[test]
fn a_submodule_pointer_change_counts() {
    let repo = Repo::new("changed-submodule");
    let one = repo.head();
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{one},vendor/upstream"),
    ]);
    repo.git(&["commit", "-q", "-m", "add submodule"]);
    let base = repo.head();
    repo.git(&[
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "another commit to point at",
    ]);
    let two = repo.head();
    repo.git(&[
        "update-index",
        "--cacheinfo",
        &format!("160000,{two},vendor/upstream"),
    ]);
    repo.git(&["commit", "-q", "-m", "bump submodule"]);
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).starts_with("vendor/upstream is not named"),
        "{d}"
    );
}

#[test]
fn an_empty_commit_builds_nothing() {
    let repo = Repo::new("changed-empty");
    let base = repo.head();
    repo.commit("empty");
    let d = repo.since(&base);
    assert_builds(&d, &[]);
    assert_eq!(d["test"], false, "{d}");
    assert_eq!(d["files"], 0);
    assert_eq!(reason(&d), "no files changed");
}

#[test]
fn upper_case_docs_is_not_docs() {
    let repo = Repo::new("changed-upper-docs");
    let base = repo.head();
    repo.write("Docs/diagram.svg", "<svg/>\n");
    repo.commit("Docs");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).starts_with("Docs/diagram.svg is not named"),
        "{d}"
    );
}

#[test]
fn dot_files_match_globs() {
    let repo = Repo::new("changed-dot-files");
    let base = repo.head();
    repo.write(".cargo/config.toml", "[alias]\n");
    repo.commit("cargo config");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(reason(&d).contains("rule `.cargo/**`"), "{d}");
}

#[test]
fn a_symlink_outside_the_docs_builds_everything() {
    let repo = Repo::new("changed-symlink");
    // A link inside the docs is documentation like any other file there.
    std::os::unix::fs::symlink("guide.md", repo.dir.join("docs/latest.md")).unwrap();
    repo.commit("a docs link");
    let base = repo.head();
    repo.write("docs/guide.md", "# Guide\nmore\n");
    repo.commit("docs");
    assert_builds(&repo.since(&base), &[]);

    // The variant file as a link into docs/: later edits change only the target's path.
    repo.git(&["mv", "variants/gateway.json", "docs/gateway.json"]);
    std::os::unix::fs::symlink(
        "../docs/gateway.json",
        repo.dir.join("variants/gateway.json"),
    )
    .unwrap();
    repo.commit("gateway as a link");
    assert_eq!(
        repo.git(&["ls-files", "-s", "variants/gateway.json"])
            .split(' ')
            .next(),
        Some("120000")
    );
    let base = repo.head();
    repo.write("docs/gateway.json", "{\"name\": \"gateway\", \"x\": 1}\n");
    repo.commit("edit the target");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d)
            .starts_with("variants/gateway.json is a symbolic link outside the documentation"),
        "{d}"
    );
    assert_eq!(d["files"], 1, "{d}");
}

#[test]
fn the_merge_base_option_compares_with_the_fork_point() {
    let repo = Repo::new("changed-merge-base-option");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("variants/gateway.json", "{\"v\": 2}\n");
    repo.commit("gateway");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("patches/0001-arm64.patch", "main moved on\n");
    repo.commit("patch on main");
    let d = repo.changed(&["--base", "main", "--head", "topic", "--merge-base"]);
    assert_builds(&d, &["gateway"]);
    // Comparing trees instead sees main's patch change as a difference: safe, not minimal.
    let d = repo.changed(&["--base", "main", "--head", "topic"]);
    assert_everything(&d);
}

// --- odd file names and the GitHub outputs --------------------------------------------------

#[test]
fn file_names_with_newlines_or_the_delimiter_never_reach_the_outputs() {
    let repo = Repo::new("changed-odd-names");
    let base = repo.head();
    repo.write("docs/line\nbreak.md", "x\n");
    repo.write("docs/ghadelimiter_\nbuild=true\nghadelimiter_.md", "x\n");
    repo.write("docs/ünïcödé and spaces.md", "x\n");
    repo.commit("odd names in docs");
    let sha = repo.head();
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/main", "before": base, "after": sha,
               "repository": {"default_branch": "main"}}),
    );
    assert_eq!(gh.decision["files"], 3, "{}", gh.decision);
    assert_builds(&gh.decision, &[]);
    let keys: Vec<&str> = gh.outputs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["build", "test", "variants", "matrix"],
        "{:?}",
        gh.raw
    );
    assert_eq!(gh.output("build"), "false");
    // Documentation is a test input: its shell blocks run in the suite.
    assert_eq!(gh.output("test"), "true");
    assert_eq!(gh.output("variants"), "[]");
    assert!(
        !gh.raw.contains("break") && !gh.raw.contains("docs/"),
        "{:?}",
        gh.raw
    );

    // An unknown path with a newline: named in the reason, quoted, never raw.
    repo.write("tools/new\n::error::file", "x\n");
    repo.commit("unknown odd name");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        reason(&d).starts_with("\"tools/new\\n::error::file\" is not named"),
        "{d}"
    );
    let text = stdout(&run(repo.xtask().args(["changed", "--base", &base])));
    assert!(text.lines().all(|l| !l.starts_with("::")), "{text}");
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/main", "before": base, "after": repo.head()}),
    );
    assert!(
        gh.stdout.lines().all(|l| !l.starts_with("::error")),
        "{}",
        gh.stdout
    );
    assert!(!gh.raw.contains("tools"), "{:?}", gh.raw);
    assert!(
        gh.summary.lines().filter(|l| l.contains("tools")).count() == 1,
        "the summary names the path on one line: {}",
        gh.summary
    );
}

#[test]
fn github_outputs_feed_the_matrix_and_use_a_fresh_delimiter() {
    let repo = Repo::new("changed-outputs");
    let base = repo.head();
    repo.write("variants/gateway.json", "{}\n");
    repo.write("variants/compute.json", "{}\n");
    repo.commit("both");
    let event = json!({"ref": "refs/heads/main", "before": base, "after": repo.head()});
    let a = repo.github("push", event.clone());
    assert_eq!(a.output("build"), "true");
    assert_eq!(a.output("variants"), "[\"compute\",\"gateway\"]");
    let matrix: Value = serde_json::from_str(a.output("matrix")).unwrap();
    assert_eq!(matrix, json!({"variant": ["compute", "gateway"]}));
    assert!(a.summary.contains("| compute | build |"), "{}", a.summary);
    let b = repo.github("push", event);
    let delimiter = |raw: &str| {
        raw.lines()
            .next()
            .unwrap()
            .split_once("<<")
            .unwrap()
            .1
            .to_owned()
    };
    assert_ne!(delimiter(&a.raw), delimiter(&b.raw));
}

// --- GitHub events --------------------------------------------------------------------------

/// The commit GitHub builds for a pull request (`refs/pull/N/merge`): the base branch tip
/// merged with the pull request's head, first parent the base.
fn pr_merge_commit(repo: &Repo, base: &str, pr_head: &str) -> String {
    repo.git(&["checkout", "-q", "--detach", base]);
    repo.git(&["merge", "-q", "--no-ff", "--no-edit", pr_head]);
    let merge = repo.head();
    repo.git(&["checkout", "-q", "main"]);
    merge
}

#[test]
fn a_pull_request_compares_its_merge_commit_with_the_base_tip_it_merges() {
    let repo = Repo::new("changed-pr-merge-commit");
    let stale = repo.head();
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("patches/0001-arm64.patch", "a better patch\n");
    let pr_head = repo.commit("patch");
    repo.git(&["checkout", "-q", "main"]);
    // main gains a variant meanwhile: it is in the merge commit CI builds, so a global change
    // must build it too.
    repo.write("variants/edge.json", "{\"name\": \"edge\"}\n");
    let tip = repo.commit("edge on main");
    let merge = pr_merge_commit(&repo, &tip, &pr_head);
    let event = json!({"pull_request": {"base": {"ref": "main", "sha": stale},
                                        "head": {"sha": pr_head}}});
    let gh = repo.github_at("pull_request", event.clone(), Some(&merge));
    assert_builds(&gh.decision, &["compute", "edge", "gateway"]);
    assert_eq!(gh.decision["base"], tip.as_str(), "{}", gh.decision);
    assert_eq!(gh.decision["head"], merge.as_str(), "{}", gh.decision);
    assert!(
        reason(&gh.decision).contains("compared with the merge commit's first parent"),
        "{}",
        gh.decision
    );

    // What main changed meanwhile is in both trees: a docs-only pull request builds nothing.
    repo.git(&["checkout", "-q", "-b", "docs", &stale]);
    repo.write("docs/guide.md", "more\n");
    let docs_head = repo.commit("docs");
    repo.git(&["checkout", "-q", "main"]);
    let merge = pr_merge_commit(&repo, &tip, &docs_head);
    let docs_event = json!({"pull_request": {"base": {"ref": "main", "sha": stale},
                                             "head": {"sha": docs_head}}});
    let gh = repo.github_at("pull_request", docs_event, Some(&merge));
    assert_builds(&gh.decision, &[]);

    // A commit to build that is no merge of the pull request's head: fail closed.
    // (the pull request's head itself; the merge of another pull request)
    for (sha, variants) in [
        (&pr_head, &["compute", "gateway"][..]),
        (&merge, &["compute", "edge", "gateway"][..]),
    ] {
        let gh = repo.github_at("pull_request", event.clone(), Some(sha));
        assert_eq!(gh.decision["all"], true, "{}", gh.decision);
        assert_builds(&gh.decision, variants);
        assert!(
            gh.decision["warnings"].to_string().contains("merge"),
            "{}",
            gh.decision
        );
    }
}

#[test]
fn pull_request_without_a_merge_commit_compares_with_the_merge_base_of_the_base_branch() {
    let repo = Repo::new("changed-pull-request");
    let stale = repo.head();
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("variants/gateway.json", "{\"v\": 2}\n");
    repo.commit("gateway");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("variants/compute.json", "{\"v\": 2}\n");
    repo.commit("compute on main");
    // The pull request brings main in; the payload's base sha is from before that.
    repo.git(&["checkout", "-q", "topic"]);
    repo.git(&["merge", "-q", "--no-edit", "main"]);
    let head = repo.head();
    let gh = repo.github_at(
        "pull_request",
        json!({"pull_request": {"base": {"ref": "main", "sha": stale}, "head": {"sha": head}}}),
        None,
    );
    assert_builds(&gh.decision, &["gateway"]);
    assert!(
        reason(&gh.decision).contains("merge base with branch `main`"),
        "{}",
        gh.decision
    );
}

#[test]
fn push_compares_before_and_after_across_a_merge_commit() {
    let repo = Repo::new("changed-merge-commit");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("variants/gateway.json", "{\"v\": 2}\n");
    repo.commit("gateway");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("docs/guide.md", "main docs\n");
    let before = repo.commit("docs on main");
    // A merge that also changes compute while resolving: the merge's own content counts.
    repo.git(&["merge", "-q", "--no-ff", "--no-commit", "topic"]);
    repo.write("variants/compute.json", "{\"fixed in merge\": true}\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "--no-edit"]);
    let after = repo.head();
    assert_eq!(
        repo.git(&["rev-list", "--parents", "-n1", "HEAD"])
            .split(' ')
            .count(),
        3
    );
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/main", "before": before, "after": after,
               "repository": {"default_branch": "main"}}),
    );
    assert_builds(&gh.decision, &["compute", "gateway"]);
    assert_eq!(gh.decision["all"], false);
}

#[test]
fn a_new_branch_compares_with_the_default_branch() {
    let repo = Repo::new("changed-new-branch");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("variants/gateway.json", "{\"v\": 2}\n");
    let head = repo.commit("gateway");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("patches/0001-arm64.patch", "main moved on\n");
    repo.commit("patch on main");
    repo.git(&["checkout", "-q", "topic"]);
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/topic", "before": NO_COMMIT, "after": head, "created": true,
               "repository": {"default_branch": "main"}}),
    );
    assert_builds(&gh.decision, &["gateway"]);
    assert!(
        reason(&gh.decision).contains("merge base with branch `main`"),
        "{}",
        gh.decision
    );
}

#[test]
fn a_force_push_whose_old_tip_is_gone_compares_with_the_default_branch() {
    let repo = Repo::new("changed-force-push");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("patches/0001-arm64.patch", "rewritten away\n");
    let old = repo.commit("to be force-pushed away");
    repo.git(&["reset", "-q", "--hard", "main"]);
    repo.write("variants/gateway.json", "{\"v\": 3}\n");
    let new = repo.commit("gateway");
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["gc", "-q", "--prune=now"]);
    assert!(!has_object(&repo, &old));
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/topic", "before": old, "after": new, "forced": true,
               "repository": {"default_branch": "main"}}),
    );
    assert_builds(&gh.decision, &["gateway"]);
    assert!(reason(&gh.decision).contains("is gone"), "{}", gh.decision);

    // The same on the default branch itself: nothing earlier to compare with, so everything.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["reset", "-q", "--hard", &new]);
    let gh = repo.github(
        "push",
        json!({"ref": "refs/heads/main", "before": GONE, "after": new, "forced": true,
               "repository": {"default_branch": "main"}}),
    );
    assert_everything(&gh.decision);
}

#[test]
fn a_tag_push_builds_everything() {
    let repo = Repo::new("changed-tag");
    repo.git(&["tag", "v1.0.0"]);
    let gh = repo.github(
        "push",
        json!({"ref": "refs/tags/v1.0.0", "before": NO_COMMIT, "after": repo.head()}),
    );
    assert_everything(&gh.decision);
    assert!(
        reason(&gh.decision).starts_with("tag push"),
        "{}",
        gh.decision
    );
    assert_eq!(
        gh.output("matrix"),
        "{\"variant\":[\"compute\",\"gateway\"]}"
    );
}

#[test]
fn merge_groups_compare_base_and_head() {
    let repo = Repo::new("changed-merge-group");
    let base = repo.head();
    repo.write("variants/compute.json", "{\"v\": 2}\n");
    let head = repo.commit("compute");
    let gh = repo.github(
        "merge_group",
        json!({"merge_group": {"base_sha": base, "head_sha": head, "head_ref": "refs/heads/gh-readonly-queue/main/pr-1"}}),
    );
    assert_builds(&gh.decision, &["compute"]);
}

#[test]
fn schedules_and_manual_runs_without_a_base_build_everything() {
    let repo = Repo::new("changed-schedule");
    let base = repo.head();
    let gh = repo.github("schedule", json!({"schedule": "17 4 * * 1"}));
    assert_everything(&gh.decision);
    let gh = repo.github("workflow_dispatch", json!({"inputs": {}}));
    assert_everything(&gh.decision);
    // A manual run may name a base.
    repo.write("docs/guide.md", "x\n");
    repo.commit("docs");
    let gh = repo.github("workflow_dispatch", json!({"inputs": {"base": base}}));
    assert_builds(&gh.decision, &[]);
}

// --- shallow clones and failures ------------------------------------------------------------

/// A shallow clone (depth 1) of `origin` over file://, as actions/checkout makes by default.
fn shallow_clone(origin: &Repo, name: &str, extra: &[&str]) -> Repo {
    let dir = origin.dir.parent().unwrap().join(name);
    let url = format!("file://{}", origin.dir.display());
    let mut args = vec!["clone", "-q", "--depth", "1"];
    args.extend_from_slice(extra);
    args.push(&url);
    args.push(dir.to_str().unwrap());
    git(origin.dir.parent().unwrap(), &args);
    let clone = Repo { dir };
    assert_eq!(clone.git(&["rev-parse", "--is-shallow-repository"]), "true");
    clone
}

#[test]
fn a_shallow_clone_fetches_a_missing_base() {
    let origin = Repo::new("changed-shallow-fetch");
    let base = origin.head();
    origin.write("variants/gateway.json", "{\"v\": 2}\n");
    origin.commit("gateway");
    origin.write("docs/guide.md", "x\n");
    origin.commit("docs");
    let clone = shallow_clone(&origin, "clone", &[]);
    assert!(
        !has_object(&clone, &base),
        "the base is not in the shallow clone"
    );
    let d = clone.since(&base);
    assert_builds(&d, &["gateway"]);
    assert!(reason(&d).contains("fetched"), "{d}");
}

#[test]
fn a_shallow_clone_completes_history_for_a_merge_base() {
    let origin = Repo::new("changed-shallow-merge-base");
    origin.git(&["checkout", "-q", "-b", "topic"]);
    origin.write("variants/gateway.json", "{\"v\": 2}\n");
    let head = origin.commit("gateway");
    origin.git(&["checkout", "-q", "main"]);
    origin.write("variants/compute.json", "{\"v\": 2}\n");
    origin.commit("compute on main");
    let clone = shallow_clone(
        &origin,
        "clone",
        &["--no-single-branch", "--branch", "topic"],
    );
    let gh = clone.github_at(
        "pull_request",
        json!({"pull_request": {"base": {"ref": "main", "sha": NO_COMMIT}, "head": {"sha": head}}}),
        None,
    );
    assert_builds(&gh.decision, &["gateway"]);
    assert!(gh.stdout.contains("full history"), "{}", gh.stdout);
    assert_eq!(
        clone.git(&["rev-parse", "--is-shallow-repository"]),
        "false"
    );
}

#[test]
fn a_shallow_clone_with_an_unreachable_base_builds_everything_with_a_warning() {
    let origin = Repo::new("changed-shallow-unreachable");
    origin.write("docs/guide.md", "x\n");
    let head = origin.commit("docs");
    let clone = shallow_clone(&origin, "clone", &[]);
    let gh = clone.github(
        "merge_group",
        json!({"merge_group": {"base_sha": GONE, "head_sha": head}}),
    );
    assert_everything(&gh.decision);
    let warnings = gh.decision["warnings"].to_string();
    assert!(
        warnings.contains(GONE) && warnings.contains("cannot be fetched"),
        "{warnings}"
    );
    assert!(gh.stdout.contains("::warning::"), "{}", gh.stdout);
    assert!(gh.summary.contains("Warning"), "{}", gh.summary);
}

#[test]
fn git_errors_build_everything_and_exit_zero() {
    let repo = Repo::new("changed-git-errors");
    let d = repo.changed(&["--base", "no-such-branch"]);
    assert_everything(&d);
    assert!(d["warnings"].to_string().contains("no-such-branch"), "{d}");
    // a typo of a branch this clone has is still fail-closed, and the warning names the branch
    let branch = repo.git(&["branch", "--show-current"]);
    let typo = format!("{}x", branch.trim());
    let d = repo.changed(&["--base", &typo]);
    assert_everything(&d);
    assert!(
        d["warnings"].to_string().contains(&format!(
            "revision {typo} cannot be read in this clone (did you mean `{}`?)",
            branch.trim()
        )),
        "{d}"
    );

    // Not a repository at all: the variant list comes from the directory.
    let plain = repo.dir.parent().unwrap().join("plain");
    copy_dir(&repo.dir.join("variants"), &plain.join("variants"));
    std::fs::copy(
        repo.dir.join("build-rules.json"),
        plain.join("build-rules.json"),
    )
    .unwrap();
    let out = run(repo
        .xtask()
        .env("XTASK_ROOT", &plain)
        .env("GIT_CEILING_DIRECTORIES", plain.parent().unwrap())
        .current_dir(&plain)
        .args(["changed", "--base", "HEAD~1", "--json"]));
    assert_success(&out, "changed --base HEAD~1 --json in a plain directory");
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_everything(&d);
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
}

#[test]
fn a_broken_rules_file_builds_everything_with_a_warning() {
    let repo = Repo::new("changed-broken-rules");
    let base = repo.head();
    repo.write(
        "build-rules.json",
        "{\"global\": [\"[\"], \"variants\": {}, \"docs\": []}\n",
    );
    repo.write("docs/guide.md", "x\n");
    repo.commit("break the rules");
    let d = repo.since(&base);
    assert_everything(&d);
    assert!(
        d["warnings"].to_string().contains("build-rules.json"),
        "{d}"
    );
}

#[test]
fn only_a_wrong_invocation_fails() {
    let repo = Repo::new("changed-invocation");
    let out = run(repo.xtask().arg("changed"));
    let err = assert_usage(&out, "changed");
    assert!(err.contains("--base"), "{err}");
    let out = run(repo.xtask().args(["changed", "--github"]));
    let err = assert_usage(&out, "changed --github");
    assert!(err.contains("GITHUB_EVENT_NAME"), "{err}");
    let out = run(repo
        .xtask()
        .args(["changed", "--base", "HEAD", "--format", "github"]));
    let err = assert_usage(&out, "changed --base HEAD --format github");
    assert!(err.contains("GITHUB_OUTPUT"), "{err}");
    // a --repo that is no checkout: "every variant" of none would build nothing and pass
    let empty = temp_dir("changed-invocation-empty");
    git(&empty, &["init", "-q"]);
    let out = run(repo
        .xtask()
        .args(["changed", "--base", "HEAD~1", "--json", "--repo"])
        .arg(&empty));
    let err = assert_usage(&out, "changed --repo <an empty directory>");
    assert!(
        err.contains("has no variant files: is it a checkout of this repository?"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "no decision printed");
    // A missing event file is the environment's fault, not the invocation's: build everything.
    let out = run(repo
        .xtask()
        .args(["changed", "--github", "--json"])
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", repo.dir.join("no-such-event.json")));
    assert_success(&out, "changed --github --json without an event file");
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_everything(&d);
}

#[test]
fn a_hostile_user_configuration_does_not_change_the_result() {
    let repo = Repo::new("changed-hostile-config");
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{},vendor/upstream", repo.head()),
    ]);
    repo.git(&["commit", "-q", "-m", "submodule"]);
    let base = repo.head();
    repo.git(&["mv", "variants/gateway.json", "docs/gateway.json.old"]);
    repo.write("docs/ünï\tcode.md", "x\n");
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{base},vendor/upstream"),
    ]);
    repo.commit("rename, odd name, submodule bump");
    let clean = repo.since(&base);

    let config = repo.dir.parent().unwrap().join("hostile.gitconfig");
    std::fs::write(
        &config,
        "[diff]\n\trenames = copies\n\texternal = /bin/false\n\tnoprefix = true\n\trelative = true\n\
         \tignoreSubmodules = all\n\tmnemonicPrefix = true\n\
         [color]\n\tui = always\n\tdiff = always\n\
         [core]\n\tquotePath = true\n\tpager = false\n\
         [status]\n\trenames = copies\n",
    )
    .unwrap();
    let out = run(repo
        .xtask()
        .args(["changed", "--base", &base, "--format", "json"])
        .env("GIT_CONFIG_GLOBAL", &config)
        .env("GIT_DIR", "/nonexistent")
        .env("GIT_EXTERNAL_DIFF", "/bin/false")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "diff.renames")
        .env("GIT_CONFIG_VALUE_0", "true"));
    assert_success(&out, "changed under a hostile git configuration");
    let hostile: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hostile, clean);
    assert_builds(&clean, &["compute"]);
    assert_eq!(clean["all"], true);
    assert!(
        reason(&clean).starts_with("vendor/upstream is not named"),
        "{clean}"
    );
    assert_eq!(clean["files"], 4, "{clean}");
    assert_eq!(names(&clean["removed"]), ["gateway"]);
    assert_eq!(names(&clean["warnings"]), Vec::<String>::new());
}

// --- the workflow ---------------------------------------------------------------------------

#[test]
fn workflow_decides_with_the_base_branch_code_and_gates_on_one_required_job() {
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/build.yml")).unwrap();
    // The decision code and rules come from the base on pull requests and merge queues, and
    // from the previous tip on pushes (a new branch has none: its own commit)...
    assert!(
        text.contains("ref: ${{ github.event.pull_request.base.sha || github.event.merge_group.base_sha || (github.event_name == 'push' && github.event.before != '0000000000000000000000000000000000000000' && github.event.before) || github.sha }}\n          path: decide"),
        "{text}"
    );
    // ...and run against the checkout of the commit to build.
    assert!(text.contains("working-directory: decide\n        run: cargo xtask changed --github --format github --repo \"$GITHUB_WORKSPACE/repo\""));
    // Matrix values reach the shell only through the environment.
    assert!(
        !text.contains("--variant ${{"),
        "no expression expansion inside run scripts"
    );
    assert!(text.contains("matrix: ${{ fromJSON(needs.changed.outputs.matrix) }}"));
    let required = text
        .split("\n  required:\n")
        .nth(1)
        .expect("a required job");
    assert!(required.contains("if: always()"));
    assert!(required.contains("needs: [changed, test, build, publish]"));
    // Only the publishing job may write packages or mint identity tokens.
    for grant in ["packages: write", "id-token: write", "attestations: write"] {
        assert_eq!(text.matches(grant).count(), 1, "{grant}");
        assert!(workflow_job(&text, "publish").contains(grant), "{grant}");
    }
    // The only secret is the token, and only the publish job sees it.
    let secrets = text.matches("${{ secrets.").count();
    assert_eq!(secrets, text.matches("${{ secrets.GITHUB_TOKEN }}").count());
    for job in ["changed", "test", "build", "required"] {
        assert!(!workflow_job(&text, job).contains("secrets."), "{job}");
    }
}

/// The text of one job: its lines from `  name:` to the next job (or the end).
fn workflow_job(text: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = text.lines().skip_while(|l| *l != header);
    let first = lines.next().unwrap_or_else(|| panic!("no job {name}"));
    let body = lines.take_while(|l| l.is_empty() || l.starts_with("   "));
    std::iter::once(first)
        .chain(body)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn workflow_builds_without_credentials_and_publishes_only_from_the_publish_job() {
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/build.yml")).unwrap();
    let build = &workflow_job(&text, "build");
    let publish = &workflow_job(&text, "publish");
    let test = &workflow_job(&text, "test");
    // Build and smoke run the imager, and nothing that could push.
    assert!(
        build.contains("run: cargo xtask ci --variant \"$VARIANT\""),
        "{build}"
    );
    assert!(!build.contains("--push"), "{build}");
    assert!(!build.contains("packages: write"), "{build}");
    assert!(!build.contains("secrets."), "{build}");
    // Publishing pushes what build made, and never runs an image itself.
    assert!(
        publish.contains("needs: [changed, test, build]"),
        "{publish}"
    );
    assert!(
        publish.contains("needs.changed.outputs.publish == 'true'"),
        "{publish}"
    );
    assert!(!publish.contains("ci --push"), "{publish}");
    assert!(
        !publish.contains("apt-get install"),
        "no qemu or engine: {publish}"
    );
    let push = publish
        .find("run: cargo xtask ci --publish-only --no-release-tags --variant \"$VARIANT\"")
        .expect("push by digest first");
    let attest = publish
        .find("actions/attest-build-provenance@")
        .expect("attested");
    let sign = publish.find("cosign sign --yes").expect("signed");
    let verify = publish.find("cosign verify").expect("verified");
    let tags = publish
        .find("run: cargo xtask ci --publish-only --variant \"$VARIANT\"")
        .expect("tags move last");
    assert!(
        push < attest && attest < sign && sign < verify && verify < tags,
        "{publish}"
    );
    // ci moves floating tags only when GITHUB_REF is this branch (a scheduled run's ref is it).
    assert!(
        publish.contains("XTASK_DEFAULT_BRANCH: ${{ github.event.repository.default_branch || (github.event_name == 'schedule' && github.ref_name) || '' }}"),
        "{publish}"
    );
    // One publisher per variant, whatever the ref (a tag run and a main run share it), never
    // cancelled in progress.
    assert!(
        publish.contains("group: publish-${{ matrix.variant }}\n      cancel-in-progress: false"),
        "{publish}"
    );
    // Ancestry of the release tags needs the history.
    assert!(publish.contains("fetch-depth: 0"), "{publish}");
    // Documentation alone runs the suite (its shell blocks are tests), never a build.
    assert!(
        test.contains("if: needs.changed.outputs.test == 'true'"),
        "{test}"
    );
    // decision code from before the `test` output (a base older than it) writes none: the
    // tests follow `build`, and `required` sees a decision either way
    assert!(
        text.contains("test: ${{ steps.changed.outputs.test || steps.changed.outputs.build }}"),
        "{text}"
    );
    assert!(
        build.contains("if: needs.changed.outputs.build == 'true'"),
        "{build}"
    );
    // A tag publishes only a commit on the default branch.
    let changed = &workflow_job(&text, "changed");
    assert!(
        changed.contains(
            "git merge-base --is-ancestor \"$GITHUB_SHA\" \"refs/remotes/origin/$DEFAULT_BRANCH\""
        ),
        "{changed}"
    );
    // GitHub replaces a queued run of a group by a newer one, whose `before` skips the replaced
    // run's changes: only pull requests share a workflow-level group.
    let top = text.split("\njobs:\n").next().unwrap();
    assert!(
        top.contains("group: ${{ github.workflow }}-${{ github.event_name == 'pull_request' && github.ref || github.run_id }}"),
        "{top}"
    );
}
