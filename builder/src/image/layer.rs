//! Deterministic layer tars and their digests: [`LayerWriter`] turns [`LayerEntry`] values (and
//! file contents) into a tar stream, and [`LayerSink`] hashes, compresses and measures it.
//!
//! Headers are encoded exactly the way Go's `archive/tar` encodes them when no format is forced,
//! which is what apko (and go-containerregistry) write:
//! - ustar whenever every field fits: a name longer than 100 bytes is split into the ustar
//!   `prefix` and `name` fields when it can be; numbers are zero-padded octal ending in NUL;
//!   `devmajor`/`devminor` are written as zero for everything but devices; the checksum is six
//!   octal digits, NUL, space.
//! - PAX otherwise (a name that cannot be split or is not ASCII, a link target over 100 bytes,
//!   a user or group name over 32 bytes, a uid or gid of 2^21 or more, a size of 8 GiB or more,
//!   an mtime before 1970 or past 2242, and any extended attribute as `SCHILY.xattr.<name>`):
//!   one `x` header named `<dir>/PaxHeaders.0/<base>` with zeroed fields, records sorted by key,
//!   then the main header carrying what fits (ASCII only, truncated, zero for numbers that do not
//!   fit).
//! - Directory names carry no trailing `/`, as in apko's layers (`header.Name` is the walked
//!   path); modes keep only the permission, setuid, setgid and sticky bits (`mode & 0o7777`);
//!   user and group names come from the entry or stay empty; hardlinks are typeflag `1` with
//!   size 0; the archive ends with two zero blocks and no further padding.
//!
//! File contents are streamed through a fixed buffer and must be exactly as long as the entry
//! says: a short or long reader is an error, never a silently truncated entry. After any error
//! the writer refuses further use, since the stream is incomplete.
//!
//! This module deliberately does not decide what goes into a layer, in which order, or whether
//! a path is safe (see `guard`), and never holds a whole layer in memory.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::entry::{EntryKind, LayerEntry};
use super::pgzip::{ParallelGzWriter, PgzipError};
use securebuild_registry::digest::finish_sha256;

/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI media type of a gzip-compressed layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd-compressed layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Prefix of every digest this module produces.
pub use securebuild_registry::digest::SHA256_PREFIX;

/// gzip level used when none is chosen (the usual default of gzip, pigz and Go).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// zstd level used when none is chosen (the zstd command's default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Whether directory names end in `/` in headers. apko writes them without.
const DIRECTORY_TRAILING_SLASH: bool = false;

/// Size of a tar block.
const BLOCK_SIZE: usize = 512;
/// Buffer used to copy file contents.
const COPY_BUFFER_SIZE: usize = 64 * 1024;
/// Largest PAX extended header Go's `archive/tar` writes (`maxSpecialFileSize`).
const MAX_PAX_HEADER_SIZE: usize = 1 << 20;

/// Field widths of the ustar header.
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
const OWNER_NAME_LEN: usize = 32;
/// Width of the mode, uid, gid, devmajor and devminor fields.
const SMALL_NUMBER_LEN: usize = 8;
/// Width of the size and mtime fields.
const LARGE_NUMBER_LEN: usize = 12;

/// Byte ranges of the ustar header fields.
const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHECKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const UNAME: std::ops::Range<usize> = 265..297;
const GNAME: std::ops::Range<usize> = 297..329;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

/// ustar magic and version (POSIX, also used for PAX).
const USTAR_MAGIC: &[u8; 6] = b"ustar\0";
const USTAR_VERSION: &[u8; 2] = b"00";

/// Typeflags.
const TYPE_REGULAR: u8 = b'0';
const TYPE_HARDLINK: u8 = b'1';
const TYPE_SYMLINK: u8 = b'2';
const TYPE_CHAR_DEVICE: u8 = b'3';
const TYPE_DIRECTORY: u8 = b'5';
const TYPE_FIFO: u8 = b'6';
const TYPE_PAX_HEADER: u8 = b'x';

/// PAX record keys.
const PAX_PATH: &str = "path";
const PAX_LINKPATH: &str = "linkpath";
const PAX_UNAME: &str = "uname";
const PAX_GNAME: &str = "gname";
const PAX_UID: &str = "uid";
const PAX_GID: &str = "gid";
const PAX_SIZE: &str = "size";
const PAX_MTIME: &str = "mtime";
/// Prefix of PAX records that carry extended attributes.
pub const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Directory component inserted into the name of a PAX extended header.
const PAX_HEADER_DIR: &str = "PaxHeaders.0";

