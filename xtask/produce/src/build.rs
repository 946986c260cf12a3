//! Subcommand: `cargo xtask build`: run the Talos imager per variant and output, cache by
//! content, and publish the installer by digest.
//!
//! For each planned profile the imager runs in a container (profile on stdin, gzip tar of the
//! outputs on stdout) unless an output with the same content key is already in
//! `_out/<variant>/` with the recorded sha256. Outputs are extracted into a temporary directory
//! and renamed into place, so an interrupted run never leaves a half output that a later run
//! trusts. Publishing happens only after every selected variant built: a failed build pushes
//! nothing and moves no tag. `_out/<variant>/build.json` records what happened.

mod matchbox;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use domain::lock::SHOWN;
use domain::record::{BuildRecord, ExtensionRecord, FileRecord, ImageKind, ProfileRecord, RECORD};
use domain::Lock;
use domain::{Output, Plan, PlannedProfile, TalosVersion, VariantPlan};
use infra::cache;
use infra::cmd::{Cmd, Io, Pipeline, Runner};
use infra::engine::{self, Engine};
use infra::inputs;
use infra::progress::Steps;
use infra::project::Project;
use infra::publish::{self, Publisher};

/// The options `build` and `ci` share, flattened into both with the same environment
/// fallbacks, so that a CI matrix value and a local variable reach either under one name.
#[derive(Clone, clap::Args)]
pub struct Options {
    /// Only these variants (repeatable); default: all.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub registry: inputs::RegistryArg,
    /// Container engine that runs the imager. Default: podman if installed, else docker; an
    /// empty CONTAINER_ENGINE (as a CI matrix without the key sets it) counts as unset.
    #[arg(long, env = "CONTAINER_ENGINE", value_parser = EngineParser)]
    engine: Option<EngineChoice>,
    /// Imager image. Default: ghcr.io/siderolabs/imager:<talos version>.
    #[arg(long, env = "XTASK_IMAGER", value_name = "REF")]
    pub imager: Option<String>,
    /// Publish each variant's installer and matchbox image to the registry: by digest first,
    /// then the Talos version tag and a build-unique tag (`ci` pushes with the build-unique
    /// tag and moves the Talos version tag only after smoke passed).
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub registry_client: infra::registry::RegistryArgs,
    /// Patched upstream CozyStack tree whose matchbox Dockerfile builds the netboot image.
    /// Default: the pinned upstream, patched per variant as `cargo xtask patch --variant <name>` does.
    #[arg(long, env = "XTASK_UPSTREAM_TREE", value_name = "DIR")]
    pub tree: Option<camino::Utf8PathBuf>,
    #[command(flatten)]
    pub upstream: infra::pin::SourceArg,
    /// Skip the matchbox netboot image (a --tree, or XTASK_UPSTREAM_TREE, is then ignored,
    /// with a warning).
    #[arg(long)]
    pub no_matchbox: bool,
    /// Let each imager run pull its images itself instead of fetching every image once per
    /// build into `_out/.oci` and handing it over as an `ociPath` input (the default).
    /// XTASK_NO_PREFETCH: 1, y, yes, t, true or on for this; 0, n, no, f, false, off or empty
    /// for the default.
    #[arg(long, env = "XTASK_NO_PREFETCH", value_parser = no_prefetch_switch)]
    pub no_prefetch: bool,
    /// Override the matchbox Dockerfile's base image (podman `--from`, never pulled), e.g. a
    /// mirror of it for air-gapped builds.
    #[arg(long, env = "XTASK_MATCHBOX_BASE", value_name = "REF")]
    pub matchbox_base: Option<String>,
}

/// `--engine`'s value: an engine, or none for an empty one (`CONTAINER_ENGINE=`), which counts
/// as unset.
#[derive(Clone, Copy)]
struct EngineChoice(Option<Engine>);

/// Parses `--engine` (or CONTAINER_ENGINE) as clap's parser of [`Engine`] does, with the same
/// possible values in `--help`, but takes an empty value for unset, and names the variable
/// beside the option when refusing a value.
#[derive(Clone)]
struct EngineParser;

impl clap::builder::TypedValueParser for EngineParser {
    type Value = EngineChoice;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<EngineChoice, clap::Error> {
        use clap::ValueEnum as _;
        if value.is_empty() {
            return Ok(EngineChoice(None));
        }
        let text = value.to_string_lossy();
        match Engine::from_str(&text, false) {
            Ok(engine) => Ok(EngineChoice(Some(engine))),
            Err(_) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("--engine (or CONTAINER_ENGINE) = {text:?}: not a container engine xtask runs\n    fix: give podman or docker, or leave CONTAINER_ENGINE empty or unset for podman when installed, else docker\n"),
            )
            .with_cmd(cmd)),
        }
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::ValueEnum as _;
        Some(Box::new(
            Engine::value_variants()
                .iter()
                .filter_map(|engine| engine.to_possible_value()),
        ))
    }
}

