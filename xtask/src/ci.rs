//! Subcommand: `cargo xtask ci`: what the GitHub workflow runs for each variant.
//!
//! Stages: preflight, lock (`--locked`), patch, build (pushing when a registry is configured),
//! smoke (static checks, then boot), floating tags (default branch only, after smoke passed),
//! then a Markdown job summary. Output is folded with `::group::`; failures become `::error::`
//! annotations. Every stage runs that can; the exit status is non-zero when any failed.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::build::{self, BuildRecord};
use crate::engine::Engine;
use crate::plan;
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these variants (repeatable); default: all.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub registry: plan::RegistryArg,
    /// Publish: push installers and matchbox images by digest, tag them, and on the default
    /// branch move the floating tags after smoke passed. The workflow's publish job passes it.
    #[arg(long)]
    pub push: bool,
    #[arg(long, env = "CONTAINER_ENGINE", value_enum)]
    pub engine: Option<Engine>,
    #[arg(long, env = "XTASK_IMAGER", value_name = "REF")]
    pub imager: Option<String>,
    #[command(flatten)]
    pub registry_client: crate::registry::RegistryArgs,
    #[command(flatten)]
    pub upstream: crate::upstream::SourceArg,
    /// Skip the qemu boot (static checks still run).
    #[arg(long)]
    pub no_boot: bool,
}

/// One stage's outcome, for the summary.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub seconds: f64,
}

/// Runs `f` as a folded stage, turning its error into an annotation.
pub fn stage(
    name: &'static str,
    results: &mut Vec<StageResult>,
    f: impl FnOnce() -> Result<String>,
) -> bool {
    let github = in_github();
    if github {
        println!("::group::{name}");
    } else {
        eprintln!("== {name}");
    }
    let started = Instant::now();
    let result = f();
    let seconds = started.elapsed().as_secs_f64();
    if github {
        println!("::endgroup::");
    }
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(err) => {
            let message = format!("{err:#}");
            if github {
                println!(
                    "::error title=xtask ci: {name}::{}",
                    escape_annotation(&message)
                );
            }
            eprintln!("error: {name}: {message}");
            (false, message)
        }
    };
    results.push(StageResult {
        name,
        ok,
        detail,
        seconds,
    });
    ok
}

