//! The extension lock, `variants/extensions.lock`: every extension any variant uses, resolved to
//! `image:tag@sha256:digest` for one exact Talos version. Written by `cargo xtask lock`, read by
//! everything that builds; reviewed in git like Cargo.lock.
//!
//! An entry may lack its digest (seeded from what is known offline); the plan shows it with a
//! warning, and `--locked` refuses it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::diag::Finding;
use crate::project::Project;
use crate::variants::Variant;

pub const FILE_NAME: &str = "extensions.lock";
pub const SHOWN: &str = "variants/extensions.lock";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The Talos release every entry was resolved for.
    pub talos_version: String,
    /// The `ghcr.io/siderolabs/extensions:<talos>` image the entries were read from, with its digest.
    pub extensions_image: String,
    /// Short name to full image reference.
    pub extensions: BTreeMap<String, String>,
    /// The `ghcr.io/siderolabs/overlays:<talos>` catalog image the overlays were read from,
    /// with its digest; absent while no variant names an overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlays_image: Option<String>,
    /// Overlay name to its image by digest, as the catalog lists it, for the overlays variants use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overlays: BTreeMap<String, String>,
    /// Every overlay name in that catalog, so that a name it lacks is refused before a build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_overlays: Vec<String>,
    /// The imager image by digest (`ghcr.io/siderolabs/imager:<talos>@sha256:...`): what a
    /// build runs unless `--imager` names another; a `--locked` build refuses to run without
    /// it, so CI never runs an image a tag could have moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imager: Option<String>,
    /// The base installer the profiles name (`input.baseInstaller`), by digest: profiles name
    /// this exact reference when its tag is the one they would name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_installer: Option<String>,
}