/// XTASK_NO_PREFETCH's value as a switch (clap hands `--no-prefetch` itself over as `true`):
/// anything but the words for on and off is refused, not read as on.
fn no_prefetch_switch(value: &str) -> Result<bool, String> {
    const ON: [&str; 6] = ["1", "y", "yes", "t", "true", "on"];
    const OFF: [&str; 7] = ["0", "n", "no", "f", "false", "off", ""];
    let word = value.trim().to_ascii_lowercase();
    if ON.contains(&word.as_str()) {
        return Ok(true);
    }
    if OFF.contains(&word.as_str()) {
        return Ok(false);
    }
    Err(format!(
        "XTASK_NO_PREFETCH = {value:?}: neither on nor off\n    fix: set XTASK_NO_PREFETCH to one of {} to skip the prefetch, or to one of {} (or unset it) to prefetch",
        ON.join(", "),
        OFF[..6].join(", ")
    ))
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub options: Options,
    /// Run the imager for the target architecture under qemu emulation (slow fallback; the
    /// native imager builds arm64 outputs without it).
    #[arg(long)]
    pub emulate: bool,
    /// Rebuild every output even when its content key is unchanged.
    #[arg(long)]
    pub force: bool,
    /// Variants built at the same time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Fail before building when the lock has a missing, stale or unpinned entry (CI uses this);
    /// without it, missing entries are resolved from the registry first.
    #[arg(long)]
    pub locked: bool,
    /// Print every command exactly (secrets redacted) and build nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the build records as JSON on stdout; no progress output.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
}

/// How one build runs beyond the shared [`Options`]: from `build`'s own flags, or set by `ci`.
#[derive(Default)]
pub struct Settings {
    pub emulate: bool,
    pub force: bool,
    pub jobs: usize,
    /// Prints the commands instead of running them (`--dry-run`).
    pub runner: Runner,
    /// `--locked`: the imager and the base installer only by the digests the lock pins.
    pub locked: bool,
    /// No progress lines (`--json`, `--dry-run`).
    pub quiet: bool,
    /// Push with the build-unique tag only; `ci` moves the version tag after smoke passed.
    pub unique_tag_only: bool,
    /// Trees already patched per variant (by `ci`'s patch stage), used instead of patching again.
    pub prepared_trees: std::collections::BTreeMap<String, camino::Utf8PathBuf>,
}

/// The patched upstream tree the matchbox image is built from.
pub enum TreeSource {
    /// `--no-matchbox`
    Skip,
    /// `--tree DIR`
    Given(camino::Utf8PathBuf),
    /// The pinned upstream patched per variant (`patch::prepare_variant`), from `--source`.
    Patch { source: Option<String> },
    /// Trees patched per variant beforehand.
    Prepared(std::collections::BTreeMap<String, camino::Utf8PathBuf>),
}

pub struct Ctx<'a> {
    pub project: &'a Project,
    /// Where the matchbox image's patched upstream tree comes from.
    pub tree: TreeSource,
    pub matchbox_base: Option<String>,
    pub engine: Engine,
    pub imager: String,
    pub emulate: bool,
    pub force: bool,
    pub runner: Runner,
    pub progress: Steps,
    /// `None` with `--no-prefetch`: the imager pulls what it needs itself.
    pub prefetch: Option<infra::prefetch::Prefetch>,
    /// The commit the outputs are built from, for their records (`None`: uncommitted changes).
    pub revision: Option<String>,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let records = build(project, &args)?;
    if args.json {
        let out = JsonOutput { variants: &records };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// What `build --json` prints: `{"variants": [<build record>, ...]}`.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    variants: &'a [BuildRecord],
}

impl Options {
    /// `--engine` (or CONTAINER_ENGINE); `None` when neither is given, or the variable is empty.
    pub fn engine(&self) -> Option<Engine> {
        self.engine.and_then(|choice| choice.0)
    }

    /// What can be checked in the options alone, before anything runs or is printed: a dry run
    /// must not show half its commands and then fail on a value given up front.
    pub fn check(&self) -> Result<()> {
        // a registry that names none is refused by resolve, naming where it came from
        match self.registry.resolve()? {
            Some(_) => {}
            // images without a registry would be pushed to Docker Hub, the role as the owner
            None if self.push => return domain::diag::usage("--push needs a registry: pass --registry HOST/OWNER, or set REGISTRY or GITHUB_REPOSITORY_OWNER"),
            None => {}
        }
        if let Some(base) = &self.matchbox_base {
            domain::ImageRef::parse_given(base).map_err(|why| {
                domain::diag::Usage(format!("--matchbox-base (or XTASK_MATCHBOX_BASE) = {:?}: {why}\n    fix: give REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST of the base image", domain::shell::reference_shown(base)))
            })?;
        }
        if let Some(imager) = &self.imager {
            domain::ImageRef::parse_given(imager).map_err(|why| {
                domain::diag::Usage(format!("--imager (or XTASK_IMAGER) = {:?}: {why}\n    fix: give REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST, e.g. ghcr.io/siderolabs/imager:vX.Y.Z", domain::shell::reference_shown(imager)))
            })?;
        }
        self.upstream.check()?;
        match (&self.tree, self.no_matchbox) {
            (Some(tree), false) => {
                matchbox::dockerfile(tree)
                    .map_err(|err| domain::diag::Usage(format!("--tree (or XTASK_UPSTREAM_TREE) {err:#}\n    fix: give a tree `cargo xtask patch` made (target/patched-<variant>), or drop --tree and each variant's is patched")))?;
                crate::patch::check_finished(tree).map_err(|err| {
                    domain::diag::Usage(format!("--tree (or XTASK_UPSTREAM_TREE) {err:#}"))
                })?;
            }
            // not refused: the tree may come from the environment, or a script passes both
            (Some(tree), true) => eprintln!("warning: --tree (or XTASK_UPSTREAM_TREE) {tree} is ignored because --no-matchbox was given: the tree is only for the matchbox image\n    fix: drop --tree (or unset XTASK_UPSTREAM_TREE), or drop --no-matchbox to build the matchbox image from it"),
            (None, _) => {}
        }
        Ok(())
    }
}

