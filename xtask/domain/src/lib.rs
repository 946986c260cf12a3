//! The domain: what the pipeline is about, as types, with no I/O, no command line and no other
//! crate of the workspace below it. Everything else (the stages and the thin I/O layer that reads
//! files, runs engines, talks to registries and git) depends on this crate; it depends on nothing
//! of theirs, which its Cargo.toml makes a compile error (`tests/it/tidy.rs` checks the layers).
//!
//! Data flows through it in one direction: a variant file parses into a [`Variant`], the lock
//! file into a [`Lock`] of typed [`ImageRef`]s, both with the pinned [`TalosVersion`] into a
//! [`Plan`] of imager [`Profile`]s, and the build writes one [`BuildRecord`] that smoke and ci
//! read back through the same type.

pub mod arch;
pub mod cidr;
pub mod diag;
pub mod extension;
pub mod format;
pub mod image;
pub mod json;
pub mod layout;
pub mod lock;
pub mod machine_config;
pub mod oci;
pub mod output;
pub mod plan;
pub mod profile;
pub mod record;
pub mod schematic;
pub mod shell;
pub mod talos;
pub mod target;
pub mod variant;
pub mod yaml;

pub use arch::Arch;
pub use diag::Finding;
pub use image::{Digest, ImageRef};
pub use lock::Lock;
pub use output::Output;
pub use plan::{Plan, PlannedProfile, VariantPlan};
pub use record::BuildRecord;
pub use talos::TalosVersion;
pub use variant::Variant;
