//! The upstream pin, `patches/upstream.json`: which CozyStack tree the patch series applies to,
//! and (read from that tree, never written twice) the Talos version everything builds for.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::project::Project;
use domain::diag::Finding;
use domain::lock;
use domain::talos::Talos;
use domain::{Lock, TalosVersion};

pub const SHOWN: &str = "patches/upstream.json";

/// Where upstream keeps its Talos packaging, newest layout first (moved in v0.40.0).
pub const TALOS_PACKAGE_DIRS: &[&str] = &["packages/core/talos", "packages/core/installer"];

/// `--source`: where the pinned tree is fetched from (upstream, patch and build share it).
#[derive(Clone, clap::Args)]
pub struct SourceArg {
    /// Clone or mirror to fetch from instead of the pinned repository URL (a local path works
    /// offline). The tag must still resolve to the pinned commit.
    #[arg(long, env = "COZYSTACK_SOURCE", value_name = "PATH|URL")]
    pub source: Option<String>,
}

impl SourceArg {
    /// A local path (no `scheme://`, no scp-like `host:path`) must exist: git's own error
    /// for it comes only after a fetch starts, and a dry run would not see it at all.
    pub fn check(&self) -> Result<()> {
        let Some(source) = self.source.as_deref() else {
            return Ok(());
        };
        // a local path, or a file:// URL of one; other URLs (https://, ssh://, host:path) are
        // for git to reach
        let path = match source.strip_prefix("file://") {
            Some(path) => path,
            None if source.contains(':') => return Ok(()),
            None => source,
        };
        let path = Utf8Path::new(path);
        let problem = if !path.exists() {
            "no such directory"
        } else if !(path.join(".git").exists()
            || (path.join("HEAD").is_file() && path.join("objects").is_dir()))
        {
            "not a git repository"
        } else {
            return Ok(());
        };
        domain::diag::usage(format!(
            "--source (or COZYSTACK_SOURCE) {source}: {problem}\n    fix: give a CozyStack clone's directory, or its URL"
        ))
    }
}

/// `--source S` as a printed command line passes it on (credentials in a URL redacted), or
/// nothing.
pub fn source_flag(source: Option<&str>) -> Vec<String> {
    match source {
        Some(source) => vec![
            "--source".into(),
            domain::shell::url_shown(source).into_owned(),
        ],
        None => Vec::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Clone URL of upstream CozyStack.
    pub repository: String,
    pub tag: String,
    /// Full commit id the tag must resolve to.
    pub commit: String,
}

impl Pin {
    pub fn load(project: &Project) -> Result<Pin> {
        let path = project.patches_dir().join("upstream.json");
        crate::fsutil::refuse_symlink(&project.patches_dir(), "patches")?;
        crate::fsutil::refuse_symlink(&path, SHOWN)?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {SHOWN}"))?;
        let pin: Pin = serde_json::from_str(domain::diag::without_bom(&text)).map_err(|err| {
            anyhow::anyhow!("{SHOWN}: {err}\n    fix: it holds one object, {{\"repository\": URL, \"tag\": TAG, \"commit\": FULL_ID}} (docs/patches.md)")
        })?;
        domain::diag::into_result(&format!("invalid {SHOWN}"), pin.problems())?;
        Ok(pin)
    }

    /// Every problem with the pin's fields at once. The repository and the tag reach git as
    /// arguments, so neither may look like an option.
    fn problems(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !plain(&self.repository) {
            findings.push(
                Finding::new(SHOWN, "repository", "not a clone URL or path")
                    .value(domain::shell::url_shown(&self.repository))
                    .fix("write upstream CozyStack's clone URL, e.g. https://github.com/cozystack/cozystack.git"),
            );
        }
        let tag_ok = plain(&self.tag)
            && !self.tag.starts_with('.')
            && !self.tag.contains("..")
            && self
                .tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-+".contains(&b));
        if !tag_ok {
            findings.push(
                Finding::new(SHOWN, "tag", "not a git tag name")
                    .value(&self.tag)
                    .fix("write the release tag, e.g. v1.6.2"),
            );
        }
        if self.commit.len() != 40
            || !self
                .commit
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            findings.push(
                Finding::new(SHOWN, "commit", "not a full 40-digit lowercase commit id")
                    .value(&self.commit)
                    .fix(format!(
                        "write the full id, e.g. from `git rev-parse {}^{{commit}}`",
                        self.tag
                    )),
            );
        }
        findings
    }

    /// The pristine upstream checkout for this pin; it is never patched in place.
    pub fn cache_dir(&self, project: &Project) -> Utf8PathBuf {
        project.target_dir().join("upstream").join(&self.commit)
    }
}

/// Upstream's committed Talos installer profile, in the packaging directory `dir` of `tree`.
fn installer_profile(tree: &Utf8Path, dir: &str) -> Utf8PathBuf {
    tree.join(dir).join("images/talos/profiles/installer.yaml")
}

/// The Talos packaging directory inside an upstream tree, whichever layout it uses.
pub fn talos_package_dir(tree: &Utf8Path) -> Option<&'static str> {
    TALOS_PACKAGE_DIRS
        .iter()
        .copied()
        .find(|dir| installer_profile(tree, dir).is_file())
}

/// The Talos packaging directory, located from upstream's own files: a directory the root
/// Makefile enters (`make -C <dir> ...`) that holds the installer profile, so that a future
/// move is followed too; else the known layouts.
pub fn find_talos_package_dir(tree: &Utf8Path) -> Option<String> {
    let makefile = std::fs::read_to_string(tree.join("Makefile")).unwrap_or_default();
    make_dirs(&makefile)
        .into_iter()
        .find(|dir| installer_profile(tree, dir).is_file())
        .or_else(|| talos_package_dir(tree).map(str::to_owned))
}

