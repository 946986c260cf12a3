//! `cargo xtask plan` through the real binary: the JSON contract, adding a role by adding a
//! file, and errors for bad variant files.

use crate::support::*;
use serde_json::Value;

fn plan_json(root: &std::path::Path, extra: &[&str]) -> Value {
    let out = run(xtask(root).arg("plan").arg("--json").args(extra));
    assert_success(&out, &format!("plan --json {extra:?}"));
    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON")
}

#[test]
fn plan_json_lists_both_roles_and_only_gateway_has_tailscale() {
    let plan = plan_json(&fixture_root(), &["--registry", "ghcr.io/acme"]);
    assert_eq!(plan["talos_version"], "v1.13.99");
    let variants = plan["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["compute", "gateway"]);
    for v in variants {
        assert_eq!(v["arch"], "arm64");
        let exts: Vec<&str> = strings(&v["extensions"], "");
        let profiles = v["profiles"].as_array().unwrap();
        assert!(!profiles.is_empty());
        for p in profiles {
            assert!(p["kind"].is_string());
            assert_eq!(p["profile"]["arch"], "arm64", "{p}");
            let refs = p["profile"]["input"]["systemExtensions"]
                .as_array()
                .unwrap();
            assert_eq!(refs.len(), exts.len());
            let has_tailscale = refs
                .iter()
                .any(|r| r["imageRef"].as_str().unwrap().contains("/tailscale:"));
            assert_eq!(has_tailscale, v["name"] == "gateway", "{}: {p}", v["name"]);
        }
        match v["name"].as_str().unwrap() {
            "compute" => {
                assert_eq!(exts, ["drbd", "zfs", "spin"]);
                assert_eq!(v["image"], "ghcr.io/acme/talos-cozystack-spin-only/talos");
            }
            _ => {
                assert_eq!(exts, ["drbd", "zfs", "spin", "tailscale"]);
                assert_eq!(
                    v["image"],
                    "ghcr.io/acme/talos-cozystack-spin-tailscale/talos"
                );
            }
        }
    }
}

#[test]
fn registry_defaults_to_the_github_owner() {
    let out = run(xtask(&fixture_root())
        .args(["plan", "--json", "--variant", "gateway"])
        .env("GITHUB_REPOSITORY_OWNER", "Acme"));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["variants"][0]["image"],
        "ghcr.io/acme/talos-cozystack-spin-tailscale/talos"
    );
}

#[test]
fn adding_a_role_is_adding_a_file() {
    let root = temp_dir("plan-third-variant");
    copy_repo_data(&root);
    std::fs::write(
        root.join("variants/storage.json"),
        r#"{"name": "storage", "description": "storage only", "arch": "arm64",
            "extensions": ["drbd", "zfs"], "repository": "talos-cozystack-storage/talos",
            "outputs": ["installer", "nocloud"]}"#,
    )
    .unwrap();
    let plan = plan_json(&root, &[]);
    let names: Vec<&str> = strings(&plan["variants"], "/name");
    assert_eq!(names, ["compute", "gateway", "storage"]);
    let storage = &plan["variants"][2];
    let kinds: Vec<&str> = strings(&storage["profiles"], "/kind");
    assert_eq!(kinds, ["installer", "nocloud"]);
    assert_eq!(storage["profiles"][1]["profile"]["platform"], "nocloud");
    assert_eq!(
        storage["profiles"][1]["profile"]["output"]["imageOptions"]["diskSize"],
        1306525696u64
    );
}

#[test]
fn a_typo_in_a_variant_file_names_the_file_and_field() {
    let root = temp_dir("plan-typo");
    copy_repo_data(&root);
    let path = root.join("variants/gateway.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"extensions\"", "\"extentions\"");
    std::fs::write(&path, text).unwrap();
    let broken = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&broken)
        .unwrap()
        .replace("\"arm64\"", "\"aarch64\"");
    std::fs::write(&broken, text).unwrap();

    let out = run(xtask(&root).args(["plan", "--json"]));
    assert_failure(&out, "plan --json of invalid variants");
    assert!(out.stdout.is_empty(), "no partial plan on stdout");
    let err = stderr(&out);
    assert!(err.contains("invalid variants: 3 problems"), "{err}");
    assert!(
        err.contains("variants/gateway.json: field `extentions`: unknown field"),
        "{err}"
    );
    assert!(err.contains("did you mean `extensions`?"), "{err}");
    assert!(
        err.contains("variants/gateway.json: field `extensions`: missing required field"),
        "{err}"
    );
    assert!(
        err.contains("variants/compute.json: field `arch` = \"aarch64\": unknown architecture"),
        "{err}"
    );
}

