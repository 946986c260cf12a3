//! Subcommand: `cargo xtask lock`: resolve every extension any variant uses to
//! `image:tag@sha256:digest` for one exact Talos version, and write `variants/extensions.lock`.
//!
//! The source of truth is the `image-digests` file inside `ghcr.io/siderolabs/extensions:<talos>`
//! (one `ghcr.io/siderolabs/<name>:<tag>@sha256:<hex>` line per extension built for that
//! release). One index fetch and one image copy resolve every extension of every variant:
//!
//! 1. `skopeo inspect --raw` the tag: an index (OCI or Docker list) or a single manifest; its
//!    digest is recorded as `extensions_image`.
//! 2. `skopeo copy` one platform's image by digest into `target/lock/<digest>` (linux/amd64
//!    first, then the other platforms in index order until one carries the file). The copy is
//!    content-addressed, so later runs reuse it and cost one command.
//! 3. find `image-digests` in the layers, topmost first (`tar`), and match names exactly.
//!
//! Builds call [`ensure`]: with `--locked` any missing, stale or unpinned entry fails before
//! anything is built; without it, missing entries are filled from the registry when it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use domain::diag::{self, Finding};
use domain::extension::EXTENSIONS_REPOSITORY;
use domain::lock::SHOWN;
use domain::oci::{layer_format, parse_manifest, platform_order, LayerFormat, Manifest};
use domain::talos::Talos;
use domain::Variant;
use domain::{Digest, ImageRef, Lock, TalosVersion};
use infra::cmd::Cmd;
use infra::pin;
use infra::project::Project;
use infra::registry::{self, RegistryArgs, Skopeo};

/// The file inside the extensions image listing every extension of the release.
pub const DIGESTS_FILE: &str = "image-digests";
/// The file inside the overlays catalog image listing every board overlay of the release.
pub const OVERLAYS_FILE: &str = "overlays.yaml";

