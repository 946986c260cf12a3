//! YAML the way Go's yaml.v3 writes it, the one emission rule for every document we hand to
//! Talos or the Image Factory: imager profiles and machine-config patches (indent 2, as talosctl's
//! patches) and factory schematics (indent 4, yaml.v3's default, since the schematic ID is the
//! sha256 of exactly these bytes). Talos and the factory read and write YAML with yaml.v3, so a
//! document we emit reads back as the same values there, byte-exact where that matters.
//!
//! The rule, from yaml.v3's encoder and its libyaml emitter: block style; a map inside a
//! sequence item starts on the dash line and is indented past the `- ` (everything else aligns to
//! the next multiple of the indent); a string is plain when it reads back as the same string,
//! double-quoted when a plain scalar would resolve to another type (null, bool, number, the
//! YAML 1.1 booleans and sexagesimals, a timestamp) or holds a control character, single-quoted
//! when only YAML syntax is in the way; a string with line breaks is a literal block when libyaml
//! allows one. Values come from typed structs through serde, so only JSON shapes occur (numbers
//! are integers: Go's float formatting is not modelled).

use serde_json::{Map, Value};

/// `value` as a YAML document ending in a newline, nested blocks indented by `indent`.
pub fn to_string(value: &Value, indent: usize) -> String {
    let mut emitter = Emitter {
        best: indent,
        out: String::new(),
    };
    match value {
        Value::Object(map) if !map.is_empty() => emitter.map(map, 0, false),
        Value::Array(items) if !items.is_empty() => emitter.seq(items, 0, false),
        scalar => emitter.scalar(scalar, indent),
    }
    emitter.out
}

struct Emitter {
    /// yaml.v3's `best_indent`.
    best: usize,
    out: String,
}

impl Emitter {
    /// Where a map value's block goes: the next multiple of the indent past its key's column.
    fn below(&self, column: usize) -> usize {
        self.best * ((column + self.best) / self.best)
    }

    fn pad(&mut self, column: usize) {
        self.out.extend(std::iter::repeat_n(' ', column));
    }

    /// `inline_first`: the cursor already stands after `- ` on the line of the first entry.
    fn map(&mut self, map: &Map<String, Value>, column: usize, inline_first: bool) {
        for (i, (key, value)) in map.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad(column);
            }
            self.out.push_str(&scalar(key));
            self.out.push(':');
            self.value(value, self.below(column), false);
        }
    }

    fn seq(&mut self, items: &[Value], column: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad(column);
            }
            self.out.push('-');
            // the first indent inside a sequence item just skips the `- `
            self.value(item, column + 2, true);
        }
    }

    /// A value after `key:` or `-`; `column` is where its block goes.
    fn value(&mut self, value: &Value, column: usize, in_seq: bool) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                self.out.push(if in_seq { ' ' } else { '\n' });
                self.map(map, column, in_seq);
            }
            Value::Array(items) if !items.is_empty() => {
                self.out.push(if in_seq { ' ' } else { '\n' });
                self.seq(items, column, in_seq);
            }
            scalar => {
                self.out.push(' ');
                self.scalar(scalar, column);
            }
        }
    }

    fn scalar(&mut self, value: &Value, column: usize) {
        match value {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.out.push_str(&n.to_string()),
            Value::String(s) => self.out.push_str(&block_or_scalar(s, column, self.best)),
            Value::Array(_) => self.out.push_str("[]"),
            Value::Object(_) => self.out.push_str("{}"),
        }
        self.out.push('\n');
    }
}

/// A string with line breaks as a literal block (`|-`, `|` or `|+` after its trailing breaks,
/// an indentation hint when it starts with a space or a break, lines indented to `column`) when
/// libyaml allows a block for it; anything else as [`scalar`] writes it.
fn block_or_scalar(s: &str, column: usize, best: usize) -> String {
    let printable = s.chars().all(|c| c == '\n' || !c.is_control());
    let block_allowed = printable && !s.contains(" \n") && !s.ends_with(' ');
    if !s.contains('\n') || !block_allowed {
        return scalar(s);
    }
    let mut out = String::from("|");
    if s.starts_with([' ', '\n']) {
        out.push_str(&best.to_string());
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    match trailing {
        0 => out.push('-'),
        1 if s.len() > 1 => {}
        _ => out.push('+'),
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', column));
            out.push_str(line);
        }
    }
    out
}

/// A string on one line: plain when it reads back as the same string, double-quoted when a plain
/// scalar would resolve to another type or it holds a control character, single-quoted when
/// only YAML syntax is in the way (a map key is always written this way).
fn scalar(s: &str) -> String {
    if s.chars().any(char::is_control) || resolves_to_non_string(s) {
        return serde_json::to_string(s).expect("strings serialize");
    }
    if plain_allowed(s) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", "<<", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN",
    ];
    WORDS.contains(&s) || is_number(s) || is_base60(s) || is_timestamp(s)
}

