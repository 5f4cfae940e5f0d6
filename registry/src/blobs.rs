//! Blobs in a repository: whether it has one (`HEAD`), reading a small one whole with its
//! digest checked, uploading (streamed, committed with `?digest=`) and cross-repository mounts.

use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use reqwest::header;

use crate::client::Registry;
use crate::digest::sha256_digest;
use crate::error::{Action, Chain, RegistryError};
use crate::reference::check_digest;
use crate::session::Session;

/// The largest blob [`Registry::fetch_blob`] reads into memory.
pub const MAX_FETCHED_BLOB_BYTES: u64 = 64 << 20;

impl Registry {
    /// Reads a blob (at most [`MAX_FETCHED_BLOB_BYTES`]) and checks its digest. Only the
    /// registry and repository of `repository` are used.
    pub async fn fetch_blob(
        &self,
        repository: &Reference,
        digest: &str,
    ) -> Result<Bytes, RegistryError> {
        check_digest(digest)?;
        let session = self.session(repository).await?;
        self.retrying(|| self.get_blob(&session, digest)).await
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(
        &self,
        repository: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        check_digest(digest)?;
        let session = self.session(repository).await?;
        self.retrying(|| self.head_blob(&session, digest)).await
    }

    /// Uploads a blob held in memory unless the registry has it; returns its digest and whether
    /// it was uploaded.
    pub async fn push_blob_bytes(
        &self,
        repository: &Reference,
        bytes: impl Into<Bytes>,
    ) -> Result<(String, bool), RegistryError> {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        let session = self.session(repository).await?;
        if self.retrying(|| self.head_blob(&session, &digest)).await? {
            return Ok((digest, false));
        }
        let size = bytes.len() as u64;
        self.retrying(|| {
            let chunk = bytes.clone();
            let stream = futures::stream::once(async move { Ok(chunk) });
            self.upload_blob(&session, &digest, stream, size)
        })
        .await?;
        Ok((digest, true))
    }

    /// Asks the registry to mount `digest` from repository `from`: `true` when it did (`201`);
    /// `false` when it opened an upload session instead (`202`, which is closed again) or
    /// refused.
    pub(crate) async fn mount_blob(
        &self,
        session: &Session,
        digest: &str,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            session.base_url, session.repository
        );
        let response = self
            .send(
                session,
                RegistryOperation::Push,
                Action::UploadingBlob,
                digest,
                |http| http.post(&url).header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        let status = response.status().as_u16();
        if status == 202
            && let Some(location) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
        {
            // Close the upload session the registry opened; the blob is uploaded afresh.
            let location = if location.starts_with('/') {
                format!("{}{location}", session.base_url)
            } else {
                location.to_string()
            };
            let closed = self
                .send(
                    session,
                    RegistryOperation::Push,
                    Action::UploadingBlob,
                    digest,
                    |http| http.delete(&location),
                )
                .await;
            if let Err(error) = closed {
                tracing::debug!(%digest, error = %Chain(&error), "cannot close an unused upload session");
            }
        }
        Ok(status == 201)
    }

    pub(crate) async fn head_blob(
        &self,
        session: &Session,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        session.authorization(self, RegistryOperation::Pull).await?;
        session
            .oci
            .blob_exists(&session.base, digest)
            .await
            .map_err(|error| session.oci_error(Action::CheckingBlob, digest, error))
    }

    pub(crate) async fn upload_blob<S>(
        &self,
        session: &Session,
        digest: &str,
        stream: S,
        size: u64,
    ) -> Result<(), RegistryError>
    where
        S: futures::Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static,
    {
        session.authorization(self, RegistryOperation::Push).await?;
        session
            .oci
            .push_blob_stream(&session.base, stream, digest, Some(size))
            .await
            .map_err(|error| session.oci_error(Action::UploadingBlob, digest, error))?;
        Ok(())
    }

    async fn get_blob(&self, session: &Session, digest: &str) -> Result<Bytes, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            session.base_url, session.repository
        );
        let action = Action::FetchingBlob;
        let response = self
            .send(session, RegistryOperation::Pull, action, digest, |http| {
                http.get(&url)
            })
            .await?;
        let bytes = session
            .read_success(response, MAX_FETCHED_BLOB_BYTES, action, digest)
            .await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(session.digest_mismatch(action, digest, digest, &actual));
        }
        Ok(bytes)
    }
}
