//! Two git worktrees sharing one CARGO_TARGET_DIR share one xtask binary; each must still act on
//! its own files. The repository root is found when xtask runs (the CARGO_MANIFEST_DIR that
//! `cargo run` sets, else the checkout around the current directory), never baked in when it
//! is compiled: with the old `env!("CARGO_MANIFEST_DIR")`, worktree B planned A's variants.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// What `plan --json` says variant `compute` is.
#[track_caller]
fn compute_description(out: &std::process::Output) -> String {
    assert_success(out, "plan --json");
    let plan: Value = serde_json::from_str(&stdout(out)).unwrap();
    let compute = plan["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "compute")
        .expect("a compute variant");
    compute["description"].as_str().unwrap().to_owned()
}

/// A command that sees none of the test harness's own cargo and xtask variables.
fn clean(mut cmd: Command, target: &Path) -> Command {
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_") || var.starts_with("XTASK_") || var.starts_with("GIT_") {
            cmd.env_remove(&*var);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true");
    cmd
}

#[test]
fn worktrees_sharing_a_target_dir_each_plan_their_own_variants() {
    if !have_tools(&["git"]) {
        return;
    }
    let tmp = temp_dir("worktrees");
    let (a, b, target) = (tmp.join("a"), tmp.join("b"), tmp.join("target"));
    let root = repo_root();
    // what `cargo xtask` needs to build and plan: the workspace, xtask's crates, and data (the
    // fixture's: this test is about finding the root, not about today's pins)
    for dir in [".cargo", "xtask"] {
        copy_dir(&root.join(dir), &a.join(dir));
    }
    copy_repo_data(&a);
    for file in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        if root.join(file).is_file() {
            std::fs::copy(root.join(file), a.join(file)).unwrap();
        }
    }
    std::fs::write(a.join(".gitignore"), "/target\n").unwrap();
    git(&a, &["init", "-q", "-b", "main"]);
    git(&a, &["add", "-A"]);
    git(&a, &["commit", "-q", "-m", "a"]);
    git(
        &a,
        &["worktree", "add", "-q", "-b", "b", b.to_str().unwrap()],
    );
    let file = b.join("variants/compute.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut variant: Value = serde_json::from_str(&text).unwrap();
    let original = variant["description"].as_str().unwrap().to_owned();
    variant["description"] = "compute, as changed in worktree B".into();
    std::fs::write(&file, serde_json::to_string_pretty(&variant).unwrap()).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let plan_in = |dir: &Path| {
        let mut cmd = clean(Command::new(&cargo), &target);
        cmd.args(["xtask", "plan", "--json"]).current_dir(dir);
        run(&mut cmd)
    };
    assert_eq!(compute_description(&plan_in(&a)), original, "worktree A");
    // B reuses the binary A built (same sources, same target dir) and still reads B's files
    assert_eq!(
        compute_description(&plan_in(&b)),
        "compute, as changed in worktree B",
        "worktree B"
    );
    assert_eq!(
        compute_description(&plan_in(&a)),
        original,
        "A again, after B"
    );

    // The binary run directly, without cargo: the checkout around the current directory.
    let binary = target.join("debug/xtask");
    for (dir, want) in [
        (b.join("variants"), "compute, as changed in worktree B"),
        (a.join("xtask/src"), original.as_str()),
    ] {
        let mut cmd = clean(Command::new(&binary), &target);
        cmd.args(["plan", "--json"]).current_dir(&dir);
        assert_eq!(
            compute_description(&run(&mut cmd)),
            want,
            "{}",
            dir.display()
        );
    }
}
