//! Subcommand: `cargo xtask schematic`: the Talos Image Factory schematic equivalent to a
//! variant, its ID, and the factory references (installer image, boot assets), so that users of
//! the hosted factory get the same extensions, and anyone can compare our build with it.
//!
//! The factory names a schematic by the sha256 of its canonical YAML: Go's yaml.v3 encoding of
//! the factory's `schematic.Schematic` struct (struct field order, empty fields omitted, 4-space
//! indent, `customization: {}` when empty, trailing newline). `to_yaml` reproduces that encoding
//! for the fields we model; the tests pin it to the IDs published in the factory's own tests.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::domain::Variant;
use crate::pin;
use crate::project::Project;

pub const DEFAULT_FACTORY: &str = "https://factory.talos.dev";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this variant; default: every variant (`--json` then prints an array).
    #[arg(long = "variant", value_name = "NAME")]
    pub variant: Option<String>,
    /// Talos version for the installer and asset references; default: the pinned one.
    #[arg(long, value_name = "vX.Y.Z")]
    pub talos_version: Option<String>,
    /// Image Factory base URL (a self-hosted factory works the same way).
    #[arg(long, value_name = "URL", default_value = DEFAULT_FACTORY)]
    pub factory: String,
    /// The factory's PXE frontend (its `http.externalPXEURL`). Default: `https://pxe.factory.talos.dev`
    /// for the hosted factory, the `--factory` URL itself for any other.
    #[arg(long, value_name = "URL")]
    pub pxe_url: Option<String>,
    /// Print JSON: `variant`, `talos_version`, `schematic` (the YAML text), `id`, `installer`,
    /// `assets` (file name to URL), `pxe`.
    #[arg(long)]
    pub json: bool,
    /// Do not check the IDs with image-factory's own code (conformance/, needs Go).
    #[arg(long)]
    pub no_judge: bool,
}

