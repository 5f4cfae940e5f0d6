//! [`Signer`], the [`PostBuild`] hook that signs what a build pushed and attaches its
//! attestations, in cosign's layout, with the operator's key:
//!
//! - the signature covers the image's top-level digest (the index), as `cosign sign` does;
//! - the SLSA provenance v1 statement names the operator as the builder
//!   (`https://securebuild.dev/operator@<namespace>/<deployment>`), the ImageBuild's image
//!   configuration and push target as the external parameters, and every index, key and
//!   package as a resolved dependency;
//! - the SPDX SBOMs follow apko: the index document on the index, one document per platform on
//!   that platform's manifest.
//!
//! The provenance and SBOM inputs come from `securebuild_builder::attest::inputs`, as those of
//! `securebuild build --sign-key` do, so both attest the same facts; packages are attributed to
//! the distribution the image's `/etc/os-release` names (read from the packages that install it,
//! with the configuration's `os-release` fields over it).
//!
//! `spec.signing.enabled: false` turns all of it off (attestations are signed envelopes, so
//! they need the key too); `spec.attestations.provenance` and `.sbom` choose the attestations.
//! Everything is pushed with the ImageBuild's push Secret.
//!
//! # Where the dependency list comes from
//!
//! The builder's result carries digests and the lock digest, not the packages. Rather than
//! trusting a package list reported by the build (which, with the `pod` backend, runs in the
//! tenant's namespace), the signer resolves the ImageBuild's configuration again in the operator
//! (indexes are verified against their signatures and revalidated through the cache with
//! `If-None-Match`), fetches and verifies the packages (from the cache when they are there),
//! and attests only when the resolution's digest equals the lock digest the build reported. So
//! the control plane derives the provenance from signed repository metadata, out of the
//! build's reach, as SLSA Build L3 asks. When the repositories changed between the build and
//! the signing, the digests differ and nothing is signed (`SigningFailed`); the next package
//! update builds again.
//!
//! # The signing key Secret
//!
//! The Secret named by `signingKeySecret` (in `signingKeyNamespace`, by default the operator's
//! namespace) holds either cosign's `cosign.key` (an encrypted cosign key) with its password in
//! `cosign.password` — what `cosign generate-key-pair k8s://<namespace>/<name>` writes — or an
//! unencrypted ECDSA P-256 `key.pem` (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`). The Secret
//! is read for every signing; the decrypted key is kept while the Secret's resourceVersion
//! stays the same.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, ResourceExt};
use securebuild_builder::apk::package::VerifiedPackage;
use securebuild_builder::attest::inputs::{self, RunDetails};
use securebuild_builder::attest::keys::{KeyError, SigningKey};
use securebuild_builder::attest::provenance::SLSA_PROVENANCE_V1;
use securebuild_builder::attest::publish::{
    ArtifactRef, AttestationSummary, BuildSboms, PublishError, PublishedImage, attest_build,
};
use securebuild_builder::attest::sbom::SPDX_PREDICATE_TYPE;
use securebuild_builder::build::fetch_packages;
use securebuild_builder::image::os_release::{OS_RELEASE_PATH, ReleaseInfo, parse};
use securebuild_builder::resolve::Resolution;
use securebuild_builder::result::ImageResult;
use securebuild_crds::ImageBuild;
use securebuild_crds::image_config::OsRelease;
use securebuild_crds::imagebuild::{ArtifactReference, AttestationReference};
use serde_json::json;

use crate::config::{Config, SecretRef};
use crate::credentials::{CredentialsError, registry_for};
use crate::hooks::{HookError, PostBuild, SigningOutcome};
use crate::packages::{installed_packages, list_packages};
use crate::resolver::{
    ResolveError, Resolved, platform_architecture, platform_name, resolve_built,
};
use crate::status::format_time;

/// The hook name in errors and events.
pub const HOOK_NAME: &str = "signing";
/// The Secret key of cosign's encrypted private key.
pub const COSIGN_KEY: &str = "cosign.key";
/// The Secret key of the password of [`COSIGN_KEY`].
pub const COSIGN_PASSWORD: &str = "cosign.password";
/// The Secret key of an unencrypted PEM private key.
pub const PEM_KEY: &str = "key.pem";
/// The start of the provenance builder id; `<namespace>/<deployment>` follows.
pub const BUILDER_ID_PREFIX: &str = "https://securebuild.dev/operator@";
/// The largest `os-release` file read from a package.
pub const MAX_OS_RELEASE_BYTES: u64 = 64 * 1024;
/// How many symbolic links are followed to find `os-release`.
const MAX_LINK_HOPS: usize = 8;

