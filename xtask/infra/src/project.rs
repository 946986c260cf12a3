//! Where things live in the repository, and the few facts every subcommand shares.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use domain::diag::{self, Finding};
use domain::lock::{self, Lock};
use domain::variant::{self, Variant};

/// The repository a subcommand works on.
///
/// Found when xtask runs, never baked in when it is compiled: two worktrees (or clones) that
/// share one `CARGO_TARGET_DIR` share one binary, and each must still act on its own files.
pub struct Project {
    pub root: Utf8PathBuf,
}

impl Project {
    /// `XTASK_ROOT` (tests point it at a temporary copy of the repository), else the
    /// `CARGO_MANIFEST_DIR` that `cargo run` (the `cargo xtask` alias) sets for the process, else
    /// the checkout enclosing the current directory (the binary run directly).
    pub fn discover() -> Result<Project> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let cwd = || {
            std::env::current_dir()
                .ok()
                .and_then(|d| Utf8PathBuf::try_from(d).ok())
        };
        let root = find_root(
            var("XTASK_ROOT").as_deref(),
            var("CARGO_MANIFEST_DIR").as_deref(),
            cwd().as_deref(),
        )?;
        let root = root
            .canonicalize_utf8()
            .with_context(|| format!("repository root {root} does not exist (check XTASK_ROOT)"))?;
        Ok(Project { root })
    }

    pub fn variants_dir(&self) -> Utf8PathBuf {
        self.root.join("variants")
    }

    pub fn lock_path(&self) -> Utf8PathBuf {
        self.variants_dir().join(lock::FILE_NAME)
    }

    pub fn patches_dir(&self) -> Utf8PathBuf {
        self.root.join("patches")
    }

    /// Scratch space that is never committed: upstream cache, patched trees.
    pub fn target_dir(&self) -> Utf8PathBuf {
        match std::env::var("CARGO_TARGET_DIR") {
            Ok(dir) if !dir.is_empty() => Utf8PathBuf::from(dir),
            _ => self.root.join("target"),
        }
    }

    /// Build outputs, one directory per variant.
    pub fn out_dir(&self) -> Utf8PathBuf {
        self.root.join("_out")
    }

    /// A path shown relative to the root, as users see it in the repository.
    pub fn display<'a>(&self, path: &'a Utf8Path) -> &'a Utf8Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// Reads and validates every `variants/*.json`, sorted by name (extension names checked
    /// against the lock's entries, read leniently: a broken lock does not hide their problems).
    pub fn load_variants(&self) -> Result<Vec<Variant>> {
        let text = self.read_lock_text().unwrap_or(None);
        let checked = self.check_variants(text.as_deref())?;
        diag::into_result("invalid variants", checked.findings)?;
        Ok(checked.variants)
    }

    /// Every valid variant and every finding across all variant files (their fields, shared
    /// repositories, extension names against the entries of the lock's text and each other).
    fn check_variants(&self, lock_text: Option<&str>) -> Result<variant::Checked> {
        let lock_names = lock_text.map(lock::entry_names).unwrap_or_default();
        let lock_names: Vec<&str> = lock_names.iter().map(String::as_str).collect();
        let dir = self.variants_dir();
        crate::fsutil::refuse_symlink(&dir, self.display(&dir).as_str())?;
        let mut paths = Vec::new();
        for entry in dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
        {
            let path = entry.with_context(|| format!("reading {dir}"))?.into_path();
            paths.push(path);
        }
        paths.sort();
        let mut files = Vec::new();
        let mut unread = Vec::new();
        for path in &paths {
            let shown = self.display(path).to_string();
            let (ext, stem) = (
                path.extension().unwrap_or_default(),
                path.file_stem().unwrap_or_default(),
            );
            if ext != "json" {
                // a role written as YAML, or as `.JSON`, would silently not exist
                if ["json", "yaml", "yml"].contains(&ext.to_ascii_lowercase().as_str()) {
                    unread.push(Finding::new(&shown, "", "not read: a variant file is JSON, named variants/<name>.json").fix(format!("write it as JSON in variants/{}.json (docs/variants.md), or move it out of variants/", stem.to_lowercase())));
                }
                continue;
            }
            if let Some(finding) = crate::fsutil::symlink_finding(path, &shown) {
                unread.push(finding);
                continue;
            }
            // a directory or a named pipe by that name is no file (reading a pipe would wait)
            if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                unread.push(
                    Finding::new(
                        &shown,
                        "",
                        "not a regular file: a variant file is JSON text",
                    )
                    .fix(
                        "move it out of variants/, and write the role as a file (docs/variants.md)",
                    ),
                );
                continue;
            }
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            match String::from_utf8(bytes) {
                Ok(text) => files.push((shown, text)),
                Err(_) => unread.push(
                    Finding::new(&shown, "", "not UTF-8 text")
                        .fix("save it as UTF-8 (from Latin-1: `iconv -f latin1 -t utf-8`)"),
                ),
            }
        }
        let mut checked = variant::check_files(&files, &lock_names);
        checked.findings.extend(unread);
        if files.is_empty() {
            checked.findings.push(
                Finding::new(self.display(&dir).as_str(), "", "no variant files").fix(
                    "add one JSON file per role, e.g. variants/compute.json (see docs/variants.md)",
                ),
            );
        }
        Ok(checked)
    }

    /// The variants and the lock, each read once, for a command that needs both: every
    /// problem in either is known before anything runs ([`Inputs`]).
    pub fn read_inputs(&self) -> Result<Inputs> {
        let text = self.read_lock_text()?;
        let checked = self.check_variants(text.as_deref())?;
        let (lock, lock_findings) = match text.as_deref().map(Lock::check) {
            Some((lock, findings)) => (lock, findings),
            None => (None, Vec::new()),
        };
        Ok(Inputs {
            variants: checked.variants,
            variant_findings: checked.findings,
            unparsed: checked.unparsed,
            lock,
            lock_findings,
        })
    }

    /// The selected variants (all of them when `names` is empty), read and validated.
    pub fn select_variants(&self, names: &[String]) -> Result<Vec<Variant>> {
        variant::select(self.load_variants()?, names)
    }

    /// The lock file if there is one.
    pub fn load_lock_optional(&self) -> Result<Option<Lock>> {
        self.read_lock_text()?
            .as_deref()
            .map(Lock::parse)
            .transpose()
    }

    /// `variants/extensions.lock`'s text; `None` when there is none yet.
    fn read_lock_text(&self) -> Result<Option<String>> {
        crate::fsutil::refuse_symlink(&self.lock_path(), lock::SHOWN)?;
        match std::fs::read_to_string(self.lock_path()) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", lock::SHOWN)),
        }
    }
}

