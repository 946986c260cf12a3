//! Release tags move forward only, against the real registry and real git histories: every
//! pushed manifest records its commit (`org.opencontainers.image.revision`), and `ci` moves a
//! tag only to a descendant of the commit the tagged image records. Stand-in imager (see
//! tests/standin/imager.sh), real podman, skopeo, registry and git; no qemu boot (`--no-boot`)
//! except where the publish job's input must be booted (`booting_pipeline`).

use std::path::Path;
use std::process::Output;

use crate::support::arm64::*;
use crate::support::pipeline::*;
use crate::support::*;

const REPO: &str = "acme/talos-cozystack-spin-only/talos";
const REVISION: &str = "org.opencontainers.image.revision";

/// `cargo xtask ci` as the workflow runs it: `args` then the bench's registry and images.
fn ci(env: &Pipeline, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.ci();
    cmd.args(args)
        .args(["--variant", "compute"])
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_STEP_SUMMARY", env.dir.join("summary.md"))
        .envs(vars.iter().copied());
    run(&mut cmd)
}

/// The bench with a real arm64 kernel and a Talos-like initramfs as the stand-in imager's
/// kernel and initramfs, so that `ci` smoke-boots what it publishes, as the workflow's build job
/// does (`ci --publish-only` publishes only booted images).
fn booting_pipeline(name: &str) -> Option<Pipeline> {
    if !have_tools(BOOT_TOOLS) {
        return None;
    }
    let work = temp_dir(&format!("{name}-assets"));
    let talos_like = initramfs(&work, &init_talos_like(Some(ANSWER_TLS)), Some(ANSWER_TLS));
    Pipeline::setup(name, Some((&arm64().kernel, &talos_like)))
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert_success(out, "ci");
    stdout(out)
}

/// The commit the image `REPO:tag` records, and its digest.
fn tagged(env: &Pipeline, tag: &str) -> Option<(String, String)> {
    let (manifest, digest) = env.registry.manifest(REPO, tag)?;
    let revision = manifest["annotations"][REVISION]
        .as_str()
        .unwrap_or("")
        .to_owned();
    Some((revision, digest))
}

fn summary(env: &Pipeline) -> String {
    std::fs::read_to_string(env.dir.join("summary.md")).unwrap_or_default()
}

