//! Everything `securebuild verify` checks about an image in a registry, with a cosign public key:
//! the simple-signing signatures under `sha256-<hex>.sig` and, when asked, the DSSE-wrapped
//! in-toto attestations under `sha256-<hex>.att`.
//!
//! As `cosign verify --key`, a signature layer counts when its base64 DER signature verifies over
//! the payload blob and the payload names the image digest; at least one such layer is required
//! and layers that fail are reported, not fatal. As in cosign, the payload's `docker-reference`
//! is not compared with the name the image was asked for: the signed digest is what vouches for
//! the content, so an image verifies under any name that serves it (a mirror, or a proxy's
//! vanity name), and the report shows the reference that was signed. An attestation
//! counts when its envelope verifies, its statement names the digest among its subjects and its
//! (signed) predicate type is the one asked for. It does not check certificates, transparency
//! log bundles or timestamps (keyless signing is out of scope), and it reads keys from no file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::cosign::{
    self, CosignError, DSSE_ENVELOPE_MEDIA_TYPE, Descriptor, Manifest, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE, attestation_tag, signature_tag,
};
use super::cyclonedx::CYCLONEDX_PREDICATE_TYPE;
use super::dsse::{self, DsseError, Envelope, INTOTO_PAYLOAD_TYPE, MAX_ENVELOPE_LEN};
use super::intoto::{DIGEST_SHA256, STATEMENT_TYPE_V01, STATEMENT_TYPE_V1, Statement};
use super::keys::VerifyingKey;
use super::provenance::SLSA_PROVENANCE_V1;
use super::publish::{ResolveError, SignatureStore, StoreError, StoreOperation, resolve_digest};
use super::sbom::SPDX_PREDICATE_TYPE;
use super::{sha256_digest, sha256_hex};

/// Largest simple-signing payload fetched (real payloads are a few hundred bytes).
pub const MAX_PAYLOAD_LEN: u64 = 1024 * 1024;
/// Most layers examined in one signature or attestation manifest.
pub const MAX_LAYERS: usize = 1000;
/// `in-toto` statement `_type` values accepted (v1, and the v0.1 older cosign releases write).
const STATEMENT_TYPES: [&str; 2] = [STATEMENT_TYPE_V1, STATEMENT_TYPE_V01];

/// The attestation kinds `verify --attestation` accepts, named as cosign's `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttestationType {
    /// SLSA provenance v1 (`slsaprovenance`, also `slsaprovenance1`).
    SlsaProvenance,
    /// SPDX SBOM (`spdx`, also `spdxjson`).
    Spdx,
    /// CycloneDX SBOM (`cyclonedx`).
    CycloneDx,
}

/// The names [`AttestationType`] parses from, and what they mean.
const ATTESTATION_TYPE_NAMES: [(&str, AttestationType); 5] = [
    ("slsaprovenance", AttestationType::SlsaProvenance),
    ("slsaprovenance1", AttestationType::SlsaProvenance),
    ("spdx", AttestationType::Spdx),
    ("spdxjson", AttestationType::Spdx),
    ("cyclonedx", AttestationType::CycloneDx),
];

impl AttestationType {
    /// The in-toto predicate type an attestation of this kind carries.
    pub fn predicate_type(self) -> &'static str {
        match self {
            Self::SlsaProvenance => SLSA_PROVENANCE_V1,
            Self::Spdx => SPDX_PREDICATE_TYPE,
            Self::CycloneDx => CYCLONEDX_PREDICATE_TYPE,
        }
    }

    /// The canonical name (`slsaprovenance`, `spdx`, `cyclonedx`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SlsaProvenance => "slsaprovenance",
            Self::Spdx => "spdx",
            Self::CycloneDx => "cyclonedx",
        }
    }
}

impl std::str::FromStr for AttestationType {
    type Err = VerifyError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ATTESTATION_TYPE_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| VerifyError::UnknownAttestationType {
                name: name.to_owned(),
            })
    }
}

