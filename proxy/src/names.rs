//! The OCI Distribution Specification's grammar for what a client may name: repository names,
//! tags and digests (checked as the registry client checks them), and the single byte range a
//! blob `GET` may ask for. Everything is checked here before anything goes upstream.

pub use securebuild_registry::reference::{is_sha256_digest, is_valid_tag};

/// Longest repository name accepted (the limit `distribution` enforces on the whole name).
const MAX_NAME_LEN: usize = 255;

/// Whether `name` matches `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && !name.is_empty() && name.split('/').all(is_valid_component)
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// Whether `digest` has the spec's digest shape, `algorithm:encoded`.
pub fn looks_like_digest(digest: &str) -> bool {
    digest.contains(':')
}

/// A byte range a blob `GET` asks for: `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` to `end` inclusive, or to the end of the blob.
    From {
        /// The first byte.
        start: u64,
        /// The last byte, when given.
        end: Option<u64>,
    },
    /// The last `length` bytes.
    Suffix {
        /// How many bytes.
        length: u64,
    },
}

/// Parses a `Range` header holding one byte range; `None` for anything else (several
/// ranges, other units, `END` before `START`, numbers that do not parse).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let number = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    if start.trim().is_empty() {
        return number(end)
            .filter(|length| *length > 0)
            .map(|length| ByteRange::Suffix { length });
    }
    let start = number(start)?;
    if end.trim().is_empty() {
        return Some(ByteRange::From { start, end: None });
    }
    let end = number(end)?;
    (end >= start).then_some(ByteRange::From {
        start,
        end: Some(end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for name in [
            "hello",
            "a/b/c",
            "team-1/app_x",
            "a__b",
            "a---b",
            "a.b/c0",
            "0",
        ] {
            assert!(is_valid_name(name), "{name}");
        }
        let too_long = "a".repeat(256);
        for name in [
            "",
            "Hello",
            "a//b",
            "/a",
            "a/",
            "a_",
            "-a",
            "a.-b",
            "a___b",
            "a/../b",
            "a b",
            "ü",
            "a:b",
            too_long.as_str(),
        ] {
            assert!(!is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn tags_and_digests_follow_the_spec_grammar() {
        for tag in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(is_valid_tag(tag), "{tag}");
        }
        for tag in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(!is_valid_tag(tag), "{tag}");
        }
        assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(looks_like_digest("sha512:abc") && !looks_like_digest("latest"));
    }

    #[test]
    fn one_byte_range_is_accepted() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(ByteRange::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("bytes=100-"),
            Some(ByteRange::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(
            parse_range("bytes=-5"),
            Some(ByteRange::Suffix { length: 5 })
        );
        for bad in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=-0",
            "0-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
