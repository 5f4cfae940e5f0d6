//! Path safety and size limits for image entries, checked before anything reaches a layer.
//!
//! [`normalize`] turns a path as a package's data tar spells it into the canonical layer form
//! (`usr/bin/busybox`): a leading `./` and `.` components are dropped, repeated and trailing `/`
//! collapse, and anything that could escape the image root or cannot be stored is rejected:
//! absolute paths, every `..` component (even one that would stay inside, because resolving it
//! lexically disagrees with the real filesystem once an earlier component is a symlink), NUL
//! bytes, empty names, components longer than `NAME_MAX` and paths longer than `PATH_MAX`.
//!
//! A [`Guard`] then checks each entry against the ones accepted before it: nothing may be written
//! through a symlink or under a non-directory, a directory that already has (or implies)
//! children cannot be replaced by anything else, a hardlink must point at a regular file already
//! in the image, device nodes come only from the builder, and [`Limits`] cap the size of one
//! entry, the total size and the number of entries.
//!
//! This module is pure: it touches no filesystem, reads no content and does not judge symlink
//! targets (a symlink may point anywhere; it is resolved inside the container at run time).

use std::collections::HashMap;

use super::entry::{EntryKind, LayerEntry};

/// Longest path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Longest normalized path, in bytes (Linux `PATH_MAX` less the terminating NUL).
pub const MAX_PATH_LEN: usize = 4095;

/// Why a path or an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path names the image root itself (`.`, `./`), which has no entry of its own.
    #[error("path {path:?} names the image root")]
    Root {
        /// The path as given.
        path: String,
    },
    /// The path contains a NUL byte.
    #[error("path {path:?} contains a NUL byte")]
    ContainsNul {
        /// The path as given.
        path: String,
    },
    /// The path starts with `/`.
    #[error("path {path:?} is absolute")]
    Absolute {
        /// The path as given.
        path: String,
    },
    /// The path has a `..` component.
    #[error("path {path:?} has a parent-directory component")]
    ParentComponent {
        /// The path as given.
        path: String,
    },
    /// A component is longer than [`MAX_COMPONENT_LEN`].
    #[error("path {path:?} has a component of {length} bytes, over the limit of 255")]
    ComponentTooLong {
        /// The path as given.
        path: String,
        /// Length of the offending component.
        length: usize,
    },
    /// The normalized path is longer than [`MAX_PATH_LEN`].
    #[error("path {path:?} is {length} bytes long, over the limit of 4095")]
    PathTooLong {
        /// The path as given.
        path: String,
        /// Its normalized length.
        length: usize,
    },
    /// An entry's path (or hardlink target) is not in normalized form.
    #[error("path {path:?} is not normalized (expected {normalized:?})")]
    NotNormalized {
        /// The path as given.
        path: String,
        /// What [`normalize`] makes of it.
        normalized: String,
    },
    /// An ancestor of the path is a symlink already in the image.
    #[error("path {path:?} would be written through the symlink {symlink:?}")]
    ThroughSymlink {
        /// The refused path.
        path: String,
        /// The ancestor that is a symlink.
        symlink: String,
    },
    /// An ancestor of the path is a file, hardlink, device or FIFO already in the image.
    #[error("path {path:?} lies under {parent:?}, which is not a directory")]
    ParentNotDirectory {
        /// The refused path.
        path: String,
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// The path is a directory in the image (declared or implied by its children), and the
    /// entry is not a directory.
    #[error("path {path:?} is a directory in the image and cannot be replaced by a non-directory")]
    ReplacesDirectory {
        /// The refused path.
        path: String,
    },
    /// A hardlink's target is not in the image.
    #[error("hardlink {path:?} points at {target:?}, which is not in the image")]
    HardlinkTargetMissing {
        /// The hardlink's path.
        path: String,
        /// Its target.
        target: String,
    },
    /// A hardlink's target is in the image but is not a regular file.
    #[error("hardlink {path:?} points at {target:?}, which is not a regular file")]
    HardlinkTargetNotFile {
        /// The hardlink's path.
        path: String,
        /// Its target.
        target: String,
    },
    /// A symlink's target is empty or contains a NUL byte.
    #[error("symlink {path:?} has an empty or NUL-containing target")]
    InvalidSymlinkTarget {
        /// The symlink's path.
        path: String,
    },
    /// A package tried to create a device node.
    #[error("package entry {path:?} is a device node; only the builder may create devices")]
    DeviceFromPackage {
        /// The refused path.
        path: String,
    },
    /// A file is larger than [`Limits::max_entry_size`].
    #[error("{path:?} is {size} bytes, over the per-entry limit of {limit} bytes")]
    EntryTooLarge {
        /// The refused path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Accepting the entry would take the image over [`Limits::max_total_size`].
    #[error(
        "adding {path:?} brings the image to {total} bytes, over the total limit of {limit} bytes"
    )]
    TotalTooLarge {
        /// The refused path.
        path: String,
        /// The total the image would reach.
        total: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Accepting the entry would take the image over [`Limits::max_entries`].
    #[error("adding {path:?} exceeds the limit of {limit} entries")]
    TooManyEntries {
        /// The refused path.
        path: String,
        /// The limit in force.
        limit: u64,
    },
}

