//! The integration tests: one binary (so `support/` compiles once), one module per subcommand
//! or concern. They run the real xtask binary against temporary copies of the repository and
//! real tools (git, docker-registry, skopeo, podman, qemu); `cargo xtask test` installs those.

mod support;

mod build;
mod bump;
mod changed;
mod ci;
mod config;
mod conformance;
mod docs;
mod faults;
mod imager;
mod lock;
mod patch;
mod plan;
mod registry_support;
mod release;
mod smoke;
mod targets;
mod tidy;
mod usage;
mod workflow;
mod worktrees;
