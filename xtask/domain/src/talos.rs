//! The Talos version: `vMAJOR.MINOR.PATCH[-PRE]`, parsed once where it is read (the pinned
//! upstream profile, the lock, `--talos-version`) and compared as numbers after that.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TalosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The pre-release suffix after `-` (`rc.1`), if any.
    pub pre: Option<String>,
}

impl TalosVersion {
    /// The release an image tag names (`v1.13.6`, `aws-v1.13.6`, `rpi_generic-v1.14.0-rc.1`):
    /// the first `v` from which the rest of the tag is a release.
    pub fn in_tag(tag: &str) -> Option<TalosVersion> {
        tag.match_indices('v')
            .find_map(|(i, _)| TalosVersion::parse(&tag[i..]).ok())
    }

    /// Parses a Talos release tag; the error says what a tag looks like.
    pub fn parse(text: &str) -> Result<TalosVersion, String> {
        let bad =
            || format!("`{text}` is not a Talos release tag (vMAJOR.MINOR.PATCH, e.g. v1.13.6)");
        let rest = text.strip_prefix('v').ok_or_else(bad)?;
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let mut numbers = Vec::new();
        for n in core.split('.') {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            numbers.push(n.parse::<u32>().map_err(|_| bad())?);
        }
        let [major, minor, patch] = numbers[..] else {
            return Err(bad());
        };
        if let Some(pre) = pre {
            let ok = !pre.is_empty()
                && pre
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(bad());
            }
        }
        Ok(TalosVersion {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }

    /// `(major, minor)`, for rules that change with a minor release.
    pub fn minor_release(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// The Talos release an extension tag such as `2.4.3-v1.13.6` was built for, when it names one.
    pub fn built_for(tag: &str) -> Option<TalosVersion> {
        let (_, version) = tag.rsplit_once("-v")?;
        TalosVersion::parse(&format!("v{version}"))
            .ok()
            .filter(|v| v.pre.is_none())
    }
}

/// The Talos version a run builds for, and where it was read (shown in the plan).
pub struct Talos {
    pub version: TalosVersion,
    pub source: String,
}

impl fmt::Display for TalosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// Tests write versions as literals.
#[cfg(test)]
impl From<&str> for TalosVersion {
    fn from(text: &str) -> TalosVersion {
        TalosVersion::parse(text).unwrap()
    }
}

/// A tag compares equal to the version it spells (`"v1.13.6" == v1.13.6`).
impl PartialEq<TalosVersion> for String {
    // the version's canonical text: "v1.13.06" is not the tag of v1.13.6
    #[allow(clippy::cmp_owned)]
    fn eq(&self, version: &TalosVersion) -> bool {
        *self == version.to_string()
    }
}

impl PartialEq<TalosVersion> for str {
    // the version's canonical text: "v1.13.06" is not the tag of v1.13.6
    #[allow(clippy::cmp_owned)]
    fn eq(&self, version: &TalosVersion) -> bool {
        *self == version.to_string()
    }
}

impl std::str::FromStr for TalosVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TalosVersion::parse(s)
    }
}

impl Serialize for TalosVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TalosVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TalosVersion::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_a_tag_names() {
        let v = |t: &str| TalosVersion::in_tag(t).map(|v| v.to_string());
        assert_eq!(v("v1.2.3").as_deref(), Some("v1.2.3"));
        assert_eq!(v("aws-v1.2.3").as_deref(), Some("v1.2.3"));
        assert_eq!(
            v("rpi_generic-v1.14.0-rc.1").as_deref(),
            Some("v1.14.0-rc.1")
        );
        assert_eq!(v("latest"), None);
        assert_eq!(v("dev-v2"), None);
    }

    #[test]
    fn release_tags_parse_and_print_back() {
        for tag in ["v1.13.99", "v1.98.0-rc.1", "v0.1.0"] {
            assert_eq!(TalosVersion::parse(tag).unwrap().to_string(), tag);
        }
        let v = TalosVersion::parse("v1.12.10").unwrap();
        assert_eq!(v.minor_release(), (1, 12));
        assert!(
            v < TalosVersion::parse("v1.13.0").unwrap(),
            "numbers, not text"
        );
        for bad in [
            "1.13.6",
            "v1.13",
            "v1.13.x",
            "v1.13.99-",
            "latest",
            "v1.13.99.1",
            "v1..6",
        ] {
            assert!(TalosVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extension_tags_name_the_release_they_were_built_for() {
        assert_eq!(
            TalosVersion::built_for("2.4.3-v1.13.99")
                .map(|v| v.to_string())
                .as_deref(),
            Some("v1.13.99")
        );
        assert_eq!(TalosVersion::built_for("v0.25.1"), None);
        assert_eq!(TalosVersion::built_for("1.98.5"), None);
    }
}
