//! A Talos bump changes data files, not code: a copy of the repository whose lock names another
//! Talos release plans, renders profiles, dry-runs the build, and derives the schematic and the
//! machine config for that release, and none of it still names the old one.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// The version the repository pins today, read from its lock (never written into a test).
fn pinned_version(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("variants/extensions.lock")).unwrap();
    let lock: Value = serde_json::from_str(&text).unwrap();
    lock["talos_version"].as_str().unwrap().to_owned()
}

/// Rewrites the lock of `root` for Talos `to`: the release, the extensions image and every
/// extension tag built for a release (`2.4.3-v1.13.6`); digests stay (well-formed stand-ins).
fn bump_lock(root: &Path, from: &str, to: &str) {
    let path = root.join("variants/extensions.lock");
    let text = std::fs::read_to_string(&path).unwrap();
    let bumped = text
        .replace(
            &format!("\"talos_version\": \"{from}\""),
            &format!("\"talos_version\": \"{to}\""),
        )
        .replace(&format!(":{from}"), &format!(":{to}"))
        .replace(&format!("-{from}@"), &format!("-{to}@"))
        .replace(&format!("-{from}\""), &format!("-{to}\""));
    assert_ne!(text, bumped, "the lock names {from}");
    std::fs::write(&path, bumped).unwrap();
}

#[test]
fn a_talos_bump_in_the_lock_flows_through_every_offline_command() {
    let root = temp_dir("bump");
    copy_repo_data(&root);
    let old = pinned_version(&repo_root());
    let new = "v1.13.9";
    assert_ne!(old, new, "pick another release to bump to");
    bump_lock(&root, &old, new);
    // no pinned upstream tree is cached here: the version comes from the lock alone
    let target = root.join("target");
    let xtask = |args: &[&str]| {
        let out = run(xtask(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("TS_AUTHKEY")
            .args(args));
        assert!(
            out.status.success(),
            "xtask {args:?} failed:\n{}",
            stderr(&out)
        );
        (stdout(&out), stderr(&out))
    };
    let both = |args: &[&str]| {
        let (out, err) = xtask(args);
        format!("{out}{err}")
    };

    let (plan_json, plan_warnings) = xtask(&["plan", "--json", "--registry", "ghcr.io/acme"]);
    let plan: Value = serde_json::from_str(&plan_json).unwrap();
    assert_eq!(plan["talos_version"], new);
    for v in plan["variants"].as_array().unwrap() {
        assert!(v["tag"].as_str().unwrap().ends_with(new), "{}", v["tag"]);
        for p in v["profiles"].as_array().unwrap() {
            assert_eq!(p["profile"]["version"], new, "{p}");
        }
    }

    let profiles = root.join("profiles");
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
        both(&["schematic", "--variant", "compute", "--json"]),
        both(&["config", "--variant", "compute"]),
    ];
    assert!(
        outputs[2].contains(&format!("ghcr.io/siderolabs/imager:{new}")),
        "{}",
        outputs[2]
    );
    assert!(outputs[3].contains(new), "{}", outputs[3]);
    for (i, text) in outputs.iter().enumerate() {
        assert!(
            !text.contains(&old),
            "output {i} still names the old release {old}:\n{text}"
        );
    }
}
