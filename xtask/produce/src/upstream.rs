//! Subcommand: `cargo xtask upstream`: fetch CozyStack at the pinned tag into
//! `target/upstream/<commit>`, verify that the tag is the pinned commit, and reuse that pristine
//! checkout from then on (offline too). The patch series is applied to copies of it, never to it.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use domain::TalosVersion;
use infra::cmd::{Cmd, Io, Runner};
use infra::pin::{self, Pin, SourceArg};
use infra::project::Project;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArg,
    /// Print the git commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Print where the tree is as JSON.
    #[arg(long, conflicts_with = "dry_run")]
    pub json: bool,
}

/// The pristine upstream tree and how it was obtained.
#[derive(Serialize)]
pub struct Upstream {
    /// The pinned repository, its credentials redacted: shown (`--json`, the patch summary and
    /// its copy in the patched tree), never fetched from.
    pub repository: String,
    pub tag: String,
    pub commit: String,
    /// The checkout: `target/upstream/<commit>`.
    pub tree: Utf8PathBuf,
    /// Where it was fetched from, or `None` when the cache was reused.
    pub fetched_from: Option<String>,
    /// The Talos version upstream's installer profile names.
    pub talos_version: TalosVersion,
    /// Upstream's Talos packaging directory (`packages/core/talos`, or `packages/core/installer`
    /// before v0.40.0).
    pub talos_package_dir: Option<String>,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    args.source.check()?;
    let pin = Pin::load(project)?;
    let runner = Runner::new(args.dry_run);
    if runner.is_dry_run() {
        // what a run without a cache does; the queries on the fetched tree cannot run
        let source = source_url(args.source.source.as_deref().unwrap_or(&pin.repository));
        for command in fetch_commands(&pin, &source, Utf8Path::new("<tmp>")) {
            runner.run(&command)?;
        }
        runner.note(&format!(
            "then verify that refs/tags/{} is {} and move <tmp> to {}",
            pin.tag,
            pin.commit,
            pin.cache_dir(project)
        ));
        return Ok(());
    }
    let upstream = ensure(project, &pin, args.source.source.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&upstream)?);
        return Ok(());
    }
    match &upstream.fetched_from {
        Some(from) => println!(
            "fetched CozyStack {} ({}) from {from}",
            upstream.tag, upstream.commit
        ),
        None => println!(
            "CozyStack {} ({}) is cached, verified",
            upstream.tag, upstream.commit
        ),
    }
    println!("tree: {}", project.display(&upstream.tree));
    println!(
        "Talos {} (from {}/images/talos/profiles/installer.yaml)",
        upstream.talos_version,
        upstream.talos_package_dir.as_deref().unwrap_or("?")
    );
    Ok(())
}

/// The pristine tree of the pin: the verified cache, or fetched from `source` (default: the
/// pinned repository) when there is no cache yet.
pub fn ensure(project: &Project, pin: &Pin, source: Option<&str>) -> Result<Upstream> {
    let cache = pin.cache_dir(project);
    let fetched_from = if cache.is_dir() {
        verify_cache(pin, &cache)?;
        None
    } else {
        let source = source.unwrap_or(&pin.repository);
        fetch(pin, source, &cache)?;
        Some(domain::shell::url_shown(source).into_owned())
    };
    let talos_version = pin::read_talos_version(&cache)?;
    Ok(Upstream {
        repository: domain::shell::url_shown(&pin.repository).into_owned(),
        tag: pin.tag.clone(),
        commit: pin.commit.clone(),
        talos_package_dir: pin::find_talos_package_dir(&cache),
        tree: cache,
        fetched_from,
        talos_version,
    })
}

/// A local directory is fetched through `file://`, so that a shallow fetch stays shallow.
fn source_url(source: &str) -> String {
    let path = Utf8Path::new(source);
    if !source.contains("://") && path.is_dir() {
        match path.canonicalize_utf8() {
            // git decodes %XX in a file:// URL: a path's own `%`, and spaces, are encoded
            Ok(path) => format!(
                "file://{}",
                path.as_str().replace('%', "%25").replace(' ', "%20")
            ),
            Err(_) => source.to_owned(),
        }
    } else {
        source.to_owned()
    }
}

/// `git init` and a shallow fetch of the tag into `dir`; git never asks for credentials.
fn fetch_commands(pin: &Pin, source: &str, dir: &Utf8Path) -> [Cmd; 2] {
    let tag = format!("refs/tags/{0}:refs/tags/{0}", pin.tag);
    let mut fetch = infra::git::at(dir)
        .args([
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            // a source is never an option, whatever it starts with
            "--end-of-options",
            source,
            &tag,
        ])
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(credentials) = domain::shell::url_credentials(source) {
        fetch = fetch.secret(credentials);
    }
    [
        infra::git::anywhere().args([
            "-c",
            "init.defaultBranch=pristine",
            "init",
            "--quiet",
            dir.as_str(),
        ]),
        fetch,
    ]
}

