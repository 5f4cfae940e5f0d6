//! Image references and the names inside them: parsing `REPO[:TAG][@DIGEST]` the way docker
//! does, checking tags and digests against the distribution grammar, and deciding which
//! registries are spoken to over plain HTTP.

use std::net::IpAddr;

pub use oci_client::Reference;

use crate::digest::sha256_hex;
use crate::error::RegistryError;

/// The tag a reference without tag or digest stands for.
pub const PLACEHOLDER_TAG: &str = "latest";

const MAX_TAG_LEN: usize = 128;
const LOCALHOST: &str = "localhost";

/// Parses `REPO[:TAG]`, `REPO@sha256:…` or `REPO:TAG@sha256:…` the way docker does: the
/// registry defaults to `docker.io`, single-component Docker Hub names get `library/`, and a
/// reference with neither tag nor digest gets the tag `latest`.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    let invalid = |source| RegistryError::InvalidReference {
        reference: text.to_owned(),
        source,
    };
    let reference = text.parse::<Reference>().map_err(invalid)?;
    // A first component without `.`, `:` or `localhost` is part of a Docker Hub repository
    // name, where docker refuses upper case.
    if reference
        .repository()
        .bytes()
        .any(|byte| byte.is_ascii_uppercase())
    {
        return Err(invalid(oci_client::ParseError::NameContainsUppercase));
    }
    Ok(reference)
}

/// Whether `registry` (`host[:port]` as in a reference) is spoken to over plain HTTP: loopback
/// registries (`localhost`, `127.0.0.0/8`, `::1`, any port) always, and any registry named in
/// `insecure`, either exactly (`host:port`, case-insensitive) or through a CIDR entry
/// (`10.0.0.0/8`) that contains its IP address. Host names are not resolved.
pub fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let ip = host.parse::<IpAddr>().ok();
    if host.eq_ignore_ascii_case(LOCALHOST) || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    insecure.iter().any(|entry| {
        let entry = entry.trim();
        entry.eq_ignore_ascii_case(registry) || ip.is_some_and(|ip| cidr_contains(entry, ip))
    })
}

/// Whether `tag` matches docker's grammar, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= MAX_TAG_LEN
        && bytes
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

/// Checks a tag against docker's grammar ([`is_valid_tag`]).
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    if is_valid_tag(tag) {
        Ok(())
    } else {
        Err(RegistryError::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}

/// Checks that a digest is `sha256:` followed by 64 lower-case hex digits.
pub fn check_digest(digest: &str) -> Result<(), RegistryError> {
    if is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(RegistryError::InvalidDigest {
            digest: digest.to_owned(),
        })
    }
}

/// Whether `digest` is `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    sha256_hex(digest).is_some()
}

/// The tag or digest `reference` names: its digest when it has one, else its tag
/// ([`PLACEHOLDER_TAG`] when it has neither).
pub fn tag_or_digest(reference: &Reference) -> &str {
    reference
        .digest()
        .or(reference.tag())
        .unwrap_or(PLACEHOLDER_TAG)
}

/// The host part of `host[:port]`, `[v6]:port`, or a bare IPv6 address.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