#[derive(clap::Args)]
pub struct Args {
    /// Talos release to resolve for, e.g. v1.13.6. Default: the one the pinned CozyStack uses.
    #[arg(long, value_name = "VERSION")]
    pub talos_version: Option<String>,
    /// Write nothing: compare the lock with the registry and list every missing or stale entry.
    #[arg(long)]
    pub check: bool,
    /// Print the registry commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

// ---------------------------------------------------------------------------------------------
// Pure core: the image-digests file, lock comparison (manifests: `domain::oci`).

/// The `image-digests` file: repository (`ghcr.io/siderolabs/zfs`) to full reference.
#[derive(Debug)]
pub struct ImageDigests {
    pub entries: BTreeMap<String, ImageRef>,
}

/// Parses `image-digests`: one `registry/path/name:tag@sha256:hex` per line; blank lines and `#`
/// comments are skipped. Every line must be pinned; a repository listed twice with different
/// references is ambiguous. All problems are reported together.
pub fn parse_image_digests(text: &str, source: &str) -> Result<ImageDigests> {
    let mut entries = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("line {}", i + 1);
        match ImageRef::parse(line) {
            Ok(r) if r.digest.is_some() && r.tag.is_some() => {
                if let Some(previous) = entries.insert(r.repository.clone(), r.clone()) {
                    if previous != r {
                        problems.push(format!(
                            "{at}: {} is listed twice ({previous} and {line})",
                            r.repository
                        ));
                    }
                }
            }
            Ok(_) => problems.push(format!("{at}: `{line}` is not `image:tag@sha256:digest`")),
            Err(err) => problems.push(format!("{at}: `{line}`: {err}")),
        }
    }
    if !problems.is_empty() {
        bail!(
            "{source}: {DIGESTS_FILE} is malformed:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(ImageDigests { entries })
}

impl ImageDigests {
    /// The reference of extension `name`: repository exactly `ghcr.io/siderolabs/<name>`.
    pub fn find(&self, name: &str) -> Option<&ImageRef> {
        self.entries.get(&format!("{EXTENSIONS_REPOSITORY}/{name}"))
    }

    /// Short names of every official extension listed, for "did you mean" hints.
    pub fn names(&self) -> Vec<&str> {
        self.entries
            .keys()
            .filter_map(|r| r.strip_prefix(EXTENSIONS_REPOSITORY)?.strip_prefix('/'))
            .filter(|n| !n.contains('/'))
            .collect()
    }
}

/// The extensions image reference for a Talos version.
pub fn extensions_image(talos_version: &TalosVersion) -> String {
    format!("{EXTENSIONS_REPOSITORY}/extensions:{talos_version}")
}

/// A lock for `names`, every entry taken from `digests`; fails naming every absent extension.
pub fn lock_from_digests(
    talos_version: &TalosVersion,
    image_with_digest: &ImageRef,
    digests: &ImageDigests,
    names: &BTreeSet<String>,
) -> Result<Lock> {
    let mut extensions = BTreeMap::new();
    let mut absent = Vec::new();
    for name in names {
        match digests.find(name) {
            Some(reference) => {
                extensions.insert(name.clone(), reference.clone());
            }
            None => {
                let hint = match diag::closest(name, &digests.names()) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                absent.push(format!(
                    "`{name}`: no {EXTENSIONS_REPOSITORY}/{name} line{hint}"
                ));
            }
        }
    }
    if !absent.is_empty() {
        bail!(
            "Talos {talos_version} has no such extension in {image_with_digest} ({DIGESTS_FILE}):\n  {}\n    fix: check the names in variants/*.json against the extensions published for Talos {talos_version}",
            absent.join("\n  ")
        );
    }
    Ok(Lock {
        extensions,
        ..Lock::new(talos_version.clone(), image_with_digest.clone())
    })
}

/// The overlays catalog image reference for a Talos version.
pub fn overlays_image(talos_version: &TalosVersion) -> String {
    format!("{EXTENSIONS_REPOSITORY}/overlays:{talos_version}")
}

/// Every board overlay any of `variants` names.
pub fn used_overlays(variants: &[Variant]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for overlay in variants.iter().filter_map(|v| v.target.overlay.as_ref()) {
        names.insert(overlay.name.clone());
    }
    names
}

/// Fills `lock`'s overlay fields for `names` from the catalog (`catalog_image` with its
/// digest): each overlay as `image:tag@digest`, and every name the catalog knows. Fails
/// naming every overlay the catalog lacks.
pub fn add_overlays(
    lock: &mut Lock,
    catalog_image: &ImageRef,
    catalog: &[domain::target::CatalogEntry],
    names: &BTreeSet<String>,
) -> Result<()> {
    let mut known = Vec::with_capacity(catalog.len());
    for entry in catalog {
        known.push(entry.name.as_str());
    }
    let mut absent = Vec::new();
    for name in names {
        match catalog.iter().find(|e| &e.name == name) {
            Some(entry) => {
                lock.overlays.insert(name.clone(), entry.image.clone());
            }
            None => {
                let hint = match diag::closest(name, &known) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                absent.push(format!("`{name}`{hint}"));
            }
        }
    }
    if !absent.is_empty() {
        bail!(
            "Talos {} has no such overlay in {catalog_image} ({OVERLAYS_FILE}):\n  {}\n    fix: set `overlay` in variants/*.json to one of: {}",
            lock.talos_version,
            absent.join("\n  "),
            known.join(", ")
        );
    }
    lock.overlays_image = Some(catalog_image.clone());
    let mut all: Vec<String> = known.iter().map(|n| n.to_string()).collect();
    all.sort();
    lock.known_overlays = all;
    Ok(())
}

/// Every extension any of `variants` uses.
pub fn used_extensions(variants: &[Variant]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for name in variants.iter().flat_map(Variant::all_extensions) {
        names.insert(name.to_owned());
    }
    names
}

/// What differs between the committed lock and a fresh resolution; each finding ends with `fix`.
pub fn compare(current: Option<&Lock>, fresh: &Lock, fix: &str) -> Vec<Finding> {
    let Some(current) = current else {
        return vec![Finding::new(SHOWN, "", "missing: there is no lock file").fix(fix)];
    };
    let mut findings = Vec::new();
    if current.talos_version != fresh.talos_version {
        findings.push(
            Finding::new(
                SHOWN,
                "talos_version",
                format!("stale: resolving for Talos {}", fresh.talos_version),
            )
            .value(&current.talos_version)
            .fix(fix),
        );
    }
    if current.extensions_image != fresh.extensions_image {
        findings.push(
            Finding::new(
                SHOWN,
                "extensions_image",
                format!("stale: the registry serves {}", fresh.extensions_image),
            )
            .value(&current.extensions_image)
            .fix(fix),
        );
    }
    findings.extend(compare_entries(
        "extensions",
        &current.extensions,
        &fresh.extensions,
        "the registry",
        true,
        fix,
    ));
    findings.extend(compare_overlays(current, fresh, fix));
    for (field, have, want) in [
        ("imager", &current.imager, &fresh.imager),
        (
            "base_installer",
            &current.base_installer,
            &fresh.base_installer,
        ),
    ] {
        if let Some(want) = want.as_ref().filter(|w| have.as_ref() != Some(*w)) {
            findings.push(
                Finding::new(SHOWN, field, format!("stale: the registry has {want}"))
                    .value(shown(have))
                    .fix(fix),
            );
        }
    }
    findings
}

/// An optional entry as a finding shows it.
fn shown(entry: &Option<ImageRef>) -> String {
    entry
        .as_ref()
        .map_or_else(|| "(absent)".to_owned(), ToString::to_string)
}

/// The overlay part of [`compare`]: the catalog image, each overlay, and the known names.
fn compare_overlays(current: &Lock, fresh: &Lock, fix: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    if current.overlays_image != fresh.overlays_image {
        let problem = match &fresh.overlays_image {
            Some(image) => format!("stale: the registry serves {image}"),
            None => "no variant names an overlay".to_owned(),
        };
        findings.push(
            Finding::new(SHOWN, "overlays_image", problem)
                .value(shown(&current.overlays_image))
                .fix(fix),
        );
    }
    findings.extend(compare_entries(
        "overlays",
        &current.overlays,
        &fresh.overlays,
        "the catalog",
        false,
        fix,
    ));
    if current.known_overlays != fresh.known_overlays
        && current.overlays_image == fresh.overlays_image
    {
        findings.push(
            Finding::new(SHOWN, "known_overlays", "differs from the catalog's list").fix(fix),
        );
    }
    findings
}

/// The entries of one map of the lock (`extensions`, `overlays`) against a fresh resolution,
/// which `source` served: each missing or stale one, then each not used by any variant. With
/// `unpinned`, a stale entry locked without a digest is told apart (extensions).
fn compare_entries(
    map: &str,
    current: &BTreeMap<String, ImageRef>,
    fresh: &BTreeMap<String, ImageRef>,
    source: &str,
    unpinned: bool,
    fix: &str,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, want) in fresh {
        let field = format!("{map}.{name}");
        match current.get(name) {
            None => findings
                .push(Finding::new(SHOWN, field, format!("missing: {source} has {want}")).fix(fix)),
            Some(have) if have == want => {}
            Some(have) => {
                let problem = if unpinned && have.digest.is_none() {
                    format!("has no digest: {source} has {want}")
                } else {
                    format!("stale: {source} has {want}")
                };
                findings.push(Finding::new(SHOWN, field, problem).value(have).fix(fix));
            }
        }
    }
    for (name, have) in current {
        if !fresh.contains_key(name) {
            findings.push(
                Finding::new(SHOWN, format!("{map}.{name}"), "not used by any variant")
                    .value(have)
                    .fix(fix),
            );
        }
    }
    findings
}

/// `vX.Y.Z` with an optional pre-release suffix: what a Talos release tag looks like.
pub fn check_version(version: &str) -> Result<TalosVersion> {
    TalosVersion::parse(version).map_err(|_| {
        anyhow::Error::from(domain::diag::Usage(format!("--talos-version {version:?} is not a Talos release tag\n    fix: write it as vMAJOR.MINOR.PATCH, e.g. v1.13.6")))
    })
}

/// A dry run's stand-in for a reference only a real run learns: shown as `repository:text`.
fn placeholder(repository: String, text: String) -> ImageRef {
    ImageRef {
        repository,
        tag: Some(text),
        digest: None,
    }
}

// ---------------------------------------------------------------------------------------------
// I/O: the registry, the cache under target/, tar.

/// The outcome of reading the extensions image.
#[derive(Serialize)]
pub struct Resolution {
    pub lock: Lock,
    /// The platform whose image carried `image-digests` (`None` for a single-platform tag).
    pub platform: Option<String>,
    /// skopeo commands this resolution ran (one index fetch plus at most one copy per platform
    /// tried; the copy is skipped when target/lock already holds the image).
    pub registry_commands: u32,
}

/// Reads `ghcr.io/siderolabs/extensions:<version>` and resolves `names` from its `image-digests`;
/// when `overlays` is not empty, also reads `ghcr.io/siderolabs/overlays:<version>` (one
/// catalog fetch per Talos version, through the same client and cache) and pins them.
pub fn resolve(
    project: &Project,
    skopeo: &Skopeo,
    talos_version: &TalosVersion,
    names: &BTreeSet<String>,
    overlays: &BTreeSet<String>,
) -> Result<Resolution> {
    let before = skopeo.commands_run();
    let image = extensions_image(talos_version);
    let found = read_from_image(project, skopeo, &image, DIGESTS_FILE)
        .with_context(|| format!("reading the extensions image for Talos {talos_version}"))?;
    let digests = parse_image_digests(&found.text, &found.read_from)?;
    let mut lock = lock_from_digests(talos_version, &found.pinned, &digests, names)?;
    if !overlays.is_empty() {
        let catalog_image = overlays_image(talos_version);
        let catalog = read_from_image(project, skopeo, &catalog_image, OVERLAYS_FILE)
            .with_context(|| format!("reading the overlays catalog for Talos {talos_version}"))?;
        let entries = domain::target::parse_catalog(&catalog.text, &catalog.read_from)
            .map_err(anyhow::Error::msg)?;
        add_overlays(&mut lock, &catalog.pinned, &entries, overlays)?;
    }
    lock.imager = pin_image(
        skopeo,
        &domain::profile::imager_image(talos_version),
        "the imager",
    );
    lock.base_installer = pin_image(
        skopeo,
        &domain::profile::base_installer_image(talos_version),
        "the base installer",
    );
    Ok(Resolution {
        lock,
        platform: found.platform,
        registry_commands: skopeo.commands_run() - before,
    })
}

/// `image` by the digest its tag names now (one `inspect --raw`). Best effort: a registry that
/// lacks it (a mirror holding only the extensions) leaves it unpinned, with a warning; a
/// `--locked` build then refuses to run an unpinned imager.
fn pin_image(skopeo: &Skopeo, image: &str, what: &str) -> Option<ImageRef> {
    match skopeo
        .inspect_raw(image)
        .and_then(|raw| pinned(image, &raw))
    {
        Ok(reference) => Some(reference),
        Err(err) => {
            eprintln!(
                "warning: could not pin {what} {image} ({}); run `cargo xtask lock` where the registry serves it",
                format!("{err:#}").lines().next().unwrap_or("")
            );
            None
        }
    }
}

/// `image` (a tag) with the digest of `manifest`, the bytes its tag served.
fn pinned(image: &str, manifest: &[u8]) -> Result<ImageRef> {
    let mut reference = ImageRef::parse(image).map_err(|err| anyhow::anyhow!("{image}: {err}"))?;
    reference.digest = Some(Digest::of_bytes(manifest));
    Ok(reference)
}

/// A file read out of an image by [`read_from_image`].
struct Found {
    /// The image tag with the digest of what it pointed to.
    pinned: ImageRef,
    /// The platform whose image carried the file (`None` for a single-platform tag).
    platform: Option<String>,
    /// The exact image it was read from (`repository@digest`), for messages.
    read_from: String,
    text: String,
}

/// `file` from the image `image` points to: an index (the first platform, linux/amd64 first,
/// whose image carries the file) or a single image; layers are searched topmost first.
fn read_from_image(project: &Project, skopeo: &Skopeo, image: &str, file: &str) -> Result<Found> {
    let raw = skopeo.inspect_raw(image)?;
    let pinned = pinned(image, &raw)?;
    let repository = &pinned.repository;
    // (manifest, its platform), the platforms in the order they are tried
    let candidates: Vec<(Digest, Option<String>)> = match parse_manifest(&raw, image)? {
        Manifest::Image(_) => vec![(Digest::of_bytes(&raw), None)],
        Manifest::Index(manifests) => {
            let order = platform_order(&manifests);
            if order.is_empty() {
                bail!("{pinned}: the index lists no image manifest");
            }
            let mut candidates = Vec::new();
            for d in order {
                let platform = d.platform.as_ref().map(|p| p.to_string());
                candidates.push((d.digest.clone(), platform));
            }
            candidates
        }
    };
    let mut tried = Vec::new();
    for (digest, platform) in &candidates {
        let reference = format!("{repository}@{digest}");
        let dir = fetch_cached(project, skopeo, &reference, digest)?;
        if let Some(text) = find_file(&dir, &reference, file)? {
            return Ok(Found {
                pinned,
                platform: platform.clone(),
                read_from: reference,
                text,
            });
        }
        tried.push(platform.clone().unwrap_or_else(|| digest.to_string()));
    }
    bail!(
        "{pinned}: no image carries an `{file}` file (tried {})",
        tried.join(", ")
    )
}

/// The image `reference` copied into `target/lock/<hex>`, fetched only when not already there.
fn fetch_cached(
    project: &Project,
    skopeo: &Skopeo,
    reference: &str,
    digest: &Digest,
) -> Result<Utf8PathBuf> {
    let cache = project.target_dir().join("lock");
    let dir = cache.join(digest.hex());
    // A cached copy is used only if its manifest still hashes to the digest asked for.
    let cached = std::fs::read(dir.join("manifest.json"))
        .is_ok_and(|bytes| Digest::of_bytes(&bytes) == *digest);
    if cached {
        return Ok(dir);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {cache}"))?;
    let tmp = cache.join(format!(".{}.tmp-{}", digest.hex(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(err) = skopeo.fetch_to_dir(reference, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err.context(format!("fetching {reference}")));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {tmp} to {dir}"))?;
    Ok(dir)
}

/// The text of `file` from the topmost layer that has it, or `None`.
fn find_file(dir: &Utf8Path, reference: &str, file: &str) -> Result<Option<String>> {
    let manifest_path = dir.join("manifest.json");
    let bytes =
        std::fs::read(&manifest_path).with_context(|| format!("reading {manifest_path}"))?;
    let layers = match parse_manifest(&bytes, reference)? {
        Manifest::Image(layers) => layers,
        Manifest::Index(_) => bail!("{reference}: an index entry points to another index"),
    };
    for layer in layers.iter().rev() {
        let format = layer_format(layer, reference)?;
        let blob = dir.join(layer.digest.hex());
        let corrupt = |what: String| {
            anyhow::anyhow!(
                "layer {} of {reference} is corrupt: {what}\n    fix: if the registry is a mirror, copy the image into it again; otherwise report it to the publisher",
                layer.digest
            )
        };
        let head = read_head(&blob)?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        if (format == LayerFormat::Gzip) != gzip {
            return Err(corrupt(format!(
                "its media type is `{}` but its content {} gzip",
                layer.media_type,
                if gzip { "is" } else { "is not" }
            )));
        }
        let tar = |args: &[&str]| {
            let z: &[&str] = if gzip { &["-z"] } else { &[] };
            Cmd::new("tar").args(z).args(args).read()
        };
        let listing = tar(&["-t", "-f", blob.as_str()])
            .map_err(|e| corrupt(format!("`tar -t` failed: {e}")))?;
        let Some(member) = listing
            .lines()
            .find(|m| m.trim_start_matches("./").trim_start_matches('/') == file)
        else {
            continue;
        };
        let text = tar(&["-x", "-O", "-f", blob.as_str(), member])
            .map_err(|e| corrupt(format!("extracting {member} failed: {e}")))?;
        return Ok(Some(text));
    }
    Ok(None)
}

fn read_head(path: &Utf8Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .with_context(|| format!("opening layer blob {path}"))?
        .take(4)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {path}"))?;
    Ok(head)
}

/// The imager and base installer pins `current` (for the same Talos version) has where `lock`
/// has none: they are not served where this ran.
fn keep_pins(lock: &mut Lock, current: &Lock) {
    if lock.imager.is_none() {
        lock.imager = current.imager.clone();
    }
    if lock.base_installer.is_none() {
        lock.base_installer = current.base_installer.clone();
    }
}

fn fix_command(talos_version: &TalosVersion, skopeo: &Skopeo) -> String {
    format!(
        "run `cargo xtask lock --talos-version {talos_version}{}` and commit {SHOWN}",
        skopeo.mirror_flags()
    )
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let variants = project.load_variants()?;
    let names = used_extensions(&variants);
    let current = match project.load_lock_optional() {
        Ok(current) => current,
        // regenerating is the fix the error suggests, so it must not need a readable lock
        Err(err) if !args.check && !args.dry_run => {
            eprintln!("warning: {err:#}\nwriting a new one");
            None
        }
        Err(err) => return Err(err),
    };
    let talos_version = match &args.talos_version {
        Some(v) => check_version(v)?,
        // none given: the pinned upstream's, else the lock's
        None => pin::talos_version_or(project, current.as_ref().map(|l| &l.talos_version))?.version,
    };
    let skopeo = Skopeo::new(&args.registry)?;

    if args.dry_run {
        print_resolve_commands(
            project,
            &skopeo,
            &talos_version,
            !used_overlays(&variants).is_empty(),
        )?;
        println!(
            "# then {} {SHOWN} with: {}",
            if args.check { "compare" } else { "write" },
            Vec::from_iter(names).join(" ")
        );
        return Ok(());
    }

    let overlays = used_overlays(&variants);
    let mut resolution = match resolve(project, &skopeo, &talos_version, &names, &overlays) {
        Ok(resolution) => resolution,
        // without the registry, --check still says what the lock lacks for sure
        Err(err) if args.check => {
            let offline = current.as_ref().map_or_else(Vec::new, |lock| {
                if lock.talos_version != talos_version {
                    // every entry is resolved again for the release asked for
                    return vec![Finding::new(SHOWN, "talos_version", format!("is for another release than the one asked for ({talos_version}): every entry must be resolved again"))
                        .value(&lock.talos_version)
                        .fix(fix_command(&talos_version, &skopeo))];
                }
                let mut problems = lock.locked_problems(&variants, &talos_version);
                problems.extend(lock.locked_pins_problems(false));
                problems
            });
            if args.json {
                // what it knows, for machines too: never up to date while the registry is out
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "up_to_date": false,
                        "problems": offline.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                        "registry_error": format!("{err:#}"),
                    }))?
                );
            }
            return match diag::into_result(
                &format!("{SHOWN} is not up to date, as far as can be told without the registry"),
                offline,
            ) {
                Ok(()) => Err(err),
                Err(known) => Err(anyhow::anyhow!(
                    "{known:#}\nand what else is out of date cannot be told: {err:#}"
                )),
            };
        }
        Err(err) => return Err(err),
    };
    if let Some(c) = current
        .as_ref()
        .filter(|c| c.talos_version == talos_version)
    {
        keep_pins(&mut resolution.lock, c);
    }
    let fix = fix_command(&talos_version, &skopeo);
    let findings = compare(current.as_ref(), &resolution.lock, &fix);

    if args.check {
        if args.json {
            let problems: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "up_to_date": findings.is_empty(),
                    "problems": problems,
                    "resolution": resolution,
                }))?
            );
        }
        diag::into_result(&format!("{SHOWN} is not up to date"), findings)?;
        if !args.json {
            println!(
                "{SHOWN} is up to date with {} ({} registry command{})",
                resolution.lock.extensions_image,
                resolution.registry_commands,
                diag::plural(resolution.registry_commands as usize)
            );
        }
        return Ok(());
    }

    let path = project.lock_path();
    let text = resolution.lock.to_text();
    let changed = !findings.is_empty();
    if changed {
        infra::fsutil::write_atomic(&path, text.as_bytes())?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "changed": changed,
                "lock": resolution.lock,
                "platform": resolution.platform,
                "registry_commands": resolution.registry_commands,
            }))?
        );
    } else {
        print!("{}", render(&resolution, current.as_ref(), changed));
    }
    Ok(())
}

