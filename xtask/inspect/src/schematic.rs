//! Subcommand: `cargo xtask schematic`: the Talos Image Factory schematic equivalent to a
//! variant, its ID, and the factory references (installer image, boot assets), so that users of
//! the hosted factory get the same extensions, and anyone can compare our build with it.
//!
//! The schematic itself, its canonical YAML and ID, and the references are pure and live in
//! `domain::schematic`; this module reads the variants and the lock, writes the schematic files
//! the printed `curl` command posts, and prints.

use std::fmt::Write as _;

use anyhow::{Context, Result};

pub use domain::schematic::Report;
use domain::schematic::{report, DEFAULT_FACTORY};
use domain::TalosVersion;
use infra::pin;
use infra::project::Project;

#[derive(clap::Args)]
pub struct Args {
    /// Only this variant; default: every variant (`--json` then prints an array).
    #[arg(long = "variant", value_name = "NAME")]
    pub variant: Option<String>,
    /// Talos version for the installer and asset references; default: the pinned one.
    #[arg(long, value_name = "vX.Y.Z")]
    pub talos_version: Option<TalosVersion>,
    /// Image Factory base URL (a self-hosted factory works the same way).
    #[arg(long, value_name = "URL", default_value = DEFAULT_FACTORY, value_parser = WebUrl(factory_url))]
    pub factory: String,
    /// The factory's PXE frontend (its `http.externalPXEURL`). Default: `https://pxe.factory.talos.dev`
    /// for the hosted factory, the `--factory` URL itself for any other.
    #[arg(long, value_name = "URL", value_parser = WebUrl(web_url))]
    pub pxe_url: Option<String>,
    /// Print JSON: `variant`, `talos_version`, `schematic` (the YAML text), `id`, `installer`,
    /// `assets` (file name to URL), `pxe`.
    #[arg(long)]
    pub json: bool,
    /// Do not check the IDs with image-factory's own code (conformance/, needs Go).
    #[arg(long)]
    pub no_judge: bool,
}

/// Every asset URL is built on it: without a scheme none of them would open.
fn web_url(text: &str) -> Result<String, String> {
    check_url(text, true)
}

/// `--factory`: besides, the factory serves its installer images as a registry, at its host's
/// root (`<host>/metal-installer/<id>:<version>`), where no path fits.
fn factory_url(text: &str) -> Result<String, String> {
    check_url(text, false)
}

/// An http(s) URL without credentials (every URL and installer reference shown would repeat
/// them), a query or a fragment (they would end up in the middle of every URL built on it), and
/// with a path only when `path_ok`.
fn check_url(text: &str, path_ok: bool) -> Result<String, String> {
    let (scheme, after_scheme) = text.split_once("://").unwrap_or(("", text));
    // credentials end at the last `@` before a query or fragment: a password may hold `/`
    let before_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let (credentials, host) = match before_query.rfind('@') {
        Some(at) => (true, &after_scheme[at + 1..]),
        None => (false, after_scheme),
    };
    let authority = host.split(['/', '?', '#']).next().unwrap_or(host);
    if !(matches!(scheme, "http" | "https") && !authority.is_empty() && !text.contains(' ')) {
        let host = Some(host.trim()).filter(|h| !h.is_empty());
        return Err(format!(
            "not an http(s) URL; write its scheme and host, e.g. https://{}",
            host.unwrap_or("factory.example.org")
        ));
    }
    let address = authority;
    let rest = &host[authority.len()..];
    let (path, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let path = path.trim_end_matches('/');
    let mut found = Vec::new();
    let mut why = Vec::new();
    if credentials {
        found.push("credentials");
        why.push("credentials would be shown in every URL and reference built on it");
    }
    if !path_ok && !path.is_empty() {
        found.push("a path");
        why.push("the factory serves its installer images as a registry, at its host's root");
    }
    if query.contains('?') {
        found.push("a query");
    }
    if query.contains('#') {
        found.push("a fragment");
    }
    if query.contains(['?', '#']) {
        why.push("a query or fragment would end up in the middle of every URL built on it");
    }
    if found.is_empty() {
        return Ok(text.to_owned());
    }
    let (only, example) = match path_ok {
        true => (
            "scheme, host and path",
            format!("{scheme}://{address}{path}"),
        ),
        false => ("scheme and host", format!("{scheme}://{address}")),
    };
    let last = found.pop().unwrap_or_default();
    let found = match found.is_empty() {
        true => last.to_owned(),
        false => format!("{} and {last}", found.join(", ")),
    };
    Err(format!(
        "has {found} ({}); write only its {only}, e.g. {example}",
        why.join("; ")
    ))
}

/// A URL checker as clap calls it, with the value in clap's message shown without the
/// credentials it may carry.
#[derive(Clone)]
struct WebUrl(fn(&str) -> Result<String, String>);

impl clap::builder::TypedValueParser for WebUrl {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use clap::error::{ContextKind, ContextValue};
        self.0.parse_ref(cmd, arg, value).map_err(|mut err| {
            let shown = domain::shell::address_shown(&value.to_string_lossy()).into_owned();
            err.insert(ContextKind::InvalidValue, ContextValue::String(shown));
            err
        })
    }
}

