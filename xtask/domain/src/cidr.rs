//! IPv4 CIDR blocks: parsing, containment and overlap, for the subnets in machine-config
//! patches and the Tailscale/kube-ovn 100.64.0.0/10 check. Small enough not to need a crate.

use std::fmt;

/// An IPv4 network in CIDR notation whose host bits are zero (`10.0.0.0/8`, not `10.0.0.1/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

/// The carrier-grade NAT range (RFC 6598). Tailscale addresses its nodes from it and, in kernel
/// mode, drops packets from it that do not arrive on `tailscale0`.
pub const CGNAT: Ipv4Cidr = Ipv4Cidr {
    network: 100 << 24 | 64 << 16,
    prefix: 10,
};

/// Every IPv4 address: the default include list for node IP selection.
#[cfg(test)]
pub const ANY: Ipv4Cidr = Ipv4Cidr {
    network: 0,
    prefix: 0,
};

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`. Errors say what is wrong in words a user can act on.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let Some((addr, prefix)) = text.split_once('/') else {
            return Err("not in CIDR notation (address/prefix, e.g. 10.0.0.0/8)".into());
        };
        let address = parse_address(addr)?;
        let digits = !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        let prefix: u8 = match prefix.parse() {
            Ok(p) if digits && p <= 32 => p,
            _ => {
                return Err(format!(
                    "prefix length `{prefix}` is not a number from 0 to 32"
                ))
            }
        };
        let cidr = Ipv4Cidr {
            network: address & mask(prefix),
            prefix,
        };
        if cidr.network != address {
            return Err(format!("host bits are set; the network is {cidr}"));
        }
        Ok(cidr)
    }

    fn last(self) -> u32 {
        self.network | !mask(self.prefix)
    }

    /// True when every address of `other` is in `self`.
    pub fn contains(self, other: Ipv4Cidr) -> bool {
        self.prefix <= other.prefix && other.network & mask(self.prefix) == self.network
    }

    /// True when the two blocks share at least one address.
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.network <= other.last() && other.network <= self.last()
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn parse_address(text: &str) -> Result<u32, String> {
    let octets: Vec<&str> = text.split('.').collect();
    if octets.len() != 4 {
        return Err(format!(
            "`{text}` is not an IPv4 address (four dot-separated numbers)"
        ));
    }
    let mut address = 0u32;
    for octet in octets {
        // Leading zeros are refused: some parsers read them as octal.
        let valid = !octet.is_empty()
            && octet.len() <= 3
            && octet.bytes().all(|b| b.is_ascii_digit())
            && (octet == "0" || !octet.starts_with('0'));
        match octet.parse::<u8>() {
            Ok(n) if valid => address = address << 8 | u32::from(n),
            _ => {
                return Err(format!(
                    "`{text}` is not an IPv4 address (`{octet}` is not a number from 0 to 255 without leading zeros)"
                ))
            }
        }
    }
    Ok(address)
}

/// Each network as text (`10.0.0.0/8`), in order.
pub fn to_strings(networks: &[Ipv4Cidr]) -> Vec<String> {
    let mut texts = Vec::with_capacity(networks.len());
    for network in networks {
        texts.push(network.to_string());
    }
    texts
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.network.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_networks() {
        for s in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "192.168.1.0/24",
            "1.2.3.4/32",
        ] {
            assert_eq!(cidr(s).to_string(), s);
        }
        assert_eq!(CGNAT.to_string(), "100.64.0.0/10");
        assert_eq!(ANY.to_string(), "0.0.0.0/0");
    }

    #[test]
    fn rejects_malformed_blocks_with_the_reason() {
        for (text, reason) in [
            ("10.0.0.0", "not in CIDR notation"),
            ("10.0.0/8", "not an IPv4 address"),
            ("10.0.0.256/8", "`256` is not a number from 0 to 255"),
            ("10.0.0.01/32", "without leading zeros"),
            ("10.0.0.0/33", "prefix length `33`"),
            ("10.0.0.0/", "prefix length ``"),
            ("10.0.0.0/08", "prefix length `08`"),
            ("fd00::/8", "not an IPv4 address"),
            ("10.0.0.1/8", "host bits are set; the network is 10.0.0.0/8"),
            ("100.64.1.0/10", "the network is 100.64.0.0/10"),
        ] {
            let err = Ipv4Cidr::parse(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn containment() {
        assert!(CGNAT.contains(cidr("100.64.0.0/16")));
        assert!(CGNAT.contains(cidr("100.127.255.255/32")));
        assert!(!CGNAT.contains(cidr("100.128.0.0/16")));
        assert!(
            !CGNAT.contains(cidr("100.0.0.0/8")),
            "a wider block is not inside"
        );
        assert!(ANY.contains(CGNAT));
        assert!(cidr("10.0.0.0/8").contains(cidr("10.0.0.0/8")));
    }

    #[test]
    fn overlap_is_symmetric_and_exact_at_the_edges() {
        let cases = [
            ("100.64.0.0/16", true), // CozyStack's kube-ovn join default
            ("100.127.255.0/24", true),
            ("100.0.0.0/8", true), // wider, contains the whole of 100.64.0.0/10
            ("100.63.255.255/32", false),
            ("100.128.0.0/9", false),
            ("172.16.0.0/12", false),
            ("0.0.0.0/0", true),
        ];
        for (text, want) in cases {
            assert_eq!(CGNAT.overlaps(cidr(text)), want, "{text}");
            assert_eq!(cidr(text).overlaps(CGNAT), want, "{text} (swapped)");
        }
    }
}
