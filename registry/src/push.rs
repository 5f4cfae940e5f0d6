//! Pushing an OCI image layout: the blobs the registry lacks (mounted from another repository
//! when [`crate::blob_record`] knows one, else uploaded from disk), then the manifests children
//! first, then the tags; [`PushReport`] says what was done.

use std::path::Path;

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};

use crate::client::Registry;
use crate::error::{Action, Chain, RegistryError};
use crate::layout::{LayoutError, READ_BUFFER_BYTES, read_layout, verify_file};
use crate::reference::check_tag;
use crate::session::Session;

/// What [`Registry::push_layout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// `registry/repository@digest` of the pushed root.
    pub reference: String,
    /// The root's digest (the index, or the single manifest).
    pub digest: String,
    /// The root's media type.
    pub media_type: String,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
    /// Bytes in mounted blobs.
    pub bytes_mounted: u64,
    /// Bytes uploaded in blobs.
    pub bytes_uploaded: u64,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Bytes in blobs the registry already had.
    pub bytes_skipped: u64,
    /// Manifests (including the root) pushed by digest.
    pub manifests_pushed: usize,
    /// Manifests (including the root) the registry already had.
    pub manifests_skipped: usize,
    /// Every tag that now points at the root, in the order given.
    pub tags: Vec<String>,
    /// Tags that had to be set or moved.
    pub tags_updated: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobPush {
    /// The repository already had it.
    Present,
    /// Mounted from another repository.
    Mounted,
    /// Uploaded.
    Uploaded,
}

