//! Signs a pushed image and attaches its attestations in a registry, in cosign's layout: a
//! simple-signing layer appended to `sha256-<hex>.sig` and DSSE-wrapped in-toto statements
//! appended to `sha256-<hex>.att`, never replacing what other signers stored there.
//!
//! It does not read keys or passwords from files (callers pass a [`SigningKey`]), does not push
//! the image itself and does not verify anything (see [`super::verify`]). Like `cosign sign`
//! without `--recursive`, [`attest_build`] signs only the digest it is given — the index of a
//! multi-arch image — and not each platform manifest.
//!
//! The registry is reached through [`SignatureStore`], implemented here for
//! [`securebuild_registry::Registry`] (and by an in-memory store in the tests); `verify` uses the same
//! trait.

use std::collections::BTreeMap;
use std::future::Future;

use super::cosign::{
    self, CosignError, Manifest, MergeOutcome, SignatureImage, SignatureLayer, attestation_tag,
    signature_tag,
};
use super::intoto::{Statement, StatementError, Subject};
use super::keys::SigningKey;
use super::provenance::{
    ProvenanceError, ProvenanceInputs, build_provenance, provenance_statement,
};
use super::sbom::{
    ImageDescriptor, IndexDescriptor, SPDX_PREDICATE_TYPE, SbomError, SbomInput, image_spdx,
    index_spdx,
};
use super::{InvalidDigest, sha256_digest, sha256_hex};
use securebuild_registry::auth::DOCKER_HUB_REGISTRY;
use securebuild_registry::{PLACEHOLDER_TAG, Reference, Registry, RegistryError};

pub use securebuild_registry::tag_or_digest;

/// Docker Hub's registry name as cosign (go-containerregistry) writes it.
const DOCKER_HUB_API_HOST: &str = "index.docker.io";
/// The namespace of Docker Hub's official images.
const DOCKER_HUB_LIBRARY: &str = "library";

/// How many times a signature manifest is re-read and merged again when another writer replaced
/// the tag between our read and our push.
pub const MAX_MERGE_ATTEMPTS: usize = 3;

/// A registry error, boxed so this module works with any [`SignatureStore`].
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The registry operations signing and verification need. `repository` is always the full
/// repository name as it appears in image references and cosign payloads
/// (`registry.example.com/team/app`, `127.0.0.1:5000/app`).
pub trait SignatureStore: Sync {
    /// The error the store reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The digest `tag` points at in `repository`, `None` when the tag does not exist.
    fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// The manifest `reference` (a tag or a digest) in `repository`: its bytes, digest and
    /// media type.
    fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> impl Future<Output = Result<FetchedManifest, Self::Error>> + Send;

    /// The blob `digest` in `repository`.
    fn fetch_blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;

    /// Uploads `bytes` as a blob of `repository` (a no-op when the registry already has it).
    fn push_blob(
        &self,
        repository: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Uploads a manifest under `tag` and returns its digest.
    fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;
}

/// Errors resolving an image reference to its manifest digest.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The manifest could not be fetched.
    #[error("fetching manifest {reference}")]
    Store {
        /// `repository:tag` or `repository@digest`.
        reference: String,
        /// The registry's error.
        #[source]
        error: StoreError,
    },
    /// A digest is malformed.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// The registry served a manifest whose bytes do not have the digest asked for or reported.
    #[error(
        "registry returned a manifest with digest {found} for {reference} (expected {expected})"
    )]
    DigestMismatch {
        /// `repository:tag` or `repository@digest`.
        reference: String,
        /// The digest asked for, or the one the registry reported.
        expected: String,
        /// The digest of the bytes served.
        found: String,
    },
}

/// Resolves `reference` (a tag or a `sha256:` digest) in `repository` to the digest of the
/// manifest the registry serves for it, checking the bytes against the digest.
pub async fn resolve_digest<S: SignatureStore>(
    store: &S,
    repository: &str,
    reference: &str,
) -> Result<String, ResolveError> {
    let by_digest = reference.starts_with(super::SHA256_DIGEST_PREFIX);
    if by_digest {
        sha256_hex(reference)?;
    }
    let separator = if by_digest { '@' } else { ':' };
    let named = format!("{repository}{separator}{reference}");
    let fetched = store
        .fetch_manifest(repository, reference)
        .await
        .map_err(|error| ResolveError::Store {
            reference: named.clone(),
            error: Box::new(error),
        })?;
    let found = sha256_digest(&fetched.bytes);
    let expected = if by_digest {
        reference
    } else {
        fetched.digest.as_str()
    };
    if found != expected || found != fetched.digest {
        return Err(ResolveError::DigestMismatch {
            reference: named,
            expected: expected.to_owned(),
            found,
        });
    }
    Ok(found)
}

/// A manifest as fetched from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The manifest bytes exactly as served.
    pub bytes: Vec<u8>,
    /// Its digest, `sha256:<hex>`.
    pub digest: String,
    /// Its media type (`Content-Type`).
    pub media_type: String,
}

/// What a registry call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOperation {
    /// Looking up a tag.
    ResolveTag,
    /// Fetching a manifest.
    FetchManifest,
    /// Fetching a blob.
    FetchBlob,
    /// Uploading a blob.
    PushBlob,
    /// Uploading a manifest.
    PushManifest,
}

