//! File-system helpers shared by subcommands.

use anyhow::{Context, Result};
use camino::Utf8Path;
use domain::diag::Finding;
use domain::image::hex;

/// A build input must be the file itself, never a symbolic link: `cargo xtask changed` decides
/// what to rebuild from the paths git reports, and a link's path does not change when its
/// target does (a variant file linked to a file under `docs/` would rebuild nothing when the
/// target is edited, while the build reads the edit). The finding names `shown` (the path as
/// users see it) and the fix; `None` when `path` is no link (a missing file is for the reader
/// to report).
pub fn symlink_finding(path: &Utf8Path, shown: &str) -> Option<Finding> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    // a linked directory (`variants/`, `patches/`) is copied whole, after the link is removed
    let fix = match path.is_dir() {
        true => format!(
            "replace the link with the directory itself: `target=\"$(readlink -f '{shown}')\" && rm '{shown}' && cp -r \"$target\" '{shown}'`"
        ),
        false => format!(
            "replace the link with the file itself: `cp --remove-destination \"$(readlink -f '{shown}')\" '{shown}'`"
        ),
    };
    Some(
        Finding::new(
            shown,
            "",
            "is a symbolic link: a build input must be the file itself (CI decides what to rebuild from the paths that change, and edits of a link's target do not change the link)",
        )
        .value(format!("{target:?}"))
        .fix(fix),
    )
}

/// [`symlink_finding`] as an error, for a reader of one file.
pub fn refuse_symlink(path: &Utf8Path, shown: &str) -> Result<()> {
    domain::diag::into_result(shown, symlink_finding(path, shown).into_iter().collect())
}

/// Writes `path` through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    through_sibling(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("writing {tmp}"))
    })
}

/// `write` fills a temporary sibling of `path`, which then replaces `path`; whatever fails
/// (a full disk, a rename refused), the sibling is removed: nothing half-written, and no copy
/// of a secret, stays behind.
fn through_sibling(path: &Utf8Path, write: impl FnOnce(&Utf8Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or("file"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp} to {path}"))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// sha256 (hex) and size of a file, read in chunks.
pub fn sha256_file(path: &Utf8Path) -> Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {path}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// Appends `text` to `path`, creating it if need be: how a step adds to the files GitHub Actions
/// gives it (`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`). Callers add the context.
pub fn append(path: impl AsRef<Utf8Path>, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.as_ref())?
        .write_all(text.as_bytes())
}

/// Like `write_atomic`, for files holding a secret: the file is created readable by its owner
/// only (0600) before any byte is written, so there is no moment when others can read it.
pub fn write_private(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    through_sibling(path, |tmp| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .with_context(|| format!("creating {tmp}"))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {tmp}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that cannot finish leaves the old file as it was and no sibling behind (here the
    /// rename is refused: the target is a directory).
    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("xtask-fsutil-unit-{}", std::process::id()));
        let dir = camino::Utf8PathBuf::try_from(dir).unwrap();
        let target = dir.join("target");
        std::fs::create_dir_all(target.join("inside")).unwrap();
        for write in [write_atomic, write_private] {
            assert!(write(&target, b"secret").is_err());
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["target"], "left behind");
            assert!(target.join("inside").is_dir());
        }
        let file = dir.join("file");
        write_private(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sha256_of_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
