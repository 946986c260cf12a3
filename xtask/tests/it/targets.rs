//! Targets end to end, against a real registry: a Raspberry Pi role and a two-arch role added
//! as files to a temporary copy of the repository. The overlays catalog and the extensions
//! image are images this test builds with buildah (nothing can be pulled here) and serves from
//! the local registry through `--registry-mirror`; the build runs the STAND-IN imager
//! (tests/standin/imager.sh) and the stand-in matchbox base, as tests/build.rs does. The same
//! roles' `ci --dry-run` is checked offline, with the lock's overlay entries written by hand.

use std::path::Path;
use std::process::Output;

use crate::support::pipeline::*;
use crate::support::*;
use serde_json::Value;

const TALOS: &str = "v1.13.99";
const OVERLAY_DIGEST: &str =
    "sha256:5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

const RPI: &str = r#"{
  "name": "compute-rpi",
  "description": "Compute on Raspberry Pi 4 / CM4",
  "arch": "arm64",
  "overlay": "rpi_generic",
  "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt"},
  "extensions": ["drbd", "zfs", "spin"],
  "repository": "talos-cozystack-spin-only/talos"
}
"#;

const AWS: &str = r#"{
  "name": "compute-aws",
  "description": "Compute on AWS Graviton",
  "arch": "arm64",
  "platform": "aws",
  "extensions": ["drbd", "zfs", "spin"],
  "repository": "talos-cozystack-spin-only/talos"
}
"#;

/// An image from scratch holding `files` (name, content) at its root, pushed to `reference`.
fn push_data_image(env: &Pipeline, reference: &str, files: &[(&str, &str)]) {
    let buildah = |args: &[&str]| env.podman.buildah(args);
    let container = buildah(&["from", "scratch"]);
    for (name, content) in files {
        let path = env.dir.join(name);
        std::fs::write(&path, content).unwrap();
        buildah(&[
            "copy",
            &container,
            path.to_str().unwrap(),
            &format!("/{name}"),
        ]);
    }
    let local = format!("localhost/data-{}", name_of(reference));
    buildah(&["commit", "-q", "--rm", &container, &local]);
    buildah(&[
        "push",
        "-q",
        "--tls-verify=false",
        &local,
        &format!("docker://{reference}"),
    ]);
}

fn name_of(reference: &str) -> String {
    reference
        .rsplit('/')
        .next()
        .unwrap()
        .replace([':', '.'], "-")
}

/// `image-digests` matching the bench's pinned lock, so the extensions stay as they are.
fn image_digests(root: &Path) -> String {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("variants/extensions.lock")).unwrap(),
    )
    .unwrap();
    lock["extensions"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| format!("{}\n", r.as_str().unwrap()))
        .collect()
}

fn catalog() -> String {
    format!(
        "overlays:\n  - name: rpi_generic\n    image: ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0\n    digest: {OVERLAY_DIGEST}\n  - name: rpi_5\n    image: ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0\n    digest: {OVERLAY_DIGEST}\n  - name: rock5b\n    image: ghcr.io/siderolabs/sbc-rockchip:v0.2.0\n    digest: {OVERLAY_DIGEST}\n"
    )
}

/// The roles this test builds and checks.
const ROLES: [&str; 6] = [
    "--variant",
    "compute-rpi",
    "--variant",
    "mixed",
    "--variant",
    "compute-aws",
];

fn xtask_out(env: &Pipeline, args: &[&str]) -> Output {
    run(env.xtask().args(args))
}