impl std::fmt::Display for StoreOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ResolveTag => "resolving tag",
            Self::FetchManifest => "fetching manifest",
            Self::FetchBlob => "fetching blob",
            Self::PushBlob => "pushing blob",
            Self::PushManifest => "pushing manifest",
        })
    }
}

/// Errors signing or attaching attestations.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A registry call failed.
    #[error("{operation} {target}")]
    Store {
        /// What was being done.
        operation: StoreOperation,
        /// The reference involved (`repository:tag` or `repository@digest`).
        target: String,
        /// The registry's error.
        #[source]
        error: StoreError,
    },
    /// The existing signature or attestation manifest cannot be merged into.
    #[error("existing manifest {reference} cannot be extended")]
    ExistingManifest {
        /// `repository:tag` of the manifest.
        reference: String,
        /// What is wrong with it.
        source: CosignError,
    },
    /// Building the signature payload or tag failed.
    #[error(transparent)]
    Cosign(#[from] CosignError),
    /// A digest is malformed.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// The image reference cannot be resolved to a digest.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The statement to attach is not about the image it would be attached to.
    #[error("{predicate_type} statement is not about {repository}@{digest}")]
    StatementSubject {
        /// The statement's predicate type.
        predicate_type: String,
        /// The repository.
        repository: String,
        /// The digest the attestation would be stored for.
        digest: String,
    },
    /// Another writer kept replacing the tag while this one tried to append.
    #[error("{reference} kept changing while appending to it ({attempts} attempts)")]
    Contended {
        /// `repository:tag` of the manifest.
        reference: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The registry stored the manifest under another digest than the bytes pushed.
    #[error("registry stored {reference} as {found}, but the pushed manifest is {expected}")]
    ManifestDigest {
        /// `repository:tag` of the manifest.
        reference: String,
        /// Digest of the bytes pushed.
        expected: String,
        /// Digest the registry reported.
        found: String,
    },
    /// The SBOM inputs name an image that is not part of the published image.
    #[error("sbom is for {digest}, which is not a platform image of {repository}@{index}")]
    UnknownSbomImage {
        /// The SBOM's image digest.
        digest: String,
        /// The repository.
        repository: String,
        /// The published index digest.
        index: String,
    },
    /// The provenance predicate could not be built.
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    /// An SBOM could not be built.
    #[error(transparent)]
    Sbom(#[from] SbomError),
    /// An in-toto statement could not be built.
    #[error(transparent)]
    Statement(#[from] StatementError),
}

/// A signature or attestation manifest in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    /// `repository:sha256-<hex>.sig` (or `.att`).
    pub reference: String,
    /// Digest of the manifest now under that tag.
    pub digest: String,
    /// Digest of this artifact's own layer in that manifest: the simple-signing payload of a
    /// signature, the DSSE envelope of an attestation. Stays valid when later signatures or
    /// attestations are appended to the same tag, which changes `digest`.
    pub layer: String,
    /// Whether this call appended a layer (false when an identical one was already there).
    pub appended: bool,
}

/// An image that was pushed: its top-level digest (an index for multi-arch images, or a single
/// manifest) and the platform manifests it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedImage {
    /// Full repository name, e.g. `registry.example.com/team/app`.
    pub repository: String,
    /// The index (or single manifest) digest, `sha256:<hex>`.
    pub digest: String,
    /// The tag the image was pushed under, if any (recorded in the SBOM purls).
    pub tag: Option<String>,
    /// The platform manifests.
    pub platforms: Vec<PublishedPlatform>,
}

/// One platform manifest of a [`PublishedImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPlatform {
    /// OCI architecture, with the variant when there is one (`arm64-v8`).
    pub arch: String,
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
}

/// The SBOM inputs of a build: one per platform image, plus what the index document records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSboms {
    /// Creation time of the index document, RFC 3339.
    pub created: String,
    /// SecureBuild version named in the index document.
    pub tool_version: String,
    /// One input per platform image; `image.digest` must be one of the published platforms.
    pub images: Vec<SbomInput>,
}

/// An SBOM attestation stored for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomAttestation {
    /// The digest the SBOM describes and is attached to.
    pub digest: String,
    /// The platform, `None` for the index document.
    pub arch: Option<String>,
    /// The attestation manifest after the append.
    pub artifact: ArtifactRef,
}

/// Everything [`attest_build`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationSummary {
    /// The signature manifest of the index digest.
    pub signature: ArtifactRef,
    /// The attestation manifest after attaching provenance, if provenance was given.
    pub provenance: Option<ArtifactRef>,
    /// The SBOM attestations: the index document first (multi-arch images only), then one per
    /// platform in the order given.
    pub sboms: Vec<SbomAttestation>,
}

impl PublishedImage {
    /// The published image a successful build result describes; `None` when the build did not
    /// push (no `repository@digest` reference).
    pub fn from_result(image: &crate::result::ImageResult) -> Option<Self> {
        let reference = image.reference.as_deref()?;
        let (repository, digest) = reference.rsplit_once('@')?;
        if digest != image.digest {
            return None;
        }
        Some(Self {
            repository: repository.to_owned(),
            digest: image.digest.clone(),
            tag: image.tags.first().cloned(),
            platforms: image
                .platforms
                .iter()
                .map(|platform| PublishedPlatform {
                    arch: match &platform.variant {
                        Some(variant) => format!("{}-{variant}", platform.arch),
                        None => platform.arch.clone(),
                    },
                    digest: platform.digest.clone(),
                })
                .collect(),
        })
    }
}