/// Builds (and with `--push` publishes) the selected variants; returns their records. The lock
/// is checked (or completed) once and the plan made from exactly that lock.
pub fn build(project: &Project, args: &Args) -> Result<Vec<BuildRecord>> {
    let opts = &args.options;
    let settings = Settings {
        emulate: args.emulate,
        force: args.force,
        jobs: args.jobs.into(),
        runner: Runner::new(args.dry_run),
        locked: args.locked,
        quiet: args.json || args.dry_run,
        ..Settings::default()
    };
    opts.check()?;
    let registry = opts.registry.resolve()?;
    let engine = Engine::detect(opts.engine());
    check_matchbox_base(opts, engine)?;
    let preflight = || {
        let mut needs = engine::build_needs(engine);
        if args.emulate {
            needs.push(engine::EMULATION);
        }
        engine::preflight(&needs)
    };
    // The lock comes first: with --locked nothing is built from a lock that is incomplete or
    // stale (checked without any tool); without it, missing entries are resolved from the
    // registry (and it says so), so the tools are checked before that.
    let mut skopeo = infra::registry::Skopeo::new(&opts.registry_client)?;
    skopeo.runner = settings.runner;
    // variants and lock read once, every problem in either at once
    let inputs = project.read_inputs()?;
    let selected = inputs.variants(&opts.variants)?;
    let current = inputs.lock()?;
    // the imager against the release, before the lock is checked or anything printed
    let talos = infra::pin::talos_version_or(project, current.as_ref().map(|l| &l.talos_version))?;
    check_imager(opts, &talos.version)?;
    let locked = crate::lock::Locked::new(args.locked, opts.imager.is_some());
    let lock = if args.dry_run {
        crate::lock::ensure_dry_run(project, &selected, current, &talos, locked, &skopeo)?
    } else {
        if !args.locked {
            preflight()?;
        }
        let checked = crate::lock::ensure(project, &selected, current, &talos, locked, &skopeo)?;
        if args.locked {
            preflight()?;
        }
        checked
    };
    let plan = domain::plan::make(selected, &lock, talos, registry)?;
    if args.emulate && !args.dry_run {
        for vp in &plan.variants {
            engine::check_emulation(vp.arch)?;
        }
    }
    build_plan(project, opts, &settings, &plan, &lock, &skopeo)
}

/// `--imager` against the release the build is for. The imager puts its own release's kernel
/// into every output, under extensions whose kernel modules (drbd, zfs) are built for the
/// plan's: they would not load. A tag that names no release may move, and outputs are cached by
/// the reference as written: that is a warning.
pub fn check_imager(opts: &Options, talos: &TalosVersion) -> Result<()> {
    let Some((imager, given)) = opts
        .imager
        .as_ref()
        .and_then(|i| Some((i, domain::ImageRef::parse(i).ok()?)))
    else {
        return Ok(());
    };
    let tag = given.tag.as_deref().unwrap_or_default();
    match TalosVersion::parse(tag) {
        Err(_) if given.digest.is_none() => eprintln!("warning: --imager (or XTASK_IMAGER) {imager}: its tag `{tag}` names no Talos release, so neither can the build check that it is the imager of {talos} nor tell when the tag moves: outputs cached with it are reused as they are\n    fix: give the imager by digest (REF@sha256:DIGEST), or `--force` to rebuild"),
        Ok(other) if other.pre.is_none() && other != *talos => return domain::diag::usage(format!("--imager (or XTASK_IMAGER) {imager} is the imager of Talos {other}, but this build is for Talos {talos}: its kernel would not load the kernel modules of extensions built for {talos}\n    fix: drop --imager, or give the imager of {talos}; to build for {other}, run `cargo xtask lock --talos-version {other}` first")),
        _ => {}
    }
    Ok(())
}

fn check_matchbox_base(opts: &Options, engine: Engine) -> Result<()> {
    if opts.matchbox_base.is_some() && !opts.no_matchbox && engine == Engine::Docker {
        return domain::diag::usage("--matchbox-base needs podman: docker build cannot override the Dockerfile's FROM\n    fix: pass --engine podman, or drop --matchbox-base");
    }
    Ok(())
}