impl std::fmt::Display for AttestationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A registry call failed.
    #[error("{operation} {target}")]
    Store {
        /// What was being done.
        operation: StoreOperation,
        /// The reference involved.
        target: String,
        /// The registry's error.
        #[source]
        error: StoreError,
    },
    /// The image reference cannot be resolved to a digest.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The image has no signature manifest.
    #[error("no signatures found for {image}: tag {tag} does not exist")]
    NoSignatures {
        /// `repository@digest`.
        image: String,
        /// The signature tag looked up.
        tag: String,
    },
    /// The image has no attestation manifest.
    #[error("no attestations found for {image}: tag {tag} does not exist")]
    NoAttestations {
        /// `repository@digest`.
        image: String,
        /// The attestation tag looked up.
        tag: String,
    },
    /// The signature or attestation manifest cannot be read.
    #[error("malformed manifest {reference}")]
    Manifest {
        /// `repository:tag`.
        reference: String,
        /// What is wrong with it.
        source: CosignError,
    },
    /// The signature or attestation manifest has more layers than are examined.
    #[error("manifest {reference} has {count} layers, more than the {max} examined")]
    TooManyLayers {
        /// `repository:tag`.
        reference: String,
        /// Layers found.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// No signature layer verified.
    #[error("no valid signature for {image} with the given key: {}", describe(.rejected))]
    NoValidSignature {
        /// `repository@digest`.
        image: String,
        /// Every layer and why it failed.
        rejected: Vec<RejectedLayer>,
    },
    /// No attestation of the requested type verified.
    #[error(
        "no valid {predicate_type} attestation for {image} with the given key (valid predicate types: {}): {}",
        list_or_none(.found), describe(.rejected)
    )]
    MissingAttestation {
        /// `repository@digest`.
        image: String,
        /// The predicate type required.
        predicate_type: String,
        /// Predicate types of the attestations that did verify.
        found: Vec<String>,
        /// Attestation layers that failed and why.
        rejected: Vec<RejectedLayer>,
    },
    /// An attestation type name is not known.
    #[error(
        "unknown attestation type {name:?}: expected slsaprovenance, slsaprovenance1, spdx, spdxjson or cyclonedx"
    )]
    UnknownAttestationType {
        /// The rejected name.
        name: String,
    },
}

/// Why one signature or attestation layer does not count.
#[derive(Debug, thiserror::Error)]
pub enum LayerFailure {
    /// The layer has another media type than expected.
    #[error("media type {found:?} is not {expected:?}")]
    MediaType {
        /// Media type found.
        found: String,
        /// Media type expected.
        expected: &'static str,
    },
    /// A signature layer without the signature annotation.
    #[error("no {SIGNATURE_ANNOTATION} annotation")]
    MissingSignature,
    /// The layer is larger than accepted.
    #[error("layer of {size} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// The blob could not be fetched.
    #[error("cannot fetch the blob")]
    Fetch {
        /// The registry's error.
        #[source]
        error: StoreError,
    },
    /// The blob's content does not match its descriptor.
    #[error("blob content is {found} ({len} bytes), not the {expected} the manifest names")]
    BlobMismatch {
        /// Digest of the bytes received.
        found: String,
        /// Length received.
        len: usize,
        /// Digest in the descriptor.
        expected: String,
    },
    /// The simple-signing signature or its claims do not verify.
    #[error("simple-signing payload")]
    Signature {
        /// What failed.
        source: CosignError,
    },
    /// The DSSE envelope does not parse or verify.
    #[error("dsse envelope")]
    Envelope {
        /// What failed.
        source: DsseError,
    },
    /// The verified payload is not an in-toto statement.
    #[error("envelope payload is not an in-toto statement")]
    StatementJson {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The statement's `_type` is not supported.
    #[error("unsupported statement type {found:?}")]
    StatementType {
        /// The `_type` found.
        found: String,
    },
    /// The statement is about other artifacts.
    #[error("statement subjects ({}) do not include {digest}", list_or_none(.subjects))]
    Subject {
        /// The digest looked for.
        digest: String,
        /// The subjects found, `name@sha256:<hex>`.
        subjects: Vec<String>,
    },
}

/// A layer that did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLayer {
    /// Position in the manifest, from 1.
    pub position: usize,
    /// Layer digest.
    pub digest: String,
    /// Why it failed.
    pub reason: String,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSignature {
    /// Layer (payload) digest.
    pub layer: String,
    /// The reference that was signed (the payload's `docker-reference`), as it is: it is not
    /// compared with the name the image was asked for.
    pub docker_reference: String,
    /// The payload's `optional` claims (annotations given when signing).
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// An attestation that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedAttestation {
    /// Layer (envelope) digest.
    pub layer: String,
    /// The statement's (signed) predicate type.
    pub predicate_type: String,
    /// The statement's subjects, `name@sha256:<hex>`.
    pub subjects: Vec<String>,
}

/// What [`verify_image`] verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationReport {
    /// The repository.
    pub repository: String,
    /// The verified manifest digest.
    pub digest: String,
    /// `repository:sha256-<hex>.sig`.
    pub signature_manifest: String,
    /// Signatures that verified (at least one).
    pub signatures: Vec<VerifiedSignature>,
    /// Signature layers that did not verify.
    pub rejected_signatures: Vec<RejectedLayer>,
    /// `repository:sha256-<hex>.att`, when attestations were checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_manifest: Option<String>,
    /// Attestations that verified, of any predicate type.
    pub attestations: Vec<VerifiedAttestation>,
    /// Attestation layers that did not verify.
    pub rejected_attestations: Vec<RejectedLayer>,
}

