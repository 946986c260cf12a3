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
    match (url_credentials(url), url.split_once("://")) {
        // the credentials start the authority: replaced there, not where the scheme may spell them
        (Some(credentials), Some((scheme, _))) => {
            let rest = &url[scheme.len() + "://".len() + credentials.len()..];
            format!("{scheme}://{REDACTED}{rest}").into()
        }
        _ => url.into(),
    }
}

/// [`url_shown`] for a value given with or without a scheme (`user:token@ghcr.io/acme`, as a
/// registry, a mirror or a factory is written): the `user:password@` before its host, if any,
/// as `<redacted>`.
///
/// None of these has an `@` of its own, and a password may hold `/` (base64), so everything
/// before the last `@` is taken for credentials.
pub fn address_shown(text: &str) -> std::borrow::Cow<'_, str> {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    match (without_digest(rest).rfind('@'), scheme) {
        (Some(at), Some(scheme)) => format!("{scheme}://{REDACTED}{}", &rest[at..]).into(),
        (Some(at), None) if at > 0 => format!("{REDACTED}{}", &rest[at..]).into(),
        _ => text.into(),
    }
}

/// `text` without the `@<algorithm>:...` digest that may end it.
fn without_digest(text: &str) -> &str {
    match text.rsplit_once('@') {
        Some((name, digest))
            if ["sha256:", "sha384:", "sha512:"]
                .iter()
                .any(|alg| digest.starts_with(alg)) =>
        {
            name
        }
        _ => text,
    }
}

/// An image reference as it may be shown: `user:password@` before its host, if any, as
/// `<redacted>`. Its own `@` introduces its digest (`@sha256:...`), and a typo may put one
/// before a tag (`talos@v1.13.0`): an `@` is credentials when a host and path follow it
/// (`u:p/w@ghcr.io/acme/talos`), or when it ends a `user:password` without a path before it.
pub fn reference_shown(text: &str) -> std::borrow::Cow<'_, str> {
    let name = without_digest(text);
    match name.rfind('@') {
        Some(at)
            if at > 0
                && (name[at..].contains('/')
                    || (name[..at].contains(':') && !name[..at].contains('/'))) =>
        {
            format!("{REDACTED}{}", &text[at..]).into()
        }
        _ => text.into(),
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
            // credentials the scheme happens to spell are still the ones replaced
            (
                "https://h:t@host/a",
                Some("h:t"),
                "https://<redacted>@host/a",
            ),
            ("https://h@host/a", Some("h"), "https://<redacted>@host/a"),
        ] {
            assert_eq!(url_credentials(url), credentials, "{url}");
            assert_eq!(url_shown(url), shown, "{url}");
        }
    }

    #[test]
    fn credentials_in_an_image_reference_are_never_shown_its_digest_is() {
        for (text, shown) in [
            ("ghcr.io/x/imager:v1", "ghcr.io/x/imager:v1"),
            ("ghcr.io/x/imager@sha256:abc", "ghcr.io/x/imager@sha256:abc"),
            (
                "user:tok@ghcr.io/x/imager:v1",
                "<redacted>@ghcr.io/x/imager:v1",
            ),
            (
                "u:a/b@ghcr.io/x/imager:v1",
                "<redacted>@ghcr.io/x/imager:v1",
            ),
            (
                "u:t@ghcr.io/x/imager@sha256:abc",
                "<redacted>@ghcr.io/x/imager@sha256:abc",
            ),
            ("u:t@host:5000", "<redacted>@host:5000"),
            (
                "u:p@ss@ghcr.io/x/imager:v1",
                "<redacted>@ghcr.io/x/imager:v1",
            ),
            // a typo for `:` hides no credentials, and the name stays readable
            ("ghcr.io/acme/talos@v1.13.0", "ghcr.io/acme/talos@v1.13.0"),
        ] {
            assert_eq!(reference_shown(text), shown, "{text}");
        }
    }

    #[test]
    fn credentials_before_a_host_without_a_scheme_are_never_shown() {
        for (text, shown) in [
            ("user:s3cr3t@ghcr.io/acme", "<redacted>@ghcr.io/acme"),
            // a password holding `/` (base64, as registry tokens are)
            ("AWS:ab/cd@1.dkr.ecr.x/acme", "<redacted>@1.dkr.ecr.x/acme"),
            ("ghcr.io=u:ab/cd@m:5000", "<redacted>@m:5000"),
            ("admin:p/w@factory", "<redacted>@factory"),
            // with a scheme too
            ("https://u:a/b@m:5000", "https://<redacted>@m:5000"),
            (
                "https://AWS:ab/cd@1.dkr.ecr.x/acme",
                "https://<redacted>@1.dkr.ecr.x/acme",
            ),
            ("u:s3cr3t@m:5000", "<redacted>@m:5000"),
            ("https://u:s3cr3t@m:5000/x", "https://<redacted>@m:5000/x"),
            ("ghcr.io/acme", "ghcr.io/acme"),
            ("ghcr.io/acme@sha256:00", "ghcr.io/acme@sha256:00"),
            ("@ghcr.io", "@ghcr.io"),
        ] {
            assert_eq!(address_shown(text), shown, "{text}");
        }
    }
}