/// Builds the variants of `plan` (made by [`build`], or by `ci` from the lock it checked) and
/// with `--push` publishes them. Nothing is reloaded: the plan carries the variants and the
/// locked references.
pub fn build_plan(
    project: &Project,
    opts: &Options,
    settings: &Settings,
    plan: &Plan,
    lock: &Lock,
    skopeo: &infra::registry::Skopeo,
) -> Result<Vec<BuildRecord>> {
    let engine = Engine::detect(opts.engine());
    check_matchbox_base(opts, engine)?;
    // The profiles name the base installer by the lock's digest, and a `--locked` build runs
    // the imager only by digest: `lock::ensure` refused a lock without them, with the same
    // findings; held here too, as this is what runs the imager.
    if settings.locked {
        domain::diag::into_result(
            &format!("--locked: {SHOWN} cannot be used as it is"),
            lock.locked_pins_problems(opts.imager.is_some()),
        )?;
    }
    // `--imager` wins; else the lock's pin; else (never under --locked, above) the tag.
    let imager = match (&opts.imager, &lock.imager) {
        (Some(imager), _) => imager.clone(),
        (None, Some(pinned)) => pinned.to_string(),
        (None, None) => domain::profile::imager_image(&plan.talos_version),
    };
    let progress = Steps::new(settings.quiet);
    let runner = settings.runner;
    if runner.is_dry_run() {
        let installed = which::which(engine.program()).is_ok();
        runner.note(&format!(
            "engine: {engine}{}",
            if installed {
                ""
            } else {
                " (not installed here)"
            }
        ));
    }
    runner.note(&format!("imager: {imager}"));
    let tree = match (&opts.tree, opts.no_matchbox) {
        (_, true) => TreeSource::Skip,
        // `Options::check`, which both callers run first, refused a tree that is not one
        (Some(tree), false) => {
            matchbox::dockerfile(tree)?;
            TreeSource::Given(tree.clone())
        }
        (None, false) if !settings.prepared_trees.is_empty() => {
            TreeSource::Prepared(settings.prepared_trees.clone())
        }
        (None, false) => TreeSource::Patch {
            source: opts.upstream.source.clone(),
        },
    };
    let prefetch = if opts.no_prefetch {
        None
    } else {
        let mut skopeo = infra::registry::Skopeo::new(&opts.registry_client)?;
        skopeo.runner = runner;
        Some(infra::prefetch::Prefetch::new(
            project.out_dir().join(".oci"),
            skopeo,
        ))
    };
    let ctx = Ctx {
        project,
        prefetch,
        tree,
        matchbox_base: opts.matchbox_base.clone(),
        engine,
        imager,
        emulate: settings.emulate,
        force: settings.force,
        runner,
        progress,
        revision: publish::source_revision(project).ok(),
    };

    // One build per checkout: taken once the plan is sound, before anything is written.
    let _lock = runner.silently(|| infra::interrupt::lock_out_dir(project))?;
    // A dry run prints in plan order: one variant after the other.
    let jobs = if runner.is_dry_run() {
        1
    } else {
        settings.jobs
    };
    // While the imagers run, a signal only sets a flag: the loop removes its container and
    // stops (also when `ci` calls this). Outside, the process-wide handlers apply: they remove a
    // registry credential and end the process, so a push or tag is never started after one.
    let records = {
        let _signals = infra::interrupt::catch();
        build_all(&ctx, plan, jobs)?
    };
    infra::interrupt::check()?;
    if opts.push {
        return publish_all(&ctx, plan, records, skopeo, settings.unique_tag_only);
    }
    Ok(records)
}

/// Publishes every built variant in two phases: each image by digest first, and only when all
/// of them are in the registry, the tags. A failed push therefore moves no tag of any variant.
fn publish_all(
    ctx: &Ctx,
    plan: &Plan,
    mut records: Vec<BuildRecord>,
    skopeo: &infra::registry::Skopeo,
    unique_tag_only: bool,
) -> Result<Vec<BuildRecord>> {
    let project = ctx.project;
    let publisher = Publisher::new(project, skopeo);
    // The build-unique tag names this build alone; the Talos version tag is a release tag and
    // moves forward only (or, under `ci`, after smoke passed).
    let tags = publish::unique_tags(project, &plan.talos_version)?;
    let revision = publish::source_revision(project);
    if let Err(err) = &revision {
        let warning = format!(
            "warning: {err:#}; the images record no commit, so no release tag will move to them"
        );
        match ctx.runner.is_dry_run() {
            true => ctx.runner.note(&warning),
            false => ctx.progress.note(&warning),
        }
    }
    let revision = revision.ok();
    let matchbox_planned = |vp: &VariantPlan| builds_matchbox(ctx, vp);
    push_records(
        &PushCtx {
            project,
            progress: &ctx.progress,
            runner: ctx.runner,
            publisher: &publisher,
            revision: revision.as_deref(),
            built: false,
        },
        plan,
        &mut records,
        &matchbox_planned,
    )?;
    for (vp, record) in plan.variants.iter().zip(&mut records) {
        // each target its own tags: `v1.13.6`, `aws-v1.13.6`, `rpi_generic-v1.13.6`
        let tags = target_tags(&vp.target, &tags);
        for p in &mut record.published {
            let started = Instant::now();
            let label = format!("[{}] tag {}@{}", record.variant, p.image, p.digest);
            ctx.progress.run(&label, || publisher.add_tags(p, &tags))?;
            p.tags = tags.clone();
            *record
                .timings
                .entry(format!("push:{}", p.kind))
                .or_default() += started.elapsed().as_secs_f64();
        }
        ctx.runner
            .silently(|| infra::record::write(project, record))?;
    }
    if !unique_tag_only {
        let release = [plan.talos_version.to_string()];
        let mut published = with_target_tags(plan, &mut records, &release);
        let outcome = publisher.move_forward(&mut published, revision.as_deref())?;
        ctx.progress.note(&outcome.summary());
        for record in &records {
            ctx.runner
                .silently(|| infra::record::write(project, record))?;
        }
    }
    Ok(records)
}

