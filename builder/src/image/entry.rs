//! The unit of an image filesystem: one [`LayerEntry`] per path, with everything a tar header
//! says about it. File contents travel separately (see `layer`), so entries stay small.

use std::collections::BTreeMap;

/// What kind of filesystem object an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file of `size` bytes.
    File {
        /// Content length in bytes.
        size: u64,
    },
    /// A symbolic link; `target` is stored as written (relative or absolute).
    Symlink {
        /// Link target as the package wrote it.
        target: String,
    },
    /// A hard link to another entry of the same layer (`target` is a normalized layer path).
    Hardlink {
        /// Normalized path of the entry this links to.
        target: String,
    },
    /// A character device (only ever created by the builder itself, never from a package).
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One path in the image filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    /// Normalized path relative to the root: no leading `/`, no `.` or `..` components, no
    /// trailing `/`, e.g. `usr/bin/busybox`.
    pub path: String,
    /// Object kind.
    pub kind: EntryKind,
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Owner user name, when the package recorded one.
    pub uname: Option<String>,
    /// Owner group name, when the package recorded one.
    pub gname: Option<String>,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (e.g. `security.capability`), in key order.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl LayerEntry {
    /// A directory owned by root with the given mode.
    pub fn directory(path: impl Into<String>, mode: u32, mtime: i64) -> Self {
        Self::new(path, EntryKind::Directory, mode, mtime)
    }

    /// A regular file owned by root with the given mode and size.
    pub fn file(path: impl Into<String>, size: u64, mode: u32, mtime: i64) -> Self {
        Self::new(path, EntryKind::File { size }, mode, mtime)
    }

    /// A symlink owned by root (mode 0o777, as symlinks have).
    pub fn symlink(path: impl Into<String>, target: impl Into<String>, mtime: i64) -> Self {
        Self::new(
            path,
            EntryKind::Symlink {
                target: target.into(),
            },
            0o777,
            mtime,
        )
    }

    fn new(path: impl Into<String>, kind: EntryKind, mode: u32, mtime: i64) -> Self {
        Self {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: None,
            gname: None,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}
