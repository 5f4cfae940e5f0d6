//! Splitting `.apk` v2 packages and `APKINDEX.tar.gz` into their gzip members, under size caps.
//!
//! An `.apk` is three concatenated gzip members: the signature tar (`.SIGN.*` entries), the
//! control tar (`.PKGINFO` and scripts) and the data tar; an index is a signature tar followed by
//! a tar holding `APKINDEX` and `DESCRIPTION`. The signature and control tars have no
//! end-of-archive blocks. This module reads any [`Read`] (every [`BufRead`] is one) member by
//! member, records digests of each member's exact compressed bytes (what signatures, `C:` and
//! `datahash` cover), and caps decompressed and compressed sizes so that a gzip bomb fails with
//! [`ArchiveError::TooLarge`] or [`ArchiveError::CompressedTooLarge`] instead of exhausting
//! memory.
//!
//! It does not check signatures (see `signature`), does not interpret the data tar's entries
//! and writes nothing to disk; the caller extracts the data tar through [`DataReader`].

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, BufRead, Read};
use std::sync::Arc;

use flate2::bufread::GzDecoder;
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha512};

use super::constraint::{list_words, parse_index_list};
use super::index::{ChecksumAlgorithm, encode_checksum, pull_u16, pull_uint, quote};

/// Prefix of the signature entries' names: `.SIGN.<scheme>.<key name>`.
pub const SIGNATURE_ENTRY_PREFIX: &str = ".SIGN.";
/// The control tar's package metadata entry.
pub const PKGINFO_ENTRY: &str = ".PKGINFO";
/// The index tar's index text entry.
pub const INDEX_ENTRY: &str = "APKINDEX";
/// The index tar's description entry.
pub const DESCRIPTION_ENTRY: &str = "DESCRIPTION";

/// `.PKGINFO` key: package name.
pub const PKGINFO_PKGNAME: &str = "pkgname";
/// `.PKGINFO` key: package version.
pub const PKGINFO_PKGVER: &str = "pkgver";
/// `.PKGINFO` key: description.
pub const PKGINFO_PKGDESC: &str = "pkgdesc";
/// `.PKGINFO` key: project URL.
pub const PKGINFO_URL: &str = "url";
/// `.PKGINFO` key: build time, seconds since the epoch.
pub const PKGINFO_BUILDDATE: &str = "builddate";
/// `.PKGINFO` key: who built the package.
pub const PKGINFO_PACKAGER: &str = "packager";
/// `.PKGINFO` key: installed size in bytes.
pub const PKGINFO_SIZE: &str = "size";
/// `.PKGINFO` key: architecture.
pub const PKGINFO_ARCH: &str = "arch";
/// `.PKGINFO` key: origin (source package).
pub const PKGINFO_ORIGIN: &str = "origin";
/// `.PKGINFO` key: source commit.
pub const PKGINFO_COMMIT: &str = "commit";
/// `.PKGINFO` key: maintainer.
pub const PKGINFO_MAINTAINER: &str = "maintainer";
/// `.PKGINFO` key: license.
pub const PKGINFO_LICENSE: &str = "license";
/// `.PKGINFO` key: provider priority.
pub const PKGINFO_PROVIDER_PRIORITY: &str = "provider_priority";
/// `.PKGINFO` key: replaces priority.
pub const PKGINFO_REPLACES_PRIORITY: &str = "replaces_priority";
/// `.PKGINFO` key: a dependency (repeatable).
pub const PKGINFO_DEPEND: &str = "depend";
/// `.PKGINFO` key: something the package provides (repeatable).
pub const PKGINFO_PROVIDES: &str = "provides";
/// `.PKGINFO` key: a package whose files this one may overwrite (repeatable).
pub const PKGINFO_REPLACES: &str = "replaces";
/// `.PKGINFO` key: install_if atoms (repeatable, space-separated).
pub const PKGINFO_INSTALL_IF: &str = "install_if";
/// `.PKGINFO` key: trigger paths (repeatable, space-separated).
pub const PKGINFO_TRIGGERS: &str = "triggers";
/// `.PKGINFO` key: hex SHA-256 of the data member's compressed bytes.
pub const PKGINFO_DATAHASH: &str = "datahash";

const PKGINFO_SEPARATOR: &str = " = ";
/// Decompressed bytes read before deciding what the first member is: enough for the first
/// entry's header including a GNU long name or PAX path record.
const CLASSIFY_PREFIX_SIZE: u64 = 16 * 1024;
const READ_BUFFER_SIZE: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;
/// Compressed bytes allowed beyond a member's decompressed cap: room for gzip header fields
/// (up to 64 KiB each) and deflate's stored-block overhead.
const COMPRESSED_SLACK: u64 = 256 * 1024;

/// Which gzip member of a package or index an error or digest refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    /// The signature tar (`.SIGN.*` entries).
    Signature,
    /// The package control tar (`.PKGINFO`, scripts).
    Control,
    /// The package data tar.
    Data,
    /// The index tar (`APKINDEX`, `DESCRIPTION`).
    Index,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Signature => "signature member",
            Self::Control => "control member",
            Self::Data => "data member",
            Self::Index => "index member",
        })
    }
}

/// Size caps, in bytes, applied while reading packages and indexes.
///
/// Each member's compressed size is also capped, at its decompressed cap plus a small slack,
/// so that a stream of empty deflate blocks cannot run forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed signature member (default 1 MiB).
    pub max_signature_size: u64,
    /// Decompressed control member (default 4 MiB).
    pub max_control_size: u64,
    /// Decompressed index member (default 512 MiB).
    pub max_index_size: u64,
    /// Decompressed data member, enforced by [`DataReader`] (default 16 GiB); callers that know
    /// the installed size should set a tighter cap.
    pub max_data_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_signature_size: MIB,
            max_control_size: 4 * MIB,
            max_index_size: 512 * MIB,
            max_data_size: 16 * 1024 * MIB,
        }
    }
}