/// Every published image of `records` with its release tags, named for its variant's target
/// (`v1.13.6`, `aws-v1.13.6`, `rpi_generic-latest`).
pub fn with_target_tags<'r>(
    plan: &Plan,
    records: &'r mut [BuildRecord],
    tags: &[String],
) -> Vec<(&'r mut domain::record::Published, Vec<String>)> {
    let mut out = Vec::new();
    for record in records.iter_mut() {
        let target = plan
            .variants
            .iter()
            .find(|v| v.name == record.variant)
            .map(|v| &v.target);
        let tags = match target {
            Some(target) => target_tags(target, tags),
            None => tags.to_vec(),
        };
        for p in record.published.iter_mut() {
            out.push((p, tags.clone()));
        }
    }
    out
}

/// Each tag as `target` names it: `v1.13.6`, `aws-v1.13.6`, `rpi_generic-latest`.
pub fn target_tags(target: &domain::target::Target, tags: &[String]) -> Vec<String> {
    let mut named = Vec::new();
    for tag in tags {
        named.push(target.tag(tag));
    }
    named
}

/// What pushing built outputs needs (`build --push`, and `ci --publish-only` on records built
/// by an earlier job).
pub struct PushCtx<'a> {
    pub project: &'a Project,
    pub progress: &'a Steps,
    pub runner: Runner,
    pub publisher: &'a Publisher<'a>,
    /// The commit built, recorded on every manifest.
    pub revision: Option<&'a str>,
    /// The archives are on disk already (`ci --publish-only`): a dry run checks them against
    /// the record too, as the real run does. A build's dry run has built nothing to check.
    pub built: bool,
}

/// Pushes each variant's installer and matchbox archive by digest, after checking each against
/// the sha256 and size its build record gives (a truncated or replaced file is never pushed).
/// `matchbox_planned` says, under `--dry-run` only, whether a matchbox image would be built.
pub fn push_records(
    ctx: &PushCtx,
    plan: &Plan,
    records: &mut [BuildRecord],
    matchbox_planned: &dyn Fn(&VariantPlan) -> bool,
) -> Result<()> {
    for (vp, record) in plan.variants.iter().zip(records.iter_mut()) {
        let dir = ctx.project.out_dir().join(&vp.name);
        // (kind, one archive per arch, repository)
        type Archives = Vec<(domain::Arch, camino::Utf8PathBuf)>;
        let mut images: Vec<(ImageKind, Archives, String)> = Vec::new();
        let per_arch = |name: fn(domain::Arch) -> String| {
            let mut archives = Vec::new();
            for &arch in &vp.target.arches {
                archives.push((arch, dir.join(name(arch))));
            }
            archives
        };
        if vp.variant.builds(Output::Installer) {
            let installer = |arch| domain::output::artifact_name(Output::Installer, arch);
            images.push((ImageKind::Installer, per_arch(installer), vp.image.clone()));
        }
        let matchbox = per_arch(domain::output::matchbox_archive_name);
        // built: the record names the first arch's (an arch missing fails verify_recorded)
        let first = domain::output::matchbox_archive_name(vp.arch);
        let built = record.files.iter().any(|f| f.name == first);
        if let Some(image) = vp.matchbox_image.clone() {
            if built || (ctx.runner.is_dry_run() && matchbox_planned(vp)) {
                images.push((ImageKind::Matchbox, matchbox, image));
            }
        }
        record.published.clear();
        for (kind, archives, image) in images {
            for (_, archive) in &archives {
                let verify = || verify_recorded(ctx.project, record, archive);
                match ctx.built {
                    true => verify().map(Some),
                    false => ctx.runner.silently(verify),
                }
                .with_context(|| {
                    format!(
                        "publishing variant `{}`: nothing was pushed for it",
                        vp.name
                    )
                })?;
            }
            let started = Instant::now();
            let label = format!("[{}] push {kind} to {image} by digest", vp.name);
            let p = ctx
                .progress
                .run(&label, || match archives.as_slice() {
                    [(_, archive)] => {
                        ctx.publisher
                            .push_by_digest(kind, archive, &image, ctx.revision)
                    }
                    several => {
                        ctx.publisher
                            .push_index_by_digest(kind, several, &image, ctx.revision)
                    }
                })
                .with_context(|| format!("publishing variant `{}`: no tag was moved", vp.name))?;
            record.published.push(p);
            record
                .timings
                .insert(format!("push:{kind}"), started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// The file is exactly what the record says was built.
fn verify_recorded(project: &Project, record: &BuildRecord, archive: &Utf8Path) -> Result<()> {
    let name = archive.file_name().unwrap_or_default();
    let shown = project.display(archive);
    let recorded = record
        .files
        .iter()
        .find(|f| f.name == name)
        .with_context(|| {
            format!(
                "{}: `files` lists no {name}: rebuild with `cargo xtask build --variant {}`",
                RECORD, record.variant
            )
        })?;
    let on_disk = cache::file_record(archive).with_context(|| format!("reading {shown}"))?;
    anyhow::ensure!(
        on_disk == *recorded,
        "{shown} is not the file its build record names (sha256 {} and {} bytes on disk, {} and {} recorded): rebuild with `cargo xtask build --variant {}`",
        domain::diag::short(&on_disk.sha256),
        on_disk.size,
        domain::diag::short(&recorded.sha256),
        recorded.size,
        record.variant
    );
    Ok(())
}

/// Whether the matchbox netboot image is built for this variant: it needs the variant's kernel
/// and initramfs, and a patched upstream tree.
fn builds_matchbox(ctx: &Ctx, vp: &VariantPlan) -> bool {
    !matches!(ctx.tree, TreeSource::Skip) && vp.variant.builds_matchbox()
}

fn build_all(ctx: &Ctx, plan: &Plan, jobs: usize) -> Result<Vec<BuildRecord>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<BuildRecord>>>> =
        Mutex::new((0..plan.variants.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(plan.variants.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    // a worker that panics leaves the other workers no further variant
                    let _stop = StopOnPanic(&next, plan.variants.len());
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(vp) = plan.variants.get(i) else {
                            break;
                        };
                        let result = build_variant(ctx, plan, vp)
                            .with_context(|| format!("building variant `{}`", vp.name));
                        results.lock().unwrap()[i] = Some(result);
                    }
                })
            })
            .collect();
        // A worker's panic goes on in this thread with the worker's own payload: left to the
        // scope, it would come out as "a scoped thread panicked", and `main` could no longer
        // tell a closed stdout's panic (`build --dry-run | head`, 141) from a bug.
        let mut panicked = None;
        for worker in workers {
            if let Err(payload) = worker.join() {
                panicked.get_or_insert(payload);
            }
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
    });
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for result in results.into_inner().unwrap().into_iter().flatten() {
        match result {
            Ok(record) => records.push(record),
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    if !errors.is_empty() {
        bail!(
            "{}\nnothing was pushed and no tag was moved",
            errors.join("\n")
        );
    }
    Ok(records)
}

/// Held by a build worker: when the worker panics, the shared index moves past the last
/// variant, so that the other workers start no further one.
struct StopOnPanic<'a>(&'a AtomicUsize, usize);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(self.1, Ordering::SeqCst);
        }
    }
}