/// The variants and the lock as [`Project::read_inputs`] read them, with every problem found in
/// either. A command asks for the variants first: when they have problems, the error lists the
/// lock's too, so that one run shows everything to fix. The lock is asked for where it is used
/// (ci's lock stage fails in the job summary, not before it).
pub struct Inputs {
    variants: Vec<Variant>,
    variant_findings: Vec<Finding>,
    /// the names in the files that are not valid variants
    unparsed: Vec<variant::Names>,
    /// `None` when there is no lock file, or when it has problems
    lock: Option<Lock>,
    lock_findings: Vec<Finding>,
}

impl Inputs {
    /// The variants named (all of them when `names` is empty); an error listing every problem
    /// in the variants, and in the lock too, when the variants have any.
    pub fn variants(&self, names: &[String]) -> Result<Vec<Variant>> {
        self.refuse_with(Vec::new())?;
        variant::select(self.variants.clone(), names)
    }

    /// [`Inputs::variants`], all of them, for a command that needs an entry for each of their
    /// extensions (plan, config, smoke): when there are other problems, the missing entries are
    /// listed with them, those of files with problems of their own too (alone, `plan::make`
    /// reports them).
    pub fn variants_locked(&self) -> Result<Vec<Variant>> {
        let mut missing = Vec::new();
        if let Some(lock) = &self.lock {
            for variant in &self.variants {
                let unlocked = lock.resolve(variant).missing;
                missing.extend(domain::plan::missing_entries(
                    variant,
                    &unlocked,
                    &lock.talos_version,
                ));
            }
            for names in &self.unparsed {
                missing.extend(domain::plan::missing_names(
                    names,
                    lock,
                    &self.variant_findings,
                ));
            }
        }
        self.refuse_with(missing)?;
        Ok(self.variants.clone())
    }

