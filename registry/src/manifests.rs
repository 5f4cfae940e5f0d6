//! Manifests in a repository: media types, reading one by tag or digest with its exact bytes
//! (the digest checked against the reference and the `Docker-Content-Digest` header), asking
//! where a tag points, and pushing one under a tag or digest.

use bytes::Bytes;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{self, HeaderMap};
use serde::Deserialize;

use crate::client::{MAX_ERROR_BODY_BYTES, Registry};
use crate::digest::{SHA256_PREFIX, sha256_digest};
use crate::error::{Action, RegistryError};
use crate::reference::{check_digest, check_tag, tag_or_digest};
use crate::session::Session;

/// OCI media type of an image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI media type of an image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type this module reads and pushes.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_LIST_MEDIA_TYPE,
];
/// The header in which registries report a manifest's or blob's digest.
pub const DOCKER_CONTENT_DIGEST_HEADER: &str = "docker-content-digest";
/// The layout marker file.
/// Largest manifest read or pushed (the limit `distribution` enforces).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A manifest read from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Its exact bytes.
    pub bytes: Bytes,
    /// `sha256:` of the bytes (checked against the reference and the registry's header).
    pub digest: String,
    /// Its media type: the body's `mediaType`, else the `Content-Type` header.
    pub media_type: String,
}

impl Registry {
    /// Reads a manifest by tag or digest, with its exact bytes, verified digest and media type.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let session = self.session(reference).await?;
        let target = tag_or_digest(reference);
        self.retrying(|| self.get_manifest(&session, target)).await
    }

    /// Pushes manifest bytes under a tag or a digest (which must be the bytes' digest) and
    /// returns the digest, checked against the one the registry reports.
    pub async fn push_manifest_bytes(
        &self,
        repository: &Reference,
        tag_or_digest: &str,
        bytes: impl Into<Bytes>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        if tag_or_digest.contains(':') {
            check_digest(tag_or_digest)?;
        } else {
            check_tag(tag_or_digest)?;
        }
        let session = self.session(repository).await?;
        if tag_or_digest.contains(':') && tag_or_digest != digest {
            return Err(session.digest_mismatch(
                Action::PushingManifest,
                tag_or_digest,
                tag_or_digest,
                &digest,
            ));
        }
        let pushed = self
            .put_manifest(&session, tag_or_digest, &bytes, media_type)
            .await?;
        if pushed != digest {
            return Err(session.digest_mismatch(
                Action::PushingManifest,
                tag_or_digest,
                &digest,
                &pushed,
            ));
        }
        Ok(digest)
    }

    /// Whether the manifest `reference` names (by digest, else by tag) exists.
    pub async fn manifest_exists(&self, reference: &Reference) -> Result<bool, RegistryError> {
        let session = self.session(reference).await?;
        let target = tag_or_digest(reference);
        let found = self
            .manifest_digest(&session, target, Action::CheckingManifest)
            .await?;
        Ok(found.is_some())
    }

    /// The digest `tag` points at in the repository, or `None` when the tag (or the
    /// repository) does not exist.
    pub async fn tag_digest(
        &self,
        repository: &Reference,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        check_tag(tag)?;
        let session = self.session(repository).await?;
        self.manifest_digest(&session, tag, Action::CheckingManifest)
            .await
    }

    pub(crate) async fn get_manifest(
        &self,
        session: &Session,
        target: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = session.manifest_url(target);
        let action = Action::FetchingManifest;
        let response = self
            .send(session, RegistryOperation::Pull, action, target, |http| {
                http.get(&url).header(header::ACCEPT, accept_manifests())
            })
            .await?;
        if response.status().as_u16() == 404 {
            return Err(RegistryError::NotFound {
                context: session.context(action, target),
            });
        }
        let reported = reported_digest(response.headers());
        let content_type = content_media_type(response.headers());
        let bytes = session
            .read_success(response, MAX_MANIFEST_BYTES, action, target)
            .await?;
        let digest = sha256_digest(&bytes);
        if target.contains(':') && target != digest {
            return Err(session.digest_mismatch(action, target, target, &digest));
        }
        if let Some(reported) = reported.filter(|reported| reported.starts_with(SHA256_PREFIX))
            && reported != digest
        {
            return Err(session.digest_mismatch(action, target, &reported, &digest));
        }
        #[derive(Deserialize)]
        struct MediaTypeOnly {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let declared = serde_json::from_slice::<MediaTypeOnly>(&bytes)
            .ok()
            .and_then(|body| body.media_type)
            .filter(|media_type| !media_type.is_empty());
        let media_type =
            declared
                .or(content_type)
                .ok_or_else(|| RegistryError::MissingMediaType {
                    context: session.context(action, target),
                })?;
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// The digest a tag or digest resolves to, `None` on 404.
    pub(crate) async fn manifest_digest(
        &self,
        session: &Session,
        target: &str,
        action: Action,
    ) -> Result<Option<String>, RegistryError> {
        let url = session.manifest_url(target);
        let response = self
            .retrying(|| {
                self.send(session, RegistryOperation::Pull, action, target, |http| {
                    http.head(&url).header(header::ACCEPT, accept_manifests())
                })
            })
            .await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if !response.status().is_success() {
            let error = session.status_error(action, target, status, &[]);
            return Err(error);
        }
        match reported_digest(response.headers()) {
            Some(digest) => {
                if target.contains(':') && digest.starts_with(SHA256_PREFIX) && digest != target {
                    return Err(session.digest_mismatch(action, target, target, &digest));
                }
                Ok(Some(digest))
            }
            None => match self.retrying(|| self.get_manifest(session, target)).await {
                Ok(manifest) => Ok(Some(manifest.digest)),
                Err(RegistryError::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            },
        }
    }

    /// `PUT`s a manifest and returns the digest the registry reports (or the bytes' digest when
    /// it reports none).
    pub(crate) async fn put_manifest(
        &self,
        session: &Session,
        target: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let size = bytes.len() as u64;
        if size > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                digest,
                size,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let url = session.manifest_url(target);
        let action = Action::PushingManifest;
        let response = self
            .retrying(|| {
                self.send(session, RegistryOperation::Push, action, target, |http| {
                    http.put(&url)
                        .header(header::CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                })
            })
            .await?;
        let status = response.status().as_u16();
        let reported = reported_digest(response.headers());
        let body = session
            .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
            .await?;
        if !(200..300).contains(&status) {
            return Err(session.status_error(action, target, status, &body));
        }
        match reported {
            Some(reported) if reported.starts_with(SHA256_PREFIX) && reported != digest => {
                Err(session.digest_mismatch(action, target, &digest, &reported))
            }
            _ => Ok(digest),
        }
    }
}

/// The `Accept` value asking for every manifest media type read here.
pub fn accept_manifests() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}

/// The media type of a response's `Content-Type`, without parameters, if any.
pub fn content_media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|value| !value.is_empty())
}

/// The `Docker-Content-Digest` a response reports, if any.
pub fn reported_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get(DOCKER_CONTENT_DIGEST_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}
