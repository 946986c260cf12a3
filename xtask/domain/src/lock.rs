//! The extension lock, `variants/extensions.lock`: every extension any variant uses, resolved to
//! `image:tag@sha256:digest` for one exact Talos version. Written by `cargo xtask lock`, read by
//! everything that builds; reviewed in git like Cargo.lock.
//!
//! An entry may lack its digest (seeded from what is known offline); the plan shows it with a
//! warning, and `--locked` refuses it.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::diag::{self, Finding};
use super::extension::EXTENSIONS_REPOSITORY;
use super::image::ImageRef;
use super::talos::TalosVersion;
use super::variant::Variant;

pub use super::layout::{LOCK_FILE_NAME as FILE_NAME, LOCK_SHOWN as SHOWN};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// The Talos release every entry was resolved for.
    pub talos_version: TalosVersion,
    /// The `ghcr.io/siderolabs/extensions:<talos>` image the entries were read from, with its digest.
    pub extensions_image: ImageRef,
    /// Short name to full image reference.
    pub extensions: BTreeMap<String, ImageRef>,
    /// The `ghcr.io/siderolabs/overlays:<talos>` catalog image the overlays were read from,
    /// with its digest; absent while no variant names an overlay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlays_image: Option<ImageRef>,
    /// Overlay name to its image by digest, as the catalog lists it, for the overlays variants use.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overlays: BTreeMap<String, ImageRef>,
    /// Every overlay name in that catalog, so that a name it lacks is refused before a build.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_overlays: Vec<String>,
    /// The imager image by digest (`ghcr.io/siderolabs/imager:<talos>@sha256:...`): what a
    /// build runs unless `--imager` names another; a `--locked` build refuses to run without
    /// it, so CI never runs an image a tag could have moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imager: Option<ImageRef>,
    /// The base installer the profiles name (`input.baseInstaller`), by digest: profiles name
    /// this exact reference when its tag is the one they would name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_installer: Option<ImageRef>,
}

/// The file as written, before its entries are checked and typed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    talos_version: String,
    extensions_image: String,
    extensions: BTreeMap<String, String>,
    #[serde(default)]
    overlays_image: Option<String>,
    #[serde(default)]
    overlays: BTreeMap<String, String>,
    #[serde(default)]
    known_overlays: Vec<String>,
    #[serde(default)]
    imager: Option<String>,
    #[serde(default)]
    base_installer: Option<String>,
}

/// What each field of the lock file holds, and whether it must be there (as [`LockFile`] reads
/// it): checked on the parsed JSON first, so that every field of the wrong shape is named at
/// once, where the typed reading stops at the first with a line and a column.
const SHAPE: &[(&str, Holds, bool)] = &[
    ("talos_version", Holds::Text, true),
    ("extensions_image", Holds::Text, true),
    ("extensions", Holds::Map, true),
    ("overlays_image", Holds::Text, false),
    ("overlays", Holds::Map, false),
    ("known_overlays", Holds::List, false),
    ("imager", Holds::Text, false),
    ("base_installer", Holds::Text, false),
];

#[derive(Clone, Copy)]
enum Holds {
    Text,
    /// an object of texts
    Map,
    /// an array of texts
    List,
}

fn shape_problems(value: &serde_json::Value, fix: &str) -> Vec<Finding> {
    use serde_json::Value;
    let Some(fields) = value.as_object() else {
        return vec![Finding::new(SHOWN, "", "not a lock file: not a JSON object").fix(fix)];
    };
    let names: Vec<&str> = SHAPE.iter().map(|(name, ..)| *name).collect();
    let mut problems = Vec::new();
    for key in fields.keys().filter(|k| !names.contains(&k.as_str())) {
        problems.push(
            Finding::new(SHOWN, key.as_str(), "unknown field").fix(format!(
                "{}its fields are {}; {fix}",
                diag::did_you_mean(key, &names),
                names.join(", ")
            )),
        );
    }
    for &(name, holds, required) in SHAPE {
        let text = |v: &Value| v.is_string();
        let (ok, what) = match (fields.get(name), holds) {
            (None, _) => (!required, "missing"),
            // null stands for a value left out only where the lock holds an optional one
            (Some(Value::Null), Holds::Text) => (!required, "null"),
            (Some(v), Holds::Text) => (text(v), "not a string"),
            (Some(v), Holds::Map) => (
                v.as_object().is_some_and(|m| m.values().all(text)),
                "not an object of strings (name: image reference)",
            ),
            (Some(v), Holds::List) => (
                v.as_array().is_some_and(|a| a.iter().all(text)),
                "not an array of strings",
            ),
        };
        if !ok {
            let mut finding = Finding::new(SHOWN, name, what).fix(fix);
            if let Some(v) = fields.get(name) {
                finding = finding.value(v);
            }
            problems.push(finding);
        }
    }
    problems
}

