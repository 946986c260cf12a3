//! Role variants: one JSON file per node role under `variants/`.
//!
//! Parsing is pure (`parse` takes the file name and text); `load_all` is the thin layer that
//! reads the directory. Every problem in every file is collected before anything is reported.
//! The format is documented in docs/variants.md.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diag::{self, Finding};
use crate::profile::Arch;
use crate::project::Project;

/// Firmware packages that only make sense on x86: they build into an arm64 image but are dead weight there.
pub const X86_ONLY_FIRMWARE: &[&str] = &["amd-ucode", "intel-ucode", "i915", "amdgpu"];

/// What a variant can build. Each maps to one imager profile (see `profile::for_output`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// the installer container image (`installer-<arch>.tar`), what `talosctl upgrade` pulls
    Installer,
    /// the kernel (`kernel-<arch>`), for PXE/matchbox and the smoke boot
    Kernel,
    /// the initramfs (`initramfs-metal-<arch>.xz`), for PXE/matchbox and the smoke boot
    Initramfs,
    /// a bare-metal disk image (`metal-<arch>.raw.xz`)
    Metal,
    /// a bootable ISO (`metal-<arch>.iso`)
    Iso,
    /// a disk image for cloud-init style platforms (`nocloud-<arch>.raw.xz`)
    Nocloud,
}

impl Output {
    pub const ALL: [Output; 6] = [
        Output::Installer,
        Output::Kernel,
        Output::Initramfs,
        Output::Metal,
        Output::Iso,
        Output::Nocloud,
    ];
    /// What a variant builds when its file does not say: everything a node and a netboot server need.
    pub const DEFAULT: [Output; 4] = [
        Output::Installer,
        Output::Kernel,
        Output::Initramfs,
        Output::Metal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Output::Installer => "installer",
            Output::Kernel => "kernel",
            Output::Initramfs => "initramfs",
            Output::Metal => "metal",
            Output::Iso => "iso",
            Output::Nocloud => "nocloud",
        }
    }
}

/// One node role, as read from `variants/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub name: String,
    pub description: String,
    pub arch: Arch,
    /// System extensions by short name (`drbd`), in build order.
    pub extensions: Vec<String>,
    /// Firmware extensions by short name; built before the system extensions.
    pub firmware: Vec<String>,
    /// Repository path below the registry/owner, e.g. `talos-cozystack-spin-only/talos`.
    pub repository: String,
    pub outputs: Vec<Output>,
    pub extra_kernel_args: Vec<String>,
}

impl Variant {
    /// Every extension the image carries, firmware first, in build order.
    pub fn all_extensions(&self) -> impl Iterator<Item = &str> {
        self.firmware
            .iter()
            .chain(&self.extensions)
            .map(String::as_str)
    }

    pub fn builds(&self, output: Output) -> bool {
        self.outputs.contains(&output)
    }
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "arch",
    "extensions",
    "firmware",
    "repository",
    "outputs",
    "extra_kernel_args",
];

