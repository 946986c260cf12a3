//! The GitHub workflow's own logic, run for real: the `required` gate's script under every
//! combination of job results, and the tag gate against real git histories (the linters,
//! actionlint and zizmor, run in tidy.rs).

use std::process::Command;

use crate::support::{
    assert_failure, assert_success, git, have_tools, repo_root, run, stderr, stdout, temp_dir,
};

fn workflow() -> String {
    std::fs::read_to_string(repo_root().join(".github/workflows/build.yml")).unwrap()
}

/// The `run: |` script of the step named `name`, dedented.
fn step_script(text: &str, name: &str) -> String {
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.next().unwrap_or_else(|| panic!("no step {name}"));
    let mut lines = lines.skip_while(|l| l.trim() != "run: |");
    let run_line = lines
        .next()
        .unwrap_or_else(|| panic!("step {name} has no run: |"));
    let indent = run_line.len() - run_line.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the `required` job's script with these job results and `changed` outputs.
fn required(results: [&str; 4], needs_test: &str, build: &str, publish: &str) -> (bool, String) {
    let script = step_script(&workflow(), "Fail unless every needed job succeeded");
    let [changed, test, build_result, publish_result] = results;
    let out = run(Command::new("bash")
        .args(["-e", "-c", &script])
        .env("CHANGED", changed)
        .env("TEST", test)
        .env("BUILD", build_result)
        .env("PUBLISH", publish_result)
        .env("NEEDS_TEST", needs_test)
        .env("NEEDS_BUILD", build)
        .env("NEEDS_PUBLISH", publish));
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn required_passes_only_when_every_needed_job_succeeded() {
    let ok = |r, t, b, p| required(r, t, b, p).0;
    const S: &str = "success";
    const K: &str = "skipped";
    // Nothing changed: nothing ran, green.
    assert!(ok([S, K, K, K], "false", "false", "false"));
    // Documentation only: the suite ran (docs are a test input), no image.
    assert!(ok([S, S, K, K], "true", "false", "false"));
    assert!(
        ok([S, S, K, K], "true", "false", "true"),
        "docs-only push to main"
    );
    // A pull request that builds; a push that builds and publishes.
    assert!(ok([S, S, S, K], "true", "true", "false"));
    assert!(ok([S, S, S, S], "true", "true", "true"));

    let failing = [
        // changed itself
        (["failure", K, K, K], "", "", ""),
        (["cancelled", K, K, K], "", "", ""),
        // changed succeeded but wrote no decision
        ([S, K, K, K], "false", "", "false"),
        ([S, K, K, K], "false", "maybe", "false"),
        ([S, S, K, K], "", "false", "false"),
        ([S, K, K, K], "", "false", "false"),
        // documentation changed, but the suite failed or never ran
        ([S, "failure", K, K], "true", "false", "false"),
        ([S, K, K, K], "true", "false", "false"),
        ([S, "cancelled", K, K], "true", "false", "false"),
        // build needed, but the suite or the build did not succeed or never ran
        ([S, "failure", S, K], "true", "true", "false"),
        ([S, K, S, K], "true", "true", "false"),
        ([S, K, S, K], "false", "true", "false"),
        ([S, S, K, K], "true", "true", "false"),
        ([S, S, "cancelled", K], "true", "true", "false"),
        ([S, S, "failure", K], "true", "true", "false"),
        // publish needed but skipped, failed or cancelled; or unexpected
        ([S, S, S, K], "true", "true", "true"),
        ([S, S, S, "failure"], "true", "true", "true"),
        ([S, S, S, "cancelled"], "true", "true", "true"),
        ([S, S, S, S], "true", "true", ""),
        // nothing was needed, yet something ran and failed
        ([S, "failure", K, K], "false", "false", "false"),
        ([S, S, "failure", K], "true", "false", "false"),
    ];
    for (results, test, build, publish) in failing {
        let (passed, output) = required(results, test, build, publish);
        assert!(
            !passed,
            "required passed for {results:?} test={test:?} build={build:?} publish={publish:?}:\n{output}"
        );
        assert!(output.contains("::error title=required::"), "{output}");
    }
}

#[test]
fn a_tag_publishes_only_a_commit_on_the_default_branch() {
    if !have_tools(&["git"]) {
        return;
    }
    let dir = temp_dir("workflow-tag-gate");
    let origin = dir.join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    git(&origin, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let reviewed = git(&origin, &["rev-parse", "HEAD"]);
    git(&origin, &["checkout", "-q", "-b", "topic"]);
    git(
        &origin,
        &["commit", "-q", "--allow-empty", "-m", "unreviewed"],
    );
    let unreviewed = git(&origin, &["rev-parse", "HEAD"]);
    git(&origin, &["checkout", "-q", "main"]);
    git(&origin, &["commit", "-q", "--allow-empty", "-m", "two"]);
    // The checkout the workflow makes: a clone with every branch as origin/<name>.
    let clone = dir.join("repo");
    git(&dir, &["clone", "-q", origin.to_str().unwrap(), "repo"]);
    let script = step_script(
        &workflow(),
        "Refuse a tag whose commit is not on the default branch",
    );
    let gate = |sha: &str| {
        run(Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&clone)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GITHUB_SHA", sha)
            .env("GITHUB_REF", "refs/tags/v1")
            .env("DEFAULT_BRANCH", "main"))
    };
    assert_success(&gate(&reviewed), "the release gate on an older main commit");
    let head = git(&clone, &["rev-parse", "HEAD"]);
    assert_success(&gate(&head), "the release gate on the tip of main");
    let refused = gate(&unreviewed);
    assert_failure(
        &refused,
        "the release gate on a commit only on a topic branch",
    );
    assert!(
        stdout(&refused).contains("::error title=tag not on main::"),
        "{}",
        stdout(&refused)
    );
}
