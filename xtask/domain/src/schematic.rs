//! Talos Image Factory schematics: the schematic equivalent to a variant, its ID, and the
//! factory references (installer image, boot assets, iPXE script).
//!
//! The factory names a schematic by the sha256 of its canonical YAML: Go's yaml.v3 encoding of
//! the factory's `schematic.Schematic` struct (struct field order, empty fields omitted, 4-space
//! indent, `customization: {}` when empty, trailing newline). `to_yaml` builds that struct's
//! fields as JSON and writes them with the one YAML rule ([`super::yaml`], indent 4); the tests
//! pin it to the IDs published in the factory's own tests.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::image::{Digest, ImageRef};
use super::target::Platform;
use super::{Arch, TalosVersion, Variant};

pub const DEFAULT_FACTORY: &str = "https://factory.talos.dev";

/// The factory's `schematic.Schematic`, in its field order, for the fields we model (the
/// enterprise `owner`, `embeddedMachineConfiguration`, `bootloader` and `secureboot.enrollKeys`
/// are left out: no variant sets them).
#[derive(Default)]
pub struct Schematic {
    pub overlay: Option<Overlay>,
    pub customization: Customization,
}

#[derive(Clone)]
pub struct Overlay {
    /// `siderolabs/sbc-raspberrypi`: the overlay image's repository without registry or tag
    /// (the factory resolves the overlay by name; the image is shown by its UI).
    pub image: String,
    pub name: String,
    /// `overlay.options`, string values only (a Go `map[string]any`: keys sorted).
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
pub struct Customization {
    pub extra_kernel_args: Vec<String>,
    pub meta: Vec<MetaValue>,
    /// `systemExtensions.officialExtensions`: `siderolabs/<name>`.
    pub official_extensions: Vec<String>,
    pub secureboot_include_well_known_certificates: bool,
    pub disk_image_sector_size: u32,
}

#[derive(Clone)]
pub struct MetaValue {
    pub key: u8,
    pub value: String,
}

impl Schematic {
    /// The schematic the factory's web UI makes for the variant: every extension (firmware
    /// included) as `siderolabs/<name>`, sorted as the UI sorts them (byte order), and the
    /// variant's extra kernel arguments in their order.
    /// A board role's overlay comes with the image its lock entry names (`overlay_image`).
    pub fn for_variant(variant: &Variant, overlay_image: Option<&ImageRef>) -> Schematic {
        let mut official: Vec<String> = variant
            .all_extensions()
            .map(|name| format!("siderolabs/{name}"))
            .collect();
        official.sort();
        let overlay = variant.target.overlay.as_ref().map(|o| {
            let mut options = BTreeMap::new();
            for (k, v) in &o.options {
                options.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
            Overlay {
                image: overlay_image.map(factory_image).unwrap_or_default(),
                name: o.name.clone(),
                options,
            }
        });
        Schematic {
            overlay,
            customization: Customization {
                extra_kernel_args: variant.extra_kernel_args.clone(),
                official_extensions: official,
                ..Customization::default()
            },
        }
    }

    /// The canonical YAML, byte for byte what the factory hashes: yaml.v3's encoding of the
    /// factory's struct (`omitempty` fields left out when empty).
    pub fn to_yaml(&self) -> String {
        let mut doc = Map::new();
        if let Some(o) = &self.overlay {
            let mut overlay = Map::new();
            overlay.insert("image".into(), json!(o.image));
            overlay.insert("name".into(), json!(o.name));
            if !o.options.is_empty() {
                let options = o.options.iter().map(|(k, v)| (k.clone(), json!(v)));
                overlay.insert("options".into(), Value::Object(options.collect()));
            }
            doc.insert("overlay".into(), Value::Object(overlay));
        }
        let c = &self.customization;
        let mut customization = Map::new();
        let mut put = |key: &str, value: Value| {
            customization.insert(key.into(), value);
        };
        if !c.extra_kernel_args.is_empty() {
            put("extraKernelArgs", json!(c.extra_kernel_args));
        }
        if !c.meta.is_empty() {
            let meta = c
                .meta
                .iter()
                .map(|m| json!({"key": m.key, "value": m.value}));
            put("meta", Value::Array(meta.collect()));
        }
        if !c.official_extensions.is_empty() {
            put(
                "systemExtensions",
                json!({"officialExtensions": c.official_extensions}),
            );
        }
        if c.secureboot_include_well_known_certificates {
            put("secureboot", json!({"includeWellKnownCertificates": true}));
        }
        if c.disk_image_sector_size != 0 {
            put("diskImage", json!({"sectorSize": c.disk_image_sector_size}));
        }
        doc.insert("customization".into(), Value::Object(customization));
        super::yaml::to_string(&Value::Object(doc), 4)
    }

    /// The schematic ID: sha256 hex of the canonical YAML.
    pub fn id(&self) -> String {
        Digest::of_bytes(self.to_yaml().as_bytes()).hex().to_owned()
    }
}

/// `ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:...` as a schematic names it:
/// `siderolabs/sbc-raspberrypi`.
pub fn factory_image(reference: &ImageRef) -> String {
    let repository = &reference.repository;
    match repository.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => rest.to_owned(),
        _ => repository.clone(),
    }
}

/// What `schematic --json` prints for one variant.
#[derive(Serialize)]
pub struct Report {
    pub variant: String,
    pub talos_version: String,
    /// The canonical YAML; `POST` it to `<factory>/schematics` to register it.
    pub schematic: String,
    pub id: String,
    pub installer: String,
    /// Boot asset file name to download URL.
    pub assets: Map<String, Value>,
    /// iPXE script URL for network boot.
    pub pxe: String,
}

/// The asset files the factory serves for an architecture (non-SecureBoot).
pub fn asset_files(arch: Arch) -> Vec<String> {
    [
        format!("metal-{arch}.raw.xz"),
        format!("metal-{arch}.raw.zst"),
        format!("metal-{arch}.qcow2"),
        format!("metal-{arch}.iso"),
        format!("kernel-{arch}"),
        format!("initramfs-{arch}.xz"),
        format!("cmdline-metal-{arch}"),
        format!("metal-{arch}-uki.efi"),
        format!("nocloud-{arch}.raw.xz"),
    ]
    .into()
}

/// Where the factory at `factory` serves iPXE scripts: the hosted one has its own PXE host; a
/// self-hosted factory serves them itself unless it was given an external PXE URL (`pxe_url`).
pub fn pxe_base(factory: &str, pxe_url: Option<&str>) -> String {
    let base = factory.trim_end_matches('/');
    match pxe_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if base == DEFAULT_FACTORY => "https://pxe.factory.talos.dev".to_owned(),
        None => base.to_owned(),
    }
}

