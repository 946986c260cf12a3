//! The thin I/O layer: everything the stages do to the world goes through here. The command
//! runner (`cmd`, printing exactly under `--dry-run`), git, registries (`registry`, `publish`,
//! `prefetch`), container engines, the project's files read into the domain's types (`project`,
//! `pin`, `inputs`), progress and interrupts. It depends on the domain and names no stage.

pub mod cache;
pub mod cmd;
pub mod engine;
pub mod fsutil;
pub mod git;
pub mod github;
pub mod harness;
pub mod inputs;
pub mod interrupt;
pub mod pin;
pub mod prefetch;
pub mod progress;
pub mod project;
pub mod publish;
pub mod record;
pub mod registry;
pub mod series;
