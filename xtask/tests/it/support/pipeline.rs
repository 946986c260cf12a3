//! The pipeline's test bench: podman configured for these machines, a real registry, the
//! STAND-IN imager images (tests/standin/imager.sh; the real imager cannot be pulled here), a
//! stand-in arm64 matchbox base, a synthetic upstream tree, and a repository copy whose lock
//! is fully pinned, as a git repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::podman::Podman;
use super::registry::Registry;
use super::{commit_all, copy_live_repo_data, copy_repo_data, git, have_tools, temp_dir};

pub const OK: &str = "localhost/standin-imager:ok";
pub const FAIL: &str = "localhost/standin-imager:fail";
pub const BASE: &str = "localhost/standin-matchbox-base:arm64";

/// A role of two arches (`variants/mixed.json`): amd64 control planes and arm64 workers, with
/// an installer and a matchbox image each one index of both arches.
pub const TWO_ARCH_ROLE: &str = r#"{
  "name": "mixed",
  "description": "One installer and one netboot image for amd64 control planes and arm64 workers",
  "arch": ["amd64", "arm64"],
  "extensions": ["drbd", "zfs"],
  "repository": "talos-cozystack-mixed/talos",
  "outputs": ["installer", "kernel", "initramfs"]
}
"#;

pub struct Pipeline {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub tree: PathBuf,
    pub podman: Podman,
    pub registry: Registry,
}

impl Pipeline {
    /// Everything a build needs, or `None` (test skipped) when tools are missing. With
    /// `boot_assets` (kernel, initramfs), the OK stand-in imager returns them as the kernel and
    /// initramfs outputs, so that the smoke boot has something real to boot.
    pub fn setup(name: &str, boot_assets: Option<(&Path, &Path)>) -> Option<Pipeline> {
        Pipeline::setup_from(name, boot_assets, copy_repo_data)
    }

    /// The same bench on the repository's live variants and lock, for the tests about the live
    /// pins: the imager built from source at the pinned release, the real pinned upstream tree.
    pub fn setup_live(name: &str) -> Option<Pipeline> {
        Pipeline::setup_from(name, None, copy_live_repo_data)
    }

