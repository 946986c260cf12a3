//! Findings: problems in user-edited data, collected and reported together.
//!
//! A check never stops at its first problem: it collects every finding, and the caller reports
//! them at once, each naming the file, the field, the offending value and the fix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// File the problem is in, relative to the repository root.
    pub file: String,
    /// JSON path of the field (`extensions[2]`), or empty for the whole file.
    pub field: String,
    /// The offending value as written, if there is one.
    pub value: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    pub fn new(
        file: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Finding {
        Finding {
            file: file.into(),
            field: field.into(),
            value: None,
            problem: problem.into(),
            fix: String::new(),
        }
    }

    pub fn value(mut self, value: impl fmt::Display) -> Finding {
        self.value = Some(value.to_string());
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n    fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Turns collected findings into one error listing all of them, or `Ok` when there are none.
pub fn into_result(what: &str, findings: Vec<Finding>) -> anyhow::Result<()> {
    if findings.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{what}: {} problem{}",
        findings.len(),
        plural(findings.len())
    );
    for finding in &findings {
        message.push_str("\n  ");
        message.push_str(&finding.to_string().replace('\n', "\n  "));
    }
    Err(anyhow::anyhow!(message))
}

/// `""` or `"s"`, for "1 problem" / "2 problems".
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Edit distance, for "did you mean" hints on misspelt keys and names.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = if ca == *cb {
                    prev
                } else {
                    1 + prev.min(row[j]).min(cur)
                };
                prev = cur;
            }
        }
        row[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 2).max(2))
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_near_misses_only() {
        let keys = ["extensions", "firmware", "repository"];
        assert_eq!(closest("extension", &keys), Some("extensions"));
        assert_eq!(closest("systemExtension", &keys), None);
        assert_eq!(closest("repo", &keys), None);
        assert_eq!(closest("repositry", &keys), Some("repository"));
    }

    #[test]
    fn all_findings_are_reported_together() {
        let err = into_result(
            "variants",
            vec![
                Finding::new("variants/a.json", "arch", "unknown architecture")
                    .value("\"x86\"")
                    .fix("use arm64"),
                Finding::new("variants/b.json", "", "malformed JSON"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("variants: 2 problems"), "{err}");
        assert!(err.contains("variants/a.json: field `arch` = \"x86\": unknown architecture\n      fix: use arm64"), "{err}");
        assert!(err.contains("variants/b.json: malformed JSON"), "{err}");
    }
}
