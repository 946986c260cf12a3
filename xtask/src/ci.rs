//! Subcommand: `cargo xtask ci`: what the GitHub workflow runs for each variant.
//!
//! Stages: preflight, lock (`--locked`), patch, build (pushing when a registry is configured),
//! smoke (static checks, then boot), release tags (after smoke passed: the Talos version, and the
//! floating tags from the default branch only),
//! then a Markdown job summary. Output is folded with `::group::`; failures become `::error::`
//! annotations. A failed stage skips the stages after it (the summary lists them as skipped);
//! the exit status is non-zero when any failed.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use domain::record::ImageKind;
use domain::talos::Talos;
use domain::{BuildRecord, TalosVersion};
use infra::engine::{Engine, Need};
use infra::inputs;
use infra::project::{Inputs, Project};
use infra::publish::on_default_branch;
use inspect::smoke::Boot;
use produce::build;
use produce::lock::Locked;

#[derive(clap::Args)]
pub struct Args {
    /// What build takes too; with `--push`: publish installers and matchbox images by digest
    /// with a build-unique tag, and after smoke passed move the Talos version tag (on the
    /// default branch the floating tags too).
    #[command(flatten)]
    pub options: build::Options,
    /// Publish what an earlier `ci` run built and smoke-tested in `_out/` (the workflow's
    /// publish job): check each output against its build record, push it by digest recording
    /// this commit, then move the release tags forward only. Runs no image and no smoke test.
    #[arg(long, conflicts_with = "push")]
    pub publish_only: bool,
    /// With `--publish-only`: push by digest and move no release tag (the workflow attests and
    /// signs the pushed digests before it moves the tags).
    #[arg(long, requires = "publish_only")]
    pub no_release_tags: bool,
    /// Skip the qemu boot (static checks still run). The record says so (`boot_skipped`), and a
    /// later `--publish-only` does not publish such a build; with `--push` in this same run the
    /// release tags still move, as asked.
    #[arg(long, conflicts_with = "publish_only")]
    pub no_boot: bool,
    /// Print every stage's commands, exactly, without running any (no engine, registry or qemu
    /// needed). A lock a real run would stop at is named where it stops, the later stages are
    /// still shown, and the dry run then fails as the real run would.
    #[arg(long)]
    pub dry_run: bool,
}

/// One stage's outcome, for the summary.
pub struct StageResult {
    pub name: &'static str,
    pub ok: bool,
    /// Not run (an earlier stage failed, or nothing to do); `ok` is true so it fails nothing.
    pub skipped: bool,
    pub detail: String,
    pub seconds: f64,
}

/// The stages in order, so the summary lists the ones an earlier failure skipped.
const STAGES: &[&str] = &["preflight", "lock (--locked)", "patch", "build", "smoke"];

fn skipped(name: &'static str, why: &str) -> StageResult {
    StageResult {
        name,
        ok: true,
        skipped: true,
        detail: why.to_owned(),
        seconds: 0.0,
    }
}

/// Runs `f` as a folded stage, turning its error into an annotation.
pub fn stage(
    name: &'static str,
    results: &mut Vec<StageResult>,
    f: impl FnOnce() -> Result<String>,
) -> bool {
    let started = begin_stage(name);
    let result = f();
    end_stage(name, results, started, result)
}

/// Opens a stage's fold; when it started.
fn begin_stage(name: &str) -> Instant {
    if in_github() {
        println!("::group::{name}");
    } else {
        eprintln!("== {name}");
    }
    Instant::now()
}

/// Closes the fold of a stage that `started`, and records how it ended.
fn end_stage(
    name: &'static str,
    results: &mut Vec<StageResult>,
    started: Instant,
    result: Result<String>,
) -> bool {
    let seconds = started.elapsed().as_secs_f64();
    let github = in_github();
    if github {
        println!("::endgroup::");
    }
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(err) => {
            let message = format!("{err:#}");
            if github {
                println!(
                    "::error title=xtask ci: {name}::{}",
                    infra::github::escape_annotation(&message)
                );
            }
            eprintln!("error: {name}: {message}");
            (false, message)
        }
    };
    results.push(StageResult {
        name,
        ok,
        skipped: false,
        detail,
        seconds,
    });
    ok
}

pub fn in_github() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

pub const FLOATING_TAGS: &[&str] = &["latest", "demo-stable"];

/// Moves the release tags of every published image forward only, and records them.
fn move_release_tags(
    project: &Project,
    skopeo: &infra::registry::Skopeo,
    plan: &domain::Plan,
    records: &mut [BuildRecord],
) -> Result<String> {
    let revision = infra::publish::source_revision(project).context("moved no release tag")?;
    let default_branch = on_default_branch(&project.root);
    let tags = release_tags(&plan.talos_version, default_branch);
    let publisher = infra::publish::Publisher::new(project, skopeo);
    // each target its own tags (`aws-v1.13.6`, `rpi_generic-latest`)
    let mut published = build::with_target_tags(plan, records, &tags);
    let outcome = publisher.move_forward(&mut published, Some(&revision))?;
    for record in records.iter() {
        skopeo
            .runner
            .silently(|| infra::record::write(project, record))?;
    }
    let note = if default_branch {
        ""
    } else {
        " (floating tags move only from the default branch)"
    };
    Ok(format!("{}{note}", outcome.summary()))
}

