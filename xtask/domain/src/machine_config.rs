//! A role's Talos machine-config patches, rendered from its variant by typed code: what an
//! extension implies (`implied_modules`), what the variant declares (`config`), and the
//! comments that explain each line; then the talosctl and kubectl commands that use the files.
//! Pure: the auth key, the install image and the files written come from `config.rs`.
//!
//! An image is half of a working node: a node whose image carries an extension service that has
//! no configuration waits in boot and reboots, forever (zfs without its kernel module, tailscale
//! without its `ExtensionServiceConfig`). docs/config.md explains every generated line.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::cidr::{self, Ipv4Cidr};
use super::shell::REDACTED;
use super::talos::TalosVersion;
use super::variant::{NodeConfig, TailscaleConfig, TailscaleMode};
use super::Variant;

/// The environment variable the Tailscale auth key is read from.
pub const AUTH_KEY_ENV: &str = "TS_AUTHKEY";
/// CozyStack's kube-ovn join network unless the cluster was installed with another.
pub const COZYSTACK_JOIN_CIDR: &str = "100.64.0.0/16";
/// The RuntimeClass Spin workloads select (`runtimeClassName`), and the containerd handler the
/// spin extension registers.
pub const SPIN_RUNTIME_CLASS: &str = "wasmtime-spin-v2";
pub const SPIN_HANDLER: &str = "spin";

/// The machine config a role's patches are applied onto; [`Base::help`] says what each is (it
/// is also `--base`'s help, so it is written there once).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum Base {
    #[default]
    Talosctl,
    Cozystack,
}

impl Base {
    pub const ALL: [Base; 2] = [Base::Talosctl, Base::Cozystack];

    /// As `--base` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Base::Talosctl => "talosctl",
            Base::Cozystack => "cozystack",
        }
    }

    /// What it is (and what `--help` says of it).
    pub fn help(self) -> &'static str {
        match self {
            Base::Talosctl => "`talosctl gen config`'s worker and control-plane configs: no kernel modules, no node IP selection",
            Base::Cozystack => "CozyStack's base config (cozystack/talm `charts/cozystack`), which loads `COZYSTACK_BASE_MODULES` on every node and sets its own `validSubnets`",
        }
    }
}

/// The kernel modules CozyStack's base config loads on every node (name, parameters).
pub const COZYSTACK_BASE_MODULES: &[(&str, &[&str])] = &[
    ("openvswitch", &[]),
    ("drbd", &["usermode_helper=disabled"]),
    ("zfs", &[]),
    ("spl", &[]),
    ("vfio_pci", &[]),
    ("vfio_iommu_type1", &[]),
];

/// A kernel module Talos loads at boot (`machine.kernel.modules[]`).
#[derive(Clone, Serialize)]
pub struct KernelModule {
    pub name: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub parameters: &'static [&'static str],
    /// Shown as a comment beside the module.
    #[serde(skip)]
    pub why: &'static str,
}

/// The kernel modules an extension needs loaded, with the settings CozyStack uses.
pub fn implied_modules(extension: &str) -> &'static [KernelModule] {
    match extension {
        "drbd" => &[
            KernelModule {
                name: "drbd",
                parameters: &["usermode_helper=disabled"],
                why: "DRBD replicates LINSTOR volumes; usermode_helper=disabled because Talos has no drbdadm for the kernel to call (as CozyStack configures it)",
            },
            KernelModule {
                name: "drbd_transport_tcp",
                parameters: &[],
                why: "DRBD's TCP transport, loaded up front as the LINSTOR satellite (piraeus) expects on Talos",
            },
        ],
        "zfs" => &[KernelModule {
            name: "zfs",
            parameters: &[],
            why: "zfs-service waits for /dev/zfs: without the module the node waits in boot and reboots (spl comes with it)",
        }],
        _ => &[],
    }
}

/// How the auth key appears in the rendered text.
pub enum AuthKey<'a> {
    Redacted,
    Value(&'a str),
}

/// Values given on the command line, which replace the variant's.
#[derive(Default)]
pub struct Overrides {
    pub routes: Option<Vec<Ipv4Cidr>>,
    pub join_cidr: Option<Ipv4Cidr>,
    pub node_subnets: Option<Vec<Ipv4Cidr>>,
    pub base: Base,
}

