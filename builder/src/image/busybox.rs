//! Busybox applet links, as apko installs them: when `/bin/busybox` exists, every path listed in
//! `/etc/busybox-paths.d/<package>` (the manifest busybox packages ship since Alpine
//! 1.36.0-r8 and Wolfi 1.36.0-r3) becomes a symlink to `/bin/busybox`, unless something is
//! already there.
//!
//! `<package>` is the installed package named `busybox`, or else the last one whose provides
//! mention busybox. apko falls back to built-in per-version applet lists when the manifest is
//! missing; this step does not carry those lists and creates no links in that case.

use std::io;

use super::entry::{EntryKind, LayerEntry};
use super::paths::{self, TreePathError};
use super::tree::{Content, ContentSource, Node, Tree};
use crate::apk::index::PackageRecord;

/// The busybox binary every applet links to.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// Directory of the per-package applet manifests.
pub const PATHS_DIR: &str = "etc/busybox-paths.d";
/// Name of the busybox package.
pub const BUSYBOX_PACKAGE: &str = "busybox";
/// Largest applet manifest read, in bytes.
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// What the busybox step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusyboxOutcome {
    /// `/bin/busybox` is not in the image.
    NotInstalled,
    /// The providing package ships no applet manifest; no links were made.
    NoManifest {
        /// The package providing busybox.
        package: String,
    },
    /// Links were made from the package's manifest.
    Linked {
        /// The package providing busybox.
        package: String,
        /// Number of symlinks created.
        created: usize,
        /// Number of listed paths left alone because something was already there.
        existing: usize,
    },
}

/// Why the busybox links could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    /// `/bin/busybox` exists but no installed package is or provides busybox.
    #[error("/bin/busybox is in the image but no installed package is or provides busybox")]
    PackageNotInstalled,
    /// The manifest could not be read.
    #[error("reading /{path} failed")]
    Read {
        /// Tree path of the manifest.
        path: String,
        /// The content source's error.
        #[source]
        source: io::Error,
    },
    /// The manifest is larger than [`MAX_MANIFEST_SIZE`].
    #[error("/{path} is {size} bytes, over the limit of 1 MiB")]
    TooLarge {
        /// Tree path of the manifest.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The manifest is not UTF-8 text.
    #[error("/{path} is not UTF-8 text")]
    NotText {
        /// Tree path of the manifest.
        path: String,
    },
    /// A listed applet path cannot be resolved or its directory created.
    #[error("cannot create busybox link {link}")]
    Path {
        /// The path as listed.
        link: String,
        /// Why.
        #[source]
        source: TreePathError,
    },
    /// A listed applet path is a directory, device or FIFO.
    #[error("cannot create busybox link {link}: a {existing} is there")]
    Occupied {
        /// The path as listed.
        link: String,
        /// What is there.
        existing: &'static str,
    },
}

/// Creates the applet symlinks for the installed busybox. `packages` are the installed
/// packages in install order.
pub fn install_busybox_links(
    tree: &mut Tree,
    source: &dyn ContentSource,
    packages: &[&PackageRecord],
    mtime: i64,
) -> Result<BusyboxOutcome, BusyboxError> {
    let binary = paths::resolve(tree, BUSYBOX_PATH, true).map_err(|source| BusyboxError::Path {
        link: BUSYBOX_PATH.to_string(),
        source,
    })?;
    if binary.is_empty() || !tree.contains(&binary) {
        return Ok(BusyboxOutcome::NotInstalled);
    }
    let package = providing_package(packages).ok_or(BusyboxError::PackageNotInstalled)?;
    let Some(manifest) = read_manifest(tree, source, &package)? else {
        return Ok(BusyboxOutcome::NoManifest { package });
    };

    let mut created = 0;
    let mut existing = 0;
    for line in manifest.lines() {
        let link = line.trim();
        if link.is_empty() || link == BUSYBOX_PATH {
            continue;
        }
        if create_link(tree, link, mtime)? {
            created += 1;
        } else {
            existing += 1;
        }
    }
    Ok(BusyboxOutcome::Linked {
        package,
        created,
        existing,
    })
}