#[test]
fn a_repository_with_the_registry_in_it_is_refused_not_prefixed_twice() {
    let root = temp_dir("plan-repository-host");
    copy_repo_data(&root);
    std::fs::write(
        root.join("variants/storage.json"),
        r#"{"name": "storage", "description": "storage only", "arch": "arm64",
            "extensions": ["drbd", "zfs"], "repository": "ghcr.io/acme/storage/talos"}"#,
    )
    .unwrap();
    let out = run(xtask(&root).args(["plan", "--registry", "ghcr.io/acme"]));
    let err = assert_failure(
        &out,
        "plan of a variant whose repository names the registry",
    );
    assert!(
        !stdout(&out).contains("ghcr.io/acme/ghcr.io/acme"),
        "{}",
        stdout(&out)
    );
    assert!(
        err.contains("variants/storage.json: field `repository` = \"ghcr.io/acme/storage/talos\": starts with what looks like the registry host `ghcr.io`"),
        "{err}"
    );
    assert!(
        err.contains("fix: drop the host and the owner, e.g. \"storage/talos\"; they come from --registry or REGISTRY"),
        "{err}"
    );
}

#[test]
fn x86_firmware_under_extensions_is_refused_for_arm64() {
    let root = temp_dir("plan-x86-extension");
    copy_repo_data(&root);
    let path = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"spin\"]", "\"spin\", \"amd-ucode\"]");
    std::fs::write(&path, text).unwrap();
    // the lock has it, so nothing else stands in the way
    let lock = root.join("variants/extensions.lock");
    let text = std::fs::read_to_string(&lock).unwrap().replace(
        "  \"extensions\": {\n",
        "  \"extensions\": {\n    \"amd-ucode\": \"ghcr.io/siderolabs/amd-ucode:20250101\",\n",
    );
    std::fs::write(&lock, text).unwrap();
    let out = run(xtask(&root).args(["plan", "--variant", "compute"]));
    let err = assert_failure(&out, "plan of an arm64 role with amd-ucode in `extensions`");
    assert!(err.contains("invalid variants: 1 problem\n"), "{err}");
    assert!(
        err.contains("variants/compute.json: field `extensions[3]` = \"amd-ucode\": x86-only firmware in an arm64 variant"),
        "{err}"
    );
    assert!(
        err.contains("fix: remove \"amd-ucode\": it is firmware for x86 CPUs or GPUs"),
        "{err}"
    );
}

#[test]
fn the_repository_rule_docs_variants_states_is_the_one_plan_enforces() {
    // plan: another target of the role shares its repository; the same target does not
    let root = temp_dir("plan-shared-repository");
    copy_repo_data(&root);
    let compute = std::fs::read_to_string(root.join("variants/compute.json")).unwrap();
    let aws = compute
        .replace("\"compute\"", "\"compute-aws\"")
        .replace("\"arch\"", "\"platform\": \"aws\", \"arch\"")
        .replace("\"kernel\", \"initramfs\", \"metal\"", "\"disk\"");
    std::fs::write(root.join("variants/compute-aws.json"), aws).unwrap();
    assert_success(
        &run(xtask(&root).args(["plan", "--variant", "compute-aws"])),
        "plan of two targets sharing a repository",
    );
    std::fs::write(
        root.join("variants/compute2.json"),
        compute.replace("\"compute\"", "\"compute2\""),
    )
    .unwrap();
    let out = run(xtask(&root).args(["plan"]));
    let err = assert_failure(
        &out,
        "plan of two files for one target sharing a repository",
    );
    assert!(
        err.contains("variants/compute2.json: field `repository` = \"talos-cozystack-spin-only/talos\": also published by variants/compute.json, with the same tags (<talos>)"),
        "{err}"
    );

    // the page's `repository` row says so, not that no two variants may share one
    let page = std::fs::read_to_string(repo_root().join("docs/variants.md")).unwrap();
    let row = page
        .lines()
        .find(|l| l.starts_with("| `repository` |"))
        .expect("docs/variants.md has a `repository` row");
    assert!(
        row.contains("Two variants for the same target (platform and overlay) may not publish to the same repository")
            && row.contains("Roles for different targets may share a repository: their tags differ"),
        "{row}"
    );
    assert!(!row.contains("No two variants may publish"), "{row}");
}

