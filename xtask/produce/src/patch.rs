//! Subcommand: `cargo xtask patch`: apply `patches/series` to a copy of the pinned upstream
//! tree with git's own machinery (`git am --3way`, one commit per patch), verify that only the
//! files the patches name changed and with the modes they name, and report what changed.
//! `--check` does it in a throwaway copy; `--refresh` writes the series back from the commits
//! of an edited patched tree; `--variant` writes that variant's imager profiles into the tree,
//! where upstream's Makefile reads them.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::upstream::{self, Upstream};
use domain::diag;
use domain::VariantPlan;
use infra::cmd::{Cmd, Runner};
use infra::inputs;
use infra::pin::SourceArg;
use infra::pin::{self, Pin};
use infra::project::Project;
use infra::series::{self, PatchInfo, SERIES};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArg,
    /// The patched tree. Default: target/patched, or target/patched-<variant> with --variant
    /// (target/ is $CARGO_TARGET_DIR when that is set).
    /// With --refresh: the edited tree to read the series from.
    #[arg(long, value_name = "DIR")]
    pub out: Option<Utf8PathBuf>,
    /// Only verify: apply in a throwaway copy (kept only when a patch fails). With --refresh:
    /// fail when the series differs from what the tree's commits give, write nothing.
    #[arg(long)]
    pub check: bool,
    /// Write the series back from the commits of an edited patched tree (one patch per commit).
    #[arg(long, conflicts_with = "variant")]
    pub refresh: bool,
    /// After applying, write this variant's imager profiles into the tree.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Print the summary as JSON.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
    /// Print the git commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Fixed identity and dates for the commits `git am` makes, so a patched tree's commit ids
/// depend only on the pin and the series.
const COMMITTER: (&str, &str) = ("cargo xtask patch", "xtask@localhost");
const EPOCH: &str = "2000-01-01T00:00:00+0000";
/// Left in the patched tree's git directory: marks a tree this command may replace, and keeps
/// the summary beside it.
const MARKER: &str = "xtask-patch.json";

#[derive(Serialize)]
pub struct Applied {
    pub upstream: UpstreamRef,
    pub tree: Utf8PathBuf,
    /// Commit after the last patch.
    pub head: String,
    /// sha256 over the series file and every patch in it: what build caches key on.
    pub series_digest: String,
    pub patches: Vec<AppliedPatch>,
    /// Imager profiles written for a variant (relative to the tree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantProfiles>,
}

#[derive(Serialize)]
pub struct UpstreamRef {
    pub repository: String,
    pub tag: String,
    pub commit: String,
    pub talos_version: String,
    pub talos_package_dir: Option<String>,
}

#[derive(Serialize)]
pub struct AppliedPatch {
    pub file: String,
    pub subject: String,
    pub commit: String,
    pub changes: Vec<Change>,
}

/// One path a patch changed, as git recorded it (renames are a deletion plus an addition).
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    pub status: &'static str,
    /// `None` for an added file.
    pub old_mode: Option<String>,
    /// `None` for a deleted file.
    pub new_mode: Option<String>,
}

#[derive(Serialize)]
pub struct VariantProfiles {
    pub variant: String,
    pub written: Vec<Utf8PathBuf>,
    /// Upstream's profiles for outputs the variant does not build, removed so that the
    /// Makefile cannot build them with upstream's amd64 settings by mistake.
    pub removed: Vec<Utf8PathBuf>,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    args.source.check()?;
    let pin = Pin::load(project)?;
    if args.refresh {
        let dir = args.out.unwrap_or_else(|| default_out(project, None));
        let report = refresh(project, &pin, &dir, args.check)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.render());
        }
        return Ok(());
    }
    let out = match (&args.out, args.check) {
        (Some(out), _) => out.clone(),
        (None, true) => project.target_dir().join("patch-check"),
        (None, false) => default_out(project, args.variant.as_deref()),
    };
    let runner = Runner::new(args.dry_run);
    if runner.is_dry_run() {
        // a variant a real run would not find fails here too, before any command is printed
        if let Some(name) = &args.variant {
            project.select_variants(std::slice::from_ref(name))?;
        }
        // replaced only when a real run would replace it (git queries only, nothing written)
        if out.exists() {
            if args.variant.is_none() {
                refuse_unsaved_work(project, &pin, &out)?;
            }
            check_replaceable(&out)?;
        }
        // the commands of a run whose `git am` all succeed; the queries between them need the tree
        let cache = pin.cache_dir(project);
        if !cache.is_dir() {
            let upstream = Cmd::new("cargo")
                .args(["xtask", "upstream", "--dry-run"])
                .args(infra::pin::source_flag(args.source.source.as_deref()));
            runner.note(&format!(
                "{cache} is not cached yet: a real run fetches it first, as `{upstream}` shows"
            ));
        }
        let loaded = load_series(project)?;
        let only = args.check.then(|| touched_paths(&loaded));
        if out.exists() {
            runner.run(&Cmd::new("rm").args(["-rf", out.as_str()]))?;
        }
        let mut commands = copy_commands(&cache, &pin.commit, &out, only.as_deref());
        for (_, file, _) in &loaded.patches {
            commands.push(am(&out, file));
        }
        commands.push(stray_status(&out));
        for command in &commands {
            runner.run(command)?;
        }
        if let Some(variant) = &args.variant {
            runner.note(&format!(
                "then write variant `{variant}`'s imager profiles into the tree's images/talos/profiles/ and remove upstream's others there (`cargo xtask profiles --variant {variant}` shows them)"
            ));
        }
        return Ok(());
    }
    // the series is checked before anything is fetched: its problems need no network
    let series = load_series(project)?;
    if args.variant.is_none() {
        refuse_unsaved_work(project, &pin, &out)?;
    }
    // before anything is fetched: an --out that will not be replaced
    if out.exists() {
        check_replaceable(&out)?;
    }
    let upstream = upstream::ensure(project, &pin, args.source.source.as_deref())?;
    let applied = match &args.variant {
        Some(name) => {
            let plan = inputs::load_plan(project, std::slice::from_ref(name), None)?;
            // Images are not named here, so the plan's registry warning does not apply.
            for warning in plan
                .warnings
                .iter()
                .filter(|w| !w.starts_with("no registry"))
            {
                eprintln!("warning: {warning}");
            }
            apply_for_variant(project, &upstream, &series, &plan.variants[0], &out)?
        }
        None if args.check => check(project, &upstream, &series, &out)?,
        None => apply(project, &upstream, &series, &out)?,
    };
    if args.check {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {out}"))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&applied)?);
    } else {
        print!("{}", render(project, &applied, args.check));
    }
    Ok(())
}

