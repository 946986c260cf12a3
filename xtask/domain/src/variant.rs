//! Role variants: one JSON file per node role under `variants/`.
//!
//! Parsing is pure (`parse` takes the file name and text); `load_all` is the thin layer that
//! reads the directory. Every problem in every file is collected before anything is reported.
//! The format is documented in docs/variants.md.

use anyhow::Result;
use camino::Utf8Path;
use serde_json::{Map, Value};

use super::arch::Arch;
use super::cidr::{self, Ipv4Cidr};
use super::diag::{self, Finding};
use super::extension::{self, Needs, X86_ONLY_FIRMWARE};
use super::image::is_path_segment;
use super::output::Output;
use super::target::{OverlayChoice, Platform, Target};

/// One node role, as read from `variants/<name>.json`.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub description: String,
    /// The first of `target.arches`: what stages that handle one architecture per role use
    /// (the matchbox netboot image, the qemu boot).
    pub arch: Arch,
    /// Platform, board overlay and every architecture (docs/variants.md).
    pub target: Target,
    /// System extensions by short name (`drbd`), in build order.
    pub extensions: Vec<String>,
    /// Firmware extensions by short name; built before the system extensions.
    pub firmware: Vec<String>,
    /// Repository path below the registry/owner, e.g. `talos-cozystack-spin-only/talos`.
    pub repository: String,
    pub outputs: Vec<Output>,
    pub extra_kernel_args: Vec<String>,
    /// What the role's nodes need in their machine config (`cargo xtask config`).
    pub config: NodeConfig,
}

/// The `config` object of a variant: node configuration that `cargo xtask config` renders into
/// the role's machine-config patch. What an extension implies (kernel modules, RuntimeClass) is
/// not written here; only choices a user has to make are (see docs/config.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Inputs of Tailscale's `ExtensionServiceConfig`; required when the variant carries tailscale.
    pub tailscale: Option<TailscaleConfig>,
    /// The cluster's join network (kube-ovn `JOIN_CIDR`); absent means CozyStack's default.
    pub join_cidr: Option<Ipv4Cidr>,
    /// Networks node IPs (kubelet, etcd) are picked from; empty means any IPv4 network.
    pub node_subnets: Vec<Ipv4Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailscaleConfig {
    pub mode: TailscaleMode,
    /// Subnets the node advertises to the tailnet (`TS_ROUTES`).
    pub routes: Vec<Ipv4Cidr>,
    /// Extra `tailscale up` flags (`TS_EXTRA_ARGS`).
    pub extra_args: Vec<String>,
}

/// How tailscaled reaches the network (`TS_USERSPACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailscaleMode {
    /// a `tailscale0` interface and netfilter rules in the host (the extension's default)
    Kernel,
    /// no interface: tailscaled proxies in user space (slower, never filters host traffic)
    Userspace,
}

impl TailscaleMode {
    pub fn name(self) -> &'static str {
        match self {
            TailscaleMode::Kernel => "kernel",
            TailscaleMode::Userspace => "userspace",
        }
    }
}

impl NodeConfig {
    /// Whether `config.<field>` is present.
    pub fn declares(&self, field: &str) -> bool {
        match field {
            "tailscale" => self.tailscale.is_some(),
            "join_cidr" => self.join_cidr.is_some(),
            "node_subnets" => !self.node_subnets.is_empty(),
            _ => false,
        }
    }
}

const CONFIG_FIELDS: &[&str] = &["tailscale", "join_cidr", "node_subnets"];
const TAILSCALE_FIELDS: &[&str] = &["mode", "routes", "extra_args"];

impl Variant {
    /// Every extension the image carries, firmware first, in build order.
    pub fn all_extensions(&self) -> impl Iterator<Item = &str> {
        self.firmware
            .iter()
            .chain(&self.extensions)
            .map(String::as_str)
    }

    pub fn builds(&self, output: Output) -> bool {
        self.outputs.contains(&output)
    }

    /// Where its matchbox netboot image publishes (beside the installer, see
    /// [`matchbox_repository`]), when it builds one: it needs the kernel and the initramfs.
    pub fn matchbox_repository(&self) -> Option<String> {
        self.builds_matchbox()
            .then(|| matchbox_repository(&self.repository))
    }

    pub fn builds_matchbox(&self) -> bool {
        builds_matchbox(&self.outputs)
    }

    /// Its file, as messages name it (`variants/compute.json`).
    pub fn file(&self) -> String {
        super::layout::variant_file(&self.name)
    }
}

/// A variant builds the matchbox netboot image when it builds both of its inputs, the kernel
/// and the initramfs (the one place this rule is written).
pub fn builds_matchbox(outputs: &[Output]) -> bool {
    outputs.contains(&Output::Kernel) && outputs.contains(&Output::Initramfs)
}

/// `talos-cozystack-spin-only/talos` publishes its netboot image as
/// `talos-cozystack-spin-only/matchbox` (the same rule holds for a full image reference).
pub fn matchbox_repository(installer: &str) -> String {
    match installer.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/matchbox"),
        None => "matchbox".to_owned(),
    }
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "arch",
    "platform",
    "overlay",
    "overlay_options",
    "extensions",
    "firmware",
    "repository",
    "outputs",
    "extra_kernel_args",
    "config",
];

/// Parses one variant file. `file` is the path shown in findings (relative to the repository).
pub fn parse(file: &str, text: &str) -> Result<Variant, Vec<Finding>> {
    let stem = Utf8Path::new(file)
        .file_stem()
        .unwrap_or_default()
        .to_owned();
    let (value, mut findings) = diag::parse_json(file, text);
    let object = match value {
        Some(Value::Object(object)) => object,
        Some(other) => {
            findings.push(
                Finding::new(file, "", "a variant file holds one JSON object")
                    .value(kind_of(&other))
                    .fix("write the variant as { \"name\": ..., \"arch\": ..., ... } (see docs/variants.md)"),
            );
            return Err(findings);
        }
        None => return Err(findings),
    };

    for key in object.keys() {
        if !FIELDS.contains(&key.as_str()) {
            let hint = diag::did_you_mean(key, FIELDS);
            findings.push(
                Finding::new(file, key.as_str(), "unknown field")
                    .fix(format!("{hint}known fields are: {}", FIELDS.join(", "))),
            );
        }
    }

    let mut fields = Fields {
        file,
        object: &object,
        findings: &mut findings,
        prefix: "",
    };
    let name = fields.required_string("name");
    let description = fields.required_string("description");
    let arches = fields.arches();
    let platform = fields.optional(|f| f.platform(), Platform::Metal, "platform");
    let overlay = fields.optional(|f| f.overlay_name().map(Some), None, "overlay");
    let overlay_options = fields.optional(
        |f| f.object_field("overlay_options"),
        Map::new(),
        "overlay_options",
    );
    let extensions = fields.name_list("extensions", true);
    let firmware = fields.optional(|f| f.name_list("firmware", false), Vec::new(), "firmware");
    let repository = fields.required_string("repository");
    let default_outputs = match (&platform, &overlay) {
        (Some(Platform::Metal), Some(None)) => Output::DEFAULT.to_vec(),
        _ => vec![Output::Installer, Output::Disk],
    };
    let outputs = fields.optional(|f| f.outputs(), default_outputs, "outputs");
    let extra_kernel_args = fields.optional(
        |f| f.string_list("extra_kernel_args"),
        Vec::new(),
        "extra_kernel_args",
    );
    let config = fields.optional(|f| f.node_config(), NodeConfig::default(), "config");

    if let Some(name) = &name {
        if !is_path_segment(name) {
            findings.push(
                Finding::new(file, "name", "not a valid repository path segment")
                    .value(quoted(name))
                    .fix("use lowercase letters, digits and single `.`, `_` or `-` between them"),
            );
        } else if name != stem.as_str() {
            findings.push(
                Finding::new(
                    file,
                    "name",
                    format!("does not match the file name `{stem}.json`"),
                )
                .value(quoted(name))
                // not "rename it to variants/{name}.json": for a copy, that file is the original
                .fix(if is_path_segment(stem.as_str()) {
                    format!("set \"name\": \"{stem}\" (a role's name is its file name)")
                } else {
                    "rename the file to variants/<role>.json, a role name of lowercase letters, digits and single `.`, `_` or `-`, and set \"name\" to it".to_owned()
                }),
            );
        }
    }
    if let Some(repository) = &repository {
        if let Some(host) = registry_host(repository) {
            findings.push(registry_host_finding(file, repository, host));
        } else if repository.is_empty() || !repository.split('/').all(is_path_segment) {
            findings.push(
                Finding::new(file, "repository", "not a valid repository path")
                    .value(quoted(repository))
                    .fix("use `/`-separated lowercase segments such as \"talos-cozystack-spin-only/talos\"; the registry and owner are given at run time"),
            );
        }
    }
    if let Some(arches) = arches.as_ref().filter(|a| a.contains(&Arch::Arm64)) {
        let more = if arches.len() > 1 {
            " (a role built for several architectures carries the same extensions on each)"
        } else {
            ""
        };
        // Talos and Image Factory ship firmware as ordinary system extensions, so it is found
        // under either field
        for (field, list) in [("firmware", &firmware), ("extensions", &extensions)] {
            for (i, fw) in list.iter().flatten().enumerate() {
                if X86_ONLY_FIRMWARE.contains(&fw.as_str()) {
                    let why = match field {
                        "firmware" => "",
                        _ => " (firmware is a system extension, listed here or under `firmware`)",
                    };
                    findings.push(
                        Finding::new(file, format!("{field}[{i}]"), "x86-only firmware in an arm64 variant")
                            .value(quoted(fw))
                            .fix(format!("remove \"{fw}\": it is firmware for x86 CPUs or GPUs{why}, which builds into an arm64 image but is dead weight there{more}")),
                    );
                }
            }
        }
    }
    if let (Some(arches), Some(platform), Some(overlay), Some(options), Some(outputs)) =
        (&arches, platform, &overlay, &overlay_options, &outputs)
    {
        findings.extend(check_target(
            file,
            arches,
            platform,
            overlay.as_deref(),
            options,
            outputs,
        ));
    }
    // The imager lets an extra `talos.platform=` overwrite the platform it bakes in (and a
    // `-talos.platform` delete it): the image would boot as another platform than the one its
    // tags, disk and checks are for. It joins the entries with spaces and parses the result
    // again, so every word of an entry counts, not only an entry's start.
    for (i, arg) in extra_kernel_args.iter().flatten().enumerate() {
        let (problem, fix) = match platform_word(arg) {
            _ if arg.trim().is_empty() => ("empty", "drop it".to_owned()),
            Some(word) => platform_fix(arg, word),
            None => continue,
        };
        findings.push(
            Finding::new(file, format!("extra_kernel_args[{i}]"), problem)
                .value(quoted(arg))
                .fix(fix),
        );
    }
    if let (Some(extensions), Some(firmware)) = (&extensions, &firmware) {
        for (i, fw) in firmware.iter().enumerate() {
            if extensions.contains(fw) {
                findings.push(
                    Finding::new(
                        file,
                        format!("firmware[{i}]"),
                        "also listed in `extensions`",
                    )
                    .value(quoted(fw))
                    .fix("list each extension once, in `firmware` or in `extensions`"),
                );
            }
        }
    }

    if let (Some(extensions), Some(firmware), Some(config)) = (&extensions, &firmware, &config) {
        findings.extend(check_declared_config(file, extensions, firmware, config));
    }

    let target = match (arches, platform, overlay, overlay_options) {
        (Some(arches), Some(platform), Some(overlay), Some(options)) => Some(Target {
            platform,
            overlay: overlay.map(|name| OverlayChoice { name, options }),
            arches,
        }),
        _ => None,
    };
    match (
        name,
        description,
        target,
        extensions,
        firmware,
        repository,
        outputs,
        extra_kernel_args,
        config,
    ) {
        (
            Some(name),
            Some(description),
            Some(target),
            Some(extensions),
            Some(firmware),
            Some(repository),
            Some(outputs),
            Some(extra_kernel_args),
            Some(config),
        ) if findings.is_empty() => Ok(Variant {
            name,
            description,
            arch: target.arches[0],
            target,
            extensions,
            firmware,
            repository,
            outputs,
            extra_kernel_args,
            config,
        }),
        _ => Err(findings),
    }
}