impl Overrides {
    /// The networks node IPs are picked from: `--node-subnet` when given, else the variant's
    /// `config.node_subnets` (empty: none declared).
    pub fn node_subnets_of<'a>(&'a self, variant: &'a Variant) -> &'a [Ipv4Cidr] {
        match &self.node_subnets {
            Some(flags) if !flags.is_empty() => flags,
            _ => &variant.config.node_subnets,
        }
    }
}

/// What `config` hands to Talos's judge (`conformance::judge_role`): the role's redacted files
/// and printed steps, with what they must come out as once merged.
pub struct Judged<'a> {
    /// The lock's Talos release: a judge at another release fails.
    pub talos: &'a TalosVersion,
    pub variant: &'a Variant,
    /// The networks the role declares ([`Overrides::node_subnets_of`]).
    pub node_subnets: &'a [Ipv4Cidr],
    pub install_image: &'a str,
    pub base: Base,
    pub rendered: &'a Rendered,
    pub steps: &'a [Step],
}

/// What a file `config` writes is for.
#[derive(Debug, PartialEq, Eq)]
pub enum FileRole {
    /// A patch for every machine of the role (`--config-patch`).
    Patch,
    /// A patch for the role's control-plane machines only (`--config-patch-control-plane`):
    /// Talos refuses `cluster.etcd` on any other machine.
    ControlPlanePatch,
    /// A Kubernetes object, applied once per cluster.
    Kubernetes,
}

/// One file `config` writes.
#[derive(Debug)]
pub struct RenderedFile {
    pub name: String,
    pub text: String,
    /// The file holds the auth key: written 0600, never printed.
    pub secret: bool,
    pub role: FileRole,
}

#[derive(Debug)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    pub warnings: Vec<String>,
}

/// A YAML document with the comment lines that explain it.
struct Document {
    comments: Vec<String>,
    body: Value,
}

// Typed shapes of the Talos documents we emit (field names as Talos spells them).

#[derive(Serialize)]
struct MachinePatch {
    machine: Machine,
}

#[derive(Serialize)]
struct ControlPlanePatch {
    cluster: Cluster,
}

#[derive(Serialize)]
struct Machine {
    install: Install,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<Kernel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubelet: Option<Kubelet>,
}

#[derive(Serialize)]
struct Install {
    image: String,
}

#[derive(Serialize)]
struct Kernel {
    modules: Vec<KernelModule>,
}

#[derive(Serialize)]
struct Kubelet {
    #[serde(rename = "nodeIP")]
    node_ip: NodeIp,
}

#[derive(Serialize)]
struct NodeIp {
    #[serde(rename = "validSubnets")]
    valid_subnets: Vec<String>,
}

#[derive(Serialize)]
struct Cluster {
    etcd: Etcd,
}

