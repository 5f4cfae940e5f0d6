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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, ResourceExt};
use securebuild_builder::apk::index::PackageRecord;
use securebuild_builder::apk::package::{PackageRef, VerifiedPackage};
use securebuild_builder::attest::keys::{KeyError, SigningKey};
use securebuild_builder::attest::provenance::{
    ProvenanceInputs, ResolvedIndex, ResolvedKey, ResolvedPackage, SLSA_PROVENANCE_V1,
};
use securebuild_builder::attest::publish::{
    AttestationSummary, BuildSboms, PublishError, PublishedImage, attest_build,
};
use securebuild_builder::attest::purl::apk_purl;
use securebuild_builder::attest::sbom::{
    Distro, ImageDescriptor, SPDX_PREDICATE_TYPE, SbomInput, SbomPackage,
};
use securebuild_builder::build::fetch_packages;
use securebuild_builder::resolve::ArchResolution;
use securebuild_builder::result::ImageResult;
use securebuild_crds::imagebuild::{ArtifactReference, AttestationReference};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use serde_json::json;

use crate::config::{Config, SecretRef};
use crate::credentials::{CredentialsError, registry_for};
use crate::hooks::{HookError, PostBuild, SigningOutcome};
use crate::resolver::{ResolveError, Resolved, resolve_image};
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
/// The distribution id in package URLs when nothing tells which distribution it is.
pub const UNKNOWN_DISTRO: &str = "unknown";
/// The package whose version is Alpine's release.
const ALPINE_RELEASE_PACKAGE: &str = "alpine-release";
/// The package that makes an image Wolfi.
const WOLFI_BASELAYOUT_PACKAGE: &str = "wolfi-baselayout";

/// Why an image could not be signed or attested.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signing key Secret cannot be read.
    #[error("cannot read the signing key Secret `{secret}`: {source}")]
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
    #[error("the `{key}` of the signing key Secret `{secret}` is unusable: {source}")]
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
    #[error("cannot fetch the packages to attest: {source}")]
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
        /// The platform (`arch` or `arch-variant`).
        platform: String,
    },
    /// The push Secret is unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Signing or attaching failed in the registry.
    #[error("cannot sign {image}: {source}")]
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
            return Ok(SigningOutcome::default());
        }
        let published =
            PublishedImage::from_result(image).ok_or_else(|| SignerError::NotPushed {
                digest: image.digest.clone(),
            })?;
        let key = self.signing_key().await?;
        let wanted = &ib.spec.attestations;
        let (provenance, sboms) = if wanted.provenance || wanted.sbom {
            let started = Timestamp::now();
            let evidence = self.evidence(ib, image).await?;
            let provenance = wanted
                .provenance
                .then(|| provenance_inputs(ib, &self.config, &evidence, started));
            let sboms = if wanted.sbom {
                Some(build_sboms(&published, image, &evidence)?)
            } else {
                None
            };
            (provenance, sboms)
        } else {
            (None, None)
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
        Ok(outcome_of(&summary))
    }

    /// Resolves the configuration again, checks it against the build's lock and fetches the
    /// packages.
    async fn evidence(
        &self,
        ib: &ImageBuild,
        image: &ImageResult,
    ) -> Result<Evidence, SignerError> {
        let platforms: Vec<(String, Option<String>)> = image
            .platforms
            .iter()
            .map(|p| (p.arch.clone(), p.variant.clone()))
            .collect();
        let resolved = resolve_image(ib, &self.config, &platforms).await?;
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
        Ok(Evidence { resolved, packages })
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
                .map_err(|error| HookError::Failed {
                    hook: HOOK_NAME,
                    image_build: format!(
                        "{}/{}",
                        ib.namespace().unwrap_or_default(),
                        ib.name_any()
                    ),
                    source: Box::new(error),
                })
        })
    }
}

/// What the signer resolved and fetched for one image.
struct Evidence {
    resolved: Resolved,
    /// Per resolved architecture, in install order.
    packages: Vec<Vec<VerifiedPackage>>,
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
    let reference =
        |artifact: &securebuild_builder::attest::publish::ArtifactRef| ArtifactReference {
            reference: artifact.reference.clone(),
            digest: final_digest
                .get(artifact.reference.as_str())
                .map_or_else(|| artifact.digest.clone(), |d| (*d).to_string()),
        };
    let attestation = |predicate_type: &str, artifact| {
        let ArtifactReference { reference, digest } = reference(artifact);
        AttestationReference {
            predicate_type: predicate_type.to_string(),
            reference,
            digest,
        }
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
    }
}

