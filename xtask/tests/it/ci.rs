//! `cargo xtask ci` end to end, as the workflow's publish job runs it: lock --locked, build and
//! push (stand-in imager, real podman and registry), smoke (static checks and a real qemu boot
//! of a real arm64 kernel), floating tags only from the default branch and only after smoke
//! passed, GitHub annotations and the job summary.

use std::process::Output;

use crate::support::arm64::*;
use crate::support::pipeline::*;
use crate::support::*;

const BOOT_TOOLS: &[&str] = &[
    "qemu-system-aarch64",
    "apt-get",
    "apt-cache",
    "dpkg-deb",
    "cpio",
];

fn ci(env: &Pipeline, variant: &str, git_ref: &str, summary: &std::path::Path) -> Output {
    ci_with(env, variant, git_ref, summary, &[])
}

fn ci_with(
    env: &Pipeline,
    variant: &str,
    git_ref: &str,
    summary: &std::path::Path,
    vars: &[(&str, &str)],
) -> Output {
    let mut cmd = env.ci();
    cmd.envs(vars.iter().copied());
    cmd.args(["--push", "--variant", variant])
        .env("GITHUB_REF", git_ref)
        .env("GITHUB_STEP_SUMMARY", summary);
    run(&mut cmd)
}

#[test]
fn ci_publishes_boots_and_moves_floating_tags_only_after_smoke_on_the_default_branch() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let work = temp_dir("ci-assets");
    let talos_like = initramfs(&work, &init_talos_like(Some(ANSWER_TLS)), Some(ANSWER_TLS));
    let Some(env) = Pipeline::setup("ci-e2e", Some((&arm64().kernel, &talos_like))) else {
        return;
    };
    let summary = env.dir.join("summary.md");

    // A feature branch: built, pushed by digest and smoke-tested; then the version tag moves,
    // but no floating tag.
    let out = ci(&env, "compute", "refs/heads/feature", &summary);
    assert_success(&out, "ci --variant compute on refs/heads/feature");
    let repo = "acme/talos-cozystack-spin-only/talos";
    let tags = env.registry.tags(repo);
    assert!(tags.contains(&"v1.13.99".to_owned()), "{tags:?}");
    assert!(
        !tags.contains(&"latest".to_owned()),
        "floating tags only from the default branch: {tags:?}"
    );

    // The default branch: the same digest also gets the floating tags.
    let out = ci(&env, "compute", "refs/heads/main", &summary);
    assert_success(&out, "ci --variant compute on refs/heads/main");
    let text = stdout(&out);
    for group in [
        "::group::lock (--locked)",
        "::group::patch",
        "::group::build",
        "::group::smoke",
        "::group::release tags",
        "::endgroup::",
    ] {
        assert!(text.contains(group), "missing {group:?} in\n{text}");
    }
    let record = env.record("compute");
    let installer = &record["published"][0];
    let digest = installer["digest"].as_str().unwrap();
    for tag in ["v1.13.99", "latest", "demo-stable"] {
        assert_eq!(
            env.registry.manifest(repo, tag).unwrap().1,
            digest,
            "{repo}:{tag}"
        );
    }
    let recorded: Vec<&str> = strings(&installer["tags"], "");
    assert!(
        recorded.contains(&"latest") && recorded.contains(&"demo-stable"),
        "{recorded:?}"
    );
    let matchbox = &record["published"][1];
    assert_eq!(matchbox["kind"], "matchbox");
    let (_, matchbox_latest) = env
        .registry
        .manifest("acme/talos-cozystack-spin-only/matchbox", "latest")
        .unwrap();
    assert_eq!(matchbox_latest, matchbox["digest"].as_str().unwrap());

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| smoke | ✅"), "{md}");
    assert!(md.contains("### compute (Talos v1.13.99, arm64)"), "{md}");
    assert!(
        md.contains("- smoke: ✅ static checks passed; booted to maintenance mode in"),
        "{md}"
    );
    assert!(md.contains(&format!("@{digest}` tags: `v1.13.99-")), "{md}");
    assert!(
        md.contains("`, `v1.13.99`, `latest`, `demo-stable`"),
        "{md}"
    );
    let console = std::fs::read_to_string(env.root.join("_out/compute/smoke-console.log")).unwrap();
    assert!(
        console.contains("[talos] entering maintenance service"),
        "{console}"
    );
}