/// The commands that copy the pristine tree to `out` and check out `commit` there (sparse,
/// only the paths in `only`, when given), in the order [`prepare_out`] runs them.
fn copy_commands(
    pristine: &Utf8Path,
    commit: &str,
    out: &Utf8Path,
    only: Option<&[String]>,
) -> Vec<Cmd> {
    let clone = isolated(infra::git::anywhere())
        .args([
            "-c",
            "init.defaultBranch=patched",
            "clone",
            "--quiet",
            "--no-checkout",
        ])
        .args([pristine.as_str(), out.as_str()]);
    let mut commands = vec![clone];
    if let Some(paths) = only {
        let patterns: String = paths.iter().map(|p| exact_pattern(p) + "\n").collect();
        commands.push(
            git(out)
                .args(["sparse-checkout", "set", "--no-cone", "--stdin"])
                .stdin_text("PATHS", patterns),
        );
    }
    commands.push(git(out).args([
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--detach",
        commit,
    ]));
    commands
}

/// Applies one patch of the series as a commit.
fn am(out: &Utf8Path, patch: &Utf8Path) -> Cmd {
    git(out).args(AM_ARGS).arg(patch)
}

/// What git still sees once every patch is committed: stray files, edits no patch made, and
/// mode flips on disk.
fn stray_status(out: &Utf8Path) -> Cmd {
    git(out).args([
        "-c",
        "core.fileMode=true",
        "status",
        "--porcelain",
        "-z",
        "--untracked-files=all",
        "--ignored",
    ])
}

/// `git am` keeps the series' authors and messages; the 3-way fallback helps when the tree
/// has the blobs a patch names.
const AM_ARGS: [&str; 3] = ["am", "--3way", "--committer-date-is-author-date"];

/// Where the patched tree goes unless `--out` says otherwise.
pub fn default_out(project: &Project, variant: Option<&str>) -> Utf8PathBuf {
    match variant {
        Some(name) => project.target_dir().join(format!("patched-{name}")),
        None => project.target_dir().join("patched"),
    }
}

/// What the build step calls: the pinned upstream (fetched from `source` when not cached)
/// with the series applied in `target/patched-<variant>` and the variant's locked profiles
/// written where upstream's Makefile reads them (`<talos package>/images/talos/profiles/`).
/// Run `make -C <tree>/<talos_package_dir> ARCH=<arch> ...` there; the tree is recreated on
/// each call, so outputs (`<tree>/_out/assets`) must be collected before the next one.
pub fn prepare_variant(
    project: &Project,
    source: Option<&str>,
    variant: &VariantPlan,
) -> Result<Applied> {
    let pin = Pin::load(project)?;
    let series = load_series(project)?;
    let upstream = upstream::ensure(project, &pin, source)?;
    let out = default_out(project, Some(&variant.name));
    apply_for_variant(project, &upstream, &series, variant, &out)
}

fn apply_for_variant(
    project: &Project,
    upstream: &Upstream,
    series: &LoadedSeries,
    variant: &VariantPlan,
    out: &Utf8Path,
) -> Result<Applied> {
    let mut applied = apply(project, upstream, series, out)?;
    applied.variant = Some(write_variant_profiles(upstream, out, variant)?);
    Ok(applied)
}

/// Runs git in a patched tree with no user or system configuration, so that hooks, signing,
/// diff and format settings cannot change what is applied or written.
fn git(dir: &Utf8Path) -> Cmd {
    isolated(infra::git::at(dir))
        .env("GIT_COMMITTER_NAME", COMMITTER.0)
        .env("GIT_COMMITTER_EMAIL", COMMITTER.1)
        .env("GIT_COMMITTER_DATE", EPOCH)
        .env("GIT_AUTHOR_DATE", EPOCH)
}

