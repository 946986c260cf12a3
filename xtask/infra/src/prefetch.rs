//! The container images a build's imager runs read (extensions, the base installer), fetched
//! once per build into OCI image layouts and handed to the imager as `ociPath` inputs.
//!
//! Without this every imager run pulls every image it names again: a variant with four
//! extensions and three outputs that use them pulls each extension three times, and two
//! variants that share an extension pull it six times. With it, each image crosses the network
//! at most once per build (a digest-pinned image not even that when a previous build already
//! fetched it), through the same registry client as the lock (mirrors, credentials, retries),
//! and the imager runs need no network at all.
//!
//! Layouts live in `_out/.oci/<name>/` and are mounted read-only at `/oci` in the imager's
//! container. The imager's `ociPath` reader takes the index entry for linux/<arch> and needs
//! the entry's `platform`, which skopeo does not write, so it is added here from the image's
//! own config (and an image for another architecture is refused).
//! `imageRef` stays in the profile: the imager still names the installer image after it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cmd::Cmd;
use crate::registry::Skopeo;
use domain::profile::{ContainerAsset, Kind, Profile};
use domain::{Arch, ImageRef};

/// Where the layouts appear inside the imager's container.
pub const MOUNT: &str = "/oci";

pub struct Prefetch {
    /// `_out/.oci`
    pub dir: Utf8PathBuf,
    skopeo: Mutex<Skopeo>,
    /// Layouts fetched or checked during this build.
    done: Mutex<BTreeSet<String>>,
}

/// What one `ensure` did.
#[derive(Default)]
pub struct Fetched {
    /// Images copied from the registry.
    pub images: u32,
    /// Images already in `_out/.oci` (digest-pinned, from this or an earlier build).
    pub reused: u32,
}

impl Prefetch {
    /// Fetches through `skopeo`, printing instead in its runner's dry run.
    pub fn new(dir: Utf8PathBuf, skopeo: Skopeo) -> Prefetch {
        Prefetch {
            dir,
            skopeo: Mutex::new(skopeo),
            done: Mutex::new(BTreeSet::new()),
        }
    }

    /// `-v _out/.oci:/oci:ro` for the engine.
    pub fn volume_args(&self) -> Vec<String> {
        vec!["-v".into(), format!("{}:{MOUNT}:ro", self.dir)]
    }

    /// Fetches every layout in `wanted` that is not here yet.
    pub fn ensure(&self, wanted: &[Wanted]) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        for want in wanted {
            // One fetch per layout and build, whichever variant's thread asks first; the
            // others wait for it here instead of fetching the same image again.
            let mut done = self.done.lock().unwrap();
            if done.contains(&want.name) {
                continue;
            }
            let dir = self.dir.join(&want.name);
            // a reference by digest cannot change underneath: a layout fetched once stays valid
            if want.reference.digest.is_some() && dir.join("index.json").is_file() {
                fetched.reused += 1;
            } else {
                self.fetch(&want.reference, want.arch, &dir)?;
                fetched.images += 1;
            }
            done.insert(want.name.clone());
        }
        Ok(fetched)
    }

    fn fetch(&self, reference: &ImageRef, arch: Arch, dir: &Utf8Path) -> Result<()> {
        let arch = arch.as_str();
        let skopeo = self.skopeo.lock().unwrap();
        let tmp = dir.with_file_name(format!(
            ".{}.tmp-{}",
            dir.file_name().unwrap_or("layout"),
            skopeo.runner.process_tag()
        ));
        // skopeo refuses a tag and a digest together
        let source = reference.by_digest_alone().to_string();
        let cmd = skopeo.fetch_to_oci_cmd(&source, arch, &tmp)?;
        skopeo.runner.act(&cmd, || {
            std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir))?;
            let _ = std::fs::remove_dir_all(&tmp);
            let fetched = skopeo
                .run(&cmd)
                .with_context(|| format!("fetching {reference} for the imager"))
                .and_then(|_| {
                    add_platform(&tmp, arch)
                        .with_context(|| format!("{reference} (fetched to {tmp})"))
                });
            if fetched.is_err() {
                // a half-fetched layout is never reused, nor left behind
                let _ = std::fs::remove_dir_all(&tmp);
            }
            fetched
        })?;
        skopeo.runner.note(&format!(
            "add platform linux/{arch} to the manifest entry in {tmp}/index.json (skopeo writes none; the imager's ociPath reader needs it)"
        ));
        // the layout replaces any earlier one whole: `mv` alone would move it inside that one
        let replace = format!(
            "{}\n{}",
            Cmd::new("rm").args(["-rf", dir.as_str()]),
            Cmd::new("mv").args([&tmp, dir])
        );
        skopeo.runner.act(&replace, || {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(&tmp, dir).with_context(|| format!("renaming {tmp} to {dir}"))
        })?;
        Ok(())
    }
}

/// The layout directory for `reference` built for `arch`: the digest when pinned (so equal
/// content shares a layout), else a hash of the reference.
pub fn layout_name(reference: &ImageRef, arch: Arch) -> String {
    match &reference.digest {
        Some(digest) => format!("sha256-{}-{arch}", digest.hex()),
        None => format!(
            "ref-{}-{arch}",
            &crate::fsutil::sha256_hex(reference.to_string().as_bytes())[..16]
        ),
    }
}

/// An image an imager run reads from `_out/.oci/<name>`: `reference` for linux/`arch`.
pub struct Wanted {
    pub reference: ImageRef,
    pub arch: Arch,
    pub name: String,
}

