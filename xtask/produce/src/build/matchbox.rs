//! The matchbox netboot image of a variant: upstream's (patched, arch-parametric) matchbox
//! Dockerfile built with that variant's kernel and initramfs for `linux/<arch>`, once per arch
//! of the role, each saved as a docker-archive beside the other outputs, and published beside
//! the installer (as one image index when the role has several arches, as the installer).

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::Ctx;
use domain::output::{artifact_name, matchbox_archive_name};
use domain::record::FileRecord;
use domain::{Arch, Output, VariantPlan};
use infra::cmd::Cmd;
use infra::engine::Engine;

/// Where the Dockerfile lives in a patched upstream tree.
pub fn dockerfile(tree: &Utf8Path) -> Result<Utf8PathBuf> {
    let dir = infra::pin::talos_package_dir(tree).with_context(|| {
        format!("{tree} is not a CozyStack tree with Talos packaging (run `cargo xtask patch`)")
    })?;
    Ok(tree.join(dir).join("images/matchbox/Dockerfile"))
}

/// Content key: the Dockerfile and matchbox profiles/groups, the kernel and initramfs, the base.
fn content_key(
    tree: &Utf8Path,
    dockerfile: &Utf8Path,
    inputs: &[&FileRecord],
    base: Option<&str>,
    arch: &str,
) -> Result<String> {
    let mut text = format!(
        "xtask-matchbox-key-v1\narch={arch}\nbase={}\n",
        base.unwrap_or("(Dockerfile)")
    );
    // Everything beside the Dockerfile (profiles, groups, per-architecture subdirectories) is
    // what it may COPY.
    let dir = dockerfile.parent().expect("Dockerfile has a parent");
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    files.sort();
    for file in files {
        let (sha, _) = infra::fsutil::sha256_file(&file)?;
        text.push_str(&format!(
            "{} {sha}\n",
            file.strip_prefix(tree).unwrap_or(&file)
        ));
    }
    for input in inputs {
        text.push_str(&format!("{} {}\n", input.name, input.sha256));
    }
    Ok(infra::fsutil::sha256_hex(text.as_bytes()))
}

fn files_under(dir: &Utf8Path, files: &mut Vec<Utf8PathBuf>) -> Result<()> {
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let path = entry.with_context(|| format!("reading {dir}"))?.into_path();
        if path.is_dir() {
            files_under(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Builds the variant's matchbox image for `arch` (unless cached) and returns the archive's
/// record and whether it was a cache hit; `None` in a dry run, which prints the commands.
pub fn build(
    ctx: &Ctx,
    vp: &VariantPlan,
    arch: Arch,
    tree: &Utf8Path,
    base: Option<&str>,
    files: &[FileRecord],
) -> Result<Option<(FileRecord, bool)>> {
    let kernel = artifact_name(Output::Kernel, arch);
    let initramfs = artifact_name(Output::Initramfs, arch);
    // `matchbox`, or `matchbox-arm64` for a multi-arch role: its progress and cache entry
    let step = if vp.target.multi_arch() {
        format!("matchbox-{arch}")
    } else {
        "matchbox".to_owned()
    };
    let dockerfile = match dockerfile(tree) {
        // A dry run names the tree `cargo xtask patch` would prepare, before it exists.
        Err(_) if ctx.runner.is_dry_run() => tree
            .join(infra::pin::TALOS_PACKAGE_DIRS[0])
            .join("images/matchbox/Dockerfile"),
        found => found?,
    };
    let out = ctx.project.out_dir().join(&vp.name);
    let archive = out.join(matchbox_archive_name(arch));
    let cache_path = out.join(format!(".cache/{step}.json"));
    let tag = format!("localhost/xtask-matchbox-{}:build", vp.name);
    let platform = format!("linux/{arch}");
    let program = ctx.engine.program();
    let mut build = Cmd::new(program)
        .args(["build", "--platform", &platform])
        .args(["--build-arg".to_owned(), format!("ARCH={arch}")]);
    if let Some(base) = base {
        // build() refuses --matchbox-base with docker before anything runs
        debug_assert_eq!(ctx.engine, Engine::Podman);
        build = build.args(["--pull=never", "--from", base]);
    }
    let build = build.args(["-f", dockerfile.as_str(), "-t", &tag, tree.as_str()]);
    let partial = Utf8PathBuf::from(format!("{archive}.tmp"));
    let save = Cmd::new(program).args([
        "save",
        "--format",
        "docker-archive",
        "-o",
        partial.as_str(),
        &tag,
    ]);
    let assets = tree.join("_out/assets");
    let mkdir = Cmd::new("mkdir").args(["-p", assets.as_str()]);
    let cp = Cmd::new("cp").args([
        out.join(&kernel).as_str(),
        out.join(&initramfs).as_str(),
        &format!("{assets}/"),
    ]);

    // The cache is consulted only when the inputs exist: a dry run builds none of them.
    let cached = ctx.runner.silently(|| {
        let find = |name: &str| {
            files.iter().find(|f| f.name == name).with_context(|| format!("the matchbox image needs {name}: add \"kernel\" and \"initramfs\" to the variant's outputs"))
        };
        let (kernel_rec, initramfs_rec) = (find(&kernel)?, find(&initramfs)?);
        let key = content_key(
            tree,
            &dockerfile,
            &[kernel_rec, initramfs_rec],
            base,
            arch.as_str(),
        )?;
        let hit = infra::cache::cached_file(&cache_path, &key, &archive);
        Ok((key, hit))
    })?;
    if let Some((_, Some(file))) = cached {
        ctx.progress.note(&format!(
            "[{}] {step}: cached ({})",
            vp.name,
            archive.file_name().unwrap_or_default()
        ));
        return Ok(Some((file, true)));
    }
    // Variants build in parallel, and with `--tree` they share one tree: staging writes
    // `<tree>/_out/assets/`, which the engine's build then reads. One variant at a time
    // stages and builds, so no build reads another variant's kernel half-copied.
    let staging = STAGING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ctx.runner.act(&format!("{mkdir} && {cp}"), || {
        std::fs::create_dir_all(&assets).with_context(|| format!("creating {assets}"))?;
        for name in [&kernel, &initramfs] {
            std::fs::copy(out.join(name), assets.join(name))
                .with_context(|| format!("staging {name} into {assets}"))?;
        }
        Ok(())
    })?;
    let label = format!("[{}] {step}: {program} build", vp.name);
    ctx.progress.run(&label, || {
        ctx.runner.run(&build).with_context(|| match base {
            Some(base) => format!("building the matchbox image for {arch} failed: --matchbox-base {base} must be in local storage and hold a linux/{arch} image (for several arches, a local image index)"),
            None => format!("building the matchbox image for {arch} failed"),
        })?;
        drop(staging);
        let _ = std::fs::remove_file(&partial);
        ctx.runner
            .run(&save)
            .context("saving the matchbox image failed")
    })?;
    let mv = Cmd::new("mv").args([&partial, &archive]);
    ctx.runner.act(&mv, || {
        let _ = std::fs::remove_file(&cache_path);
        std::fs::rename(&partial, &archive).with_context(|| format!("moving {partial} into place"))
    })?;
    let Some((key, _)) = cached else {
        return Ok(None);
    };
    let file = infra::cache::file_record(&archive)?;
    infra::cache::write_cache(&cache_path, &key, &file)?;
    Ok(Some((file, false)))
}

/// Held from staging the kernel and initramfs into the tree until the engine's build read them.
static STAGING: std::sync::Mutex<()> = std::sync::Mutex::new(());