/// Why a package or index stream could not be split or read.
///
/// Cloneable (the IO errors it carries are shared) so that a [`DataReader`] can report the same
/// failure on every later read.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The stream ended before this member began.
    #[error("{member} missing: the stream ends before it")]
    MissingMember {
        /// The missing member.
        member: Member,
    },
    /// The stream ended inside this member.
    #[error("{member} truncated")]
    Truncated {
        /// The truncated member.
        member: Member,
    },
    /// Not valid gzip/deflate data, or a CRC or length mismatch.
    #[error("{member} is not valid gzip data")]
    Corrupt {
        /// The member.
        member: Member,
        /// What the decompressor reported.
        #[source]
        source: Arc<io::Error>,
    },
    /// The underlying reader failed.
    #[error("reading the {member} failed")]
    Read {
        /// The member being read.
        member: Member,
        /// The reader's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The member decompresses to more than its cap.
    #[error("{member} decompresses to more than {limit} bytes")]
    TooLarge {
        /// The member.
        member: Member,
        /// The cap in bytes.
        limit: u64,
    },
    /// The member's compressed bytes exceed what its decompressed cap allows.
    #[error("{member} has more than {limit} compressed bytes")]
    CompressedTooLarge {
        /// The member.
        member: Member,
        /// The compressed cap in bytes.
        limit: u64,
    },
    /// The member's decompressed bytes are not a valid tar stream.
    #[error("{member} is not a valid tar stream")]
    Tar {
        /// The member.
        member: Member,
        /// What the tar reader reported.
        #[source]
        source: Arc<io::Error>,
    },
    /// An entry that does not belong in this member (wrong name or not a regular file).
    #[error("unexpected entry `{name}` in the {member}")]
    UnexpectedEntry {
        /// The member.
        member: Member,
        /// The entry's name.
        name: String,
    },
    /// An entry that may appear once appears again.
    #[error("entry `{name}` appears twice in the {member}")]
    DuplicateEntry {
        /// The member.
        member: Member,
        /// The entry's name.
        name: String,
    },
    /// An entry name or a text entry that is not UTF-8.
    #[error("entry `{name}` in the {member} is not UTF-8")]
    NotUtf8 {
        /// The member.
        member: Member,
        /// The entry's name (lossily decoded).
        name: String,
    },
    /// The control member has no `.PKGINFO`.
    #[error("control member has no .PKGINFO entry")]
    MissingPkgInfo,
    /// The index member has no `APKINDEX`.
    #[error("index member has no APKINDEX entry")]
    MissingIndex,
    /// A `.PKGINFO` `datahash` that does not start with 64 hex digits: apk would be left with a
    /// digest no data member matches.
    #[error(".PKGINFO line {line}: invalid {key} `{value}`")]
    InvalidPkgInfoValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
        /// The value (shortened when long).
        value: String,
    },
    /// The package has no `datahash`, so its data member cannot be verified on its own.
    #[error("package {package} has no datahash in .PKGINFO (pre-2.x package format)")]
    MissingDatahash {
        /// The `pkgname`.
        package: String,
    },
    /// The data member's SHA-256 is not the `datahash` the control member declares.
    #[error("data member SHA-256 {actual} does not match datahash {expected} of package {package}")]
    DatahashMismatch {
        /// The `pkgname`.
        package: String,
        /// Declared digest (hex).
        expected: String,
        /// Computed digest (hex).
        actual: String,
    },
    /// Bytes after the last member.
    #[error("unexpected bytes after the {member} at offset {offset}")]
    TrailingData {
        /// The last member.
        member: Member,
        /// Offset of the first unexpected byte in the whole stream.
        offset: u64,
    },
}

impl ArchiveError {
    /// Finds the [`ArchiveError`] a [`DataReader`] read error carries, also when another reader
    /// (such as a tar reader) wrapped it.
    pub fn find_in(error: &io::Error) -> Option<&ArchiveError> {
        let mut current: Option<&(dyn StdError + 'static)> = error.get_ref().map(|inner| {
            let inner: &(dyn StdError + 'static) = inner;
            inner
        });
        while let Some(error) = current {
            if let Some(found) = error.downcast_ref::<ArchiveError>() {
                return Some(found);
            }
            current = error
                .downcast_ref::<io::Error>()
                .and_then(|io_error| io_error.get_ref())
                .map(|inner| {
                    let inner: &(dyn StdError + 'static) = inner;
                    inner
                })
                .or_else(|| error.source());
        }
        None
    }
}

/// Digests of one member's exact compressed bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDigests {
    /// SHA-1: what `.SIGN.RSA.*` signs and what `C:` encodes.
    pub sha1: [u8; 20],
    /// SHA-256: what `.SIGN.RSA256.*` signs.
    pub sha256: [u8; 32],
    /// SHA-512: what `.SIGN.RSA512.*` signs.
    pub sha512: [u8; 64],
    /// Number of compressed bytes.
    pub compressed_size: u64,
}

impl MemberDigests {
    /// The member's checksum as apk writes `C:`: `Q1` + base64(SHA-1).
    pub fn checksum(&self) -> String {
        encode_checksum(ChecksumAlgorithm::Sha1, &self.sha1)
    }
}

/// One `.SIGN.*` entry of a signature member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureEntry {
    /// Entry name, e.g. `.SIGN.RSA.alpine-devel@lists.alpinelinux.org-4a6a0840.rsa.pub`.
    pub name: String,
    /// The raw signature bytes.
    pub signature: Vec<u8>,
}

/// One regular file of the control tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEntry {
    /// Entry name, e.g. `.PKGINFO` or `.post-install`.
    pub name: String,
    /// Permission bits from the tar header.
    pub mode: u32,
    /// Modification time from the tar header.
    pub mtime: u64,
    /// Contents.
    pub data: Vec<u8>,
}

/// The parsed `.PKGINFO` of a package, read as apk-tools 3.0.6 reads it.
///
/// Lines end at `\n`; empty lines and lines starting with `#` are skipped; every other line is
/// split at its first ` = ` into key and value, and a line without ` = ` is skipped, as apk skips
/// it (`read_info_line` in `package.c` and `database.c`). Every such line is kept in
/// [`PkgInfo::entries`] in order; keys apk does not read are otherwise ignored. Single-valued
/// keys may repeat, the last one counting. `depend`, `provides`, `install_if` and `replaces`
/// lines accumulate their words, each line stopping at a word apk's dependency parser refuses
/// (`install_if` is emptied instead, as apk empties it). `triggers` is the words of the last
/// `triggers` line (apk replaces the list on each). Numbers are their leading decimal digits,
/// `provider_priority` and `replaces_priority` kept to 16 bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PkgInfo {
    /// `pkgname`.
    pub pkgname: String,
    /// `pkgver`.
    pub pkgver: String,
    /// `pkgdesc`.
    pub pkgdesc: String,
    /// `url`.
    pub url: String,
    /// `builddate`.
    pub builddate: Option<i64>,
    /// `packager` (apk does not read it).
    pub packager: Option<String>,
    /// `size` (installed size).
    pub size: Option<u64>,
    /// `arch`.
    pub arch: String,
    /// `origin`.
    pub origin: Option<String>,
    /// `commit`.
    pub commit: Option<String>,
    /// `maintainer`.
    pub maintainer: Option<String>,
    /// `license`.
    pub license: String,
    /// `provider_priority`.
    pub provider_priority: Option<u64>,
    /// `replaces_priority`.
    pub replaces_priority: Option<u64>,
    /// `depend` atoms, as written.
    pub depend: Vec<String>,
    /// `provides` atoms, as written.
    pub provides: Vec<String>,
    /// `replaces` atoms, as written.
    pub replaces: Vec<String>,
    /// `install_if` atoms, as written.
    pub install_if: Vec<String>,
    /// `triggers` paths.
    pub triggers: Vec<String>,
    /// `datahash`: SHA-256 of the data member's compressed bytes.
    pub datahash: Option<[u8; 32]>,
    /// Every `key = value` line, in order.
    pub entries: Vec<(String, String)>,
}

