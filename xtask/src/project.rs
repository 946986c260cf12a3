//! Where things live in the repository, and the few facts every subcommand shares.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::domain::diag::{self, Finding};
use crate::domain::lock::{self, Lock};
use crate::domain::variant::{self, Variant};

/// The repository a subcommand works on.
///
/// Defaults to the checkout xtask was built from; `XTASK_ROOT` points it elsewhere (tests use
/// it to run the real binary against a temporary copy of the repository).
#[derive(Debug, Clone)]
pub struct Project {
    pub root: Utf8PathBuf,
}

impl Project {
    pub fn discover() -> Result<Project> {
        let root = match std::env::var("XTASK_ROOT") {
            Ok(dir) if !dir.is_empty() => Utf8PathBuf::from(dir),
            _ => Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .context("xtask lives one directory below the repository root")?
                .to_owned(),
        };
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

    /// Reads and validates every `variants/*.json`, sorted by name.
    pub fn load_variants(&self) -> Result<Vec<Variant>> {
        let project = self;
        let dir = project.variants_dir();
        let mut files: Vec<_> = dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
            .map(|entry| entry.map(|e| e.into_path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {dir}"))?;
        files.retain(|p| p.extension() == Some("json"));
        files.sort();

        let mut findings = Vec::new();
        let mut parsed = Vec::new();
        for path in &files {
            let shown = project.display(path).to_string();
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            match variant::parse(&shown, &text) {
                Ok(variant) => parsed.push((shown, variant)),
                Err(mut found) => findings.append(&mut found),
            }
        }
        findings.extend(variant::check_set(&parsed));
        if files.is_empty() {
            findings.push(
                Finding::new(project.display(&dir).as_str(), "", "no variant files").fix(
                    "add one JSON file per role, e.g. variants/compute.json (see docs/variants.md)",
                ),
            );
        }
        diag::into_result("invalid variants", findings)?;
        Ok(parsed.into_iter().map(|(_, v)| v).collect())
    }

    /// The selected variants (all of them when `names` is empty), read and validated.
    pub fn select_variants(&self, names: &[String]) -> Result<Vec<Variant>> {
        variant::select(self.load_variants()?, names)
    }

    /// Reads and validates `variants/extensions.lock`.
    pub fn load_lock(&self) -> Result<Lock> {
        let text = std::fs::read_to_string(self.lock_path()).with_context(|| {
            format!("reading {}: create it with `cargo xtask lock`", lock::SHOWN)
        })?;
        Lock::parse(&text)
    }
}