#[test]
fn a_board_role_and_a_two_arch_role_lock_plan_build_publish_and_pass_static_checks() {
    let Some(env) = Pipeline::setup("targets-e2e", None) else {
        return;
    };
    let mirror = format!("ghcr.io={}", env.registry.addr);
    let registry = format!("{}/acme", env.registry.addr);
    let variants = env.root.join("variants");
    std::fs::write(variants.join("compute-rpi.json"), RPI).unwrap();
    std::fs::write(variants.join("mixed.json"), TWO_ARCH_ROLE).unwrap();
    std::fs::write(variants.join("compute-aws.json"), AWS).unwrap();
    push_data_image(
        &env,
        &format!("{}/siderolabs/extensions:{TALOS}", env.registry.addr),
        &[("image-digests", &image_digests(&env.root))],
    );
    push_data_image(
        &env,
        &format!("{}/siderolabs/overlays:{TALOS}", env.registry.addr),
        &[("overlays.yaml", &catalog())],
    );

    // 1. lock pins the overlay by digest from the catalog, one catalog fetch for the version.
    let out = xtask_out(&env, &["lock", "--registry-mirror", &mirror, "--json"]);
    assert_success(&out, &format!("lock --registry-mirror {mirror} --json"));
    let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        result["registry_commands"], 6,
        "one inspect and one copy for the extensions image, the same for the catalog, one inspect each for the imager and the base installer: {result}"
    );
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(variants.join("extensions.lock")).unwrap())
            .unwrap();
    assert_eq!(
        lock["overlays"]["rpi_generic"],
        format!("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@{OVERLAY_DIGEST}")
    );
    assert!(lock["overlays_image"]
        .as_str()
        .unwrap()
        .starts_with(&format!("ghcr.io/siderolabs/overlays:{TALOS}@sha256:")));
    assert_eq!(
        lock["known_overlays"],
        serde_json::json!(["rock5b", "rpi_5", "rpi_generic"])
    );
    let out = xtask_out(&env, &["lock", "--check", "--registry-mirror", &mirror]);
    assert_success(&out, &format!("lock --check --registry-mirror {mirror}"));
    assert!(
        stdout(&out).contains("(4 registry commands)"),
        "{}",
        stdout(&out)
    );
    commit_all(&env.root, "targets");

    // `--check` covers the overlays: a hand-edited entry is named with the fix.
    let pinned = std::fs::read_to_string(variants.join("extensions.lock")).unwrap();
    std::fs::write(
        variants.join("extensions.lock"),
        pinned.replace("sbc-raspberrypi:v0.2.0@", "sbc-raspberrypi:v0.1.0@"),
    )
    .unwrap();
    let out = xtask_out(&env, &["lock", "--check", "--registry-mirror", &mirror]);
    let err = assert_failure(&out, "lock --check of a stale overlay");
    assert!(
        err.contains("field `overlays.rpi_generic` = ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0@")
            && err.contains("stale: the catalog has ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@"),
        "{err}"
    );
    std::fs::write(variants.join("extensions.lock"), &pinned).unwrap();

    // An overlay the catalog lacks is refused before anything is built, with a suggestion.
    std::fs::write(
        variants.join("typo.json"),
        RPI.replace("\"compute-rpi\"", "\"typo\"")
            .replace("rpi_generic", "rpi-generic")
            .replace("talos-cozystack-spin-only", "typo"),
    )
    .unwrap();
    let out = xtask_out(&env, &["plan", "--variant", "typo"]);
    let err = assert_failure(&out, "plan --variant typo");
    assert!(
        err.contains("variants/typo.json: field `overlay` = \"rpi-generic\": unknown to the overlays catalog of Talos v1.13.99")
            && err.contains("did you mean \"rpi_generic\"?"),
        "{err}"
    );
    std::fs::remove_file(variants.join("typo.json")).unwrap();

    // 2. The plan: the board's own tag in the role's repository, its overlay where it boots,
    // and each arch of the two-arch role.
    let out = xtask_out(&env, &["plan", "--json", "--registry", &registry]);
    assert_success(&out, &format!("plan --json --registry {registry}"));
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let find = |name: &str| {
        plan["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    let rpi = find("compute-rpi");
    assert_eq!(rpi["tag"], "rpi_generic-v1.13.99");
    assert_eq!(
        rpi["image"],
        find("compute")["image"],
        "one repository per role"
    );
    let installer = &rpi["profiles"][0]["profile"];
    assert_eq!(installer["output"]["kind"], "installer");
    assert_eq!(installer["overlay"]["name"], "rpi_generic");
    assert_eq!(
        installer["overlay"]["options"]["configTxtAppend"],
        "dtoverlay=disable-bt"
    );
    assert_eq!(
        installer["input"]["overlayInstaller"]["imageRef"],
        installer["overlay"]["image"]["imageRef"]
    );
    assert_eq!(rpi["profiles"][1]["artifact"], "metal-arm64.raw.xz");
    let mixed = find("mixed");
    let arches: Vec<&str> = strings(&mixed["profiles"], "/profile/arch");
    assert_eq!(
        arches,
        ["amd64", "arm64"].repeat(3),
        "each output for each arch"
    );
    let human = stdout(&xtask_out(&env, &["plan", "--registry", &registry]));
    assert!(
        human.contains("publish   one image index per tag (linux/amd64, linux/arm64)"),
        "{human}"
    );

    // 3. Build and publish both (stand-in imager), then the static checks. The matchbox base
    // of a two-arch role is a local image index holding a base for each arch.
    let amd64_base = "localhost/standin-matchbox-base:amd64";
    env.podman.base(amd64_base, "amd64", &env.dir.join("fail"));
    let bases = "localhost/standin-matchbox-base:multi";
    env.podman.index(bases, &[BASE, amd64_base]);
    let build = |base: &str| run(env.build(base).args(["--imager", OK]).args(ROLES));
    // The arm64 base alone cannot serve the amd64 image: the build says what the base needs.
    let err = assert_failure(&build(BASE), "build with a single-arch --matchbox-base");
    assert!(
        err.contains(&format!("building the matchbox image for amd64 failed: --matchbox-base {BASE} must be in local storage and hold a linux/amd64 image (for several arches, a local image index)")),
        "{err}"
    );
    let out = build(bases);
    assert_success(
        &out,
        "build --locked --push of compute-rpi, mixed and compute-aws",
    );
    assert_eq!(
        env.podman.runs_of(OK),
        10,
        "2 outputs of the board, 3 outputs x 2 arches of mixed, 2 outputs of the cloud role"
    );
    // Each arch's matchbox image is built once and then cached by its own key.
    let rerun = build(bases);
    assert_success(&rerun, "the same build again");
    for arch in ["amd64", "arm64"] {
        let built = format!("[mixed] matchbox-{arch}: podman build: ");
        assert!(stderr(&out).contains(&built), "{}", stderr(&out));
        let cached = format!("[mixed] matchbox-{arch}: cached (matchbox-{arch}.tar)");
        assert!(stderr(&rerun).contains(&cached), "{}", stderr(&rerun));
    }
    assert_eq!(
        env.record("mixed")["cache_hits"],
        8,
        "6 outputs, 2 matchbox images"
    );
    let aws = env.record("compute-aws");
    assert_eq!(aws["files"][1]["name"], "aws-arm64.raw.xz");
    assert_eq!(aws["profiles"][0]["profile"]["platform"], "aws");
    assert_eq!(
        aws["profiles"][1]["profile"]["output"]["imageOptions"]["diskSize"], 8_589_934_592u64,
        "the imager's AWS disk size"
    );

    let spin_only = "acme/talos-cozystack-spin-only/talos";
    let tags = env.registry.tags(spin_only);
    assert!(
        tags.contains(&"rpi_generic-v1.13.99".to_owned()),
        "{tags:?}"
    );
    assert!(tags.contains(&"aws-v1.13.99".to_owned()), "{tags:?}");
    assert!(
        !tags.contains(&"v1.13.99".to_owned()),
        "the board's tags never take generic metal's: {tags:?}"
    );

    // The installer and the matchbox image of mixed: each one index of its arches in the
    // file's order, pushed by digest, then tagged; each entry an image of its arch.
    let record = env.record("mixed");
    let index_of = |p: usize, repo: &str| {
        assert_eq!(
            record["published"][p]["arches"],
            serde_json::json!(["amd64", "arm64"])
        );
        let (index, digest) = env.registry.manifest(repo, TALOS).expect("tagged");
        assert_eq!(
            record["published"][p]["digest"],
            digest.as_str(),
            "digest first, then the tag"
        );
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{index}");
        let mut manifests = Vec::new();
        for (entry, arch) in entries.iter().zip(["amd64", "arm64"]) {
            assert_eq!(entry["platform"]["architecture"], arch);
            assert_eq!(entry["platform"]["os"], "linux");
            let (manifest, _) = env
                .registry
                .manifest(repo, entry["digest"].as_str().unwrap())
                .unwrap();
            let config: Value = serde_json::from_slice(
                &env.registry
                    .blob(repo, manifest["config"]["digest"].as_str().unwrap()),
            )
            .unwrap();
            assert_eq!(
                config["architecture"], arch,
                "{repo}: the {arch} entry is an {arch} image"
            );
            manifests.push((arch, manifest));
        }
        (digest, manifests)
    };
    let repo = "acme/talos-cozystack-mixed/talos";
    let (digest, _) = index_of(0, repo);
    // Each matchbox entry serves its own arch's kernel (the stand-in imager writes one per arch).
    assert_eq!(record["published"][1]["kind"], "matchbox");
    let files = strings(&record["files"], "/name");
    assert!(
        files.ends_with(&["matchbox-amd64.tar", "matchbox-arm64.tar"]),
        "{files:?}"
    );
    let matchbox = "acme/talos-cozystack-mixed/matchbox";
    let (_, manifests) = index_of(1, matchbox);
    for (arch, manifest) in manifests {
        let kernel = std::fs::read(env.root.join(format!("_out/mixed/kernel-{arch}"))).unwrap();
        let served = manifest["layers"].as_array().unwrap().iter().any(|layer| {
            let blob = env.dir.join("layer");
            let digest = layer["digest"].as_str().unwrap();
            std::fs::write(&blob, env.registry.blob(matchbox, digest)).unwrap();
            let out = run(std::process::Command::new("tar")
                .arg("-xOf")
                .arg(&blob)
                .arg("var/lib/matchbox/assets/vmlinuz"));
            out.status.success() && out.stdout == kernel
        });
        assert!(
            served,
            "the {arch} matchbox image serves kernel-{arch}: {manifest}"
        );
    }
    let unique = env
        .registry
        .tags(repo)
        .into_iter()
        .find(|t| t.starts_with("v1.13.99-"))
        .expect("a build-unique tag");
    assert_eq!(env.registry.manifest(repo, &unique).unwrap().1, digest);

    let out = xtask_out(&env, &[&["smoke", "check"][..], &ROLES].concat());
    assert_success(&out, "smoke check of compute-rpi, mixed and compute-aws");
    let text = stdout(&out);
    assert!(
        text.contains(
            "every profile: platform metal, overlay rpi_generic where it boots, arch arm64"
        ),
        "{text}"
    );
    assert!(
        text.contains("installer-amd64.tar: config is linux/amd64"),
        "{text}"
    );
    for arch in ["amd64", "arm64"] {
        for kind in ["installer", "matchbox"] {
            let checked = text.lines().any(|l| {
                l.contains(&format!("{kind} image "))
                    && l.ends_with(&format!("registry config is linux/{arch}"))
            });
            assert!(checked, "{kind} {arch}: {text}");
        }
    }
    assert!(
        text.contains("every profile: platform aws, arch arm64"),
        "{text}"
    );
    let out = xtask_out(
        &env,
        &[
            "smoke",
            "--variant",
            "compute-rpi",
            "--variant",
            "compute-aws",
        ],
    );
    assert_success(&out, "smoke --variant compute-rpi --variant compute-aws");
    let text = stdout(&out);
    assert!(
        text.contains(
            "compute-rpi: checked statically only, not booted: board overlay `rpi_generic`"
        ) && text.contains("compute-aws: checked statically only, not booted: platform `aws`"),
        "{text}"
    );
    // its dry run says the same, and boots nothing either
    let out = xtask_out(
        &env,
        &[
            "smoke",
            "--variant",
            "compute-rpi",
            "--variant",
            "compute-aws",
            "--dry-run",
        ],
    );
    assert_success(&out, "smoke --dry-run of the board and the cloud role");
    let text = stdout(&out);
    assert!(
        text.contains("# compute-rpi: checked statically only, not booted: board overlay")
            && text.contains("# compute-aws: checked statically only, not booted: platform `aws`")
            && text.contains(
                "# compute-rpi: static checks of _out/compute-rpi against its build.json"
            )
            && !text.contains("qemu-system-aarch64"),
        "{text}"
    );

    // The checks fail when the matchbox image in the registry is one arch's image, not the index
    // of both: first behind the tag, then in the record too (as a first-arch-only build had it).
    let single = env.dir.join("single.digest");
    let tagged = format!("{}/{matchbox}:{TALOS}", env.registry.addr);
    let pushed = run(env
        .podman
        .command("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--digestfile"])
        .arg(&single)
        .arg(format!(
            "docker-archive:{}",
            env.root.join("_out/mixed/matchbox-amd64.tar").display()
        ))
        .arg(format!("docker://{tagged}")));
    assert_success(&pushed, &format!("skopeo copy to {tagged}"));
    let single = std::fs::read_to_string(&single).unwrap();
    let out = xtask_out(&env, &["smoke", "check", "--variant", "mixed"]);
    let err = assert_failure(&out, "smoke check of mixed, its matchbox tag on one image");
    assert!(
        err.contains(&format!(
            "field `published[1].tags[1]` = {TALOS}: {tagged} points at {single}, not the recorded "
        )),
        "{err}"
    );
    let path = env.root.join("_out/mixed/build.json");
    let mut edited: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edited["published"][1]["digest"] = Value::String(single.clone());
    edited["published"][1]["arches"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let out = xtask_out(&env, &["smoke", "check", "--variant", "mixed"]);
    let err = assert_failure(&out, "smoke check of mixed, its matchbox one image");
    assert!(
        err.contains(&format!(
            "field `published[1].digest` = {}/{matchbox}@{single}: a single image in the registry, not one index of linux/amd64, linux/arm64\n      fix: publish again with `cargo xtask build --variant mixed`",
            env.registry.addr
        )),
        "{err}"
    );

    // The checks fail when a board's profile lost its overlay.
    let path = env.root.join("_out/compute-rpi/build.json");
    let mut edited: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edited["profiles"][0]["profile"]
        .as_object_mut()
        .unwrap()
        .remove("overlay");
    std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let out = xtask_out(&env, &["smoke", "check", "--variant", "compute-rpi"]);
    let err = assert_failure(
        &out,
        "smoke check --variant compute-rpi of a record without its overlay",
    );
    assert!(
        err.contains(
            "field `profiles[0].profile.overlay` = null: not the locked overlay rpi_generic"
        ),
        "{err}"
    );
}

/// `ci --dry-run` decides as the real smoke stage does: a board's and a cloud's image are
/// checked statically only (no qemu line, no advice to add a kernel to boot it), whether or not
/// they build a kernel (and, for the board, an initramfs); the metal role beside them still boots. Offline: the
/// overlay entries in the lock are written by hand, with made-up digests.
#[test]
fn ci_dry_run_checks_board_and_cloud_roles_statically_only() {
    let root = temp_dir("targets-ci-dry-run");
    copy_repo_data(&root);
    let lock_path = root.join("variants/extensions.lock");
    let mut lock: Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    lock["overlays_image"] = Value::String(format!(
        "ghcr.io/siderolabs/overlays:{TALOS}@{OVERLAY_DIGEST}"
    ));
    lock["overlays"] = serde_json::json!({
        "rpi_generic": format!("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@{OVERLAY_DIGEST}")
    });
    lock["known_overlays"] = serde_json::json!(["rpi_5", "rpi_generic"]);
    std::fs::write(&lock_path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    // (a cloud role cannot build both: its matchbox image would boot as metal)
    let netboot = |role: &str| match role {
        "compute-rpi.json" => {
            r#"  "outputs": ["installer", "disk", "kernel", "initramfs"],
  "repository""#
        }
        _ => {
            r#"  "outputs": ["installer", "disk", "kernel"],
  "repository""#
        }
    };
    for outputs in ["default outputs", "kernel and initramfs too"] {
        for (file, role) in [("compute-rpi.json", RPI), ("compute-aws.json", AWS)] {
            let role = match outputs {
                "default outputs" => role.to_owned(),
                _ => role.replace(r#"  "repository""#, netboot(file)),
            };
            std::fs::write(root.join("variants").join(file), role).unwrap();
        }
        let args = [
            "ci",
            "--dry-run",
            "--variant",
            "compute-rpi",
            "--variant",
            "compute-aws",
            "--variant",
            "compute",
            "--registry",
            "ghcr.io/acme",
        ];
        let out = run(xtask(&root).args(args));
        // the fixture's lock is not fit for --locked (plan.rs's ci test): every stage is shown
        let err = assert_failure(&out, &format!("{args:?} ({outputs})"));
        assert!(
            err.contains("a real run stops at the lock stage"),
            "{outputs}: {err}"
        );
        let text = stdout(&out);
        let (_, smoke) = text
            .split_once("# stage smoke")
            .unwrap_or_else(|| panic!("{outputs}: no smoke stage in:\n{text}"));
        for (name, reason) in [
            ("compute-rpi", "board overlay `rpi_generic`"),
            ("compute-aws", "platform `aws`"),
        ] {
            let lines: Vec<&str> = smoke.lines().filter(|l| l.contains(name)).collect();
            let expected = format!("# {name}: checked statically only, not booted: {reason}");
            assert!(
                matches!(lines.as_slice(), [line] if line.starts_with(&expected)),
                "{outputs}: the smoke stage of {name} must be one line `{expected}...`, not:\n{smoke}"
            );
        }
        assert!(
            smoke.lines().any(
                |l| l.starts_with("qemu-system-aarch64 ") && l.contains("compute/kernel-arm64")
            ),
            "{outputs}: the metal role boots:\n{smoke}"
        );
        assert_eq!(
            smoke.matches("qemu-system-aarch64 ").count(),
            1,
            "{outputs}: only the metal role boots:\n{smoke}"
        );
    }
}

/// A board role with a problem of its own yields no variant, yet its overlay's problem with the
/// lock comes out in the same run: an entry the lock lacks, or a name the catalog does not know
/// (each was found only after the file's own problem was fixed).
#[test]
fn a_board_roles_overlay_problem_is_reported_beside_its_own_problems() {
    let root = temp_dir("targets-overlay-same-run");
    copy_repo_data(&root);
    let rpi = root.join("variants/compute-rpi.json");
    // its own problem: an ISO for a board; the fixture lock has no overlay entries
    let iso = RPI.replace(
        r#"  "repository""#,
        r#"  "outputs": ["installer", "iso"],
  "repository""#,
    );
    std::fs::write(&rpi, iso).unwrap();
    let err = assert_failure(&run(xtask(&root).arg("plan")), "plan");
    for expected in [
        "variants/compute-rpi.json: field `outputs[1]` = \"iso\"",
        "variants/compute-rpi.json: field `overlay` = \"rpi_generic\": has no entry in variants/extensions.lock",
    ] {
        assert!(err.contains(expected), "no {expected:?} in {err}");
    }

    // with the catalog's names in the lock: a misspelt overlay beside a misspelt field
    let lock_path = root.join("variants/extensions.lock");
    let mut lock: Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    lock["overlays_image"] = Value::String(format!(
        "ghcr.io/siderolabs/overlays:{TALOS}@{OVERLAY_DIGEST}"
    ));
    lock["known_overlays"] = serde_json::json!(["rpi_5", "rpi_generic"]);
    std::fs::write(&lock_path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    let typos = RPI
        .replace("\"rpi_generic\"", "\"rpi-generic\"")
        .replace("\"description\"", "\"descripton\"");
    std::fs::write(&rpi, typos).unwrap();
    let err = assert_failure(&run(xtask(&root).arg("plan")), "plan");
    for expected in [
        "variants/compute-rpi.json: field `descripton`",
        "variants/compute-rpi.json: field `overlay` = \"rpi-generic\": unknown to the overlays catalog",
        "did you mean \"rpi_generic\"?",
    ] {
        assert!(err.contains(expected), "no {expected:?} in {err}");
    }
}
