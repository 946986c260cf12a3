//! Talos imager profiles as typed structs.
//!
//! The imager does not reject unknown keys (a typo such as `systemExtension:` silently drops
//! every extension), so this side is the strict one: the structs mirror the imager's schema,
//! closed sets are enums, and an output of kind `image` cannot be built without its disk size.
//! Profiles are emitted as YAML (see `yaml.rs`) for the imager and as JSON objects in the plan.

use std::num::NonZeroU64;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::arch::Arch;
use super::image::ImageRef;
use super::output::Output as VariantOutput;
use super::talos::TalosVersion;
use super::variant::Variant;

/// Talos platform names (the ones a CozyStack node can meet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // mirrors the imager's schema; our variants use a subset
pub enum Platform {
    Metal,
    Nocloud,
    Aws,
    Gcp,
    Azure,
    Openstack,
    Hcloud,
    Vmware,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(dead_code)] // mirrors the imager's schema; our variants use a subset
pub enum OutFormat {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = ".tar.gz")]
    TarGz,
    #[serde(rename = ".xz")]
    Xz,
    #[serde(rename = ".gz")]
    Gz,
    #[serde(rename = ".zst")]
    Zst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // mirrors the imager's schema; our variants use a subset
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vhd,
    Ova,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)] // mirrors the imager's schema; our variants use a subset
pub enum Bootloader {
    SdBoot,
    Grub,
    DualBoot,
}

/// `output.imageOptions`: only an output of kind `image` has them, and then `diskSize` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageOptions {
    pub disk_size: NonZeroU64,
    pub disk_format: DiskFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<Bootloader>,
}