/// Caps on what one image may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest regular file, in bytes.
    pub max_entry_size: u64,
    /// Largest sum of regular file sizes, in bytes.
    pub max_total_size: u64,
    /// Largest number of distinct paths.
    pub max_entries: u64,
}

impl Limits {
    /// Default per-entry limit: 4 GiB.
    pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 4 << 30;
    /// Default total limit: 32 GiB.
    pub const DEFAULT_MAX_TOTAL_SIZE: u64 = 32 << 30;
    /// Default entry-count limit: one million.
    pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entry_size: Self::DEFAULT_MAX_ENTRY_SIZE,
            max_total_size: Self::DEFAULT_MAX_TOTAL_SIZE,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Who is adding an entry: device nodes are only accepted from the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The entry comes from a package's data.
    Package,
    /// The builder itself creates the entry (e.g. `/dev/null` style nodes, generated files).
    Builder,
}

/// Normalizes a path from a package into layer form, or says why it cannot be stored.
pub fn normalize(path: &str) -> Result<String, GuardError> {
    if path.is_empty() {
        return Err(GuardError::Empty);
    }
    if path.contains('\0') {
        return Err(GuardError::ContainsNul { path: path.into() });
    }
    if path.starts_with('/') {
        return Err(GuardError::Absolute { path: path.into() });
    }
    let mut normalized = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err(GuardError::ParentComponent { path: path.into() }),
            _ => {}
        }
        if component.len() > MAX_COMPONENT_LEN {
            return Err(GuardError::ComponentTooLong {
                path: path.into(),
                length: component.len(),
            });
        }
        if !normalized.is_empty() {
            normalized.push('/');
        }
        normalized.push_str(component);
    }
    if normalized.is_empty() {
        return Err(GuardError::Root { path: path.into() });
    }
    if normalized.len() > MAX_PATH_LEN {
        return Err(GuardError::PathTooLong {
            path: path.into(),
            length: normalized.len(),
        });
    }
    Ok(normalized)
}

/// What the guard remembers about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// A directory entry was accepted here.
    Directory,
    /// No entry yet, but accepted paths lie below it.
    ImpliedDirectory,
    /// A regular file (or a hardlink to one) of this size.
    RegularFile { size: u64 },
    /// A symlink.
    Symlink,
    /// A device node or FIFO.
    Special,
}

/// Tracks accepted entries and refuses the ones that would be unsafe or over the limits.
#[derive(Debug, Clone)]
pub struct Guard {
    limits: Limits,
    paths: HashMap<String, Recorded>,
    entries: u64,
    total_size: u64,
}

