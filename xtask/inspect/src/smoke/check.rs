//! Static checks of a built variant: is each image exactly the role it claims to be?
//!
//! Reads `_out/<variant>/build.json` (written by `cargo xtask build`) and checks, collecting
//! every finding before reporting: the record is for this variant, arch and Talos version;
//! every imager profile lists exactly the variant's extensions at the locked references; every
//! recorded file exists with its size and sha256; each installer archive's config names its
//! target architecture (linux/arm64, linux/amd64); every published image is for the target's
//! architectures in the registry and each of its tags points at the recorded digest.
//! `check_record` is pure; the rest reads files and asks skopeo. `cargo xtask smoke` reads the
//! record from `_out/` (`static_checks`); `ci` hands over the one its build returned
//! (`check_built`).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Serialize, Serializer};
use serde_json::Value;

use domain::diag::short;
use domain::oci::media;
use domain::record::{BuildRecord, Published};
use domain::{Arch, Finding, ImageRef, Lock, Output, Variant};
use infra::cmd::Cmd;
use infra::project::Project;

/// What the static checks found for one variant.
#[derive(Serialize)]
pub struct Report {
    pub variant: String,
    /// The record checked, relative to the repository.
    pub record: Utf8PathBuf,
    /// Each check that ran, in words (`installer-arm64.tar: config is linux/arm64`).
    pub checked: Vec<String>,
    #[serde(serialize_with = "findings_as_text")]
    pub findings: Vec<Finding>,
}

impl Report {
    /// The report of a variant whose checks could not run at all (not built, or a record that
    /// cannot be read): that is its one finding.
    pub fn not_checked(project: &Project, variant: &Variant, err: &anyhow::Error) -> Report {
        let record = project
            .display(&infra::record::path(project, &variant.name))
            .to_owned();
        Report {
            variant: variant.name.clone(),
            findings: vec![Finding::new(record.as_str(), "", format!("{err:#}"))],
            record,
            checked: Vec::new(),
        }
    }

