//! Targets end to end, against a real registry: a Raspberry Pi role and a two-arch role added
//! as files to a temporary copy of the repository. The overlays catalog and the extensions
//! image are images this test builds with buildah (nothing can be pulled here) and serves from
//! the local registry through `--registry-mirror`; the build runs the STAND-IN imager
//! (tests/standin/imager.sh), as tests/build.rs does.

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

const MIXED: &str = r#"{
  "name": "mixed",
  "description": "One installer for amd64 control planes and arm64 workers",
  "arch": ["amd64", "arm64"],
  "extensions": ["drbd", "zfs"],
  "repository": "talos-cozystack-mixed/talos",
  "outputs": ["installer"]
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
    std::fs::write(variants.join("mixed.json"), MIXED).unwrap();
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
    assert_eq!(arches, ["amd64", "arm64"]);
    let human = stdout(&xtask_out(&env, &["plan", "--registry", &registry]));
    assert!(
        human.contains("publish   one image index per tag (linux/amd64, linux/arm64)"),
        "{human}"
    );

    // 3. Build and publish both (stand-in imager), then the static checks.
    let out = run(env
        .xtask()
        .args([
            "build",
            "--locked",
            "--push",
            "--engine",
            "podman",
            "--registry",
        ])
        .arg(&registry)
        .args(["--imager", OK, "--no-matchbox"])
        .args([
            "--variant",
            "compute-rpi",
            "--variant",
            "mixed",
            "--variant",
            "compute-aws",
        ]));
    assert_success(
        &out,
        "build --locked --push of compute-rpi, mixed and compute-aws",
    );
    assert_eq!(
        env.podman.runs_of(OK),
        6,
        "2 outputs of the board, 2 arches of mixed, 2 outputs of the cloud role"
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

    let repo = "acme/talos-cozystack-mixed/talos";
    let record = env.record("mixed");
    let (index, digest) = env.registry.manifest(repo, TALOS).expect("mixed is tagged");
    assert_eq!(
        record["published"][0]["digest"],
        digest.as_str(),
        "digest first, then the tag"
    );
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
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
            "the {arch} entry is an {arch} image"
        );
    }
    let unique = env
        .registry
        .tags(repo)
        .into_iter()
        .find(|t| t.starts_with("v1.13.99-"))
        .expect("a build-unique tag");
    assert_eq!(env.registry.manifest(repo, &unique).unwrap().1, digest);

    let out = xtask_out(
        &env,
        &[
            "smoke",
            "check",
            "--variant",
            "compute-rpi",
            "--variant",
            "mixed",
            "--variant",
            "compute-aws",
        ],
    );
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
    assert!(text.contains("registry config is linux/amd64"), "{text}");
    assert!(text.contains("registry config is linux/arm64"), "{text}");
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
