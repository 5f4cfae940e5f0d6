//! Resolution across architectures: load the keyring, fetch and verify every repository's
//! index for every architecture, and solve the world once per architecture so that every
//! architecture installs the same versions.
//!
//! The first architecture is solved freely; the others are solved with every package the first
//! one selected pinned to the same version (`name=version`) wherever their indexes carry that
//! name, as apko does, so a multi-arch image never mixes versions. Fetching lives in
//! `apk::repository`; the choice itself in `apk::solver`.

use std::path::{Path, PathBuf};

use crate::apk::constraint::{Dependency, VersionOp};
use crate::apk::index::PackageRecord;
use crate::apk::repository::{self, IndexFetchOptions, KeyFile, RepositoryIndex, RepositorySpec};
use crate::apk::solver::{self, SolverRepository};
use crate::apk::world;
use crate::error::{Error, Result};

/// What to resolve.
#[derive(Clone, Debug, Default)]
pub struct ResolveRequest {
    /// Repository entries (`[@tag ]url-or-path`), in priority order.
    pub repositories: Vec<String>,
    /// Keyring entries (paths or URLs).
    pub keyring: Vec<String>,
    /// The world: dependency atoms as `apk add` takes them.
    pub packages: Vec<String>,
    /// apk architectures (`x86_64`, `aarch64`, …); the first one is solved freely.
    pub archs: Vec<String>,
    /// Directory that relative repository and key paths are relative to.
    pub base_dir: Option<PathBuf>,
    /// Accept unsigned indexes and unknown keys.
    pub allow_untrusted: bool,
    /// Cache root for indexes and keys.
    pub cache_dir: Option<PathBuf>,
}

/// One selected package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// The index record.
    pub record: PackageRecord,
    /// Index into [`ArchResolution::indexes`] of the repository it comes from.
    pub index: usize,
}

/// One architecture's resolution.
#[derive(Clone, Debug)]
pub struct ArchResolution {
    /// apk architecture.
    pub arch: String,
    /// The verified indexes, in repository order.
    pub indexes: Vec<RepositoryIndex>,
    /// Selected packages in install order.
    pub packages: Vec<ResolvedPackage>,
}

/// The resolution of every architecture.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The trusted keys, in keyring order.
    pub keys: Vec<KeyFile>,
    /// The parsed world.
    pub world: Vec<Dependency>,
    /// One entry per architecture, in request order.
    pub archs: Vec<ArchResolution>,
}

impl Resolution {
    /// `sha256:<hex>` identifying the resolved set (see `lock::resolution_digest`).
    pub fn digest(&self) -> String {
        crate::lock::resolution_digest(self.archs.iter().flat_map(|arch| {
            arch.packages.iter().map(|p| {
                (
                    arch.arch.as_str(),
                    p.record.name.as_str(),
                    p.record.version.as_str(),
                    p.record.checksum.as_str(),
                )
            })
        }))
    }

    /// The newest build time of any resolved package (seconds since the epoch; 0 when none
    /// records one): the image's creation time when `SOURCE_DATE_EPOCH` is not set.
    pub fn newest_build_time(&self) -> i64 {
        self.archs
            .iter()
            .flat_map(|arch| &arch.packages)
            .filter_map(|p| p.record.build_time)
            .max()
            .unwrap_or(0)
    }
}

impl ArchResolution {
    /// The repository index a package came from.
    pub fn index_of(&self, package: &ResolvedPackage) -> &RepositoryIndex {
        &self.indexes[package.index]
    }
}

/// The apk architecture of the machine running this build.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "x86",
        "aarch64" => "aarch64",
        "arm" => "armv7",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        _ => "x86_64",
    }
}

/// Loads keys, fetches indexes and solves every architecture.
pub async fn resolve(request: &ResolveRequest) -> Result<Resolution> {
    let base_dir = request.base_dir.as_deref();
    let client = repository::http_client()?;
    let (keyring, keys) = repository::load_keyring(
        &request.keyring,
        base_dir,
        &client,
        request.cache_dir.as_deref(),
    )
    .await?;
    let specs = request
        .repositories
        .iter()
        .map(|text| RepositorySpec::parse(text, base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Err(Error::NoRepositories);
    }
    let world = world::from_atoms(&request.packages)?;
    let options = IndexFetchOptions {
        allow_untrusted: request.allow_untrusted,
        cache_dir: request.cache_dir.clone(),
        ..IndexFetchOptions::default()
    };

    let mut archs: Vec<ArchResolution> = Vec::with_capacity(request.archs.len());
    for arch in &request.archs {
        let mut indexes = Vec::with_capacity(specs.len());
        for spec in &specs {
            indexes.push(repository::fetch_index(&client, spec, arch, &keyring, &options).await?);
        }
        let pinned = match archs.first() {
            Some(first) => pin_to(first, &indexes, &world),
            None => world.clone(),
        };
        let packages = solve(&indexes, &pinned, arch)?;
        archs.push(ArchResolution {
            arch: arch.clone(),
            indexes,
            packages,
        });
    }
    Ok(Resolution { keys, world, archs })
}

/// Solves `world` against `indexes` for a root of architecture `arch`.
pub fn solve(
    indexes: &[RepositoryIndex],
    world: &[Dependency],
    arch: &str,
) -> Result<Vec<ResolvedPackage>> {
    let repositories: Vec<SolverRepository<'_>> = indexes
        .iter()
        .map(RepositoryIndex::solver_repository)
        .collect();
    let solution = solver::solve(&repositories, world, arch)?;
    Ok(solution
        .packages
        .iter()
        .map(|selection| ResolvedPackage {
            record: selection.package.clone(),
            index: selection.repository,
        })
        .collect())
}

/// The world plus `name=version` for every package `first` selected whose name this
/// architecture's indexes also carry.
fn pin_to(
    first: &ArchResolution,
    indexes: &[RepositoryIndex],
    world: &[Dependency],
) -> Vec<Dependency> {
    let mut pinned = world.to_vec();
    for package in &first.packages {
        let name = &package.record.name;
        let known = indexes
            .iter()
            .any(|index| index.packages.iter().any(|p| &p.name == name));
        if known {
            pinned.push(Dependency {
                name: name.clone(),
                op: VersionOp::Equal,
                version: Some(package.record.version.clone()),
                conflict: false,
                tag: first.index_of(package).spec.tag.clone(),
            });
        }
    }
    pinned
}

/// The directory a configuration file's relative paths are relative to.
pub fn base_dir_of(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
