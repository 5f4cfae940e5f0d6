//! The install step: verified `.apk` files, in install order, become [`Tree`] nodes without ever
//! being unpacked into a directory tree.
//!
//! Each package's data stream is decompressed once into a spool (its uncompressed tar, on disk)
//! while its SHA-256 is checked against `.PKGINFO`'s `datahash` — by [`install`] itself, or
//! already by the fetcher for [`install_spooled`]. The tar entries are then read from the spool,
//! checked by the [`Guard`], and merged into the tree with apk's file-conflict rules. Nodes
//! point at byte ranges of the spools, which [`Spools`] reads back when the layer is written.
//!
//! Decompressing and reading the entries of a package is independent of every other package,
//! so it runs on every core, a bounded number of packages ahead; guard checks and merges stay
//! on the calling thread in install order, so the tree, the ownership and the first error
//! reported are the same whatever the number of cores. Nothing here runs package scripts or
//! touches the host filesystem outside the spool files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use tar::EntryType;

use super::apkdb::PackageScript;
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

/// A verified package whose data stream is already decompressed into a spool (see
/// `PackageFetcher::fetch_all_spooled`): only its control member is read again.
#[derive(Clone, Debug)]
pub struct SpooledPackage<'a> {
    /// The record the solver selected.
    pub record: &'a PackageRecord,
    /// The verified `.apk` file.
    pub path: PathBuf,
    /// Its verified, decompressed data stream.
    pub spool: PathBuf,
}

