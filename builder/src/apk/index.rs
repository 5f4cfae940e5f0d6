//! The APKINDEX text format: records of `X:value` lines separated by blank lines, read exactly
//! as apk-tools 3.0.6 reads them (`apk_db_fdb_read` in `database.c`, `apk_pkgtmpl_add_info` in
//! `package.c`), and written back the way apk writes them.
//!
//! Pure: text in, [`PackageRecord`]s out (and back). Fetching, signatures and caching live in
//! `repository` and `signature`; callers wrap [`IndexError`] with the index's path or URL.
//!
//! How apk reads the text, and so how [`parse_index`] does:
//!
//! - Lines end at `\n`; nothing else is stripped, so a `\r` stays in the value (`P:foo\r` names a
//!   package `foo\r`). A line shorter than two bytes (empty, or a lone `\r` or letter) ends a
//!   record. Text after the last `\n` is read, but no line ends its record, so a final record
//!   without a trailing newline is dropped.
//! - A line of two bytes or more must have `:` as its second byte, or the whole index is
//!   refused.
//! - A record ending without `P:` is not a package: it is skipped and its fields carry over into
//!   the next record. A record with `P:` but without `V:`, or without a `C:` starting `Q1`, `Q2`,
//!   `X1` or `X2`, makes apk refuse the whole index.
//! - Single-valued fields may repeat, the last one counting; `D:`, `p:`, `i:` and `r:` lines
//!   accumulate. Numbers (`S:`, `I:`, `t:`, `k:`, `q:`) are their leading decimal digits (none is
//!   0), wrapping at 64 bits, `k:` and `q:` kept to 16 bits.
//! - Dependency lists keep broken atoms (invalid versions such as `p:pc:librtmp=v2.4`) and stop at
//!   a word that does not parse or carries a tag (see `constraint::parse_index_list`). A
//!   problem in `D:` makes the package uninstallable; one in `i:` drops every `install_if` atom
//!   read so far; one in `p:` changes nothing else.
//! - Lower-case fields apk does not know are ignored. Any other unknown field (upper case, a
//!   digit, punctuation) is ignored too but makes the package uninstallable: it was written by
//!   an apk newer than 3.0.6. [`PackageRecord::uninstallable`] says why.
//! - `C:` is decoded when the package is fetched ([`PackageRecord::checksum`]): apk keeps a
//!   record whose checksum has a usable prefix but does not decode, and fails when it installs
//!   it.
//!
//! `r:` and `q:` belong to apk's installed database; apk ignores them in repository indexes (its
//! installer reads `replaces` from the package's `.PKGINFO`). They are read here the same way so
//! that the installed database round-trips.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::constraint::{self, ConstraintError, Dependency};

/// `C:` field letter: control checksum.
pub const FIELD_CHECKSUM: char = 'C';
/// `P:` field letter: package name.
pub const FIELD_NAME: char = 'P';
/// `V:` field letter: version.
pub const FIELD_VERSION: char = 'V';
/// `A:` field letter: architecture.
pub const FIELD_ARCH: char = 'A';
/// `S:` field letter: `.apk` file size.
pub const FIELD_SIZE: char = 'S';
/// `I:` field letter: installed size.
pub const FIELD_INSTALLED_SIZE: char = 'I';
/// `T:` field letter: description.
pub const FIELD_DESCRIPTION: char = 'T';
/// `U:` field letter: project URL.
pub const FIELD_URL: char = 'U';
/// `L:` field letter: license.
pub const FIELD_LICENSE: char = 'L';
/// `o:` field letter: origin.
pub const FIELD_ORIGIN: char = 'o';
/// `m:` field letter: maintainer.
pub const FIELD_MAINTAINER: char = 'm';
/// `t:` field letter: build time.
pub const FIELD_BUILD_TIME: char = 't';
/// `c:` field letter: source commit.
pub const FIELD_COMMIT: char = 'c';
/// `D:` field letter: dependencies.
pub const FIELD_DEPENDS: char = 'D';
/// `p:` field letter: provides.
pub const FIELD_PROVIDES: char = 'p';
/// `i:` field letter: install_if.
pub const FIELD_INSTALL_IF: char = 'i';
/// `k:` field letter: provider priority.
pub const FIELD_PROVIDER_PRIORITY: char = 'k';
/// `r:` field letter: replaces.
pub const FIELD_REPLACES: char = 'r';
/// `q:` field letter: replaces priority.
pub const FIELD_REPLACES_PRIORITY: char = 'q';

/// Prefix of a base64 SHA-1 checksum (`Q1` + 28 base64 characters).
pub const CHECKSUM_PREFIX_SHA1_BASE64: &str = "Q1";
/// Prefix of a base64 SHA-256 checksum (`Q2` + 44 base64 characters).
pub const CHECKSUM_PREFIX_SHA256_BASE64: &str = "Q2";
/// Prefix of a hexadecimal SHA-1 checksum (`X1` + 40 hex digits).
pub const CHECKSUM_PREFIX_SHA1_HEX: &str = "X1";
/// Prefix of a hexadecimal SHA-256 checksum (`X2` + 64 hex digits).
pub const CHECKSUM_PREFIX_SHA256_HEX: &str = "X2";

/// Extension of a package file name.
pub const PACKAGE_FILE_EXTENSION: &str = ".apk";

/// Longest excerpt of an offending line quoted in an error message.
const MAX_QUOTED_CHARS: usize = 80;

/// Largest value of apk's 16-bit fields (`provider_priority`, `replaces_priority`).
const U16_MASK: u64 = 0xffff;

