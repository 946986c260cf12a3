//! Publishing images: push by digest first, then add tags to that digest, so a tag never
//! points at something other than what was built and checked.
//!
//! All registry traffic goes through `registry::Skopeo` (credentials, mirrors, loopback
//! registries over plain HTTP, bounded retries, `--dry-run` printing); secrets never reach a
//! command line.
//!
//! Every pushed manifest records the commit it was built from (the OCI annotation
//! `org.opencontainers.image.revision`), and release tags move forward only: a tag moves to a new
//! image only when the commit its current image records is an ancestor of this run's commit, or
//! when the tag does not exist yet ([`judge`]). When that cannot be established, nothing moves.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::project::Project;
use crate::registry::{Location, Skopeo};
use domain::diag::short;
use domain::record::{ImageKind, Published};
use domain::{Arch, Digest, TalosVersion};

pub struct Publisher<'a> {
    skopeo: &'a Skopeo,
    work: Utf8PathBuf,
    /// The checkout whose history decides whether a tag may move.
    root: Utf8PathBuf,
}

impl<'a> Publisher<'a> {
    pub fn new(project: &Project, skopeo: &'a Skopeo) -> Publisher<'a> {
        Publisher {
            skopeo,
            work: project.target_dir().join("publish"),
            root: project.root.clone(),
        }
    }

    /// Pushes a docker-archive to `image` by digest only; [`Publisher::add_tags`] tags it later.
    /// `revision` (the commit built) is recorded on the manifest as [`REVISION`].
    pub fn push_by_digest(
        &self,
        kind: ImageKind,
        archive: &Utf8Path,
        image: &str,
        revision: Option<&str>,
    ) -> Result<Published> {
        let layout = self.fresh_layout(image)?;
        // An OCI layout first: its manifest digest is what the registry will store, so the
        // push can name the digest and nothing is tagged before it exists.
        let oci = Location::Local(format!("oci:{layout}:build"));
        self.skopeo
            .copy(&Location::Local(format!("docker-archive:{archive}")), &oci)
            .with_context(|| format!("reading {archive}"))?;
        let runner = self.skopeo.runner;
        let digest = match revision {
            Some(rev) => runner
                .act(
                    &format!("# annotate the manifest in {layout}: {REVISION}={rev}"),
                    || annotate_layout(&layout, &[(REVISION, rev)]),
                )?
                .unwrap_or_else(|| "<digest of the annotated OCI manifest>".to_owned()),
            None => runner
                .silently(|| layout_digest(&layout))?
                .unwrap_or_else(|| "<digest of the OCI manifest>".to_owned()),
        };
        self.skopeo
            .copy(&oci, &Location::Registry(format!("{image}@{digest}")))
            .with_context(|| format!("pushing {archive} to {image}"))?;
        self.remove_layout(&layout)?;
        Ok(Published {
            kind,
            image: image.to_owned(),
            digest,
            tags: Vec::new(),
            arches: Vec::new(),
        })
    }

    /// Pushes one docker-archive per architecture to `image` as one OCI image index, by the
    /// index's digest only: each archive becomes an image in one OCI layout, an index listing
    /// them with their platforms is written beside them, and the layout is copied whole.
    /// `revision` is recorded on the index as [`REVISION`].
    pub fn push_index_by_digest(
        &self,
        kind: ImageKind,
        archives: &[(Arch, Utf8PathBuf)],
        image: &str,
        revision: Option<&str>,
    ) -> Result<Published> {
        let layout = self.fresh_layout(image)?;
        for (arch, archive) in archives {
            self.skopeo
                .copy(
                    &Location::Local(format!("docker-archive:{archive}")),
                    &Location::Local(format!("oci:{layout}:{arch}")),
                )
                .with_context(|| format!("reading {archive}"))?;
        }
        let (mut arches, mut platforms, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (arch, _) in archives {
            arches.push(*arch);
            platforms.push(format!("linux/{arch}"));
            names.push(arch.to_string());
        }
        let shown = format!(
            "# write an OCI image index of {} into {layout} (index.json then names it `build`)",
            platforms.join(", ")
        );
        let digest = self
            .skopeo
            .runner
            .act(&shown, || {
                let digest = write_layout_index(&layout, &arches)?;
                match revision {
                    Some(rev) => annotate_layout(&layout, &[(REVISION, rev)]),
                    None => Ok(digest),
                }
            })?
            .unwrap_or_else(|| "<digest of the OCI image index>".to_owned());
        self.skopeo
            .copy_with(
                &Location::Local(format!("oci:{layout}:build")),
                &Location::Registry(format!("{image}@{digest}")),
                true,
            )
            .with_context(|| format!("pushing the {kind} index to {image}"))?;
        self.remove_layout(&layout)?;
        Ok(Published {
            kind,
            image: image.to_owned(),
            digest,
            tags: Vec::new(),
            arches: names,
        })
    }

    /// An empty place for the OCI layout of `image` (and its parent); a dry run needs none.
    fn fresh_layout(&self, image: &str) -> Result<Utf8PathBuf> {
        let layout = self.work.join(format!(
            "oci-{}",
            crate::fsutil::sha256_hex(image.as_bytes())
        ));
        self.skopeo.runner.silently(|| {
            let _ = std::fs::remove_dir_all(&layout);
            std::fs::create_dir_all(&self.work).with_context(|| format!("creating {}", self.work))
        })?;
        Ok(layout)
    }

    /// The layout is in the registry now.
    fn remove_layout(&self, layout: &Utf8Path) -> Result<()> {
        self.skopeo.runner.silently(|| {
            let _ = std::fs::remove_dir_all(layout);
            Ok(())
        })?;
        Ok(())
    }

    /// Points each tag at what is already in the registry by digest (every image of an index).
    pub fn add_tags(&self, published: &Published, tags: &[String]) -> Result<()> {
        let (image, digest) = (&published.image, &published.digest);
        for tag in tags {
            self.skopeo
                .copy_with(
                    &Location::Registry(format!("{image}@{digest}")),
                    &Location::Registry(format!("{image}:{tag}")),
                    published.is_index(),
                )
                .with_context(|| format!("tagging {image}@{digest} as {tag}"))?;
        }
        Ok(())
    }
}

/// What happened to the release tags of one run.
#[derive(Default)]
pub struct Outcome {
    /// `image:tag` moved to this run's digest.
    pub moved: Vec<String>,
    /// `image:tag` already pointed at it.
    pub already: Vec<String>,
    /// `image:tag` left alone, and why.
    pub kept: Vec<(String, String)>,
}

impl Outcome {
    /// One line for the summary table, then one line per tag left alone.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "moved {} release tag{}",
            self.moved.len(),
            domain::diag::plural(self.moved.len())
        );
        if !self.already.is_empty() {
            line.push_str(&format!(", {} already there", self.already.len()));
        }
        if !self.kept.is_empty() {
            let mut kept = Vec::new();
            for (tag, why) in &self.kept {
                kept.push(format!("{tag} ({why})"));
            }
            line.push_str(&format!("; left alone: {}", kept.join("; ")));
        }
        line
    }
}

