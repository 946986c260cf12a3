//! Shell quoting: how a command is shown to a reader who may paste it (dry runs, next steps),
//! and URLs shown without the credentials they may carry.

/// How a secret is shown: a token in a command line, a URL's credentials, the Tailscale auth key.
pub const REDACTED: &str = "<redacted>";

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

/// The `user:password@` part of a URL (`https://user:token@host/path`): a credential that is
/// used but never shown.
pub fn url_credentials(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    (!userinfo.is_empty()).then_some(userinfo)
}

/// `url` as it may be shown: its credentials, if any, as `<redacted>`.
pub fn url_shown(url: &str) -> std::borrow::Cow<'_, str> {
    match url_credentials(url) {
        Some(credentials) => url.replacen(credentials, REDACTED, 1).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_found_and_never_shown() {
        for (url, credentials, shown) in [
            (
                "https://ci:ghp_tok@github.com/acme/cozystack.git",
                Some("ci:ghp_tok"),
                "https://<redacted>@github.com/acme/cozystack.git",
            ),
            (
                "https://ghp_tok@github.com/a/b",
                Some("ghp_tok"),
                "https://<redacted>@github.com/a/b",
            ),
            ("https://github.com/a/b", None, "https://github.com/a/b"),
            ("https://host/a@b", None, "https://host/a@b"),
            ("file:///srv/mirror", None, "file:///srv/mirror"),
            ("/srv/mirror@v1", None, "/srv/mirror@v1"),
            ("git@github.com:a/b.git", None, "git@github.com:a/b.git"),
        ] {
            assert_eq!(url_credentials(url), credentials, "{url}");
            assert_eq!(url_shown(url), shown, "{url}");
        }
    }
}