/// The directories a Makefile runs `make -C <dir>` (or `$(MAKE) -C <dir>`) in, in order.
pub fn make_dirs(makefile: &str) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for line in makefile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(3) {
            let is_make = matches!(w[0], "make" | "$(MAKE)" | "${MAKE}");
            let dir = w[2].trim_end_matches('/');
            let plain = !dir.contains('$') && !dir.starts_with('/');
            if is_make && w[1] == "-C" && plain && !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
    }
    dirs
}

/// Reads `version:` from upstream's committed installer profile.
pub fn read_talos_version(tree: &Utf8Path) -> Result<TalosVersion> {
    let dir = find_talos_package_dir(tree).with_context(|| {
        format!(
            "{tree} has no Talos installer profile (images/talos/profiles/installer.yaml) in a directory its Makefile enters, nor under {}",
            TALOS_PACKAGE_DIRS.join(" or ")
        )
    })?;
    let path = installer_profile(tree, &dir);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_talos_version(&text).with_context(|| format!("{path}: no `version: vX.Y.Z` line"))
}

pub fn parse_talos_version(profile: &str) -> Option<TalosVersion> {
    profile.lines().find_map(|line| {
        let value = line.strip_prefix("version:")?.trim().trim_matches('"');
        TalosVersion::parse(value).ok()
    })
}

/// The Talos version from the pinned upstream tree when it is cached, else from the lock (which
/// `cargo xtask lock --check` keeps equal to the tree's).
pub fn talos_version(project: &Project, lock: &Lock) -> Result<Talos> {
    talos_version_or(project, Some(&lock.talos_version))
}

/// [`talos_version`] for callers that may have no lock yet: `lock_version` is the fallback when
/// the pinned tree is not fetched, and without either the error says how to get one.
pub fn talos_version_or(project: &Project, lock_version: Option<&TalosVersion>) -> Result<Talos> {
    let pin = Pin::load(project)?;
    let cache = pin.cache_dir(project);
    if cache.is_dir() {
        let version = read_talos_version(&cache)?;
        return Ok(Talos {
            version,
            source: format!("CozyStack {} (pinned tree)", pin.tag),
        });
    }
    let Some(version) = lock_version else {
        bail!(
            "no Talos version known: there is no {} and the pinned CozyStack {} is not fetched\n    fix: run `cargo xtask upstream` first, or `cargo xtask lock --talos-version vX.Y.Z`",
            lock::SHOWN,
            pin.tag
        );
    };
    Ok(Talos {
        version: version.clone(),
        source: format!(
            "{}, as the pinned CozyStack {} is not fetched (`cargo xtask upstream`)",
            lock::SHOWN,
            pin.tag
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_the_pin_is_reported_and_nothing_reaches_git_as_an_option() {
        let pin = Pin {
            repository: "--upload-pack=touch /tmp/pwned".into(),
            tag: "".into(),
            commit: "bfde94f".into(),
        };
        let text = domain::diag::into_result("invalid patches/upstream.json", pin.problems())
            .unwrap_err()
            .to_string();
        for expected in [
            "3 problems",
            "field `repository` = --upload-pack=touch /tmp/pwned: not a clone URL or path",
            "field `tag` = : not a git tag name",
            "field `commit` = bfde94f: not a full 40-digit lowercase commit id",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
        let good = Pin {
            repository: "https://github.com/cozystack/cozystack.git".into(),
            tag: "v1.6.2".into(),
            commit: "bfde94fd26d35c5f0281a1285f194e7ca3041b6a".into(),
        };
        assert!(good.problems().is_empty());
    }

    #[test]
    fn a_refused_repository_is_shown_without_its_credentials() {
        let pin = Pin {
            repository: "https://ci:ghp_S3CR3T@github.com/acme/cozy stack.git".into(),
            tag: "v1.6.2".into(),
            commit: "bfde94fd26d35c5f0281a1285f194e7ca3041b6a".into(),
        };
        let text = domain::diag::into_result("invalid patches/upstream.json", pin.problems())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("field `repository` = https://<redacted>@github.com/acme/cozy stack.git: not a clone URL or path"),
            "{text}"
        );
        assert!(!text.contains("S3CR3T"), "{text}");
    }

    #[test]
    fn make_dirs_are_read_from_recipe_lines() {
        let makefile = "build:\n\tmake -C packages/apps/x image\n\tmake -C packages/core/talos image\n\nassets:\n\t$(MAKE) -C packages/core/talos/ assets\n\tmake -C $(DIR) x\n";
        assert_eq!(
            make_dirs(makefile),
            ["packages/apps/x", "packages/core/talos"]
        );
    }

    #[test]
    fn version_is_read_from_the_profile_line() {
        let text = "# generated\narch: amd64\nversion: v1.13.99\ninput:\n  kernel: {}\n";
        let version = |text: &str| parse_talos_version(text).map(|v| v.to_string());
        assert_eq!(version(text).as_deref(), Some("v1.13.99"));
        assert_eq!(
            version("version: \"v1.12.0\"\n").as_deref(),
            Some("v1.12.0")
        );
        assert_eq!(
            parse_talos_version("  version: v1.2.3\n"),
            None,
            "nested keys are not the profile version"
        );
        assert_eq!(parse_talos_version("version: latest\n"), None);
    }
}
