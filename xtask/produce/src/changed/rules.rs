//! The path rules of `build-rules.json` and the pure classification of changed paths.
//!
//! A changed path is, in this order: a global build input (every variant rebuilds), an input of
//! one or more variants, documentation (builds nothing), or unknown (every variant rebuilds and
//! the reason names the path). Build inputs win over docs, so `patches/README.md` builds.

use std::collections::BTreeSet;

use glob::{MatchOptions, Pattern};
use serde::Deserialize;

use domain::diag::Finding;

pub const FILE: &str = "build-rules.json";

/// Case-sensitive; `*` never crosses `/`; `*` and `**` match dot-files (`.cargo/config.toml`).
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Where `{name}` stands for a variant's name in the variant patterns.
const NAME: &str = "{name}";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[allow(dead_code)]
    about: Option<String>,
    global: Vec<String>,
    variants: VariantsFile,
    docs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantsFile {
    file: String,
    inputs: Vec<String>,
}

#[derive(Debug)]
pub struct Rules {
    global: Vec<Pattern>,
    docs: Vec<Pattern>,
    /// `variants/{name}.json` split around `{name}`.
    file_prefix: String,
    file_suffix: String,
    /// Patterns with `{name}`, instantiated per variant.
    inputs: Vec<String>,
}

/// What one changed path means for the build.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    /// Rebuilds every variant; the pattern that matched.
    Global(String),
    /// Rebuilds these variants (by name).
    Variants(BTreeSet<String>),
    Docs,
    /// No rule names the path: rebuild every variant.
    Unknown,
}

/// Checks and compiles one pattern; `templated` patterns must hold `{name}`, others must not.
fn pattern(text: &str, templated: bool) -> Result<Pattern, (String, &'static str)> {
    let plain = text.replace(NAME, "x");
    if templated && !text.contains(NAME) {
        return Err((
            "names no variant".into(),
            "use `{name}` for the variant's name, or move the pattern to `global`",
        ));
    }
    if !templated && text.contains(NAME) {
        return Err((
            "`{name}` only means something in variants.inputs".into(),
            "move the pattern to variants.inputs or write the path out",
        ));
    }
    if plain.contains(['{', '}']) {
        return Err((
            "brace alternatives are not glob syntax here".into(),
            "write one pattern per alternative",
        ));
    }
    if plain.is_empty() || plain.starts_with('/') || plain.ends_with('/') {
        return Err((
            "not a repository path pattern".into(),
            "write a path relative to the repository root, e.g. `docs/**`",
        ));
    }
    Pattern::new(&plain).map_err(|err| {
        (
            format!("invalid glob: {}", err.msg),
            "see docs/changed.md for the glob syntax",
        )
    })
}