/// The commands [`resolve`] runs, printed by `--dry-run`s: what is not known before the
/// registry answers is shown as `<...>`.
fn print_resolve_commands(
    project: &Project,
    skopeo: &Skopeo,
    talos_version: &TalosVersion,
    overlays: bool,
) -> Result<()> {
    // Each catalog image: its index, the amd64 manifest's layer copied out, the file read.
    let mut catalogs = vec![(extensions_image(talos_version), "extensions", DIGESTS_FILE)];
    if overlays {
        catalogs.push((overlays_image(talos_version), "overlays", OVERLAYS_FILE));
    }
    for (image, name, file) in catalogs {
        println!("{}", skopeo.inspect_raw_cmd(&image)?);
        let copy = skopeo.copy_cmd(
            &registry::Location::Registry(format!(
                "{EXTENSIONS_REPOSITORY}/{name}@<digest of the linux/amd64 manifest>"
            )),
            &registry::Location::Local(format!(
                "dir:{}/lock/<digest>",
                project.display(&project.target_dir())
            )),
        )?;
        println!("{copy}");
        println!("tar -t -z -f <layer> && tar -x -z -O -f <layer> {file}");
    }
    Ok(())
}

fn render(resolution: &Resolution, previous: Option<&Lock>, changed: bool) -> String {
    let lock = &resolution.lock;
    let mut out = String::new();
    writeln!(
        out,
        "Talos {}: {}{}",
        lock.talos_version,
        lock.extensions_image,
        resolution
            .platform
            .as_ref()
            .map(|p| format!(" ({DIGESTS_FILE} read from {p})"))
            .unwrap_or_default()
    )
    .unwrap();
    for (name, reference) in &lock.extensions {
        let state = match previous.and_then(|p| p.extensions.get(name)) {
            None => "added",
            Some(old) if old == reference => "unchanged",
            Some(old) if old.digest.is_none() => "pinned",
            Some(_) => "updated",
        };
        writeln!(out, "  {name:<10} {reference}  ({state})").unwrap();
    }
    if let Some(catalog) = &lock.overlays_image {
        writeln!(out, "overlays: {catalog}").unwrap();
        for (name, reference) in &lock.overlays {
            let state = match previous.and_then(|p| p.overlays.get(name)) {
                None => "added",
                Some(old) if old == reference => "unchanged",
                Some(_) => "updated",
            };
            writeln!(out, "  {name:<10} {reference}  ({state})").unwrap();
        }
    }
    if let Some(previous) = previous {
        for name in previous.extensions.keys() {
            if !lock.extensions.contains_key(name) {
                writeln!(out, "  {name:<10} removed (no variant uses it)").unwrap();
            }
        }
    }
    if changed {
        writeln!(out, "wrote {SHOWN}: review and commit it").unwrap();
    } else {
        writeln!(out, "{SHOWN} is up to date").unwrap();
    }
    writeln!(
        out,
        "registry: {} command{}",
        resolution.registry_commands,
        diag::plural(resolution.registry_commands as usize)
    )
    .unwrap();
    out
}

