//! Talos's own code as the judge (`cargo xtask conformance`, the Go module in conformance/): every
//! profile, every role's patches on a worker and a control plane over two bases, every schematic
//! ID at the lock's Talos version; and the Talos behaviours our patch shapes rely on, pinned
//! through raw harness requests so that a Talos bump that changes them fails here.

use std::sync::Mutex;

use crate::support::*;
use serde_json::{json, Value};

/// The tests share one harness binary under target/: one `go build` at a time.
static HARNESS: Mutex<()> = Mutex::new(());

fn conformance(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = xtask(&repo_root());
    cmd.arg("conformance").args(args);
    match stdin {
        Some(text) => run_with_stdin(&mut cmd, text),
        None => run(&mut cmd),
    }
}

/// The harness's raw report for a request.
fn judge(request: Value) -> Value {
    let out = conformance(&["--request", "-"], Some(&request.to_string()));
    assert_success(&out, &format!("conformance --request - <<< {request}"));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The Talos release of the forward harness (conformance/go.next.mod), read as xtask reads it.
fn next_talos() -> String {
    let next_mod = std::fs::read_to_string(repo_root().join("conformance/go.next.mod")).unwrap();
    inspect::conformance::talos_requirement(&next_mod)
        .expect("go.next.mod requires github.com/siderolabs/talos")
}

fn worker(name: &str, patches: &[&str], controlplane: &[&str]) -> Value {
    json!({"name": name, "machine_type": "worker", "patches": patches, "controlplane_patches": controlplane})
}

/// The live roles (`variants/*.json`) and how many imager profiles each makes: one per output
/// and architecture, as the domain reads the file (its outputs, or the default ones). The
/// counts the harness reports follow from them, so a role added to the repository does not
/// break these tests.
fn live_roles() -> Vec<(String, u64)> {
    let mut roles = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("variants")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v = domain::variant::parse(path.to_str().unwrap(), &text).unwrap();
        let profiles = (v.outputs.len() * v.target.arches.len()) as u64;
        roles.push((v.name, profiles));
    }
    roles.sort();
    assert!(!roles.is_empty(), "no live roles");
    roles
}