/// The tags that move after smoke passed: the Talos version, and on the default branch the
/// floating ones.
pub fn release_tags(talos_version: &TalosVersion, default_branch: bool) -> Vec<String> {
    let mut tags = vec![talos_version.to_string()];
    if default_branch {
        tags.extend(FLOATING_TAGS.iter().map(|t| t.to_string()));
    }
    tags
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    if args.publish_only {
        // a dry run writes nothing, the lock of _out/ included
        let _lock = match args.dry_run {
            true => None,
            false => Some(infra::interrupt::lock_out_dir(project)?),
        };
        return publish_only(project, &args);
    }
    let mut stages = Vec::new();
    let mut records: Vec<BuildRecord> = Vec::new();
    let mut smoke: Vec<SmokeResult> = Vec::new();
    let mut trees = std::collections::BTreeMap::new();
    let skopeo = infra::registry::Skopeo::new(&args.options.registry_client)?;
    args.options.check()?;
    // variants and lock read once: a variant problem stops ci here (with the lock's problems
    // listed too); the lock stage checks the lock
    let inputs = project.read_inputs()?;
    let selected = inputs.variants(&args.options.variants)?;
    // the imager against the release, when it can be told before the lock stage
    // (worked out once: the lock stage builds for it; its error is that stage's failure)
    let current = inputs.lock().ok().flatten();
    let talos = infra::pin::talos_version_or(project, current.as_ref().map(|l| &l.talos_version));
    if let Ok(talos) = &talos {
        build::check_imager(&args.options, &talos.version)?;
    }
    if args.dry_run {
        return dry_run(project, &args, selected, &inputs, talos);
    }

    let locked = Locked::new(true, args.options.imager.is_some());
    let mut ok = stage("preflight", &mut stages, || {
        let engine = Engine::detect(args.options.engine());
        infra::engine::preflight(&needs(engine, !args.no_boot))?;
        Ok(format!("engine {engine}"))
    });
    // The plan is made from exactly the lock this stage checked; every later stage is handed
    // both, nothing reads them again.
    let mut checked = None;
    ok = ok
        && stage("lock (--locked)", &mut stages, || {
            let current = inputs.lock()?;
            let talos = talos?;
            let lock = produce::lock::ensure(project, &selected, current, &talos, locked, &skopeo)?;
            let plan = domain::plan::make(
                selected.clone(),
                &lock,
                talos,
                args.options.registry.resolve()?,
            )?;
            let line = format!("Talos {}, every extension pinned", plan.talos_version);
            checked = Some((lock, plan));
            Ok(line)
        });
    ok = ok
        && stage("patch", &mut stages, || {
            if args.options.no_matchbox {
                // the patched tree is only the matchbox image's
                return Ok("nothing to patch: --no-matchbox".into());
            }
            if let Some(tree) = &args.options.tree {
                return Ok(format!("using the given tree {tree}"));
            }
            let (_, plan) = checked.as_ref().expect("the lock stage passed");
            for vp in plan.variants.iter().filter(|v| v.variant.builds_matchbox()) {
                let applied = produce::patch::prepare_variant(
                    project,
                    args.options.upstream.source.as_deref(),
                    vp,
                )?;
                trees.insert(vp.name.clone(), applied.tree);
            }
            Ok(format!("{} patched tree(s)", trees.len()))
        });
    ok = ok
        && stage("build", &mut stages, || {
            let (lock, plan) = checked.as_ref().expect("the lock stage passed");
            let settings = build::Settings {
                jobs: 2,
                locked: true,
                unique_tag_only: true,
                prepared_trees: std::mem::take(&mut trees),
                ..build::Settings::default()
            };
            records = build::build_plan(project, &args.options, &settings, plan, lock, &skopeo)?;
            let runs: u32 = records.iter().map(|r| r.imager_runs).sum();
            let hits: u32 = records.iter().map(|r| r.cache_hits).sum();
            Ok(format!("{runs} imager runs, {hits} cache hits"))
        });
    ok = ok
        && stage("smoke", &mut stages, || {
            let (lock, plan) = checked.as_ref().expect("the lock stage passed");
            for vp in &plan.variants {
                let record = records
                    .iter()
                    .find(|r| r.variant == vp.name)
                    .with_context(|| format!("the build returned no record of `{}`", vp.name))?;
                smoke.push(smoke_variant(
                    project,
                    &vp.variant,
                    lock,
                    record,
                    args.no_boot,
                    &skopeo,
                ));
            }
            let mut failed = Vec::new();
            for s in smoke.iter().filter(|s| !s.passed) {
                failed.push(format!("{}: {}", s.variant, s.detail));
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("\n"));
            }
            Ok(format!("{} variant(s) passed", smoke.len()))
        });
    if ok {
        // What `--publish-only` requires of a record: smoke passed on exactly these files, and
        // booted them where smoke boots.
        for record in &mut records {
            record.smoke_passed = true;
            record.boot_skipped = smoke
                .iter()
                .any(|s| s.variant == record.variant && s.boot_skipped);
            infra::record::write(project, record)?;
        }
    }
    for name in STAGES {
        if !stages.iter().any(|s| s.name == *name) {
            stages.push(skipped(name, "skipped: an earlier stage failed"));
        }
    }
    // Without --push nothing is published and the summary has no release-tags row. The build
    // pushed by digest with only the build-unique tag; the tags users pull move here, after
    // smoke passed: the Talos version always, `latest`/`demo-stable` only from the default branch.
    if args.options.push {
        if !ok {
            stages.push(skipped(
                "release tags",
                "skipped: smoke or an earlier stage failed, so no release tag moved",
            ));
        } else {
            let (_, plan) = checked.as_ref().expect("the lock stage passed");
            stage("release tags", &mut stages, || {
                move_release_tags(project, &skopeo, plan, &mut records)
            });
        }
    }

    write_summary(&summary(&stages, &records, &smoke))?;
    failed_stages(&stages)
}

