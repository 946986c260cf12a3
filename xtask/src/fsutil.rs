//! File-system helpers shared by subcommands.

use anyhow::{Context, Result};
use camino::Utf8Path;

/// Writes `path` through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp} to {path}"))?;
    Ok(())
}