/// Which record an error is about: where it starts and, once its `P:` line has been read, the
/// package name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    /// 1-based line number of the record's first line.
    pub line: usize,
    /// The record's `P:` value, if it had one by then.
    pub name: Option<String>,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record starting at line {}", self.line)?;
        if let Some(name) = &self.name {
            write!(f, " (package `{name}`)")?;
        }
        Ok(())
    }
}

/// Why apk refuses index text, or why a checksum does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// A line of two bytes or more whose second byte is not `:`.
    #[error("line {line} of the {record}: malformed line `{text}`, expected `X:value`")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
        /// The record the line is in.
        record: RecordLocation,
        /// The line (shortened when long).
        text: String,
    },
    /// A package record (it has `P:`) without `V:` or `C:`.
    #[error("{record}: missing field {field}")]
    MissingField {
        /// The record.
        record: RecordLocation,
        /// The missing field letter.
        field: char,
    },
    /// A package record whose (last) `C:` does not start with `Q1`, `Q2`, `X1` or `X2`.
    #[error(
        "line {line} of the {record}: field C checksum `{checksum}` is not a Q1, Q2, X1 or X2 checksum"
    )]
    UnusableChecksum {
        /// 1-based line number of the `C:` line.
        line: usize,
        /// The record.
        record: RecordLocation,
        /// The value (shortened when long).
        checksum: String,
    },
    /// A `C:` value that does not decode to a digest (see [`PackageRecord::checksum`]).
    #[error("invalid checksum `{checksum}` for package {package}")]
    InvalidChecksum {
        /// The package name.
        package: String,
        /// The checksum as written (shortened when long).
        checksum: String,
    },
}

/// Why apk would never install a package although its record was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uninstallable {
    /// A field that is not lower case and unknown to apk 3.0.6 (`apk_pkgtmpl_add_info` marks
    /// the package uninstallable, assuming a newer apk wrote it).
    UnknownField {
        /// 1-based line number in the index.
        line: usize,
        /// The field.
        field: char,
    },
    /// A `D:` atom that is broken or does not parse (apk cannot tell what the package needs).
    BrokenDependency {
        /// 1-based line number in the index.
        line: usize,
        /// What is wrong with the atom (it names the atom).
        problem: ConstraintError,
    },
}

impl fmt::Display for Uninstallable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uninstallable::UnknownField { line, field } => {
                write!(f, "line {line}: field {field} is unknown to apk 3.0.6")
            }
            Uninstallable::BrokenDependency { line, problem } => {
                write!(f, "line {line}: field D: {problem}")
            }
        }
    }
}

/// The digest algorithm of a package checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// SHA-1 (20 bytes): `Q1`/`X1`, what apk v2 indexes use.
    Sha1,
    /// SHA-256 (32 bytes): `Q2`/`X2`, or the longer `Q1`/`X1` form newer apk-tools reads.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }
}

/// A decoded package checksum.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// Which digest the bytes are.
    pub algorithm: ChecksumAlgorithm,
    /// The digest.
    pub bytes: Vec<u8>,
}

/// Encodes a digest the way apk writes `C:`: `Q1` + base64 for SHA-1, `Q2` + base64 for SHA-256.
pub fn encode_checksum(algorithm: ChecksumAlgorithm, digest: &[u8]) -> String {
    let prefix = match algorithm {
        ChecksumAlgorithm::Sha1 => CHECKSUM_PREFIX_SHA1_BASE64,
        ChecksumAlgorithm::Sha256 => CHECKSUM_PREFIX_SHA256_BASE64,
    };
    format!("{prefix}{}", BASE64.encode(digest))
}

/// One package as an APKINDEX (or the installed database) describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageRecord {
    /// `C:` the control checksum as written, e.g. `Q1` + base64(SHA-1 of the control stream).
    pub checksum: String,
    /// `P:` package name.
    pub name: String,
    /// `V:` version, as written (apk keeps invalid versions and compares them its way).
    pub version: String,
    /// `A:` architecture.
    pub arch: String,
    /// `S:` size of the `.apk` file in bytes.
    pub size: u64,
    /// `I:` installed size in bytes.
    pub installed_size: u64,
    /// `T:` one-line description.
    pub description: String,
    /// `U:` project URL.
    pub url: String,
    /// `L:` license expression.
    pub license: String,
    /// `o:` origin (source package) name.
    pub origin: Option<String>,
    /// `m:` maintainer.
    pub maintainer: Option<String>,
    /// `t:` build time, seconds since the epoch.
    pub build_time: Option<i64>,
    /// `c:` source commit.
    pub commit: Option<String>,
    /// `D:` dependencies (including `!conflicts`), every line's atoms in order.
    pub depends: Vec<Dependency>,
    /// `p:` provides (names or virtuals, optionally `=version`), every line's atoms in order.
    pub provides: Vec<Dependency>,
    /// `i:` install_if: install this package when all of these are installed.
    pub install_if: Vec<Dependency>,
    /// `k:` provider_priority (16 bits, as apk keeps it).
    pub provider_priority: Option<u64>,
    /// `r:` replaces: packages whose files this one may overwrite (installed database).
    pub replaces: Vec<Dependency>,
    /// `q:` replaces_priority (16 bits, as apk keeps it; installed database).
    pub replaces_priority: Option<u64>,
    /// Fields this version does not interpret, kept in order so that records round-trip.
    pub other: Vec<(char, String)>,
    /// Set when apk would read the record but never install the package, with the first reason.
    /// Not written by [`write_index`].
    pub uninstallable: Option<Uninstallable>,
}

impl PackageRecord {
    /// Decodes `C:` into its algorithm and digest bytes, as apk decodes it
    /// (`apk_blob_pull_digest`): `Q1` + base64 (SHA-1), `Q2` + base64 (SHA-256), their
    /// hexadecimal `X1`/`X2` forms, and a `Q1`/`X1` SHA-1 encoding followed by the encoding of
    /// the remaining 12 bytes of a SHA-256. Text after the digest is ignored.
    pub fn checksum(&self) -> Result<Checksum, IndexError> {
        decode_checksum(&self.checksum).ok_or_else(|| IndexError::InvalidChecksum {
            package: self.name.clone(),
            checksum: quote(&self.checksum),
        })
    }