fn is_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.chars().all(|c| c == '_' || c.is_digit(radix)) && !t.starts_with('_')
    };
    let prefixed = |p: &str, radix| {
        unsigned
            .strip_prefix(p)
            .or_else(|| unsigned.strip_prefix(&p.to_uppercase()))
            .is_some_and(|t| digits(t, radix))
    };
    if digits(unsigned, 10) || prefixed("0x", 16) || prefixed("0o", 8) || prefixed("0b", 2) {
        return true;
    }
    // [0-9]+(\.[0-9]*)? or \.[0-9]+, then an optional exponent
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() && all_digits(int) && all_digits(frac))
                || (int.is_empty() && !frac.is_empty() && all_digits(frac))
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// YAML 1.1 sexagesimal numbers (`1:20`), which yaml.v3 quotes for old readers.
fn is_base60(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = unsigned.split(':');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && !first.is_empty()
        && first.chars().all(|c| c.is_ascii_digit() || c == '_')
        && rest.iter().enumerate().all(|(i, p)| {
            let p = if i == rest.len() - 1 {
                p.split('.').next().unwrap_or_default()
            } else {
                p
            };
            (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit())
        })
}

/// The timestamps yaml.v3 resolves a plain scalar to (`2006-1-2`, with a time after `T`, `t` or
/// a space); the ranges of month, day and hour are not checked.
fn is_timestamp(s: &str) -> bool {
    // [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}, then nothing, or a time after `T`/`t` with a zone, or a
    // time after a space: yaml.v3's pattern, matched by hand so that this crate needs no regex
    // engine (docs/dev/benchmarks.md, session 9)
    let date = digits(s, 4, 4)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| digits(r, 1, 2))
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| digits(r, 1, 2));
    let Some(rest) = date else { return false };
    let zone = |r: &str| {
        r == "Z"
            || r.strip_prefix(['+', '-'])
                .and_then(|r| digits(r, 2, 2))
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|r| digits(r, 2, 2))
                .is_some_and(str::is_empty)
    };
    if let Some(r) = rest.strip_prefix(['T', 't']) {
        return time(r).is_some_and(zone);
    }
    rest.is_empty()
        || rest
            .strip_prefix(' ')
            .and_then(time)
            .is_some_and(str::is_empty)
}

/// `s` without a leading `[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?`, if it has one.
fn time(s: &str) -> Option<&str> {
    let r = digits(s, 1, 2)?.strip_prefix(':')?;
    let r = digits(r, 1, 2)?.strip_prefix(':')?;
    let r = digits(r, 1, 2)?;
    match r.strip_prefix('.') {
        Some(fraction) => digits(fraction, 1, usize::MAX),
        None => Some(r),
    }
}

/// `s` without its first `min..=max` ASCII digits (as many as there are, up to `max`), if it
/// starts with at least `min`.
fn digits(s: &str, min: usize, max: usize) -> Option<&str> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    (n >= min).then(|| &s[n..])
}

