//! Where a role's images run: a Talos platform (metal, aws, hcloud, ...), optionally a board
//! overlay (rpi_generic, ...), and one or more architectures. One variant file is one target.
//!
//! Pure: the facts here are read from upstream Talos at the pinned version (v1.13.6):
//! the platform names from machined's platform switch, the disk defaults from the imager's
//! built-in profiles (`pkg/imager/profile/default.go`). docs/variants.md explains the choices.

use std::num::NonZeroU64;

use serde::Serialize;

use super::arch::Arch;
use super::format::{DiskFormat, OutFormat};
use super::image::{Digest, ImageRef};

const MIB: u64 = 1024 * 1024;
/// The imager's `MinRAWDiskSize` (metal and the small-disk clouds).
const MIN_RAW_DISK_SIZE: u64 = 1246 * MIB;
/// The imager's `DefaultRAWDiskSize` (clouds whose disks start at 8 GiB).
const DEFAULT_RAW_DISK_SIZE: u64 = 8192 * MIB;

/// A Talos platform that has a disk image profile built into the imager. (`container` runs
/// Talos in a container and boots no image; `equinixMetal` boots over iPXE: neither is a
/// target for an image built here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Metal,
    Akamai,
    Aws,
    Azure,
    Cloudstack,
    DigitalOcean,
    Exoscale,
    Gcp,
    Hcloud,
    Nocloud,
    Opennebula,
    Openstack,
    Oracle,
    Scaleway,
    Upcloud,
    Vmware,
    Vultr,
}

/// What the imager's built-in profile for a platform sets for its disk image.
pub struct DiskDefaults {
    pub disk_size: NonZeroU64,
    pub disk_format: DiskFormat,
    /// `imageOptions.diskFormatOptions` (qemu-img options), when the platform sets them.
    pub disk_format_options: Option<&'static str>,
    pub out_format: OutFormat,
}

impl Platform {
    pub const ALL: [Platform; 17] = [
        Platform::Metal,
        Platform::Akamai,
        Platform::Aws,
        Platform::Azure,
        Platform::Cloudstack,
        Platform::DigitalOcean,
        Platform::Exoscale,
        Platform::Gcp,
        Platform::Hcloud,
        Platform::Nocloud,
        Platform::Opennebula,
        Platform::Openstack,
        Platform::Oracle,
        Platform::Scaleway,
        Platform::Upcloud,
        Platform::Vmware,
        Platform::Vultr,
    ];

    /// The name Talos uses (`talos.platform=<name>`, profile `platform:`).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Metal => "metal",
            Platform::Akamai => "akamai",
            Platform::Aws => "aws",
            Platform::Azure => "azure",
            Platform::Cloudstack => "cloudstack",
            Platform::DigitalOcean => "digital-ocean",
            Platform::Exoscale => "exoscale",
            Platform::Gcp => "gcp",
            Platform::Hcloud => "hcloud",
            Platform::Nocloud => "nocloud",
            Platform::Opennebula => "opennebula",
            Platform::Openstack => "openstack",
            Platform::Oracle => "oracle",
            Platform::Scaleway => "scaleway",
            Platform::Upcloud => "upcloud",
            Platform::Vmware => "vmware",
            Platform::Vultr => "vultr",
        }
    }

    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Platform::ALL.iter().map(|p| p.name()).collect()
    }

    /// The imager's disk defaults for this platform: size and disk format as upstream's
    /// built-in profile has them. The compression is ours: `.xz` (the asset names Image
    /// Factory serves, `<platform>-<arch>.raw.xz`), except where the format is itself the
    /// container the cloud imports (GCP's `.tar.gz`, VMware's `.ova`), as upstream does.
    pub fn disk_defaults(self) -> DiskDefaults {
        let size = |bytes: u64| NonZeroU64::new(bytes).expect("disk sizes are non-zero");
        let (disk_size, disk_format, disk_format_options, out_format) = match self {
            Platform::Metal
            | Platform::Akamai
            | Platform::Hcloud
            | Platform::Nocloud
            | Platform::Opennebula
            | Platform::Openstack
            | Platform::Scaleway => (MIN_RAW_DISK_SIZE, DiskFormat::Raw, None, OutFormat::Xz),
            Platform::Aws
            | Platform::Cloudstack
            | Platform::DigitalOcean
            | Platform::Upcloud
            | Platform::Vultr => (DEFAULT_RAW_DISK_SIZE, DiskFormat::Raw, None, OutFormat::Xz),
            Platform::Azure => (
                DEFAULT_RAW_DISK_SIZE,
                DiskFormat::Vhd,
                Some("subformat=fixed,force_size"),
                OutFormat::Xz,
            ),
            Platform::Exoscale => (
                10 * 1024 * MIB,
                DiskFormat::Qcow2,
                Some("cluster_size=8k"),
                OutFormat::Xz,
            ),
            Platform::Oracle => (
                DEFAULT_RAW_DISK_SIZE,
                DiskFormat::Qcow2,
                Some("cluster_size=8k"),
                OutFormat::Xz,
            ),
            Platform::Gcp => (
                DEFAULT_RAW_DISK_SIZE,
                DiskFormat::Raw,
                None,
                OutFormat::TarGz,
            ),
            Platform::Vmware => (DEFAULT_RAW_DISK_SIZE, DiskFormat::Ova, None, OutFormat::Raw),
        };
        DiskDefaults {
            disk_size: size(disk_size),
            disk_format,
            disk_format_options,
            out_format,
        }
    }

    /// The disk image file the imager writes: `<platform>-<arch>.<diskFormat>` plus the
    /// compression's suffix (`aws-arm64.raw.xz`, `gcp-arm64.raw.tar.gz`, `vmware-arm64.ova`).
    pub fn disk_artifact(self, arch: Arch) -> String {
        let d = self.disk_defaults();
        let suffix = match d.out_format {
            OutFormat::Raw => "",
            OutFormat::TarGz => ".tar.gz",
            OutFormat::Xz => ".xz",
        };
        format!("{}-{arch}.{}{suffix}", self.name(), d.disk_format.name())
    }
}