#[test]
fn unknown_variant_selection_is_an_error() {
    let out = run(xtask(&fixture_root()).args(["plan", "--variant", "nope"]));
    let err = assert_usage(&out, "plan --variant nope");
    assert!(
        err.contains("unknown variant `nope`: the variants are compute, gateway"),
        "{err}"
    );
}

#[test]
fn human_plan_is_a_table() {
    let out = run(xtask(&fixture_root()).args(["plan", "--registry", "ghcr.io/acme"]));
    assert_success(&out, "plan --registry ghcr.io/acme");
    let text = stdout(&out);
    assert!(
        text.starts_with("Talos v1.13.99, from "),
        "the Talos version and where it was read come first: {text}"
    );
    assert!(
        text.contains("VARIANT  ARCH   TARGET  EXTENSIONS"),
        "{text}"
    );
    assert!(text.contains("gateway  arm64  metal   drbd zfs spin tailscale  ghcr.io/acme/talos-cozystack-spin-tailscale/talos:v1.13.99"), "{text}");
    // warnings (the fixture's unpinned entries) go to stderr, as every subcommand's do
    assert!(!text.contains("warning:"), "{text}");
    assert!(
        stderr(&out).contains("warning: extension `spin`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_multi_arch_plan_publishes_the_matchbox_image_as_an_index_of_its_arches() {
    let root = temp_dir("plan-multi-arch-matchbox");
    copy_repo_data(&root);
    write_netboot_role(&root);
    let out =
        run(xtask(&root).args(["plan", "--variant", "netboot", "--registry", "ghcr.io/acme"]));
    assert_success(&out, "plan --variant netboot --registry ghcr.io/acme");
    let text = stdout(&out);
    assert!(
        text.contains("  publish   one image index per tag (linux/arm64, linux/amd64): ghcr.io/acme/talos-cozystack-netboot/talos:v1.13.99, ghcr.io/acme/talos-cozystack-netboot/matchbox:v1.13.99\n"),
        "the installer and the matchbox image are each one index of the arches, in the file's order: {text}"
    );
    assert!(!text.contains("arm64 kernel"), "{text}");
    let out = run(xtask(&root).args([
        "plan",
        "--json",
        "--variant",
        "netboot",
        "--registry",
        "ghcr.io/acme",
    ]));
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let netboot = &plan["variants"][0];
    assert_eq!(
        netboot["matchbox_image"],
        "ghcr.io/acme/talos-cozystack-netboot/matchbox"
    );
    assert_eq!(
        strings(&netboot["target"]["arches"], ""),
        ["arm64", "amd64"],
        "the arches of both indexes"
    );
}

#[test]
fn every_offline_problem_is_reported_in_one_run() {
    let root = temp_dir("plan-all-at-once");
    copy_repo_data(&root);
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    // a name that does not match the file, the gateway's repository, a misspelt extension
    let text = text
        .replace("\"name\": \"compute\"", "\"name\": \"compute2\"")
        .replace("spin-only", "spin-tailscale")
        .replace("\"drbd\", \"zfs\"", "\"drdb\", \"zfs\"");
    std::fs::write(&compute, text).unwrap();
    let lock = root.join("variants/extensions.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(
        &lock,
        text.replace(
            "\"talos_version\": \"v1.13.99\"",
            "\"talos_version\": \"1.13.6\"",
        ),
    )
    .unwrap();

    // every command that reads both, dry runs too: each used to stop at the variants
    for command in [
        &["plan"][..],
        &["build", "--dry-run"],
        &["ci", "--dry-run"],
        &["schematic"],
        &["config", "--variant", "gateway"],
        &["smoke", "check"],
    ] {
        let out = run(xtask(&root).args(command));
        let err = assert_failure(&out, &format!("{command:?} of invalid variants and lock"));
        assert_all_four(&err);
    }
}

fn assert_all_four(err: &str) {
    assert!(
        err.contains("invalid variants and lock file: 4 problems"),
        "{err}"
    );
    assert!(
        err.contains("variants/compute.json: field `name` = \"compute2\": does not match"),
        "{err}"
    );
    assert!(
        err.contains("variants/gateway.json: field `repository`"),
        "{err}"
    );
    assert!(
        err.contains("variants/compute.json: field `extensions[0]` = \"drdb\": unknown extension"),
        "{err}"
    );
    assert!(err.contains("did you mean `drbd`?"), "{err}");
    assert!(
        err.contains("variants/extensions.lock: field `talos_version` = 1.13.6"),
        "{err}"
    );
    assert!(
        !err.contains("extensions.drbd"),
        "only the field is blamed, not every entry: {err}"
    );
}

/// An extension the lock has no entry for yet, beside another variant's problem: one run names
/// both, in the commands that need every entry (it used to come out on the next run).
#[test]
fn a_new_extension_is_reported_with_the_other_problems() {
    let root = temp_dir("plan-new-extension");
    copy_repo_data(&root);
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    std::fs::write(
        &compute,
        text.replace("\"spin\"]", "\"spin\", \"iscsi-tools\"]"),
    )
    .unwrap();
    let gateway = root.join("variants/gateway.json");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(&gateway, text.replace("\"arm64\"", "\"arm46\"")).unwrap();
    for command in [
        &["plan"][..],
        &["config", "--variant", "compute"],
        &["smoke", "check"],
    ] {
        let err = assert_failure(&run(xtask(&root).args(command)), &format!("{command:?}"));
        assert!(
            err.contains("invalid variants: 2 problems"),
            "{command:?}: {err}"
        );
        assert!(
            err.contains("variants/gateway.json: field `arch` = \"arm46\""),
            "{err}"
        );
        assert!(
            err.contains("variants/compute.json: field `extensions[3]` = \"iscsi-tools\": has no entry in variants/extensions.lock"),
            "{command:?}: {err}"
        );
    }
}

/// The same in a file with problems of its own, which yields no variant: its new extension is
/// named in the same run, its misspelt one only as misspelt.
#[test]
fn a_new_extension_is_reported_beside_its_own_files_problems() {
    let root = temp_dir("plan-new-extension-same-file");
    copy_repo_data(&root);
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    let text = text.replace("\"spin\"]", "\"spin\", \"iscsi-tools\", \"spinn\"]");
    std::fs::write(&compute, text.replace("\"arm64\"", "\"arm46\"")).unwrap();
    for command in [
        &["plan"][..],
        &["config", "--variant", "gateway"],
        &["smoke", "check"],
    ] {
        let err = assert_failure(&run(xtask(&root).args(command)), &format!("{command:?}"));
        assert!(
            err.contains("invalid variants: 3 problems"),
            "{command:?}: {err}"
        );
        for expected in [
            "variants/compute.json: field `arch` = \"arm46\"",
            "variants/compute.json: field `extensions[3]` = \"iscsi-tools\": has no entry in variants/extensions.lock",
            "variants/compute.json: field `extensions[4]` = \"spinn\": unknown extension",
        ] {
            assert!(err.contains(expected), "{command:?}: no {expected:?} in {err}");
        }
        assert!(
            !err.contains("\"spinn\": has no entry"),
            "{command:?}: {err}"
        );
    }
}

#[test]
fn json_syntax_errors_point_at_the_problem() {
    let root = temp_dir("plan-json-syntax");
    copy_repo_data(&root);
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    let comma_line = text
        .lines()
        .position(|l| l.contains("extra_kernel_args"))
        .unwrap()
        + 1;
    let column = text.lines().nth(comma_line - 1).unwrap().len() + 1;
    let text = text.replace("\"extra_kernel_args\": []", "\"extra_kernel_args\": [],");
    std::fs::write(&compute, format!("\u{feff}{text}")).unwrap();
    let err = stderr(&run(xtask(&root).arg("plan")));
    assert!(
        err.contains("starts with a UTF-8 byte order mark (BOM)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "malformed JSON at line {comma_line} column {column}: trailing comma"
        )),
        "{err}"
    );
}

#[test]
fn a_role_file_that_is_not_read_is_named_not_skipped() {
    // A role written as YAML or named `.JSON` would silently not exist; one not in UTF-8
    // stopped the run at its own file, with no other finding.
    let root = temp_dir("plan-unread-files");
    copy_repo_data(&root);
    let compute = std::fs::read_to_string(root.join("variants/compute.json")).unwrap();
    std::fs::write(root.join("variants/edge.yaml"), "name: edge\n").unwrap();
    std::fs::write(root.join("variants/Storage.JSON"), &compute).unwrap();
    std::fs::write(
        root.join("variants/latin1.json"),
        b"{\"description\": \"caf\xe9\"}",
    )
    .unwrap();
    std::fs::write(root.join("variants/gateway.json"), "{").unwrap();
    std::fs::create_dir(root.join("variants/compute")).unwrap();
    // named like a role file, yet no file: a directory, and a named pipe (reading it would wait
    // for a writer forever)
    std::fs::create_dir(root.join("variants/sub.json")).unwrap();
    let fifo = root.join("variants/pipe.json");
    assert_success(
        &run(std::process::Command::new("mkfifo").arg(&fifo)),
        "mkfifo",
    );
    let out = run(xtask(&root).arg("plan"));
    let err = assert_failure(&out, "plan with unread variant files");
    for expected in [
        "variants/edge.yaml: not read: a variant file is JSON, named variants/<name>.json\n      fix: write it as JSON in variants/edge.json",
        "variants/Storage.JSON: not read: a variant file is JSON, named variants/<name>.json\n      fix: write it as JSON in variants/storage.json",
        "variants/latin1.json: not UTF-8 text\n      fix: save it as UTF-8",
        "variants/gateway.json: malformed JSON",
        "variants/sub.json: not a regular file: a variant file is JSON text\n      fix: move it out of variants/",
        "variants/pipe.json: not a regular file",
        "6 problems",
    ] {
        assert!(err.contains(expected), "{expected:?} in\n{err}");
    }
    assert!(
        !err.contains("variants/compute:"),
        "a role's directory is not a file: {err}"
    );
}

#[test]
fn an_unknown_variant_gets_a_near_miss() {
    let err = stderr(&run(xtask(&fixture_root()).args([
        "plan",
        "--variant",
        "gatewy",
    ])));
    assert!(err.contains("unknown variant `gatewy`"), "{err}");
    assert!(err.contains("did you mean `gateway`?"), "{err}");
}

#[test]
fn ci_dry_run_prints_every_stage() {
    let args = [
        "ci",
        "--dry-run",
        "--push",
        "--registry",
        "ghcr.io/acme",
        "--variant",
        "gateway",
    ];
    let out = run(xtask(&fixture_root()).args(args));
    // the fixture's lock is not fit for --locked: the preview shows every stage, lists every
    // problem at once (entries, base installer, imager) where the real run stops, and fails as
    // the real run would, without the resolution a --locked run never does
    let err = assert_failure(
        &out,
        "ci --dry-run --push --registry ghcr.io/acme --variant gateway",
    );
    let text = stdout(&out);
    for problem in [
        "field `extensions.tailscale` = ghcr.io/siderolabs/tailscale:1.98.5: has no digest",
        "field `base_installer`: missing",
        "field `imager`: missing",
    ] {
        assert!(text.contains("# a real run stops here:"), "{text}");
        assert!(text.contains(problem), "missing {problem:?} in:\n{text}");
        assert!(err.contains(problem), "missing {problem:?} in:\n{err}");
    }
    assert!(
        err.starts_with(
            "error: ci --dry-run (every stage is shown above): a real run stops at the lock stage: --locked:"
        ),
        "{err}"
    );
    assert!(
        !text.contains("inspect --raw"),
        "a --locked run resolves nothing: {text}"
    );
    for stage in [
        "# stage preflight",
        "# stage lock (--locked)",
        "# stage patch and build",
        "podman run --rm -i --name xtask-gateway-installer-",
        "cargo xtask patch --variant gateway",
        "# stage smoke",
        "qemu-system-aarch64 ",
        "# stage release tags",
        "docker://ghcr.io/acme/talos-cozystack-spin-tailscale/talos:v1.13.99",
    ] {
        assert!(text.contains(stage), "missing {stage:?} in:\n{text}");
    }
    // nothing printed depends on the process (its id, a free port): two dry runs can be diffed
    let again = stdout(&run(xtask(&fixture_root()).args(args)));
    let differ: Vec<_> = text
        .lines()
        .zip(again.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(differ.is_empty(), "two dry runs differ: {differ:#?}");
    assert_eq!(text.lines().count(), again.lines().count());
}

/// A metal role that builds no kernel cannot boot: the real ci's smoke stage fails on it, and so
/// does the dry run (it used to note "no boot" and succeed). The lock is made fit for --locked
/// with made-up digests, so that the smoke stage is the first a real run stops at.
#[test]
fn ci_dry_run_fails_where_the_smoke_stage_cannot_boot_a_metal_role() {
    let root = temp_dir("ci-dry-run-no-kernel");
    copy_repo_data(&root);
    let lock_path = root.join("variants/extensions.lock");
    let mut lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let digest = format!("@sha256:{}", "12".repeat(32));
    for entry in lock["extensions"].as_object_mut().unwrap().values_mut() {
        if !entry.as_str().unwrap().contains('@') {
            *entry = format!("{}{digest}", entry.as_str().unwrap()).into();
        }
    }
    lock["imager"] = format!("ghcr.io/siderolabs/imager:v1.13.99{digest}").into();
    lock["base_installer"] = format!("ghcr.io/siderolabs/installer-base:v1.13.99{digest}").into();
    std::fs::write(&lock_path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    let args = [
        "ci",
        "--dry-run",
        "--variant",
        "compute",
        "--variant",
        "gateway",
    ];
    // with the kernel, both boot and the dry run passes
    assert_success(&run(xtask(&root).args(args)), &format!("{args:?}"));
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    let without = text.replace(r#""kernel", "initramfs", "#, "");
    assert_ne!(text, without, "compute.json lists its kernel and initramfs");
    std::fs::write(&compute, without).unwrap();
    let out = run(xtask(&root).args(args));
    let err = assert_failure(&out, &format!("{args:?} (compute builds no kernel)"));
    assert!(
        err.contains("a real run fails at the smoke stage")
            && err.contains("variant `compute` does not build its kernel"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("# compute: a real run fails the smoke stage here: variant `compute` does not build its kernel"),
        "{text}"
    );
    // the other role's boot is still shown
    assert!(text.contains("_out/gateway/kernel-arm64"), "{text}");
}

#[test]
fn schematic_writes_the_file_its_curl_hint_posts() {
    let root = temp_dir("schematic-file");
    copy_repo_data(&root);
    let out = run(xtask(&root).args(["schematic", "--variant", "gateway"]));
    assert_success(&out, "schematic --variant gateway");
    let text = stdout(&out);
    let hint = text
        .lines()
        .find(|l| l.contains("curl -X POST"))
        .expect(&text);
    let file = hint
        .split("--data-binary @")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let written = std::fs::read_to_string(root.join(file)).unwrap();
    assert!(written.starts_with("customization:\n"), "{written}");
    // the gateway's schematic, byte for byte, whose sha256 is the ID the factory gives it
    let json: Value = serde_json::from_slice(
        &run(xtask(&root).args(["schematic", "--variant", "gateway", "--json", "--no-judge"]))
            .stdout,
    )
    .unwrap();
    assert_eq!(written, json["schematic"].as_str().unwrap());
    assert!(written.contains("siderolabs/tailscale"), "{written}");
    use sha2::Digest as _;
    let id: String = sha2::Sha256::digest(written.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(json["id"], id.as_str());
    assert!(hint.contains(&id) || text.contains(&id), "{text}");
    assert!(
        text.contains("https://pxe.factory.talos.dev/pxe/"),
        "{text}"
    );
    let own = stdout(&run(xtask(&root).args([
        "schematic",
        "--variant",
        "gateway",
        "--factory",
        "https://factory.example.org",
    ])));
    assert!(
        own.contains("  pxe        https://factory.example.org/pxe/"),
        "{own}"
    );
}

#[test]
fn profiles_check_tells_a_missing_file_from_a_stale_one() {
    let root = temp_dir("profiles-check");
    copy_repo_data(&root);
    let dir = root.join("committed");
    let check = || {
        run(xtask(&root)
            .args(["profiles", "--check", "--out"])
            .arg(&dir))
    };
    let err = assert_failure(&check(), "profiles --check on an empty directory");
    // every one of them, both roles' four outputs, at once
    assert!(err.contains("8 profile files in "), "{err}");
    for role in ["compute", "gateway"] {
        for output in ["installer", "kernel", "initramfs", "metal"] {
            assert!(
                err.contains(&format!("{role}/{output}.yaml (missing)")),
                "{err}"
            );
        }
    }
    assert_success(
        &run(xtask(&root).args(["profiles", "--out"]).arg(&dir)),
        "profiles --out",
    );
    assert_success(&check(), "profiles --check after writing them");
    std::fs::write(dir.join("compute/installer.yaml"), "arch: amd64\n").unwrap();
    std::fs::remove_file(dir.join("gateway/metal.yaml")).unwrap();
    let err = assert_failure(&check(), "profiles --check after an edit");
    assert!(err.contains("2 profile files in "), "{err}");
    assert!(err.contains("compute/installer.yaml (differs)"), "{err}");
    assert!(err.contains("gateway/metal.yaml (missing)"), "{err}");
}

#[test]
fn symlinked_build_inputs_are_refused_by_their_readers() {
    // `changed` classifies a link by its own path: a variant file linked to docs/ would make
    // every later edit of the target "only documentation", while plan and profiles read it.
    let root = temp_dir("plan-symlinked-inputs");
    copy_repo_data(&root);
    git(&root, &["init", "-q", "-b", "main"]);
    let link = |path: &str, target: &str| {
        let at = root.join(path);
        let moved = root.join(target);
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        if at.exists() {
            std::fs::rename(&at, &moved).unwrap();
        }
        let up = "../".repeat(path.matches('/').count());
        std::os::unix::fs::symlink(format!("{up}{target}"), &at).unwrap();
    };
    let refused = |err: &str, shown: &str| {
        assert!(
            err.contains(&format!("{shown} = ")) && err.contains("is a symbolic link"),
            "{shown} in\n{err}"
        );
        assert!(
            err.contains("fix: replace the link with the file itself"),
            "{err}"
        );
    };
    link("variants/gateway.json", "docs/roles/gateway.json");
    commit_all(&root, "gateway as a link");
    let err = assert_failure(&run(xtask(&root).arg("plan")), "plan with a linked variant");
    refused(&err, "variants/gateway.json");

    let root_lock = temp_dir("plan-symlinked-lock");
    copy_repo_data(&root_lock);
    std::fs::rename(
        root_lock.join("variants/extensions.lock"),
        root_lock.join("extensions.lock"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../extensions.lock",
        root_lock.join("variants/extensions.lock"),
    )
    .unwrap();
    let err = assert_failure(
        &run(xtask(&root_lock).arg("plan")),
        "plan with a linked lock",
    );
    refused(&err, "variants/extensions.lock");

    // the upstream pin, the series and a patch file, read by `patch` (offline with --dry-run)
    let patch = |root: &std::path::Path| {
        assert_failure(
            &run(xtask(root).args(["patch", "--dry-run"])),
            "patch --dry-run with a linked input",
        )
    };
    let pin = temp_dir("plan-symlinked-pin");
    copy_repo_data(&pin);
    std::fs::rename(pin.join("patches/upstream.json"), pin.join("upstream.json")).unwrap();
    std::os::unix::fs::symlink("../upstream.json", pin.join("patches/upstream.json")).unwrap();
    refused(&patch(&pin), "patches/upstream.json");

    let series = temp_dir("plan-symlinked-series");
    copy_repo_data(&series);
    std::fs::rename(series.join("patches/series"), series.join("series")).unwrap();
    std::os::unix::fs::symlink("../series", series.join("patches/series")).unwrap();
    refused(&patch(&series), "patches/series");

    let file = temp_dir("plan-symlinked-patch");
    copy_repo_data(&file);
    std::fs::create_dir_all(file.join("docs")).unwrap();
    std::fs::write(file.join("docs/0001-x.patch"), "a patch\n").unwrap();
    std::os::unix::fs::symlink("../docs/0001-x.patch", file.join("patches/0001-x.patch")).unwrap();
    std::fs::write(file.join("patches/series"), "0001-x.patch\n").unwrap();
    refused(&patch(&file), "patches/0001-x.patch");

    // a linked directory: patches/ itself, and variants/; the fix copies the directory
    for dir in ["patches", "variants"] {
        let root = temp_dir(&format!("plan-symlinked-dir-{dir}"));
        copy_repo_data(&root);
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::rename(root.join(dir), root.join("docs").join(dir)).unwrap();
        std::os::unix::fs::symlink(format!("docs/{dir}"), root.join(dir)).unwrap();
        let err = match dir {
            "patches" => patch(&root),
            _ => assert_failure(&run(xtask(&root).arg("plan")), "plan with variants/ linked"),
        };
        assert!(
            err.contains(&format!("{dir} = ")) && err.contains("is a symbolic link"),
            "{dir}: {err}"
        );
        assert!(
            err.contains(&format!("fix: replace the link with the directory itself: `target=\"$(readlink -f '{dir}')\" && rm '{dir}' && cp -r \"$target\" '{dir}'`")),
            "{dir}: {err}"
        );
    }
}