/// The factory's `schematic.Schematic`, in its field order, for the fields we model (the
/// enterprise `owner`, `embeddedMachineConfiguration`, `bootloader` and `secureboot.enrollKeys`
/// are left out: no variant sets them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schematic {
    pub overlay: Option<Overlay>,
    pub customization: Customization,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// `siderolabs/sbc-raspberrypi`: the overlay image's repository without registry or tag
    /// (the factory resolves the overlay by name; the image is shown by its UI).
    pub image: String,
    pub name: String,
    /// `overlay.options`, string values only (a Go `map[string]any`: keys sorted).
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customization {
    pub extra_kernel_args: Vec<String>,
    pub meta: Vec<MetaValue>,
    /// `systemExtensions.officialExtensions`: `siderolabs/<name>`.
    pub official_extensions: Vec<String>,
    pub secureboot_include_well_known_certificates: bool,
    pub disk_image_sector_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaValue {
    pub key: u8,
    pub value: String,
}

impl Schematic {
    /// The schematic the factory's web UI makes for the variant: every extension (firmware
    /// included) as `siderolabs/<name>`, sorted as the UI sorts them (byte order), and the
    /// variant's extra kernel arguments in their order.
    /// A board role's overlay comes with the image its lock entry names (`overlay_image`).
    pub fn for_variant(variant: &Variant, overlay_image: Option<&str>) -> Schematic {
        let mut official: Vec<String> = variant
            .all_extensions()
            .map(|name| format!("siderolabs/{name}"))
            .collect();
        official.sort();
        let overlay = variant.target.overlay.as_ref().map(|o| {
            let mut options: Vec<(String, String)> = o
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            options.sort();
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

    /// The canonical YAML, byte for byte what the factory hashes.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        if let Some(overlay) = &self.overlay {
            out.push_str("overlay:\n");
            writeln!(out, "    image: {}", scalar(&overlay.image)).unwrap();
            writeln!(out, "    name: {}", scalar(&overlay.name)).unwrap();
            if !overlay.options.is_empty() {
                out.push_str("    options:\n");
                for (key, value) in &overlay.options {
                    writeln!(
                        out,
                        "        {}: {}",
                        scalar(key),
                        block_or_scalar(value, 12)
                    )
                    .unwrap();
                }
            }
        }
        let c = &self.customization;
        if *c == Customization::default() {
            out.push_str("customization: {}\n");
            return out;
        }
        out.push_str("customization:\n");
        if !c.extra_kernel_args.is_empty() {
            out.push_str("    extraKernelArgs:\n");
            for arg in &c.extra_kernel_args {
                writeln!(out, "        - {}", scalar(arg)).unwrap();
            }
        }
        if !c.meta.is_empty() {
            out.push_str("    meta:\n");
            for m in &c.meta {
                writeln!(out, "        - key: {}", m.key).unwrap();
                writeln!(out, "          value: {}", scalar(&m.value)).unwrap();
            }
        }
        if !c.official_extensions.is_empty() {
            out.push_str("    systemExtensions:\n        officialExtensions:\n");
            for ext in &c.official_extensions {
                writeln!(out, "            - {}", scalar(ext)).unwrap();
            }
        }
        if c.secureboot_include_well_known_certificates {
            out.push_str("    secureboot:\n        includeWellKnownCertificates: true\n");
        }
        if c.disk_image_sector_size != 0 {
            writeln!(
                out,
                "    diskImage:\n        sectorSize: {}",
                c.disk_image_sector_size
            )
            .unwrap();
        }
        out
    }

    /// The schematic ID: sha256 hex of the canonical YAML.
    pub fn id(&self) -> String {
        crate::fsutil::sha256_hex(self.to_yaml().as_bytes())
    }
}

/// `ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:...` as a schematic names it:
/// `siderolabs/sbc-raspberrypi`.
pub fn factory_image(reference: &str) -> String {
    let repository = match crate::domain::ImageRef::parse(reference) {
        Ok(r) => r.repository,
        Err(_) => reference.to_owned(),
    };
    match repository.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => rest.to_owned(),
        _ => repository,
    }
}

/// A map value the way yaml.v3 writes it: a string with line breaks as a literal block
/// (`|-`, `|` or `|+` after its trailing breaks, lines indented to `indent`), when libyaml
/// allows a block for it; anything else as [`scalar`] does.
fn block_or_scalar(s: &str, indent: usize) -> String {
    let printable = s.chars().all(|c| c == '\n' || !c.is_control());
    let space_break = s.contains(" \n");
    let block_allowed = printable && !space_break && !s.ends_with(' ');
    if !s.contains('\n') || !block_allowed {
        return scalar(s);
    }
    let mut header = String::from("|");
    if s.starts_with(' ') || s.starts_with('\n') {
        header.push_str("4");
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    match trailing {
        0 => header.push('-'),
        1 => {}
        _ => header.push('+'),
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    let mut out = header;
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
        }
    }
    out
}

/// A string the way yaml.v3 writes it in block context: plain when it reads back as the same
/// string, double-quoted when a plain scalar would resolve to another type (bool, number, null,
/// YAML 1.1 booleans such as `yes`), single-quoted when only YAML syntax is in the way.
fn scalar(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) || resolves_to_non_string(s) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn double_quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", "<<", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN",
    ];
    WORDS.contains(&s) || is_number(s) || is_base60(s)
}

fn is_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.chars().all(|c| c == '_' || c.is_digit(radix)) && !t.starts_with('_')
    };
    let prefixed = |p: &str, radix| {
        unsigned
            .strip_prefix(p)
            .or_else(|| unsigned.strip_prefix(&p.to_uppercase()))
            .is_some_and(|t| digits(t, radix))
    };
    if digits(unsigned, 10) || prefixed("0x", 16) || prefixed("0o", 8) || prefixed("0b", 2) {
        return true;
    }
    // [0-9]+(\.[0-9]*)? or \.[0-9]+, then an optional exponent
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() && all_digits(int) && all_digits(frac))
                || (int.is_empty() && !frac.is_empty() && all_digits(frac))
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// YAML 1.1 sexagesimal numbers (`1:20`), which yaml.v3 quotes for old readers.
fn is_base60(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = unsigned.split(':');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && !first.is_empty()
        && first.chars().all(|c| c.is_ascii_digit() || c == '_')
        && rest.iter().enumerate().all(|(i, p)| {
            let p = if i == rest.len() - 1 {
                p.split('.').next().unwrap_or_default()
            } else {
                p
            };
            (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit())
        })
}

