//! Package re-resolution in the operator process: [`PackageResolver`] resolves an ImageBuild's
//! configuration as a build would (same repositories, keyring and architectures) and returns
//! the lock digest, so that `spec.rebuild.interval` notices new packages without running a
//! build. Signing uses the same resolution to list what an image contains.
//!
//! Index and key fetches go through the operator's cache directory and are revalidated with
//! `If-None-Match`, so an unchanged repository costs one `304` per index. Nothing here builds,
//! pushes or writes status.

use std::sync::Arc;

use futures::future::BoxFuture;
use securebuild_builder::build::{BuildOptions, resolve_config};
use securebuild_builder::resolve::Resolution;
use securebuild_builder::result::ImageResult;
use securebuild_crds::image_config::Architecture;
use securebuild_crds::{ConfigError as ImageConfigError, ImageBuild, ImageConfiguration};

use crate::config::Config;
use crate::hooks::{HookError, LockResolver};
use crate::job::{JobError, effective_image};

/// The hook name in errors and events.
pub const HOOK_NAME: &str = "package re-resolution";

/// Why an ImageBuild's packages cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The ImageBuild has no usable configuration (no repositories anywhere).
    #[error(transparent)]
    Spec(#[from] JobError),
    /// A platform of the built image is not an architecture the builder knows.
    #[error("platform `{platform}` is not a known architecture")]
    Platform {
        /// The platform, `architecture[/variant]`.
        platform: String,
        /// The parser's error.
        #[source]
        source: ImageConfigError,
    },
    /// Resolution failed (an index or key cannot be fetched or verified, or no solution).
    #[error("cannot resolve the packages")]
    Resolve {
        /// The builder's error.
        #[source]
        source: securebuild_builder::error::Error,
    },
}

/// A configuration resolved the way its build resolved it.
#[derive(Debug)]
pub struct Resolved {
    /// The configuration (with the operator's default repositories when the spec has none).
    pub image: ImageConfiguration,
    /// The options it was resolved with (cache directory, architectures).
    pub options: BuildOptions,
    /// The resolution.
    pub resolution: Resolution,
}

/// The build options of the operator process: its cache and work directories and, when given,
/// only these architectures.
pub fn build_options(config: &Config, archs: Vec<Architecture>) -> BuildOptions {
    BuildOptions {
        archs,
        cache_dir: config.cache_dir(),
        work_dir: config.work_dir.clone(),
        ..BuildOptions::default()
    }
}

/// An OCI platform as `architecture[/variant]` (`amd64`, `arm/v7`).
pub fn platform_name(architecture: &str, variant: Option<&str>) -> String {
    match variant {
        Some(variant) => format!("{architecture}/{variant}"),
        None => architecture.to_string(),
    }
}

/// The architecture of an OCI platform (`amd64`, `arm` + `v7`).
pub fn platform_architecture(
    architecture: &str,
    variant: Option<&str>,
) -> Result<Architecture, ResolveError> {
    let platform = platform_name(architecture, variant);
    Architecture::parse(&platform).map_err(|source| ResolveError::Platform { platform, source })
}

/// The architectures to resolve for: none (the configuration decides) when the spec names its
/// architectures, otherwise those of the built image, since an image without `archs` is built
/// for the architecture of the machine that builds it, which need not be the operator's.
pub fn archs_to_resolve(
    ib: &ImageBuild,
    platforms: &[(String, Option<String>)],
) -> Result<Vec<Architecture>, ResolveError> {
    if !ib.spec.image.archs.is_empty() {
        return Ok(Vec::new());
    }
    platforms
        .iter()
        .map(|(architecture, variant)| platform_architecture(architecture, variant.as_deref()))
        .collect()
}