/// Parses one variant file. `file` is the path shown in findings (relative to the repository).
pub fn parse(file: &str, text: &str) -> Result<Variant, Vec<Finding>> {
    let mut findings = Vec::new();
    let stem = Utf8Path::new(file)
        .file_stem()
        .unwrap_or_default()
        .to_owned();
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return Err(vec![Finding::new(
                file,
                "",
                "a variant file holds one JSON object",
            )
            .value(kind_of(&other))
            .fix(
                "write the variant as { \"name\": ..., \"arch\": ..., ... } (see docs/variants.md)",
            )])
        }
        Err(err) => {
            return Err(vec![Finding::new(
                file,
                "",
                format!(
                    "malformed JSON at line {} column {}: {err}",
                    err.line(),
                    err.column()
                ),
            )
            .fix("correct the JSON syntax at that position")])
        }
    };

    for key in object.keys() {
        if !FIELDS.contains(&key.as_str()) {
            let hint = match diag::closest(key, FIELDS) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            findings.push(
                Finding::new(file, key.as_str(), "unknown field")
                    .fix(format!("{hint}known fields are: {}", FIELDS.join(", "))),
            );
        }
    }

    let mut fields = Fields {
        file,
        object: &object,
        findings: &mut findings,
    };
    let name = fields.required_string("name");
    let description = fields.required_string("description");
    let arch = fields.required_arch();
    let extensions = fields.name_list("extensions", true);
    let firmware = fields.optional(|f| f.name_list("firmware", false), Vec::new(), "firmware");
    let repository = fields.required_string("repository");
    let outputs = fields.optional(|f| f.outputs(), Output::DEFAULT.to_vec(), "outputs");
    let extra_kernel_args = fields.optional(
        |f| f.string_list("extra_kernel_args"),
        Vec::new(),
        "extra_kernel_args",
    );

    if let Some(name) = &name {
        if !is_path_segment(name) {
            findings.push(
                Finding::new(file, "name", "not a valid repository path segment")
                    .value(quoted(name))
                    .fix("use lowercase letters, digits and single `.`, `_` or `-` between them"),
            );
        } else if name != stem.as_str() {
            findings.push(
                Finding::new(
                    file,
                    "name",
                    format!("does not match the file name `{stem}.json`"),
                )
                .value(quoted(name))
                .fix(format!(
                    "set \"name\": \"{stem}\" or rename the file to variants/{name}.json"
                )),
            );
        }
    }
    if let Some(repository) = &repository {
        if repository.is_empty() || !repository.split('/').all(is_path_segment) {
            findings.push(
                Finding::new(file, "repository", "not a valid repository path")
                    .value(quoted(repository))
                    .fix("use `/`-separated lowercase segments such as \"talos-cozystack-spin-only/talos\"; the registry and owner are given at run time"),
            );
        }
    }
    if let (Some(arch), Some(firmware)) = (arch, &firmware) {
        if arch == Arch::Arm64 {
            for (i, fw) in firmware.iter().enumerate() {
                if X86_ONLY_FIRMWARE.contains(&fw.as_str()) {
                    findings.push(
                        Finding::new(file, format!("firmware[{i}]"), "x86-only firmware in an arm64 variant")
                            .value(quoted(fw))
                            .fix(format!("remove \"{fw}\": it builds into an arm64 image but is dead weight there")),
                    );
                }
            }
        }
    }
    if let (Some(extensions), Some(firmware)) = (&extensions, &firmware) {
        for (i, fw) in firmware.iter().enumerate() {
            if extensions.contains(fw) {
                findings.push(
                    Finding::new(
                        file,
                        format!("firmware[{i}]"),
                        "also listed in `extensions`",
                    )
                    .value(quoted(fw))
                    .fix("list each extension once, in `firmware` or in `extensions`"),
                );
            }
        }
    }

    match (
        name,
        description,
        arch,
        extensions,
        firmware,
        repository,
        outputs,
        extra_kernel_args,
    ) {
        (
            Some(name),
            Some(description),
            Some(arch),
            Some(extensions),
            Some(firmware),
            Some(repository),
            Some(outputs),
            Some(extra_kernel_args),
        ) if findings.is_empty() => Ok(Variant {
            name,
            description,
            arch,
            extensions,
            firmware,
            repository,
            outputs,
            extra_kernel_args,
        }),
        _ => Err(findings),
    }
}

