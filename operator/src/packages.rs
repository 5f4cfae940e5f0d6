//! What an image installs and what changed between two builds: the package list recorded in
//! `status.packages.installed` (from a resolution the operator ran itself, against the signed
//! indexes, never from the build's own report) and the `packageChanges` of each history entry.
//!
//! [`ListPackages`] is the post-build hook of an operator without a signing key: it records the
//! package list and attaches nothing. The signer records the list from the resolution it
//! attests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::ResourceExt;
use securebuild_builder::error::Chain;
use securebuild_builder::resolve::Resolution;
use securebuild_builder::result::ImageResult;
use securebuild_crds::ImageBuild;
use securebuild_crds::imagebuild::{InstalledPackage, PackageChange};

use crate::config::Config;
use crate::hooks::{HookError, PostBuild, SigningOutcome};
use crate::resolver::resolve_built;

/// The installed packages of `resolution`: one entry per name and version, with the
/// architectures that install it (sorted), sorted by name and then version.
pub fn installed_packages(resolution: &Resolution) -> Vec<InstalledPackage> {
    let mut by_version: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for arch in &resolution.archs {
        for package in &arch.packages {
            let record = &package.record;
            let archs = by_version
                .entry((record.name.clone(), record.version.clone()))
                .or_default();
            if !archs.contains(&arch.arch) {
                archs.push(arch.arch.clone());
            }
        }
    }
    by_version
        .into_iter()
        .map(|((name, version), mut architectures)| {
            architectures.sort();
            InstalledPackage {
                name,
                version,
                architectures,
            }
        })
        .collect()
}

/// The changes from `before` to `after`, by package name and architecture; changes that are
/// the same on several architectures are one entry. Sorted by name, then by the versions.
pub fn package_changes(
    before: &[InstalledPackage],
    after: &[InstalledPackage],
) -> Vec<PackageChange> {
    let versions = |list: &[InstalledPackage]| {
        let mut map: BTreeMap<(String, String), String> = BTreeMap::new();
        for package in list {
            for arch in &package.architectures {
                map.insert(
                    (package.name.clone(), arch.clone()),
                    package.version.clone(),
                );
            }
        }
        map
    };
    let old = versions(before);
    let new = versions(after);
    let keys: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
    let mut merged: BTreeMap<(String, Option<String>, Option<String>), Vec<String>> =
        BTreeMap::new();
    for key in keys {
        let from = old.get(key);
        let to = new.get(key);
        if from == to {
            continue;
        }
        let (name, arch) = key;
        merged
            .entry((name.clone(), from.cloned(), to.cloned()))
            .or_default()
            .push(arch.clone());
    }
    merged
        .into_iter()
        .map(|((name, from, to), architectures)| PackageChange {
            name,
            from,
            to,
            architectures,
        })
        .collect()
}

/// The [`PostBuild`] hook of an operator that does not sign: resolves the image's packages
/// again and records them when the resolution matches the build's lock.
#[derive(Clone, Debug)]
pub struct ListPackages {
    config: Arc<Config>,
}

impl ListPackages {
    /// A hook resolving with the operator's cache.
    pub fn new(config: Arc<Config>) -> Self {
        Self { config }
    }
}

impl PostBuild for ListPackages {
    fn after_success<'a>(
        &'a self,
        ib: &'a ImageBuild,
        result: &'a ImageResult,
    ) -> BoxFuture<'a, Result<SigningOutcome, HookError>> {
        Box::pin(async move {
            Ok(SigningOutcome {
                packages: list_packages(ib, &self.config, result).await,
                ..SigningOutcome::default()
            })
        })
    }
}

/// The installed packages of the image `result` describes, from a fresh resolution of `ib`;
/// `None` (logged) when the packages cannot be resolved or resolve to another lock than the
/// build's: the list is never guessed.
pub async fn list_packages(
    ib: &ImageBuild,
    config: &Config,
    result: &ImageResult,
) -> Option<Vec<InstalledPackage>> {
    let key = format!("{}/{}", ib.namespace().unwrap_or_default(), ib.name_any());
    match resolve_built(ib, config, result).await {
        Ok(resolved) if resolved.resolution.digest() == result.lock => {
            Some(installed_packages(&resolved.resolution))
        }
        Ok(resolved) => {
            tracing::warn!(
                imagebuild = %key,
                built = %result.lock,
                resolved = %resolved.resolution.digest(),
                "the packages resolve to another lock than the build's; no package list is recorded"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                imagebuild = %key,
                error = %Chain(&error),
                "cannot resolve the packages again; no package list is recorded"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str, archs: &[&str]) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            architectures: archs.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn change(name: &str, from: Option<&str>, to: Option<&str>, archs: &[&str]) -> PackageChange {
        PackageChange {
            name: name.into(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            architectures: archs.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn changes_are_added_removed_and_upgraded_per_architecture() {
        let both = ["aarch64", "x86_64"];
        let before = [
            package("busybox", "1.36.1-r0", &both),
            package("go", "1.25.7-r0", &both),
            package("libssl3", "3.3.0-r0", &both),
            package("glibc", "2.40-r0", &["x86_64"]),
            package("glibc", "2.39-r0", &["aarch64"]),
        ];
        let after = [
            package("busybox", "1.36.1-r0", &both),
            package("go", "1.25.8-r0", &both),
            package("ca-certificates", "20241121-r1", &both),
            package("glibc", "2.40-r0", &both),
        ];
        assert_eq!(
            package_changes(&before, &after),
            [
                change("ca-certificates", None, Some("20241121-r1"), &both),
                change("glibc", Some("2.39-r0"), Some("2.40-r0"), &["aarch64"]),
                change("go", Some("1.25.7-r0"), Some("1.25.8-r0"), &both),
                change("libssl3", Some("3.3.0-r0"), None, &both),
            ]
        );
        assert!(package_changes(&after, &after).is_empty());
        assert_eq!(package_changes(&[], &after).len(), 4);
    }
}