/// git without the system's and the user's configuration.
fn isolated(git: Cmd) -> Cmd {
    git.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
}

/// The series, read and checked: every problem in `patches/series` at once.
pub struct LoadedSeries {
    pub patches: Vec<(series::Entry, Utf8PathBuf, String)>,
    pub digest: String,
}

pub fn load_series(project: &Project) -> Result<LoadedSeries> {
    let dir = project.patches_dir();
    let path = dir.join("series");
    infra::fsutil::refuse_symlink(&dir, "patches")?;
    infra::fsutil::refuse_symlink(&path, SERIES)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("reading {SERIES}\n    fix: list the patch files, one per line (docs/patches.md)")
    })?;
    // entries that are well-formed are still checked for their files when others are not
    let (entries, mut findings) = series::check_series(&text);
    let mut patches = Vec::new();
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    for entry in entries {
        let file = dir.join(&entry.name);
        // the file, or a directory between it and patches/ (`sub/x.patch`)
        let linked = file.ancestors().take_while(|a| *a != dir).find_map(|a| {
            let below = a.strip_prefix(&dir).unwrap_or(a);
            infra::fsutil::symlink_finding(a, &format!("patches/{below}"))
        });
        if let Some(finding) = linked {
            findings.push(finding);
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(body) => {
                for part in [entry.name.as_bytes(), b"\0", body.as_bytes(), b"\0"] {
                    hasher.update(part);
                }
                patches.push((entry, file, body));
            }
            Err(err) => findings.push(
                diag::Finding::new(SERIES, format!("line {}", entry.line), format!("patches/{} cannot be read: {err}", entry.name))
                    .value(format!("{:?}", entry.name))
                    .fix("add the patch file to patches/, or remove the line (`cargo xtask patch --refresh` rewrites the list)"),
            ),
        }
    }
    diag::into_result(SERIES, findings)?;
    let digest = domain::image::hex(&hasher.finalize());
    Ok(LoadedSeries { patches, digest })
}

/// Copies the pristine tree to `out` (replacing a tree this command made before) and applies
/// the series there, one commit per patch. On failure the tree stays as git left it.
pub fn apply(
    project: &Project,
    upstream: &Upstream,
    series: &LoadedSeries,
    out: &Utf8Path,
) -> Result<Applied> {
    apply_in(project, upstream, series, out, Checkout::Full)
}

/// How much of the upstream tree the copy checks out.
enum Checkout {
    /// Every file: a tree to build in.
    Full,
    /// Only the files the series touches (a sparse checkout over the full index): enough to
    /// apply and verify the series, and a fraction of the disk writes, for `--check`.
    Touched,
}

/// `--check`: applies in a sparse copy, and confirms a failure in a full one, so that the
/// sparse shortcut can never be the reason a series is reported broken.
fn check(
    project: &Project,
    upstream: &Upstream,
    series: &LoadedSeries,
    out: &Utf8Path,
) -> Result<Applied> {
    apply_in(project, upstream, series, out, Checkout::Touched)
        .or_else(|_| apply_in(project, upstream, series, out, Checkout::Full))
}

fn apply_in(
    project: &Project,
    upstream: &Upstream,
    loaded: &LoadedSeries,
    out: &Utf8Path,
    checkout: Checkout,
) -> Result<Applied> {
    let touched = match checkout {
        Checkout::Full => None,
        Checkout::Touched => Some(touched_paths(loaded)),
    };
    prepare_out(upstream, out, touched.as_deref())?;
    let mut patches = Vec::new();
    for (index, (entry, file, text)) in loaded.patches.iter().enumerate() {
        let info = series::parse_patch(text);
        let output = am(out, file)
            .output()
            .with_context(|| format!("running git am in {out}"))?;
        if !output.status.success() {
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return Err(failure(
                project,
                upstream,
                out,
                index,
                &entry.name,
                file,
                &info,
                &said,
                &loaded.patches[index + 1..],
            ));
        }
        let commit = git(out).args(["rev-parse", "HEAD"]).read()?;
        let raw = git(out)
            .args([
                "diff-tree",
                "-r",
                "-z",
                "--raw",
                "--no-renames",
                "--no-commit-id",
            ])
            .arg(&commit)
            .read()?;
        let changes = parse_raw(&raw);
        let problems = verify_patch(&info, &changes);
        if !problems.is_empty() {
            bail!(
                "patch {} applied, but not as written:\n  {}\n    the tree is kept at {out}",
                entry.name,
                problems.join("\n  ")
            );
        }
        patches.push(AppliedPatch {
            file: entry.name.clone(),
            subject: info.subject.clone(),
            commit,
            changes,
        });
    }
    // Every change is committed by now: anything git still sees is a stray file or an edit no
    // patch made (a mode flip on disk shows up here as well).
    let status = stray_status(out).read()?;
    let stray = parse_status(&status);
    if !stray.is_empty() {
        bail!(
            "applying the series left {} path{} that no patch names in {out}:\n  {}\n    fix: remove them from the patches (`git -C {out} show --stat`), then refresh",
            stray.len(),
            domain::diag::plural(stray.len()),
            stray.join("\n  ")
        );
    }
    let head = git(out).args(["rev-parse", "HEAD"]).read()?;
    let applied = Applied {
        upstream: UpstreamRef {
            repository: upstream.repository.clone(),
            tag: upstream.tag.clone(),
            commit: upstream.commit.clone(),
            talos_version: upstream.talos_version.to_string(),
            talos_package_dir: upstream.talos_package_dir.clone(),
        },
        tree: out.to_owned(),
        head,
        series_digest: loaded.digest.clone(),
        patches,
        variant: None,
    };
    let git_dir = out.join(".git");
    infra::fsutil::write_atomic(
        &git_dir.join(MARKER),
        serde_json::to_string_pretty(&applied)?.as_bytes(),
    )?;
    Ok(applied)
}