impl VerificationReport {
    /// A human-readable account, one fact per line, in a fixed order.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "verified {}@{}", self.repository, self.digest);
        let _ = writeln!(
            text,
            "signatures: {} valid of {} in {}",
            self.signatures.len(),
            self.signatures.len() + self.rejected_signatures.len(),
            self.signature_manifest
        );
        for signature in &self.signatures {
            let _ = write!(
                text,
                "  signature {} docker-reference={}",
                signature.layer, signature.docker_reference
            );
            for (key, value) in &signature.annotations {
                let _ = match value {
                    serde_json::Value::String(value) => write!(text, " {key}={value}"),
                    other => write!(text, " {key}={other}"),
                };
            }
            text.push('\n');
        }
        for rejected in &self.rejected_signatures {
            let _ = writeln!(
                text,
                "  ignored signature {} (layer {}): {}",
                rejected.digest, rejected.position, rejected.reason
            );
        }
        if let Some(manifest) = &self.attestation_manifest {
            let _ = writeln!(
                text,
                "attestations: {} valid of {} in {manifest}",
                self.attestations.len(),
                self.attestations.len() + self.rejected_attestations.len()
            );
            for attestation in &self.attestations {
                let _ = writeln!(
                    text,
                    "  attestation {} predicateType={} subjects={}",
                    attestation.layer,
                    attestation.predicate_type,
                    attestation.subjects.join(",")
                );
            }
            for rejected in &self.rejected_attestations {
                let _ = writeln!(
                    text,
                    "  ignored attestation {} (layer {}): {}",
                    rejected.digest, rejected.position, rejected.reason
                );
            }
        }
        text
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing strings, vectors and JSON values cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Verifies the image `reference` (a tag or a `sha256:` digest) in `repository` with `key`: the
/// reference is resolved to its manifest digest, at least one signature must verify, and for
/// each of `attestations` at least one attestation of that kind must verify.
pub async fn verify_image<S: SignatureStore>(
    store: &S,
    repository: &str,
    reference: &str,
    key: &VerifyingKey,
    attestations: &[AttestationType],
) -> Result<VerificationReport, VerifyError> {
    let digest = resolve_digest(store, repository, reference).await?;
    let image = format!("{repository}@{digest}");

    let sig_tag = signature_tag(&digest).map_err(|source| VerifyError::Manifest {
        reference: image.clone(),
        source,
    })?;
    let (signature_manifest, layers) = read_manifest(store, repository, &sig_tag)
        .await?
        .ok_or_else(|| VerifyError::NoSignatures {
            image: image.clone(),
            tag: sig_tag.clone(),
        })?;
    let mut signatures = Vec::new();
    let mut rejected_signatures = Vec::new();
    for (position, descriptor) in layers.iter().enumerate() {
        match check_signature(store, repository, &digest, key, descriptor).await {
            Ok(signature) => signatures.push(signature),
            Err(failure) => rejected_signatures.push(reject(position, descriptor, &failure)),
        }
    }
    if signatures.is_empty() {
        return Err(VerifyError::NoValidSignature {
            image,
            rejected: rejected_signatures,
        });
    }

    let mut report = VerificationReport {
        repository: repository.to_owned(),
        digest: digest.clone(),
        signature_manifest,
        signatures,
        rejected_signatures,
        attestation_manifest: None,
        attestations: Vec::new(),
        rejected_attestations: Vec::new(),
    };
    if attestations.is_empty() {
        return Ok(report);
    }

    let att_tag = attestation_tag(&digest).map_err(|source| VerifyError::Manifest {
        reference: image.clone(),
        source,
    })?;
    let (attestation_manifest, layers) = read_manifest(store, repository, &att_tag)
        .await?
        .ok_or_else(|| VerifyError::NoAttestations {
            image: image.clone(),
            tag: att_tag.clone(),
        })?;
    for (position, descriptor) in layers.iter().enumerate() {
        match check_attestation(store, repository, &digest, key, descriptor).await {
            Ok(attestation) => report.attestations.push(attestation),
            Err(failure) => report
                .rejected_attestations
                .push(reject(position, descriptor, &failure)),
        }
    }
    report.attestation_manifest = Some(attestation_manifest);
    for kind in attestations {
        let wanted = kind.predicate_type();
        if !report
            .attestations
            .iter()
            .any(|attestation| attestation.predicate_type == wanted)
        {
            let mut found: Vec<String> = report
                .attestations
                .iter()
                .map(|attestation| attestation.predicate_type.clone())
                .collect();
            found.sort();
            found.dedup();
            return Err(VerifyError::MissingAttestation {
                image,
                predicate_type: wanted.to_owned(),
                found,
                rejected: report.rejected_attestations,
            });
        }
    }
    Ok(report)
}

/// The layers of the manifest under `tag` with its `repository:tag` name, `None` when the tag
/// does not exist.
async fn read_manifest<S: SignatureStore>(
    store: &S,
    repository: &str,
    tag: &str,
) -> Result<Option<(String, Vec<Descriptor>)>, VerifyError> {
    let reference = format!("{repository}:{tag}");
    let digest = store
        .tag_digest(repository, tag)
        .await
        .map_err(|source| VerifyError::Store {
            operation: StoreOperation::ResolveTag,
            target: reference.clone(),
            error: Box::new(source),
        })?;
    let Some(digest) = digest else {
        return Ok(None);
    };
    let fetched = store
        .fetch_manifest(repository, &digest)
        .await
        .map_err(|source| VerifyError::Store {
            operation: StoreOperation::FetchManifest,
            target: format!("{repository}@{digest}"),
            error: Box::new(source),
        })?;
    let manifest = Manifest::from_json(&fetched.bytes).map_err(|source| VerifyError::Manifest {
        reference: reference.clone(),
        source,
    })?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(VerifyError::TooManyLayers {
            reference,
            count: manifest.layers.len(),
            max: MAX_LAYERS,
        });
    }
    Ok(Some((reference, manifest.layers)))
}

