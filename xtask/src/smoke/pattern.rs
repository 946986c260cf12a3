//! A small regular-expression matcher for console lines (`--expect`), so that xtask needs no
//! regex crate for one pattern per boot.
//!
//! Supported: literals, `.`, classes (`[abc]`, `[^a-z]`), escapes (`\d \w \s`, their negations,
//! and `\` before any punctuation for the literal character), the greedy quantifiers `* + ?`,
//! the anchors `^ $`, and `|` between whole alternatives. Groups and counted repetition are
//! rejected when the pattern is parsed, never misread. A pattern matches a line when it matches
//! anywhere in it (unless anchored).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    alternatives: Vec<Sequence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sequence {
    anchored_start: bool,
    anchored_end: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    atom: Atom,
    min: usize,
    max: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(x) => *x == c,
            Atom::Any => true,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub position: usize,
    pub problem: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern `{}` at character {}: {}",
            self.pattern,
            self.position + 1,
            self.problem
        )
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = source.chars().collect();
        let error = |position: usize, problem: &str| PatternError {
            pattern: source.to_owned(),
            position,
            problem: problem.to_owned(),
        };
        let mut alternatives = Vec::new();
        let mut current = Sequence {
            anchored_start: false,
            anchored_end: false,
            items: Vec::new(),
        };
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let atom = match c {
                '|' => {
                    alternatives.push(std::mem::replace(
                        &mut current,
                        Sequence {
                            anchored_start: false,
                            anchored_end: false,
                            items: Vec::new(),
                        },
                    ));
                    i += 1;
                    continue;
                }
                '^' if current.items.is_empty() && !current.anchored_start => {
                    current.anchored_start = true;
                    i += 1;
                    continue;
                }
                '$' if i + 1 == chars.len() || chars[i + 1] == '|' => {
                    current.anchored_end = true;
                    i += 1;
                    continue;
                }
                '(' | ')' | '{' | '}' => {
                    return Err(error(
                        i,
                        &format!("`{c}`: groups and counted repetition are not supported; write `\\{c}` to match it literally"),
                    ))
                }
                '*' | '+' | '?' => {
                    return Err(error(i, &format!("`{c}` has nothing to repeat; write `\\{c}` to match it literally")))
                }
                '^' | '$' => {
                    return Err(error(i, &format!("`{c}` is only an anchor at the start or end; write `\\{c}` to match it literally")))
                }
                '.' => {
                    i += 1;
                    Atom::Any
                }
                '\\' => {
                    let Some(&next) = chars.get(i + 1) else {
                        return Err(error(i, "trailing `\\`"));
                    };
                    i += 2;
                    escape(next).ok_or_else(|| {
                        error(i - 2, &format!("unknown escape `\\{next}`; only \\d \\w \\s, their negations and escaped punctuation are supported"))
                    })?
                }
                '[' => {
                    let (atom, end) = class(&chars, i).map_err(|(at, problem)| error(at, &problem))?;
                    i = end;
                    atom
                }
                _ => {
                    i += 1;
                    Atom::Char(c)
                }
            };
            let (min, max) = match chars.get(i) {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                _ => (1, Some(1)),
            };
            if max != Some(1) || min != 1 {
                i += 1;
            }
            current.items.push(Item { atom, min, max });
        }
        alternatives.push(current);
        Ok(Pattern {
            source: source.to_owned(),
            alternatives,
        })
    }

    pub fn is_match(&self, line: &str) -> bool {
        let chars: Vec<char> = line.chars().collect();
        self.alternatives.iter().any(|seq| {
            let starts = if seq.anchored_start {
                0..=0
            } else {
                0..=chars.len()
            };
            starts
                .into_iter()
                .any(|start| match_here(&seq.items, &chars[start..], seq.anchored_end))
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn escape(c: char) -> Option<Atom> {
    let class = |negated, ranges: &[(char, char)]| Atom::Class {
        negated,
        ranges: ranges.to_vec(),
    };
    Some(match c {
        'd' => class(false, DIGIT),
        'D' => class(true, DIGIT),
        'w' => class(false, WORD),
        'W' => class(true, WORD),
        's' => class(false, SPACE),
        'S' => class(true, SPACE),
        't' => Atom::Char('\t'),
        c if c.is_ascii_punctuation() || c == ' ' => Atom::Char(c),
        _ => return None,
    })
}

/// Parses `[...]` starting at `start` (the `[`); returns the atom and the index after `]`.
fn class(chars: &[char], start: usize) -> Result<(Atom, usize), (usize, String)> {
    let mut i = start + 1;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err((start, "unclosed `[`".into()));
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                return Err((i, "trailing `\\`".into()));
            };
            i += 2;
            match escape(next) {
                Some(Atom::Char(lit)) => lit,
                Some(Atom::Class {
                    negated: false,
                    ranges: r,
                }) => {
                    ranges.extend(r);
                    continue;
                }
                _ => {
                    return Err((
                        i - 2,
                        format!("escape `\\{next}` is not supported in a class"),
                    ))
                }
            }
        } else {
            i += 1;
            c
        };
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let hi = chars[i + 1];
            if hi < lo {
                return Err((i, format!("range `{lo}-{hi}` is reversed")));
            }
            ranges.push((lo, hi));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok((Atom::Class { negated, ranges }, i))
}

/// Backtracking match of `items` at the start of `text`.
fn match_here(items: &[Item], text: &[char], anchored_end: bool) -> bool {
    let Some((item, rest)) = items.split_first() else {
        return !anchored_end || text.is_empty();
    };
    let max = item.max.unwrap_or(usize::MAX).min(text.len());
    let mut count = 0;
    while count < max && item.atom.matches(text[count]) {
        count += 1;
    }
    if count < item.min {
        return false;
    }
    (item.min..=count)
        .rev()
        .any(|n| match_here(rest, &text[n..], anchored_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, line: &str) -> bool {
        Pattern::new(pattern).unwrap().is_match(line)
    }

    #[test]
    fn literals_match_anywhere_in_the_line() {
        assert!(m(
            "entering maintenance",
            "[    3.1] [talos] entering maintenance service"
        ));
        assert!(!m("entering maintenance", "[talos] leaving"));
        assert!(m("", "anything"));
    }

    #[test]
    fn escaped_brackets_are_literal_and_unescaped_ones_are_classes() {
        let talos = r"\[talos\] entering maintenance service";
        assert!(m(
            talos,
            "[  12.000000] [talos] entering maintenance service"
        ));
        assert!(!m(talos, "talos entering maintenance service"));
        assert!(m("[abc]x", "..bx"));
        assert!(!m("[^abc]x", "bx"));
        assert!(m("[a-c0-9_]+!", "zz_9b!"));
        assert!(m(r"[\d.]+s", "took 12.5s"));
    }

    #[test]
    fn quantifiers_backtrack() {
        assert!(m("a.*b", "xxaZZZbyy"));
        assert!(m("^a.*b$", "aZZb"));
        assert!(!m("^a.*b$", "aZZbc"));
        assert!(m(r"colou?r \d+", "colour 42"));
        assert!(m(r"colou?r \d+", "color 7"));
        assert!(!m(r"\d+s", "s"));
        assert!(m(r"^\s*$", "  \t"));
    }

    #[test]
    fn alternatives_are_tried_in_turn() {
        let p = Pattern::new("^login: |entering maintenance$").unwrap();
        assert!(p.is_match("login: "));
        assert!(p.is_match("x entering maintenance"));
        assert!(!p.is_match("x login: "));
    }

    #[test]
    fn unsupported_syntax_is_rejected_with_a_fix() {
        let err = Pattern::new("(a|b)c").unwrap_err().to_string();
        assert!(
            err.contains("character 1") && err.contains(r"write `\(`"),
            "{err}"
        );
        assert!(Pattern::new("a{2}").is_err());
        assert!(Pattern::new("*a").is_err());
        assert!(Pattern::new("[abc")
            .unwrap_err()
            .problem
            .contains("unclosed"));
        assert!(Pattern::new(r"\q")
            .unwrap_err()
            .problem
            .contains("unknown escape"));
        assert!(Pattern::new("a^b").is_err());
    }
}