/// The first segment of `repository` when it names a registry host (`ghcr.io/acme/storage/talos`):
/// the registry and owner are prefixed at run time, so a full reference would name the registry
/// twice. Docker reads a first segment with a `.` or `:`, or `localhost`, as a host; below a
/// registry a directory may have a dot (`talos.v2/talos`), so a dotted one counts only where a
/// host is likely: a known public registry, or a reference long enough for host, owner and
/// name.
fn registry_host(repository: &str) -> Option<&str> {
    // besides those where every owner shares the host
    const PUBLIC: &[&str] = &[
        "gcr.io",
        "public.ecr.aws",
        "registry.gitlab.com",
        "mcr.microsoft.com",
    ];
    const SUFFIXES: &[&str] = &[".amazonaws.com", ".azurecr.io", ".pkg.dev", ".gcr.io"];
    let (first, _) = repository.split_once('/')?;
    let dotted = first.contains('.')
        && (repository.split('/').count() >= 3
            || super::image::SHARED_HOSTS.contains(&first)
            || PUBLIC.contains(&first)
            || SUFFIXES.iter().any(|s| first.ends_with(s)));
    (dotted || first.contains(':') || first == "localhost").then_some(first)
}

fn registry_host_finding(file: &str, repository: &str, host: &str) -> Finding {
    // the path below the host and, when one follows, the owner: ghcr.io/acme/storage/talos
    // becomes storage/talos
    let segments: Vec<&str> = repository.split('/').skip(1).collect();
    let owner = usize::from(segments.len() > 1);
    let below = segments[owner..].join("/");
    let example = if below.split('/').all(is_path_segment) {
        format!(", e.g. {}", quoted(&below))
    } else {
        String::new()
    };
    Finding::new(
        file,
        "repository",
        format!("starts with what looks like the registry host `{host}`: `repository` is the path below the registry and owner, which are prefixed to it at run time (the registry would be named twice)"),
    )
    .value(quoted(repository))
    .fix(format!(
        "drop the host and the owner{example}; they come from --registry or REGISTRY (default ghcr.io/$GITHUB_REPOSITORY_OWNER)"
    ))
}

/// The target's own rules: a board overlay is for arm64 boards booting Talos's metal image
/// (every board in the catalog is an arm64 single-board computer), options need an overlay,
/// and a cloud platform's disk is `disk`, not the metal image or ISO.
fn check_target(
    file: &str,
    arches: &[Arch],
    platform: Platform,
    overlay: Option<&str>,
    options: &Map<String, Value>,
    outputs: &[Output],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(name) = overlay {
        if let Some(i) = arches.iter().position(|a| *a == Arch::Amd64) {
            let field = if arches.len() > 1 {
                format!("arch[{i}]")
            } else {
                "arch".to_owned()
            };
            findings.push(
                Finding::new(file, field, format!("board overlay `{name}` on amd64: overlays are for arm64 boards"))
                    .value("\"amd64\"")
                    .fix("set \"arch\": \"arm64\" for the board role, and put amd64 nodes in a role of their own without `overlay`"),
            );
        }
        if platform != Platform::Metal {
            findings.push(
                Finding::new(file, "platform", format!("board overlay `{name}` on a cloud platform: boards boot Talos's metal image"))
                    .value(quoted(platform.name()))
                    .fix("drop \"platform\" (boards are metal), or drop \"overlay\" for a cloud role"),
            );
        }
        if let Some(i) = outputs.iter().position(|o| *o == Output::Iso) {
            findings.push(
                Finding::new(
                    file,
                    format!("outputs[{i}]"),
                    "an ISO for a board: boards boot from the disk image",
                )
                .value("\"iso\"")
                .fix("drop \"iso\"; flash the disk image (`disk`) instead (docs/targets.md)"),
            );
        }
    } else if !options.is_empty() {
        findings.push(
            Finding::new(file, "overlay_options", "given without `overlay`")
                .fix("add \"overlay\": \"rpi_generic\" (or the board's overlay), or drop `overlay_options`"),
        );
    }
    // The Raspberry Pi overlays read these two and ignore any other key, silently.
    const RPI_OPTIONS: &[&str] = &["configTxt", "configTxtAppend"];
    let rpi = overlay.is_some_and(|name| name.starts_with("rpi_") || name.starts_with("revpi_"));
    for key in options
        .keys()
        .filter(|k| rpi && !RPI_OPTIONS.contains(&k.as_str()))
    {
        findings.push(
            Finding::new(
                file,
                format!("overlay_options.{key}"),
                "not an option of the Raspberry Pi overlays, which would ignore it",
            )
            .fix(format!(
                "{}use configTxt (replaces config.txt) or configTxtAppend (appended to it)",
                diag::did_you_mean(key, RPI_OPTIONS)
            )),
        );
    }
    for (key, value) in options {
        if !value.is_string() {
            findings.push(
                Finding::new(file, format!("overlay_options.{key}"), "overlay options are strings here")
                    .value(value)
                    .fix(format!("write `overlay_options.{key}` as a string (for Raspberry Pi: configTxt, configTxtAppend)")),
            );
        }
    }
    if platform != Platform::Metal && builds_matchbox(outputs) {
        // upstream's matchbox profile boots its kernel and initramfs with talos.platform=metal
        let i = outputs
            .iter()
            .rposition(|o| matches!(o, Output::Kernel | Output::Initramfs))
            .expect("builds_matchbox: both are listed");
        findings.push(
            Finding::new(file, format!("outputs[{i}]"), format!("`kernel` and `initramfs` in a `{platform}` role make its matchbox netboot image, whose profile boots them as metal (talos.platform=metal), not {platform}"))
                .value(quoted(outputs[i].name()))
                .fix(format!("drop \"kernel\" or \"initramfs\" and use \"disk\" for the {platform} disk image; netbooted nodes belong in a metal role")),
        );
    }
    if platform != Platform::Metal {
        for (i, output) in outputs.iter().enumerate() {
            if matches!(output, Output::Metal | Output::Iso | Output::Nocloud) {
                findings.push(
                    Finding::new(file, format!("outputs[{i}]"), format!("a `{}` image in a `{platform}` role: it would boot as {}, not {platform}", output.name(), if *output == Output::Nocloud { "nocloud" } else { "metal" }))
                        .value(quoted(output.name()))
                        .fix(format!("use \"disk\" for the {platform} disk image ({})", platform.disk_artifact(arches.first().copied().unwrap_or(Arch::Arm64)))),
                );
            }
        }
    } else if let (Some(m), Some(d)) = (
        outputs.iter().position(|o| *o == Output::Metal),
        outputs.iter().position(|o| *o == Output::Disk),
    ) {
        findings.push(
            Finding::new(
                file,
                format!("outputs[{}]", m.max(d)),
                "`disk` and `metal` are the same image on metal",
            )
            .fix("list one of them"),
        );
    }
    findings
}