/// libyaml's test for a plain scalar in block context.
fn plain_allowed(s: &str) -> bool {
    let bytes = s.as_bytes();
    let blank_after = |i: usize| bytes.get(i + 1).is_none_or(|b| *b == b' ' || *b == b'\t');
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.contains('\t') {
        return false;
    }
    for (i, &b) in bytes.iter().enumerate() {
        let indicator = if i == 0 {
            match b {
                b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                | b'\'' | b'"' | b'%' | b'@' | b'`' => true,
                b'?' | b':' | b'-' => blank_after(i),
                _ => false,
            }
        } else {
            match b {
                b':' => blank_after(i),
                b'#' => bytes[i - 1] == b' ',
                _ => false,
            }
        };
        if indicator {
            return false;
        }
    }
    true
}

/// What `schematic --json` prints for one variant.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub variant: String,
    pub talos_version: String,
    /// The canonical YAML; `POST` it to `<factory>/schematics` to register it.
    pub schematic: String,
    pub id: String,
    pub installer: String,
    /// Boot asset file name to download URL.
    pub assets: serde_json::Map<String, serde_json::Value>,
    /// iPXE script URL for network boot.
    pub pxe: String,
}

/// The asset files the factory serves for an architecture (non-SecureBoot).
pub fn asset_files(arch: &str) -> Vec<String> {
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
pub fn platform_asset_files(platform: crate::domain::target::Platform, arch: &str) -> Vec<String> {
    let a = if arch == "amd64" {
        crate::domain::Arch::Amd64
    } else {
        crate::domain::Arch::Arm64
    };
    vec![
        platform.disk_artifact(a),
        format!("kernel-{arch}"),
        format!("initramfs-{arch}.xz"),
    ]
}

pub fn report(
    variant: &Variant,
    overlay_image: Option<&str>,
    talos: &str,
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
    let arch = variant.arch.as_str();
    let assets = variant
        .target
        .arches
        .iter()
        .flat_map(|a| match platform {
            crate::domain::target::Platform::Metal => asset_files(a.as_str()),
            other => platform_asset_files(other, a.as_str()),
        })
        .map(|file| {
            let url = format!("{base}/image/{id}/{talos}/{file}");
            (file, serde_json::Value::String(url))
        })
        .collect();
    let pxe_host = pxe_base(base, pxe_url);
    Report {
        variant: variant.name.clone(),
        talos_version: talos.to_owned(),
        schematic: schematic.to_yaml(),
        installer: format!("{host}/{platform}-installer/{id}:{talos}"),
        pxe: format!("{pxe_host}/pxe/{id}/{talos}/{platform}-{arch}"),
        assets,
        id,
    }
}

/// The human view; `files` are where each report's schematic was written (what `curl` posts).
pub fn render(reports: &[Report], factory: &str, files: &[String]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        writeln!(out, "{} (Talos {})", r.variant, r.talos_version).unwrap();
        writeln!(out, "  id         {}", r.id).unwrap();
        writeln!(out, "  installer  {}", r.installer).unwrap();
        writeln!(out, "  pxe        {}", r.pxe).unwrap();
        for (file, url) in &r.assets {
            writeln!(out, "  {file:<22} {}", url.as_str().unwrap_or_default()).unwrap();
        }
        writeln!(
            out,
            "  schematic (register it: curl -X POST --data-binary @{} {}/schematics):",
            files[i],
            factory.trim_end_matches('/')
        )
        .unwrap();
        for line in r.schematic.lines() {
            writeln!(out, "    | {line}").unwrap();
        }
    }
    out
}

/// Talos's and the factory's verdict on the schematics (`conformance::judge_schematics`, handed
/// in by `main.rs` so that this module does not depend on the one that judges it).
pub type Judge = fn(&Project, &[Report]) -> Result<()>;