/// Signs `digest` in `repository` with `key` the way `cosign sign --key` does: a simple-signing
/// payload (with `annotations` as its `optional` claims) whose base64 DER signature goes into the
/// layer annotation, appended to the `sha256-<hex>.sig` manifest. Signing the same digest with
/// the same key and annotations again changes nothing (signatures are deterministic).
pub async fn sign_image<S: SignatureStore>(
    store: &S,
    repository: &str,
    digest: &str,
    key: &SigningKey,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<ArtifactRef, PublishError> {
    let layer = SignatureLayer::sign_image(key, repository, digest, annotations)?;
    append_layer(store, repository, &signature_tag(digest)?, &layer).await
}

/// Signs `statement` into a DSSE envelope (payload type `application/vnd.in-toto+json`) and
/// appends it, annotated with its predicate type, to the `sha256-<hex>.att` manifest of `digest`
/// the way `cosign attest --key` does (without `--replace`). The statement must name `digest`
/// among its subjects.
pub async fn attach_attestation<S: SignatureStore>(
    store: &S,
    repository: &str,
    digest: &str,
    key: &SigningKey,
    statement: &Statement,
) -> Result<ArtifactRef, PublishError> {
    if !statement.is_about(sha256_hex(digest)?) {
        return Err(PublishError::StatementSubject {
            predicate_type: statement.predicate_type.clone(),
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        });
    }
    let envelope = statement.sign(key);
    let layer = SignatureLayer::attestation(&envelope, &statement.predicate_type);
    append_layer(store, repository, &attestation_tag(digest)?, &layer).await
}

/// Signs a published image and attaches its attestations:
///
/// - the signature covers the top-level digest only (the index of a multi-arch image), as
///   `cosign sign` does without `--recursive`; a platform manifest pulled by its own digest is
///   covered through the signed index that lists it;
/// - the SLSA provenance statement has the top-level digest as its one subject and is attached
///   to it;
/// - the SBOMs follow apko's layout: the index document (listing the platform images) is
///   attached to the index digest, and each platform's SPDX document to that platform's
///   manifest digest, with that digest as the statement's subject — so `verify --attestation
///   spdx` works on the index and on every platform manifest. A single-manifest image (whose
///   top-level digest is its only platform) gets just its platform document.
pub async fn attest_build<S: SignatureStore>(
    store: &S,
    image: &PublishedImage,
    key: &SigningKey,
    provenance: Option<&ProvenanceInputs>,
    sboms: Option<&BuildSboms>,
) -> Result<AttestationSummary, PublishError> {
    sha256_hex(&image.digest)?;
    for platform in &image.platforms {
        sha256_hex(&platform.digest)?;
    }
    let repository = image.repository.as_str();
    let signature = sign_image(store, repository, &image.digest, key, None).await?;

    let provenance = match provenance {
        Some(inputs) => {
            let predicate = build_provenance(inputs)?;
            let statement =
                provenance_statement(vec![Subject::image(repository, &image.digest)?], &predicate)?;
            Some(attach_attestation(store, repository, &image.digest, key, &statement).await?)
        }
        None => None,
    };

    let mut sbom_attestations = Vec::new();
    if let Some(sboms) = sboms {
        for input in &sboms.images {
            if !image
                .platforms
                .iter()
                .any(|platform| platform.digest == input.image.digest)
            {
                return Err(PublishError::UnknownSbomImage {
                    digest: input.image.digest.clone(),
                    repository: repository.to_owned(),
                    index: image.digest.clone(),
                });
            }
        }
        let is_index = !image
            .platforms
            .iter()
            .any(|platform| platform.digest == image.digest);
        if is_index {
            let index = IndexDescriptor {
                repository: repository.to_owned(),
                digest: image.digest.clone(),
                tag: image.tag.clone(),
                images: image
                    .platforms
                    .iter()
                    .map(|platform| ImageDescriptor {
                        repository: repository.to_owned(),
                        digest: platform.digest.clone(),
                        arch: platform.arch.clone(),
                        tag: None,
                    })
                    .collect(),
            };
            let document = index_spdx(&index, &sboms.created, &sboms.tool_version)?;
            let artifact =
                attach_spdx(store, repository, &image.digest, key, &document.to_json()).await?;
            sbom_attestations.push(SbomAttestation {
                digest: image.digest.clone(),
                arch: None,
                artifact,
            });
        }
        for input in &sboms.images {
            let document = image_spdx(input)?;
            let digest = &input.image.digest;
            let artifact = attach_spdx(store, repository, digest, key, &document.to_json()).await?;
            sbom_attestations.push(SbomAttestation {
                digest: digest.clone(),
                arch: Some(input.image.arch.clone()),
                artifact,
            });
        }
    }

    Ok(AttestationSummary {
        signature,
        provenance,
        sboms: sbom_attestations,
    })
}

/// Wraps an SPDX JSON document in a statement about `digest` and attaches it.
async fn attach_spdx<S: SignatureStore>(
    store: &S,
    repository: &str,
    digest: &str,
    key: &SigningKey,
    document_json: &[u8],
) -> Result<ArtifactRef, PublishError> {
    // The document was serialized from plain data a moment ago, so it parses back.
    let predicate: serde_json::Value = serde_json::from_slice(document_json).unwrap_or_default();
    let statement = Statement::new(
        vec![Subject::image(repository, digest)?],
        SPDX_PREDICATE_TYPE,
        predicate,
    )?;
    attach_attestation(store, repository, digest, key, &statement).await
}

/// Appends `layer` to the manifest under `tag`: reads what is there, merges (keeping every
/// existing layer), pushes the new blobs and manifest, and checks that the tag now points at
/// the pushed manifest, merging again when another writer replaced it in between.
async fn append_layer<S: SignatureStore>(
    store: &S,
    repository: &str,
    tag: &str,
    layer: &SignatureLayer,
) -> Result<ArtifactRef, PublishError> {
    let reference = format!("{repository}:{tag}");
    let layer_digest = sha256_digest(&layer.payload);
    for _ in 0..MAX_MERGE_ATTEMPTS {
        let existing = read_existing(store, repository, tag, &reference).await?;
        let image: Box<SignatureImage> =
            match cosign::merge_layer(existing.as_ref().map(|(manifest, _)| manifest), layer) {
                MergeOutcome::AlreadyPresent => {
                    let digest = existing.map(|(_, digest)| digest).unwrap_or_default();
                    return Ok(ArtifactRef {
                        reference,
                        digest,
                        layer: layer_digest,
                        appended: false,
                    });
                }
                MergeOutcome::Appended(image) => image,
            };
        let blob_target = |digest: &str| format!("{repository}@{digest}");
        store
            .push_blob(repository, &layer.payload)
            .await
            .map_err(|source| PublishError::Store {
                operation: StoreOperation::PushBlob,
                target: blob_target(&layer_digest),
                error: Box::new(source),
            })?;
        store
            .push_blob(repository, &image.config_json)
            .await
            .map_err(|source| PublishError::Store {
                operation: StoreOperation::PushBlob,
                target: blob_target(&image.manifest.config.digest),
                error: Box::new(source),
            })?;
        let media_type = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| cosign::OCI_MANIFEST_MEDIA_TYPE.to_owned());
        let expected = sha256_digest(&image.manifest_json);
        let pushed = store
            .push_manifest(repository, tag, &image.manifest_json, &media_type)
            .await
            .map_err(|source| PublishError::Store {
                operation: StoreOperation::PushManifest,
                target: reference.clone(),
                error: Box::new(source),
            })?;
        if pushed != expected {
            return Err(PublishError::ManifestDigest {
                reference,
                expected,
                found: pushed,
            });
        }
        let now = resolve_tag(store, repository, tag, &reference).await?;
        if now.as_deref() == Some(expected.as_str()) {
            return Ok(ArtifactRef {
                reference,
                digest: expected,
                layer: layer_digest,
                appended: true,
            });
        }
        tracing::warn!(%reference, "signature manifest was replaced concurrently; merging again");
    }
    Err(PublishError::Contended {
        reference,
        attempts: MAX_MERGE_ATTEMPTS,
    })
}

