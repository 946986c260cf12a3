//! The build record's file, `_out/<variant>/build.json` ([`domain::BuildRecord`]): `build`
//! writes it (and `ci` again after smoke and after the release tags), `smoke`, `ci
//! --publish-only` and `config` read it back. One writer and one reader, so that every stage
//! agrees on where the record is and on what a bad one means.

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use domain::record::{BuildRecord, RECORD};

use crate::project::Project;

/// Where `variant`'s record is.
pub fn path(project: &Project, variant: &str) -> Utf8PathBuf {
    project.out_dir().join(variant).join(RECORD)
}

/// `variant`'s record, or `None` when there is none (the variant was never built). A record that
/// cannot be read or is not a build record is an error naming the file and the fix, never a
/// default.
pub fn read(project: &Project, variant: &str) -> Result<Option<BuildRecord>> {
    let path = path(project, variant);
    let shown = project.display(&path);
    let fix = format!("rebuild with `cargo xtask build --variant {variant}`");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {shown}: {fix}")),
    };
    let record = serde_json::from_str(&text)
        .with_context(|| format!("{shown} is not a build record: {fix}"))?;
    Ok(Some(record))
}

/// [`read`], for the stages that need the variant built.
pub fn read_built(project: &Project, variant: &str) -> Result<BuildRecord> {
    read(project, variant)?.with_context(|| {
        format!(
            "variant `{variant}` is not built; run `cargo xtask build --variant {variant}` (no {})",
            project.display(&path(project, variant))
        )
    })
}

/// Writes `record` whole or not at all (an interrupted write leaves the old record).
pub fn write(project: &Project, record: &BuildRecord) -> Result<()> {
    let mut text = serde_json::to_string_pretty(record)?;
    text.push('\n');
    crate::fsutil::write_atomic(&path(project, &record.variant), text.as_bytes())
}
