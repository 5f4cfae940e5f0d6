//! in-toto attestation Statement v1: the subject list binding a predicate to image digests, and
//! its DSSE signing; it does not define predicates (see `provenance` and the SBOM modules).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dsse::{self, DsseError, Envelope, INTOTO_PAYLOAD_TYPE};
use super::keys::{SigningKey, VerifyingKey};
use super::{InvalidDigest, sha256_hex};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of the earlier in-toto Statement v0.1, accepted when opening.
pub const STATEMENT_TYPE_V01: &str = "https://in-toto.io/Statement/v0.1";
/// Digest-set key of a SHA-256 digest.
pub const DIGEST_SHA256: &str = "sha256";
/// Digest-set key of a SHA-1 digest.
pub const DIGEST_SHA1: &str = "sha1";

/// A map from algorithm name to lowercase hexadecimal digest, ordered by algorithm.
pub type DigestSet = BTreeMap<String, String>;

/// Errors building or opening a statement.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// A subject digest is malformed.
    #[error("statement subject {name:?}")]
    SubjectDigest {
        /// Subject name.
        name: String,
        /// The digest problem.
        source: InvalidDigest,
    },
    /// The statement has no subject.
    #[error("an in-toto statement needs at least one subject")]
    NoSubjects,
    /// The envelope does not verify.
    #[error(transparent)]
    Envelope(#[from] DsseError),
    /// The verified payload is not a Statement.
    #[error("attestation payload is not an in-toto statement")]
    Json {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The payload's `_type` is not Statement v1 (or the v0.1 cosign may still write).
    #[error("unsupported statement type {found:?}")]
    UnsupportedType {
        /// The `_type` found.
        found: String,
    },
    /// The statement does not name the expected image digest among its subjects.
    #[error("statement subjects do not include digest {digest}")]
    SubjectMismatch {
        /// The digest looked for.
        digest: String,
    },
    /// The predicate type is not the expected one.
    #[error("statement predicate type is {found:?}, expected {expected:?}")]
    PredicateTypeMismatch {
        /// Predicate type found.
        found: String,
        /// Predicate type required.
        expected: String,
    },
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE_V1`] for statements built here.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts the predicate is about.
    pub subject: Vec<Subject>,
    /// URI identifying the predicate's schema.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate itself.
    pub predicate: serde_json::Value,
}

/// One artifact a statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Artifact name; for images the repository, as cosign writes it.
    pub name: String,
    /// Digests of the artifact.
    pub digest: DigestSet,
}

impl Subject {
    /// The subject for an image manifest `digest` (`sha256:<hex>`) in `repository`.
    pub fn image(repository: &str, digest: &str) -> Result<Self, StatementError> {
        let hex = sha256_hex(digest).map_err(|source| StatementError::SubjectDigest {
            name: repository.to_owned(),
            source,
        })?;
        Ok(Self {
            name: repository.to_owned(),
            digest: BTreeMap::from([(DIGEST_SHA256.to_owned(), hex.to_owned())]),
        })
    }
}

impl Statement {
    /// A Statement v1 about `subjects` carrying `predicate` of type `predicate_type`.
    pub fn new(
        subjects: Vec<Subject>,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Result<Self, StatementError> {
        if subjects.is_empty() {
            return Err(StatementError::NoSubjects);
        }
        Ok(Self {
            statement_type: STATEMENT_TYPE_V1.to_owned(),
            subject: subjects,
            predicate_type: predicate_type.to_owned(),
            predicate,
        })
    }

    /// Whether a subject has the SHA-256 digest `hex` (lowercase, without `sha256:`).
    pub fn is_about(&self, hex: &str) -> bool {
        self.subject
            .iter()
            .any(|subject| subject.digest.get(DIGEST_SHA256).is_some_and(|d| d == hex))
    }

    /// The compact JSON serialization (the DSSE payload).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, maps and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Signs this statement into a DSSE envelope of type `application/vnd.in-toto+json`.
    pub fn sign(&self, key: &SigningKey) -> Envelope {
        dsse::sign(INTOTO_PAYLOAD_TYPE, &self.to_json(), key)
    }

    /// Verifies `envelope` with `key` and returns the statement, checking that it is about
    /// `digest` and carries `predicate_type`.
    pub fn open(
        envelope: &Envelope,
        key: &VerifyingKey,
        digest: &str,
        predicate_type: &str,
    ) -> Result<Self, StatementError> {
        let payload = dsse::verify_typed(envelope, key, INTOTO_PAYLOAD_TYPE)?;
        let statement: Self =
            serde_json::from_slice(&payload).map_err(|source| StatementError::Json { source })?;
        if statement.statement_type != STATEMENT_TYPE_V1
            && statement.statement_type != STATEMENT_TYPE_V01
        {
            return Err(StatementError::UnsupportedType {
                found: statement.statement_type,
            });
        }
        let hex = sha256_hex(digest).map_err(|source| StatementError::SubjectDigest {
            name: String::new(),
            source,
        })?;
        if !statement.is_about(hex) {
            return Err(StatementError::SubjectMismatch {
                digest: digest.to_owned(),
            });
        }
        if statement.predicate_type != predicate_type {
            return Err(StatementError::PredicateTypeMismatch {
                found: statement.predicate_type,
                expected: predicate_type.to_owned(),
            });
        }
        Ok(statement)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn serializes_statement_v1() {
        let subject = Subject::image("registry.example/app", DIGEST).unwrap();
        let statement = Statement::new(
            vec![subject],
            "https://example/p",
            serde_json::json!({"k": "v"}),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(statement.to_json()).unwrap(),
            r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app","digest":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}],"predicateType":"https://example/p","predicate":{"k":"v"}}"#
        );
    }

    #[test]
    fn rejects_bad_subjects() {
        assert!(matches!(
            Subject::image("r", "sha256:xyz"),
            Err(StatementError::SubjectDigest { .. })
        ));
        assert!(matches!(
            Statement::new(vec![], "t", serde_json::Value::Null),
            Err(StatementError::NoSubjects)
        ));
    }

    #[test]
    fn sign_and_open() {
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let subject = Subject::image("registry.example/app", DIGEST).unwrap();
        let statement =
            Statement::new(vec![subject], "https://example/p", serde_json::json!({})).unwrap();
        let envelope = statement.sign(&key);
        assert_eq!(envelope.payload_type, INTOTO_PAYLOAD_TYPE);
        assert_eq!(
            Statement::open(&envelope, &public, DIGEST, "https://example/p").unwrap(),
            statement
        );

        fn check(result: Result<Statement, StatementError>, expected: &str) {
            let error = result.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let other = DIGEST.replace("0123", "aaaa");
        check(
            Statement::open(&envelope, &public, &other, "https://example/p"),
            "do not include digest",
        );
        check(
            Statement::open(&envelope, &public, DIGEST, "https://other"),
            "predicate type is",
        );
        let stranger = SigningKey::generate().unwrap().verifying_key();
        check(
            Statement::open(&envelope, &stranger, DIGEST, "https://example/p"),
            "none of the 1 signature(s)",
        );
        let not_statement = dsse::sign(INTOTO_PAYLOAD_TYPE, b"[]", &key);
        check(
            Statement::open(&not_statement, &public, DIGEST, "https://example/p"),
            "not an in-toto statement",
        );
    }
}
