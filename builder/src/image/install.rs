//! The install step: verified `.apk` files, in install order, become [`Tree`] nodes without ever
//! being unpacked into a directory tree.
//!
//! Each package's data stream is decompressed once into a spool (its uncompressed tar, on disk)
//! while its SHA-256 is checked against `.PKGINFO`'s `datahash` — by [`install`] itself, or
//! already by the fetcher for [`install_spooled`]. The tar entries are then read from the spool,
//! checked by the [`Guard`], and merged into the tree with apk's file-conflict rules. Nodes
//! point at byte ranges of the spools, which [`Spools`] reads back when the layer is written.
//!
//! As apk-tools 3.0.6 does, the installer takes `replaces`, `replaces_priority` and `triggers`
//! from each package's own `.PKGINFO` ([`InstallMetadata`]), never from the index, and only the
//! control files apk knows as scripts; name, version and origin come from the index record.
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

use super::apkdb::{PackageScript, SCRIPT_ACTIONS};
use super::entry::{EntryKind, LayerEntry};
use super::guard::{self, Guard, GuardError, Origin};
use super::tree::{Content, ContentSource, Node, Tree};
use crate::apk::archive::{self, ArchiveError, Limits as ArchiveLimits};
use crate::apk::constraint::Dependency;
use crate::apk::index::{Checksum, ChecksumAlgorithm, PackageRecord};
use crate::apk::package::InstallMetadata;

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
    /// The control stream's scripts (`.post-install`, `.trigger`, …, in apk's script order,
    /// other control files left out), never run, recorded in the apk database.
    pub scripts: Vec<PackageScript>,
    /// The `triggers` of `.PKGINFO`.
    pub triggers: Vec<String>,
    /// The `replaces` of `.PKGINFO`, recorded as the database's `r:`.
    pub replaces: Vec<Dependency>,
    /// The `replaces_priority` of `.PKGINFO` (0 when absent), recorded as the database's `q:`.
    pub replaces_priority: u16,
    /// The data tar's entries in tar order, as a container runtime reads them, when nothing in
    /// the tar itself keeps it from standing as a layer; otherwise why it cannot (see
    /// `image::overlay` for what the stacked layers must still satisfy).
    pub layer: Result<Vec<Node>, String>,
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
    #[error("cannot install {package}: {path}")]
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
    #[error("cannot install {package}")]
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
    #[error("cannot install {package}: malformed data entry {entry}")]
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
    #[error("package {package} is not safe to install")]
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
    /// Two packages install the same non-directory path and neither may take it from the
    /// other (apk makes no exception for identical content).
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
    /// Why the data tar cannot be used as a layer byte for byte, if it cannot.
    layer_issue: Option<String>,
}

