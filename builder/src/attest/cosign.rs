//! Cosign's storage format for signatures, attestations and SBOM attachments: the simple-signing
//! payload, the `sha256-<hex>.sig` / `.att` / `.sbom` tag scheme, layer annotations, and the
//! append-only merging of signature manifests; it builds manifests and blobs but does not push
//! them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::dsse::Envelope;
use super::keys::{KeyError, SigningKey, VerifyingKey};
use super::{InvalidDigest, sha256_digest, sha256_hex};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of a DSSE envelope layer (attestations).
pub const DSSE_ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = securebuild_registry::OCI_MANIFEST_MEDIA_TYPE;
/// Media type of the OCI image configuration cosign gives signature images.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layer annotation holding the base64 signature (empty on attestation layers).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation holding a signing certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation holding a certificate chain.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Layer annotation holding a transparency-log bundle.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// `critical.type` of a cosign simple-signing payload.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Tag suffix of the signature image.
pub const SIGNATURE_TAG_SUFFIX: &str = "sig";
/// Tag suffix of the attestation image.
pub const ATTESTATION_TAG_SUFFIX: &str = "att";
/// Tag suffix of the SBOM attachment image.
pub const SBOM_TAG_SUFFIX: &str = "sbom";
/// Largest manifest accepted by [`Manifest::from_json`] (the registry client's limit).
pub const MAX_MANIFEST_LEN: usize = securebuild_registry::MAX_MANIFEST_BYTES as usize;
/// Creation time cosign leaves in signature image configurations (Go's zero time).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// `rootfs.type` of an image configuration.
const ROOTFS_TYPE_LAYERS: &str = "layers";

/// Errors building, parsing or verifying cosign artifacts.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// A digest is malformed.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// The repository name is empty or contains whitespace.
    #[error("invalid repository name {repository:?}")]
    InvalidRepository {
        /// The rejected name.
        repository: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("malformed signature manifest")]
    ManifestJson {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The manifest exceeds the size limit.
    #[error("signature manifest of {len} bytes exceeds the {max} byte limit")]
    ManifestTooLarge {
        /// Manifest length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The manifest's schema version is not 2.
    #[error("signature manifest has schemaVersion {version}, expected 2")]
    SchemaVersion {
        /// The version found.
        version: u32,
    },
    /// The simple-signing payload is not valid JSON of the expected shape.
    #[error("malformed simple-signing payload")]
    PayloadJson {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The payload is not a cosign signature payload.
    #[error("simple-signing payload has type {found:?}, expected {COSIGN_SIGNATURE_TYPE:?}")]
    PayloadType {
        /// The `critical.type` found.
        found: String,
    },
    /// The payload signs a different image.
    #[error("signature payload is for {found}, expected {expected}")]
    DigestMismatch {
        /// Digest in the payload.
        found: String,
        /// Digest required.
        expected: String,
    },
    /// The signature annotation is not base64.
    #[error("signature is not valid base64")]
    SignatureBase64 {
        /// The decoding error.
        source: base64::DecodeError,
    },
    /// The signature does not verify.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The simple-signing payload, with the field order cosign writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    /// The signed claims.
    pub critical: Critical,
    /// Extra annotations, `null` when none.
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// `critical` of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// The repository the signature was made for.
    pub identity: Identity,
    /// The signed manifest.
    pub image: ImageClaim,
    /// Always [`COSIGN_SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub signature_type: String,
}

/// `critical.identity` of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Repository name, e.g. `registry.example.com/team/app`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image` of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageClaim {
    /// Manifest digest, `sha256:<hex>`.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Digest, `sha256:<hex>`.
    pub digest: String,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest as cosign writes signature images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The configuration blob.
    pub config: Descriptor,
    /// Signature, attestation or attachment layers.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The image configuration of a signature image, with the field order cosign writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ConfigFile {
    architecture: String,
    created: String,
    history: Vec<History>,
    os: String,
    rootfs: RootFs,
    config: serde_json::Map<String, serde_json::Value>,
}

/// One history entry of [`ConfigFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct History {
    created: String,
}

/// `rootfs` of [`ConfigFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    rootfs_type: String,
    diff_ids: Vec<String>,
}

/// One signature, attestation or attachment: the layer blob and its descriptor annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// Layer media type.
    pub media_type: String,
    /// The layer blob (payload or envelope).
    pub payload: Vec<u8>,
    /// Descriptor annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A signature image ready to push: the blobs first, then the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureImage {
    /// The manifest.
    pub manifest: Manifest,
    /// Serialized manifest (push under the tag).
    pub manifest_json: Vec<u8>,
    /// Serialized configuration blob (push before the manifest).
    pub config_json: Vec<u8>,
}