    fn setup_from(
        name: &str,
        boot_assets: Option<(&Path, &Path)>,
        copy: fn(&Path),
    ) -> Option<Pipeline> {
        if !have_tools(&[
            "podman",
            "buildah",
            "skopeo",
            "docker-registry",
            "runc",
            "git",
        ]) {
            return None;
        }
        let dir = temp_dir(name);
        let podman = Podman::new(&dir.join("podman"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/imager.sh");
        let mut files = vec![(script.as_path(), "/imager")];
        if let Some((kernel, initramfs)) = boot_assets {
            files.push((kernel, "/assets/kernel"));
            files.push((initramfs, "/assets/initramfs"));
        }
        podman.busybox_image(OK, &files, "/imager");
        let marker = dir.join("fail");
        std::fs::write(&marker, "").unwrap();
        podman.busybox_image(FAIL, &[(&script, "/imager"), (&marker, "/fail")], "/imager");
        podman.base(BASE, "arm64", &marker);
        let registry = Registry::start(&dir.join("registry"));
        let root = dir.join("repo");
        copy(&root);
        let talos = pin_every_extension(&root);
        let tree = dir.join("tree");
        synthetic_tree(&tree, &talos);
        git(&root, &["init", "-q", "-b", "main"]);
        commit_all(&root, "x");
        Some(Pipeline {
            dir,
            root,
            tree,
            podman,
            registry,
        })
    }

    /// The real xtask binary on this bench: podman's configuration and a private target dir.
    pub fn xtask(&self) -> Command {
        let mut cmd = super::xtask(&self.root);
        // The stand-in imagers pull nothing, and the pinned digests are made up: nothing to
        // prefetch (tests/imager.rs covers prefetching with the real imager).
        cmd.envs(self.podman.env())
            .env("CARGO_TARGET_DIR", self.root.join("target"))
            .env("XTASK_NO_PREFETCH", "true");
        cmd
    }

    /// `build --locked --push` with podman to this bench's registry (`<registry>/acme`), the
    /// matchbox image from the synthetic tree on `base`.
    pub fn build(&self, base: &str) -> Command {
        let mut cmd = self.xtask();
        cmd.args(["build", "--locked", "--push", "--engine", "podman"])
            .arg("--registry")
            .arg(format!("{}/acme", self.registry.addr))
            .arg("--tree")
            .arg(&self.tree)
            .args(["--matchbox-base", base]);
        cmd
    }

    /// `ci` as the workflow runs it (`GITHUB_ACTIONS`), with podman, the stand-in imager `OK`,
    /// this bench's registry (`<registry>/acme`), the synthetic tree and the matchbox base `BASE`.
    pub fn ci(&self) -> Command {
        let mut cmd = self.xtask();
        cmd.args(["ci", "--engine", "podman", "--imager", OK])
            .arg("--registry")
            .arg(format!("{}/acme", self.registry.addr))
            .arg("--tree")
            .arg(&self.tree)
            .args(["--matchbox-base", BASE])
            .env("GITHUB_ACTIONS", "true");
        cmd
    }

    pub fn record(&self, variant: &str) -> Value {
        let path = self.root.join("_out").join(variant).join("build.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// A synthetic upstream tree (our own content) whose matchbox Dockerfile follows the patched
/// upstream contract: `ARG ARCH`, assets copied from `_out/assets/*-${ARCH}*`. Its profile names
/// Talos release `talos` (the lock's).
pub fn synthetic_tree(dir: &Path, talos: &str) {
    let pkg = dir.join("packages/core/talos/images");
    std::fs::create_dir_all(pkg.join("talos/profiles")).unwrap();
    std::fs::create_dir_all(pkg.join("matchbox/profiles")).unwrap();
    std::fs::write(
        pkg.join("talos/profiles/installer.yaml"),
        format!("arch: amd64\nversion: {talos}\n"),
    )
    .unwrap();
    std::fs::write(
        pkg.join("matchbox/Dockerfile"),
        "ARG ARCH=amd64\nFROM example.invalid/matchbox:stand-in\nARG ARCH\n\
         COPY _out/assets/initramfs-metal-${ARCH}.xz /var/lib/matchbox/assets/initramfs.xz\n\
         COPY _out/assets/kernel-${ARCH} /var/lib/matchbox/assets/vmlinuz\n\
         COPY packages/core/talos/images/matchbox/profiles /var/lib/matchbox/profiles\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("matchbox/profiles/default.json"),
        r#"{"id": "default", "boot": {"args": ["console=ttyAMA0"]}}"#,
    )
    .unwrap();
}

/// The committed lock leaves some extensions unpinned until someone with network runs
/// `cargo xtask lock`; the test pins them to digests of its own, so the build runs `--locked`
/// as CI does and never reaches for a registry it cannot have. Returns the lock's Talos release.
pub fn pin_every_extension(root: &Path) -> String {
    let path = root.join("variants/extensions.lock");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (name, reference) in lock["extensions"].as_object_mut().unwrap() {
        let text = reference.as_str().unwrap().to_owned();
        if !text.contains('@') {
            use sha2::Digest;
            let digest = format!("{:x}", sha2::Sha256::digest(name.as_bytes()));
            *reference = Value::String(format!("{text}@sha256:{digest}"));
        }
    }
    // and the base installer, which a --locked build names only by digest
    let talos = lock["talos_version"].as_str().unwrap().to_owned();
    lock["base_installer"] = Value::String(format!(
        "ghcr.io/siderolabs/installer-base:{talos}@sha256:{}",
        "b1".repeat(32)
    ));
    std::fs::write(&path, serde_json::to_string_pretty(&lock).unwrap() + "\n").unwrap();
    talos
}