/// The package named busybox, or else the last one providing something named like it.
fn providing_package(packages: &[&PackageRecord]) -> Option<String> {
    if let Some(named) = packages.iter().find(|p| p.name == BUSYBOX_PACKAGE) {
        return Some(named.name.clone());
    }
    packages
        .iter()
        .rev()
        .find(|p| {
            p.provides
                .iter()
                .any(|provide| provide.to_string().contains(BUSYBOX_PACKAGE))
        })
        .map(|p| p.name.clone())
}

fn read_manifest(
    tree: &Tree,
    source: &dyn ContentSource,
    package: &str,
) -> Result<Option<String>, BusyboxError> {
    let listed = format!("{PATHS_DIR}/{package}");
    let Ok(path) = paths::resolve(tree, &listed, true) else {
        return Ok(None);
    };
    let Some(node) = tree.get(&path) else {
        return Ok(None);
    };
    let holder = match &node.entry.kind {
        EntryKind::File { .. } => node,
        EntryKind::Hardlink { target } => match tree.get(target) {
            Some(holder) => holder,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let size = holder.content.len();
    if size > MAX_MANIFEST_SIZE {
        return Err(BusyboxError::TooLarge { path, size });
    }
    let bytes = tree
        .read(&holder.entry.path, source)
        .map_err(|source| BusyboxError::Read {
            path: path.clone(),
            source,
        })?
        .unwrap_or_default();
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| BusyboxError::NotText { path })
}

/// Creates one applet link; `false` when a symlink or file is already there.
fn create_link(tree: &mut Tree, link: &str, mtime: i64) -> Result<bool, BusyboxError> {
    let path_error = |source| BusyboxError::Path {
        link: link.to_string(),
        source,
    };
    let target = paths::resolve(tree, link, false).map_err(path_error)?;
    if target.is_empty() {
        return Err(BusyboxError::Occupied {
            link: link.to_string(),
            existing: "directory",
        });
    }
    paths::check_storable(&target).map_err(path_error)?;
    paths::make_dirs(
        tree,
        paths::parent(&target),
        paths::DEFAULT_DIRECTORY_MODE,
        mtime,
    )
    .map_err(path_error)?;
    if let Some(node) = tree.get(&target) {
        return match &node.entry.kind {
            EntryKind::Symlink { .. } | EntryKind::File { .. } | EntryKind::Hardlink { .. } => {
                Ok(false)
            }
            other => Err(BusyboxError::Occupied {
                link: link.to_string(),
                existing: paths::kind_name(other),
            }),
        };
    }
    tree.insert(Node {
        entry: LayerEntry::symlink(target.as_str(), BUSYBOX_PATH, mtime),
        content: Content::Empty,
        owner: None,
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::constraint::Dependency;
    use crate::image::tree::NoSpools;

    fn record(name: &str, provides: &[&str]) -> PackageRecord {
        PackageRecord {
            name: name.to_string(),
            version: "1.37.0-r0".to_string(),
            provides: provides
                .iter()
                .map(|p| Dependency::parse(p).unwrap())
                .collect(),
            ..PackageRecord::default()
        }
    }

    /// Wolfi's merged layout: `bin -> usr/bin`, busybox at `usr/bin/busybox`.
    fn merged(manifest: Option<&str>, package: &str) -> Tree {
        let mut tree = Tree::new();
        tree.put_file("usr/bin/busybox", b"ELF".to_vec(), 0o755, 0, 0, 1);
        tree.put_file("usr/bin/ls", b"coreutils".to_vec(), 0o755, 0, 0, 1);
        tree.put_file("usr/sbin/placeholder", Vec::new(), 0o644, 0, 0, 1);
        tree.insert(Node {
            entry: LayerEntry::symlink("bin", "usr/bin", 1),
            content: Content::Empty,
            owner: Some(0),
        });
        tree.insert(Node {
            entry: LayerEntry::symlink("sbin", "usr/sbin", 1),
            content: Content::Empty,
            owner: Some(0),
        });
        tree.insert(Node {
            entry: LayerEntry::symlink("usr/bin/sh", "busybox", 1),
            content: Content::Empty,
            owner: Some(0),
        });
        if let Some(text) = manifest {
            tree.put_file(
                &format!("{PATHS_DIR}/{package}"),
                text.as_bytes().to_vec(),
                0o644,
                0,
                0,
                1,
            );
        }
        tree
    }

    const MANIFEST: &str = "/bin/busybox\n/bin/sh\n/bin/ls\n/bin/cat\n/sbin/ifconfig\n\
        /usr/bin/[\n/usr/local/bin/wget\n/bin/cat\n\n";

    #[test]
    fn links_are_created_through_merged_directories() {
        let mut tree = merged(Some(MANIFEST), "busybox");
        let busybox = record("busybox", &["cmd:busybox=1.37.0-r0"]);
        let outcome = install_busybox_links(&mut tree, &NoSpools, &[&busybox], 5).unwrap();
        assert_eq!(
            outcome,
            BusyboxOutcome::Linked {
                package: "busybox".into(),
                created: 4,
                existing: 3
            }
        );
        for link in [
            "usr/bin/cat",
            "usr/sbin/ifconfig",
            "usr/bin/[",
            "usr/local/bin/wget",
        ] {
            let node = tree.get(link).unwrap_or_else(|| panic!("{link}"));
            assert_eq!(
                node.entry.kind,
                EntryKind::Symlink {
                    target: "/bin/busybox".into()
                },
                "{link}"
            );
            assert_eq!(node.entry.mtime, 5);
        }
        // Existing paths are never replaced.
        assert_eq!(
            tree.get("usr/bin/ls").unwrap().content,
            Content::inline(b"coreutils".to_vec())
        );
        assert_eq!(
            tree.get("usr/bin/sh").unwrap().entry.kind,
            EntryKind::Symlink {
                target: "busybox".into()
            }
        );
        assert!(!tree.contains("bin/cat"));
        assert_eq!(
            tree.get("usr/local/bin").unwrap().entry.kind,
            EntryKind::Directory
        );
    }

    #[test]
    fn providers() {
        let check = |packages: &[PackageRecord], manifest_for: &str, expected: BusyboxOutcome| {
            let mut tree = merged(Some("/bin/true\n"), manifest_for);
            let refs: Vec<&PackageRecord> = packages.iter().collect();
            let outcome = install_busybox_links(&mut tree, &NoSpools, &refs, 1).unwrap();
            assert_eq!(outcome, expected);
        };
        let linked = |package: &str| BusyboxOutcome::Linked {
            package: package.into(),
            created: 1,
            existing: 0,
        };
        check(
            &[record("zlib", &[]), record("busybox", &[])],
            "busybox",
            linked("busybox"),
        );
        check(
            &[
                record("toybox", &["cmd:busybox-compat=1"]),
                record("busybox-full", &["cmd:busybox=1"]),
            ],
            "busybox-full",
            linked("busybox-full"),
        );
        check(
            &[record("busybox", &[])],
            "other",
            BusyboxOutcome::NoManifest {
                package: "busybox".into(),
            },
        );
    }

    #[test]
    fn no_busybox_binary_does_nothing_and_a_missing_provider_is_an_error() {
        let mut tree = Tree::new();
        tree.put_file("usr/bin/ls", Vec::new(), 0o755, 0, 0, 1);
        let outcome = install_busybox_links(&mut tree, &NoSpools, &[], 1).unwrap();
        assert_eq!(outcome, BusyboxOutcome::NotInstalled);
        assert_eq!(tree.len(), 3);

        let mut tree = merged(Some(MANIFEST), "busybox");
        let zlib = record("zlib", &[]);
        let err = install_busybox_links(&mut tree, &NoSpools, &[&zlib], 1).unwrap_err();
        assert!(matches!(err, BusyboxError::PackageNotInstalled));
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let mut tree = merged(Some("/usr/bin/conflict\n"), "busybox");
        tree.insert(Node {
            entry: LayerEntry::directory("usr/bin/conflict", 0o755, 1),
            content: Content::Empty,
            owner: None,
        });
        let busybox = record("busybox", &[]);
        let err = install_busybox_links(&mut tree, &NoSpools, &[&busybox], 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot create busybox link /usr/bin/conflict: a directory is there"
        );
    }
}