/// Packages prepared ahead of the merge, per worker thread.
const PREPARED_AHEAD_PER_THREAD: usize = 2;
/// Buffer of the copy from the decompressor into a spool file.
const SPOOL_BUFFER_SIZE: usize = 256 * 1024;
/// Buffer for reading tar headers back from a spool.
const SPOOL_READ_BUFFER_SIZE: usize = 16 * 1024;

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
    pub scripts: Vec<PackageScript>,
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
    /// A thread preparing packages stopped without handing its package over.
    #[error("cannot install {package}: the thread preparing it stopped")]
    WorkerLost {
        /// `name-version`.
        package: String,
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
    /// Spools over these files: spool `i` is `paths[i]`.
    pub fn from_paths(paths: Vec<PathBuf>) -> Self {
        Self { files: paths }
    }

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
/// `spool_dir`, on every core.
pub fn install(
    packages: &[PackageFile<'_>],
    spool_dir: &Path,
    limits: &InstallLimits,
) -> Result<Installed, InstallError> {
    let jobs: Vec<Job<'_>> = packages
        .iter()
        .enumerate()
        .map(|(index, package)| Job {
            record: package.record,
            apk: &package.path,
            spool: spool_dir.join(format!("{index:05}-{}.tar", package.record.name)),
            decompress: true,
        })
        .collect();
    install_jobs(&jobs, limits)
}

/// Installs packages whose data streams the fetcher already verified and decompressed (in
/// install order) into a new tree, on every core. The control member of each `.apk` is read
/// again (and checked against the index) for its scripts and triggers.
pub fn install_spooled(
    packages: &[SpooledPackage<'_>],
    limits: &InstallLimits,
) -> Result<Installed, InstallError> {
    let jobs: Vec<Job<'_>> = packages
        .iter()
        .map(|package| Job {
            record: package.record,
            apk: &package.path,
            spool: package.spool.clone(),
            decompress: false,
        })
        .collect();
    install_jobs(&jobs, limits)
}

/// One package to prepare: where it is and whether its data stream still needs decompressing.
struct Job<'a> {
    record: &'a PackageRecord,
    apk: &'a Path,
    spool: PathBuf,
    decompress: bool,
}

/// A package ready to merge: its control files and its data entries, in tar order, up to the
/// first malformed one (whose error `failure` holds, to be reported once the entries before
/// it are merged).
struct Prepared {
    control: ControlFiles,
    entries: Vec<PackageEntry>,
    failure: Option<InstallError>,
}

fn install_jobs(jobs: &[Job<'_>], limits: &InstallLimits) -> Result<Installed, InstallError> {
    let mut state = State {
        tree: Tree::new(),
        guard: Guard::new(limits.guard),
        owners: BTreeMap::new(),
        checksums: BTreeMap::new(),
        records: jobs.iter().map(|job| job.record).collect(),
        spools: Spools::default(),
    };
    let mut installed = Vec::with_capacity(jobs.len());
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(jobs.len())
        .max(1);
    in_order_parallel(
        jobs,
        threads,
        threads * PREPARED_AHEAD_PER_THREAD,
        |index, job| prepare(index, job, &limits.archive),
        |index, prepared| {
            let job = &jobs[index];
            let prepared = prepared.ok_or_else(|| InstallError::WorkerLost {
                package: job.record.display_name(),
            })??;
            state.spools.files.push(job.spool.clone());
            let mut merged = state.merge(index, prepared.entries)?;
            if let Some(failure) = prepared.failure {
                return Err(failure);
            }
            merged.scripts = prepared.control.scripts;
            merged.triggers = prepared.control.triggers;
            installed.push(merged);
            Ok(())
        },
    )?;
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

/// Decompresses (when needed) and reads one package; runs on a worker thread.
fn prepare(index: usize, job: &Job<'_>, limits: &ArchiveLimits) -> Result<Prepared, InstallError> {
    let control = if job.decompress {
        spool_data(job.record, job.apk, &job.spool, limits)?
    } else {
        read_control(job.record, job.apk, limits)?
    };
    let (entries, failure) = read_entries(index, job.record, &job.spool);
    Ok(Prepared {
        control,
        entries,
        failure,
    })
}

/// Shared state of [`in_order_parallel`].
struct Pipeline<R> {
    results: BTreeMap<usize, R>,
    consumed: usize,
    stop: bool,
    lost_worker: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tells the consumer when a worker thread unwinds, so that it never waits for a result that
/// will not come.
struct WorkerExit<'a, R> {
    pipeline: &'a Mutex<Pipeline<R>>,
    ready: &'a Condvar,
}

impl<R> Drop for WorkerExit<'_, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.pipeline).lost_worker = true;
            self.ready.notify_all();
        }
    }
}

/// Runs `work` on every item on `threads` threads, never more than `ahead` items past the one
/// being consumed, and hands the results to `consume` on the calling thread in item order
/// (`None` when a worker thread stopped without a result). The first error of `consume` stops
/// the workers and is returned.
fn in_order_parallel<T, R, E>(
    items: &[T],
    threads: usize,
    ahead: usize,
    work: impl Fn(usize, &T) -> R + Sync,
    mut consume: impl FnMut(usize, Option<R>) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
{
    let pipeline = Mutex::new(Pipeline {
        results: BTreeMap::new(),
        consumed: 0,
        stop: false,
        lost_worker: false,
    });
    let ready = Condvar::new();
    let room = Condvar::new();
    let next = AtomicUsize::new(0);
    let ahead = ahead.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let _exit = WorkerExit {
                    pipeline: &pipeline,
                    ready: &ready,
                };
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    {
                        let mut shared = lock(&pipeline);
                        while !shared.stop && index >= shared.consumed + ahead {
                            shared = room.wait(shared).unwrap_or_else(PoisonError::into_inner);
                        }
                        if shared.stop {
                            break;
                        }
                    }
                    let result = work(index, item);
                    lock(&pipeline).results.insert(index, result);
                    ready.notify_all();
                }
            });
        }
        let mut outcome = Ok(());
        for index in 0..items.len() {
            let result = {
                let mut shared = lock(&pipeline);
                loop {
                    if let Some(result) = shared.results.remove(&index) {
                        break Some(result);
                    }
                    if shared.lost_worker {
                        break None;
                    }
                    shared = ready.wait(shared).unwrap_or_else(PoisonError::into_inner);
                }
            };
            lock(&pipeline).consumed = index + 1;
            room.notify_all();
            outcome = consume(index, result);
            if outcome.is_err() {
                break;
            }
        }
        lock(&pipeline).stop = true;
        room.notify_all();
        outcome
    })
}

