//! A small YAML emitter for the documents we hand to Talos (imager profiles, machine-config
//! patches): block style, two-space indent, strings quoted whenever a YAML reader could take them
//! for something else. Values come from typed structs through serde, so only JSON shapes occur.

use serde_json::Value;

/// Serializes `value` (an object) as a YAML document ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar_string(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key goes on the dash line, the rest align under it.
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            _ => write_value(out, item, indent),
        }
    }
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted.
fn scalar_string(s: &str) -> String {
    if needs_quotes(s) {
        serde_json::to_string(s).expect("strings serialize")
    } else {
        s.to_owned()
    }
}

fn needs_quotes(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "yes",
        "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
    ];
    let Some(first) = s.chars().next() else {
        return true;
    };
    RESERVED.contains(&s)
        || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || first.is_whitespace()
        || s.ends_with(char::is_whitespace)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_sequences() {
        let doc = json!({
            "arch": "arm64",
            "input": {"systemExtensions": [{"imageRef": "ghcr.io/x/y:1@sha256:ab"}, {"imageRef": "z"}]},
            "output": {"kind": "image", "imageOptions": {"diskSize": 1306525696}},
            "empty": {},
            "list": ["a", "b"],
        });
        assert_eq!(
            to_string(&doc),
            "arch: arm64\ninput:\n  systemExtensions:\n    - imageRef: ghcr.io/x/y:1@sha256:ab\n    - imageRef: z\n\
             output:\n  kind: image\n  imageOptions:\n    diskSize: 1306525696\nempty: {}\nlist:\n  - a\n  - b\n"
        );
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for (s, want) in [
            ("true", "\"true\""),
            ("no", "\"no\""),
            ("1.10", "\"1.10\""),
            ("", "\"\""),
            ("- x", "\"- x\""),
            ("a: b", "\"a: b\""),
            ("*.raw", "\"*.raw\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("v1.13.99", "v1.13.99"),
            ("console=ttyAMA0", "console=ttyAMA0"),
            ("100.64.0.0/10", "100.64.0.0/10"),
            ("!100.64.0.0/10", "\"!100.64.0.0/10\""),
        ] {
            assert_eq!(scalar_string(s), want, "{s:?}");
        }
    }

    #[test]
    fn maps_inside_sequences_of_sequences_keep_alignment() {
        let doc = json!({"machine": {"kernel": {"modules": [{"name": "drbd", "parameters": ["usermode_helper=disabled"]}]}}});
        assert_eq!(
            to_string(&doc),
            "machine:\n  kernel:\n    modules:\n      - name: drbd\n        parameters:\n          - usermode_helper=disabled\n"
        );
    }
}