/// Everything that can go wrong while writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The entry path is empty or contains a NUL byte.
    #[error("entry path {path:?} cannot be stored in a tar header")]
    InvalidPath {
        /// The path.
        path: String,
    },
    /// A link target, user name or group name contains a NUL byte.
    #[error("the {field} of {path:?} contains a NUL byte")]
    NulInField {
        /// The entry path.
        path: String,
        /// Which field: `link target`, `user name` or `group name`.
        field: &'static str,
    },
    /// An extended attribute name is empty or contains `=` or NUL.
    #[error("extended attribute {name:?} of {path:?} cannot be stored as a PAX record")]
    InvalidXattrName {
        /// The entry path.
        path: String,
        /// The attribute name.
        name: String,
    },
    /// A PAX record key is empty or contains `=` or NUL.
    #[error("invalid PAX record key {key:?} on {path:?}")]
    InvalidPaxKey {
        /// The entry path.
        path: String,
        /// The record key.
        key: String,
    },
    /// A device number does not fit the seven octal digits of a ustar header.
    #[error("device numbers {major}:{minor} of {path:?} do not fit a tar header")]
    DeviceNumberTooLarge {
        /// The entry path.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// The PAX records of an entry exceed 1 MiB.
    #[error("PAX records of {path:?} take {size} bytes, over the limit of 1 MiB")]
    PaxHeaderTooLarge {
        /// The entry path.
        path: String,
        /// Size of the records.
        size: usize,
    },
    /// A regular file with content was given without a content reader.
    #[error("{path:?} is a file of {size} bytes but no content was given")]
    MissingContent {
        /// The entry path.
        path: String,
        /// Its declared size.
        size: u64,
    },
    /// Content was given for an entry that is not a regular file.
    #[error("{path:?} is not a regular file and cannot take content")]
    NotARegularFile {
        /// The entry path.
        path: String,
    },
    /// The content reader ended before the declared size.
    #[error("content of {path:?} ended after {actual} of {expected} bytes")]
    ContentTooShort {
        /// The entry path.
        path: String,
        /// Declared size.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
    /// The content reader had more bytes than the declared size.
    #[error("content of {path:?} is longer than its declared {expected} bytes")]
    ContentTooLong {
        /// The entry path.
        path: String,
        /// Declared size.
        expected: u64,
    },
    /// Reading file content failed.
    #[error("reading content of {path:?} failed")]
    ReadContent {
        /// The entry path.
        path: String,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// Writing an entry to the output failed.
    #[error("writing entry {path:?} failed")]
    WriteEntry {
        /// The entry path.
        path: String,
        /// The output's error.
        #[source]
        source: io::Error,
    },
    /// Writing the end-of-archive blocks failed.
    #[error("writing the end of the archive failed")]
    WriteTrailer(#[source] io::Error),
    /// An earlier error left the stream incomplete.
    #[error("the layer stream is broken by an earlier error")]
    Broken,
    /// The gzip stage failed.
    #[error("gzip compression failed")]
    Gzip(#[source] PgzipError),
    /// The zstd level is outside what the library accepts.
    #[error("zstd level {level} is out of range {min}..={max}")]
    InvalidZstdLevel {
        /// The rejected level.
        level: i32,
        /// Lowest accepted level.
        min: i32,
        /// Highest accepted level.
        max: i32,
    },
    /// The zstd stage failed.
    #[error("zstd compression failed")]
    Zstd(#[source] io::Error),
    /// Flushing the final output failed.
    #[error("flushing the layer output failed")]
    Flush(#[source] io::Error),
}

/// Writes [`LayerEntry`] values as a deterministic tar stream, in the order given.
pub struct LayerWriter<W: Write> {
    out: W,
    buffer: Vec<u8>,
    broken: bool,
}

impl<W: Write> LayerWriter<W> {
    /// A writer emitting the tar stream into `out` (typically a [`LayerSink`]).
    pub fn new(out: W) -> Self {
        Self {
            out,
            buffer: Vec::new(),
            broken: false,
        }
    }

    /// Appends an entry that has no content: a directory, symlink, hardlink, device, FIFO, or an
    /// empty regular file.
    pub fn append(&mut self, entry: &LayerEntry) -> Result<(), LayerError> {
        if let EntryKind::File { size } = entry.kind
            && size > 0
        {
            return Err(LayerError::MissingContent {
                path: entry.path.clone(),
                size,
            });
        }
        self.append_file(entry, io::empty())
    }

    /// Appends a regular file whose content is read from `content`, which must yield exactly
    /// the entry's size. Other kinds are accepted only with an empty reader.
    pub fn append_file<R: Read>(
        &mut self,
        entry: &LayerEntry,
        content: R,
    ) -> Result<(), LayerError> {
        self.append_file_with_records(entry, &BTreeMap::new(), content)
    }

    /// Like [`LayerWriter::append_file`], with extra PAX records for the entry (e.g. apk's
    /// `APK-TOOLS.checksum.SHA1`); records force a PAX header, as Go's `PAXRecords` do.
    pub fn append_file_with_records<R: Read>(
        &mut self,
        entry: &LayerEntry,
        records: &BTreeMap<String, Vec<u8>>,
        mut content: R,
    ) -> Result<(), LayerError> {
        if self.broken {
            return Err(LayerError::Broken);
        }
        let header = encode_header(entry, records)?;
        let size = match entry.kind {
            EntryKind::File { size } => size,
            _ => {
                if !at_end(&mut content, &entry.path)? {
                    return Err(LayerError::NotARegularFile {
                        path: entry.path.clone(),
                    });
                }
                0
            }
        };
        let result = self.write_entry(entry, &header, size, &mut content);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Writes the end-of-archive marker, flushes and returns the output.
    pub fn finish(mut self) -> Result<W, LayerError> {
        if self.broken {
            return Err(LayerError::Broken);
        }
        self.out
            .write_all(&[0u8; 2 * BLOCK_SIZE])
            .map_err(LayerError::WriteTrailer)?;
        self.out.flush().map_err(LayerError::WriteTrailer)?;
        Ok(self.out)
    }

    /// Flushes and returns the output without the end-of-archive marker: apk's signature and
    /// control members are tars cut short this way, so that the concatenated members read as one
    /// archive.
    pub fn finish_without_trailer(mut self) -> Result<W, LayerError> {
        if self.broken {
            return Err(LayerError::Broken);
        }
        self.out.flush().map_err(LayerError::WriteTrailer)?;
        Ok(self.out)
    }

    /// The output, for inspection.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn write_entry<R: Read>(
        &mut self,
        entry: &LayerEntry,
        header: &[u8],
        size: u64,
        content: &mut R,
    ) -> Result<(), LayerError> {
        let write_failed = |source| LayerError::WriteEntry {
            path: entry.path.clone(),
            source,
        };
        self.out.write_all(header).map_err(write_failed)?;
        if size == 0 {
            return if at_end(content, &entry.path)? {
                Ok(())
            } else {
                Err(LayerError::ContentTooLong {
                    path: entry.path.clone(),
                    expected: 0,
                })
            };
        }
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER_SIZE];
        }
        let mut copied: u64 = 0;
        while copied < size {
            let want = usize::try_from(size - copied)
                .unwrap_or(usize::MAX)
                .min(self.buffer.len());
            let read = match content.read(&mut self.buffer[..want]) {
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::ReadContent {
                        path: entry.path.clone(),
                        source,
                    });
                }
            };
            if read == 0 {
                return Err(LayerError::ContentTooShort {
                    path: entry.path.clone(),
                    expected: size,
                    actual: copied,
                });
            }
            self.out
                .write_all(&self.buffer[..read])
                .map_err(write_failed)?;
            copied += read as u64;
        }
        if !at_end(content, &entry.path)? {
            return Err(LayerError::ContentTooLong {
                path: entry.path.clone(),
                expected: size,
            });
        }
        let padding = padding_for(size);
        self.out
            .write_all(&[0u8; BLOCK_SIZE][..padding])
            .map_err(write_failed)?;
        Ok(())
    }
}

/// Whether `reader` has nothing left.
fn at_end<R: Read>(reader: &mut R, path: &str) -> Result<bool, LayerError> {
    let mut probe = [0u8; 1];
    loop {
        match reader.read(&mut probe) {
            Ok(read) => return Ok(read == 0),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(LayerError::ReadContent {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Zero bytes needed after `size` bytes of content to reach a block boundary.
fn padding_for(size: u64) -> usize {
    let remainder = (size % BLOCK_SIZE as u64) as usize;
    if remainder == 0 {
        0
    } else {
        BLOCK_SIZE - remainder
    }
}

/// The header fields of an entry, before encoding.
struct HeaderFields<'a> {
    name: String,
    typeflag: u8,
    link: &'a str,
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    uname: &'a str,
    gname: &'a str,
    devmajor: u64,
    devminor: u64,
}

/// The header block(s) for `entry`: a ustar header, or a PAX header, its records and the main
/// header.
fn encode_header(
    entry: &LayerEntry,
    records: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, LayerError> {
    let fields = header_fields(entry)?;
    let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ustar = true;
    for (key, value) in records {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(LayerError::InvalidPaxKey {
                path: entry.path.clone(),
                key: key.clone(),
            });
        }
        pax.insert(key.clone(), value.clone());
        ustar = false;
    }

    if !fields.name.is_ascii() || fields.name.len() > NAME_LEN {
        pax.insert(PAX_PATH.into(), fields.name.clone().into_bytes());
        if split_ustar_path(&fields.name).is_none() {
            ustar = false;
        }
    }
    let long_strings = [
        (fields.link, NAME_LEN, PAX_LINKPATH),
        (fields.uname, OWNER_NAME_LEN, PAX_UNAME),
        (fields.gname, OWNER_NAME_LEN, PAX_GNAME),
    ];
    for (value, width, key) in long_strings {
        if !value.is_ascii() || value.len() > width {
            pax.insert(key.into(), value.as_bytes().to_vec());
            ustar = false;
        }
    }
    let numbers = [
        (fields.uid, SMALL_NUMBER_LEN, PAX_UID),
        (fields.gid, SMALL_NUMBER_LEN, PAX_GID),
        (fields.size, LARGE_NUMBER_LEN, PAX_SIZE),
    ];
    for (value, width, key) in numbers {
        if !fits_octal(value, width) {
            pax.insert(key.into(), value.to_string().into_bytes());
            ustar = false;
        }
    }
    if !u64::try_from(fields.mtime).is_ok_and(|mtime| fits_octal(mtime, LARGE_NUMBER_LEN)) {
        pax.insert(PAX_MTIME.into(), fields.mtime.to_string().into_bytes());
        ustar = false;
    }
    for (name, value) in &entry.xattrs {
        pax.insert(format!("{PAX_XATTR_PREFIX}{name}"), value.clone());
        ustar = false;
    }

    if ustar {
        return Ok(ustar_block(&fields).to_vec());
    }

    let mut records = Vec::new();
    for (key, value) in &pax {
        records.extend_from_slice(&pax_record(key, value));
    }
    if records.len() > MAX_PAX_HEADER_SIZE {
        return Err(LayerError::PaxHeaderTooLarge {
            path: entry.path.clone(),
            size: records.len(),
        });
    }
    let mut out = Vec::with_capacity(3 * BLOCK_SIZE + records.len());
    out.extend_from_slice(&pax_header_block(&fields.name, records.len() as u64));
    out.extend_from_slice(&records);
    out.extend(std::iter::repeat_n(0u8, padding_for(records.len() as u64)));
    out.extend_from_slice(&pax_main_block(&fields));
    Ok(out)
}

/// Validates `entry` and gathers the values its header will carry.
fn header_fields(entry: &LayerEntry) -> Result<HeaderFields<'_>, LayerError> {
    let path = &entry.path;
    if path.is_empty() || path.contains('\0') {
        return Err(LayerError::InvalidPath { path: path.clone() });
    }
    let nul_in = |field: &'static str| LayerError::NulInField {
        path: path.clone(),
        field,
    };
    let uname = entry.uname.as_deref().unwrap_or("");
    let gname = entry.gname.as_deref().unwrap_or("");
    if uname.contains('\0') {
        return Err(nul_in("user name"));
    }
    if gname.contains('\0') {
        return Err(nul_in("group name"));
    }
    for name in entry.xattrs.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(LayerError::InvalidXattrName {
                path: path.clone(),
                name: name.clone(),
            });
        }
    }
    let mut name = path.clone();
    let (typeflag, link, size, devmajor, devminor) = match &entry.kind {
        EntryKind::Directory => {
            if DIRECTORY_TRAILING_SLASH {
                name.push('/');
            }
            (TYPE_DIRECTORY, "", 0, 0, 0)
        }
        EntryKind::File { size } => (TYPE_REGULAR, "", *size, 0, 0),
        EntryKind::Symlink { target } => (TYPE_SYMLINK, target.as_str(), 0, 0, 0),
        EntryKind::Hardlink { target } => (TYPE_HARDLINK, target.as_str(), 0, 0, 0),
        EntryKind::CharDevice { major, minor } => {
            let (wide_major, wide_minor) = (u64::from(*major), u64::from(*minor));
            if !fits_octal(wide_major, SMALL_NUMBER_LEN)
                || !fits_octal(wide_minor, SMALL_NUMBER_LEN)
            {
                return Err(LayerError::DeviceNumberTooLarge {
                    path: path.clone(),
                    major: *major,
                    minor: *minor,
                });
            }
            (TYPE_CHAR_DEVICE, "", 0, wide_major, wide_minor)
        }
        EntryKind::Fifo => (TYPE_FIFO, "", 0, 0, 0),
    };
    if link.contains('\0') {
        return Err(nul_in("link target"));
    }
    Ok(HeaderFields {
        name,
        typeflag,
        link,
        mode: u64::from(entry.mode & 0o7777),
        uid: u64::from(entry.uid),
        gid: u64::from(entry.gid),
        size,
        mtime: entry.mtime,
        uname,
        gname,
        devmajor,
        devminor,
    })
}

/// A complete ustar header (every field is known to fit).
fn ustar_block(fields: &HeaderFields<'_>) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    let (prefix, name) = split_ustar_path(&fields.name).unwrap_or(("", fields.name.as_str()));
    put_common(&mut block, fields, name.as_bytes(), |s| {
        s.as_bytes().to_vec()
    });
    put_string(&mut block[PREFIX], prefix.as_bytes());
    seal(&mut block);
    block
}

/// The main header following PAX records: ASCII-only, truncated strings and zero for numbers
/// that do not fit, as Go writes it.
fn pax_main_block(fields: &HeaderFields<'_>) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    let name = ascii_only(&fields.name);
    put_common(&mut block, fields, &name, ascii_only);
    seal(&mut block);
    block
}

/// Fills every field but the prefix, magic and checksum.
fn put_common(
    block: &mut [u8; BLOCK_SIZE],
    fields: &HeaderFields<'_>,
    name: &[u8],
    text: fn(&str) -> Vec<u8>,
) {
    block[TYPEFLAG] = fields.typeflag;
    put_string(&mut block[NAME], name);
    put_string(&mut block[LINKNAME], &text(fields.link));
    put_octal(&mut block[MODE], fields.mode);
    put_octal(&mut block[UID], fields.uid);
    put_octal(&mut block[GID], fields.gid);
    put_octal(&mut block[SIZE], fields.size);
    put_octal(&mut block[MTIME], u64::try_from(fields.mtime).unwrap_or(0));
    put_string(&mut block[UNAME], &text(fields.uname));
    put_string(&mut block[GNAME], &text(fields.gname));
    put_octal(&mut block[DEVMAJOR], fields.devmajor);
    put_octal(&mut block[DEVMINOR], fields.devminor);
}

/// The `x` header announcing `records_len` bytes of PAX records for the entry `name`.
fn pax_header_block(name: &str, records_len: u64) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    let (dir, base) = match name.rfind('/') {
        Some(at) => (&name[..at], &name[at + 1..]),
        None => ("", name),
    };
    let mut header_name = String::new();
    for part in [dir, PAX_HEADER_DIR, base] {
        if part.is_empty() {
            continue;
        }
        if !header_name.is_empty() {
            header_name.push('/');
        }
        header_name.push_str(part);
    }
    let mut header_name = ascii_only(&header_name);
    header_name.truncate(NAME_LEN);
    while header_name.last() == Some(&b'/') {
        header_name.pop();
    }
    block[TYPEFLAG] = TYPE_PAX_HEADER;
    put_string(&mut block[NAME], &header_name);
    put_octal(&mut block[MODE], 0);
    put_octal(&mut block[UID], 0);
    put_octal(&mut block[GID], 0);
    put_octal(&mut block[SIZE], records_len);
    put_octal(&mut block[MTIME], 0);
    seal(&mut block);
    block
}

/// Sets the magic and version and computes the checksum.
fn seal(block: &mut [u8; BLOCK_SIZE]) {
    block[MAGIC].copy_from_slice(USTAR_MAGIC);
    block[VERSION].copy_from_slice(USTAR_VERSION);
    block[CHECKSUM].fill(b' ');
    let sum: u64 = block.iter().map(|&byte| u64::from(byte)).sum();
    // Six octal digits, NUL, space: the layout GNU tar and Go use.
    put_octal(&mut block[CHECKSUM.start..CHECKSUM.end - 1], sum);
    block[CHECKSUM.end - 1] = b' ';
}

/// Writes `value` into a string field: truncated when too long, NUL-terminated when shorter.
/// A truncation that would leave a trailing `/` ends the field before the slashes instead, so
/// no reader mistakes a file for a directory (Go's rule).
fn put_string(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
    if value.len() < field.len() {
        field[value.len()] = 0;
    } else if value.len() > field.len() && field.last() == Some(&b'/') {
        let kept = value[..field.len() - 1]
            .iter()
            .rposition(|&byte| byte != b'/')
            .map_or(0, |at| at + 1);
        field[kept] = 0;
    }
}

/// Writes `value` as zero-padded octal leaving room for a final NUL; zero when it does not fit.
fn put_octal(field: &mut [u8], value: u64) {
    let value = if fits_octal(value, field.len()) {
        value
    } else {
        0
    };
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    put_string(field, digits.as_bytes());
}

/// Whether `value` fits a numeric field of `width` bytes (octal digits plus a NUL).
fn fits_octal(value: u64, width: usize) -> bool {
    let bits = (width - 1) * 3;
    bits >= 64 || value < (1u64 << bits)
}

/// Splits a long ASCII name into ustar `prefix` and `name` at a `/`, if both parts fit.
fn split_ustar_path(name: &str) -> Option<(&str, &str)> {
    if name.len() <= NAME_LEN || !name.is_ascii() {
        return None;
    }
    let mut search_end = name.len();
    if search_end > PREFIX_LEN + 1 {
        search_end = PREFIX_LEN + 1;
    } else if name.ends_with('/') {
        search_end -= 1;
    }
    let at = name[..search_end].rfind('/')?;
    let suffix_len = name.len() - at - 1;
    if at == 0 || suffix_len > NAME_LEN || suffix_len == 0 || at > PREFIX_LEN {
        return None;
    }
    Some((&name[..at], &name[at + 1..]))
}

/// `value` without its non-ASCII characters (Go's `toASCII`).
fn ascii_only(value: &str) -> Vec<u8> {
    value.bytes().filter(u8::is_ascii).collect()
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut length = base + base.to_string().len();
    if length.to_string().len() + base != length {
        length = length.to_string().len() + base;
    }
    let mut record = Vec::with_capacity(length);
    record.extend_from_slice(length.to_string().as_bytes());
    record.push(b' ');
    record.extend_from_slice(key.as_bytes());
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression: the blob is the tar itself.
    None,
    /// gzip through the deterministic parallel compressor, level 0..=9.
    Gzip {
        /// Deflate level.
        level: u32,
    },
    /// zstd (single-threaded libzstd, content checksum on).
    Zstd {
        /// zstd level.
        level: i32,
    },
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(&self) -> &'static str {
        match self {
            Self::None => MEDIA_TYPE_LAYER_TAR,
            Self::Gzip { .. } => MEDIA_TYPE_LAYER_GZIP,
            Self::Zstd { .. } => MEDIA_TYPE_LAYER_ZSTD,
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

/// Identity of a finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// `sha256:<hex>` of the uncompressed tar (the image config's diff ID).
    pub diff_id: String,
    /// `sha256:<hex>` of the blob as stored (the manifest's layer digest).
    pub digest: String,
    /// Size of the blob as stored, in bytes.
    pub size: u64,
    /// Size of the uncompressed tar, in bytes.
    pub uncompressed_size: u64,
    /// OCI media type of the blob.
    pub media_type: &'static str,
}

/// A `Write` that counts and hashes what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compression stage of a sink.
enum Stage<W: Write> {
    Plain(HashingWriter<W>),
    Gzip(Box<ParallelGzWriter<HashingWriter<W>>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, HashingWriter<W>>>),
}

/// Receives an uncompressed layer tar: hashes it (diff ID), compresses it, and hashes and
/// counts the compressed blob on its way to the output.
pub struct LayerSink<W: Write> {
    diff_hasher: Sha256,
    uncompressed_size: u64,
    media_type: &'static str,
    stage: Stage<W>,
}

impl<W: Write> LayerSink<W> {
    /// A sink compressing with `compression`, using every available core for gzip (the output
    /// does not depend on the number of cores).
    pub fn new(out: W, compression: Compression) -> Result<Self, LayerError> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with_threads(out, compression, threads)
    }

    /// A sink compressing with `compression` on `threads` threads (gzip only).
    pub fn with_threads(
        out: W,
        compression: Compression,
        threads: usize,
    ) -> Result<Self, LayerError> {
        let hashing = HashingWriter {
            inner: out,
            hasher: Sha256::new(),
            size: 0,
        };
        let stage = match compression {
            Compression::None => Stage::Plain(hashing),
            Compression::Gzip { level } => Stage::Gzip(Box::new(
                ParallelGzWriter::new(hashing, level, threads).map_err(LayerError::Gzip)?,
            )),
            Compression::Zstd { level } => {
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    return Err(LayerError::InvalidZstdLevel {
                        level,
                        min: *range.start(),
                        max: *range.end(),
                    });
                }
                let mut encoder =
                    zstd::stream::write::Encoder::new(hashing, level).map_err(LayerError::Zstd)?;
                encoder.include_checksum(true).map_err(LayerError::Zstd)?;
                Stage::Zstd(Box::new(encoder))
            }
        };
        Ok(Self {
            diff_hasher: Sha256::new(),
            uncompressed_size: 0,
            media_type: compression.media_type(),
            stage,
        })
    }

    /// Finishes compression and returns the layer's digests; the output is flushed and dropped.
    pub fn finish(self) -> Result<LayerDigests, LayerError> {
        self.finish_into_inner().map(|(digests, _)| digests)
    }

    /// Finishes compression and returns the layer's digests and the flushed output.
    pub fn finish_into_inner(self) -> Result<(LayerDigests, W), LayerError> {
        let mut hashing = match self.stage {
            Stage::Plain(hashing) => hashing,
            Stage::Gzip(gzip) => gzip.finish().map_err(LayerError::Gzip)?,
            Stage::Zstd(zstd) => zstd.finish().map_err(LayerError::Zstd)?,
        };
        hashing.flush().map_err(LayerError::Flush)?;
        let digests = LayerDigests {
            diff_id: finish_sha256(self.diff_hasher),
            digest: finish_sha256(hashing.hasher),
            size: hashing.size,
            uncompressed_size: self.uncompressed_size,
            media_type: self.media_type,
        };
        Ok((digests, hashing.inner))
    }
}

