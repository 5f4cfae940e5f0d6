//! Extension points of the controller: [`PostBuild`] runs after a successful build (signing and
//! attestations plug in here) and [`LockResolver`] re-resolves an ImageBuild's packages for
//! `spec.rebuild.interval`.
//!
//! This module only defines the contracts and the stand-ins used when nothing is plugged in;
//! it signs nothing and resolves nothing itself.

use futures::future::BoxFuture;
use kube::ResourceExt;
use securebuild_builder::result::ImageResult;
use securebuild_crds::ImageBuild;
use securebuild_crds::imagebuild::{ArtifactReference, AttestationReference, InstalledPackage};

/// Any error a hook implementation reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`PostBuild`] hook attached to the image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SigningOutcome {
    /// The cosign signature, if the image was signed.
    pub signature: Option<ArtifactReference>,
    /// The SBOM attestation, if one was attached.
    pub sbom: Option<ArtifactReference>,
    /// Every attestation attached (provenance, SBOM).
    pub attestations: Vec<AttestationReference>,
    /// The installed packages, when the hook resolved them again and found the build's lock.
    pub packages: Option<Vec<InstalledPackage>>,
}

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook has no implementation in this operator.
    #[error("{hook} is not available in this operator")]
    NotConfigured {
        /// The hook's name.
        hook: &'static str,
    },
    /// The implementation failed.
    #[error("{hook} failed for ImageBuild `{image_build}`")]
    Failed {
        /// The hook's name.
        hook: &'static str,
        /// `namespace/name` of the ImageBuild.
        image_build: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

impl HookError {
    /// [`HookError::Failed`] of `hook` for `ib`.
    pub fn failed(
        hook: &'static str,
        ib: &ImageBuild,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Failed {
            hook,
            image_build: format!("{}/{}", ib.namespace().unwrap_or_default(), ib.name_any()),
            source: Box::new(source),
        }
    }
}

/// Work after a successful build, before the ImageBuild is reported `Ready`: signing the image
/// and attaching attestations. A failure leaves the image pushed and reports `SigningFailed`.
pub trait PostBuild: Send + Sync {
    /// Called once per successful build with the builder's result.
    fn after_success<'a>(
        &'a self,
        ib: &'a ImageBuild,
        result: &'a ImageResult,
    ) -> BoxFuture<'a, Result<SigningOutcome, HookError>>;
}

/// The [`PostBuild`] used when signing is not configured: attaches nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSigning;

impl PostBuild for NoSigning {
    fn after_success<'a>(
        &'a self,
        _ib: &'a ImageBuild,
        _result: &'a ImageResult,
    ) -> BoxFuture<'a, Result<SigningOutcome, HookError>> {
        Box::pin(async { Ok(SigningOutcome::default()) })
    }
}

/// Resolves an ImageBuild's packages against its repositories, as a build would, and returns
/// the lock digest (`sha256:…` of the lockfile).
pub trait LockResolver: Send + Sync {
    /// Resolves the packages of `ib`.
    fn resolve<'a>(&'a self, ib: &'a ImageBuild) -> BoxFuture<'a, Result<String, HookError>>;
}

/// The [`LockResolver`] used when in-process resolution is not available: every call fails
/// with [`HookError::NotConfigured`], which the controller reports as a warning event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResolver;

impl LockResolver for NoResolver {
    fn resolve<'a>(&'a self, _ib: &'a ImageBuild) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async {
            Err(HookError::NotConfigured {
                hook: crate::resolver::HOOK_NAME,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stand_ins() {
        let ib = crate::fixtures::TestImageBuild::new().build();
        let result = crate::fixtures::image_result("sha256:lock");
        assert_eq!(
            NoSigning.after_success(&ib, &result).await.unwrap(),
            SigningOutcome::default()
        );
        let error = NoResolver.resolve(&ib).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "package re-resolution is not available in this operator"
        );
    }
}