#[test]
fn release_tags_move_forward_only_across_docs_commits_and_late_older_runs() {
    let Some(env) = Pipeline::setup("release-forward", None) else {
        return;
    };
    let root = &env.root;
    let a = git(root, &["rev-parse", "HEAD"]);

    // A fresh registry: the tags do not exist yet, so they move, and the image records `a`.
    ok(&ci(&env, &["--push", "--no-boot"], &[]));
    for tag in ["v1.13.99", "latest", "demo-stable"] {
        let (revision, _) = tagged(&env, tag).unwrap_or_else(|| panic!("{tag} missing"));
        assert_eq!(revision, a, "{tag}");
    }
    let record = env.record("compute");
    assert_eq!(record["smoke_passed"], true, "{record}");

    // A docs-only commit lands on the branch after that build; no run builds this variant for
    // it. The next change to the variant (`c`) still moves the tags: `a` is its ancestor. The
    // old rule (move only while this run is the branch tip) stalled here.
    std::fs::write(root.join("NOTES.md"), "docs\n").unwrap();
    git(root, &["add", "NOTES.md"]);
    git(root, &["commit", "-qm", "docs only"]);
    git(
        root,
        &["commit", "-q", "--allow-empty", "-m", "variant change"],
    );
    let c = git(root, &["rev-parse", "HEAD"]);
    let out = ok(&ci(
        &env,
        &["--push", "--no-boot"],
        &[("GITHUB_SHA", c.as_str())],
    ));
    assert!(out.contains("::group::release tags"), "{out}");
    for tag in ["v1.13.99", "latest", "demo-stable"] {
        assert_eq!(tagged(&env, tag).unwrap().0, c, "{tag} moved forward to c");
    }
    let at_c = tagged(&env, "latest").unwrap().1;

    // An older run (of `a`) finishing last: it pushes its image by digest, and leaves every
    // release tag alone, saying why; it does not fail.
    git(root, &["checkout", "-q", &a]);
    let out = ci(
        &env,
        &["--push", "--no-boot"],
        &[("GITHUB_SHA", a.as_str())],
    );
    ok(&out);
    for tag in ["v1.13.99", "latest", "demo-stable"] {
        assert_eq!(tagged(&env, tag).unwrap().1, at_c, "{tag} moved back");
    }
    let md = summary(&env);
    assert!(
        md.contains("left alone: ") && md.contains(&format!("newer commit {}", &c[..12])),
        "{md}"
    );
    let record = env.record("compute");
    let tags = record["published"][0]["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "only the build-unique tag: {tags:?}");

    // A tag run whose commit is not on the default branch publishes nothing to the release tags.
    let origin = env.dir.join("origin.git");
    git(
        &env.dir,
        &["init", "-q", "--bare", origin.to_str().unwrap()],
    );
    git(root, &["remote", "add", "origin", origin.to_str().unwrap()]);
    git(
        root,
        &["push", "-q", "origin", &format!("{c}:refs/heads/main")],
    );
    git(root, &["fetch", "-q", "origin"]);
    git(root, &["checkout", "-q", "-b", "topic", &c]);
    git(root, &["commit", "-q", "--allow-empty", "-m", "unreviewed"]);
    let d = git(root, &["rev-parse", "HEAD"]);
    let out = ci(
        &env,
        &["--push", "--no-boot"],
        &[("GITHUB_SHA", d.as_str()), ("GITHUB_REF", "refs/tags/v9")],
    );
    let err = assert_failure(
        &out,
        "ci --push --no-boot of a tag on a commit only on a topic branch",
    );
    assert!(
        err.contains(&format!(
            "refs/tags/v9 points at {}, which is not on the default branch main",
            &d[..12]
        )),
        "{err}"
    );
    assert_eq!(tagged(&env, "v1.13.99").unwrap().1, at_c);

    // The same commit published from a topic branch (or from a local `ci --push`, with no
    // GITHUB_REF): neither origin/main nor main has it, so no release tag moves to it.
    for reference in ["refs/heads/topic", ""] {
        let out = ci(
            &env,
            &["--push", "--no-boot"],
            &[("GITHUB_SHA", d.as_str()), ("GITHUB_REF", reference)],
        );
        let err = assert_failure(
            &out,
            &format!("ci --push of a topic branch ({reference:?})"),
        );
        assert!(
            err.contains("which is not on the default branch main (refs/remotes/origin/main, refs/heads/main)"),
            "{err}"
        );
        for tag in ["v1.13.99", "latest", "demo-stable"] {
            assert_eq!(
                tagged(&env, tag).unwrap().1,
                at_c,
                "{tag} moved to a topic branch's image"
            );
        }
    }

    // A release tag that points at an image of a commit outside this history (published from
    // another branch before this rule, or the history rewritten) is no guess either way: the
    // next run of the default branch fails closed, naming it, and moves nothing.
    let (_, digest) = tagged(&env, "v1.13.99").unwrap();
    retag_with_revision(&env, &digest, &d);
    git(root, &["checkout", "-q", "main"]);
    git(root, &["reset", "-q", "--hard", &c]);
    git(root, &["commit", "-q", "--allow-empty", "-m", "after"]);
    let e = git(root, &["rev-parse", "HEAD"]);
    let before = tagged(&env, "latest").unwrap();
    let out = ci(
        &env,
        &["--push", "--no-boot"],
        &[("GITHUB_SHA", e.as_str())],
    );
    assert_failure(&out, "ci --push when a tag records an unrelated commit");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "commit {}, which is neither an ancestor nor a descendant",
            &d[..12]
        )),
        "{text}"
    );
    // its fix is its own: fetching history or a "recorded image" would not help
    assert!(
        text.contains(&format!(
            "fix: point the tag by hand at an image of this history (`skopeo copy docker://{0}/{REPO}@DIGEST docker://{0}/{REPO}:latest`) once you have checked it",
            env.registry.addr
        )),
        "{text}"
    );
    assert!(!text.contains("fetch-depth"), "{text}");
    assert_eq!(
        tagged(&env, "latest").unwrap(),
        before,
        "latest moved although a tag was unsure"
    );
}

