//! From classified changes to the decision: which variants build, which are gone, and why.

use std::collections::BTreeSet;

use serde::Serialize;

use super::output::shown;
use super::rules::{Class, Rules};

/// One path in the diff; a rename or copy contributes its old and its new path.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// git's status letter (`A`, `D`, `M`, `T`, `R`, `C`, ...).
    pub status: char,
    pub path: String,
}

/// What CI builds. The JSON form is the contract (`--format json`).
#[derive(Debug, Default, Serialize)]
pub struct Decision {
    /// True when at least one variant builds.
    pub build: bool,
    /// True when the tests must run: any path changed (documentation too: its shell blocks are
    /// tests), or every variant builds. Always true when `build` is.
    pub test: bool,
    /// Variants to build, sorted; never a removed one.
    pub variants: Vec<String>,
    pub reason: String,
    /// Number of changed paths compared (a rename counts twice).
    pub files: usize,
    /// Variants whose file exists at the base but not at head.
    pub removed: Vec<String>,
    /// True when every variant builds (global input, unknown path, no usable base).
    pub all: bool,
    pub base: Option<String>,
    pub head: Option<String>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub changes: Vec<(Change, Class)>,
}

/// Known variants at both ends of the comparison.
pub struct Known {
    pub head: BTreeSet<String>,
    pub base: BTreeSet<String>,
}

impl Decision {
    /// Every variant at head builds, for `reason`.
    pub fn everything(reason: String, head_variants: &BTreeSet<String>) -> Decision {
        let mut warnings = Vec::new();
        let variants = buildable(head_variants, &mut warnings);
        Decision {
            build: !variants.is_empty(),
            test: true,
            variants,
            reason,
            all: true,
            warnings,
            ..Default::default()
        }
    }

    pub fn nothing(reason: String) -> Decision {
        Decision {
            reason,
            ..Default::default()
        }
    }
}

