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
pub use super::target::Platform;
use super::variant::Variant;

pub use super::format::{DiskFormat, OutFormat};

/// `output.imageOptions`: only an output of kind `image` has them, and then `diskSize` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageOptions {
    pub disk_size: NonZeroU64,
    pub disk_format: DiskFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format_options: Option<String>,
}

/// `output.kind`, carrying what that kind requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Installer,
    Image(ImageOptions),
    Iso,
    Kernel,
    Initramfs,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Installer => "installer",
            Kind::Image(_) => "image",
            Kind::Iso => "iso",
            Kind::Kernel => "kernel",
            Kind::Initramfs => "initramfs",
        }
    }

    /// Kernel arguments are baked into boot assets, not into a bare kernel or initramfs.
    fn takes_kernel_args(&self) -> bool {
        !matches!(self, Kind::Kernel | Kind::Initramfs)
    }
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone, Serialize)]
pub struct FileAsset {
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerAsset {
    pub image_ref: ImageRef,
    /// An OCI image layout the imager reads instead of pulling `image_ref` (see prefetch.rs);
    /// set only on the profile handed to the imager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub kernel: FileAsset,
    pub initramfs: FileAsset,
    pub base_installer: ContainerAsset,
    /// The board overlay's image, for the target's arch (installer outputs of a board role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_installer: Option<ContainerAsset>,
    pub system_extensions: Vec<ContainerAsset>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Customization {
    pub extra_kernel_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub arch: Arch,
    pub platform: Platform,
    pub secureboot: bool,
    pub version: String,
    pub input: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customization: Option<Customization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<Overlay>,
    pub output: Output,
}

/// `overlay`: the board overlay (its name in the catalog, its image by digest, its options).
#[derive(Debug, Clone, Serialize)]
pub struct Overlay {
    pub name: String,
    pub image: ContainerAsset,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Profile {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("profiles serialize")
    }

    /// The exact bytes the imager receives on stdin.
    pub fn to_yaml(&self) -> String {
        crate::yaml::to_string(&self.to_json(), 2)
    }

    /// Whether the imager needs the host's devices (`--privileged -v /dev:/dev`) for this
    /// profile: a disk image (`kind: image`, whatever the output is called) before Talos v1.13,
    /// whose imager partitions it on a loop device.
    pub fn needs_host_devices(&self, talos_version: &TalosVersion) -> bool {
        matches!(self.output.kind, Kind::Image(_)) && talos_version.minor_release() < (1, 13)
    }
}

/// The extensions as the imager's `systemExtensions`, in build order.
fn extension_assets(refs: &[ImageRef]) -> Vec<ContainerAsset> {
    let mut assets = Vec::with_capacity(refs.len());
    for image_ref in refs {
        assets.push(ContainerAsset {
            image_ref: image_ref.clone(),
            oci_path: None,
        });
    }
    assets
}

/// The base installer the imager adds our extensions to: the imager's own default since Talos
/// 1.10 (`installer-base`; Talos 1.14 publishes no plain `installer`). The conformance harness
/// compares every profile with the imager's default (docs/conformance.md).
pub const BASE_INSTALLER: &str = "ghcr.io/siderolabs/installer-base";

/// What a profile takes from the lock: the variant's extensions in build order, and its board
/// overlay's image (`None` without an overlay).
#[derive(Clone, Copy)]
pub struct Locked<'a> {
    pub extension_refs: &'a [ImageRef],
    pub overlay_image: Option<&'a ImageRef>,
    /// The base installer by digest, when the lock pins it (else [`base_installer_image`]).
    pub base_installer: Option<&'a ImageRef>,
}

/// The imager the Talos release publishes, by tag.
pub fn imager_image(talos_version: &impl std::fmt::Display) -> String {
    format!("ghcr.io/siderolabs/imager:{talos_version}")
}

/// The base installer the imager adds the extensions to, by tag ([`BASE_INSTALLER`]).
pub fn base_installer_image(talos_version: &impl std::fmt::Display) -> String {
    format!("{BASE_INSTALLER}:{talos_version}")
}

/// Builds the imager profile for one output of a variant, for one of its architectures.
pub fn for_output(
    variant: &Variant,
    output: VariantOutput,
    arch: Arch,
    talos_version: &TalosVersion,
    locked: Locked<'_>,
) -> Profile {
    let target = &variant.target;
    let image = |platform: Platform| {
        let d = platform.disk_defaults();
        (
            Kind::Image(ImageOptions {
                disk_size: d.disk_size,
                disk_format: d.disk_format,
                disk_format_options: d.disk_format_options.map(str::to_owned),
            }),
            platform,
            d.out_format,
        )
    };
    let (kind, platform, out_format) = match output {
        VariantOutput::Installer => (Kind::Installer, target.platform, OutFormat::Raw),
        VariantOutput::Kernel => (Kind::Kernel, Platform::Metal, OutFormat::Raw),
        VariantOutput::Initramfs => (Kind::Initramfs, Platform::Metal, OutFormat::Raw),
        VariantOutput::Metal => image(Platform::Metal),
        VariantOutput::Iso => (Kind::Iso, Platform::Metal, OutFormat::Raw),
        VariantOutput::Nocloud => image(Platform::Nocloud),
        VariantOutput::Disk => image(target.platform),
    };
    let customization =
        (kind.takes_kernel_args() && !variant.extra_kernel_args.is_empty()).then(|| {
            Customization {
                extra_kernel_args: variant.extra_kernel_args.clone(),
            }
        });
    // The board's firmware, bootloader and device trees go into what boots: the installer
    // (which also runs the overlay's installer for the target arch) and disk images.
    let boots = matches!(kind, Kind::Installer | Kind::Image(_));
    let overlay = match (&target.overlay, locked.overlay_image) {
        (Some(choice), Some(image_ref)) if boots => Some(Overlay {
            name: choice.name.clone(),
            image: ContainerAsset {
                image_ref: image_ref.clone(),
                oci_path: None,
            },
            options: choice.options.clone(),
        }),
        _ => None,
    };
    let overlay_installer = overlay
        .as_ref()
        .filter(|_| kind == Kind::Installer)
        .map(|o| o.image.clone());
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
                image_ref: locked.base_installer.cloned().unwrap_or_else(|| ImageRef {
                    repository: BASE_INSTALLER.to_owned(),
                    tag: Some(talos_version.to_string()),
                    digest: None,
                }),
                oci_path: None,
            },
            overlay_installer,
            system_extensions: extension_assets(locked.extension_refs),
        },
        customization,
        overlay,
        output: Output { kind, out_format },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variant::parse;

    fn locked(refs: &[ImageRef]) -> Locked<'_> {
        Locked {
            extension_refs: refs,
            overlay_image: None,
            base_installer: None,
        }
    }

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
    fn every_disk_image_and_only_a_disk_image_needs_host_devices_before_v1_13() {
        let refs = [format!("ghcr.io/siderolabs/drbd:1@sha256:{}", "a".repeat(64)).into()];
        let aws = variant(r#", "platform": "aws""#);
        for (version, before_v1_13) in [
            ("v1.12.4", true),
            ("v1.11.0", true),
            ("v1.13.0", false),
            ("v2.0.0", false),
        ] {
            let talos = TalosVersion::parse(version).unwrap();
            for output in VariantOutput::ALL {
                let p = for_output(&aws, output, Arch::Arm64, &talos, locked(&refs));
                let disk = matches!(
                    output,
                    VariantOutput::Metal | VariantOutput::Nocloud | VariantOutput::Disk
                );
                assert_eq!(
                    p.needs_host_devices(&talos),
                    disk && before_v1_13,
                    "{output} at {version}"
                );
            }
        }
    }

    #[test]
    fn image_kind_carries_disk_size_and_xz_format() {
        let p = for_output(
            &variant(""),
            VariantOutput::Metal,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[format!("ghcr.io/siderolabs/drbd:1@sha256:{}", "a".repeat(64)).into()]),
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
            "ghcr.io/siderolabs/installer-base:v1.13.99"
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
            let json = for_output(
                &variant(""),
                output,
                Arch::Arm64,
                &"v1.13.99".into(),
                locked(&[]),
            )
            .to_json();
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
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[]),
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
        assert!(for_output(
            &v,
            VariantOutput::Kernel,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[])
        )
        .customization
        .is_none());
        assert!(for_output(
            &v,
            VariantOutput::Initramfs,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[])
        )
        .customization
        .is_none());
        let installer = for_output(
            &v,
            VariantOutput::Installer,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[]),
        );
        assert_eq!(
            installer.customization.unwrap().extra_kernel_args,
            ["console=ttyAMA0"]
        );
    }

    const OVERLAY: &str = "ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_board_role_carries_its_overlay_where_it_boots() {
        let v = variant(
            r#", "overlay": "rpi_generic", "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt"}, "outputs": ["installer", "disk", "kernel"]"#,
        );
        let overlay: ImageRef = OVERLAY.into();
        let with = |output| {
            for_output(
                &v,
                output,
                Arch::Arm64,
                &"v1.13.99".into(),
                Locked {
                    extension_refs: &[],
                    overlay_image: Some(&overlay),
                    base_installer: None,
                },
            )
            .to_json()
        };
        let installer = with(VariantOutput::Installer);
        assert_eq!(installer["overlay"]["name"], "rpi_generic");
        assert_eq!(installer["overlay"]["image"]["imageRef"], OVERLAY);
        assert_eq!(
            installer["overlay"]["options"]["configTxtAppend"],
            "dtoverlay=disable-bt"
        );
        assert_eq!(installer["input"]["overlayInstaller"]["imageRef"], OVERLAY);
        let disk = with(VariantOutput::Disk);
        assert_eq!(disk["overlay"]["name"], "rpi_generic");
        assert!(disk["input"].get("overlayInstaller").is_none(), "{disk}");
        assert_eq!(disk["platform"], "metal");
        let kernel = with(VariantOutput::Kernel);
        assert!(kernel.get("overlay").is_none(), "{kernel}");
    }

    #[test]
    fn a_cloud_role_gets_its_platform_and_the_imagers_disk_defaults() {
        let v = variant(r#", "platform": "oracle""#);
        assert_eq!(v.outputs, [VariantOutput::Installer, VariantOutput::Disk]);
        let installer = for_output(
            &v,
            VariantOutput::Installer,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[]),
        )
        .to_json();
        assert_eq!(installer["platform"], "oracle");
        let disk = for_output(
            &v,
            VariantOutput::Disk,
            Arch::Arm64,
            &"v1.13.99".into(),
            locked(&[]),
        )
        .to_json();
        assert_eq!(disk["platform"], "oracle");
        assert_eq!(disk["output"]["imageOptions"]["diskSize"], 8_589_934_592u64);
        assert_eq!(disk["output"]["imageOptions"]["diskFormat"], "qcow2");
        assert_eq!(
            disk["output"]["imageOptions"]["diskFormatOptions"],
            "cluster_size=8k"
        );
        assert_eq!(
            crate::output::artifact(&v.target, VariantOutput::Disk, Arch::Arm64),
            "oracle-arm64.qcow2.xz"
        );
    }
}
