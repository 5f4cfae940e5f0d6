//! The layers of a package-layered image: package data sections used as they are, layers the
//! builder writes for packages that cannot be (or that the budget groups), and a final layer.
//!
//! An APK's data section is a complete gzip-compressed tar whose SHA-256 is the `datahash` of
//! the package's signed control data: used as it is, it is a layer whose digest is known before
//! reading and that every image with that package shares. [`plan_layers`] decides which
//! packages become such layers (`image::layering`), stacks them in memory as a runtime would
//! (`image::overlay`), and puts every difference from the installed filesystem — the generated
//! files, files a later package replaced or an earlier one kept, directory metadata,
//! whiteouts for what must disappear — into the final layer. A package whose data section
//! cannot be stacked predictably is written by the builder instead, so the flattened image is
//! the single-layer image's filesystem by construction.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::entry::{EntryKind, LayerEntry};
use super::install::Installed;
use super::layer::{Compression, LayerDigests, MEDIA_TYPE_LAYER_GZIP};
use super::layering::{self, Candidate, Source};
use super::overlay::{self, FixItem, Stack, StackError};
use super::tree::{Content, Node, Tree};
use super::write::{self, WriteError};
use securebuild_registry::digest::SHA256_PREFIX;

/// Annotation on each layer descriptor listing the packages the layer holds
/// (`name=version`, comma-separated, in install order).
pub const ANNOTATION_PACKAGES: &str = "securebuild.dev/packages";

/// Errors from writing the layers.
#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    /// A layer the builder wrote from the installed filesystem does not stack (a bug).
    #[error("the layer of {packages} does not stack onto the layers below it")]
    Stack {
        /// The layer's packages.
        packages: String,
        /// What the stack found.
        #[source]
        source: StackError,
    },
    /// Writing a layer failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// One installed package, with where its data section is.
#[derive(Clone, Debug)]
pub struct LayerPackage<'a> {
    /// Package name.
    pub name: &'a str,
    /// Package version.
    pub version: &'a str,
    /// Origin; the name when the index gives none.
    pub origin: &'a str,
    /// Installed size (the index's `I:`).
    pub installed_size: u64,
    /// The verified `.apk`.
    pub apk: &'a Path,
    /// The data section's byte range in it.
    pub data_range: Range<u64>,
    /// SHA-256 of the data section (the `datahash`).
    pub data_sha256: [u8; 32],
    /// SHA-256 of the decompressed data tar, when known.
    pub data_diff_id: Option<[u8; 32]>,
}

/// How a layer was made (serialized as [`LayerKind::as_str`] names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// A package's data section, byte for byte.
    Package,
    /// Written by the builder for one or more packages.
    Rebuilt,
    /// The builder's final layer: generated files and every difference.
    Final,
    /// The whole image in one layer (`layering: {strategy: none}`).
    Single,
}

impl LayerKind {
    /// How the layer table names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Package => "package",
            Self::Rebuilt => "rebuilt",
            Self::Final => "final",
            Self::Single => "single",
        }
    }
}

/// Where a layer's blob is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerBlob {
    /// A byte range of a file (a package's data section).
    Range {
        /// The file.
        path: PathBuf,
        /// The range.
        range: Range<u64>,
    },
    /// A whole file the builder wrote.
    File(PathBuf),
}

/// A finished layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenLayer {
    /// How it was made.
    pub kind: LayerKind,
    /// `name=version` of the packages it holds, in install order.
    pub packages: Vec<String>,
    /// Its digests.
    pub digests: LayerDigests,
    /// Its blob.
    pub blob: LayerBlob,
    /// For a package rebuilt alone: why its data section could not be used.
    pub reason: Option<String>,
    /// For a package layer: the package's position in install order.
    pub package_index: Option<usize>,
}

