//! The APKINDEX text format: records of `X:value` lines separated by blank lines.
//!
//! Pure: text in, [`PackageRecord`]s out (and back). Fetching, signatures and caching live in
//! `repository` and `signature`; this module does not check that dependency names resolve or
//! that versions are valid apk versions beyond what the dependency syntax requires.
//!
//! Line endings: apk-tools writes `\n` only and does not strip `\r` (a `P:foo\r` line names a
//! package `foo\r`), so a carriage return anywhere in the text is rejected with the line number
//! instead of being silently accepted or dropped. A final record without a trailing blank line
//! is accepted.

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

/// Why index text could not be parsed, or a checksum could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// A non-blank line that is not `X:value` with a single ASCII letter before the colon.
    #[error("line {line}: malformed line `{text}`, expected `X:value`")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
        /// The line (shortened when long).
        text: String,
    },
    /// A carriage return; apk writes `\n` line endings only.
    #[error("line {line}: carriage return in index text (apk indexes use `\\n` line endings)")]
    CarriageReturn {
        /// 1-based line number.
        line: usize,
    },
    /// A numeric field whose value is not a decimal number that fits.
    #[error("line {line}: invalid {what} `{value}` in field {field}")]
    InvalidNumber {
        /// 1-based line number.
        line: usize,
        /// The field letter.
        field: char,
        /// What the field holds, e.g. `size`.
        what: &'static str,
        /// The offending value (shortened when long).
        value: String,
    },
    /// A dependency-list field with an atom that does not parse.
    #[error("line {line}: invalid dependency in field {field}: {error}")]
    InvalidDependency {
        /// 1-based line number.
        line: usize,
        /// The field letter.
        field: char,
        /// What is wrong with the atom (it names the atom).
        error: ConstraintError,
    },
    /// A single-valued field given twice in one record.
    #[error("line {line}: field {field} given twice in one record")]
    DuplicateField {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The field letter.
        field: char,
    },
    /// A record without one of the fields every record must have (`C`, `P`, `V`).
    #[error("record starting at line {line}: missing field {field}")]
    MissingField {
        /// 1-based line number of the record's first line.
        line: usize,
        /// The missing field letter.
        field: char,
    },
    /// A `C:` value that is not `Q1`/`Q2` base64 or `X1`/`X2` hex of the right length.
    #[error("invalid checksum `{checksum}` for package {package}")]
    InvalidChecksum {
        /// The package name.
        package: String,
        /// The checksum as written (shortened when long).
        checksum: String,
    },
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
    /// `V:` version.
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
    /// `D:` dependencies (including `!conflicts`).
    pub depends: Vec<Dependency>,
    /// `p:` provides (names or virtuals, optionally `=version`).
    pub provides: Vec<Dependency>,
    /// `i:` install_if: install this package when all of these are installed.
    pub install_if: Vec<Dependency>,
    /// `k:` provider_priority.
    pub provider_priority: Option<u64>,
    /// `r:` replaces: packages whose files this one may overwrite.
    pub replaces: Vec<Dependency>,
    /// `q:` replaces_priority.
    pub replaces_priority: Option<u64>,
    /// Fields this version does not interpret, kept in order so that records round-trip.
    pub other: Vec<(char, String)>,
}