/// The first word of a kernel-argument entry whose key, a leading `-` (which deletes the key)
/// removed, is `talos.platform`.
fn platform_word(arg: &str) -> Option<&str> {
    arg.split_whitespace().find(|word| {
        let key = word.strip_prefix('-').unwrap_or(word);
        key.split_once('=').map_or(key, |(key, _)| key) == "talos.platform"
    })
}

/// The problem and fix for an entry whose `word` sets or removes `talos.platform`.
fn platform_fix(arg: &str, word: &str) -> (&'static str, String) {
    let drop = if word == arg {
        "drop it".to_owned()
    } else {
        format!("drop `{word}` from it")
    };
    match word.strip_prefix("talos.platform=") {
        _ if word.starts_with('-') => (
            "removes the platform, which is the variant's `platform` field",
            format!("{drop}: the image boots as the variant's `platform`"),
        ),
        Some(p) if !p.is_empty() => (
            "sets the platform, which is the variant's `platform` field",
            format!("{drop} and set \"platform\": \"{p}\""),
        ),
        _ => (
            "sets the platform, which is the variant's `platform` field",
            format!("{drop} and set the variant's `platform`"),
        ),
    }
}

/// An extension whose service waits for configuration the variant must declare (tailscale) is
/// an error without it; configuration for an extension the image does not carry is one too.
/// What an extension implies (kernel modules, RuntimeClass) needs no declaration.
fn check_declared_config(
    file: &str,
    extensions: &[String],
    firmware: &[String],
    config: &NodeConfig,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let carried = |name: &str| firmware.iter().chain(extensions).any(|e| e == name);
    for (i, name) in extensions.iter().enumerate() {
        if let Needs::Declared {
            field,
            why,
            example,
        } = extension::needs(name)
        {
            if !config.declares(field) {
                findings.push(
                    Finding::new(file, format!("config.{field}"), format!("missing: extensions[{i}] = \"{name}\" needs it: {why}"))
                        .fix(format!("add \"config\": {{\"{field}\": {example}}} (see docs/config.md), or drop \"{name}\" from `extensions`")),
                );
            }
        }
    }
    if config.tailscale.is_some() && !carried("tailscale") {
        findings.push(
            Finding::new(
                file,
                "config.tailscale",
                "declared, but the variant does not carry the `tailscale` extension",
            )
            .fix("add \"tailscale\" to `extensions`, or remove `config.tailscale`"),
        );
    }
    findings
}

/// Checks that hold across variants: every repository an image publishes to (the installer's,
/// and the matchbox image's beside it) belongs to one variant only.
#[cfg(test)]
pub fn check_set(variants: &[(String, Variant)]) -> Vec<Finding> {
    let published: Vec<Published> = variants
        .iter()
        .map(|(file, v)| Published {
            file: file.clone(),
            repository: Some(v.repository.clone()),
            matchbox: v.matchbox_repository().is_some(),
            extensions: Vec::new(),
            tag_prefix: v.target.tag_prefix(),
            overlay: v.target.overlay.as_ref().map(|o| o.name.clone()),
        })
        .collect();
    check_repositories(&published)
}

/// What the checks across variants need from one file, read leniently from its JSON so that a
/// file with problems of its own (a name that does not match, an unknown output) still takes
/// part in them: every finding is reported in one run, not one per fix.
#[derive(Default)]
struct Published {
    file: String,
    repository: Option<String>,
    /// Whether it builds a matchbox image (kernel and initramfs among its outputs).
    matchbox: bool,
    /// (field path, short name) of every extension and firmware entry that is a string.
    extensions: Vec<(String, String)>,
    /// The target's tag prefix (platform, overlay): roles may share a repository for
    /// different targets.
    tag_prefix: Option<String>,
    /// The board overlay's name, if it names one.
    overlay: Option<String>,
}

impl Published {
    fn read(file: &str, text: &str) -> Published {
        let mut published = Published {
            file: file.to_owned(),
            ..Published::default()
        };
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(diag::without_bom(text))
        else {
            return published;
        };
        let platform = object.get("platform").and_then(Value::as_str);
        let overlay = object
            .get("overlay")
            .and_then(|o| o.as_str().or_else(|| o.get("name")?.as_str()));
        published.tag_prefix =
            super::target::tag_prefix(platform.unwrap_or(Platform::Metal.name()), overlay);
        published.overlay = overlay.map(str::to_owned);
        published.repository = object
            .get("repository")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // the outputs it names (those with known names), or the default ones
        let outputs: Vec<Output> = match object.get("outputs").and_then(Value::as_array) {
            None => Output::DEFAULT.to_vec(),
            Some(names) => Output::ALL
                .into_iter()
                .filter(|o| names.iter().any(|n| n.as_str() == Some(o.name())))
                .collect(),
        };
        published.matchbox = builds_matchbox(&outputs);
        for field in ["firmware", "extensions"] {
            let items = object.get(field).and_then(Value::as_array);
            for (i, item) in items.into_iter().flatten().enumerate() {
                if let Some(name) = item.as_str() {
                    published
                        .extensions
                        .push((format!("{field}[{i}]"), name.to_owned()));
                }
            }
        }
        published
    }
}

fn check_repositories(variants: &[Published]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // (repository, target's tag prefix, file, what publishes there); a handful of entries
    let mut taken: Vec<(String, &Option<String>, &str, &str)> = Vec::new();
    for variant in variants {
        let Some(installer) = &variant.repository else {
            continue;
        };
        let prefix = &variant.tag_prefix;
        let mut published = vec![(installer.clone(), "the installer")];
        if variant.matchbox {
            published.push((matchbox_repository(installer), "the matchbox image"));
        }
        for (repository, what) in published {
            match taken
                .iter()
                .find(|(r, p, _, _)| *r == repository && *p == prefix)
            {
                None => taken.push((repository, prefix, &variant.file, what)),
                Some((_, _, first, first_what)) => {
                    let problem = if what == "the installer" && *first_what == "the installer" {
                        format!("also published by {first}")
                    } else {
                        format!(
                            "{what} would publish to {repository}, where {first_what} of {first} publishes"
                        )
                    };
                    let tags = match &variant.tag_prefix {
                        Some(prefix) => format!("{prefix}-<talos>"),
                        None => "<talos>".to_owned(),
                    };
                    findings.push(
                        Finding::new(variant.file.as_str(), "repository", format!("{problem}, with the same tags ({tags})"))
                            .value(quoted(installer))
                            .fix("give each role its own repository directory (the matchbox image publishes to <directory>/matchbox), or one image would overwrite the other; roles may share a repository only for different targets (platform or overlay), whose tags differ"),
                    );
                    // one finding per variant: a shared installer repository implies the rest
                    break;
                }
            }
        }
    }
    findings
}

/// An extension name that neither the lock nor any other variant knows, but that is a near
/// miss of one they know, is a typo: say so with the field, before a registry is asked for it.
/// A near miss counts when the lock has it, or when more variants use it than the name itself
/// (of two new spellings used once each, neither is the typo of the other).
fn check_extension_names(variants: &[Published], lock_names: &[&str]) -> Vec<Finding> {
    let users = |name: &str| {
        variants
            .iter()
            .filter(|v| v.extensions.iter().any(|(_, n)| n == name))
            .count()
    };
    let mut findings = Vec::new();
    for variant in variants {
        for (field, name) in &variant.extensions {
            let used_elsewhere = variants
                .iter()
                .any(|o| o.file != variant.file && o.extensions.iter().any(|(_, n)| n == name));
            if lock_names.contains(&name.as_str()) || used_elsewhere {
                continue;
            }
            let mine = users(name);
            let mut known = Vec::new();
            for (_, other) in variants.iter().flat_map(|v| &v.extensions) {
                if other != name && users(other) > mine {
                    known.push(other.as_str());
                }
            }
            known.extend_from_slice(lock_names);
            let hint = diag::did_you_mean(name, &known);
            if !hint.is_empty() {
                findings.push(
                    Finding::new(
                        variant.file.as_str(),
                        field.as_str(),
                        format!(
                            "unknown extension: neither {} nor another variant has it",
                            super::layout::LOCK_SHOWN
                        ),
                    )
                    .value(quoted(name))
                    .fix(format!(
                        "{hint}(a new extension is fine: `cargo xtask lock` resolves it)"
                    )),
                );
            }
        }
    }
    findings
}

/// What [`check_files`] found in the variant files.
pub struct Checked {
    /// The files that are valid variants.
    pub variants: Vec<Variant>,
    /// Every problem in any of them.
    pub findings: Vec<Finding>,
    /// The extension and firmware names of each file that is not a valid variant, read
    /// leniently: a command that needs a lock entry for every name names the missing ones in
    /// the same run as the file's own problems (`plan::missing_names`).
    pub unparsed: Vec<Names>,
}

