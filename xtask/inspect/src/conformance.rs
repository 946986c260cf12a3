//! Subcommand: `cargo xtask conformance`: Talos's own code as the judge. Runs the test-only Go module in `conformance/` (Talos's
//! `pkg/imager/profile`, the config bundle and patcher of `pkg/machinery`, image-factory's
//! `pkg/schematic`, all at the lock's Talos version) on what this project hands to Talos, and
//! turns its report into findings. docs/conformance.md describes it.
//!
//! The harness reports facts (errors, output paths, merged values); what is wrong is decided here,
//! so the rules sit beside the code that renders the artefacts.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use domain::machine_config::{Base, FileRole, Rendered, COZYSTACK_BASE_MODULES};
use domain::{ImageRef, Output};
use infra::cmd::{Cmd, Io};
use infra::harness::{build, build_command, find_go, judge, required_go, Go, DIR};
use infra::project::Project;

/// The alternate go.mod of the forward check (`--next`): the same harness on the newest Talos
/// line the module proxy serves.
pub const NEXT_MOD: &str = "go.next.mod";

#[derive(clap::Args)]
pub struct Args {
    /// Only these variants (repeatable); default: all.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub registry: infra::inputs::RegistryArg,
    /// Print the report and the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Forward check: judge with the Talos line of conformance/go.next.mod instead; prints what
    /// would break and exits 0 whatever it finds.
    #[arg(long)]
    pub next: bool,
    /// Judge a raw harness request (JSON, `-` for stdin; docs/conformance.md) and print the
    /// harness's report as it is, instead of judging the variants.
    #[arg(long, value_name = "FILE")]
    pub request: Option<Utf8PathBuf>,
}

/// A profile difference from the imager's own default that is intended, and why
/// (docs/conformance.md lists the same).
pub struct Intended {
    pub outputs: &'static [Output],
    pub path: &'static str,
    pub why: &'static str,
}

/// Why `build`'s profiles carry `ociPath` where the imager's defaults have none.
pub const OCI_PATH: &str = "build prefetches every image once into an OCI layout and hands it over as ociPath, which the imager reads instead of pulling imageRef (prefetch.rs; --no-prefetch keeps imageRef only)";

const DISKS: &[Output] = &[Output::Metal, Output::Nocloud, Output::Disk];

pub const INTENDED: &[Intended] = &[
    Intended {
        outputs: DISKS,
        path: "output.outFormat",
        why: "xz for every disk image, as upstream CozyStack ships metal-<arch>.raw.xz and smoke/matchbox read it (the imager's defaults are zstd)",
    },
    Intended {
        outputs: DISKS,
        path: "input.overlayInstaller",
        why: "only the installer carries it: the imager reads input.overlayInstaller only when it builds an installer; a disk image runs the overlay from overlay.image (pkg/imager out.go); its command line sets both for every output",
    },
    Intended {
        outputs: &[Output::Kernel],
        path: "output.outFormat",
        why: "raw: netboot serves the kernel as is (`imager metal --output-kind kernel` would keep metal's zstd)",
    },
    Intended {
        outputs: &[Output::Kernel],
        path: "output.imageOptions",
        why: "a kernel has no disk (the imager keeps metal's imageOptions but does not use them)",
    },
    Intended {
        outputs: &[Output::Initramfs],
        path: "output.outFormat",
        why: "raw: initramfs-metal-<arch>.xz is xz-compressed already; zstd on top would break netboot",
    },
    Intended {
        outputs: &[Output::Initramfs],
        path: "output.imageOptions",
        why: "an initramfs has no disk (the imager keeps metal's imageOptions but does not use them)",
    },
];

/// Why the base installer may carry a digest where the imager's default names the tag only.
pub const PINNED_BASE: &str = "the same image and tag, pinned by digest in the lock (docs/lock.md): the build cannot move under a re-pushed tag";

/// Why a difference is intended, or `None` when it is not.
pub fn intended_difference(output: Output, d: &Difference) -> Option<&'static str> {
    // ours is the default's image and tag with a digest added, as parsed references
    let pinned = match (&d.ours, &d.default) {
        (serde_json::Value::String(ours), serde_json::Value::String(default)) => {
            match (ImageRef::parse(ours), ImageRef::parse(default)) {
                (Ok(ours), Ok(default)) => {
                    default.digest.is_none()
                        && ours.digest.is_some()
                        && ours.repository == default.repository
                        && ours.tag == default.tag
                }
                _ => false,
            }
        }
        _ => false,
    };
    if d.path == "input.baseInstaller.imageRef" && pinned {
        return Some(PINNED_BASE);
    }
    intended(output, &d.path)
}

/// Why a difference at `path` is intended whatever its values, or `None`.
pub fn intended(output: Output, path: &str) -> Option<&'static str> {
    if path.ends_with(".ociPath") {
        return Some(OCI_PATH);
    }
    INTENDED
        .iter()
        .find(|i| {
            i.outputs.contains(&output)
                && (path == i.path || path.starts_with(&format!("{}.", i.path)))
        })
        .map(|i| i.why)
}

#[derive(Default, Serialize)]
pub struct Request {
    pub profiles: Vec<ProfileRequest>,
    pub configs: Vec<ConfigRequest>,
    pub schematics: Vec<SchematicRequest>,
    pub commands: Vec<CommandRequest>,
}

/// A talosctl command line, without the program name.
#[derive(Serialize)]
pub struct CommandRequest {
    pub name: String,
    pub argv: Vec<String>,
}

#[derive(Deserialize)]
pub struct CommandReport {
    pub name: String,
    pub command: String,
    pub errors: Vec<String>,
}

