//! OCI and Docker v2 manifests as a registry serves them: media types checked, index entries
//! ordered, layer compression read from the media type. Pure: the bytes come from `registry`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::image::Digest;

/// The media types we read and write.
pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    /// Checked when the manifest is parsed: an entry with another digest is refused there.
    pub digest: Digest,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a tag points to, media types checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Manifest {
    /// A multi-platform index: its image manifests.
    Index(Vec<Descriptor>),
    /// One image: its layers, bottom first.
    Image(Vec<Descriptor>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

/// Parses a manifest or index as served for `reference`, accepting the OCI and Docker v2 types.
pub fn parse_manifest(bytes: &[u8], reference: &str) -> Result<Manifest> {
    let raw: RawManifest = super::json::from_bytes(bytes)
        .with_context(|| {
            format!("{reference}: the registry served a manifest that is not JSON or names a digest that is not sha256")
        })?;
    let expected = format!(
        "expected an image index ({}, {}) or manifest ({}, {})",
        media::OCI_INDEX,
        media::DOCKER_LIST,
        media::OCI_MANIFEST,
        media::DOCKER_MANIFEST
    );
    if raw.schema_version != Some(2) {
        bail!(
            "{reference}: manifest schemaVersion {:?} is not supported: {expected}",
            raw.schema_version
        );
    }
    // OCI makes `mediaType` optional; then the shape decides.
    let media_type =
        raw.media_type
            .clone()
            .unwrap_or_else(|| match (&raw.manifests, &raw.layers) {
                (Some(_), None) => media::OCI_INDEX.to_owned(),
                (None, Some(_)) => media::OCI_MANIFEST.to_owned(),
                _ => String::new(),
            });
    match media_type.as_str() {
        media::OCI_INDEX | media::DOCKER_LIST => {
            let manifests = raw
                .manifests
                .with_context(|| format!("{reference}: index has no `manifests`"))?;
            Ok(Manifest::Index(manifests))
        }
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => {
            if raw.config.is_none() {
                bail!("{reference}: image manifest has no `config`");
            }
            let layers = raw
                .layers
                .with_context(|| format!("{reference}: image manifest has no `layers`"))?;
            Ok(Manifest::Image(layers))
        }
        "" => bail!("{reference}: manifest has no media type and neither `manifests` nor `layers`: {expected}"),
        other => bail!("{reference}: unexpected media type `{other}`: {expected}"),
    }
}

/// The index entries to try, in order: linux/amd64 first, then the others as listed. Entries
/// that are not image manifests (attestations, nested indexes) are left out.
pub fn platform_order(manifests: &[Descriptor]) -> Vec<&Descriptor> {
    let is_image = |d: &&Descriptor| {
        matches!(
            d.media_type.as_str(),
            media::OCI_MANIFEST | media::DOCKER_MANIFEST
        ) && d.platform.as_ref().is_none_or(|p| p.os != "unknown")
    };
    let is_amd64 = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    };
    let mut order = Vec::new();
    let mut others = Vec::new();
    for d in manifests.iter().filter(is_image) {
        if is_amd64(&d) {
            order.push(d);
        } else {
            others.push(d);
        }
    }
    order.extend(others);
    order
}

/// How a layer is compressed, from its media type.
#[derive(Debug, PartialEq, Eq)]
pub enum LayerFormat {
    Gzip,
    Tar,
}

pub fn layer_format(layer: &Descriptor, image: &str) -> Result<LayerFormat> {
    match layer.media_type.as_str() {
        media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP => Ok(LayerFormat::Gzip),
        media::OCI_LAYER_TAR => Ok(LayerFormat::Tar),
        other => bail!(
            "layer {} of {image} has media type `{other}`: expected a tar layer ({}, {} or {})",
            layer.digest,
            media::OCI_LAYER_GZIP,
            media::DOCKER_LAYER_GZIP,
            media::OCI_LAYER_TAR
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn desc(media_type: &str, platform: Option<(&str, &str)>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::parse(digest).unwrap(),
            size: 1,
            platform: platform.map(|(os, architecture)| Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: None,
            }),
        }
    }

    #[test]
    fn amd64_is_tried_first_and_attestations_never() {
        let manifests = [
            desc(media::OCI_MANIFEST, Some(("linux", "arm64")), D1),
            desc(media::OCI_MANIFEST, Some(("unknown", "unknown")), D3),
            desc(media::OCI_MANIFEST, Some(("linux", "amd64")), D2),
            desc(media::OCI_INDEX, Some(("linux", "s390x")), D3),
        ];
        let order: Vec<String> = platform_order(&manifests)
            .iter()
            .map(|d| d.digest.to_string())
            .collect();
        assert_eq!(order, [D2, D1]);
    }

    #[test]
    fn manifest_media_types_are_checked() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::DOCKER_LIST
        );
        assert_eq!(
            parse_manifest(index.as_bytes(), "r").unwrap(),
            Manifest::Index(vec![])
        );
        let bare = r#"{"schemaVersion":2,"config":{"digest":"d"},"layers":[]}"#;
        assert_eq!(
            parse_manifest(bare.as_bytes(), "r").unwrap(),
            Manifest::Image(vec![])
        );
        let helm = r#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1+json","layers":[]}"#;
        let err = parse_manifest(helm.as_bytes(), "ghcr.io/x/y:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "ghcr.io/x/y:1: unexpected media type `application/vnd.cncf.helm.chart.v1+json`"
            ),
            "{err}"
        );
        let v1 = r#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse_manifest(v1.as_bytes(), "r")
            .unwrap_err()
            .to_string()
            .contains("schemaVersion Some(1) is not supported"));
        let zstd = desc("application/vnd.oci.image.layer.v1.tar+zstd", None, D1);
        assert!(layer_format(&zstd, "img")
            .unwrap_err()
            .to_string()
            .contains(&format!(
                "layer {D1} of img has media type `application/vnd.oci.image.layer.v1.tar+zstd`"
            )));
    }
}
