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
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let plan = plan::load(project, &args.variants, args.registry.resolve())?;
    print!("{}", plan::render(&plan));
    println!("\nnot built yet: running the Talos imager is not implemented in this version; the plan above is what it will build");
    Ok(())
}
