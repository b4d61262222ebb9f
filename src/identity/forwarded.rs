//! The caller's address behind a trusted sidecar: the last entry of
//! `x-forwarded-for`, the one the sidecar appended.
//!
//! Proxies write an entry as `ip`, `ip:port` (IPv4), `[ipv6]`, `[ipv6]:port`
//! or a bare IPv6 address. Anything else (`unknown`, an obfuscated name, a
//! host name, an empty entry), and no header at all, makes the source
//! address unknown, and an unknown source address denies: it never falls
//! back to the sidecar's own (loopback) address, which a management-network
//! guardrail may trust. The sidecar must append the address it saw (Envoy:
//! `use_remote_address: true`); `docs/security.md` says how.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.7`, what a dual-stack
//! listener reports for IPv4 peers) become the IPv4 address they carry, so
//! `ip("10.0.0.0/8")` ranges match them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The caller's address behind the trusted sidecar, if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The last `x-forwarded-for` entry.
    Forwarded(IpAddr),
    /// No `x-forwarded-for`, or its last entry is not an address. A sidecar
    /// that appends the caller's address (Envoy's `use_remote_address`)
    /// always sends one, so a missing header is a misconfigured or
    /// bypassed sidecar: never the sidecar's own loopback address.
    Unknown,
}

impl Source {
    /// The address policies see, if known.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Self::Forwarded(ip) => Some(SocketAddr::new(ip, 0)),
            Self::Unknown => None,
        }
    }
}

/// The address as policies compare it: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Parses one entry as proxies write it.
pub fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = v6.parse().ok()?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Some(canonical(IpAddr::V6(ip)));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // `ip:port` is IPv4 only: a bare IPv6 address has colons of its own.
    let (v4, port) = entry.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// Where the caller's address is read behind the sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SourceHeader {
    /// The last `x-forwarded-for` entry: right behind a sidecar that
    /// appends the address it saw (Envoy's `use_remote_address`). Istio's
    /// inbound sidecar passes a caller's own header through: there the last
    /// entry is the caller's choice.
    #[default]
    ForwardedFor,
    /// A header the sidecar always overwrites with the address it saw (an
    /// Istio EnvoyFilter setting it from
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%`, the peer of the
    /// sidecar's connection; `%DOWNSTREAM_REMOTE_ADDRESS%` would be read
    /// from `x-forwarded-for` again): exactly one field
    /// holding exactly one address; anything else is unknown.
    Overwritten(http::HeaderName),
}

impl SourceHeader {
    /// The header's name.
    pub fn name(&self) -> &str {
        match self {
            Self::ForwardedFor => "x-forwarded-for",
            Self::Overwritten(name) => name.as_str(),
        }
    }

    /// The caller's address in `headers`.
    pub fn source(&self, headers: &http::HeaderMap) -> Source {
        match self {
            Self::ForwardedFor => source(headers),
            Self::Overwritten(name) => overwritten(headers, name),
        }
    }
}

/// The one address in the one `name` field; unknown otherwise (a second
/// field or a list means the sidecar did not overwrite what the caller sent).
fn overwritten(headers: &http::HeaderMap, name: &http::HeaderName) -> Source {
    let mut fields = headers.get_all(name).iter();
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return Source::Unknown;
    };
    match field
        .to_str()
        .ok()
        .filter(|t| !t.contains(','))
        .and_then(parse_entry)
    {
        Some(ip) => Source::Forwarded(ip),
        None => Source::Unknown,
    }
}

/// The caller's address: the last entry of the `x-forwarded-for` fields
/// (several fields are one list, in order); unknown when there is none.
pub fn source(headers: &http::HeaderMap) -> Source {
    let Some(last) = headers.get_all("x-forwarded-for").iter().next_back() else {
        return Source::Unknown;
    };
    let Ok(text) = last.to_str() else {
        return Source::Unknown;
    };
    match text.rsplit(',').next().and_then(parse_entry) {
        Some(ip) => Source::Forwarded(ip),
        None => Source::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_the_forms_proxies_write() {
        for (entry, expected) in [
            ("10.1.2.3", "10.1.2.3"),
            (" 10.1.2.3 ", "10.1.2.3"),
            ("8.8.8.8:443", "8.8.8.8"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:8443", "2001:db8::1"),
            ("::ffff:10.0.0.7", "10.0.0.7"),
            ("[::ffff:10.0.0.7]:1", "10.0.0.7"),
        ] {
            assert_eq!(parse_entry(entry), Some(ip(expected)), "{entry}");
        }
        for bad in [
            "",
            "unknown",
            "_hidden",
            "localhost",
            "10.1.2.3:",
            "10.1.2.3:99999",
            "10.1.2.3:+80",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[10.1.2.3]",
            "2001:db8::1:443:",
            "10.1.2",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_entry_that_does_not_parse_makes_the_source_unknown() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(source(&headers), Source::Unknown, "no header: unknown");
        for (value, expected) in [
            ("203.0.113.9, 10.1.2.3", Some(ip("10.1.2.3"))),
            ("8.8.8.8:443", Some(ip("8.8.8.8"))),
            ("unknown", None),
            ("10.1.1.1, 8.8.8.8:443", Some(ip("8.8.8.8"))),
            ("10.1.1.1, unknown", None),
            ("10.1.1.1,", None),
            ("", None),
        ] {
            headers.insert("x-forwarded-for", value.parse().unwrap());
            assert_eq!(
                source(&headers).addr().map(|a| a.ip()),
                expected,
                "{value:?}"
            );
        }
        // Several fields are one list: the last field's last entry counts.
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers.append("x-forwarded-for", "192.168.1.10".parse().unwrap());
        assert_eq!(source(&headers), Source::Forwarded(ip("192.168.1.10")));
    }

    /// Issue 20, item 8: behind Istio the last `x-forwarded-for` entry is
    /// the caller's own. A header the sidecar overwrites is read instead,
    /// and only as exactly one field with exactly one address.
    #[test]
    fn an_overwritten_header_is_one_field_with_one_address() {
        let header = SourceHeader::Overwritten("x-ecs-gateway-source-address".parse().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        assert_eq!(
            header.source(&headers),
            Source::Unknown,
            "x-forwarded-for is not read"
        );
        headers.insert(
            "x-ecs-gateway-source-address",
            "203.0.113.9".parse().unwrap(),
        );
        assert_eq!(
            header.source(&headers),
            Source::Forwarded(ip("203.0.113.9"))
        );
        headers.append("x-ecs-gateway-source-address", "10.0.0.1".parse().unwrap());
        assert_eq!(header.source(&headers), Source::Unknown, "two fields");
        headers.insert(
            "x-ecs-gateway-source-address",
            "10.0.0.1, 203.0.113.9".parse().unwrap(),
        );
        assert_eq!(header.source(&headers), Source::Unknown, "a list");
    }
}