impl PkgInfo {
    /// Parses `.PKGINFO` text as apk does (see [`PkgInfo`]). The only error is a `datahash`
    /// that does not decode, which apk would fail to match against any data member.
    pub fn parse(text: &str) -> Result<Self, ArchiveError> {
        let mut info = Self::default();
        for (index, line) in text.split('\n').enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(PKGINFO_SEPARATOR) else {
                continue;
            };
            info.entries.push((key.to_owned(), value.to_owned()));
            info.read(key, value, index + 1)?;
        }
        Ok(info)
    }

    /// The first value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(candidate, _)| candidate == key)
            .map(|(_, value)| value.as_str())
    }

    fn read(&mut self, key: &str, value: &str, line: usize) -> Result<(), ArchiveError> {
        match key {
            PKGINFO_PKGNAME => self.pkgname = value.to_owned(),
            PKGINFO_PKGVER => self.pkgver = value.to_owned(),
            PKGINFO_PKGDESC => self.pkgdesc = value.to_owned(),
            PKGINFO_URL => self.url = value.to_owned(),
            // apk stores the build time in a signed 64-bit `time_t`.
            PKGINFO_BUILDDATE => self.builddate = Some(pull_uint(value).cast_signed()),
            PKGINFO_PACKAGER => self.packager = Some(value.to_owned()),
            PKGINFO_SIZE => self.size = Some(pull_uint(value)),
            PKGINFO_ARCH => self.arch = value.to_owned(),
            PKGINFO_ORIGIN => self.origin = Some(value.to_owned()),
            PKGINFO_COMMIT => self.commit = Some(value.to_owned()),
            PKGINFO_MAINTAINER => self.maintainer = Some(value.to_owned()),
            PKGINFO_LICENSE => self.license = value.to_owned(),
            PKGINFO_PROVIDER_PRIORITY => self.provider_priority = Some(pull_u16(value)),
            PKGINFO_REPLACES_PRIORITY => self.replaces_priority = Some(pull_u16(value)),
            PKGINFO_DEPEND => self.depend.extend(kept_words(value)),
            PKGINFO_PROVIDES => self.provides.extend(kept_words(value)),
            PKGINFO_REPLACES => self.replaces.extend(kept_words(value)),
            PKGINFO_INSTALL_IF => {
                if parse_index_list(value).problem.is_some() {
                    self.install_if.clear();
                } else {
                    self.install_if.extend(kept_words(value));
                }
            }
            PKGINFO_TRIGGERS => {
                self.triggers = value
                    .split(' ')
                    .filter(|word| !word.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            PKGINFO_DATAHASH => {
                // apk reads the first 64 hex digits and ignores what follows.
                let mut digest = [0u8; 32];
                value
                    .get(..2 * digest.len())
                    .and_then(|digits| hex::decode_to_slice(digits, &mut digest).ok())
                    .ok_or_else(|| ArchiveError::InvalidPkgInfoValue {
                        line,
                        key: key.to_owned(),
                        value: quote(value),
                    })?;
                self.datahash = Some(digest);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The words of a dependency list value that apk adds: up to the first it cannot parse.
fn kept_words(value: &str) -> impl Iterator<Item = String> + '_ {
    let kept = parse_index_list(value).atoms.len();
    list_words(value).take(kept).map(str::to_owned)
}

/// The control member of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlMember {
    /// Digests of its compressed bytes: the signature's input and `C:`.
    pub digests: MemberDigests,
    /// The parsed `.PKGINFO`.
    pub pkginfo: PkgInfo,
    /// Every regular file of the control tar (including `.PKGINFO`), in order.
    pub entries: Vec<ControlEntry>,
}

/// A package split into its members; the data member is still to be read.
#[derive(Debug)]
pub struct PackageArchive<R> {
    /// The signature entries, empty for an unsigned package (no signature member).
    pub signatures: Vec<SignatureEntry>,
    /// The control member.
    pub control: ControlMember,
    /// The data member's decompressed tar; call [`DataReader::finish`] after reading it.
    pub data: DataReader<R>,
}

/// Reads a package's signature (if any) and control members and positions the stream at the
/// data member.
///
/// The first member is the signature member when its first entry is named `.SIGN.*`; otherwise
/// the package is unsigned and the first member is the control member. The package must
/// declare a `datahash` (every package abuild has produced since apk-tools 2.0 does).
pub fn read_package<R: Read>(
    reader: R,
    limits: &Limits,
) -> Result<PackageArchive<R>, ArchiveError> {
    let mut tap = Tap::new(reader);
    let (signatures, control) =
        read_signed_member(&mut tap, limits, Member::Control, limits.max_control_size)?;
    let control = parse_control(control)?;
    let expected = control
        .pkginfo
        .datahash
        .ok_or_else(|| ArchiveError::MissingDatahash {
            package: control.pkginfo.pkgname.clone(),
        })?;

    let compressed_limit = compressed_allowance(limits.max_data_size);
    tap.begin_member(compressed_limit, Hashes::sha256_only());
    if tap
        .at_eof()
        .map_err(|source| member_error(Member::Data, &tap, source))?
    {
        return Err(ArchiveError::MissingMember {
            member: Member::Data,
        });
    }
    let data = DataReader {
        decoder: GzDecoder::new(tap),
        decompressed: 0,
        limit: limits.max_data_size,
        compressed_limit,
        expected,
        package: control.pkginfo.pkgname.clone(),
        failure: None,
    };
    Ok(PackageArchive {
        signatures,
        control,
        data,
    })
}

/// An `APKINDEX.tar.gz` split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexArchive {
    /// The signature entries, empty for an unsigned index.
    pub signatures: Vec<SignatureEntry>,
    /// Digests of the index member's compressed bytes (what the signature covers).
    pub digests: MemberDigests,
    /// The `APKINDEX` text.
    pub index: String,
    /// The `DESCRIPTION` text, when present.
    pub description: Option<String>,
}

/// Reads a whole `APKINDEX.tar.gz`: the signature member (if any), then the index member, and
/// checks that nothing follows.
pub fn read_index_archive<R: Read>(
    reader: R,
    limits: &Limits,
) -> Result<IndexArchive, ArchiveError> {
    let mut tap = Tap::new(reader);
    let (signatures, index_member) =
        read_signed_member(&mut tap, limits, Member::Index, limits.max_index_size)?;
    let end = tap.offset;
    tap.begin_member(u64::MAX, Hashes::none());
    if !tap
        .at_eof()
        .map_err(|source| member_error(Member::Index, &tap, source))?
    {
        return Err(ArchiveError::TrailingData {
            member: Member::Index,
            offset: end,
        });
    }

    let mut index = None;
    let mut description = None;
    for file in tar_files(Member::Index, &index_member.bytes)? {
        let slot = match file.name.as_str() {
            INDEX_ENTRY => &mut index,
            DESCRIPTION_ENTRY => &mut description,
            name if name.starts_with('.') => {
                return Err(ArchiveError::UnexpectedEntry {
                    member: Member::Index,
                    name: file.name,
                });
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(ArchiveError::DuplicateEntry {
                member: Member::Index,
                name: file.name,
            });
        }
        let text = String::from_utf8(file.data).map_err(|_| ArchiveError::NotUtf8 {
            member: Member::Index,
            name: file.name.clone(),
        })?;
        *slot = Some(text);
    }
    Ok(IndexArchive {
        signatures,
        digests: index_member.digests,
        index: index.ok_or(ArchiveError::MissingIndex)?,
        description,
    })
}

/// What [`DataReader::finish`] reports about the data member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDigest {
    /// SHA-256 of the member's compressed bytes (equal to the declared `datahash`).
    pub sha256: [u8; 32],
    /// Number of compressed bytes.
    pub compressed_size: u64,
    /// Number of decompressed bytes.
    pub size: u64,
}

/// The decompressed data tar of a package, hashing the compressed bytes as they are consumed.
///
/// Reading past [`Limits::max_data_size`] decompressed bytes fails. Read errors are
/// [`io::Error`]s carrying an [`ArchiveError`] (see [`ArchiveError::find_in`]).
pub struct DataReader<R> {
    decoder: GzDecoder<Tap<R>>,
    decompressed: u64,
    limit: u64,
    compressed_limit: u64,
    expected: [u8; 32],
    package: String,
    /// The first failure, repeated by every later read: the decoder reports an error once.
    failure: Option<ArchiveError>,
}

impl<R> fmt::Debug for DataReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataReader")
            .field("package", &self.package)
            .field("decompressed", &self.decompressed)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for DataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(failure) = &self.failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, failure.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let len = capped_len(self.limit, self.decompressed, buf.len());
        let (kind, failure) = match self.decoder.read(&mut buf[..len]) {
            Ok(read) => {
                self.decompressed += read as u64;
                if self.decompressed <= self.limit {
                    return Ok(read);
                }
                let failure = ArchiveError::TooLarge {
                    member: Member::Data,
                    limit: self.limit,
                };
                (io::ErrorKind::InvalidData, failure)
            }
            Err(error) => {
                let kind = error.kind();
                (
                    kind,
                    member_error(Member::Data, self.decoder.get_ref(), error),
                )
            }
        };
        self.failure = Some(failure.clone());
        Err(io::Error::new(kind, failure))
    }
}