/// The profile the imager receives, each image its output kind reads given an `ociPath`, and
/// those images. The imager reads the extensions for every kind but `kernel` (and `cmdline`,
/// never built here), the base installer and the overlay installer (target arch) only for
/// `installer`, and the board overlay for the arch it runs on itself (`imager_arch`). Images
/// it does not read are not fetched.
pub fn with_oci_paths(mut profile: Profile, imager_arch: Arch) -> (Profile, Vec<Wanted>) {
    let target = profile.arch;
    let mut wanted = Vec::new();
    let mut give = |asset: &mut ContainerAsset, arch: Arch| {
        let name = layout_name(&asset.image_ref, arch);
        asset.oci_path = Some(format!("{MOUNT}/{name}"));
        wanted.push(Wanted {
            reference: asset.image_ref.clone(),
            arch,
            name,
        });
    };
    if !matches!(profile.output.kind, Kind::Kernel) {
        for ext in &mut profile.input.system_extensions {
            give(ext, target);
        }
    }
    if matches!(profile.output.kind, Kind::Installer) {
        give(&mut profile.input.base_installer, target);
        if let Some(overlay) = &mut profile.input.overlay_installer {
            give(overlay, target);
        }
    }
    if let Some(overlay) = &mut profile.overlay {
        give(&mut overlay.image, imager_arch);
    }
    (profile, wanted)
}

/// The architecture the imager itself runs as: the host's, or the target's under `--emulate`.
pub fn imager_arch(target: Arch, emulate: bool) -> Arch {
    if emulate {
        return target;
    }
    match std::env::consts::ARCH {
        "aarch64" => Arch::Arm64,
        _ => Arch::Amd64,
    }
}

/// Gives every manifest entry of the layout's `index.json` its platform, read from the
/// image's config; fails when the image is not for linux/`arch`.
fn add_platform(dir: &Utf8Path, arch: &str) -> Result<()> {
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = read_json(&index_path)?;
    let blob = |digest: &str| -> Result<serde_json::Value> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("{index_path}: digest `{digest}` is not sha256"))?;
        read_json(&dir.join("blobs/sha256").join(hex))
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .with_context(|| format!("{index_path}: no `manifests` list"))?;
    if manifests.is_empty() {
        bail!("{index_path}: the layout holds no image");
    }
    for entry in manifests {
        let digest = entry["digest"].as_str().unwrap_or_default().to_owned();
        let manifest = blob(&digest)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .with_context(|| format!("manifest {digest} has no config: is it an index?"))?;
        let config = blob(config_digest)?;
        let (image_arch, os) = (
            config["architecture"].as_str().unwrap_or_default(),
            config["os"].as_str().unwrap_or_default(),
        );
        if image_arch != arch || os != "linux" {
            bail!("the image is {os}/{image_arch}, not linux/{arch}\n    fix: publish a linux/{arch} image (or an index with one) under that reference");
        }
        entry["platform"] = serde_json::json!({ "architecture": arch, "os": "linux" });
    }
    crate::fsutil::write_atomic(&index_path, serde_json::to_string(&index)?.as_bytes())
}

fn read_json(path: &Utf8Path) -> Result<serde_json::Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    domain::json::from_bytes(&text).with_context(|| format!("parsing {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "abababababababababababababababababababababababababababababababab";

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
    }

    #[test]
    fn layouts_are_named_by_digest_when_pinned() {
        assert_eq!(
            layout_name(
                &image(&format!(
                    "ghcr.io/siderolabs/zfs:2.4.3-v1.13.99@sha256:{HEX}"
                )),
                Arch::Arm64
            ),
            format!("sha256-{HEX}-arm64")
        );
        let by_tag = layout_name(
            &image("ghcr.io/siderolabs/installer-base:v1.13.99"),
            Arch::Arm64,
        );
        assert!(
            by_tag.starts_with("ref-") && by_tag.ends_with("-arm64"),
            "{by_tag}"
        );
        assert_ne!(
            by_tag,
            layout_name(
                &image("ghcr.io/siderolabs/installer-base:v1.13.98"),
                Arch::Arm64
            )
        );
    }

    #[test]
    fn a_pinned_reference_is_fetched_by_digest_alone() {
        for (reference, fetched) in [
            (
                format!("ghcr.io/siderolabs/zfs:2.4.3-v1.13.99@sha256:{HEX}"),
                format!("ghcr.io/siderolabs/zfs@sha256:{HEX}"),
            ),
            (
                format!("127.0.0.1:5000/siderolabs/zfs@sha256:{HEX}"),
                format!("127.0.0.1:5000/siderolabs/zfs@sha256:{HEX}"),
            ),
            (
                "ghcr.io/siderolabs/installer-base:v1.13.99".to_owned(),
                "ghcr.io/siderolabs/installer-base:v1.13.99".to_owned(),
            ),
        ] {
            assert_eq!(image(&reference).by_digest_alone().to_string(), fetched);
        }
    }

    #[test]
    fn platform_is_added_from_the_config_and_another_arch_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-prefetch-unit-{}", std::process::id()));
        let dir = Utf8PathBuf::from_path_buf(dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        let put = |bytes: &str| {
            let hex = crate::fsutil::sha256_hex(bytes.as_bytes());
            std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
            format!("sha256:{hex}")
        };
        let config = put(r#"{"architecture":"arm64","os":"linux"}"#);
        let manifest = put(&format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{config}"}}}}"#
        ));
        std::fs::write(
            dir.join("index.json"),
            format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{manifest}"}}]}}"#),
        )
        .unwrap();
        add_platform(&dir, "arm64").unwrap();
        let index = read_json(&dir.join("index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["platform"],
            serde_json::json!({"architecture": "arm64", "os": "linux"})
        );
        let err = add_platform(&dir, "amd64").unwrap_err().to_string();
        assert!(err.contains("linux/arm64, not linux/amd64"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