/// Resolves `ib`'s configuration as its build did: for `platforms` (the built image's, as
/// `(architecture, variant)`) when the spec names no architectures.
pub async fn resolve_image(
    ib: &ImageBuild,
    config: &Config,
    platforms: &[(String, Option<String>)],
) -> Result<Resolved, ResolveError> {
    let image = effective_image(ib, config)?;
    let options = build_options(config, archs_to_resolve(ib, platforms)?);
    let resolution = resolve_config(&image, &options)
        .await
        .map_err(|source| ResolveError::Resolve { source })?;
    Ok(Resolved {
        image,
        options,
        resolution,
    })
}

/// Resolves `ib`'s configuration as the build that produced `image` did (for its platforms).
pub async fn resolve_built(
    ib: &ImageBuild,
    config: &Config,
    image: &ImageResult,
) -> Result<Resolved, ResolveError> {
    let platforms: Vec<(String, Option<String>)> = image
        .platforms
        .iter()
        .map(|p| (p.arch.clone(), p.variant.clone()))
        .collect();
    resolve_image(ib, config, &platforms).await
}

/// The [`LockResolver`] of the operator: resolves in-process and returns
/// [`Resolution::digest`].
#[derive(Clone, Debug)]
pub struct PackageResolver {
    config: Arc<Config>,
}

impl PackageResolver {
    /// A resolver with the operator's cache directory.
    pub fn new(config: Arc<Config>) -> Self {
        Self { config }
    }
}

impl LockResolver for PackageResolver {
    fn resolve<'a>(&'a self, ib: &'a ImageBuild) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move {
            let platforms: Vec<(String, Option<String>)> = ib
                .status
                .as_ref()
                .map(|status| {
                    status
                        .platforms
                        .iter()
                        .map(|p| (p.architecture.clone(), p.variant.clone()))
                        .collect()
                })
                .unwrap_or_default();
            resolve_image(ib, &self.config, &platforms)
                .await
                .map(|resolved| resolved.resolution.digest())
                .map_err(|error| HookError::failed(HOOK_NAME, ib, error))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestImageBuild;
    use std::path::PathBuf;

    #[test]
    fn platforms_become_architectures() {
        let cases: [(&str, Option<&str>, Option<&str>); 4] = [
            ("amd64", None, Some("x86_64")),
            ("arm64", None, Some("aarch64")),
            ("arm", Some("v7"), Some("armv7")),
            ("sparc", None, None),
        ];
        for (architecture, variant, apk) in cases {
            let parsed = platform_architecture(architecture, variant);
            assert_eq!(
                parsed.as_ref().ok().map(Architecture::apk),
                apk,
                "{architecture}"
            );
        }
        let error = platform_architecture("arm", Some("v9")).unwrap_err();
        assert!(error.to_string().contains("`arm/v9`"), "{error}");
    }

    #[test]
    fn spec_architectures_win_over_the_built_platforms() {
        let built = [("arm64".to_string(), None)];
        let unpinned = TestImageBuild::new().build();
        let archs = archs_to_resolve(&unpinned, &built).unwrap();
        assert_eq!(archs, [Architecture::parse("arm64").unwrap()]);

        let mut pinned = TestImageBuild::new().build();
        pinned.spec.image.archs = vec![Architecture::parse("amd64").unwrap()];
        assert!(archs_to_resolve(&pinned, &built).unwrap().is_empty());
    }

    #[test]
    fn options_use_the_operator_directories() {
        let config = Config {
            cache_dir: Some(PathBuf::from("/cache")),
            work_dir: Some(PathBuf::from("/work")),
            ..Config::default()
        };
        let options = build_options(&config, Vec::new());
        assert_eq!(options.cache_dir, PathBuf::from("/cache"));
        assert_eq!(options.work_dir, Some(PathBuf::from("/work")));
        assert!(!options.allow_untrusted);
    }

    #[tokio::test]
    async fn no_repositories_is_a_spec_error() {
        let ib = TestImageBuild::new().repositories(&[]).build();
        let resolver = PackageResolver::new(Arc::new(Config::default()));
        let error = resolver.resolve(&ib).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("package re-resolution failed for ImageBuild `team/app`"),
            "{text}"
        );
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(source.contains("lists no repositories"), "{source}");
    }
}