impl Guard {
    /// A guard with nothing accepted yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            paths: HashMap::new(),
            entries: 0,
            total_size: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of distinct paths accepted (implied parent directories not counted).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Sum of the sizes of the regular files accepted, in bytes (hardlinks count nothing).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Checks `entry` against everything accepted so far and records it when it passes.
    ///
    /// Declaring the same directory again is fine (packages share directories). Any other
    /// repeated path replaces the earlier entry, except that a directory cannot be replaced by a
    /// non-directory. A refused entry leaves the guard unchanged.
    pub fn check(&mut self, entry: &LayerEntry, origin: Origin) -> Result<(), GuardError> {
        let path = entry.path.as_str();
        require_normalized(path)?;
        self.check_ancestors(path)?;
        let previous = self.paths.get(path).copied();
        let recorded = self.classify(entry, origin)?;

        let replaces_directory = matches!(
            previous,
            Some(Recorded::Directory | Recorded::ImpliedDirectory)
        ) && recorded != Recorded::Directory;
        if replaces_directory {
            return Err(GuardError::ReplacesDirectory { path: path.into() });
        }

        let is_new = !matches!(
            previous,
            Some(
                Recorded::Directory
                    | Recorded::RegularFile { .. }
                    | Recorded::Symlink
                    | Recorded::Special
            )
        );
        let entries = self.entries + u64::from(is_new);
        if entries > self.limits.max_entries {
            return Err(GuardError::TooManyEntries {
                path: path.into(),
                limit: self.limits.max_entries,
            });
        }

        let old_size = match previous {
            Some(Recorded::RegularFile { size }) => size,
            _ => 0,
        };
        let new_size = match entry.kind {
            EntryKind::File { size } => size,
            _ => 0,
        };
        if new_size > self.limits.max_entry_size {
            return Err(GuardError::EntryTooLarge {
                path: path.into(),
                size: new_size,
                limit: self.limits.max_entry_size,
            });
        }
        let total = self
            .total_size
            .saturating_sub(old_size)
            .saturating_add(new_size);
        if total > self.limits.max_total_size {
            return Err(GuardError::TotalTooLarge {
                path: path.into(),
                total,
                limit: self.limits.max_total_size,
            });
        }

        for ancestor in ancestors(path) {
            self.paths
                .entry(ancestor.to_owned())
                .or_insert(Recorded::ImpliedDirectory);
        }
        self.paths.insert(path.to_owned(), recorded);
        self.entries = entries;
        self.total_size = total;
        Ok(())
    }

    /// Refuses a path under a symlink or a non-directory already accepted.
    fn check_ancestors(&self, path: &str) -> Result<(), GuardError> {
        for ancestor in ancestors(path) {
            match self.paths.get(ancestor) {
                Some(Recorded::Symlink) => {
                    return Err(GuardError::ThroughSymlink {
                        path: path.into(),
                        symlink: ancestor.into(),
                    });
                }
                Some(Recorded::RegularFile { .. } | Recorded::Special) => {
                    return Err(GuardError::ParentNotDirectory {
                        path: path.into(),
                        parent: ancestor.into(),
                    });
                }
                Some(Recorded::Directory | Recorded::ImpliedDirectory) | None => {}
            }
        }
        Ok(())
    }