/// A variant file's extension and firmware names as (field path, name): (`extensions[1]`, `zfs`),
/// and its board overlay's name.
pub struct Names {
    pub file: String,
    pub names: Vec<(String, String)>,
    pub overlay: Option<String>,
}

/// Every variant that is valid among `files` (shown path, text), and every finding in any of
/// them: each file's own fields, the repositories they publish to, and extension names against
/// the lock's (`lock_names`) and each other's. Pure: the caller reads the files.
pub fn check_files(files: &[(String, String)], lock_names: &[&str]) -> Checked {
    let mut checked = Checked {
        variants: Vec::new(),
        findings: Vec::new(),
        unparsed: Vec::new(),
    };
    let mut published = Vec::new();
    for (shown, text) in files {
        let mut read = Published::read(shown, text);
        match parse(shown, text) {
            Ok(variant) => {
                read.tag_prefix = variant.target.tag_prefix();
                read.matchbox = variant.matchbox_repository().is_some();
                checked.variants.push(variant)
            }
            Err(mut found) => {
                checked.findings.append(&mut found);
                checked.unparsed.push(Names {
                    file: shown.clone(),
                    names: read.extensions.clone(),
                    overlay: read.overlay.clone(),
                });
            }
        }
        published.push(read);
    }
    checked.findings.extend(check_repositories(&published));
    checked
        .findings
        .extend(check_extension_names(&published, lock_names));
    checked
}

