//! The install step: verified `.apk` files, in install order, become [`Tree`] nodes without ever
//! being unpacked into a directory tree.
//!
//! Each package's data stream is decompressed once into a spool (its uncompressed tar, on disk)
//! while its SHA-256 is checked against `.PKGINFO`'s `datahash`; the tar entries are then read
//! from the spool, checked by the [`Guard`], and merged into the tree with apk's file-conflict
//! rules. Nodes point at byte ranges of the spools, which [`Spools`] reads back when the layer
//! is written. Nothing here runs package scripts or touches the host filesystem outside the
//! spool directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::entry::{EntryKind, LayerEntry};
use super::guard::{self, Guard, GuardError, Origin};
use super::tree::{Content, ContentSource, Node, Tree};
use crate::apk::archive::{self, ArchiveError, Limits as ArchiveLimits};
use crate::apk::index::{Checksum, ChecksumAlgorithm, PackageRecord};

/// The PAX record in which apk-tools and abuild store a file's SHA-1.
pub const PAX_APK_CHECKSUM: &str = "APK-TOOLS.checksum.SHA1";
/// The PAX record prefix of extended attributes.
pub const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// A verified package to install: its index record and the `.apk` file on disk.
#[derive(Clone, Debug)]
pub struct PackageFile<'a> {
    /// The record the solver selected.
    pub record: &'a PackageRecord,
    /// The verified `.apk` file.
    pub path: PathBuf,
}

/// A path a package installed, as the apk database lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPath {
    /// Normalized layer path.
    pub path: String,
    /// Object kind.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// SHA-1 of a regular file's content (from the package's `APK-TOOLS.checksum.SHA1`
    /// record, or computed).
    pub sha1: Option<[u8; 20]>,
}

/// What one package installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Position in install order (also the spool index).
    pub index: usize,
    /// Every path the package owns after conflicts are settled, in the package's order.
    pub paths: Vec<InstalledPath>,
    /// The control stream's scripts (`.post-install`, `.trigger`, …), never run, recorded in
    /// the apk database.
    pub scripts: Vec<(String, Vec<u8>)>,
    /// The `triggers` of `.PKGINFO`.
    pub triggers: Vec<String>,
}

/// The result of installing every package.
#[derive(Debug)]
pub struct Installed {
    /// The merged filesystem.
    pub tree: Tree,
    /// The spools the tree's file contents live in.
    pub spools: Spools,
    /// Per package, the paths it owns.
    pub packages: Vec<InstalledPackage>,
}

/// Errors from installing packages.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A package file could not be read or a spool written.
    #[error("cannot install {package}: {path}: {source}")]
    Io {
        /// `name-version`.
        package: String,
        /// The file involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The package's streams are malformed, oversized or fail their checksums.
    #[error("cannot install {package}: {source}")]
    Archive {
        /// `name-version`.
        package: String,
        /// What the archive reader found.
        #[source]
        source: ArchiveError,
    },
    /// The control stream does not match the index's `C:` checksum.
    #[error(
        "cannot install {package}: its control checksum {actual} does not match the index's {expected}; the package was changed after the index was signed"
    )]
    ControlChecksum {
        /// `name-version`.
        package: String,
        /// The index's `C:` value.
        expected: String,
        /// The package's actual checksum.
        actual: String,
    },
    /// A data tar entry is malformed.
    #[error("cannot install {package}: malformed data entry {entry}: {source}")]
    Entry {
        /// `name-version`.
        package: String,
        /// The entry's name or position.
        entry: String,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },
    /// An entry tries to escape the root, write through a symlink, create a device, or exceeds
    /// a limit.
    #[error("package {package} is not safe to install: {source}")]
    Unsafe {
        /// `name-version`.
        package: String,
        /// The guard's verdict.
        #[source]
        source: GuardError,
    },
    /// An entry type apk does not install (block devices, sparse or unknown entries).
    #[error("package {package} contains {path} of unsupported tar type {kind:?}")]
    UnsupportedEntry {
        /// `name-version`.
        package: String,
        /// The entry's path.
        path: String,
        /// The tar entry type byte.
        kind: u8,
    },
    /// Two packages install different content at the same path and neither may overwrite
    /// the other.
    #[error(
        "file conflict: {path} is installed by both {owner} and {package}; declare `replaces` in one of them or remove one from the image"
    )]
    FileConflict {
        /// The path.
        path: String,
        /// The package that installed it first.
        owner: String,
        /// The package that tries to overwrite it.
        package: String,
    },
}

/// Limits applied while installing.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstallLimits {
    /// Entry count and size limits of the image.
    pub guard: guard::Limits,
    /// Caps on each package's streams.
    pub archive: ArchiveLimits,
}

