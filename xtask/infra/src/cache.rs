//! The output cache under `_out/<variant>/.cache/`: what each output on disk was built from,
//! so unchanged inputs skip the imager (and the matchbox build).

use anyhow::Result;
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use domain::record::FileRecord;

/// What `.cache/<kind>.json` remembers about an output on disk.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    key: String,
    file: FileRecord,
}

pub fn write_cache(cache_path: &Utf8Path, key: &str, file: &FileRecord) -> Result<()> {
    let entry = CacheEntry {
        key: key.to_owned(),
        file: file.clone(),
    };
    crate::fsutil::write_atomic(cache_path, serde_json::to_string_pretty(&entry)?.as_bytes())
}

/// The recorded file when the cache entry's key matches and the file on disk is intact.
pub fn cached_file(cache_path: &Utf8Path, key: &str, artifact: &Utf8Path) -> Option<FileRecord> {
    let entry: CacheEntry =
        serde_json::from_str(&std::fs::read_to_string(cache_path).ok()?).ok()?;
    if entry.key != key {
        return None;
    }
    let on_disk = file_record(artifact).ok()?;
    (on_disk == entry.file).then_some(on_disk)
}

pub fn file_record(path: &Utf8Path) -> Result<FileRecord> {
    let (sha256, size) = crate::fsutil::sha256_file(path)?;
    Ok(FileRecord {
        name: path.file_name().unwrap_or_default().to_owned(),
        sha256,
        size,
    })
}
