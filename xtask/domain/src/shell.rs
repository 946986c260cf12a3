//! Shell quoting: how a command is shown to a reader who may paste it (dry runs, next steps).

/// Quotes one word for a POSIX shell: as is when it is made only of characters no shell
/// treats specially, else in single quotes.
pub fn quote(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.into()
    } else {
        format!("'{}'", word.replace('\'', r"'\''")).into()
    }
}

/// Words quoted and joined into one shell line.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    let mut line = String::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&quote(word.as_ref()));
    }
    line
}
