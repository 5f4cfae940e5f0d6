//! DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding, the JSON envelope,
//! and signing and verification with ECDSA P-256 keys; it does not interpret the payload.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keys::{SigningKey, VerifyingKey};

/// Payload type of an in-toto statement inside a DSSE envelope.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Largest envelope accepted by [`Envelope::from_json`].
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024 * 1024;
/// Fixed prefix of the pre-authentication encoding.
const PAE_PREFIX: &str = "DSSEv1";

/// Errors decoding or verifying an envelope.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// The envelope is not valid JSON of the expected shape.
    #[error("malformed dsse envelope")]
    Json {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The envelope exceeds the size limit.
    #[error("dsse envelope of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Envelope length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The payload is not valid base64.
    #[error("dsse payload is not valid base64")]
    PayloadBase64 {
        /// The decoding error.
        source: base64::DecodeError,
    },
    /// The envelope carries no signature.
    #[error("dsse envelope with payload type {payload_type:?} has no signatures")]
    NoSignatures {
        /// Payload type of the envelope.
        payload_type: String,
    },
    /// None of the signatures verifies with the key.
    #[error("none of the {count} signature(s) on the dsse envelope verifies with the public key")]
    NoValidSignature {
        /// Number of signatures tried.
        count: usize,
    },
    /// The payload type is not the one the caller expects.
    #[error("dsse payload type is {found:?}, expected {expected:?}")]
    UnexpectedPayloadType {
        /// Payload type in the envelope.
        found: String,
        /// Payload type required.
        expected: String,
    },
}

/// A DSSE JSON envelope, serialized with the field order cosign writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Type of the payload, authenticated by the signatures.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 (standard alphabet) of the serialized payload.
    pub payload: String,
    /// Signatures over the pre-authentication encoding.
    pub signatures: Vec<Signature>,
}

/// One signature in an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Unauthenticated hint naming the key; cosign leaves it empty.
    #[serde(default)]
    pub keyid: String,
    /// Base64 (standard alphabet) of the ASN.1 DER signature.
    pub sig: String,
}

/// The pre-authentication encoding `DSSEv1 <len> <type> <len> <body>` that signatures cover.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "{PAE_PREFIX} {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut encoded = Vec::with_capacity(header.len() + payload.len());
    encoded.extend_from_slice(header.as_bytes());
    encoded.extend_from_slice(payload);
    encoded
}

/// Signs `payload` as `payload_type` with an empty key id, as cosign does.
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    sign_with_keyid(payload_type, payload, key, "")
}

/// Signs `payload` as `payload_type`, recording `keyid` as the signature's key hint.
pub fn sign_with_keyid(
    payload_type: &str,
    payload: &[u8],
    key: &SigningKey,
    keyid: &str,
) -> Envelope {
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload_type: payload_type.to_owned(),
        payload: b64.encode(payload),
        signatures: vec![Signature {
            keyid: keyid.to_owned(),
            sig: b64.encode(signature),
        }],
    }
}

/// Verifies that at least one signature on `envelope` is valid for `key` and returns the payload.
/// Key ids are hints only and are not consulted. The caller checks the payload type.
pub fn verify(envelope: &Envelope, key: &VerifyingKey) -> Result<Vec<u8>, DsseError> {
    let payload = super::decode_base64_any(&envelope.payload)
        .map_err(|source| DsseError::PayloadBase64 { source })?;
    if envelope.signatures.is_empty() {
        return Err(DsseError::NoSignatures {
            payload_type: envelope.payload_type.clone(),
        });
    }
    let encoded = pae(&envelope.payload_type, &payload);
    let verified = envelope.signatures.iter().any(|signature| {
        super::decode_base64_any(&signature.sig).is_ok_and(|sig| key.verify(&encoded, &sig).is_ok())
    });
    if verified {
        Ok(payload)
    } else {
        Err(DsseError::NoValidSignature {
            count: envelope.signatures.len(),
        })
    }
}

/// [`verify`], additionally requiring the payload type to be `expected_type`.
pub fn verify_typed(
    envelope: &Envelope,
    key: &VerifyingKey,
    expected_type: &str,
) -> Result<Vec<u8>, DsseError> {
    if envelope.payload_type != expected_type {
        return Err(DsseError::UnexpectedPayloadType {
            found: envelope.payload_type.clone(),
            expected: expected_type.to_owned(),
        });
    }
    verify(envelope, key)
}