/// The asset files the factory serves for a cloud platform's role: its disk image as we build it
/// (`aws-arm64.raw.xz`, `oracle-arm64.qcow2.xz`, ...), the kernel and the initramfs.
pub fn platform_asset_files(platform: Platform, arch: Arch) -> Vec<String> {
    vec![
        platform.disk_artifact(arch),
        format!("kernel-{arch}"),
        format!("initramfs-{arch}.xz"),
    ]
}

/// The factory's view of a variant: a board role's overlay comes with the image its lock entry
/// names (`overlay_image`).
pub fn report(
    variant: &Variant,
    overlay_image: Option<&ImageRef>,
    talos: &TalosVersion,
    factory: &str,
    pxe_url: Option<&str>,
) -> Report {
    let schematic = Schematic::for_variant(variant, overlay_image);
    let id = schematic.id();
    let base = factory.trim_end_matches('/');
    let host = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .to_owned();
    let platform = variant.target.platform;
    let arch = variant.arch;
    let mut assets = Map::new();
    for &a in &variant.target.arches {
        let files = match platform {
            Platform::Metal => asset_files(a),
            other => platform_asset_files(other, a),
        };
        for file in files {
            let url = format!("{base}/image/{id}/{talos}/{file}");
            assets.insert(file, Value::String(url));
        }
    }
    let pxe_host = pxe_base(base, pxe_url);
    Report {
        variant: variant.name.clone(),
        talos_version: talos.to_string(),
        schematic: schematic.to_yaml(),
        installer: format!("{host}/{platform}-installer/{id}:{talos}"),
        pxe: format!("{pxe_host}/pxe/{id}/{talos}/{platform}-{arch}"),
        assets,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(customization: Customization) -> Schematic {
        Schematic {
            overlay: None,
            customization,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// IDs published in siderolabs/image-factory's own tests (pkg/schematic and the
    /// integration suite): each one pins a part of the encoding.
    #[test]
    fn a_self_hosted_factory_serves_pxe_itself() {
        assert_eq!(
            pxe_base("https://factory.talos.dev/", None),
            "https://pxe.factory.talos.dev"
        );
        assert_eq!(
            pxe_base("https://factory.example.org", None),
            "https://factory.example.org"
        );
        assert_eq!(
            pxe_base(
                "https://factory.example.org",
                Some("https://boot.example.org/")
            ),
            "https://boot.example.org"
        );
    }

    #[test]
    fn ids_match_the_factory_test_vectors() {
        let cases = [
            (
                "empty",
                Schematic::default(),
                "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
            ),
            (
                "extra kernel args noapic nolapic",
                with(Customization {
                    extra_kernel_args: strings(&["noapic", "nolapic"]),
                    ..Default::default()
                }),
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "extra kernel args nolapic nomodeset",
                with(Customization {
                    extra_kernel_args: strings(&["nolapic", "nomodeset"]),
                    ..Default::default()
                }),
                "e0fb1129bbbdfb5d002e94af4cdce712a8370e850950a33a242d4c3f178c532d",
            ),
            (
                "system extensions, in the order given",
                with(Customization {
                    official_extensions: strings(&[
                        "siderolabs/amd-ucode",
                        "siderolabs/gvisor",
                        "siderolabs/gasket-driver",
                    ]),
                    ..Default::default()
                }),
                "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
            ),
            (
                "meta",
                with(Customization {
                    meta: vec![MetaValue {
                        key: 0x0a,
                        value: "foo".into(),
                    }],
                    ..Default::default()
                }),
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "meta with a JSON value (single-quoted)",
                with(Customization {
                    meta: vec![MetaValue {
                        key: 0x0a,
                        value: r#"{"externalIPs":["1.2.3.4"]}"#.into(),
                    }],
                    ..Default::default()
                }),
                "fe866116408a5a13dab7d5003eb57a00954ea81ebeec3fbbcd1a6d4462a00036",
            ),
            (
                "secureboot",
                with(Customization {
                    secureboot_include_well_known_certificates: true,
                    ..Default::default()
                }),
                "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
            ),
            (
                "4k sector disk image",
                with(Customization {
                    disk_image_sector_size: 4096,
                    ..Default::default()
                }),
                "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
            ),
            (
                "overlay with empty customization",
                Schematic {
                    overlay: Some(Overlay {
                        image: "siderolabs/sbc-raspberrypi".into(),
                        name: "rpi_generic".into(),
                        options: BTreeMap::new(),
                    }),
                    customization: Customization::default(),
                },
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
        ];
        for (name, schematic, id) in cases {
            assert_eq!(schematic.id(), id, "{name}:\n{}", schematic.to_yaml());
        }
    }

    #[test]
    fn empty_schematic_text() {
        assert_eq!(Schematic::default().to_yaml(), "customization: {}\n");
    }

    #[test]
    fn variant_schematic_sorts_extensions_and_keeps_kernel_args() {
        let variant = crate::variant::parse(
            "variants/gateway.json",
            r#"{"name": "gateway", "description": "d", "arch": "arm64",
                "extensions": ["drbd", "zfs", "spin", "tailscale"], "firmware": ["bnx2-bnx2x"],
                "repository": "g/talos", "extra_kernel_args": ["console=ttyAMA0", "net.ifnames=0"],
                "config": {"tailscale": {"mode": "userspace"}}}"#,
        )
        .unwrap();
        let schematic = Schematic::for_variant(&variant, None);
        assert_eq!(
            schematic.to_yaml(),
            "customization:\n    extraKernelArgs:\n        - console=ttyAMA0\n        - net.ifnames=0\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/bnx2-bnx2x\n            - siderolabs/drbd\n            - siderolabs/spin\n            - siderolabs/tailscale\n            - siderolabs/zfs\n"
        );
        assert_eq!(schematic.id().len(), 64);
    }

    #[test]
    fn report_names_the_installer_and_arm64_assets() {
        let variant = crate::variant::parse(
            "variants/compute.json",
            r#"{"name": "compute", "description": "d", "arch": "arm64",
                "extensions": ["drbd", "zfs", "spin"], "repository": "c/talos"}"#,
        )
        .unwrap();
        let r = report(
            &variant,
            None,
            &"v1.13.99".into(),
            "https://factory.talos.dev/",
            None,
        );
        let id = &r.id;
        assert_eq!(
            r.installer,
            format!("factory.talos.dev/metal-installer/{id}:v1.13.99")
        );
        assert_eq!(
            r.assets["metal-arm64.raw.xz"],
            format!("https://factory.talos.dev/image/{id}/v1.13.99/metal-arm64.raw.xz")
        );
        for file in [
            "kernel-arm64",
            "initramfs-arm64.xz",
            "metal-arm64.iso",
            "cmdline-metal-arm64",
        ] {
            assert!(r.assets.contains_key(file), "{file}");
        }
        assert!(r.assets.keys().all(|f| f.contains("arm64")));
        assert_eq!(
            r.pxe,
            format!("https://pxe.factory.talos.dev/pxe/{id}/v1.13.99/metal-arm64")
        );
        assert_eq!(
            r.schematic,
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/drbd\n            - siderolabs/spin\n            - siderolabs/zfs\n"
        );
    }

    #[test]
    fn a_board_role_names_its_overlay_before_customization() {
        let variant = crate::variant::parse(
            "variants/pi.json",
            r#"{"name": "pi", "description": "d", "arch": "arm64", "extensions": ["drbd"],
                "repository": "c/talos", "overlay": "rpi_generic",
                "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt\ndtparam=audio=off", "configTxt": "x"}}"#,
        )
        .unwrap();
        let image = "ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let r = report(
            &variant,
            Some(&image.into()),
            &"v1.13.99".into(),
            "https://factory.talos.dev",
            None,
        );
        assert_eq!(
            r.schematic,
            "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n    options:\n        configTxt: x\n        configTxtAppend: |-\n            dtoverlay=disable-bt\n            dtparam=audio=off\ncustomization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/drbd\n"
        );
        assert!(r
            .installer
            .starts_with("factory.talos.dev/metal-installer/"));
        assert!(r.assets.contains_key("metal-arm64.raw.xz"));
    }

    #[test]
    fn a_cloud_role_names_its_platform_installer_and_disk() {
        let variant = crate::variant::parse(
            "variants/aws.json",
            r#"{"name": "aws", "description": "d", "arch": ["amd64", "arm64"], "extensions": ["drbd"],
                "repository": "c/talos", "platform": "aws"}"#,
        )
        .unwrap();
        let r = report(
            &variant,
            None,
            &"v1.13.99".into(),
            "https://factory.talos.dev",
            None,
        );
        let id = &r.id;
        assert_eq!(
            r.installer,
            format!("factory.talos.dev/aws-installer/{id}:v1.13.99")
        );
        assert_eq!(
            r.assets["aws-arm64.raw.xz"],
            format!("https://factory.talos.dev/image/{id}/v1.13.99/aws-arm64.raw.xz")
        );
        assert!(r.assets.contains_key("aws-amd64.raw.xz"));
        assert!(r.pxe.ends_with("/aws-amd64"));
    }

    #[test]
    fn a_factory_names_an_overlay_image_by_its_repository_path() {
        assert_eq!(
            factory_image(&"ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0".into()),
            "siderolabs/sbc-raspberrypi"
        );
    }
}