/// libyaml's test for a plain scalar in block context.
fn plain_allowed(s: &str) -> bool {
    let bytes = s.as_bytes();
    let blank_after = |i: usize| bytes.get(i + 1).is_none_or(|b| *b == b' ' || *b == b'\t');
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.contains('\t') {
        return false;
    }
    for (i, &b) in bytes.iter().enumerate() {
        let indicator = if i == 0 {
            match b {
                b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                | b'\'' | b'"' | b'%' | b'@' | b'`' => true,
                b'?' | b':' | b'-' => blank_after(i),
                _ => false,
            }
        } else {
            match b {
                b':' => blank_after(i),
                b'#' => bytes[i - 1] == b' ',
                _ => false,
            }
        };
        if indicator {
            return false;
        }
    }
    true
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
            to_string(&doc, 2),
            "arch: arm64\ninput:\n  systemExtensions:\n    - imageRef: ghcr.io/x/y:1@sha256:ab\n    - imageRef: z\n\
             output:\n  kind: image\n  imageOptions:\n    diskSize: 1306525696\nempty: {}\nlist:\n  - a\n  - b\n"
        );
    }

    #[test]
    fn maps_inside_sequences_of_sequences_keep_alignment() {
        let doc = json!({"machine": {"kernel": {"modules": [{"name": "drbd", "parameters": ["usermode_helper=disabled"]}]}}});
        assert_eq!(
            to_string(&doc, 2),
            "machine:\n  kernel:\n    modules:\n      - name: drbd\n        parameters:\n          - usermode_helper=disabled\n"
        );
    }

    #[test]
    fn indent_four_aligns_past_the_dash_then_to_multiples() {
        let doc = json!({"c": {"meta": [{"key": 10, "value": "foo", "list": ["x"]}], "e": {}}});
        assert_eq!(
            to_string(&doc, 4),
            "c:\n    meta:\n        - key: 10\n          value: foo\n          list:\n            - x\n    e: {}\n"
        );
        assert_eq!(to_string(&json!({}), 4), "{}\n");
        assert_eq!(
            to_string(&json!([["a", "b"], "c"]), 2),
            "- - a\n  - b\n- c\n"
        );
    }

    #[test]
    fn scalars_are_quoted_as_yaml_v3_quotes_them() {
        for (s, want) in [
            ("siderolabs/drbd", "siderolabs/drbd"),
            ("console=ttyS0,115200", "console=ttyS0,115200"),
            ("v1.13.99", "v1.13.99"),
            ("100.64.0.0/10", "100.64.0.0/10"),
            ("-x", "-x"),
            ("a:b", "a:b"),
            ("1.2.3", "1.2.3"),
            ("it's", "it's"),
            ("", "\"\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("no", "\"no\""),
            ("off", "\"off\""),
            ("~", "\"~\""),
            ("12", "\"12\""),
            ("1.10", "\"1.10\""),
            ("-1.5e3", "\"-1.5e3\""),
            (".5", "\".5\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("2024-1-2T03:04:05Z", "\"2024-1-2T03:04:05Z\""),
            ("2024-01-02x", "2024-01-02x"),
            ("line\nbreak", "\"line\\nbreak\""),
            ("tab\there", "\"tab\\there\""),
            ("{}", "'{}'"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("#x", "'#x'"),
            ("*x", "'*x'"),
            ("*.raw", "'*.raw'"),
            ("!100.64.0.0/10", "'!100.64.0.0/10'"),
            ("'q'", "'''q'''"),
            (" lead", "' lead'"),
            ("---", "'---'"),
        ] {
            assert_eq!(scalar(s), want, "{s:?}");
        }
    }

    #[test]
    fn timestamps_are_matched_as_yaml_v3_s_pattern_matches_them() {
        // the pattern the matcher stands for, judged on valid timestamps and on every string one
        // edit away from them (a character dropped, doubled, or replaced by one that matters)
        const DATE: &str = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}";
        const TIME: &str = r"[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?";
        let pattern = format!(r"^{DATE}(|[Tt]{TIME}(Z|[+-][0-9]{{2}}:[0-9]{{2}})| {TIME})$");
        let regex = regex_lite::Regex::new(&pattern).unwrap();
        let seeds = [
            "2024-01-02",
            "2024-1-2",
            "2024-1-2T3:4:5Z",
            "2024-01-02t03:04:05.123+01:00",
            "2024-01-02T03:04:05-11:30",
            "2024-01-02 03:04:05",
            "2024-01-02 3:4:5.5",
        ];
        let (mut cases, mut matched) = (0, 0);
        for seed in seeds {
            let chars: Vec<char> = seed.chars().collect();
            let mut variants = vec![seed.to_string()];
            for i in 0..=chars.len() {
                let (head, tail) = (&chars[..i], &chars[i..]);
                let word =
                    |middle: &[char]| head.iter().chain(middle).chain(tail).collect::<String>();
                for c in "09-:.TtZ+ x".chars() {
                    variants.push(word(&[c]));
                }
                if let Some((&c, rest)) = tail.split_first() {
                    variants.push(head.iter().chain(rest).collect());
                    for r in "09-:.TtZ+ x".chars().filter(|r| *r != c) {
                        variants.push(head.iter().chain([&r]).chain(rest).collect());
                    }
                }
            }
            for v in variants {
                cases += 1;
                matched += usize::from(regex.is_match(&v));
                assert_eq!(is_timestamp(&v), regex.is_match(&v), "{v:?}");
            }
        }
        assert!(
            cases > 1000 && matched > 100 && cases - matched > 500,
            "{cases} cases, {matched} timestamps"
        );
    }

    #[test]
    fn literal_blocks_follow_libyaml() {
        assert_eq!(block_or_scalar("a\nb", 4, 4), "|-\n    a\n    b");
        assert_eq!(block_or_scalar("a\n", 4, 4), "|\n    a");
        assert_eq!(block_or_scalar("a\n\n", 4, 4), "|+\n    a\n");
        assert_eq!(block_or_scalar("a\n\nb", 4, 4), "|-\n    a\n\n    b");
        assert_eq!(block_or_scalar(" a\nb", 4, 4), "|4-\n     a\n    b");
        assert_eq!(block_or_scalar(" a\nb", 2, 2), "|2-\n   a\n  b");
        assert_eq!(
            block_or_scalar("a \nb", 4, 4),
            "\"a \\nb\"",
            "a space before a break is never a block"
        );
        assert_eq!(block_or_scalar("plain", 4, 4), "plain");
        assert_eq!(
            to_string(&json!({"m": {"k": "x\ny"}, "s": ["p\nq"]}), 2),
            "m:\n  k: |-\n    x\n    y\ns:\n  - |-\n    p\n    q\n"
        );
    }
}
