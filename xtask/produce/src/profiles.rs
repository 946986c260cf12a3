//! Subcommand: `cargo xtask profiles`: write the imager profiles of each variant as YAML files,
//! or check committed copies (`--check`). They are what the imager builds from: byte for byte
//! with `build --no-prefetch`; by default `build` adds `ociPath` beside each `imageRef` it
//! fetched beforehand (`infra/src/prefetch.rs`).

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use domain::Plan;
use infra::inputs;
use infra::project::Project;

#[derive(clap::Args)]
pub struct Args {
    /// Only these variants (repeatable); default: all.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Directory to write `<variant>/<kind>.yaml` (`<kind>-<arch>.yaml` for a role built for
    /// several architectures) into. Default: target/profiles ($CARGO_TARGET_DIR/profiles when
    /// that is set).
    #[arg(long, value_name = "DIR")]
    pub out: Option<Utf8PathBuf>,
    /// Compare with the files in the directory instead of writing; fail listing every difference.
    #[arg(long)]
    pub check: bool,
}

/// `(relative path, YAML text)` for every profile in the plan.
pub fn render(plan: &Plan) -> Vec<(Utf8PathBuf, String)> {
    let mut files = Vec::new();
    for v in &plan.variants {
        for p in &v.profiles {
            let path = format!("{}/{}.yaml", v.name, p.step(v.target.multi_arch()));
            files.push((Utf8PathBuf::from(path), p.profile.to_yaml()));
        }
    }
    files
}

/// Files under `dir` that differ from `files` (missing counts as different).
pub fn differences(dir: &Utf8Path, files: &[(Utf8PathBuf, String)]) -> Vec<Utf8PathBuf> {
    let mut differ = Vec::new();
    for (path, text) in files {
        if std::fs::read_to_string(dir.join(path)).ok().as_deref() != Some(text.as_str()) {
            differ.push(path.clone());
        }
    }
    differ
}

pub fn write(dir: &Utf8Path, files: &[(Utf8PathBuf, String)]) -> Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("profile paths have a parent"))
            .with_context(|| format!("creating {}", path.parent().unwrap()))?;
        infra::fsutil::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let plan = inputs::load_plan(project, &args.variants, None)?;
    let dir = args
        .out
        .unwrap_or_else(|| project.target_dir().join("profiles"));
    if dir.exists() && !dir.is_dir() {
        return domain::diag::usage(format!(
            "--out {dir}: is a file, not a directory: profiles are written one file per role and output into it\n    fix: name a directory (e.g. --out target/profiles)"
        ));
    }
    let files = render(&plan);
    if args.check {
        let stale = differences(&dir, &files);
        if !stale.is_empty() {
            anyhow::bail!(
                "{} profile file{} in {dir} differ from what the variants and lock generate, or are missing:\n  {}\n    fix: cargo xtask profiles --out {dir}",
                stale.len(),
                domain::diag::plural(stale.len()),
                stale
                    .iter()
                    .map(|p| match dir.join(p).exists() {
                        true => format!("{p} (differs)"),
                        false => format!("{p} (missing)"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        println!("{} profiles in {dir} are up to date", files.len());
        return Ok(());
    }
    write(&dir, &files)?;
    for (path, _) in &files {
        println!("{}", dir.join(path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden copies of both roles' profiles live in xtask/tests/golden/; `UPDATE_GOLDEN=1`
    /// rewrites them after an intended change. They render from the fixture repository
    /// (tests/fixtures/repo: the roles and a lock of the tests' own), so that a Talos bump of
    /// the live lock leaves them alone.
    #[test]
    fn generated_profiles_match_golden_files() {
        let manifest = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let project = Project {
            root: manifest.join("../tests/fixtures/repo"),
        };
        let plan = inputs::load_plan(&project, &[], None).unwrap();
        let golden = manifest.join("../tests/golden/profiles");
        let files = render(&plan);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            write(&golden, &files).unwrap();
        }
        let stale = differences(&golden, &files);
        assert!(stale.is_empty(), "profiles differ from xtask/tests/golden/profiles: {stale:?}\nrun `UPDATE_GOLDEN=1 cargo test -p produce golden` and review the diff");
        let gateway = std::fs::read_to_string(golden.join("gateway/installer.yaml")).unwrap();
        assert!(gateway.contains("tailscale") && gateway.contains("arch: arm64"));
        let compute = std::fs::read_to_string(golden.join("compute/installer.yaml")).unwrap();
        assert!(!compute.contains("tailscale"));
    }

    /// Golden profiles of one role per kind of target (a Raspberry Pi board, an AWS role, a
    /// two-arch role), from fixture variants and a fixture lock: the overlay, the overlay
    /// installer, the platform and its disk defaults, and each arch, as the imager gets them.
    #[test]
    fn target_profiles_match_golden_files() {
        const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let lock = domain::Lock::parse(&format!(
            r#"{{"talos_version": "v1.13.99", "extensions_image": "ghcr.io/siderolabs/extensions:v1.13.99@{D}",
                "extensions": {{"drbd": "ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{D}"}},
                "overlays_image": "ghcr.io/siderolabs/overlays:v1.13.99@{D}",
                "overlays": {{"rpi_generic": "ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0@{D}"}},
                "known_overlays": ["rpi_5", "rpi_generic"]}}"#
        ))
        .unwrap();
        let variant = |name: &str, arch: &str, extra: &str| {
            domain::variant::parse(
                &domain::layout::variant_file(name),
                &format!(r#"{{"name": "{name}", "description": "d", "arch": {arch}, "extensions": ["drbd"], "repository": "{name}/talos"{extra}}}"#),
            )
            .unwrap()
        };
        let variants = vec![
            variant(
                "rpi",
                r#""arm64""#,
                r#", "overlay": "rpi_generic", "overlay_options": {"configTxtAppend": "dtoverlay=disable-bt"}"#,
            ),
            variant("aws", r#""arm64""#, r#", "platform": "aws""#),
            variant(
                "mixed",
                r#"["amd64", "arm64"]"#,
                r#", "outputs": ["installer", "metal"]"#,
            ),
        ];
        let talos = domain::talos::Talos {
            version: domain::TalosVersion::parse("v1.13.99").unwrap(),
            source: "test".into(),
        };
        let plan = domain::plan::make(variants, &lock, talos, None).unwrap();
        let golden = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/targets");
        let files = render(&plan);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            write(&golden, &files).unwrap();
        }
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "rpi/installer.yaml",
                "rpi/disk.yaml",
                "aws/installer.yaml",
                "aws/disk.yaml",
                "mixed/installer-amd64.yaml",
                "mixed/installer-arm64.yaml",
                "mixed/metal-amd64.yaml",
                "mixed/metal-arm64.yaml"
            ]
        );
        let stale = differences(&golden, &files);
        assert!(stale.is_empty(), "profiles differ from xtask/tests/golden/targets: {stale:?}\nrun `UPDATE_GOLDEN=1 cargo test -p produce golden` and review the diff");
    }
}