/// The distribution the packages come from: the configuration's `os-release` when it names
/// one (apko writes it into the image), else what a well-known release package says, else
/// [`UNKNOWN_DISTRO`].
pub fn distro_of(image: &ImageConfiguration, packages: &[&PackageRecord]) -> Distro {
    if let Some(release) = image.os_release.as_ref()
        && let Some(id) = release.id.as_deref().filter(|id| !id.is_empty())
    {
        return Distro {
            id: id.to_ascii_lowercase(),
            version_id: release.version_id.clone().filter(|v| !v.is_empty()),
            supplier: release.name.clone().filter(|n| !n.is_empty()),
        };
    }
    let installed = |name: &str| packages.iter().find(|p| p.name == name);
    if let Some(release) = installed(ALPINE_RELEASE_PACKAGE) {
        let version = release
            .version
            .rsplit_once("-r")
            .map_or(release.version.as_str(), |(version, _)| version);
        return Distro {
            id: "alpine".to_string(),
            version_id: Some(version.to_string()),
            supplier: Some("Alpine Linux".to_string()),
        };
    }
    if installed(WOLFI_BASELAYOUT_PACKAGE).is_some() {
        return Distro {
            id: "wolfi".to_string(),
            version_id: None,
            supplier: Some("Wolfi".to_string()),
        };
    }
    Distro {
        id: UNKNOWN_DISTRO.to_string(),
        version_id: None,
        supplier: None,
    }
}

/// The installed packages each package depends on, by name: a dependency on a name or on
/// something a package provides counts; conflicts and unmet dependencies do not.
pub fn installed_dependencies(packages: &[&PackageRecord]) -> BTreeMap<String, Vec<String>> {
    let mut providers: BTreeMap<&str, &str> = BTreeMap::new();
    for package in packages {
        providers.entry(&package.name).or_insert(&package.name);
    }
    for package in packages {
        for provided in &package.provides {
            providers.entry(&provided.name).or_insert(&package.name);
        }
    }
    packages
        .iter()
        .map(|package| {
            let names: BTreeSet<String> = package
                .depends
                .iter()
                .filter(|d| !d.conflict)
                .filter_map(|d| providers.get(d.name.as_str()))
                .filter(|name| **name != package.name)
                .map(|name| (*name).to_string())
                .collect();
            (package.name.clone(), names.into_iter().collect())
        })
        .collect()
}

/// Where a resolved package was fetched from.
fn download_location(arch: &ArchResolution, index: usize) -> impl Fn(&PackageRecord) -> String {
    let index = arch.indexes.get(index).cloned();
    move |record: &PackageRecord| {
        index
            .as_ref()
            .and_then(|index| PackageRef::new(index, record).location().ok())
            .map_or_else(|| record.filename(), |location| location.to_string())
    }
}

/// The newest package build time as RFC 3339, the image's creation time when no
/// `SOURCE_DATE_EPOCH` was set.
fn created_of(packages: &[Vec<VerifiedPackage>]) -> String {
    let newest = packages
        .iter()
        .flatten()
        .filter_map(|p| p.record.build_time)
        .max()
        .unwrap_or(0);
    let time = Timestamp::from_second(newest).unwrap_or(Timestamp::UNIX_EPOCH);
    format_time(time)
}

fn all_records(evidence: &Evidence) -> Vec<&PackageRecord> {
    evidence
        .packages
        .iter()
        .flatten()
        .map(|p| &p.record)
        .collect()
}

