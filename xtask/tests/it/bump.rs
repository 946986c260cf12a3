//! A Talos or upstream bump changes data files, not tests. In a copy of the repository the
//! pins are moved the way a real bump moves them (docs/lock.md): the lock names another Talos
//! release, every extension a new tag and digest, the conformance harness and the imager module
//! require that release, and `patches/upstream.json` names another upstream commit. Then:
//!
//! - the offline commands plan, render, dry-run the build and derive the schematic and the
//!   machine config for the new release, and none of it still names the old one;
//! - this very test binary runs again inside the copy (`XTASK_TEST_REPO`), every module that
//!   needs no network, and passes, and so do the crates' unit tests, built in the copy: no test
//!   tracks today's pins.
//!
//! `tidy::no_test_names_the_pinned_talos_version` keeps it so.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::support::*;

/// Modules the copy's run leaves out, and why: each needs the network (Go modules of the new
/// release from the module proxy) or is this test.
const NEED_THE_NETWORK: &[(&str, &str)] = &[
    ("bump::", "this test"),
    (
        "conformance::",
        "builds the harness at the new release: its Go modules come from the network",
    ),
    (
        "docs::",
        "runs the docs' `config` and `schematic` commands, which judge with that harness",
    ),
    (
        "imager::",
        "builds the imager at the new release: its Go modules come from the network",
    ),
];

/// Modules the copy's run also leaves out unless `XTASK_BUMP_ALL` is set, to keep the suite's
/// wall time: they run only on the fixture repository and benches of their own
/// (`Pipeline::setup`, `copy_repo_data`), so no bumped file reaches them, and tidy checks
/// their sources. With all of them the copy's run takes about five minutes more.
const FIXTURE_ONLY: &[&str] = &[
    "build::",
    "ci::",
    "faults::",
    "release::",
    "smoke::",
    "targets::",
];

/// The files git tracks (and new ones not ignored), copied into `dest`.
fn copy_checkout(dest: &Path) -> bool {
    let out = run(Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo_root()));
    if !out.status.success() {
        skipped("not a git checkout");
        return false;
    }
    for file in stdout(&out).split('\0').filter(|f| !f.is_empty()) {
        let from = repo_root().join(file);
        if !from.is_file() {
            continue; // deleted in the work tree, not yet in the index
        }
        let to = dest.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    true
}

/// `9.3.2` -> `9.3.3`, `v0.25.1` -> `v0.25.2`: a new version of an extension.
fn next_version(version: &str) -> String {
    let (head, last) = version.rsplit_once('.').unwrap_or(("", version));
    let n: u64 = last.parse().unwrap_or(0);
    if head.is_empty() {
        format!("{}", n + 1)
    } else {
        format!("{head}.{}", n + 1)
    }
}

/// A digest no real image has, different for every name.
fn new_digest(name: &str) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(format!("bump {name}")))
}

/// A reference as the lock holds it after `cargo xtask lock --talos-version <new>`: the
/// extension at its next version, built for `new` when it is built per release, by a new digest
/// if it had one.
fn bumped_reference(name: &str, reference: &str, old: &str, new: &str) -> String {
    let (image_tag, digest) = match reference.split_once('@') {
        Some((image_tag, _)) => (image_tag, Some(new_digest(name))),
        None => (reference, None),
    };
    let (image, tag) = image_tag.rsplit_once(':').unwrap();
    let tag = if tag == old {
        new.to_owned()
    } else if let Some(version) = tag.strip_suffix(&format!("-{old}")) {
        format!("{}-{new}", next_version(version))
    } else {
        next_version(tag)
    };
    match digest {
        Some(digest) => format!("{image}:{tag}@{digest}"),
        None => format!("{image}:{tag}"),
    }
}

/// The release after `old` (`v1.2.3` -> `v1.2.4`): derived, so it never is today's pin.
fn next_release(old: &str) -> String {
    let core = old.split('-').next().unwrap();
    format!("v{}", next_version(core.trim_start_matches('v')))
}