impl Publisher<'_> {
    /// Moves each published image's release tags forward only (see [`judge`]): all tags are
    /// judged first, and when any cannot be, none moves and the error lists why. `revision` is
    /// this run's commit (`None`: unknown, so nothing can be established).
    pub fn move_forward(
        &self,
        published: &mut [(&mut Published, Vec<String>)],
        revision: Option<&str>,
    ) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        let runner = self.skopeo.runner;
        let Some(revision) = revision else {
            // a dry run refuses it as the real run does, after showing the pushes before it
            anyhow::bail!("moved no release tag: this run's commit is unknown, so whether its images are newer than the tagged ones cannot be established");
        };
        check_release_ref(&self.root, revision)?;
        if runner.is_dry_run() {
            runner.note(&format!("release tags move forward only: each is read with `skopeo inspect --raw`, and moves when the commit its image records ({REVISION}) is an ancestor of this one (`git merge-base --is-ancestor`)"));
            for (p, tags) in published.iter() {
                self.add_tags(p, tags)?;
            }
            return Ok(outcome);
        }
        let mut plan = Vec::new();
        let mut unsure = Vec::new();
        for (i, (p, tags)) in published.iter().enumerate() {
            for tag in tags {
                let current = current(self.skopeo, &p.image, tag);
                let verdict = judge(&current, &p.digest, &mut |recorded| {
                    ancestry(&self.root, recorded, revision)
                });
                let name = format!("{}:{tag}", p.image);
                match verdict {
                    Verdict::Unsure(doubt) => unsure.push(format!(
                        "{name}: {}\n    fix: {}",
                        doubt.why(),
                        doubt.fix(&p.image, tag)
                    )),
                    v => plan.push((i, tag.clone(), name, v)),
                }
            }
        }
        anyhow::ensure!(
            unsure.is_empty(),
            "moved no release tag: whether this run's images (commit {}) are newer than the tagged ones cannot be established:\n  {}",
            short(revision),
            unsure.join("\n  ")
        );
        for (i, tag, name, verdict) in plan {
            let p = &mut published[i].0;
            match verdict {
                Verdict::Move => {
                    self.add_tags(p, std::slice::from_ref(&tag))?;
                    p.tags.push(tag);
                    outcome.moved.push(name);
                }
                Verdict::AlreadyThere => {
                    if !p.tags.contains(&tag) {
                        p.tags.push(tag);
                    }
                    outcome.already.push(name);
                }
                Verdict::Keep(why) => outcome.kept.push((name, why)),
                Verdict::Unsure(_) => unreachable!("refused above"),
            }
        }
        Ok(outcome)
    }
}