fn build_variant(ctx: &Ctx, plan: &Plan, vp: &VariantPlan) -> Result<BuildRecord> {
    let started = Instant::now();
    let dir = ctx.project.out_dir().join(&vp.name);
    ctx.runner.silently(|| {
        std::fs::create_dir_all(dir.join(".cache")).with_context(|| format!("creating {dir}"))
    })?;
    let mut record = BuildRecord {
        arches: vp.target.arches.clone(),
        platform: Some(vp.target.platform.to_string()),
        overlay: vp.target.overlay.as_ref().map(|o| o.name.clone()),
        revision: ctx.revision.clone(),
        ..BuildRecord::new(&vp.name, plan.talos_version.clone(), vp.arch, &ctx.imager)
    };
    for (name, reference) in vp.extensions.iter().zip(&vp.extension_refs) {
        record.extensions.push(ExtensionRecord {
            name: name.clone(),
            reference: reference.clone(),
        });
    }
    for pp in &vp.profiles {
        let step = Instant::now();
        let (profile, file, fetched) = build_output(ctx, plan, vp, pp, &dir)?;
        record.images_fetched += fetched.images;
        record.images_reused += fetched.reused;
        if profile.cache_hit {
            record.cache_hits += 1;
        } else if file.is_some() {
            record.imager_runs += 1;
            record.timings.insert(
                format!("imager:{}", pp.step(vp.target.multi_arch())),
                step.elapsed().as_secs_f64(),
            );
        }
        record.profiles.push(profile);
        record.files.extend(file);
    }
    let tree = match &ctx.tree {
        _ if !builds_matchbox(ctx, vp) => None,
        TreeSource::Skip => None,
        TreeSource::Given(tree) => Some(tree.clone()),
        TreeSource::Prepared(trees) => {
            Some(trees.get(&vp.name).cloned().with_context(|| {
                format!("no patched tree was prepared for variant `{}`", vp.name)
            })?)
        }
        TreeSource::Patch { source } => {
            let label = format!("[{}] patch upstream", vp.name);
            let shown = Cmd::new("cargo")
                .args(["xtask", "patch", "--variant", &vp.name])
                .args(infra::pin::source_flag(source.as_deref()));
            let applied = ctx.runner.act(&shown, || {
                ctx.progress.run(&label, || {
                    crate::patch::prepare_variant(ctx.project, source.as_deref(), vp)
                })
            })?;
            Some(applied.map_or_else(
                || crate::patch::default_out(ctx.project, Some(&vp.name)),
                |applied| applied.tree,
            ))
        }
    };
    if let Some(tree) = &tree {
        // One image per arch, published as one index as the installer is.
        for &arch in &vp.target.arches {
            let step = Instant::now();
            let base = ctx.matchbox_base.as_deref();
            let built = matchbox::build(ctx, vp, arch, tree, base, &record.files)?;
            // `None`: a dry run, which printed the commands
            if let Some((file, hit)) = built {
                if hit {
                    record.cache_hits += 1;
                } else {
                    let spent = record.timings.entry("matchbox".into()).or_default();
                    *spent += step.elapsed().as_secs_f64();
                }
                record.files.push(file);
            }
        }
    }
    record
        .timings
        .insert("total".into(), started.elapsed().as_secs_f64());
    ctx.runner
        .silently(|| infra::record::write(ctx.project, &record))?;
    Ok(record)
}

