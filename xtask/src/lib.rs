//! `cargo xtask`: builds role-based ARM64 Talos images for CozyStack.
//!
//! This file only parses the command line and dispatches; each subcommand lives in its own
//! module, with its own `Args` and `run`, in the crate `produce` or `inspect` (only `ci`, which
//! composes stages of both, is here). See docs/dev/architecture.md for the map. `main.rs` only
//! calls [`main`]: a library compiles as soon as the stage crates' metadata is ready, beside
//! their code generation, where a binary would wait for all of it.

mod ci;

use infra::{interrupt, project};
use inspect::{conformance, plan, schematic, smoke, test};
use produce::{build, changed, config, lock, patch, profiles, upstream};

use clap::{Parser, Subcommand};

/// Build role-based ARM64 Talos images for CozyStack (compute, gateway, ...).
///
/// Each node role is a file under variants/. The pipeline is upstream -> patch -> lock ->
/// build -> smoke; every stage can run alone and `--dry-run` prints what it would do.
///
/// Exit status: 0 success, 2 a wrong command line, 1 any other failure, 130/143 interrupted,
/// 141 when the reader of the output stops early.
#[derive(Parser)]
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

#[derive(Subcommand)]
enum Command {
    /// Fetch CozyStack at the pinned tag into target/upstream/<commit> (verified, reused offline).
    Upstream(upstream::Args),
    /// Apply the patch series to a copy of the pinned upstream tree; --check, --refresh.
    Patch(patch::Args),
    /// Show exactly what will be built for each role: extensions, images, imager profiles.
    Plan(plan::Args),
    /// Write each variant's Talos imager profiles as YAML (what the imager builds from), or check them.
    Profiles(profiles::Args),
    /// Resolve every variant's extensions to image@sha256 digests for the Talos version (or --check).
    Lock(lock::Args),
    /// Build the images of every (or the selected) variant.
    Build(build::Args),
    /// What CI runs per variant: lock check, patch, build, smoke, job summary.
    Ci(ci::Args),
    /// Render a role's Talos machine-config patch (and Spin's RuntimeClass) from its variant file.
    Config(config::Args),
    /// Show the Image Factory schematic, ID, installer and asset URLs equivalent to a variant
    /// (the schematic is also written to target/schematic/<variant>.yaml, for the factory's POST).
    Schematic(schematic::Args),
    /// Judge profiles, machine-config patches and schematic IDs with Talos's own Go code (needs Go).
    Conformance(conformance::Args),
    /// Decide from git what CI must build: nothing, some variants, or all (see docs/changed.md).
    Changed(changed::Args),
    /// Check that built images are exactly their role, then boot them under qemu.
    Smoke(smoke::Args),
    /// Install the test tools when missing (Debian/Ubuntu), start nothing by hand, run every test.
    Test(test::Args),
}

/// The whole program: `main.rs` returns this as its exit status.
pub fn main() -> std::process::ExitCode {
    // SIGINT and SIGTERM remove a temporary registry credential before ending the process
    infra::interrupt::install();
    // A reader that stops early (a dry run piped into head) closes stdout or stderr, and the
    // next `println!` or `eprintln!` panics. That ends the program quietly, with the status a
    // shell gives a program killed by SIGPIPE (141); the unwinding still runs every clean-up
    // guard. A thread's panic reaches this thread with its own payload: whoever joins a thread
    // resumes the panic with `resume_unwind` (build's workers), never lets `thread::scope`
    // replace it by "a scoped thread panicked".
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_output(info.payload()) {
            default_hook(info)
        }
    }));
    let result = match std::panic::catch_unwind(try_main) {
        Ok(result) => result,
        Err(payload) if is_closed_output(&*payload) => return std::process::ExitCode::from(141),
        Err(payload) => std::panic::resume_unwind(payload),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            use std::io::Write as _;
            // not `eprintln!`, which panics when stderr's reader is gone
            if writeln!(std::io::stderr(), "error: {err:#}").is_err() {
                return std::process::ExitCode::from(141);
            }
            // Interrupted: the exit status a shell reports for that signal (130, 143); a wrong
            // invocation: 2, as clap's own usage errors.
            match interrupt::pending() {
                Some(sig) => std::process::ExitCode::from(128 + sig as u8),
                None if domain::diag::is_usage(&err) => std::process::ExitCode::from(2),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// Whether a panic is `println!`'s or `eprintln!`'s on an output whose reader is gone.
fn is_closed_output(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = match (
        payload.downcast_ref::<String>(),
        payload.downcast_ref::<&str>(),
    ) {
        (Some(message), _) => message.as_str(),
        (None, Some(message)) => message,
        (None, None) => return false,
    };
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && message.contains("Broken pipe")
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let project = project::Project::discover()?;
    match cli.command {
        Command::Upstream(args) => upstream::run(&project, args),
        Command::Patch(args) => patch::run(&project, args),
        Command::Plan(args) => plan::run(&project, args),
        Command::Profiles(args) => profiles::run(&project, args),
        Command::Lock(args) => lock::run(&project, args),
        Command::Build(args) => build::run(&project, args),
        Command::Ci(args) => ci::run(&project, args),
        Command::Config(args) => config::run(&project, args, conformance::judge_role),
        Command::Schematic(args) => schematic::run(&project, args, conformance::judge_schematics),
        Command::Conformance(args) => conformance::run(&project, args),
        Command::Changed(args) => changed::run(&project, args),
        Command::Smoke(args) => smoke::run(&project, args),
        Command::Test(args) => test::run(&project, args),
    }
}