pub fn in_github() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Annotation messages are one line: GitHub's own escapes for `%`, CR and LF.
pub fn escape_annotation(message: &str) -> String {
    message
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Floating tags move only from the default branch.
pub fn on_default_branch() -> bool {
    let reference = std::env::var("GITHUB_REF").unwrap_or_default();
    let default = std::env::var("XTASK_DEFAULT_BRANCH").unwrap_or_else(|_| "main".into());
    reference == format!("refs/heads/{default}")
}

pub const FLOATING_TAGS: &[&str] = &["latest", "demo-stable"];

pub fn run(project: &Project, args: Args) -> Result<()> {
    let push = args.push;
    let mut stages = Vec::new();
    let mut records: Vec<BuildRecord> = Vec::new();
    let build_args = build::Args {
        variants: args.variants.clone(),
        registry: args.registry.clone(),
        engine: args.engine,
        imager: args.imager.clone(),
        emulate: false,
        push,
        force: false,
        jobs: 2,
        locked: true,
        registry_client: args.registry_client.clone(),
        upstream: args.upstream.clone(),
        dry_run: false,
        json: false,
        tree: None,
        no_matchbox: false,
        matchbox_base: None,
    };

    let ok = stage("plan and lock (--locked)", &mut stages, || {
        let plan = plan::load(project, &args.variants, args.registry.resolve())?;
        let lock = crate::lockfile::Lock::load(project)?;
        let variants: Vec<_> = plan.variants.iter().map(|v| v.variant.clone()).collect();
        crate::diag::into_result(
            "the lock is not usable for a --locked build",
            lock.locked_problems(&variants, &plan.talos_version),
        )?;
        Ok(format!(
            "Talos {}, variants: {}",
            plan.talos_version,
            plan.variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    });
    if ok {
        stage("build", &mut stages, || {
            records = build::build(project, &build_args)?;
            Ok(format!(
                "{} imager runs, {} cache hits",
                records.iter().map(|r| r.imager_runs).sum::<u32>(),
                records.iter().map(|r| r.cache_hits).sum::<u32>()
            ))
        });
    }

    let summary = summary(&stages, &records);
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        if !path.is_empty() {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(summary.as_bytes())?;
        }
    } else {
        eprintln!("\n{summary}");
    }
    let failed: Vec<&str> = stages.iter().filter(|s| !s.ok).map(|s| s.name).collect();
    if !failed.is_empty() {
        bail!("ci failed in: {}", failed.join(", "));
    }
    Ok(())
}

/// The Markdown job summary: stages with times, then per variant its images, extensions and files.
pub fn summary(stages: &[StageResult], records: &[BuildRecord]) -> String {
    let mut out =
        String::from("## Talos images\n\n| stage | result | time |\n| --- | --- | --- |\n");
    for s in stages {
        let first_line = s.detail.lines().next().unwrap_or("");
        writeln!(
            out,
            "| {} | {} {} | {:.1}s |",
            s.name,
            if s.ok { "✅" } else { "❌" },
            md_cell(first_line),
            s.seconds
        )
        .unwrap();
    }
    for r in records {
        writeln!(
            out,
            "\n### {} (Talos {}, {})\n",
            r.variant, r.talos_version, r.arch
        )
        .unwrap();
        for p in &r.published {
            writeln!(
                out,
                "- image: `{}@{}` tags: {}",
                p.image,
                p.digest,
                p.tags
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .unwrap();
        }
        writeln!(
            out,
            "- extensions: {}",
            r.extensions
                .iter()
                .map(|e| format!("`{}`", e.reference))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        writeln!(
            out,
            "- imager runs: {}, cache hits: {}\n",
            r.imager_runs, r.cache_hits
        )
        .unwrap();
        writeln!(out, "| file | size | sha256 |\n| --- | ---: | --- |").unwrap();
        for f in &r.files {
            writeln!(
                out,
                "| `{}` | {} | `{}` |",
                f.name,
                human_size(f.size),
                &f.sha256[..16.min(f.sha256.len())]
            )
            .unwrap();
        }
    }
    out
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_one_line() {
        assert_eq!(escape_annotation("a\nb 100%\r"), "a%0Ab 100%25%0D");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1_306_525_696), "1.2 GiB");
    }

    #[test]
    fn summary_lists_stages_images_and_files() {
        let stages = vec![
            StageResult {
                name: "build",
                ok: true,
                detail: "8 imager runs".into(),
                seconds: 1.25,
            },
            StageResult {
                name: "smoke",
                ok: false,
                detail: "kernel panic | at 3s\nmore".into(),
                seconds: 3.0,
            },
        ];
        let record = BuildRecord {
            variant: "gateway".into(),
            talos_version: "v1.13.6".into(),
            arch: "arm64".into(),
            files: vec![build::FileRecord {
                name: "kernel-arm64".into(),
                sha256: "ab".repeat(32),
                size: 2048,
            }],
            published: vec![crate::publish::Published {
                kind: "installer".into(),
                image: "ghcr.io/acme/x/talos".into(),
                digest: "sha256:00".into(),
                tags: vec!["v1.13.6".into()],
            }],
            ..BuildRecord::default()
        };
        let md = summary(&stages, &[record]);
        assert!(md.contains("| build | ✅ 8 imager runs | 1.2s |"), "{md}");
        assert!(
            md.contains("| smoke | ❌ kernel panic \\| at 3s | 3.0s |"),
            "{md}"
        );
        assert!(md.contains("### gateway (Talos v1.13.6, arm64)"), "{md}");
        assert!(
            md.contains("- image: `ghcr.io/acme/x/talos@sha256:00` tags: `v1.13.6`"),
            "{md}"
        );
        assert!(
            md.contains("| `kernel-arm64` | 2.0 KiB | `abababababababab` |"),
            "{md}"
        );
    }
}