/// How a variant's overlay stands in the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayEntry<'a> {
    /// The variant names no overlay.
    None,
    /// Locked to this image by digest.
    Locked(&'a str),
    /// The catalog of the lock's Talos version has no such overlay.
    Unknown { near: Option<&'a str> },
    /// Not locked yet.
    Missing,
}

impl Lock {
    pub fn load(project: &Project) -> Result<Lock> {
        let path = project.lock_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {SHOWN}: create it with `cargo xtask lock`"))?;
        Lock::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Lock> {
        let lock: Lock = serde_json::from_str(text).with_context(|| {
            format!("{SHOWN} is not a valid lock file: regenerate it with `cargo xtask lock`")
        })?;
        let mut problems = Vec::new();
        for (name, reference) in &lock.extensions {
            let problem = match ImageRef::parse(reference) {
                Err(err) => Some(err),
                Ok(r) => entry_problem(name, &r, &lock.talos_version),
            };
            if let Some(problem) = problem {
                problems.push(
                    Finding::new(SHOWN, format!("extensions.{name}"), problem)
                        .value(reference)
                        .fix("regenerate it with `cargo xtask lock`"),
                );
            }
        }
        for (name, reference) in &lock.overlays {
            let problem = match ImageRef::parse(reference) {
                Err(err) => Some(err),
                Ok(r) if r.digest.is_none() => Some("has no digest".to_owned()),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                problems.push(
                    Finding::new(SHOWN, format!("overlays.{name}"), problem)
                        .value(reference)
                        .fix("regenerate it with `cargo xtask lock`"),
                );
            }
        }
        if let Some(image) = &lock.overlays_image {
            if let Err(err) = ImageRef::parse(image) {
                problems.push(
                    Finding::new(SHOWN, "overlays_image", err)
                        .value(image)
                        .fix("regenerate it with `cargo xtask lock`"),
                );
            }
        }
        for (field, pin) in [
            ("imager", &lock.imager),
            ("base_installer", &lock.base_installer),
        ] {
            let Some(imager) = pin else { continue };
            let problem = match ImageRef::parse(imager) {
                Err(err) => Some(err),
                Ok(r) if r.digest.is_none() => Some("not pinned by digest".to_owned()),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                problems.push(
                    Finding::new(SHOWN, field, problem)
                        .value(imager)
                        .fix("regenerate it with `cargo xtask lock`"),
                );
            }
        }
        if let Err(err) = ImageRef::parse(&lock.extensions_image) {
            problems.push(
                Finding::new(SHOWN, "extensions_image", err)
                    .value(&lock.extensions_image)
                    .fix("regenerate it with `cargo xtask lock`"),
            );
        }
        crate::diag::into_result("invalid lock file", problems)?;
        Ok(lock)
    }

    /// The imager a `--locked` build runs: the lock's pin, else a finding that says how to pin it.
    pub fn locked_imager(&self) -> Result<&str, Finding> {
        self.imager.as_deref().ok_or_else(|| {
            Finding::new(
                SHOWN,
                "imager",
                "missing: a --locked build runs the imager only by the digest the lock pins",
            )
            .fix(format!(
                "run `cargo xtask lock --talos-version {}` and commit {SHOWN}, or pass --imager REF@sha256:DIGEST",
                self.talos_version
            ))
        })
    }

    /// Stable text: sorted keys, two-space indent, trailing newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("lock serializes");
        text.push('\n');
        text
    }

    /// The references of a variant's extensions in build order, and what is wrong with them:
    /// `missing` entries cannot be built at all, `unpinned` ones only without `--locked`.
    pub fn resolve(&self, variant: &Variant) -> Resolved {
        let mut resolved = Resolved::default();
        for name in variant.all_extensions() {
            match self.extensions.get(name) {
                None => resolved.missing.push(name.to_owned()),
                Some(reference) => {
                    if ImageRef::parse(reference)
                        .map(|r| r.digest.is_none())
                        .unwrap_or(true)
                    {
                        resolved.unpinned.push(name.to_owned());
                    }
                    resolved.refs.push(reference.clone());
                }
            }
        }
        resolved
    }

    /// The variant's overlay as the lock has it.
    pub fn overlay(&self, variant: &Variant) -> OverlayEntry<'_> {
        let Some(choice) = &variant.target.overlay else {
            return OverlayEntry::None;
        };
        if let Some(reference) = self.overlays.get(&choice.name) {
            return OverlayEntry::Locked(reference);
        }
        if self.known_overlays.is_empty() {
            return OverlayEntry::Missing;
        }
        match self.known_overlays.iter().find(|n| **n == choice.name) {
            Some(_) => OverlayEntry::Missing,
            None => {
                let known: Vec<&str> = self.known_overlays.iter().map(String::as_str).collect();
                OverlayEntry::Unknown {
                    near: crate::diag::closest(&choice.name, &known),
                }
            }
        }
    }

    /// A finding for a variant whose overlay the catalog lacks (`file` is the variant's file).
    pub fn unknown_overlay(&self, file: &str, variant: &Variant) -> Option<Finding> {
        let OverlayEntry::Unknown { near } = self.overlay(variant) else {
            return None;
        };
        let name = &variant.target.overlay.as_ref()?.name;
        let hint = near
            .map(|n| format!("did you mean \"{n}\"? "))
            .unwrap_or_default();
        Some(
            Finding::new(
                file,
                "overlay",
                format!(
                    "unknown to the overlays catalog of Talos {} ({})",
                    self.talos_version,
                    self.overlays_image.as_deref().unwrap_or("the catalog")
                ),
            )
            .value(format!("\"{name}\""))
            .fix(format!(
                "{hint}the catalog lists: {}",
                self.known_overlays.join(", ")
            )),
        )
    }

    /// Everything that makes the lock unusable for a `--locked` build of these variants.
    pub fn locked_problems(&self, variants: &[Variant], talos_version: &str) -> Vec<Finding> {
        let fix =
            format!("run `cargo xtask lock --talos-version {talos_version}` and commit {SHOWN}");
        let mut findings = Vec::new();
        if self.talos_version != talos_version {
            findings.push(
                Finding::new(
                    SHOWN,
                    "talos_version",
                    format!("stale: the pinned upstream uses Talos {talos_version}"),
                )
                .value(&self.talos_version)
                .fix(fix.clone()),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for variant in variants {
            let resolved = self.resolve(variant);
            for name in resolved.missing {
                if seen.insert(name.clone()) {
                    findings.push(
                        Finding::new(
                            SHOWN,
                            format!("extensions.{name}"),
                            format!("missing (used by variant `{}`)", variant.name),
                        )
                        .fix(fix.clone()),
                    );
                }
            }
            for name in resolved.unpinned {
                if seen.insert(name.clone()) {
                    findings.push(
                        Finding::new(
                            SHOWN,
                            format!("extensions.{name}"),
                            "has no digest: a build would pull a moving tag",
                        )
                        .value(&self.extensions[&name])
                        .fix(fix.clone()),
                    );
                }
            }
            if let OverlayEntry::Missing = self.overlay(variant) {
                let name = &variant
                    .target
                    .overlay
                    .as_ref()
                    .expect("has an overlay")
                    .name;
                if seen.insert(format!("overlay {name}")) {
                    findings.push(
                        Finding::new(
                            SHOWN,
                            format!("overlays.{name}"),
                            format!("missing (the overlay of variant `{}`)", variant.name),
                        )
                        .fix(fix.clone()),
                    );
                }
            }
            if let Some(f) =
                self.unknown_overlay(&format!("variants/{}.json", variant.name), variant)
            {
                findings.push(f);
            }
        }
        findings
    }
}

/// What is wrong with a well-formed entry: extension `name` comes from exactly
/// `ghcr.io/siderolabs/<name>` (mirrors are applied when fetching, never written here), and a
/// tag built for one Talos release (`2.4.3-v1.13.6`) must be for the lock's release.
fn entry_problem(name: &str, r: &ImageRef, talos_version: &str) -> Option<String> {
    let repository = format!("{}/{name}", crate::lock::EXTENSIONS_REPOSITORY);
    if r.repository != repository {
        return Some(format!("extension `{name}` must come from {repository}"));
    }
    let built_for = r.tag.as_deref()?.rsplit_once("-v").map(|(_, v)| v)?;
    let is_release = built_for.split('.').count() == 3
        && built_for
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (is_release && format!("v{built_for}") != talos_version)
        .then(|| format!("built for Talos v{built_for}, but the lock is for {talos_version}"))
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub refs: Vec<String>,
    pub missing: Vec<String>,
    pub unpinned: Vec<String>,
}

/// `registry/path/name[:tag][@sha256:hex]`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// The last path component: `zfs` for `ghcr.io/siderolabs/zfs`.
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                if !is_sha256_digest(digest) {
                    return Err(format!(
                        "digest `{digest}` is not sha256:<64 lowercase hex digits>"
                    ));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A colon after the last slash separates the tag; one before it belongs to host:port.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (repository, tag) = match rest[last_slash..].find(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if repository.is_empty() || !repository.contains('/') {
            return Err("not a full image reference (registry/path/name)".into());
        }
        if tag.as_deref() == Some("") {
            return Err("empty tag".into());
        }
        if tag.is_none() && digest.is_none() {
            return Err("has neither tag nor digest".into());
        }
        Ok(ImageRef {
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e";

    #[test]
    fn references_split_into_parts() {
        let r =
            ImageRef::parse(&format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.6@{DIGEST}")).unwrap();
        assert_eq!(r.repository, "ghcr.io/siderolabs/drbd");
        assert_eq!(r.tag.as_deref(), Some("9.3.2-v1.13.6"));
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        let local = ImageRef::parse("127.0.0.1:5000/siderolabs/spin:v0.25.1").unwrap();
        assert_eq!(local.repository, "127.0.0.1:5000/siderolabs/spin");
        assert_eq!(local.tag.as_deref(), Some("v0.25.1"));
        assert_eq!(local.digest, None);
    }

    #[test]
    fn bad_references_are_rejected() {
        assert!(ImageRef::parse("ghcr.io/siderolabs/zfs:2@sha256:abc")
            .unwrap_err()
            .contains("not sha256"));
        assert!(ImageRef::parse("zfs:2")
            .unwrap_err()
            .contains("not a full image reference"));
        assert!(ImageRef::parse("ghcr.io/siderolabs/zfs")
            .unwrap_err()
            .contains("neither tag nor digest"));
        assert!(
            ImageRef::parse(&format!("ghcr.io/siderolabs/zfs@{}", DIGEST.to_uppercase())).is_err()
        );
    }

    fn lock() -> Lock {
        Lock {
            talos_version: "v1.13.6".into(),
            extensions_image: "ghcr.io/siderolabs/extensions:v1.13.6".into(),
            extensions: [
                (
                    "drbd".to_owned(),
                    format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.6@{DIGEST}"),
                ),
                (
                    "spin".to_owned(),
                    "ghcr.io/siderolabs/spin:v0.25.1".to_owned(),
                ),
            ]
            .into(),
            ..Lock::default()
        }
    }

    fn variant(extensions: &str) -> Variant {
        crate::variants::parse(
            "variants/v.json",
            &format!(r#"{{"name":"v","description":"d","arch":"arm64","extensions":{extensions},"repository":"v/talos"}}"#),
        )
        .unwrap()
    }

    #[test]
    fn resolve_reports_missing_and_unpinned() {
        let r = lock().resolve(&variant(r#"["drbd","spin","zfs"]"#));
        assert_eq!(r.refs.len(), 2);
        assert_eq!(r.missing, ["zfs"]);
        assert_eq!(r.unpinned, ["spin"]);
    }

    #[test]
    fn locked_build_refuses_stale_missing_and_unpinned() {
        let findings = lock().locked_problems(&[variant(r#"["drbd","spin","zfs"]"#)], "v1.14.0");
        let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(findings.len(), 3, "{text:#?}");
        assert!(text[0]
            .contains("`talos_version` = v1.13.6: stale: the pinned upstream uses Talos v1.14.0"));
        assert!(text
            .iter()
            .any(|t| t.contains("`extensions.zfs`: missing (used by variant `v`)")));
        assert!(text
            .iter()
            .any(|t| t
                .contains("`extensions.spin` = ghcr.io/siderolabs/spin:v0.25.1: has no digest")));
        assert!(text
            .iter()
            .all(|t| t.contains("cargo xtask lock --talos-version v1.14.0")));
    }

    #[test]
    fn text_round_trips_and_is_sorted() {
        let text = lock().to_text();
        assert!(text.find("\"drbd\"").unwrap() < text.find("\"spin\"").unwrap());
        assert!(text.ends_with("}\n"));
        assert_eq!(Lock::parse(&text).unwrap(), lock());
    }

    #[test]
    fn entries_from_elsewhere_or_for_another_talos_release_are_rejected() {
        let mut edited = lock();
        edited.extensions.insert(
            "zfs".into(),
            format!("ghcr.io/siderolabs/zfs:2.4.3-v1.13.5@{DIGEST}"),
        );
        edited.extensions.insert(
            "drbd".into(),
            format!("ghcr.io/someone/drbd:9.3.2-v1.13.6@{DIGEST}"),
        );
        let err = format!("{:#}", Lock::parse(&edited.to_text()).unwrap_err());
        assert!(err.contains("invalid lock file: 2 problems"), "{err}");
        assert!(
            err.contains("field `extensions.drbd` = ghcr.io/someone/drbd:9.3.2-v1.13.6@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e: extension `drbd` must come from ghcr.io/siderolabs/drbd"),
            "{err}"
        );
        assert!(
            err.contains("field `extensions.zfs` = ghcr.io/siderolabs/zfs:2.4.3-v1.13.5@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e: built for Talos v1.13.5, but the lock is for v1.13.6"),
            "{err}"
        );
        assert!(
            err.contains("fix: regenerate it with `cargo xtask lock`"),
            "{err}"
        );
        // Tags that name no Talos release (spin, tailscale) are not version-checked.
        let mut other = lock();
        other.extensions.insert(
            "tailscale".into(),
            "ghcr.io/siderolabs/tailscale:1.98.5".into(),
        );
        Lock::parse(&other.to_text()).unwrap();
    }

    #[test]
    fn unknown_lock_fields_are_rejected() {
        let text = lock()
            .to_text()
            .replace("\"talos_version\"", "\"talos\": 1, \"talos_version\"");
        let err = format!("{:#}", Lock::parse(&text).unwrap_err());
        assert!(err.contains("unknown field `talos`"), "{err}");
    }
}
