//! `cargo xtask`: builds role-based ARM64 Talos images for CozyStack.
//!
//! This file only parses the command line and dispatches; each subcommand lives in its own
//! module with its own `Args` and `run`. See docs/architecture.md for the map.

mod diag;
mod fsutil;
mod lockfile;
mod pin;
mod profile;
mod progress;
mod project;
mod variants;
mod yaml;

mod build;
mod plan;
mod profiles;
mod smoke;
mod test;

use clap::{Parser, Subcommand};

/// Build role-based ARM64 Talos images for CozyStack (compute, gateway, ...).
///
/// Each node role is a file under variants/. The pipeline is upstream -> patch -> lock ->
/// build -> smoke; every stage can run alone and `--dry-run` prints what it would do.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show exactly what will be built for each role: extensions, images, imager profiles.
    Plan(plan::Args),
    /// Write each variant's Talos imager profiles as YAML (what the imager receives), or check them.
    Profiles(profiles::Args),
    /// Build the images of every (or the selected) variant.
    Build(build::Args),
    /// Check that built images are exactly their role, then boot them under qemu.
    Smoke(smoke::Args),
    /// Install the test tools when missing (Debian/Ubuntu), start nothing by hand, run every test.
    Test(test::Args),
}

fn main() -> std::process::ExitCode {
    match try_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let project = project::Project::discover()?;
    match cli.command {
        Command::Plan(args) => plan::run(&project, args),
        Command::Profiles(args) => profiles::run(&project, args),
        Command::Build(args) => build::run(&project, args),
        Command::Smoke(args) => smoke::run(&project, args),
        Command::Test(args) => test::run(&project, args),
    }
}
