//! The pipeline through upstream's imager code: `cargo xtask lock` and `cargo xtask build` run
//! unchanged against the Talos imager built from the Go module at the pinned version
//! (`localhost/imager:<talos>-from-source`, see support/imager.rs), with STAND-IN extension
//! images, a STAND-IN installer-base and STAND-IN boot assets in a local registry; then smoke
//! proves what the imager made: the installer image's layout, the extensions in the initramfs
//! (listed on the console of a qemu boot), and the metal disk booting through the bootloader
//! the imager installed. Only the kernel, the init and the extension contents are stand-ins.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::imager::{self, Extension, EXTENSION_LINE};
use crate::support::pipeline::{Pipeline, BASE};
use crate::support::*;
use serde_json::Value;

/// Extensions by name with the tag of their committed lock entry (what the stand-ins are
/// pushed as), plus `future`, a stand-in that requires a newer Talos.
fn stand_in_extensions(root: &std::path::Path) -> Vec<(String, String)> {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("variants/extensions.lock")).unwrap(),
    )
    .unwrap();
    let mut out: Vec<(String, String)> = lock["extensions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, reference)| {
            let reference = reference.as_str().unwrap();
            let tag = reference
                .split('@')
                .next()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1;
            (name.clone(), tag.to_owned())
        })
        .collect();
    out.push(("future".into(), "1.0.0".into()));
    out
}

fn build(env: &Pipeline, image: &str, mirror: &str, variants: &[&str]) -> Output {
    let mut cmd = env.xtask();
    cmd.env_remove("XTASK_NO_PREFETCH")
        .args(["build", "--locked", "--engine", "podman", "--imager", image])
        .args(["--registry-mirror", mirror, "--tree"])
        .arg(&env.tree)
        .args(["--matchbox-base", BASE]);
    for v in variants {
        cmd.args(["--variant", v]);
    }
    run(&mut cmd)
}