/// Writes the layers of `installed` (whose `packages[i]` is `packages[i]`): package layers
/// within `budget`, then the final layer. Layers the builder writes go to `work` (named after
/// `prefix`).
pub fn write_layers(
    installed: &Installed,
    packages: &[LayerPackage<'_>],
    budget: u32,
    compression: Compression,
    work: &Path,
    prefix: &str,
    created: i64,
) -> Result<Vec<WrittenLayer>, LayersError> {
    let tree = &installed.tree;
    // Packages that install nothing need no layer.
    let members: Vec<usize> = installed
        .packages
        .iter()
        .filter(|p| p.layer.as_ref().map_or(true, |entries| !entries.is_empty()))
        .map(|p| p.index)
        .collect();
    let mut reasons: Vec<Option<String>> = members
        .iter()
        .map(|&index| {
            let package = &installed.packages[index];
            match &package.layer {
                Err(reason) => Some(reason.clone()),
                Ok(entries) => overlay::standalone_issue(entries).or_else(|| {
                    packages[index]
                        .data_diff_id
                        .is_none()
                        .then(|| "its data tar was not measured".to_string())
                }),
            }
        })
        .collect();
    // Stack the planned layers; a package layer that does not stack predictably is rebuilt
    // and the plan made again (each round rebuilds one more package, so this ends).
    let (plan, stack, rebuilt) = loop {
        let candidates: Vec<Candidate<'_>> = members
            .iter()
            .zip(&reasons)
            .map(|(&index, reason)| Candidate {
                name: packages[index].name,
                origin: packages[index].origin,
                installed_size: packages[index].installed_size,
                usable: reason.is_none(),
            })
            .collect();
        let plan = layering::plan(&candidates, budget);
        let mut stack = Stack::new();
        let mut rebuilt: Vec<Vec<Node>> = Vec::with_capacity(plan.len());
        let mut demoted = None;
        for layer in &plan {
            let owners: Vec<usize> = layer.packages.iter().map(|&c| members[c]).collect();
            match layer.source {
                Source::Package(candidate) => {
                    let index = members[candidate];
                    let entries = installed.packages[index]
                        .layer
                        .as_ref()
                        .map_or(&[][..], Vec::as_slice);
                    if let Err(error) = stack.apply(entries) {
                        demoted = Some((candidate, error));
                        break;
                    }
                    rebuilt.push(Vec::new());
                }
                Source::Rebuilt => {
                    let nodes = owned_nodes(tree, &owners);
                    stack.apply(&nodes).map_err(|source| LayersError::Stack {
                        packages: names(packages, &owners).join(","),
                        source,
                    })?;
                    rebuilt.push(nodes);
                }
            }
        }
        match demoted {
            Some((candidate, error)) => reasons[candidate] = Some(error.to_string()),
            None => break (plan, stack, rebuilt),
        }
    };

    let mut layers = Vec::with_capacity(plan.len() + 1);
    for (number, (layer, nodes)) in plan.iter().zip(&rebuilt).enumerate() {
        let owners: Vec<usize> = layer.packages.iter().map(|&c| members[c]).collect();
        let listed = names(packages, &owners);
        match layer.source {
            Source::Package(candidate) => {
                let package = &packages[members[candidate]];
                let diff_id = package.data_diff_id.unwrap_or_default();
                layers.push(WrittenLayer {
                    kind: LayerKind::Package,
                    packages: listed,
                    digests: LayerDigests {
                        diff_id: format!("{SHA256_PREFIX}{}", hex::encode(diff_id)),
                        digest: format!("{SHA256_PREFIX}{}", hex::encode(package.data_sha256)),
                        size: package.data_range.end - package.data_range.start,
                        uncompressed_size: installed
                            .spools
                            .path(members[candidate])
                            .and_then(|spool| std::fs::metadata(spool).ok())
                            .map_or(0, |metadata| metadata.len()),
                        media_type: MEDIA_TYPE_LAYER_GZIP,
                    },
                    blob: LayerBlob::Range {
                        path: package.apk.to_path_buf(),
                        range: package.data_range.clone(),
                    },
                    reason: None,
                    package_index: Some(members[candidate]),
                });
            }
            Source::Rebuilt => {
                let path = work.join(format!("{prefix}-{number:03}"));
                let digests = write::write_nodes(nodes, &installed.spools, &path, compression)?;
                let reason = match layer.packages.as_slice() {
                    [only] => reasons[*only].clone(),
                    _ => None,
                };
                layers.push(WrittenLayer {
                    kind: LayerKind::Rebuilt,
                    packages: listed,
                    digests,
                    blob: LayerBlob::File(path),
                    reason,
                    package_index: None,
                });
            }
        }
    }

    let fix = stack.fix_layer(tree);
    if !fix.is_empty() {
        let nodes: Vec<Node> = fix
            .into_iter()
            .map(|item| match item {
                FixItem::Entry(node) => node,
                FixItem::Whiteout(path) => Node {
                    entry: LayerEntry::file(overlay::whiteout_path(&path), 0, 0o644, created),
                    content: Content::Empty,
                    owner: None,
                },
            })
            .collect();
        let path = work.join(format!("{prefix}-final"));
        let digests = write::write_nodes(&nodes, &installed.spools, &path, compression)?;
        layers.push(WrittenLayer {
            kind: LayerKind::Final,
            packages: Vec::new(),
            digests,
            blob: LayerBlob::File(path),
            reason: None,
            package_index: None,
        });
    }
    Ok(layers)
}

/// `name=version` of the packages at `indices`.
fn names(packages: &[LayerPackage<'_>], indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .map(|&index| format!("{}={}", packages[index].name, packages[index].version))
        .collect()
}

/// The nodes of `tree` that `owners` installed, with their parent directories: in path order,
/// then the hard links (each after the file it names), leaving out links whose file is not in
/// the layer (the final layer makes those).
fn owned_nodes(tree: &Tree, owners: &[usize]) -> Vec<Node> {
    let owners: BTreeSet<usize> = owners.iter().copied().collect();
    let mut selected: BTreeSet<&str> = BTreeSet::new();
    for node in tree.iter() {
        if node.owner.is_some_and(|owner| owners.contains(&owner)) {
            let path = node.entry.path.as_str();
            selected.insert(path);
            selected.extend(
                path.match_indices('/')
                    .map(|(at, _)| &path[..at])
                    .filter(|parent| tree.contains(parent)),
            );
        }
    }
    let mut nodes = Vec::with_capacity(selected.len());
    let mut links = Vec::new();
    for path in &selected {
        let Some(node) = tree.get(path) else { continue };
        match &node.entry.kind {
            EntryKind::Hardlink { target } => {
                let shared = selected.contains(target.as_str())
                    && tree
                        .get(target)
                        .is_some_and(|n| matches!(n.entry.kind, EntryKind::File { .. }));
                if shared {
                    links.push(node.clone());
                }
            }
            _ => nodes.push(node.clone()),
        }
    }
    nodes.extend(links);
    nodes
}