/// Fails naming every stage that failed.
fn failed_stages(stages: &[StageResult]) -> Result<()> {
    let mut failed = Vec::new();
    for s in stages.iter().filter(|s| !s.ok) {
        failed.push(s.name);
    }
    if !failed.is_empty() {
        bail!("ci failed in: {}", failed.join(", "));
    }
    Ok(())
}

/// `ci --publish-only`: push what `_out/` holds (built and smoke-tested by an earlier `ci` run,
/// checked file by file against its record) by digest, then move the release tags.
fn publish_only(project: &Project, args: &Args) -> Result<()> {
    let mut stages = Vec::new();
    let skopeo = infra::registry::Skopeo::new(&args.options.registry_client)?;
    let registry = args.options.registry.resolve()?;
    if registry.is_none() {
        return domain::diag::usage("--publish-only needs a registry: pass --registry HOST/OWNER, or set REGISTRY or GITHUB_REPOSITORY_OWNER");
    }
    let (variants, lock) = inputs::load_inputs(project)?;
    let plan = inputs::plan_of(project, variants, &lock, &args.options.variants, registry)?;
    if args.dry_run {
        return publish_only_dry_run(project, args, &plan, &lock, skopeo);
    }
    let mut records = Vec::new();
    let pushed = stage("publish", &mut stages, || {
        let revision = infra::publish::source_revision(project)?;
        records = smoke_tested_records(project, &plan, &lock, Some(&revision))?;
        publish_records(project, &skopeo, &plan, &mut records, Some(&revision))?;
        for record in &records {
            infra::record::write(project, record)?;
        }
        write_publish_outputs(&records)?;
        let n: usize = records.iter().map(|r| r.published.len()).sum();
        Ok(format!(
            "pushed {n} image(s) by digest, recording commit {revision}"
        ))
    });
    if args.no_release_tags {
        stages.push(skipped("release tags", "skipped: --no-release-tags"));
    } else if pushed {
        stage("release tags", &mut stages, || {
            move_release_tags(project, &skopeo, &plan, &mut records)
        });
    } else {
        stages.push(skipped(
            "release tags",
            "skipped: the push failed, so no release tag moved",
        ));
    }
    write_summary(&summary(&stages, &records, &[]))?;
    failed_stages(&stages)
}

/// The build record of every variant of `plan`, each built and smoke-tested for the plan's Talos
/// version, from this checkout's commit (`revision`), and a build of the variant as the lock has
/// it now: only those are published, each image recording that commit. Every variant's problem
/// at once.
fn smoke_tested_records(
    project: &Project,
    plan: &domain::Plan,
    lock: &domain::Lock,
    revision: Option<&str>,
) -> Result<Vec<BuildRecord>> {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for vp in &plan.variants {
        let shown = project
            .display(&infra::record::path(project, &vp.name))
            .to_owned();
        let rebuild = format!("run `cargo xtask ci --variant {}` first", vp.name);
        let Some(record) = infra::record::read(project, &vp.name)? else {
            problems.push(format!("variant `{}` is not built: only smoke-tested outputs are published; {rebuild} (no {shown})", vp.name));
            continue;
        };
        if record.variant != vp.name {
            problems.push(format!(
                "{shown}: field `variant` is {:?}, expected {:?}: {rebuild}",
                record.variant, vp.name
            ));
        } else if !record.smoke_passed {
            problems.push(format!("{shown}: `smoke_passed` is false: only smoke-tested outputs are published; {rebuild}"));
        } else if record.boot_skipped {
            problems.push(format!("{shown}: `boot_skipped`: smoke passed with the boot skipped (`ci --no-boot`), and only booted images are published; {rebuild} (without --no-boot)"));
        } else if record.talos_version != plan.talos_version {
            problems.push(format!(
                "{shown}: `talos_version` is {}, the lock says {}: {rebuild}",
                record.talos_version, plan.talos_version
            ));
        } else if record.revision.as_deref() != revision {
            problems.push(format!(
                "{shown}: `revision`: {}: its images would record a commit they were not built from; {rebuild}",
                revision_mismatch(record.revision.as_deref(), revision)
            ));
        } else {
            let stale =
                inspect::smoke::check::check_against(&record, shown.as_str(), &vp.variant, lock);
            if stale.is_empty() {
                records.push(record);
            } else {
                let lines: Vec<String> = stale.iter().map(|f| f.to_string()).collect();
                problems.push(format!(
                    "{shown} is not a build of variant `{}` as the lock has it now ({rebuild}):\n    {}",
                    vp.name,
                    lines.join("\n    ").replace('\n', "\n    ")
                ));
            }
        }
    }
    match problems.as_slice() {
        [] => Ok(records),
        [one] => anyhow::bail!("{one}"),
        all => anyhow::bail!(
            "{} variants cannot be published:\n  {}",
            all.len(),
            all.join("\n  ")
        ),
    }
}

