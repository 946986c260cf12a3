//! Subcommand: `cargo xtask smoke`: prove each built image is the role it claims, and boots.
//!
//! `smoke --variant V` runs the static checks of `_out/V/build.json` and then boots V's kernel
//! and initramfs under qemu until Talos enters maintenance mode and its API port answers.
//! `smoke check` runs only the static checks; `smoke boot` boots any arm64 kernel + initramfs
//! or UEFI disk image. See docs/smoke.md.
//!
//! For `cargo xtask ci`: `check::static_checks`, then `boot::boot` as `plan_boot` decides.

pub mod boot;
pub mod check;
pub mod pattern;

use anyhow::{bail, Result};
use camino::Utf8PathBuf;
use serde::Serialize;

use boot::{BootOptions, BootResult, Media};
use check::Report;
use domain::{Arch, Output, Variant};
use infra::cmd::Runner;
use infra::project::Project;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub variants: VariantArgs,
}

#[derive(clap::Subcommand)]
pub enum Mode {
    /// Boot an arm64 kernel + initramfs (or a UEFI disk image) under qemu and watch the console.
    Boot(BootArgs),
    /// Only the static checks of built variants (extensions, digests, files, platforms, tags).
    Check(CheckArgs),
}

/// Without a subcommand: static checks, then a boot of each variant's kernel and initramfs.
/// The qemu guest's size, for `smoke` and `smoke boot` alike.
#[derive(clap::Args)]
pub struct GuestArgs {
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = boot::DEFAULT_MEMORY_MIB,
          value_parser = clap::value_parser!(u32).range(256..))]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, value_name = "N", default_value_t = boot::DEFAULT_CPUS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,
}

#[derive(clap::Args)]
pub struct VariantArgs {
    /// Only these variants (repeatable); default: every variant.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Skip the static checks, only boot.
    #[arg(long)]
    pub no_check: bool,
    /// Give up booting after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = boot::DEFAULT_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Print results as JSON on stdout, no progress on stderr.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
    /// Print the qemu commands instead of running anything. A variant that is not built (or,
    /// with --no-check, lacks its kernel or initramfs) is refused, as a real run refuses it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub registry_client: infra::registry::RegistryArgs,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Only these variants (repeatable); default: every variant.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Print the reports as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry_client: infra::registry::RegistryArgs,
}

#[derive(clap::Args)]
pub struct BootArgs {
    /// The kernel image (arm64 `Image`, as `kernel-arm64` or Debian's vmlinuz).
    #[arg(
        long,
        value_name = "PATH",
        requires = "initramfs",
        required_unless_present = "disk"
    )]
    pub kernel: Option<Utf8PathBuf>,
    /// The initramfs to boot the kernel with.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initramfs: Option<Utf8PathBuf>,
    /// Kernel command line (direct kernel boot only).
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "console=ttyAMA0",
        requires = "kernel"
    )]
    pub cmdline: String,
    /// A disk image (raw, `.raw.xz` or `.qcow2`) to boot through UEFI firmware instead.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["kernel", "initramfs", "cmdline"])]
    pub disk: Option<Utf8PathBuf>,
    /// Succeed when a console line matches this pattern (`.`, `[]`, `\d`, `* + ?`, `^ $`, `|`;
    /// escape brackets to match them). The default is Talos's maintenance-mode line.
    #[arg(long, value_name = "REGEX", default_value = boot::TALOS_MAINTENANCE)]
    pub expect: String,
    /// Also require this guest TCP port to answer (forwarded from a free host port).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Require the port to answer with a TLS record (as Talos's API does), not just any bytes.
    #[arg(long, requires = "port")]
    pub tls: bool,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = boot::DEFAULT_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Where to stream the console. Default: target/smoke/boot.log ($CARGO_TARGET_DIR/smoke/boot.log
    /// when that is set).
    #[arg(long, value_name = "FILE")]
    pub log: Option<Utf8PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Print the result as JSON on stdout, no progress on stderr.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
    /// Print the qemu command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    match args.mode {
        Some(Mode::Boot(args)) => run_boot(project, args),
        Some(Mode::Check(args)) => run_check(project, args),
        None => run_variants(project, args.variants),
    }
}