#[derive(Serialize)]
pub struct ProfileRequest {
    pub name: String,
    pub yaml: String,
    /// The imager's built-in profile for the output (`profile.Default`), `--output-kind` and
    /// `--platform` (empty: not given).
    pub default: String,
    pub output_kind: String,
    pub platform: String,
}

#[derive(Serialize)]
pub struct ConfigRequest {
    pub name: String,
    pub machine_type: String,
    pub patches: Vec<String>,
    pub controlplane_patches: Vec<String>,
    /// `talosctl gen config --talos-version` (empty: the harness's own Talos).
    pub talos_version: String,
}

#[derive(Serialize)]
pub struct SchematicRequest {
    pub name: String,
    pub yaml: String,
    pub id: String,
}

#[derive(Deserialize)]
pub struct Report {
    pub talos_version: String,
    #[serde(default)]
    pub profiles: Vec<ProfileReport>,
    #[serde(default)]
    pub configs: Vec<ConfigReport>,
    #[serde(default)]
    pub schematics: Vec<SchematicReport>,
    #[serde(default)]
    pub commands: Vec<CommandReport>,
}

#[derive(Deserialize)]
pub struct ProfileReport {
    pub name: String,
    pub errors: Vec<String>,
    pub output_path: String,
    pub written: String,
    pub differences: Vec<Difference>,
}

#[derive(Clone, Deserialize)]
pub struct Difference {
    pub path: String,
    pub ours: serde_json::Value,
    pub default: serde_json::Value,
}

#[derive(Deserialize)]
pub struct ConfigReport {
    pub name: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub modules: Vec<Module>,
    pub valid_subnets: Vec<String>,
    pub etcd_advertised_subnets: Vec<String>,
    pub has_cluster_etcd: bool,
    pub install_image: String,
    /// The field `install_image` was read from: [`FROM_MACHINE_INSTALL`], [`FROM_UNATTENDED`], or
    /// empty when the config has neither.
    pub install_image_from: String,
}

/// The v1alpha1 document's field the role's patch sets; Talos's install reads it when no
/// `UnattendedInstallConfig` document is there.
const FROM_MACHINE_INSTALL: &str = "machine.install.image";
/// Talos 1.14's install document: when present it is what Talos installs, whatever
/// `.machine.install` says (docs/dev/conformance.md, "The forward harness").
const FROM_UNATTENDED: &str = "UnattendedInstallConfig installer.image";

#[derive(Debug, Deserialize)]
pub struct Module {
    pub name: String,
    pub parameters: Vec<String>,
}

#[derive(Deserialize)]
pub struct SchematicReport {
    pub name: String,
    pub errors: Vec<String>,
    pub id: String,
    pub ours: String,
}

/// The imager command line an output corresponds to: its built-in profile, `--output-kind` and
/// `--platform` (kernel and initramfs have no profile of their own: `imager metal --output-kind
/// kernel`; an installer for a cloud is `imager installer --platform aws`; a platform's disk is
/// that platform's profile).
pub fn imager_default(
    output: Output,
    platform: domain::target::Platform,
) -> (&'static str, &'static str, &'static str) {
    let on = |p: domain::target::Platform| {
        if p == domain::target::Platform::Metal {
            ""
        } else {
            p.name()
        }
    };
    match output {
        Output::Installer => ("installer", "", on(platform)),
        Output::Kernel => ("metal", "kernel", ""),
        Output::Initramfs => ("metal", "initramfs", ""),
        Output::Metal => ("metal", "", ""),
        Output::Iso => ("iso", "", ""),
        Output::Nocloud => ("nocloud", "", ""),
        Output::Disk => (platform.name(), "", ""),
    }
}

/// Every profile of the plan twice: as planned (`<variant>/<output>`), and as `build` hands it
/// to the imager with prefetched `ociPath` inputs (`<variant>/<output>+ociPath`, prefetch.rs).
/// Each with the planned profile it is for.
pub fn profile_requests(plan: &domain::Plan) -> Vec<(ProfileRequest, &domain::PlannedProfile)> {
    let mut requests = Vec::new();
    for v in &plan.variants {
        for p in &v.profiles {
            let (default, kind, platform) = imager_default(p.kind, v.target.platform);
            let name = format!("{}/{}", v.name, p.step(v.target.multi_arch()));
            let (prefetched, _) = infra::prefetch::with_oci_paths(
                p.profile.clone(),
                infra::prefetch::imager_arch(p.arch, false),
            );
            for (name, profile) in [
                (name.clone(), &p.profile),
                (format!("{name}+ociPath"), &prefetched),
            ] {
                requests.push((
                    ProfileRequest {
                        name,
                        yaml: profile.to_yaml(),
                        default: default.into(),
                        output_kind: kind.into(),
                        platform: platform.into(),
                    },
                    p,
                ));
            }
        }
    }
    requests
}

/// The patches `base` puts onto `talosctl gen config`'s output before a role's own: none for
/// talosctl's; for a CozyStack-style base, the kernel modules CozyStack loads on every node and
/// a node IP selection of the user's own ([`base_subnets`]).
pub fn base_patches(base: Base) -> Vec<String> {
    let valid_subnets = base_subnets(base);
    match base {
        Base::Talosctl => return Vec::new(),
        Base::Cozystack => {}
    }
    let mut text = String::from("machine:\n  kernel:\n    modules:\n");
    for (name, parameters) in COZYSTACK_BASE_MODULES {
        text.push_str(&format!("      - name: {name}\n"));
        if !parameters.is_empty() {
            text.push_str("        parameters:\n");
            for p in *parameters {
                text.push_str(&format!("          - {p}\n"));
            }
        }
    }
    text.push_str("  kubelet:\n    nodeIP:\n      validSubnets:\n");
    for s in valid_subnets {
        text.push_str(&format!("        - \"{s}\"\n"));
    }
    vec![text]
}