/// Moves every pin of the copy at `root` from `old` to `new`; returns the files it changed.
fn bump(root: &Path, old: &str, new: &str) -> Vec<&'static str> {
    let path = root.join("variants/extensions.lock");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    lock["talos_version"] = new.into();
    for (name, reference) in lock.as_object_mut().unwrap().iter_mut() {
        match reference {
            Value::String(text)
                if name.ends_with("_image") || name == "imager" || name == "base_installer" =>
            {
                *text = bumped_reference(name, text, old, new);
            }
            Value::Object(entries) => {
                for (entry, reference) in entries.iter_mut() {
                    let text = reference.as_str().unwrap().to_owned();
                    *reference = bumped_reference(entry, &text, old, new).into();
                }
            }
            _ => {}
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&lock).unwrap() + "\n").unwrap();

    // the Go modules that judge and build at the pinned release (go.sum would follow from
    // `go mod tidy`, with network; the copy's run leaves out the tests that build them)
    for module in ["conformance/go.mod", "xtask/tests/imager/go.mod"] {
        let path = root.join(module);
        let text = std::fs::read_to_string(&path).unwrap();
        let bumped = text
            .lines()
            .map(|line| {
                if line.contains("github.com/siderolabs/talos") && line.contains(old) {
                    line.replace(old, new)
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        assert_ne!(text, bumped, "{module} requires Talos {old}");
        std::fs::write(&path, bumped).unwrap();
    }

    // an upstream bump: another tag and commit of CozyStack
    let path = root.join("patches/upstream.json");
    let mut pin: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    pin["tag"] = format!("{}-bumped", pin["tag"].as_str().unwrap()).into();
    pin["commit"] = "b0".repeat(20).into();
    std::fs::write(&path, serde_json::to_string_pretty(&pin).unwrap() + "\n").unwrap();

    vec![
        "variants/extensions.lock",
        "conformance/go.mod",
        "xtask/tests/imager/go.mod",
        "patches/upstream.json",
    ]
}

#[test]
fn bumped_references_move_version_tag_and_digest() {
    let (old, new) = ("v1.2.3", "v1.2.4");
    assert_eq!(next_release(old), new);
    assert_eq!(next_release("v1.2.9"), "v1.2.10");
    assert_eq!(
        bumped_reference(
            "drbd",
            "ghcr.io/siderolabs/drbd:9.3.2-v1.2.3@sha256:aa",
            old,
            new
        ),
        format!(
            "ghcr.io/siderolabs/drbd:9.3.3-v1.2.4@{}",
            new_digest("drbd")
        )
    );
    assert_eq!(
        bumped_reference("spin", "ghcr.io/siderolabs/spin:v0.25.1", old, new),
        "ghcr.io/siderolabs/spin:v0.25.2"
    );
    assert_eq!(
        bumped_reference(
            "extensions_image",
            "ghcr.io/siderolabs/extensions:v1.2.3",
            old,
            new
        ),
        "ghcr.io/siderolabs/extensions:v1.2.4"
    );
}

#[test]
fn a_talos_and_upstream_bump_changes_data_files_not_tests() {
    if !have_tools(&["git"]) {
        return;
    }
    let started = Instant::now();
    let dir = temp_dir("bump");
    let root = dir.join("repo");
    if !copy_checkout(&root) {
        return;
    }
    let old = live_talos_version();
    let new = next_release(&old);
    let changed = bump(&root, &old, &new);

    // the offline commands, on the copy's own (bumped) data
    let target = dir.join("target");
    let xtask = |args: &[&str]| {
        let out = run(xtask(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("TS_AUTHKEY")
            .args(args));
        assert_success(&out, &format!("xtask {args:?}"));
        (stdout(&out), stderr(&out))
    };
    let both = |args: &[&str]| {
        let (out, err) = xtask(args);
        format!("{out}{err}")
    };
    let (plan_json, plan_warnings) = xtask(&["plan", "--json", "--registry", "ghcr.io/acme"]);
    let plan: Value = serde_json::from_str(&plan_json).unwrap();
    assert_eq!(plan["talos_version"], new.as_str());
    for v in plan["variants"].as_array().unwrap() {
        assert!(v["tag"].as_str().unwrap().ends_with(&new), "{}", v["tag"]);
        for p in v["profiles"].as_array().unwrap() {
            assert_eq!(p["profile"]["version"], new.as_str(), "{p}");
        }
    }
    let profiles = dir.join("profiles");
    xtask(&["profiles", "--out", profiles.to_str().unwrap()]);
    let mut rendered = String::new();
    for variant in std::fs::read_dir(&profiles).unwrap() {
        for file in std::fs::read_dir(variant.unwrap().path()).unwrap() {
            rendered += &std::fs::read_to_string(file.unwrap().path()).unwrap();
        }
    }
    assert!(rendered.contains(&format!("version: {new}")), "{rendered}");
    let outputs = [
        plan_json + &plan_warnings,
        rendered,
        both(&["build", "--dry-run", "--registry", "ghcr.io/acme"]),
        // --no-judge: the judge is the conformance harness at the new release (network)
        both(&["schematic", "--variant", "compute", "--json", "--no-judge"]),
        both(&["config", "--variant", "compute", "--no-judge"]),
    ];
    assert!(
        outputs[2].contains(&format!("ghcr.io/siderolabs/imager:{new}")),
        "{}",
        outputs[2]
    );
    assert!(outputs[3].contains(&new), "{}", outputs[3]);
    for (i, text) in outputs.iter().enumerate() {
        assert!(
            !text.contains(&old),
            "output {i} still names the old release {old}:\n{text}"
        );
    }
    let commands_s = started.elapsed().as_secs_f64();

    // the tests themselves, inside the copy: this binary, every module that needs no network
    let mut suite = Command::new(std::env::current_exe().unwrap());
    for (module, _why) in NEED_THE_NETWORK {
        suite.args(["--skip", module]);
    }
    if std::env::var_os("XTASK_BUMP_ALL").is_none() {
        for module in FIXTURE_ONLY {
            suite.args(["--skip", module]);
        }
    }
    suite
        .env("XTASK_TEST_REPO", &root)
        .env("XTASK_TEST_TMPDIR", dir.join("tmp"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("TS_AUTHKEY");
    // how many it must run: a suite that ran none would pass as well
    let listed = stdout(&run(Command::new(suite.get_program())
        .args(suite.get_args())
        .arg("--list")))
    .lines()
    .filter(|l| l.ends_with(": test"))
    .count();
    let out = run(&mut suite);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert_success(
        &out,
        &format!(
            "after a bump of {changed:?} from {old} to {new}, tests fail: a test tracks the live \
             pins (give it fixture data, xtask/tests/fixtures/repo/README.md)"
        ),
    );
    let passed = report
        .lines()
        .find(|l| l.starts_with("test result: ok."))
        .unwrap_or_default()
        .to_owned();
    assert!(
        listed > 50 && passed.starts_with(&format!("test result: ok. {listed} passed;")),
        "the suite in the copy ran other than the {listed} tests it lists: {passed}"
    );
    // its skipped tests are skipped in this run too: say so past the capture
    for line in report.lines().filter(|l| l.starts_with("SKIPPED ")) {
        let _ = writeln!(std::io::stderr(), "{line} (in the bumped copy)");
    }

    // and the crates' unit tests, built in the copy (some read its files: the lock against the
    // harness's go.mod, the change rules); into the copy's own target directory, as the
    // running `cargo test` holds this one's
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let units = |extra: &[&str]| {
        let out = run(Command::new(&cargo)
            .args(["test", "--workspace", "--lib", "--offline", "--locked"])
            .args(extra)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("XTASK_ROOT")
            .env_remove("TS_AUTHKEY"));
        assert_success(
            &out,
            &format!("after a bump of {changed:?} from {old} to {new}, unit tests fail: a unit test tracks the live pins"),
        );
        stdout(&out)
    };
    let unit_listed = units(&["--", "--list"])
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count();
    let unit_passed: usize = units(&[])
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        unit_listed > 50 && unit_passed == unit_listed,
        "the unit tests in the copy ran {unit_passed} of the {unit_listed} they list"
    );
    // the copy and its suite's scratch directories (~200 MB) go; on a failure they stay to inspect
    let _ = std::fs::remove_dir_all(&dir);
    // past the harness's capture, like a SKIPPED line: the time this test adds is worth seeing
    let _ = writeln!(
        std::io::stderr(),
        "bump {old} -> {new} of {changed:?}: offline commands {commands_s:.1}s, suite in the copy \
         ({passed}) and its {unit_passed} unit tests {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
}