/// Classifies every changed path and decides. Pure: the diff and variant lists come from git.
pub fn decide(rules: &Rules, changes: Vec<Change>, known: &Known) -> Decision {
    let all_known: BTreeSet<String> = known.head.union(&known.base).cloned().collect();
    let classifier = rules.classifier(&all_known);
    let mut classified: Vec<(Change, Class)> = Vec::with_capacity(changes.len());
    for change in changes {
        let mut class = classifier.classify(&change.path);
        // A variant that cannot be a variant name is not built alone: fail closed.
        if let Class::Variants(names) = &class {
            if names.iter().any(|n| !domain::image::is_path_segment(n)) {
                class = Class::Unknown;
            }
        }
        classified.push((change, class));
    }
    let files = classified.len();

    let whole = classified.iter().find_map(|(change, class)| match class {
        Class::Global(pattern) => Some(format!(
            "{} is a global build input (rule `{pattern}`)",
            shown(&change.path)
        )),
        Class::Unknown if rules.variant_of(&change.path).is_some() => Some(format!(
            "{} is a variant file whose name is not a valid variant name: every variant builds",
            shown(&change.path)
        )),
        Class::Unknown => Some(format!(
            "{} is not named by any rule in {}: every variant builds",
            shown(&change.path),
            super::rules::FILE
        )),
        _ => None,
    });
    let mut decision = if let Some(first) = whole {
        let others = classified
            .iter()
            .filter(|(_, c)| matches!(c, Class::Global(_) | Class::Unknown))
            .count()
            - 1;
        let reason = match others {
            0 => first,
            n => format!(
                "{first} (and {n} more such path{})",
                domain::diag::plural(n)
            ),
        };
        Decision::everything(reason, &known.head)
    } else {
        let mut touched = BTreeSet::new();
        for (_, class) in &classified {
            if let Class::Variants(names) = class {
                touched.extend(names.iter().cloned());
            }
        }
        let mut warnings = Vec::new();
        let present: BTreeSet<String> = touched.intersection(&known.head).cloned().collect();
        let variants = buildable(&present, &mut warnings);
        let reason = if files == 0 {
            "no files changed".to_owned()
        } else if touched.is_empty() {
            format!(
                "only documentation changed ({files} path{})",
                domain::diag::plural(files)
            )
        } else if variants.is_empty() {
            "only removed variants changed".to_owned()
        } else {
            format!(
                "variant inputs changed: {}",
                variants
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Decision {
            build: !variants.is_empty(),
            variants,
            reason,
            files,
            warnings,
            ..Default::default()
        }
    };
    decision.files = files;
    decision.test = decision.build || files > 0;
    decision.removed = known.base.difference(&known.head).cloned().collect();
    decision.changes = classified;
    decision
}

/// Names that can go into the matrix; others are warned about and left out.
fn buildable(names: &BTreeSet<String>, warnings: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        if domain::image::is_path_segment(name) {
            out.push(name.clone());
        } else {
            warnings.push(format!(
                "variant file name {} is not a valid variant name and is not built (see docs/variants.md)",
                shown(name)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::parse(
            r#"{"global": ["patches/**", "build-rules.json"],
                "variants": {"file": "variants/{name}.json", "inputs": ["variants/{name}.json"]},
                "docs": ["docs/**", "**/*.md"]}"#,
        )
        .unwrap()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn known() -> Known {
        Known {
            head: set(&["compute", "gateway"]),
            base: set(&["compute", "gateway"]),
        }
    }

    fn changes(list: &[(char, &str)]) -> Vec<Change> {
        list.iter()
            .map(|(status, path)| Change {
                status: *status,
                path: path.to_string(),
            })
            .collect()
    }

    #[test]
    fn docs_only_builds_nothing() {
        let d = decide(
            &rules(),
            changes(&[('M', "docs/a.md"), ('A', "README.md")]),
            &known(),
        );
        assert!(!d.build && d.variants.is_empty() && !d.all);
        assert!(d.test, "docs are a test input");
        assert_eq!(d.reason, "only documentation changed (2 paths)");
        assert_eq!(d.files, 2);
    }

    #[test]
    fn one_variant_file_builds_that_variant() {
        let d = decide(
            &rules(),
            changes(&[('M', "variants/gateway.json"), ('M', "docs/x.md")]),
            &known(),
        );
        assert_eq!(d.variants, ["gateway"]);
        assert!(d.build && !d.all);
    }

    #[test]
    fn a_global_input_or_unknown_path_builds_everything_and_is_named() {
        let d = decide(
            &rules(),
            changes(&[('M', "docs/a.md"), ('M', "patches/1.patch")]),
            &known(),
        );
        assert!(d.all);
        assert_eq!(d.variants, ["compute", "gateway"]);
        assert_eq!(
            d.reason,
            "patches/1.patch is a global build input (rule `patches/**`)"
        );
        let d = decide(
            &rules(),
            changes(&[('A', "tools/x"), ('A', "tools/y")]),
            &known(),
        );
        assert!(d.all);
        assert_eq!(
            d.reason,
            "tools/x is not named by any rule in build-rules.json: every variant builds (and 1 more such path)"
        );
    }

    #[test]
    fn a_deleted_variant_is_removed_not_built() {
        let known = Known {
            head: set(&["compute"]),
            base: set(&["compute", "gateway"]),
        };
        let d = decide(&rules(), changes(&[('D', "variants/gateway.json")]), &known);
        assert!(!d.build);
        assert_eq!(d.removed, ["gateway"]);
        assert_eq!(d.reason, "only removed variants changed");
        let d = decide(
            &rules(),
            changes(&[('D', "variants/gateway.json"), ('M', "patches/a")]),
            &known,
        );
        assert_eq!(d.variants, ["compute"]);
        assert_eq!(d.removed, ["gateway"]);
    }

    #[test]
    fn no_changes_build_nothing() {
        let d = decide(&rules(), Vec::new(), &known());
        assert!(!d.build && !d.test);
        assert_eq!(d.reason, "no files changed");
    }

    #[test]
    fn names_that_cannot_be_variants_fail_closed() {
        let mut k = known();
        k.head.insert("Bad Name".into());
        let d = decide(&rules(), changes(&[('A', "variants/Bad Name.json")]), &k);
        assert!(d.all, "{d:?}");
        assert_eq!(d.variants, ["compute", "gateway"]);
        assert!(
            d.reason.contains("not a valid variant name"),
            "{}",
            d.reason
        );
        assert!(d.warnings[0].contains("Bad Name"), "{:?}", d.warnings);
    }
}