impl Envelope {
    /// Parses a JSON envelope.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(DsseError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(|source| DsseError::Json { source })
    }

    /// The compact JSON serialization, the bytes stored as an attestation layer.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::attest::test_support;

    /// Secret scalar of the key in the DSSE protocol test vector.
    const VECTOR_SCALAR: &str = "d73ec437fd6346e3619c5ebfdfff0f6916804955ad32ac9ac492b0ede1f6ffb7";
    const VECTOR_TYPE: &str = "http://example.com/HelloWorld";

    fn vector_key() -> SigningKey {
        SigningKey::from_scalar_bytes(&hex::decode(VECTOR_SCALAR).unwrap()).unwrap()
    }

    #[test]
    fn pae_matches_the_specification() {
        fn check(payload_type: &str, payload: &[u8], expected: &[u8]) {
            assert_eq!(pae(payload_type, payload), expected, "{payload_type}");
        }
        check(
            VECTOR_TYPE,
            b"hello world",
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world",
        );
        check("", b"", b"DSSEv1 0  0 ");
        check("t", "é".as_bytes(), "DSSEv1 1 t 2 é".as_bytes());
        check(
            INTOTO_PAYLOAD_TYPE,
            b"{}",
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}",
        );
    }

    #[test]
    fn signature_matches_the_specification_vector() {
        // The protocol's vector signs with deterministic RFC 6979 nonces and encodes r || s.
        let envelope = sign(VECTOR_TYPE, b"hello world", &vector_key());
        assert_eq!(envelope.payload, "aGVsbG8gd29ybGQ=");
        let der = base64::engine::general_purpose::STANDARD
            .decode(&envelope.signatures[0].sig)
            .unwrap();
        let fixed = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(fixed),
            "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
        );
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = vector_key();
        let public = key.verifying_key();
        let envelope = sign(INTOTO_PAYLOAD_TYPE, br#"{"a":1}"#, &key);
        let json = envelope.to_json();
        assert!(String::from_utf8(json.clone()).unwrap().starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"keyid":"","sig":""#));
        let parsed = Envelope::from_json(&json).unwrap();
        assert_eq!(parsed, envelope);
        assert_eq!(verify(&parsed, &public).unwrap(), br#"{"a":1}"#);
        assert_eq!(
            verify_typed(&parsed, &public, INTOTO_PAYLOAD_TYPE).unwrap(),
            br#"{"a":1}"#
        );

        fn check(envelope: Envelope, key: &VerifyingKey, expected: &str) {
            let error = verify(&envelope, key).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let mut tampered_payload = envelope.clone();
        tampered_payload.payload = base64::engine::general_purpose::STANDARD.encode(br#"{"a":2}"#);
        check(tampered_payload, &public, "none of the 1 signature(s)");
        let mut tampered_type = envelope.clone();
        tampered_type.payload_type = "application/json".to_owned();
        check(tampered_type, &public, "none of the 1 signature(s)");
        let mut garbage_sig = envelope.clone();
        garbage_sig.signatures[0].sig = "!!!".to_owned();
        check(garbage_sig, &public, "none of the 1 signature(s)");
        let mut unsigned = envelope.clone();
        unsigned.signatures.clear();
        check(unsigned, &public, "has no signatures");
        let mut bad_payload = envelope.clone();
        bad_payload.payload = "%%%".to_owned();
        check(bad_payload, &public, "not valid base64");
        check(
            envelope.clone(),
            &SigningKey::generate().unwrap().verifying_key(),
            "none of the 1 signature(s)",
        );

        let wrong_type = verify_typed(&envelope, &public, "text/plain").unwrap_err();
        assert!(matches!(
            wrong_type,
            DsseError::UnexpectedPayloadType { .. }
        ));
        assert!(matches!(
            Envelope::from_json(b"{\"payload\":1}"),
            Err(DsseError::Json { .. })
        ));
    }

    #[test]
    fn url_safe_unpadded_envelopes_verify() {
        let key = vector_key();
        let mut envelope = sign(INTOTO_PAYLOAD_TYPE, &[0xfb, 0xff, 0xfe], &key);
        envelope.payload = envelope
            .payload
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_owned();
        envelope.signatures[0].sig = envelope.signatures[0]
            .sig
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_owned();
        assert_eq!(
            verify(&envelope, &key.verifying_key()).unwrap(),
            vec![0xfb, 0xff, 0xfe]
        );
    }

    #[test]
    fn securesystemslib_verifies_our_envelope() {
        test_support::require_module("securesystemslib");
        let key = SigningKey::generate().unwrap();
        let envelope = sign_with_keyid(
            INTOTO_PAYLOAD_TYPE,
            br#"{"_type":"x"}"#,
            &key,
            "securebuild-test",
        );
        let script = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
public = load_pem_public_key(sys.argv[1].encode())
key = SSlibKey.from_crypto(public, keyid="securebuild-test", scheme="ecdsa-sha2-nistp256")
envelope = Envelope.from_dict(json.loads(sys.stdin.read()))
envelope.verify([key], 1)
assert envelope.payload_type == "application/vnd.in-toto+json"
sys.stdout.write(envelope.payload.decode())
"#;
        let public_pem = key.verifying_key().to_pem().unwrap();
        let payload = test_support::run_python(script, &[&public_pem], &envelope.to_json());
        assert_eq!(payload, r#"{"_type":"x"}"#);
    }
}