impl Rules {
    /// Parses and checks the rules file; every problem is reported at once.
    pub fn parse(text: &str) -> Result<Rules, Vec<Finding>> {
        let file: RulesFile = serde_json::from_str(text).map_err(|err| {
            vec![Finding::new(FILE, "", format!("cannot be read: {err}"))
                .fix("see docs/changed.md for the format: {\"global\": [...], \"variants\": {\"file\": ..., \"inputs\": [...]}, \"docs\": [...]}")]
        })?;
        let mut findings = Vec::new();
        let mut compile = |field: &str, list: &[String], templated: bool| -> Vec<Pattern> {
            let mut patterns = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match pattern(text, templated) {
                    Ok(pattern) => patterns.push(pattern),
                    Err((problem, fix)) => findings.push(
                        Finding::new(FILE, format!("{field}[{i}]"), problem)
                            .value(format!("{text:?}"))
                            .fix(fix),
                    ),
                }
            }
            patterns
        };
        let global = compile("global", &file.global, false);
        let docs = compile("docs", &file.docs, false);
        // Checked with a stand-in name; compiled per variant by `classifier`.
        compile("variants.inputs", &file.variants.inputs, true);
        let template = &file.variants.file;
        let parts: Vec<&str> = template.split(NAME).collect();
        let (file_prefix, file_suffix) = match parts.as_slice() {
            [prefix, suffix]
                if !template.contains(['*', '?', '[', ']'])
                    && !suffix.contains('/')
                    && (prefix.is_empty() || prefix.ends_with('/'))
                    && !suffix.is_empty() =>
            {
                (prefix.to_string(), suffix.to_string())
            }
            _ => {
                findings.push(
                    Finding::new(FILE, "variants.file", "must be a literal path with `{name}` once, as its file name before an extension")
                        .value(format!("{template:?}"))
                        .fix("write \"variants/{name}.json\""),
                );
                (String::new(), String::new())
            }
        };
        if findings.is_empty() {
            Ok(Rules {
                global,
                docs,
                file_prefix,
                file_suffix,
                inputs: file.variants.inputs,
            })
        } else {
            Err(findings)
        }
    }

    /// The variant a path defines (`variants/compute.json` -> `compute`), if it is a variant file.
    pub fn variant_of(&self, path: &str) -> Option<String> {
        let name = path
            .strip_prefix(&self.file_prefix)?
            .strip_suffix(&self.file_suffix)?;
        (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
    }

    /// Whether `path` is documentation and nothing else (no build input claims it).
    pub fn is_docs_only(&self, path: &str) -> bool {
        self.classifier(&BTreeSet::new()).classify(path) == Class::Docs
    }

    /// The directory variant files live in, for listing them (`variants`).
    pub fn variants_dir(&self) -> &str {
        self.file_prefix.trim_end_matches('/')
    }

    /// A classifier for these variants (every variant known at base or head): their input
    /// patterns are compiled once, not per path.
    pub fn classifier(&self, variants: &BTreeSet<String>) -> Classifier<'_> {
        let mut inputs = Vec::with_capacity(variants.len());
        for name in variants {
            let escaped = Pattern::escape(name);
            let mut patterns = Vec::with_capacity(self.inputs.len());
            for input in &self.inputs {
                // An escaped name cannot break a pattern that compiled with `x` in its place.
                let pattern = Pattern::new(&input.replace(NAME, &escaped));
                patterns.push(pattern.expect("variant input patterns were checked"));
            }
            inputs.push((name.clone(), patterns));
        }
        Classifier {
            rules: self,
            inputs,
        }
    }

    /// Classifies one path; `variants` are every variant known at base or head.
    #[cfg(test)]
    pub fn classify(&self, path: &str, variants: &BTreeSet<String>) -> Class {
        self.classifier(variants).classify(path)
    }
}

pub struct Classifier<'a> {
    rules: &'a Rules,
    inputs: Vec<(String, Vec<Pattern>)>,
}