/// The OCI annotation that records the commit an image was built from.
pub const REVISION: &str = "org.opencontainers.image.revision";

/// Adds annotations to the single manifest of an OCI layout (a new blob, and `index.json`
/// pointing at it); returns the new manifest digest. The old manifest blob stays unreferenced.
fn annotate_layout(layout: &Utf8Path, annotations: &[(&str, &str)]) -> Result<String> {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path)?;
    let old = layout_digest(layout)?;
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let old_path = blob(&old);
    let mut manifest: serde_json::Value = domain::json::from_bytes(
        &std::fs::read(&old_path).with_context(|| format!("reading {old_path}"))?,
    )
    .with_context(|| format!("parsing {old_path}"))?;
    let map = manifest
        .as_object_mut()
        .with_context(|| format!("{old_path}: the manifest is not a JSON object"))?
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    let map = map
        .as_object_mut()
        .with_context(|| format!("{old_path}: annotations is not an object"))?;
    for (key, value) in annotations {
        map.insert((*key).to_owned(), serde_json::Value::from(*value));
    }
    let bytes = serde_json::to_vec(&manifest)?;
    let digest = Digest::of_bytes(&bytes).to_string();
    crate::fsutil::write_atomic(&blob(&digest), &bytes)?;
    let entry = &mut index["manifests"][0];
    entry["digest"] = digest.clone().into();
    entry["size"] = bytes.len().into();
    crate::fsutil::write_atomic(&index_path, &serde_json::to_vec(&index)?)?;
    Ok(digest)
}

/// The image index of an OCI layout's images, one per arch (named by their arch in
/// `index.json`): written as a blob, and `index.json` then lists that index alone, as `build`.
/// Returns the index digest.
fn write_layout_index(layout: &Utf8Path, arches: &[Arch]) -> Result<String> {
    let path = layout.join("index.json");
    let top = read_json(&path)?;
    let listed = top["manifests"].as_array().cloned().unwrap_or_default();
    let mut manifests = Vec::new();
    for arch in arches {
        let entry = listed
            .iter()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(arch.as_str()))
            .with_context(|| format!("{path} has no image named {arch}"))?;
        manifests.push(serde_json::json!({
            "mediaType": entry["mediaType"],
            "digest": entry["digest"],
            "size": entry["size"],
            "platform": {"architecture": arch.as_str(), "os": "linux"},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": domain::oci::media::OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index)?;
    let digest = Digest::of_bytes(&bytes).to_string();
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, &bytes).with_context(|| format!("writing {blob}"))?;
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": domain::oci::media::OCI_INDEX,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {REF_NAME: "build"},
        }],
    });
    std::fs::write(&path, serde_json::to_vec(&top)?).with_context(|| format!("writing {path}"))?;
    Ok(digest)
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layout's `index.json`, parsed.
fn read_json(path: &Utf8Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
}

/// The manifest digest of the single image in an OCI layout.
fn layout_digest(layout: &Utf8Path) -> Result<String> {
    let path = layout.join("index.json");
    let index = read_json(&path)?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .with_context(|| format!("{path} lists no manifest"))?;
    anyhow::ensure!(
        domain::image::is_sha256_digest(digest),
        "{path}: unexpected digest {digest}"
    );
    Ok(digest.to_owned())
}

/// What a release tag points at now, as read from the registry.
#[derive(Debug, Clone)]
pub enum Current {
    /// The tag does not exist yet.
    Absent,
    /// It points at a manifest with this digest, which records this revision (or none).
    Image {
        digest: String,
        revision: Option<String>,
    },
    /// It could not be read (unauthorized, unreachable, not a manifest): nothing is known.
    Unreadable(String),
}

/// Whether one release tag moves to this run's image.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Absent, or its image's commit is an ancestor of (or is) this run's commit.
    Move,
    /// It already points at this run's image.
    AlreadyThere,
    /// Left alone: it points at a newer commit's image (why).
    Keep(String),
    /// Ancestry cannot be established: the whole release moves nothing.
    Unsure(Doubt),
}

/// Why a tag's move cannot be decided; each kind has its own fix.
#[derive(Debug, PartialEq, Eq)]
pub enum Doubt {
    /// The tag could not be read (why).
    Unreadable(String),
    /// Its image records no commit, or something that is not a commit id (what it records).
    NoCommit(String),
    /// Its image records this commit, neither an ancestor nor a descendant of this run's.
    Unrelated(String),
    /// git cannot relate the commit its image records to this run's (the commit, why).
    NotInHistory(String, String),
    /// Its image records a commit this repository does not have, with its full history
    /// (rewritten away, or another repository's).
    Foreign(String),
}