/// Every path a patch of the series reads or writes (copy and rename sources included).
fn touched_paths(loaded: &LoadedSeries) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for (_, _, text) in &loaded.patches {
        for file in series::parse_patch(text).files {
            paths.insert(file.old_path);
            paths.insert(file.path);
        }
    }
    paths.into_iter().collect()
}

/// A sparse-checkout pattern (gitignore syntax) that matches exactly `path`.
fn exact_pattern(path: &str) -> String {
    let mut pattern = String::from("/");
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#' | ' ') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// The tree the refresh workflow edits in place is not replaced while it holds work the series
/// does not have: edits, or commits not refreshed yet. A tree still at the head this command
/// recorded, or left by a failed run (no head recorded), is replaced as before.
fn refuse_unsaved_work(project: &Project, pin: &Pin, out: &Utf8Path) -> Result<()> {
    let Ok(marker) = std::fs::read_to_string(out.join(".git").join(MARKER)) else {
        return Ok(());
    };
    let recorded: serde_json::Value = serde_json::from_str(&marker).unwrap_or_default();
    let Some(head) = recorded["head"].as_str() else {
        return Ok(());
    };
    let clean = git(out).args(["status", "--porcelain"]).read().ok() == Some(String::new());
    if clean && git(out).args(["rev-parse", "HEAD"]).read().ok().as_deref() == Some(head) {
        return Ok(());
    }
    match refresh(project, pin, out, true) {
        Ok(_) => Ok(()),
        Err(err) => bail!("not replacing {out}: it holds work that patches/ does not have yet; {err:#}\n    or discard that work: `rm -rf {out}`, then run this again"),
    }
}

/// A tree `cargo xtask patch` made is one its last run finished: the marker records the head
/// after the last patch, and no `git am` stopped half way. A tree it did not make (no marker)
/// is the user's to vouch for.
pub fn check_finished(tree: &Utf8Path) -> Result<()> {
    let git_dir = tree.join(".git");
    let Ok(marker) = std::fs::read_to_string(git_dir.join(MARKER)) else {
        return Ok(());
    };
    // a failed run first: it may also have left its `git am` half way, which no `am` command
    // mends (only a finished run records the head)
    let recorded: serde_json::Value = serde_json::from_str(&marker).unwrap_or_default();
    if recorded["head"].as_str().is_none() {
        bail!("{tree}: the last `cargo xtask patch` into it failed ({} records no head after the last patch), so it is not the patched tree\n    fix: run `cargo xtask patch` again once the series applies (`cargo xtask patch --check` says why it fails), or give another tree", git_dir.join(MARKER));
    }
    if git_dir.join("rebase-apply").exists() {
        bail!("{tree}: a `git am` in it stopped half way, so its matchbox image would lack the rest of the series\n    fix: finish it (`git -C {tree} am --continue`, or `--abort`), or run `cargo xtask patch` again")
    }
    Ok(())
}

/// `out` may be replaced: it is a tree `cargo xtask patch` made, or empty.
fn check_replaceable(out: &Utf8Path) -> Result<()> {
    let ours = out.join(".git").join(MARKER).is_file();
    let empty = out
        .read_dir()
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !ours && !empty {
        bail!("{out} exists and is not a tree `cargo xtask patch` made\n    fix: remove it, or choose another --out");
    }
    Ok(())
}

fn prepare_out(upstream: &Upstream, out: &Utf8Path, only: Option<&[String]>) -> Result<()> {
    if out.exists() {
        check_replaceable(out)?;
        std::fs::remove_dir_all(out)
            .with_context(|| format!("removing the previous tree {out}"))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    }
    let pristine = &upstream.tree;
    let mut commands = copy_commands(pristine, &upstream.commit, out, only).into_iter();
    let clone = commands.next().expect("the copy starts with a clone");
    clone
        .run()
        .with_context(|| format!("copying the upstream tree {pristine} to {out}"))?;
    // Marked at once, so that a tree left by a failed run is replaced by the next one.
    std::fs::write(out.join(".git").join(MARKER), "{}\n")?;
    for command in commands {
        command
            .run()
            .with_context(|| format!("checking out {} in {out}", upstream.commit))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn failure(
    project: &Project,
    upstream: &Upstream,
    out: &Utf8Path,
    index: usize,
    name: &str,
    file: &Utf8Path,
    info: &PatchInfo,
    said: &str,
    rest: &[(series::Entry, Utf8PathBuf, String)],
) -> anyhow::Error {
    // A 3-way attempt can hide the failing hunk behind "could not build fake ancestor"; a plain
    // check of the same patch against the last good commit names it.
    let index_file = out.join(".git").join("xtask-check-index");
    let checked = git(out)
        .args(["read-tree", "HEAD"])
        .env("GIT_INDEX_FILE", &index_file)
        .run()
        .ok()
        .and_then(|()| {
            git(out)
                .args(["apply", "--cached", "--check", "--verbose"])
                .arg(file)
                .env("GIT_INDEX_FILE", &index_file)
                .output()
                .ok()
        })
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&index_file);
    let found = series::diagnose(info, &format!("{said}\n{checked}"));
    let shown = project.display(out);
    let mut message = format!(
        "patch {name} ({}) does not apply to CozyStack {} ({})",
        info.subject,
        upstream.tag,
        domain::diag::short(&upstream.commit)
    );
    if let Some(path) = &found.file {
        message.push_str(&format!("\n  file: {path}"));
    }
    match &found.hunk {
        Some((number, hunk)) => message.push_str(&format!(
            "\n  hunk: #{number} of that file, `{}` (at line {} of the file before the patch)",
            hunk.header, hunk.old_start
        )),
        None if found.file.is_some() => {
            message.push_str("\n  hunk: none (the file itself is the problem)")
        }
        None => {}
    }
    if !found.conflicts.is_empty() {
        message.push_str(&format!(
            "\n  conflict markers left in: {}",
            found.conflicts.join(", ")
        ));
    }
    if let (Some(path), Some(layout)) = (&found.file, &upstream.talos_package_dir) {
        if !path.starts_with(layout.as_str())
            && pin::TALOS_PACKAGE_DIRS.iter().any(|d| path.starts_with(d))
        {
            message.push_str(&format!("\n  note: this upstream keeps its Talos packaging in {layout}, the patch is written for another layout: such a release needs its own series"));
        }
    }
    for line in &found.git_errors {
        message.push_str(&format!("\n  git: {line}"));
    }
    message.push_str(&format!(
        "\n  the tree is kept for inspection at {shown}: {index} patch{} applied, {name} in progress (`git -C {shown} am --show-current-patch=diff`)\n    fix: edit the files in {shown} until the change is right, then `git -C {shown} add -A && git -C {shown} am --continue` (or `am --skip` to drop the patch)",
        if index == 1 { "" } else { "es" },
    ));
    if !rest.is_empty() {
        let mut files = String::new();
        for (_, file, _) in rest {
            files.push(' ');
            files.push_str(file.as_str());
        }
        message.push_str(&format!(
            ";\n    apply the remaining patches: `git -C {shown} am --3way{files}`"
        ));
    }
    message.push_str(&format!(
        ";\n    then `cargo xtask patch --refresh --out {shown}` writes the series back from the tree's commits"
    ));
    anyhow::anyhow!(message)
}

/// `git diff-tree --raw -z --no-renames` output: `:<old mode> <new mode> <old> <new> <status>\0<path>\0`.
pub fn parse_raw(raw: &str) -> Vec<Change> {
    let mut fields = raw.split('\0').filter(|f| !f.is_empty());
    let mut changes = Vec::new();
    while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if parts.len() < 5 {
            continue;
        }
        let mode = |m: &str| (m != "000000").then(|| m.to_owned());
        changes.push(Change {
            path: path.to_owned(),
            status: match parts[4].chars().next() {
                Some('A') => "added",
                Some('D') => "deleted",
                Some('T') => "type-changed",
                _ => "modified",
            },
            old_mode: mode(parts[0]),
            new_mode: mode(parts[1]),
        });
    }
    changes
}

/// What a patch changed compared with what it says: the same paths, and the modes it names
/// (no more, no less: a lost exec bit or a stray file is a problem, not a detail).
pub fn verify_patch(info: &PatchInfo, changes: &[Change]) -> Vec<String> {
    let mut problems = Vec::new();
    let declared = info.touched();
    let mut changed = BTreeSet::new();
    for change in changes {
        changed.insert(change.path.clone());
    }
    for path in changed.difference(&declared) {
        problems.push(format!("{path} changed, but the patch does not name it"));
    }
    for path in declared.difference(&changed) {
        problems.push(format!("{path} is named by the patch, but did not change"));
    }
    for change in changes {
        let Some(actual) = &change.new_mode else {
            continue;
        };
        let wanted = info
            .files
            .iter()
            .find(|f| f.path == change.path)
            .and_then(|f| f.declared_mode());
        match wanted {
            Some(wanted) if wanted != actual => problems.push(format!(
                "{} has mode {actual}, the patch gives it {wanted}",
                change.path
            )),
            None if change.old_mode.as_ref().is_some_and(|old| old != actual) => {
                problems.push(format!(
                    "{} changed mode {} -> {actual}, which the patch does not say",
                    change.path,
                    change.old_mode.as_deref().unwrap_or("")
                ))
            }
            _ => {}
        }
    }
    problems
}

/// Paths in `git status --porcelain -z` output (rename entries carry a second path).
pub fn parse_status(status: &str) -> Vec<String> {
    infra::git::status_entries(status)
        .into_iter()
        .map(|(code, path)| format!("{code} {path}"))
        .collect()
}

/// Writes the variant's imager profiles into a patched tree, at
/// `<talos package>/images/talos/profiles/<kind>.yaml` where upstream's Makefile reads them
/// (`build-talos-<kind>`), and removes upstream's profiles for kinds the variant does not
/// build. Upstream's generator script is not run. The pristine cache is refused. Upstream reads
/// one profile per kind, so a role with several architectures gets its first architecture's
/// (`VariantPlan::arch`, the one the matchbox image and the qemu boot use).
pub fn write_variant_profiles(
    upstream: &Upstream,
    tree: &Utf8Path,
    variant: &VariantPlan,
) -> Result<VariantProfiles> {
    if tree.canonicalize_utf8().ok() == upstream.tree.canonicalize_utf8().ok() {
        bail!("{tree} is the pristine upstream cache, which is never changed\n    fix: write profiles into a patched tree (`cargo xtask patch --variant {}`)", variant.name);
    }
    let package = pin::find_talos_package_dir(tree).with_context(|| {
        format!(
            "{tree} has no Talos packaging (images/talos/profiles/installer.yaml) in a directory its Makefile enters, nor under {}",
            pin::TALOS_PACKAGE_DIRS.join(" or ")
        )
    })?;
    let relative = Utf8PathBuf::from(package).join("images/talos/profiles");
    let dir = tree.join(&relative);
    let profiles: Vec<_> = variant
        .profiles
        .iter()
        .filter(|planned| planned.arch == variant.arch)
        .collect();
    let mut wanted = Vec::with_capacity(profiles.len());
    for planned in &profiles {
        wanted.push(format!("{}.yaml", planned.kind.name()));
    }
    let mut removed = Vec::new();
    let existing = sorted_names(&dir).with_context(|| format!("reading {dir}"))?;
    for name in existing {
        if name.ends_with(".yaml") && !wanted.contains(&name) {
            std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing {name}"))?;
            removed.push(relative.join(&name));
        }
    }
    let mut written = Vec::new();
    for (profile, name) in profiles.iter().zip(&wanted) {
        infra::fsutil::write_atomic(&dir.join(name), profile.profile.to_yaml().as_bytes())?;
        written.push(relative.join(name));
    }
    Ok(VariantProfiles {
        variant: variant.name.clone(),
        written,
        removed,
    })
}

fn render(project: &Project, applied: &Applied, check: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let up = &applied.upstream;
    writeln!(
        out,
        "upstream  CozyStack {} ({}), Talos {}",
        up.tag, up.commit, up.talos_version
    )
    .unwrap();
    for patch in &applied.patches {
        writeln!(out, "applied   {}: {}", patch.file, patch.subject).unwrap();
        for change in &patch.changes {
            let mode = match (&change.old_mode, &change.new_mode) {
                (Some(old), Some(new)) if old != new => format!("{old} -> {new}"),
                (_, Some(mode)) | (Some(mode), None) => mode.clone(),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "          {:<9} {mode}  {}",
                change.status, change.path
            )
            .unwrap();
        }
    }
    if let Some(variant) = &applied.variant {
        for path in &variant.written {
            writeln!(out, "profile   {path} ({})", variant.variant).unwrap();
        }
        for path in &variant.removed {
            writeln!(
                out,
                "removed   {path} (not an output of {})",
                variant.variant
            )
            .unwrap();
        }
    }
    let count = applied.patches.len();
    let plural = if count == 1 { "" } else { "es" };
    if check {
        let verb = if count == 1 { "applies" } else { "apply" };
        writeln!(out, "ok: {count} patch{plural} {verb} cleanly; only the files named changed, with the modes named").unwrap();
    } else {
        writeln!(
            out,
            "patched tree: {} ({count} patch{plural}; only the files they name changed, no stray files)",
            project.display(&applied.tree)
        )
        .unwrap();
    }
    out
}

#[derive(Serialize)]
pub struct RefreshReport {
    pub tree: Utf8PathBuf,
    pub base: String,
    /// Every patch file of the new series in order, then the ones it no longer lists.
    pub patches: Vec<RefreshedPatch>,
    pub written: bool,
}

#[derive(Serialize)]
pub struct RefreshedPatch {
    pub file: String,
    /// `unchanged`, `updated`, `added` or `removed`.
    pub state: &'static str,
}

impl RefreshReport {
    fn render(&self) -> String {
        let mut out = String::new();
        for RefreshedPatch { file, state } in &self.patches {
            out.push_str(&format!("{state:<9} patches/{file}\n"));
        }
        let changed = self.patches.iter().any(|p| p.state != "unchanged");
        out.push_str(&match (changed, self.written) {
            (false, _) => "the series matches the tree's commits\n".to_owned(),
            (true, true) => format!("wrote {SERIES} from the commits of {}\n", self.tree),
            (true, false) => unreachable!("a stale --check fails before rendering"),
        });
        out
    }
}

/// Regenerates the series from the commits on top of the pinned commit in `dir`, one patch per
/// commit, in the stable form `series::normalize` gives. With `check`, only compares.
/// The names of the files in `dir`, sorted; entries that cannot be read or whose names are not
/// UTF-8 are skipped.
fn sorted_names(dir: &Utf8Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub fn refresh(project: &Project, pin: &Pin, dir: &Utf8Path, check: bool) -> Result<RefreshReport> {
    if !dir.join(".git").exists() {
        bail!("{dir} is not a patched tree\n    fix: `cargo xtask patch --out {dir}`, commit your edits there, then refresh");
    }
    if dir.join(".git/rebase-apply").exists() {
        bail!("{dir} is in the middle of `git am`\n    fix: finish it first: `git -C {dir} am --continue` (or `--skip`, `--abort`)");
    }
    let status = git(dir)
        .args(["status", "--porcelain", "-z", "--untracked-files=all"])
        .read()?;
    let dirty = parse_status(&status);
    if !dirty.is_empty() {
        bail!(
            "{dir} has changes that are not committed:\n  {}\n    fix: commit them (`git -C {dir} commit --amend`, or a new commit for a new patch) or discard them, then refresh",
            dirty.join("\n  ")
        );
    }
    let base = &pin.commit;
    let range = format!("{base}..HEAD");
    if git(dir)
        .args(["merge-base", "--is-ancestor", base, "HEAD"])
        .run()
        .is_err()
    {
        bail!("{dir} is not based on the pinned commit {base} ({})\n    fix: refresh from a tree `cargo xtask patch` made at the current pin", pin::SHOWN);
    }
    let merges = git(dir)
        .args(["rev-list", "--min-parents=2"])
        .arg(&range)
        .read()?;
    if !merges.is_empty() {
        bail!("{dir} has merge commits above the pin; a series is a straight line of commits\n    fix: rebase them away (`git -C {dir} rebase {base}`)");
    }
    let tmp = project
        .target_dir()
        .join(format!("refresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = git(dir)
        .args([
            "format-patch",
            "--quiet",
            "--no-signature",
            "--zero-commit",
            "--no-stat",
            "--no-numbered",
            "--full-index",
            "--binary",
            "--find-renames",
            "--find-copies",
            "-o",
        ])
        .arg(&tmp)
        .arg(&range)
        .run()
        .context("git format-patch");
    let mut generated = Vec::new();
    if result.is_ok() {
        for name in sorted_names(&tmp)? {
            let text = std::fs::read_to_string(tmp.join(&name))?;
            generated.push((name, series::normalize(&text)));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result?;

    let patches_dir = project.patches_dir();
    let series_path = patches_dir.join("series");
    let old_text = std::fs::read_to_string(&series_path).unwrap_or_default();
    let mut old_names = Vec::new();
    for entry in series::parse_series(&old_text).unwrap_or_default() {
        old_names.push(entry.name);
    }
    let mut new_names = Vec::new();
    for (name, _) in &generated {
        new_names.push(name.clone());
    }
    let new_series = series::render_series(&series::series_header(&old_text), &new_names);
    let mut patches = Vec::new();
    for (name, text) in &generated {
        let state = match std::fs::read_to_string(patches_dir.join(name)) {
            Ok(old) if old == *text && old_names.contains(name) => "unchanged",
            Ok(_) if old_names.contains(name) => "updated",
            _ => "added",
        };
        patches.push(RefreshedPatch {
            file: name.clone(),
            state,
        });
    }
    for name in &old_names {
        if !new_names.contains(name) {
            patches.push(RefreshedPatch {
                file: name.clone(),
                state: "removed",
            });
        }
    }
    let stale = patches.iter().any(|p| p.state != "unchanged") || new_series != old_text;
    if check {
        if stale {
            let mut list = Vec::new();
            for p in &patches {
                if p.state != "unchanged" {
                    list.push(format!("{} patches/{}", p.state, p.file));
                }
            }
            bail!(
                "the series differs from the commits of {dir}:\n  {}\n    fix: cargo xtask patch --refresh --out {dir}",
                if list.is_empty() { format!("{SERIES} itself") } else { list.join("\n  ") }
            );
        }
        return Ok(RefreshReport {
            tree: dir.to_owned(),
            base: base.clone(),
            patches,
            written: false,
        });
    }
    for (name, text) in &generated {
        infra::fsutil::write_atomic(&patches_dir.join(name), text.as_bytes())?;
    }
    for name in &old_names {
        if !new_names.contains(name) {
            let path = patches_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("removing {path}"))?;
            }
        }
    }
    infra::fsutil::write_atomic(&series_path, new_series.as_bytes())?;
    Ok(RefreshReport {
        tree: dir.to_owned(),
        base: base.clone(),
        patches,
        written: stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_patch_did_not_finish_is_named_for_what_stopped_it() {
        let dir = std::env::temp_dir().join(format!("xtask-check-finished-{}", std::process::id()));
        let tree = Utf8PathBuf::from_path_buf(dir).unwrap();
        let git_dir = tree.join(".git");
        std::fs::create_dir_all(&git_dir).unwrap();
        let err = |tree: &Utf8Path| format!("{:#}", check_finished(tree).unwrap_err());
        // a tree patch did not make is the user's
        check_finished(&tree).unwrap();
        // its last run failed before recording the head
        std::fs::write(git_dir.join(MARKER), "{}\n").unwrap();
        let failed = err(&tree);
        assert!(
            failed.contains("the last `cargo xtask patch` into it failed"),
            "{failed}"
        );
        assert!(!failed.contains("git am"), "{failed}");
        // a failed run that left its `git am` half way: the run is what failed (no `am`
        // command records the head)
        std::fs::create_dir(git_dir.join("rebase-apply")).unwrap();
        let both = err(&tree);
        assert!(
            both.contains("the last `cargo xtask patch` into it failed"),
            "{both}"
        );
        std::fs::remove_dir(git_dir.join("rebase-apply")).unwrap();
        // a finished run, then a `git am` of the refresh workflow stopped half way
        std::fs::write(git_dir.join(MARKER), r#"{"head": "abc"}"#).unwrap();
        check_finished(&tree).unwrap();
        std::fs::create_dir(git_dir.join("rebase-apply")).unwrap();
        let stopped = err(&tree);
        assert!(
            stopped.contains("a `git am` in it stopped half way"),
            "{stopped}"
        );
        assert!(stopped.contains("am --continue"), "{stopped}");
        assert!(!stopped.contains("failed"), "{stopped}");
        std::fs::remove_dir_all(&tree).unwrap();
    }

    #[test]
    fn raw_diff_lists_paths_and_modes() {
        let raw = ":100644 100755 1111 2222 M\0pkg/run.sh\0:000000 100644 0000 3333 A\0pkg/new\0:100644 000000 4444 0000 D\0pkg/old\0";
        let changes = parse_raw(raw);
        assert_eq!(
            changes,
            [
                Change {
                    path: "pkg/run.sh".into(),
                    status: "modified",
                    old_mode: Some("100644".into()),
                    new_mode: Some("100755".into())
                },
                Change {
                    path: "pkg/new".into(),
                    status: "added",
                    old_mode: None,
                    new_mode: Some("100644".into())
                },
                Change {
                    path: "pkg/old".into(),
                    status: "deleted",
                    old_mode: Some("100644".into()),
                    new_mode: None
                },
            ]
        );
    }

    fn patch(body: &str) -> PatchInfo {
        series::parse_patch(&format!("Subject: [PATCH] t\n\n{body}"))
    }

    #[test]
    fn a_lost_exec_bit_or_an_unnamed_file_is_a_problem() {
        let info = patch(
            "diff --git a/run.sh b/run.sh\n--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-a\n+b\n",
        );
        let lost = [Change {
            path: "run.sh".into(),
            status: "modified",
            old_mode: Some("100755".into()),
            new_mode: Some("100644".into()),
        }];
        assert_eq!(
            verify_patch(&info, &lost),
            ["run.sh changed mode 100755 -> 100644, which the patch does not say"]
        );
        let stray = [
            Change {
                path: "run.sh".into(),
                status: "modified",
                old_mode: Some("100755".into()),
                new_mode: Some("100755".into()),
            },
            Change {
                path: "run.sh.tmp".into(),
                status: "added",
                old_mode: None,
                new_mode: Some("100644".into()),
            },
        ];
        assert_eq!(
            verify_patch(&info, &stray),
            ["run.sh.tmp changed, but the patch does not name it"]
        );
    }

    #[test]
    fn a_rename_matches_a_deletion_plus_an_addition() {
        let info = patch("diff --git a/p/d.json b/p/amd64/d.json\nsimilarity index 100%\nrename from p/d.json\nrename to p/amd64/d.json\n");
        let changes =
            parse_raw(":000000 100644 0 1 A\0p/amd64/d.json\0:100644 000000 1 0 D\0p/d.json\0");
        assert!(verify_patch(&info, &changes).is_empty());
    }

    /// The committed series as `--refresh` would write it: every listed file there, in the
    /// stable form, touching only upstream's Talos packaging.
    #[test]
    fn committed_series_is_complete_and_in_refresh_form() {
        let project = Project::discover().unwrap();
        let loaded = load_series(&project).unwrap();
        assert!(!loaded.patches.is_empty());
        for (entry, _, text) in &loaded.patches {
            assert_eq!(
                &series::normalize(text),
                text,
                "patches/{} is not in refresh form: run `cargo xtask patch --refresh`",
                entry.name
            );
            let info = series::parse_patch(text);
            assert!(!info.subject.is_empty(), "{}", entry.name);
            for path in info.touched() {
                assert!(
                    path.starts_with("packages/core/talos/"),
                    "{} touches {path}",
                    entry.name
                );
            }
        }
    }

    #[test]
    fn sparse_patterns_match_one_path_literally() {
        assert_eq!(
            exact_pattern("packages/core/talos/Makefile"),
            "/packages/core/talos/Makefile"
        );
        assert_eq!(exact_pattern("a b/[x]*.md"), "/a\\ b/\\[x\\]\\*.md");
    }

    #[test]
    fn status_paths_are_listed_with_their_code() {
        let status = "?? junk.tmp\0 M Makefile\0R  new\0old\0!! _out/x\0";
        assert_eq!(
            parse_status(status),
            ["?? junk.tmp", "M Makefile", "R new", "!! _out/x"]
        );
    }
}
