//! Turns a resolution and its verified packages into the inputs of the provenance predicate and
//! the SBOMs: purls, download locations, digests, dependency edges, indexes and keys. Shared by
//! `securebuild build --sign-key` and the operator's signer, so both attest the same facts.
//!
//! Pure: it reads only what the resolution and the packages already carry.

use std::collections::BTreeMap;

use securebuild_crds::ImageConfiguration;

use super::provenance::{ProvenanceInputs, ResolvedIndex, ResolvedKey, ResolvedPackage};
use super::publish::{BuildSboms, PublishedImage};
use super::purl::apk_purl;
use super::sbom::{Distro, ImageDescriptor, SbomInput, SbomPackage};
use crate::apk::package::{PackageRef, VerifiedPackage};
use crate::image::os_release::ReleaseInfo;
use crate::resolve::Resolution;

/// The distro packages are attributed to when the image has no `os-release` `ID`.
pub const DEFAULT_DISTRO: &str = "unknown";

/// The version recorded as the builder's.
pub const BUILDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a build ran with, besides the packages.
#[derive(Debug, Clone)]
pub struct RunDetails {
    /// URI of the builder instance (the CLI, or the operator deployment).
    pub builder_id: String,
    /// Identifier of this run (e.g. the Job name).
    pub invocation_id: String,
    /// Start time, RFC 3339.
    pub started_on: String,
    /// End time, RFC 3339.
    pub finished_on: String,
    /// The image's creation time, RFC 3339 (the SBOM's `created`).
    pub created: String,
}

/// The distro packages are attributed to: the image's `/etc/os-release` (after the
/// configuration's `os-release` fields were applied).
pub fn distro(release: &ReleaseInfo) -> Distro {
    Distro {
        id: release
            .id
            .clone()
            .unwrap_or_else(|| DEFAULT_DISTRO.to_string()),
        version_id: release.version_id.clone(),
        supplier: release.name.clone(),
    }
}

/// The provenance inputs of a build of `config` to `repository`.
pub fn provenance_inputs(
    config: &ImageConfiguration,
    distro: &Distro,
    repository: &str,
    tags: &[String],
    resolution: &Resolution,
    packages: &[Vec<VerifiedPackage>],
    run: &RunDetails,
) -> ProvenanceInputs {
    let mut resolved = Vec::new();
    let mut indexes = Vec::new();
    for (arch, verified) in resolution.archs.iter().zip(packages) {
        for index in &arch.indexes {
            indexes.push(ResolvedIndex {
                uri: index
                    .spec
                    .location
                    .index_location(&arch.arch)
                    .map(|l| l.to_string())
                    .unwrap_or_else(|_| index.spec.original.clone()),
                sha256: hex::encode(index.sha256),
            });
        }
        for (selected, package) in arch.packages.iter().zip(verified) {
            resolved.push(ResolvedPackage {
                name: package.record.name.clone(),
                version: package.record.version.clone(),
                purl: apk_purl(
                    &distro.id,
                    &package.record.name,
                    &package.record.version,
                    &package.record.arch,
                    distro.version_id.as_deref(),
                ),
                download_url: download_url(arch.index_of(selected), package),
                sha256: hex::encode(package.apk_sha256),
                apk_checksum: Some(package.record.checksum.clone()),
            });
        }
    }
    let keys = resolution
        .keys
        .iter()
        .map(|k| ResolvedKey {
            name: k.name.clone(),
            uri: k.source.clone(),
            sha256: hex::encode(k.sha256),
        })
        .collect();
    ProvenanceInputs {
        builder_id: run.builder_id.clone(),
        builder_version: BUILDER_VERSION.to_string(),
        external_parameters: serde_json::json!({
            "image": config,
            "target": { "repository": repository, "tags": tags },
        }),
        internal_parameters: None,
        packages: resolved,
        indexes,
        keys,
        invocation_id: run.invocation_id.clone(),
        started_on: run.started_on.clone(),
        finished_on: run.finished_on.clone(),
    }
}

/// The SBOM inputs of a pushed build: one per platform, in the image's platform order.
pub fn sbom_inputs(
    distro: &Distro,
    image: &PublishedImage,
    resolution: &Resolution,
    packages: &[Vec<VerifiedPackage>],
    created: &str,
) -> BuildSboms {
    let images = image
        .platforms
        .iter()
        .zip(resolution.archs.iter().zip(packages))
        .map(|(platform, (arch, verified))| {
            let installed: BTreeMap<&str, ()> = verified
                .iter()
                .map(|p| (p.record.name.as_str(), ()))
                .collect();
            let providers = providers(verified);
            SbomInput {
                image: ImageDescriptor {
                    repository: image.repository.clone(),
                    digest: platform.digest.clone(),
                    arch: platform.arch.clone(),
                    tag: image.tag.clone(),
                },
                distro: distro.clone(),
                packages: arch
                    .packages
                    .iter()
                    .zip(verified)
                    .map(|(selected, package)| {
                        let record = &package.record;
                        let mut dependencies: Vec<String> = record
                            .depends
                            .iter()
                            .filter(|d| !d.conflict)
                            .filter_map(|d| {
                                if installed.contains_key(d.name.as_str()) {
                                    Some(d.name.clone())
                                } else {
                                    providers.get(d.name.as_str()).map(|p| (*p).to_string())
                                }
                            })
                            .filter(|name| name != &record.name)
                            .collect();
                        dependencies.sort();
                        dependencies.dedup();
                        SbomPackage {
                            name: record.name.clone(),
                            version: record.version.clone(),
                            arch: record.arch.clone(),
                            license: Some(record.license.clone()).filter(|l| !l.is_empty()),
                            origin: record.origin.clone(),
                            maintainer: record.maintainer.clone(),
                            description: Some(record.description.clone()).filter(|d| !d.is_empty()),
                            homepage: Some(record.url.clone()).filter(|u| !u.is_empty()),
                            download_location: Some(download_url(arch.index_of(selected), package)),
                            checksum: Some(record.checksum.clone()),
                            dependencies,
                        }
                    })
                    .collect(),
                created: created.to_string(),
                tool_version: BUILDER_VERSION.to_string(),
            }
        })
        .collect();
    BuildSboms {
        created: created.to_string(),
        tool_version: BUILDER_VERSION.to_string(),
        images,
    }
}

/// Which installed package provides each virtual name (`so:`, `cmd:`, `pc:`, plain provides).
fn providers(packages: &[VerifiedPackage]) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for package in packages {
        for provide in &package.record.provides {
            map.entry(provide.name.as_str())
                .or_insert(package.record.name.as_str());
        }
    }
    map
}

fn download_url(
    index: &crate::apk::repository::RepositoryIndex,
    package: &VerifiedPackage,
) -> String {
    PackageRef::new(index, &package.record)
        .location()
        .map(|l| l.to_string())
        .unwrap_or_else(|_| package.record.filename())
}