/// Why a record's `revision` is not the checkout's commit (`None`: no commit).
fn revision_mismatch(recorded: Option<&str>, checkout: Option<&str>) -> String {
    let built = match recorded {
        Some(r) => format!("built from commit {}", domain::diag::short(r)),
        // records before `revision` existed carry none either
        None => "it records no commit (built from uncommitted changes, outside git, or by an older xtask)".to_owned(),
    };
    let checkout = match checkout {
        Some(r) => format!("commit {}", domain::diag::short(r)),
        None => "no commit (uncommitted changes, or not a git checkout)".to_owned(),
    };
    format!("{built}, but the checkout is {checkout}")
}

/// The publish stage's pushes, through `skopeo`'s runner: each recorded archive by digest (after
/// checking it against its record), then its build-unique tag, noted in `records`.
fn publish_records(
    project: &Project,
    skopeo: &infra::registry::Skopeo,
    plan: &domain::Plan,
    records: &mut [BuildRecord],
    revision: Option<&str>,
) -> Result<()> {
    let publisher = infra::publish::Publisher::new(project, skopeo);
    let progress = infra::progress::Steps::new(skopeo.runner.is_dry_run());
    // what an earlier push of these records (the workflow's, before attesting and signing)
    // recorded: the same images must come out, or no tag moves
    let earlier: Vec<Vec<(String, String)>> = records
        .iter()
        .map(|r| {
            r.published
                .iter()
                .map(|p| (p.image.clone(), p.digest.clone()))
                .collect()
        })
        .collect();
    let push = build::PushCtx {
        project,
        progress: &progress,
        runner: skopeo.runner,
        publisher: &publisher,
        revision,
        built: true,
    };
    build::push_records(&push, plan, records, &|_| false)?;
    if !skopeo.runner.is_dry_run() {
        check_same_images(&earlier, records)?;
    }
    let unique = infra::publish::unique_tags(project, &plan.talos_version)?;
    for (vp, record) in plan.variants.iter().zip(records.iter_mut()) {
        let unique = build::target_tags(&vp.target, &unique);
        for p in &mut record.published {
            publisher.add_tags(p, &unique)?;
            p.tags = unique.clone();
        }
    }
    Ok(())
}

/// Every image pushed now that an earlier push of the same record recorded (`earlier[i]`: image
/// and digest of `records[i]`'s images then) must be that image: the digest attested and signed
/// between the two pushes is the one the tags move to.
fn check_same_images(earlier: &[Vec<(String, String)>], records: &[BuildRecord]) -> Result<()> {
    let mut differ = Vec::new();
    for (before, record) in earlier.iter().zip(records) {
        for p in &record.published {
            for (image, digest) in before.iter().filter(|(image, _)| *image == p.image) {
                if *digest != p.digest {
                    differ.push(format!(
                        "{} {image}: recorded {digest}, pushed now {}",
                        record.variant, p.digest
                    ));
                }
            }
        }
    }
    anyhow::ensure!(
        differ.is_empty(),
        "tagged nothing: the images pushed now are not the ones an earlier push recorded (and the workflow attested and signed):\n  {}\n    fix: publish again from the build (`cargo xtask ci --publish-only --no-release-tags`, then attest and sign the digests it prints) before moving the tags",
        differ.join("\n  ")
    );
    Ok(())
}

/// `ci --publish-only --dry-run`: the publish and release-tag stages through the dry-run runner,
/// refusing what they would refuse (records not smoke-tested, no commit to move tags by).
/// Nothing is pushed or written: no record, output or job summary.
fn publish_only_dry_run(
    project: &Project,
    args: &Args,
    plan: &domain::Plan,
    lock: &domain::Lock,
    mut skopeo: infra::registry::Skopeo,
) -> Result<()> {
    let runner = infra::cmd::Runner::DRY_RUN;
    skopeo.runner = runner;
    let revision = infra::publish::source_revision(project).ok();
    let mut records = smoke_tested_records(project, plan, lock, revision.as_deref())
        .context("a real run stops at its publish stage")?;
    runner.note("stage publish: each image by digest, then its build-unique tag");
    publish_records(project, &skopeo, plan, &mut records, revision.as_deref())?;
    if args.no_release_tags {
        runner.note("stage release tags: skipped (--no-release-tags)");
        return Ok(());
    }
    let tags = release_tags(&plan.talos_version, on_default_branch(&project.root));
    runner.note(&format!("stage release tags: {}", tags.join(", ")));
    move_release_tags(project, &skopeo, plan, &mut records)
        .context("a real run stops at its release tags stage")?;
    Ok(())
}