fn install_jobs(jobs: &[Job<'_>], limits: &InstallLimits) -> Result<Installed, InstallError> {
    let mut state = State {
        tree: Tree::new(),
        guard: Guard::new(limits.guard),
        owners: BTreeMap::new(),
        records: jobs.iter().map(|job| job.record).collect(),
        metadata: Vec::with_capacity(jobs.len()),
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
            state.metadata.push(prepared.control.metadata);
            let mut merged = state.merge(index, prepared.entries, prepared.layer_issue)?;
            if let Some(failure) = prepared.failure {
                return Err(failure);
            }
            let metadata = &state.metadata[index];
            merged.scripts = prepared.control.scripts;
            merged.triggers = metadata.triggers.clone();
            merged.replaces = metadata.replaces.clone();
            merged.replaces_priority = metadata.replaces_priority;
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
    let (entries, failure, layer_issue) = read_entries(index, job.record, &job.spool);
    Ok(Prepared {
        control,
        entries,
        failure,
        layer_issue,
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

/// What apk takes from the control stream: `.PKGINFO`'s install metadata and the scripts.
struct ControlFiles {
    scripts: Vec<PackageScript>,
    metadata: InstallMetadata,
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
        scripts: package_scripts(&archive.control.entries),
        metadata: InstallMetadata::from_pkginfo(&archive.control.pkginfo),
    };
    Ok((control, archive.data))
}

/// The control files apk keeps as scripts (`apk_script_type` in apk-tools' `package.c`): one
/// per action in apk's order, a later file of the same action replacing an earlier one; any
/// other control file (`.melange.yaml`, …) is not a script.
fn package_scripts(entries: &[archive::ControlEntry]) -> Vec<PackageScript> {
    let mut slots: [Option<&archive::ControlEntry>; SCRIPT_ACTIONS.len()] =
        [None; SCRIPT_ACTIONS.len()];
    for entry in entries {
        let Some(action) = entry.name.strip_prefix('.') else {
            continue;
        };
        if let Some(slot) = SCRIPT_ACTIONS.iter().position(|known| *known == action) {
            slots[slot] = Some(entry);
        }
    }
    slots
        .into_iter()
        .flatten()
        .map(|entry| PackageScript {
            name: entry.name.clone(),
            content: entry.data.clone(),
        })
        .collect()
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
    records: Vec<&'a PackageRecord>,
    /// Each merged package's `.PKGINFO` install metadata, by install position.
    metadata: Vec<InstallMetadata>,
    spools: Spools,
}

/// apk's verdict on a path two packages install (`APK_PKG_REPLACES_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The newcomer takes the path.
    Yes,
    /// The installed package keeps it; the newcomer's entry is skipped.
    No,
    /// Neither may take it from the other: an error.
    Conflict,
}

/// Reads a spool's tar entries as nodes, stopping at the first malformed or unsafe one; also
/// says why the tar cannot stand as a layer byte for byte, if it cannot.
fn read_entries(
    index: usize,
    record: &PackageRecord,
    spool: &Path,
) -> (Vec<PackageEntry>, Option<InstallError>, Option<String>) {
    let name = record.display_name();
    let mut nodes = Vec::new();
    let mut issue = None;
    let file = match File::open(spool) {
        Ok(file) => file,
        Err(source) => {
            let failure = InstallError::Io {
                package: name,
                path: spool.to_path_buf(),
                source,
            };
            return (nodes, Some(failure), issue);
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
            return (nodes, Some(failure), issue);
        }
    };
    // Where the last entry's content (padded to a block) ends: the end-of-archive blocks follow.
    let mut end = 0u64;
    for (position, entry) in entries.enumerate() {
        let parsed = entry
            .map_err(|source| InstallError::Entry {
                package: name.clone(),
                entry: format!("#{position}"),
                source,
            })
            .and_then(|mut entry| {
                end = entry.raw_file_position() + entry.size().div_ceil(TAR_BLOCK) * TAR_BLOCK;
                read_entry(index, &name, &mut entry, &mut issue)
            });
        match parsed {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => {}
            Err(failure) => return (nodes, Some(failure), issue),
        }
    }
    if issue.is_none() {
        issue = end_of_archive_issue(spool, end);
    }
    (nodes, None, issue)
}

/// Size of a tar block.
const TAR_BLOCK: u64 = 512;

/// Whether the tar ends as a complete archive after `end`: at least the two zero blocks of the
/// end-of-archive marker and nothing but zeros to the end of the stream. `None` when it does.
fn end_of_archive_issue(spool: &Path, end: u64) -> Option<String> {
    let check = || -> io::Result<Option<String>> {
        let mut file = File::open(spool)?;
        let length = file.metadata()?.len();
        if length < end + 2 * TAR_BLOCK {
            return Ok(Some(
                "its data tar has no end-of-archive blocks".to_string(),
            ));
        }
        file.seek(SeekFrom::Start(end))?;
        let mut reader = BufReader::with_capacity(SPOOL_READ_BUFFER_SIZE, file);
        let mut buffer = [0u8; 8192];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                return Ok(None);
            }
            if buffer[..read].iter().any(|byte| *byte != 0) {
                return Ok(Some(
                    "its data tar has bytes after the end-of-archive blocks".to_string(),
                ));
            }
        }
    };
    check().unwrap_or_else(|error| Some(format!("its data tar cannot be read back: {error}")))
}

/// PAX records a runtime reads the way the installer does: the path, link target, size, `uid`
/// and `gid` (which the tar reader applies, as Go's does), owner names (runtimes apply the
/// numeric IDs), extended attributes, the checksums apk adds, and an `mtime` record that
/// repeats the header's whole seconds (the installer reads the header's).
fn pax_record_is_understood(key: &str, value: &[u8], header: &tar::Header) -> bool {
    match key {
        "path" | "linkpath" | "size" | "uid" | "gid" | "uname" | "gname" => true,
        "mtime" => std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .is_some_and(|seconds| header.mtime().ok() == Some(seconds)),
        _ => key.starts_with(PAX_XATTR_PREFIX) || key.starts_with("APK-TOOLS.checksum."),
    }
}

/// Turns one tar entry into a node (not yet guard-checked), or `None` for entries apk
/// skips.
fn read_entry<R: Read>(
    index: usize,
    package: &str,
    entry: &mut tar::Entry<'_, R>,
    layer_issue: &mut Option<String>,
) -> Result<Option<PackageEntry>, InstallError> {
    let malformed = |entry_name: &str, source: io::Error| InstallError::Entry {
        package: package.to_string(),
        entry: entry_name.to_string(),
        source,
    };
    let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let path = match guard::normalize(&raw_path) {
        Ok(path) => path,
        Err(GuardError::Root { .. }) => {
            layer_issue.get_or_insert_with(|| {
                format!("its data tar has an entry {raw_path:?} for the image root")
            });
            return Ok(None);
        }
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
    let plain = raw_path.strip_prefix("./").unwrap_or(&raw_path);
    if plain.strip_suffix('/').unwrap_or(plain) != path {
        layer_issue.get_or_insert_with(|| format!("its data tar names {raw_path:?}, not {path:?}"));
    }
    if let Some(extensions) = entry.pax_extensions().map_err(|e| malformed(&path, e))? {
        for extension in extensions {
            let extension = extension.map_err(|e| malformed(&path, e))?;
            let Ok(key) = extension.key() else {
                layer_issue.get_or_insert_with(|| {
                    format!("{path} has a PAX record key that is not UTF-8")
                });
                continue;
            };
            if !pax_record_is_understood(key, extension.value_bytes(), &header) {
                layer_issue.get_or_insert_with(|| {
                    format!("{path} has a PAX record `{key}` a runtime would apply differently")
                });
            }
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
        layer_issue: Option<String>,
    ) -> Result<InstalledPackage, InstallError> {
        let mut paths = Vec::new();
        let mut layer = match layer_issue {
            None => Ok(Vec::with_capacity(entries.len())),
            Some(issue) => Err(issue),
        };
        for (node, sha1) in entries {
            if let Ok(layer) = &mut layer {
                layer.push(node.clone());
            }
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
            if self.place(index, node)? {
                paths.push(installed);
            }
        }
        Ok(InstalledPackage {
            index,
            paths,
            scripts: Vec::new(),
            triggers: Vec::new(),
            replaces: Vec::new(),
            replaces_priority: 0,
            layer,
        })
    }

    /// Puts a node into the tree following apk's rules (`apk_db_install_file` in apk-tools'
    /// `database.c`). A directory another package already ships is shared, its owner and
    /// metadata settled by [`Self::replaces_dir`]. Any other path already installed by another
    /// package goes to the newcomer, stays with its owner or is a conflict, as
    /// [`Self::replaces_file`] decides; identical content changes nothing. Returns whether the
    /// package now lists the path.
    fn place(&mut self, index: usize, node: Node) -> Result<bool, InstallError> {
        let path = node.entry.path.clone();
        let Some(existing) = self.tree.get(&path) else {
            self.insert(index, node);
            return Ok(true);
        };
        if existing.entry.kind == EntryKind::Directory && node.entry.kind == EntryKind::Directory {
            match existing.owner {
                // A parent the builder made for an earlier entry takes the package's metadata.
                None => self.insert(index, node),
                Some(owner) if self.replaces_dir(owner, index) => {
                    let mut shared = existing.clone();
                    shared.entry.mode = node.entry.mode;
                    shared.entry.uid = node.entry.uid;
                    shared.entry.gid = node.entry.gid;
                    shared.entry.uname = node.entry.uname;
                    shared.entry.gname = node.entry.gname;
                    shared.owner = Some(index);
                    self.tree.insert(shared);
                }
                Some(_) => {}
            }
            return Ok(true);
        }
        let Some(owner) = existing.owner.filter(|o| *o != index) else {
            // The same package again, or a builder-made parent: the later entry wins.
            self.insert(index, node);
            return Ok(true);
        };
        match self.replaces_file(owner, index) {
            Verdict::Yes => {
                self.insert(index, node);
                Ok(true)
            }
            Verdict::No => Ok(false),
            Verdict::Conflict => Err(InstallError::FileConflict {
                path,
                owner: self.records[owner].display_name(),
                package: self.records[index].display_name(),
            }),
        }
    }

    /// `apk_pkg_replaces_file(old, new)`: whether package `new` may take a file, symlink or
    /// other non-directory that package `old` installed. The same package takes it. Otherwise
    /// each side's `replaces` (from its `.PKGINFO`) that names the other package at its
    /// version gives that side its `replaces_priority`: the old package keeps the file when its
    /// priority is higher (one that replaces nothing has none); the new one takes it when it
    /// replaces the old; else packages of the same origin take it; else it is a conflict.
    fn replaces_file(&self, old: usize, new: usize) -> Verdict {
        let (a, b) = (self.records[old], self.records[new]);
        if a.name == b.name {
            return Verdict::Yes;
        }
        let priority = |replacer: usize, replaced: &PackageRecord| {
            let metadata = &self.metadata[replacer];
            metadata
                .replaces
                .iter()
                .any(|atom| materializes(atom, replaced))
                .then_some(metadata.replaces_priority)
        };
        let (a_priority, b_priority) = (priority(old, b), priority(new, a));
        if a_priority > b_priority {
            Verdict::No
        } else if b_priority.is_some() || same_origin(a, b) {
            Verdict::Yes
        } else {
            Verdict::Conflict
        }
    }

    /// `apk_pkg_replaces_dir(old, new)`: whether package `new` becomes the owner of a
    /// directory package `old` owns, so that its mode and owner apply. The same package does;
    /// then the higher `replaces_priority` (whether or not it replaces anything); then, between
    /// packages of one origin, the one named like the origin; then the name that sorts first
    /// keeps it.
    fn replaces_dir(&self, old: usize, new: usize) -> bool {
        let (a, b) = (self.records[old], self.records[new]);
        if a.name == b.name {
            return true;
        }
        let (a_priority, b_priority) = (
            self.metadata[old].replaces_priority,
            self.metadata[new].replaces_priority,
        );
        if a_priority != b_priority {
            return a_priority < b_priority;
        }
        if same_origin(a, b) {
            if a.origin.as_deref() == Some(a.name.as_str()) {
                return false;
            }
            if b.origin.as_deref() == Some(b.name.as_str()) {
                return true;
            }
        }
        a.name.as_bytes() > b.name.as_bytes()
    }

    fn insert(&mut self, index: usize, node: Node) {
        let path = node.entry.path.clone();
        let mtime = node.entry.mtime;
        if node.entry.kind == EntryKind::Directory {
            self.owners.remove(&path);
        } else {
            self.owners.insert(path.clone(), index);
        }
        self.tree.ensure_parents(&path, mtime);
        self.tree.insert(node);
    }
}

/// Whether both packages have the same non-empty origin (the index's `o:`, as apk reads it).
fn same_origin(a: &PackageRecord, b: &PackageRecord) -> bool {
    a.origin.as_deref().is_some_and(|origin| !origin.is_empty()) && a.origin == b.origin
}

/// `apk_dep_is_materialized(atom, package)`: a `replaces` atom names `package` at a version (or
/// checksum) it accepts; a `!name` atom is the other way round, and matches every other package.
fn materializes(atom: &Dependency, package: &PackageRecord) -> bool {
    if atom.name != package.name {
        return atom.conflict;
    }
    atom.matches_package(&package.version, &package.checksum) != atom.conflict
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
    use crate::apk::index::parse_index;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// One side of a two-package case: `name-version`, its index origin, and its `.PKGINFO`
    /// `replaces` atoms and `replaces_priority`.
    struct Side<'a> {
        name: &'a str,
        version: &'a str,
        origin: &'a str,
        replaces: &'a [&'a str],
        priority: u16,
    }

    const fn side<'a>(name: &'a str, replaces: &'a [&'a str], priority: u16) -> Side<'a> {
        Side {
            name,
            version: "1.0-r0",
            origin: name,
            replaces,
            priority,
        }
    }

    /// Asks the installer's rules about `old` (installed first) and `new`.
    fn verdicts(old: &Side<'_>, new: &Side<'_>) -> (Verdict, bool) {
        let record = |side: &Side<'_>| {
            let origin = if side.origin.is_empty() {
                String::new()
            } else {
                format!("o:{}\n", side.origin)
            };
            let text = format!(
                "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:{}\nV:{}\n{origin}",
                side.name, side.version
            );
            parse_index(&text).unwrap().remove(0)
        };
        let metadata = |side: &Side<'_>| InstallMetadata {
            replaces: side
                .replaces
                .iter()
                .map(|atom| Dependency::parse(atom).unwrap())
                .collect(),
            replaces_priority: side.priority,
            triggers: Vec::new(),
        };
        let records = [record(old), record(new)];
        let state = State {
            tree: Tree::new(),
            guard: Guard::new(guard::Limits::default()),
            owners: BTreeMap::new(),
            records: records.iter().collect(),
            metadata: vec![metadata(old), metadata(new)],
            spools: Spools::default(),
        };
        (state.replaces_file(0, 1), state.replaces_dir(0, 1))
    }

    #[test]
    fn file_and_directory_rules_follow_apk() {
        use Verdict::{Conflict, No, Yes};
        let check = |old: Side<'_>, new: Side<'_>, file: Verdict, dir: bool| {
            assert_eq!(
                verdicts(&old, &new),
                (file, dir),
                "{} {:?} q{} then {} {:?} q{}",
                old.name,
                old.replaces,
                old.priority,
                new.name,
                new.replaces,
                new.priority
            );
        };
        // Unrelated packages: a file is a conflict; a directory stays with the name that sorts
        // first.
        check(side("a", &[], 0), side("b", &[], 0), Conflict, false);
        check(side("b", &[], 0), side("a", &[], 0), Conflict, true);
        // The newcomer replaces the owner.
        check(side("a", &[], 0), side("b", &["a"], 0), Yes, false);
        // The owner replaces the newcomer: it keeps its file.
        check(side("a", &["b"], 0), side("b", &[], 0), No, false);
        // Both replace each other: the higher priority wins, the newcomer on a tie.
        check(side("a", &["b"], 0), side("b", &["a"], 0), Yes, false);
        check(side("a", &["b"], 5), side("b", &["a"], 1), No, false);
        check(side("a", &["b"], 1), side("b", &["a"], 5), Yes, true);
        // A priority alone replaces no file, but decides directories.
        check(side("a", &[], 9), side("b", &[], 0), Conflict, false);
        check(side("b", &[], 0), side("a", &[], 9), Conflict, true);
        check(side("a", &[], 9), side("b", &[], 10), Conflict, true);
        // Versioned atoms count only when the other package's version matches.
        check(side("a", &[], 0), side("b", &["a<0.5"], 0), Conflict, false);
        check(side("a", &[], 0), side("b", &["a>=1.0"], 0), Yes, false);
        check(side("a", &[], 0), side("b", &["a~1"], 0), Yes, false);
        // A checksum pin names the package whose `C:` it is.
        let pin = ["a><Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="];
        check(side("a", &[], 0), side("b", &pin, 0), Yes, false);
        let other_pin = ["a><Q1BBBBBBBBBBBBBBBBBBBBBBBBBBB="];
        check(side("a", &[], 0), side("b", &other_pin, 0), Conflict, false);
        check(side("a", &[], 0), side("b", &["!a"], 0), Conflict, false);
        check(side("a", &[], 0), side("b", &["!a<1"], 0), Yes, false);
        // apk's `!name` atom materializes for every other name.
        check(side("a", &[], 0), side("b", &["!c"], 0), Yes, false);
        // Replacing some other package is not replacing this one.
        check(side("a", &[], 0), side("b", &["c"], 0), Conflict, false);
        // The same origin takes files, unless the owner replaces the newcomer.
        let sub = |name, replaces, priority| Side {
            origin: "src",
            ..side(name, replaces, priority)
        };
        check(sub("a", &[], 0), sub("b", &[], 0), Yes, false);
        check(sub("a", &["b"], 0), sub("b", &[], 0), No, false);
        // ... and directories go to the package named like the origin.
        check(sub("src", &[], 0), sub("a", &[], 0), Yes, false);
        check(sub("z", &[], 0), sub("src", &[], 0), Yes, true);
        check(sub("z", &[], 0), sub("y", &[], 0), Yes, true);
        // An empty origin is no origin.
        let bare = |name| Side {
            origin: "",
            ..side(name, &[], 0)
        };
        check(bare("a"), bare("b"), Conflict, false);
        // The same name (another version) is an upgrade: it takes everything.
        let v2 = Side {
            version: "2.0-r0",
            ..side("a", &[], 0)
        };
        check(side("a", &[], 7), v2, Yes, true);
    }

    #[test]
    fn only_complete_tars_and_known_pax_records_stand_as_layers() {
        let dir = tempfile::tempdir().unwrap();
        let record = parse_index("C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:p\nV:1-r0\n")
            .unwrap()
            .remove(0);
        // A tar of one file, with PAX records, and how it ends.
        let tar = |records: &[(&str, &[u8])], trailer: &[u8]| {
            let mut builder = tar::Builder::new(Vec::new());
            builder
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            let mut header = tar::Header::new_ustar();
            header.set_path("usr/a").unwrap();
            header.set_size(3);
            header.set_mode(0o644);
            header.set_mtime(7);
            header.set_uid(0);
            header.set_gid(0);
            header.set_cksum();
            builder.append(&header, &b"abc"[..]).unwrap();
            let mut bytes = builder.into_inner().unwrap();
            bytes.truncate(1024 + 512 * 2);
            bytes.extend_from_slice(trailer);
            bytes
        };
        let check = |bytes: Vec<u8>, expected: Option<&str>| {
            let spool = dir.path().join("spool.tar");
            std::fs::write(&spool, bytes).unwrap();
            let (entries, failure, issue) = read_entries(0, &record, &spool);
            assert!(failure.is_none(), "{failure:?}");
            assert_eq!(entries.len(), 1);
            match (issue, expected) {
                (None, None) => {}
                (Some(issue), Some(expected)) => assert!(issue.contains(expected), "{issue}"),
                (issue, expected) => panic!("{issue:?} but expected {expected:?}"),
            }
        };
        let sha1: &[(&str, &[u8])] = &[(
            "APK-TOOLS.checksum.SHA1",
            b"a9993e364706816aba3e25717850c26c9cd0d89d",
        )];
        check(tar(sha1, &[0; 1024]), None);
        check(tar(&[("mtime", b"7")], &[0; 10240]), None);
        check(tar(sha1, &[]), Some("no end-of-archive blocks"));
        let mut garbage = vec![0u8; 1024];
        garbage.extend_from_slice(b"junk");
        check(
            tar(sha1, &garbage),
            Some("bytes after the end-of-archive blocks"),
        );
        check(
            tar(&[("mtime", b"7.5")], &[0; 1024]),
            Some("PAX record `mtime`"),
        );
        check(
            tar(&[("mtime", b"8")], &[0; 1024]),
            Some("PAX record `mtime`"),
        );
        // PAX owner IDs are applied by the reader, as runtimes apply them.
        check(tar(&[("uid", b"1000")], &[0; 1024]), None);
        check(
            tar(&[("GNU.sparse.size", b"3")], &[0; 1024]),
            Some("PAX record"),
        );
    }

    #[test]
    fn only_apk_script_types_are_scripts() {
        let entry = |name: &str, data: &str| archive::ControlEntry {
            name: name.into(),
            mode: 0o755,
            mtime: 0,
            data: data.as_bytes().to_vec(),
        };
        let scripts = package_scripts(&[
            entry(".PKGINFO", "pkgname = x\n"),
            entry(".trigger", "t"),
            entry(".melange.yaml", "package: {}\n"),
            entry(".post-install", "first"),
            entry(".pre-install", "pre"),
            entry(".post-install", "second"),
            entry("post-install", "no dot"),
            entry(".SIGN.RSA.key.rsa.pub", "sig"),
        ]);
        let found: Vec<(&str, &[u8])> = scripts
            .iter()
            .map(|s| (s.name.as_str(), s.content.as_slice()))
            .collect();
        assert_eq!(
            found,
            [
                (".pre-install", b"pre".as_slice()),
                (".post-install", b"second".as_slice()),
                (".trigger", b"t".as_slice()),
            ]
        );
    }

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