    /// The digest bytes of `C:` (20 for SHA-1, 32 for SHA-256); see [`Self::checksum`].
    pub fn checksum_bytes(&self) -> Result<Vec<u8>, IndexError> {
        self.checksum().map(|checksum| checksum.bytes)
    }

    /// `name-version`, as apk names a package in messages.
    pub fn display_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// The package's file name in its repository: `name-version.apk`.
    pub fn filename(&self) -> String {
        format!("{}-{}{PACKAGE_FILE_EXTENSION}", self.name, self.version)
    }
}

/// Decodes a checksum the way `apk_blob_pull_digest` does; `None` where apk reports an error
/// (and would be left with a digest that matches nothing).
pub(crate) fn decode_checksum(text: &str) -> Option<Checksum> {
    let bytes = text.as_bytes();
    let (&encoding, rest) = bytes.split_first()?;
    let (&kind, body) = rest.split_first()?;
    let length = match kind {
        b'1' => ChecksumAlgorithm::Sha1.digest_len(),
        b'2' => ChecksumAlgorithm::Sha256.digest_len(),
        _ => return None,
    };
    let extension = ChecksumAlgorithm::Sha256.digest_len() - ChecksumAlgorithm::Sha1.digest_len();
    let mut digest = match encoding {
        b'X' => {
            let (mut digest, rest) = pull_hex(body, length)?;
            if kind == b'1' && rest.len() == 2 * extension && rest[0].is_ascii_hexdigit() {
                digest.extend(pull_hex(rest, extension)?.0);
            }
            digest
        }
        b'Q' => {
            let (mut digest, rest) = pull_base64(body, length)?;
            if kind == b'1'
                && rest.len() == base64_len(extension)
                && base64_value(rest[0]).is_some()
            {
                digest.extend(pull_base64(rest, extension)?.0);
            }
            digest
        }
        _ => return None,
    };
    let algorithm = if digest.len() == ChecksumAlgorithm::Sha1.digest_len() {
        ChecksumAlgorithm::Sha1
    } else {
        ChecksumAlgorithm::Sha256
    };
    digest.truncate(algorithm.digest_len());
    Some(Checksum {
        algorithm,
        bytes: digest,
    })
}

/// Whether apk keeps a record with this `C:`: it starts with `Q` or `X` and then `1` or `2`, so
/// that apk sets up a digest of the right length whether or not the rest decodes.
fn checksum_is_usable(text: &str) -> bool {
    matches!(text.as_bytes(), [b'Q' | b'X', b'1' | b'2', ..])
}

/// `apk_blob_pull_hexdump`: `length` bytes from the first `2 * length` hex digits.
fn pull_hex(input: &[u8], length: usize) -> Option<(Vec<u8>, &[u8])> {
    let digits = input.get(..2 * length)?;
    Some((hex::decode(digits).ok()?, &input[2 * length..]))
}

/// Characters of base64 that encode `length` bytes, padding included.
fn base64_len(length: usize) -> usize {
    length.div_ceil(3) * 4
}

/// apk's base64 alphabet; `=` reads as 0 (apk's table), padding is checked separately.
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// `apk_blob_pull_base64`: `length` bytes from the first `base64_len(length)` characters. The
/// last group must be padded with `=` where it carries fewer than three bytes; unused low bits
/// are ignored.
fn pull_base64(input: &[u8], length: usize) -> Option<(Vec<u8>, &[u8])> {
    let text = input.get(..base64_len(length))?;
    let mut out = Vec::with_capacity(length);
    for group in text.chunks(4) {
        let mut values = [0u8; 4];
        for (value, &c) in values.iter_mut().zip(group) {
            *value = base64_value(c)?;
        }
        let bytes = [
            (values[0] << 2) | (values[1] >> 4),
            (values[1] << 4) | (values[2] >> 2),
            ((values[2] << 6) & 0xc0) | values[3],
        ];
        let take = (length - out.len()).min(3);
        if (take < 2 && group[2] != b'=') || (take < 3 && group[3] != b'=') {
            return None;
        }
        out.extend_from_slice(&bytes[..take]);
    }
    Some((out, &input[text.len()..]))
}

/// `apk_blob_pull_uint` in base 10: the leading decimal digits of `value` (0 when there are
/// none), accumulated in a wrapping 64-bit integer; whatever follows is ignored.
pub(crate) fn pull_uint(value: &str) -> u64 {
    value
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u64, |number, digit| {
            number
                .wrapping_mul(10)
                .wrapping_add(u64::from(digit - b'0'))
        })
}

/// [`pull_uint`] kept to 16 bits, as apk's `unsigned short` fields keep it.
pub(crate) fn pull_u16(value: &str) -> u64 {
    pull_uint(value) & U16_MASK
}

/// Parses APKINDEX text (or the installed database's package headers) into records, reading
/// exactly what apk reads (see the module documentation). The only errors are the ones for
/// which apk refuses the whole index.
pub fn parse_index(text: &str) -> Result<Vec<PackageRecord>, IndexError> {
    let mut records = Vec::new();
    let mut current = RecordBuilder::default();
    for (index, line) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let bytes = line.as_bytes();
        if bytes.len() < 2 {
            if let Some(record) = current.end()? {
                records.push(record);
            }
            continue;
        }
        if bytes[1] != b':' {
            return Err(IndexError::MalformedLine {
                line: line_number,
                record: current.location(line_number),
                text: quote(line),
            });
        }
        // The byte before an ASCII `:` in UTF-8 text is ASCII.
        current.add(char::from(bytes[0]), &line[2..], line_number);
    }
    Ok(records)
}