impl<R: Read> DataReader<R> {
    /// Decompressed bytes read so far.
    pub fn decompressed_size(&self) -> u64 {
        self.decompressed
    }

    /// Reads the rest of the data member (tar padding the caller did not need), checks the
    /// gzip trailer, that nothing follows the member, and that the compressed bytes' SHA-256
    /// equals the control member's `datahash`.
    pub fn finish(mut self) -> Result<DataDigest, ArchiveError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        if let Err(error) = io::copy(&mut self, &mut io::sink()) {
            return Err(into_archive_error(Member::Data, error));
        }
        let mut tap = self.decoder.into_inner();
        if tap.member_size > self.compressed_limit {
            return Err(ArchiveError::CompressedTooLarge {
                member: Member::Data,
                limit: self.compressed_limit,
            });
        }
        let compressed_size = tap.member_size;
        let sha256 = tap.hashes.finish_sha256();
        let end = tap.offset;
        tap.begin_member(u64::MAX, Hashes::none());
        let at_end = tap
            .at_eof()
            .map_err(|source| member_error(Member::Data, &tap, source))?;
        if sha256 != self.expected {
            return Err(ArchiveError::DatahashMismatch {
                package: self.package,
                expected: hex::encode(self.expected),
                actual: hex::encode(sha256),
            });
        }
        if !at_end {
            return Err(ArchiveError::TrailingData {
                member: Member::Data,
                offset: end,
            });
        }
        Ok(DataDigest {
            sha256,
            compressed_size,
            size: self.decompressed,
        })
    }
}

/// The error a [`CappedReader`] returns once more than its limit has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more than {limit} bytes")]
pub struct SizeLimitExceeded {
    /// The cap in bytes.
    pub limit: u64,
}

/// A reader that fails with [`SizeLimitExceeded`] (kind [`io::ErrorKind::InvalidData`]) as soon
/// as more than `limit` bytes come through, instead of silently stopping like [`Read::take`].
#[derive(Debug)]
pub struct CappedReader<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R> CappedReader<R> {
    /// Caps `inner` at `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            limit,
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = capped_len(self.limit, self.read, buf.len());
        let read = self.inner.read(&mut buf[..len])?;
        self.read += read as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SizeLimitExceeded { limit: self.limit },
            ));
        }
        Ok(read)
    }
}

/// How much of a `buffer_len` buffer the next read past `read` bytes of a `limit` cap may fill:
/// one byte over the cap at most, so that passing it is noticed.
fn capped_len(limit: u64, read: u64, buffer_len: usize) -> usize {
    let allowed = limit.saturating_sub(read).saturating_add(1);
    usize::try_from(allowed).map_or(buffer_len, |allowed| allowed.min(buffer_len))
}

/// The compressed-size cap that goes with a decompressed-size cap.
fn compressed_allowance(decompressed_limit: u64) -> u64 {
    decompressed_limit
        .saturating_add(decompressed_limit / 16)
        .saturating_add(COMPRESSED_SLACK)
}

/// Which digests the tap computes for the current member.
struct Hashes {
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl Hashes {
    fn all() -> Self {
        Self {
            sha1: Some(Sha1::new()),
            sha256: Some(Sha256::new()),
            sha512: Some(Sha512::new()),
        }
    }

    fn sha256_only() -> Self {
        Self {
            sha1: None,
            sha256: Some(Sha256::new()),
            sha512: None,
        }
    }

    fn none() -> Self {
        Self {
            sha1: None,
            sha256: None,
            sha512: None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.sha1 {
            hasher.update(bytes);
        }
        if let Some(hasher) = &mut self.sha256 {
            hasher.update(bytes);
        }
        if let Some(hasher) = &mut self.sha512 {
            hasher.update(bytes);
        }
    }

    fn finish_sha256(&mut self) -> [u8; 32] {
        self.sha256.take().unwrap_or_default().finalize().into()
    }

    fn finish_all(&mut self, compressed_size: u64) -> MemberDigests {
        MemberDigests {
            sha1: self.sha1.take().unwrap_or_default().finalize().into(),
            sha256: self.finish_sha256(),
            sha512: self.sha512.take().unwrap_or_default().finalize().into(),
            compressed_size,
        }
    }
}

/// Marker error for a member whose compressed bytes passed their cap.
#[derive(Debug, thiserror::Error)]
#[error("compressed member size limit reached")]
struct CompressedLimitReached;

/// A buffered reader that hashes and counts exactly the bytes its consumer consumes, so that
/// a `bufread::GzDecoder` on top of it, which consumes exactly one gzip member, yields the
/// member's compressed bytes.
struct Tap<R> {
    inner: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed from the whole stream.
    offset: u64,
    /// Bytes consumed in the current member.
    member_size: u64,
    member_limit: u64,
    over_limit: bool,
    hashes: Hashes,
}

impl<R: Read> Tap<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buffer: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            member_size: 0,
            member_limit: 0,
            over_limit: false,
            hashes: Hashes::none(),
        }
    }

    fn begin_member(&mut self, compressed_limit: u64, hashes: Hashes) {
        self.member_size = 0;
        self.member_limit = compressed_limit;
        self.over_limit = false;
        self.hashes = hashes;
    }

    fn at_eof(&mut self) -> io::Result<bool> {
        self.fill_buf().map(|buffered| buffered.is_empty())
    }
}

impl<R: Read> BufRead for Tap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.member_size > self.member_limit {
            self.over_limit = true;
            return Err(io::Error::other(CompressedLimitReached));
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let read = loop {
                match self.inner.read(&mut self.buffer) {
                    Ok(read) => break read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            };
            self.end = read;
        }
        Ok(&self.buffer[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.end - self.start);
        let consumed = &self.buffer[self.start..self.start + amount];
        self.hashes.update(consumed);
        self.start += amount;
        self.offset += amount as u64;
        self.member_size += amount as u64;
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buffered = self.fill_buf()?;
        let amount = buffered.len().min(buf.len());
        buf[..amount].copy_from_slice(&buffered[..amount]);
        self.consume(amount);
        Ok(amount)
    }
}

fn member_error<R>(member: Member, tap: &Tap<R>, error: io::Error) -> ArchiveError {
    if tap.over_limit {
        return ArchiveError::CompressedTooLarge {
            member,
            limit: tap.member_limit,
        };
    }
    classify_io_error(member, error)
}

fn classify_io_error(member: Member, error: io::Error) -> ArchiveError {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated { member },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ArchiveError::Corrupt {
            member,
            source: Arc::new(error),
        },
        _ => ArchiveError::Read {
            member,
            source: Arc::new(error),
        },
    }
}

/// Turns an error that came out of a [`DataReader`] back into the [`ArchiveError`] it carries.
fn into_archive_error(member: Member, error: io::Error) -> ArchiveError {
    match error.downcast::<ArchiveError>() {
        Ok(archive_error) => archive_error,
        Err(error) => classify_io_error(member, error),
    }
}

/// A member read whole into memory, with the digests of its compressed bytes.
struct BufferedMember {
    member: Member,
    bytes: Vec<u8>,
    digests: MemberDigests,
}