/// What the control stream holds besides `.PKGINFO`.
struct ControlFiles {
    scripts: Vec<PackageScript>,
    triggers: Vec<String>,
}

/// Reads the control member of `apk` (checked against the index's `C:`) and leaves the reader
/// at the data member.
fn open_package(
    record: &PackageRecord,
    apk: &Path,
    limits: &ArchiveLimits,
    buffer_size: usize,
) -> Result<(ControlFiles, archive::DataReader<BufReader<File>>), InstallError> {
    let name = record.display_name();
    let file = File::open(apk).map_err(|source| InstallError::Io {
        package: name.clone(),
        path: apk.to_path_buf(),
        source,
    })?;
    let archive = archive::read_package(BufReader::with_capacity(buffer_size, file), limits)
        .map_err(|source| InstallError::Archive {
            package: name.clone(),
            source,
        })?;
    let digests = &archive.control.digests;
    let matches = match record.checksum() {
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
            expected: record.checksum.clone(),
            actual,
        });
    }
    let control = ControlFiles {
        scripts: archive
            .control
            .entries
            .iter()
            .filter(|e| e.name.starts_with('.') && e.name != archive::PKGINFO_ENTRY)
            .map(|e| PackageScript {
                name: e.name.clone(),
                content: e.data.clone(),
            })
            .collect(),
        triggers: archive.control.pkginfo.triggers.clone(),
    };
    Ok((control, archive.data))
}

/// The control files of a package whose data stream is already spooled.
fn read_control(
    record: &PackageRecord,
    apk: &Path,
    limits: &ArchiveLimits,
) -> Result<ControlFiles, InstallError> {
    // The data member is not read: only the signature and control members are.
    open_package(record, apk, limits, SPOOL_READ_BUFFER_SIZE).map(|(control, _)| control)
}

/// Decompresses the data stream into `spool`, checking the control checksum against the index
/// and the data stream against `datahash`.
fn spool_data(
    record: &PackageRecord,
    apk: &Path,
    spool: &Path,
    limits: &ArchiveLimits,
) -> Result<ControlFiles, InstallError> {
    let name = record.display_name();
    let io_error = |path: &Path| {
        let package = name.clone();
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            package,
            path,
            source,
        }
    };
    let (control, mut data) = open_package(record, apk, limits, SPOOL_BUFFER_SIZE)?;
    let mut out = BufWriter::with_capacity(
        SPOOL_BUFFER_SIZE,
        File::create(spool).map_err(io_error(spool))?,
    );
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

/// Reads a spool's tar entries as nodes, stopping at the first malformed or unsafe one.
fn read_entries(
    index: usize,
    record: &PackageRecord,
    spool: &Path,
) -> (Vec<PackageEntry>, Option<InstallError>) {
    let name = record.display_name();
    let mut nodes = Vec::new();
    let file = match File::open(spool) {
        Ok(file) => file,
        Err(source) => {
            let failure = InstallError::Io {
                package: name,
                path: spool.to_path_buf(),
                source,
            };
            return (nodes, Some(failure));
        }
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(SPOOL_READ_BUFFER_SIZE, file));
    let entries = match archive.entries_with_seek() {
        Ok(entries) => entries,
        Err(source) => {
            let failure = InstallError::Entry {
                package: name,
                entry: "archive".into(),
                source,
            };
            return (nodes, Some(failure));
        }
    };
    for (position, entry) in entries.enumerate() {
        let parsed = entry
            .map_err(|source| InstallError::Entry {
                package: name.clone(),
                entry: format!("#{position}"),
                source,
            })
            .and_then(|mut entry| read_entry(index, &name, &mut entry));
        match parsed {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => {}
            Err(failure) => return (nodes, Some(failure)),
        }
    }
    (nodes, None)
}

