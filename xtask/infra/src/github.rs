//! What GitHub Actions reads from a step: workflow commands (annotations) on stdout.

/// Annotation messages are one line: GitHub's own escapes for `%`, CR and LF.
pub fn escape_annotation(message: &str) -> String {
    message
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_one_line() {
        assert_eq!(escape_annotation("a\nb 100%\r"), "a%0Ab 100%25%0D");
    }
}