/// What the build step calls before building anything: the lock it must build from, for
/// `talos` (the release the caller worked out once, with `pin::talos_version_or`, and checked
/// `--imager` against).
///
/// With `locked`, any missing, stale or unpinned entry for `variants` is an error listing every
/// problem and the fix (nothing is fetched). Without it, a missing, stale or unpinned lock is
/// resolved from the registry (mirrors and auth from `skopeo`), missing and unpinned entries are
/// filled and written to the lock, and the caller is told so on stderr; pinned entries are kept.
/// If the registry cannot be reached, unpinned entries are built as they are (with a warning),
/// but missing ones fail.
pub fn ensure(
    project: &Project,
    variants: &[Variant],
    current: Option<Lock>,
    talos: &Talos,
    locked: Locked,
    skopeo: &Skopeo,
) -> Result<Lock> {
    let (current, problems) = lock_problems(variants, current, talos, locked, skopeo)?;
    if problems.is_empty() {
        return Ok(current.expect("no problems means a lock exists"));
    }
    let talos_version = talos.version.clone();
    let fix = fix_command(&talos_version, skopeo);
    eprintln!(
        "{SHOWN}: {} problem{} for Talos {talos_version}; resolving from the registry:",
        problems.len(),
        domain::diag::plural(problems.len())
    );
    for p in &problems {
        // the fix is what this is about to do
        eprintln!(
            "  {}",
            Finding {
                fix: String::new(),
                ..p.clone()
            }
        );
    }
    let names = used_extensions(variants);
    let resolution = match resolve(
        project,
        skopeo,
        &talos_version,
        &names,
        &used_overlays(variants),
    ) {
        Ok(resolution) => resolution,
        Err(err) => {
            let only_unpinned = current.as_ref().is_some_and(|lock| {
                lock.talos_version == talos_version
                    && variants.iter().all(|v| {
                        lock.resolve(v).missing.is_empty()
                            && lock.overlay(v) != domain::lock::OverlayEntry::Missing
                    })
            });
            if only_unpinned {
                eprintln!(
                    "warning: could not pin the lock; building with the unpinned entries as they are:\n  {}",
                    format!("{err:#}").replace('\n', "\n  ")
                );
                return Ok(current.expect("checked above"));
            }
            return Err(err.context(format!(
                "{SHOWN} is missing entries and the registry could not fill them"
            )));
        }
    };
    let mut lock = resolution.lock;
    if let Some(current) = current.filter(|c| c.talos_version == talos_version) {
        for (name, reference) in &current.extensions {
            let pinned = reference.digest.is_some();
            match lock.extensions.get(name) {
                Some(fresh) if pinned && fresh != reference => {
                    eprintln!("warning: {SHOWN}: extensions.{name} = {reference} but the registry has {fresh}; keeping the locked one ({fix})");
                    lock.extensions.insert(name.clone(), reference.clone());
                }
                None => {
                    // not used by the variants being built: keep it for the others
                    lock.extensions.insert(name.clone(), reference.clone());
                }
                _ => {}
            }
        }
        for (name, reference) in &current.overlays {
            lock.overlays
                .entry(name.clone())
                .or_insert_with(|| reference.clone());
        }
        if lock.overlays_image.is_none() {
            lock.overlays_image = current.overlays_image.clone();
            lock.known_overlays = current.known_overlays.clone();
        }
        keep_pins(&mut lock, &current);
    }
    infra::fsutil::write_atomic(&project.lock_path(), lock.to_text().as_bytes())?;
    eprintln!(
        "filled {SHOWN} from {} ({} registry commands): review and commit it",
        lock.extensions_image, resolution.registry_commands
    );
    Ok(lock)
}

