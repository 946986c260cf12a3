//! Subcommand: `cargo xtask plan`: the whole resolved plan, what exactly will be built for each
//! node role. Other subcommands (build, ci) start from the same `Plan`.

use anyhow::Result;

use domain::plan::Plan;
use infra::project::Project;

#[derive(clap::Args)]
pub struct Args {
    /// Only these variants (repeatable); default: every file under variants/.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub registry: infra::inputs::RegistryArg,
    /// Print the plan as JSON (the contract CI and other tools read).
    #[arg(long)]
    pub json: bool,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let plan = infra::inputs::load_plan(project, &args.variants, args.registry.resolve()?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    // on stderr, as every other subcommand's warnings: stdout is the plan alone
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// The human view: one table row per variant, then each variant's extensions and outputs.
pub fn render(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    writeln!(
        out,
        "Talos {}, from {}",
        plan.talos_version, plan.talos_version_source
    )
    .unwrap();
    writeln!(out).unwrap();
    let mut rows = vec![["VARIANT", "ARCH", "TARGET", "EXTENSIONS", "IMAGE"].map(String::from)];
    for v in &plan.variants {
        let mut arches = Vec::new();
        for a in &v.target.arches {
            arches.push(a.as_str());
        }
        rows.push([
            v.name.clone(),
            arches.join(","),
            v.target.label(),
            v.extensions.join(" "),
            format!("{}:{}", v.image, v.tag),
        ]);
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = cell.chars().count().max(*width);
        }
    }
    for row in &rows {
        let mut cells = Vec::new();
        for (cell, w) in row.iter().zip(&widths) {
            cells.push(format!("{cell:<w$}"));
        }
        writeln!(out, "{}", cells.join("  ").trim_end()).unwrap();
    }
    for v in &plan.variants {
        writeln!(out, "\n{}: {}", v.name, v.description).unwrap();
        for (name, reference) in v.extensions.iter().zip(&v.extension_refs) {
            let note = if v.unpinned.contains(name) {
                "  (no digest yet)"
            } else {
                ""
            };
            writeln!(out, "  extension {name:<10} {reference}{note}").unwrap();
        }
        if let (Some(o), Some(image)) = (&v.target.overlay, &v.overlay_image) {
            writeln!(out, "  overlay   {:<10} {image}", o.name).unwrap();
        }
        for p in &v.profiles {
            writeln!(out, "  output    {:<10} {}", p.kind.name(), p.artifact).unwrap();
        }
        if let Some(matchbox) = &v.matchbox_image {
            writeln!(
                out,
                "  image     {:<10} {matchbox}:{}  (netboot: the kernel and initramfs above)",
                "matchbox", v.tag
            )
            .unwrap();
        }
        if v.target.multi_arch() {
            let mut platforms = Vec::new();
            for a in &v.target.arches {
                platforms.push(format!("linux/{a}"));
            }
            // the installer, and the matchbox image built from each arch's kernel and initramfs
            let mut images = vec![format!("{}:{}", v.image, v.tag)];
            images.extend(v.matchbox_image.iter().map(|m| format!("{m}:{}", v.tag)));
            writeln!(
                out,
                "  publish   one image index per tag ({}): {}",
                platforms.join(", "),
                images.join(", ")
            )
            .unwrap();
        }
    }
    out
}
