//! The build record, `_out/<variant>/build.json`: written by `cargo xtask build`, read back
//! through the same types by `smoke` and `ci`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::arch::Arch;
use super::image::ImageRef;
use super::output::Output;
use super::talos::TalosVersion;

/// The record's file name in `_out/<variant>/`.
pub const RECORD: &str = "build.json";

/// `_out/<variant>/build.json`. Fields a reader can do without default, so an older record
/// still reads (and other fields are allowed).
#[derive(Serialize, Deserialize)]
pub struct BuildRecord {
    pub variant: String,
    pub talos_version: TalosVersion,
    pub arch: Arch,
    /// Every architecture built (`arch` is the first), and the target's platform and overlay.
    #[serde(default)]
    pub arches: Vec<Arch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
    #[serde(default)]
    pub imager: String,
    #[serde(default)]
    pub extensions: Vec<ExtensionRecord>,
    pub profiles: Vec<ProfileRecord>,
    pub files: Vec<FileRecord>,
    #[serde(default)]
    pub published: Vec<Published>,
    #[serde(default)]
    pub imager_runs: u32,
    #[serde(default)]
    pub cache_hits: u32,
    /// Images this variant's imager runs needed that were copied from the registry into
    /// `_out/.oci` (each image is copied at most once per build, by whichever variant needs it
    /// first), and those found there already.
    #[serde(default)]
    pub images_fetched: u32,
    #[serde(default)]
    pub images_reused: u32,
    /// Set by `ci` once smoke passed on exactly these files; `ci --publish-only` requires it.
    #[serde(default)]
    pub smoke_passed: bool,
    /// Set with `smoke_passed` when `ci --no-boot` skipped the boot of a role that smoke boots
    /// (not one checked statically only by rule): `ci --publish-only` refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boot_skipped: bool,
    /// The commit the outputs were built from; `None` for a checkout with uncommitted changes
    /// (or no git). `ci --publish-only` publishes a record only from that same commit, which
    /// every image it pushes records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Seconds per step (`imager:<kind>`, `push:<kind>`, `total`).
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
}

impl BuildRecord {
    /// A record with nothing built yet: what the build fills in as it goes.
    pub fn new(
        variant: &str,
        talos_version: TalosVersion,
        arch: Arch,
        imager: &str,
    ) -> BuildRecord {
        BuildRecord {
            variant: variant.to_owned(),
            talos_version,
            arch,
            arches: Vec::new(),
            platform: None,
            overlay: None,
            imager: imager.to_owned(),
            extensions: Vec::new(),
            profiles: Vec::new(),
            files: Vec::new(),
            published: Vec::new(),
            imager_runs: 0,
            cache_hits: 0,
            images_fetched: 0,
            images_reused: 0,
            smoke_passed: false,
            boot_skipped: false,
            revision: None,
            timings: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct ExtensionRecord {
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: ImageRef,
}

#[derive(Serialize, Deserialize)]
pub struct ProfileRecord {
    pub kind: Output,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    pub artifact: String,
    /// sha256 of the exact profile bytes (YAML) the imager received on stdin.
    #[serde(default)]
    pub profile_sha256: String,
    /// Content key: sha256 of the profile bytes, the imager reference and how it ran.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub cache_hit: bool,
    /// The exact object the imager received.
    pub profile: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// What a published image is: a role's installer, or its matchbox netboot image beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Installer,
    Matchbox,
}

impl ImageKind {
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Installer => "installer",
            ImageKind::Matchbox => "matchbox",
        }
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Serialize, Deserialize)]
pub struct Published {
    pub kind: ImageKind,
    /// Repository, without tag.
    pub image: String,
    pub digest: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The architectures of an image index (one entry per arch); empty for a single image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
}

impl Published {
    pub fn is_index(&self) -> bool {
        !self.arches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_image_is_an_installer_or_a_matchbox_image_and_nothing_else() {
        let read = |kind: &str| {
            serde_json::from_str::<Published>(&format!(
                r#"{{"kind": "{kind}", "image": "ghcr.io/acme/r/talos", "digest": "sha256:00"}}"#
            ))
        };
        assert_eq!(read("installer").unwrap().kind, ImageKind::Installer);
        assert_eq!(read("matchbox").unwrap().kind.to_string(), "matchbox");
        let err = read("iso").err().unwrap().to_string();
        assert!(err.contains("unknown variant `iso`"), "{err}");
    }
}
