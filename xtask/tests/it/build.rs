//! `cargo xtask build` end to end: real podman, a real registry, and a STAND-IN imager image
//! (tests/standin/imager.sh: static busybox and a script honouring the imager's contract),
//! because the real imager cannot be pulled here. Users and the workflow run the real imager.

use std::process::Output;

use crate::support::pipeline::*;
use crate::support::*;
use serde_json::Value;

fn build(env: &Pipeline, extra: &[&str]) -> Output {
    run(env.build(BASE).args(extra))
}

#[test]
fn builds_both_roles_pushes_by_digest_and_caches_by_content() {
    let Some(env) = Pipeline::setup("build-e2e", None) else {
        return;
    };

    // 1. A full build of both variants, pushed.
    let out = build(&env, &["--imager", OK]);
    assert_success(&out, &format!("build --imager {OK}"));
    assert_eq!(
        env.podman.runs_of(OK),
        8,
        "2 variants x 4 outputs, each one imager run"
    );
    let mut pushed = Vec::new();
    for (variant, repo) in [
        ("compute", "acme/talos-cozystack-spin-only/talos"),
        ("gateway", "acme/talos-cozystack-spin-tailscale/talos"),
    ] {
        let record = env.record(variant);
        assert_eq!(record["imager_runs"], 4);
        assert_eq!(record["talos_version"], "v1.13.99");
        let files = record["files"].as_array().unwrap();
        let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "installer-arm64.tar",
                "kernel-arm64",
                "initramfs-metal-arm64.xz",
                "metal-arm64.raw.xz",
                "matchbox-arm64.tar"
            ]
        );
        for f in files {
            let path = env
                .root
                .join("_out")
                .join(variant)
                .join(f["name"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(f["size"], bytes.len() as u64);
            use sha2::Digest;
            assert_eq!(f["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)));
        }
        // The recorded profile hash is that of the bytes the imager got (the stand-in keeps
        // them in the installer's layer).
        let archive = env
            .root
            .join("_out")
            .join(variant)
            .join("installer-arm64.tar");
        let sh = |script: &str| {
            let out = run(std::process::Command::new("sh").args(["-c", script]));
            assert_success(&out, &format!("sh -c {script}"));
            out.stdout
        };
        let layer = String::from_utf8(sh(&format!(
            "tar -xOf '{}' manifest.json | sed 's/.*\"Layers\":\\[\"\\([^\"]*\\)\".*/\\1/'",
            archive.display()
        )))
        .unwrap();
        let received = sh(&format!(
            "tar -xOf '{}' '{}' | tar -xOf - usr/install/arm64/profile.yaml",
            archive.display(),
            layer.trim()
        ));
        use sha2::Digest;
        assert_eq!(
            record["profiles"][0]["profile_sha256"],
            format!("{:x}", sha2::Sha256::digest(&received)),
            "{variant}: {}",
            String::from_utf8_lossy(&received)
        );
        let has_tailscale = record["profiles"][0]["profile"]["input"]["systemExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["imageRef"].as_str().unwrap().contains("/tailscale:"));
        assert_eq!(has_tailscale, variant == "gateway");

        // Through the registry API: tags exist, point at the recorded digest, config says arm64.
        let published = &record["published"][0];
        let digest = published["digest"].as_str().unwrap();
        let tags = env.registry.tags(repo);
        assert!(tags.contains(&"v1.13.99".to_owned()), "{tags:?}");
        let unique = tags
            .iter()
            .find(|t| t.starts_with("v1.13.99-"))
            .expect("a build-unique tag");
        assert!(
            !tags.contains(&"latest".to_owned()),
            "floating tags only after smoke, from ci"
        );
        for tag in [String::from("v1.13.99"), unique.clone()] {
            let (manifest, at) = env.registry.manifest(repo, &tag).unwrap();
            assert_eq!(at, digest, "{repo}:{tag}");
            let config: Value = serde_json::from_slice(
                &env.registry
                    .blob(repo, manifest["config"]["digest"].as_str().unwrap()),
            )
            .unwrap();
            assert_eq!(config["architecture"], "arm64");
            assert_eq!(config["os"], "linux");
        }
        pushed.push((repo, digest.to_owned()));

        // The matchbox netboot image, beside the installer: arm64, carrying this variant's kernel.
        let matchbox_repo = format!("{}/matchbox", repo.rsplit_once('/').unwrap().0);
        let (manifest, _) = env
            .registry
            .manifest(&matchbox_repo, "v1.13.99")
            .expect("matchbox image pushed");
        let config: Value = serde_json::from_slice(&env.registry.blob(
            &matchbox_repo,
            manifest["config"]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(config["architecture"], "arm64");
    }

    // 2. Nothing changed: zero imager runs.
    let out = build(&env, &["--imager", OK]);
    assert_success(&out, &format!("build --imager {OK} (nothing changed)"));
    assert_eq!(
        env.podman.runs_of(OK),
        8,
        "a rebuild with nothing changed must not run the imager"
    );
    assert_eq!(
        env.record("gateway")["cache_hits"],
        5,
        "four imager outputs and the matchbox image"
    );

    // 3. One output corrupted: only it is rebuilt.
    let kernel = env.root.join("_out/compute/kernel-arm64");
    std::fs::write(&kernel, "corrupt").unwrap();
    let out = build(&env, &["--imager", OK]);
    assert_success(&out, &format!("build --imager {OK} (a corrupt kernel)"));
    assert_eq!(env.podman.runs_of(OK), 9);
    let record = env.record("compute");
    assert_eq!(record["imager_runs"], 1);
    let rebuilt: Vec<&str> = record["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["cache_hit"] == false)
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(rebuilt, ["kernel"]);
    assert!(std::fs::read_to_string(&kernel)
        .unwrap()
        .starts_with("stand-in kernel arm64"));

    // 4. The imager fails: a clear error, nothing pushed, no tag moved, no half output trusted.
    let tags_before: Vec<Vec<String>> = pushed
        .iter()
        .map(|(repo, _)| env.registry.tags(repo))
        .collect();
    let out = build(&env, &["--imager", FAIL, "--force", "--variant", "compute"]);
    let err = assert_failure(
        &out,
        &format!("build --imager {FAIL} --force --variant compute"),
    );
    assert!(
        err.contains("the imager failed") && err.contains("stand-in imager told to fail"),
        "{err}"
    );
    assert!(
        err.contains("nothing was pushed and no tag was moved"),
        "{err}"
    );
    for ((repo, digest), before) in pushed.iter().zip(&tags_before) {
        assert_eq!(&env.registry.tags(repo), before);
        assert_eq!(
            &env.registry.manifest(repo, "v1.13.99").unwrap().1,
            digest,
            "{repo}:v1.13.99 moved"
        );
    }
    assert!(
        !env.root.join("_out/compute/.tmp-installer").exists(),
        "a failed run leaves no temporary output"
    );
    assert_eq!(
        env.record("compute")["imager"],
        OK,
        "the record of the last good build stays"
    );
    // The next good build still trusts the intact outputs of the last good one: it runs no
    // imager at all.
    let runs = env.podman.runs_of(OK);
    let out = build(&env, &["--imager", OK, "--variant", "compute"]);
    assert_success(&out, &format!("build --imager {OK} --variant compute"));
    assert_eq!(
        env.podman.runs_of(OK),
        runs,
        "the intact outputs were rebuilt"
    );
    assert_eq!(env.record("compute")["imager_runs"], 0);
    assert_eq!(
        env.record("compute")["published"][0]["digest"]
            .as_str()
            .unwrap(),
        pushed[0].1
    );

    // 5. The stand-in honours the imager's contract for a bad profile: a message on stderr, a
    // non-zero exit, no output (so the build test above is not passing against a stand-in that
    // accepts anything).
    let good =
        std::fs::read_to_string(repo_root().join("xtask/tests/golden/profiles/compute/metal.yaml"))
            .unwrap();
    for (bad, message) in [
        (
            good.replace("arch: arm64", "arch: riscv64"),
            "unsupported arch",
        ),
        (
            good.replace("    diskSize: 1306525696\n", ""),
            "diskSize is required",
        ),
        (
            good.replace("/usr/install/arm64/vmlinuz", "/boot/vmlinuz"),
            "input.kernel.path",
        ),
        (
            good.replace("kind: image", "kind: disk"),
            "unknown output kind",
        ),
    ] {
        assert_ne!(bad, good);
        let out = run_with_stdin(
            env.podman
                .command("podman")
                .args(["run", "--rm", "-i", OK, "--tar-to-stdout", "-"]),
            &bad,
        );
        let err = assert_failure(
            &out,
            &format!("the stand-in imager must refuse a bad profile ({message})"),
        );
        assert!(err.contains(message), "{err}");
        assert!(
            out.stdout.is_empty(),
            "no output for a bad profile ({message})"
        );
    }
}

/// `build --dry-run --push` of `variant` in `root` (made a checkout: release tags need its
/// commit), with no engine or tool on PATH but git.
fn dry_run_push(root: &std::path::Path, variant: &str) -> Output {
    checkout(root);
    let out = run(xtask(root).env("PATH", git_only_path()).args([
        "build",
        "--dry-run",
        "--push",
        "--registry",
        "ghcr.io/acme",
        "--variant",
        variant,
    ]));
    assert_success(&out, &format!("build --dry-run --push --variant {variant}"));
    out
}

#[test]
fn dry_run_prints_commands_without_an_engine_or_a_complete_lock() {
    let root = temp_dir("build-dry-run");
    copy_repo_data(&root);
    let out = dry_run_push(&root, "gateway");
    let text = stdout(&out);
    assert!(
        text.contains("# engine: podman (not installed here)"),
        "{text}"
    );
    // The container is named (xtask-<variant>-<kind>-<pid>) so that an interrupt can remove it.
    let run = text
        .lines()
        .find(|l| l.starts_with("podman run --rm -i --name xtask-gateway-installer-"))
        .unwrap_or_else(|| panic!("no imager line in {text}"));
    // Every image the imager reads is fetched once into _out/.oci and mounted read-only.
    let oci = root.join("_out/.oci");
    // Paths as they run (absolute), so that a pasted line works from any directory.
    let tmp = root.join("_out/gateway/.tmp-installer");
    assert!(run.ends_with(&format!(" -v {}:/oci:ro ghcr.io/siderolabs/imager:v1.13.99 --tar-to-stdout - <<'PROFILE' | tar -xzf - -C {}", oci.display(), tmp.display())), "{run}");
    // ... and the directory tar extracts into is made by a printed line before it
    assert!(
        text.contains(&format!(
            "\nrm -rf {}\nmkdir -p {}\npodman run --rm -i --name xtask-gateway-installer-",
            tmp.display(),
            tmp.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nmv {}/installer-arm64.tar {}\n",
            tmp.display(),
            root.join("_out/gateway/installer-arm64.tar").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("skopeo --override-arch arm64 --override-os linux --command-timeout 600s copy --quiet --preserve-digests docker://ghcr.io/siderolabs/drbd@sha256:"),
        "{text}"
    );
    assert!(text.contains("      ociPath: /oci/sha256-"), "{text}");
    // a layout replaces an earlier one whole, as the printed lines do when pasted
    assert!(
        text.contains(&format!("\nrm -rf {}/sha256-", oci.display()))
            && text.contains("# add platform linux/arm64 to the manifest entry in "),
        "{text}"
    );
    assert!(
        text.contains("  systemExtensions:\n    - imageRef: ghcr.io/siderolabs/drbd:"),
        "{text}"
    );
    assert!(
        text.contains("copy --quiet --preserve-digests oci:"),
        "{text}"
    );
    assert!(
        text.contains("docker://ghcr.io/acme/talos-cozystack-spin-tailscale/talos:v1.13.99"),
        "{text}"
    );
    assert!(
        stderr(&out)
            .contains("would be resolved first from the registry, as `cargo xtask lock` does"),
        "{}",
        stderr(&out)
    );
    assert!(!root.join("_out").exists(), "a dry run writes nothing");
}

#[test]
fn a_two_arch_dry_run_prints_a_matchbox_build_per_arch_and_one_index_push() {
    let root = temp_dir("build-dry-run-two-arch");
    copy_repo_data(&root);
    write_netboot_role(&root);
    let text = stdout(&dry_run_push(&root, "netboot"));
    let tree = root.join("target/patched-netboot");
    let saved = root.join("_out/netboot/matchbox");
    for arch in ["amd64", "arm64"] {
        let build = format!("podman build --platform linux/{arch} --build-arg ARCH={arch} -f {}/packages/core/talos/images/matchbox/Dockerfile -t localhost/xtask-matchbox-netboot:build {}\n", tree.display(), tree.display());
        assert!(text.contains(&build), "{build}\n{text}");
        let into = format!(
            "copy --quiet docker-archive:{}-{arch}.tar oci:",
            saved.display()
        );
        assert!(text.contains(&into), "{into}\n{text}");
    }
    assert!(
        text.contains("--multi-arch all oci:")
            && text.contains(" 'docker://ghcr.io/acme/talos-cozystack-netboot/matchbox@<digest of the OCI image index>'\n"),
        "{text}"
    );
}

#[test]
fn push_moves_no_tag_before_every_image_of_every_variant_is_in_the_registry() {
    let root = temp_dir("build-dry-run-push-order");
    copy_repo_data(&root);
    checkout(&root);
    let out = run(xtask(&root).env("PATH", git_only_path()).args([
        "build",
        "--dry-run",
        "--push",
        "--registry",
        "ghcr.io/acme",
    ]));
    assert_success(&out, "build --dry-run --push");
    let text = stdout(&out);
    let pushes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" 'docker://ghcr.io/acme/") || l.contains(" docker://ghcr.io/acme/"))
        .collect();
    // annotated with the checkout's commit, which the release tags are moved by
    let by_digest = |l: &&str| l.ends_with("@<digest of the annotated OCI manifest>'");
    let digests = pushes.iter().copied().filter(by_digest).count();
    assert_eq!(
        digests, 4,
        "installer and matchbox of both variants:\n{text}"
    );
    assert!(
        pushes[..digests].iter().all(by_digest),
        "every image is pushed by digest before the first tag moves:\n{}",
        pushes.join("\n")
    );
    assert_eq!(
        pushes.len(),
        4 + 4 * 2,
        "two tags per image:\n{}",
        pushes.join("\n")
    );
}

#[test]
fn dry_run_with_an_extension_absent_from_the_lock_says_what_it_resolves_first() {
    let root = temp_dir("build-dry-run-absent");
    copy_repo_data(&root);
    let path = root.join("variants/gateway.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"tailscale\"]", "\"tailscale\", \"iscsi-tools\"]");
    std::fs::write(&path, text).unwrap();
    let lock_before = std::fs::read(root.join("variants/extensions.lock")).unwrap();

    let out = run(xtask(&root).env("PATH", "/nonexistent").args([
        "build",
        "--dry-run",
        "--variant",
        "gateway",
        "--registry-mirror",
        "ghcr.io=127.0.0.1:1",
    ]));
    assert_success(
        &out,
        "build --dry-run --variant gateway (an extension absent from the lock)",
    );
    let err = stderr(&out);
    assert!(
        err.contains("field `extensions.iscsi-tools`: missing (used by variant `gateway`)"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("skopeo --command-timeout 60s inspect --raw --tls-verify=false docker://127.0.0.1:1/siderolabs/extensions:v1.13.99\n"),
        "the registry commands a real run starts with come first:\n{text}"
    );
    assert!(
        text.contains(
            "- imageRef: ghcr.io/siderolabs/iscsi-tools:<tag and digest from image-digests>\n"
        ),
        "{text}"
    );
    assert_eq!(
        std::fs::read(root.join("variants/extensions.lock")).unwrap(),
        lock_before,
        "a dry run writes no lock"
    );
    assert!(!root.join("_out").exists(), "a dry run writes nothing");

    // --locked --dry-run fails as the real --locked build would, naming every problem.
    let out = run(xtask(&root).env("PATH", "/nonexistent").args([
        "build",
        "--dry-run",
        "--locked",
        "--variant",
        "gateway",
    ]));
    let err = assert_failure(&out, "build --dry-run --locked --variant gateway");
    // three entries, and the base installer and the imager a --locked build also needs pinned
    assert!(
        err.contains("--locked: variants/extensions.lock cannot be used as it is: 5 problems"),
        "{err}"
    );
    assert!(err.contains("`extensions.iscsi-tools`: missing"), "{err}");
    assert!(err.contains("field `base_installer`: missing"), "{err}");
    assert!(err.contains("field `imager`: missing"), "{err}");
    assert!(
        stdout(&out).is_empty(),
        "nothing printed as if it would run"
    );
}

#[test]
fn locked_build_refuses_unpinned_entries_before_building() {
    let root = temp_dir("build-locked");
    copy_repo_data(&root);
    let out = run(xtask(&root).args([
        "build",
        "--locked",
        "--variant",
        "gateway",
        "--imager",
        "localhost/none:v0",
    ]));
    let err = assert_failure(&out, "build --locked --variant gateway");
    assert!(
        err.contains("--locked: variants/extensions.lock cannot be used"),
        "{err}"
    );
    assert!(
        err.contains("`extensions.tailscale`") && err.contains("has no digest"),
        "{err}"
    );
    assert!(!root.join("_out").exists());
}

#[test]
fn an_imager_of_another_talos_release_is_refused_before_it_runs() {
    // Its kernel goes into every output, under drbd and zfs modules built for the plan's.
    let build = |imager: &str| {
        run(xtask(&fixture_root()).env("PATH", "/nonexistent").args([
            "build",
            "--dry-run",
            "--variant",
            "compute",
            "--imager",
            imager,
        ]))
    };
    let out = build("ghcr.io/siderolabs/imager:v1.12.0");
    let err = assert_usage(&out, "build --imager <a v1.12.0 imager>");
    assert!(err.contains("--imager (or XTASK_IMAGER) ghcr.io/siderolabs/imager:v1.12.0 is the imager of Talos v1.12.0, but this build is for Talos v1.13.99"), "{err}");
    assert!(
        err.contains("fix: drop --imager")
            && err.contains("`cargo xtask lock --talos-version v1.12.0`"),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "refused before anything is printed");
    // a mirror of the plan's release, or a tag that names no release, is the user's choice
    for imager in [
        "mirror.example/imager:v1.13.99",
        "localhost/imager:v1.13.99-from-source",
    ] {
        assert_success(&build(imager), &format!("build --imager {imager}"));
    }
}

#[test]
fn dry_run_and_json_are_refused_together() {
    // A dry run prints commands on stdout, so its stdout could not also be the JSON contract.
    for command in ["build", "lock", "upstream", "patch", "smoke", "smoke boot"] {
        let words: Vec<&str> = command.split(' ').collect();
        let out = run(xtask(&fixture_root())
            .args(words)
            .args(["--dry-run", "--json"]));
        let err = assert_usage(&out, &format!("{command} --dry-run --json"));
        assert!(
            err.contains("'--dry-run' cannot be used with '--json'"),
            "{command}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn matchbox_base_with_docker_is_refused_before_anything_runs() {
    let root = temp_dir("build-docker-base");
    copy_repo_data(&root);
    let out = run(xtask(&root).args([
        "build",
        "--dry-run",
        "--engine",
        "docker",
        "--matchbox-base",
        "localhost/base:arm64",
    ]));
    let err = assert_usage(&out, "build --dry-run --engine docker --matchbox-base");
    assert!(
        err.contains("--matchbox-base needs podman") && err.contains("fix: pass --engine podman"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no command printed: {}",
        stdout(&out)
    );
}

/// Opt-in, with `COZYSTACK_SRC` pointing at a clone of upstream CozyStack: without `--tree`,
/// the build patches the real pinned upstream for the variant and builds the matchbox image
/// from the patched Dockerfile, with the arm64 assets and the arm64 (ttyAMA0) profile.
#[test]
fn real_upstream_matchbox_is_built_from_the_patched_dockerfile() {
    let Some(src) = std::env::var_os("COZYSTACK_SRC") else {
        skipped("set COZYSTACK_SRC to a CozyStack clone to run this test");
        return;
    };
    // about the live pins: the real upstream tree names the release the live lock pins
    let Some(env) = Pipeline::setup_live("build-real-upstream") else {
        return;
    };
    let mut cmd = env.xtask();
    cmd.args(["build", "--locked", "--engine", "podman", "--imager", OK])
        .args(["--variant", "gateway", "--matchbox-base", BASE, "--source"])
        .arg(&src);
    let out = run(&mut cmd);
    assert_success(&out, &format!("{cmd:?}"));
    let archive = env.root.join("_out/gateway/matchbox-arm64.tar");
    // Every layer of the saved image, searched for the profile the Dockerfile copied.
    let script = r#"set -e
        for layer in $(tar -xOf "$1" manifest.json | tr ',"[]{}' '\n\n\n\n\n\n' | grep '\.tar$\|/layer\.tar$'); do
            tar -xOf "$1" "$layer" | tar -xOf - var/lib/matchbox/profiles/default.json 2>/dev/null || true
        done"#;
    let out = run(std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&archive));
    let profile = stdout(&out);
    assert!(
        profile.contains("console=ttyAMA0"),
        "matchbox profile: {profile:?} {}",
        stderr(&out)
    );
    assert!(!profile.contains("console=ttyS0"), "{profile}");
    let record = env.record("gateway");
    assert!(record["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "matchbox-arm64.tar"));
}

/// `--emulate`, the slow fallback: the engine runs an arm64 imager image (arm64 busybox, our
/// stand-in script) under qemu user emulation through binfmt_misc; on this amd64 host it could
/// not run at all otherwise.
#[test]
fn emulate_runs_an_arm64_imager_image_under_qemu() {
    use crate::support::arm64::{arm64, binfmt_aarch64};
    const ARM64_IMAGER: &str = "localhost/standin-imager:arm64";
    if !have_tools(&["qemu-aarch64-static", "apt-get", "apt-cache", "dpkg-deb"])
        || !binfmt_aarch64()
    {
        return;
    }
    let Some(env) = Pipeline::setup("build-emulate", None) else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/imager.sh");
    env.podman.busybox_image_for(
        Some("arm64"),
        &arm64().busybox,
        ARM64_IMAGER,
        &[(&script, "/imager")],
        "/imager",
    );
    let mut cmd = env.xtask();
    cmd.args([
        "build",
        "--locked",
        "--emulate",
        "--no-matchbox",
        "--engine",
        "podman",
    ])
    .args(["--imager", ARM64_IMAGER, "--variant", "compute"]);
    let out = run(&mut cmd);
    assert_success(&out, &format!("{cmd:?}"));
    assert_eq!(
        env.podman.runs_of(ARM64_IMAGER),
        4,
        "one emulated imager run per output"
    );
    let record = env.record("compute");
    assert_eq!(record["imager_runs"], 4);
    let kernel = std::fs::read_to_string(env.root.join("_out/compute/kernel-arm64")).unwrap();
    assert!(kernel.starts_with("stand-in kernel arm64"), "{kernel}");
}

#[test]
fn a_dry_run_checks_the_options_before_printing_any_command() {
    // a saved dry run is never a cut-off list of commands: a bad value given up front fails first
    let root = temp_dir("build-dry-run-bad-options");
    copy_repo_data(&root);
    for (args, problem) in [
        (
            &["--registry", "Bad_Reg!"][..],
            "--registry (or REGISTRY) = \"Bad_Reg!\"",
        ),
        (
            &["--tree", "/nonexistent"][..],
            "/nonexistent is not a CozyStack tree",
        ),
        (
            &["--imager", ":bad"][..],
            "--imager (or XTASK_IMAGER) = \":bad\": not a full image reference",
        ),
    ] {
        for command in ["build", "ci"] {
            let out = run(xtask(&root).arg(command).arg("--dry-run").args(args));
            let err = assert_usage(&out, &format!("{command} --dry-run {args:?}"));
            assert!(err.contains(problem), "{err}");
            assert_eq!(
                stdout(&out),
                "",
                "{command} --dry-run {args:?} printed commands"
            );
        }
    }
}

/// Release tags move by the commit of the files built: a copy of them inside another checkout
/// (here the repository the tests run in, or none) is not that checkout's commit. The dry run
/// refuses it as the real run does, after the pushes.
#[test]
fn a_root_that_is_no_checkout_of_its_own_moves_no_release_tag() {
    let root = temp_dir("build-dry-run-no-checkout");
    copy_repo_data(&root);
    let out = run(xtask(&root).env("PATH", git_only_path()).args([
        "build",
        "--dry-run",
        "--push",
        "--registry",
        "ghcr.io/acme",
        "--variant",
        "compute",
    ]));
    let err = assert_failure(&out, "build --dry-run --push outside a checkout of its own");
    assert!(err.contains("moved no release tag"), "{err}");
    assert!(
        stdout(&out).contains("# warning: ")
            && (stdout(&out).contains("is not a git checkout of its own")
                || stdout(&out).contains("this checkout's commit cannot be read")),
        "{}",
        stdout(&out)
    );
}

/// The patch step a dry run shows fetches from where the real run would: `--source` is passed
/// on, with a URL's credentials redacted.
#[test]
fn a_dry_run_passes_the_source_on_to_the_patch_step() {
    let root = temp_dir("build-dry-run-source");
    copy_repo_data(&root);
    // the clone given as --source must be a git repository: the root is made one
    checkout(&root);
    for (source, shown) in [
        (
            root.to_str().unwrap(),
            format!("--source {}", root.display()),
        ),
        (
            "https://user:secret@git.example/cozystack.git",
            "--source 'https://<redacted>@git.example/cozystack.git'".to_owned(),
        ),
    ] {
        let out = run(xtask(&root).args([
            "build",
            "--dry-run",
            "--variant",
            "compute",
            "--source",
            source,
        ]));
        assert_success(&out, &format!("build --dry-run --source {source}"));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("cargo xtask patch --variant compute {shown}")),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }
}

/// XTASK_NO_PREFETCH is read as a switch: 1, true, yes or on turn prefetching off; 0, false, no,
/// off or empty leave it on (any other value is refused, as the usage tests check).
#[test]
fn no_prefetch_from_the_environment_reads_as_a_switch() {
    let prefetches = |value: &str| {
        let out = run(xtask(&fixture_root())
            .args(["build", "--dry-run", "--variant", "compute"])
            .env("XTASK_NO_PREFETCH", value));
        assert_success(&out, &format!("XTASK_NO_PREFETCH={value} build --dry-run"));
        stdout(&out).contains(" oci:")
    };
    for off in ["1", "true", "yes", "on"] {
        assert!(!prefetches(off), "XTASK_NO_PREFETCH={off}");
    }
    for on in ["0", "false", "no", "off", ""] {
        assert!(prefetches(on), "XTASK_NO_PREFETCH={on}");
    }
}

/// An empty CONTAINER_ENGINE (a CI matrix without the key) counts as unset: the engine is
/// detected as without it, where clap alone refused it as "a value is required for '--engine'".
/// (`ci --dry-run` fails here as a real run would, at the fixture's unpinned lock: exit 1, after
/// every stage is shown.)
#[test]
fn an_empty_container_engine_counts_as_unset() {
    for command in ["build", "ci"] {
        let dry_run = |engine: Option<&str>| {
            let mut cmd = xtask(&fixture_root());
            cmd.args([command, "--dry-run", "--variant", "compute"])
                .env_remove("CONTAINER_ENGINE");
            if let Some(engine) = engine {
                cmd.env("CONTAINER_ENGINE", engine);
            }
            let out = run(&mut cmd);
            if command == "build" {
                assert_success(
                    &out,
                    &format!("CONTAINER_ENGINE={engine:?} build --dry-run"),
                );
            }
            (out.status.code(), stdout(&out))
        };
        let unset = dry_run(None);
        assert!(unset.1.contains("# engine: "), "{command}: {}", unset.1);
        assert_eq!(dry_run(Some("")), unset, "{command}");
        assert_ne!(
            dry_run(Some("docker")),
            dry_run(Some("podman")),
            "{command}"
        );
    }
}

/// `--tree` (or XTASK_UPSTREAM_TREE) is only for the matchbox image: with `--no-matchbox` it is
/// ignored, and said to be on stderr; not refused, as the variable may be set for other runs.
/// (`ci --dry-run` fails here as a real run would, at the fixture's unpinned lock: exit 1.)
#[test]
fn a_tree_with_no_matchbox_is_warned_about_not_refused() {
    let root = fixture_root();
    let tree = root.join("no-such-tree");
    let tree = tree.to_str().unwrap();
    let warning = format!("warning: --tree (or XTASK_UPSTREAM_TREE) {tree} is ignored because --no-matchbox was given");
    for command in ["build", "ci"] {
        let dry_run = |args: &[&str], env: Option<&str>| {
            let mut cmd = xtask(&root);
            cmd.args([
                command,
                "--dry-run",
                "--variant",
                "compute",
                "--no-matchbox",
            ])
            .args(args)
            .env_remove("XTASK_UPSTREAM_TREE");
            if let Some(tree) = env {
                cmd.env("XTASK_UPSTREAM_TREE", tree);
            }
            let out = run(&mut cmd);
            let what =
                format!("{command} --dry-run --no-matchbox {args:?}, XTASK_UPSTREAM_TREE={env:?}");
            match command {
                "build" => assert_success(&out, &what),
                _ => assert_ne!(out.status.code(), Some(2), "{what}: {}", stderr(&out)),
            }
            stderr(&out)
        };
        for err in [dry_run(&["--tree", tree], None), dry_run(&[], Some(tree))] {
            assert!(err.contains(&warning), "{command}: {err}");
            assert!(
                err.contains(
                    "fix: drop --tree (or unset XTASK_UPSTREAM_TREE), or drop --no-matchbox"
                ),
                "{command}: {err}"
            );
        }
        let err = dry_run(&[], None);
        assert!(!err.contains("--tree"), "{command} without a tree: {err}");
    }
}

/// An imager tag that names no release (`latest`) may move, and the cache names the imager as
/// written: the build says so. By digest, or by a release tag, it does not.
#[test]
fn an_imager_tag_that_names_no_release_is_warned_about() {
    let build = |imager: &str| {
        let out = run(xtask(&fixture_root()).env("PATH", "/nonexistent").args([
            "build",
            "--dry-run",
            "--variant",
            "compute",
            "--imager",
            imager,
        ]));
        assert_success(&out, &format!("build --dry-run --imager {imager}"));
        stderr(&out)
    };
    let err = build("ghcr.io/siderolabs/imager:latest");
    assert!(
        err.contains("warning: --imager (or XTASK_IMAGER) ghcr.io/siderolabs/imager:latest: its tag `latest` names no Talos release"),
        "{err}"
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    for quiet in [
        format!("ghcr.io/siderolabs/imager:latest@{digest}"),
        "ghcr.io/siderolabs/imager:v1.13.99".into(),
    ] {
        assert!(!build(&quiet).contains("names no Talos release"), "{quiet}");
    }
}