/// Result of merging a layer into a signature manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// An identical layer is already there; nothing to push.
    AlreadyPresent,
    /// The layer was appended; push the new layer blob, the configuration and the manifest.
    Appended(Box<SignatureImage>),
}

/// The simple-signing payload cosign signs for `digest` in `repository`, byte for byte as cosign
/// serializes it (`optional` is `null` without annotations).
pub fn simple_signing_payload(
    repository: &str,
    digest: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>, CosignError> {
    sha256_hex(digest)?;
    if repository.is_empty()
        || repository
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CosignError::InvalidRepository {
            repository: repository.to_owned(),
        });
    }
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: ImageClaim {
                docker_manifest_digest: digest.to_owned(),
            },
            signature_type: COSIGN_SIGNATURE_TYPE.to_owned(),
        },
        optional: annotations.map(|annotations| {
            annotations
                .iter()
                .map(|(key, value)| (key.clone(), serde_json::Value::from(value.clone())))
                .collect()
        }),
    };
    serde_json::to_vec(&payload).map_err(|source| CosignError::PayloadJson { source })
}

/// Verifies a simple-signing signature (`signature_b64` as in the layer annotation) over
/// `payload` with `key`, and that the payload signs `digest`; returns the parsed payload.
pub fn verify_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    key: &VerifyingKey,
    digest: &str,
) -> Result<SimpleSigning, CosignError> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|source| CosignError::SignatureBase64 { source })?;
    key.verify(payload, &signature)?;
    let parsed: SimpleSigning =
        serde_json::from_slice(payload).map_err(|source| CosignError::PayloadJson { source })?;
    if parsed.critical.signature_type != COSIGN_SIGNATURE_TYPE {
        return Err(CosignError::PayloadType {
            found: parsed.critical.signature_type,
        });
    }
    if parsed.critical.image.docker_manifest_digest != digest {
        return Err(CosignError::DigestMismatch {
            found: parsed.critical.image.docker_manifest_digest,
            expected: digest.to_owned(),
        });
    }
    Ok(parsed)
}

/// The tag of the signature image for `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> Result<String, CosignError> {
    suffixed_tag(digest, SIGNATURE_TAG_SUFFIX)
}

/// The tag of the attestation image for `digest`: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &str) -> Result<String, CosignError> {
    suffixed_tag(digest, ATTESTATION_TAG_SUFFIX)
}

/// The tag of the SBOM attachment image for `digest`: `sha256-<hex>.sbom`.
pub fn sbom_tag(digest: &str) -> Result<String, CosignError> {
    suffixed_tag(digest, SBOM_TAG_SUFFIX)
}

/// `sha256-<hex>.<suffix>`.
fn suffixed_tag(digest: &str, suffix: &str) -> Result<String, CosignError> {
    Ok(format!("sha256-{}.{suffix}", sha256_hex(digest)?))
}

impl SignatureLayer {
    /// A signature layer: the simple-signing `payload` with its DER signature in the annotation.
    pub fn simple_signing(payload: Vec<u8>, der_signature: &[u8]) -> Self {
        let signature = base64::engine::general_purpose::STANDARD.encode(der_signature);
        Self {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            payload,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), signature)]),
        }
    }

    /// Signs `digest` in `repository` with `key` and returns the signature layer.
    pub fn sign_image(
        key: &SigningKey,
        repository: &str,
        digest: &str,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, CosignError> {
        let payload = simple_signing_payload(repository, digest, annotations)?;
        let signature = key.sign(&payload);
        Ok(Self::simple_signing(payload, &signature))
    }

    /// An attestation layer: the DSSE `envelope` with its predicate type annotated and an empty
    /// signature annotation, as cosign writes them.
    pub fn attestation(envelope: &Envelope, predicate_type: &str) -> Self {
        Self {
            media_type: DSSE_ENVELOPE_MEDIA_TYPE.to_owned(),
            payload: envelope.to_json(),
            annotations: BTreeMap::from([
                (
                    PREDICATE_TYPE_ANNOTATION.to_owned(),
                    predicate_type.to_owned(),
                ),
                (SIGNATURE_ANNOTATION.to_owned(), String::new()),
            ]),
        }
    }

    /// The layer's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            size: self.payload.len() as u64,
            digest: sha256_digest(&self.payload),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
        }
    }
}