    /// The report of `variant` before any check ran, its record shown as `record`.
    fn empty(variant: &Variant, record: Utf8PathBuf) -> Report {
        Report {
            variant: variant.name.clone(),
            record,
            checked: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// `Ok` when nothing was found, else one error listing every finding.
    pub fn to_result(&self) -> Result<()> {
        domain::diag::into_result(
            &format!("static checks of variant `{}` failed", self.variant),
            self.findings.clone(),
        )
    }
}

fn findings_as_text<S: Serializer>(findings: &[Finding], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(findings.iter().map(|f| f.to_string()))
}

/// Runs every static check of one built variant, its record read from `_out/`. `Err` only when
/// the checks cannot run at all (no record, or not a readable one); problems with the build are
/// findings. `skopeo` is the shared registry client: the same credentials (GITHUB_TOKEN for
/// ghcr.io, whose new packages are private), mirrors and retries as publishing.
pub fn static_checks(
    project: &Project,
    variant: &Variant,
    lock: &Lock,
    skopeo: &infra::registry::Skopeo,
) -> Result<Report> {
    let record = infra::record::read_built(project, &variant.name)?;
    Ok(check_built(project, variant, lock, &record, skopeo))
}

/// Every static check of `variant` against `record` (as `build` returned it to `ci`, or as read
/// from `_out/`), the files the record names and what it says was published.
pub fn check_built(
    project: &Project,
    variant: &Variant,
    lock: &Lock,
    record: &BuildRecord,
    skopeo: &infra::registry::Skopeo,
) -> Report {
    let mut report = check_on_disk(project, variant, lock, record);
    check_published(
        skopeo,
        record,
        report.record.clone().as_str(),
        variant,
        &mut report,
    );
    report
}

/// The static checks that read nothing but the record, the lock and the files on disk: what a
/// dry run can run without the registry.
pub fn check_on_disk(
    project: &Project,
    variant: &Variant,
    lock: &Lock,
    record: &BuildRecord,
) -> Report {
    let path = infra::record::path(project, &variant.name);
    let dir = path
        .parent()
        .expect("a record lies in its variant's directory");
    let shown = project.display(&path).to_owned();
    let mut report = Report::empty(variant, shown.clone());
    check_record(record, shown.as_str(), variant, lock, &mut report);
    check_target(record, shown.as_str(), variant, lock, &mut report);
    check_files(record, dir, shown.as_str(), &mut report);
    for &arch in &variant.target.arches {
        check_installer_archive(record, dir, shown.as_str(), arch, &mut report);
    }
    report
}

/// [`check_record`] and [`check_target`]: whether `record` is a build of `variant` as `lock` has
/// it now (extensions, platform, overlay, profiles), without reading any file.
pub fn check_against(
    record: &BuildRecord,
    shown: &str,
    variant: &Variant,
    lock: &Lock,
) -> Vec<Finding> {
    let mut report = Report::empty(variant, shown.into());
    check_record(record, shown, variant, lock, &mut report);
    check_target(record, shown, variant, lock, &mut report);
    report.findings
}

/// The checks that need nothing but the record, the variant and the lock.
pub fn check_record(
    record: &BuildRecord,
    shown: &str,
    variant: &Variant,
    lock: &Lock,
    report: &mut Report,
) {
    let rebuild = rebuild(variant);
    // A field of the record that is not what the variant and the lock say: rebuild.
    let stale =
        |field: &str, problem: &str| Finding::new(shown, field, problem).fix(rebuild.clone());
    let before = report.findings.len();
    let findings = &mut report.findings;
    if record.variant != variant.name {
        let problem = format!("record is not for variant `{}`", variant.name);
        findings.push(stale("variant", &problem).value(&record.variant));
    }
    if record.arch != variant.arch {
        let problem = format!("variant `{}` is {}", variant.name, variant.arch);
        findings.push(stale("arch", &problem).value(record.arch));
    }
    if record.talos_version != lock.talos_version {
        let problem = format!(
            "{} is locked for Talos {}",
            domain::lock::SHOWN,
            lock.talos_version
        );
        findings.push(stale("talos_version", &problem).value(&record.talos_version));
    }

    let resolved = lock.resolve(variant);
    let mut expected: Vec<(String, ImageRef)> = Vec::new();
    for name in variant.all_extensions() {
        if let Some(r) = lock.extensions.get(name) {
            expected.push((name.to_owned(), r.clone()));
        }
    }
    for name in &resolved.missing {
        findings.push(
            Finding::new(
                domain::lock::SHOWN,
                format!("extensions.{name}"),
                format!("missing (used by variant `{}`)", variant.name),
            )
            .fix("run `cargo xtask lock` and rebuild"),
        );
    }
    let mut recorded: Vec<(String, ImageRef)> = Vec::new();
    for e in &record.extensions {
        recorded.push((e.name.clone(), e.reference.clone()));
    }
    if recorded != expected {
        let problem = format!(
            "not the locked extensions of variant `{}`: {}",
            variant.name,
            render_refs(&expected)
        );
        findings.push(stale("extensions", &problem).value(render_refs(&recorded)));
    }

    let mut variant_names = BTreeSet::new();
    for name in variant.all_extensions() {
        variant_names.insert(name.to_owned());
    }
    for (i, entry) in record.profiles.iter().enumerate() {
        let base = format!("profiles[{i}].profile");
        let profile = &entry.profile;
        let arches = arch_names(&variant.target.arches, "");
        let asked = profile["arch"].as_str().unwrap_or_default();
        if !arches.iter().any(|a| a == asked) || entry.arch.is_some_and(|a| a.as_str() != asked) {
            let problem = format!(
                "the imager was not asked for {}",
                entry.arch.map_or(arches.join(" or "), |a| a.to_string())
            );
            findings.push(stale(&format!("{base}.arch"), &problem).value(&profile["arch"]));
        }
        if profile["version"].as_str() != Some(record.talos_version.to_string().as_str()) {
            let problem = format!("not the recorded Talos version {}", record.talos_version);
            findings.push(stale(&format!("{base}.version"), &problem).value(&profile["version"]));
        }
        let mut refs: Vec<Option<&str>> = Vec::new();
        if let Some(list) = profile["input"]["systemExtensions"].as_array() {
            for extension in list {
                refs.push(extension["imageRef"].as_str());
            }
        }
        let mut seen = BTreeSet::new();
        for (j, reference) in refs.iter().enumerate() {
            let field = format!("{base}.input.systemExtensions[{j}].imageRef");
            let Some(reference) = reference else {
                findings.push(stale(&field, "not an image reference"));
                continue;
            };
            let name = match ImageRef::parse(reference) {
                Ok(parsed) => parsed.name().to_owned(),
                Err(err) => {
                    findings.push(stale(&field, &err).value(reference));
                    continue;
                }
            };
            seen.insert(name.clone());
            if !variant_names.contains(name.as_str()) {
                findings.push(
                    Finding::new(
                        shown,
                        field,
                        format!(
                            "the {} image carries extension `{name}`, which variant `{}` does not have ({})",
                            entry.kind,
                            variant.name,
                            variant.file()
                        ),
                    )
                    .value(reference)
                    .fix(format!(
                        "{rebuild}; an image with an extension its nodes do not configure never finishes booting"
                    )),
                );
                continue;
            }
            let Some(locked) = lock.extensions.get(&name) else {
                continue; // reported once above as missing from the lock
            };
            if *reference != locked.to_string() {
                let problem = format!("not the locked reference {locked}");
                findings.push(stale(&field, &problem).value(reference));
            } else if locked.digest.is_none() {
                findings.push(
                    Finding::new(
                        shown,
                        field,
                        "not pinned to a digest: the image may differ from what was reviewed",
                    )
                    .value(reference)
                    .fix("run `cargo xtask lock`, commit the lock and rebuild"),
                );
            }
        }
        for name in &variant_names {
            if !seen.contains(name) {
                let problem = format!(
                    "the {} image lacks extension `{name}` of variant `{}`",
                    entry.kind, variant.name
                );
                findings.push(stale(&format!("{base}.input.systemExtensions"), &problem));
            }
        }
        if !record.files.iter().any(|f| f.name == entry.artifact) {
            let field = format!("profiles[{i}].artifact");
            findings.push(stale(&field, "not among the recorded files").value(&entry.artifact));
        }
    }
    for output in &variant.outputs {
        for arch in &variant.target.arches {
            let found = record
                .profiles
                .iter()
                .any(|p| p.kind == *output && p.profile["arch"].as_str() == Some(arch.as_str()));
            if !found {
                let problem = format!(
                    "no `{}` profile for {arch}, but variant `{}` builds it",
                    output.name(),
                    variant.name
                );
                findings.push(stale("profiles", &problem));
            }
        }
    }
    if report.findings.len() > before {
        return;
    }
    report.checked.push(format!(
        "record and {} profile(s) list exactly {} at the locked references",
        record.profiles.len(),
        if variant_names.is_empty() {
            "no extensions".to_owned()
        } else {
            Vec::from_iter(variant_names).join(", ")
        }
    ));
}

/// The target of every output: the record names the variant's platform, overlay and arches;
/// each profile asks for the platform its output boots on, and carries the board overlay
/// (locked image) exactly where it boots (installer, disk images), the installer also as
/// `input.overlayInstaller`.
pub fn check_target(
    record: &BuildRecord,
    shown: &str,
    variant: &Variant,
    lock: &Lock,
    report: &mut Report,
) {
    let rebuild = rebuild(variant);
    // A field of the record that is not what the variant's target says: rebuild.
    let stale =
        |field: &str, problem: &str| Finding::new(shown, field, problem).fix(rebuild.clone());
    let target = &variant.target;
    let before = report.findings.len();
    let findings = &mut report.findings;
    let arches = arch_names(&target.arches, "");
    let recorded_arches = if record.arches.is_empty() {
        vec![record.arch.to_string()]
    } else {
        arch_names(&record.arches, "")
    };
    if recorded_arches != arches {
        let problem = format!(
            "variant `{}` is built for {}",
            variant.name,
            arches.join(", ")
        );
        findings.push(stale("arches", &problem).value(recorded_arches.join(", ")));
    }
    if record.platform.as_deref().unwrap_or("metal") != target.platform.name() {
        let problem = format!(
            "variant `{}` is for platform {}",
            variant.name, target.platform
        );
        findings
            .push(stale("platform", &problem).value(record.platform.as_deref().unwrap_or("metal")));
    }
    let overlay = target.overlay.as_ref().map(|o| o.name.as_str());
    if record.overlay.as_deref() != overlay {
        let problem = format!(
            "variant `{}` has overlay {}",
            variant.name,
            overlay.unwrap_or("none")
        );
        findings
            .push(stale("overlay", &problem).value(record.overlay.as_deref().unwrap_or("none")));
    }
    let locked_overlay = overlay
        .and_then(|name| lock.overlays.get(name))
        .map(ToString::to_string);
    for (i, entry) in record.profiles.iter().enumerate() {
        let base = format!("profiles[{i}].profile");
        let profile = &entry.profile;
        let output = entry.kind;
        let want_platform = match output {
            Output::Installer | Output::Disk => target.platform.name(),
            Output::Nocloud => "nocloud",
            _ => "metal",
        };
        if profile["platform"].as_str() != Some(want_platform) {
            let problem = format!(
                "the {} of variant `{}` boots on {want_platform}",
                entry.kind, variant.name
            );
            findings.push(stale(&format!("{base}.platform"), &problem).value(&profile["platform"]));
        }
        let boots = matches!(
            output,
            Output::Installer | Output::Metal | Output::Disk | Output::Nocloud
        );
        let want = locked_overlay.as_deref().filter(|_| boots);
        let have_name = profile["overlay"]["name"].as_str();
        let have_image = profile["overlay"]["image"]["imageRef"].as_str();
        match want {
            Some(image) if have_name != overlay || have_image != Some(image) => findings.push(
                Finding::new(
                    shown,
                    format!("{base}.overlay"),
                    format!(
                        "not the locked overlay {} {image}",
                        overlay.unwrap_or_default()
                    ),
                )
                .value(&profile["overlay"])
                .fix(format!(
                    "{rebuild}; without its overlay a board gets no firmware and does not boot"
                )),
            ),
            None if !profile["overlay"].is_null() => {
                let problem = format!(
                    "the {} of variant `{}` carries no overlay",
                    entry.kind, variant.name
                );
                findings
                    .push(stale(&format!("{base}.overlay"), &problem).value(&profile["overlay"]));
            }
            _ => {}
        }
        let installer_overlay = profile["input"]["overlayInstaller"]["imageRef"].as_str();
        let want_installer = want.filter(|_| output == Output::Installer);
        if installer_overlay != want_installer {
            let problem = match want_installer {
                Some(image) => format!(
                    "an installer of a board role runs the overlay's installer: expected {image}"
                ),
                None => "only the installer of a board role has one".to_owned(),
            };
            findings.push(
                stale(&format!("{base}.input.overlayInstaller"), &problem)
                    .value(installer_overlay.unwrap_or("none")),
            );
        }
    }
    if report.findings.len() == before {
        report.checked.push(format!(
            "every profile: platform {}{}, arch {}",
            target.platform,
            overlay
                .map(|o| format!(", overlay {o} where it boots"))
                .unwrap_or_default(),
            arches.join(", ")
        ));
    }
}

/// The fix of a record that is not a build of `variant` as it is now.
fn rebuild(variant: &Variant) -> String {
    format!(
        "rebuild with `cargo xtask build --variant {}`",
        variant.name
    )
}

fn render_refs(refs: &[(String, ImageRef)]) -> String {
    if refs.is_empty() {
        return "none".into();
    }
    let mut shown = Vec::with_capacity(refs.len());
    for (_, r) in refs {
        shown.push(r.to_string());
    }
    shown.join(", ")
}

fn check_files(record: &BuildRecord, dir: &Utf8Path, shown: &str, report: &mut Report) {
    for (i, file) in record.files.iter().enumerate() {
        let field = format!("files[{i}]");
        let path = dir.join(&file.name);
        if file.name.contains('/') || file.name.starts_with('.') {
            report.findings.push(
                Finding::new(
                    shown,
                    format!("{field}.name"),
                    "not a file name in the output directory",
                )
                .value(&file.name)
                .fix("rebuild"),
            );
            continue;
        }
        let rebuild = format!(
            "rebuild with `cargo xtask build --variant {}` (the file changed after the build)",
            record.variant
        );
        // The file is not what the record says: rebuild.
        let changed =
            |field: &str, problem: &str| Finding::new(shown, field, problem).fix(rebuild.clone());
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(_) => {
                let problem = format!("{path} does not exist");
                report
                    .findings
                    .push(changed(&field, &problem).value(&file.name));
                continue;
            }
        };
        if size != file.size {
            let problem = format!("{} is {size} bytes", file.name);
            report
                .findings
                .push(changed(&format!("{field}.size"), &problem).value(file.size));
            continue;
        }
        match infra::fsutil::sha256_file(&path).map(|(sha, _)| sha) {
            Ok(hex) if hex == file.sha256 => {
                report
                    .checked
                    .push(format!("{}: sha256 {}", file.name, short(&hex)))
            }
            Ok(hex) => {
                let problem = format!("{} has sha256 {hex}", file.name);
                report
                    .findings
                    .push(changed(&format!("{field}.sha256"), &problem).value(&file.sha256));
            }
            Err(err) => report.findings.push(changed(&field, &format!("{err:#}"))),
        }
    }
}

/// `architecture`/`os` of an image config, as a finding's problem when they are wrong.
pub fn platform_problem(config: &Value, arch: Arch) -> Option<String> {
    let (a, os) = (config["architecture"].as_str(), config["os"].as_str());
    (a != Some(arch.as_str()) || os != Some("linux")).then(|| {
        format!(
            "image config says {}/{}, not linux/{arch}",
            os.unwrap_or("?"),
            a.unwrap_or("?")
        )
    })
}

/// The installer archive (docker-archive, or an OCI layout tar) must hold a linux/<arch> image.
fn check_installer_archive(
    record: &BuildRecord,
    dir: &Utf8Path,
    shown: &str,
    arch: Arch,
    report: &mut Report,
) {
    let name = domain::output::artifact_name(Output::Installer, arch);
    let Some(i) = record.files.iter().position(|f| f.name == name) else {
        return;
    };
    let path = dir.join(&name);
    if !path.is_file() {
        return; // already reported by check_files
    }
    let field = format!("files[{i}]");
    match archive_config(&path) {
        Ok(config) => match platform_problem(&config, arch) {
            None => {
                report
                    .checked
                    .push(format!("{name}: config is linux/{arch}"));
                check_installer_layout(record, &path, &config, shown, &field, arch, report);
            }
            Some(problem) => report.findings.push(
                Finding::new(shown, field, format!("{name}: {problem}"))
                    .value(&name)
                    .fix(format!("rebuild with `cargo xtask build --variant {}`: the imager profile must say `arch: {arch}`", record.variant)),
            ),
        },
        Err(err) => report.findings.push(
            Finding::new(shown, field, format!("{name}: cannot read the image config: {err:#}"))
                .value(&name)
                .fix(format!("rebuild with `cargo xtask build --variant {}`", record.variant)),
        ),
    }
}

/// What `talosctl upgrade --image` runs: the image's entrypoint `/bin/installer` (the base
/// installer's), which installs the boot assets the imager put under `/usr/install/<arch>/` in
/// the image's last layer: sd-boot and the UKI (`systemd-boot.efi`, `vmlinuz.efi`), or, for
/// GRUB-era releases, `vmlinuz` and `initramfs.xz`.
#[allow(clippy::too_many_arguments)]
fn check_installer_layout(
    record: &BuildRecord,
    path: &Utf8Path,
    config: &Value,
    shown: &str,
    field: &str,
    arch: Arch,
    report: &mut Report,
) {
    let name = path.file_name().unwrap_or_default();
    let fix = format!(
        "rebuild with `cargo xtask build --variant {}` from the imager and base installer of the locked Talos version",
        record.variant
    );
    let entrypoint = &config["config"]["Entrypoint"];
    if *entrypoint != serde_json::json!(["/bin/installer"]) {
        report.findings.push(
            Finding::new(shown, field, format!("{name}: the image's entrypoint is not /bin/installer, which `talosctl upgrade --image` runs"))
                .value(entrypoint.to_string())
                .fix(fix.clone()),
        );
    }
    let assets = match last_layer(path).and_then(|layer| layer_files(&layer)) {
        Ok(files) => {
            let prefix = format!("usr/install/{arch}/");
            let mut assets = BTreeSet::new();
            for file in &files {
                match file.trim_start_matches("./").strip_prefix(&prefix) {
                    Some(f) if !f.is_empty() && !f.ends_with('/') => {
                        assets.insert(f.to_owned());
                    }
                    _ => {}
                }
            }
            assets
        }
        Err(err) => {
            report.findings.push(
                Finding::new(
                    shown,
                    field,
                    format!("{name}: cannot list the image's last layer: {err:#}"),
                )
                .value(name)
                .fix(fix),
            );
            return;
        }
    };
    let has = |wanted: &[&str]| wanted.iter().all(|w| assets.contains(*w));
    if has(&["systemd-boot.efi", "vmlinuz.efi"]) || has(&["vmlinuz", "initramfs.xz"]) {
        report.checked.push(format!(
            "{name}: entrypoint /bin/installer, /usr/install/{arch}/ has {}",
            Vec::from_iter(assets).join(", ")
        ));
    } else {
        report.findings.push(
            Finding::new(shown, field, format!("{name}: the last layer has no boot assets under /usr/install/{arch}/ (systemd-boot.efi and vmlinuz.efi, or vmlinuz and initramfs.xz)"))
                .value(if assets.is_empty() { "nothing".to_owned() } else { Vec::from_iter(assets).join(", ") })
                .fix(fix),
        );
    }
}

/// How an installer archive holds its image: the first entry of a docker-archive's
/// `manifest.json` (`{"Config": "<member>", "Layers": [...]}`), or the manifest blob an OCI
/// layout's `index.json` names first.
enum ArchivedManifest {
    Docker(Value),
    Oci(Value),
}

fn archived_manifest(archive: &Utf8Path) -> Result<ArchivedManifest> {
    if let Ok(manifest) = tar_member(archive, "manifest.json") {
        let manifest = json(manifest, "manifest.json")?;
        return Ok(ArchivedManifest::Docker(manifest[0].clone()));
    }
    let index = json(
        tar_member(archive, "index.json")
            .context("neither a docker-archive (manifest.json) nor an OCI layout (index.json)")?,
        "index.json",
    )?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json lists no manifest")?;
    Ok(ArchivedManifest::Oci(json(blob(archive, digest)?, digest)?))
}

/// The bytes of the image's topmost layer (docker-archive or OCI layout tar).
fn last_layer(archive: &Utf8Path) -> Result<Vec<u8>> {
    let mut manifest = match archived_manifest(archive)? {
        ArchivedManifest::Docker(manifest) => {
            let layer = manifest["Layers"]
                .as_array()
                .and_then(|l| l.last())
                .and_then(Value::as_str)
                .context("manifest.json names no layer")?;
            return tar_member(archive, layer);
        }
        ArchivedManifest::Oci(manifest) => manifest,
    };
    if manifest["manifests"].is_array() {
        // an index inside the layout: its first image
        manifest = domain::json::from_bytes(&blob(
            archive,
            manifest["manifests"][0]["digest"]
                .as_str()
                .context("the index lists no image")?,
        )?)?;
    }
    let layer = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["digest"].as_str())
        .context("the manifest names no layer")?;
    blob(archive, layer)
}