/// The provenance of the build: the operator as builder, the spec as external parameters,
/// every index, key and package as resolved dependencies.
fn provenance_inputs(
    ib: &ImageBuild,
    config: &Config,
    evidence: &Evidence,
    started: Timestamp,
) -> ProvenanceInputs {
    let resolution = &evidence.resolved.resolution;
    let records = all_records(evidence);
    let distro = distro_of(&evidence.resolved.image, &records);
    let mut packages = Vec::new();
    let mut indexes = Vec::new();
    for (arch, verified) in resolution.archs.iter().zip(&evidence.packages) {
        for index in &arch.indexes {
            let uri = index
                .spec
                .location
                .index_location(&arch.arch)
                .map_or_else(|_| index.spec.original.clone(), |l| l.to_string());
            indexes.push(ResolvedIndex {
                uri,
                sha256: hex::encode(index.sha256),
            });
        }
        for (resolved, package) in arch.packages.iter().zip(verified) {
            let record = &package.record;
            packages.push(ResolvedPackage {
                name: record.name.clone(),
                version: record.version.clone(),
                purl: apk_purl(
                    &distro.id,
                    &record.name,
                    &record.version,
                    &record.arch,
                    distro.version_id.as_deref(),
                ),
                download_url: download_location(arch, resolved.index)(record),
                sha256: hex::encode(package.apk_sha256),
                apk_checksum: Some(record.checksum.clone()).filter(|c| !c.is_empty()),
            });
        }
    }
    let keys = resolution
        .keys
        .iter()
        .map(|key| ResolvedKey {
            name: key.name.clone(),
            uri: key.source.clone(),
            sha256: hex::encode(key.sha256),
        })
        .collect();
    let namespace = ib.namespace().unwrap_or_default();
    let last_build = ib.status.as_ref().and_then(|s| s.last_build.as_ref());
    let invocation = last_build.map_or_else(
        || format!("{namespace}/{}", ib.name_any()),
        |build| format!("{namespace}/{}", build.job),
    );
    let started_on = last_build
        .and_then(|build| build.start_time.clone())
        .unwrap_or_else(|| format_time(started));
    let image = &evidence.resolved.image;
    ProvenanceInputs {
        builder_id: builder_id(config),
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
        external_parameters: json!({
            "configuration": ib.spec.image,
            "target": ib.spec.target,
        }),
        internal_parameters: Some(json!({
            "imageBuild": {
                "namespace": namespace,
                "name": ib.name_any(),
                "uid": ib.uid(),
                "generation": ib.metadata.generation,
            },
            "repositories": image.contents.repositories,
            "keyring": image.contents.keyring,
            "architectures": resolution.archs.iter().map(|a| a.arch.clone()).collect::<Vec<_>>(),
        })),
        packages,
        indexes,
        keys,
        invocation_id: invocation,
        started_on,
        finished_on: format_time(Timestamp::now()),
    }
}