/// Checks that hold across variants: names and repositories are unique.
pub fn check_set(variants: &[(String, Variant)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut by_repository: BTreeMap<&str, &str> = BTreeMap::new();
    for (file, variant) in variants {
        if let Some(first) = by_repository.insert(&variant.repository, file) {
            findings.push(
                Finding::new(
                    file.as_str(),
                    "repository",
                    format!("also published by {first}"),
                )
                .value(quoted(&variant.repository))
                .fix("give each role its own repository, or one image would overwrite the other"),
            );
        }
    }
    findings
}

/// Reads and validates every `variants/*.json`, sorted by name.
pub fn load_all(project: &Project) -> Result<Vec<Variant>> {
    let dir = project.variants_dir();
    let mut files: Vec<_> = dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
        .map(|entry| entry.map(|e| e.into_path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {dir}"))?;
    files.retain(|p| p.extension() == Some("json"));
    files.sort();

    let mut findings = Vec::new();
    let mut parsed = Vec::new();
    for path in &files {
        let shown = project.display(path).to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        match parse(&shown, &text) {
            Ok(variant) => parsed.push((shown, variant)),
            Err(mut found) => findings.append(&mut found),
        }
    }
    findings.extend(check_set(&parsed));
    if files.is_empty() {
        findings.push(
            Finding::new(project.display(&dir).as_str(), "", "no variant files").fix(
                "add one JSON file per role, e.g. variants/compute.json (see docs/variants.md)",
            ),
        );
    }
    diag::into_result("invalid variants", findings)?;
    Ok(parsed.into_iter().map(|(_, v)| v).collect())
}

/// Picks variants by name; an empty selection means all of them.
pub fn select(all: Vec<Variant>, names: &[String]) -> Result<Vec<Variant>> {
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "unknown variant{} {}: the variants are {} (one file each under variants/)",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|v| names.contains(&v.name))
        .collect())
}

/// A segment of an OCI repository path: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_path_segment(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let separators_ok = bytes
        .split(alnum)
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|b| *b == b'-'));
    !bytes.is_empty()
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && separators_ok
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field-by-field extraction, so that one bad field does not hide the others.
struct Fields<'a> {
    file: &'a str,
    object: &'a Map<String, Value>,
    findings: &'a mut Vec<Finding>,
}

