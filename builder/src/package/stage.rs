//! Walking a staged directory (the package's future root) into tar entries: directories,
//! regular files, symlinks and hard links, in the order Go's `filepath.Walk` visits them
//! (parents first, names in byte order), every entry owned by root with the staged permission
//! bits and one fixed modification time, so that the package does not depend on who built it
//! or when.
//!
//! Devices, FIFOs and sockets, and names that are not UTF-8, are refused with the path. The
//! SHA-1 of each regular file (and, as abuild-tar does, of each symlink's target) is computed
//! here, because apk's per-file checksum travels in the PAX header in front of the content.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::PackagingError;
use crate::image::entry::{EntryKind, LayerEntry};

/// Most entries a staged directory may hold.
pub const MAX_ENTRIES: usize = 1_000_000;

/// One entry of the staged directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedEntry {
    /// The tar entry (path relative to the staged root, no leading `/`).
    pub entry: LayerEntry,
    /// The file on disk, for regular files.
    pub source: Option<PathBuf>,
    /// SHA-1 of a regular file's content, or of a symlink's target.
    pub sha1: Option<[u8; 20]>,
}

impl StagedEntry {
    /// The size of a regular file, 0 for everything else.
    pub fn size(&self) -> u64 {
        match self.entry.kind {
            EntryKind::File { size } => size,
            _ => 0,
        }
    }
}