/// The uncompressed data streams of the installed packages.
#[derive(Debug, Default)]
pub struct Spools {
    files: Vec<PathBuf>,
}

impl Spools {
    /// The spool file of package `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(PathBuf::as_path)
    }

    /// Streams `len` bytes at `offset` of spool `spool` into `out`.
    pub fn copy_range(
        &self,
        spool: usize,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> io::Result<u64> {
        let path = self
            .files
            .get(spool)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no spool {spool}")))?;
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let copied = io::copy(&mut file.take(len), out)?;
        if copied == len {
            Ok(copied)
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "spool {} ended {} bytes early",
                    path.display(),
                    len - copied
                ),
            ))
        }
    }
}

impl ContentSource for Spools {
    fn read_spool(&self, spool: usize, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.copy_range(spool, offset, len, &mut bytes)?;
        Ok(bytes)
    }
}

/// Installs `packages` (in install order) into a new tree, spooling data streams into
/// `spool_dir`.
pub fn install(
    packages: &[PackageFile<'_>],
    spool_dir: &Path,
    limits: &InstallLimits,
) -> Result<Installed, InstallError> {
    let mut state = State {
        tree: Tree::new(),
        guard: Guard::new(limits.guard),
        owners: BTreeMap::new(),
        checksums: BTreeMap::new(),
        records: packages.iter().map(|p| p.record).collect(),
        spools: Spools::default(),
    };
    let mut installed = Vec::with_capacity(packages.len());
    for (index, package) in packages.iter().enumerate() {
        let spool = spool_dir.join(format!("{index:05}-{}.tar", package.record.name));
        let control = spool_data(package, &spool, &limits.archive)?;
        state.spools.files.push(spool.clone());
        let mut merged = state.merge(index, &spool)?;
        merged.scripts = control.scripts;
        merged.triggers = control.triggers;
        installed.push(merged);
    }
    // Paths later packages took over no longer belong to their first owner; directories belong
    // to every package that ships them, as in apk's database.
    for package in &mut installed {
        let index = package.index;
        package.paths.retain(|p| {
            p.kind == EntryKind::Directory || state.owners.get(&p.path) == Some(&index)
        });
    }
    Ok(Installed {
        tree: state.tree,
        spools: state.spools,
        packages: installed,
    })
}

fn label(record: &PackageRecord) -> String {
    format!("{}-{}", record.name, record.version)
}

/// What the control stream holds besides `.PKGINFO`.
struct ControlFiles {
    scripts: Vec<(String, Vec<u8>)>,
    triggers: Vec<String>,
}

/// Decompresses the data stream into `spool`, checking the control checksum against the index
/// and the data stream against `datahash`.
fn spool_data(
    package: &PackageFile<'_>,
    spool: &Path,
    limits: &ArchiveLimits,
) -> Result<ControlFiles, InstallError> {
    let name = label(package.record);
    let io_error = |path: &Path| {
        let package = name.clone();
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            package,
            path,
            source,
        }
    };
    let file = File::open(&package.path).map_err(io_error(&package.path))?;
    let archive = archive::read_package(BufReader::with_capacity(256 * 1024, file), limits)
        .map_err(|source| InstallError::Archive {
            package: name.clone(),
            source,
        })?;
    let digests = &archive.control.digests;
    let matches = match package.record.checksum() {
        Ok(Checksum {
            algorithm: ChecksumAlgorithm::Sha1,
            bytes,
        }) => bytes == digests.sha1,
        Ok(Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            bytes,
        }) => bytes == digests.sha256,
        Err(_) => false,
    };
    let actual = digests.checksum();
    if !matches {
        return Err(InstallError::ControlChecksum {
            package: name,
            expected: package.record.checksum.clone(),
            actual,
        });
    }
    let control = ControlFiles {
        scripts: archive
            .control
            .entries
            .iter()
            .filter(|e| e.name.starts_with('.') && e.name != archive::PKGINFO_ENTRY)
            .map(|e| (e.name.clone(), e.data.clone()))
            .collect(),
        triggers: archive.control.pkginfo.triggers.clone(),
    };
    let mut data = archive.data;
    let mut out =
        BufWriter::with_capacity(256 * 1024, File::create(spool).map_err(io_error(spool))?);
    if let Err(error) = io::copy(&mut data, &mut out) {
        return Err(match ArchiveError::find_in(&error) {
            Some(source) => InstallError::Archive {
                package: name,
                source: source.clone(),
            },
            None => io_error(spool)(error),
        });
    }
    out.flush().map_err(io_error(spool))?;
    data.finish().map_err(|source| InstallError::Archive {
        package: name,
        source,
    })?;
    Ok(control)
}

