//! Where the data files live in the repository, as messages name them.

/// The extension lock, in `variants/` beside the variant files.
pub const LOCK_FILE_NAME: &str = "extensions.lock";
/// The lock's path relative to the repository root.
pub const LOCK_SHOWN: &str = "variants/extensions.lock";

/// A variant's file relative to the repository root, as messages name it.
pub fn variant_file(name: &str) -> String {
    format!("variants/{name}.json")
}