    /// Applies the per-kind rules and says how the entry will be remembered.
    fn classify(&self, entry: &LayerEntry, origin: Origin) -> Result<Recorded, GuardError> {
        let path = entry.path.as_str();
        match &entry.kind {
            EntryKind::Directory => Ok(Recorded::Directory),
            EntryKind::File { size } => Ok(Recorded::RegularFile { size: *size }),
            EntryKind::Symlink { target } => {
                if target.is_empty() || target.contains('\0') {
                    return Err(GuardError::InvalidSymlinkTarget { path: path.into() });
                }
                Ok(Recorded::Symlink)
            }
            EntryKind::Hardlink { target } => {
                require_normalized(target)?;
                match self.paths.get(target.as_str()) {
                    Some(Recorded::RegularFile { .. }) => {
                        // A hardlink shares its target's data: it adds no bytes of its own.
                        Ok(Recorded::RegularFile { size: 0 })
                    }
                    Some(_) => Err(GuardError::HardlinkTargetNotFile {
                        path: path.into(),
                        target: target.clone(),
                    }),
                    None => Err(GuardError::HardlinkTargetMissing {
                        path: path.into(),
                        target: target.clone(),
                    }),
                }
            }
            EntryKind::CharDevice { .. } => match origin {
                Origin::Builder => Ok(Recorded::Special),
                Origin::Package => Err(GuardError::DeviceFromPackage { path: path.into() }),
            },
            EntryKind::Fifo => Ok(Recorded::Special),
        }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Fails unless `path` is already in the form [`normalize`] produces.
fn require_normalized(path: &str) -> Result<(), GuardError> {
    let normalized = normalize(path)?;
    if normalized != path {
        return Err(GuardError::NotNormalized {
            path: path.into(),
            normalized,
        });
    }
    Ok(())
}

/// The proper ancestors of a normalized path, outermost first (`a`, `a/b` for `a/b/c`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let long_component = "x".repeat(MAX_COMPONENT_LEN + 1);
        let ok_component = "x".repeat(MAX_COMPONENT_LEN);
        let long_path = vec!["abcdefg"; 600].join("/");
        let cases: Vec<(&str, Result<&str, GuardError>)> = vec![
            ("usr/bin/busybox", Ok("usr/bin/busybox")),
            ("./usr/bin/busybox", Ok("usr/bin/busybox")),
            ("usr/bin/", Ok("usr/bin")),
            ("usr//bin/./sh", Ok("usr/bin/sh")),
            ("././etc", Ok("etc")),
            (".hidden/..dots/...", Ok(".hidden/..dots/...")),
            (ok_component.as_str(), Ok(ok_component.as_str())),
            ("", Err(GuardError::Empty)),
            (".", Err(GuardError::Root { path: ".".into() })),
            ("./", Err(GuardError::Root { path: "./".into() })),
            (
                "/etc/passwd",
                Err(GuardError::Absolute {
                    path: "/etc/passwd".into(),
                }),
            ),
            (
                "../etc/passwd",
                Err(GuardError::ParentComponent {
                    path: "../etc/passwd".into(),
                }),
            ),
            (
                "usr/../../etc",
                Err(GuardError::ParentComponent {
                    path: "usr/../../etc".into(),
                }),
            ),
            (
                "usr/lib/../bin",
                Err(GuardError::ParentComponent {
                    path: "usr/lib/../bin".into(),
                }),
            ),
            (
                "etc/pass\0wd",
                Err(GuardError::ContainsNul {
                    path: "etc/pass\0wd".into(),
                }),
            ),
            (
                long_component.as_str(),
                Err(GuardError::ComponentTooLong {
                    path: long_component.clone(),
                    length: MAX_COMPONENT_LEN + 1,
                }),
            ),
            (
                long_path.as_str(),
                Err(GuardError::PathTooLong {
                    path: long_path.clone(),
                    length: long_path.len(),
                }),
            ),
        ];
        for (input, expected) in cases {
            let expected = expected.map(str::to_owned);
            assert_eq!(normalize(input), expected, "input {input:?}");
        }
    }

    fn dir(path: &str) -> LayerEntry {
        LayerEntry::directory(path, 0o755, 0)
    }

    fn file(path: &str, size: u64) -> LayerEntry {
        LayerEntry::file(path, size, 0o644, 0)
    }