impl Fields<'_> {
    fn missing(&mut self, field: &str, example: &str) {
        self.findings.push(
            Finding::new(self.file, field, "missing required field")
                .fix(format!("add \"{field}\": {example}")),
        );
    }

    fn wrong_type(&mut self, field: &str, value: &Value, expected: &str) {
        self.findings.push(
            Finding::new(
                self.file,
                field,
                format!("expected {expected}, found {}", kind_of(value)),
            )
            .value(value)
            .fix(format!("write `{field}` as {expected}")),
        );
    }

    /// `None` from `parse` means a finding was recorded; an absent field takes `default`.
    fn optional<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Option<T>,
        default: T,
        field: &str,
    ) -> Option<T> {
        if self.object.contains_key(field) {
            parse(self)
        } else {
            Some(default)
        }
    }

    fn required_string(&mut self, field: &str) -> Option<String> {
        match self.object.get(field) {
            None => {
                self.missing(field, "\"...\"");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.findings.push(
                    Finding::new(self.file, field, "must not be empty")
                        .value("\"\"")
                        .fix(format!("give `{field}` a value")),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.wrong_type(field, other, "a string");
                None
            }
        }
    }

    fn required_arch(&mut self) -> Option<Arch> {
        let value = self.required_string("arch")?;
        match value.as_str() {
            "arm64" => Some(Arch::Arm64),
            "amd64" => Some(Arch::Amd64),
            _ => {
                self.findings.push(
                    Finding::new(self.file, "arch", "unknown architecture")
                        .value(quoted(&value))
                        .fix("use \"arm64\" (or \"amd64\"); Talos names them the Go way, not aarch64/x86_64"),
                );
                None
            }
        }
    }

    fn string_list(&mut self, field: &str) -> Option<Vec<String>> {
        let value = self.object.get(field)?;
        let Value::Array(items) = value else {
            self.wrong_type(field, value, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => {
                    self.wrong_type(&format!("{field}[{i}]"), other, "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A list of extension short names: valid names, no duplicates, non-empty when `required`.
    fn name_list(&mut self, field: &str, required: bool) -> Option<Vec<String>> {
        if required && !self.object.contains_key(field) {
            self.missing(field, "[\"drbd\", \"zfs\"]");
            return None;
        }
        let names = self.string_list(field)?;
        let mut ok = true;
        if required && names.is_empty() {
            self.findings.push(
                Finding::new(self.file, field, "empty")
                    .value("[]")
                    .fix("list the system extensions this role needs by short name, e.g. [\"drbd\", \"zfs\"]"),
            );
            ok = false;
        }
        for (i, name) in names.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if name.contains('/') || name.contains(':') || name.contains('@') {
                self.findings.push(
                    Finding::new(self.file, at.as_str(), "not a short extension name")
                        .value(quoted(name))
                        .fix(format!(
                            "write the short name (\"{}\"); the image reference comes from variants/{}",
                            short_name(name),
                            crate::lockfile::FILE_NAME
                        )),
                );
                ok = false;
            } else if !is_path_segment(name) {
                self.findings.push(
                    Finding::new(self.file, at.as_str(), "not a valid extension name")
                        .value(quoted(name))
                        .fix("use the lowercase name of the siderolabs extension, e.g. \"drbd\""),
                );
                ok = false;
            } else if let Some(first) = names[..i].iter().position(|n| n == name) {
                self.findings.push(
                    Finding::new(
                        self.file,
                        at.as_str(),
                        format!("duplicate of {field}[{first}]"),
                    )
                    .value(quoted(name))
                    .fix("list each extension once"),
                );
                ok = false;
            }
        }
        ok.then_some(names)
    }

    fn outputs(&mut self) -> Option<Vec<Output>> {
        let names = self.string_list("outputs")?;
        let known: Vec<&str> = Output::ALL.iter().map(|o| o.name()).collect();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, name) in names.iter().enumerate() {
            match Output::ALL.iter().find(|o| o.name() == name) {
                Some(o) if out.contains(o) => {
                    self.findings.push(
                        Finding::new(self.file, format!("outputs[{i}]"), "duplicate output")
                            .value(quoted(name))
                            .fix("list each output once"),
                    );
                    ok = false;
                }
                Some(o) => out.push(*o),
                None => {
                    self.findings.push(
                        Finding::new(self.file, format!("outputs[{i}]"), "unknown output")
                            .value(quoted(name))
                            .fix(format!("use one of: {}", known.join(", "))),
                    );
                    ok = false;
                }
            }
        }
        if out.is_empty() && ok {
            self.findings
                .push(
                    Finding::new(self.file, "outputs", "empty")
                        .value("[]")
                        .fix(format!(
                            "list what to build, or drop the field for the default ({})",
                            default_outputs()
                        )),
                );
            ok = false;
        }
        ok.then_some(out)
    }
}

fn default_outputs() -> String {
    Output::DEFAULT
        .iter()
        .map(|o| o.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_name(reference: &str) -> &str {
    let repo = reference.split(['@', ':']).next().unwrap_or(reference);
    repo.rsplit('/').next().unwrap_or(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "name": "compute",
        "description": "storage and wasm",
        "arch": "arm64",
        "extensions": ["drbd", "zfs", "spin"],
        "repository": "talos-cozystack-spin-only/talos"
    }"#;

    fn errors(file: &str, text: &str) -> Vec<String> {
        parse(file, text)
            .unwrap_err()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    fn one_error(file: &str, text: &str) -> String {
        let errs = errors(file, text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn good_file_parses_with_defaults() {
        let v = parse("variants/compute.json", GOOD).unwrap();
        assert_eq!(v.extensions, ["drbd", "zfs", "spin"]);
        assert!(v.firmware.is_empty());
        assert_eq!(v.outputs, Output::DEFAULT);
        assert_eq!(v.arch, Arch::Arm64);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = one_error(
            "variants/compute.json",
            "{\n  \"name\": \"compute\",\n  \"arch\" \"arm64\"\n}",
        );
        assert!(
            e.starts_with("variants/compute.json: malformed JSON at line 3 column 10"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named_with_a_suggestion() {
        let text = GOOD.replace("\"extensions\"", "\"extension\"");
        let errs = errors("variants/compute.json", &text);
        assert!(
            errs.iter()
                .any(|e| e.contains("field `extension`: unknown field")
                    && e.contains("did you mean `extensions`?")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("field `extensions`: missing required field")),
            "{errs:#?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"name": "Compute", "description": "x", "arch": "aarch64", "extensions": [],
                       "repository": "a//b", "systemExtensions": []}"#;
        let errs = errors("variants/compute.json", text);
        let joined = errs.join("\n");
        for needle in [
            "field `systemExtensions`: unknown field",
            "field `arch` = \"aarch64\": unknown architecture",
            "field `extensions` = []: empty",
            "field `name` = \"Compute\": not a valid repository path segment",
            "field `repository` = \"a//b\": not a valid repository path",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        assert_eq!(errs.len(), 5, "{joined}");
    }

    #[test]
    fn name_must_match_file() {
        let e = one_error("variants/worker.json", GOOD);
        assert!(
            e.contains("field `name` = \"compute\": does not match the file name `worker.json`"),
            "{e}"
        );
        assert!(e.contains("fix: set \"name\": \"worker\""), "{e}");
    }

    #[test]
    fn duplicate_extensions_are_rejected() {
        let text = GOOD.replace("\"spin\"]", "\"spin\", \"zfs\"]");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("field `extensions[3]` = \"zfs\": duplicate of extensions[1]"),
            "{e}"
        );
    }

    #[test]
    fn full_references_are_not_short_names() {
        let text = GOOD.replace("\"spin\"]", "\"ghcr.io/siderolabs/spin:v0.25.1\"]");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("not a short extension name")
                && e.contains("write the short name (\"spin\")"),
            "{e}"
        );
    }

    #[test]
    fn x86_firmware_in_arm64_variant_is_rejected() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"firmware\": [\"bnx2-bnx2x\", \"intel-ucode\"], \"arch\"",
        );
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains(
                "field `firmware[1]` = \"intel-ucode\": x86-only firmware in an arm64 variant"
            ),
            "{e}"
        );
        let amd64 = text.replace("arm64", "amd64");
        assert!(parse("variants/compute.json", &amd64).is_ok());
    }

    #[test]
    fn unknown_and_duplicate_outputs_are_rejected() {
        let text = GOOD.replace(
            "\"arch\"",
            "\"outputs\": [\"kernel\", \"raw\", \"kernel\"], \"arch\"",
        );
        let joined = errors("variants/compute.json", &text).join("\n");
        assert!(
            joined.contains("field `outputs[1]` = \"raw\": unknown output"),
            "{joined}"
        );
        assert!(
            joined.contains("field `outputs[2]` = \"kernel\": duplicate output"),
            "{joined}"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let text = GOOD.replace("\"storage and wasm\"", "42");
        let e = one_error("variants/compute.json", &text);
        assert!(
            e.contains("field `description` = 42: expected a string, found a number"),
            "{e}"
        );
    }

    #[test]
    fn two_variants_cannot_share_a_repository() {
        let a = parse("variants/compute.json", GOOD).unwrap();
        let b = parse(
            "variants/gateway.json",
            &GOOD.replace("\"compute\"", "\"gateway\""),
        )
        .unwrap();
        let findings = check_set(&[
            ("variants/compute.json".into(), a),
            ("variants/gateway.json".into(), b),
        ]);
        assert_eq!(findings.len(), 1);
        let e = findings[0].to_string();
        assert!(e.starts_with("variants/gateway.json: field `repository` = \"talos-cozystack-spin-only/talos\": also published by variants/compute.json"), "{e}");
    }

    #[test]
    fn path_segments() {
        for ok in ["talos", "spin-only", "a.b_c-d", "x1", "a--b", "a__b"] {
            assert!(is_path_segment(ok), "{ok}");
        }
        for bad in ["", "Talos", "-a", "a-", "a..b", "a._b", "a b", "a/b"] {
            assert!(!is_path_segment(bad), "{bad}");
        }
    }
}