/// Writes records as APKINDEX text, each followed by a blank line, fields in the order
/// apk-tools writes them (`apk_pkg_write_index_header`, then the installed database's `r:` and
/// `q:`), then [`PackageRecord::other`] in order.
///
/// Optional fields are written only when present (`A`, `D`, `p`, `i`, `r` only when non-empty),
/// so [`parse_index`] of the output gives back the same records (the line numbers in
/// [`PackageRecord::uninstallable`] aside). A value cannot hold a line break in this format; any
/// `\n` or `\r` inside a value is written as a space.
pub fn write_index(records: &[PackageRecord]) -> String {
    let mut out = String::new();
    for record in records {
        write_record(record, &mut out);
        out.push('\n');
    }
    out
}

/// Appends one record's field lines (without the separating blank line) to `out`.
pub fn write_record(record: &PackageRecord, out: &mut String) {
    push_field(out, FIELD_CHECKSUM, &record.checksum);
    push_field(out, FIELD_NAME, &record.name);
    push_field(out, FIELD_VERSION, &record.version);
    if !record.arch.is_empty() {
        push_field(out, FIELD_ARCH, &record.arch);
    }
    push_field(out, FIELD_SIZE, record.size);
    push_field(out, FIELD_INSTALLED_SIZE, record.installed_size);
    push_field(out, FIELD_DESCRIPTION, &record.description);
    push_field(out, FIELD_URL, &record.url);
    push_field(out, FIELD_LICENSE, &record.license);
    if let Some(origin) = &record.origin {
        push_field(out, FIELD_ORIGIN, origin);
    }
    if let Some(maintainer) = &record.maintainer {
        push_field(out, FIELD_MAINTAINER, maintainer);
    }
    if let Some(build_time) = record.build_time {
        push_field(out, FIELD_BUILD_TIME, build_time);
    }
    if let Some(commit) = &record.commit {
        push_field(out, FIELD_COMMIT, commit);
    }
    if let Some(priority) = record.provider_priority {
        push_field(out, FIELD_PROVIDER_PRIORITY, priority);
    }
    push_dependencies(out, FIELD_DEPENDS, &record.depends);
    push_dependencies(out, FIELD_PROVIDES, &record.provides);
    push_dependencies(out, FIELD_INSTALL_IF, &record.install_if);
    push_dependencies(out, FIELD_REPLACES, &record.replaces);
    if let Some(priority) = record.replaces_priority {
        push_field(out, FIELD_REPLACES_PRIORITY, priority);
    }
    for (field, value) in &record.other {
        push_field(out, *field, value);
    }
}

fn push_field(out: &mut String, field: char, value: impl fmt::Display) {
    out.push(field);
    out.push(':');
    let value_start = out.len();
    // Writing into a String cannot fail.
    let _ = fmt::Write::write_fmt(out, format_args!("{value}"));
    if out[value_start..].contains(['\n', '\r']) {
        let cleaned = out[value_start..].replace(['\n', '\r'], " ");
        out.truncate(value_start);
        out.push_str(&cleaned);
    }
    out.push('\n');
}

fn push_dependencies(out: &mut String, field: char, dependencies: &[Dependency]) {
    if dependencies.is_empty() {
        return;
    }
    push_field(out, field, DependencyList(dependencies));
}

/// Space-separated dependency atoms, as apk writes them.
struct DependencyList<'a>(&'a [Dependency]);

impl fmt::Display for DependencyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, dependency) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{dependency}")?;
        }
        Ok(())
    }
}

/// `text`, cut to `MAX_QUOTED_CHARS` characters and an ellipsis when longer, for quoting an
/// offending line or value in an error message.
pub(crate) fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        text.to_owned()
    } else {
        let mut quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        quoted.push('…');
        quoted
    }
}

/// One record being read: apk's package template (`struct apk_package_tmpl`), which a record
/// without `P:` leaves in place for the next one.
#[derive(Default)]
struct RecordBuilder {
    record: PackageRecord,
    first_line: Option<usize>,
    name: Option<String>,
    version: Option<String>,
    checksum_line: usize,
    checksum: Option<String>,
}

impl RecordBuilder {
    fn location(&self, line: usize) -> RecordLocation {
        RecordLocation {
            line: self.first_line.unwrap_or(line),
            name: self.name.clone(),
        }
    }

