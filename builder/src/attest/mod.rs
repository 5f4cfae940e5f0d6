//! Supply chain of signed images. The formats and cryptography are pure data transformations:
//! cosign keys, signatures and signature-manifest layout, DSSE envelopes, in-toto statements,
//! SLSA provenance, SPDX and CycloneDX SBOMs, and [`inputs`] (a build's facts as their inputs).
//! Only [`publish`] (sign and attach) and [`verify`] talk to a registry, through the
//! `publish::SignatureStore` trait.

pub mod cosign;
pub mod cyclonedx;
pub mod dsse;
pub mod inputs;
pub mod intoto;
pub mod keys;
pub mod license;
pub mod provenance;
pub mod publish;
pub mod purl;
pub mod sbom;
mod spdx_license_list;
pub mod verify;

use base64::Engine as _;

/// Prefix of a SHA-256 content digest (`sha256:<hex>`).
pub const SHA256_DIGEST_PREFIX: &str = securebuild_registry::digest::SHA256_PREFIX;

/// A content digest that is not `sha256:` followed by 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {digest:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
pub struct InvalidDigest {
    /// The rejected digest.
    pub digest: String,
}

/// Returns the hexadecimal part of a `sha256:<hex>` digest after checking its form.
pub fn sha256_hex(digest: &str) -> Result<&str, InvalidDigest> {
    securebuild_registry::digest::sha256_hex(digest).ok_or_else(|| InvalidDigest {
        digest: digest.to_owned(),
    })
}

pub use securebuild_registry::digest::sha256_digest;

/// Decodes base64 in either the standard or the URL-safe alphabet, padded or not, as DSSE
/// verifiers must accept.
pub(crate) fn decode_base64_any(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    STANDARD
        .decode(value)
        .or_else(|standard_error| URL_SAFE.decode(value).map_err(|_| standard_error))
}

/// Normalizes an RFC 3339 timestamp to UTC whole seconds (`YYYY-MM-DDThh:mm:ssZ`), the form SPDX
/// requires and every other format here accepts.
pub(crate) fn normalize_timestamp(value: &str) -> Result<String, jiff::Error> {
    let timestamp: jiff::Timestamp = value.parse()?;
    Ok(timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod test_support {
    //! Runs reference tools written in Python against this module's output.

    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// The Python interpreter with the reference libraries: `$SECUREBUILD_PYTHON`, else `python3`.
    pub(crate) fn python() -> String {
        std::env::var("SECUREBUILD_PYTHON").unwrap_or_else(|_| "python3".to_owned())
    }

    /// Fails the test with a clear message unless the interpreter can import `module`.
    pub(crate) fn require_module(module: &str) {
        let python = python();
        let status = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => {}
            _ => panic!(
                "python module {module:?} is not importable by {python:?}; set SECUREBUILD_PYTHON to a \
                 python with spdx-tools, cryptography and securesystemslib installed"
            ),
        }
    }

    /// Runs `script` with `args`, feeding `stdin`; returns stdout, failing the test on a non-zero
    /// exit with the script's output.
    pub(crate) fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> String {
        let python = python();
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {python:?}: {error}"));
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "python check failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_accepts_only_canonical_digests() {
        fn check(input: &str, ok: bool) {
            assert_eq!(sha256_hex(input).is_ok(), ok, "{input}");
        }
        let hex = "a".repeat(64);
        check(&format!("sha256:{hex}"), true);
        check(&format!("sha256:{}", "A".repeat(64)), false);
        check(&format!("sha512:{hex}"), false);
        check(&format!("sha256:{}", "a".repeat(63)), false);
        check(&hex, false);
        check("", false);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn base64_accepts_both_alphabets_with_or_without_padding() {
        for input in ["+/8=", "+/8", "-_8=", "-_8"] {
            assert_eq!(
                decode_base64_any(input).unwrap(),
                vec![0xfb, 0xff],
                "{input}"
            );
        }
        assert!(decode_base64_any("*").is_err());
    }

    #[test]
    fn timestamps_normalize_to_utc_seconds() {
        assert_eq!(
            normalize_timestamp("2024-05-06T07:08:09.123+02:00").unwrap(),
            "2024-05-06T05:08:09Z"
        );
        assert_eq!(
            normalize_timestamp("2024-05-06T07:08:09Z").unwrap(),
            "2024-05-06T07:08:09Z"
        );
        assert!(normalize_timestamp("yesterday").is_err());
    }
}