impl Registry {
    /// Pushes the OCI image layout at `layout_dir` to `target`'s repository.
    ///
    /// 1. Reads `oci-layout` and `index.json`, whose entries must all name one root (an image
    ///    index or one image manifest; repeats under other `ref.name` annotations are fine),
    ///    and every manifest below it, checking each digest and size.
    /// 2. Uploads every config and layer blob the registry does not have (`HEAD` first),
    ///    checking the local file's digest before streaming it from disk.
    /// 3. Pushes each manifest by digest (children before their index), skipping those
    ///    present, then the root.
    /// 4. Points each tag at the root: `target`'s tag first (`latest` when the reference had
    ///    neither tag nor digest), then `tags`; tags already pointing there are left alone.
    ///
    /// Every digest the registry reports must match what was pushed. Any failure, including
    /// one after some blobs were uploaded, is an error. When `target` carries a digest, the
    /// layout's root must have it.
    pub async fn push_layout(
        &self,
        layout_dir: &Path,
        target: &Reference,
        tags: &[String],
    ) -> Result<PushReport, RegistryError> {
        let layout = read_layout(layout_dir)?;
        if let Some(expected) = target.digest()
            && expected != layout.root.digest
        {
            return Err(RegistryError::TargetDigestMismatch {
                reference: target.whole(),
                expected: expected.to_owned(),
                actual: layout.root.digest.clone(),
            });
        }
        let tags = tags_to_push(target, tags)?;
        let session = self.session(target).await?;
        session.authorization(self, RegistryOperation::Push).await?;
        session.authorization(self, RegistryOperation::Pull).await?;

        let mut report = PushReport {
            reference: format!(
                "{}/{}@{}",
                session.registry, session.repository, layout.root.digest
            ),
            digest: layout.root.digest.clone(),
            media_type: layout.root.media_type.clone(),
            blobs_uploaded: 0,
            blobs_mounted: 0,
            bytes_mounted: 0,
            bytes_uploaded: 0,
            blobs_skipped: 0,
            bytes_skipped: 0,
            manifests_pushed: 0,
            manifests_skipped: 0,
            tags: tags.clone(),
            tags_updated: 0,
        };

        let concurrency = self.options.upload_concurrency.max(1);
        let outcomes: Vec<(BlobPush, u64)> = futures::stream::iter(layout.blobs.iter())
            .map(|(digest, size)| {
                let path = layout.blob_path(digest);
                let session = &session;
                async move {
                    let uploaded = self.push_layout_blob(session, &path, digest, *size).await?;
                    Ok::<_, RegistryError>((uploaded, *size))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (outcome, size) in outcomes {
            match outcome {
                BlobPush::Uploaded => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += size;
                }
                BlobPush::Mounted => {
                    report.blobs_mounted += 1;
                    report.bytes_mounted += size;
                }
                BlobPush::Present => {
                    report.blobs_skipped += 1;
                    report.bytes_skipped += size;
                }
            }
        }
        self.blobs.save();

        for manifest in layout.manifests.iter().chain(std::iter::once(&layout.root)) {
            let present = self
                .manifest_digest(&session, &manifest.digest, Action::CheckingManifest)
                .await?;
            if present.as_deref() == Some(manifest.digest.as_str()) {
                report.manifests_skipped += 1;
                continue;
            }
            self.put_manifest(
                &session,
                &manifest.digest,
                &manifest.bytes,
                &manifest.media_type,
            )
            .await?;
            report.manifests_pushed += 1;
        }

        for tag in &tags {
            let current = self
                .manifest_digest(&session, tag, Action::CheckingManifest)
                .await?;
            if current.as_deref() == Some(layout.root.digest.as_str()) {
                continue;
            }
            let digest = self
                .put_manifest(&session, tag, &layout.root.bytes, &layout.root.media_type)
                .await?;
            if digest != layout.root.digest {
                return Err(session.digest_mismatch(
                    Action::PushingManifest,
                    tag,
                    &layout.root.digest,
                    &digest,
                ));
            }
            report.tags_updated += 1;
        }
        tracing::info!(
            reference = %report.reference,
            blobs_uploaded = report.blobs_uploaded,
            blobs_skipped = report.blobs_skipped,
            tags = ?report.tags,
            "pushed image"
        );
        Ok(report)
    }

    /// Pushes one layout blob unless present: mounted from another repository of the registry
    /// that holds it, else uploaded.
    async fn push_layout_blob(
        &self,
        session: &Session,
        path: &Path,
        digest: &str,
        size: u64,
    ) -> Result<BlobPush, RegistryError> {
        if self.retrying(|| self.head_blob(session, digest)).await? {
            tracing::debug!(%digest, "blob already present");
            self.blobs
                .note(&session.registry, &session.repository, digest);
            return Ok(BlobPush::Present);
        }
        for from in self
            .blobs
            .sources(&session.registry, digest, &session.repository)
        {
            match self.mount_blob(session, digest, &from).await {
                Ok(true) => {
                    tracing::debug!(%digest, %from, "blob mounted");
                    self.blobs
                        .note(&session.registry, &session.repository, digest);
                    return Ok(BlobPush::Mounted);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%digest, %from, error = %Chain(&error), "mount failed; uploading instead");
                }
            }
        }
        verify_file(path, digest, size).await?;
        self.retrying(|| async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| LayoutError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER_BYTES)
                .map_err(OciDistributionError::IoError);
            self.upload_blob(session, digest, stream, size).await
        })
        .await?;
        tracing::debug!(%digest, size, "blob uploaded");
        self.blobs
            .note(&session.registry, &session.repository, digest);
        Ok(BlobPush::Uploaded)
    }
}

/// The tags a push sets: the target's own tag, then `extra`, without repeats.
fn tags_to_push(target: &Reference, extra: &[String]) -> Result<Vec<String>, RegistryError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in target
        .tag()
        .into_iter()
        .chain(extra.iter().map(String::as_str))
    {
        check_tag(tag)?;
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_owned());
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse_reference;

    #[test]
    fn tags_collect_in_order_without_repeats() {
        let target = parse_reference("ghcr.io/app:v1").unwrap();
        let extra = ["v1".to_owned(), "stable".to_owned(), "stable".to_owned()];
        assert_eq!(tags_to_push(&target, &extra).unwrap(), ["v1", "stable"]);
        let by_digest = parse_reference(&format!("ghcr.io/app@sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(tags_to_push(&by_digest, &[]).unwrap(), Vec::<String>::new());
        assert!(tags_to_push(&target, &["bad/tag".to_owned()]).is_err());
    }
}