/// Checks one signature layer.
async fn check_signature<S: SignatureStore>(
    store: &S,
    repository: &str,
    digest: &str,
    key: &VerifyingKey,
    descriptor: &Descriptor,
) -> Result<VerifiedSignature, LayerFailure> {
    if descriptor.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
        return Err(LayerFailure::MediaType {
            found: descriptor.media_type.clone(),
            expected: SIMPLE_SIGNING_MEDIA_TYPE,
        });
    }
    let signature = descriptor
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(SIGNATURE_ANNOTATION))
        .filter(|signature| !signature.is_empty())
        .ok_or(LayerFailure::MissingSignature)?;
    let payload = fetch_layer(store, repository, descriptor, MAX_PAYLOAD_LEN).await?;
    let parsed = cosign::verify_simple_signing(&payload, signature, key, digest)
        .map_err(|source| LayerFailure::Signature { source })?;
    Ok(VerifiedSignature {
        layer: descriptor.digest.clone(),
        docker_reference: parsed.critical.identity.docker_reference,
        annotations: parsed.optional.unwrap_or_default(),
    })
}

/// Checks one attestation layer (of any predicate type).
async fn check_attestation<S: SignatureStore>(
    store: &S,
    repository: &str,
    digest: &str,
    key: &VerifyingKey,
    descriptor: &Descriptor,
) -> Result<VerifiedAttestation, LayerFailure> {
    if descriptor.media_type != DSSE_ENVELOPE_MEDIA_TYPE {
        return Err(LayerFailure::MediaType {
            found: descriptor.media_type.clone(),
            expected: DSSE_ENVELOPE_MEDIA_TYPE,
        });
    }
    let bytes = fetch_layer(store, repository, descriptor, MAX_ENVELOPE_LEN as u64).await?;
    let envelope =
        Envelope::from_json(&bytes).map_err(|source| LayerFailure::Envelope { source })?;
    let payload = dsse::verify_typed(&envelope, key, INTOTO_PAYLOAD_TYPE)
        .map_err(|source| LayerFailure::Envelope { source })?;
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|source| LayerFailure::StatementJson { source })?;
    if !STATEMENT_TYPES.contains(&statement.statement_type.as_str()) {
        return Err(LayerFailure::StatementType {
            found: statement.statement_type,
        });
    }
    let subjects: Vec<String> = statement
        .subject
        .iter()
        .map(|subject| match subject.digest.get(DIGEST_SHA256) {
            Some(hex) => format!("{}@sha256:{hex}", subject.name),
            None => subject.name.clone(),
        })
        .collect();
    if !statement.is_about(sha256_hex(digest).unwrap_or_default()) {
        return Err(LayerFailure::Subject {
            digest: digest.to_owned(),
            subjects,
        });
    }
    Ok(VerifiedAttestation {
        layer: descriptor.digest.clone(),
        predicate_type: statement.predicate_type,
        subjects,
    })
}

