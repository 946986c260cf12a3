//! Where things live in the repository, and the few facts every subcommand shares.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

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
        self.variants_dir().join(crate::lockfile::FILE_NAME)
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
}