/// `installer-image`, `installer-digest`, `matchbox-image`, `matchbox-digest` (of the first
/// variant: the workflow publishes one per job) and `images` (every `image@digest`), for the
/// attestation and signing steps.
fn write_publish_outputs(records: &[BuildRecord]) -> Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    if path.is_empty() {
        return Ok(());
    }
    let mut out = String::new();
    if let Some(first) = records.first() {
        for p in &first.published {
            writeln!(out, "{}-image={}", p.kind, p.image).unwrap();
            writeln!(out, "{}-digest={}", p.kind, p.digest).unwrap();
        }
    }
    let mut all = Vec::new();
    for p in records.iter().flat_map(|r| &r.published) {
        all.push(format!("{}@{}", p.image, p.digest));
    }
    writeln!(out, "images={}", all.join(" ")).unwrap();
    anyhow::ensure!(
        out.lines().all(|l| !l.contains('\r')),
        "an image name holds a carriage return"
    );
    infra::fsutil::append(&path, &out).with_context(|| format!("writing GitHub outputs to {path}"))
}

fn write_summary(summary: &str) -> Result<()> {
    match std::env::var("GITHUB_STEP_SUMMARY") {
        Ok(path) if !path.is_empty() => infra::fsutil::append(&path, summary)?,
        _ => eprintln!("\n{summary}"),
    }
    Ok(())
}

/// `ci --dry-run`: each stage in order, as a `# stage ...` line followed by the commands that
/// stage runs. Nothing is run, fetched or written. A lock the real run's lock stage refuses
/// fails the dry run too, after every stage is shown.
fn dry_run(
    project: &Project,
    args: &Args,
    variants: Vec<domain::Variant>,
    inputs: &Inputs,
    talos: Result<Talos>,
) -> Result<()> {
    let opts = &args.options;
    let mut skopeo = infra::registry::Skopeo::new(&opts.registry_client)?;
    let runner = infra::cmd::Runner::DRY_RUN;
    skopeo.runner = runner;
    let engine = Engine::detect(opts.engine());
    let mut tools = Vec::new();
    for need in needs(engine, !args.no_boot) {
        tools.push(need.program);
    }
    runner.note(&format!(
        "stage preflight: checks that these are on PATH: {}",
        tools.join(", ")
    ));
    runner.note("stage lock (--locked): checks variants/extensions.lock offline, runs nothing");
    // the release's error as the lock stage's (the run goes on to show the stages after it)
    let release = || talos.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"));
    let checked = inputs.lock().and_then(|current| {
        let locked = Locked::new(true, opts.imager.is_some());
        produce::lock::ensure_dry_run(project, &variants, current, release()?, locked, &skopeo)
    });
    let (lock, mut stopped) = match checked {
        Ok(checked) => (checked, None),
        Err(err) => {
            runner.note("a real run stops here:");
            for line in format!("{err:#}").lines() {
                runner.note(&format!("  {line}"));
            }
            runner.note("the stages below show what runs once the lock is fixed");
            // the lock as `cargo xtask lock` would complete it; a locked run resolves nothing
            let current = inputs.lock()?;
            let lock = produce::lock::as_resolved(current, &release()?.version, &variants);
            (
                lock,
                Some(err.context("a real run stops at the lock stage")),
            )
        }
    };
    let talos = talos?;
    let locked = stopped.is_none();
    // the plan from exactly that lock, as a real run makes it
    let plan = &domain::plan::make(variants.clone(), &lock, talos, opts.registry.resolve()?)?;
    runner.note("stage patch and build (the build patches each variant's upstream tree):");
    let settings = build::Settings {
        jobs: 2,
        locked,
        runner,
        quiet: true,
        unique_tag_only: true,
        ..build::Settings::default()
    };
    build::build_plan(project, opts, &settings, plan, &lock, &skopeo)?;
    runner.note("stage smoke: static checks of _out/<variant>/ against its build.json (runs nothing), then:");
    for variant in &variants {
        if args.no_boot {
            runner.note(&format!("{}: no boot (--no-boot)", variant.name));
            continue;
        }
        // decided as the real smoke stage decides (`smoke_steps`)
        match inspect::smoke::plan_boot(project, variant) {
            // the runner prints each preparation step and qemu's line, as `smoke --dry-run` does
            Ok(Boot::Qemu(opts)) => {
                inspect::smoke::boot::run(runner, &opts)?;
            }
            Ok(Boot::StaticOnly(reason)) => runner.note(&format!(
                "{}: checked statically only, not booted: {reason}",
                variant.name
            )),
            // the real smoke stage fails on it (after the other variants' boots)
            Err(err) => {
                runner.note(&format!(
                    "{}: a real run fails the smoke stage here: {err:#}",
                    variant.name
                ));
                stopped.get_or_insert(err.context("a real run fails at the smoke stage"));
            }
        }
    }
    if opts.push {
        let tags = release_tags(&plan.talos_version, on_default_branch(&project.root));
        runner.note(&format!(
            "stage release tags (after smoke passed): {}",
            tags.join(", ")
        ));
        // the stage moves tags by this checkout's commit: a real run without one stops here
        if let Err(err) = infra::publish::source_revision(project) {
            runner.note(&format!(
                "a real run stops here: moved no release tag: {err:#}"
            ));
            stopped.get_or_insert(
                err.context("moved no release tag")
                    .context("a real run stops at the release tags stage"),
            );
        }
        let publisher = infra::publish::Publisher::new(project, &skopeo);
        for vp in &plan.variants {
            let matchbox = vp.matchbox_image.clone().filter(|_| !opts.no_matchbox);
            let images = std::iter::once((ImageKind::Installer, vp.image.clone()))
                .chain(matchbox.map(|image| (ImageKind::Matchbox, image)));
            for (kind, image) in images {
                let published = domain::record::Published {
                    kind,
                    image,
                    digest: "<digest pushed by the build>".to_owned(),
                    tags: Vec::new(),
                    arches: Vec::new(),
                };
                publisher.add_tags(&published, &tags)?;
            }
        }
    }
    match stopped {
        // every stage was shown; the run fails as a real run would, where it would
        Some(err) => Err(err.context("ci --dry-run (every stage is shown above)")),
        None => Ok(()),
    }
}