impl PackageRecord {
    /// Decodes `C:` into its algorithm and digest bytes.
    ///
    /// Accepts `Q1` + base64 (SHA-1), `Q2` + base64 (SHA-256), their hexadecimal `X1`/`X2`
    /// forms, and the form newer apk-tools also reads where a `Q1`/`X1` SHA-1 encoding is
    /// followed by the encoding of the remaining 12 bytes of a SHA-256.
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

fn decode_checksum(text: &str) -> Option<Checksum> {
    let prefix = text.get(..2)?;
    let body = &text[2..];
    let bytes = match prefix {
        CHECKSUM_PREFIX_SHA1_BASE64 => match body.len() {
            28 => BASE64.decode(body).ok()?,
            44 => {
                let mut bytes = BASE64.decode(&body[..28]).ok()?;
                bytes.extend(BASE64.decode(&body[28..]).ok()?);
                bytes
            }
            _ => return None,
        },
        CHECKSUM_PREFIX_SHA256_BASE64 if body.len() == 44 => BASE64.decode(body).ok()?,
        CHECKSUM_PREFIX_SHA1_HEX if body.len() == 40 || body.len() == 64 => {
            hex::decode(body).ok()?
        }
        CHECKSUM_PREFIX_SHA256_HEX if body.len() == 64 => hex::decode(body).ok()?,
        _ => return None,
    };
    let algorithm = match bytes.len() {
        20 => ChecksumAlgorithm::Sha1,
        32 => ChecksumAlgorithm::Sha256,
        _ => return None,
    };
    Some(Checksum { algorithm, bytes })
}

/// Parses APKINDEX text (or the installed database's package headers) into records.
///
/// Records are separated by blank lines; every other line is `X:value` where `X` is one ASCII
/// letter. Known fields fill [`PackageRecord`]'s typed fields; other letters are kept in
/// [`PackageRecord::other`] in order. Each record must have `C`, `P` and `V`.
pub fn parse_index(text: &str) -> Result<Vec<PackageRecord>, IndexError> {
    let mut records = Vec::new();
    let mut current: Option<RecordBuilder> = None;
    for (index, line) in text.split('\n').enumerate() {
        let line_number = index + 1;
        if line.contains('\r') {
            return Err(IndexError::CarriageReturn { line: line_number });
        }
        if line.is_empty() {
            if let Some(builder) = current.take() {
                records.push(builder.finish()?);
            }
            continue;
        }
        let (field, value) = split_field(line).ok_or_else(|| IndexError::MalformedLine {
            line: line_number,
            text: quote(line),
        })?;
        current
            .get_or_insert_with(|| RecordBuilder::new(line_number))
            .add(field, value, line_number)?;
    }
    if let Some(builder) = current.take() {
        records.push(builder.finish()?);
    }
    Ok(records)
}

/// Writes records as APKINDEX text, each followed by a blank line, fields in the order
/// apk-tools writes them (`apk_pkg_write_index_header`, then the installed database's `r:` and
/// `q:`), then [`PackageRecord::other`] in order.
///
/// Optional fields are written only when present (`A`, `D`, `p`, `i`, `r` only when non-empty),
/// so [`parse_index`] of the output gives back the same records. A value cannot hold a line
/// break in this format; any `\n` or `\r` inside a value is written as a space.
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

fn split_field(line: &str) -> Option<(char, &str)> {
    let bytes = line.as_bytes();
    let field = *bytes.first()?;
    if !field.is_ascii_alphabetic() || bytes.get(1) != Some(&b':') {
        return None;
    }
    Some((char::from(field), &line[2..]))
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

/// Accumulates one record's fields, tracking which single-valued fields were seen.
struct RecordBuilder {
    record: PackageRecord,
    first_line: usize,
    seen: Vec<char>,
}

impl RecordBuilder {
    fn new(first_line: usize) -> Self {
        Self {
            record: PackageRecord::default(),
            first_line,
            seen: Vec::new(),
        }
    }

    fn add(&mut self, field: char, value: &str, line: usize) -> Result<(), IndexError> {
        if !is_known_field(field) {
            self.record.other.push((field, value.to_owned()));
            return Ok(());
        }
        if self.seen.contains(&field) {
            return Err(IndexError::DuplicateField { line, field });
        }
        self.seen.push(field);
        let record = &mut self.record;
        match field {
            FIELD_CHECKSUM => record.checksum = value.to_owned(),
            FIELD_NAME => record.name = value.to_owned(),
            FIELD_VERSION => record.version = value.to_owned(),
            FIELD_ARCH => record.arch = value.to_owned(),
            FIELD_SIZE => record.size = parse_number(value, line, field, "size")?,
            FIELD_INSTALLED_SIZE => {
                record.installed_size = parse_number(value, line, field, "installed size")?;
            }
            FIELD_DESCRIPTION => record.description = value.to_owned(),
            FIELD_URL => record.url = value.to_owned(),
            FIELD_LICENSE => record.license = value.to_owned(),
            FIELD_ORIGIN => record.origin = Some(value.to_owned()),
            FIELD_MAINTAINER => record.maintainer = Some(value.to_owned()),
            FIELD_BUILD_TIME => {
                record.build_time = Some(parse_number(value, line, field, "build time")?);
            }
            FIELD_COMMIT => record.commit = Some(value.to_owned()),
            FIELD_DEPENDS => record.depends = parse_dependencies(value, line, field)?,
            FIELD_PROVIDES => record.provides = parse_dependencies(value, line, field)?,
            FIELD_INSTALL_IF => record.install_if = parse_dependencies(value, line, field)?,
            FIELD_PROVIDER_PRIORITY => {
                record.provider_priority =
                    Some(parse_number(value, line, field, "provider priority")?);
            }
            FIELD_REPLACES => record.replaces = parse_dependencies(value, line, field)?,
            FIELD_REPLACES_PRIORITY => {
                record.replaces_priority =
                    Some(parse_number(value, line, field, "replaces priority")?);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<PackageRecord, IndexError> {
        for field in [FIELD_CHECKSUM, FIELD_NAME, FIELD_VERSION] {
            if !self.seen.contains(&field) {
                return Err(IndexError::MissingField {
                    line: self.first_line,
                    field,
                });
            }
        }
        Ok(self.record)
    }
}

fn is_known_field(field: char) -> bool {
    matches!(
        field,
        FIELD_CHECKSUM
            | FIELD_NAME
            | FIELD_VERSION
            | FIELD_ARCH
            | FIELD_SIZE
            | FIELD_INSTALLED_SIZE
            | FIELD_DESCRIPTION
            | FIELD_URL
            | FIELD_LICENSE
            | FIELD_ORIGIN
            | FIELD_MAINTAINER
            | FIELD_BUILD_TIME
            | FIELD_COMMIT
            | FIELD_DEPENDS
            | FIELD_PROVIDES
            | FIELD_INSTALL_IF
            | FIELD_PROVIDER_PRIORITY
            | FIELD_REPLACES
            | FIELD_REPLACES_PRIORITY
    )
}

/// Parses a decimal field: ASCII digits only (no sign, no spaces), fitting the target type.
fn parse_number<T: std::str::FromStr>(
    value: &str,
    line: usize,
    field: char,
    what: &'static str,
) -> Result<T, IndexError> {
    parse_decimal(value).ok_or_else(|| IndexError::InvalidNumber {
        line,
        field,
        what,
        value: quote(value),
    })
}

/// A decimal number as apk metadata writes it: ASCII digits only (no sign, no spaces), fitting
/// the target type.
pub(crate) fn parse_decimal<T: std::str::FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_dependencies(
    value: &str,
    line: usize,
    field: char,
) -> Result<Vec<Dependency>, IndexError> {
    constraint::parse_list(value).map_err(|error| IndexError::InvalidDependency {
        line,
        field,
        error,
    })
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
i:busybox-extras=1.36.1-r29 openrc@edge
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
        let mut tagged = dep("openrc", VersionOp::Any, None);
        tagged.tag = Some("edge".to_owned());
        assert_eq!(
            busybox.install_if,
            vec![
                dep("busybox-extras", VersionOp::Equal, Some("1.36.1-r29")),
                tagged
            ]
        );
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

    #[test]
    fn tolerates_missing_final_blank_line_and_extra_blank_lines() {
        let text = "\n\nC:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n\n\n\nC:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:b\nV:2";
        let records = parse_index(text).unwrap();
        let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(parse_index("").unwrap(), Vec::new());
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

    #[test]
    fn errors_name_the_line_and_field() {
        const HEAD: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a\nV:1\n";
        check(
            &format!("{HEAD}S:abc\n"),
            IndexError::InvalidNumber {
                line: 4,
                field: 'S',
                what: "size",
                value: "abc".to_owned(),
            },
            "line 4: invalid size `abc` in field S",
        );
        check(
            &format!("{HEAD}I:-5\n"),
            IndexError::InvalidNumber {
                line: 4,
                field: 'I',
                what: "installed size",
                value: "-5".to_owned(),
            },
            "line 4: invalid installed size `-5` in field I",
        );
        check(
            &format!("{HEAD}k:99999999999999999999999\n"),
            IndexError::InvalidNumber {
                line: 4,
                field: 'k',
                what: "provider priority",
                value: "99999999999999999999999".to_owned(),
            },
            "line 4: invalid provider priority `99999999999999999999999` in field k",
        );
        check(
            &format!("{HEAD}t: 12\n"),
            IndexError::InvalidNumber {
                line: 4,
                field: 't',
                what: "build time",
                value: " 12".to_owned(),
            },
            "line 4: invalid build time ` 12` in field t",
        );
        check(
            &format!("{HEAD}\n{HEAD}this is not a field\n"),
            IndexError::MalformedLine {
                line: 8,
                text: "this is not a field".to_owned(),
            },
            "line 8: malformed line `this is not a field`, expected `X:value`",
        );
        check(
            &format!("{HEAD}1:digit field\n"),
            IndexError::MalformedLine {
                line: 4,
                text: "1:digit field".to_owned(),
            },
            "line 4: malformed line `1:digit field`, expected `X:value`",
        );
        check(
            &format!("{HEAD}D:musl =1\n"),
            IndexError::InvalidDependency {
                line: 4,
                field: 'D',
                error: ConstraintError::EmptyName {
                    atom: "=1".to_owned(),
                },
            },
            "line 4: invalid dependency in field D: dependency `=1` has an empty name",
        );
        check(
            &format!("{HEAD}P:b\n"),
            IndexError::DuplicateField {
                line: 4,
                field: 'P',
            },
            "line 4: field P given twice in one record",
        );
        check(
            &format!("{HEAD}\nP:b\nV:2\n"),
            IndexError::MissingField {
                line: 5,
                field: 'C',
            },
            "record starting at line 5: missing field C",
        );
        check(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nV:1\n",
            IndexError::MissingField {
                line: 1,
                field: 'P',
            },
            "record starting at line 1: missing field P",
        );
        check(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:a",
            IndexError::MissingField {
                line: 1,
                field: 'V',
            },
            "record starting at line 1: missing field V",
        );
        check(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nP:a\r\nV:1\r\n",
            IndexError::CarriageReturn { line: 1 },
            "line 1: carriage return in index text (apk indexes use `\\n` line endings)",
        );
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
    fn rejects_bad_checksums() {
        for text in [
            "",
            "Q",
            "Q1",
            "Q1AAAA",
            "Q1!!!!!!!!!!!!!!!!!!!!!!!!!!!=",
            "Q3AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Q2AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
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
