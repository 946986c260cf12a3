//! Findings: problems in user-edited data, collected and reported together.
//!
//! A check never stops at its first problem: it collects every finding, and the caller reports
//! them at once, each naming the file, the field, the offending value and the fix.

use std::fmt;

#[derive(Debug, Clone)]
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
/// An error in how xtask was invoked: an option's value (or the environment variable standing
/// in for it) that cannot work, or a combination of options. xtask exits with status 2 for it,
/// as clap does for the errors it finds itself; any other failure exits with 1.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error: `return usage(format!(...))`.
pub fn usage<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(Usage(message.into()).into())
}

/// Whether `err` (or an error it wraps) is a [`Usage`] error.
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Usage>())
}

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

/// A commit id or hex digest shortened for people: its first 12 characters.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A full hexadecimal commit id (SHA-1 or SHA-256 object format).
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `""` or `"s"`, for "1 problem" / "2 problems".
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `did you mean `x`? ` when a candidate is a near miss of `word`, else nothing: the start of a fix.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates) {
        Some(near) if near != word => format!("did you mean `{near}`? "),
        _ => String::new(),
    }
}

/// The text after a UTF-8 byte order mark, if it starts with one (readers that do not report it).
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses a user-edited JSON file into a value, with findings that point where the problem
/// is: a UTF-8 byte order mark is named as one (and the rest of the file is still read), and a
/// trailing comma is reported at the comma, not at the bracket after it.
pub fn parse_json(file: &str, text: &str) -> (Option<serde_json::Value>, Vec<Finding>) {
    let mut findings = Vec::new();
    let body = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            findings.push(
                Finding::new(file, "", "starts with a UTF-8 byte order mark (BOM), which JSON does not allow")
                    .fix(format!("save the file as UTF-8 without a BOM, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' {file}`")),
            );
            rest
        }
        None => text,
    };
    match serde_json::from_str::<Strict>(body) {
        Ok(Strict(value)) => (Some(value), findings),
        Err(err) => {
            findings.push(json_syntax_finding(file, body, &err));
            (None, findings)
        }
    }
}

/// A JSON value whose objects name each key once: serde_json's `Value` keeps the last of a
/// repeated key silently, so a second `"extensions"` in a variant would replace the first.
struct Strict(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "`{key}` is named twice (JSON keeps only the last)"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

fn json_syntax_finding(file: &str, text: &str, err: &serde_json::Error) -> Finding {
    let (mut line, mut column) = (err.line(), err.column());
    let message = err.to_string();
    let mut what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what)
        .to_owned();
    if what == "trailing comma" {
        if let Some((l, c)) = comma_before(text, line, column) {
            (line, column) = (l, c);
            what = "trailing comma: JSON allows no comma before a closing `]` or `}`".to_owned();
        }
    }
    let twice = what.ends_with("(JSON keeps only the last)");
    let head = if twice { "JSON" } else { "malformed JSON" };
    Finding::new(
        file,
        "",
        format!("{head} at line {line} column {column}: {what}"),
    )
    .fix(if what.starts_with("trailing comma") {
        "remove that comma".to_owned()
    } else if twice {
        "keep one of them, with everything it should hold".to_owned()
    } else {
        "correct the JSON syntax at that position".to_owned()
    })
}

/// The 1-based line and column of the last `,` before (line, column), skipping whitespace.
fn comma_before(text: &str, line: usize, column: usize) -> Option<(usize, usize)> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let end = (line_start + column.saturating_sub(1)).min(text.len());
    let at = text[..end].trim_end().strip_suffix(',')?.len();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    Some((line, column))
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
    // the nearest close enough, the first in byte order among equally near ones
    let mut best: Option<(usize, &str)> = None;
    for &c in candidates {
        let d = distance(word, c);
        if d <= (c.len() / 2).max(2) && best.is_none_or(|b| (d, c) < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_known_under_any_context() {
        use anyhow::Context as _;
        let err = usage::<()>("--x: bad")
            .context("reading")
            .context("building")
            .unwrap_err();
        assert!(is_usage(&err));
        assert_eq!(format!("{err:#}"), "building: reading: --x: bad");
        assert!(!is_usage(&anyhow::anyhow!("--x: bad")));
    }

    #[test]
    fn closest_suggests_near_misses_only() {
        let keys = ["extensions", "firmware", "repository"];
        assert_eq!(closest("extension", &keys), Some("extensions"));
        assert_eq!(closest("systemExtension", &keys), None);
        assert_eq!(closest("repo", &keys), None);
        assert_eq!(closest("repositry", &keys), Some("repository"));
    }

    #[test]
    fn a_trailing_comma_is_reported_where_it_is() {
        let (value, findings) = parse_json("v.json", "{\n  \"a\": [1, 2],\n  \"b\": 3,\n}\n");
        assert!(value.is_none());
        let shown = findings[0].to_string();
        assert!(
            shown.contains("malformed JSON at line 3 column 9: trailing comma"),
            "{shown}"
        );
        assert!(shown.contains("fix: remove that comma"), "{shown}");
        let (_, findings) = parse_json("v.json", "[1,\n\n   ]");
        assert!(
            findings[0].to_string().contains("line 1 column 3"),
            "{}",
            findings[0]
        );
    }

    #[test]
    fn a_key_named_twice_is_refused_where_it_is_at_any_depth() {
        // a JSON value would keep the last: the second `extensions` would replace the first
        for text in [
            "{\"extensions\": [\"drbd\", \"zfs\"],\n \"extensions\": [\"drbd\"]}",
            "{\"config\": {\"tailscale\": {\"mode\": \"kernel\",\n \"mode\": \"userspace\"}}}",
        ] {
            let (value, findings) = parse_json("v.json", text);
            assert!(value.is_none(), "{text}");
            let shown = findings[0].to_string();
            assert!(shown.contains("v.json: JSON at line 2 column "), "{shown}");
            assert!(
                shown.contains("is named twice (JSON keeps only the last)"),
                "{shown}"
            );
            assert!(shown.contains("fix: keep one of them"), "{shown}");
        }
        let (value, _) = parse_json("v.json", "{\"a\": [1, {\"b\": null}], \"c\": -2.5}");
        assert_eq!(
            value,
            Some(serde_json::json!({"a": [1, {"b": null}], "c": -2.5}))
        );
    }

    #[test]
    fn a_bom_is_named_and_the_rest_is_still_read() {
        let (value, findings) = parse_json("v.json", "\u{feff}{\"a\": 1}");
        assert_eq!(value, Some(serde_json::json!({"a": 1})));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].problem.contains("byte order mark (BOM)"),
            "{}",
            findings[0]
        );
        let (value, findings) = parse_json("v.json", "\u{feff}{\"a\": }");
        assert!(value.is_none());
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(
            findings[1].problem.contains("line 1 column 7"),
            "{}",
            findings[1]
        );
    }

    #[test]
    fn did_you_mean_names_a_near_miss_only() {
        assert_eq!(
            did_you_mean("drdb", &["drbd", "zfs"]),
            "did you mean `drbd`? "
        );
        assert_eq!(did_you_mean("nvidia", &["drbd", "zfs"]), "");
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