/// A package's tar entry as a node, with the SHA-1 the package recorded for it.
type PackageEntry = (Node, Option<[u8; 20]>);

struct State<'a> {
    tree: Tree,
    guard: Guard,
    /// Which package owns each non-directory path.
    owners: BTreeMap<String, usize>,
    /// SHA-1 of regular files whose packages recorded one.
    checksums: BTreeMap<String, [u8; 20]>,
    records: Vec<&'a PackageRecord>,
    spools: Spools,
}

impl State<'_> {
    /// Reads the spool's tar entries and merges them into the tree.
    fn merge(&mut self, index: usize, spool: &Path) -> Result<InstalledPackage, InstallError> {
        let record = self.records[index];
        let name = label(record);
        let io_error = |source| InstallError::Io {
            package: name.clone(),
            path: spool.to_path_buf(),
            source,
        };
        let file = File::open(spool).map_err(io_error)?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut paths = Vec::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|source| InstallError::Entry {
                package: name.clone(),
                entry: "archive".into(),
                source,
            })?;
        for (position, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|source| InstallError::Entry {
                package: name.clone(),
                entry: format!("#{position}"),
                source,
            })?;
            let Some((node, sha1)) = self.read_entry(index, &name, &mut entry)? else {
                continue;
            };
            let installed = InstalledPath {
                path: node.entry.path.clone(),
                kind: node.entry.kind.clone(),
                mode: node.entry.mode,
                uid: node.entry.uid,
                gid: node.entry.gid,
                sha1,
            };
            if self.place(index, node, sha1)? {
                paths.push(installed);
            }
        }
        Ok(InstalledPackage {
            index,
            paths,
            scripts: Vec::new(),
            triggers: Vec::new(),
        })
    }

    /// Turns one tar entry into a node (guard-checked), or `None` for entries apk skips.
    fn read_entry<R: Read>(
        &mut self,
        index: usize,
        package: &str,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Option<PackageEntry>, InstallError> {
        let malformed = |entry_name: &str, source: io::Error| InstallError::Entry {
            package: package.to_string(),
            entry: entry_name.to_string(),
            source,
        };
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = match guard::normalize(&raw_path) {
            Ok(path) => path,
            Err(GuardError::Root { .. }) => return Ok(None),
            Err(source) => {
                return Err(InstallError::Unsafe {
                    package: package.to_string(),
                    source,
                });
            }
        };
        let header = entry.header().clone();
        let mode = header.mode().map_err(|e| malformed(&path, e))? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(|e| malformed(&path, e))?)
            .map_err(|_| malformed(&path, io::Error::other("uid out of range")))?;
        let gid = u32::try_from(header.gid().map_err(|e| malformed(&path, e))?)
            .map_err(|_| malformed(&path, io::Error::other("gid out of range")))?;
        let mtime =
            i64::try_from(header.mtime().map_err(|e| malformed(&path, e))?).unwrap_or(i64::MAX);
        let uname = header
            .username()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let gname = header
            .groupname()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let entry_type = header.entry_type();
        let size = entry.size();
        let link = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());

        let mut xattrs = BTreeMap::new();
        let mut sha1 = None;
        if let Some(extensions) = entry.pax_extensions().map_err(|e| malformed(&path, e))? {
            for extension in extensions {
                let extension = extension.map_err(|e| malformed(&path, e))?;
                let Ok(key) = extension.key() else { continue };
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    xattrs.insert(name.to_string(), extension.value_bytes().to_vec());
                } else if key == PAX_APK_CHECKSUM {
                    sha1 = decode_sha1(extension.value_bytes());
                }
            }
        }

        let (kind, content) = match entry_type {
            EntryType::Regular | EntryType::Continuous => (
                EntryKind::File { size },
                if size == 0 {
                    Content::Empty
                } else {
                    Content::Spool {
                        spool: index,
                        offset: entry.raw_file_position(),
                        len: size,
                    }
                },
            ),
            EntryType::Directory => (EntryKind::Directory, Content::Empty),
            EntryType::Symlink => (
                EntryKind::Symlink {
                    target: link.ok_or_else(|| {
                        malformed(&path, io::Error::other("symlink without target"))
                    })?,
                },
                Content::Empty,
            ),
            EntryType::Link => {
                let target = link
                    .ok_or_else(|| malformed(&path, io::Error::other("hardlink without target")))?;
                let target = guard::normalize(&target).map_err(|source| InstallError::Unsafe {
                    package: package.to_string(),
                    source,
                })?;
                (EntryKind::Hardlink { target }, Content::Empty)
            }
            EntryType::Fifo => (EntryKind::Fifo, Content::Empty),
            EntryType::Char => (
                EntryKind::CharDevice {
                    major: header.device_major().ok().flatten().unwrap_or(0),
                    minor: header.device_minor().ok().flatten().unwrap_or(0),
                },
                Content::Empty,
            ),
            other => {
                return Err(InstallError::UnsupportedEntry {
                    package: package.to_string(),
                    path,
                    kind: other.as_byte(),
                });
            }
        };
        let entry = LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            xattrs,
        };
        self.guard
            .check(&entry, Origin::Package)
            .map_err(|source| InstallError::Unsafe {
                package: package.to_string(),
                source,
            })?;
        Ok(Some((
            Node {
                entry,
                content,
                owner: Some(index),
            },
            sha1,
        )))
    }

    /// Puts a node into the tree following apk's conflict rules (`apk_db_install_archive_entry`):
    /// the same package or origin overwrites; a package that `replaces` the owner overwrites;
    /// an owner that `replaces` the newcomer keeps its file; identical content (same kind,
    /// owner, mode and bytes, or the same link target) is not a conflict. Returns whether the
    /// package now owns the path.
    fn place(
        &mut self,
        index: usize,
        node: Node,
        sha1: Option<[u8; 20]>,
    ) -> Result<bool, InstallError> {
        let path = node.entry.path.clone();
        let Some(existing) = self.tree.get(&path) else {
            self.insert(index, node, sha1);
            return Ok(true);
        };
        if existing.entry.kind == EntryKind::Directory && node.entry.kind == EntryKind::Directory {
            // Shared directories: the first package's metadata stays, as apk keeps the
            // directory it already has; builder-made parents take the package's metadata.
            if existing.owner.is_none() {
                self.tree.insert(node);
            }
            return Ok(true);
        }
        let Some(owner) = existing.owner.filter(|o| *o != index) else {
            // Same package twice, or a builder-made parent: the later entry wins.
            self.insert(index, node, sha1);
            return Ok(true);
        };
        let old = self.records[owner];
        let new = self.records[index];
        let same_origin = old.origin.is_some() && old.origin == new.origin;
        let new_replaces_old = new.replaces.iter().any(|d| d.name == old.name);
        let old_replaces_new = old.replaces.iter().any(|d| d.name == new.name);
        if same_origin || new_replaces_old {
            self.insert(index, node, sha1);
            return Ok(true);
        }
        if old_replaces_new {
            return Ok(false);
        }
        let existing = existing.clone();
        let identical = self
            .same_content(&existing, &node, sha1)
            .map_err(|source| InstallError::Io {
                package: label(new),
                path: self
                    .spools
                    .path(index)
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                source,
            })?;
        if identical {
            Ok(false)
        } else {
            Err(InstallError::FileConflict {
                path,
                owner: label(old),
                package: label(new),
            })
        }
    }

    fn same_content(
        &self,
        existing: &Node,
        new: &Node,
        new_sha1: Option<[u8; 20]>,
    ) -> io::Result<bool> {
        let (a, b) = (&existing.entry, &new.entry);
        if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
            return Ok(false);
        }
        if !matches!(a.kind, EntryKind::File { .. }) {
            // Same symlink target, same hardlink target, or both FIFOs.
            return Ok(true);
        }
        let old_sha1 = match self.checksums.get(&a.path) {
            Some(sum) => *sum,
            None => self.content_sha1(&existing.content)?,
        };
        let new_sha1 = match new_sha1 {
            Some(sum) => sum,
            None => self.content_sha1(&new.content)?,
        };
        Ok(old_sha1 == new_sha1)
    }

    fn content_sha1(&self, content: &Content) -> io::Result<[u8; 20]> {
        use sha1::Digest;
        let mut hasher = sha1::Sha1::new();
        match content {
            Content::Empty => {}
            Content::Inline(bytes) => hasher.update(bytes),
            Content::Spool { spool, offset, len } => {
                let mut writer = HashWriter(&mut hasher);
                self.spools.copy_range(*spool, *offset, *len, &mut writer)?;
            }
        }
        Ok(hasher.finalize().into())
    }

    fn insert(&mut self, index: usize, node: Node, sha1: Option<[u8; 20]>) {
        let path = node.entry.path.clone();
        let mtime = node.entry.mtime;
        if node.entry.kind != EntryKind::Directory {
            self.owners.insert(path.clone(), index);
        }
        match sha1 {
            Some(sum) => self.checksums.insert(path.clone(), sum),
            None => self.checksums.remove(&path),
        };
        self.tree.ensure_parents(&path, mtime);
        self.tree.insert(node);
    }
}

struct HashWriter<'a>(&'a mut sha1::Sha1);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha1::Digest;
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn decode_sha1(value: &[u8]) -> Option<[u8; 20]> {
    let text = std::str::from_utf8(value).ok()?;
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}