/// Whether a build must use the lock as it is (`--locked`), and whether `--imager` names the
/// imager, so that the lock need not pin one.
#[derive(Clone, Copy)]
pub enum Locked {
    No,
    Yes { imager_given: bool },
}

impl Locked {
    pub fn new(locked: bool, imager_given: bool) -> Locked {
        match locked {
            true => Locked::Yes { imager_given },
            false => Locked::No,
        }
    }
}

/// The lock and what keeps a build for `talos` from using it as it is; with `locked`, any
/// problem is the error (listing all of them and the fix).
fn lock_problems(
    variants: &[Variant],
    current: Option<Lock>,
    talos: &Talos,
    locked: Locked,
    skopeo: &Skopeo,
) -> Result<(Option<Lock>, Vec<Finding>)> {
    let fix = fix_command(&talos.version, skopeo);
    let mut problems = match &current {
        Some(lock) => lock.locked_problems(variants, &talos.version),
        None => vec![Finding::new(SHOWN, "", "missing: there is no lock file").fix(fix)],
    };
    let locked = match locked {
        Locked::No => false,
        Locked::Yes { imager_given } => {
            // every problem at once: the pins a --locked build needs besides the entries too
            if let Some(lock) = &current {
                problems.extend(lock.locked_pins_problems(imager_given));
            }
            true
        }
    };
    if locked && !problems.is_empty() {
        diag::into_result(
            &format!("--locked: {SHOWN} cannot be used as it is"),
            problems.clone(),
        )?;
    }
    Ok((current, problems))
}