/// Fetches a layer blob after checking its declared size, and checks it against its descriptor.
async fn fetch_layer<S: SignatureStore>(
    store: &S,
    repository: &str,
    descriptor: &Descriptor,
    max: u64,
) -> Result<Vec<u8>, LayerFailure> {
    if descriptor.size > max {
        return Err(LayerFailure::TooLarge {
            size: descriptor.size,
            max,
        });
    }
    let bytes = store
        .fetch_blob(repository, &descriptor.digest)
        .await
        .map_err(|source| LayerFailure::Fetch {
            error: Box::new(source),
        })?;
    let found = sha256_digest(&bytes);
    if found != descriptor.digest || bytes.len() as u64 != descriptor.size {
        return Err(LayerFailure::BlobMismatch {
            found,
            len: bytes.len(),
            expected: descriptor.digest.clone(),
        });
    }
    Ok(bytes)
}

/// A rejected layer record.
fn reject(position: usize, descriptor: &Descriptor, failure: &LayerFailure) -> RejectedLayer {
    RejectedLayer {
        position: position + 1,
        digest: descriptor.digest.clone(),
        reason: crate::error::chain(failure),
    }
}

/// `layer 1 (sha256:…): reason; layer 2 …`, or `the manifest has no layers`.
fn describe(rejected: &[RejectedLayer]) -> String {
    if rejected.is_empty() {
        return "the manifest has no layers".to_owned();
    }
    rejected
        .iter()
        .map(|layer| {
            format!(
                "layer {} ({}): {}",
                layer.position, layer.digest, layer.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The items joined with `, `, or `none`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::attest::cosign::{MergeOutcome, SignatureLayer, merge_layer};
    use crate::attest::intoto::Subject;
    use crate::attest::keys::SigningKey;
    use crate::attest::publish::tests::{
        AMD_DIGEST, DIGEST, MemoryStore, REPO, block_on, build_sboms, provenance_inputs, published,
    };
    use crate::attest::publish::{attach_attestation, attest_build, sign_image};

    /// A store holding an image manifest under `latest` whose digest is returned.
    fn store_with_image() -> (MemoryStore, String) {
        let store = MemoryStore::default();
        let digest = store.put_manifest(REPO, "latest", br#"{"schemaVersion":2}"#);
        (store, digest)
    }

    fn verify(
        store: &MemoryStore,
        reference: &str,
        key: &VerifyingKey,
        attestations: &[AttestationType],
    ) -> Result<VerificationReport, VerifyError> {
        block_on(verify_image(store, REPO, reference, key, attestations))
    }

    /// Replaces the signature manifest of `digest` with one holding exactly `layers`.
    fn put_signature_layers(store: &MemoryStore, digest: &str, layers: &[SignatureLayer]) {
        let mut manifest = None;
        for layer in layers {
            store.put_blob(&layer.payload);
            let MergeOutcome::Appended(image) = merge_layer(manifest.as_ref(), layer) else {
                panic!("duplicate layer")
            };
            store.put_blob(&image.config_json);
            manifest = Some(image.manifest);
        }
        let manifest = manifest.unwrap();
        store.put_manifest(REPO, &signature_tag(digest).unwrap(), &manifest.to_json());
    }

    #[test]
    fn verifies_by_tag_and_by_digest() {
        let (store, digest) = store_with_image();
        let key = SigningKey::generate().unwrap();
        let annotations = BTreeMap::from([("ci".to_owned(), "true".to_owned())]);
        block_on(sign_image(&store, REPO, &digest, &key, Some(&annotations))).unwrap();
        for reference in ["latest", digest.as_str()] {
            let report = verify(&store, reference, &key.verifying_key(), &[]).unwrap();
            assert_eq!(report.digest, digest);
            assert_eq!(report.signatures.len(), 1);
            assert_eq!(report.signatures[0].docker_reference, REPO);
            assert_eq!(report.signatures[0].annotations["ci"], "true");
            assert!(report.rejected_signatures.is_empty());
            assert_eq!(report.attestation_manifest, None);
            let text = report.to_text();
            assert!(
                text.starts_with(&format!(
                    "verified {REPO}@{digest}\nsignatures: 1 valid of 1 in {REPO}:sha256-"
                )),
                "{text}"
            );
            assert!(text.contains("docker-reference=registry.example/team/app ci=true\n"));
        }
    }

    #[test]
    fn counts_every_valid_signer_and_ignores_other_keys() {
        let (store, digest) = store_with_image();
        let first = SigningKey::generate().unwrap();
        let second = SigningKey::generate().unwrap();
        block_on(sign_image(&store, REPO, &digest, &first, None)).unwrap();
        block_on(sign_image(&store, REPO, &digest, &second, None)).unwrap();
        let report = verify(&store, "latest", &second.verifying_key(), &[]).unwrap();
        assert_eq!(report.signatures.len(), 1);
        assert_eq!(report.rejected_signatures.len(), 1);
        assert_eq!(report.rejected_signatures[0].position, 1);
        assert!(
            report.rejected_signatures[0]
                .reason
                .contains("does not verify"),
            "{:?}",
            report.rejected_signatures
        );
        assert!(report.to_text().contains("signatures: 1 valid of 2"));
    }

    fn check_rejected(store: &MemoryStore, reference: &str, key: &VerifyingKey, expected: &str) {
        let error = verify(store, reference, key, &[]).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "expected {expected:?} in: {error}"
        );
    }

    #[test]
    fn signature_failures_name_what_failed() {
        let (store, digest) = store_with_image();
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let stranger = SigningKey::generate().unwrap().verifying_key();

        check_rejected(&store, "latest", &public, "no signatures found for");
        check_rejected(
            &store,
            "missing",
            &public,
            "fetching manifest registry.example/team/app:missing",
        );

        block_on(sign_image(&store, REPO, &digest, &key, None)).unwrap();
        check_rejected(
            &store,
            "latest",
            &stranger,
            "no valid signature for registry.example/team/app@sha256:",
        );
        check_rejected(
            &store,
            "latest",
            &stranger,
            "signature does not verify with the public key",
        );

        let genuine = SignatureLayer::sign_image(&key, REPO, &digest, None).unwrap();
        // Payload altered, signature kept.
        let mut tampered = genuine.clone();
        tampered.payload = String::from_utf8(genuine.payload.clone())
            .unwrap()
            .replace("team/app", "team/ap2")
            .into_bytes();
        put_signature_layers(&store, &digest, &[tampered]);
        check_rejected(&store, "latest", &public, "layer 1 (sha256:");
        check_rejected(&store, "latest", &public, "signature does not verify");

        // Signature altered.
        let mut forged = genuine.clone();
        forged.annotations.insert(
            SIGNATURE_ANNOTATION.to_owned(),
            cosign_b64(&SigningKey::generate().unwrap().sign(&genuine.payload)),
        );
        put_signature_layers(&store, &digest, &[forged]);
        check_rejected(&store, "latest", &public, "signature does not verify");

        // A valid signature for another image copied over.
        let other = SignatureLayer::sign_image(&key, REPO, AMD_DIGEST, None).unwrap();
        put_signature_layers(&store, &digest, &[other]);
        check_rejected(
            &store,
            "latest",
            &public,
            "signature payload is for sha256:2222",
        );

        // A valid signature of this digest made under another name (the image as pushed
        // upstream, asked for through a mirror) verifies, and the report names what was signed.
        let elsewhere =
            SignatureLayer::sign_image(&key, "registry.example/other", &digest, None).unwrap();
        put_signature_layers(&store, &digest, &[elsewhere]);
        let report = verify(&store, "latest", &public, &[]).unwrap();
        assert_eq!(
            report.signatures[0].docker_reference,
            "registry.example/other"
        );
        assert!(
            report
                .to_text()
                .contains("docker-reference=registry.example/other")
        );

        // An attestation-shaped layer in the signature manifest.
        let envelope = dsse::sign(INTOTO_PAYLOAD_TYPE, b"{}", &key);
        put_signature_layers(
            &store,
            &digest,
            &[SignatureLayer::attestation(&envelope, SPDX_PREDICATE_TYPE)],
        );
        check_rejected(
            &store,
            "latest",
            &public,
            "media type \"application/vnd.dsse.envelope.v1+json\"",
        );

        // Unsigned layer.
        let mut unsigned = genuine.clone();
        unsigned.annotations.clear();
        put_signature_layers(&store, &digest, &[unsigned]);
        check_rejected(
            &store,
            "latest",
            &public,
            "no dev.cosignproject.cosign/signature annotation",
        );

        // Blob replaced in the store behind the manifest's back.
        put_signature_layers(&store, &digest, std::slice::from_ref(&genuine));
        store
            .state
            .lock()
            .unwrap()
            .blobs
            .insert(sha256_digest(&genuine.payload), b"{}".to_vec());
        check_rejected(&store, "latest", &public, "blob content is sha256:44136fa3");

        // Garbage manifest.
        store.put_manifest(REPO, &signature_tag(&digest).unwrap(), b"[1]");
        check_rejected(
            &store,
            "latest",
            &public,
            "malformed manifest registry.example/team/app:sha256-",
        );
    }

    fn cosign_b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_valid_signature_among_invalid_ones_is_enough() {
        let (store, digest) = store_with_image();
        let key = SigningKey::generate().unwrap();
        let genuine = SignatureLayer::sign_image(&key, REPO, &digest, None).unwrap();
        let mut forged = genuine.clone();
        forged.annotations.insert(
            SIGNATURE_ANNOTATION.to_owned(),
            cosign_b64(&SigningKey::generate().unwrap().sign(&genuine.payload)),
        );
        put_signature_layers(&store, &digest, &[forged, genuine]);
        let report = verify(&store, "latest", &key.verifying_key(), &[]).unwrap();
        assert_eq!(report.signatures.len(), 1);
        assert_eq!(report.rejected_signatures.len(), 1);
        assert!(report.to_text().contains("ignored signature sha256:"));
    }

    #[test]
    fn attestation_types_parse_like_cosign() {
        fn check(name: &str, expected: Option<&str>) {
            let parsed = name.parse::<AttestationType>().ok();
            assert_eq!(
                parsed.map(AttestationType::predicate_type),
                expected,
                "{name}"
            );
        }
        check("slsaprovenance", Some("https://slsa.dev/provenance/v1"));
        check("slsaprovenance1", Some("https://slsa.dev/provenance/v1"));
        check("spdx", Some("https://spdx.dev/Document"));
        check("spdxjson", Some("https://spdx.dev/Document"));
        check("cyclonedx", Some("https://cyclonedx.org/bom"));
        check("SPDX", None);
        check("custom", None);
        check("", None);
        let error = "vuln".parse::<AttestationType>().unwrap_err().to_string();
        assert!(
            error.contains("unknown attestation type \"vuln\""),
            "{error}"
        );
    }

    #[test]
    fn verifies_build_attestations() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let image = published();
        // The index manifest itself.
        let index_bytes = br#"{"schemaVersion":2,"manifests":[]}"#;
        let index_digest = store.put_manifest(REPO, "latest", index_bytes);
        let image = crate::attest::publish::PublishedImage {
            digest: index_digest.clone(),
            ..image
        };
        store.put_manifest(REPO, "amd64", b"amd64");
        let amd = sha256_digest(b"amd64");
        let image = crate::attest::publish::PublishedImage {
            platforms: vec![crate::attest::publish::PublishedPlatform {
                arch: "amd64".to_owned(),
                digest: amd.clone(),
            }],
            ..image
        };
        let mut sboms = build_sboms();
        sboms.images.truncate(1);
        sboms.images[0].image.digest = amd.clone();
        block_on(attest_build(
            &store,
            &image,
            &key,
            Some(&provenance_inputs()),
            Some(&sboms),
        ))
        .unwrap();
        let public = key.verifying_key();
        let report = verify(
            &store,
            "latest",
            &public,
            &[AttestationType::SlsaProvenance, AttestationType::Spdx],
        )
        .unwrap();
        let types: Vec<&str> = report
            .attestations
            .iter()
            .map(|a| a.predicate_type.as_str())
            .collect();
        assert_eq!(types, [SLSA_PROVENANCE_V1, SPDX_PREDICATE_TYPE]);
        assert_eq!(
            report.attestations[0].subjects,
            [format!("{REPO}@{index_digest}")]
        );
        let text = report.to_text();
        assert!(
            text.contains("attestations: 2 valid of 2 in registry.example/team/app:sha256-"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "predicateType=https://slsa.dev/provenance/v1 subjects={REPO}@{index_digest}\n"
        )));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            json["attestations"][1]["predicate_type"],
            SPDX_PREDICATE_TYPE
        );

        // The platform manifest has its SBOM but neither signature nor provenance.
        let error = verify(&store, "amd64", &public, &[AttestationType::Spdx])
            .unwrap_err()
            .to_string();
        assert!(error.contains("no signatures found"), "{error}");
        block_on(sign_image(&store, REPO, &amd, &key, None)).unwrap();
        verify(&store, "amd64", &public, &[AttestationType::Spdx]).unwrap();
        let error = verify(&store, "amd64", &public, &[AttestationType::SlsaProvenance])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "no valid https://slsa.dev/provenance/v1 attestation for registry.example/team/app@sha256:"
            ) && error.contains("(valid predicate types: https://spdx.dev/Document)"),
            "{error}"
        );

        // A stranger's key verifies nothing.
        let stranger = SigningKey::generate().unwrap();
        block_on(sign_image(&store, REPO, &index_digest, &stranger, None)).unwrap();
        let error = verify(
            &store,
            "latest",
            &stranger.verifying_key(),
            &[AttestationType::Spdx],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("valid predicate types: none"), "{error}");
        assert!(
            error.contains("none of the 1 signature(s) on the dsse envelope verifies"),
            "{error}"
        );
    }

    /// Stores `layer` as the only attestation of `digest` and returns the error verifying an
    /// SPDX attestation reports.
    fn attestation_failure(
        store: &MemoryStore,
        key: &SigningKey,
        digest: &str,
        layer: SignatureLayer,
    ) -> String {
        store.put_blob(&layer.payload);
        let MergeOutcome::Appended(image) = merge_layer(None, &layer) else {
            panic!("expected a manifest")
        };
        store.put_blob(&image.config_json);
        store.put_manifest(
            REPO,
            &attestation_tag(digest).unwrap(),
            &image.manifest_json,
        );
        verify(
            store,
            "latest",
            &key.verifying_key(),
            &[AttestationType::Spdx],
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn attestation_failures_name_what_failed() {
        let (store, digest) = store_with_image();
        let key = SigningKey::generate().unwrap();
        block_on(sign_image(&store, REPO, &digest, &key, None)).unwrap();
        let error = verify(
            &store,
            "latest",
            &key.verifying_key(),
            &[AttestationType::Spdx],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("no attestations found for"), "{error}");

        let statement = |subject_digest: &str, statement_type: &str| {
            let mut statement = Statement::new(
                vec![Subject::image(REPO, subject_digest).unwrap()],
                SPDX_PREDICATE_TYPE,
                serde_json::json!({"spdxVersion": "SPDX-2.3"}),
            )
            .unwrap();
            statement.statement_type = statement_type.to_owned();
            statement
        };
        let genuine = statement(&digest, crate::attest::intoto::STATEMENT_TYPE_V1);
        let envelope = genuine.sign(&key);

        fn check(error: String, expected: &str) {
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
        // Payload replaced, signature kept.
        let mut tampered = envelope.clone();
        tampered.payload =
            cosign_b64(&statement(AMD_DIGEST, crate::attest::intoto::STATEMENT_TYPE_V1).to_json());
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&tampered, SPDX_PREDICATE_TYPE),
            ),
            "dsse envelope: none of the 1 signature(s)",
        );
        // Signed statement about another image.
        let elsewhere = statement(AMD_DIGEST, crate::attest::intoto::STATEMENT_TYPE_V1).sign(&key);
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&elsewhere, SPDX_PREDICATE_TYPE),
            ),
            &format!("statement subjects ({REPO}@{AMD_DIGEST}) do not include {digest}"),
        );
        // Unknown statement type.
        let odd = statement(&digest, "https://example/Statement").sign(&key);
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&odd, SPDX_PREDICATE_TYPE),
            ),
            "unsupported statement type \"https://example/Statement\"",
        );
        // Signed payload that is not a statement.
        let not_statement = dsse::sign(INTOTO_PAYLOAD_TYPE, b"[]", &key);
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&not_statement, SPDX_PREDICATE_TYPE),
            ),
            "envelope payload is not an in-toto statement",
        );
        // Envelope of another payload type.
        let other_type = dsse::sign("application/json", &genuine.to_json(), &key);
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&other_type, SPDX_PREDICATE_TYPE),
            ),
            "dsse payload type is \"application/json\"",
        );
        // The annotation claims SPDX but the signed statement is provenance.
        let mut provenance = genuine.clone();
        provenance.predicate_type = SLSA_PROVENANCE_V1.to_owned();
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer::attestation(&provenance.sign(&key), SPDX_PREDICATE_TYPE),
            ),
            "valid predicate types: https://slsa.dev/provenance/v1",
        );
        // Not an envelope at all.
        check(
            attestation_failure(
                &store,
                &key,
                &digest,
                SignatureLayer {
                    media_type: DSSE_ENVELOPE_MEDIA_TYPE.to_owned(),
                    payload: b"garbage".to_vec(),
                    annotations: BTreeMap::new(),
                },
            ),
            "malformed dsse envelope",
        );
        // And the genuine one passes.
        let stored = block_on(attach_attestation(&store, REPO, &digest, &key, &genuine)).unwrap();
        assert!(stored.appended);
        let report = verify(
            &store,
            "latest",
            &key.verifying_key(),
            &[AttestationType::Spdx],
        )
        .unwrap();
        assert_eq!(report.attestations.len(), 1);
        assert_eq!(
            report.rejected_attestations.len(),
            1,
            "the garbage layer stays, ignored"
        );
    }

    #[test]
    fn digest_served_must_match() {
        let (store, digest) = store_with_image();
        let other = DIGEST;
        // Serve the image's bytes under a digest that is not theirs.
        {
            let mut state = store.state.lock().unwrap();
            let entry = state.manifests[&digest].clone();
            state.manifests.insert(other.to_owned(), entry);
        }
        let key = SigningKey::generate().unwrap().verifying_key();
        check_rejected(
            &store,
            other,
            &key,
            "registry returned a manifest with digest",
        );
        check_rejected(&store, "sha256:xyz", &key, "invalid digest");
    }
}