/// sha256 over everything that changes an output: the exact profile bytes, the imager
/// reference, and whether it ran under emulation. Bump the prefix when this function changes.
pub fn content_key(profile_yaml: &str, imager: &str, emulate: bool) -> String {
    let mut input = format!("xtask-build-key-v1\nimager={imager}\nemulate={emulate}\nprofile=\n");
    input.push_str(profile_yaml);
    infra::fsutil::sha256_hex(input.as_bytes())
}

/// The imager's container name, so that an interrupted run can remove it: the container would
/// otherwise run on after the engine's client is gone. `step` is the output (`installer`, or
/// `installer-arm64` for a multi-arch target).
pub fn container_name(vp: &VariantPlan, step: &str, runner: Runner) -> String {
    format!("xtask-{}-{step}-{}", vp.name, runner.process_tag())
}

fn imager_args(ctx: &Ctx, plan: &Plan, pp: &PlannedProfile, container: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "-i".into()];
    args.extend(["--name".into(), container.to_owned()]);
    if ctx.emulate {
        args.push(format!("--platform=linux/{}", pp.arch));
    }
    if pp.profile.needs_host_devices(&plan.talos_version) {
        args.extend(["--privileged".into(), "-v".into(), "/dev:/dev".into()]);
    }
    if let Some(prefetch) = &ctx.prefetch {
        args.extend(prefetch.volume_args());
    }
    args.extend([ctx.imager.clone(), "--tar-to-stdout".into(), "-".into()]);
    args
}

fn build_output(
    ctx: &Ctx,
    plan: &Plan,
    vp: &VariantPlan,
    pp: &PlannedProfile,
    dir: &Utf8Path,
) -> Result<(ProfileRecord, Option<FileRecord>, infra::prefetch::Fetched)> {
    let (sent, wanted) = match &ctx.prefetch {
        Some(_) => infra::prefetch::with_oci_paths(
            pp.profile.clone(),
            infra::prefetch::imager_arch(pp.arch, ctx.emulate),
        ),
        None => (pp.profile.clone(), Vec::new()),
    };
    let yaml = sent.to_yaml();
    let key = content_key(&yaml, &ctx.imager, ctx.emulate);
    let artifact = dir.join(&pp.artifact);
    let step = pp.step(vp.target.multi_arch());
    let cache_path = dir.join(".cache").join(format!("{step}.json"));
    let mut profile = ProfileRecord {
        kind: pp.kind,
        arch: Some(pp.arch),
        artifact: pp.artifact.clone(),
        profile_sha256: infra::fsutil::sha256_hex(yaml.as_bytes()),
        key: key.clone(),
        cache_hit: false,
        profile: sent.to_json(),
    };
    let label = format!("[{}] {step}", vp.name);

    if !ctx.force {
        if let Some(file) = cache::cached_file(&cache_path, &key, &artifact) {
            ctx.progress
                .note(&format!("{label}: cached ({})", pp.artifact));
            profile.cache_hit = true;
            return Ok((profile, Some(file), Default::default()));
        }
    }
    infra::interrupt::check()?;
    let fetched = match &ctx.prefetch {
        Some(prefetch) => prefetch.ensure(&wanted)?,
        None => Default::default(),
    };
    let container = container_name(vp, &step, ctx.runner);
    let tmp = dir.join(format!(".tmp-{step}"));
    let log = dir.join(format!("imager-{step}.log"));
    let imager = Cmd::new(ctx.engine.program())
        .args(imager_args(ctx, plan, pp, &container))
        .stdin_text("PROFILE", yaml)
        .stderr(Io::File(log.clone()));
    let tar = Cmd::new("tar")
        .args(["-xzf", "-", "-C", tmp.as_str()])
        .stdout(Io::Null);
    let pipeline = imager.pipe(tar);
    let produced = tmp.join(&pp.artifact);
    // printed, so that the pasted pipeline's `tar -C` finds its directory, and empty
    let fresh = format!(
        "{}\n{}",
        Cmd::new("rm").args(["-rf", tmp.as_str()]),
        Cmd::new("mkdir").args(["-p", tmp.as_str()])
    );
    ctx.runner.act(&fresh, || {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {tmp}"))
    })?;
    let ran = ctx.runner.act(&pipeline, || {
        let ran = ctx
            .progress
            .run(&format!("{label}: imager -> {}", pp.artifact), || {
                run_imager(ctx.engine, &pipeline, &container, &tmp, &log)
            });
        if let Err(err) = ran {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(err);
        }
        if !produced.is_file() {
            let found: Vec<String> = tmp
                .read_dir_utf8()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_owned())
                .collect();
            let _ = std::fs::remove_dir_all(&tmp);
            bail!("the imager succeeded but did not write {} (it wrote: {}); is {} the imager for Talos {}?", pp.artifact, if found.is_empty() { "nothing".into() } else { found.join(", ") }, ctx.imager, plan.talos_version);
        }
        // The old cache entry goes first: a crash between the rename and the new entry leaves
        // no entry (the next run rebuilds), never an entry that vouches for another file.
        let _ = std::fs::remove_file(&cache_path);
        Ok(())
    })?;
    let mv = Cmd::new("mv").args([&produced, &artifact]);
    ctx.runner.act(&mv, || {
        std::fs::rename(&produced, &artifact)
            .with_context(|| format!("moving {produced} to {artifact}"))
    })?;
    if ran.is_none() {
        return Ok((profile, None, fetched));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let file = cache::file_record(&artifact)?;
    cache::write_cache(&cache_path, &key, &file)?;
    Ok((profile, Some(file), fetched))
}