/// The two `talosctl gen config` runs (worker, control plane) of a role's rendered files onto a
/// base: `base` patches first, then the role's.
pub fn config_requests(name: &str, base: &[String], rendered: &Rendered) -> Vec<ConfigRequest> {
    let mut patches = base.to_vec();
    let mut controlplane_patches = Vec::new();
    for f in &rendered.files {
        match f.role {
            FileRole::Patch => patches.push(f.text.clone()),
            FileRole::ControlPlanePatch => controlplane_patches.push(f.text.clone()),
            FileRole::Kubernetes => {}
        }
    }
    let request = |machine_type: &str| ConfigRequest {
        name: format!("{name}/{machine_type}"),
        machine_type: machine_type.into(),
        patches: patches.clone(),
        controlplane_patches: controlplane_patches.clone(),
        talos_version: String::new(),
    };
    vec![request("worker"), request("controlplane")]
}

/// What is wrong with one merged config, whatever the base: Talos's own errors, `cluster.etcd`
/// on a worker, a module loaded twice, an install image other than the role's.
pub fn config_findings(report: &ConfigReport, install_image: &str) -> Vec<String> {
    let mut findings = Vec::new();
    for e in &report.errors {
        findings.push(format!(
            "{}: Talos rejects it: {}",
            report.name,
            e.trim_end()
        ));
    }
    if report.name.ends_with("/worker") && report.has_cluster_etcd {
        findings.push(format!(
            "{}: the worker config carries cluster.etcd (control-plane-only settings belong in the control-plane patch)",
            report.name
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in &report.modules {
        if !seen.insert(&m.name) {
            findings.push(format!(
                "{}: kernel module `{}` is listed twice in the merged config",
                report.name, m.name
            ));
        }
    }
    if let Some(f) = install_image_finding(report, install_image) {
        findings.push(f);
    }
    findings
}

/// The image Talos would install is not the role's. Names the field it was read from: each
/// source has its own fix.
fn install_image_finding(report: &ConfigReport, install_image: &str) -> Option<String> {
    let (name, image, from) = (
        &report.name,
        &report.install_image,
        &report.install_image_from,
    );
    if from.is_empty() {
        // with Talos's errors there may be no config at all; they say what is wrong
        if !report.errors.is_empty() {
            return None;
        }
        return Some(format!("{name}: no install image: the merged config has neither machine.install nor an UnattendedInstallConfig document, so Talos would not install the role's image {install_image:?} (its install task falls back to the default metal installer, with no disk); fix: the role's patch must set machine.install.image"));
    }
    if image == install_image {
        return None;
    }
    let (empty, note, fix) = match from.as_str() {
        FROM_UNATTENDED => (
            " (empty: the Image Factory installer of the boot entry's schematic)",
            ": Talos installs that document's image, not machine.install.image (the role's patch sets that one)",
            "`talosctl gen config --talos-version` of the image's release keeps machine.install, which the role's patch sets (the gen config line that xtask's config subcommand prints has it); `--install-image` alone would leave machine.install beside the document, which Talos refuses".to_owned(),
        ),
        FROM_MACHINE_INSTALL => (
            " (empty: the default metal installer)",
            "",
            "apply the role's patch after any patch that sets another image there".to_owned(),
        ),
        // a source this code does not know yet (a newer harness)
        _ => ("", "", format!("set the role's installer in {from}")),
    };
    let empty = if image.is_empty() { empty } else { "" };
    Some(format!(
        "{name}: {from} is {image:?}{empty}, not the role's {install_image:?}{note}; fix: {fix}"
    ))
}

/// The printed `talosctl gen ...` steps as talosctl command lines, placeholders filled with
/// sample values. talosctl's node commands (`apply-config`, `patch`) cannot be judged: their
/// package needs a module the proxy does not serve (docs/conformance.md).
pub fn command_requests(name: &str, steps: &[domain::machine_config::Step]) -> Vec<CommandRequest> {
    let mut requests = Vec::new();
    for s in steps {
        if !(s.argv.len() > 1 && s.argv[0] == "talosctl" && s.argv[1] == "gen") {
            continue;
        }
        let mut argv = Vec::new();
        for w in &s.argv[1..] {
            argv.push(
                w.replace("<cluster>", "cozystack")
                    .replace("<endpoint>", "192.0.2.10")
                    .replace("<node>", "192.0.2.11"),
            );
        }
        requests.push(CommandRequest {
            name: format!("{name}: {}", s.line()),
            argv,
        });
    }
    requests
}

/// talosctl's own flag parsing refused a printed command.
pub fn command_findings(report: &Report) -> Vec<String> {
    let mut findings = Vec::new();
    for c in &report.commands {
        for e in &c.errors {
            findings.push(format!(
                "{} ({}): talosctl refuses it: {e}",
                c.name, c.command
            ));
        }
    }
    findings
}

/// Builds the harness when Go is there; `None` (with a note on stderr) when it is not.
pub fn harness(project: &Project) -> Result<Option<Utf8PathBuf>> {
    if !project.root.join(DIR).join("go.mod").exists() {
        // a copy of the data without the harness: said, never silently unjudged
        eprintln!("note: not judged by Talos's own code: there is no {DIR}/go.mod here");
        return Ok(None);
    }
    match find_go(project)? {
        Some(go) => {
            eprintln!("judging with Talos's own code ({DIR}/; its first build takes minutes, --no-judge skips it)");
            build(project, &go).map(Some)
        }
        None => {
            eprintln!(
                "note: not judged by Talos's own code: no `go` found ({DIR}/ needs Go {})",
                required_go(project)?
            );
            Ok(None)
        }
    }
}

/// `cargo xtask schematic`'s check: image-factory's own `ID()` for each schematic equals ours.
pub fn judge_schematics(project: &Project, reports: &[domain::schematic::Report]) -> Result<()> {
    let Some(binary) = harness(project)? else {
        return Ok(());
    };
    let mut request = Request::default();
    for r in reports {
        request.schematics.push(SchematicRequest {
            name: r.variant.clone(),
            yaml: r.schematic.clone(),
            id: r.id.clone(),
        });
    }
    let report: Report = judge(&binary, &request)?;
    let mut wrong = Vec::new();
    for s in &report.schematics {
        if !s.errors.is_empty() || s.id != s.ours {
            wrong.push(format!(
                "{}: image-factory says {} {:?}, we say {}",
                s.name, s.id, s.errors, s.ours
            ));
        }
    }
    if !wrong.is_empty() {
        bail!(
            "image-factory's own code computes other schematic IDs:\n  {}",
            wrong.join("\n  ")
        );
    }
    eprintln!(
        "image-factory's own code computes the same ID for {} schematic{}",
        reports.len(),
        domain::diag::plural(reports.len())
    );
    Ok(())
}

/// `cargo xtask config`'s check: the role's files through `talosctl gen config` for a worker and
/// a control plane onto the chosen base, validated for metal, and merged as `conformance`
/// requires ([`merge_findings`], on the same base); fails with Talos's messages.
pub fn judge_role(project: &Project, role: &domain::machine_config::Judged<'_>) -> Result<()> {
    let Some(binary) = harness(project)? else {
        return Ok(());
    };
    let (talos, variant, install_image) = (role.talos, &role.variant.name, role.install_image);
    let base_patches = base_patches(role.base);
    let request = Request {
        configs: config_requests(variant, &base_patches, role.rendered),
        commands: command_requests(variant, role.steps),
        ..Request::default()
    };
    let report: Report = judge(&binary, &request)?;
    other_release(&report.talos_version, talos)?;
    let mut findings = Vec::new();
    let node_subnets = domain::cidr::to_strings(role.node_subnets);
    for c in &report.configs {
        findings.extend(config_findings(c, install_image));
        findings.extend(merge_findings(c, role.variant, &node_subnets, role.base));
    }
    findings.extend(command_findings(&report));
    if !findings.is_empty() {
        bail!(
            "Talos {} does not accept the `{variant}` role's patches:\n  {}",
            report.talos_version,
            findings.join("\n  ")
        );
    }
    eprintln!(
        "Talos {} accepts the `{variant}` patches on a worker and a control plane (metal){}",
        report.talos_version,
        if report.commands.is_empty() {
            String::new()
        } else {
            format!(
                ", and talosctl parses the {} printed `talosctl gen` commands",
                report.commands.len()
            )
        }
    );
    Ok(())
}

/// The base a CozyStack-style case starts from: its own node IP selection.
pub const COZYSTACK_SUBNETS: &[&str] = &["192.168.100.0/24"];

/// The node IP selection a base has before a role's patch: none on talosctl's, the user's own
/// ([`COZYSTACK_SUBNETS`]) on CozyStack's. One definition for `conformance` and `config`.
pub fn base_subnets(base: Base) -> &'static [&'static str] {
    match base {
        Base::Talosctl => &[],
        Base::Cozystack => COZYSTACK_SUBNETS,
    }
}

/// What one config case must come out as.
struct ConfigCase {
    variant: domain::variant::Variant,
    base: Base,
    install_image: String,
}

/// Everything judged in one run, and what was found.
#[derive(Serialize)]
pub struct Verdict {
    pub talos_version: String,
    pub profiles: usize,
    pub configs: usize,
    pub schematics: usize,
    /// Printed `talosctl gen` commands parsed by talosctl's own flag definitions.
    pub commands: usize,
    /// Profile differences from the imager's defaults, with why each is intended.
    pub differences: Vec<(String, String, String)>,
    /// Talos's validation warnings (not failures).
    pub warnings: Vec<String>,
    pub findings: Vec<String>,
}

/// Judges every profile, every role's patches on both bases and machine types, and every
/// schematic ID of the plan with the harness at `binary`. `version` rewrites the Talos version
/// in the profiles (forward check).
pub fn judge_plan(
    project: &Project,
    plan: &domain::Plan,
    binary: &Utf8Path,
    version: Option<&str>,
) -> Result<Verdict> {
    let mut request = Request::default();
    // What each profile asked for must come out as: its output and file name.
    let mut expected: Vec<(Output, &str)> = Vec::new();
    for (mut profile, planned) in profile_requests(plan) {
        if let Some(next) = version {
            profile.yaml = profile.yaml.replace(&plan.talos_version.to_string(), next);
        }
        request.profiles.push(profile);
        expected.push((planned.kind, planned.artifact.as_str()));
    }
    let mut cases = Vec::new();
    for vp in &plan.variants {
        // an example image only where no registry names one; a broken build record fails here
        // as it fails `config`
        let image = match infra::inputs::install_image(project, &single(plan, vp), None) {
            Ok(image) => image.reference,
            Err(err) if err.is::<infra::inputs::NoRegistry>() => {
                format!("ghcr.io/example/{}:{}", vp.variant.repository, vp.tag)
            }
            Err(err) => return Err(err),
        };
        for base in [Base::Talosctl, Base::Cozystack] {
            let overrides = domain::machine_config::Overrides {
                base,
                ..Default::default()
            };
            let file = domain::layout::variant_file(&vp.name);
            let rendered = domain::machine_config::render(
                &vp.variant,
                &file,
                &image,
                &overrides,
                domain::machine_config::AuthKey::Redacted,
            )?;
            let base_patches = base_patches(base);
            let name = format!("{}/{}", vp.name, base.name());
            if base == Base::Talosctl {
                let steps = domain::machine_config::next_steps(
                    &vp.name,
                    &image,
                    &plan.talos_version,
                    &rendered.files,
                    "/tmp/cluster",
                );
                request.commands.extend(command_requests(&vp.name, &steps));
            }
            let mut configs = config_requests(&name, &base_patches, &rendered);
            if version.is_some() {
                // forward check: also onto configs generated for the lock's release
                // (`talosctl gen config --talos-version`), as a cluster upgraded from it keeps them
                let contract = plan.talos_version.to_string();
                let name = format!("{name}@{contract}");
                for mut c in config_requests(&name, &base_patches, &rendered) {
                    c.talos_version = contract.clone();
                    configs.push(c);
                }
            }
            for c in configs {
                request.configs.push(c);
                cases.push(ConfigCase {
                    variant: vp.variant.clone(),
                    base,
                    install_image: image.clone(),
                });
            }
        }
        let schematic =
            domain::schematic::Schematic::for_variant(&vp.variant, vp.overlay_image.as_ref());
        request.schematics.push(SchematicRequest {
            name: vp.name.clone(),
            yaml: schematic.to_yaml(),
            id: schematic.id(),
        });
    }
    let report: Report = judge(binary, &request)?;

    let mut findings = Vec::new();
    let mut differences = Vec::new();
    if report.profiles.len() != expected.len()
        || report.configs.len() != cases.len()
        || report.schematics.len() != request.schematics.len()
    {
        bail!(
            "the harness answered {} profiles, {} configs, {} schematics for {}, {}, {} asked",
            report.profiles.len(),
            report.configs.len(),
            report.schematics.len(),
            expected.len(),
            cases.len(),
            request.schematics.len()
        );
    }
    for (p, (output, artifact)) in report.profiles.iter().zip(&expected) {
        findings.extend(profile_findings(p, *output, artifact));
        for d in &p.differences {
            if let Some(why) = intended_difference(*output, d) {
                differences.push((p.name.clone(), d.path.clone(), why.to_owned()));
            }
        }
    }
    let mut warnings = Vec::new();
    for (c, case) in report.configs.iter().zip(&cases) {
        for w in &c.warnings {
            warnings.push(format!("{}: {w}", c.name));
        }
        findings.extend(config_findings(c, &case.install_image));
        let node_subnets = domain::cidr::to_strings(&case.variant.config.node_subnets);
        findings.extend(merge_findings(c, &case.variant, &node_subnets, case.base));
    }
    findings.extend(command_findings(&report));
    for s in &report.schematics {
        for e in &s.errors {
            findings.push(format!("schematic {}: {e}", s.name));
        }
        if s.errors.is_empty() && s.id != s.ours {
            findings.push(format!(
                "schematic {}: image-factory computes ID {}, we compute {}",
                s.name, s.id, s.ours
            ));
        }
    }
    Ok(Verdict {
        talos_version: report.talos_version,
        profiles: report.profiles.len(),
        configs: report.configs.len(),
        schematics: report.schematics.len(),
        commands: report.commands.len(),
        differences,
        warnings,
        findings,
    })
}

/// The plan narrowed to one variant (what `config` sees).
fn single(plan: &domain::Plan, vp: &domain::VariantPlan) -> domain::Plan {
    domain::Plan {
        variants: vec![vp.clone()],
        ..plan.clone()
    }
}

/// Talos's errors, the file name `build` expects, differences nobody intended.
pub fn profile_findings(p: &ProfileReport, output: Output, artifact: &str) -> Vec<String> {
    let mut findings = Vec::new();
    for e in &p.errors {
        findings.push(format!("profile {}: {}", p.name, e.trim_end()));
    }
    if p.errors.is_empty() && p.written != artifact {
        findings.push(format!(
            "profile {}: the imager writes {} (OutputPath {}), build expects {artifact}",
            p.name, p.written, p.output_path
        ));
    }
    for d in &p.differences {
        if intended_difference(output, d).is_none() {
            findings.push(format!(
                "profile {}: {} is {} where the imager's default has {}; intended? add it to conformance::INTENDED and docs/conformance.md, or follow the default",
                p.name, d.path, d.ours, d.default
            ));
        }
    }
    findings
}

/// The merged result is what the role needs: each implied module once with its parameters, the
/// base's modules and subnet selection kept, node IPs off 100.64.0.0/10. Talos's patcher appends
/// list entries, so after the base's own `validSubnets` come exactly the networks the role
/// declares (`node_subnets`: `config.node_subnets`, or `--node-subnet`), in order, and
/// exclusions; any other inclusion would widen the base's selection.
pub fn merge_findings(
    c: &ConfigReport,
    variant: &domain::variant::Variant,
    node_subnets: &[String],
    base: Base,
) -> Vec<String> {
    let mut findings = Vec::new();
    let count = |name: &str| c.modules.iter().filter(|m| m.name == name).count();
    for ext in variant.all_extensions() {
        for m in domain::machine_config::implied_modules(ext) {
            let found: Vec<&Module> = c.modules.iter().filter(|x| x.name == m.name).collect();
            match found.as_slice() {
                [one] if one.parameters == m.parameters => {}
                [] => findings.push(format!(
                    "{}: kernel module `{}` ({ext}) is missing from the merged config",
                    c.name, m.name
                )),
                _ => findings.push(format!(
                    "{}: kernel module `{}` is {:?} in the merged config, want once with {:?}",
                    c.name, m.name, found, m.parameters
                )),
            }
        }
    }
    let exclude = format!("!{}", domain::cidr::CGNAT);
    if base == Base::Cozystack {
        for (name, _) in COZYSTACK_BASE_MODULES {
            if count(name) != 1 {
                findings.push(format!(
                    "{}: the base's kernel module `{name}` appears {} times in the merged config",
                    c.name,
                    count(name)
                ));
            }
        }
    }
    let kept_base = base_subnets(base);
    let kept = c.valid_subnets.len() >= kept_base.len()
        && c.valid_subnets[..kept_base.len()] == *kept_base;
    let added = &c.valid_subnets[kept_base.len().min(c.valid_subnets.len())..];
    let included: Vec<&String> = added.iter().filter(|s| !s.starts_with('!')).collect();
    if !kept || included.into_iter().ne(node_subnets) {
        findings.push(format!("{}: machine.kubelet.nodeIP.validSubnets is {:?} after the merge: the base's selection {:?} must stay, and only the role's node_subnets {:?} and exclusions be added", c.name, c.valid_subnets, kept_base, node_subnets));
    }
    let selects = variant.all_extensions().any(|e| e == "tailscale") || !node_subnets.is_empty();
    if selects && !c.valid_subnets.contains(&exclude) {
        findings.push(format!(
            "{}: machine.kubelet.nodeIP.validSubnets {:?} does not exclude {}",
            c.name,
            c.valid_subnets,
            domain::cidr::CGNAT
        ));
    }
    if selects && c.name.ends_with("/controlplane") && !c.etcd_advertised_subnets.contains(&exclude)
    {
        findings.push(format!(
            "{}: cluster.etcd.advertisedSubnets {:?} does not exclude {}",
            c.name,
            c.etcd_advertised_subnets,
            domain::cidr::CGNAT
        ));
    }
    findings
}

/// The harness for `--next` (go.next.mod), or the pinned one.
pub fn build_with(project: &Project, go: &Go, next: bool) -> Result<Utf8PathBuf> {
    if !next {
        return build(project, go);
    }
    let (build, out) = build_command(project, go, Some(NEXT_MOD));
    build
        .run()
        .with_context(|| format!("building {DIR}/ with {NEXT_MOD}"))?;
    Ok(out)
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let Some(go) = find_go(project)? else {
        bail!("no `go` found: {DIR}/ needs Go {} to judge with Talos's own code\n    fix: install Go (https://go.dev/doc/install), or run `cargo xtask test`, which says how", required_go(project)?);
    };
    let binary = match build_with(project, &go, args.next) {
        Ok(binary) => binary,
        // A report, never a failure: the next line may not build yet, or not be served.
        Err(err) if args.next => {
            eprintln!("warning: forward check not run: {err:#}");
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    if let Some(path) = &args.request {
        let request = if path == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the request from stdin")?
        } else {
            std::fs::read_to_string(path).map_err(|err| {
                domain::diag::Usage(format!("--request {path}: {err}\n    fix: name a request file (JSON, docs/dev/conformance.md), or `-` for stdin"))
            })?
        };
        let report = Cmd::new(&binary)
            .stdin_bytes(request)
            .stderr(Io::Inherit)
            .read()
            .with_context(|| format!("running {binary} on {path}"))?;
        println!("{report}");
        return Ok(());
    }
    let plan = infra::inputs::load_plan(project, &args.variants, args.registry.resolve()?)?;
    let next_version = if args.next {
        let text = std::fs::read_to_string(project.root.join(DIR).join(NEXT_MOD))?;
        Some(
            talos_requirement(&text)
                .context("go.next.mod names no github.com/siderolabs/talos version")?,
        )
    } else {
        None
    };
    let verdict = judge_plan(project, &plan, &binary, next_version.as_deref())?;
    if !args.next {
        other_release(&verdict.talos_version, &plan.talos_version)?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verdict).expect("verdicts serialize")
        );
    } else {
        println!(
            "Talos {} judged {} profiles, {} machine configs (patch x machine type x base), {} schematic IDs and {} printed talosctl commands",
            verdict.talos_version, verdict.profiles, verdict.configs, verdict.schematics, verdict.commands
        );
        for (name, path, why) in &verdict.differences {
            println!("  intended: {name}: {path}: {why}");
        }
        for w in &verdict.warnings {
            println!("  Talos warns: {w}");
        }
        for f in &verdict.findings {
            println!("  finding: {f}");
        }
    }
    if args.next {
        if !verdict.findings.is_empty() {
            eprintln!("warning: forward check: Talos {} would not accept {} of our artefacts as they are (report only)", verdict.talos_version, verdict.findings.len());
        }
        return Ok(());
    }
    if !verdict.findings.is_empty() {
        bail!(
            "Talos {}'s own code does not accept {} of our artefacts (listed above)",
            verdict.talos_version,
            verdict.findings.len()
        );
    }
    Ok(())
}

/// Fails when the harness judged at another Talos release than the lock's: it is built at the
/// release conformance/go.mod requires, and a verdict at another release says nothing about the
/// images (docs/conformance.md: judged at the exact version they are built from). The fix is the
/// bump docs/dev/conformance.md describes.
pub fn other_release(judged: &str, lock: &domain::TalosVersion) -> Result<()> {
    if *judged == *lock {
        return Ok(());
    }
    bail!(
        "judged by Talos {judged}, but the lock is for {lock}: {DIR}/go.mod requires another release, and a verdict at {judged} says nothing about images built from {lock}\n    fix: (cd {DIR} && go get github.com/siderolabs/talos@{lock} github.com/siderolabs/talos/pkg/machinery@{lock} && go mod tidy), with an image-factory whose go.mod requires Talos {lock} or older (docs/dev/conformance.md, \"Versions\")"
    )
}

/// The `github.com/siderolabs/talos` version a go.mod requires.
pub fn talos_requirement(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("github.com/siderolabs/talos"))
            .then(|| words.next().map(str::to_owned))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::harness::{go_line, version_at_least};

    #[test]
    fn go_versions_compare_numerically() {
        assert!(version_at_least("go1.26.8", "1.26.5"));
        assert!(version_at_least("go1.26.5", "1.26.5"));
        assert!(!version_at_least("go1.26.4", "1.26.5"));
        assert!(!version_at_least("go1.9", "1.26"));
        assert!(version_at_least("go1.27rc1", "1.26.5"));
        assert_eq!(
            go_line("module x\n\ngo 1.26.5\n").as_deref(),
            Some("1.26.5")
        );
    }
    fn repo_file(path: &str) -> String {
        let root = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The harness judges with the Talos release the images are built from, or it judges nothing.
    #[test]
    fn harness_talos_version_is_the_locks() {
        let lock: serde_json::Value =
            serde_json::from_str(&repo_file("variants/extensions.lock")).unwrap();
        let talos = lock["talos_version"].as_str().unwrap();
        let go_mod = repo_file("conformance/go.mod");
        let fix = format!("fix: (cd {DIR} && go get github.com/siderolabs/talos@{talos} github.com/siderolabs/talos/pkg/machinery@{talos} && go mod tidy), with an image-factory version whose go.mod requires Talos {talos} or older (docs/conformance.md)");
        for module in [
            "github.com/siderolabs/talos",
            "github.com/siderolabs/talos/pkg/machinery",
        ] {
            let required = go_mod.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(module)).then(|| w.next()).flatten()
            });
            assert_eq!(
                required,
                Some(talos),
                "{DIR}/go.mod requires {module} {required:?}, the lock's Talos is {talos}\n    {fix}"
            );
        }
        assert!(
            !go_mod.contains("\nreplace") && !go_mod.contains("\ntoolchain"),
            "{DIR}/go.mod: no replace or toolchain directive may move the judged version"
        );
        let next_mod = repo_file("conformance/go.next.mod");
        // go.next.mod may replace a dependency the proxy refuses, never the judges themselves
        for line in next_mod.lines().map(str::trim) {
            let replaced = line.strip_prefix("replace ").unwrap_or(line);
            if let Some((from, _)) = replaced.split_once("=>") {
                assert!(
                    !from.contains("github.com/siderolabs/"),
                    "{DIR}/{NEXT_MOD}: `{line}` would move the judged Talos or image-factory"
                );
            }
        }
        let next = talos_requirement(&next_mod).unwrap();
        let numeric = |v: &str| {
            v.trim_start_matches('v')
                .replace("-alpha.", ".")
                .replace("-beta.", ".")
                .replace("-rc.", ".")
        };
        let (next_minor, lock_minor) = (numeric(&next), numeric(talos));
        assert!(
            version_at_least(&next_minor, &lock_minor) && next_minor != lock_minor,
            "{DIR}/{NEXT_MOD} ({next}) must be newer than the lock's {talos}"
        );
    }

    fn config_report(name: &str, modules: &[(&str, &[&str])], subnets: &[&str]) -> ConfigReport {
        ConfigReport {
            name: name.into(),
            errors: vec![],
            warnings: vec![],
            modules: modules
                .iter()
                .map(|(n, p)| Module {
                    name: (*n).into(),
                    parameters: p.iter().map(|s| (*s).into()).collect(),
                })
                .collect(),
            valid_subnets: subnets.iter().map(|s| (*s).into()).collect(),
            etcd_advertised_subnets: vec![],
            has_cluster_etcd: false,
            install_image: "img".into(),
            install_image_from: FROM_MACHINE_INSTALL.into(),
        }
    }

    fn variant(extensions: &str) -> domain::variant::Variant {
        domain::variant::parse(
            "variants/v.json",
            &format!(r#"{{"name": "v", "description": "d", "arch": "arm64", "extensions": {extensions}, "repository": "v/talos", "config": {{"tailscale": {{"mode": "userspace"}}}}}}"#),
        )
        .unwrap_or_else(|f| panic!("{f:#?}"))
    }

    #[test]
    fn a_worker_with_cluster_etcd_or_a_rejected_patch_is_a_finding() {
        let mut c = config_report("v/talosctl/worker", &[], &[]);
        c.has_cluster_etcd = true;
        c.errors.push(
            "validating for metal: etcd config is only allowed on control plane machines\n".into(),
        );
        let f = config_findings(&c, "img");
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].ends_with("Talos rejects it: validating for metal: etcd config is only allowed on control plane machines"), "{f:?}");
        assert!(f[1].contains("carries cluster.etcd"), "{f:?}");
        assert!(config_findings(&c, "other")[2].contains("not the role's \"other\""));
    }

    /// Talos 1.14 installs an `UnattendedInstallConfig` document's image whatever
    /// `.machine.install` says: the finding names the field the image was read from, and the fix
    /// that reaches it.
    #[test]
    fn a_foreign_install_image_names_the_field_talos_reads_and_its_fix() {
        let role = "ghcr.io/acme/talos-cozystack-spin-only/talos:v0.1.0";
        // the findings for a config whose install image was read from `from`
        let findings = |from: &str, image: &str| {
            let mut c = config_report("compute/talosctl/worker", &[], &[]);
            c.install_image_from = from.into();
            c.install_image = image.into();
            config_findings(&c, role)
        };
        for from in [FROM_MACHINE_INSTALL, FROM_UNATTENDED] {
            assert_eq!(findings(from, role), Vec::<String>::new(), "{from}");
        }

        assert_eq!(
            findings(FROM_MACHINE_INSTALL, "ghcr.io/siderolabs/installer:v0.2.0"),
            [format!("compute/talosctl/worker: machine.install.image is \"ghcr.io/siderolabs/installer:v0.2.0\", not the role's \"{role}\"; fix: apply the role's patch after any patch that sets another image there")]
        );
        let f = findings(FROM_MACHINE_INSTALL, "");
        assert!(f[0].starts_with("compute/talosctl/worker: machine.install.image is \"\" (empty: the default metal installer), not the role's"), "{f:?}");

        assert_eq!(
            findings(FROM_UNATTENDED, "ghcr.io/siderolabs/installer:v0.3.0"),
            [format!("compute/talosctl/worker: UnattendedInstallConfig installer.image is \"ghcr.io/siderolabs/installer:v0.3.0\", not the role's \"{role}\": Talos installs that document's image, not machine.install.image (the role's patch sets that one); fix: `talosctl gen config --talos-version` of the image's release keeps machine.install, which the role's patch sets (the gen config line that xtask's config subcommand prints has it); `--install-image` alone would leave machine.install beside the document, which Talos refuses")]
        );
        let f = findings(FROM_UNATTENDED, "");
        assert!(f[0].starts_with("compute/talosctl/worker: UnattendedInstallConfig installer.image is \"\" (empty: the Image Factory installer of the boot entry's schematic), not the role's"), "{f:?}");

        assert_eq!(
            findings("", ""),
            [format!("compute/talosctl/worker: no install image: the merged config has neither machine.install nor an UnattendedInstallConfig document, so Talos would not install the role's image \"{role}\" (its install task falls back to the default metal installer, with no disk); fix: the role's patch must set machine.install.image")]
        );
        let mut c = config_report("compute/talosctl/worker", &[], &[]);
        c.install_image_from = String::new();
        c.errors
            .push("generating the config with the patches: bad patch".into());
        assert_eq!(config_findings(&c, role).len(), 1, "Talos's error only");
    }

    #[test]
    fn a_merge_that_duplicates_a_module_or_widens_the_subnets_is_a_finding() {
        let v = variant(r#"["drbd", "zfs", "tailscale"]"#);
        let drbd: &[&str] = &["usermode_helper=disabled"];
        let mut base: Vec<(&str, &[&str])> = COZYSTACK_BASE_MODULES.to_vec();
        base.push(("drbd_transport_tcp", &[]));
        let good = config_report(
            "v/cozystack/worker",
            &base,
            &["192.168.100.0/24", "!100.64.0.0/10", "!::/0"],
        );
        assert_eq!(
            merge_findings(&good, &v, &[], Base::Cozystack),
            Vec::<String>::new()
        );
        // the role's own networks, declared: appended after the base's, then the exclusion
        let declared = ["192.168.1.0/24".to_owned()];
        let with_subnets = config_report(
            "v/cozystack/worker",
            &base,
            &["192.168.100.0/24", "192.168.1.0/24", "!100.64.0.0/10"],
        );
        assert_eq!(
            merge_findings(&with_subnets, &v, &declared, Base::Cozystack),
            Vec::<String>::new()
        );
        // an inclusion the role did not declare, or the base's selection lost, is a finding
        let f = merge_findings(&with_subnets, &v, &[], Base::Cozystack).join("\n");
        assert!(
            f.contains("only the role's node_subnets [] and exclusions be added"),
            "{f}"
        );
        let lost = config_report(
            "v/cozystack/worker",
            &base,
            &["192.168.1.0/24", "!100.64.0.0/10"],
        );
        let f = merge_findings(&lost, &v, &declared, Base::Cozystack).join("\n");
        assert!(
            f.contains("the base's selection [\"192.168.100.0/24\"] must stay"),
            "{f}"
        );

        let mut twice = base.clone();
        twice.push(("zfs", &[]));
        twice.push(("drbd", drbd));
        let widened = config_report(
            "v/cozystack/worker",
            &twice,
            &["192.168.100.0/24", "0.0.0.0/0", "!100.64.0.0/10"],
        );
        let f = merge_findings(&widened, &v, &[], Base::Cozystack).join("\n");
        assert!(f.contains("`drbd` is"), "{f}");
        assert!(f.contains("`zfs` appears 2 times"), "{f}");
        assert!(f.contains("and exclusions be added"), "{f}");

        let missing = config_report("v/talosctl/worker", &[("drbd", drbd)], &[]);
        let f = merge_findings(&missing, &v, &[], Base::Talosctl).join("\n");
        assert!(f.contains("`zfs` (zfs) is missing"), "{f}");
        assert!(f.contains("does not exclude 100.64.0.0/10"), "{f}");
    }

    #[test]
    fn only_listed_profile_differences_pass() {
        let p = ProfileReport {
            name: "v/metal".into(),
            errors: vec![],
            output_path: "metal-arm64.raw".into(),
            written: "metal-arm64.raw.xz".into(),
            differences: vec![
                Difference {
                    path: "output.outFormat".into(),
                    ours: ".xz".into(),
                    default: ".zst".into(),
                },
                Difference {
                    path: "input.baseInstaller.imageRef".into(),
                    ours: "a".into(),
                    default: "b".into(),
                },
            ],
        };
        let f = profile_findings(&p, Output::Metal, "metal-arm64.raw.xz");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("input.baseInstaller.imageRef"), "{f:?}");
        let mut pinned = p.differences[1].clone();
        let digest = format!("@sha256:{}", "a".repeat(64));
        pinned.default = "ghcr.io/siderolabs/installer-base:v1.13.99".into();
        pinned.ours = format!("ghcr.io/siderolabs/installer-base:v1.13.99{digest}").into();
        assert!(intended_difference(Output::Metal, &pinned).is_some());
        // another tag, even pinned, is not the default's image
        pinned.ours = format!("ghcr.io/siderolabs/installer-base:v1.13.98{digest}").into();
        assert!(intended_difference(Output::Metal, &pinned).is_none());
        let f = profile_findings(&p, Output::Metal, "metal-arm64.raw.zst");
        assert!(
            f[0].contains("the imager writes metal-arm64.raw.xz"),
            "{f:?}"
        );
    }
}