/// Reads one whole member into memory. Its kind is decided from the first tar header: a
/// `.SIGN.*` name makes it `signature`, anything else `other`; each kind has its own cap.
fn read_buffered_member<R: Read>(
    tap: &mut Tap<R>,
    expected: Member,
    signature: (Member, u64),
    other: (Member, u64),
) -> Result<BufferedMember, ArchiveError> {
    let largest = signature.1.max(other.1);
    tap.begin_member(compressed_allowance(largest), Hashes::all());
    if tap
        .at_eof()
        .map_err(|source| member_error(expected, tap, source))?
    {
        return Err(ArchiveError::MissingMember { member: expected });
    }

    let mut decoder = GzDecoder::new(&mut *tap);
    let mut bytes = Vec::new();
    let prefix_size = CLASSIFY_PREFIX_SIZE.min(largest.saturating_add(1));
    let prefix_read = (&mut decoder).take(prefix_size).read_to_end(&mut bytes);
    // Decided on what was read even when the read failed, to name the right member.
    let (member, limit) = if starts_with_signature_entry(&bytes) {
        signature
    } else {
        other
    };
    if let Err(error) = prefix_read {
        return Err(member_error(member, decoder.get_ref(), error));
    }
    let remaining = limit.saturating_add(1).saturating_sub(bytes.len() as u64);
    if let Err(error) = (&mut decoder).take(remaining).read_to_end(&mut bytes) {
        return Err(member_error(member, decoder.get_ref(), error));
    }
    drop(decoder);
    if bytes.len() as u64 > limit {
        return Err(ArchiveError::TooLarge { member, limit });
    }
    let compressed_limit = compressed_allowance(limit);
    if tap.member_size > compressed_limit {
        return Err(ArchiveError::CompressedTooLarge {
            member,
            limit: compressed_limit,
        });
    }
    let digests = tap.hashes.finish_all(tap.member_size);
    Ok(BufferedMember {
        member,
        bytes,
        digests,
    })
}

/// Reads the optional signature member and then `member` (capped at `limit`): the first member
/// is the signature member when its first entry is named `.SIGN.*`, otherwise it is `member`
/// itself (unsigned).
fn read_signed_member<R: Read>(
    tap: &mut Tap<R>,
    limits: &Limits,
    member: Member,
    limit: u64,
) -> Result<(Vec<SignatureEntry>, BufferedMember), ArchiveError> {
    let first = read_buffered_member(
        tap,
        member,
        (Member::Signature, limits.max_signature_size),
        (member, limit),
    )?;
    if first.member != Member::Signature {
        return Ok((Vec::new(), first));
    }
    let signatures = parse_signatures(&first.bytes)?;
    let signed = read_buffered_member(tap, member, (member, limit), (member, limit))?;
    Ok((signatures, signed))
}

/// Whether the first entry of a tar stream's beginning is named `.SIGN.*` (long names given by
/// a GNU long-name entry or a PAX `path` record included).
fn starts_with_signature_entry(prefix: &[u8]) -> bool {
    let mut archive = tar::Archive::new(prefix);
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    match entries.next() {
        Some(Ok(entry)) => entry
            .path_bytes()
            .starts_with(SIGNATURE_ENTRY_PREFIX.as_bytes()),
        _ => false,
    }
}

/// A regular file read from an in-memory tar.
struct TarFile {
    name: String,
    mode: u32,
    mtime: u64,
    data: Vec<u8>,
}

/// Reads every regular file of an in-memory tar (which may lack end-of-archive blocks). Any
/// other entry type except PAX global headers is an [`ArchiveError::UnexpectedEntry`].
fn tar_files(member: Member, bytes: &[u8]) -> Result<Vec<TarFile>, ArchiveError> {
    let tar_error = |source| ArchiveError::Tar {
        member,
        source: Arc::new(source),
    };
    let mut archive = tar::Archive::new(bytes);
    let mut files = Vec::new();
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let name_bytes = entry.path_bytes().into_owned();
        let name = String::from_utf8(name_bytes).map_err(|error| ArchiveError::NotUtf8 {
            member,
            name: String::from_utf8_lossy(error.as_bytes()).into_owned(),
        })?;
        let header = entry.header();
        let entry_type = header.entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        if !entry_type.is_file() {
            return Err(ArchiveError::UnexpectedEntry { member, name });
        }
        let mode = header.mode().map_err(tar_error)?;
        let mtime = header.mtime().map_err(tar_error)?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(tar_error)?;
        files.push(TarFile {
            name,
            mode,
            mtime,
            data,
        });
    }
    Ok(files)
}

fn parse_signatures(bytes: &[u8]) -> Result<Vec<SignatureEntry>, ArchiveError> {
    tar_files(Member::Signature, bytes)?
        .into_iter()
        .map(|file| {
            if file.name.starts_with(SIGNATURE_ENTRY_PREFIX) {
                Ok(SignatureEntry {
                    name: file.name,
                    signature: file.data,
                })
            } else {
                Err(ArchiveError::UnexpectedEntry {
                    member: Member::Signature,
                    name: file.name,
                })
            }
        })
        .collect()
}

