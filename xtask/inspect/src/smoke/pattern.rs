//! The console-line pattern of `--expect`: a regular expression (the `regex-lite` dialect: no
//! Unicode classes, everything else a regex user expects), matched anywhere in a line unless
//! anchored. Parsed once when the options are read, so a bad pattern fails before qemu starts.

use regex_lite::Regex;

/// `source` as a pattern, or the error `--expect` reports for it.
pub fn parse(source: &str) -> Result<Regex, String> {
    Regex::new(source).map_err(|err| {
        format!(
            "pattern `{source}` is not a regular expression: {}\n    fix: escape characters meant literally with `\\`, e.g. `\\[talos\\]`",
            err.to_string().trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, line: &str) -> bool {
        parse(pattern).unwrap().is_match(line)
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
    fn quantifiers_anchors_and_alternatives() {
        assert!(m("a.*b", "xxaZZZbyy"));
        assert!(m("^a.*b$", "aZZb"));
        assert!(!m("^a.*b$", "aZZbc"));
        assert!(m(r"colou?r \d+", "colour 42"));
        assert!(!m(r"\d+s", "s"));
        assert!(m(r"^\s*$", "  \t"));
        let p = parse("^login: |entering maintenance$").unwrap();
        assert!(p.is_match("login: "));
        assert!(p.is_match("x entering maintenance"));
        assert!(!p.is_match("x login: "));
        // groups and counted repetition work too (the hand-written matcher refused them)
        assert!(m(r"(ok|done) \d{2}$", "step done 42"));
    }

    #[test]
    fn a_bad_pattern_names_itself_and_the_fix() {
        let err = parse("[abc").unwrap_err().to_string();
        assert!(
            err.starts_with("pattern `[abc` is not a regular expression: "),
            "{err}"
        );
        assert!(
            err.contains(r"fix: escape characters meant literally with `\`"),
            "{err}"
        );
        assert!(parse("*a").is_err());
        assert!(parse("a{2").is_err());
    }
}