#[derive(Serialize)]
struct Etcd {
    #[serde(rename = "advertisedSubnets")]
    advertised_subnets: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionServiceConfig {
    api_version: &'static str,
    kind: &'static str,
    name: &'static str,
    environment: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeClass {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    handler: &'static str,
}

#[derive(Serialize)]
struct Metadata {
    name: &'static str,
}

/// Renders the role's files. Pure: the auth key, the install image and command-line values come
/// in as arguments.
pub fn render(
    variant: &Variant,
    file: &str,
    install_image: &str,
    overrides: &Overrides,
    key: AuthKey<'_>,
) -> Result<Rendered> {
    let name = &variant.name;
    let mut warnings = Vec::new();

    let tailscale = variant
        .extensions
        .iter()
        .any(|e| e == "tailscale")
        .then_some(variant.config.tailscale.as_ref())
        .flatten();
    let selection = node_ip_selection(variant, overrides, tailscale.is_some())?;
    let mut patch_docs = vec![machine_document(
        variant,
        file,
        install_image,
        overrides.base,
        selection.as_ref(),
    )];
    let secret = tailscale.is_some() && matches!(key, AuthKey::Value(_));
    if let Some(ts) = tailscale {
        let (doc, warning) = tailscale_document(ts, &variant.config, file, overrides, key);
        patch_docs.push(doc);
        warnings.extend(warning);
    }

    let mut files = vec![RenderedFile {
        name: patch_file(name),
        text: documents(&patch_docs),
        secret,
        role: FileRole::Patch,
    }];
    if let Some(subnets) = &selection {
        files.push(RenderedFile {
            name: controlplane_patch_file(name),
            text: documents(&[controlplane_document(name, file, subnets)]),
            secret: false,
            role: FileRole::ControlPlanePatch,
        });
    }
    if variant.all_extensions().any(|e| e == "spin") {
        let doc = Document {
            comments: vec![
                format!("Kubernetes RuntimeClass for the `{name}` role's spin extension ({file})."),
                format!("The extension registers the containerd runtime handler `{SPIN_HANDLER}`; Spin (WebAssembly) pods"),
                format!("select it with `runtimeClassName: {SPIN_RUNTIME_CLASS}`. Apply once per cluster."),
            ],
            body: serde_json::to_value(RuntimeClass {
                api_version: "node.k8s.io/v1",
                kind: "RuntimeClass",
                metadata: Metadata {
                    name: SPIN_RUNTIME_CLASS,
                },
                handler: SPIN_HANDLER,
            })
            .expect("document serializes"),
        };
        files.push(RenderedFile {
            name: RUNTIME_CLASS_FILE.into(),
            text: documents(&[doc]),
            secret: false,
            role: FileRole::Kubernetes,
        });
    }
    Ok(Rendered { files, warnings })
}

/// The file every machine of the role gets.
pub fn patch_file(variant: &str) -> String {
    format!("{variant}.patch.yaml")
}

/// The file only the role's control-plane machines get.
pub fn controlplane_patch_file(variant: &str) -> String {
    format!("{variant}.controlplane.patch.yaml")
}

pub const RUNTIME_CLASS_FILE: &str = "runtimeclass.yaml";

/// Node IP selection: `None` when the role needs none, else the subnet list (Talos syntax, `!`
/// excludes). Only exclusions are added unless the variant or a flag names the node networks:
/// Talos's patcher appends list entries, so on a base that already selects its networks (as
/// CozyStack's does) an inclusion such as `0.0.0.0/0` would widen the user's selection, while an
/// exclusion only narrows it. `!::/0` keeps IPv4 only, which is what Talos picks by itself on an
/// IPv4 cluster (from the service CIDR) and what an exclusion-only list would otherwise lose.
fn node_ip_selection(
    variant: &Variant,
    overrides: &Overrides,
    has_tailscale: bool,
) -> Result<Option<Vec<String>>> {
    let include = Some(overrides.node_subnets_of(variant).to_vec()).filter(|s| !s.is_empty());
    if let Some(subnets) = &include {
        // the variant file's own are findings of its check: only --node-subnet gets here
        if let Some(inside) = subnets.iter().find(|s| cidr::CGNAT.contains(**s)) {
            return crate::diag::usage(format!("--node-subnet {inside}: lies inside {}, which node IP selection excludes (Tailscale and kube-ovn addresses live there)\n    fix: give the network your nodes' addresses are on, e.g. --node-subnet 192.168.1.0/24", cidr::CGNAT));
        }
    }
    if !has_tailscale && include.is_none() {
        return Ok(None);
    }
    let exclude = format!("!{}", cidr::CGNAT);
    Ok(Some(match include {
        Some(subnets) => {
            let mut list = cidr::to_strings(&subnets);
            list.push(exclude);
            list
        }
        None => vec![exclude, NO_IPV6.to_owned()],
    }))
}

/// Excludes every IPv6 address from node IP selection.
const NO_IPV6: &str = "!::/0";

/// Comment lines explaining a subnet list.
fn explain_subnets(comments: &mut Vec<String>, subnets: &[String]) {
    for subnet in subnets {
        let why = if *subnet == format!("!{}", cidr::CGNAT) {
            "never Tailscale's tailscale0 address nor kube-ovn's join network (ovn0)"
        } else if subnet == NO_IPV6 {
            "IPv4 only, as Talos picks by itself on an IPv4 cluster"
        } else {
            "a network the nodes' own addresses are on (config.node_subnets or --node-subnet)"
        };
        explain(comments, subnet, why);
    }
}

/// The `v1alpha1` document every machine of the role gets: install image, kernel modules the
/// extensions imply (less those the base already loads), node IP selection.
fn machine_document(
    variant: &Variant,
    file: &str,
    install_image: &str,
    base: Base,
    selection: Option<&Vec<String>>,
) -> Document {
    let name = &variant.name;
    // machine.kernel.modules: what drbd and zfs imply, less what the base loads already.
    let mut modules: Vec<KernelModule> = Vec::new();
    let mut in_base: Vec<&str> = Vec::new();
    for ext in variant.all_extensions() {
        for m in implied_modules(ext) {
            let loaded = base == Base::Cozystack
                && COZYSTACK_BASE_MODULES
                    .iter()
                    .any(|(n, p)| *n == m.name && *p == m.parameters);
            if loaded {
                in_base.push(m.name);
            } else {
                modules.push(m.clone());
            }
        }
    }

    let mut comments = vec![format!(
        "Talos machine-config patch for every `{name}` node, workers and control planes ({file})."
    )];
    if selection.is_some() {
        comments.push(format!(
            "Control-plane-only settings are in {}.",
            controlplane_patch_file(name)
        ));
    }
    comments.extend([
        format!(
            "Rendered by `cargo xtask config --variant {name}`; docs/config.md explains each line."
        ),
        String::new(),
        "machine.install.image: the role's installer, which the node installs and upgrades to"
            .into(),
    ]);
    if !modules.is_empty() || !in_base.is_empty() {
        comments.push(String::new());
        comments.push(
            "machine.kernel.modules: loaded by Talos at boot, before extension services start"
                .into(),
        );
        for m in &modules {
            explain(&mut comments, m.name, m.why);
        }
        if !in_base.is_empty() {
            explain(
                &mut comments,
                &in_base.join(" "),
                "left out: CozyStack's base config loads them already (--base cozystack), and Talos appends list entries",
            );
        }
    }
    if let Some(subnets) = selection {
        comments.push(String::new());
        comments.push(
            "machine.kubelet.nodeIP.validSubnets: the node IP kubelet registers; appended to the base's list"
                .into(),
        );
        explain_subnets(&mut comments, subnets);
    }

    let patch = MachinePatch {
        machine: Machine {
            install: Install {
                image: install_image.to_owned(),
            },
            kernel: (!modules.is_empty()).then_some(Kernel { modules }),
            kubelet: selection.map(|subnets| Kubelet {
                node_ip: NodeIp {
                    valid_subnets: subnets.clone(),
                },
            }),
        },
    };
    Document {
        comments,
        body: serde_json::to_value(&patch).expect("patch serializes"),
    }
}

/// The document only control-plane machines get: Talos refuses `cluster.etcd` on any other
/// machine ("etcd config is only allowed on control plane machines").
fn controlplane_document(name: &str, file: &str, subnets: &[String]) -> Document {
    let mut comments = vec![
        format!("Talos machine-config patch for `{name}` CONTROL-PLANE nodes only ({file}):"),
        "`talosctl gen config --config-patch-control-plane`; Talos refuses cluster.etcd on workers.".into(),
        String::new(),
        "cluster.etcd.advertisedSubnets: the address etcd advertises to its peers".into(),
    ];
    explain_subnets(&mut comments, subnets);
    Document {
        comments,
        body: serde_json::to_value(ControlPlanePatch {
            cluster: Cluster {
                etcd: Etcd {
                    advertised_subnets: subnets.to_vec(),
                },
            },
        })
        .expect("patch serializes"),
    }
}

/// Tailscale's `ExtensionServiceConfig`, and the kernel-mode warning when it applies.
fn tailscale_document(
    ts: &TailscaleConfig,
    config: &NodeConfig,
    file: &str,
    overrides: &Overrides,
    key: AuthKey<'_>,
) -> (Document, Option<String>) {
    let routes = overrides.routes.as_ref().unwrap_or(&ts.routes);
    let mut environment = vec![format!(
        "{AUTH_KEY_ENV}={}",
        match key {
            AuthKey::Redacted => REDACTED,
            AuthKey::Value(value) => value,
        }
    )];
    let mut comments = vec![
        "Tailscale: ext-tailscale waits for this document; without it the node waits 70 minutes in"
            .into(),
        "boot and reboots. Each environment line becomes a variable of the tailscale container:"
            .into(),
    ];
    explain(
        &mut comments,
        AUTH_KEY_ENV,
        &format!("from ${AUTH_KEY_ENV} at render time, never from the repository"),
    );
    if !routes.is_empty() {
        environment.push(format!("TS_ROUTES={}", cidr::to_strings(routes).join(",")));
        let from = if overrides.routes.is_some() {
            "--routes"
        } else {
            "config.tailscale.routes"
        };
        explain(
            &mut comments,
            "TS_ROUTES",
            &format!("subnets this node advertises to the tailnet ({from})"),
        );
    }
    environment.push(format!(
        "TS_USERSPACE={}",
        ts.mode == TailscaleMode::Userspace
    ));
    explain(
        &mut comments,
        "TS_USERSPACE",
        &format!(
            "{} mode (config.tailscale.mode): {}",
            ts.mode.name(),
            match ts.mode {
                TailscaleMode::Kernel => "a tailscale0 interface and host netfilter rules",
                TailscaleMode::Userspace => "no interface; tailscaled forwards in user space",
            }
        ),
    );
    if !ts.extra_args.is_empty() {
        environment.push(format!("TS_EXTRA_ARGS={}", ts.extra_args.join(" ")));
        explain(
            &mut comments,
            "TS_EXTRA_ARGS",
            "extra `tailscale up` flags (config.tailscale.extra_args)",
        );
    }

    let (join, join_from) = match (overrides.join_cidr, config.join_cidr) {
        (Some(join), _) => (join, "--join-cidr".to_owned()),
        (None, Some(join)) => (join, format!("config.join_cidr in {file}")),
        (None, None) => (
            Ipv4Cidr::parse(COZYSTACK_JOIN_CIDR).expect("valid constant"),
            "CozyStack's kube-ovn default; declare config.join_cidr or pass --join-cidr if yours differs".to_owned(),
        ),
    };
    let mut warnings = None;
    if let Some(warning) = kernel_mode_conflict(ts.mode, &ts.extra_args, join, &join_from) {
        comments.push(String::new());
        comments.extend(
            wrap(&format!("WARNING: {warning}"), WIDTH)
                .into_iter()
                .map(|l| l.to_owned()),
        );
        warnings = Some(warning);
    }

    let doc = Document {
        comments,
        body: serde_json::to_value(ExtensionServiceConfig {
            api_version: "v1alpha1",
            kind: "ExtensionServiceConfig",
            name: "tailscale",
            environment,
        })
        .expect("document serializes"),
    };
    (doc, warnings)
}

/// The warning for tailscale in kernel mode on a cluster whose join network overlaps
/// 100.64.0.0/10, or `None` when there is no conflict.
pub fn kernel_mode_conflict(
    mode: TailscaleMode,
    extra_args: &[String],
    join: Ipv4Cidr,
    join_from: &str,
) -> Option<String> {
    // With netfilter off (or not hooked into the host chains) tailscale installs no drop rule.
    let netfilter_off = extra_args
        .iter()
        .any(|a| a == "--netfilter-mode=off" || a == "--netfilter-mode=nodivert");
    if mode != TailscaleMode::Kernel || netfilter_off || !cidr::CGNAT.overlaps(join) {
        return None;
    }
    Some(format!(
        "tailscale runs in kernel mode and the cluster join network {join} ({join_from}) lies in {cgnat}: \
         tailscale's netfilter rules drop packets from {cgnat} that do not arrive on tailscale0, so kube-ovn's \
         join traffic to this node is lost (node-to-pod traffic and health checks fail). Mitigations, any one: \
         (1) set config.tailscale.mode to \"userspace\" (no tailscale0, no host filter rules); \
         (2) install CozyStack with a join network outside {cgnat} (kube-ovn JOIN_CIDR, e.g. 172.31.0.0/16) and \
         declare it as config.join_cidr or pass --join-cidr; \
         (3) add \"--netfilter-mode=off\" to config.tailscale.extra_args and keep the node's packet filter yourself",
        cgnat = cidr::CGNAT
    ))
}

/// Joins documents with `---`, each preceded by its comment lines.
fn documents(docs: &[Document]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        for line in &doc.comments {
            if line.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str(&crate::yaml::to_string(&doc.body, 2));
    }
    out
}

/// Comment width, and the column explanations start at.
const WIDTH: usize = 96;
const LABEL: usize = 20;

/// Adds `  <label>  <why>` comment lines, the explanation wrapped under itself.
fn explain(comments: &mut Vec<String>, label: &str, why: &str) {
    let pad = " ".repeat(2 + LABEL + 1);
    let first = format!("  {label:<LABEL$} ");
    let width = WIDTH - first.len().max(pad.len());
    for (i, line) in wrap(why, width).into_iter().enumerate() {
        comments.push(if i == 0 {
            format!("{first}{line}")
        } else {
            format!("{pad}{line}")
        });
    }
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while rest.len() > width {
        let limit = (0..=width)
            .rev()
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(0);
        let cut = match rest[..limit].rfind(' ') {
            Some(space) if rest.as_bytes()[limit] != b' ' => space,
            _ => limit,
        };
        lines.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    lines.push(rest);
    lines
}

/// One printed next step: a command and what it is for.
pub struct Step {
    /// Program and arguments; `<cluster>`, `<endpoint>` and `<node>` are for the user to fill.
    pub argv: Vec<String>,
    pub note: &'static str,
}

/// The talosctl and kubectl commands that use the files in `dir`: one secrets bundle for every
/// role of the cluster, then each role's configs with its install image and patches.
///
/// `gen config` names the Talos version the image runs (`--talos-version`): a newer talosctl
/// otherwise lays the config out for its own release, and Talos 1.14's layout (install settings
/// in an `UnattendedInstallConfig` document) refuses the patches' `machine.install`
/// (docs/dev/conformance.md, "The forward harness").
pub fn next_steps(
    variant: &str,
    install_image: &str,
    talos: &TalosVersion,
    files: &[RenderedFile],
    dir: &str,
) -> Vec<Step> {
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let path = |name: &str| format!("@{dir}/{name}");
    let mut gen = words("talosctl gen config <cluster> https://<endpoint>:6443 --with-secrets secrets.yaml --talos-version");
    gen.push(talos.to_string());
    gen.push("--install-image".into());
    gen.push(install_image.to_owned());
    let mut patch_node = words("talosctl -n <node> patch mc");
    let mut patch_cp = patch_node.clone();
    for f in files {
        match f.role {
            FileRole::Patch => {
                gen.extend(["--config-patch".into(), path(&f.name)]);
                patch_node.extend(["--patch".into(), path(&f.name)]);
                patch_cp.extend(["--patch".into(), path(&f.name)]);
            }
            FileRole::ControlPlanePatch => {
                gen.extend(["--config-patch-control-plane".into(), path(&f.name)]);
                patch_cp.extend(["--patch".into(), path(&f.name)]);
            }
            FileRole::Kubernetes => {}
        }
    }
    gen.extend(["--output".into(), format!("{variant}/")]);
    let mut apply = words("talosctl apply-config --insecure -n <node> --file");
    apply.push(format!("{variant}/worker.yaml"));
    let mut steps = vec![
        Step {
            argv: words("talosctl gen secrets --output-file secrets.yaml"),
            note: "once per cluster: every role's configs use the same secrets",
        },
        Step {
            argv: gen,
            note: "this role's controlplane.yaml and worker.yaml",
        },
        Step {
            argv: apply,
            note: "a new worker; controlplane.yaml on a new control-plane node",
        },
    ];
    if patch_cp != patch_node {
        steps.push(Step {
            argv: patch_node,
            note: "a running worker",
        });
        steps.push(Step {
            argv: patch_cp,
            note: "a running control-plane node",
        });
    } else {
        steps.push(Step {
            argv: patch_node,
            note: "a running node",
        });
    }
    for f in files.iter().filter(|f| f.role == FileRole::Kubernetes) {
        let mut argv = words("kubectl apply -f");
        argv.push(format!("{dir}/{}", f.name));
        steps.push(Step {
            argv,
            note: "once per cluster",
        });
    }
    steps
}

impl Step {
    /// The command as a shell line (words quoted where the shell needs it, placeholders kept
    /// readable), then its note.
    pub fn line(&self) -> String {
        let mut words = Vec::new();
        for w in &self.argv {
            let bare: String = w
                .replace("<cluster>", "c")
                .replace("<endpoint>", "e")
                .replace("<node>", "n");
            if crate::shell::shell_line(&[&bare]) == bare {
                words.push(w.clone());
            } else {
                words.push(crate::shell::shell_line(&[w]));
            }
        }
        format!("{}   # {}", words.join(" "), self.note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("short", 80), ["short"]);
    }
}