/// Turns one tar entry into a node (not yet guard-checked), or `None` for entries apk
/// skips.
fn read_entry<R: Read>(
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
    let mtime = i64::try_from(header.mtime().map_err(|e| malformed(&path, e))?).unwrap_or(i64::MAX);
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
                target: link
                    .ok_or_else(|| malformed(&path, io::Error::other("symlink without target")))?,
            },
            Content::Empty,
        ),
        EntryType::Link => {
            let target =
                link.ok_or_else(|| malformed(&path, io::Error::other("hardlink without target")))?;
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
    Ok(Some((
        Node {
            entry,
            content,
            owner: Some(index),
        },
        sha1,
    )))
}

impl State<'_> {
    /// Guard-checks a package's entries and merges them into the tree, in tar order.
    fn merge(
        &mut self,
        index: usize,
        entries: Vec<PackageEntry>,
    ) -> Result<InstalledPackage, InstallError> {
        let mut paths = Vec::new();
        for (node, sha1) in entries {
            self.guard
                .check(&node.entry, Origin::Package)
                .map_err(|source| InstallError::Unsafe {
                    package: self.records[index].display_name(),
                    source,
                })?;
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
                package: new.display_name(),
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
                owner: old.display_name(),
                package: new.display_name(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// Runs `in_order_parallel` over `count` items whose work takes longer for low indexes;
    /// returns the consumed order and the furthest any work ran ahead of the consumer.
    fn check(count: usize, threads: usize, ahead: usize) {
        let consumed = AtomicUsize::new(0);
        let furthest = AtomicUsize::new(0);
        let mut order = Vec::new();
        let result: Result<(), ()> = in_order_parallel(
            &(0..count).collect::<Vec<_>>(),
            threads,
            ahead,
            |index, item| {
                let lead = index.saturating_sub(consumed.load(Ordering::SeqCst));
                furthest.fetch_max(lead, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(((count - index) % 7) as u64 * 200));
                *item * 10
            },
            |index, result| {
                assert_eq!(result, Some(index * 10));
                order.push(index);
                consumed.store(index + 1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(order, (0..count).collect::<Vec<_>>(), "{threads} threads");
        // The consumer's own counter trails the pipeline's by at most the item it is taking.
        assert!(
            furthest.load(Ordering::SeqCst) <= ahead.max(1),
            "{threads} threads ran {} ahead of {ahead}",
            furthest.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn results_arrive_in_order_within_the_window() {
        for (count, threads, ahead) in [
            (0, 2, 4),
            (1, 1, 1),
            (1, 4, 8),
            (40, 1, 1),
            (40, 2, 4),
            (40, 8, 3),
            (100, 3, 16),
        ] {
            check(count, threads, ahead);
        }
    }

    #[test]
    fn the_first_consumer_error_stops_the_work() {
        let started = AtomicUsize::new(0);
        let result = in_order_parallel(
            &(0..1000).collect::<Vec<usize>>(),
            4,
            4,
            |_, item| {
                started.fetch_add(1, Ordering::SeqCst);
                *item
            },
            |index, _| if index == 5 { Err(index) } else { Ok(()) },
        );
        assert_eq!(result, Err(5));
        assert!(started.load(Ordering::SeqCst) < 20, "work continued");
    }

    #[test]
    fn a_worker_that_dies_does_not_hang_the_consumer() {
        let seen_none = AtomicBool::new(false);
        let outcome = std::panic::catch_unwind(|| {
            in_order_parallel(
                &(0..10).collect::<Vec<usize>>(),
                2,
                4,
                |index, item| {
                    if index == 3 {
                        panic!("worker failure");
                    }
                    *item
                },
                |_, result| match result {
                    Some(_) => Ok(()),
                    None => {
                        seen_none.store(true, Ordering::SeqCst);
                        Err(())
                    }
                },
            )
        });
        assert!(outcome.is_err(), "the worker's panic is propagated");
        assert!(seen_none.load(Ordering::SeqCst));
    }
}