    /// Reads one field line (`apk_pkgtmpl_add_info`, then `apk_db_fdb_read`'s installed-database
    /// fields).
    fn add(&mut self, field: char, value: &str, line: usize) {
        self.first_line.get_or_insert(line);
        let record = &mut self.record;
        match field {
            FIELD_NAME => self.name = Some(value.to_owned()),
            FIELD_VERSION => self.version = Some(value.to_owned()),
            FIELD_CHECKSUM => {
                self.checksum = Some(value.to_owned());
                self.checksum_line = line;
            }
            FIELD_DESCRIPTION => record.description = value.to_owned(),
            FIELD_URL => record.url = value.to_owned(),
            FIELD_LICENSE => record.license = value.to_owned(),
            FIELD_ARCH => record.arch = value.to_owned(),
            FIELD_ORIGIN => record.origin = Some(value.to_owned()),
            FIELD_MAINTAINER => record.maintainer = Some(value.to_owned()),
            FIELD_COMMIT => record.commit = Some(value.to_owned()),
            FIELD_SIZE => record.size = pull_uint(value),
            FIELD_INSTALLED_SIZE => record.installed_size = pull_uint(value),
            // apk stores the build time in a signed 64-bit `time_t`.
            FIELD_BUILD_TIME => record.build_time = Some(pull_uint(value).cast_signed()),
            FIELD_PROVIDER_PRIORITY => record.provider_priority = Some(pull_u16(value)),
            FIELD_REPLACES_PRIORITY => record.replaces_priority = Some(pull_u16(value)),
            FIELD_DEPENDS => {
                let list = constraint::parse_index_list(value);
                record.depends.extend(list.atoms);
                if let Some(problem) = list.problem {
                    record
                        .uninstallable
                        .get_or_insert(Uninstallable::BrokenDependency { line, problem });
                }
            }
            FIELD_PROVIDES => record
                .provides
                .extend(constraint::parse_index_list(value).atoms),
            FIELD_INSTALL_IF => {
                let list = constraint::parse_index_list(value);
                if list.problem.is_some() {
                    record.install_if.clear();
                } else {
                    record.install_if.extend(list.atoms);
                }
            }
            FIELD_REPLACES => record
                .replaces
                .extend(constraint::parse_index_list(value).atoms),
            _ => {
                if !field.is_ascii_lowercase() && !is_installed_database_field(field) {
                    record
                        .uninstallable
                        .get_or_insert(Uninstallable::UnknownField { line, field });
                }
                record.other.push((field, value.to_owned()));
            }
        }
    }

    /// A line shorter than two bytes: ends the record if it has a name, as apk adds it to its
    /// database there (`apk_db_pkg_add`), refusing the index if it lacks a version or a usable
    /// checksum. Without a name, nothing happens and the fields stay for the next record.
    fn end(&mut self) -> Result<Option<PackageRecord>, IndexError> {
        let Some(name) = self.name.take() else {
            return Ok(None);
        };
        let record_location = RecordLocation {
            line: self.first_line.unwrap_or(0),
            name: Some(name.clone()),
        };
        let Some(checksum) = self.checksum.take() else {
            return Err(IndexError::MissingField {
                record: record_location,
                field: FIELD_CHECKSUM,
            });
        };
        if !checksum_is_usable(&checksum) {
            return Err(IndexError::UnusableChecksum {
                line: self.checksum_line,
                record: record_location,
                checksum: quote(&checksum),
            });
        }
        let Some(version) = self.version.take() else {
            return Err(IndexError::MissingField {
                record: record_location,
                field: FIELD_VERSION,
            });
        };
        let mut record = std::mem::take(self).record;
        record.name = name;
        record.version = version;
        record.checksum = checksum;
        Ok(Some(record))
    }
}