fn run_boot(project: &Project, args: BootArgs) -> Result<()> {
    let media = match (args.kernel, args.initramfs, args.disk) {
        (Some(kernel), Some(initramfs), None) => Media::Kernel {
            kernel,
            initramfs,
            cmdline: args.cmdline,
        },
        (None, None, Some(path)) => Media::Disk { path },
        _ => return domain::diag::usage("give either --kernel and --initramfs, or --disk"),
    };
    let smoke_dir = project.target_dir().join("smoke");
    let log = args.log.unwrap_or_else(|| smoke_dir.join("boot.log"));
    let mut opts = BootOptions::new(
        media,
        log,
        smoke_dir.join(format!("run-{}", std::process::id())),
    );
    opts.expect = pattern::parse(&args.expect)
        .map_err(|err| domain::diag::Usage(format!("--expect: {err:#}")))?;
    opts.port = args.port;
    opts.require_tls = args.tls;
    opts.timeout = std::time::Duration::from_secs(args.timeout);
    opts.memory_mib = args.guest.memory;
    opts.cpus = args.guest.cpus;
    opts.quiet = args.json;
    // files named on the command line: a missing one is the command line's mistake
    boot::check_inputs(&opts.media).map_err(|err| domain::diag::Usage(format!("{err:#}")))?;
    let Some(result) = boot::run(Runner::new(args.dry_run), &opts)? else {
        return Ok(());
    };
    print_boot(&result, args.json)?;
    boot_result(&result)
}

fn run_check(project: &Project, args: CheckArgs) -> Result<()> {
    // variants and lock read once, every problem in either at once
    let (variants, lock) = infra::inputs::load_inputs(project)?;
    let selected = domain::variant::select(variants, &args.variants)?;
    let skopeo = infra::registry::Skopeo::new(&args.registry_client)?;
    let mut reports = Vec::new();
    // every variant is reported, one that cannot be checked (not built) too
    for variant in &selected {
        reports.push(
            check::static_checks(project, variant, &lock, &skopeo)
                .unwrap_or_else(|err| Report::not_checked(project, variant, &err)),
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print_report(report);
        }
    }
    let mut failed = Vec::new();
    for report in &reports {
        if !report.passed() {
            failed.push(report);
        }
    }
    match failed.as_slice() {
        [] => Ok(()),
        [one] => one.to_result(),
        _ => {
            let mut errors = Vec::new();
            for report in failed {
                errors.push(format!("{:#}", report.to_result().unwrap_err()));
            }
            bail!("{}", errors.join("\n"))
        }
    }
}

fn print_report(report: &Report) {
    println!(
        "{}: static checks {} ({} check{}, {} problem{})",
        report.variant,
        if report.passed() { "passed" } else { "FAILED" },
        report.checked.len(),
        domain::diag::plural(report.checked.len()),
        report.findings.len(),
        domain::diag::plural(report.findings.len())
    );
    for line in &report.checked {
        println!("  ok  {line}");
    }
}

/// One variant's smoke result, as `--json` prints it.
#[derive(Serialize)]
pub struct VariantResult {
    pub variant: String,
    pub checks: Option<Report>,
    pub boot: Option<BootResult>,
    /// Why the boot could not be attempted at all (e.g. the kernel was not built).
    pub error: Option<String>,
    /// Why this target is checked statically only (a board, a cloud, amd64 only).
    pub static_only: Option<String>,
}

/// Why a variant's target is not booted under qemu, which boots generic arm64 metal only:
/// `None` when it is. The static checks still cover every output and index entry.
pub fn static_only(variant: &Variant) -> Option<String> {
    let target = &variant.target;
    if let Some(overlay) = &target.overlay {
        return Some(format!(
            "board overlay `{}`: qemu's virt machine is not that board (its firmware and device trees do not apply)",
            overlay.name
        ));
    }
    if target.platform != domain::target::Platform::Metal {
        return Some(format!(
            "platform `{}`: the image expects that cloud's metadata service, which qemu does not have",
            target.platform
        ));
    }
    if !target.arches.contains(&Arch::Arm64) {
        return Some("amd64 only: the smoke boot emulates arm64".to_owned());
    }
    None
}

/// What a smoke run does with a variant once its static checks passed. `smoke`, `ci`'s smoke
/// stage and both their dry runs decide by [`plan_boot`] alone.
pub enum Boot {
    /// Boot its kernel and initramfs under qemu.
    Qemu(Box<BootOptions>),
    /// Checked statically only, not booted, for this reason ([`static_only`]).
    StaticOnly(String),
}

/// The boot of a variant, or why it is checked statically only; an error when it should boot
/// but cannot (it builds no kernel).
pub fn plan_boot(project: &Project, variant: &Variant) -> Result<Boot> {
    match static_only(variant) {
        Some(reason) => Ok(Boot::StaticOnly(reason)),
        None => variant_boot_options(project, variant).map(|opts| Boot::Qemu(Box::new(opts))),
    }
}