impl<W: Write> Write for LayerSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match &mut self.stage {
            Stage::Plain(hashing) => hashing.write(buf)?,
            Stage::Gzip(gzip) => gzip.write(buf)?,
            Stage::Zstd(zstd) => zstd.write(buf)?,
        };
        self.diff_hasher.update(&buf[..written]);
        self.uncompressed_size += written as u64;
        Ok(written)
    }

    /// Flushes what the compressor has completed; never changes the output bytes.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stage {
            Stage::Plain(hashing) => hashing.flush(),
            Stage::Gzip(gzip) => gzip.flush(),
            // A zstd flush would end a block early and change the output, so only the
            // destination is flushed.
            Stage::Zstd(zstd) => zstd.get_mut().flush(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::process::Command;

    const ENTRY_MTIME: i64 = 1_700_000_000;

    fn with_kind(path: &str, kind: EntryKind, mode: u32) -> LayerEntry {
        let mut entry = LayerEntry::file(path, 0, mode, ENTRY_MTIME);
        entry.kind = kind;
        entry
    }

    fn owned(mut entry: LayerEntry, uid: u32, gid: u32, user: &str, group: &str) -> LayerEntry {
        entry.uid = uid;
        entry.gid = gid;
        entry.uname = Some(user.into());
        entry.gname = Some(group.into());
        entry
    }

    fn file(path: &str, content: &[u8], mode: u32) -> (LayerEntry, Vec<u8>) {
        (
            LayerEntry::file(path, content.len() as u64, mode, ENTRY_MTIME),
            content.to_vec(),
        )
    }

    fn no_content(entry: LayerEntry) -> (LayerEntry, Vec<u8>) {
        (entry, Vec::new())
    }

    fn long_splittable_name() -> String {
        format!("usr/share/{}/{}", "d".repeat(60), "f".repeat(60))
    }

    fn long_unsplittable_name() -> String {
        format!("usr/{}", "n".repeat(120))
    }

    fn long_link_target() -> String {
        "x/".repeat(60) + "end"
    }

    /// One entry of every kind and every header corner.
    fn sample_entries() -> Vec<(LayerEntry, Vec<u8>)> {
        let mut ping = file("usr/bin/ping", b"\x7fELF ping", 0o755);
        ping.0.xattrs.insert(
            "security.capability".into(),
            vec![1, 0, 0, 2, 0, 0x20, 0, 0],
        );
        ping.0.xattrs.insert("user.note".into(), b"hi".to_vec());
        let mut old = file("var/old", b"old", 0o644);
        old.0.mtime = -86_400;
        let mut far = file("var/far", b"far", 0o644);
        far.0.mtime = 1 << 40;
        vec![
            no_content(LayerEntry::directory("etc", 0o755, ENTRY_MTIME)),
            {
                let (entry, content) =
                    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
                (owned(entry, 0, 0, "root", "root"), content)
            },
            no_content(LayerEntry::file("etc/empty", 0, 0o600, ENTRY_MTIME)),
            file("etc/block", &[7u8; 512], 0o644),
            file("etc/blockplus", &[9u8; 1025], 0o644),
            file("usr/bin/su", b"\x7fELF su", 0o4755),
            no_content(owned(
                LayerEntry::directory("srv/shared", 0o2755, ENTRY_MTIME),
                1000,
                1001,
                "build",
                "builders",
            )),
            no_content(LayerEntry::directory("tmp", 0o1777, ENTRY_MTIME)),
            no_content(LayerEntry::symlink("bin/sh", "/bin/busybox", ENTRY_MTIME)),
            no_content(with_kind(
                "usr/bin/su-hardlink",
                EntryKind::Hardlink {
                    target: "usr/bin/su".into(),
                },
                0o4755,
            )),
            no_content(with_kind(
                "dev/null",
                EntryKind::CharDevice { major: 1, minor: 3 },
                0o666,
            )),
            no_content(with_kind("run/initctl", EntryKind::Fifo, 0o600)),
            file(&long_splittable_name(), b"split", 0o644),
            file(&long_unsplittable_name(), b"pax", 0o644),
            no_content(LayerEntry::symlink(
                "usr/lib/long-link",
                long_link_target(),
                ENTRY_MTIME,
            )),
            ping,
            {
                let (entry, content) = file("home/big/id", b"big", 0o640);
                (owned(entry, 3_000_000, 4_000_000, "big", "big"), content)
            },
            file("usr/share/naïve.txt", b"utf8", 0o644),
            {
                let (entry, content) = file("home/long-owner", b"x", 0o644);
                (
                    owned(entry, 5, 6, &"u".repeat(40), &"g".repeat(33)),
                    content,
                )
            },
            old,
            far,
        ]
    }

    fn write_tar(entries: &[(LayerEntry, Vec<u8>)]) -> Vec<u8> {
        let mut writer = LayerWriter::new(Vec::new());
        for (entry, content) in entries {
            writer.append_file(entry, content.as_slice()).unwrap();
        }
        writer.finish().unwrap()
    }

    fn expected_typeflag(kind: &EntryKind) -> tar::EntryType {
        match kind {
            EntryKind::Directory => tar::EntryType::Directory,
            EntryKind::File { .. } => tar::EntryType::Regular,
            EntryKind::Symlink { .. } => tar::EntryType::Symlink,
            EntryKind::Hardlink { .. } => tar::EntryType::Link,
            EntryKind::CharDevice { .. } => tar::EntryType::Char,
            EntryKind::Fifo => tar::EntryType::Fifo,
        }
    }

    #[test]
    fn tar_crate_reads_back_every_header_field() {
        let entries = sample_entries();
        let bytes = write_tar(&entries);
        assert_eq!(bytes.len() % BLOCK_SIZE, 0);
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut read_back = archive.entries().unwrap();
        for (entry, content) in &entries {
            let mut found = read_back
                .next()
                .unwrap_or_else(|| panic!("{} missing", entry.path))
                .unwrap();
            let path = entry.path.as_str();
            let pax: BTreeMap<String, Vec<u8>> = found
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|ext| ext.unwrap())
                .map(|ext| (ext.key().unwrap().to_owned(), ext.value_bytes().to_vec()))
                .collect();
            assert_eq!(found.path().unwrap().to_str().unwrap(), path);
            let header = found.header().clone();
            assert_eq!(
                header.entry_type(),
                expected_typeflag(&entry.kind),
                "{path}"
            );
            assert_eq!(header.mode().unwrap(), entry.mode, "{path}");
            assert!(header.as_ustar().is_some(), "{path}: ustar magic");
            let uid = match pax.get(PAX_UID) {
                Some(value) => String::from_utf8(value.clone()).unwrap().parse().unwrap(),
                None => header.uid().unwrap(),
            };
            let gid = match pax.get(PAX_GID) {
                Some(value) => String::from_utf8(value.clone()).unwrap().parse().unwrap(),
                None => header.gid().unwrap(),
            };
            assert_eq!(
                (uid, gid),
                (u64::from(entry.uid), u64::from(entry.gid)),
                "{path}"
            );
            let uname = pax
                .get(PAX_UNAME)
                .cloned()
                .unwrap_or_else(|| header.username_bytes().unwrap_or_default().to_vec());
            let gname = pax
                .get(PAX_GNAME)
                .cloned()
                .unwrap_or_else(|| header.groupname_bytes().unwrap_or_default().to_vec());
            assert_eq!(
                uname,
                entry.uname.clone().unwrap_or_default().into_bytes(),
                "{path}"
            );
            assert_eq!(
                gname,
                entry.gname.clone().unwrap_or_default().into_bytes(),
                "{path}"
            );
            let mtime: i64 = match pax.get(PAX_MTIME) {
                Some(value) => String::from_utf8(value.clone()).unwrap().parse().unwrap(),
                None => header.mtime().unwrap() as i64,
            };
            assert_eq!(mtime, entry.mtime, "{path}");
            let link = found
                .link_name()
                .unwrap()
                .map(|l| l.to_str().unwrap().to_owned());
            match &entry.kind {
                EntryKind::Symlink { target } | EntryKind::Hardlink { target } => {
                    assert_eq!(link.as_deref(), Some(target.as_str()), "{path}")
                }
                _ => assert_eq!(link, None, "{path}"),
            }
            let (major, minor) = match entry.kind {
                EntryKind::CharDevice { major, minor } => (major, minor),
                _ => (0, 0),
            };
            assert_eq!(header.device_major().unwrap(), Some(major), "{path}");
            assert_eq!(header.device_minor().unwrap(), Some(minor), "{path}");
            let xattrs: BTreeMap<String, Vec<u8>> = pax
                .iter()
                .filter_map(|(key, value)| {
                    key.strip_prefix(PAX_XATTR_PREFIX)
                        .map(|name| (name.to_owned(), value.clone()))
                })
                .collect();
            assert_eq!(xattrs, entry.xattrs, "{path}");
            let mut data = Vec::new();
            found.read_to_end(&mut data).unwrap();
            assert_eq!(&data, content, "{path}");
        }
        assert!(read_back.next().is_none());
    }

    /// Offsets of each entry's main header, found by walking the raw stream.
    fn main_headers(bytes: &[u8]) -> Vec<(usize, Option<usize>)> {
        let mut found = Vec::new();
        let mut at = 0;
        let mut pending_pax = None;
        while at + BLOCK_SIZE <= bytes.len() && bytes[at..at + BLOCK_SIZE] != [0u8; BLOCK_SIZE] {
            let block = &bytes[at..at + BLOCK_SIZE];
            let size_field = std::str::from_utf8(&block[SIZE.start..SIZE.end - 1]).unwrap();
            let size = usize::from_str_radix(size_field, 8).unwrap();
            let flag = block[TYPEFLAG];
            let data_blocks = if flag == TYPE_REGULAR || flag == TYPE_PAX_HEADER {
                size.div_ceil(BLOCK_SIZE)
            } else {
                0
            };
            if flag == TYPE_PAX_HEADER {
                pending_pax = Some(at);
            } else {
                found.push((at, pending_pax.take()));
            }
            at += BLOCK_SIZE * (1 + data_blocks);
        }
        found
    }

    #[test]
    fn raw_header_layout_matches_go_archive_tar() {
        let entries = sample_entries();
        let bytes = write_tar(&entries);
        let headers = main_headers(&bytes);
        assert_eq!(headers.len(), entries.len());
        for ((entry, _), (at, pax_at)) in entries.iter().zip(&headers) {
            let block = &bytes[*at..*at + BLOCK_SIZE];
            let path = &entry.path;
            assert_eq!(&block[MAGIC], USTAR_MAGIC, "{path}");
            assert_eq!(&block[VERSION], USTAR_VERSION, "{path}");
            assert_eq!(block[CHECKSUM.end - 2], 0, "{path}: checksum NUL");
            assert_eq!(block[CHECKSUM.end - 1], b' ', "{path}: checksum space");
            assert_eq!(
                &block[MODE],
                format!("{:07o}\0", entry.mode).as_bytes(),
                "{path}"
            );
            if !matches!(entry.kind, EntryKind::CharDevice { .. }) {
                assert_eq!(&block[DEVMAJOR], b"0000000\0", "{path}");
                assert_eq!(&block[DEVMINOR], b"0000000\0", "{path}");
            }
            if entry.kind == EntryKind::Directory {
                let name_end = block[NAME].iter().position(|&b| b == 0).unwrap();
                assert_eq!(
                    &block[..name_end],
                    path.as_bytes(),
                    "{path}: no trailing slash"
                );
            }
            if let Some(pax_at) = pax_at {
                let pax_block = &bytes[*pax_at..*pax_at + BLOCK_SIZE];
                let name_end = pax_block[NAME]
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(NAME_LEN);
                let name = std::str::from_utf8(&pax_block[..name_end]).unwrap();
                assert!(
                    name.contains("PaxHeaders.0"),
                    "{path}: pax header named {name}"
                );
                assert_eq!(&pax_block[MODE], b"0000000\0");
                assert_eq!(&pax_block[MTIME], b"00000000000\0");
                assert_eq!(&pax_block[UNAME], &[0u8; 32]);
                assert_eq!(&pax_block[DEVMAJOR], &[0u8; 8]);
            }
        }
        let is_pax = |index: usize| headers[index].1.is_some();
        let index_of = |path: &str| entries.iter().position(|(e, _)| e.path == path).unwrap();
        assert!(!is_pax(index_of("etc/passwd")));
        assert!(
            !is_pax(index_of(&long_splittable_name())),
            "splittable names stay ustar"
        );
        for pax_path in [
            long_unsplittable_name(),
            "usr/lib/long-link".into(),
            "usr/bin/ping".into(),
            "home/big/id".into(),
            "usr/share/naïve.txt".into(),
            "home/long-owner".into(),
            "var/old".into(),
            "var/far".into(),
        ] {
            assert!(is_pax(index_of(&pax_path)), "{pax_path} needs PAX");
        }
        let split = &bytes[headers[index_of(&long_splittable_name())].0..][..BLOCK_SIZE];
        let prefix_end = split[PREFIX].iter().position(|&b| b == 0).unwrap();
        assert_eq!(
            &split[PREFIX][..prefix_end],
            format!("usr/share/{}", "d".repeat(60)).as_bytes()
        );
        assert_eq!(bytes[bytes.len() - 2 * BLOCK_SIZE..], [0u8; 2 * BLOCK_SIZE]);
    }

    #[test]
    fn same_entries_give_the_same_bytes() {
        assert_eq!(write_tar(&sample_entries()), write_tar(&sample_entries()));
    }

    /// SHA-256 of the stream Go's `archive/tar` writes for the same entries as
    /// `sample_entries` (one `tar.Header` per entry with Name, Typeflag, Linkname, Size, Mode,
    /// Uid, Gid, Uname, Gname, ModTime, Devmajor, Devminor and the xattrs as `PAXRecords`, no
    /// format forced: what apko does), then `Close`.
    const GO_ARCHIVE_TAR_SHA256: &str =
        "f6a0b43a6115acfec003e268778cbe110c31a169e0ff01df326bfa07c56b1bd7";

    #[test]
    fn matches_go_archive_tar_byte_for_byte() {
        let digest = hex::encode(Sha256::digest(write_tar(&sample_entries())));
        assert_eq!(digest, GO_ARCHIVE_TAR_SHA256);
    }

    #[test]
    fn system_tar_lists_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("layer.tar");
        std::fs::write(&tar_path, write_tar(&sample_entries())).unwrap();
        let output = match Command::new("tar").arg("-tvf").arg(&tar_path).output() {
            Ok(output) => output,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return,
            Err(err) => panic!("running tar: {err}"),
        };
        assert!(
            output.status.success(),
            "tar failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listing = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), sample_entries().len(), "{listing}");
        let line_for = |name: &str| {
            lines
                .iter()
                .find(|line| line.ends_with(name) || line.contains(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} not listed in {listing}"))
                .to_string()
        };
        assert!(line_for(" usr/bin/su").starts_with("-rwsr-xr-x"));
        assert!(line_for("srv/shared").starts_with("drwxr-sr-x build/builders"));
        assert!(line_for(" tmp").starts_with("drwxrwxrwt"));
        assert!(line_for("bin/sh").contains("bin/sh -> /bin/busybox"));
        assert!(line_for("su-hardlink").contains("usr/bin/su-hardlink link to usr/bin/su"));
        assert!(line_for("dev/null").starts_with("crw-rw-rw-"));
        assert!(line_for("run/initctl").starts_with("prw-------"));
        assert!(line_for(&long_unsplittable_name()).starts_with("-rw-r--r--"));
        assert!(line_for(&long_link_target()).contains("usr/lib/long-link -> x/x/"));
        assert!(line_for("home/big/id").starts_with("-rw-r----- big/big"));
        assert!(line_for("var/old").contains(" 1969-12-31 "));
        assert!(line_for("usr/share/naïve.txt").starts_with("-rw-r--r--"));
    }

    fn append_error(entry: &LayerEntry, content: &[u8]) -> LayerError {
        let mut writer = LayerWriter::new(Vec::new());
        writer.append_file(entry, content).unwrap_err()
    }

    #[test]
    fn content_length_must_match() {
        let entry = LayerEntry::file("etc/motd", 5, 0o644, 0);
        assert!(matches!(
            append_error(&entry, b"abc"),
            LayerError::ContentTooShort {
                expected: 5,
                actual: 3,
                ..
            }
        ));
        assert!(matches!(
            append_error(&entry, b"abcdef"),
            LayerError::ContentTooLong { expected: 5, .. }
        ));
        let mut writer = LayerWriter::new(Vec::new());
        assert!(matches!(
            writer.append(&entry),
            Err(LayerError::MissingContent { size: 5, .. })
        ));
        let dir = LayerEntry::directory("etc", 0o755, 0);
        assert!(matches!(
            append_error(&dir, b"x"),
            LayerError::NotARegularFile { .. }
        ));
        let empty = LayerEntry::file("etc/empty", 0, 0o644, 0);
        assert!(matches!(
            append_error(&empty, b"x"),
            LayerError::ContentTooLong { expected: 0, .. }
        ));
    }

    #[test]
    fn writer_refuses_use_after_an_error() {
        let mut writer = LayerWriter::new(Vec::new());
        let entry = LayerEntry::file("etc/motd", 5, 0o644, 0);
        assert!(writer.append_file(&entry, &b"ab"[..]).is_err());
        let dir = LayerEntry::directory("etc", 0o755, 0);
        assert!(matches!(writer.append(&dir), Err(LayerError::Broken)));
        assert!(matches!(writer.finish(), Err(LayerError::Broken)));
    }

    #[test]
    fn unencodable_entries_are_rejected() {
        let check = |entry: LayerEntry, expected: &str| {
            let err = append_error(&entry, b"");
            assert_eq!(err.to_string(), expected);
        };
        check(
            LayerEntry::directory("", 0o755, 0),
            "entry path \"\" cannot be stored in a tar header",
        );
        check(
            LayerEntry::directory("a\0b", 0o755, 0),
            "entry path \"a\\0b\" cannot be stored in a tar header",
        );
        check(
            LayerEntry::symlink("a", "b\0c", 0),
            "the link target of \"a\" contains a NUL byte",
        );
        let mut entry = LayerEntry::directory("a", 0o755, 0);
        entry.uname = Some("r\0ot".into());
        check(entry, "the user name of \"a\" contains a NUL byte");
        let mut entry = LayerEntry::directory("a", 0o755, 0);
        entry.xattrs.insert("user.a=b".into(), vec![]);
        check(
            entry,
            "extended attribute \"user.a=b\" of \"a\" cannot be stored as a PAX record",
        );
        check(
            with_kind(
                "dev/huge",
                EntryKind::CharDevice {
                    major: 1 << 21,
                    minor: 0,
                },
                0o600,
            ),
            "device numbers 2097152:0 of \"dev/huge\" do not fit a tar header",
        );
        let mut entry = LayerEntry::directory("a", 0o755, 0);
        entry
            .xattrs
            .insert("user.big".into(), vec![0; MAX_PAX_HEADER_SIZE]);
        assert!(matches!(
            append_error(&entry, b""),
            LayerError::PaxHeaderTooLarge { .. }
        ));
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let cases: [(&str, &[u8], usize); 4] = [
            ("path", b"a", 9),
            ("k", &[b'v'; 5], 11),
            // 98 bytes without the length: "100" would make it 101, so the length is 101.
            ("kk", &[b'v'; 93], 101),
            ("SCHILY.xattr.a", &[0, 1, b'\n'], 22),
        ];
        for (key, value, expected) in cases {
            let record = pax_record(key, value);
            let space = record.iter().position(|&b| b == b' ').unwrap();
            let length: usize = std::str::from_utf8(&record[..space])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!((length, record.len()), (expected, expected), "{key}");
            assert_eq!(record[space + 1..space + 1 + key.len()], *key.as_bytes());
            assert_eq!(record[record.len() - 1], b'\n');
        }
    }

    #[test]
    fn ustar_split_follows_go() {
        let cases: Vec<(String, Option<(usize, usize)>)> = vec![
            ("a".repeat(100), None),
            (
                format!("{}/{}", "p".repeat(155), "n".repeat(100)),
                Some((155, 100)),
            ),
            (format!("{}/{}", "p".repeat(156), "n".repeat(10)), None),
            (format!("{}/{}", "p".repeat(10), "n".repeat(101)), None),
            (format!("/{}", "n".repeat(100)), None),
            (format!("{}/é{}", "p".repeat(10), "n".repeat(100)), None),
        ];
        for (name, expected) in cases {
            let split = split_ustar_path(&name).map(|(p, n)| (p.len(), n.len()));
            assert_eq!(split, expected, "{name}");
        }
    }

    fn sink_output(
        compression: Compression,
        threads: usize,
        chunk: usize,
    ) -> (LayerDigests, Vec<u8>) {
        let tar = write_tar(&sample_entries());
        let mut sink = LayerSink::with_threads(Vec::new(), compression, threads).unwrap();
        for piece in tar.chunks(chunk) {
            sink.write_all(piece).unwrap();
        }
        sink.finish_into_inner().unwrap()
    }

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn sink_digests_every_compression() {
        let tar = write_tar(&sample_entries());
        let cases = [
            (Compression::None, MEDIA_TYPE_LAYER_TAR),
            (Compression::Gzip { level: 6 }, MEDIA_TYPE_LAYER_GZIP),
            (Compression::Gzip { level: 9 }, MEDIA_TYPE_LAYER_GZIP),
            (Compression::Zstd { level: 3 }, MEDIA_TYPE_LAYER_ZSTD),
            (Compression::Zstd { level: 19 }, MEDIA_TYPE_LAYER_ZSTD),
        ];
        for (compression, media_type) in cases {
            let (digests, blob) = sink_output(compression, 1, 4096);
            let uncompressed = match compression {
                Compression::None => blob.clone(),
                Compression::Gzip { .. } => {
                    let mut out = Vec::new();
                    flate2::read::MultiGzDecoder::new(blob.as_slice())
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                Compression::Zstd { .. } => zstd::decode_all(blob.as_slice()).unwrap(),
            };
            assert_eq!(uncompressed, tar, "{compression:?}");
            assert_eq!(
                digests,
                LayerDigests {
                    diff_id: sha256(&tar),
                    digest: sha256(&blob),
                    size: blob.len() as u64,
                    uncompressed_size: tar.len() as u64,
                    media_type,
                },
                "{compression:?}"
            );
            assert_eq!(compression.media_type(), media_type);
        }
    }

    #[test]
    fn sink_output_does_not_depend_on_threads_or_write_sizes() {
        for compression in [
            Compression::None,
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
        ] {
            let reference = sink_output(compression, 1, 1 << 20);
            for (threads, chunk) in [(1, 1), (2, 777), (4, 512), (8, 100_000)] {
                assert_eq!(
                    sink_output(compression, threads, chunk),
                    reference,
                    "{compression:?} with {threads} threads, chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn sink_rejects_bad_levels() {
        assert!(matches!(
            LayerSink::new(Vec::new(), Compression::Gzip { level: 10 }),
            Err(LayerError::Gzip(PgzipError::InvalidLevel { level: 10 }))
        ));
        assert!(matches!(
            LayerSink::new(Vec::new(), Compression::Zstd { level: 1000 }),
            Err(LayerError::InvalidZstdLevel { level: 1000, .. })
        ));
    }

    #[test]
    fn writer_and_sink_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<LayerWriter<LayerSink<std::fs::File>>>();
    }

    #[test]
    fn writer_streams_into_a_sink() {
        let mut writer =
            LayerWriter::new(LayerSink::new(Vec::new(), Compression::default()).unwrap());
        for (entry, content) in sample_entries() {
            writer.append_file(&entry, content.as_slice()).unwrap();
        }
        let digests = writer.finish().unwrap().finish().unwrap();
        let tar = write_tar(&sample_entries());
        assert_eq!(digests.diff_id, sha256(&tar));
        assert_eq!(digests.media_type, MEDIA_TYPE_LAYER_GZIP);
    }
}