/// The console lines of the stand-in init that name an extension the imager appended.
fn extensions_on_console(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| {
            l.split_once(EXTENSION_LINE)
                .map(|(_, n)| n.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_imager_built_from_source_makes_every_output_and_its_disk_boots() {
    if !have_tools(&[
        "go",
        "podman",
        "buildah",
        "skopeo",
        "docker-registry",
        "qemu-system-aarch64",
        "mksquashfs",
        "zstd",
        "xz",
        "cpio",
        "mkfs.vfat",
        "mcopy",
        "mkfs.xfs",
        "depmod",
        "pigz",
        "qemu-img",
    ]) || !have_tools(arm64::BOOT_TOOLS)
    {
        return;
    }
    let started = Instant::now();
    let talos = imager::talos_version();
    let binary = imager::binary();
    // Built from the talos module at exactly the pinned version, stamped like upstream's build.
    assert!(
        binary
            .build_info
            .contains("path\tgithub.com/siderolabs/talos/cmd/installer"),
        "{}",
        binary.build_info
    );
    assert!(
        binary
            .build_info
            .contains(&format!("mod\tgithub.com/siderolabs/talos\t{talos}\t")),
        "{}",
        binary.build_info
    );
    assert!(
        binary
            .build_info
            .contains("-X github.com/siderolabs/talos/pkg/machinery/gendata.VersionSHA="),
        "{}",
        binary.build_info
    );

    // about the live pins: the imager is built from source at the release the live lock pins
    let Some(env) = Pipeline::setup_live("imager-e2e") else {
        return;
    };
    let lock_text = std::fs::read_to_string(env.root.join("variants/extensions.lock")).unwrap();
    let lock: Value = serde_json::from_str(&lock_text).unwrap();
    assert_eq!(
        lock["talos_version"], talos,
        "xtask/tests/imager/go.mod must require the Talos version variants/extensions.lock pins"
    );
    let image = imager::build_image(&env.podman, &env.dir.join("imager"));
    let image_s = started.elapsed().as_secs_f64();

    // A third variant whose one extension wants a newer Talos: the imager must refuse it.
    std::fs::write(
        env.root.join("variants/future.json"),
        r#"{"name": "future", "description": "Test variant whose extension needs a newer Talos", "arch": "arm64", "extensions": ["future"], "firmware": [], "repository": "talos-future/talos", "outputs": ["initramfs"], "extra_kernel_args": []}"#,
    )
    .unwrap();
    let names = stand_in_extensions(&env.root);
    // constraints around the pinned release, so that a bump leaves them true: this minor, the next
    let (major, minor) = {
        let mut parts = talos.trim_start_matches('v').split('.');
        let mut next = || parts.next().unwrap().parse::<u32>().unwrap();
        (next(), next())
    };
    let this_minor = format!(">= v{major}.{minor}.0");
    let next_minor = format!(">= v{major}.{}.0", minor + 1);
    let extensions: Vec<Extension> = names
        .iter()
        .map(|(name, tag)| Extension {
            name,
            tag,
            talos_constraint: if name == "future" {
                &next_minor
            } else {
                &this_minor
            },
        })
        .collect();
    let digests = imager::push_stand_ins(
        &env.podman,
        &env.registry,
        &env.dir.join("stand-ins"),
        &talos,
        &extensions,
    );

    // The normal lock path pins the stand-ins by digest, through the mirror.
    let mirror = format!("ghcr.io={}", env.registry.addr);
    let out = run(env.xtask().args([
        "lock",
        "--registry-mirror",
        &mirror,
        "--talos-version",
        &talos,
    ]));
    assert_success(
        &out,
        &format!("lock --registry-mirror {mirror} --talos-version {talos}"),
    );
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join("variants/extensions.lock")).unwrap(),
    )
    .unwrap();
    for line in digests.lines() {
        let name = line.split(':').next().unwrap().rsplit('/').next().unwrap();
        assert_eq!(lock["extensions"][name], line, "{lock:#}");
    }
    // The stand-in installer-base too, by digest (the bench's made-up pin is replaced).
    let base = lock["base_installer"].as_str().unwrap_or_default();
    assert!(
        base.starts_with(&format!(
            "ghcr.io/siderolabs/installer-base:{talos}@sha256:"
        )) && !base.ends_with(&"b1".repeat(32)),
        "{lock:#}"
    );
    commit_all(&env.root, "lock the stand-ins");

    // Both roles, every output kind they declare, through the real imager.
    let blobs_before = env.registry.blob_fetches().len();
    let build_started = Instant::now();
    let out = build(&env, &image, &mirror, &["compute", "gateway"]);
    let build_s = build_started.elapsed().as_secs_f64();
    assert_success(&out, "build of compute and gateway");
    let fetched: Vec<String> = env.registry.blob_fetches()[blobs_before..].to_vec();
    let unique: BTreeSet<&String> = fetched.iter().collect();
    let mut kinds = BTreeSet::new();
    let (mut runs, mut images_fetched) = (0, 0);
    for variant in ["compute", "gateway"] {
        let record = env.record(variant);
        assert_eq!(record["imager"], image);
        assert_eq!(record["imager_runs"], 4, "{record:#}");
        runs += record["imager_runs"].as_u64().unwrap();
        images_fetched += record["images_fetched"].as_u64().unwrap();
        for file in record["files"].as_array().unwrap() {
            kinds.insert(file["name"].as_str().unwrap().to_owned());
        }
        let log =
            std::fs::read_to_string(env.root.join(format!("_out/{variant}/imager-metal.log")))
                .unwrap();
        assert!(log.contains("disk image ready"), "{log}");
    }
    for kind in [
        "installer-arm64.tar",
        "kernel-arm64",
        "initramfs-metal-arm64.xz",
        "metal-arm64.raw.xz",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    // Each image once per build: the four extensions and the base installer, each a config
    // and one layer; every blob crossed the network exactly once.
    assert_eq!(images_fetched, 5, "images fetched into _out/.oci");
    assert_eq!(
        fetched.len(),
        unique.len(),
        "a blob was fetched twice: {fetched:#?}"
    );
    assert_eq!(fetched.len(), 10, "{fetched:#?}");

    // Nothing changed: no imager run, nothing fetched.
    let blobs_before = env.registry.blob_fetches().len();
    let rebuild_started = Instant::now();
    let out = build(&env, &image, &mirror, &["compute", "gateway"]);
    let rebuild_s = rebuild_started.elapsed().as_secs_f64();
    assert_success(&out, "rebuild of compute and gateway (nothing changed)");
    for variant in ["compute", "gateway"] {
        assert_eq!(env.record(variant)["imager_runs"], 0);
    }
    assert_eq!(env.registry.blob_fetches().len(), blobs_before);

    // The installer is what `talosctl upgrade --image` runs: an arm64 image whose entrypoint
    // is the base installer's, with the imager's boot assets under /usr/install/arm64/.
    let installer = env.root.join("_out/compute/installer-arm64.tar");
    let layout = installer_layout(&installer, &env.dir.join("installer-unpacked"));
    assert_eq!(layout.arch, "arm64");
    assert_eq!(layout.entrypoint, ["/bin/installer"]);
    assert!(
        layout
            .install_files
            .contains("usr/install/arm64/systemd-boot.efi")
            && layout
                .install_files
                .contains("usr/install/arm64/vmlinuz.efi"),
        "{:?}",
        layout.install_files
    );

    // The initramfs holds exactly each role's extensions: the stand-in init lists them.
    let smoke_started = Instant::now();
    for (variant, expected) in [
        ("compute", &["drbd", "spin", "zfs"][..]),
        ("gateway", &["drbd", "spin", "tailscale", "zfs"][..]),
    ] {
        let out =
            run(env
                .xtask()
                .args(["smoke", "--variant", variant, "--registry-mirror", &mirror]));
        let console =
            std::fs::read_to_string(env.root.join(format!("_out/{variant}/smoke-console.log")))
                .unwrap_or_default();
        assert_success(&out, &format!("smoke {variant}; its console:\n{console}"));
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(extensions_on_console(&console), expected, "{console}");
    }
    let smoke_s = smoke_started.elapsed().as_secs_f64();

    // The metal disk boots under UEFI through the sd-boot the imager installed, into the UKI
    // it assembled, to the maintenance line and the TLS port.
    let disk = env.root.join("_out/gateway/metal-arm64.raw.xz");
    let log = env.dir.join("disk-console.log");
    let out = run(env
        .xtask()
        .arg("smoke")
        .arg("boot")
        .arg("--disk")
        .arg(&disk)
        .args([
            "--port",
            "50000",
            "--tls",
            "--json",
            "--timeout",
            "300",
            "--log",
        ])
        .arg(&log));
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    assert_success(&out, &format!("smoke boot --disk; its console:\n{console}"));
    let boot: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(boot["result"], "passed", "{boot:#}");
    assert!(
        console.contains(&format!("Talos ({talos})")),
        "sd-boot's menu entry: {console}"
    );
    assert!(
        console.contains("EFI stub: Booting Linux Kernel"),
        "{console}"
    );
    assert_eq!(
        extensions_on_console(&console),
        ["drbd", "spin", "tailscale", "zfs"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "{console}"
    );

    // The imager decides what it accepts, and the build fails with its message.
    let out = build(&env, &image, &mirror, &["future"]);
    let err = assert_failure(&out, "build of a variant the imager refuses");
    assert!(
        err.contains(&format!(
            "version constraint {next_minor} can't be satisfied with Talos version"
        )),
        "{err}"
    );

    eprintln!(
        "imager-from-source: go build {}, image ready after {image_s:.1}s, full build {build_s:.1}s ({runs} imager runs, {} blob fetches, {} unique), rebuild {rebuild_s:.1}s, smoke of both roles {smoke_s:.1}s, disk boot to the maintenance line {}s, total {:.1}s",
        binary
            .build_s
            .map_or("cached".to_owned(), |s| format!("{s:.1}s")),
        fetched.len(),
        unique.len(),
        boot["time_to_expect_s"],
        started.elapsed().as_secs_f64()
    );
}

struct InstallerLayout {
    arch: String,
    entrypoint: Vec<String>,
    /// Files under usr/install/ in the image's last layer (the imager's artifacts layer).
    install_files: BTreeSet<String>,
}

/// Reads a docker-archive (manifest.json, config, layer tars) as the imager writes it.
fn installer_layout(archive: &std::path::Path, dir: &std::path::Path) -> InstallerLayout {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let out = run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir));
    assert_success(&out, &format!("tar -xf {}", archive.display()));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(manifest[0]["Config"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "base layer + artifacts layer: {manifest:#}"
    );
    let last = dir.join(layers.last().unwrap().as_str().unwrap());
    let out = run(Command::new("tar").arg("-tzf").arg(&last));
    assert_success(&out, &format!("tar -tzf {}", last.display()));
    InstallerLayout {
        arch: config["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        entrypoint: config["config"]["Entrypoint"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
        install_files: stdout(&out)
            .lines()
            .map(|l| l.trim_start_matches("./").to_owned())
            .filter(|l| l.starts_with("usr/install/") && !l.ends_with('/'))
            .collect(),
    }
}