pub fn run(project: &Project, args: Args, judge: Judge) -> Result<()> {
    let names: Vec<String> = args.variant.iter().cloned().collect();
    let selected = project.select_variants(&names)?;
    let talos = match args.talos_version {
        Some(v) => v,
        None => pin::talos_version(project, &project.load_lock()?)?
            .version
            .to_string(),
    };
    let lock = crate::lock::load_optional(project)?;
    let mut reports = Vec::new();
    for v in &selected {
        let overlay_image = match (&v.target.overlay, &lock) {
            (None, _) => None,
            (Some(o), lock) => Some(
                lock.as_ref()
                    .and_then(|l| l.overlays.get(&o.name))
                    .with_context(|| format!("{}: overlay `{}` of variant `{}` is not locked yet\n    fix: run `cargo xtask lock`", crate::domain::lock::SHOWN, o.name, v.name))?
                    .as_str(),
            ),
        };
        reports.push(report(
            v,
            overlay_image,
            &talos,
            &args.factory,
            args.pxe_url.as_deref(),
        ));
    }
    // the file the printed `curl` command posts
    let dir = project.target_dir().join("schematic");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let cwd = std::env::current_dir().ok();
    let mut files = Vec::new();
    for r in &reports {
        let path = dir.join(format!("{}.yaml", r.variant));
        crate::fsutil::write_atomic(&path, r.schematic.as_bytes())?;
        let shown = match &cwd {
            Some(cwd) if cwd.as_path() == project.root.as_std_path() => {
                project.display(&path).to_string()
            }
            _ => path.to_string(),
        };
        files.push(shown);
    }
    if !args.no_judge {
        judge(project, &reports)?;
    }
    if args.json {
        let json = match (&args.variant, reports.as_slice()) {
            (Some(_), [one]) => serde_json::to_string_pretty(one)?,
            _ => serde_json::to_string_pretty(&reports)?,
        };
        println!("{json}");
    } else {
        print!("{}", render(&reports, &args.factory, &files));
    }
    Ok(())
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
                        options: Vec::new(),
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
        let variant = crate::domain::variant::parse(
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
        let variant = crate::domain::variant::parse(
            "variants/compute.json",
            r#"{"name": "compute", "description": "d", "arch": "arm64",
                "extensions": ["drbd", "zfs", "spin"], "repository": "c/talos"}"#,
        )
        .unwrap();
        let r = report(
            &variant,
            None,
            "v1.13.99",
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
    fn scalars_are_quoted_as_yaml_v3_quotes_them() {
        for (s, want) in [
            ("siderolabs/drbd", "siderolabs/drbd"),
            ("console=ttyS0,115200", "console=ttyS0,115200"),
            ("-x", "-x"),
            ("a:b", "a:b"),
            ("1.2.3", "1.2.3"),
            ("", "\"\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("off", "\"off\""),
            ("~", "\"~\""),
            ("12", "\"12\""),
            ("-1.5e3", "\"-1.5e3\""),
            (".5", "\".5\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("{}", "'{}'"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("it's", "it's"),
            ("#x", "'#x'"),
            ("*x", "'*x'"),
            ("'q'", "'''q'''"),
            (" lead", "' lead'"),
            ("---", "'---'"),
        ] {
            assert_eq!(scalar(s), want, "{s:?}");
        }
    }

    #[test]
    fn a_board_role_names_its_overlay_before_customization() {
        let variant = crate::domain::variant::parse(
            "variants/pi.json",
            r#"{"name": "pi", "description": "d", "arch": "arm64", "extensions": ["drbd"],
                "repository": "c/talos", "overlay": "rpi_generic",
                "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt\ndtparam=audio=off", "configTxt": "x"}}"#,
        )
        .unwrap();
        let image = "ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let r = report(
            &variant,
            Some(image),
            "v1.13.99",
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
        let variant = crate::domain::variant::parse(
            "variants/aws.json",
            r#"{"name": "aws", "description": "d", "arch": ["amd64", "arm64"], "extensions": ["drbd"],
                "repository": "c/talos", "platform": "aws"}"#,
        )
        .unwrap();
        let r = report(
            &variant,
            None,
            "v1.13.99",
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
    fn literal_blocks_follow_libyaml() {
        assert_eq!(block_or_scalar("a\nb", 4), "|-\n    a\n    b");
        assert_eq!(block_or_scalar("a\n", 4), "|\n    a");
        assert_eq!(block_or_scalar("a\n\n", 4), "|+\n    a\n");
        assert_eq!(block_or_scalar("a\n\nb", 4), "|-\n    a\n\n    b");
        assert_eq!(block_or_scalar(" a\nb", 4), "|4-\n     a\n    b");
        assert_eq!(
            block_or_scalar("a \nb", 4),
            "\"a \\nb\"",
            "a space before a break is never a block"
        );
        assert_eq!(block_or_scalar("plain", 4), "plain");
        assert_eq!(
            factory_image("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0"),
            "siderolabs/sbc-raspberrypi"
        );
    }
}