/// The manifest currently under `tag` and its digest, `None` when the tag does not exist.
async fn read_existing<S: SignatureStore>(
    store: &S,
    repository: &str,
    tag: &str,
    reference: &str,
) -> Result<Option<(Manifest, String)>, PublishError> {
    let Some(digest) = resolve_tag(store, repository, tag, reference).await? else {
        return Ok(None);
    };
    let fetched = store
        .fetch_manifest(repository, &digest)
        .await
        .map_err(|source| PublishError::Store {
            operation: StoreOperation::FetchManifest,
            target: format!("{repository}@{digest}"),
            error: Box::new(source),
        })?;
    let manifest =
        Manifest::from_json(&fetched.bytes).map_err(|source| PublishError::ExistingManifest {
            reference: reference.to_owned(),
            source,
        })?;
    Ok(Some((manifest, fetched.digest)))
}

/// [`SignatureStore::tag_digest`] with the error wrapped.
async fn resolve_tag<S: SignatureStore>(
    store: &S,
    repository: &str,
    tag: &str,
    reference: &str,
) -> Result<Option<String>, PublishError> {
    store
        .tag_digest(repository, tag)
        .await
        .map_err(|source| PublishError::Store {
            operation: StoreOperation::ResolveTag,
            target: reference.to_owned(),
            error: Box::new(source),
        })
}

/// The repository name cosign writes for `reference` in payloads and statement subjects:
/// `registry/repository`, with Docker Hub spelled `index.docker.io` as go-containerregistry does.
pub fn repository_name(reference: &Reference) -> String {
    let registry = match reference.registry() {
        DOCKER_HUB_REGISTRY => DOCKER_HUB_API_HOST,
        other => other,
    };
    format!("{registry}/{}", reference.repository())
}

/// The [`Reference`] for a repository name from [`repository_name`] (its tag is a placeholder;
/// only the registry and repository are used).
fn repository_reference(repository: &str) -> Reference {
    let (registry, path) = match repository.split_once('/') {
        Some((registry, path)) => (registry.to_owned(), path.to_owned()),
        None => (
            DOCKER_HUB_REGISTRY.to_owned(),
            format!("{DOCKER_HUB_LIBRARY}/{repository}"),
        ),
    };
    Reference::with_tag(registry, path, PLACEHOLDER_TAG.to_owned())
}