/// `ci --no-matchbox` builds no matchbox image, so its patch stage has nothing to patch: it
/// passes without an upstream tree (here none can be fetched) instead of preparing one.
#[test]
fn ci_with_no_matchbox_patches_nothing() {
    let Some(env) = Pipeline::setup("ci-no-matchbox", None) else {
        return;
    };
    let summary = env.dir.join("summary.md");
    let out = run(env
        .xtask()
        .args([
            "ci",
            "--no-matchbox",
            "--no-boot",
            "--variant",
            "compute",
            "--engine",
            "podman",
            "--imager",
            OK,
            // an upstream that cannot be fetched (nothing listens there)
            "--source",
            "http://127.0.0.1:9/cozystack.git",
        ])
        .env("GITHUB_STEP_SUMMARY", &summary));
    let text = stdout(&out);
    assert_success(&out, "ci --no-matchbox without an upstream tree");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("| patch | ✅ nothing to patch: --no-matchbox"),
        "{md}\n{text}"
    );
}

#[test]
fn a_failing_smoke_boot_fails_ci_and_moves_no_floating_tag() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let work = temp_dir("ci-panic-assets");
    let panicking = initramfs(&work, INIT_PANIC, None);
    let Some(env) = Pipeline::setup("ci-panic", Some((&arm64().kernel, &panicking))) else {
        return;
    };
    let summary = env.dir.join("summary.md");

    let out = ci(&env, "gateway", "refs/heads/main", &summary);
    assert_failure(&out, "ci --variant gateway (a kernel panic must fail ci)");
    let text = stdout(&out);
    assert!(text.contains("::error title=xtask ci: smoke::"), "{text}");
    assert!(text.to_lowercase().contains("kernel panic"), "{text}");
    assert!(
        stderr(&out).contains("ci failed in: smoke"),
        "{}",
        stderr(&out)
    );
    let repo = "acme/talos-cozystack-spin-tailscale/talos";
    let tags = env.registry.tags(repo);
    assert!(
        tags.len() == 1 && tags[0].starts_with("v1.13.99-"),
        "only the build-unique tag names an image that failed smoke: {tags:?}"
    );
    for release in ["v1.13.99", "latest", "demo-stable"] {
        assert!(
            !tags.contains(&release.to_owned()),
            "{release} moved to an image that failed smoke: {tags:?}"
        );
    }
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| smoke | ❌"), "{md}");
    assert!(md.contains("- smoke: ❌"), "{md}");
}

// Forward-only release tags (which replaced the branch-tip check) are tested in tests/release.rs.

#[test]
fn a_broken_lock_fails_ci_in_its_lock_stage_with_the_summary_and_builds_nothing() {
    // ci reads the lock once, in its lock stage, and makes the plan from exactly that lock; a
    // lock it cannot read is that stage's failure, reported in the job summary like any other,
    // not an error before the first stage.
    if !have_tools(&["podman", "skopeo", "tar", "git"]) {
        return;
    }
    let root = temp_dir("ci-broken-lock");
    copy_repo_data(&root);
    std::fs::write(
        root.join("variants/extensions.lock"),
        "{\"talos_version\": ",
    )
    .unwrap();
    let summary = root.join("summary.md");
    let out = run(xtask(&root)
        .args([
            "ci",
            "--no-boot",
            "--variant",
            "compute",
            "--engine",
            "podman",
        ])
        .env("GITHUB_STEP_SUMMARY", &summary));
    let err = assert_failure(&out, "ci with a lock cut short");
    assert!(
        err.contains("ci failed in: lock (--locked)")
            && err.contains("variants/extensions.lock: malformed JSON"),
        "{err}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| preflight | ✅"), "{md}");
    let lock_row = md
        .lines()
        .find(|l| l.starts_with("| lock (--locked) |"))
        .unwrap_or_else(|| panic!("no lock row in\n{md}"));
    assert!(lock_row.contains("❌ invalid lock file"), "{lock_row}");
    for stage in ["patch", "build", "smoke"] {
        assert!(
            md.contains(&format!(
                "| {stage} | ⏭️ skipped: an earlier stage failed |"
            )),
            "{stage}:\n{md}"
        );
    }
    assert!(!root.join("_out/compute").exists(), "nothing was built");
}
