//! Image references and digests, parsed once at the edge and typed everywhere after.

use std::fmt;

/// Public registries where every owner shares the host: a reference's first path part there is
/// its owner (`ghcr.io/acme/...`).
pub const SHARED_HOSTS: &[&str] = &[
    "ghcr.io",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "quay.io",
];

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A content digest, `sha256:<64 lowercase hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, String> {
        if is_sha256_digest(text) {
            Ok(Digest(text.to_owned()))
        } else {
            Err(format!(
                "digest `{text}` is not sha256:<64 lowercase hex digits>"
            ))
        }
    }

    /// The sha256 digest of `bytes` (a manifest, an index, a schematic).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex(&sha2::Sha256::digest(bytes))))
    }

    /// The 64 hex digits after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

/// `bytes` as lowercase hex digits, two per byte (digests, cache keys).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(2 * bytes.len());
    for b in bytes {
        write!(hex, "{b:02x}").unwrap();
    }
    hex
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Digest::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `registry/path/name[:tag][@sha256:hex]`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// The reference by its digest alone when it has one (`host/repo@sha256:…`): the digest
    /// names the content, and a registry client may refuse a tag and a digest together.
    pub fn by_digest_alone(&self) -> ImageRef {
        match &self.digest {
            Some(_) => ImageRef {
                tag: None,
                ..self.clone()
            },
            None => self.clone(),
        }
    }

    /// The last path component: `zfs` for `ghcr.io/siderolabs/zfs`.
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// [`ImageRef::parse`] for a value given on the command line, its error safe to show: a
    /// value with credentials before its host is refused as such, never parsed into an error
    /// that repeats part of them (show the value through [`super::shell::reference_shown`]).
    pub fn parse_given(text: &str) -> Result<ImageRef, String> {
        if super::shell::reference_shown(text) != text {
            return Err("it carries credentials (`user:password@`), which an image reference never holds: registries take them from an auth file (--authfile, or GITHUB_TOKEN for ghcr.io)".to_owned());
        }
        ImageRef::parse(text)
    }

    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (reference, None),
        };
        // A colon after the last slash separates the tag; one before it belongs to host:port.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (repository, tag) = match rest[last_slash..].find(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if repository.is_empty() || !repository.contains('/') {
            return Err("not a full image reference (registry/path/name)".into());
        }
        if tag.as_deref() == Some("") {
            return Err("empty tag".into());
        }
        if reference.contains(char::is_whitespace) {
            return Err("contains whitespace".into());
        }
        // the registry host may be any case; the path is the distribution spec's grammar
        if let Some(bad) = repository.split('/').skip(1).find(|s| !is_path_segment(s)) {
            return Err(format!(
                "path segment `{bad}` is not lowercase letters and digits joined by single `.`, `_`, `__` or dashes"
            ));
        }
        if let Some(tag) = tag.as_deref().filter(|t| !is_tag(t)) {
            return Err(format!(
                "tag `{tag}` is not letters, digits, `_`, `.` and `-` (at most 128, not starting with `.` or `-`)"
            ));
        }
        if tag.is_none() && digest.is_none() {
            return Err("has neither tag nor digest".into());
        }
        Ok(ImageRef {
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

/// A registry host as image references name one: DNS labels (any case) or a bracketed IPv6
/// address, then an optional numeric port.
pub fn is_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, rest)) = v6.split_once(']') else {
                return false;
            };
            let addr_ok = !addr.is_empty()
                && addr
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
            let port = match rest {
                "" => None,
                _ => match rest.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            if !addr_ok {
                return false;
            }
            (None, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    let name_ok = name.is_none_or(|name| {
        !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    name_ok && port_ok
}

/// A segment of an OCI repository path: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_path_segment(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let separators_ok = bytes
        .split(alnum)
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|b| *b == b'-'));
    !bytes.is_empty()
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && separators_ok
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ImageRef::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Tests write references as literals.
#[cfg(test)]
impl From<&str> for ImageRef {
    fn from(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }
}

#[cfg(test)]
impl From<String> for ImageRef {
    fn from(text: String) -> ImageRef {
        ImageRef::parse(&text).unwrap()
    }
}

pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        for ok in ["talos", "spin-only", "a.b_c-d", "x1", "a--b", "a__b"] {
            assert!(is_path_segment(ok), "{ok}");
        }
        for bad in ["", "Talos", "-a", "a-", "a..b", "a._b", "a b", "a/b"] {
            assert!(!is_path_segment(bad), "{bad}");
        }
    }

    #[test]
    fn a_reference_is_held_to_the_distribution_grammar() {
        for ok in [
            "ghcr.io/siderolabs/drbd:9.3.2-v1.13.99",
            "LOCALHOST:5000/a/b_c:V1",
            "ghcr.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ghcr.io/Acme/talos:v1", "path segment `Acme`"),
            ("ghcr.io/acme/talos:v 1", "whitespace"),
            ("ghcr.io/acme/talos:-v1", "tag `-v1`"),
            ("ghcr.io/acme//talos:v1", "path segment ``"),
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    const DIGEST: &str = "sha256:4a6f77f4e3fde41f3656f72d7d68380356afbb289254af8263a154cf7b70598e";

    #[test]
    fn references_split_into_parts() {
        let r =
            ImageRef::parse(&format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{DIGEST}")).unwrap();
        assert_eq!(r.repository, "ghcr.io/siderolabs/drbd");
        assert_eq!(r.tag.as_deref(), Some("9.3.2-v1.13.99"));
        assert_eq!(
            r.digest.as_ref().map(ToString::to_string).as_deref(),
            Some(DIGEST)
        );
        assert_eq!(
            r.to_string(),
            format!("ghcr.io/siderolabs/drbd:9.3.2-v1.13.99@{DIGEST}")
        );
        let local = ImageRef::parse("127.0.0.1:5000/siderolabs/spin:v0.25.1").unwrap();
        assert_eq!(local.repository, "127.0.0.1:5000/siderolabs/spin");
        assert_eq!(local.tag.as_deref(), Some("v0.25.1"));
        assert_eq!(local.digest, None);
    }

    #[test]
    fn bad_references_are_rejected() {
        assert!(ImageRef::parse("ghcr.io/siderolabs/zfs:2@sha256:abc")
            .unwrap_err()
            .contains("not sha256"));
        assert!(ImageRef::parse("zfs:2")
            .unwrap_err()
            .contains("not a full image reference"));
        assert!(ImageRef::parse("ghcr.io/siderolabs/zfs")
            .unwrap_err()
            .contains("neither tag nor digest"));
        assert!(
            ImageRef::parse(&format!("ghcr.io/siderolabs/zfs@{}", DIGEST.to_uppercase())).is_err()
        );
    }
}