/// The human view; `files` are where each report's schematic was written (what `curl` posts).
pub fn render(reports: &[Report], factory: &str, files: &[String]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        writeln!(out, "{} (Talos {})", r.variant, r.talos_version).unwrap();
        writeln!(out, "  id         {}", r.id).unwrap();
        writeln!(out, "  installer  {}", r.installer).unwrap();
        writeln!(out, "  pxe        {}", r.pxe).unwrap();
        for (file, url) in &r.assets {
            writeln!(out, "  {file:<22} {}", url.as_str().unwrap_or_default()).unwrap();
        }
        writeln!(
            out,
            "  schematic (register it: curl -X POST --data-binary @{} {}/schematics):",
            files[i],
            factory.trim_end_matches('/')
        )
        .unwrap();
        for line in r.schematic.lines() {
            writeln!(out, "    | {line}").unwrap();
        }
    }
    out
}

/// Talos's and the factory's verdict on the schematics (`conformance::judge_schematics`, handed
/// in by xtask's `lib.rs` so that this module does not depend on the one that judges it).
pub type Judge = fn(&Project, &[Report]) -> Result<()>;

pub fn run(project: &Project, args: Args, judge: Judge) -> Result<()> {
    let names: Vec<String> = args.variant.iter().cloned().collect();
    let inputs = project.read_inputs()?;
    let selected = inputs.variants(&names)?;
    let lock = inputs.lock()?;
    // the pinned tree's version when it is fetched, else the lock's; without either the error
    // says how to get one
    let talos = match args.talos_version {
        Some(v) => v,
        None => pin::talos_version_or(project, lock.as_ref().map(|l| &l.talos_version))?.version,
    };
    let mut reports = Vec::new();
    for v in &selected {
        let overlay_image = match &v.target.overlay {
            None => None,
            Some(o) => Some(
                lock.as_ref()
                    .and_then(|l| l.overlays.get(&o.name))
                    .with_context(|| format!("{}: overlay `{}` of variant `{}` is not locked yet\n    fix: run `cargo xtask lock`", domain::lock::SHOWN, o.name, v.name))?,
            ),
        };
        reports.push(report(
            v,
            overlay_image,
            &talos,
            &args.factory,
            args.pxe_url.as_deref(),
        ));
    }
    // the file the printed `curl` command posts
    let dir = project.target_dir().join("schematic");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let cwd = std::env::current_dir().ok();
    let mut files = Vec::new();
    for r in &reports {
        let path = dir.join(format!("{}.yaml", r.variant));
        infra::fsutil::write_atomic(&path, r.schematic.as_bytes())?;
        let shown = match &cwd {
            Some(cwd) if cwd.as_path() == project.root.as_std_path() => {
                project.display(&path).to_string()
            }
            _ => path.to_string(),
        };
        files.push(shown);
    }
    if !args.no_judge {
        judge(project, &reports)?;
    }
    if args.json {
        let json = match (&args.variant, reports.as_slice()) {
            (Some(_), [one]) => serde_json::to_string_pretty(one)?,
            _ => serde_json::to_string_pretty(&reports)?,
        };
        println!("{json}");
    } else {
        print!("{}", render(&reports, &args.factory, &files));
    }
    Ok(())
}