/// The member names of a layer (a tar, gzip-compressed or not).
fn layer_files(layer: &[u8]) -> Result<Vec<String>> {
    let gzip = layer.starts_with(&[0x1f, 0x8b]);
    let flags = if gzip { "-tzf" } else { "-tf" };
    let out = Cmd::new("tar")
        .args([flags, "-"])
        .stdin_bytes(layer)
        .output()?;
    if !out.status.success() {
        anyhow::bail!("not a tar: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

fn tar_member(archive: &Utf8Path, member: &str) -> Result<Vec<u8>> {
    let out = Cmd::new("tar")
        .args(["--force-local", "-xOf", archive.as_str(), member])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "`{member}` not in the archive ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn archive_config(archive: &Utf8Path) -> Result<Value> {
    match archived_manifest(archive)? {
        ArchivedManifest::Docker(manifest) => {
            let config = manifest["Config"]
                .as_str()
                .context("manifest.json names no Config")?;
            json(tar_member(archive, config)?, config)
        }
        ArchivedManifest::Oci(manifest) => {
            let digest = manifest["config"]["digest"]
                .as_str()
                .context("the manifest names no config")?;
            json(blob(archive, digest)?, digest)
        }
    }
}

/// A blob of an OCI layout, by digest.
fn blob(archive: &Utf8Path, digest: &str) -> Result<Vec<u8>> {
    let hex = digest
        .strip_prefix("sha256:")
        .context("digest is not sha256")?;
    tar_member(archive, &format!("blobs/sha256/{hex}"))
}

fn json(bytes: Vec<u8>, what: &str) -> Result<Value> {
    domain::json::from_bytes(&bytes).with_context(|| format!("{what} is not JSON"))
}

/// `skopeo inspect --raw [--config] docker://<reference>`: the exact bytes the registry serves.
fn registry_raw(
    skopeo: &infra::registry::Skopeo,
    reference: &str,
    config: bool,
) -> Result<Vec<u8>> {
    skopeo.run(&inspect_cmd(skopeo, reference, config)?)
}

fn inspect_cmd(
    skopeo: &infra::registry::Skopeo,
    reference: &str,
    config: bool,
) -> Result<infra::registry::SkopeoCmd> {
    let mut cmd = skopeo.inspect_raw_cmd(reference)?;
    if config {
        let raw = cmd
            .args
            .iter()
            .position(|a| a == "--raw")
            .context("`skopeo inspect` without --raw")?;
        cmd.args.insert(raw + 1, "--config".into());
    }
    Ok(cmd)
}

fn check_published(
    skopeo: &infra::registry::Skopeo,
    record: &BuildRecord,
    shown: &str,
    variant: &Variant,
    report: &mut Report,
) {
    for (i, published) in record.published.iter().enumerate() {
        // The installer and the matchbox image of a role built for several arches are each
        // one index of all of them.
        let arches = &variant.target.arches;
        check_tag_names(published, shown, i, variant, report);
        let field = format!("published[{i}]");
        let by_digest = format!("{}@{}", published.image, published.digest);
        let republish = format!(
            "publish again with `cargo xtask build --variant {}` (with the registry configured)",
            record.variant
        );
        // The image the registry holds at the recorded digest is not the one built: publish again.
        let unpublished = |problem: &str| {
            Finding::new(shown, format!("{field}.digest"), problem)
                .value(&by_digest)
                .fix(republish.clone())
        };
        let raw = match registry_raw(skopeo, &by_digest, false) {
            Ok(raw) => raw,
            Err(err) => {
                let problem = format!("not in the registry: {err:#}");
                report.findings.push(unpublished(&problem));
                continue;
            }
        };
        let manifest: Value = domain::json::from_bytes(&raw).unwrap_or(Value::Null);
        let media_type = manifest["mediaType"].as_str().unwrap_or_default();
        let is_index = matches!(media_type, media::OCI_INDEX | media::DOCKER_LIST);
        if arches.len() > 1 {
            if !is_index {
                let problem = format!(
                    "a single image in the registry, not one index of {}",
                    arch_names(arches, "linux/").join(", ")
                );
                report.findings.push(unpublished(&problem));
                continue;
            }
            let mut listed = Vec::new();
            for m in manifest["manifests"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
            {
                listed.push(format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or("?"),
                    m["platform"]["architecture"].as_str().unwrap_or("?")
                ));
            }
            let want = arch_names(arches, "linux/");
            if listed != want {
                let problem = format!(
                    "the index in the registry lists {}, not exactly {}",
                    listed.join(", "),
                    want.join(", ")
                );
                report.findings.push(unpublished(&problem));
                continue;
            }
        }
        for arch in arches.iter().copied() {
            // An index is fine if it holds a linux/<arch> image: check that one's config.
            let image_digest = if is_index {
                let found = manifest["manifests"].as_array().and_then(|list| {
                    list.iter().find(|m| {
                        m["platform"]["architecture"].as_str() == Some(arch.as_str())
                            && m["platform"]["os"].as_str() == Some("linux")
                    })
                });
                match found.and_then(|m| m["digest"].as_str()) {
                    Some(digest) => digest.to_owned(),
                    None => {
                        let problem =
                            format!("the index in the registry has no linux/{arch} image");
                        report.findings.push(unpublished(&problem));
                        continue;
                    }
                }
            } else {
                published.digest.clone()
            };
            let entry = if is_index {
                format!(" entry {}", short_digest(&image_digest))
            } else {
                String::new()
            };
            match registry_raw(skopeo, &format!("{}@{image_digest}", published.image), true)
                .and_then(|raw| {
                    domain::json::from_bytes::<Value>(&raw).context("config is not JSON")
                }) {
                Ok(config) => match platform_problem(&config, arch) {
                    None => report.checked.push(format!(
                        "{} image {by_digest}{entry}: registry config is linux/{arch}",
                        published.kind
                    )),
                    Some(problem) => {
                        let problem = format!("in the registry,{entry} {problem}");
                        report.findings.push(unpublished(&problem));
                    }
                },
                Err(err) => {
                    let problem = format!("cannot read the image config{entry}: {err:#}");
                    report.findings.push(unpublished(&problem));
                }
            }
        }
        for (j, tag) in published.tags.iter().enumerate() {
            let tagged = format!("{}:{tag}", published.image);
            match registry_raw(skopeo, &tagged, false) {
                Ok(raw) => {
                    let digest = domain::Digest::of_bytes(&raw).to_string();
                    if digest == published.digest {
                        report
                            .checked
                            .push(format!("{tagged} -> {}", short_digest(&digest)));
                    } else {
                        report.findings.push(
                            Finding::new(
                                shown,
                                format!("{field}.tags[{j}]"),
                                format!(
                                    "{tagged} points at {digest}, not the recorded {}",
                                    published.digest
                                ),
                            )
                            .value(tag)
                            .fix(format!(
                                "{republish}; something else pushed this tag after the build"
                            )),
                        );
                    }
                }
                Err(err) => report.findings.push(
                    Finding::new(
                        shown,
                        format!("{field}.tags[{j}]"),
                        format!("{tagged} is not in the registry: {err:#}"),
                    )
                    .value(tag)
                    .fix(republish.clone()),
                ),
            }
        }
    }
}

/// The names of `arches` in order, each behind `prefix` (`linux/arm64`).
fn arch_names(arches: &[Arch], prefix: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(arches.len());
    for arch in arches {
        names.push(format!("{prefix}{arch}"));
    }
    names
}

/// Each tag names its target (docs/targets.md): `aws-v1.13.6` for an AWS role, `v1.13.6`
/// for generic metal, so that two targets of a role in one repository never share a tag.
fn check_tag_names(
    published: &Published,
    shown: &str,
    i: usize,
    variant: &Variant,
    report: &mut Report,
) {
    let prefix = variant.target.tag_prefix();
    for (j, tag) in published.tags.iter().enumerate() {
        let ok = match &prefix {
            Some(p) => tag
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('-')),
            None => !tag_names_a_target(tag),
        };
        if !ok {
            report.findings.push(
                Finding::new(
                    shown,
                    format!("published[{i}].tags[{j}]"),
                    format!(
                        "not a tag of target {}: expected {}",
                        variant.target.label(),
                        variant.target.tag("<tag>")
                    ),
                )
                .value(tag)
                .fix(format!(
                    "publish again with `cargo xtask build --push --variant {}`",
                    variant.name
                )),
            );
        }
    }
}

/// Whether a tag starts with a platform or board name (`aws-...`), as another target's would.
fn tag_names_a_target(tag: &str) -> bool {
    let first = tag.split('-').next().unwrap_or_default();
    domain::target::Platform::parse(first).is_some_and(|p| p != domain::target::Platform::Metal)
}

fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talos(text: &str) -> domain::TalosVersion {
        domain::TalosVersion::parse(text).unwrap()
    }

    fn image(text: &str) -> domain::ImageRef {
        domain::ImageRef::parse(text).unwrap()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn lock() -> Lock {
        Lock {
            extensions: [
                (
                    "drbd",
                    format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{D1}"),
                ),
                (
                    "tailscale",
                    format!("ghcr.io/siderolabs/tailscale:1.98.5@{D2}"),
                ),
                ("zfs", "ghcr.io/siderolabs/zfs:2.4.3-v1.13.99".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), image(&v)))
            .collect(),
            ..Lock::new(
                talos("v1.13.99"),
                image(&format!("ghcr.io/siderolabs/extensions:v1.13.99@{D1}")),
            )
        }
    }

    fn variant(name: &str, extensions: &str) -> Variant {
        // tailscale needs its service configuration declared (see config.rs)
        let config = if extensions.contains("tailscale") {
            r#","config":{"tailscale":{"mode":"userspace"}}"#
        } else {
            ""
        };
        domain::variant::parse(
            &format!("variants/{name}.json"),
            &format!(r#"{{"name":"{name}","description":"d","arch":"arm64","extensions":{extensions},"repository":"{name}/talos","outputs":["installer"]{config}}}"#),
        )
        .unwrap()
    }

    fn record(name: &str, refs: &[String]) -> BuildRecord {
        let exts: Vec<Value> = refs
            .iter()
            .map(|r| serde_json::json!({"name": ImageRef::parse(r).unwrap().name(), "ref": r}))
            .collect();
        let profile = serde_json::json!({
            "arch": "arm64", "platform": "metal", "version": "v1.13.99",
            "input": {"systemExtensions": refs.iter().map(|r| serde_json::json!({"imageRef": r})).collect::<Vec<_>>()},
            "output": {"kind": "installer", "outFormat": "raw"}
        });
        serde_json::from_value(serde_json::json!({
            "variant": name, "talos_version": "v1.13.99", "arch": "arm64",
            "extensions": exts,
            "profiles": [{"kind": "installer", "artifact": "installer-arm64.tar", "key": "k", "cache_hit": false, "profile": profile}],
            "files": [{"name": "installer-arm64.tar", "sha256": "00", "size": 1}],
        }))
        .unwrap()
    }

    fn findings(record: &BuildRecord, variant: &Variant) -> Vec<String> {
        let mut report = Report {
            variant: variant.name.clone(),
            record: "_out/x/build.json".into(),
            checked: Vec::new(),
            findings: Vec::new(),
        };
        check_record(record, "_out/x/build.json", variant, &lock(), &mut report);
        report.findings.iter().map(|f| f.to_string()).collect()
    }

    /// A docker-archive whose one layer holds `files` (paths under the layer root).
    fn installer_archive(dir: &Utf8Path, entrypoint: &str, files: &[&str]) -> Utf8PathBuf {
        let _ = std::fs::remove_dir_all(dir);
        for file in files {
            let path = dir.join("layer").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        std::fs::create_dir_all(dir.join("layer")).unwrap();
        let layer_dir = dir.join("layer");
        let layer = dir.join("layer.tar");
        Cmd::new("tar")
            .args(["-cf", layer.as_str(), "-C", layer_dir.as_str(), "."])
            .run()
            .unwrap();
        std::fs::write(
            dir.join("config.json"),
            format!(
                r#"{{"architecture":"arm64","os":"linux","config":{{"Entrypoint":{entrypoint}}}}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            r#"[{"Config":"config.json","Layers":["layer.tar"]}]"#,
        )
        .unwrap();
        let archive = dir.join("installer-arm64.tar");
        Cmd::new("tar")
            .args(["-cf", archive.as_str(), "-C", dir.as_str()])
            .args(["manifest.json", "config.json", "layer.tar"])
            .run()
            .unwrap();
        archive
    }

    #[test]
    fn the_installer_runs_bin_installer_over_the_boot_assets_of_its_arch() {
        let dir = Utf8PathBuf::from_path_buf(
            std::env::temp_dir().join(format!("xtask-layout-unit-{}", std::process::id())),
        )
        .unwrap();
        let rec = record("compute", &[]);
        let layout = |entrypoint: &str, files: &[&str]| {
            let archive = installer_archive(&dir, entrypoint, files);
            let config = archive_config(&archive).unwrap();
            let mut report = Report {
                variant: "compute".into(),
                record: "r".into(),
                checked: Vec::new(),
                findings: Vec::new(),
            };
            check_installer_layout(
                &rec,
                &archive,
                &config,
                "r",
                "files[0]",
                Arch::Arm64,
                &mut report,
            );
            (
                report.checked,
                report
                    .findings
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let sd_boot = [
            "usr/install/arm64/systemd-boot.efi",
            "usr/install/arm64/vmlinuz.efi",
        ];
        let (checked, findings) = layout(r#"["/bin/installer"]"#, &sd_boot);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(checked, ["installer-arm64.tar: entrypoint /bin/installer, /usr/install/arm64/ has systemd-boot.efi, vmlinuz.efi"]);
        let (_, findings) = layout(
            r#"["/bin/installer"]"#,
            &[
                "usr/install/arm64/vmlinuz",
                "usr/install/arm64/initramfs.xz",
            ],
        );
        assert!(findings.is_empty(), "GRUB-era assets: {findings:?}");
        let (_, findings) = layout(r#"["/bin/sh"]"#, &sd_boot);
        assert!(
            findings.len() == 1 && findings[0].contains("entrypoint is not /bin/installer"),
            "{findings:?}"
        );
        let (_, findings) = layout(
            r#"["/bin/installer"]"#,
            &[
                "usr/install/amd64/systemd-boot.efi",
                "usr/install/amd64/vmlinuz.efi",
            ],
        );
        assert!(
            findings.len() == 1 && findings[0].contains("no boot assets under /usr/install/arm64/"),
            "{findings:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_with_exactly_the_locked_extensions_passes() {
        let l = lock();
        let gateway = variant("gateway", r#"["drbd","tailscale"]"#);
        let refs = vec![
            l.extensions["drbd"].to_string(),
            l.extensions["tailscale"].to_string(),
        ];
        assert_eq!(
            findings(&record("gateway", &refs), &gateway),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_compute_profile_carrying_tailscale_is_reported() {
        let l = lock();
        let compute = variant("compute", r#"["drbd"]"#);
        let refs = vec![
            l.extensions["drbd"].to_string(),
            l.extensions["tailscale"].to_string(),
        ];
        let mut rec = record("compute", &refs);
        rec.extensions.truncate(1);
        let found = findings(&rec, &compute);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("profiles[0].profile.input.systemExtensions[1].imageRef"),
            "{}",
            found[0]
        );
        assert!(
            found[0]
                .contains("carries extension `tailscale`, which variant `compute` does not have"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn missing_extensions_other_digests_and_unpinned_refs_are_all_reported() {
        let l = lock();
        let v = variant("gateway", r#"["drbd","tailscale","zfs"]"#);
        let moved = format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{D3}");
        let mut rec = record("gateway", &[moved, l.extensions["zfs"].to_string()]);
        rec.talos_version = talos("v1.12.0");
        let found = findings(&rec, &v).join("\n");
        assert!(
            found.contains(
                "not the locked reference ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@sha256:1111"
            ),
            "{found}"
        );
        assert!(
            found.contains("zfs:2.4.3-v1.13.99: not pinned to a digest"),
            "{found}"
        );
        assert!(
            found.contains("lacks extension `tailscale` of variant `gateway`"),
            "{found}"
        );
        assert!(found.contains("`talos_version` = v1.12.0"), "{found}");
        assert!(found.contains("field `extensions`"), "{found}");
    }

    #[test]
    fn wrong_platforms_are_named() {
        let arm = serde_json::json!({"architecture": "arm64", "os": "linux"});
        assert_eq!(platform_problem(&arm, Arch::Arm64), None);
        let amd = serde_json::json!({"architecture": "amd64", "os": "linux"});
        assert_eq!(
            platform_problem(&amd, Arch::Arm64).unwrap(),
            "image config says linux/amd64, not linux/arm64"
        );
    }

    #[test]
    fn registry_reads_use_the_shared_client_credentials_and_mirrors() {
        let dir = std::env::temp_dir().join(format!("xtask-check-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = Utf8PathBuf::from_path_buf(dir.join("auth.json")).unwrap();
        std::fs::write(&auth, "{}").unwrap();
        let skopeo = infra::registry::Skopeo::new(&infra::registry::RegistryArgs {
            mirrors: vec!["ghcr.io=127.0.0.1:5000".into()],
            authfile: Some(auth.clone()),
        })
        .unwrap();
        let cmd = inspect_cmd(&skopeo, "ghcr.io/acme/x/talos@sha256:00", true).unwrap();
        let args = cmd.args.join(" ");
        assert!(args.contains("inspect --raw --config"), "{args}");
        assert!(args.contains(&format!("--authfile {auth}")), "{args}");
        assert!(
            args.ends_with("docker://127.0.0.1:5000/acme/x/talos@sha256:00"),
            "{args}"
        );
        let manifest = inspect_cmd(&skopeo, "ghcr.io/acme/x/talos:v1", false).unwrap();
        assert!(!manifest.args.contains(&"--config".to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