impl Doubt {
    /// What is wrong, for one line after the tag's name.
    pub fn why(&self) -> String {
        match self {
            Doubt::Unreadable(why) => format!("cannot read it: {why}"),
            Doubt::NoCommit(what) => format!("its image {what}"),
            Doubt::Unrelated(rev) => format!(
                "it points at an image of commit {}, which is neither an ancestor nor a descendant of this run's (released from another branch, or the history was rewritten)",
                short(rev)
            ),
            Doubt::NotInHistory(rev, why) => {
                format!("the commit {} its image records: {why}", short(rev))
            }
            Doubt::Foreign(rev) => format!(
                "it points at an image of commit {}, which this repository does not have although its history is complete (the history was rewritten, or the image comes from another repository)",
                short(rev)
            ),
        }
    }

    /// What to do about it, for `image:tag`.
    pub fn fix(&self, image: &str, tag: &str) -> String {
        match self {
            Doubt::Unreadable(_) => format!(
                "run again once `skopeo inspect --raw docker://{image}:{tag}` reads it (check the registry credentials and that the registry is reachable)"
            ),
            Doubt::NoCommit(_) => format!(
                "point the tag at a recorded image by hand (`skopeo copy docker://{image}@DIGEST docker://{image}:{tag}`, with a digest from a run's summary)"
            ),
            Doubt::Unrelated(_) | Doubt::Foreign(_) => format!(
                "point the tag by hand at an image of this history (`skopeo copy docker://{image}@DIGEST docker://{image}:{tag}`) once you have checked it"
            ),
            Doubt::NotInHistory(..) => "fetch the full history (fetch-depth: 0), or run where the commit the image records is in the history".to_owned(),
        }
    }
}

/// How two commits relate, as git says.
#[derive(Clone)]
pub enum Ancestry {
    /// The image's commit is an ancestor of (or the same as) this run's.
    Ancestor,
    /// Not an ancestor: `newer` when this run's commit is an ancestor of it instead.
    NotAncestor { newer: bool },
    /// git cannot tell (the commit is not in this checkout's history, or git failed).
    Unknown(String),
    /// The image's commit is not in this repository, whose history is complete (not shallow).
    Foreign,
}

/// Decides one tag: forward only. `ancestry(recorded)` relates the commit recorded on the
/// current image to this run's commit.
pub fn judge(
    current: &Current,
    digest: &str,
    ancestry: &mut dyn FnMut(&str) -> Ancestry,
) -> Verdict {
    match current {
        Current::Absent => Verdict::Move,
        Current::Unreadable(why) => Verdict::Unsure(Doubt::Unreadable(why.clone())),
        Current::Image { digest: now, .. } if now == digest => Verdict::AlreadyThere,
        Current::Image {
            revision: None,
            digest: now,
        } => Verdict::Unsure(Doubt::NoCommit(format!(
            "{} records no {REVISION}",
            short(now)
        ))),
        Current::Image {
            revision: Some(rev),
            ..
        } if !domain::diag::is_commit_id(rev) => Verdict::Unsure(Doubt::NoCommit(format!(
            "records {REVISION}={rev:?}, not a commit id"
        ))),
        Current::Image {
            revision: Some(rev),
            ..
        } => match ancestry(rev) {
            Ancestry::Ancestor => Verdict::Move,
            Ancestry::NotAncestor { newer: true } => Verdict::Keep(format!(
                "it points at an image of the newer commit {}",
                short(rev)
            )),
            // released from outside this history (another branch, a rewritten one): moving
            // it or leaving it would each be a guess
            Ancestry::NotAncestor { newer: false } => {
                Verdict::Unsure(Doubt::Unrelated(rev.clone()))
            }
            Ancestry::Unknown(why) => Verdict::Unsure(Doubt::NotInHistory(rev.clone(), why)),
            Ancestry::Foreign => Verdict::Unsure(Doubt::Foreign(rev.clone())),
        },
    }
}

/// Reads what `image:tag` points at now.
pub fn current(skopeo: &Skopeo, image: &str, tag: &str) -> Current {
    match skopeo.inspect_raw(&format!("{image}:{tag}")) {
        Ok(bytes) => {
            let revision = domain::json::from_bytes::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|m| m["annotations"][REVISION].as_str().map(str::to_owned));
            Current::Image {
                digest: Digest::of_bytes(&bytes).to_string(),
                revision,
            }
        }
        Err(err) => match err.downcast_ref::<crate::registry::RegistryError>() {
            Some(e) if e.failure == crate::registry::Failure::NotFound => Current::Absent,
            _ => Current::Unreadable(format!("{err:#}")),
        },
    }
}