/// As its [`Platform::name`] (profile `platform:`, the plan's JSON).
impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A board overlay as the variant names it; its image comes from the lock.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayChoice {
    /// The overlay's name in the catalog (`rpi_generic`).
    pub name: String,
    /// `overlay.options` of the profile (for Raspberry Pi: `configTxt`, `configTxtAppend`).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Where a role's images run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub platform: Platform,
    pub overlay: Option<OverlayChoice>,
    /// Every architecture the role is built for, in the file's order; never empty.
    pub arches: Vec<Arch>,
}

/// Tests build targets field by field.
#[cfg(test)]
impl Default for Target {
    fn default() -> Target {
        Target {
            platform: Platform::Metal,
            overlay: None,
            arches: vec![Arch::Arm64],
        }
    }
}

impl Target {
    /// How the target shows in tags and tables, after Image Factory's naming: nothing for
    /// generic metal (the factory's default), else the platform (`aws`, as in `aws-installer`)
    /// and the board overlay (`rpi_generic`), joined with `-`.
    pub fn tag_prefix(&self) -> Option<String> {
        tag_prefix(
            self.platform.name(),
            self.overlay.as_ref().map(|o| o.name.as_str()),
        )
    }

    /// The published tag for `base` (`v1.13.6`): `aws-v1.13.6`, `rpi_generic-v1.13.6`, or
    /// `v1.13.6` itself for generic metal.
    pub fn tag(&self, base: &str) -> String {
        match self.tag_prefix() {
            Some(prefix) => format!("{prefix}-{base}"),
            None => base.to_owned(),
        }
    }

    /// `metal`, `aws`, `metal/rpi_generic`: for tables and reports.
    pub fn label(&self) -> String {
        match &self.overlay {
            Some(o) => format!("{}/{}", self.platform, o.name),
            None => self.platform.to_string(),
        }
    }

    pub fn multi_arch(&self) -> bool {
        self.arches.len() > 1
    }
}

// ---------------------------------------------------------------------------------------------
// The overlays catalog: `/overlays.yaml` in `ghcr.io/siderolabs/overlays:<talos>`.

/// One overlay of the catalog.
#[derive(Debug)]
pub struct CatalogEntry {
    pub name: String,
    /// `ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:...`: the catalog's `image` (by tag)
    /// with its `digest`, what a lock pins the overlay to.
    pub image: ImageRef,
}

/// Parses `overlays.yaml`: a top-level `overlays:` list whose items carry `name`, `image` and
/// `digest` as scalars (plain or quoted). Anything else in an item is refused, not ignored, so a
/// format change upstream fails loudly here.
pub fn parse_catalog(text: &str, source: &str) -> Result<Vec<CatalogEntry>, String> {
    let mut entries: Vec<[Option<String>; 3]> = Vec::new();
    let mut in_list = false;
    for (n, raw) in text.lines().enumerate() {
        let at = |what: &str| format!("{source} line {}: {what}", n + 1);
        let line = raw.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') || line == "---" {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('-') {
            if line != "overlays:" {
                return Err(at(&format!("expected `overlays:`, found `{line}`")));
            }
            in_list = true;
            continue;
        }
        if !in_list {
            return Err(at("an item before `overlays:`"));
        }
        let (starts_item, pair) = match content.strip_prefix("- ") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, content),
        };
        if starts_item {
            entries.push([None, None, None]);
        }
        let Some(entry) = entries.last_mut() else {
            return Err(at("a field outside a list item"));
        };
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| at(&format!("expected `key: value`, found `{pair}`")))?;
        let slot = match key.trim() {
            "name" => 0,
            "image" => 1,
            "digest" => 2,
            other => return Err(at(&format!("unknown field `{other}`"))),
        };
        let value = unquote(value.trim()).ok_or_else(|| at("unterminated quoted value"))?;
        if entry[slot].replace(value).is_some() {
            return Err(at(&format!("field `{}` given twice", key.trim())));
        }
    }
    let mut out = Vec::new();
    for (i, [name, image, digest]) in entries.into_iter().enumerate() {
        let missing = |field: &str| format!("{source}: overlay #{} has no `{field}`", i + 1);
        let name = name.ok_or_else(|| missing("name"))?;
        let image = image.ok_or_else(|| missing("image"))?;
        let digest = digest.ok_or_else(|| missing("digest"))?;
        let digest = Digest::parse(&digest).map_err(|_| {
            format!("{source}: overlay `{name}` has digest `{digest}`, not sha256:<64 hex digits>")
        })?;
        let mut reference = ImageRef::parse(&image)
            .map_err(|err| format!("{source}: overlay `{name}` has image `{image}`: {err}"))?;
        if reference.digest.is_some() {
            return Err(format!("{source}: overlay `{name}` has image `{image}` with a digest already; expected image:tag and a separate digest"));
        }
        reference.digest = Some(digest);
        let entry = CatalogEntry {
            name,
            image: reference,
        };
        if out.iter().any(|e: &CatalogEntry| e.name == entry.name) {
            return Err(format!(
                "{source}: overlay `{}` is listed twice",
                entry.name
            ));
        }
        out.push(entry);
    }
    if out.is_empty() {
        return Err(format!("{source}: lists no overlay"));
    }
    Ok(out)
}