/// Fields of apk's installed database (files, ACLs, repository tag, flags, tags) that its index
/// reader passes over without marking the package (`apk_pkgtmpl_add_info` returns 1 for them).
fn is_installed_database_field(field: char) -> bool {
    matches!(field, 'F' | 'M' | 'R' | 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::constraint::VersionOp;

    const FULL_INDEX: &str = "\
C:Q1hdUpqRv5mYgJEqW52UmVsvmyysE=
P:busybox
V:1.36.1-r29
A:x86_64
S:509936
I:961120
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1718012345
c:9f4a2e6f5bba8a5bb1b1c7f8dd3f8d3a2f0c9e11
k:100
D:so:libc.musl-x86_64.so.1 !busybox-static>=2
p:cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29
i:busybox-extras=1.36.1-r29 openrc
r:busybox-initscripts<4.0 busybox-suid~1.36
q:10
x:a field from the future
g:second unknown

C:Q2n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=
P:musl
V:1.2.5-r0
S:407112
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT

";

    fn dep(name: &str, op: VersionOp, version: Option<&str>) -> Dependency {
        Dependency {
            name: name.to_owned(),
            op,
            version: version.map(str::to_owned),
            conflict: false,
            tag: None,
        }
    }

    #[test]
    fn parses_every_field() {
        let records = parse_index(FULL_INDEX).unwrap();
        assert_eq!(records.len(), 2);
        let busybox = &records[0];
        assert_eq!(busybox.checksum, "Q1hdUpqRv5mYgJEqW52UmVsvmyysE=");
        assert_eq!(busybox.name, "busybox");
        assert_eq!(busybox.version, "1.36.1-r29");
        assert_eq!(busybox.arch, "x86_64");
        assert_eq!(busybox.size, 509_936);
        assert_eq!(busybox.installed_size, 961_120);
        assert_eq!(
            busybox.description,
            "Size optimized toolbox of many common UNIX utilities"
        );
        assert_eq!(busybox.url, "https://busybox.net/");
        assert_eq!(busybox.license, "GPL-2.0-only");
        assert_eq!(busybox.origin.as_deref(), Some("busybox"));
        assert_eq!(
            busybox.maintainer.as_deref(),
            Some("Sören Tempel <soeren+alpine@soeren-tempel.net>")
        );
        assert_eq!(busybox.build_time, Some(1_718_012_345));
        assert_eq!(
            busybox.commit.as_deref(),
            Some("9f4a2e6f5bba8a5bb1b1c7f8dd3f8d3a2f0c9e11")
        );
        assert_eq!(busybox.provider_priority, Some(100));
        assert_eq!(busybox.replaces_priority, Some(10));
        let mut conflict = dep("busybox-static", VersionOp::GreaterEqual, Some("2"));
        conflict.conflict = true;
        assert_eq!(
            busybox.depends,
            vec![
                dep("so:libc.musl-x86_64.so.1", VersionOp::Any, None),
                conflict
            ]
        );
        assert_eq!(
            busybox.provides,
            vec![
                dep("cmd:busybox", VersionOp::Equal, Some("1.36.1-r29")),
                dep("cmd:sh", VersionOp::Equal, Some("1.36.1-r29")),
            ]
        );
        assert_eq!(
            busybox.install_if,
            vec![
                dep("busybox-extras", VersionOp::Equal, Some("1.36.1-r29")),
                dep("openrc", VersionOp::Any, None),
            ]
        );
        assert_eq!(busybox.uninstallable, None);
        assert_eq!(
            busybox.replaces,
            vec![
                dep("busybox-initscripts", VersionOp::Less, Some("4.0")),
                dep("busybox-suid", VersionOp::Fuzzy, Some("1.36")),
            ]
        );
        assert_eq!(
            busybox.other,
            vec![
                ('x', "a field from the future".to_owned()),
                ('g', "second unknown".to_owned()),
            ]
        );

        let musl = &records[1];
        assert_eq!(musl.name, "musl");
        assert_eq!(musl.arch, "");
        assert_eq!(musl.origin, None);
        assert_eq!(musl.build_time, None);
        assert!(musl.depends.is_empty());
    }

    #[test]
    fn write_then_parse_round_trips_and_output_is_canonical() {
        let records = parse_index(FULL_INDEX).unwrap();
        let written = write_index(&records);
        assert_eq!(written, FULL_INDEX);
        assert_eq!(parse_index(&written).unwrap(), records);
    }

    #[test]
    fn writes_fields_in_apk_order_whatever_the_input_order() {
        let shuffled =
            "P:zlib\nL:Zlib\nV:1.3.1-r1\nC:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nD:musl\nt:5\n";
        let records = parse_index(shuffled).unwrap();
        assert_eq!(
            write_index(&records),
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:zlib\nV:1.3.1-r1\nS:0\nI:0\nT:\nU:\nL:Zlib\n\
             t:5\nD:musl\n\n"
        );
    }

    fn names(records: &[PackageRecord]) -> Vec<&str> {
        records.iter().map(|record| record.name.as_str()).collect()
    }

    #[test]
    fn short_lines_end_records_and_a_record_without_final_newline_is_dropped() {
        const C: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let text = format!("\n\n{C}\nP:a\nV:1\n\n\n\n{C}\nP:b\nV:2\nx\n{C}\nP:c\nV:3\n");
        assert_eq!(names(&parse_index(&text).unwrap()), ["a", "b", "c"]);
        // apk reads the text after the last newline, but no line ends that record.
        let text = format!("{C}\nP:a\nV:1\n\n{C}\nP:b\nV:2");
        assert_eq!(names(&parse_index(&text).unwrap()), ["a"]);
        assert_eq!(parse_index("").unwrap(), Vec::new());
        assert_eq!(parse_index("\n").unwrap(), Vec::new());
    }

    #[test]
    fn carriage_returns_stay_in_values_and_a_lone_one_ends_a_record() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nP:a\r\nV:1\r\n\r\n";
        let records = parse_index(text).unwrap();
        assert_eq!(names(&records), ["a\r"]);
        assert_eq!(records[0].version, "1\r");
        // The `\r` after the checksum is ignored when it is decoded.
        assert_eq!(records[0].checksum().unwrap().bytes, vec![0; 20]);
    }

    #[test]
    fn repeated_fields_last_wins_lists_accumulate() {
        let text = "C:X10000000000000000000000000000000000000001\nP:a\nP:a2\nV:1\nV:2\n\
                    T:first\nT:second\nD:q\nD:r\np:x=1 y\np:z=v2.4\ni:q\ni:r\nA:x86\n\
                    A:x86_64\nC:X10000000000000000000000000000000000000002\n\n";
        let record = &parse_index(text).unwrap()[0];
        assert_eq!(record.name, "a2");
        assert_eq!(record.version, "2");
        assert_eq!(record.description, "second");
        assert_eq!(record.arch, "x86_64");
        assert_eq!(
            record.checksum,
            "X10000000000000000000000000000000000000002"
        );
        let texts =
            |atoms: &[Dependency]| atoms.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(texts(&record.depends), ["q", "r"]);
        assert_eq!(texts(&record.provides), ["x=1", "y", "z=v2.4"]);
        assert_eq!(texts(&record.install_if), ["q", "r"]);
        assert_eq!(record.uninstallable, None);
    }

    #[test]
    fn numbers_are_their_leading_digits() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\nS:12abc\nI:-5\nt:99x\n\
                    k:70000\nq:65537\n\n";
        let record = &parse_index(text).unwrap()[0];
        assert_eq!(record.size, 12);
        assert_eq!(record.installed_size, 0);
        assert_eq!(record.build_time, Some(99));
        assert_eq!(record.provider_priority, Some(4464));
        assert_eq!(record.replaces_priority, Some(1));
        assert_eq!(pull_uint("18446744073709551616"), 0);
        assert_eq!(pull_uint("18446744073709551617x"), 1);
        assert_eq!(pull_uint(" 12"), 0);
        assert_eq!(pull_uint(""), 0);
    }

    #[test]
    fn a_record_without_a_name_carries_its_fields_into_the_next() {
        let text = "C:X10000000000000000000000000000000000000002\nV:3\nD:x\n\nP:b\nS:7\n\n";
        let records = parse_index(text).unwrap();
        assert_eq!(names(&records), ["b"]);
        assert_eq!(records[0].version, "3");
        assert_eq!(records[0].size, 7);
        assert_eq!(records[0].depends.len(), 1);
        assert_eq!(
            records[0].checksum,
            "X10000000000000000000000000000000000000002"
        );
    }

    #[test]
    fn empty_values_are_values() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:\nV:\nD:\n\n";
        let record = &parse_index(text).unwrap()[0];
        assert_eq!((record.name.as_str(), record.version.as_str()), ("", ""));
        assert!(record.depends.is_empty());
    }

    /// The record apk-tools 3.0.6 keeps from Alpine v3.16's x86_64 index although its provide
    /// has a version apk calls invalid.
    const RTMPDUMP_DEV: &str = "\
C:Q1Ws0ItK7r4PCDFEZ7b4aQeCKq/gM=
P:rtmpdump-dev
V:2.4_git20190330-r2
A:x86_64
S:19367
I:106496
T:rtmp dump tool (development files)
U:https://rtmpdump.mplayerhq.hu/
L:GPL-2.0-or-later
o:rtmpdump
m:Natanael Copa <ncopa@alpinelinux.org>
t:1649151349
c:1ea5a9a7bfd2bcb6d7e5b7a8c1d1f3cc8fc2e5a0
D:librtmp=2.4_git20190330-r2 pkgconfig
p:pc:librtmp=v2.4