fn fetch(pin: &Pin, source: &str, cache: &Utf8Path) -> Result<()> {
    let parent = cache.parent().expect("the cache has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    // Fetch next to the cache and rename when verified, so a half fetch is never reused.
    let tmp = parent.join(format!(".fetch-{}-{}", pin.commit, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fetch_into(pin, source, &tmp).and_then(|()| {
        std::fs::rename(&tmp, cache).with_context(|| format!("moving {tmp} to {cache}"))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn fetch_into(pin: &Pin, source: &str, dir: &Utf8Path) -> Result<()> {
    let url = source_url(source);
    let source = domain::shell::url_shown(source);
    for command in fetch_commands(pin, &url, dir) {
        command
            .stdout(Io::Null)
            .run()
            .with_context(|| {
                format!(
                    "fetching tag {} from {source} (is it a CozyStack clone or mirror with that tag? `--source` / COZYSTACK_SOURCE point elsewhere)",
                    pin.tag
                )
            })?;
    }
    let tag = format!("refs/tags/{}^{{commit}}", pin.tag);
    let commit = infra::git::at(dir)
        .args(["rev-parse", "--verify", "--quiet", &tag])
        .read()
        .with_context(|| format!("{source} has no tag {}", pin.tag))?;
    check_commit(pin, &commit, &source)?;
    infra::git::at(dir)
        .args([
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--detach",
            &commit,
        ])
        .run()
        .with_context(|| format!("checking out {commit}"))?;
    Ok(())
}

/// The tag must be the pinned commit: a moved tag is a different upstream, not an update.
pub fn check_commit(pin: &Pin, found: &str, source: &str) -> Result<()> {
    if found.trim() != pin.commit {
        bail!(
            "tag {tag} in {source} is commit {found}, but {file} pins {tag} to commit {pinned}\n    fix: if the tag moved upstream, review the change, then set `commit` in {file} to {found} and refresh the series (docs/patches.md); if {source} is a stale mirror, update it",
            tag = pin.tag,
            found = found.trim(),
            file = pin::SHOWN,
            pinned = pin.commit,
        );
    }
    Ok(())
}

/// A cached tree is reused only when it is still exactly the pinned commit, unmodified.
fn verify_cache(pin: &Pin, cache: &Utf8Path) -> Result<()> {
    let head = infra::git::at(cache)
        .args(["rev-parse", "--verify", "HEAD"])
        .read()
        .with_context(|| {
            format!(
                "{cache} is not a git checkout\n    fix: remove it and run `cargo xtask upstream`"
            )
        })?;
    if head != pin.commit {
        bail!("the cached upstream tree {cache} is at {head}, not the pinned {}\n    fix: remove it and run `cargo xtask upstream`", pin.commit);
    }
    let status = infra::git::at(cache)
        .args([
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignored",
        ])
        .read()
        .with_context(|| format!("checking that {cache} is unmodified"))?;
    if !status.is_empty() {
        let shown: Vec<&str> = status.lines().take(10).collect();
        bail!(
            "the cached upstream tree {cache} was modified; it must stay pristine (patches go to a copy):\n  {}\n    fix: remove it and run `cargo xtask upstream` again",
            shown.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> Pin {
        Pin {
            repository: "https://example.org/cozystack.git".into(),
            tag: "v1.6.2".into(),
            commit: "bfde94fd26d35c5f0281a1285f194e7ca3041b6a".into(),
        }
    }

    #[test]
    fn a_moved_tag_is_an_error_naming_both_commits() {
        let err = check_commit(
            &pin(),
            "1111111111111111111111111111111111111111\n",
            "mirror",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("tag v1.6.2 in mirror is commit 1111111111111111111111111111111111111111, but patches/upstream.json pins v1.6.2 to commit bfde94fd26d35c5f0281a1285f194e7ca3041b6a"),
            "{err}"
        );
        check_commit(
            &pin(),
            "bfde94fd26d35c5f0281a1285f194e7ca3041b6a\n",
            "mirror",
        )
        .unwrap();
    }

    #[test]
    fn the_fetch_is_shallow_and_takes_only_the_tag() {
        let commands = fetch_commands(&pin(), "file:///srv/mirror", Utf8Path::new("/tmp/x"));
        assert_eq!(
            commands[1].to_string(),
            "GIT_TERMINAL_PROMPT=0 git -C /tmp/x fetch --quiet --depth 1 --no-tags --end-of-options file:///srv/mirror refs/tags/v1.6.2:refs/tags/v1.6.2"
        );
        // a token in the URL is used, never shown (the printed line, git's errors)
        let commands = fetch_commands(
            &pin(),
            "https://ci:ghp_tok@git.example/cozystack.git",
            Utf8Path::new("/tmp/x"),
        );
        let shown = commands[1].to_string();
        assert!(
            !shown.contains("ghp_tok") && shown.contains("https://<redacted>@git.example/"),
            "{shown}"
        );
        assert_eq!(
            commands[1].redact("fatal: could not read from https://ci:ghp_tok@git.example/"),
            "fatal: could not read from https://<redacted>@git.example/"
        );
    }
}