fn parse_control(member: BufferedMember) -> Result<ControlMember, ArchiveError> {
    let mut entries: Vec<ControlEntry> = Vec::new();
    let mut pkginfo = None;
    for file in tar_files(Member::Control, &member.bytes)? {
        // apk treats a name that is not hidden, or has a directory part, as the start of data.
        if !file.name.starts_with('.') || file.name.contains('/') {
            return Err(ArchiveError::UnexpectedEntry {
                member: Member::Control,
                name: file.name,
            });
        }
        if entries.iter().any(|entry| entry.name == file.name) {
            return Err(ArchiveError::DuplicateEntry {
                member: Member::Control,
                name: file.name,
            });
        }
        if file.name == PKGINFO_ENTRY {
            let text = std::str::from_utf8(&file.data).map_err(|_| ArchiveError::NotUtf8 {
                member: Member::Control,
                name: file.name.clone(),
            })?;
            pkginfo = Some(PkgInfo::parse(text)?);
        }
        entries.push(ControlEntry {
            name: file.name,
            mode: file.mode,
            mtime: file.mtime,
            data: file.data,
        });
    }
    Ok(ControlMember {
        digests: member.digests,
        pkginfo: pkginfo.ok_or(ArchiveError::MissingPkgInfo)?,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Write;
    use std::rc::Rc;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    const TAR_BLOCK_SIZE: u64 = 512;

    const PKGINFO_TEXT: &str = "\
# Generated by abuild 3.12.0-r0
# using fakeroot version 1.32.1
# Fri Jun 14 10:12:25 UTC 2024
pkgname = hello
pkgver = 2.12.1-r0
pkgdesc = Prints a friendly greeting
url = https://www.gnu.org/software/hello/
builddate = 1718360000
packager = Buildozer <alpine-devel@lists.alpinelinux.org>
size = 61440
arch = x86_64
origin = hello
commit = 0f2a9d9c1b2e3f4a5b6c7d8e9f00112233445566
maintainer = Jane Doe <jane@example.org>
provider_priority = 10
replaces_priority = 5
license = GPL-3.0-or-later
replaces = hello-legacy
provides = cmd:hello=2.12.1-r0
provides = hello-any
depend = so:libc.musl-x86_64.so.1
depend = !hello-old
install_if = hello-base=2.12.1-r0 docs
triggers = /usr/share/hello/* /etc/hello
";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn tar(entries: &[(&str, &[u8])], end_of_archive: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_718_360_000);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        if end_of_archive {
            builder.into_inner().unwrap()
        } else {
            builder.get_ref().clone()
        }
    }

    /// A package's three gzip members, built the way abuild lays them out.
    struct Built {
        signature: Vec<u8>,
        control: Vec<u8>,
        data: Vec<u8>,
    }

    impl Built {
        fn bytes(&self) -> Vec<u8> {
            [self.signature.as_slice(), &self.control, &self.data].concat()
        }

        fn unsigned_bytes(&self) -> Vec<u8> {
            [self.control.as_slice(), &self.data].concat()
        }
    }

    fn build_with(pkginfo_without_datahash: &str, data_files: &[(&str, &[u8])]) -> Built {
        let data = gzip(&tar(data_files, true));
        let pkginfo = format!(
            "{pkginfo_without_datahash}datahash = {}\n",
            hex::encode(Sha256::digest(&data))
        );
        let control = gzip(&tar(
            &[
                (PKGINFO_ENTRY, pkginfo.as_bytes()),
                (".post-install", b"#!/bin/sh\necho hi\n"),
            ],
            false,
        ));
        let signature = gzip(&tar(
            &[
                (".SIGN.RSA.builder-1.rsa.pub", &[1, 2, 3, 4]),
                (".SIGN.RSA256.builder-1.rsa.pub", &[5, 6, 7]),
            ],
            false,
        ));
        Built {
            signature,
            control,
            data,
        }
    }

    fn build() -> Built {
        build_with(
            PKGINFO_TEXT,
            &[
                ("usr/bin/hello", b"\x7fELF hello binary"),
                ("usr/share/doc/hello/README", b"Hello, world\n"),
            ],
        )
    }

    fn read_data<R: Read>(archive: &mut PackageArchive<R>) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::new();
        let mut tar = tar::Archive::new(&mut archive.data);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            files.push((name, data));
        }
        Ok(files)
    }

    #[test]
    fn splits_a_signed_package() {
        let built = build();
        let bytes = built.bytes();
        let mut archive = read_package(bytes.as_slice(), &Limits::default()).unwrap();

        assert_eq!(
            archive.signatures,
            vec![
                SignatureEntry {
                    name: ".SIGN.RSA.builder-1.rsa.pub".to_owned(),
                    signature: vec![1, 2, 3, 4],
                },
                SignatureEntry {
                    name: ".SIGN.RSA256.builder-1.rsa.pub".to_owned(),
                    signature: vec![5, 6, 7],
                },
            ]
        );

        let digests = &archive.control.digests;
        assert_eq!(digests.sha1, <[u8; 20]>::from(Sha1::digest(&built.control)));
        assert_eq!(
            digests.sha256,
            <[u8; 32]>::from(Sha256::digest(&built.control))
        );
        assert_eq!(
            digests.sha512,
            <[u8; 64]>::from(Sha512::digest(&built.control))
        );
        assert_eq!(digests.compressed_size, built.control.len() as u64);
        assert_eq!(
            digests.checksum(),
            encode_checksum(ChecksumAlgorithm::Sha1, &Sha1::digest(&built.control))
        );

        let names: Vec<_> = archive
            .control
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, [PKGINFO_ENTRY, ".post-install"]);
        assert_eq!(archive.control.entries[1].mode, 0o644);
        assert_eq!(archive.control.entries[1].mtime, 1_718_360_000);
        assert_eq!(archive.control.pkginfo.pkgname, "hello");

        let files = read_data(&mut archive).unwrap();
        assert_eq!(
            files,
            vec![
                ("usr/bin/hello".to_owned(), b"\x7fELF hello binary".to_vec()),
                (
                    "usr/share/doc/hello/README".to_owned(),
                    b"Hello, world\n".to_vec()
                ),
            ]
        );
        let digest = archive.data.finish().unwrap();
        assert_eq!(digest.sha256, <[u8; 32]>::from(Sha256::digest(&built.data)));
        assert_eq!(digest.compressed_size, built.data.len() as u64);
        assert_eq!(digest.size % TAR_BLOCK_SIZE, 0);
    }

    #[test]
    fn recognises_a_signature_entry_with_a_long_name() {
        let built = build();
        let long_name = format!(".SIGN.RSA256.{}.rsa.pub", "k".repeat(150));
        let signature = gzip(&tar(&[(long_name.as_str(), b"sig")], false));
        let bytes = [signature.as_slice(), &built.control, &built.data].concat();
        let archive = read_package(bytes.as_slice(), &Limits::default()).unwrap();
        assert_eq!(archive.signatures.len(), 1);
        assert_eq!(archive.signatures[0].name, long_name);
        assert_eq!(archive.control.pkginfo.pkgname, "hello");
    }

    #[test]
    fn finish_without_reading_the_data_still_verifies_it() {
        let bytes = build().bytes();
        let archive = read_package(bytes.as_slice(), &Limits::default()).unwrap();
        assert!(archive.data.finish().is_ok());
    }

    #[test]
    fn detects_an_unsigned_package() {
        let built = build();
        let bytes = built.unsigned_bytes();
        let mut archive = read_package(bytes.as_slice(), &Limits::default()).unwrap();
        assert!(archive.signatures.is_empty());
        assert_eq!(
            archive.control.digests.sha1,
            <[u8; 20]>::from(Sha1::digest(&built.control))
        );
        assert_eq!(read_data(&mut archive).unwrap().len(), 2);
        archive.data.finish().unwrap();
    }

    #[test]
    fn parses_every_pkginfo_key() {
        let info = PkgInfo::parse(PKGINFO_TEXT).unwrap();
        assert_eq!(info.pkgname, "hello");
        assert_eq!(info.pkgver, "2.12.1-r0");
        assert_eq!(info.pkgdesc, "Prints a friendly greeting");
        assert_eq!(info.url, "https://www.gnu.org/software/hello/");
        assert_eq!(info.builddate, Some(1_718_360_000));
        assert_eq!(
            info.packager.as_deref(),
            Some("Buildozer <alpine-devel@lists.alpinelinux.org>")
        );
        assert_eq!(info.size, Some(61_440));
        assert_eq!(info.arch, "x86_64");
        assert_eq!(info.origin.as_deref(), Some("hello"));
        assert_eq!(
            info.commit.as_deref(),
            Some("0f2a9d9c1b2e3f4a5b6c7d8e9f00112233445566")
        );
        assert_eq!(
            info.maintainer.as_deref(),
            Some("Jane Doe <jane@example.org>")
        );
        assert_eq!(info.provider_priority, Some(10));
        assert_eq!(info.replaces_priority, Some(5));
        assert_eq!(info.license, "GPL-3.0-or-later");
        assert_eq!(info.replaces, ["hello-legacy"]);
        assert_eq!(info.provides, ["cmd:hello=2.12.1-r0", "hello-any"]);
        assert_eq!(info.depend, ["so:libc.musl-x86_64.so.1", "!hello-old"]);
        assert_eq!(info.install_if, ["hello-base=2.12.1-r0", "docs"]);
        assert_eq!(info.triggers, ["/usr/share/hello/*", "/etc/hello"]);
        assert_eq!(info.datahash, None);
        assert_eq!(info.entries.len(), 21);
        assert_eq!(info.entries[0], ("pkgname".to_owned(), "hello".to_owned()));
        assert_eq!(info.get("provides"), Some("cmd:hello=2.12.1-r0"));
        assert_eq!(info.get("absent"), None);

        let hashed = PkgInfo::parse(&format!(
            "datahash = {}\nurl =\nfuture = x\n",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(hashed.datahash, Some([0xab; 32]));
        assert_eq!(hashed.url, "");
        assert_eq!(hashed.get("future"), Some("x"));
    }

    #[test]
    fn reads_pkginfo_as_apk_does() {
        let info = PkgInfo::parse(&format!(
            "pkgname = a\n\
             no separator here\n\
             url =\n\
             two words = x\n\
             pkgname = b\n\
             size = 12k\n\
             builddate = -1\n\
             provider_priority = 70000\n\
             replaces_priority = 65537\n\
             pkgver = 1.0\r\n\
             depend = a b\tc\n\
             depend = d e= f\n\
             provides = so:x=v2.4 y\n\
             provides = z@edge w\n\
             install_if = p\n\
             install_if = q=v1\n\
             install_if = r\n\
             replaces = old  older\n\
             triggers = /a /b\n\
             triggers = /c\n\
             future = x\n\
             #comment = ignored\n\
             datahash = {}trailing\n",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(info.datahash, Some([0xab; 32]));
        assert_eq!(info.pkgname, "b");
        assert_eq!(info.pkgver, "1.0\r");
        assert_eq!(info.url, "");
        assert_eq!(info.size, Some(12));
        assert_eq!(info.builddate, Some(0));
        assert_eq!(info.provider_priority, Some(4464));
        assert_eq!(info.replaces_priority, Some(1));
        assert_eq!(info.depend, ["a", "b\tc", "d"]);
        assert_eq!(info.provides, ["so:x=v2.4", "y"]);
        assert_eq!(info.install_if, ["r"]);
        assert_eq!(info.replaces, ["old", "older"]);
        assert_eq!(info.triggers, ["/c"]);
        assert_eq!(info.get("two words"), Some("x"));
        assert_eq!(info.get("future"), Some("x"));
        assert_eq!(info.get("url"), None);
        assert_eq!(info.get("#comment"), None);
        assert_eq!(info.entries.len(), 20);
    }

    #[test]
    fn rejects_a_datahash_apk_could_not_match() {
        for value in ["abcd", &"zz".repeat(32), ""] {
            let error = PkgInfo::parse(&format!("pkgname = a\ndatahash = {value}\n")).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(".PKGINFO line 2: invalid datahash `{value}`"),
            );
        }
    }

    fn error_of(bytes: &[u8], limits: &Limits) -> ArchiveError {
        read_package(bytes, limits).unwrap_err()
    }

    fn finish_error_of(bytes: &[u8]) -> ArchiveError {
        let mut archive = read_package(bytes, &Limits::default()).unwrap();
        let _ = read_data(&mut archive);
        archive.data.finish().unwrap_err()
    }

    #[test]
    fn truncated_packages_fail_with_the_member_named() {
        let built = build();
        let bytes = built.bytes();
        let signature_end = built.signature.len();
        let control_end = signature_end + built.control.len();
        let cases: Vec<(usize, &str)> = vec![
            (0, "control member missing: the stream ends before it"),
            (5, "control member truncated"),
            (signature_end - 3, "signature member truncated"),
            (
                signature_end,
                "control member missing: the stream ends before it",
            ),
            (signature_end + 20, "control member truncated"),
            (control_end - 1, "control member truncated"),
            (
                control_end,
                "data member missing: the stream ends before it",
            ),
        ];
        for (cut, expected) in cases {
            let error = error_of(&bytes[..cut], &Limits::default());
            assert_eq!(error.to_string(), expected, "cut at {cut}");
        }
        for cut in [control_end + 1, control_end + 30, bytes.len() - 4] {
            let error = finish_error_of(&bytes[..cut]);
            assert!(
                matches!(
                    error,
                    ArchiveError::Truncated {
                        member: Member::Data
                    }
                ),
                "cut at {cut}: {error}"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_data_member_are_an_error() {
        let built = build();
        let end = built.bytes().len() as u64;
        let garbage = [built.bytes(), b"junk".to_vec()].concat();
        let extra_member = [built.bytes(), gzip(b"more")].concat();
        for bytes in [garbage, extra_member] {
            let error = finish_error_of(&bytes);
            assert!(
                matches!(error, ArchiveError::TrailingData { member: Member::Data, offset } if offset == end),
                "{error}"
            );
        }
    }

    #[test]
    fn datahash_mismatch_is_detected() {
        let built = build();
        let other = build_with(PKGINFO_TEXT, &[("etc/other", b"different")]);
        let bytes = [built.signature.as_slice(), &built.control, &other.data].concat();
        let error = finish_error_of(&bytes);
        assert_eq!(
            error.to_string(),
            format!(
                "data member SHA-256 {} does not match datahash {} of package hello",
                hex::encode(Sha256::digest(&other.data)),
                hex::encode(Sha256::digest(&built.data)),
            )
        );
    }

    #[test]
    fn corrupt_members_are_reported() {
        let built = build();
        let mut bad_crc = built.control.clone();
        let crc_index = bad_crc.len() - 8;
        bad_crc[crc_index] ^= 0xff;
        let bytes = [built.signature.as_slice(), &bad_crc, &built.data].concat();
        let error = error_of(&bytes, &Limits::default());
        assert!(
            matches!(
                error,
                ArchiveError::Corrupt {
                    member: Member::Control,
                    ..
                }
            ),
            "{error}"
        );

        let not_gzip = [built.signature.as_slice(), b"plain text, not gzip"].concat();
        let error = error_of(&not_gzip, &Limits::default());
        assert!(
            matches!(
                error,
                ArchiveError::Corrupt {
                    member: Member::Control,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn rejects_misplaced_entries() {
        let data = gzip(&tar(&[("usr/bin/x", b"x")], true));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                [
                    gzip(&tar(
                        &[(".SIGN.RSA.k", b"s"), (".PKGINFO", b"pkgname = a\n")],
                        false,
                    )),
                    data.clone(),
                ]
                .concat(),
                "unexpected entry `.PKGINFO` in the signature member",
            ),
            (
                [
                    gzip(&tar(
                        &[(".PKGINFO", b"pkgname = a\n"), ("usr/x", b"")],
                        false,
                    )),
                    data.clone(),
                ]
                .concat(),
                "unexpected entry `usr/x` in the control member",
            ),
            (
                [gzip(&tar(&[(".post-install", b"")], false)), data.clone()].concat(),
                "control member has no .PKGINFO entry",
            ),
            (
                [
                    gzip(&tar(
                        &[(".PKGINFO", b"pkgname = a\n"), (".PKGINFO", b"")],
                        false,
                    )),
                    data.clone(),
                ]
                .concat(),
                "entry `.PKGINFO` appears twice in the control member",
            ),
            (
                [
                    gzip(&tar(&[(".PKGINFO", b"pkgname = a\n")], false)),
                    data.clone(),
                ]
                .concat(),
                "package a has no datahash in .PKGINFO (pre-2.x package format)",
            ),
            (
                [
                    gzip(&tar(&[(".PKGINFO", b"pkgname = \xff\n")], false)),
                    data,
                ]
                .concat(),
                "entry `.PKGINFO` in the control member is not UTF-8",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(error_of(&bytes, &Limits::default()).to_string(), expected);
        }
    }

    /// A reader that counts how many bytes were pulled from it.
    #[derive(Debug)]
    struct Counting<R> {
        inner: R,
        count: Rc<Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let read = self.inner.read(buf)?;
            self.count.set(self.count.get() + read as u64);
            Ok(read)
        }
    }

    /// Gzip of `size` zero bytes, generated in chunks.
    fn zeros_gzip(size: u64) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let chunk = vec![0u8; 1024 * 1024];
        let mut left = size;
        while left > 0 {
            let len = left.min(chunk.len() as u64) as usize;
            encoder.write_all(&chunk[..len]).unwrap();
            left -= len as u64;
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_in_the_control_member_stops_at_the_cap() {
        // 256 MiB of zeros: the first header block is zero, so it is taken as a control member.
        let bomb = zeros_gzip(256 * MIB);
        assert!(bomb.len() < 2 * MIB as usize);
        let padding = vec![7u8; 4 * MIB as usize];
        let count = Rc::new(Cell::new(0));
        let reader = Counting {
            inner: io::Cursor::new([bomb.as_slice(), &padding].concat()),
            count: Rc::clone(&count),
        };
        let error = read_package(reader, &Limits::default()).unwrap_err();
        assert!(
            matches!(error, ArchiveError::TooLarge { member: Member::Control, limit } if limit == 4 * MIB),
            "{error}"
        );
        // It stopped long before the end of the bomb.
        assert!(
            count.get() < bomb.len() as u64 / 2,
            "read {} bytes",
            count.get()
        );
    }

    #[test]
    fn a_gzip_bomb_in_the_signature_member_uses_the_signature_cap() {
        let mut signature_tar = tar(&[(".SIGN.RSA.k", b"sig")], false);
        signature_tar.resize(3 * MIB as usize, 0);
        let bytes = gzip(&signature_tar);
        let error = error_of(&bytes, &Limits::default());
        assert!(
            matches!(error, ArchiveError::TooLarge { member: Member::Signature, limit } if limit == MIB),
            "{error}"
        );
    }

    #[test]
    fn a_gzip_bomb_in_the_data_member_stops_at_the_data_cap() {
        let built = build();
        let bomb = zeros_gzip(64 * MIB);
        let pkginfo = format!(
            "pkgname = bomb\ndatahash = {}\n",
            hex::encode(Sha256::digest(&bomb))
        );
        let control = gzip(&tar(&[(PKGINFO_ENTRY, pkginfo.as_bytes())], false));
        let bytes = [built.signature.as_slice(), &control, &bomb].concat();
        let limits = Limits {
            max_data_size: 8 * MIB,
            ..Limits::default()
        };
        let mut archive = read_package(bytes.as_slice(), &limits).unwrap();
        let mut sink = Vec::new();
        let error = archive.data.read_to_end(&mut sink).unwrap_err();
        assert!(sink.len() as u64 <= 8 * MIB);
        assert!(
            matches!(ArchiveError::find_in(&error), Some(ArchiveError::TooLarge { member: Member::Data, limit }) if *limit == 8 * MIB),
            "{error}"
        );
        let error = archive.data.finish().unwrap_err();
        assert!(
            matches!(
                error,
                ArchiveError::TooLarge {
                    member: Member::Data,
                    ..
                }
            ),
            "{error}"
        );
    }

    /// A gzip member of `blocks` empty stored deflate blocks: endless input, no output.
    fn empty_blocks_gzip(blocks: usize) -> Vec<u8> {
        let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for _ in 0..blocks {
            bytes.extend([0x00, 0x00, 0x00, 0xff, 0xff]);
        }
        bytes.extend([0x01, 0x00, 0x00, 0xff, 0xff]);
        bytes.extend([0; 8]);
        bytes
    }

    #[test]
    fn endless_compressed_input_hits_the_compressed_cap() {
        let small = empty_blocks_gzip(10);
        assert!(matches!(
            error_of(&small, &Limits::default()),
            ArchiveError::MissingPkgInfo
        ));
        let limits = Limits {
            max_signature_size: 64 * 1024,
            max_control_size: 64 * 1024,
            ..Limits::default()
        };
        let endless = empty_blocks_gzip(200_000);
        let error = error_of(&endless, &limits);
        assert!(
            matches!(
                error,
                ArchiveError::CompressedTooLarge {
                    member: Member::Control,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn capped_reader_fails_past_its_limit() {
        let mut exact = CappedReader::new(&[1u8; 10][..], 10);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 10);
        assert_eq!(exact.bytes_read(), 10);

        let mut over = CappedReader::new(&[1u8; 11][..], 10);
        let error = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let inner = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<SizeLimitExceeded>());
        assert_eq!(inner, Some(&SizeLimitExceeded { limit: 10 }));
    }

    fn index_archive(signed: bool, index_tar: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let index_member = gzip(index_tar);
        let mut bytes = Vec::new();
        if signed {
            bytes.extend(gzip(&tar(
                &[(".SIGN.RSA.repo.rsa.pub", b"signature")],
                false,
            )));
        }
        bytes.extend(&index_member);
        (bytes, index_member)
    }

    const INDEX_TEXT: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n\n";

    #[test]
    fn reads_an_index_archive() {
        let index_tar = tar(
            &[
                (DESCRIPTION_ENTRY, b"v3.20.1-1-g0123456"),
                (INDEX_ENTRY, INDEX_TEXT.as_bytes()),
            ],
            true,
        );
        let (bytes, index_member) = index_archive(true, &index_tar);
        let archive = read_index_archive(bytes.as_slice(), &Limits::default()).unwrap();
        assert_eq!(
            archive.signatures,
            vec![SignatureEntry {
                name: ".SIGN.RSA.repo.rsa.pub".to_owned(),
                signature: b"signature".to_vec(),
            }]
        );
        assert_eq!(archive.index, INDEX_TEXT);
        assert_eq!(archive.description.as_deref(), Some("v3.20.1-1-g0123456"));
        assert_eq!(
            archive.digests.sha1,
            <[u8; 20]>::from(Sha1::digest(&index_member))
        );
        assert_eq!(
            archive.digests.sha256,
            <[u8; 32]>::from(Sha256::digest(&index_member))
        );
        assert_eq!(archive.digests.compressed_size, index_member.len() as u64);

        let (unsigned, _) =
            index_archive(false, &tar(&[(INDEX_ENTRY, INDEX_TEXT.as_bytes())], true));
        let archive = read_index_archive(unsigned.as_slice(), &Limits::default()).unwrap();
        assert!(archive.signatures.is_empty());
        assert_eq!(archive.description, None);
        assert_eq!(archive.index, INDEX_TEXT);
    }

    fn check_index(bytes: &[u8], limits: &Limits, expected: &str) {
        let error = read_index_archive(bytes, limits).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn index_archive_errors() {
        let limits = Limits::default();
        let good_tar = tar(&[(INDEX_ENTRY, INDEX_TEXT.as_bytes())], true);
        let (good, _) = index_archive(true, &good_tar);

        check_index(
            &[],
            &limits,
            "index member missing: the stream ends before it",
        );
        let signature_only = gzip(&tar(&[(".SIGN.RSA.repo.rsa.pub", b"s")], false));
        check_index(
            &signature_only,
            &limits,
            "index member missing: the stream ends before it",
        );
        check_index(&good[..good.len() - 2], &limits, "index member truncated");
        check_index(
            &[good.as_slice(), b"x"].concat(),
            &limits,
            &format!(
                "unexpected bytes after the index member at offset {}",
                good.len()
            ),
        );
        let (no_index, _) = index_archive(true, &tar(&[(DESCRIPTION_ENTRY, b"d")], true));
        check_index(&no_index, &limits, "index member has no APKINDEX entry");
        let (hidden, _) = index_archive(true, &tar(&[(".PKGINFO", b""), (INDEX_ENTRY, b"")], true));
        check_index(
            &hidden,
            &limits,
            "unexpected entry `.PKGINFO` in the index member",
        );
        let (twice, _) = index_archive(true, &tar(&[(INDEX_ENTRY, b""), (INDEX_ENTRY, b"")], true));
        check_index(
            &twice,
            &limits,
            "entry `APKINDEX` appears twice in the index member",
        );
        let (binary, _) = index_archive(true, &tar(&[(INDEX_ENTRY, b"\xff\xfe")], true));
        check_index(
            &binary,
            &limits,
            "entry `APKINDEX` in the index member is not UTF-8",
        );

        let mut big_text = INDEX_TEXT.to_owned();
        big_text.push_str(&"x".repeat(3 * MIB as usize));
        let (big, _) = index_archive(true, &tar(&[(INDEX_ENTRY, big_text.as_bytes())], true));
        let small = Limits {
            max_index_size: MIB,
            ..Limits::default()
        };
        check_index(
            &big,
            &small,
            &format!("index member decompresses to more than {MIB} bytes"),
        );
    }
}