fn needs(engine: Engine, boot: bool) -> Vec<Need> {
    let mut needs = infra::engine::build_needs(engine);
    if boot {
        needs.push(Need {
            program: "qemu-system-aarch64",
            package: "qemu-system-arm",
            why: "boots each image for the smoke test",
        });
    }
    needs
}

/// One variant's smoke outcome, for the summary.
pub struct SmokeResult {
    pub variant: String,
    pub passed: bool,
    pub detail: String,
    pub log: Option<String>,
    /// Static checks and boot together.
    pub seconds: f64,
    /// `--no-boot` skipped the boot of a variant smoke boots (not one checked statically only).
    pub boot_skipped: bool,
}

/// Static checks of the built variant, then (unless `no_boot`) a boot of its kernel and initramfs.
fn smoke_variant(
    project: &Project,
    variant: &domain::variant::Variant,
    lock: &domain::Lock,
    record: &BuildRecord,
    no_boot: bool,
    skopeo: &infra::registry::Skopeo,
) -> SmokeResult {
    let started = Instant::now();
    let mut result = smoke_steps(project, variant, lock, record, no_boot, skopeo);
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn smoke_steps(
    project: &Project,
    variant: &domain::variant::Variant,
    lock: &domain::Lock,
    record: &BuildRecord,
    no_boot: bool,
    skopeo: &infra::registry::Skopeo,
) -> SmokeResult {
    let mut result = SmokeResult {
        variant: variant.name.clone(),
        passed: false,
        detail: String::new(),
        log: None,
        seconds: 0.0,
        boot_skipped: false,
    };
    let checks = inspect::smoke::check::check_built(project, variant, lock, record, skopeo);
    if let Err(err) = checks.to_result() {
        result.detail = format!("{err:#}");
        return result;
    }
    // a role checked statically only is that with or without --no-boot (plan_boot below)
    if no_boot && inspect::smoke::static_only(variant).is_none() {
        result.passed = true;
        result.boot_skipped = true;
        result.detail = "static checks passed (boot skipped)".into();
        return result;
    }
    let booted = match inspect::smoke::plan_boot(project, variant) {
        Ok(Boot::StaticOnly(reason)) => {
            result.passed = true;
            result.detail =
                format!("static checks passed; checked statically only, not booted: {reason}");
            return result;
        }
        Ok(Boot::Qemu(opts)) => inspect::smoke::boot::boot(&opts),
        Err(err) => Err(err),
    };
    match booted {
        Ok(boot) => {
            result.passed = boot.passed();
            result.log = Some(project.display(&boot.log).to_string());
            result.detail = match boot.time_to_expect_s {
                Some(t) if boot.passed() => {
                    format!("static checks passed; booted to maintenance mode in {t:.1}s")
                }
                _ => boot.reason.clone(),
            };
        }
        Err(err) => result.detail = format!("{err:#}"),
    }
    result
}

/// The Markdown job summary: stages with times, then per variant its images, extensions and files.
pub fn summary(stages: &[StageResult], records: &[BuildRecord], smoke: &[SmokeResult]) -> String {
    let mut out =
        String::from("## Talos images\n\n| stage | result | time |\n| --- | --- | --- |\n");
    for s in stages {
        let first_line = s.detail.lines().next().unwrap_or("");
        writeln!(
            out,
            "| {} | {} {} | {:.1}s |",
            s.name,
            match (s.skipped, s.ok) {
                (true, _) => "⏭️",
                (false, true) => "✅",
                (false, false) => "❌",
            },
            md_cell(first_line),
            s.seconds
        )
        .unwrap();
    }
    for r in records {
        let arches = if r.arches.is_empty() {
            r.arch.to_string()
        } else {
            let mut arches = Vec::new();
            for a in &r.arches {
                arches.push(a.as_str());
            }
            arches.join(", ")
        };
        let target = match (r.platform.as_deref().unwrap_or("metal"), &r.overlay) {
            ("metal", None) => String::new(),
            (platform, None) => format!("{platform}, "),
            (platform, Some(overlay)) => format!("{platform}/{overlay}, "),
        };
        writeln!(
            out,
            "\n### {} (Talos {}, {target}{arches})\n",
            r.variant, r.talos_version
        )
        .unwrap();
        if let Some(s) = smoke.iter().find(|s| s.variant == r.variant) {
            let log = s
                .log
                .as_deref()
                .map(|l| format!(" (console log: `{l}`)"))
                .unwrap_or_default();
            let first = md_cell(s.detail.lines().next().unwrap_or(""));
            writeln!(
                out,
                "- smoke: {} {first}{log}",
                if s.passed { "✅" } else { "❌" }
            )
            .unwrap();
        }
        for p in &r.published {
            let index = if p.is_index() {
                format!(" (one index: {})", p.arches.join(", "))
            } else {
                String::new()
            };
            writeln!(
                out,
                "- image: `{}@{}`{index} tags: {}",
                p.image,
                p.digest,
                code_list(&p.tags)
            )
            .unwrap();
        }
        let extensions = code_list(r.extensions.iter().map(|e| &e.reference));
        writeln!(out, "- extensions: {extensions}").unwrap();
        writeln!(
            out,
            "- imager runs: {}, cache hits: {}",
            r.imager_runs, r.cache_hits
        )
        .unwrap();
        writeln!(
            out,
            "- time: {}\n",
            stage_times(r, smoke.iter().find(|s| s.variant == r.variant))
        )
        .unwrap();
        writeln!(out, "| file | size | sha256 |\n| --- | ---: | --- |").unwrap();
        for f in &r.files {
            writeln!(
                out,
                "| `{}` | {} | `{}` |",
                f.name,
                human_size(f.size),
                &f.sha256[..16.min(f.sha256.len())]
            )
            .unwrap();
        }
    }
    out
}

/// `imager:installer 41.2s, matchbox 3.0s, push:installer 5.1s, smoke 62.0s, total 110.3s`:
/// the variant's steps in the order they ran, then its total.
fn stage_times(record: &BuildRecord, smoke: Option<&SmokeResult>) -> String {
    let order = |step: &str| match step.split(':').next() {
        Some("imager") => 0,
        Some("matchbox") => 1,
        Some("push") => 2,
        _ => 3,
    };
    let mut steps: Vec<_> = record
        .timings
        .iter()
        .filter(|(k, _)| *k != "total")
        .collect();
    steps.sort_by_key(|(k, _)| order(k));
    let mut parts = Vec::new();
    for (k, v) in steps {
        parts.push(format!("{k} {v:.1}s"));
    }
    let mut pushes = 0.0;
    for (k, v) in &record.timings {
        if k.starts_with("push:") {
            pushes += v;
        }
    }
    let mut total = record.timings.get("total").copied().unwrap_or(0.0) + pushes;
    if let Some(s) = smoke {
        parts.push(format!("smoke {:.1}s", s.seconds));
        total += s.seconds;
    }
    parts.push(format!("total {total:.1}s"));
    parts.join(", ")
}

/// Each item as Markdown code, comma-separated: `` `a`, `b` ``.
fn code_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "`{item}`").unwrap();
    }
    out
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        ci: Args,
    }

    #[test]
    fn release_tags_move_only_to_the_images_recorded_before() {
        let record = |digest: &str| {
            let mut r = BuildRecord::new(
                "compute",
                TalosVersion::parse("v1.13.99").unwrap(),
                domain::Arch::Arm64,
                "imager",
            );
            r.published.push(domain::record::Published {
                kind: ImageKind::Installer,
                image: "r/acme/talos".into(),
                digest: digest.into(),
                tags: Vec::new(),
                arches: Vec::new(),
            });
            r
        };
        let was = |digest: &str| vec![("r/acme/talos".to_owned(), digest.to_owned())];
        assert!(check_same_images(&[was("sha256:a")], &[record("sha256:a")]).is_ok());
        // the first push (nothing recorded before) and another repository are no comparison
        assert!(check_same_images(&[vec![]], &[record("sha256:b")]).is_ok());
        let other = vec![("r/acme/other".to_owned(), "sha256:a".to_owned())];
        assert!(check_same_images(&[other], &[record("sha256:b")]).is_ok());
        let err = check_same_images(&[was("sha256:a")], &[record("sha256:b")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("compute r/acme/talos: recorded sha256:a, pushed now sha256:b"),
            "{err}"
        );
        // two roles of different targets sharing a repository: each against its own push
        let both = [record("sha256:a"), record("sha256:b")];
        assert!(check_same_images(&[was("sha256:a"), was("sha256:b")], &both).is_ok());
    }

    #[test]
    fn publish_only_refuses_options_of_the_run_it_publishes() {
        use clap::Parser;
        // --publish-only runs no smoke test: a --no-boot beside it would claim a choice it ignores
        for flag in ["--no-boot", "--push"] {
            let err = Cli::try_parse_from(["ci", "--publish-only", flag])
                .err()
                .map(|e| e.to_string());
            let err = err.unwrap_or_else(|| panic!("--publish-only {flag} was accepted"));
            assert!(
                err.contains("'--publish-only'") && err.contains(flag),
                "{err}"
            );
        }
        assert!(Cli::try_parse_from(["ci", "--publish-only", "--no-release-tags"]).is_ok());
        assert!(Cli::try_parse_from(["ci", "--no-boot"]).is_ok());
    }

    /// A record written before records carried `revision` is not called a build of uncommitted
    /// changes: it may be one of a clean commit by an older xtask.
    #[test]
    fn a_record_without_a_revision_is_said_to_record_no_commit() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            revision_mismatch(None, Some(c)),
            "it records no commit (built from uncommitted changes, outside git, or by an older xtask), but the checkout is commit 0123456789ab"
        );
        assert_eq!(
            revision_mismatch(Some(c), None),
            "built from commit 0123456789ab, but the checkout is no commit (uncommitted changes, or not a git checkout)"
        );
        assert_eq!(
            revision_mismatch(Some(c), Some("fedcba9876543210fedcba9876543210fedcba98")),
            "built from commit 0123456789ab, but the checkout is commit fedcba987654"
        );
    }

    #[test]
    fn release_tags_float_only_from_the_default_branch() {
        let v = TalosVersion::parse("v1.13.99").unwrap();
        assert_eq!(release_tags(&v, false), ["v1.13.99"]);
        assert_eq!(
            release_tags(&v, true),
            ["v1.13.99", "latest", "demo-stable"]
        );
    }

    #[test]
    fn the_workflow_installs_every_tool_ci_needs() {
        let workflow = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows/build.yml"),
        )
        .unwrap();
        let installs: Vec<&str> = workflow
            .lines()
            .filter(|l| l.contains("apt-get install"))
            .collect();
        // Only the build job runs the pipeline's tools; publish needs skopeo and git, which
        // GitHub's ubuntu runners have, and installs nothing where the token is.
        assert_eq!(installs.len(), 1, "one install line, in build");
        // What GitHub's ubuntu runners already have.
        let preinstalled = ["docker.io", "tar", "git"];
        for need in needs(Engine::Docker, true) {
            if preinstalled.contains(&need.package) {
                continue;
            }
            for line in &installs {
                assert!(
                    line.split_whitespace().any(|w| w == need.package),
                    "{} ({}) is not installed by: {line}",
                    need.package,
                    need.why
                );
            }
        }
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1_306_525_696), "1.2 GiB");
    }

    #[test]
    fn summary_lists_stages_images_and_files() {
        let stages = vec![
            StageResult {
                name: "build",
                ok: true,
                skipped: false,
                detail: "8 imager runs".into(),
                seconds: 1.25,
            },
            StageResult {
                name: "smoke",
                ok: false,
                skipped: false,
                detail: "kernel panic | at 3s\nmore".into(),
                seconds: 3.0,
            },
            skipped("release tags", "skipped: smoke or an earlier stage failed"),
        ];
        let record = BuildRecord {
            files: vec![domain::record::FileRecord {
                name: "kernel-arm64".into(),
                sha256: "ab".repeat(32),
                size: 2048,
            }],
            published: vec![domain::record::Published {
                kind: ImageKind::Installer,
                image: "ghcr.io/acme/x/talos".into(),
                digest: "sha256:00".into(),
                tags: vec!["v1.13.99".into()],
                arches: Vec::new(),
            }],
            ..BuildRecord::new(
                "gateway",
                domain::TalosVersion::parse("v1.13.99").unwrap(),
                domain::Arch::Arm64,
                "",
            )
        };
        let smoke = vec![SmokeResult {
            variant: "gateway".into(),
            passed: true,
            detail: "booted in 9.1s".into(),
            log: Some("_out/gateway/smoke-console.log".into()),
            seconds: 9.5,
            boot_skipped: false,
        }];
        let mut record = record;
        record.timings = [
            ("total".to_owned(), 40.0),
            ("push:installer".to_owned(), 2.0),
            ("imager:installer".to_owned(), 30.0),
            ("matchbox".to_owned(), 4.0),
        ]
        .into();
        let md = summary(&stages, &[record], &smoke);
        assert!(
            md.contains("- time: imager:installer 30.0s, matchbox 4.0s, push:installer 2.0s, smoke 9.5s, total 51.5s"),
            "{md}"
        );
        assert!(
            md.contains(
                "- smoke: ✅ booted in 9.1s (console log: `_out/gateway/smoke-console.log`)"
            ),
            "{md}"
        );
        assert!(md.contains("| build | ✅ 8 imager runs | 1.2s |"), "{md}");
        assert!(
            md.contains("| smoke | ❌ kernel panic \\| at 3s | 3.0s |"),
            "{md}"
        );
        assert!(
            md.contains("| release tags | ⏭️ skipped: smoke or an earlier stage failed | 0.0s |"),
            "{md}"
        );
        assert!(md.contains("### gateway (Talos v1.13.99, arm64)"), "{md}");
        assert!(
            md.contains("- image: `ghcr.io/acme/x/talos@sha256:00` tags: `v1.13.99`"),
            "{md}"
        );
        assert!(
            md.contains("| `kernel-arm64` | 2.0 KiB | `abababababababab` |"),
            "{md}"
        );
    }
}