/// How a variant's overlay stands in the lock.
#[derive(Debug, PartialEq, Eq)]
pub enum OverlayEntry<'a> {
    /// The variant names no overlay.
    None,
    /// Locked to this image by digest.
    Locked(&'a ImageRef),
    /// The catalog of the lock's Talos version has no such overlay.
    Unknown { near: Option<&'a str> },
    /// Not locked yet.
    Missing,
}

/// Tests build locks field by field and leave the rest empty.
#[cfg(test)]
impl Default for Lock {
    fn default() -> Lock {
        Lock::new(
            "v0.0.0".into(),
            "ghcr.io/siderolabs/extensions:v0.0.0".into(),
        )
    }
}

impl Lock {
    /// A lock for `talos_version` read from `extensions_image`, with no entries yet.
    pub fn new(talos_version: TalosVersion, extensions_image: ImageRef) -> Lock {
        Lock {
            talos_version,
            extensions_image,
            extensions: BTreeMap::new(),
            overlays_image: None,
            overlays: BTreeMap::new(),
            known_overlays: Vec::new(),
            imager: None,
            base_installer: None,
        }
    }

    /// Parses and checks the lock, reporting every bad entry at once.
    pub fn parse(text: &str) -> Result<Lock> {
        let (lock, problems) = Lock::check(text);
        diag::into_result("invalid lock file", problems)?;
        Ok(lock.expect("a lock without findings"))
    }

    /// The lock, when it is usable, and every problem found in it (a BOM, syntax with its
    /// position, shape, the Talos version, each entry); a lock with problems is not returned.
    pub fn check(text: &str) -> (Option<Lock>, Vec<Finding>) {
        // offline, the committed lock is the way back from a hand edit
        let fix = format!(
            "regenerate it with `cargo xtask lock` (needs the registry), or undo a hand edit with \
             `git checkout -- {SHOWN}`"
        );
        let fix = fix.as_str();
        let (value, mut problems) = diag::parse_json(SHOWN, text);
        if value.is_none() {
            for p in &mut problems {
                if p.fix.is_empty() {
                    p.fix = fix.into();
                }
            }
            return (None, problems);
        }
        let shape = shape_problems(value.as_ref().expect("parsed"), fix);
        if !shape.is_empty() {
            problems.extend(shape);
            return (None, problems);
        }
        // Read again from the text (it is JSON by now): deserializing from the value would make
        // rustc compile every lock type's deserializer a second time, for serde_json's Value.
        let file: LockFile = match serde_json::from_str(diag::without_bom(text)) {
            Ok(file) => file,
            Err(err) => {
                problems.push(
                    Finding::new(SHOWN, "", format!("not a lock file: {err}")).fix(format!(
                        "{fix} (fields: talos_version, extensions_image, extensions, ...)"
                    )),
                );
                return (None, problems);
            }
        };
        let talos_version = TalosVersion::parse(&file.talos_version)
            .map_err(|err| {
                problems.push(
                    Finding::new(SHOWN, "talos_version", err)
                        .value(&file.talos_version)
                        .fix(fix),
                )
            })
            .ok();
        let mut extensions = BTreeMap::new();
        for (name, reference) in &file.extensions {
            let parsed = ImageRef::parse(reference).and_then(|r| {
                match talos_version
                    .as_ref()
                    .and_then(|t| entry_problem(name, &r, t))
                {
                    Some(problem) => Err(problem),
                    None => Ok(r),
                }
            });
            match parsed {
                Ok(r) => {
                    extensions.insert(name.clone(), r);
                }
                Err(problem) => problems.push(
                    Finding::new(SHOWN, format!("extensions.{name}"), problem)
                        .value(reference)
                        .fix(fix),
                ),
            }
        }
        // every other entry is an image by digest (the overlays catalog: a reference)
        let mut pinned = |field: String, reference: &str, need_digest: bool| {
            let problem = match ImageRef::parse(reference) {
                Err(err) => err,
                Ok(r) if need_digest && r.digest.is_none() => match field.as_str() {
                    "imager" | "base_installer" => "not pinned by digest".to_owned(),
                    _ => "has no digest".to_owned(),
                },
                Ok(r) => return Some(r),
            };
            problems.push(
                Finding::new(SHOWN, field, problem)
                    .value(reference)
                    .fix(fix),
            );
            None
        };
        let mut overlays = BTreeMap::new();
        for (name, reference) in &file.overlays {
            if let Some(r) = pinned(format!("overlays.{name}"), reference, true) {
                overlays.insert(name.clone(), r);
            }
        }
        let overlays_image = file
            .overlays_image
            .as_deref()
            .map(|r| pinned("overlays_image".into(), r, false));
        let imager = file
            .imager
            .as_deref()
            .map(|r| pinned("imager".into(), r, true));
        let base_installer = file
            .base_installer
            .as_deref()
            .map(|r| pinned("base_installer".into(), r, true));
        let extensions_image = pinned("extensions_image".into(), &file.extensions_image, false);
        // the images the entries were read from are of the lock's release, as the entries are
        if let Some(talos_version) = &talos_version {
            let catalogs = [
                ("extensions_image", extensions_image.as_ref(), "extensions"),
                (
                    "overlays_image",
                    overlays_image.as_ref().and_then(Option::as_ref),
                    "overlays",
                ),
            ];
            for (field, reference, what) in catalogs {
                let Some(reference) = reference else { continue };
                if let Some(problem) = catalog_problem(reference, what, talos_version) {
                    problems.push(
                        Finding::new(SHOWN, field, problem)
                            .value(reference)
                            .fix(format!(
                                "run `cargo xtask lock --talos-version {talos_version}` and commit {SHOWN} (it reads every entry from the {what} image of that release), or undo a hand edit with `git checkout -- {SHOWN}`"
                            )),
                    );
                }
            }
        }
        if !problems.is_empty() {
            return (None, problems);
        }
        let lock = Lock {
            talos_version: talos_version.expect("no findings"),
            extensions_image: extensions_image.expect("no findings"),
            extensions,
            overlays_image: overlays_image.map(|r| r.expect("no findings")),
            overlays,
            known_overlays: file.known_overlays,
            imager: imager.map(|r| r.expect("no findings")),
            base_installer: base_installer.map(|r| r.expect("no findings")),
        };
        (Some(lock), problems)
    }

    /// The imager a `--locked` build runs: the lock's pin, else a finding that says how to pin it.
    pub fn locked_imager(&self) -> Result<&ImageRef, Finding> {
        self.imager.as_ref().ok_or_else(|| {
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

    /// What a `--locked` build needs pinned besides the variants' entries: the base installer
    /// (the profiles name it by digest), and the imager unless `--imager` names one.
    pub fn locked_pins_problems(&self, imager_given: bool) -> Vec<Finding> {
        let mut findings = Vec::new();
        if self.base_installer.is_none() {
            findings.push(
                Finding::new(
                    SHOWN,
                    "base_installer",
                    format!(
                        "missing: a --locked build names {} only by digest",
                        crate::profile::base_installer_image(&self.talos_version)
                    ),
                )
                .fix(format!(
                    "run `cargo xtask lock --talos-version {}` and commit {SHOWN}",
                    self.talos_version
                )),
            );
        }
        if !imager_given {
            findings.extend(self.locked_imager().err());
        }
        findings
    }

    /// Stable text: sorted keys, two-space indent, trailing newline. Serialized through
    /// `serde_json::Value`, as `lock --json` embeds it, so that serde's code for the lock is
    /// generated once.
    pub fn to_text(&self) -> String {
        let value = serde_json::to_value(self).expect("lock serializes");
        let mut text = serde_json::to_string_pretty(&value).expect("values serialize");
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
                    if reference.digest.is_none() {
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
        match &variant.target.overlay {
            None => OverlayEntry::None,
            Some(choice) => self.overlay_named(&choice.name),
        }
    }

    /// The overlay `name` as the lock has it.
    pub fn overlay_named(&self, name: &str) -> OverlayEntry<'_> {
        if let Some(reference) = self.overlays.get(name) {
            return OverlayEntry::Locked(reference);
        }
        if self.known_overlays.is_empty() {
            return OverlayEntry::Missing;
        }
        match self.known_overlays.iter().find(|n| **n == name) {
            Some(_) => OverlayEntry::Missing,
            None => {
                let known: Vec<&str> = self.known_overlays.iter().map(String::as_str).collect();
                OverlayEntry::Unknown {
                    near: diag::closest(name, &known),
                }
            }
        }
    }

    /// A finding for a variant whose overlay the catalog lacks (`file` is the variant's file).
    pub fn unknown_overlay(&self, file: &str, variant: &Variant) -> Option<Finding> {
        self.unknown_overlay_named(file, &variant.target.overlay.as_ref()?.name)
    }

    /// [`Lock::unknown_overlay`] of the overlay `name`.
    pub fn unknown_overlay_named(&self, file: &str, name: &str) -> Option<Finding> {
        let OverlayEntry::Unknown { near } = self.overlay_named(name) else {
            return None;
        };
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
                    self.overlays_image
                        .as_ref()
                        .map_or_else(|| "the catalog".to_owned(), ToString::to_string)
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
    pub fn locked_problems(
        &self,
        variants: &[Variant],
        talos_version: &TalosVersion,
    ) -> Vec<Finding> {
        let fix =
            format!("run `cargo xtask lock --talos-version {talos_version}` and commit {SHOWN}");
        let mut findings = Vec::new();
        if self.talos_version != *talos_version {
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
            if let Some(f) = self.unknown_overlay(&variant.file(), variant) {
                findings.push(f);
            }
        }
        findings
    }
}

/// What is wrong with a well-formed entry: extension `name` comes from exactly
/// `ghcr.io/siderolabs/<name>` (mirrors are applied when fetching, never written here), and a
/// tag built for one Talos release (`2.4.3-v1.13.6`) must be for the lock's release.
fn entry_problem(name: &str, r: &ImageRef, talos_version: &TalosVersion) -> Option<String> {
    let repository = format!("{EXTENSIONS_REPOSITORY}/{name}");
    if r.repository != repository {
        return Some(format!("extension `{name}` must come from {repository}"));
    }
    let built_for = TalosVersion::built_for(r.tag.as_deref()?)?;
    (built_for != *talos_version)
        .then(|| format!("built for Talos {built_for}, but the lock is for {talos_version}"))
}

/// What is wrong with the image a lock's entries were read from (`ghcr.io/siderolabs/<what>:<talos>`,
/// `what` being `extensions` or `overlays`): its tag must be the lock's release.
fn catalog_problem(r: &ImageRef, what: &str, talos_version: &TalosVersion) -> Option<String> {
    let tag = r.tag.as_deref()?;
    if tag == talos_version {
        return None;
    }
    Some(match TalosVersion::parse(tag) {
        Ok(other) => format!(
            "the {what} image of Talos {other}, but the lock is for {talos_version} (what was read from it is for {other})"
        ),
        Err(_) => format!(
            "tagged `{tag}`, not the lock's release {talos_version} (what was read from it may be for another release)"
        ),
    })
}

#[derive(Default)]
pub struct Resolved {
    pub refs: Vec<ImageRef>,
    pub missing: Vec<String>,
    pub unpinned: Vec<String>,
}

/// The entry names of a lock's text, read leniently (a lock with problems of its own still
/// knows which extensions exist, for "did you mean" hints); none when it is not JSON.
pub fn entry_names(text: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(diag::without_bom(text))
        .ok()
        .and_then(|value| {
            let entries = value.get("extensions")?.as_object()?;
            Some(entries.keys().cloned().collect())
        })
        .unwrap_or_default()
}
#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e";

    #[test]
    fn a_talos_version_without_v_blames_the_field_only() {
        let text = lock().to_text().replace("\"v1.13.99\"", "\"1.13.6\"");
        let (lock, problems) = Lock::check(&text);
        assert!(lock.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "talos_version");
    }

    #[test]
    fn a_lock_of_the_wrong_shape_names_the_field_and_where() {
        let text = lock().to_text().replace("\"talos_version\"", "\"talos\"");
        let (lock, problems) = Lock::check(&format!("\u{feff}{text}"));
        assert!(lock.is_none());
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(shown[0].contains("byte order mark"), "{shown:#?}");
        assert!(
            shown[1].starts_with("variants/extensions.lock: field `talos`: unknown field\n    fix: its fields are talos_version, extensions_image, extensions, overlays_image, overlays, known_overlays, imager, base_installer; regenerate it"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("variants/extensions.lock: field `talos_version`: missing"),
            "{shown:#?}"
        );
        assert_eq!(shown.len(), 3, "{shown:#?}");
    }

    #[test]
    fn every_field_of_the_wrong_shape_is_named_at_once_with_its_value() {
        let mut value: serde_json::Value = serde_json::from_str(&lock().to_text()).unwrap();
        value["extensions"]["drbd"] = 5.into();
        value["known_overlays"] = "rpi_generic".into();
        value["imager"] = serde_json::json!(["a"]);
        let (checked, problems) = Lock::check(&value.to_string());
        assert!(checked.is_none());
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for expected in [
            "field `extensions` = {",
            "not an object of strings (name: image reference)",
            "field `known_overlays` = \"rpi_generic\": not an array of strings",
            "field `imager` = [\"a\"]: not a string",
        ] {
            assert!(
                shown.iter().any(|s| s.contains(expected)),
                "{expected} in {shown:#?}"
            );
        }
        assert_eq!(shown.len(), 3, "{shown:#?}");
        // null stands for an optional reference left out, not for a map or a list
        let mut value: serde_json::Value = serde_json::from_str(&lock().to_text()).unwrap();
        value["imager"] = serde_json::Value::Null;
        assert!(Lock::check(&value.to_string()).1.is_empty());
        value["overlays"] = serde_json::Value::Null;
        value["known_overlays"] = serde_json::Value::Null;
        let shown: Vec<String> = Lock::check(&value.to_string())
            .1
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].contains("field `overlays` = null: not an object"),
            "{shown:#?}"
        );
        assert!(
            shown[1].contains("field `known_overlays` = null: not an array"),
            "{shown:#?}"
        );
    }

    #[test]
    fn a_lock_that_names_a_field_twice_is_refused_where_it_does() {
        // a repeated field is an error (a JSON value would keep the last)
        let text = lock()
            .to_text()
            .replacen("{\n", "{\n  \"talos_version\": \"v1.98.0\",\n", 1);
        let (checked, problems) = Lock::check(&text);
        assert!(checked.is_none());
        let shape = problems.last().unwrap().to_string();
        assert!(
            shape.contains("JSON at line 3 column 17: `talos_version` is named twice"),
            "{problems:?}"
        );
        // ... and so is an entry of `extensions`, which a map would keep the last of
        let text = lock().to_text().replacen(
            "\"extensions\": {\n",
            "\"extensions\": {\n    \"drbd\": \"ghcr.io/siderolabs/drbd:1.0.0-v1.13.99\",\n",
            1,
        );
        let (checked, problems) = Lock::check(&text);
        assert!(checked.is_none());
        assert!(
            problems[0].to_string().contains("`drbd` is named twice"),
            "{problems:?}"
        );
    }

    #[test]
    fn lock_syntax_errors_carry_their_position() {
        let text = lock().to_text().replacen("\n  }", ",\n  }", 1);
        let (_, problems) = Lock::check(&text);
        assert!(
            problems[0].problem.contains("trailing comma"),
            "{}",
            problems[0]
        );
        let (line, text) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.ends_with("\","))
            .last()
            .unwrap();
        let at = format!("at line {} column {}", line + 1, text.len());
        assert!(problems[0].problem.contains(&at), "{at}: {}", problems[0]);
    }

    fn lock() -> Lock {
        Lock {
            talos_version: "v1.13.99".into(),
            extensions_image: "ghcr.io/siderolabs/extensions:v1.13.99".into(),
            extensions: [
                (
                    "drbd".to_owned(),
                    format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{DIGEST}"),
                ),
                (
                    "spin".to_owned(),
                    "ghcr.io/siderolabs/spin:v0.25.1".to_owned(),
                ),
            ]
            .map(|(name, reference)| (name, reference.into()))
            .into(),
            ..Lock::default()
        }
    }

    fn variant(extensions: &str) -> Variant {
        crate::variant::parse(
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
        let findings =
            lock().locked_problems(&[variant(r#"["drbd","spin","zfs"]"#)], &"v1.98.0".into());
        let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(findings.len(), 3, "{text:#?}");
        assert!(text[0]
            .contains("`talos_version` = v1.13.99: stale: the pinned upstream uses Talos v1.98.0"));
        assert!(text
            .iter()
            .any(|t| t.contains("`extensions.zfs`: missing (used by variant `v`)")));
        assert!(text
            .iter()
            .any(|t| t
                .contains("`extensions.spin` = ghcr.io/siderolabs/spin:v0.25.1: has no digest")));
        assert!(text
            .iter()
            .all(|t| t.contains("cargo xtask lock --talos-version v1.98.0")));
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
            format!("ghcr.io/siderolabs/zfs:2.4.3-v1.13.5@{DIGEST}").into(),
        );
        edited.extensions.insert(
            "drbd".into(),
            format!("ghcr.io/someone/drbd:9.3.2-v1.13.99@{DIGEST}").into(),
        );
        let err = format!("{:#}", Lock::parse(&edited.to_text()).unwrap_err());
        assert!(err.contains("invalid lock file: 2 problems"), "{err}");
        assert!(
            err.contains("field `extensions.drbd` = ghcr.io/someone/drbd:9.3.2-v1.13.99@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e: extension `drbd` must come from ghcr.io/siderolabs/drbd"),
            "{err}"
        );
        assert!(
            err.contains("field `extensions.zfs` = ghcr.io/siderolabs/zfs:2.4.3-v1.13.5@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e: built for Talos v1.13.5, but the lock is for v1.13.99"),
            "{err}"
        );
        assert!(
            err.contains("fix: regenerate it with `cargo xtask lock` (needs the registry), or undo a hand edit with `git checkout -- variants/extensions.lock`"),
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
    fn catalog_images_of_another_talos_release_are_rejected_with_the_entries() {
        // a v1.98.0 lock whose entries were read from the v1.13.99 catalogs
        let mut edited = lock();
        edited.talos_version = "v1.98.0".into();
        edited.extensions_image = format!("ghcr.io/siderolabs/extensions:v1.13.99@{DIGEST}").into();
        edited.overlays_image =
            Some(format!("ghcr.io/siderolabs/overlays:v1.13.99@{DIGEST}").into());
        let (checked, problems) = Lock::check(&edited.to_text());
        assert!(checked.is_none());
        let text: Vec<String> = problems.iter().map(|f| f.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        // in the same run as the entry built for that release
        assert!(
            text.iter().any(|t| t.contains("field `extensions.drbd` = ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e: built for Talos v1.13.99, but the lock is for v1.98.0")),
            "{text:#?}"
        );
        for (field, what) in [
            ("extensions_image", "extensions"),
            ("overlays_image", "overlays"),
        ] {
            let t = text
                .iter()
                .find(|t| t.contains(&format!("field `{field}`")))
                .unwrap_or_else(|| panic!("{field} not reported: {text:#?}"));
            assert!(
                t.starts_with(&format!("variants/extensions.lock: field `{field}` = ghcr.io/siderolabs/{what}:v1.13.99@{DIGEST}: the {what} image of Talos v1.13.99, but the lock is for v1.98.0")),
                "{t}"
            );
            assert!(
                t.contains("fix: run `cargo xtask lock --talos-version v1.98.0` and commit variants/extensions.lock"),
                "{t}"
            );
        }
        // the lock's own release is fine, with a digest or without
        let mut good = lock();
        good.extensions_image = format!("ghcr.io/siderolabs/extensions:v1.13.99@{DIGEST}").into();
        good.overlays_image = Some("ghcr.io/siderolabs/overlays:v1.13.99".into());
        Lock::parse(&good.to_text()).unwrap();
        // a tag that names no release is not the lock's either
        good.extensions_image = "ghcr.io/siderolabs/extensions:latest".into();
        let err = format!("{:#}", Lock::parse(&good.to_text()).unwrap_err());
        assert!(
            err.contains("field `extensions_image` = ghcr.io/siderolabs/extensions:latest: tagged `latest`, not the lock's release v1.13.99"),
            "{err}"
        );
    }

    #[test]
    fn unknown_lock_fields_are_rejected() {
        let text = lock()
            .to_text()
            .replace("\"talos_version\"", "\"talos\": 1, \"talos_version\"");
        let err = format!("{:#}", Lock::parse(&text).unwrap_err());
        assert!(err.contains("field `talos`: unknown field"), "{err}");
    }
}