/// Walks `root` into entries with modification time `mtime`.
pub fn stage(root: &Path, mtime: i64) -> Result<Vec<StagedEntry>, PackagingError> {
    let metadata = fs::metadata(root).map_err(PackagingError::file(root))?;
    if !metadata.is_dir() {
        return Err(PackagingError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut walk = Walk {
        mtime,
        entries: Vec::new(),
        inodes: HashMap::new(),
    };
    walk.dir(root, "")?;
    Ok(walk.entries)
}

struct Walk {
    mtime: i64,
    entries: Vec<StagedEntry>,
    /// (device, inode) of files with more than one link, to the first path seen.
    inodes: HashMap<(u64, u64), String>,
}

impl Walk {
    fn dir(&mut self, dir: &Path, prefix: &str) -> Result<(), PackagingError> {
        let mut names = Vec::new();
        for child in fs::read_dir(dir).map_err(PackagingError::file(dir))? {
            let child = child.map_err(PackagingError::file(dir))?;
            let name = child.file_name();
            let Some(name) = name.to_str() else {
                return Err(PackagingError::NotUtf8 {
                    path: child.path(),
                    what: "the name",
                });
            };
            names.push(name.to_owned());
        }
        names.sort_unstable();
        for name in names {
            let path = dir.join(&name);
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if self.entries.len() >= MAX_ENTRIES {
                return Err(PackagingError::TooManyEntries {
                    path,
                    limit: MAX_ENTRIES,
                });
            }
            let metadata = fs::symlink_metadata(&path).map_err(PackagingError::file(&path))?;
            let mode = metadata.permissions().mode() & 0o7777;
            let kind = metadata.file_type();
            if kind.is_dir() {
                self.push(
                    LayerEntry::directory(&relative, mode, self.mtime),
                    None,
                    None,
                );
                self.dir(&path, &relative)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(PackagingError::file(&path))?;
                let Some(target) = target.to_str() else {
                    return Err(PackagingError::NotUtf8 {
                        path,
                        what: "the link target",
                    });
                };
                // abuild-tar records the SHA-1 of a link's target, as apk's database does.
                let sha1: [u8; 20] = Sha1::digest(target.as_bytes()).into();
                self.push(
                    LayerEntry::symlink(&relative, target, self.mtime),
                    None,
                    Some(sha1),
                );
            } else if kind.is_file() {
                let key = (metadata.dev(), metadata.ino());
                if metadata.nlink() > 1 {
                    if let Some(first) = self.inodes.get(&key) {
                        let mut entry = LayerEntry::file(&relative, 0, mode, self.mtime);
                        entry.kind = EntryKind::Hardlink {
                            target: first.clone(),
                        };
                        self.push(entry, None, None);
                        continue;
                    }
                    self.inodes.insert(key, relative.clone());
                }
                let (size, sha1) = hash_file(&path)?;
                if size != metadata.len() {
                    return Err(changed(&path));
                }
                self.push(
                    LayerEntry::file(&relative, size, mode, self.mtime),
                    Some(path),
                    Some(sha1),
                );
            } else {
                return Err(PackagingError::UnsupportedFileType { path });
            }
        }
        Ok(())
    }

    fn push(&mut self, entry: LayerEntry, source: Option<PathBuf>, sha1: Option<[u8; 20]>) {
        self.entries.push(StagedEntry {
            entry,
            source,
            sha1,
        });
    }
}

/// The error for a staged file that changed while it was being packaged.
pub(crate) fn changed(path: &Path) -> PackagingError {
    PackagingError::ChangedWhilePackaging {
        path: path.to_path_buf(),
    }
}

/// Size and SHA-1 of a file's content.
fn hash_file(path: &Path) -> Result<(u64, [u8; 20]), PackagingError> {
    let mut file = File::open(path).map_err(PackagingError::file(path))?;
    let mut hasher = Sha1::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(PackagingError::file(path)(error)),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_order_with_root_owner_and_fixed_time() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"#!/bin/true\n").unwrap();
        fs::set_permissions(
            root.join("usr/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        fs::write(root.join("etc/b"), b"b").unwrap();
        fs::hard_link(root.join("etc/b"), root.join("etc/a")).unwrap();
        std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).unwrap();

        let entries = stage(root, 1_700_000_000).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.entry.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/a",
                "etc/b",
                "usr",
                "usr/bin",
                "usr/bin/alias",
                "usr/bin/tool"
            ]
        );
        for staged in &entries {
            assert_eq!((staged.entry.uid, staged.entry.gid), (0, 0));
            assert_eq!(staged.entry.mtime, 1_700_000_000);
        }
        // The first name of a hard-linked file carries the content, later ones link to it.
        assert_eq!(entries[1].entry.kind, EntryKind::File { size: 1 });
        assert_eq!(
            entries[2].entry.kind,
            EntryKind::Hardlink {
                target: "etc/a".into()
            }
        );
        assert_eq!(
            entries[5].entry.kind,
            EntryKind::Symlink {
                target: "tool".into()
            }
        );
        let link_sum: [u8; 20] = Sha1::digest(b"tool").into();
        assert_eq!(entries[5].sha1, Some(link_sum));
        let tool = &entries[6];
        assert_eq!(tool.entry.mode, 0o4755);
        assert_eq!(tool.size(), 12);
        let expected: [u8; 20] = Sha1::digest(b"#!/bin/true\n").into();
        assert_eq!(tool.sha1, Some(expected));
    }

    #[test]
    fn refuses_fifos_odd_names_and_non_directories() {
        use std::os::unix::ffi::OsStrExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let error = stage(tmp.path(), 0).unwrap_err().to_string();
        assert!(error.contains("pipe") && error.contains("FIFOs"), "{error}");

        std::fs::remove_file(&fifo).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
        fs::write(tmp.path().join(odd), b"x").unwrap();
        let error = stage(tmp.path(), 0).unwrap_err();
        assert!(
            matches!(
                error,
                PackagingError::NotUtf8 {
                    what: "the name",
                    ..
                }
            ),
            "{error}"
        );
        fs::remove_file(tmp.path().join(odd)).unwrap();
        std::os::unix::fs::symlink(odd, tmp.path().join("link")).unwrap();
        let error = stage(tmp.path(), 0).unwrap_err();
        assert!(
            matches!(
                error,
                PackagingError::NotUtf8 {
                    what: "the link target",
                    ..
                }
            ),
            "{error}"
        );

        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let error = stage(&file, 0).unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
        let error = stage(&tmp.path().join("missing"), 0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
    }
}