/// `output.kind`, carrying what that kind requires.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)] // mirrors the imager's schema; our variants use a subset
pub enum Kind {
    Installer,
    Image(ImageOptions),
    Iso,
    Kernel,
    Initramfs,
    Uki,
    Cmdline,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Installer => "installer",
            Kind::Image(_) => "image",
            Kind::Iso => "iso",
            Kind::Kernel => "kernel",
            Kind::Initramfs => "initramfs",
            Kind::Uki => "uki",
            Kind::Cmdline => "cmdline",
        }
    }

    /// Kernel arguments are baked into boot assets, not into a bare kernel or initramfs.
    fn takes_kernel_args(&self) -> bool {
        !matches!(self, Kind::Kernel | Kind::Initramfs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: Kind,
    pub out_format: OutFormat,
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.kind.name())?;
        if let Kind::Image(options) = &self.kind {
            map.serialize_entry("imageOptions", options)?;
        }
        map.serialize_entry("outFormat", &self.out_format)?;
        map.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAsset {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerAsset {
    pub image_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub kernel: FileAsset,
    pub initramfs: FileAsset,
    pub base_installer: ContainerAsset,
    pub system_extensions: Vec<ContainerAsset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Customization {
    pub extra_kernel_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub arch: Arch,
    pub platform: Platform,
    pub secureboot: bool,
    pub version: String,
    pub input: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customization: Option<Customization>,
    pub output: Output,
}

impl Profile {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("profiles serialize")
    }

    /// The exact bytes the imager receives on stdin.
    pub fn to_yaml(&self) -> String {
        crate::domain::yaml::to_string(&self.to_json())
    }
}

/// Upstream CozyStack's disk size for metal/nocloud images (1.2 GiB and a bit).
pub const DISK_SIZE: NonZeroU64 = match NonZeroU64::new(1_306_525_696) {
    Some(size) => size,
    None => unreachable!(),
};

/// Builds the imager profile for one output of a variant. `extension_refs` are the image
/// references of the variant's extensions in build order, as the lock gives them.
pub fn for_output(
    variant: &Variant,
    output: VariantOutput,
    talos_version: &TalosVersion,
    extension_refs: &[ImageRef],
) -> Profile {
    let arch = variant.arch;
    let image = || {
        Kind::Image(ImageOptions {
            disk_size: DISK_SIZE,
            disk_format: DiskFormat::Raw,
            bootloader: None,
        })
    };
    let (kind, platform, out_format) = match output {
        VariantOutput::Installer => (Kind::Installer, Platform::Metal, OutFormat::Raw),
        VariantOutput::Kernel => (Kind::Kernel, Platform::Metal, OutFormat::Raw),
        VariantOutput::Initramfs => (Kind::Initramfs, Platform::Metal, OutFormat::Raw),
        VariantOutput::Metal => (image(), Platform::Metal, OutFormat::Xz),
        VariantOutput::Iso => (Kind::Iso, Platform::Metal, OutFormat::Raw),
        VariantOutput::Nocloud => (image(), Platform::Nocloud, OutFormat::Xz),
    };
    let customization =
        (kind.takes_kernel_args() && !variant.extra_kernel_args.is_empty()).then(|| {
            Customization {
                extra_kernel_args: variant.extra_kernel_args.clone(),
            }
        });
    Profile {
        arch,
        platform,
        secureboot: false,
        version: talos_version.to_string(),
        input: Input {
            kernel: FileAsset {
                path: format!("/usr/install/{arch}/vmlinuz"),
            },
            initramfs: FileAsset {
                path: format!("/usr/install/{arch}/initramfs.xz"),
            },
            base_installer: ContainerAsset {
                image_ref: format!("ghcr.io/siderolabs/installer:{talos_version}"),
            },
            system_extensions: extension_refs
                .iter()
                .map(|r| ContainerAsset {
                    image_ref: r.to_string(),
                })
                .collect(),
        },
        customization,
        output: Output { kind, out_format },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::variant::parse;

    fn variant(extra: &str) -> Variant {
        parse(
            "variants/compute.json",
            &format!(
                r#"{{"name": "compute", "description": "d", "arch": "arm64", "extensions": ["drbd"],
                     "repository": "r/talos" {extra}}}"#
            ),
        )
        .unwrap()
    }

    #[test]
    fn image_kind_carries_disk_size_and_xz_format() {
        let p = for_output(
            &variant(""),
            VariantOutput::Metal,
            &"v1.13.6".into(),
            &[format!("ghcr.io/siderolabs/drbd:1@sha256:{}", "a".repeat(64)).into()],
        );
        let json = p.to_json();
        assert_eq!(json["output"]["kind"], "image");
        assert_eq!(json["output"]["imageOptions"]["diskSize"], 1_306_525_696u64);
        assert_eq!(json["output"]["imageOptions"]["diskFormat"], "raw");
        assert_eq!(json["output"]["outFormat"], ".xz");
        assert_eq!(
            json["input"]["kernel"]["path"],
            "/usr/install/arm64/vmlinuz"
        );
        assert_eq!(
            json["input"]["baseInstaller"]["imageRef"],
            "ghcr.io/siderolabs/installer:v1.13.6"
        );
        assert_eq!(
            json["input"]["systemExtensions"][0]["imageRef"],
            format!("ghcr.io/siderolabs/drbd:1@sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn non_image_kinds_have_no_image_options() {
        for output in [
            VariantOutput::Installer,
            VariantOutput::Kernel,
            VariantOutput::Initramfs,
            VariantOutput::Iso,
        ] {
            let json = for_output(&variant(""), output, &"v1.13.6".into(), &[]).to_json();
            assert!(
                json["output"].get("imageOptions").is_none(),
                "{output:?}: {json}"
            );
        }
    }

    #[test]
    fn only_known_keys_are_emitted() {
        let json = for_output(
            &variant(r#", "extra_kernel_args": ["console=ttyAMA0"]"#),
            VariantOutput::Nocloud,
            &"v1.13.6".into(),
            &[],
        )
        .to_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "arch",
                "platform",
                "secureboot",
                "version",
                "input",
                "customization",
                "output"
            ]
        );
        let input: Vec<&str> = json["input"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            input,
            ["kernel", "initramfs", "baseInstaller", "systemExtensions"]
        );
        assert_eq!(json["platform"], "nocloud");
    }

    #[test]
    fn kernel_args_go_to_boot_assets_only() {
        let v = variant(r#", "extra_kernel_args": ["console=ttyAMA0"]"#);
        assert!(
            for_output(&v, VariantOutput::Kernel, &"v1.13.6".into(), &[])
                .customization
                .is_none()
        );
        assert!(
            for_output(&v, VariantOutput::Initramfs, &"v1.13.6".into(), &[])
                .customization
                .is_none()
        );
        let installer = for_output(&v, VariantOutput::Installer, &"v1.13.6".into(), &[]);
        assert_eq!(
            installer.customization.unwrap().extra_kernel_args,
            ["console=ttyAMA0"]
        );
    }
}