#[test]
fn release_tags_fail_closed_when_ancestry_cannot_be_established() {
    let Some(env) = Pipeline::setup("release-unsure", None) else {
        return;
    };
    let root = &env.root;
    // The tags point at an image that records a commit this checkout has never seen (another
    // clone's history, or a shallow one).
    ok(&ci(&env, &["--push", "--no-boot"], &[]));
    let foreign = "f".repeat(40);
    let (_, digest) = tagged(&env, "latest").unwrap();
    retag_with_revision(&env, &digest, &foreign);
    let before = tagged(&env, "latest").unwrap();
    assert_eq!(before.0, foreign);

    git(root, &["commit", "-q", "--allow-empty", "-m", "next"]);
    let out = ci(&env, &["--push", "--no-boot"], &[]);
    assert_failure(&out, "ci --push --no-boot (must fail closed)");
    let text = stdout(&out);
    assert!(
        text.contains("::error title=xtask ci: release tags::moved no release tag"),
        "{text}"
    );
    // this checkout has its whole history, so no fetch would bring the commit: its own fix
    assert!(
        text.contains("which this repository does not have although its history is complete"),
        "{text}"
    );
    assert!(
        text.contains("point the tag by hand at an image of this history")
            && !text.contains("fetch-depth"),
        "{text}"
    );
    for tag in ["latest", "demo-stable"] {
        assert_eq!(tagged(&env, tag).unwrap(), before, "{tag} moved");
    }
    // The version tag still points at the first image, which records a known commit: it could
    // move, yet nothing moves when any tag is unsure.
    let (_, version) = tagged(&env, "v1.13.99").unwrap();
    assert_eq!(version, digest);

    // An image that records no commit at all (pushed by hand, or before this rule): the same.
    let plain = env.dir.join("plain");
    let oci = format!("oci:{}:x", plain.display());
    let src = format!("docker://{}/{REPO}@{digest}", env.registry.addr);
    skopeo(&["copy", "--src-tls-verify=false", &src, &oci]);
    strip_annotations(&plain);
    let dest = format!("docker://{}/{REPO}:latest", env.registry.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &oci, &dest]);
    let tags = ["latest", "demo-stable", "v1.13.99"];
    let before: Vec<_> = tags.iter().map(|t| tagged(&env, t)).collect();
    let out = ci(&env, &["--push", "--no-boot"], &[]);
    assert_failure(&out, "ci --push --no-boot when latest records no revision");
    assert!(
        stdout(&out).contains("records no org.opencontainers.image.revision"),
        "{}",
        stdout(&out)
    );
    let after: Vec<_> = tags.iter().map(|t| tagged(&env, t)).collect();
    assert_eq!(after, before, "a release tag moved although one was unsure");

    // A dirty checkout is no commit: its images are pushed, no release tag moves.
    std::fs::write(
        root.join("variants/compute.json"),
        std::fs::read_to_string(root.join("variants/compute.json")).unwrap() + "\n",
    )
    .unwrap();
    let out = ci(&env, &["--push", "--no-boot"], &[]);
    assert_failure(&out, "ci --push --no-boot of a dirty tree");
    assert!(
        stdout(&out).contains("uncommitted changes"),
        "{}",
        stdout(&out)
    );
    let after: Vec<_> = tags.iter().map(|t| tagged(&env, t)).collect();
    assert_eq!(after, before, "a dirty checkout moved a release tag");
    // so is a new file git does not ignore (a variant file not yet committed changes what is
    // built as much as an edited one); xtask's own _out/ and target/ never count
    git(root, &["checkout", "-q", "--", "variants/compute.json"]);
    // (a name git quotes in its plain status output is named as it is)
    std::fs::write(root.join("variants/\"NOTES\".txt"), "not committed\n").unwrap();
    let out = ci(&env, &["--push", "--no-boot"], &[]);
    assert_failure(&out, "ci --push --no-boot with an untracked file");
    assert!(
        stdout(&out).contains("uncommitted changes (variants/\"NOTES\".txt)"),
        "{}",
        stdout(&out)
    );
    let after: Vec<_> = tags.iter().map(|t| tagged(&env, t)).collect();
    assert_eq!(after, before, "an untracked file moved a release tag");
    // build's dry run refuses it as its real run does, after the pushes, and says why
    let out = run(env
        .xtask()
        .args([
            "build",
            "--dry-run",
            "--push",
            "--variant",
            "compute",
            "--imager",
            OK,
        ])
        .arg("--registry")
        .arg(format!("{}/acme", env.registry.addr))
        .arg("--tree")
        .arg(&env.tree)
        .args(["--matchbox-base", BASE]));
    let err = assert_failure(&out, "build --dry-run --push of a dirty tree");
    assert!(
        err.contains("moved no release tag: this run's commit is unknown"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("# warning: the checkout has uncommitted changes"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.ends_with("/talos:v1.13.99")),
        "no release tag shown moving: {text}"
    );
}