impl Manifest {
    /// Parses an existing signature manifest.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CosignError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(CosignError::ManifestTooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_LEN,
            });
        }
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|source| CosignError::ManifestJson { source })?;
        if manifest.schema_version != 2 {
            return Err(CosignError::SchemaVersion {
                version: manifest.schema_version,
            });
        }
        sha256_hex(&manifest.config.digest)?;
        for layer in &manifest.layers {
            sha256_hex(&layer.digest)?;
        }
        Ok(manifest)
    }

    /// The compact JSON serialization.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, integers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Appends `layer` to the signature (or attestation) manifest `existing` (`None` when the tag
/// does not exist yet). Existing layers are kept in order and never replaced; if a layer with the
/// same payload digest and the same signature annotation is already present the result is
/// [`MergeOutcome::AlreadyPresent`], so signing twice is idempotent.
pub fn merge_layer(existing: Option<&Manifest>, layer: &SignatureLayer) -> MergeOutcome {
    let descriptor = layer.descriptor();
    let signature_of = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .cloned()
    };
    let mut layers = existing
        .map(|manifest| manifest.layers.clone())
        .unwrap_or_default();
    if layers.iter().any(|present| {
        present.digest == descriptor.digest && signature_of(present) == signature_of(&descriptor)
    }) {
        return MergeOutcome::AlreadyPresent;
    }
    layers.push(descriptor);
    let media_type = existing.and_then(|manifest| manifest.media_type.clone());
    let config_media_type = existing.map(|manifest| manifest.config.media_type.clone());
    let annotations = existing.and_then(|manifest| manifest.annotations.clone());
    MergeOutcome::Appended(Box::new(assemble(
        layers,
        media_type.or_else(|| Some(OCI_MANIFEST_MEDIA_TYPE.to_owned())),
        config_media_type.unwrap_or_else(|| OCI_CONFIG_MEDIA_TYPE.to_owned()),
        annotations,
    )))
}

/// The single-layer image `cosign attach sbom` stores under the `.sbom` tag.
pub fn sbom_attachment(sbom: &[u8], media_type: &str) -> SignatureImage {
    let layer = SignatureLayer {
        media_type: media_type.to_owned(),
        payload: sbom.to_vec(),
        annotations: BTreeMap::new(),
    };
    assemble(
        vec![layer.descriptor()],
        Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        OCI_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    )
}

