//! Rendering a decision for people (text), machines (JSON) and GitHub Actions (outputs, summary).
//!
//! File names are untrusted text: they are never written raw. People see them quoted when they
//! hold control characters; GitHub outputs hold no file names at all; the job summary escapes
//! Markdown.

use std::fmt::Write as _;

use domain::diag::short;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::decision::Decision;
use super::rules::Class;

/// A path or name as printed: as is when it is plain printable text, else a quoted Rust string
/// literal with escapes, so a newline in a file name can never start a new output line.
pub fn shown(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| !c.is_control() && !matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}'))
        && !s.is_empty();
    if plain && s.escape_debug().to_string() == s {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

/// How many changed paths the text format lists before it summarises the rest.
const LISTED: usize = 20;

pub fn text(d: &Decision) -> String {
    let mut out = String::new();
    let what = if d.variants.is_empty() {
        "nothing".to_owned()
    } else {
        d.variants.join(", ")
    };
    let _ = writeln!(
        out,
        "build: {what}{}",
        if d.all && d.build {
            " (every variant)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "reason: {}", d.reason);
    if !d.removed.is_empty() {
        let _ = writeln!(out, "removed: {} (no longer built)", d.removed.join(", "));
    }
    if let (Some(base), Some(head)) = (&d.base, &d.head) {
        let _ = writeln!(
            out,
            "compared: {}..{}, {} changed path{}",
            short(base),
            short(head),
            d.files,
            domain::diag::plural(d.files)
        );
    }
    // What decided the build first: unknown, global, variant inputs, then docs.
    let rank = |class: &Class| match class {
        Class::Unknown => 0,
        Class::Global(_) => 1,
        Class::Variants(_) => 2,
        Class::Docs => 3,
    };
    let mut listed: Vec<_> = d.changes.iter().collect();
    listed.sort_by_key(|(_, class)| rank(class));
    for (change, class) in listed.into_iter().take(LISTED) {
        let class = match class {
            Class::Global(pattern) => format!("global ({pattern})"),
            Class::Variants(names) => {
                format!(
                    "variant {}",
                    names
                        .iter()
                        .map(|n| shown(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Class::Docs => "docs".to_owned(),
            Class::Unknown => "unknown".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {} {:<50} {class}",
            change.status,
            shown(&change.path)
        );
    }
    if d.changes.len() > LISTED {
        let _ = writeln!(out, "  ... and {} more", d.changes.len() - LISTED);
    }
    out
}

pub fn json(d: &Decision) -> String {
    serde_json::to_string_pretty(d).expect("a decision serializes") + "\n"
}

/// The `strategy.matrix` object: one job per variant.
pub fn matrix(d: &Decision) -> serde_json::Value {
    json!({ "variant": d.variants })
}

/// Lines appended to `$GITHUB_OUTPUT`: `build`, `test`, `variants`, `matrix`, each as a heredoc with
/// `delimiter`. Only booleans and JSON built from variant names, never file names.
pub fn github_outputs(d: &Decision, delimiter: &str) -> String {
    let values = [
        ("build", d.build.to_string()),
        ("test", d.test.to_string()),
        (
            "variants",
            serde_json::to_string(&d.variants).expect("names serialize"),
        ),
        ("matrix", matrix(d).to_string()),
    ];
    let mut out = String::new();
    for (key, value) in values {
        assert!(
            !value.contains(delimiter),
            "the delimiter is chosen not to occur in values"
        );
        let _ = write!(out, "{key}<<{delimiter}\n{value}\n{delimiter}\n");
    }
    out
}

/// The values written to `$GITHUB_OUTPUT`, for choosing a delimiter that occurs in none.
pub fn output_values(d: &Decision) -> String {
    github_outputs(d, "\0")
}

/// A short Markdown table for `$GITHUB_STEP_SUMMARY`.
pub fn summary(d: &Decision) -> String {
    let mut out = String::from("### Images to build\n\n");
    if d.variants.is_empty() && d.removed.is_empty() {
        out.push_str("Nothing to build.\n\n");
    } else {
        out.push_str("| variant | action |\n| --- | --- |\n");
        for v in &d.variants {
            let _ = writeln!(out, "| {} | build |", markdown(v));
        }
        for v in &d.removed {
            let _ = writeln!(out, "| {} | removed: not built |", markdown(v));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Reason: {}\n", markdown(&d.reason));
    if let (Some(base), Some(head)) = (&d.base, &d.head) {
        let _ = writeln!(
            out,
            "Compared {}..{}: {} changed path{}.\n",
            short(base),
            short(head),
            d.files,
            domain::diag::plural(d.files)
        );
    }
    for w in &d.warnings {
        let _ = writeln!(out, "> **Warning:** {}\n", markdown(w));
    }
    out
}

/// A `::warning::` workflow command; its data is escaped the way the runner unescapes it.
pub fn github_warning(message: &str) -> String {
    format!("::warning::{}", infra::github::escape_annotation(message))
}

/// Text inside Markdown: every ASCII punctuation character escaped, on one line.
fn markdown(s: &str) -> String {
    let mut out = String::new();
    for c in shown_inline(s).chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reasons already quote their paths; make sure nothing breaks a line anyway.
fn shown_inline(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A heredoc delimiter nobody can predict: 128 bits from the OS, hashed with time and pid as a
/// fallback when /dev/urandom cannot be read.
pub fn random_delimiter(avoid: &str) -> String {
    loop {
        let mut seed = [0u8; 32];
        let from_os = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
            .is_ok();
        let mut hasher = Sha256::new();
        hasher.update(seed);
        if !from_os {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            hasher.update(now.as_nanos().to_le_bytes());
            hasher.update(std::process::id().to_le_bytes());
            hasher.update((&seed as *const _ as usize).to_le_bytes());
        }
        let hex = domain::image::hex(&hasher.finalize()[..16]);
        let delimiter = format!("ghadelimiter_{hex}");
        if !avoid.contains(&delimiter) {
            return delimiter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        let mut d = Decision::everything(
            format!("{} is not named by any rule", shown("a\nb|`x`")),
            &["compute".to_string(), "gateway".to_string()].into(),
        );
        d.removed = vec!["old".into()];
        d
    }

    #[test]
    fn plain_names_are_shown_as_is_and_others_quoted() {
        assert_eq!(shown("docs/a b.md"), "docs/a b.md");
        assert_eq!(shown("docs/ünï.md"), "docs/ünï.md");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert_eq!(shown("a\u{2028}b"), "\"a\\u{2028}b\"");
        assert_eq!(shown("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(shown(""), "\"\"");
    }

    #[test]
    fn github_outputs_are_heredocs_with_json_values() {
        let out = github_outputs(&decision(), "ghadelimiter_x");
        assert_eq!(
            out,
            "build<<ghadelimiter_x\ntrue\nghadelimiter_x\n\
             test<<ghadelimiter_x\ntrue\nghadelimiter_x\n\
             variants<<ghadelimiter_x\n[\"compute\",\"gateway\"]\nghadelimiter_x\n\
             matrix<<ghadelimiter_x\n{\"variant\":[\"compute\",\"gateway\"]}\nghadelimiter_x\n"
        );
    }

    #[test]
    fn delimiters_are_random_and_avoid_the_values() {
        let a = random_delimiter("");
        let b = random_delimiter("");
        assert_ne!(a, b);
        assert!(a.starts_with("ghadelimiter_") && a.len() == 13 + 32, "{a}");
    }

    #[test]
    fn the_summary_escapes_markdown_and_lists_removed_variants() {
        let s = summary(&decision());
        assert!(s.contains("| compute | build |"), "{s}");
        assert!(s.contains("| old | removed: not built |"), "{s}");
        assert!(
            s.contains("Reason: \\\"a\\\\nb\\|\\`x\\`\\\" is not named by any rule"),
            "{s}"
        );
        assert_eq!(s.lines().filter(|l| l.starts_with("Reason")).count(), 1);
    }

    #[test]
    fn warnings_cannot_inject_workflow_commands() {
        assert_eq!(
            github_warning("a\n::error::b%"),
            "::warning::a%0A::error::b%25"
        );
    }

    #[test]
    fn text_lists_what_decided_the_build_first() {
        let mut d = decision();
        let change = |path: &str| super::super::decision::Change {
            status: 'M',
            path: path.into(),
        };
        d.changes = (0..30)
            .map(|i| (change(&format!("docs/{i}.md")), Class::Docs))
            .chain([(change("hack/x"), Class::Unknown)])
            .collect();
        let t = text(&d);
        let first = t.lines().find(|l| l.starts_with("  M")).unwrap();
        assert!(
            first.contains("hack/x") && first.ends_with("unknown"),
            "{t}"
        );
        assert!(t.contains("  ... and 11 more"), "{t}");
    }

    #[test]
    fn text_quotes_odd_paths() {
        let mut d = decision();
        d.changes = vec![(
            super::super::decision::Change {
                status: 'A',
                path: "x\n::error::y".into(),
            },
            Class::Unknown,
        )];
        let t = text(&d);
        assert!(t.lines().all(|l| !l.starts_with("::")), "{t}");
        assert!(t.contains("\"x\\n::error::y\""), "{t}");
    }
}