    /// Every problem in the variants (with `more` of theirs), and in the lock, when the variants
    /// have any.
    fn refuse_with(&self, more: Vec<Finding>) -> Result<()> {
        if self.variant_findings.is_empty() {
            return Ok(());
        }
        let heading = match self.lock_findings.is_empty() {
            true => "invalid variants",
            false => "invalid variants and lock file",
        };
        let mut all = self.variant_findings.clone();
        all.extend(more);
        all.extend(self.lock_findings.iter().cloned());
        diag::into_result(heading, all)
    }

    /// The lock, `None` when there is no file; an error listing its problems when it has any.
    pub fn lock(&self) -> Result<Option<Lock>> {
        diag::into_result("invalid lock file", self.lock_findings.clone())?;
        Ok(self.lock.clone())
    }
}

/// Where the repository is, from (in this order) `XTASK_ROOT`, the xtask package directory
/// cargo names, or the nearest directory above `cwd` that holds `xtask/Cargo.toml`.
fn find_root(
    xtask_root: Option<&str>,
    manifest_dir: Option<&str>,
    cwd: Option<&Utf8Path>,
) -> Result<Utf8PathBuf> {
    if let Some(root) = xtask_root {
        return Ok(root.into());
    }
    // cargo sets it to the package being run; only xtask's own is the repository's child
    if let Some(dir) = manifest_dir.map(Utf8Path::new) {
        if dir.join("src/main.rs").is_file() && dir.file_name() == Some("xtask") {
            if let Some(parent) = dir.parent() {
                return Ok(parent.to_owned());
            }
        }
    }
    cwd.and_then(|cwd| {
        cwd.ancestors()
            .find(|d| d.join("xtask/Cargo.toml").is_file() && d.join("variants").is_dir())
    })
    .map(Utf8Path::to_owned)
    .context("no repository found: run xtask as `cargo xtask` inside a checkout, or set XTASK_ROOT to one")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_found_at_run_time_in_order() {
        let tmp = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        let tmp = Utf8PathBuf::try_from(tmp).unwrap();
        for dir in [
            "a/xtask/src",
            "a/variants",
            "b/xtask/src",
            "b/variants",
            "b/docs/deep",
        ] {
            std::fs::create_dir_all(tmp.join(dir)).unwrap();
        }
        for repo in ["a", "b"] {
            std::fs::write(tmp.join(repo).join("xtask/Cargo.toml"), "").unwrap();
            std::fs::write(tmp.join(repo).join("xtask/src/main.rs"), "").unwrap();
        }
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        let a_pkg = a.join("xtask");
        let deep = b.join("docs/deep");
        assert_eq!(
            find_root(Some("/x"), Some(a_pkg.as_str()), Some(&deep)).unwrap(),
            "/x"
        );
        assert_eq!(
            find_root(None, Some(a_pkg.as_str()), Some(&deep)).unwrap(),
            a
        );
        assert_eq!(find_root(None, None, Some(&deep)).unwrap(), b);
        // another package's manifest dir (a dependency's build) is not the repository
        let other = tmp.join("b/docs");
        assert_eq!(
            find_root(None, Some(other.as_str()), Some(&deep)).unwrap(),
            b
        );
        let err = find_root(None, None, Some(Utf8Path::new("/"))).unwrap_err();
        assert!(format!("{err:#}").contains("set XTASK_ROOT"), "{err:#}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