/// Builds the configuration and manifest for `layers`.
fn assemble(
    layers: Vec<Descriptor>,
    media_type: Option<String>,
    config_media_type: String,
    annotations: Option<BTreeMap<String, String>>,
) -> SignatureImage {
    let config = ConfigFile {
        architecture: String::new(),
        created: ZERO_TIME.to_owned(),
        history: layers
            .iter()
            .map(|_| History {
                created: ZERO_TIME.to_owned(),
            })
            .collect(),
        os: String::new(),
        rootfs: RootFs {
            rootfs_type: ROOTFS_TYPE_LAYERS.to_owned(),
            // Layers are stored uncompressed, so each diff id equals the layer digest.
            diff_ids: layers.iter().map(|layer| layer.digest.clone()).collect(),
        },
        config: serde_json::Map::new(),
    };
    // Serializing plain strings and vectors cannot fail.
    let config_json = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type,
        config: Descriptor {
            media_type: config_media_type,
            size: config_json.len() as u64,
            digest: sha256_digest(&config_json),
            annotations: None,
        },
        layers,
        annotations,
    };
    SignatureImage {
        manifest_json: manifest.to_json(),
        manifest,
        config_json,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::attest::dsse;
    use crate::attest::test_support;

    const DIGEST: &str = "sha256:87ef60f558bad79beea6425a3b28989f01dd417164150ab3baab98dcbf04def8";

    #[test]
    fn payload_matches_cosign_serialization() {
        let payload =
            simple_signing_payload("registry.example.com/team/app", DIGEST, None).unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"registry.example.com/team/app"},"image":{"docker-manifest-digest":"sha256:87ef60f558bad79beea6425a3b28989f01dd417164150ab3baab98dcbf04def8"},"type":"cosign container image signature"},"optional":null}"#
        );
        let annotations = BTreeMap::from([
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ]);
        let payload = simple_signing_payload("r.example/a", DIGEST, Some(&annotations)).unwrap();
        assert!(
            String::from_utf8(payload)
                .unwrap()
                .ends_with(r#""optional":{"a":"2","z":"1"}}"#)
        );
        assert!(matches!(
            simple_signing_payload("r.example/a", "sha256:1", None),
            Err(CosignError::Digest(_))
        ));
        assert!(matches!(
            simple_signing_payload("", DIGEST, None),
            Err(CosignError::InvalidRepository { .. })
        ));
        assert!(matches!(
            simple_signing_payload("a b", DIGEST, None),
            Err(CosignError::InvalidRepository { .. })
        ));
    }

    #[test]
    fn tags() {
        let hex = "87ef60f558bad79beea6425a3b28989f01dd417164150ab3baab98dcbf04def8";
        assert_eq!(signature_tag(DIGEST).unwrap(), format!("sha256-{hex}.sig"));
        assert_eq!(
            attestation_tag(DIGEST).unwrap(),
            format!("sha256-{hex}.att")
        );
        assert_eq!(sbom_tag(DIGEST).unwrap(), format!("sha256-{hex}.sbom"));
        assert!(signature_tag("sha256:XYZ").is_err());
    }

    #[test]
    fn signs_and_verifies_simple_signing() {
        let key = SigningKey::generate().unwrap();
        let layer =
            SignatureLayer::sign_image(&key, "registry.example.com/app", DIGEST, None).unwrap();
        let signature = &layer.annotations[SIGNATURE_ANNOTATION];
        let parsed =
            verify_simple_signing(&layer.payload, signature, &key.verifying_key(), DIGEST).unwrap();
        assert_eq!(
            parsed.critical.identity.docker_reference,
            "registry.example.com/app"
        );
        assert_eq!(parsed.optional, None);

        fn check(result: Result<SimpleSigning, CosignError>, expected: &str) {
            let error = result.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let other_digest = DIGEST.replace("87ef", "0000");
        check(
            verify_simple_signing(
                &layer.payload,
                signature,
                &key.verifying_key(),
                &other_digest,
            ),
            "signature payload is for",
        );
        let stranger = SigningKey::generate().unwrap().verifying_key();
        check(
            verify_simple_signing(&layer.payload, signature, &stranger, DIGEST),
            "does not verify",
        );
        check(
            verify_simple_signing(&layer.payload, "%%", &key.verifying_key(), DIGEST),
            "not valid base64",
        );
        let mut tampered = layer.payload.clone();
        tampered[10] ^= 1;
        check(
            verify_simple_signing(&tampered, signature, &key.verifying_key(), DIGEST),
            "does not verify",
        );
    }

    #[test]
    fn python_cryptography_verifies_simple_signing() {
        test_support::require_module("cryptography");
        let key = SigningKey::generate().unwrap();
        let layer =
            SignatureLayer::sign_image(&key, "registry.example.com/app", DIGEST, None).unwrap();
        let script = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
public = load_pem_public_key(sys.argv[1].encode())
assert isinstance(public.curve, ec.SECP256R1)
public.verify(base64.b64decode(sys.argv[2]), sys.stdin.buffer.read(), ec.ECDSA(hashes.SHA256()))
print("verified")
"#;
        let public_pem = key.verifying_key().to_pem().unwrap();
        let output = test_support::run_python(
            script,
            &[&public_pem, &layer.annotations[SIGNATURE_ANNOTATION]],
            &layer.payload,
        );
        assert_eq!(output.trim(), "verified");
    }

    #[test]
    fn merging_appends_and_never_replaces() {
        let key = SigningKey::generate().unwrap();
        let first =
            SignatureLayer::sign_image(&key, "registry.example.com/app", DIGEST, None).unwrap();
        let MergeOutcome::Appended(image) = merge_layer(None, &first) else {
            panic!("expected a new manifest")
        };
        assert_eq!(
            image.manifest.media_type.as_deref(),
            Some(OCI_MANIFEST_MEDIA_TYPE)
        );
        assert_eq!(image.manifest.config.media_type, OCI_CONFIG_MEDIA_TYPE);
        assert_eq!(
            image.manifest.config.digest,
            sha256_digest(&image.config_json)
        );
        assert_eq!(image.manifest.layers, vec![first.descriptor()]);
        let parsed = Manifest::from_json(&image.manifest_json).unwrap();
        assert_eq!(parsed, image.manifest);
        let config: serde_json::Value = serde_json::from_slice(&image.config_json).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([first.descriptor().digest])
        );
        assert!(String::from_utf8(image.config_json.clone()).unwrap().starts_with(r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["#));

        // Same payload and signature: nothing to do.
        assert_eq!(
            merge_layer(Some(&parsed), &first),
            MergeOutcome::AlreadyPresent
        );

        // Another signer's signature over the same payload is appended after the first.
        let other_key = SigningKey::generate().unwrap();
        let second =
            SignatureLayer::simple_signing(first.payload.clone(), &other_key.sign(&first.payload));
        let MergeOutcome::Appended(merged) = merge_layer(Some(&parsed), &second) else {
            panic!("expected an append")
        };
        assert_eq!(
            merged.manifest.layers,
            vec![first.descriptor(), second.descriptor()]
        );
        assert_eq!(
            merge_layer(Some(&merged.manifest), &first),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            merge_layer(Some(&merged.manifest), &second),
            MergeOutcome::AlreadyPresent
        );
    }

    #[test]
    fn merging_keeps_foreign_manifest_properties() {
        let existing = Manifest {
            schema_version: 2,
            media_type: Some("application/vnd.docker.distribution.manifest.v2+json".to_owned()),
            config: Descriptor {
                media_type: "application/vnd.docker.container.image.v1+json".to_owned(),
                size: 2,
                digest: sha256_digest(b"{}"),
                annotations: None,
            },
            layers: vec![Descriptor {
                media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
                size: 1,
                digest: sha256_digest(b"x"),
                annotations: Some(BTreeMap::from([(
                    SIGNATURE_ANNOTATION.to_owned(),
                    "c2ln".to_owned(),
                )])),
            }],
            annotations: Some(BTreeMap::from([(
                "org.example".to_owned(),
                "kept".to_owned(),
            )])),
        };
        let layer = SignatureLayer::simple_signing(b"y".to_vec(), b"sig");
        let MergeOutcome::Appended(merged) = merge_layer(Some(&existing), &layer) else {
            panic!("expected an append")
        };
        assert_eq!(merged.manifest.media_type, existing.media_type);
        assert_eq!(
            merged.manifest.config.media_type,
            existing.config.media_type
        );
        assert_eq!(merged.manifest.annotations, existing.annotations);
        assert_eq!(merged.manifest.layers[0], existing.layers[0]);
        assert_eq!(merged.manifest.layers.len(), 2);
    }

    #[test]
    fn attestation_layers() {
        let key = SigningKey::generate().unwrap();
        let envelope = dsse::sign(dsse::INTOTO_PAYLOAD_TYPE, b"{}", &key);
        let layer = SignatureLayer::attestation(&envelope, "https://slsa.dev/provenance/v1");
        let descriptor = layer.descriptor();
        assert_eq!(descriptor.media_type, DSSE_ENVELOPE_MEDIA_TYPE);
        assert_eq!(
            descriptor.annotations,
            Some(BTreeMap::from([
                (
                    "dev.cosignproject.cosign/signature".to_owned(),
                    String::new()
                ),
                (
                    "predicateType".to_owned(),
                    "https://slsa.dev/provenance/v1".to_owned()
                ),
            ]))
        );
        assert_eq!(Envelope::from_json(&layer.payload).unwrap(), envelope);
        let MergeOutcome::Appended(image) = merge_layer(None, &layer) else {
            panic!("expected a new manifest")
        };
        assert_eq!(
            merge_layer(Some(&image.manifest), &layer),
            MergeOutcome::AlreadyPresent
        );
        let sbom = SignatureLayer::attestation(
            &dsse::sign(dsse::INTOTO_PAYLOAD_TYPE, b"[]", &key),
            "https://spdx.dev/Document",
        );
        let MergeOutcome::Appended(both) = merge_layer(Some(&image.manifest), &sbom) else {
            panic!("expected an append")
        };
        assert_eq!(both.manifest.layers.len(), 2);
    }

    #[test]
    fn sbom_attachment_image() {
        let image = sbom_attachment(b"{\"spdxVersion\":\"SPDX-2.3\"}", "text/spdx+json");
        assert_eq!(image.manifest.layers.len(), 1);
        assert_eq!(image.manifest.layers[0].media_type, "text/spdx+json");
        assert_eq!(image.manifest.layers[0].annotations, None);
        assert_eq!(
            image,
            sbom_attachment(b"{\"spdxVersion\":\"SPDX-2.3\"}", "text/spdx+json")
        );
    }

    #[test]
    fn rejects_bad_manifests() {
        fn check(json: &str, expected: &str) {
            let error = Manifest::from_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        let config = format!(
            r#"{{"mediaType":"{OCI_CONFIG_MEDIA_TYPE}","size":2,"digest":"{}"}}"#,
            sha256_digest(b"{}")
        );
        check("[]", "malformed signature manifest");
        check(
            &format!(r#"{{"schemaVersion":1,"config":{config},"layers":[]}}"#),
            "schemaVersion 1",
        );
        check(
            &format!(
                r#"{{"schemaVersion":2,"config":{config},"layers":[{{"mediaType":"x","size":1,"digest":"md5:00"}}]}}"#
            ),
            "invalid digest \"md5:00\"",
        );
        let huge = " ".repeat(MAX_MANIFEST_LEN + 1);
        check(&huge, "exceeds the");
    }
}