/// What [`ensure`] would do, for `build --dry-run`: nothing is fetched or written. With
/// `locked` it fails exactly as a real run would. Otherwise it prints the registry commands a
/// real run would start with and returns the lock the plan can show: entries a real run would
/// resolve (absent, or all of them for another Talos version) carry a `<...>` placeholder tag.
pub fn ensure_dry_run(
    project: &Project,
    variants: &[Variant],
    current: Option<Lock>,
    talos: &Talos,
    locked: Locked,
    skopeo: &Skopeo,
) -> Result<Lock> {
    let (current, problems) = lock_problems(variants, current, talos, locked, skopeo)?;
    if !problems.is_empty() {
        eprintln!(
            "warning: {} lock problem{} would be resolved first from the registry, as `cargo xtask lock` does (a --locked build refuses them):",
            problems.len(),
            domain::diag::plural(problems.len())
        );
        for p in &problems {
            eprintln!("  {}", p.to_string().replace('\n', "\n  "));
        }
        print_resolve_commands(
            project,
            skopeo,
            &talos.version,
            !used_overlays(variants).is_empty(),
        )?;
    }
    Ok(as_resolved(current, &talos.version, variants))
}

/// The lock a dry run plans with: `current` as a run that resolved its problems for
/// `talos_version` would leave it, every entry it would fill (absent, or all of them for another
/// Talos version) a `<...>` placeholder. Nothing is fetched, printed or written.
pub fn as_resolved(
    current: Option<Lock>,
    talos_version: &TalosVersion,
    variants: &[Variant],
) -> Lock {
    let mut lock = current
        .filter(|c| c.talos_version == *talos_version)
        .unwrap_or_else(|| {
            Lock::new(
                talos_version.clone(),
                placeholder(
                    format!("{EXTENSIONS_REPOSITORY}/extensions"),
                    format!("{talos_version}@<digest from the registry>"),
                ),
            )
        });
    for name in used_extensions(variants) {
        lock.extensions.entry(name.clone()).or_insert_with(|| {
            placeholder(
                format!("{EXTENSIONS_REPOSITORY}/{name}"),
                format!("<tag and digest from {DIGESTS_FILE}>"),
            )
        });
    }
    for name in used_overlays(variants) {
        lock.overlays.entry(name.clone()).or_insert_with(|| {
            placeholder(
                format!("{EXTENSIONS_REPOSITORY}/<overlay image>"),
                format!("<tag and digest from {OVERLAYS_FILE}>"),
            )
        });
    }
    lock
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

    fn digests() -> ImageDigests {
        parse_image_digests(
            &format!(
                "ghcr.io/siderolabs/zfs-utils:1.0@{D1}\n\
                 ghcr.io/siderolabs/openzfs:2.0@{D1}\n\
                 ghcr.io/otherorg/zfs:9.9@{D1}\n\
                 ghcr.io/siderolabs/extra/zfs:1@{D1}\n\
                 \n# comment\n\
                 ghcr.io/siderolabs/zfs:2.4.3-v1.13.99@{D2}\n\
                 ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{D3}\n"
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn names_match_the_exact_repository_only() {
        let d = digests();
        assert_eq!(
            d.find("zfs").map(ToString::to_string),
            Some(format!("ghcr.io/siderolabs/zfs:2.4.3-v1.13.99@{D2}"))
        );
        assert_eq!(
            d.find("zfs-utils").map(ToString::to_string),
            Some(format!("ghcr.io/siderolabs/zfs-utils:1.0@{D1}"))
        );
        assert_eq!(d.find("utils"), None);
        assert_eq!(d.find("fs"), None);
        assert_eq!(d.names(), ["drbd", "openzfs", "zfs", "zfs-utils"]);
    }

    #[test]
    fn absent_extensions_are_named_with_the_talos_version() {
        let names: BTreeSet<String> = ["drbd", "zfs", "tailscale", "zfs-util"]
            .map(String::from)
            .into();
        let image = image(&format!("ghcr.io/siderolabs/extensions@{D1}"));
        let err = lock_from_digests(&talos("v1.13.99"), &image, &digests(), &names)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "Talos v1.13.99 has no such extension in ghcr.io/siderolabs/extensions@{D1}"
            )),
            "{err}"
        );
        assert!(
            err.contains("`tailscale`: no ghcr.io/siderolabs/tailscale line"),
            "{err}"
        );
        assert!(
            err.contains(
                "`zfs-util`: no ghcr.io/siderolabs/zfs-util line (did you mean `zfs-utils`?)"
            ),
            "{err}"
        );
        assert!(!err.contains("`zfs`:") && !err.contains("`drbd`:"), "{err}");
    }

    #[test]
    fn malformed_or_ambiguous_digest_files_are_rejected() {
        let err = parse_image_digests(
            &format!("ghcr.io/siderolabs/zfs:1\nghcr.io/siderolabs/a:1@{D1}\nghcr.io/siderolabs/a:2@{D2}\nnot a ref\n"),
            "src",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 1: `ghcr.io/siderolabs/zfs:1` is not `image:tag@sha256:digest`"),
            "{err}"
        );
        assert!(
            err.contains("line 3: ghcr.io/siderolabs/a is listed twice"),
            "{err}"
        );
        assert!(err.contains("line 4: `not a ref`"), "{err}");
    }

    fn lock(extensions: &[(&str, &str)]) -> Lock {
        Lock {
            extensions: extensions
                .iter()
                .map(|(n, r)| (n.to_string(), image(r)))
                .collect(),
            ..Lock::new(
                talos("v1.13.99"),
                image(&format!("ghcr.io/siderolabs/extensions:v1.13.99@{D1}")),
            )
        }
    }

    #[test]
    fn compare_lists_every_missing_stale_and_unused_entry() {
        let zfs = format!("ghcr.io/siderolabs/zfs:2@{D2}");
        let drbd = format!("ghcr.io/siderolabs/drbd:9@{D3}");
        let fresh = lock(&[
            ("zfs", &zfs),
            ("drbd", &drbd),
            ("spin", &format!("ghcr.io/siderolabs/spin:1@{D1}")),
        ]);
        let current = lock(&[
            ("zfs", &format!("ghcr.io/siderolabs/zfs:2@{D1}")),
            ("spin", "ghcr.io/siderolabs/spin:1"),
            ("old", "ghcr.io/siderolabs/old:1"),
        ]);
        let findings: Vec<String> = compare(Some(&current), &fresh, "FIX")
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(findings.len(), 4, "{findings:#?}");
        assert!(findings
            .iter()
            .any(|f| f.contains("`extensions.drbd`: missing: the registry has")));
        assert!(findings.iter().any(|f| f.contains(&format!(
            "`extensions.zfs` = ghcr.io/siderolabs/zfs:2@{D1}: stale: the registry has {zfs}"
        ))));
        assert!(findings
            .iter()
            .any(|f| f.contains("`extensions.spin` = ghcr.io/siderolabs/spin:1: has no digest")));
        assert!(findings
            .iter()
            .any(|f| f
                .contains("`extensions.old` = ghcr.io/siderolabs/old:1: not used by any variant")));
        assert!(findings.iter().all(|f| f.ends_with("fix: FIX")));
        assert!(compare(Some(&fresh), &fresh, "FIX").is_empty());
        assert_eq!(compare(None, &fresh, "FIX").len(), 1);
    }

    #[test]
    fn talos_versions_are_release_tags() {
        for good in ["v1.13.99", "v1.98.0-beta.1"] {
            check_version(good).unwrap();
        }
        for bad in ["1.13.6", "v1.13", "latest", "v1.13.99 ", "v1.x.0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    fn catalog() -> Vec<domain::target::CatalogEntry> {
        ["rpi_generic", "rpi_5", "rock5b"]
            .iter()
            .map(|n| domain::target::CatalogEntry {
                name: n.to_string(),
                image: image(&format!("ghcr.io/siderolabs/sbc-{n}:v0.2.0@{D2}")),
            })
            .collect()
    }

    #[test]
    fn overlays_are_pinned_from_the_catalog_with_every_known_name() {
        let mut l = lock(&[]);
        let names: BTreeSet<String> = ["rpi_generic".to_owned()].into();
        add_overlays(
            &mut l,
            &image(&format!("ghcr.io/siderolabs/overlays:v1.13.99@{D3}")),
            &catalog(),
            &names,
        )
        .unwrap();
        assert_eq!(
            l.overlays["rpi_generic"].to_string(),
            format!("ghcr.io/siderolabs/sbc-rpi_generic:v0.2.0@{D2}")
        );
        assert_eq!(l.known_overlays, ["rock5b", "rpi_5", "rpi_generic"]);
        assert_eq!(Lock::parse(&l.to_text()).unwrap(), l, "round trip");

        let mut l = lock(&[]);
        let err = add_overlays(
            &mut l,
            &image("ghcr.io/c/c:1"),
            &catalog(),
            &["rpi-generic".to_owned()].into(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`rpi-generic` (did you mean `rpi_generic`?)"),
            "{err}"
        );
        assert!(
            err.contains(
                "fix: set `overlay` in variants/*.json to one of: rpi_generic, rpi_5, rock5b"
            ),
            "{err}"
        );
    }

    #[test]
    fn compare_covers_overlays() {
        let mut fresh = lock(&[]);
        add_overlays(
            &mut fresh,
            &image("ghcr.io/siderolabs/overlays:v1.13.99"),
            &catalog(),
            &["rpi_5".to_owned()].into(),
        )
        .unwrap();
        let mut current = fresh.clone();
        assert!(compare(Some(&current), &fresh, "fix").is_empty());
        current.overlays.insert(
            "rpi_5".into(),
            image(&format!("ghcr.io/siderolabs/sbc-rpi_5:v0.1.0@{D1}")),
        );
        current.overlays.insert(
            "rock5b".into(),
            image(&format!("ghcr.io/siderolabs/sbc-rock5b:v0.1.0@{D1}")),
        );
        let text: Vec<String> = compare(Some(&current), &fresh, "fix")
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].contains("`overlays.rpi_5` = ghcr.io/siderolabs/sbc-rpi_5:v0.1.0@"),
            "{text:#?}"
        );
        assert!(
            text[0].contains("stale: the catalog has ghcr.io/siderolabs/sbc-rpi_5:v0.2.0@"),
            "{text:#?}"
        );
        assert!(
            text[1].contains("`overlays.rock5b`") && text[1].contains("not used by any variant"),
            "{text:#?}"
        );
        let without = lock(&[]);
        let text = compare(Some(&without), &fresh, "fix")[0].to_string();
        assert!(text.contains("`overlays_image` = (absent): stale: the registry serves ghcr.io/siderolabs/overlays:v1.13.99"), "{text}");
    }

    #[test]
    fn a_variant_overlay_the_catalog_lacks_is_named_with_a_suggestion() {
        let mut l = lock(&[]);
        add_overlays(
            &mut l,
            &image("ghcr.io/siderolabs/overlays:v1.13.99"),
            &catalog(),
            &["rpi_5".to_owned()].into(),
        )
        .unwrap();
        let v = |overlay: &str| {
            domain::variant::parse(
                "variants/pi.json",
                &format!(r#"{{"name":"pi","description":"d","arch":"arm64","extensions":["drbd"],"repository":"pi/talos","overlay":"{overlay}"}}"#),
            )
            .unwrap()
        };
        assert_eq!(
            l.overlay(&v("rpi_5")),
            domain::lock::OverlayEntry::Locked(&l.overlays["rpi_5"])
        );
        assert_eq!(
            l.overlay(&v("rpi_generic")),
            domain::lock::OverlayEntry::Missing
        );
        let f = l
            .unknown_overlay("variants/pi.json", &v("rpi5"))
            .unwrap()
            .to_string();
        assert!(f.starts_with("variants/pi.json: field `overlay` = \"rpi5\": unknown to the overlays catalog of Talos v1.13.99"), "{f}");
        assert!(f.contains("did you mean \"rpi_5\"?"), "{f}");
        let problems: Vec<_> = l
            .locked_problems(&[v("rpi_generic")], &talos("v1.13.99"))
            .into_iter()
            .filter(|p| p.field.starts_with("overlays"))
            .collect();
        assert_eq!(problems.len(), 1);
        assert!(problems[0]
            .to_string()
            .contains("`overlays.rpi_generic`: missing (the overlay of variant `pi`)"));
    }
}