/// `ENGINE run ... <<PROFILE | tar -xzf - -C tmp`, the engine's stderr kept in `log`. On SIGINT
/// or SIGTERM (see [`infra::interrupt`]) the container is removed and the run fails.
fn run_imager(
    engine: Engine,
    pipeline: &Pipeline,
    container: &str,
    tmp: &Utf8Path,
    log: &Utf8Path,
) -> Result<()> {
    let mut children = pipeline.spawn()?.into_iter();
    let (mut imager, mut tar) = (
        children.next().expect("the imager"),
        children.next().expect("tar"),
    );
    let status = loop {
        if let Some(status) = imager
            .try_wait()
            .with_context(|| format!("waiting for {engine}"))?
        {
            break status;
        }
        if let Some(sig) = infra::interrupt::pending() {
            // Remove the container first (the client may be creating it), then the client,
            // then anything it created meanwhile.
            let remove = Cmd::new(engine.program())
                .args(["rm", "-f", container])
                .stdout(Io::Null)
                .stderr(Io::Null);
            let _ = remove.status();
            let _ = imager.kill();
            let _ = imager.wait();
            let _ = remove.status();
            let _ = tar.kill();
            let _ = tar.wait();
            bail!(
                "interrupted by {}: removed the imager container {container}; the partial output was dropped",
                infra::interrupt::name(sig)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let tar_out = tar.wait_with_output().context("waiting for tar")?;
    let tar_err = String::from_utf8_lossy(&tar_out.stderr).trim().to_owned();
    // A full disk kills tar, and the imager then fails on the closed pipe: say the cause.
    // GNU tar says "No space left on device", or "Wrote only N of M bytes" for a short write.
    let full = ["No space left on device", "Wrote only "]
        .iter()
        .any(|m| tar_err.contains(m));
    if !tar_out.status.success() && full {
        bail!(
            "the filesystem of {tmp} is full (tar: {tar_err}); the partial output was dropped: free space (the output needs room for every artifact), then run again"
        );
    }
    if !status.success() {
        let tail = infra::cmd::tail(&std::fs::read_to_string(log).unwrap_or_default(), 15);
        bail!("the imager failed ({status}); last lines of {log}:\n{tail}");
    }
    if !tar_out.status.success() {
        bail!(
            "the imager's output is not a complete gzip tar (cut short, or not gzip): {tar_err}; the partial output was dropped"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_output_is_trusted_only_with_its_key_and_its_recorded_bytes() {
        let dir = std::env::temp_dir().join(format!("xtask-cache-unit-{}", std::process::id()));
        let dir = camino::Utf8PathBuf::from_path_buf(dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let artifact = dir.join("kernel-arm64");
        let entry = dir.join("kernel.json");
        std::fs::write(&artifact, "kernel bytes").unwrap();
        assert_eq!(
            cache::cached_file(&entry, "k1", &artifact),
            None,
            "no entry yet"
        );
        let file = cache::file_record(&artifact).unwrap();
        cache::write_cache(&entry, "k1", &file).unwrap();
        assert_eq!(
            cache::cached_file(&entry, "k1", &artifact),
            Some(file.clone())
        );
        assert_eq!(
            cache::cached_file(&entry, "k2", &artifact),
            None,
            "another key"
        );
        // Same size, other bytes: a half-written or corrupted file is not trusted.
        std::fs::write(&artifact, "kernel bytez").unwrap();
        assert_eq!(cache::cached_file(&entry, "k1", &artifact), None);
        std::fs::remove_file(&artifact).unwrap();
        assert_eq!(
            cache::cached_file(&entry, "k1", &artifact),
            None,
            "file gone"
        );
        std::fs::write(&entry, "{not json").unwrap();
        std::fs::write(&artifact, "kernel bytes").unwrap();
        assert_eq!(
            cache::cached_file(&entry, "k1", &artifact),
            None,
            "unreadable entry"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn content_key_changes_with_every_input() {
        let base = content_key("arch: arm64\n", "ghcr.io/siderolabs/imager:v1.13.99", false);
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            content_key("arch: arm64\n", "ghcr.io/siderolabs/imager:v1.13.99", false)
        );
        assert_ne!(
            base,
            content_key("arch: amd64\n", "ghcr.io/siderolabs/imager:v1.13.99", false)
        );
        assert_ne!(
            base,
            content_key("arch: arm64\n", "ghcr.io/siderolabs/imager:v1.13.5", false)
        );
        assert_ne!(
            base,
            content_key("arch: arm64\n", "ghcr.io/siderolabs/imager:v1.13.99", true)
        );
    }
}