impl Classifier<'_> {
    pub fn classify(&self, path: &str) -> Class {
        let rules = self.rules;
        // The rules decide nothing about themselves: a change that rewrites them is judged by
        // the rules it replaces, and builds everything whatever they say.
        if path == FILE {
            return Class::Global(FILE.to_owned());
        }
        if let Some(pattern) = rules.global.iter().find(|p| p.matches_with(path, MATCH)) {
            return Class::Global(pattern.as_str().to_owned());
        }
        let mut hit = BTreeSet::new();
        if let Some(name) = rules.variant_of(path) {
            hit.insert(name);
        }
        for (name, patterns) in &self.inputs {
            if patterns.iter().any(|p| p.matches_with(path, MATCH)) {
                hit.insert(name.clone());
            }
        }
        if !hit.is_empty() {
            return Class::Variants(hit);
        }
        if rules.docs.iter().any(|p| p.matches_with(path, MATCH)) {
            return Class::Docs;
        }
        Class::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(FILE),
        )
        .unwrap();
        Rules::parse(&text).unwrap_or_else(|f| panic!("{f:?}"))
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn class(path: &str) -> Class {
        rules().classify(path, &names(&["compute", "gateway"]))
    }

    #[test]
    fn the_repository_rules_file_is_valid_and_names_the_required_inputs() {
        let r = rules();
        for path in [
            "build-rules.json",
            "patches/0001-arm64.patch",
            "patches/README.md",
            "patches/upstream.json",
            "xtask/src/main.rs",
            "xtask/domain/src/lib.rs",
            "xtask/produce/Cargo.toml",
            "xtask/README.md",
            "Cargo.toml",
            "Cargo.lock",
            ".cargo/config.toml",
            ".github/workflows/build.yml",
            "variants/extensions.lock",
        ] {
            assert!(
                matches!(r.classify(path, &BTreeSet::new()), Class::Global(_)),
                "{path}"
            );
        }
    }

    #[test]
    fn docs_build_nothing_but_build_inputs_win() {
        assert_eq!(class("docs/changed.md"), Class::Docs);
        assert_eq!(class("docs/img/a.png"), Class::Docs);
        assert_eq!(class("README.md"), Class::Docs);
        assert_eq!(class("variants/README.md"), Class::Docs);
        assert_eq!(
            class("patches/README.md"),
            Class::Global("patches/**".into())
        );
        assert_eq!(class("xtask/NOTES.md"), Class::Global("xtask/**".into()));
    }

    #[test]
    fn a_variant_file_and_its_directory_belong_to_that_variant() {
        assert_eq!(
            class("variants/gateway.json"),
            Class::Variants(names(&["gateway"]))
        );
        assert_eq!(
            class("variants/compute/extra.yaml"),
            Class::Variants(names(&["compute"]))
        );
        // A new variant is a variant before anyone lists it.
        assert_eq!(
            class("variants/storage.json"),
            Class::Variants(names(&["storage"]))
        );
        assert_eq!(class("variants/sub/x.json"), Class::Unknown);
    }

    #[test]
    fn matching_is_case_sensitive_and_sees_dot_files() {
        assert_eq!(class("Docs/changed.md"), Class::Docs, "*.md still matches");
        assert_eq!(class("Docs/diagram.svg"), Class::Unknown);
        assert_eq!(class("docs/.hidden/x"), Class::Docs);
        assert_eq!(class("PATCHES/x.patch"), Class::Unknown);
        assert_eq!(class("README.MD"), Class::Unknown);
        assert_eq!(class(".cargo/.env"), Class::Global(".cargo/**".into()));
    }

    #[test]
    fn unknown_paths_are_unknown() {
        assert_eq!(class("src/main.rs"), Class::Unknown);
        assert_eq!(class(".github/dependabot.yml"), Class::Unknown);
        assert_eq!(class("variants/notes.txt"), Class::Unknown);
        assert_eq!(
            class("docs"),
            Class::Unknown,
            "a file named docs is not under docs/"
        );
    }

    #[test]
    fn the_rules_file_is_global_whatever_the_rules_say() {
        let r = Rules::parse(
            r#"{"global": [], "variants": {"file": "variants/{name}.json", "inputs": []},
                "docs": ["*.json", "**"]}"#,
        )
        .unwrap();
        assert_eq!(
            r.classify(FILE, &BTreeSet::new()),
            Class::Global(FILE.into())
        );
        assert_eq!(r.classify("other.json", &BTreeSet::new()), Class::Docs);
    }

    #[test]
    fn glob_metacharacters_in_variant_names_are_literal() {
        let r = rules();
        let odd = names(&["a*"]);
        assert_eq!(
            r.classify("variants/a*/x", &odd),
            Class::Variants(odd.clone())
        );
        assert_eq!(r.classify("variants/ab/x", &odd), Class::Unknown);
    }

    #[test]
    fn bad_rules_are_all_reported() {
        let text = r#"{"global": ["{a,b}/x", "[", "/abs", "x/{name}"],
                       "variants": {"file": "variants/*.json", "inputs": ["v/x"]},
                       "docs": [""]}"#;
        let findings = Rules::parse(text).unwrap_err();
        let all = findings
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "global[0]` = \"{a,b}/x\": brace alternatives",
            "global[1]` = \"[\": invalid glob",
            "global[2]` = \"/abs\": not a repository path pattern",
            "global[3]` = \"x/{name}\": `{name}` only means something in variants.inputs",
            "variants.inputs[0]` = \"v/x\": names no variant",
            "variants.file` = \"variants/*.json\"",
            "docs[0]` = \"\": not a repository path pattern",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        let unknown = Rules::parse(r#"{"global": [], "variants": {"file": "v/{name}.json", "inputs": []}, "docs": [], "skip": []}"#)
            .unwrap_err();
        assert!(
            unknown[0].to_string().contains("unknown field `skip`"),
            "{:?}",
            unknown
        );
    }
}