/// The commit this checkout is: `HEAD` of a clean work tree, else why not. The repository is
/// the one at the project's root, never one around it (a copy of the files inside another
/// checkout is not that checkout's commit).
pub fn source_revision(project: &Project) -> Result<String> {
    let git = || crate::git::at(&project.root);
    let top = git()
        .args(["rev-parse", "--show-toplevel"])
        .read()
        .context("this checkout's commit cannot be read (`git rev-parse --show-toplevel` failed): release tags need a git checkout")?;
    let root = project
        .root
        .canonicalize_utf8()
        .unwrap_or(project.root.clone());
    anyhow::ensure!(
        Utf8Path::new(top.trim()) == root,
        "{} is not a git checkout of its own (git finds the one at {}): release tags need the commit of these files",
        project.root,
        top.trim()
    );
    let head = git()
        .args(["rev-parse", "--verify", "HEAD^{commit}"])
        .read()
        .context("this checkout's commit cannot be read (`git rev-parse HEAD` failed): release tags need a git checkout")?;
    let changes = uncommitted(&project.root).context("`git status` failed")?;
    anyhow::ensure!(
        changes.is_empty(),
        "the checkout has uncommitted changes ({}), so its images are not commit {head}: commit or stash them (a new file, such as a variant, counts too: commit it, or ignore it in .gitignore)",
        changes.join(", ")
    );
    Ok(head)
}

/// The paths `git status` reports in the checkout at `root`: changed, staged, and new files that
/// are not ignored (a new variant file changes what is built as much as an edited one). What
/// xtask writes itself (`_out/`, `target/`) is never an input, ignored or not.
fn uncommitted(root: &Utf8Path) -> Result<Vec<String>> {
    let status = crate::git::at(root)
        .args(["status", "--porcelain", "-z", "--untracked-files=all", "--"])
        .args([".", ":(exclude)_out", ":(exclude)target"])
        .read()?;
    // -z: a renamed file by its new path, a name with spaces or quotes as it is
    let mut paths: Vec<String> = crate::git::status_entries(&status)
        .into_iter()
        .map(|(_, path)| path.to_owned())
        .collect();
    if paths.len() > 5 {
        let more = paths.len() - 4;
        paths.truncate(4);
        paths.push(format!("{more} more"));
    }
    Ok(paths)
}

/// The default branch when `$XTASK_DEFAULT_BRANCH` names none: the branch `origin/HEAD` names
/// (`origin_head`, as `git symbolic-ref --short` prints it), else `main`.
fn default_branch(origin_head: Option<&str>) -> String {
    origin_head
        .and_then(|head| head.strip_prefix("origin/"))
        .filter(|b| !b.is_empty())
        .unwrap_or("main")
        .to_owned()
}

/// The default branch of the checkout at `root`: `$XTASK_DEFAULT_BRANCH` (the workflow passes
/// the repository's, and on a scheduled run, whose event names no repository, that run's
/// branch), else the branch `origin/HEAD` names in this checkout, else `main`.
pub fn default_branch_at(root: &Utf8Path) -> String {
    let named = std::env::var("XTASK_DEFAULT_BRANCH").ok();
    if let Some(named) = named.as_deref().filter(|b| !b.is_empty()) {
        return named.to_owned();
    }
    let head = crate::git::at(root)
        .args(["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"])
        .read()
        .ok();
    default_branch(head.as_deref())
}

/// Whether this is a workflow run of the default branch (`GITHUB_REF`; the default branch as
/// [`check_release_ref`] takes it, from the checkout at `root`); floating tags move only from one.
pub fn on_default_branch(root: &Utf8Path) -> bool {
    is_default_branch(
        &std::env::var("GITHUB_REF").unwrap_or_default(),
        &default_branch_at(root),
    )
}

fn is_default_branch(reference: &str, default: &str) -> bool {
    reference.strip_prefix("refs/heads/") == Some(default)
}