/// A CI checkout is shallow unless told otherwise (actions/checkout fetches one commit). The
/// commit the tagged image records is then missing for want of history, not because it is
/// foreign: nothing moves, the fix asks for the full history, and with it the tags move.
#[test]
fn release_tags_in_a_shallow_clone_ask_for_the_full_history_then_move() {
    let Some(env) = Pipeline::setup("release-shallow", None) else {
        return;
    };
    ok(&ci(&env, &["--push", "--no-boot"], &[]));
    let before = tagged(&env, "latest").unwrap();
    git(&env.root, &["commit", "-q", "--allow-empty", "-m", "next"]);
    let head = git(&env.root, &["rev-parse", "HEAD"]);

    // the bench's repository becomes the origin of a real one-commit clone in its place
    let origin = env.dir.join("origin");
    std::fs::rename(&env.root, &origin).unwrap();
    let url = format!("file://{}", origin.display());
    git(
        &env.dir,
        &[
            "clone", "-q", "--depth", "1", "--branch", "main", &url, "repo",
        ],
    );
    assert_eq!(
        git(&env.root, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );

    let out = ci(&env, &["--push", "--no-boot"], &[]);
    assert_failure(
        &out,
        "ci --push --no-boot in a shallow clone (must fail closed)",
    );
    let text = stdout(&out);
    assert!(
        text.contains("not in this checkout's history")
            && text.contains("fetch the full history (fetch-depth: 0)"),
        "{text}"
    );
    for tag in ["latest", "demo-stable"] {
        assert_eq!(tagged(&env, tag).unwrap(), before, "{tag} moved");
    }

    // the fix, as the message gives it
    git(&env.root, &["fetch", "-q", "--unshallow"]);
    ok(&ci(&env, &["--push", "--no-boot"], &[]));
    for tag in ["latest", "demo-stable"] {
        assert_eq!(
            tagged(&env, tag).unwrap().0,
            head,
            "{tag} did not move to HEAD"
        );
    }
}

/// A role of two arches as the workflow publishes it: the build job's `ci` builds both arches and
/// boots the arm64 one, the publish job's `ci --publish-only` pushes each output as one image
/// index of both arches and moves the release tags to those indexes, recording the commit.
#[test]
fn the_publish_job_publishes_a_two_arch_role_as_one_index_per_tag() {
    let Some(env) = booting_pipeline("release-publish-two-arch") else {
        return;
    };
    std::fs::write(env.root.join("variants/mixed.json"), TWO_ARCH_ROLE).unwrap();
    commit_all(&env.root, "a two-arch role");
    let head = git(&env.root, &["rev-parse", "HEAD"]);
    let amd64 = "localhost/standin-matchbox-base:amd64";
    env.podman.base(amd64, "amd64", &env.dir.join("fail"));
    let bases = "localhost/standin-matchbox-base:multi";
    env.podman.index(bases, &[BASE, amd64]);
    let ci = |args: &[&str]| {
        let mut cmd = env.xtask();
        cmd.args(["ci", "--engine", "podman", "--imager", OK])
            .args(["--variant", "mixed"])
            .arg("--registry")
            .arg(format!("{}/acme", env.registry.addr))
            .arg("--tree")
            .arg(&env.tree)
            .args(["--matchbox-base", bases])
            .args(args)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REF", "refs/heads/main")
            .env("GITHUB_STEP_SUMMARY", env.dir.join("summary.md"));
        run(&mut cmd)
    };
    let repo = "acme/talos-cozystack-mixed/talos";

    // the build job: both arches built, the arm64 one booted, nothing pushed
    ok(&ci(&[]));
    let text = summary(&env);
    assert!(text.contains("booted to maintenance mode"), "{text}");
    assert!(env.record("mixed").get("boot_skipped").is_none());
    assert!(env.registry.tags(repo).is_empty(), "nothing pushed");

    // the publish job
    ok(&ci(&["--publish-only"]));
    let record = env.record("mixed");
    let published = record["published"].as_array().unwrap();
    assert_eq!(published.len(), 2, "the installer and the matchbox image");
    for p in published {
        assert_eq!(p["arches"], serde_json::json!(["amd64", "arm64"]));
        let image = p["image"].as_str().unwrap();
        let repo = image.split_once('/').unwrap().1;
        let (index, digest) = env.registry.manifest(repo, "v1.13.99").expect("tagged");
        assert_eq!(
            p["digest"],
            digest.as_str(),
            "{image}: the tag names the pushed index"
        );
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let platforms: Vec<_> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(platforms, ["amd64", "arm64"], "{image}: {index}");
        assert_eq!(
            index["annotations"][REVISION],
            head.as_str(),
            "{image}: {index}"
        );
    }
    let tags = env.registry.tags(repo);
    assert!(
        tags.iter().any(|t| t.starts_with("v1.13.99-")),
        "the build-unique tag: {tags:?}"
    );
}

#[track_caller]
fn skopeo(args: &[&str]) {
    let out = run(std::process::Command::new("skopeo").args(args));
    assert_success(&out, &format!("skopeo {args:?}"));
}

/// Points `latest` and `demo-stable` at a copy of `digest` whose manifest records `revision`.
fn retag_with_revision(env: &Pipeline, digest: &str, revision: &str) {
    let layout = env.dir.join("foreign");
    let _ = std::fs::remove_dir_all(&layout);
    let oci = format!("oci:{}:x", layout.display());
    let src = format!("docker://{}/{REPO}@{digest}", env.registry.addr);
    skopeo(&["copy", "--src-tls-verify=false", &src, &oci]);
    edit_manifest(&layout, |m| {
        m["annotations"][REVISION] = revision.into();
    });
    for tag in ["latest", "demo-stable"] {
        let dest = format!("docker://{}/{REPO}:{tag}", env.registry.addr);
        skopeo(&["copy", "--dest-tls-verify=false", &oci, &dest]);
    }
}

fn strip_annotations(layout: &Path) {
    edit_manifest(layout, |m| {
        m.as_object_mut().unwrap().remove("annotations");
    });
}

/// Rewrites the single manifest of an OCI layout (new blob, index pointing at it).
fn edit_manifest(layout: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    use sha2::Digest;
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blobs = layout.join("blobs/sha256");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&old[7..])).unwrap()).unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let hex = format!("{:x}", sha2::Sha256::digest(&bytes));
    std::fs::write(blobs.join(&hex), &bytes).unwrap();
    index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(&index_path, index.to_string()).unwrap();
}