/// Whether the CIDR `entry` (`addr/bits`) contains `ip`; anything else is no match.
fn cidr_contains(entry: &str, ip: IpAddr) -> bool {
    let Some((network, bits)) = entry.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(network), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(network) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(network) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_and_listed_registries() {
        let insecure = vec![
            "registry.internal:5000".to_owned(),
            "10.1.0.0/16".to_owned(),
            "fd00::/8".to_owned(),
            "not-a-cidr/x".to_owned(),
        ];
        let cases = [
            ("localhost", true),
            ("localhost:5000", true),
            ("LOCALHOST:1", true),
            ("127.0.0.1", true),
            ("127.0.0.1:5000", true),
            ("127.255.3.4:443", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("[::1]", true),
            ("registry.internal:5000", true),
            ("Registry.Internal:5000", true),
            ("registry.internal", false),
            ("registry.internal:5001", false),
            ("10.1.200.3:5000", true),
            ("10.2.0.1:5000", false),
            ("[fd12::1]:5000", true),
            ("128.0.0.1", false),
            ("docker.io", false),
            ("ghcr.io", false),
            ("localhost.example.com", false),
            ("0.0.0.0:5000", false),
        ];
        for (registry, expected) in cases {
            assert_eq!(uses_plain_http(registry, &insecure), expected, "{registry}");
        }
        assert!(!uses_plain_http("registry.internal:5000", &[]));
    }

    #[test]
    fn references_parse_like_docker() {
        let digest = format!("sha256:{}", "a".repeat(64));
        type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<(String, Option<Parts>)> = vec![
            (
                "alpine".into(),
                Some(("docker.io", "library/alpine", Some("latest"), None)),
            ),
            (
                "alpine:3.20".into(),
                Some(("docker.io", "library/alpine", Some("3.20"), None)),
            ),
            (
                "user/app".into(),
                Some(("docker.io", "user/app", Some("latest"), None)),
            ),
            (
                "docker.io/alpine".into(),
                Some(("docker.io", "library/alpine", Some("latest"), None)),
            ),
            (
                "index.docker.io/user/app:v1".into(),
                Some(("docker.io", "user/app", Some("v1"), None)),
            ),
            (
                "ghcr.io/org/app:v1".into(),
                Some(("ghcr.io", "org/app", Some("v1"), None)),
            ),
            (
                "ghcr.io/app".into(),
                Some(("ghcr.io", "app", Some("latest"), None)),
            ),
            (
                "localhost/app".into(),
                Some(("localhost", "app", Some("latest"), None)),
            ),
            (
                "localhost:5000/a/b/c:t".into(),
                Some(("localhost:5000", "a/b/c", Some("t"), None)),
            ),
            (
                "127.0.0.1:5000/app".into(),
                Some(("127.0.0.1:5000", "app", Some("latest"), None)),
            ),
            (
                format!("ghcr.io/app@{digest}"),
                Some(("ghcr.io", "app", None, Some(digest.as_str()))),
            ),
            (
                format!("ghcr.io/app:v2@{digest}"),
                Some(("ghcr.io", "app", Some("v2"), Some(digest.as_str()))),
            ),
            ("Upper/app".into(), None),
            ("ghcr.io/App".into(), None),
            ("".into(), None),
            ("app:bad tag".into(), None),
            ("ghcr.io/app@sha256:abc".into(), None),
            ("ghcr.io/app@md5:0123".into(), None),
        ];
        for (text, expected) in cases {
            match (parse_reference(&text), expected) {
                (Ok(reference), Some((registry, repository, tag, digest))) => {
                    assert_eq!(reference.registry(), registry, "{text}");
                    assert_eq!(reference.repository(), repository, "{text}");
                    assert_eq!(reference.tag(), tag, "{text}");
                    assert_eq!(reference.digest(), digest, "{text}");
                }
                (Err(error), None) => assert!(error.to_string().contains(&format!("{text:?}"))),
                (result, expected) => panic!("{text}: got {result:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            parse_reference("alpine").unwrap().resolve_registry(),
            "index.docker.io"
        );
    }

    #[test]
    fn tags_follow_docker_grammar() {
        for tag in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(check_tag(tag).is_ok(), "{tag}");
        }
        for tag in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129), "ü"] {
            assert!(
                matches!(check_tag(tag), Err(RegistryError::InvalidTag { .. })),
                "{tag}"
            );
        }
    }

    #[test]
    fn digests_are_sha256_only() {
        let good = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(is_sha256_digest(&good));
        for bad in [
            "sha256:".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:../../{}", "a".repeat(58)),
            "a".repeat(64),
        ] {
            assert!(!is_sha256_digest(&bad), "{bad}");
        }
    }
}