/// Whether `reference` names a commit in the repository at `root` (`git rev-parse --verify`).
fn ref_exists(root: &Utf8Path, reference: &str) -> Result<bool> {
    let out = crate::git::at(root)
        .args(["rev-parse", "--verify", "-q"])
        .arg(format!("{reference}^{{commit}}"))
        .output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!(
            "`git rev-parse --verify {reference}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Where a candidate ref of the default branch stands to this run's commit.
#[derive(Clone)]
enum OnRef {
    /// This checkout has no such ref.
    Missing,
    /// It exists; how this run's commit relates to it.
    Exists(Ancestry),
}

/// Release tags name reviewed images only: this run's commit must be on the default branch
/// ([`default_branch_at`]). A workflow run of that branch is (`GITHUB_REF`); a tag run's commit
/// must be in `origin/<default>`; any other run's (a topic branch, a local `build --push`) in
/// `origin/<default>` or the local `<default>`. With `GITHUB_SHA` set, the checkout must be that
/// commit.
pub fn check_release_ref(root: &Utf8Path, revision: &str) -> Result<()> {
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        anyhow::ensure!(
            sha.is_empty() || sha == revision,
            "moved no release tag: the checkout is {revision}, but GITHUB_SHA is {sha}"
        );
    }
    let reference = std::env::var("GITHUB_REF").unwrap_or_default();
    let default = default_branch_at(root);
    if is_default_branch(&reference, &default) {
        return Ok(());
    }
    let mut found = Vec::new();
    for branch in candidate_refs(&reference, &default) {
        let state = match ref_exists(root, &branch) {
            Ok(false) => OnRef::Missing,
            Ok(true) => OnRef::Exists(ancestry(root, revision, &branch)),
            Err(err) => OnRef::Exists(Ancestry::Unknown(format!("{err:#}"))),
        };
        found.push((branch, state));
    }
    release_ref_verdict(&reference, revision, &default, &found)
}

/// The refs whose history must contain this run's commit: `origin/<default>` alone for a tag run,
/// else the local `<default>` too.
fn candidate_refs(reference: &str, default: &str) -> Vec<String> {
    let mut refs = vec![format!("refs/remotes/origin/{default}")];
    if !reference.starts_with("refs/tags/") {
        refs.push(format!("refs/heads/{default}"));
    }
    refs
}

/// Decides [`check_release_ref`] from what each candidate ref is to this run's commit.
fn release_ref_verdict(
    reference: &str,
    revision: &str,
    default: &str,
    found: &[(String, OnRef)],
) -> Result<()> {
    let (mut missing, mut not_on, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for (branch, state) in found {
        match state {
            OnRef::Exists(Ancestry::Ancestor) => return Ok(()),
            OnRef::Exists(Ancestry::NotAncestor { .. }) => not_on.push(branch.as_str()),
            OnRef::Exists(Ancestry::Unknown(why)) => unknown.push(format!("{branch}: {why}")),
            OnRef::Exists(Ancestry::Foreign) => unknown.push(format!(
                "{branch}: this run's commit is not in the repository"
            )),
            OnRef::Missing => missing.push(branch.as_str()),
        }
    }
    let short = short(revision);
    let tag_run = reference.starts_with("refs/tags/");
    let what = match tag_run {
        true => format!("{reference} points at {short}"),
        false => format!("this run's commit {short}"),
    };
    let fetch = match tag_run {
        true => format!(
            "fetch origin (`git fetch origin {default}`; a tag run counts origin/{default} only)"
        ),
        false => format!("fetch origin (`git fetch origin {default}`)"),
    };
    if not_on.is_empty() && unknown.is_empty() {
        anyhow::bail!(
            "moved no release tag: whether {what} is on the default branch {default} cannot be established: this checkout has no {}\n    fix: set XTASK_DEFAULT_BRANCH to the branch releases come from, or {fetch}",
            missing.join(" and no ")
        );
    }
    let absent = match missing.as_slice() {
        [] => String::new(),
        refs => format!("; this checkout has no {}", refs.join(" and no ")),
    };
    if not_on.is_empty() {
        anyhow::bail!(
            "moved no release tag: whether {what} is on the default branch {default} cannot be established{absent}:\n  {}\n    fix: fetch the full history of {default} (fetch-depth: 0), or set XTASK_DEFAULT_BRANCH to the branch releases come from",
            unknown.join("\n  ")
        );
    }
    let unknown = match unknown.as_slice() {
        [] => String::new(),
        lines => format!("\n  {}", lines.join("\n  ")),
    };
    anyhow::bail!(
        "moved no release tag: {what}, which is not on the default branch {default} ({}{absent}): release tags name reviewed images only; the images are pushed under their build-unique tag{unknown}\n    fix: merge it into {default} and publish from there, or set XTASK_DEFAULT_BRANCH to the branch releases come from",
        not_on.join(", ")
    )
}

/// How commit `recorded` relates to `this`, in the repository at `root`.
pub fn ancestry(root: &Utf8Path, recorded: &str, this: &str) -> Ancestry {
    let is_ancestor = |a: &str, b: &str| {
        crate::git::at(root)
            .args(["merge-base", "--is-ancestor", a, b])
            .output()
    };
    match is_ancestor(recorded, this) {
        Ok(out) if out.status.code() == Some(0) => Ancestry::Ancestor,
        Ok(out) if out.status.code() == Some(1) => {
            let newer = is_ancestor(this, recorded).is_ok_and(|o| o.status.code() == Some(0));
            Ancestry::NotAncestor { newer }
        }
        Ok(out) => {
            // absent from a complete history: no fetch would bring it
            let git = || crate::git::at(root);
            let shallow = git()
                .args(["rev-parse", "--is-shallow-repository"])
                .read()
                .map(|s| s.trim() != "false")
                .unwrap_or(true);
            let present = git()
                .args(["cat-file", "-e"])
                .arg(format!("{recorded}^{{commit}}"))
                .output()
                .is_ok_and(|o| o.status.success());
            if !shallow && !present {
                return Ancestry::Foreign;
            }
            Ancestry::Unknown(format!(
                "not in this checkout's history (`git merge-base --is-ancestor` said: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(err) => Ancestry::Unknown(format!("running git: {err:#}")),
    }
}

/// The tag that names this build alone, `<talos>-<yyyymmdd>-<commit>[-dirty]` (as a list, for
/// `add_tags`); the Talos version's own tag is a release tag, which moves forward only.
pub fn unique_tags(project: &Project, talos_version: &TalosVersion) -> Result<Vec<String>> {
    let git = || crate::git::at(&project.root);
    let commit = git()
        .args(["rev-parse", "--short=12", "HEAD"])
        .read()
        .unwrap_or_else(|_| "nogit".into());
    let dirty = uncommitted(&project.root).is_ok_and(|c| !c.is_empty());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let (y, m, d) = civil_date(secs / 86_400);
    let suffix = if dirty { "-dirty" } else { "" };
    Ok(vec![format!(
        "{talos_version}-{y:04}{m:02}{d:02}-{commit}{suffix}"
    )])
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(current: Current, relation: Ancestry) -> Verdict {
        judge(&current, "sha256:new", &mut |_| relation.clone())
    }

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn without_a_named_branch_the_default_is_origin_head_else_main() {
        // a named one ($XTASK_DEFAULT_BRANCH) wins: release.rs's
        // release_tags_name_a_missing_default_branch_as_missing sets and unsets it
        assert_eq!(default_branch(None), "main");
        assert_eq!(default_branch(Some("origin/master")), "master");
        assert_eq!(default_branch(Some("origin/")), "main");
        assert_eq!(default_branch(Some("upstream/master")), "main");
    }

    #[test]
    fn floating_tags_follow_the_default_branch() {
        assert!(is_default_branch("refs/heads/main", "main"));
        assert!(is_default_branch("refs/heads/trunk", "trunk"));
        assert!(!is_default_branch("refs/heads/main", "trunk"));
        assert!(!is_default_branch("refs/tags/main", "main"));
        assert!(!is_default_branch("refs/heads/topic", "main"));
        assert!(!is_default_branch("", "main"));
    }

    #[test]
    fn a_missing_default_branch_ref_is_reported_missing_not_as_history() {
        let origin = "refs/remotes/origin/master".to_owned();
        let local = "refs/heads/master".to_owned();
        assert_eq!(
            candidate_refs("refs/tags/v1", "master"),
            std::slice::from_ref(&origin),
            "a tag run counts origin only"
        );
        assert_eq!(
            candidate_refs("", "master"),
            [origin.clone(), local.clone()]
        );
        let verdict = |found: &[(String, OnRef)]| {
            release_ref_verdict("", C, "master", found).map_err(|e| format!("{e:#}"))
        };
        // every candidate missing: said so, with the fix
        let err = verdict(&[
            (origin.clone(), OnRef::Missing),
            (local.clone(), OnRef::Missing),
        ])
        .unwrap_err();
        assert!(
            err.contains(
                "this checkout has no refs/remotes/origin/master and no refs/heads/master"
            ),
            "{err}"
        );
        assert!(err.contains("fix: set XTASK_DEFAULT_BRANCH"), "{err}");
        assert!(err.contains("git fetch origin master"), "{err}");
        assert!(!err.contains("history"), "{err}");
        // one missing, the other exists without the commit: not on the one that exists only
        let err = verdict(&[
            (origin.clone(), OnRef::Missing),
            (
                local.clone(),
                OnRef::Exists(Ancestry::NotAncestor { newer: false }),
            ),
        ])
        .unwrap_err();
        assert!(
            err.contains("which is not on the default branch master (refs/heads/master; this checkout has no refs/remotes/origin/master)"),
            "{err}"
        );
        // one missing, the other contains it
        assert!(verdict(&[
            (origin.clone(), OnRef::Missing),
            (local.clone(), OnRef::Exists(Ancestry::Ancestor)),
        ])
        .is_ok());
        // a tag run: origin alone, and missing
        let err = release_ref_verdict("refs/tags/v1", C, "master", &[(origin, OnRef::Missing)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("whether refs/tags/v1 points at 0123456789ab is on the default branch master cannot be established: this checkout has no refs/remotes/origin/master"),
            "{err}"
        );
        assert!(err.contains("a tag run counts origin/master only"), "{err}");
    }

    #[test]
    fn release_tags_move_forward_only() {
        let image = |revision: Option<&str>| Current::Image {
            digest: "sha256:old".into(),
            revision: revision.map(str::to_owned),
        };
        assert_eq!(judged(Current::Absent, Ancestry::Ancestor), Verdict::Move);
        assert_eq!(judged(image(Some(C)), Ancestry::Ancestor), Verdict::Move);
        let same = Current::Image {
            digest: "sha256:new".into(),
            revision: None,
        };
        assert_eq!(judged(same, Ancestry::Ancestor), Verdict::AlreadyThere);
        let newer = judged(image(Some(C)), Ancestry::NotAncestor { newer: true });
        assert!(
            matches!(&newer, Verdict::Keep(why) if why.contains("newer commit 0123456789ab")),
            "{newer:?}"
        );
        assert_eq!(
            judged(image(Some(C)), Ancestry::NotAncestor { newer: false }),
            Verdict::Unsure(Doubt::Unrelated(C.into()))
        );
        // Fail closed: whatever cannot be established is Unsure.
        for (current, relation) in [
            (image(Some(C)), Ancestry::Unknown("shallow".into())),
            (image(None), Ancestry::Ancestor),
            (image(Some("main")), Ancestry::Ancestor),
            (Current::Unreadable("401".into()), Ancestry::Ancestor),
        ] {
            let verdict = judged(current.clone(), relation);
            assert!(
                matches!(verdict, Verdict::Unsure(_)),
                "{current:?}: {verdict:?}"
            );
        }
    }

    /// Each kind of doubt says what is wrong and its own fix: an unrelated commit is not fixed by
    /// fetching history, nor by pointing the tag at "a recorded image".
    #[test]
    fn each_doubt_has_its_own_fix() {
        let image = |revision: Option<&str>| Current::Image {
            digest: "sha256:old".into(),
            revision: revision.map(str::to_owned),
        };
        let doubt = |current: Current, relation: Ancestry| match judged(current, relation) {
            Verdict::Unsure(doubt) => doubt,
            other => panic!("not unsure: {other:?}"),
        };
        let fix = |d: &Doubt| d.fix("reg/acme/talos", "latest");
        let unrelated = doubt(image(Some(C)), Ancestry::NotAncestor { newer: false });
        assert!(
            unrelated
                .why()
                .contains("commit 0123456789ab, which is neither an ancestor nor a descendant"),
            "{}",
            unrelated.why()
        );
        assert_eq!(
            fix(&unrelated),
            "point the tag by hand at an image of this history (`skopeo copy docker://reg/acme/talos@DIGEST docker://reg/acme/talos:latest`) once you have checked it"
        );
        let none = doubt(image(None), Ancestry::Ancestor);
        assert!(none
            .why()
            .contains("records no org.opencontainers.image.revision"));
        assert!(fix(&none).starts_with("point the tag at a recorded image by hand"));
        let shallow = doubt(
            image(Some(C)),
            Ancestry::Unknown("not in this checkout's history".into()),
        );
        assert!(shallow.why().contains("not in this checkout's history"));
        assert!(fix(&shallow).starts_with("fetch the full history (fetch-depth: 0)"));
        let foreign = doubt(image(Some(C)), Ancestry::Foreign);
        assert!(
            foreign
                .why()
                .contains("commit 0123456789ab, which this repository does not have although its history is complete"),
            "{}",
            foreign.why()
        );
        assert_eq!(fix(&foreign), fix(&unrelated));
        let unreadable = doubt(Current::Unreadable("401".into()), Ancestry::Ancestor);
        assert!(fix(&unreadable).contains("skopeo inspect --raw docker://reg/acme/talos:latest"));
        let fixes = [&unrelated, &none, &shallow, &unreadable].map(fix);
        for (i, a) in fixes.iter().enumerate() {
            assert!(!fixes[i + 1..].contains(a), "the same fix twice: {a}");
        }
        assert!(!fix(&unrelated).contains("fetch"), "{}", fix(&unrelated));
    }

    #[test]
    fn annotating_a_layout_changes_the_digest_and_keeps_the_manifest() {
        let dir = std::env::temp_dir().join(format!("xtask-annotate-{}", std::process::id()));
        let dir = camino::Utf8PathBuf::from_path_buf(dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let old = Digest::of_bytes(manifest).to_string();
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256").join(&old[7..]), manifest).unwrap();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": old, "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "build"}}]});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        let new = annotate_layout(&dir, &[(REVISION, C)]).unwrap();
        assert_ne!(new, old);
        assert_eq!(layout_digest(&dir).unwrap(), new);
        let bytes = std::fs::read(dir.join("blobs/sha256").join(&new[7..])).unwrap();
        assert_eq!(Digest::of_bytes(&bytes), new);
        let written: serde_json::Value = domain::json::from_bytes(&bytes).unwrap();
        assert_eq!(written["annotations"][REVISION], C);
        assert_eq!(written["schemaVersion"], 2);
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap())
                .unwrap();
        assert_eq!(index["manifests"][0]["size"], bytes.len());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "build"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_517), (2026, 3, 5));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }
}