#[test]
fn the_publish_job_pushes_only_smoke_tested_recorded_outputs_then_moves_tags() {
    let Some(env) = booting_pipeline("release-publish-only") else {
        return;
    };
    let head = git(&env.root, &["rev-parse", "HEAD"]);
    // Nothing built yet: the publish job has nothing to trust.
    let out = ci(&env, &["--publish-only"], &[]);
    let err = assert_failure(&out, "ci --publish-only with nothing built");
    assert!(err.contains("build.json"), "{err}");

    // Smoke-tested without its boot (`--no-boot`): not published either.
    ok(&ci(&env, &["--no-boot"], &[]));
    assert_eq!(env.record("compute")["boot_skipped"], true);
    let out = ci(&env, &["--publish-only"], &[]);
    let err = assert_failure(&out, "ci --publish-only of a build whose boot was skipped");
    assert!(
        err.contains("`boot_skipped`: smoke passed with the boot skipped (`ci --no-boot`)"),
        "{err}"
    );
    assert!(env.registry.tags(REPO).is_empty(), "nothing pushed");

    // `ci` without --push, as the build job runs it: built, smoke-tested and booted, nothing
    // pushed.
    ok(&ci(&env, &[], &[]));
    assert!(env.record("compute").get("boot_skipped").is_none());
    assert!(env.registry.tags(REPO).is_empty());
    let installer = env.root.join("_out/compute/installer-arm64.tar");
    let good = std::fs::read(&installer).unwrap();

    // A file that is not what the record names (cut short in transit, or replaced) is refused.
    std::fs::write(&installer, &good[..good.len() / 2]).unwrap();
    let out = ci(&env, &["--publish-only", "--no-release-tags"], &[]);
    assert_failure(
        &out,
        "ci --publish-only --no-release-tags of a file cut short",
    );
    assert!(
        stdout(&out).contains("is not the file its build record names"),
        "{}",
        stdout(&out)
    );
    assert!(env.registry.tags(REPO).is_empty(), "nothing pushed");
    // its dry run refuses it the same way
    let out = ci(
        &env,
        &["--publish-only", "--no-release-tags", "--dry-run"],
        &[],
    );
    let err = assert_failure(&out, "ci --publish-only --dry-run of a file cut short");
    assert!(
        err.contains("is not the file its build record names"),
        "{err}"
    );
    std::fs::write(&installer, &good).unwrap();

    // The record names the commit it was built from: from another commit, its images would
    // record a commit they were not built from. Refused, in the dry run too; nothing pushed.
    let record = env.root.join("_out/compute/build.json");
    let recorded = std::fs::read(&record).unwrap();
    git(
        &env.root,
        &["commit", "-q", "--allow-empty", "-m", "after the build"],
    );
    for args in [&["--publish-only"][..], &["--publish-only", "--dry-run"]] {
        let out = ci(&env, args, &[]);
        let err = assert_failure(
            &out,
            &format!("ci {args:?} of a record of the commit before"),
        );
        assert!(
            err.contains(&format!(
                "`revision`: built from commit {}, but the checkout is commit",
                &head[..12]
            )),
            "{err}"
        );
    }
    assert!(env.registry.tags(REPO).is_empty(), "nothing pushed");
    git(&env.root, &["reset", "-q", "--hard", &head]);

    // A record without `revision` (as an older xtask wrote them, for a clean commit too) is not
    // called a build of uncommitted changes: it records no commit, and that is all it says.
    let mut edited: serde_json::Value = serde_json::from_slice(&recorded).unwrap();
    edited.as_object_mut().unwrap().remove("revision");
    std::fs::write(&record, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = ci(&env, &["--publish-only", "--no-release-tags"], &[]);
    let err = assert_failure(&out, "ci --publish-only of a record without revision");
    assert!(
        err.contains(&format!(
            "`revision`: it records no commit (built from uncommitted changes, outside git, or by an older xtask), but the checkout is commit {}",
            &head[..12]
        )),
        "{err}"
    );
    assert!(env.registry.tags(REPO).is_empty(), "nothing pushed");
    std::fs::write(&record, &recorded).unwrap();

    // A record that is not a build of the variant as the lock has it (here: no extensions; a
    // build from an older lock or variant file alike) is refused naming the field.
    let mut edited: serde_json::Value = serde_json::from_slice(&recorded).unwrap();
    edited["extensions"] = serde_json::json!([]);
    std::fs::write(&record, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = ci(&env, &["--publish-only", "--no-release-tags"], &[]);
    let err = assert_failure(&out, "ci --publish-only of a record without the extensions");
    assert!(
        err.contains(
            "_out/compute/build.json is not a build of variant `compute` as the lock has it now"
        ) && err.contains("extensions"),
        "{err}"
    );
    assert!(env.registry.tags(REPO).is_empty(), "nothing pushed");
    std::fs::write(&record, &recorded).unwrap();

    // Its dry run shows both stages and runs neither: nothing pushed, no record or output written.
    let outputs = env.dir.join("dry-run-outputs");
    let out = ci(
        &env,
        &["--publish-only", "--dry-run"],
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    );
    let text = ok(&out);
    for shown in [
        "# stage publish",
        "# stage release tags: v1.13.99, latest, demo-stable",
        "copy --quiet --preserve-digests",
    ] {
        assert!(text.contains(shown), "missing {shown:?}: {text}");
    }
    assert!(
        env.registry.tags(REPO).is_empty(),
        "a dry run pushed: {text}"
    );
    assert_eq!(
        std::fs::read(&record).unwrap(),
        recorded,
        "a dry run rewrote the record"
    );
    assert!(!outputs.exists(), "a dry run wrote the job's outputs");

    // Push by digest only, with the outputs the attest and sign steps read.
    let outputs = env.dir.join("outputs");
    let out = ci(
        &env,
        &["--publish-only", "--no-release-tags"],
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    );
    ok(&out);
    let written = std::fs::read_to_string(&outputs).unwrap();
    let value = |key: &str| {
        written
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {written}"))
            .to_owned()
    };
    let image = format!("{}/{REPO}", env.registry.addr);
    assert_eq!(value("installer-image"), image);
    let digest = value("installer-digest");
    assert!(
        value("images").contains(&format!("{image}@{digest}")),
        "{written}"
    );
    assert!(!value("matchbox-digest").is_empty(), "{written}");
    let tags = env.registry.tags(REPO);
    assert!(
        tags.len() == 1 && tags[0].starts_with("v1.13.99-"),
        "only the build-unique tag before signing: {tags:?}"
    );
    let (manifest, pushed) = env.registry.manifest(REPO, &tags[0]).unwrap();
    assert_eq!(pushed, digest);
    assert_eq!(manifest["annotations"][REVISION], head.as_str());

    // Then the tags, after the workflow attested and signed that digest.
    ok(&ci(&env, &["--publish-only"], &[]));
    for tag in ["v1.13.99", "latest", "demo-stable"] {
        assert_eq!(tagged(&env, tag).unwrap().1, digest, "{tag}");
    }

    // A record that smoke did not pass (a plain `build` rewrote it) is never published.
    let record_path = env.root.join("_out/compute/build.json");
    let mut record = env.record("compute");
    record["smoke_passed"] = false.into();
    std::fs::write(&record_path, record.to_string()).unwrap();
    let out = ci(&env, &["--publish-only"], &[]);
    assert_failure(
        &out,
        "ci --publish-only of a record whose smoke test failed",
    );
    assert!(
        stdout(&out).contains("`smoke_passed` is false"),
        "{}",
        stdout(&out)
    );
}

/// cosign as the tests run it: no key password, its state under `home`, and every request that
/// is not for the loopback registry sent to a closed local port, so nothing leaves the machine
/// (cosign tries to refresh Sigstore's public trust root; it warns and goes on).
fn cosign(home: &Path, args: &[&str]) -> Output {
    run(std::process::Command::new("cosign")
        .args(args)
        .env("HOME", home)
        .env("COSIGN_PASSWORD", "")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1"))
}

#[test]
fn published_images_are_signed_and_verified_offline_with_a_local_key() {
    if !have_tools(&["cosign"]) {
        return;
    }
    let Some(env) = booting_pipeline("release-signing") else {
        return;
    };
    ok(&ci(&env, &[], &[]));
    let outputs = env.dir.join("outputs");
    ok(&ci(
        &env,
        &["--publish-only", "--no-release-tags"],
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    ));
    let written = std::fs::read_to_string(&outputs).unwrap();
    let images: Vec<&str> = written
        .lines()
        .find_map(|l| l.strip_prefix("images="))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(images.len(), 2, "installer and matchbox: {written}");

    // The workflow's sign-and-verify step, with a local key instead of a keyless identity and
    // a signing config without a transparency log (none is reachable here).
    let home = env.dir.join("cosign-home");
    std::fs::create_dir_all(&home).unwrap();
    let key = env.dir.join("release");
    let out = cosign(
        &home,
        &[
            "generate-key-pair",
            "--output-key-prefix",
            key.to_str().unwrap(),
        ],
    );
    assert_success(&out, "cosign generate-key-pair");
    let config = env.dir.join("signing-config.json");
    let out = cosign(
        &home,
        &[
            "signing-config",
            "create",
            "--out",
            config.to_str().unwrap(),
        ],
    );
    assert_success(&out, "cosign signing-config create");
    let insecure = ["--allow-insecure-registry", "--allow-http-registry"];
    let private = format!("{}.key", key.display());
    let public = format!("{}.pub", key.display());
    let verify = |image: &str, public: &str| {
        let mut args = vec!["verify", "--key", public, "--insecure-ignore-tlog"];
        args.extend(insecure);
        args.push(image);
        cosign(&home, &args)
    };
    // Unsigned: verification fails.
    assert_tool_fails(
        &verify(images[0], &public),
        &format!("cosign verify of the unsigned {}", images[0]),
    );
    for image in &images {
        let mut args = vec!["sign", "--yes", "--key", &private, "--signing-config"];
        args.push(config.to_str().unwrap());
        args.extend(insecure);
        args.push(image);
        let out = cosign(&home, &args);
        assert_success(&out, &format!("cosign sign {image}"));
        let out = verify(image, &public);
        assert_success(&out, &format!("cosign verify {image}"));
        assert!(stdout(&out).contains(&image[image.find('@').unwrap() + 1..]));
    }
    // Another key does not verify.
    let other = env.dir.join("other");
    let out = cosign(
        &home,
        &[
            "generate-key-pair",
            "--output-key-prefix",
            other.to_str().unwrap(),
        ],
    );
    assert_success(&out, "cosign generate-key-pair (another key)");
    assert_tool_fails(
        &verify(images[0], &format!("{}.pub", other.display())),
        &format!("cosign verify of {} with another key", images[0]),
    );

    // The signature names the digest: a tag moved there afterwards verifies as the same image.
    ok(&ci(&env, &["--publish-only"], &[]));
    let tagged = format!("{}/{REPO}:latest", env.registry.addr);
    assert_success(
        &verify(&tagged, &public),
        &format!("cosign verify {tagged}"),
    );
}

#[test]
fn a_locked_build_runs_the_imager_only_by_the_digest_the_lock_pins() {
    let root = temp_dir("release-imager-pin");
    copy_repo_data(&root);
    pin_every_extension(&root);
    let dry_run = |extra: &[&str]| {
        let mut cmd = xtask(&root);
        cmd.args([
            "build",
            "--locked",
            "--dry-run",
            "--no-matchbox",
            "--engine",
            "podman",
        ])
        .args(extra)
        .env("CARGO_TARGET_DIR", root.join("target"));
        run(&mut cmd)
    };
    // No pin: refused, naming the field and the fix.
    let out = dry_run(&[]);
    let err = assert_failure(&out, "build --locked --dry-run with no imager pinned");
    assert!(
        err.contains("variants/extensions.lock: field `imager`: missing: a --locked build runs the imager only by the digest the lock pins"),
        "{err}"
    );
    assert!(
        err.contains("cargo xtask lock --talos-version v1.13.99"),
        "{err}"
    );

    // Pinned: that exact reference runs.
    let path = root.join("variants/extensions.lock");
    let mut lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let pinned = format!(
        "ghcr.io/siderolabs/imager:v1.13.99@sha256:{}",
        "ab".repeat(32)
    );
    lock["imager"] = pinned.clone().into();
    std::fs::write(&path, lock.to_string()).unwrap();
    let out = dry_run(&[]);
    assert_success(&out, "build --locked --dry-run with the imager pinned");
    let text = stdout(&out);
    assert!(text.contains(&format!("# imager: {pinned}\n")), "{text}");
    assert!(
        text.contains(&format!(" {pinned} --tar-to-stdout -")),
        "{text}"
    );
    // The profiles name the base installer by the lock's digest too.
    let base = format!(
        "ghcr.io/siderolabs/installer-base:v1.13.99@sha256:{}",
        "b1".repeat(32)
    );
    assert!(
        text.contains(&format!("  baseInstaller:\n    imageRef: {base}\n")),
        "{text}"
    );

    // Without the base installer's pin, a locked build refuses.
    let unpinned = lock["base_installer"].take();
    std::fs::write(&path, lock.to_string()).unwrap();
    let out = dry_run(&[]);
    let err = assert_failure(
        &out,
        "build --locked --dry-run with no base installer pinned",
    );
    assert!(
        err.contains("variants/extensions.lock: field `base_installer`: missing: a --locked build names ghcr.io/siderolabs/installer-base:v1.13.99 only by digest"),
        "{err}"
    );
    lock["base_installer"] = unpinned;

    // A pin by tag is no pin.
    lock["imager"] = "ghcr.io/siderolabs/imager:v1.13.99".into();
    std::fs::write(&path, lock.to_string()).unwrap();
    let out = dry_run(&[]);
    let err = assert_failure(
        &out,
        "build --locked --dry-run with the imager pinned by tag only",
    );
    assert!(err.contains("not pinned by digest"), "{err}");
}

/// `build --dry-run --push` of `compute` in `root` with git alone on PATH, outside the workflow
/// (no GITHUB_REF or GITHUB_SHA) and with `vars`: the dry run checks the default branch as the
/// real run does before any release tag moves.
fn dry_run_release(root: &Path, vars: &[(&str, &str)]) -> Output {
    let mut cmd = xtask(root);
    cmd.env("PATH", git_only_path())
        .env_remove("GITHUB_REF")
        .env_remove("GITHUB_SHA")
        .env_remove("XTASK_DEFAULT_BRANCH")
        .args(["build", "--dry-run", "--push", "--registry", "ghcr.io/acme"])
        .args(["--variant", "compute"])
        .envs(vars.iter().copied());
    run(&mut cmd)
}

/// A repository whose only branch is `master`, with no `origin`: the refs of the default branch
/// that do not exist are reported as missing (not as commits outside the history, whose fix,
/// fetching the full history, would not help), with the fix that does; the default branch is
/// taken from `origin/HEAD` once there is one.
#[test]
fn release_tags_name_a_missing_default_branch_as_missing() {
    let root = temp_dir("release-master-only");
    copy_repo_data(&root);
    git(&root, &["init", "-q", "-b", "master"]);
    commit_all(&root, "the repository's files");

    let out = dry_run_release(&root, &[]);
    let err = assert_failure(&out, "build --dry-run --push on master, no origin");
    assert!(
        err.contains("whether this run's commit")
            && err.contains("is on the default branch main cannot be established: this checkout has no refs/remotes/origin/main and no refs/heads/main"),
        "{err}"
    );
    assert!(
        err.contains(
            "fix: set XTASK_DEFAULT_BRANCH to the branch releases come from, or fetch origin"
        ),
        "{err}"
    );
    assert!(!err.contains("not in this checkout's history"), "{err}");
    assert!(!err.contains("fetch-depth"), "{err}");

    // named empty (what the workflow passes when the event names no repository): as unset
    let out = dry_run_release(&root, &[("XTASK_DEFAULT_BRANCH", "")]);
    let err = assert_failure(&out, "build --dry-run --push on master, empty name");
    assert!(
        err.contains("is on the default branch main cannot be established"),
        "{err}"
    );

    // named: master's own commit moves the tags
    let out = dry_run_release(&root, &[("XTASK_DEFAULT_BRANCH", "master")]);
    assert_success(
        &out,
        "build --dry-run --push on master, XTASK_DEFAULT_BRANCH=master",
    );
    assert!(
        stdout(&out).contains("/talos:v1.13.99"),
        "the version tag shown moving: {}",
        stdout(&out)
    );

    // a topic branch without origin: not on master, and no word of origin/master's history
    git(&root, &["checkout", "-q", "-b", "topic"]);
    git(
        &root,
        &["commit", "-q", "--allow-empty", "-m", "unreviewed"],
    );
    let out = dry_run_release(&root, &[("XTASK_DEFAULT_BRANCH", "master")]);
    let err = assert_failure(&out, "build --dry-run --push on a topic branch, no origin");
    assert!(
        err.contains("which is not on the default branch master (refs/heads/master; this checkout has no refs/remotes/origin/master)"),
        "{err}"
    );

    // with an origin whose HEAD is master, master is the default branch without being named
    let origin = root.join("_out/origin.git");
    git(
        &root,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "master",
            origin.to_str().unwrap(),
        ],
    );
    git(
        &root,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&root, &["push", "-q", "origin", "master"]);
    git(&root, &["fetch", "-q", "origin"]);
    git(&root, &["remote", "set-head", "origin", "master"]);
    let out = dry_run_release(&root, &[]);
    let err = assert_failure(
        &out,
        "build --dry-run --push on a topic branch, origin/HEAD master",
    );
    assert!(
        err.contains("which is not on the default branch master (refs/remotes/origin/master, refs/heads/master)"),
        "{err}"
    );
    git(&root, &["checkout", "-q", "master"]);
    let out = dry_run_release(&root, &[]);
    assert_success(&out, "build --dry-run --push on master, origin/HEAD master");
    let out = dry_run_release(&root, &[("XTASK_DEFAULT_BRANCH", "")]);
    assert_success(
        &out,
        "build --dry-run --push on master, origin/HEAD master, empty name",
    );

    // a named branch wins over origin/HEAD
    let out = dry_run_release(&root, &[("XTASK_DEFAULT_BRANCH", "trunk")]);
    let err = assert_failure(
        &out,
        "build --dry-run --push on master, XTASK_DEFAULT_BRANCH=trunk",
    );
    assert!(err.contains("default branch trunk"), "{err}");
}

/// The pages say which refs count as the default branch as `check_release_ref` decides it: a tag
/// run's commit must be in `origin/<default>` (a local branch of that name proves nothing about
/// what was reviewed); only other runs count the local `<default>` too.
#[test]
fn the_docs_say_a_tag_run_counts_origin_only() {
    let page = |name: &str| {
        let text = std::fs::read_to_string(repo_root().join("docs").join(name)).unwrap();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let release = page("release.md");
    assert!(
        release.contains("a tag run's commit must be in `origin/<default>`, any other run's in `origin/<default>` or the local `<default>`"),
        "docs/release.md, the table of verdicts"
    );
    assert!(
        release.contains("A tag run counts `origin/<default>` only"),
        "docs/release.md, release tags from the default branch only"
    );
    let smoke = page("smoke.md");
    assert!(
        smoke.contains("for a tag push, `origin/<default>`; for any other run, `origin/<default>` or the local `<default>`"),
        "docs/smoke.md, after the table of stages"
    );
    for (name, text) in [("release.md", &release), ("smoke.md", &smoke)] {
        assert!(
            text.contains("the branch `origin/HEAD` names"),
            "docs/{name}: the default branch without XTASK_DEFAULT_BRANCH"
        );
    }
}