/// Why an image could not be signed or attested.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signing key Secret cannot be read.
    #[error("cannot read the signing key Secret `{secret}`")]
    KeySecret {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The Secret holds no key under a known name.
    #[error("the signing key Secret `{secret}` has neither `{COSIGN_KEY}` nor `{PEM_KEY}`")]
    NoKey {
        /// `namespace/name` of the Secret.
        secret: String,
    },
    /// The key cannot be read (malformed, wrong password, not P-256).
    #[error("the `{key}` of the signing key Secret `{secret}` is unusable")]
    Key {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The Secret key holding it.
        key: &'static str,
        /// What is wrong.
        #[source]
        source: KeyError,
    },
    /// The build result names no pushed image.
    #[error(
        "the build of {digest} pushed nothing (no `repository@digest` reference); nothing to sign"
    )]
    NotPushed {
        /// The image digest.
        digest: String,
    },
    /// The configuration cannot be resolved again.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The resolved packages cannot be fetched or verified.
    #[error("cannot fetch the packages to attest")]
    Fetch {
        /// The builder's error.
        #[source]
        source: securebuild_builder::error::Error,
    },
    /// The packages resolved now differ from those the image was built from.
    #[error(
        "the packages resolve to lock {resolved} now, but the image was built from lock {built}; not attesting what cannot be vouched for"
    )]
    LockMismatch {
        /// The lock digest the build reported.
        built: String,
        /// The lock digest resolved now.
        resolved: String,
    },
    /// A platform of the image has no resolved architecture.
    #[error("platform {platform} of the image was not resolved")]
    Platform {
        /// The platform (`arch` or `arch/variant`).
        platform: String,
    },
    /// A verified package cannot be read back for its `os-release`.
    #[error("cannot read {path}")]
    PackageRead {
        /// The cached package file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The work of reading packages ended abnormally.
    #[error("reading the packages ended abnormally")]
    Task {
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The push Secret is unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Signing or attaching failed in the registry.
    #[error("cannot sign {image}")]
    Publish {
        /// `repository@digest`.
        image: String,
        /// The publisher's error.
        #[source]
        source: PublishError,
    },
}

/// The key read from a Secret version.
struct CachedKey {
    resource_version: Option<String>,
    key: SigningKey,
}

/// Signs and attests finished builds with the operator's key.
pub struct Signer {
    client: Client,
    config: Arc<Config>,
    key_secret: SecretRef,
    cached: Mutex<Option<CachedKey>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_secret", &self.key_secret)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the key in `key_secret`.
    pub fn new(client: Client, config: Arc<Config>, key_secret: SecretRef) -> Self {
        Self {
            client,
            config,
            key_secret,
            cached: Mutex::new(None),
        }
    }

    /// The signing key: the cached one while the Secret is unchanged, else read afresh.
    pub async fn signing_key(&self) -> Result<SigningKey, SignerError> {
        let name = format!("{}/{}", self.key_secret.namespace, self.key_secret.name);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.key_secret.namespace);
        let secret =
            secrets
                .get(&self.key_secret.name)
                .await
                .map_err(|source| SignerError::KeySecret {
                    secret: name.clone(),
                    source,
                })?;
        let version = secret.resource_version();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = cached.as_ref()
            && version.is_some()
            && entry.resource_version == version
        {
            return Ok(entry.key.clone());
        }
        let key = signing_key_from_secret(&secret, &name)?;
        *cached = Some(CachedKey {
            resource_version: version,
            key: key.clone(),
        });
        Ok(key)
    }

    /// Signs `image` and attaches the attestations `ib` asks for.
    pub async fn sign(
        &self,
        ib: &ImageBuild,
        image: &ImageResult,
    ) -> Result<SigningOutcome, SignerError> {
        if !ib.spec.signing.enabled {
            return Ok(SigningOutcome {
                packages: list_packages(ib, &self.config, image).await,
                ..SigningOutcome::default()
            });
        }
        let published =
            PublishedImage::from_result(image).ok_or_else(|| SignerError::NotPushed {
                digest: image.digest.clone(),
            })?;
        let key = self.signing_key().await?;
        let wanted = &ib.spec.attestations;
        let (provenance, sboms, packages) = if wanted.provenance || wanted.sbom {
            let evidence = self.evidence(ib, image).await?;
            let packages = installed_packages(&evidence.resolved.resolution);
            check_platforms(image, &evidence.resolved.resolution)?;
            let release = evidence.release.clone();
            let distro = inputs::distro(&release);
            let run = self.run_details(ib, &published, &evidence);
            let provenance = wanted.provenance.then(|| {
                let mut provenance = inputs::provenance_inputs(
                    &ib.spec.image,
                    &distro,
                    &published.repository,
                    &ib.spec.target.tags,
                    &evidence.resolved.resolution,
                    &evidence.packages,
                    &run,
                );
                provenance.internal_parameters = Some(internal_parameters(ib, &evidence));
                provenance
            });
            let sboms: Option<BuildSboms> = wanted.sbom.then(|| {
                inputs::sbom_inputs(
                    &distro,
                    &published,
                    &evidence.resolved.resolution,
                    &evidence.packages,
                    &run.created,
                )
            });
            (provenance, sboms, Some(packages))
        } else {
            (None, None, list_packages(ib, &self.config, image).await)
        };
        let registry = registry_for(&self.client, ib, &self.config).await?;
        let summary = attest_build(
            &registry,
            &published,
            &key,
            provenance.as_ref(),
            sboms.as_ref(),
        )
        .await
        .map_err(|source| SignerError::Publish {
            image: format!("{}@{}", published.repository, published.digest),
            source,
        })?;
        Ok(SigningOutcome {
            packages,
            ..outcome_of(&summary)
        })
    }

    /// Resolves the configuration again, checks it against the build's lock, fetches the
    /// packages and reads the image's `os-release` from them.
    async fn evidence(
        &self,
        ib: &ImageBuild,
        image: &ImageResult,
    ) -> Result<Evidence, SignerError> {
        let resolved = resolve_built(ib, &self.config, image).await?;
        let lock = resolved.resolution.digest();
        if lock != image.lock {
            return Err(SignerError::LockMismatch {
                built: image.lock.clone(),
                resolved: lock,
            });
        }
        let packages = fetch_packages(&resolved.resolution, &resolved.options)
            .await
            .map_err(|source| SignerError::Fetch { source })?;
        // Every platform installs the same versions; the first one's files speak for all.
        let files: Vec<(PathBuf, Range<u64>)> = packages
            .first()
            .map(|verified| {
                verified
                    .iter()
                    .map(|p| (p.path.clone(), p.data_range.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let configured = resolved.image.os_release.clone();
        let release = tokio::task::spawn_blocking(move || release_of(&files, configured.as_ref()))
            .await
            .map_err(|source| SignerError::Task { source })??;
        Ok(Evidence {
            resolved,
            packages,
            release,
        })
    }

    /// The run of the build being attested: the operator as builder, the build (Job) name as
    /// invocation, the recorded start, and the image's creation time (the newest package's
    /// build time, as the build chose it).
    fn run_details(
        &self,
        ib: &ImageBuild,
        published: &PublishedImage,
        evidence: &Evidence,
    ) -> RunDetails {
        let namespace = ib.namespace().unwrap_or_default();
        let last_build = ib.status.as_ref().and_then(|s| s.last_build.as_ref());
        let now = format_time(Timestamp::now());
        RunDetails {
            builder_id: builder_id(&self.config),
            invocation_id: last_build.map_or_else(
                || format!("{}@{}", published.repository, published.digest),
                |build| format!("{namespace}/{}", build.job),
            ),
            started_on: last_build
                .and_then(|build| build.start_time.clone())
                .unwrap_or_else(|| now.clone()),
            finished_on: now,
            created: format_time(
                Timestamp::from_second(evidence.resolved.resolution.newest_build_time())
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            ),
        }
    }
}

impl PostBuild for Signer {
    fn after_success<'a>(
        &'a self,
        ib: &'a ImageBuild,
        result: &'a ImageResult,
    ) -> BoxFuture<'a, Result<SigningOutcome, HookError>> {
        Box::pin(async move {
            self.sign(ib, result)
                .await
                .map_err(|error| HookError::failed(HOOK_NAME, ib, error))
        })
    }
}

/// What the signer resolved and fetched for one image.
struct Evidence {
    resolved: Resolved,
    /// Per resolved architecture, in install order.
    packages: Vec<Vec<VerifiedPackage>>,
    /// What the image's `/etc/os-release` says.
    release: ReleaseInfo,
}

/// The provenance builder id of the operator `config` describes.
pub fn builder_id(config: &Config) -> String {
    format!(
        "{BUILDER_ID_PREFIX}{}/{}",
        config.namespace, config.deployment_name
    )
}

/// Reads the signing key from its Secret: `cosign.key` with `cosign.password`, else `key.pem`.
pub fn signing_key_from_secret(secret: &Secret, name: &str) -> Result<SigningKey, SignerError> {
    let data = secret.data.clone().unwrap_or_default();
    let value = |key: &str| data.get(key).map(|v| v.0.as_slice());
    let unusable = |key, source| SignerError::Key {
        secret: name.to_string(),
        key,
        source,
    };
    if let Some(pem) = value(COSIGN_KEY) {
        let password = value(COSIGN_PASSWORD).unwrap_or_default();
        return SigningKey::from_pem(pem, Some(password)).map_err(|e| unusable(COSIGN_KEY, e));
    }
    if let Some(pem) = value(PEM_KEY) {
        return SigningKey::from_pem(pem, None).map_err(|e| unusable(PEM_KEY, e));
    }
    Err(SignerError::NoKey {
        secret: name.to_string(),
    })
}

/// The status references of what [`attest_build`] stored. An attestation manifest gains a
/// layer with each attestation, so every reference reports the manifest as it is at the end.
pub fn outcome_of(summary: &AttestationSummary) -> SigningOutcome {
    let mut final_digest: BTreeMap<&str, &str> = BTreeMap::new();
    let artifacts = summary
        .provenance
        .iter()
        .chain(summary.sboms.iter().map(|s| &s.artifact));
    for artifact in artifacts {
        final_digest.insert(&artifact.reference, &artifact.digest);
    }
    let reference = |artifact: &ArtifactRef| ArtifactReference {
        reference: artifact.reference.clone(),
        digest: final_digest
            .get(artifact.reference.as_str())
            .map_or_else(|| artifact.digest.clone(), |d| (*d).to_string()),
    };
    let attestation = |predicate_type: &str, artifact: &ArtifactRef| AttestationReference {
        predicate_type: predicate_type.to_string(),
        reference: artifact.reference.clone(),
        digest: artifact.layer.clone(),
    };
    let mut attestations = Vec::new();
    if let Some(provenance) = &summary.provenance {
        attestations.push(attestation(SLSA_PROVENANCE_V1, provenance));
    }
    for sbom in &summary.sboms {
        attestations.push(attestation(SPDX_PREDICATE_TYPE, &sbom.artifact));
    }
    SigningOutcome {
        signature: Some(ArtifactReference {
            reference: summary.signature.reference.clone(),
            digest: summary.signature.digest.clone(),
        }),
        sbom: summary.sboms.first().map(|s| reference(&s.artifact)),
        attestations,
        packages: None,
    }
}

/// What the provenance records as the operator's own choices: the ImageBuild built, and the
/// repositories, keyring and architectures it was built with (the operator's defaults apply
/// when the spec lists no repositories).
fn internal_parameters(ib: &ImageBuild, evidence: &Evidence) -> serde_json::Value {
    let image = &evidence.resolved.image;
    let architectures: Vec<&str> = evidence
        .resolved
        .resolution
        .archs
        .iter()
        .map(|a| a.arch.as_str())
        .collect();
    json!({
        "imageBuild": {
            "namespace": ib.namespace(),
            "name": ib.name_any(),
            "uid": ib.uid(),
            "generation": ib.metadata.generation,
        },
        "repositories": image.contents.repositories,
        "keyring": image.contents.keyring,
        "architectures": architectures,
    })
}

/// Checks that the image's platforms and the resolved architectures are the same, in the same
/// order (the SBOMs pair them up).
fn check_platforms(image: &ImageResult, resolution: &Resolution) -> Result<(), SignerError> {
    let mismatch = |platform: &securebuild_builder::result::PlatformResult| SignerError::Platform {
        platform: platform_name(&platform.arch, platform.variant.as_deref()),
    };
    if image.platforms.len() != resolution.archs.len() {
        return match image.platforms.get(resolution.archs.len()) {
            Some(platform) => Err(mismatch(platform)),
            None => Err(SignerError::Platform {
                platform: format!("{} platforms", image.platforms.len()),
            }),
        };
    }
    for (platform, arch) in image.platforms.iter().zip(&resolution.archs) {
        let same = platform_architecture(&platform.arch, platform.variant.as_deref())
            .is_ok_and(|wanted| wanted.apk() == arch.arch);
        if !same {
            return Err(mismatch(platform));
        }
    }
    Ok(())
}

/// A file of interest in a package's data.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReleaseFile {
    /// A regular file's content (at most [`MAX_OS_RELEASE_BYTES`]).
    Content(Vec<u8>),
    /// A symbolic link's target.
    Link(String),
}

/// A tar path as an image path: no leading `./` or `/`, no trailing `/`.
fn image_path(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// `target` of a link at `link`, as an image path (`..` resolved, never above the root).
fn link_target(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Every regular file and symbolic link under `etc/` and `usr/lib/` named `os-release` in the
/// data members of `packages` (cached `.apk` files and their data ranges, in install order; a
/// later package's entry replaces an earlier one's).
fn release_files(
    packages: &[(PathBuf, Range<u64>)],
) -> Result<BTreeMap<String, ReleaseFile>, SignerError> {
    let mut files = BTreeMap::new();
    for (path, range) in packages {
        read_release_entries(path, range, &mut files).map_err(|source| {
            SignerError::PackageRead {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(files)
}

fn read_release_entries(
    path: &Path,
    range: &Range<u64>,
    files: &mut BTreeMap<String, ReleaseFile>,
) -> std::io::Result<()> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(range.start))?;
    let data = file.take(range.end.saturating_sub(range.start));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = image_path(&String::from_utf8_lossy(&entry.path_bytes()));
        if !name.ends_with("os-release")
            || !(name.starts_with("etc/") || name.starts_with("usr/lib/"))
        {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                files.insert(name, ReleaseFile::Link(target));
            }
        } else if kind.is_file() {
            let mut content = Vec::new();
            (&mut entry)
                .take(MAX_OS_RELEASE_BYTES)
                .read_to_end(&mut content)?;
            files.insert(name, ReleaseFile::Content(content));
        }
    }
    Ok(())
}

/// What the image's `/etc/os-release` says, as a build writes it: the file the packages
/// install (following symbolic links), with the configuration's `os-release` fields over it.
fn release_of(
    packages: &[(PathBuf, Range<u64>)],
    configured: Option<&OsRelease>,
) -> Result<ReleaseInfo, SignerError> {
    let files = release_files(packages)?;
    let mut path = OS_RELEASE_PATH.to_string();
    let mut content = None;
    for _ in 0..MAX_LINK_HOPS {
        match files.get(&path) {
            Some(ReleaseFile::Content(bytes)) => {
                content = Some(bytes.clone());
                break;
            }
            Some(ReleaseFile::Link(target)) => path = link_target(&path, target),
            None => break,
        }
    }
    let lines = content
        .map(|bytes| parse(&String::from_utf8_lossy(&bytes)))
        .unwrap_or_default();
    let installed = |key: &str| lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let pick = |configured: Option<&String>, key: &str| {
        configured
            .cloned()
            .or_else(|| installed(key))
            .filter(|v| !v.is_empty())
    };
    Ok(ReleaseInfo {
        id: pick(configured.and_then(|c| c.id.as_ref()), "ID"),
        version_id: pick(configured.and_then(|c| c.version_id.as_ref()), "VERSION_ID"),
        name: pick(configured.and_then(|c| c.name.as_ref()), "NAME"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, image_result, test_context};
    use k8s_openapi::ByteString;
    use securebuild_builder::attest::publish::SbomAttestation;

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn keys_from_secrets() {
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let encrypted = key.to_encrypted_pem(b"hunter2").unwrap();
        let pkcs8 = key.to_pkcs8_pem().unwrap();
        let ok = |entries: &[(&str, &[u8])]| {
            signing_key_from_secret(&secret(entries), "ops/key")
                .unwrap()
                .verifying_key()
        };
        assert_eq!(
            ok(&[
                (COSIGN_KEY, encrypted.as_bytes()),
                (COSIGN_PASSWORD, b"hunter2")
            ]),
            public
        );
        assert_eq!(ok(&[(PEM_KEY, pkcs8.as_bytes())]), public);
        // cosign.key wins over key.pem.
        let other = SigningKey::generate().unwrap().to_pkcs8_pem().unwrap();
        assert_eq!(
            ok(&[
                (COSIGN_KEY, encrypted.as_bytes()),
                (COSIGN_PASSWORD, b"hunter2"),
                (PEM_KEY, other.as_bytes())
            ]),
            public
        );

        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Entries, &str); 5] = [
            (&[], "has neither `cosign.key` nor `key.pem`"),
            (
                &[
                    (COSIGN_KEY, encrypted.as_bytes()),
                    (COSIGN_PASSWORD, b"wrong"),
                ],
                "the `cosign.key` of the signing key Secret `ops/key` is unusable",
            ),
            (
                &[(COSIGN_KEY, encrypted.as_bytes())],
                "the `cosign.key` of the signing key Secret `ops/key` is unusable",
            ),
            (
                &[(PEM_KEY, b"not a pem")],
                "the `key.pem` of the signing key Secret `ops/key` is unusable",
            ),
            (
                &[(PEM_KEY, encrypted.as_bytes())],
                "the `key.pem` of the signing key Secret `ops/key` is unusable",
            ),
        ];
        for (entries, expected) in cases {
            let error = signing_key_from_secret(&secret(entries), "ops/key").unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    /// Writes a gzip-compressed tar of `entries` (path, content or link target) after `prefix`
    /// junk bytes, as the data member of a package, and returns the file and the data range.
    fn data_member(
        dir: &Path,
        name: &str,
        prefix: usize,
        entries: &[(&str, Result<&str, &str>)],
    ) -> (PathBuf, Range<u64>) {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in entries {
            let mut header = tar::Header::new_gnu();
            match entry {
                Ok(content) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(content.len() as u64);
                    header.set_mode(0o644);
                    builder
                        .append_data(&mut header, path, content.as_bytes())
                        .unwrap();
                }
                Err(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
            }
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let member = gz.finish().unwrap();
        let mut bytes = vec![0x1f; prefix];
        bytes.extend_from_slice(&member);
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, prefix as u64..bytes.len() as u64)
    }

    #[test]
    fn release_follows_links_and_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let layout = data_member(
            dir.path(),
            "layout.apk",
            7,
            &[
                ("etc/os-release", Err("../usr/lib/os-release")),
                (
                    "usr/lib/os-release",
                    Ok("ID=alpine\nNAME=\"Alpine Linux\"\nVERSION_ID=3.20.3\n"),
                ),
                ("usr/bin/tool", Ok("#!/bin/sh\n")),
            ],
        );
        let other = data_member(dir.path(), "other.apk", 0, &[("etc/motd", Ok("hi\n"))]);
        let info = release_of(&[layout.clone(), other.clone()], None).unwrap();
        assert_eq!(info.id.as_deref(), Some("alpine"));
        assert_eq!(info.version_id.as_deref(), Some("3.20.3"));
        assert_eq!(info.name.as_deref(), Some("Alpine Linux"));

        let configured = OsRelease {
            id: Some("custom".into()),
            ..OsRelease::default()
        };
        let info = release_of(std::slice::from_ref(&layout), Some(&configured)).unwrap();
        assert_eq!(info.id.as_deref(), Some("custom"));
        assert_eq!(info.version_id.as_deref(), Some("3.20.3"));

        // A later package's file replaces an earlier one's.
        let later = data_member(
            dir.path(),
            "later.apk",
            3,
            &[("./etc/os-release", Ok("ID=wolfi\n"))],
        );
        let info = release_of(&[layout, later], None).unwrap();
        assert_eq!(info.id.as_deref(), Some("wolfi"));
        assert_eq!(info.version_id, None);

        assert_eq!(release_of(&[other], None).unwrap(), ReleaseInfo::default());
        let error = release_of(&[(dir.path().join("missing.apk"), 0..10)], None).unwrap_err();
        assert!(error.to_string().contains("missing.apk"), "{error}");
    }

    #[test]
    fn link_targets() {
        let cases = [
            (
                "etc/os-release",
                "../usr/lib/os-release",
                "usr/lib/os-release",
            ),
            (
                "etc/os-release",
                "/usr/lib/os-release",
                "usr/lib/os-release",
            ),
            ("etc/os-release", "os-release.d/x", "etc/os-release.d/x"),
            (
                "etc/os-release",
                "../../../../usr/lib/os-release",
                "usr/lib/os-release",
            ),
        ];
        for (link, target, expected) in cases {
            assert_eq!(link_target(link, target), expected, "{link} -> {target}");
        }
    }

    #[test]
    fn platforms_must_match_the_resolution() {
        let image = image_result("sha256:lock");
        let empty = Resolution {
            keys: Vec::new(),
            world: Vec::new(),
            archs: Vec::new(),
        };
        let error = check_platforms(&image, &empty).unwrap_err();
        assert!(error.to_string().contains("platform amd64"), "{error}");
    }

    fn artifact(reference: &str, digest: &str, layer: &str) -> ArtifactRef {
        ArtifactRef {
            reference: reference.into(),
            digest: digest.into(),
            layer: layer.into(),
            appended: true,
        }
    }

    #[test]
    fn outcome_reports_final_manifests_and_own_layers() {
        let summary = AttestationSummary {
            signature: artifact("r/app:sha256-aa.sig", "sha256:s1", "sha256:l0"),
            provenance: Some(artifact("r/app:sha256-aa.att", "sha256:a1", "sha256:l1")),
            sboms: vec![
                SbomAttestation {
                    digest: "sha256:aa".into(),
                    arch: None,
                    artifact: artifact("r/app:sha256-aa.att", "sha256:a2", "sha256:l2"),
                },
                SbomAttestation {
                    digest: "sha256:bb".into(),
                    arch: Some("amd64".into()),
                    artifact: artifact("r/app:sha256-bb.att", "sha256:b1", "sha256:l3"),
                },
            ],
        };
        let outcome = outcome_of(&summary);
        assert_eq!(
            outcome.signature,
            Some(ArtifactReference {
                reference: "r/app:sha256-aa.sig".into(),
                digest: "sha256:s1".into()
            })
        );
        assert_eq!(outcome.sbom.as_ref().unwrap().digest, "sha256:a2");
        let listed: Vec<(&str, &str, &str)> = outcome
            .attestations
            .iter()
            .map(|a| {
                (
                    a.predicate_type.as_str(),
                    a.reference.as_str(),
                    a.digest.as_str(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                (SLSA_PROVENANCE_V1, "r/app:sha256-aa.att", "sha256:l1"),
                (SPDX_PREDICATE_TYPE, "r/app:sha256-aa.att", "sha256:l2"),
                (SPDX_PREDICATE_TYPE, "r/app:sha256-bb.att", "sha256:l3"),
            ]
        );
    }

    #[test]
    fn builder_ids_name_the_deployment() {
        let config = Config {
            namespace: "sb".into(),
            deployment_name: "securebuild".into(),
            ..Config::default()
        };
        assert_eq!(
            builder_id(&config),
            "https://securebuild.dev/operator@sb/securebuild"
        );
    }

    #[tokio::test]
    async fn disabled_signing_and_unpushed_images_touch_nothing() {
        let (ctx, _server) = test_context();
        let key_secret = SecretRef {
            name: "key".into(),
            namespace: "ops".into(),
        };
        let signer = Signer::new(ctx.client.clone(), Arc::new(Config::default()), key_secret);
        let mut disabled = TestImageBuild::new().build();
        disabled.spec.signing.enabled = false;
        let image = image_result("sha256:lock");
        assert_eq!(
            signer.after_success(&disabled, &image).await.unwrap(),
            SigningOutcome::default()
        );

        let enabled = TestImageBuild::new().build();
        let mut unpushed = image;
        unpushed.reference = None;
        let error = signer.after_success(&enabled, &unpushed).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("signing failed for ImageBuild `team/app`"),
            "{text}"
        );
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("pushed nothing"), "{cause}");
    }
}