fn unquote(value: &str) -> Option<String> {
    for q in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(q) {
            return rest.strip_suffix(q).map(str::to_owned);
        }
    }
    Some(value.to_owned())
}

/// [`Target::tag_prefix`] from the names a variant file gives (`platform` as written, `metal`
/// when absent), so that a file the checks read leniently gets the same prefix.
pub fn tag_prefix(platform: &str, overlay: Option<&str>) -> Option<String> {
    let platform = (platform != Platform::Metal.name()).then_some(platform);
    let parts: Vec<&str> = platform.into_iter().chain(overlay).collect();
    (!parts.is_empty()).then(|| parts.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_round_trip_and_follow_talos() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.name()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        assert_eq!(Platform::parse("container"), None);
        assert_eq!(Platform::parse("AWS"), None);
    }

    #[test]
    fn disk_defaults_are_the_imagers() {
        let aws = Platform::Aws.disk_defaults();
        assert_eq!(aws.disk_size.get(), 8_589_934_592);
        assert_eq!(aws.disk_format, DiskFormat::Raw);
        assert_eq!(
            Platform::Metal.disk_defaults().disk_size.get(),
            1_306_525_696
        );
        assert_eq!(
            Platform::Oracle.disk_defaults().disk_format_options,
            Some("cluster_size=8k")
        );
        assert_eq!(Platform::Aws.disk_artifact(Arch::Arm64), "aws-arm64.raw.xz");
        assert_eq!(
            Platform::Metal.disk_artifact(Arch::Arm64),
            "metal-arm64.raw.xz"
        );
        assert_eq!(
            Platform::Gcp.disk_artifact(Arch::Arm64),
            "gcp-arm64.raw.tar.gz"
        );
        assert_eq!(
            Platform::Vmware.disk_artifact(Arch::Amd64),
            "vmware-amd64.ova"
        );
        assert_eq!(
            Platform::Azure.disk_artifact(Arch::Arm64),
            "azure-arm64.vhd.xz"
        );
    }

    #[test]
    fn tags_name_platform_and_board() {
        let mut t = Target::default();
        assert_eq!(t.tag("v1.13.99"), "v1.13.99");
        t.platform = Platform::Aws;
        assert_eq!(t.tag("v1.13.99"), "aws-v1.13.99");
        t.platform = Platform::Metal;
        t.overlay = Some(OverlayChoice {
            name: "rpi_generic".into(),
            options: Default::default(),
        });
        assert_eq!(t.tag("latest"), "rpi_generic-latest");
        assert_eq!(t.label(), "metal/rpi_generic");
    }

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn catalog_parses_plain_and_quoted_values() {
        let text = format!(
            "overlays:\n  - name: rpi_generic\n    image: ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0\n    digest: {D}\n  - name: \"rpi_5\"\n    image: 'ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0'\n    digest: \"{D}\"\n"
        );
        let entries = parse_catalog(&text, "overlays.yaml").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].name, "rpi_5");
        assert_eq!(
            entries[1].image.to_string(),
            format!("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@{D}")
        );
    }

    #[test]
    fn catalog_refuses_what_it_does_not_know() {
        let e = parse_catalog("overlays:\n  - name: a\n    image: i:1\n", "x").unwrap_err();
        assert!(e.contains("overlay #1 has no `digest`"), "{e}");
        let e = parse_catalog(
            &format!("overlays:\n  - name: a\n    image: i:1\n    digest: {D}\n    arch: arm64\n"),
            "x",
        )
        .unwrap_err();
        assert!(e.contains("line 5: unknown field `arch`"), "{e}");
        let e = parse_catalog("extensions:\n", "x").unwrap_err();
        assert!(e.contains("expected `overlays:`"), "{e}");
        let e = parse_catalog(
            "overlays:\n  - name: a\n    image: i:1\n    digest: sha256:ab\n",
            "x",
        )
        .unwrap_err();
        assert!(e.contains("not sha256"), "{e}");
    }
}