#[test]
fn talos_accepts_every_profile_patch_and_schematic_id() {
    if !have_tools(&["go"]) {
        return;
    }
    let started = std::time::Instant::now();
    let out = conformance(&["--json"], None);
    assert_success(&out, "conformance --json");
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // about the live pins: the harness is built at the Talos release the repository's lock pins
    assert_eq!(verdict["talos_version"], live_talos_version().as_str());
    assert_eq!(verdict["findings"], json!([]), "{verdict:#}");
    // every profile as planned and as build hands it over (ociPath inputs); each role on 2
    // bases x 2 machine types; a schematic per role; each role's gen secrets and gen config
    let roles = live_roles();
    let profiles: u64 = roles.iter().map(|(_, n)| n).sum();
    assert_eq!(verdict["profiles"], 2 * profiles, "{verdict:#}");
    assert_eq!(verdict["commands"], 2 * roles.len(), "{verdict:#}");
    assert_eq!(verdict["configs"], 4 * roles.len(), "{verdict:#}");
    assert_eq!(verdict["schematics"], roles.len(), "{verdict:#}");
    eprintln!(
        "conformance: {} profiles, {} configs, {} schematic IDs judged in {:.1}s",
        verdict["profiles"],
        verdict["configs"],
        verdict["schematics"],
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn config_judges_its_patches_with_talos_before_writing() {
    if !have_tools(&["go"]) {
        return;
    }
    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    // a scratch copy: the live lock (the harness judges at the release it pins), and no `_out/`
    // of the developer's, whose build record would name the install image
    let root = temp_dir("conformance-config");
    copy_live_repo_data(&root);
    copy_dir(&repo_root().join("conformance"), &root.join("conformance"));
    for base in ["talosctl", "cozystack"] {
        let out = run(xtask(&root)
            .args(["config", "--variant", "gateway", "--base", base])
            .env("REGISTRY", "ghcr.io/acme"));
        assert_success(&out, &format!("config --variant gateway --base {base}"));
        let accepted = format!(
            "Talos {} accepts the `gateway` patches on a worker and a control plane (metal)",
            live_talos_version()
        );
        assert!(stderr(&out).contains(&accepted), "{}", stderr(&out));
    }
}

/// A role that names its nodes' networks (`config.node_subnets`, or `--node-subnet`) gets them
/// appended to the base's selection (docs/config.md): `conformance` and `config` judge that by
/// one rule on one base, the base's selection kept and exactly the declared networks and the
/// exclusions added, and both accept it.
/// The install image the patches name comes from the role's build record, as `config` takes it:
/// a record that is no build record fails the judgement as it fails `config`, instead of being
/// judged with an example image.
#[test]
fn a_broken_build_record_fails_conformance_as_it_fails_config() {
    if !have_tools(&["go"]) {
        return;
    }
    let root = temp_dir("conformance-broken-record");
    copy_live_repo_data(&root);
    copy_dir(&repo_root().join("conformance"), &root.join("conformance"));
    let record = root.join("_out/compute/build.json");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, r#"{"variant":"compute""#).unwrap();
    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let out = run(xtask(&root).args(["conformance", "--variant", "compute"]));
    let err = assert_failure(&out, "conformance with a broken build record");
    assert!(
        err.contains("_out/compute/build.json is not a build record: rebuild with `cargo xtask build --variant compute`"),
        "{err}"
    );
}

#[test]
fn a_role_with_node_subnets_is_accepted_by_conformance_and_config_alike() {
    if !have_tools(&["go"]) {
        return;
    }
    let root = temp_dir("conformance-node-subnets");
    copy_live_repo_data(&root);
    copy_dir(&repo_root().join("conformance"), &root.join("conformance"));
    let edge = json!({"name": "edge", "description": "d", "arch": "amd64",
        "extensions": ["drbd", "zfs"], "repository": "talos-cozystack-edge/talos",
        "config": {"node_subnets": ["192.168.1.0/24"]}});
    std::fs::write(root.join("variants/edge.json"), edge.to_string()).unwrap();

    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let out = run(xtask(&root).args(["conformance", "--json", "--variant", "edge"]));
    let verdict: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(verdict["findings"], json!([]), "{verdict:#}");
    assert_success(&out, "conformance --variant edge (node_subnets)");
    assert_eq!(verdict["configs"], 4, "{verdict:#}");

    let accepted = format!(
        "Talos {} accepts the `edge` patches on a worker and a control plane (metal)",
        live_talos_version()
    );
    for base in ["talosctl", "cozystack"] {
        for flags in [
            &[][..],
            &[
                "--node-subnet",
                "10.20.0.0/16",
                "--node-subnet",
                "10.30.0.0/16",
            ],
        ] {
            let out = run(xtask(&root)
                .args(["config", "--variant", "edge", "--base", base])
                .args(flags)
                .env("REGISTRY", "ghcr.io/acme"));
            let what = format!("config --variant edge --base {base} {flags:?}");
            assert_success(&out, &what);
            assert!(stderr(&out).contains(&accepted), "{what}: {}", stderr(&out));
        }
    }
}

/// The defect this harness was built for: `cluster.etcd` in the patch every gateway node gets.
/// `talosctl gen config` writes worker.yaml anyway; Talos's validation refuses it.
#[test]
fn talos_refuses_cluster_etcd_on_a_worker() {
    if !have_tools(&["go"]) {
        return;
    }
    let etcd = "cluster:\n  etcd:\n    advertisedSubnets:\n      - 0.0.0.0/0\n";
    let report = judge(json!({
        "profiles": [], "schematics": [],
        "configs": [
            worker("all-machines", &[etcd], &[]),
            worker("control-plane-only", &[], &[etcd]),
        ],
    }));
    let errors = &report["configs"][0]["errors"];
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("etcd config is only allowed on control plane machines"),
        "{report:#}"
    );
    assert_eq!(report["configs"][1]["errors"], json!([]), "{report:#}");
    assert_eq!(report["configs"][1]["has_cluster_etcd"], false);
}

/// Talos's patcher appends list entries: a module the base loads already is loaded twice, an
/// inclusion widens the base's node IP selection. This is why `--base cozystack` leaves drbd and
/// zfs out and node IP selection only ever adds exclusions.
#[test]
fn talos_appends_modules_and_subnets_when_it_merges() {
    if !have_tools(&["go"]) {
        return;
    }
    let base = "machine:\n  kernel:\n    modules:\n      - name: zfs\n  kubelet:\n    nodeIP:\n      validSubnets:\n        - 192.168.100.0/24\n";
    let patch = "machine:\n  kernel:\n    modules:\n      - name: zfs\n  kubelet:\n    nodeIP:\n      validSubnets:\n        - 0.0.0.0/0\n        - \"!100.64.0.0/10\"\n";
    let report = judge(json!({
        "profiles": [], "schematics": [],
        "configs": [worker("appended", &[base, patch], &[])],
    }));
    let c = &report["configs"][0];
    assert_eq!(c["errors"], json!([]), "{report:#}");
    // the image's source is the one Talos reads: the install document when the release writes
    // one (1.14 on), else .machine.install
    let unattended = c["documents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "UnattendedInstallConfig");
    let from = if unattended {
        "UnattendedInstallConfig installer.image"
    } else {
        "machine.install.image"
    };
    assert_eq!(c["install_image_from"], from, "{report:#}");
    assert_eq!(
        c["modules"],
        json!([{"name": "zfs", "parameters": []}, {"name": "zfs", "parameters": []}])
    );
    assert_eq!(
        c["valid_subnets"],
        json!(["192.168.100.0/24", "0.0.0.0/0", "!100.64.0.0/10"])
    );
}

/// The imager reads profiles without rejecting unknown fields; the harness does reject them, and
/// Validate() refuses what the imager would refuse only after pulling every input.
#[test]
fn talos_profile_checks_catch_a_typo_and_kernel_args_on_a_kernel() {
    if !have_tools(&["go"]) {
        return;
    }
    let profile = std::fs::read_to_string(
        repo_root().join("xtask/tests/golden/profiles/compute/kernel.yaml"),
    )
    .unwrap();
    let typo = profile.replace("systemExtensions:", "systemExtension:");
    let args = format!("{profile}customization:\n  extraKernelArgs:\n    - console=ttyAMA0\n");
    let report = judge(json!({
        "configs": [], "schematics": [],
        "profiles": [
            {"name": "as-built", "yaml": profile, "default": "metal", "output_kind": "kernel"},
            {"name": "typo", "yaml": typo, "default": "metal", "output_kind": "kernel"},
            {"name": "args", "yaml": args, "default": "metal", "output_kind": "kernel"},
        ],
    }));
    let p = &report["profiles"];
    assert_eq!(p[0]["errors"], json!([]), "{report:#}");
    assert_eq!(p[0]["written"], "kernel-arm64");
    assert!(
        p[1]["errors"][0]
            .as_str()
            .unwrap()
            .contains("field systemExtension not found"),
        "{report:#}"
    );
    assert!(
        p[2]["errors"][0]
            .as_str()
            .unwrap()
            .contains("customization of kernel args is not supported for kernel output"),
        "{report:#}"
    );
}

#[test]
fn image_factory_computes_the_empty_schematics_id() {
    if !have_tools(&["go"]) {
        return;
    }
    let report = judge(json!({
        "configs": [], "profiles": [],
        "schematics": [{"name": "empty", "yaml": "customization: {}\n", "id": ""}],
    }));
    assert_eq!(
        report["schematics"][0]["id"],
        "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    );
}

/// The forward check reports and never fails, and what it reports is pinned here: a forward
/// harness that no longer builds, judges another Talos or changes its verdict fails this test
/// (docs/dev/conformance.md, "The forward harness", records the verdict). Talos 1.14 accepts
/// every profile, schematic and printed command, and every role's patches onto configs generated
/// for the lock's release (`--talos-version`, what a cluster upgraded from it keeps); onto its own
/// `gen config` output it refuses `.machine.install` next to the UnattendedInstallConfig document
/// it generates.
#[test]
fn forward_check_against_the_next_talos_line_reports_without_failing() {
    if !have_tools(&["go"]) {
        return;
    }
    let next = next_talos();
    let next = next.as_str();
    let started = std::time::Instant::now();
    let out = conformance(&["--next", "--json"], None);
    assert_success(&out, "conformance --next --json");
    assert!(
        !stderr(&out).contains("forward check not run"),
        "the forward harness (conformance/go.next.mod) must build:\n{}",
        stderr(&out)
    );
    let verdict: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(verdict["talos_version"], next, "{verdict:#}");
    // as the pinned check, plus each config once more generated for the lock's release
    let roles = live_roles();
    let profiles: u64 = roles.iter().map(|(_, n)| n).sum();
    assert_eq!(verdict["profiles"], 2 * profiles, "{verdict:#}");
    assert_eq!(verdict["configs"], 8 * roles.len(), "{verdict:#}");
    assert_eq!(verdict["schematics"], roles.len(), "{verdict:#}");
    assert_eq!(verdict["commands"], 2 * roles.len(), "{verdict:#}");
    let findings: Vec<&str> = strings(&verdict["findings"], "");
    let upgraded = format!("@{}/", live_talos_version());
    for f in &findings {
        let config = f.split(':').next().unwrap();
        assert!(
            roles
                .iter()
                .any(|(role, _)| config.starts_with(&format!("{role}/"))),
            "only machine configs may have findings on {next}: {f}"
        );
        assert!(
            !config.contains(&upgraded),
            "{next} must accept the patches on configs generated for {}: {f}",
            live_talos_version()
        );
    }
    for (role, _) in &roles {
        for base in ["talosctl", "cozystack"] {
            for machine in ["worker", "controlplane"] {
                let refused = format!("{role}/{base}/{machine}: Talos rejects it");
                assert!(
                    findings.iter().any(|f| f.starts_with(&refused)
                        && f.contains("UnattendedInstallConfig config is incompatible with v1alpha1 config (.machine.install)")),
                    "{refused} ... .machine.install: {findings:#?}"
                );
                // the image Talos would install comes from the generated UnattendedInstallConfig
                // (talosctl's default --install-image), and the finding says so
                let image = format!(
                    "{role}/{base}/{machine}: UnattendedInstallConfig installer.image is \"ghcr.io/siderolabs/installer:{next}\", not the role's "
                );
                assert!(
                    findings.iter().any(|f| f.starts_with(&image)
                        && f.contains(
                            "Talos installs that document's image, not machine.install.image"
                        )
                        && f.contains("; fix: `talosctl gen config --talos-version` of the image's release keeps machine.install")),
                    "{image}...: {findings:#?}"
                );
            }
        }
    }
    eprintln!(
        "forward check (Talos {next}): {} findings, none on configs generated for {}, in {:.1}s",
        findings.len(),
        live_talos_version(),
        started.elapsed().as_secs_f64()
    );
}

/// Roles on a board overlay, a cloud platform and two architectures (docs/targets.md): their
/// profiles are judged like the shipped ones, against `imager installer --platform aws`, `imager
/// aws`, `imager metal --overlay-name ...`.
#[test]
fn talos_accepts_board_cloud_and_multi_arch_profiles() {
    if !have_tools(&["go"]) {
        return;
    }
    let root = temp_dir("conformance-targets");
    // the live lock: the harness judges at the release it pins
    copy_live_repo_data(&root);
    copy_dir(&repo_root().join("conformance"), &root.join("conformance"));
    let variants = [
        (
            "compute-rpi",
            json!({"name": "compute-rpi", "description": "d", "arch": "arm64", "overlay": "rpi_generic",
            "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt\ndtparam=audio=off\n", "configTxt": "arm_64bit=1"},
            "extensions": ["drbd", "zfs", "spin"], "repository": "talos-cozystack-rpi/talos"}),
        ),
        (
            "compute-aws",
            json!({"name": "compute-aws", "description": "d", "arch": "arm64", "platform": "aws",
            "extensions": ["drbd", "zfs", "spin"], "repository": "talos-cozystack-aws/talos", "outputs": ["installer", "disk"]}),
        ),
        (
            "mixed",
            json!({"name": "mixed", "description": "d", "arch": ["amd64", "arm64"], "extensions": ["drbd", "zfs"],
            "repository": "talos-cozystack-mixed/talos", "outputs": ["installer"]}),
        ),
    ];
    for (name, v) in &variants {
        std::fs::write(root.join(format!("variants/{name}.json")), v.to_string()).unwrap();
    }
    let lock_path = root.join("variants/extensions.lock");
    let mut lock: Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let digest = format!("sha256:{}", "5ca1ab1e".repeat(8));
    let talos = lock["talos_version"].as_str().unwrap().to_owned();
    lock["overlays_image"] = format!("ghcr.io/siderolabs/overlays:{talos}@{digest}").into();
    lock["overlays"] =
        json!({"rpi_generic": format!("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@{digest}")});
    lock["known_overlays"] = json!(["rpi_generic"]);
    std::fs::write(&lock_path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();

    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let out = run(xtask(&root)
        .args(["conformance", "--json"])
        .env_remove("CARGO_TARGET_DIR"));
    let verdict: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(verdict["findings"], json!([]), "{verdict:#}");
    assert_success(&out, "conformance --json (board and cloud roles)");
    // the live roles; compute-rpi (a board's default) and compute-aws: installer and disk;
    // mixed: 1 output x 2 arches.
    let live: u64 = live_roles().iter().map(|(_, n)| n).sum();
    assert_eq!(verdict["profiles"], 2 * (live + 2 + 2 + 2), "{verdict:#}");
    let intended: Vec<String> = verdict["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d[0].as_str().unwrap(), d[1].as_str().unwrap()))
        .collect();
    for expected in [
        "compute-rpi/disk input.overlayInstaller",
        "compute-aws/disk output.outFormat",
    ] {
        assert!(intended.iter().any(|d| d == expected), "{intended:#?}");
    }
    assert_eq!(verdict["schematics"], 5, "{verdict:#}");
}

/// The printed `talosctl gen` commands are parsed by talosctl's own command definitions: a
/// misspelt flag or a missing argument is caught, a correct line passes.
#[test]
fn talosctl_parses_gen_commands_and_refuses_a_misspelt_flag() {
    if !have_tools(&["go"]) {
        return;
    }
    let line = |args: &str| json!({"name": args, "argv": args.split(' ').collect::<Vec<_>>()});
    let report = judge(json!({
        "configs": [], "profiles": [], "schematics": [],
        "commands": [
            line("gen secrets --output-file secrets.yaml"),
            line("gen config c https://192.0.2.10:6443 --with-secrets secrets.yaml --config-patch @a.yaml --config-patch-control-plane @b.yaml --output c/"),
            line("gen config c https://192.0.2.10:6443 --config-patch-controlplane @b.yaml"),
            line("gen config c"),
        ],
    }));
    let c = &report["commands"];
    assert_eq!(c[0]["errors"], json!([]), "{report:#}");
    assert_eq!(c[0]["command"], "talosctl gen secrets");
    assert_eq!(c[1]["errors"], json!([]), "{report:#}");
    assert_eq!(c[1]["command"], "talosctl gen config");
    assert!(
        c[2]["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown flag: --config-patch-controlplane"),
        "{report:#}"
    );
    assert!(
        c[3]["errors"][0].as_str().unwrap().contains("arg(s)"),
        "{report:#}"
    );
}

/// Talos's "no" reaches the user: `config` fails with Talos's own message and writes nothing.
/// Provoked for real, not planted: a copy of the repository moved to the next Talos line
/// (conformance/go.next.mod as its go.mod, the lock at that release), whose `talosctl gen
/// config` writes an UnattendedInstallConfig document that Talos refuses `machine.install`
/// beside (docs/conformance.md, "Forward check").
#[test]
fn config_fails_with_talos_message_and_writes_nothing_when_talos_refuses() {
    if !have_tools(&["go"]) {
        return;
    }
    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let root = temp_dir("conformance-refused");
    copy_live_repo_data(&root);
    let harness = root.join("conformance");
    copy_dir(&repo_root().join("conformance"), &harness);
    for (from, to) in [("go.next.mod", "go.mod"), ("go.next.sum", "go.sum")] {
        std::fs::copy(harness.join(from), harness.join(to)).unwrap();
    }
    let next = next_talos();
    let lock = root.join("variants/extensions.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, text.replace(&live_talos_version(), &next)).unwrap();

    let out_dir = root.join("rendered");
    let out = run(xtask(&root)
        .args([
            "config",
            "--variant",
            "compute",
            "--registry",
            "ghcr.io/acme",
            "--out",
        ])
        .arg(&out_dir));
    let err = assert_failure(&out, "config --out onto the next Talos line");
    assert!(
        err.contains(&format!(
            "Talos {next} does not accept the `compute` role's patches"
        )) && err.contains("UnattendedInstallConfig config is incompatible with v1alpha1 config"),
        "{err}"
    );
    assert!(
        !out_dir.exists(),
        "nothing written when Talos refuses: {out_dir:?}"
    );
}

/// A judge at another Talos release than the lock's (the lock bumped, conformance/go.mod left)
/// is no judge of the images: `conformance` fails and so does `config`, unless it is told not
/// to judge, each naming how to move the harness.
#[test]
fn a_judge_at_another_release_than_the_lock_fails_with_the_bump() {
    if !have_tools(&["go"]) {
        return;
    }
    let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    // the fixture's lock is for the made-up release; the harness is built at the pinned one
    let root = temp_dir("conformance-other-release");
    copy_repo_data(&root);
    copy_dir(&repo_root().join("conformance"), &root.join("conformance"));
    let live = live_talos_version();
    let said = format!(
        "error: judged by Talos {live}, but the lock is for {FIXTURE_TALOS}: conformance/go.mod requires another release"
    );
    let fix = format!("fix: (cd conformance && go get github.com/siderolabs/talos@{FIXTURE_TALOS} github.com/siderolabs/talos/pkg/machinery@{FIXTURE_TALOS} && go mod tidy)");
    let out = run(xtask(&root).arg("conformance"));
    let err = assert_failure(&out, "conformance on the fixture");
    assert!(err.contains(&said) && err.contains(&fix), "{err}");
    for args in [
        &["--variant", "compute"][..],
        &["--variant", "compute", "--out", "rendered"],
    ] {
        let out = run(xtask(&root)
            .arg("config")
            .args(args)
            .env("REGISTRY", "ghcr.io/acme"));
        let err = assert_failure(&out, &format!("config {args:?} on the fixture"));
        assert!(err.contains(&said) && err.contains(&fix), "{err}");
        assert!(!err.contains(&format!("Talos {live} accepts")), "{err}");
    }
    assert!(!root.join("rendered").exists(), "nothing written");
    let unjudged = run(xtask(&root)
        .args(["config", "--variant", "compute", "--no-judge"])
        .env("REGISTRY", "ghcr.io/acme"));
    assert_success(&unjudged, "config --no-judge on the fixture");
}