/// Picks variants by name; an empty selection means all of them.
pub fn select(mut all: Vec<Variant>, names: &[String]) -> Result<Vec<Variant>> {
    if names.is_empty() {
        return Ok(all);
    }
    let mut known = Vec::with_capacity(all.len());
    for variant in &all {
        known.push(variant.name.as_str());
    }
    let mut unknown = Vec::new();
    let mut hints = String::new();
    for name in names {
        if !known.contains(&name.as_str()) {
            unknown.push(format!("`{name}`"));
            // the file's path for its name, or several names in one
            let stem = name
                .trim_start_matches("./")
                .trim_start_matches("variants/");
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            let parts: Vec<&str> = name.split(',').map(str::trim).collect();
            if known.contains(&stem) {
                hints.push_str(&format!(
                    "a variant is named without its file's path: `--variant {stem}`; "
                ));
            } else if parts.len() > 1 && parts.iter().all(|p| known.contains(p)) {
                let each: Vec<String> = parts.iter().map(|p| format!("--variant {p}")).collect();
                hints.push_str(&format!(
                    "give --variant once per variant: `{}`; ",
                    each.join(" ")
                ));
            } else {
                hints.push_str(&diag::did_you_mean(name, &known));
            }
        }
    }
    if !unknown.is_empty() {
        return diag::usage(format!(
            "unknown variant{} {}: the variants are {} (one file each under variants/)\n    fix: {}pass one of them to --variant",
            diag::plural(unknown.len()),
            unknown.join(", "),
            known.join(", "),
            hints
        ));
    }
    all.retain(|v| names.contains(&v.name));
    Ok(all)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field-by-field extraction, so that one bad field does not hide the others.
struct Fields<'a> {
    file: &'a str,
    object: &'a Map<String, Value>,
    findings: &'a mut Vec<Finding>,
    /// Path of `object` inside the file, ending in `.` (`config.tailscale.`); empty at the top.
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// The field's path as findings show it.
    fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn missing(&mut self, field: &str, example: &str) {
        self.findings.push(
            Finding::new(self.file, self.path(field), "missing required field")
                .fix(format!("add \"{field}\": {example}")),
        );
    }

    /// Reports `value` at `path` as a repeat: a list names each `what` once.
    fn duplicate(&mut self, path: String, value: &str, what: &str) {
        self.findings.push(
            Finding::new(self.file, path, format!("duplicate {what}"))
                .value(quoted(value))
                .fix(format!("list each {what} once")),
        );
    }

    fn wrong_type(&mut self, field: &str, value: &Value, expected: &str) {
        let path = self.path(field);
        self.findings.push(
            Finding::new(
                self.file,
                path.as_str(),
                format!("expected {expected}, found {}", kind_of(value)),
            )
            .value(value)
            .fix(format!("write `{path}` as {expected}")),
        );
    }

    /// `None` from `parse` means a finding was recorded; an absent field takes `default`.
    fn optional<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Option<T>,
        default: T,
        field: &str,
    ) -> Option<T> {
        if self.object.contains_key(field) {
            parse(self)
        } else {
            Some(default)
        }
    }

    fn required_string(&mut self, field: &str) -> Option<String> {
        match self.object.get(field) {
            None => {
                self.missing(field, "\"...\"");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                let path = self.path(field);
                self.findings.push(
                    Finding::new(self.file, path.as_str(), "must not be empty")
                        .value("\"\"")
                        .fix(format!("give `{path}` a value")),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.wrong_type(field, other, "a string");
                None
            }
        }
    }

    /// Reports keys of this object that are not in `known`, with a "did you mean".
    fn unknown_keys(&mut self, known: &[&str]) {
        for key in self.object.keys() {
            if !known.contains(&key.as_str()) {
                let hint = diag::did_you_mean(key, known);
                self.findings.push(
                    Finding::new(self.file, self.path(key), "unknown field")
                        .fix(format!("{hint}known fields here are: {}", known.join(", "))),
                );
            }
        }
    }

    /// Runs `parse` on the object at `field`, whose findings carry the nested path.
    fn nested<T>(&mut self, field: &str, parse: impl FnOnce(&mut Fields<'_>) -> T) -> Option<T> {
        let object: &'a Map<String, Value> = self.object;
        match object.get(field)? {
            Value::Object(inner) => {
                let prefix = format!("{}.", self.path(field));
                let mut fields = Fields {
                    file: self.file,
                    object: inner,
                    findings: &mut *self.findings,
                    prefix: &prefix,
                };
                Some(parse(&mut fields))
            }
            other => {
                self.wrong_type(field, other, "an object");
                None
            }
        }
    }

    /// The `config` object (see `NodeConfig`).
    fn node_config(&mut self) -> Option<NodeConfig> {
        self.nested("config", |f| {
            f.unknown_keys(CONFIG_FIELDS);
            let tailscale = f.optional(|f| f.tailscale().map(Some), None, "tailscale");
            let join_cidr = f.optional(|f| f.cidr("join_cidr").map(Some), None, "join_cidr");
            let node_subnets = f.optional(|f| f.cidr_list("node_subnets"), Vec::new(), "node_subnets");
            for (i, subnet) in node_subnets.iter().flatten().enumerate() {
                if cidr::CGNAT.contains(*subnet) {
                    f.findings.push(
                        Finding::new(f.file, f.path(&format!("node_subnets[{i}]")), format!("lies inside {}, which node IP selection always excludes (Tailscale and kube-ovn addresses live there)", cidr::CGNAT))
                            .value(quoted(&subnet.to_string()))
                            .fix("list the networks your nodes' own addresses are on, e.g. \"192.168.1.0/24\""),
                    );
                }
            }
            Some(NodeConfig {
                tailscale: tailscale?,
                join_cidr: join_cidr?,
                node_subnets: node_subnets?,
            })
        })?
    }

    fn tailscale(&mut self) -> Option<TailscaleConfig> {
        self.nested("tailscale", |f| {
            f.unknown_keys(TAILSCALE_FIELDS);
            let mode = f.tailscale_mode();
            let routes = f.optional(|f| f.cidr_list("routes"), Vec::new(), "routes");
            let extra_args = f.optional(|f| f.extra_args(), Vec::new(), "extra_args");
            Some(TailscaleConfig {
                mode: mode?,
                routes: routes?,
                extra_args: extra_args?,
            })
        })?
    }

    fn tailscale_mode(&mut self) -> Option<TailscaleMode> {
        if !self.object.contains_key("mode") {
            self.missing(
                "mode",
                "\"kernel\" or \"userspace\" (docs/config.md says which to pick)",
            );
            return None;
        }
        let value = self.required_string("mode")?;
        match value.as_str() {
            "kernel" => Some(TailscaleMode::Kernel),
            "userspace" => Some(TailscaleMode::Userspace),
            _ => {
                self.findings.push(
                    Finding::new(self.file, self.path("mode"), "unknown Tailscale mode")
                        .value(quoted(&value))
                        .fix("use \"kernel\" (a tailscale0 interface) or \"userspace\" (no interface, no host packet filter)"),
                );
                None
            }
        }
    }

    fn cidr(&mut self, field: &str) -> Option<Ipv4Cidr> {
        let text = self.required_string(field)?;
        let path = self.path(field);
        self.parse_cidr(&path, &text)
    }

    fn parse_cidr(&mut self, path: &str, text: &str) -> Option<Ipv4Cidr> {
        match Ipv4Cidr::parse(text) {
            Ok(cidr) => Some(cidr),
            Err(problem) => {
                self.findings.push(
                    Finding::new(self.file, path, problem)
                        .value(quoted(text))
                        .fix("write an IPv4 network as address/prefix with the host bits zero, e.g. \"10.0.0.0/8\""),
                );
                None
            }
        }
    }

    fn cidr_list(&mut self, field: &str) -> Option<Vec<Ipv4Cidr>> {
        let texts = self.string_list(field)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, text) in texts.iter().enumerate() {
            let path = self.path(&format!("{field}[{i}]"));
            match self.parse_cidr(&path, text) {
                Some(cidr) if out.contains(&cidr) => {
                    self.duplicate(path, text, "network");
                    ok = false;
                }
                Some(cidr) => out.push(cidr),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `tailscale up` flags: one `--flag[=value]` per item, since containerboot splits
    /// `TS_EXTRA_ARGS` on spaces; never the auth key, never the routes.
    fn extra_args(&mut self) -> Option<Vec<String>> {
        let args = self.string_list("extra_args")?;
        let mut ok = true;
        for (i, arg) in args.iter().enumerate() {
            let path = self.path(&format!("extra_args[{i}]"));
            let flag = arg.split('=').next().unwrap_or_default();
            let problem = if matches!(flag, "--authkey" | "--auth-key") {
                // The value is not echoed: it may be a real key.
                Some(("a Tailscale auth key in the variant file", "remove it: the key comes from $TS_AUTHKEY when `cargo xtask config` renders the patch, and never belongs in the repository".to_owned()))
            } else if flag == "--advertise-routes" {
                Some(("routes given as a flag", "list them in `config.tailscale.routes` (or pass `--routes` to `cargo xtask config`)".to_owned()))
            } else if !arg.starts_with("--") || arg.len() < 3 {
                Some((
                    "not a `tailscale up` flag",
                    "write one flag per item, e.g. \"--accept-routes=false\"".to_string(),
                ))
            } else if arg.chars().any(char::is_whitespace) {
                Some(("contains whitespace", "write one flag per item with `=` before its value, e.g. [\"--hostname=gw\"]; the extension splits TS_EXTRA_ARGS on spaces".to_owned()))
            } else {
                None
            };
            if let Some((problem, fix)) = problem {
                let mut finding = Finding::new(self.file, path.as_str(), problem).fix(fix);
                if !matches!(flag, "--authkey" | "--auth-key") {
                    finding = finding.value(quoted(arg));
                }
                self.findings.push(finding);
                ok = false;
            }
        }
        ok.then_some(args)
    }

    fn parse_arch(&mut self, path: &str, value: &str) -> Option<Arch> {
        match value {
            "arm64" => Some(Arch::Arm64),
            "amd64" => Some(Arch::Amd64),
            _ => {
                self.findings.push(
                    Finding::new(self.file, path, "unknown architecture")
                        .value(quoted(value))
                        .fix("use \"arm64\" (or \"amd64\"); Talos names them the Go way, not aarch64/x86_64"),
                );
                None
            }
        }
    }

    /// `"arch": "arm64"` or `"arch": ["amd64", "arm64"]` (one image index per tag).
    fn arches(&mut self) -> Option<Vec<Arch>> {
        match self.object.get("arch") {
            Some(Value::Array(_)) => {
                let names = self.string_list("arch")?;
                let mut out = Vec::new();
                let mut ok = true;
                for (i, name) in names.iter().enumerate() {
                    match self.parse_arch(&format!("arch[{i}]"), name) {
                        Some(a) if out.contains(&a) => {
                            self.duplicate(format!("arch[{i}]"), name, "architecture");
                            ok = false;
                        }
                        Some(a) => out.push(a),
                        None => ok = false,
                    }
                }
                if out.is_empty() && ok {
                    self.findings.push(
                        Finding::new(self.file, "arch", "empty")
                            .value("[]")
                            .fix("write \"arch\": \"arm64\", or list the architectures, e.g. [\"amd64\", \"arm64\"]"),
                    );
                    ok = false;
                }
                ok.then_some(out)
            }
            Some(Value::String(_)) | None => {
                let value = self.required_string("arch")?;
                Some(vec![self.parse_arch("arch", &value)?])
            }
            Some(other) => {
                self.wrong_type("arch", other, "a string or an array of strings");
                None
            }
        }
    }

    fn platform(&mut self) -> Option<Platform> {
        let value = self.required_string("platform")?;
        if let Some(platform) = Platform::parse(&value) {
            return Some(platform);
        }
        let names = Platform::names();
        let hint = match diag::closest(&value.to_lowercase(), &names) {
            Some(near) => format!("did you mean \"{near}\"? "),
            None => String::new(),
        };
        let why = match value.as_str() {
            "container" => " (`container` runs Talos in a container and boots no image)",
            "equinixMetal" | "packet" => {
                " (Equinix Metal boots over iPXE: build `kernel` and `initramfs` on metal)"
            }
            _ => "",
        };
        self.findings.push(
            Finding::new(
                self.file,
                "platform",
                format!("unknown Talos platform{why}"),
            )
            .value(quoted(&value))
            .fix(format!(
                "{hint}Talos platforms with a disk image are: {}",
                names.join(", ")
            )),
        );
        None
    }

    fn overlay_name(&mut self) -> Option<String> {
        let value = self.required_string("overlay")?;
        let ok = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && value
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            self.findings.push(
                Finding::new(self.file, "overlay", "not an overlay name")
                    .value(quoted(&value))
                    .fix("write the overlay's name from the overlays catalog, e.g. \"rpi_generic\" (Raspberry Pi 4, CM4) or \"rpi_5\"; the image comes from variants/extensions.lock"),
            );
            return None;
        }
        Some(value)
    }

    fn object_field(&mut self, field: &str) -> Option<Map<String, Value>> {
        match self.object.get(field)? {
            Value::Object(map) => Some(map.clone()),
            other => {
                self.wrong_type(field, other, "an object");
                None
            }
        }
    }

    fn string_list(&mut self, field: &str) -> Option<Vec<String>> {
        let value = self.object.get(field)?;
        let Value::Array(items) = value else {
            self.wrong_type(field, value, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => {
                    self.wrong_type(&format!("{field}[{i}]"), other, "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A list of extension short names: valid names, no duplicates, non-empty when `required`.
    fn name_list(&mut self, field: &str, required: bool) -> Option<Vec<String>> {
        if required && !self.object.contains_key(field) {
            self.missing(field, "[\"drbd\", \"zfs\"]");
            return None;
        }
        let names = self.string_list(field)?;
        let mut ok = true;
        if required && names.is_empty() {
            self.findings.push(
                Finding::new(self.file, field, "empty")
                    .value("[]")
                    .fix("list the system extensions this role needs by short name, e.g. [\"drbd\", \"zfs\"]"),
            );
            ok = false;
        }
        for (i, name) in names.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if name.contains('/') || name.contains(':') || name.contains('@') {
                self.findings.push(
                    Finding::new(self.file, at.as_str(), "not a short extension name")
                        .value(quoted(name))
                        .fix(format!(
                            "write the short name (\"{}\"); the image reference comes from variants/{}",
                            short_name(name),
                            super::layout::LOCK_FILE_NAME
                        )),
                );
                ok = false;
            } else if !is_path_segment(name) {
                self.findings.push(
                    Finding::new(self.file, at.as_str(), "not a valid extension name")
                        .value(quoted(name))
                        .fix("use the lowercase name of the siderolabs extension, e.g. \"drbd\""),
                );
                ok = false;
            } else if let Some(first) = names[..i].iter().position(|n| n == name) {
                self.findings.push(
                    Finding::new(
                        self.file,
                        at.as_str(),
                        format!("duplicate of {field}[{first}]"),
                    )
                    .value(quoted(name))
                    .fix("list each extension once"),
                );
                ok = false;
            }
        }
        ok.then_some(names)
    }

    fn outputs(&mut self) -> Option<Vec<Output>> {
        let names = self.string_list("outputs")?;
        let known: Vec<&str> = Output::ALL.iter().map(|o| o.name()).collect();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, name) in names.iter().enumerate() {
            match Output::ALL.iter().find(|o| o.name() == name) {
                Some(o) if out.contains(o) => {
                    self.duplicate(format!("outputs[{i}]"), name, "output");
                    ok = false;
                }
                Some(o) => out.push(*o),
                None => {
                    self.findings.push(
                        Finding::new(self.file, format!("outputs[{i}]"), "unknown output")
                            .value(quoted(name))
                            .fix(format!(
                                "{}use one of: {}",
                                diag::did_you_mean(name, &known),
                                known.join(", ")
                            )),
                    );
                    ok = false;
                }
            }
        }
        if out.is_empty() && ok {
            self.findings
                .push(
                    Finding::new(self.file, "outputs", "empty")
                        .value("[]")
                        .fix(format!(
                            "list what to build, or drop the field for the default ({})",
                            Output::DEFAULT.map(Output::name).join(", ")
                        )),
                );
            ok = false;
        }
        ok.then_some(out)
    }
}

fn short_name(reference: &str) -> &str {
    let repo = reference.split(['@', ':']).next().unwrap_or(reference);
    repo.rsplit('/').next().unwrap_or(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_named_by_its_file_or_several_in_one_gets_the_right_hint() {
        let role = |name: &str| {
            let text = format!(
                r#"{{"name": "{name}", "description": "d", "arch": "arm64", "extensions": ["drbd"], "repository": "r-{name}/talos"}}"#
            );
            parse(&format!("variants/{name}.json"), &text).unwrap()
        };
        let err = |name: &str| {
            let names = [name.to_owned()];
            format!(
                "{:#}",
                select(vec![role("compute"), role("gateway")], &names).unwrap_err()
            )
        };
        assert!(err("variants/compute.json").contains("`--variant compute`"));
        assert!(err("compute,gateway").contains("`--variant compute --variant gateway`"));
        assert!(err("gatway").contains("did you mean `gateway`?"));
        let names = ["gateway".to_owned()];
        assert_eq!(
            select(vec![role("compute"), role("gateway")], &names).unwrap()[0].name,
            "gateway"
        );
    }

    #[test]
    fn matchbox_publishes_beside_the_installer() {
        assert_eq!(
            matchbox_repository("ghcr.io/acme/talos-cozystack-spin-only/talos"),
            "ghcr.io/acme/talos-cozystack-spin-only/matchbox"
        );
        assert_eq!(matchbox_repository("talos"), "matchbox");
    }

    const GOOD: &str = r#"{
        "name": "compute",
        "description": "storage and wasm",
        "arch": "arm64",
        "extensions": ["drbd", "zfs", "spin"],
        "repository": "talos-cozystack-spin-only/talos"
    }"#;

    fn errors(file: &str, text: &str) -> Vec<String> {
        parse(file, text)
            .unwrap_err()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    fn one_error(file: &str, text: &str) -> String {
        let errs = errors(file, text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn good_file_parses_with_defaults() {
        let v = parse("variants/compute.json", GOOD).unwrap();
        assert_eq!(v.extensions, ["drbd", "zfs", "spin"]);
        assert!(v.firmware.is_empty());
        assert_eq!(v.outputs, Output::DEFAULT);
        assert_eq!(v.arch, Arch::Arm64);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = one_error(
            "variants/compute.json",
            "{\n  \"name\": \"compute\",\n  \"arch\" \"arm64\"\n}",
        );
        assert!(
            e.starts_with("variants/compute.json: malformed JSON at line 3 column 10"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named_with_a_suggestion() {
        let text = GOOD.replace("\"extensions\"", "\"extension\"");
        let errs = errors("variants/compute.json", &text);
        assert!(
            errs.iter()
                .any(|e| e.contains("field `extension`: unknown field")
                    && e.contains("did you mean `extensions`?")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("field `extensions`: missing required field")),
            "{errs:#?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"name": "Compute", "description": "x", "arch": "aarch64", "extensions": [],
                       "repository": "a//b", "systemExtensions": []}"#;
        let errs = errors("variants/compute.json", text);
        let joined = errs.join("\n");
        for needle in [
            "field `systemExtensions`: unknown field",
            "field `arch` = \"aarch64\": unknown architecture",
            "field `extensions` = []: empty",
            "field `name` = \"Compute\": not a valid repository path segment",
            "field `repository` = \"a//b\": not a valid repository path",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        assert_eq!(errs.len(), 5, "{joined}");
    }

    #[test]
    fn a_repository_that_names_a_registry_host_is_refused() {
        // the registry and owner are prefixed at run time: ghcr.io/acme/ghcr.io/acme/storage/talos
        for (repository, host, example) in [
            ("ghcr.io/acme/storage/talos", "ghcr.io", "\"storage/talos\""),
            ("localhost:5000/acme/talos", "localhost:5000", "\"talos\""),
            ("localhost/talos", "localhost", "\"talos\""),
            (
                "registry.internal/acme/talos",
                "registry.internal",
                "\"talos\"",
            ),
            ("ghcr.io/talos", "ghcr.io", "\"talos\""),
            (
                "123.dkr.ecr.eu-west-1.amazonaws.com/talos",
                "123.dkr.ecr.eu-west-1.amazonaws.com",
                "\"talos\"",
            ),
        ] {
            let e = one_error(
                "variants/compute.json",
                &GOOD.replace("talos-cozystack-spin-only/talos", repository),
            );
            assert!(
                e.starts_with(&format!("variants/compute.json: field `repository` = \"{repository}\": starts with what looks like the registry host `{host}`")),
                "{e}"
            );
            assert!(
                e.contains(&format!("fix: drop the host and the owner, e.g. {example}; they come from --registry or REGISTRY")),
                "{e}"
            );
        }
        // a dot or a dash below the first segment is a path, as is a single segment, and a
        // dotted directory that is no known registry with only a name below it
        for repository in [
            "team/talos.v2",
            "talos-cozystack/talos",
            "talos.v2",
            "talos.v2/talos",
        ] {
            let text = GOOD.replace("talos-cozystack-spin-only/talos", repository);
            assert!(
                parse("variants/compute.json", &text).is_ok(),
                "{repository}"
            );
        }
    }

    #[test]
    fn name_must_match_file() {
        let e = one_error("variants/worker.json", GOOD);
        assert!(
            e.contains("field `name` = \"compute\": does not match the file name `worker.json`"),
            "{e}"
        );
        assert!(e.contains("fix: set \"name\": \"worker\""), "{e}");
        // a copy's original has the name: renaming onto it would overwrite it
        assert!(
            !e.contains("rename the file to variants/compute.json"),
            "{e}"
        );
        let e = one_error("variants/compute copy.json", GOOD);
        assert!(!e.contains("set \"name\": \"compute copy\""), "{e}");
        assert!(
            e.contains(
                "fix: rename the file to variants/<role>.json, a role name of lowercase letters"
            ),
            "{e}"
        );
    }

    #[test]
    fn duplicate_extensions_are_rejected() {
        let text = GOOD.replace("\"spin\"]", "\"spin\", \"zfs\"]");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("field `extensions[3]` = \"zfs\": duplicate of extensions[1]"),
            "{e}"
        );
    }

    #[test]
    fn full_references_are_not_short_names() {
        let text = GOOD.replace("\"spin\"]", "\"ghcr.io/siderolabs/spin:v0.25.1\"]");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("not a short extension name")
                && e.contains("write the short name (\"spin\")"),
            "{e}"
        );
    }

    #[test]
    fn extra_kernel_args_do_not_set_the_platform_or_stay_empty() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"extra_kernel_args\": [\"console=ttyS0\", \"talos.platform=aws\", \" \"], \"arch\"",
        );
        assert_ne!(text, GOOD);
        let e = errors("variants/compute.json", &text).join("\n");
        assert!(e.contains("field `extra_kernel_args[1]` = \"talos.platform=aws\": sets the platform, which is the variant's `platform` field\n    fix: drop it and set \"platform\": \"aws\""), "{e}");
        assert!(
            e.contains("field `extra_kernel_args[2]` = \" \": empty"),
            "{e}"
        );
        assert!(!e.contains("extra_kernel_args[0]"), "{e}");
    }

    #[test]
    fn extra_kernel_args_do_not_set_the_platform_inside_an_entry() {
        // the imager joins the entries with spaces and parses them again
        let text = GOOD.replace(
            "\"arch\"",
            "\"extra_kernel_args\": [\"console=ttyS0 talos.platform=aws\", \"net.ifnames=0 talos.platform\", \"xtalos.platform=aws talos.platforms=aws\"], \"arch\"",
        );
        assert_ne!(text, GOOD);
        let e = errors("variants/compute.json", &text).join("\n");
        assert!(e.contains("field `extra_kernel_args[0]` = \"console=ttyS0 talos.platform=aws\": sets the platform, which is the variant's `platform` field\n    fix: drop `talos.platform=aws` from it and set \"platform\": \"aws\""), "{e}");
        assert!(e.contains("field `extra_kernel_args[1]` = \"net.ifnames=0 talos.platform\": sets the platform, which is the variant's `platform` field\n    fix: drop `talos.platform` from it and set the variant's `platform`"), "{e}");
        assert!(!e.contains("extra_kernel_args[2]"), "{e}");
    }

    #[test]
    fn extra_kernel_args_do_not_remove_the_platform() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"extra_kernel_args\": [\"console=ttyS0\", \"-talos.platform\", \"quiet -talos.platform=aws\"], \"arch\"",
        );
        assert_ne!(text, GOOD);
        let e = errors("variants/compute.json", &text).join("\n");
        assert!(e.contains("field `extra_kernel_args[1]` = \"-talos.platform\": removes the platform, which is the variant's `platform` field\n    fix: drop it: the image boots as the variant's `platform`"), "{e}");
        assert!(e.contains("field `extra_kernel_args[2]` = \"quiet -talos.platform=aws\": removes the platform, which is the variant's `platform` field\n    fix: drop `-talos.platform=aws` from it: the image boots as the variant's `platform`"), "{e}");
        assert!(!e.contains("extra_kernel_args[0]"), "{e}");
    }

    #[test]
    fn x86_firmware_in_arm64_variant_is_rejected() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"firmware\": [\"bnx2-bnx2x\", \"intel-ucode\"], \"arch\"",
        );
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains(
                "field `firmware[1]` = \"intel-ucode\": x86-only firmware in an arm64 variant"
            ),
            "{e}"
        );
        let amd64 = text.replace("arm64", "amd64");
        assert!(parse("variants/compute.json", &amd64).is_ok());
    }

    #[test]
    fn x86_firmware_listed_as_an_extension_is_refused_on_arm64_too() {
        // Talos and Image Factory treat firmware as system extensions: users list it there
        let text = GOOD.replace("\"spin\"]", "\"spin\", \"amd-ucode\", \"intel-ucode\"]");
        let errs = errors("variants/compute.json", &text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        for (i, name) in [(3, "amd-ucode"), (4, "intel-ucode")] {
            let e = errs
                .iter()
                .find(|e| e.contains(&format!("field `extensions[{i}]`")))
                .unwrap_or_else(|| panic!("extensions[{i}] not reported: {errs:#?}"));
            assert!(
                e.contains(&format!(
                    "field `extensions[{i}]` = \"{name}\": x86-only firmware in an arm64 variant"
                )),
                "{e}"
            );
            assert!(
                e.contains(&format!("fix: remove \"{name}\": it is firmware for x86 CPUs or GPUs (firmware is a system extension, listed here or under `firmware`)")),
                "{e}"
            );
        }
        let multi = text.replace("\"arm64\"", "[\"amd64\", \"arm64\"]");
        let e = errors("variants/compute.json", &multi).join("\n");
        assert!(e.contains("carries the same extensions on each"), "{e}");
        let amd64 = text.replace("arm64", "amd64");
        assert!(parse("variants/compute.json", &amd64).is_ok());
    }

    #[test]
    fn unknown_and_duplicate_outputs_are_rejected() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"outputs\": [\"kernel\", \"raw\", \"kernel\"], \"arch\"",
        );
        let joined = errors("variants/compute.json", &text).join("\n");
        assert!(
            joined.contains("field `outputs[1]` = \"raw\": unknown output"),
            "{joined}"
        );
        assert!(
            joined.contains("field `outputs[2]` = \"kernel\": duplicate output"),
            "{joined}"
        );
    }

    #[test]
    fn duplicates_and_an_empty_output_list_name_the_fix() {
        let routes = GATEWAY.replace(
            "\"routes\": [\"10.96.0.0/16\"]",
            "\"routes\": [\"10.96.0.0/16\", \"10.96.0.0/16\"]",
        );
        assert_eq!(
            one_error("variants/gateway.json", &routes),
            "variants/gateway.json: field `config.tailscale.routes[1]` = \"10.96.0.0/16\": duplicate network\n    fix: list each network once"
        );
        let arches = GOOD.replace("\"arm64\"", "[\"amd64\", \"amd64\"]");
        assert_eq!(
            one_error("variants/compute.json", &arches),
            "variants/compute.json: field `arch[1]` = \"amd64\": duplicate architecture\n    fix: list each architecture once"
        );
        let empty = GOOD.replace("\"arch\"", "\"outputs\": [], \"arch\"");
        assert_eq!(
            one_error("variants/compute.json", &empty),
            "variants/compute.json: field `outputs` = []: empty\n    fix: list what to build, or drop the field for the default (installer, kernel, initramfs, metal)"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let text = GOOD.replace("\"storage and wasm\"", "42");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("field `description` = 42: expected a string, found a number"),
            "{e}"
        );
    }

    #[test]
    fn a_file_with_its_own_problems_still_takes_part_in_the_set_checks() {
        let bad_name = GOOD.replace("\"compute\"", "\"compute2\"");
        assert!(parse("variants/compute.json", &bad_name).is_err());
        let findings = check_repositories(&[
            Published::read("variants/compute.json", &bad_name),
            Published::read("variants/gateway.json", GOOD),
        ]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0]
                .problem
                .contains("also published by variants/compute.json"),
            "{}",
            findings[0]
        );
    }

    #[test]
    fn a_misspelt_extension_is_named_with_its_field_and_the_near_miss() {
        let typo = Published::read("variants/a.json", &GOOD.replace("\"drbd\"", "\"drdb\""));
        let good = Published::read("variants/b.json", GOOD);
        let findings = check_extension_names(&[typo, good], &["drbd", "zfs", "spin"]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let e = findings[0].to_string();
        assert!(
            e.starts_with("variants/a.json: field `extensions[0]` = \"drdb\": unknown extension"),
            "{e}"
        );
        assert!(e.contains("did you mean `drbd`?"), "{e}");
        // without a lock the other variants still know the name
        let typo = Published::read("variants/a.json", &GOOD.replace("\"drbd\"", "\"drdb\""));
        let files = [
            typo,
            Published::read("variants/b.json", GOOD),
            Published::read("variants/c.json", GOOD),
        ];
        let findings = check_extension_names(&files, &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].field, "extensions[0]");
        // a new name no one else knows is not a typo
        let new = Published::read("variants/a.json", &GOOD.replace("\"drbd\"", "\"nvidia\""));
        assert!(check_extension_names(&[new], &["drbd"]).is_empty());
    }

    #[test]
    fn an_unknown_output_gets_a_near_miss() {
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace("\"repository\"", "\"outputs\": [\"metl\"], \"repository\""),
        );
        assert!(e.contains("did you mean `metal`?"), "{e}");
    }

    #[test]
    fn two_variants_cannot_share_a_repository() {
        let a = parse("variants/compute.json", GOOD).unwrap();
        let b = parse(
            "variants/gateway.json",
            &GOOD.replace("\"compute\"", "\"gateway\""),
        )
        .unwrap();
        let findings = check_set(&[
            ("variants/compute.json".into(), a),
            ("variants/gateway.json".into(), b),
        ]);
        assert_eq!(findings.len(), 1);
        let e = findings[0].to_string();
        assert!(e.starts_with("variants/gateway.json: field `repository` = \"talos-cozystack-spin-only/talos\": also published by variants/compute.json"), "{e}");
    }

    #[test]
    fn matchbox_images_cannot_share_a_repository_either() {
        let parse_as = |name: &str, repository: &str, outputs: &str| {
            let text = GOOD
                .replace("\"compute\"", &format!("\"{name}\""))
                .replace("talos-cozystack-spin-only/talos", repository)
                .replace("\"arch\"", &format!("\"outputs\": {outputs}, \"arch\""));
            (
                format!("variants/{name}.json"),
                parse(&format!("variants/{name}.json"), &text).unwrap(),
            )
        };
        let defaults = r#"["installer", "kernel", "initramfs"]"#;
        let findings = check_set(&[
            parse_as("a", "team/talos-a", defaults),
            parse_as("b", "team/talos-b", defaults),
        ]);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let e = findings[0].to_string();
        assert!(e.starts_with("variants/b.json: field `repository` = \"team/talos-b\": the matchbox image would publish to team/matchbox, where the matchbox image of variants/a.json publishes"), "{e}");
        assert!(e.contains("<directory>/matchbox"), "{e}");

        // An installer repository named like another variant's matchbox image.
        let findings = check_set(&[
            parse_as("a", "team/talos", defaults),
            parse_as("b", "team/matchbox", r#"["installer"]"#),
        ]);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(findings[0].to_string().contains("the installer would publish to team/matchbox, where the matchbox image of variants/a.json publishes"));

        // Without kernel and initramfs there is no matchbox image, so no conflict.
        assert!(check_set(&[
            parse_as("a", "team/talos-a", r#"["installer"]"#),
            parse_as("b", "team/talos-b", defaults),
        ])
        .is_empty());
    }

    const GATEWAY: &str = r#"{
        "name": "gateway",
        "description": "subnet router",
        "arch": "arm64",
        "extensions": ["drbd", "zfs", "spin", "tailscale"],
        "repository": "talos-cozystack-spin-tailscale/talos",
        "config": {"tailscale": {"mode": "kernel", "routes": ["10.96.0.0/16"], "extra_args": ["--hostname=gw"]},
                   "join_cidr": "172.31.0.0/16", "node_subnets": ["192.168.1.0/24"]}
    }"#;

    #[test]
    fn config_parses_into_typed_values() {
        let v = parse("variants/gateway.json", GATEWAY).unwrap();
        let ts = v.config.tailscale.as_ref().unwrap();
        assert_eq!(ts.mode, TailscaleMode::Kernel);
        assert_eq!(ts.routes[0].to_string(), "10.96.0.0/16");
        assert_eq!(ts.extra_args, ["--hostname=gw"]);
        assert_eq!(v.config.join_cidr.unwrap().to_string(), "172.31.0.0/16");
        assert_eq!(v.config.node_subnets[0].to_string(), "192.168.1.0/24");
        let compute = parse("variants/compute.json", GOOD).unwrap();
        assert_eq!(
            compute.config,
            NodeConfig::default(),
            "drbd, zfs and spin need no declaration"
        );
    }

    #[test]
    fn tailscale_without_its_config_is_rejected_with_the_fix() {
        let without = format!(
            "{}}}",
            &GATEWAY[..GATEWAY.find(",\n        \"config\"").unwrap()]
        );
        let e = one_error("variants/gateway.json", &without);
        assert!(
            e.starts_with("variants/gateway.json: field `config.tailscale`: missing: extensions[3] = \"tailscale\" needs it: its service ext-tailscale waits for an ExtensionServiceConfig"),
            "{e}"
        );
        assert!(
            e.contains("fix: add \"config\": {\"tailscale\": {\"mode\": \"userspace\""),
            "{e}"
        );
    }

    #[test]
    fn tailscale_config_without_the_extension_is_rejected() {
        let text = GATEWAY.replace(", \"tailscale\"]", "]");
        let e = one_error("variants/gateway.json", &text);
        assert!(
            e.contains("field `config.tailscale`: declared, but the variant does not carry the `tailscale` extension"),
            "{e}"
        );
    }

    #[test]
    fn config_problems_carry_their_nested_path() {
        let text = GATEWAY
            .replace("\"kernel\"", "\"Kernel\"")
            .replace("\"join_cidr\"", "\"join_cdr\"")
            .replace("192.168.1.0/24", "100.64.0.0/16")
            .replace("--hostname=gw", "--hostname gw");
        let joined = errors("variants/gateway.json", &text).join("\n");
        for needle in [
            "field `config.tailscale.mode` = \"Kernel\": unknown Tailscale mode",
            "field `config.join_cdr`: unknown field\n    fix: did you mean `join_cidr`?",
            "field `config.node_subnets[0]` = \"100.64.0.0/16\": lies inside 100.64.0.0/10",
            "field `config.tailscale.extra_args[0]` = \"--hostname gw\": contains whitespace",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        let wrong = GATEWAY.replace("\"mode\": \"kernel\"", "\"mode\": 1");
        let e = one_error("variants/gateway.json", &wrong);
        assert!(
            e.contains("field `config.tailscale.mode` = 1: expected a string, found a number"),
            "{e}"
        );
        let missing = GATEWAY.replace("\"mode\": \"kernel\", ", "");
        let e = one_error("variants/gateway.json", &missing);
        assert!(e.contains("field `config.tailscale.mode`: missing required field\n    fix: add \"mode\": \"kernel\" or \"userspace\""), "{e}");
    }

    #[test]
    fn arch_is_a_string_or_a_list() {
        let v = parse(
            "variants/compute.json",
            &GOOD.replace("\"arm64\"", "[\"amd64\", \"arm64\"]"),
        )
        .unwrap();
        assert_eq!(v.target.arches, [Arch::Amd64, Arch::Arm64]);
        assert_eq!(v.arch, Arch::Amd64);
        let joined = errors(
            "variants/compute.json",
            &GOOD.replace("\"arm64\"", "[\"arm64\", \"aarch64\", \"arm64\"]"),
        )
        .join("\n");
        assert!(
            joined.contains("field `arch[1]` = \"aarch64\": unknown architecture"),
            "{joined}"
        );
        assert!(
            joined.contains("field `arch[2]` = \"arm64\": duplicate architecture"),
            "{joined}"
        );
        let e = one_error("variants/compute.json", &GOOD.replace("\"arm64\"", "[]"));
        assert!(e.contains("field `arch` = []: empty"), "{e}");
        let e = one_error("variants/compute.json", &GOOD.replace("\"arm64\"", "64"));
        assert!(
            e.contains("expected a string or an array of strings"),
            "{e}"
        );
    }

    #[test]
    fn unknown_platforms_get_a_did_you_mean() {
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace("\"arch\"", "\"platform\": \"hetzner-cloud\", \"arch\""),
        );
        assert!(
            e.contains("field `platform` = \"hetzner-cloud\": unknown Talos platform"),
            "{e}"
        );
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace("\"arch\"", "\"platform\": \"AWS\", \"arch\""),
        );
        assert!(e.contains("did you mean \"aws\"?"), "{e}");
        assert!(e.contains("metal, akamai, aws"), "{e}");
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace("\"arch\"", "\"platform\": \"container\", \"arch\""),
        );
        assert!(e.contains("boots no image"), "{e}");
        let aws = parse(
            "variants/compute.json",
            &GOOD.replace("\"arch\"", "\"platform\": \"aws\", \"arch\""),
        )
        .unwrap();
        assert_eq!(aws.target.platform, Platform::Aws);
        assert_eq!(aws.outputs, [Output::Installer, Output::Disk]);
    }

    #[test]
    fn a_cloud_role_builds_its_own_disk_not_the_metal_one() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"platform\": \"aws\", \"outputs\": [\"installer\", \"metal\"], \"arch\"",
        );
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("field `outputs[1]` = \"metal\": a `metal` image in a `aws` role"),
            "{e}"
        );
        assert!(
            e.contains("use \"disk\" for the aws disk image (aws-arm64.raw.xz)"),
            "{e}"
        );
    }

    #[test]
    fn a_cloud_role_builds_no_netboot_image_that_would_boot_as_metal() {
        let cloud = |outputs: &str| {
            GOOD.replace(
                "\"arch\"",
                &format!("\"platform\": \"aws\", \"outputs\": {outputs}, \"arch\""),
            )
        };
        let e = one_error(
            "variants/compute.json",
            &cloud(r#"["installer", "kernel", "disk", "initramfs"]"#),
        );
        assert!(
            e.contains("field `outputs[3]` = \"initramfs\": `kernel` and `initramfs` in a `aws` role make its matchbox netboot image, whose profile boots them as metal (talos.platform=metal), not aws"),
            "{e}"
        );
        assert!(e.contains("fix: drop \"kernel\" or \"initramfs\""), "{e}");
        // either alone makes no netboot image
        for one in ["kernel", "initramfs"] {
            let v = parse(
                "variants/compute.json",
                &cloud(&format!(r#"["installer", "disk", "{one}"]"#)),
            );
            assert!(v.is_ok(), "{one}: {:?}", v.err());
        }
    }

    #[test]
    fn overlays_are_for_arm64_boards() {
        let board = GOOD.replace("\"arch\"", "\"overlay\": \"rpi_generic\", \"arch\"");
        let v = parse("variants/compute.json", &board).unwrap();
        assert_eq!(v.target.overlay.as_ref().unwrap().name, "rpi_generic");
        assert_eq!(v.outputs, [Output::Installer, Output::Disk]);
        let e = one_error(
            "variants/compute.json",
            &board.replace("\"arm64\"", "[\"arm64\", \"amd64\"]"),
        );
        assert!(
            e.contains("field `arch[1]` = \"amd64\": board overlay `rpi_generic` on amd64"),
            "{e}"
        );
        let e = one_error(
            "variants/compute.json",
            &board.replace("\"arch\"", "\"platform\": \"aws\", \"arch\""),
        );
        assert!(
            e.contains(
                "field `platform` = \"aws\": board overlay `rpi_generic` on a cloud platform"
            ),
            "{e}"
        );
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace(
                "\"arch\"",
                "\"overlay_options\": {\"configTxt\": \"x\"}, \"arch\"",
            ),
        );
        assert!(
            e.contains("field `overlay_options`: given without `overlay`"),
            "{e}"
        );
        let e = one_error(
            "variants/compute.json",
            &board.replace(
                "\"arch\"",
                "\"overlay_options\": {\"configTxt\": 1}, \"arch\"",
            ),
        );
        assert!(
            e.contains("field `overlay_options.configTxt` = 1: overlay options are strings here"),
            "{e}"
        );
        let e = one_error(
            "variants/compute.json",
            &GOOD.replace(
                "\"arch\"",
                "\"overlay\": \"sbc-raspberrypi:v0.2.0\", \"arch\"",
            ),
        );
        assert!(e.contains("not an overlay name"), "{e}");
        // the Pi overlays ignore any key but their two: a typo dropped config.txt silently
        let e = one_error(
            "variants/compute.json",
            &board.replace(
                "\"arch\"",
                "\"overlay_options\": {\"configTxt\": \"x\", \"configTxtAppnd\": \"y\"}, \"arch\"",
            ),
        );
        assert!(e.contains("field `overlay_options.configTxtAppnd`: not an option of the Raspberry Pi overlays, which would ignore it"), "{e}");
        assert!(e.contains("fix: did you mean `configTxtAppend`?"), "{e}");
        let other = GOOD.replace(
            "\"arch\"",
            "\"overlay\": \"turingrk1\", \"overlay_options\": {\"anything\": \"x\"}, \"arch\"",
        );
        assert!(
            parse("variants/compute.json", &other).is_ok(),
            "other boards' options are theirs"
        );
    }

    #[test]
    fn x86_firmware_is_refused_in_any_arm64_build_of_a_role() {
        let text = GOOD
            .replace("\"arm64\"", "[\"amd64\", \"arm64\"]")
            .replace("\"arch\"", "\"firmware\": [\"amd-ucode\"], \"arch\"");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains(
                "field `firmware[0]` = \"amd-ucode\": x86-only firmware in an arm64 variant"
            ),
            "{e}"
        );
        assert!(e.contains("carries the same extensions on each"), "{e}");
    }

    #[test]
    fn targets_of_one_role_share_a_repository_with_their_own_tags() {
        let metal = parse("variants/compute.json", GOOD).unwrap();
        let rpi_text = GOOD
            .replace("\"compute\"", "\"compute-rpi\"")
            .replace("\"arch\"", "\"overlay\": \"rpi_generic\", \"arch\"");
        let rpi = parse("variants/compute-rpi.json", &rpi_text).unwrap();
        let rpi2 = parse(
            "variants/compute-rpi2.json",
            &rpi_text.replace("\"compute-rpi\"", "\"compute-rpi2\""),
        )
        .unwrap();
        assert!(check_set(&[
            ("variants/compute.json".into(), metal),
            ("variants/compute-rpi.json".into(), rpi.clone()),
        ])
        .is_empty());
        let findings = check_set(&[
            ("variants/compute-rpi.json".into(), rpi),
            ("variants/compute-rpi2.json".into(), rpi2),
        ]);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let e = findings[0].to_string();
        assert!(e.contains("also published by variants/compute-rpi.json, with the same tags (rpi_generic-<talos>)"), "{e}");
    }
}