";

    #[test]
    fn keeps_a_provide_with_an_invalid_version() {
        let records = parse_index(RTMPDUMP_DEV).unwrap();
        let provide = &records[0].provides[0];
        assert_eq!(provide.name, "pc:librtmp");
        assert_eq!(provide.version.as_deref(), Some("v2.4"));
        assert!(provide.is_broken());
        assert_eq!(records[0].uninstallable, None);
        assert_eq!(write_index(&records), RTMPDUMP_DEV);
    }

    #[test]
    fn what_makes_a_package_uninstallable() {
        const HEAD: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n";
        let uninstallable = |extra: &str| {
            parse_index(&format!("{HEAD}{extra}\n\n")).unwrap()[0]
                .uninstallable
                .as_ref()
                .map(ToString::to_string)
        };
        for (extra, expected) in [
            ("x:lower case field", None),
            ("g:tag", None),
            ("F:usr/bin", None),
            ("Z:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=", None),
            ("p:x=v2.4", None),
            ("p:x y@edge", None),
            (
                "X:upper case field",
                Some("line 4: field X is unknown to apk 3.0.6"),
            ),
            (
                "1:digit field",
                Some("line 4: field 1 is unknown to apk 3.0.6"),
            ),
            (
                "D:musl=v1",
                Some("line 4: field D: dependency `musl=v1` has invalid version `v1`"),
            ),
            (
                "D:musl b@edge",
                Some(
                    "line 4: field D: dependency `b@edge` has a repository tag, which package \
                     metadata may not have",
                ),
            ),
            (
                "D:musl=",
                Some("line 4: field D: dependency `musl=` has operator `=` but no version"),
            ),
        ] {
            assert_eq!(uninstallable(extra).as_deref(), expected, "{extra}");
        }
        // Unknown fields are kept in order for the round trip.
        let record = &parse_index(&format!("{HEAD}x:1\nX:2\n\n")).unwrap()[0];
        assert_eq!(record.other, [('x', "1".to_owned()), ('X', "2".to_owned())]);
    }

    #[test]
    fn a_problem_in_install_if_drops_every_install_if_atom_read_so_far() {
        const HEAD: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n";
        for (lines, expected) in [
            ("i:b c\n", vec!["b", "c"]),
            ("i:b\ni:c=v1\n", vec![]),
            ("i:b\ni:c@edge\n", vec![]),
            ("i:b=v1\ni:c\n", vec!["c"]),
        ] {
            let record = &parse_index(&format!("{HEAD}{lines}\n")).unwrap()[0];
            let atoms: Vec<String> = record.install_if.iter().map(ToString::to_string).collect();
            assert_eq!(atoms, expected, "{lines}");
        }
    }

    #[test]
    fn provides_stop_at_a_word_that_does_not_parse() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\np:x y= z\np:w\n\n";
        let record = &parse_index(text).unwrap()[0];
        let atoms: Vec<String> = record.provides.iter().map(ToString::to_string).collect();
        assert_eq!(atoms, ["x", "w"]);
    }

    #[test]
    fn values_keep_colons_and_empty_values() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\nU:https://x.test:8080/a\nT:\n";
        let record = &parse_index(text).unwrap()[0];
        assert_eq!(record.url, "https://x.test:8080/a");
        assert_eq!(record.description, "");
    }

    #[test]
    fn line_breaks_inside_values_are_written_as_spaces() {
        let record = PackageRecord {
            checksum: "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
            name: "a".to_owned(),
            version: "1".to_owned(),
            description: "two\nlines\r".to_owned(),
            ..PackageRecord::default()
        };
        let written = write_index(std::slice::from_ref(&record));
        assert!(written.contains("T:two lines \n"), "{written}");
        assert_eq!(parse_index(&written).unwrap()[0].description, "two lines ");
    }

    fn check(text: &str, expected: IndexError, message: &str) {
        let error = parse_index(text).unwrap_err();
        assert_eq!(error, expected, "input {text:?}");
        assert_eq!(error.to_string(), message, "input {text:?}");
    }

    fn at(line: usize, name: Option<&str>) -> RecordLocation {
        RecordLocation {
            line,
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn errors_where_apk_refuses_the_index_name_the_record_and_field() {
        const HEAD: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n";
        check(
            &format!("{HEAD}\n{HEAD}this is not a field\n"),
            IndexError::MalformedLine {
                line: 8,
                record: at(5, Some("a")),
                text: "this is not a field".to_owned(),
            },
            "line 8 of the record starting at line 5 (package `a`): malformed line \
             `this is not a field`, expected `X:value`",
        );
        check(
            "ZZ\n",
            IndexError::MalformedLine {
                line: 1,
                record: at(1, None),
                text: "ZZ".to_owned(),
            },
            "line 1 of the record starting at line 1: malformed line `ZZ`, expected `X:value`",
        );
        check(
            &format!("{HEAD}é:value\n"),
            IndexError::MalformedLine {
                line: 4,
                record: at(1, Some("a")),
                text: "é:value".to_owned(),
            },
            "line 4 of the record starting at line 1 (package `a`): malformed line `é:value`, \
             expected `X:value`",
        );
        check(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\n\n",
            IndexError::MissingField {
                record: at(1, Some("a")),
                field: 'V',
            },
            "record starting at line 1 (package `a`): missing field V",
        );
        check(
            &format!("{HEAD}\nP:b\nV:2\n\n"),
            IndexError::MissingField {
                record: at(5, Some("b")),
                field: 'C',
            },
            "record starting at line 5 (package `b`): missing field C",
        );
        for checksum in [
            "",
            "Q",
            "Q3AAAA",
            "Z1AAAA",
            "q1AAAA",
            "MD5d41d8cd98f00b204e9800998ecf8427e",
        ] {
            check(
                &format!("P:a\nV:1\nC:{checksum}\n\n"),
                IndexError::UnusableChecksum {
                    line: 3,
                    record: at(1, Some("a")),
                    checksum: checksum.to_owned(),
                },
                &format!(
                    "line 3 of the record starting at line 1 (package `a`): field C checksum \
                     `{checksum}` is not a Q1, Q2, X1 or X2 checksum"
                ),
            );
        }
        // The last `C:` counts.
        check(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\nC:\n\n",
            IndexError::UnusableChecksum {
                line: 4,
                record: at(1, Some("a")),
                checksum: String::new(),
            },
            "line 4 of the record starting at line 1 (package `a`): field C checksum `` is not \
             a Q1, Q2, X1 or X2 checksum",
        );
    }

    #[test]
    fn a_usable_checksum_prefix_is_enough_to_keep_the_record() {
        for checksum in ["X1zz", "Q1", "Q2!!", "X2"] {
            let text = format!("C:{checksum}\nP:a\nV:1\n\n");
            let record = &parse_index(&text).unwrap()[0];
            assert!(record.checksum().is_err(), "{checksum}");
        }
    }

    #[test]
    fn long_offending_lines_are_shortened_in_errors() {
        let long = "z".repeat(500);
        let IndexError::MalformedLine { text, .. } = parse_index(&long).unwrap_err() else {
            panic!("expected a malformed line error");
        };
        assert_eq!(text.chars().count(), MAX_QUOTED_CHARS + 1);
    }

    fn record_with_checksum(checksum: &str) -> PackageRecord {
        PackageRecord {
            checksum: checksum.to_owned(),
            name: "busybox".to_owned(),
            version: "1.36.1-r29".to_owned(),
            ..PackageRecord::default()
        }
    }

    #[test]
    fn decodes_checksums() {
        let sha1: Vec<u8> = (1..=20).collect();
        let sha256: Vec<u8> = (100..132).collect();
        let cases = [
            (
                encode_checksum(ChecksumAlgorithm::Sha1, &sha1),
                ChecksumAlgorithm::Sha1,
                sha1.clone(),
            ),
            (
                encode_checksum(ChecksumAlgorithm::Sha256, &sha256),
                ChecksumAlgorithm::Sha256,
                sha256.clone(),
            ),
            (
                format!("X1{}", hex::encode(&sha1)),
                ChecksumAlgorithm::Sha1,
                sha1.clone(),
            ),
            (
                format!("X2{}", hex::encode(&sha256)),
                ChecksumAlgorithm::Sha256,
                sha256.clone(),
            ),
            (
                format!(
                    "Q1{}{}",
                    BASE64.encode(&sha256[..20]),
                    BASE64.encode(&sha256[20..])
                ),
                ChecksumAlgorithm::Sha256,
                sha256.clone(),
            ),
        ];
        for (text, algorithm, bytes) in cases {
            let record = record_with_checksum(&text);
            assert_eq!(
                record.checksum().unwrap(),
                Checksum {
                    algorithm,
                    bytes: bytes.clone()
                },
                "{text}"
            );
            assert_eq!(record.checksum_bytes().unwrap(), bytes, "{text}");
        }
        assert!(encode_checksum(ChecksumAlgorithm::Sha1, &sha1).starts_with("Q1"));
        assert_eq!(encode_checksum(ChecksumAlgorithm::Sha1, &sha1).len(), 30);
    }

    #[test]
    fn decodes_checksums_as_apk_does() {
        let zeros = vec![0u8; 20];
        for (text, bytes) in [
            // Text after the digest is ignored.
            (
                "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=trailing".to_owned(),
                zeros.clone(),
            ),
            (format!("X1{}\r", "0".repeat(40)), zeros.clone()),
            // Unused low bits of the last group are ignored.
            ("Q1AAAAAAAAAAAAAAAAAAAAAAAAAAB=".to_owned(), zeros.clone()),
            // apk's table reads `=` inside the text as 0.
            (format!("Q1{}=AA=", "A".repeat(24)), zeros.clone()),
            // Upper-case hex.
            (format!("X1{}", "AB".repeat(20)), vec![0xab; 20]),
        ] {
            assert_eq!(
                record_with_checksum(&text).checksum_bytes().unwrap(),
                bytes,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_checksums() {
        for text in [
            "",
            "Q",
            "Q1",
            "Q1AAAA",
            "Q1!!!!!!!!!!!!!!!!!!!!!!!!!!!=",
            "Q3AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Q2AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "X1zz",
            "MD5d41d8cd98f00b204e9800998ecf8427e",
            "Qé",
        ] {
            let error = record_with_checksum(text).checksum_bytes().unwrap_err();
            assert_eq!(
                error,
                IndexError::InvalidChecksum {
                    package: "busybox".to_owned(),
                    checksum: text.to_owned()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn filename_is_name_dash_version_dot_apk() {
        assert_eq!(
            record_with_checksum("Q1").filename(),
            "busybox-1.36.1-r29.apk"
        );
    }
}