/// The SBOM inputs: one per platform of the pushed image, from the packages resolved for it.
fn build_sboms(
    published: &PublishedImage,
    image: &ImageResult,
    evidence: &Evidence,
) -> Result<BuildSboms, SignerError> {
    let resolution = &evidence.resolved.resolution;
    let records = all_records(evidence);
    let distro = distro_of(&evidence.resolved.image, &records);
    let created = created_of(&evidence.packages);
    let tool_version = env!("CARGO_PKG_VERSION").to_string();
    let mut images = Vec::with_capacity(published.platforms.len());
    for (platform, built) in published.platforms.iter().zip(&image.platforms) {
        let position = resolution.archs.iter().position(|arch| {
            crate::resolver::platform_architecture(&built.arch, built.variant.as_deref())
                .is_ok_and(|wanted| wanted.apk() == arch.arch)
        });
        let Some(position) = position else {
            return Err(SignerError::Platform {
                platform: platform.arch.clone(),
            });
        };
        let arch = &resolution.archs[position];
        let verified = evidence
            .packages
            .get(position)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let arch_records: Vec<&PackageRecord> = verified.iter().map(|p| &p.record).collect();
        let dependencies = installed_dependencies(&arch_records);
        let packages = arch
            .packages
            .iter()
            .zip(verified)
            .map(|(resolved, package)| {
                let record = &package.record;
                SbomPackage {
                    name: record.name.clone(),
                    version: record.version.clone(),
                    arch: record.arch.clone(),
                    license: Some(record.license.clone()).filter(|l| !l.is_empty()),
                    origin: record.origin.clone(),
                    maintainer: record.maintainer.clone(),
                    description: Some(record.description.clone()).filter(|d| !d.is_empty()),
                    homepage: Some(record.url.clone()).filter(|u| !u.is_empty()),
                    download_location: Some(download_location(arch, resolved.index)(record)),
                    checksum: Some(record.checksum.clone()).filter(|c| !c.is_empty()),
                    dependencies: dependencies.get(&record.name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        images.push(SbomInput {
            image: ImageDescriptor {
                repository: published.repository.clone(),
                digest: platform.digest.clone(),
                arch: platform.arch.clone(),
                tag: published.tag.clone(),
            },
            distro: distro.clone(),
            packages,
            created: created.clone(),
            tool_version: tool_version.clone(),
        });
    }
    Ok(BuildSboms {
        created,
        tool_version,
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, image_result, test_context};
    use k8s_openapi::ByteString;
    use securebuild_builder::apk::constraint::Dependency;
    use securebuild_builder::attest::publish::{ArtifactRef, SbomAttestation};

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

        let cases: [(&[(&str, &[u8])], &str); 5] = [
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

    fn record(name: &str, version: &str) -> PackageRecord {
        let mut record = PackageRecord {
            name: name.into(),
            version: version.into(),
            ..PackageRecord::default()
        };
        record.arch = "x86_64".into();
        record
    }

    #[test]
    fn distros() {
        let plain = ImageConfiguration::default();
        let alpine = record("alpine-release", "3.20.3-r0");
        let wolfi = record("wolfi-baselayout", "20230201-r15");
        let busybox = record("busybox", "1.36.1-r0");
        let mut named = ImageConfiguration::default();
        named.os_release = Some(securebuild_crds::image_config::OsRelease {
            id: Some("Chainguard".into()),
            version_id: Some("20240101".into()),
            name: Some("Chainguard OS".into()),
            ..Default::default()
        });
        let check = |image: &ImageConfiguration,
                     packages: &[&PackageRecord],
                     expected: (&str, Option<&str>)| {
            let distro = distro_of(image, packages);
            assert_eq!((distro.id.as_str(), distro.version_id.as_deref()), expected);
        };
        check(&plain, &[&busybox, &alpine], ("alpine", Some("3.20.3")));
        check(&plain, &[&wolfi], ("wolfi", None));
        check(&plain, &[&busybox], (UNKNOWN_DISTRO, None));
        check(&named, &[&alpine], ("chainguard", Some("20240101")));
    }

    #[test]
    fn dependencies_resolve_through_names_and_provides() {
        let dependency = |atom: &str| Dependency::parse(atom).unwrap();
        let mut busybox = record("busybox", "1.36.1-r0");
        busybox.depends = vec![
            dependency("so:libc.musl-x86_64.so.1"),
            dependency("!busybox-old"),
        ];
        busybox.provides = vec![dependency("/bin/sh")];
        let mut musl = record("musl", "1.2.5-r0");
        musl.provides = vec![dependency("so:libc.musl-x86_64.so.1=1")];
        let mut base = record("base", "1-r0");
        base.depends = vec![
            dependency("busybox"),
            dependency("/bin/sh"),
            dependency("missing"),
        ];
        let deps = installed_dependencies(&[&busybox, &musl, &base]);
        assert_eq!(deps["busybox"], ["musl"]);
        assert!(deps["musl"].is_empty());
        assert_eq!(deps["base"], ["busybox"]);
    }

    fn artifact(reference: &str, digest: &str) -> ArtifactRef {
        ArtifactRef {
            reference: reference.into(),
            digest: digest.into(),
            appended: true,
        }
    }

    #[test]
    fn outcome_reports_final_manifests() {
        let summary = AttestationSummary {
            signature: artifact("r/app:sha256-aa.sig", "sha256:s1"),
            provenance: Some(artifact("r/app:sha256-aa.att", "sha256:a1")),
            sboms: vec![
                SbomAttestation {
                    digest: "sha256:aa".into(),
                    arch: None,
                    artifact: artifact("r/app:sha256-aa.att", "sha256:a2"),
                },
                SbomAttestation {
                    digest: "sha256:bb".into(),
                    arch: Some("amd64".into()),
                    artifact: artifact("r/app:sha256-bb.att", "sha256:b1"),
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
                (SLSA_PROVENANCE_V1, "r/app:sha256-aa.att", "sha256:a2"),
                (SPDX_PREDICATE_TYPE, "r/app:sha256-aa.att", "sha256:a2"),
                (SPDX_PREDICATE_TYPE, "r/app:sha256-bb.att", "sha256:b1"),
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