fn run_variants(project: &Project, args: VariantArgs) -> Result<()> {
    // read once; the lock only for the static checks (a boot alone needs none)
    let (selected, lock) = if args.no_check {
        (project.select_variants(&args.variants)?, None)
    } else {
        let (variants, lock) = infra::inputs::load_inputs(project)?;
        (
            domain::variant::select(variants, &args.variants)?,
            Some(lock),
        )
    };
    // the registry options are checked first, a dry run's too
    let skopeo = infra::registry::Skopeo::new(&args.registry_client)?;
    let runner = Runner::new(args.dry_run);
    if runner.is_dry_run() {
        return dry_run(project, &args, &selected, lock.as_ref(), runner);
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for variant in &selected {
        let mut result = VariantResult {
            variant: variant.name.clone(),
            checks: None,
            boot: None,
            error: None,
            static_only: static_only(variant),
        };
        if let Some(lock) = &lock {
            match check::static_checks(project, variant, lock, &skopeo) {
                Ok(report) => {
                    if !args.json {
                        print_report(&report);
                    }
                    if let Err(err) = report.to_result() {
                        failures.push(format!("{err:#}"));
                    }
                    result.checks = Some(report);
                }
                Err(err) => {
                    // Not built (or unreadable): booting it cannot work either.
                    failures.push(format!("variant `{}`: {err:#}", variant.name));
                    result.error = Some(format!("{err:#}"));
                    results.push(result);
                    continue;
                }
            }
        }
        let attempt = match plan_boot(project, variant) {
            Ok(Boot::StaticOnly(reason)) => {
                if !args.json {
                    println!(
                        "{}: checked statically only, not booted: {reason}",
                        variant.name
                    );
                }
                results.push(result);
                continue;
            }
            Ok(Boot::Qemu(mut opts)) => {
                opts.timeout = std::time::Duration::from_secs(args.timeout);
                opts.memory_mib = args.guest.memory;
                opts.cpus = args.guest.cpus;
                opts.quiet = args.json;
                boot::boot(&opts)
            }
            Err(err) => Err(err),
        };
        match attempt {
            Ok(boot) => {
                if !args.json {
                    print_boot(&boot, false)?;
                }
                if let Err(err) = boot_result(&boot) {
                    failures.push(format!("variant `{}`: {err:#}", variant.name));
                }
                result.boot = Some(boot);
            }
            Err(err) => {
                failures.push(format!("variant `{}`: {err:#}", variant.name));
                result.error = Some(format!("{err:#}"));
            }
        }
        results.push(result);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if !failures.is_empty() {
        bail!("smoke failed:\n{}", failures.join("\n"));
    }
    Ok(())
}

/// `smoke --dry-run`: per variant, what a real run does in the same order (the static checks,
/// of which those on disk run here and those of the registry are left to the real run; a
/// board's or cloud's image checked statically only; the boot's commands). What a real run
/// would fail on before booting (nothing built, a static check on disk, an output missing) is
/// refused up front, for every variant at once, before anything is printed.
fn dry_run(
    project: &Project,
    args: &VariantArgs,
    selected: &[Variant],
    lock: Option<&domain::Lock>,
    runner: Runner,
) -> Result<()> {
    let mut refused = Vec::new();
    let mut boots = Vec::new();
    for variant in selected {
        let refuse = |err: anyhow::Error| format!("variant `{}`: {err:#}", variant.name);
        // the checks that need no registry run here as in a real run; a problem refuses
        if let Some(lock) = lock {
            let checked = infra::record::read_built(project, &variant.name)
                .map(|record| check::check_on_disk(project, variant, lock, &record))
                .and_then(|report| report.to_result());
            if let Err(err) = checked {
                refused.push(refuse(err));
                continue;
            }
        }
        // the boot, or why the image is checked statically only
        match plan_boot(project, variant) {
            Ok(Boot::Qemu(mut opts)) => match boot::check_inputs(&opts.media) {
                Ok(()) => {
                    opts.memory_mib = args.guest.memory;
                    opts.cpus = args.guest.cpus;
                    boots.push(Boot::Qemu(opts));
                }
                Err(err) => refused.push(refuse(err)),
            },
            Ok(planned) => boots.push(planned),
            Err(err) => refused.push(refuse(err)),
        }
    }
    if !refused.is_empty() {
        bail!("a real run would fail:\n{}", refused.join("\n"));
    }
    for (variant, planned) in selected.iter().zip(boots) {
        if !args.no_check {
            runner.note(&format!(
                "{}: static checks of {} against its build.json: those on disk passed; a real run also reads what the registry has",
                variant.name,
                project.display(&project.out_dir().join(&variant.name))
            ));
        }
        match planned {
            Boot::Qemu(opts) => {
                boot::run(runner, &opts)?;
            }
            Boot::StaticOnly(reason) => runner.note(&format!(
                "{}: checked statically only, not booted: {reason}",
                variant.name
            )),
        }
    }
    Ok(())
}

/// Talos's kernel arguments for a metal boot on qemu's `virt` machine, plus the variant's own.
pub fn talos_cmdline(variant: &Variant) -> String {
    let mut args = vec![
        "console=ttyAMA0".to_owned(),
        "talos.platform=metal".to_owned(),
        "printk.devkmsg=on".to_owned(),
        "slab_nomerge".to_owned(),
        "pti=on".to_owned(),
    ];
    args.extend(variant.extra_kernel_args.iter().cloned());
    args.join(" ")
}

/// How `smoke --variant V` (and `ci`) boots a built variant: its kernel and initramfs from
/// `_out/V/`, Talos's command line, the maintenance-mode line and API port 50000, the console
/// streamed to `_out/V/smoke-console.log`.
fn variant_boot_options(project: &Project, variant: &Variant) -> Result<BootOptions> {
    if !variant.target.arches.contains(&Arch::Arm64) {
        bail!(
            "variant `{}` is {}: the smoke boot emulates arm64 only",
            variant.name,
            variant.arch
        );
    }
    let arch = Arch::Arm64;
    for output in [Output::Kernel, Output::Initramfs] {
        if !variant.builds(output) {
            bail!(
                "variant `{}` does not build its {}: add \"{}\" to `outputs` in variants/{}.json to smoke-boot it",
                variant.name,
                output.name(),
                output.name(),
                variant.name
            );
        }
    }
    let dir = project.out_dir().join(&variant.name);
    let media = Media::Kernel {
        kernel: dir.join(domain::output::artifact_name(Output::Kernel, arch)),
        initramfs: dir.join(domain::output::artifact_name(Output::Initramfs, arch)),
        cmdline: talos_cmdline(variant),
    };
    let mut opts = BootOptions::new(
        media,
        dir.join("smoke-console.log"),
        project.target_dir().join("smoke").join(&variant.name),
    );
    opts.port = Some(boot::TALOS_API_PORT);
    opts.require_tls = true;
    opts.label = format!("smoke {}", variant.name);
    Ok(opts)
}

fn print_boot(result: &BootResult, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        println!(
            "smoke boot {}: {} (console log: {})",
            if result.passed() { "passed" } else { "FAILED" },
            result.reason,
            result.log
        );
    }
    Ok(())
}

fn boot_result(result: &BootResult) -> Result<()> {
    if result.passed() {
        Ok(())
    } else {
        bail!(
            "smoke boot failed: {} (console log: {})",
            result.reason,
            result.log
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        smoke: Args,
    }

    fn timeout_of(args: &[&str]) -> Result<u64, clap::Error> {
        use clap::Parser;
        let cli = Cli::try_parse_from(std::iter::once("smoke").chain(args.iter().copied()))?;
        Ok(match cli.smoke.mode {
            Some(Mode::Boot(boot)) => boot.timeout,
            _ => cli.smoke.variants.timeout,
        })
    }

    #[test]
    fn a_zero_timeout_is_refused_before_anything_boots() {
        // a zero deadline expires at once: every boot would fail with "timed out" after 0 s
        for args in [
            &["--timeout", "0"][..],
            &[
                "boot",
                "--kernel",
                "k",
                "--initramfs",
                "i",
                "--timeout",
                "0",
            ],
        ] {
            let err = timeout_of(args).unwrap_err().to_string();
            assert!(
                err.contains("'--timeout <SECS>'") && err.contains("0 is not in 1.."),
                "{args:?}: {err}"
            );
        }
        assert_eq!(timeout_of(&["--timeout", "5"]).unwrap(), 5);
        assert_eq!(timeout_of(&[]).unwrap(), boot::DEFAULT_TIMEOUT.as_secs());
    }

    #[test]
    fn talos_cmdline_uses_the_arm64_serial_console_and_the_variant_args() {
        let variant = domain::variant::parse(
            "variants/g.json",
            r#"{"name":"g","description":"d","arch":"arm64","extensions":["drbd"],"repository":"g/talos","extra_kernel_args":["net.ifnames=0"]}"#,
        )
        .unwrap();
        assert_eq!(
            talos_cmdline(&variant),
            "console=ttyAMA0 talos.platform=metal printk.devkmsg=on slab_nomerge pti=on net.ifnames=0"
        );
    }

    #[test]
    fn commands_print_as_typed() {
        let words = ["qemu", "-append", "console=ttyAMA0 quiet", "romfile="]
            .map(String::from)
            .to_vec();
        assert_eq!(
            domain::shell::shell_line(&words),
            "qemu -append 'console=ttyAMA0 quiet' romfile="
        );
    }
}
