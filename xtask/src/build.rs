//! Subcommand: `cargo xtask build`: run the Talos imager per variant and publish the results.
//!
//! Not built yet: for now it resolves and prints the plan and says so.

use anyhow::Result;

use crate::plan;
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these variants (repeatable); default: all.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub registry: plan::RegistryArg,
    /// Fail if variants/extensions.lock is missing, stale or unpinned instead of filling it (CI).
    #[arg(long)]
    pub locked: bool,
    #[command(flatten)]
    pub registry_client: crate::registry::RegistryArgs,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    // The lock comes first: with --locked nothing is built from a lock that is not complete.
    let skopeo = crate::registry::Skopeo::new(&args.registry_client)?;
    let selected = crate::variants::select(crate::variants::load_all(project)?, &args.variants)?;
    crate::lock::ensure(project, &selected, args.locked, &skopeo)?;
    let plan = plan::load(project, &args.variants, args.registry.resolve())?;
    print!("{}", plan::render(&plan));
    println!("\nnot built yet: running the Talos imager is not implemented in this version; the plan above is what it will build");
    Ok(())
}