    fn symlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry::symlink(path, target, 0)
    }

    fn hardlink(path: &str, target: &str) -> LayerEntry {
        let mut entry = file(path, 0);
        entry.kind = EntryKind::Hardlink {
            target: target.into(),
        };
        entry
    }

    fn device(path: &str) -> LayerEntry {
        let mut entry = file(path, 0);
        entry.kind = EntryKind::CharDevice { major: 1, minor: 3 };
        entry
    }

    fn fifo(path: &str) -> LayerEntry {
        let mut entry = file(path, 0);
        entry.kind = EntryKind::Fifo;
        entry
    }

    struct Case {
        name: &'static str,
        limits: Limits,
        accepted: Vec<(LayerEntry, Origin)>,
        entry: LayerEntry,
        origin: Origin,
        expected: Result<(), GuardError>,
    }

    fn case(
        name: &'static str,
        accepted: Vec<LayerEntry>,
        entry: LayerEntry,
        expected: Result<(), GuardError>,
    ) -> Case {
        Case {
            name,
            limits: Limits::default(),
            accepted: accepted.into_iter().map(|e| (e, Origin::Package)).collect(),
            entry,
            origin: Origin::Package,
            expected,
        }
    }

    fn check(case: Case) {
        let mut guard = Guard::new(case.limits);
        for (entry, origin) in &case.accepted {
            guard
                .check(entry, *origin)
                .unwrap_or_else(|err| panic!("{}: setup entry {:?}: {err}", case.name, entry.path));
        }
        let before = (guard.entries(), guard.total_size(), guard.paths.clone());
        let outcome = guard.check(&case.entry, case.origin);
        assert_eq!(outcome, case.expected, "{}", case.name);
        if outcome.is_err() {
            assert_eq!(
                (guard.entries(), guard.total_size(), guard.paths.clone()),
                before,
                "{}: a refused entry must leave the guard unchanged",
                case.name
            );
        }
    }

    #[test]
    fn guard_rules_table() {
        let small = Limits {
            max_entry_size: 100,
            max_total_size: 150,
            max_entries: 3,
        };
        let cases = vec![
            case("plain file", vec![], file("etc/passwd", 10), Ok(())),
            case(
                "file under declared directory",
                vec![dir("etc")],
                file("etc/passwd", 10),
                Ok(()),
            ),
            case(
                "same directory twice",
                vec![dir("usr"), dir("usr/bin")],
                dir("usr/bin"),
                Ok(()),
            ),
            case(
                "file replaces file",
                vec![file("etc/motd", 5)],
                file("etc/motd", 7),
                Ok(()),
            ),
            case(
                "directory declared after its children",
                vec![file("usr/bin/sh", 1)],
                dir("usr/bin"),
                Ok(()),
            ),
            case(
                "not normalized",
                vec![],
                file("./etc/passwd", 1),
                Err(GuardError::NotNormalized {
                    path: "./etc/passwd".into(),
                    normalized: "etc/passwd".into(),
                }),
            ),
            case(
                "absolute entry path",
                vec![],
                file("/etc/passwd", 1),
                Err(GuardError::Absolute {
                    path: "/etc/passwd".into(),
                }),
            ),
            case(
                "write through symlinked parent",
                vec![symlink("lib", "usr/lib")],
                file("lib/libc.so", 1),
                Err(GuardError::ThroughSymlink {
                    path: "lib/libc.so".into(),
                    symlink: "lib".into(),
                }),
            ),
            case(
                "write through symlinked grandparent",
                vec![dir("usr"), symlink("usr/lib", "/tmp")],
                dir("usr/lib/x/y"),
                Err(GuardError::ThroughSymlink {
                    path: "usr/lib/x/y".into(),
                    symlink: "usr/lib".into(),
                }),
            ),
            case(
                "symlink itself may be replaced by a symlink",
                vec![symlink("bin/sh", "busybox")],
                symlink("bin/sh", "bash"),
                Ok(()),
            ),
            case(
                "path under a regular file",
                vec![file("etc/hosts", 1)],
                file("etc/hosts/evil", 1),
                Err(GuardError::ParentNotDirectory {
                    path: "etc/hosts/evil".into(),
                    parent: "etc/hosts".into(),
                }),
            ),
            case(
                "directory replaced by symlink",
                vec![dir("lib")],
                symlink("lib", "usr/lib"),
                Err(GuardError::ReplacesDirectory { path: "lib".into() }),
            ),
            case(
                "implied directory replaced by file",
                vec![file("lib/libc.so", 1)],
                file("lib", 1),
                Err(GuardError::ReplacesDirectory { path: "lib".into() }),
            ),
            case(
                "hardlink to accepted file",
                vec![file("usr/bin/a", 10)],
                hardlink("usr/bin/b", "usr/bin/a"),
                Ok(()),
            ),
            case(
                "hardlink to hardlink",
                vec![file("usr/bin/a", 10), hardlink("usr/bin/b", "usr/bin/a")],
                hardlink("usr/bin/c", "usr/bin/b"),
                Ok(()),
            ),
            case(
                "hardlink to missing target",
                vec![],
                hardlink("usr/bin/b", "usr/bin/a"),
                Err(GuardError::HardlinkTargetMissing {
                    path: "usr/bin/b".into(),
                    target: "usr/bin/a".into(),
                }),
            ),
            case(
                "hardlink to directory",
                vec![dir("usr/bin")],
                hardlink("usr/x", "usr/bin"),
                Err(GuardError::HardlinkTargetNotFile {
                    path: "usr/x".into(),
                    target: "usr/bin".into(),
                }),
            ),
            case(
                "hardlink to implied directory",
                vec![file("usr/bin/a", 1)],
                hardlink("usr/x", "usr/bin"),
                Err(GuardError::HardlinkTargetNotFile {
                    path: "usr/x".into(),
                    target: "usr/bin".into(),
                }),
            ),
            case(
                "hardlink to symlink",
                vec![symlink("bin/sh", "busybox")],
                hardlink("bin/ash", "bin/sh"),
                Err(GuardError::HardlinkTargetNotFile {
                    path: "bin/ash".into(),
                    target: "bin/sh".into(),
                }),
            ),
            case(
                "hardlink escaping the image",
                vec![],
                hardlink("bin/x", "../etc/shadow"),
                Err(GuardError::ParentComponent {
                    path: "../etc/shadow".into(),
                }),
            ),
            case(
                "hardlink with absolute target",
                vec![],
                hardlink("bin/x", "/etc/shadow"),
                Err(GuardError::Absolute {
                    path: "/etc/shadow".into(),
                }),
            ),
            case(
                "symlink with empty target",
                vec![],
                symlink("bin/x", ""),
                Err(GuardError::InvalidSymlinkTarget {
                    path: "bin/x".into(),
                }),
            ),
            case(
                "symlink pointing outside is fine",
                vec![],
                symlink("etc/mtab", "/proc/self/mounts"),
                Ok(()),
            ),
            case(
                "device node from package",
                vec![],
                device("dev/null"),
                Err(GuardError::DeviceFromPackage {
                    path: "dev/null".into(),
                }),
            ),
            Case {
                origin: Origin::Builder,
                ..case(
                    "device node from builder",
                    vec![],
                    device("dev/null"),
                    Ok(()),
                )
            },
            case("fifo from package", vec![], fifo("run/initctl"), Ok(())),
            Case {
                limits: small,
                ..case("file at the entry limit", vec![], file("a", 100), Ok(()))
            },
            Case {
                limits: small,
                ..case(
                    "file over the entry limit",
                    vec![],
                    file("a", 101),
                    Err(GuardError::EntryTooLarge {
                        path: "a".into(),
                        size: 101,
                        limit: 100,
                    }),
                )
            },
            Case {
                limits: small,
                ..case(
                    "total over the limit",
                    vec![file("a", 100)],
                    file("b", 51),
                    Err(GuardError::TotalTooLarge {
                        path: "b".into(),
                        total: 151,
                        limit: 150,
                    }),
                )
            },
            Case {
                limits: small,
                ..case(
                    "replacement frees the old size",
                    vec![file("a", 100), file("b", 50)],
                    file("a", 90),
                    Ok(()),
                )
            },
            Case {
                limits: small,
                ..case(
                    "hardlinks add no size",
                    vec![file("a", 100), file("b", 50)],
                    hardlink("c", "a"),
                    Ok(()),
                )
            },
            Case {
                limits: small,
                ..case(
                    "too many entries",
                    vec![dir("a"), dir("b"), dir("c")],
                    dir("d"),
                    Err(GuardError::TooManyEntries {
                        path: "d".into(),
                        limit: 3,
                    }),
                )
            },
            Case {
                limits: small,
                ..case(
                    "repeated directory is not a new entry",
                    vec![dir("a"), dir("b"), dir("c")],
                    dir("a"),
                    Ok(()),
                )
            },
            Case {
                limits: small,
                ..case(
                    "implied directories are not counted",
                    vec![file("a/b/c/d", 1), dir("e")],
                    dir("a/b"),
                    Ok(()),
                )
            },
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn default_limits() {
        let limits = Limits::default();
        assert_eq!(limits.max_entry_size, 4 * 1024 * 1024 * 1024);
        assert_eq!(limits.max_total_size, 32 * 1024 * 1024 * 1024);
        assert_eq!(limits.max_entries, 1_000_000);
    }

    #[test]
    fn counters_follow_accepted_entries() {
        let mut guard = Guard::default();
        guard.check(&dir("usr"), Origin::Package).unwrap();
        guard.check(&file("usr/a", 10), Origin::Package).unwrap();
        guard.check(&file("usr/a", 4), Origin::Package).unwrap();
        guard
            .check(&hardlink("usr/b", "usr/a"), Origin::Package)
            .unwrap();
        guard.check(&dir("usr"), Origin::Package).unwrap();
        assert_eq!(guard.entries(), 3);
        assert_eq!(guard.total_size(), 4);
    }

    #[test]
    fn errors_name_the_path_and_limit() {
        let err = GuardError::EntryTooLarge {
            path: "usr/lib/big".into(),
            size: 10,
            limit: 5,
        };
        assert_eq!(
            err.to_string(),
            "\"usr/lib/big\" is 10 bytes, over the per-entry limit of 5 bytes"
        );
        let err = GuardError::ThroughSymlink {
            path: "lib/x".into(),
            symlink: "lib".into(),
        };
        assert_eq!(
            err.to_string(),
            "path \"lib/x\" would be written through the symlink \"lib\""
        );
    }
}