impl SignatureStore for Registry {
    type Error = RegistryError;

    async fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        Registry::tag_digest(self, &repository_reference(repository), tag).await
    }

    async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let base = repository_reference(repository);
        let target = if reference.starts_with(super::SHA256_DIGEST_PREFIX) {
            Reference::with_digest(
                base.registry().to_owned(),
                base.repository().to_owned(),
                reference.to_owned(),
            )
        } else {
            Reference::with_tag(
                base.registry().to_owned(),
                base.repository().to_owned(),
                reference.to_owned(),
            )
        };
        let fetched = Registry::fetch_manifest(self, &target).await?;
        Ok(FetchedManifest {
            bytes: fetched.bytes.to_vec(),
            digest: fetched.digest,
            media_type: fetched.media_type,
        })
    }

    async fn fetch_blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let bytes = Registry::fetch_blob(self, &repository_reference(repository), digest).await?;
        Ok(bytes.to_vec())
    }

    async fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        Registry::push_blob_bytes(
            self,
            &repository_reference(repository),
            bytes::Bytes::copy_from_slice(bytes),
        )
        .await
        .map(|_| ())
    }

    async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        Registry::push_manifest_bytes(
            self,
            &repository_reference(repository),
            tag,
            bytes::Bytes::copy_from_slice(bytes),
            media_type,
        )
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::attest::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
    use crate::attest::dsse::Envelope;
    use std::sync::Mutex;

    /// An in-memory registry: blobs by digest, manifests by digest, tags per repository.
    #[derive(Debug, Default)]
    pub(crate) struct MemoryStore {
        pub(crate) state: Mutex<MemoryState>,
    }

    /// What [`MemoryStore`] holds.
    #[derive(Debug, Default)]
    pub(crate) struct MemoryState {
        pub(crate) blobs: BTreeMap<String, Vec<u8>>,
        pub(crate) manifests: BTreeMap<String, (Vec<u8>, String)>,
        pub(crate) tags: BTreeMap<(String, String), String>,
        /// Pushes made (blobs and manifests).
        pub(crate) pushes: usize,
        /// Manifest bytes another writer puts under a tag right after our next manifest push.
        pub(crate) interloper: Option<(String, Vec<u8>)>,
    }

    /// Errors of [`MemoryStore`].
    #[derive(Debug, thiserror::Error)]
    pub(crate) enum MemoryError {
        #[error("{0} not found")]
        NotFound(String),
    }

    impl MemoryStore {
        pub(crate) fn put_blob(&self, bytes: &[u8]) -> String {
            let digest = sha256_digest(bytes);
            self.state
                .lock()
                .unwrap()
                .blobs
                .insert(digest.clone(), bytes.to_vec());
            digest
        }

        pub(crate) fn put_manifest(&self, repository: &str, tag: &str, bytes: &[u8]) -> String {
            let digest = sha256_digest(bytes);
            let mut state = self.state.lock().unwrap();
            state.manifests.insert(
                digest.clone(),
                (bytes.to_vec(), cosign::OCI_MANIFEST_MEDIA_TYPE.to_owned()),
            );
            state
                .tags
                .insert((repository.to_owned(), tag.to_owned()), digest.clone());
            digest
        }

        pub(crate) fn manifest_under(&self, repository: &str, tag: &str) -> Option<Manifest> {
            let state = self.state.lock().unwrap();
            let digest = state.tags.get(&(repository.to_owned(), tag.to_owned()))?;
            Some(Manifest::from_json(&state.manifests[digest].0).unwrap())
        }

        pub(crate) fn blob(&self, digest: &str) -> Vec<u8> {
            self.state.lock().unwrap().blobs[digest].clone()
        }
    }

    impl SignatureStore for MemoryStore {
        type Error = MemoryError;

        async fn tag_digest(
            &self,
            repository: &str,
            tag: &str,
        ) -> Result<Option<String>, MemoryError> {
            let state = self.state.lock().unwrap();
            Ok(state
                .tags
                .get(&(repository.to_owned(), tag.to_owned()))
                .cloned())
        }

        async fn fetch_manifest(
            &self,
            repository: &str,
            reference: &str,
        ) -> Result<FetchedManifest, MemoryError> {
            let state = self.state.lock().unwrap();
            let digest = if reference.starts_with("sha256:") {
                reference.to_owned()
            } else {
                state
                    .tags
                    .get(&(repository.to_owned(), reference.to_owned()))
                    .cloned()
                    .ok_or_else(|| MemoryError::NotFound(reference.to_owned()))?
            };
            let (bytes, media_type) = state
                .manifests
                .get(&digest)
                .cloned()
                .ok_or_else(|| MemoryError::NotFound(digest.clone()))?;
            Ok(FetchedManifest {
                bytes,
                digest,
                media_type,
            })
        }

        async fn fetch_blob(
            &self,
            _repository: &str,
            digest: &str,
        ) -> Result<Vec<u8>, MemoryError> {
            let state = self.state.lock().unwrap();
            state
                .blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| MemoryError::NotFound(digest.to_owned()))
        }

        async fn push_blob(&self, _repository: &str, bytes: &[u8]) -> Result<(), MemoryError> {
            let mut state = self.state.lock().unwrap();
            state.pushes += 1;
            state.blobs.insert(sha256_digest(bytes), bytes.to_vec());
            Ok(())
        }

        async fn push_manifest(
            &self,
            repository: &str,
            tag: &str,
            bytes: &[u8],
            media_type: &str,
        ) -> Result<String, MemoryError> {
            let digest = sha256_digest(bytes);
            let mut state = self.state.lock().unwrap();
            state.pushes += 1;
            state
                .manifests
                .insert(digest.clone(), (bytes.to_vec(), media_type.to_owned()));
            let mut target = digest.clone();
            if let Some((interloper_tag, other)) = state.interloper.take() {
                if interloper_tag == tag {
                    let other_digest = sha256_digest(&other);
                    state
                        .manifests
                        .insert(other_digest.clone(), (other, media_type.to_owned()));
                    target = other_digest;
                } else {
                    state.interloper = Some((interloper_tag, other));
                }
            }
            state
                .tags
                .insert((repository.to_owned(), tag.to_owned()), target);
            Ok(digest)
        }
    }

    pub(crate) const REPO: &str = "registry.example/team/app";
    pub(crate) const DIGEST: &str =
        "sha256:87ef60f558bad79beea6425a3b28989f01dd417164150ab3baab98dcbf04def8";
    pub(crate) const ARM_DIGEST: &str =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    pub(crate) const AMD_DIGEST: &str =
        "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn sig_tag() -> String {
        signature_tag(DIGEST).unwrap()
    }

    #[test]
    fn signing_creates_then_appends_and_is_idempotent() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let first = block_on(sign_image(&store, REPO, DIGEST, &key, None)).unwrap();
        assert!(first.appended);
        assert_eq!(first.reference, format!("{REPO}:{}", sig_tag()));
        let manifest = store.manifest_under(REPO, &sig_tag()).unwrap();
        assert_eq!(first.digest, sha256_digest(&manifest.to_json()));
        assert_eq!(manifest.layers.len(), 1);
        let layer = &manifest.layers[0];
        assert_eq!(layer.media_type, SIMPLE_SIGNING_MEDIA_TYPE);
        let payload = store.blob(&layer.digest);
        assert_eq!(
            payload,
            cosign::simple_signing_payload(REPO, DIGEST, None).unwrap()
        );
        // The configuration blob was pushed too.
        store.blob(&manifest.config.digest);

        let pushes = store.state.lock().unwrap().pushes;
        let again = block_on(sign_image(&store, REPO, DIGEST, &key, None)).unwrap();
        assert!(!again.appended);
        assert_eq!(again.digest, first.digest);
        assert_eq!(store.state.lock().unwrap().pushes, pushes, "nothing pushed");

        let other = SigningKey::generate().unwrap();
        let second = block_on(sign_image(&store, REPO, DIGEST, &other, None)).unwrap();
        assert!(second.appended);
        let manifest = store.manifest_under(REPO, &sig_tag()).unwrap();
        assert_eq!(manifest.layers.len(), 2);
        assert_eq!(manifest.layers[0], *layer, "first signature kept in place");
        assert_ne!(
            manifest.layers[1].annotations.as_ref().unwrap()[SIGNATURE_ANNOTATION],
            layer.annotations.as_ref().unwrap()[SIGNATURE_ANNOTATION]
        );
    }

    #[test]
    fn annotations_become_optional_claims() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let annotations = BTreeMap::from([("team".to_owned(), "blue".to_owned())]);
        block_on(sign_image(&store, REPO, DIGEST, &key, Some(&annotations))).unwrap();
        let manifest = store.manifest_under(REPO, &sig_tag()).unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(&store.blob(&manifest.layers[0].digest)).unwrap();
        assert_eq!(payload["optional"], serde_json::json!({"team": "blue"}));
    }

    #[test]
    fn concurrent_replacement_is_merged_again() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        // Another signer's manifest lands right after our push and replaces ours.
        let foreign = SignatureLayer::sign_image(&other, REPO, DIGEST, None).unwrap();
        let MergeOutcome::Appended(foreign_image) = cosign::merge_layer(None, &foreign) else {
            panic!("expected a manifest")
        };
        store.put_blob(&foreign.payload);
        store.put_blob(&foreign_image.config_json);
        store.state.lock().unwrap().interloper =
            Some((sig_tag(), foreign_image.manifest_json.clone()));
        let result = block_on(sign_image(&store, REPO, DIGEST, &key, None)).unwrap();
        assert!(result.appended);
        let manifest = store.manifest_under(REPO, &sig_tag()).unwrap();
        assert_eq!(manifest.layers.len(), 2, "both signatures survive");
        assert_eq!(manifest.layers[0], foreign.descriptor());
        assert_eq!(result.digest, sha256_digest(&manifest.to_json()));
    }

    #[test]
    fn existing_garbage_is_not_overwritten() {
        let store = MemoryStore::default();
        store.put_manifest(REPO, &sig_tag(), b"not json");
        let key = SigningKey::generate().unwrap();
        let error = block_on(sign_image(&store, REPO, DIGEST, &key, None)).unwrap_err();
        assert!(
            matches!(error, PublishError::ExistingManifest { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&sig_tag()), "{error}");
    }

    #[test]
    fn bad_digests_are_rejected_before_any_push() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let error = block_on(sign_image(&store, REPO, "sha256:abc", &key, None)).unwrap_err();
        assert!(error.to_string().contains("invalid digest"), "{error}");
        assert_eq!(store.state.lock().unwrap().pushes, 0);
    }

    #[test]
    fn attestation_must_be_about_the_digest() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let statement = Statement::new(
            vec![Subject::image(REPO, ARM_DIGEST).unwrap()],
            "https://example/p",
            serde_json::json!({}),
        )
        .unwrap();
        let error =
            block_on(attach_attestation(&store, REPO, DIGEST, &key, &statement)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is not about registry.example/team/app@sha256:87ef"),
            "{error}"
        );
        let stored = block_on(attach_attestation(
            &store, REPO, ARM_DIGEST, &key, &statement,
        ))
        .unwrap();
        assert_eq!(
            stored.reference,
            format!("{REPO}:{}", attestation_tag(ARM_DIGEST).unwrap())
        );
        let manifest = store
            .manifest_under(REPO, &attestation_tag(ARM_DIGEST).unwrap())
            .unwrap();
        let annotations = manifest.layers[0].annotations.clone().unwrap();
        assert_eq!(annotations["predicateType"], "https://example/p");
        assert_eq!(annotations[SIGNATURE_ANNOTATION], "");
        let envelope = Envelope::from_json(&store.blob(&manifest.layers[0].digest)).unwrap();
        Statement::open(
            &envelope,
            &key.verifying_key(),
            ARM_DIGEST,
            "https://example/p",
        )
        .unwrap();
    }

    pub(crate) fn published() -> PublishedImage {
        PublishedImage {
            repository: REPO.to_owned(),
            digest: DIGEST.to_owned(),
            tag: Some("latest".to_owned()),
            platforms: vec![
                PublishedPlatform {
                    arch: "amd64".to_owned(),
                    digest: AMD_DIGEST.to_owned(),
                },
                PublishedPlatform {
                    arch: "arm64-v8".to_owned(),
                    digest: ARM_DIGEST.to_owned(),
                },
            ],
        }
    }

    pub(crate) fn provenance_inputs() -> ProvenanceInputs {
        ProvenanceInputs {
            builder_id: "https://securebuild.dev/builder/test".to_owned(),
            builder_version: "0.1.0".to_owned(),
            external_parameters: serde_json::json!({"target": REPO}),
            internal_parameters: None,
            packages: Vec::new(),
            indexes: Vec::new(),
            keys: Vec::new(),
            invocation_id: "run-1".to_owned(),
            started_on: "2024-05-06T07:08:09Z".to_owned(),
            finished_on: "2024-05-06T07:09:09Z".to_owned(),
        }
    }

    pub(crate) fn sbom_input(arch: &str, digest: &str) -> SbomInput {
        SbomInput {
            image: ImageDescriptor {
                repository: REPO.to_owned(),
                digest: digest.to_owned(),
                arch: arch.to_owned(),
                tag: None,
            },
            distro: super::super::sbom::Distro {
                id: "alpine".to_owned(),
                version_id: Some("3.20.3".to_owned()),
                supplier: None,
            },
            packages: vec![super::super::sbom::SbomPackage {
                name: "busybox".to_owned(),
                version: "1.36.1-r29".to_owned(),
                arch: arch.to_owned(),
                license: Some("GPL-2.0-only".to_owned()),
                ..Default::default()
            }],
            created: "2024-05-06T07:09:09Z".to_owned(),
            tool_version: "0.1.0".to_owned(),
        }
    }

    pub(crate) fn build_sboms() -> BuildSboms {
        BuildSboms {
            created: "2024-05-06T07:09:09Z".to_owned(),
            tool_version: "0.1.0".to_owned(),
            images: vec![
                sbom_input("amd64", AMD_DIGEST),
                sbom_input("arm64-v8", ARM_DIGEST),
            ],
        }
    }

    fn statements_under(store: &MemoryStore, digest: &str, key: &SigningKey) -> Vec<Statement> {
        let manifest = store
            .manifest_under(REPO, &attestation_tag(digest).unwrap())
            .unwrap();
        manifest
            .layers
            .iter()
            .map(|layer| {
                let envelope = Envelope::from_json(&store.blob(&layer.digest)).unwrap();
                let predicate_type = layer.annotations.as_ref().unwrap()["predicateType"].clone();
                Statement::open(&envelope, &key.verifying_key(), digest, &predicate_type).unwrap()
            })
            .collect()
    }

    #[test]
    fn build_attestations_follow_the_documented_layout() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let image = published();
        let summary = block_on(attest_build(
            &store,
            &image,
            &key,
            Some(&provenance_inputs()),
            Some(&build_sboms()),
        ))
        .unwrap();
        assert!(summary.signature.appended);
        assert!(store.manifest_under(REPO, &sig_tag()).is_some());
        for platform in [AMD_DIGEST, ARM_DIGEST] {
            assert!(
                store
                    .manifest_under(REPO, &signature_tag(platform).unwrap())
                    .is_none(),
                "platform manifests are not signed"
            );
        }
        let on_index = statements_under(&store, DIGEST, &key);
        let types: Vec<&str> = on_index.iter().map(|s| s.predicate_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "https://slsa.dev/provenance/v1",
                "https://spdx.dev/Document"
            ]
        );
        assert_eq!(
            on_index[0].subject,
            vec![Subject::image(REPO, DIGEST).unwrap()]
        );
        assert_eq!(
            on_index[1].predicate["name"],
            format!("{REPO}@{DIGEST}").as_str()
        );
        for (arch, digest) in [("amd64", AMD_DIGEST), ("arm64-v8", ARM_DIGEST)] {
            let statements = statements_under(&store, digest, &key);
            assert_eq!(statements.len(), 1);
            assert_eq!(statements[0].predicate_type, SPDX_PREDICATE_TYPE);
            assert_eq!(
                statements[0].subject,
                vec![Subject::image(REPO, digest).unwrap()]
            );
            assert!(
                statements[0].predicate["documentNamespace"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{arch}")),
            );
        }
        assert_eq!(summary.sboms.len(), 3);
        assert_eq!(summary.sboms[0].arch, None);
        assert_eq!(summary.sboms[1].arch.as_deref(), Some("amd64"));
        assert_eq!(
            summary.provenance.as_ref().unwrap().reference,
            format!("{REPO}:{}", attestation_tag(DIGEST).unwrap())
        );

        // Attesting the same build again is a no-op.
        let pushes = store.state.lock().unwrap().pushes;
        let again = block_on(attest_build(
            &store,
            &image,
            &key,
            Some(&provenance_inputs()),
            Some(&build_sboms()),
        ))
        .unwrap();
        assert!(!again.signature.appended);
        assert!(!again.provenance.unwrap().appended);
        assert!(again.sboms.iter().all(|sbom| !sbom.artifact.appended));
        assert_eq!(store.state.lock().unwrap().pushes, pushes);
    }

    #[test]
    fn single_manifest_images_get_only_their_platform_sbom() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let image = PublishedImage {
            repository: REPO.to_owned(),
            digest: AMD_DIGEST.to_owned(),
            tag: None,
            platforms: vec![PublishedPlatform {
                arch: "amd64".to_owned(),
                digest: AMD_DIGEST.to_owned(),
            }],
        };
        let sboms = BuildSboms {
            images: vec![sbom_input("amd64", AMD_DIGEST)],
            ..build_sboms()
        };
        let summary = block_on(attest_build(&store, &image, &key, None, Some(&sboms))).unwrap();
        assert_eq!(summary.provenance, None);
        assert_eq!(summary.sboms.len(), 1);
        let statements = statements_under(&store, AMD_DIGEST, &key);
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].predicate_type, SPDX_PREDICATE_TYPE);
    }

    #[test]
    fn sbom_for_a_foreign_image_is_rejected() {
        let store = MemoryStore::default();
        let key = SigningKey::generate().unwrap();
        let mut sboms = build_sboms();
        sboms.images[1].image.digest = DIGEST.replace("87ef", "0000");
        let error =
            block_on(attest_build(&store, &published(), &key, None, Some(&sboms))).unwrap_err();
        assert!(
            error.to_string().contains("which is not a platform image"),
            "{error}"
        );
    }

    #[test]
    fn repository_names_follow_cosign() {
        fn check(image: &str, name: &str, target: &str) {
            let reference = securebuild_registry::parse_reference(image).unwrap();
            assert_eq!(repository_name(&reference), name, "{image}");
            assert_eq!(tag_or_digest(&reference), target, "{image}");
            let back = repository_reference(name);
            let expected_registry = name.split_once('/').unwrap().0;
            assert_eq!(back.registry(), expected_registry, "{image}");
            assert_eq!(back.repository(), reference.repository(), "{image}");
        }
        check("alpine", "index.docker.io/library/alpine", "latest");
        check(
            "docker.io/chainguard/static:v1",
            "index.docker.io/chainguard/static",
            "v1",
        );
        check(
            "127.0.0.1:5000/team/app:v1",
            "127.0.0.1:5000/team/app",
            "v1",
        );
        check(
            &format!("registry.example/app:v1@{DIGEST}"),
            "registry.example/app",
            DIGEST,
        );
        let bare = repository_reference("alpine");
        assert_eq!(
            (bare.registry(), bare.repository()),
            ("docker.io", "library/alpine")
        );
    }

    #[test]
    fn published_image_from_build_result() {
        use crate::result::{ImageResult, PlatformResult};
        let mut result = ImageResult {
            digest: DIGEST.to_owned(),
            reference: Some(format!("{REPO}@{DIGEST}")),
            platforms: vec![
                PlatformResult {
                    arch: "amd64".to_owned(),
                    variant: None,
                    digest: AMD_DIGEST.to_owned(),
                },
                PlatformResult {
                    arch: "arm64".to_owned(),
                    variant: Some("v8".to_owned()),
                    digest: ARM_DIGEST.to_owned(),
                },
            ],
            tags: vec!["latest".to_owned(), "1.0".to_owned()],
            lock: DIGEST.to_owned(),
            packages: 3,
        };
        assert_eq!(PublishedImage::from_result(&result), Some(published()));
        result.reference = None;
        assert_eq!(PublishedImage::from_result(&result), None);
        result.reference = Some(format!("{REPO}@{AMD_DIGEST}"));
        assert_eq!(PublishedImage::from_result(&result), None);
    }
}
