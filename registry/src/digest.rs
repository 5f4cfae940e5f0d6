//! Content digests as OCI and cosign write them: `sha256:<lowercase hex>`. One definition for
//! the layout, the registry client and the attestations.

use sha2::{Digest, Sha256};

/// The prefix of a SHA-256 content digest.
pub const SHA256_PREFIX: &str = "sha256:";

/// Number of hex digits in a SHA-256 digest.
const SHA256_HEX_LEN: usize = 64;

/// Lowercase hex SHA-256 of `bytes`, without the prefix (cache file names, ETag records).
pub fn sha256_hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    finish_sha256(Sha256::new_with_prefix(bytes))
}

/// `sha256:<hex>` of everything `hasher` has consumed.
pub fn finish_sha256(hasher: Sha256) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(hasher.finalize()))
}

/// The hex part of a canonical `sha256:` digest (64 lowercase hex digits), `None` for anything
/// else.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix(SHA256_PREFIX)
        .filter(|hex| is_sha256_hex(hex))
}

/// Whether `hex` is exactly 64 lowercase hexadecimal digits.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == SHA256_HEX_LEN
        && hex
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
