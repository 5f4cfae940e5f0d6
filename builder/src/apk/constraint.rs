//! Dependency atoms as apk writes them: `name`, `name=1.2`, `name~1.2`, `name<~2`, `!name`,
//! `name@tag`, `so:libc.musl-x86_64.so.1`, `name><Q1…`, and the version tests they imply.
//!
//! Parsing follows apk-tools 3.0.6 (`apk_dep_parse` and `apk_blob_pull_dep` in `package.c`)
//! byte for byte:
//!
//! - An atom is one word: lists (`D:`, `p:`, `i:` lines, `.PKGINFO` values, the world file) are
//!   split at spaces and newlines only, so a tab is part of a name.
//! - `!` once at the front marks a conflict. The name runs up to the first operator character
//!   (`<`, `>`, `=`, `~`) and is not otherwise checked: `=1.0` has the empty name and `na#me` is
//!   a name, they just never resolve. `name@tag` takes the tag after the name's first `@`.
//! - The operator is the whole run of operator characters, each adding its test as apk's
//!   `apk_version_result_mask` does (`<` less, `>` greater, `=` equal, `~` fuzzy equal), so order
//!   and repetition do not matter: `=~` and `~=` are `~`, `=<` is `<=`, `<~` and `>~` are the
//!   fuzzy ranges, `><` pins a package checksum, and `<>=` (any result) matches every version.
//!   The version is the rest of the word and may not be empty.
//! - A version that is not a valid apk version makes the atom "broken"
//!   ([`Dependency::is_broken`]) unless the operator holds both `<` and `>`. `apk add` refuses
//!   broken atoms and tags are allowed there ([`Dependency::parse`]); index lines keep broken atoms
//!   and refuse tags ([`parse_index_list`]), leaving the consequences to the index reader.
//!
//! Matching is `apk_version_match`: the comparison's result (fuzzy for operators with `~`) is
//! tested against the operator's bits, so invalid versions on either side are compared the
//! way the `version` module compares them.
//!
//! Printing follows `apk_blob_push_dep`: conflict mark, name, `@tag`, then the canonical
//! operator and the version, which is also the line format of `/etc/apk/world`.
//!
//! Pure: parsing, printing and matching only; which packages an atom names is the solver's
//! business.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::{index, version};

/// Marks a conflict atom (`!name`).
pub const CONFLICT_PREFIX: char = '!';
/// Separates a name from its repository tag (`name@tag`).
pub const TAG_SEPARATOR: char = '@';
/// Characters that separate atoms in a list (APKINDEX `D:`/`p:`/`i:` lines, `/etc/apk/world`;
/// apk-tools' `APK_CTYPE_DEPENDENCY_SEPARATOR`).
pub const LIST_SEPARATORS: [char; 2] = [' ', '\n'];

const OPERATOR_LESS: char = '<';
const OPERATOR_GREATER: char = '>';
const OPERATOR_EQUAL: char = '=';
const OPERATOR_FUZZY: char = '~';

/// apk's result bits (`APK_VERSION_EQUAL`, `_LESS`, `_GREATER`, `_FUZZY`).
const RESULT_EQUAL: u8 = 1;
const RESULT_LESS: u8 = 2;
const RESULT_GREATER: u8 = 4;
const RESULT_FUZZY: u8 = 8;
/// `APK_DEPMASK_ANY`: every comparison result passes.
const RESULT_ANY: u8 = RESULT_EQUAL | RESULT_LESS | RESULT_GREATER;
/// `APK_DEPMASK_CHECKSUM`: `><`.
const RESULT_CHECKSUM: u8 = RESULT_LESS | RESULT_GREATER;

/// Length of the digest prefix a checksum pin compares (`apk_pkg_hash_blob`: SHA-1 sized).
const PIN_DIGEST_LEN: usize = 20;

/// Whether `c` is one of apk's version operator characters (`APK_CTYPE_DEPENDENCY_COMPARER`).
fn is_operator_char(c: char) -> bool {
    matches!(
        c,
        OPERATOR_LESS | OPERATOR_GREATER | OPERATOR_EQUAL | OPERATOR_FUZZY
    )
}

fn is_separator(c: char) -> bool {
    LIST_SEPARATORS.contains(&c)
}

/// Errors from parsing a dependency atom; every variant names the offending atom.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConstraintError {
    /// The atom was the empty string (or only separators).
    #[error("empty dependency atom")]
    Empty,
    /// Separators with more text after them: `apk add` takes one atom per argument.
    #[error("dependency `{atom}` is more than one atom")]
    SeveralAtoms {
        /// The atom as given.
        atom: String,
    },
    /// An operator with nothing after it (`name>=`).
    #[error("dependency `{atom}` has operator `{operator}` but no version")]
    MissingVersion {
        /// The atom as given.
        atom: String,
        /// The operator characters.
        operator: String,
    },
    /// The text after the operator is not a valid apk version (this includes a tag written
    /// after the version, `name=1.0@edge`). `apk add` refuses such an atom; index lines keep it.
    #[error("dependency `{atom}` has invalid version `{version}`")]
    InvalidVersion {
        /// The atom as given.
        atom: String,
        /// The text after the operator.
        version: String,
    },
    /// A repository tag where apk allows none (index and `.PKGINFO` lines).
    #[error("dependency `{atom}` has a repository tag, which package metadata may not have")]
    TagNotAllowed {
        /// The atom as given.
        atom: String,
    },
}

/// The version test of a dependency atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionOp {
    /// No version constraint: any version matches. Also what `<>=` and `<>~` amount to (every
    /// comparison result passes); the version written after them is kept but never consulted.
    Any,
    /// `=`: exactly this version.
    Equal,
    /// `<`
    Less,
    /// `>`
    Greater,
    /// `<=`
    LessEqual,
    /// `>=`
    GreaterEqual,
    /// `~` (also written `=~` or `~=`): fuzzy match; `go~1.25` matches 1.25, 1.25.8 and
    /// 1.25.8-r3 but not 1.250 or 1.26.
    Fuzzy,
    /// `<~`: older than the version, or a fuzzy match of it (`name<~1.25` admits 1.24, 1.25 and
    /// 1.25.8, not 1.26).
    LessFuzzy,
    /// `>~`: newer than the version, or a fuzzy match of it (`name>~1.25` admits 1.25.8 and 1.26,
    /// not 1.24).
    GreaterFuzzy,
    /// `><`: the package whose checksum is the version (`name><Q1…`, what `apk add ./file.apk`
    /// writes to the world); see [`Dependency::matches_checksum`].
    Checksum,
}

impl VersionOp {
    /// The canonical operator as apk prints it (`apk_version_op_string`); empty for
    /// [`VersionOp::Any`].
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Any => "",
            VersionOp::Equal => "=",
            VersionOp::Less => "<",
            VersionOp::Greater => ">",
            VersionOp::LessEqual => "<=",
            VersionOp::GreaterEqual => ">=",
            VersionOp::Fuzzy => "~",
            VersionOp::LessFuzzy => "<~",
            VersionOp::GreaterFuzzy => ">~",
            VersionOp::Checksum => "><",
        }
    }

    /// The comparison results this operator admits, as apk's bits.
    fn mask(self) -> u8 {
        match self {
            VersionOp::Any => RESULT_ANY,
            VersionOp::Equal => RESULT_EQUAL,
            VersionOp::Less => RESULT_LESS,
            VersionOp::Greater => RESULT_GREATER,
            VersionOp::LessEqual => RESULT_LESS | RESULT_EQUAL,
            VersionOp::GreaterEqual => RESULT_GREATER | RESULT_EQUAL,
            VersionOp::Fuzzy => RESULT_FUZZY | RESULT_EQUAL,
            VersionOp::LessFuzzy => RESULT_LESS | RESULT_FUZZY | RESULT_EQUAL,
            VersionOp::GreaterFuzzy => RESULT_GREATER | RESULT_FUZZY | RESULT_EQUAL,
            VersionOp::Checksum => RESULT_CHECKSUM,
        }
    }

    /// Combines a non-empty run of operator characters the way `apk_version_result_mask` does:
    /// each character adds its bits (`~` adds fuzzy and equal).
    fn from_symbols(symbols: &str) -> Self {
        let mask = symbols.chars().fold(0, |mask, c| {
            mask | match c {
                OPERATOR_LESS => RESULT_LESS,
                OPERATOR_GREATER => RESULT_GREATER,
                OPERATOR_FUZZY => RESULT_FUZZY | RESULT_EQUAL,
                _ => RESULT_EQUAL,
            }
        });
        match mask {
            RESULT_EQUAL => VersionOp::Equal,
            RESULT_LESS => VersionOp::Less,
            RESULT_GREATER => VersionOp::Greater,
            m if m == RESULT_LESS | RESULT_EQUAL => VersionOp::LessEqual,
            m if m == RESULT_GREATER | RESULT_EQUAL => VersionOp::GreaterEqual,
            RESULT_CHECKSUM => VersionOp::Checksum,
            m if m == RESULT_FUZZY | RESULT_EQUAL => VersionOp::Fuzzy,
            m if m == RESULT_LESS | RESULT_FUZZY | RESULT_EQUAL => VersionOp::LessFuzzy,
            m if m == RESULT_GREATER | RESULT_FUZZY | RESULT_EQUAL => VersionOp::GreaterFuzzy,
            // Both `<` and `>` with `=` (and perhaps `~`): every result passes.
            _ => VersionOp::Any,
        }
    }

    /// Whether apk checks the version after this operator (`apk_blob_pull_dep` skips the check
    /// when the operator holds both `<` and `>`).
    fn validates_version(self) -> bool {
        self.mask() & RESULT_CHECKSUM != RESULT_CHECKSUM
    }
}

impl fmt::Display for VersionOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dependency atom: a name (or virtual such as `so:`, `cmd:`, `pc:`), an optional version
/// test, an optional repository tag (`@tag`) and whether it is a conflict (`!name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// Package or virtual name, as written (apk does not restrict its characters).
    pub name: String,
    /// Version operator; [`VersionOp::Any`] when `version` is `None`.
    pub op: VersionOp,
    /// Version the operator compares against (for [`VersionOp::Checksum`], the checksum).
    pub version: Option<String>,
    /// `!name`: the package must not be installed (or must not match the version test).
    pub conflict: bool,
    /// `name@tag`: only packages from repositories tagged `tag` (or untagged ones when the
    /// package was already pinned) may satisfy it. Kept as written, so possibly empty.
    pub tag: Option<String>,
}

impl Dependency {
    /// Parses one atom the way `apk add` parses an argument (`apk_blob_pull_dep` with tags
    /// allowed): `name`, `name=1.2-r0`, `name<1`, `name>1`, `name<=1`, `name>=1`, `name~1.2` (also
    /// `=~`, `~=`), `name<~1.2`, `name>~1.2`, `name><Q1…`, `!name`, `!name<2`, `name@tag`,
    /// `name@tag=1.2`, and virtual names such as `so:libc.musl-x86_64.so.1`.
    ///
    /// Like `apk add`, it refuses an atom whose version is invalid, an operator without a
    /// version, and a second word (separators followed by more text); trailing separators are
    /// ignored. Unlike `apk add`, which drops empty arguments before parsing, it refuses the
    /// empty atom.
    pub fn parse(atom: &str) -> Result<Self, ConstraintError> {
        let (word, rest) = split_word(atom);
        if !rest.is_empty() {
            return Err(ConstraintError::SeveralAtoms {
                atom: atom.to_owned(),
            });
        }
        if word.is_empty() {
            return Err(ConstraintError::Empty);
        }
        let dependency = parse_word(word, atom)?;
        if dependency.is_broken() {
            return Err(ConstraintError::InvalidVersion {
                atom: atom.to_owned(),
                version: dependency.version.unwrap_or_default(),
            });
        }
        Ok(dependency)
    }

    /// Whether apk marks this atom broken: its operator checks the version (all but `><` and
    /// the match-anything `<>=`) and the version is not a valid apk version (`dep.broken` in
    /// `apk_blob_pull_dep`).
    pub fn is_broken(&self) -> bool {
        match &self.version {
            Some(version) => self.op.validates_version() && !version::is_valid(version),
            None => false,
        }
    }

    /// Whether a package or provide at `version` passes this atom's version test, with apk's
    /// comparison rules (`apk_version_match`): the comparison's result (fuzzy when the operator
    /// has `~`) must be one the operator admits. The conflict flag and the tag are ignored:
    /// callers decide what a match means for `!name` and which repositories a tag admits. An
    /// atom without a version test matches every version.
    ///
    /// For [`VersionOp::Checksum`] this is what apk computes for a conflict (`!name><…`), whose
    /// version test it runs like any other; a plain checksum pin compares the package checksum
    /// instead, see [`Dependency::matches_package`].
    pub fn matches(&self, version: &str) -> bool {
        let Some(wanted) = self.version.as_deref() else {
            return true;
        };
        let mask = self.op.mask();
        if mask & RESULT_ANY == RESULT_ANY {
            return true;
        }
        let ordering = if mask & RESULT_FUZZY != 0 {
            version::compare_fuzzy(version, wanted)
        } else {
            version::compare(version, wanted)
        };
        let result = match ordering {
            Ordering::Less => RESULT_LESS,
            Ordering::Equal => RESULT_EQUAL,
            Ordering::Greater => RESULT_GREATER,
        };
        mask & result != 0
    }

    /// Whether this atom's checksum pin names the package whose index checksum (`C:`) is
    /// `checksum` (`apk_dep_match_checksum`): both decoded as apk decodes `C:`, the pin must be
    /// a SHA-1 sized digest equal to the first 20 bytes of the package's digest. False for atoms
    /// that are not [`VersionOp::Checksum`].
    pub fn matches_checksum(&self, checksum: &str) -> bool {
        if self.op != VersionOp::Checksum {
            return false;
        }
        let pin = self.version.as_deref().and_then(index::decode_checksum);
        let package = index::decode_checksum(checksum);
        match (pin, package) {
            (Some(pin), Some(package)) => {
                pin.bytes.len() == PIN_DIGEST_LEN
                    && package.bytes.get(..PIN_DIGEST_LEN) == Some(pin.bytes.as_slice())
            }
            _ => false,
        }
    }

    /// apk's version test of a package (or of one of its provides) against this atom, before
    /// the conflict flag is applied (`apk_dep_is_materialized` / `apk_dep_is_provided`):
    /// `version` is the package's or the provide's version, `checksum` the package's `C:`. A
    /// non-conflict checksum pin compares checksums, everything else is [`Dependency::matches`].
    pub fn matches_package(&self, version: &str, checksum: &str) -> bool {
        if self.op == VersionOp::Checksum && !self.conflict {
            self.matches_checksum(checksum)
        } else {
            self.matches(version)
        }
    }
}

impl FromStr for Dependency {
    type Err = ConstraintError;

    fn from_str(atom: &str) -> Result<Self, Self::Err> {
        Dependency::parse(atom)
    }
}

/// Writes the atom the way apk writes it to `/etc/apk/world`: `[!]name[@tag][op version]`, with
/// the canonical operator (`~` for every fuzzy spelling). [`VersionOp::Any`] prints no version.
impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conflict {
            write!(f, "{CONFLICT_PREFIX}")?;
        }
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, "{TAG_SEPARATOR}{tag}")?;
        }
        if let (Some(version), false) = (&self.version, self.op == VersionOp::Any) {
            write!(f, "{}{version}", self.op)?;
        }
        Ok(())
    }
}

/// Parses a list of atoms separated by spaces or newlines (repeated separators allowed), as in
/// `/etc/apk/world`, each as [`Dependency::parse`] parses it. The first bad atom fails the list.
pub fn parse_list(list: &str) -> Result<Vec<Dependency>, ConstraintError> {
    list.split(LIST_SEPARATORS)
        .filter(|atom| !atom.is_empty())
        .map(Dependency::parse)
        .collect()
}

/// What apk keeps of one dependency list in package metadata (an APKINDEX `D:`, `p:`, `i:` or
/// `r:` value, a `.PKGINFO` `depend`, `provides`, `install_if` or `replaces` value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AtomList {
    /// The atoms apk adds, in order: every word up to the first one that does not parse, broken
    /// ones included.
    pub atoms: Vec<Dependency>,
    /// The first thing apk reports about the list, if any: a broken atom (kept in `atoms`) or a
    /// word that does not parse or carries a tag (where the list stops).
    pub problem: Option<ConstraintError>,
}

/// Parses a dependency list from package metadata as `apk_blob_pull_deps` does with tags not
/// allowed: words are split at spaces and newlines; a separator at the very start yields an
/// atom with the empty name (as in apk); a word that does not parse or has a tag ends the list;
/// broken atoms are kept. See [`AtomList`].
pub fn parse_index_list(list: &str) -> AtomList {
    let mut parsed = AtomList::default();
    for word in list_words(list) {
        let dependency = match parse_word(word, word) {
            Ok(dependency) if dependency.tag.is_some() => Err(ConstraintError::TagNotAllowed {
                atom: word.to_owned(),
            }),
            other => other,
        };
        match dependency {
            Ok(dependency) => {
                if dependency.is_broken() && parsed.problem.is_none() {
                    parsed.problem = Some(ConstraintError::InvalidVersion {
                        atom: word.to_owned(),
                        version: dependency.version.clone().unwrap_or_default(),
                    });
                }
                parsed.atoms.push(dependency);
            }
            Err(error) => {
                parsed.problem.get_or_insert(error);
                break;
            }
        }
    }
    parsed
}

/// The words of a dependency list as `apk_blob_pull_deps` takes them apart: each runs up to a
/// separator, and the separators after it are skipped, so only a separator at the very start
/// yields an empty word. [`parse_index_list`] parses these words.
pub fn list_words(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (word, tail) = split_word(rest);
        rest = tail;
        Some(word)
    })
}

/// The first word of `text` (up to a separator) and what follows the separators after it.
fn split_word(text: &str) -> (&str, &str) {
    let end = text.find(is_separator).unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    (word, rest.trim_start_matches(is_separator))
}

/// `apk_dep_parse` of one word, then the tag split; `atom` is what errors name. The version is
/// not checked here.
fn parse_word(word: &str, atom: &str) -> Result<Dependency, ConstraintError> {
    let (conflict, body) = match word.strip_prefix(CONFLICT_PREFIX) {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let (name_and_tag, test) = match body.find(is_operator_char) {
        Some(start) => {
            let (name_and_tag, test) = body.split_at(start);
            let length = test
                .find(|c: char| !is_operator_char(c))
                .unwrap_or(test.len());
            let (symbols, version) = test.split_at(length);
            if version.is_empty() {
                return Err(ConstraintError::MissingVersion {
                    atom: atom.to_owned(),
                    operator: symbols.to_owned(),
                });
            }
            (
                name_and_tag,
                Some((VersionOp::from_symbols(symbols), version)),
            )
        }
        None => (body, None),
    };
    let (name, tag) = match name_and_tag.split_once(TAG_SEPARATOR) {
        Some((name, tag)) => (name, Some(tag.to_owned())),
        None => (name_and_tag, None),
    };
    let (op, version) = match test {
        Some((op, version)) => (op, Some(version.to_owned())),
        None => (VersionOp::Any, None),
    };
    Ok(Dependency {
        name: name.to_owned(),
        op,
        version,
        conflict,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::version::golden;

    fn dep(name: &str, op: VersionOp, version: Option<&str>) -> Dependency {
        Dependency {
            name: name.to_owned(),
            op,
            version: version.map(str::to_owned),
            conflict: false,
            tag: None,
        }
    }

    fn conflicting(mut dependency: Dependency) -> Dependency {
        dependency.conflict = true;
        dependency
    }

    fn tagged(mut dependency: Dependency, tag: &str) -> Dependency {
        dependency.tag = Some(tag.to_owned());
        dependency
    }

    /// Parses `atom`, compares with `expected`, checks it prints as `canonical` and that the
    /// printed form parses back to the same value.
    fn check(atom: &str, expected: &Dependency, canonical: &str) {
        let parsed = Dependency::parse(atom).unwrap_or_else(|error| panic!("{atom}: {error}"));
        assert_eq!(&parsed, expected, "{atom}");
        assert_eq!(parsed.to_string(), canonical, "{atom}");
        assert_eq!(
            Dependency::parse(&parsed.to_string()).as_ref(),
            Ok(expected),
            "{atom} round trip"
        );
        assert_eq!(atom.parse::<Dependency>().as_ref(), Ok(expected), "{atom}");
    }

    #[test]
    fn parses_every_form() {
        use VersionOp::*;
        let cases = [
            ("busybox", dep("busybox", Any, None), "busybox"),
            (
                "busybox=1.36.1-r0",
                dep("busybox", Equal, Some("1.36.1-r0")),
                "busybox=1.36.1-r0",
            ),
            ("name<1", dep("name", Less, Some("1")), "name<1"),
            ("name>1", dep("name", Greater, Some("1")), "name>1"),
            ("name<=1", dep("name", LessEqual, Some("1")), "name<=1"),
            ("name>=1", dep("name", GreaterEqual, Some("1")), "name>=1"),
            ("name~1.2", dep("name", Fuzzy, Some("1.2")), "name~1.2"),
            ("name=~1.2", dep("name", Fuzzy, Some("1.2")), "name~1.2"),
            ("name~=1.2", dep("name", Fuzzy, Some("1.2")), "name~1.2"),
            ("go~1.25", dep("go", Fuzzy, Some("1.25")), "go~1.25"),
            // apk combines operator characters, so these spellings are accepted too.
            ("name=<1", dep("name", LessEqual, Some("1")), "name<=1"),
            ("name=>1", dep("name", GreaterEqual, Some("1")), "name>=1"),
            ("name==1", dep("name", Equal, Some("1")), "name=1"),
            ("name~~1", dep("name", Fuzzy, Some("1")), "name~1"),
            ("!name", conflicting(dep("name", Any, None)), "!name"),
            (
                "!name<2",
                conflicting(dep("name", Less, Some("2"))),
                "!name<2",
            ),
            (
                "name@edge",
                tagged(dep("name", Any, None), "edge"),
                "name@edge",
            ),
            (
                "name@edge=1.2",
                tagged(dep("name", Equal, Some("1.2")), "edge"),
                "name@edge=1.2",
            ),
            (
                "name@edge=~1.2",
                tagged(dep("name", Fuzzy, Some("1.2")), "edge"),
                "name@edge~1.2",
            ),
            (
                "!name@testing>=2.0_rc1",
                conflicting(tagged(
                    dep("name", GreaterEqual, Some("2.0_rc1")),
                    "testing",
                )),
                "!name@testing>=2.0_rc1",
            ),
            (
                "so:libc.musl-x86_64.so.1",
                dep("so:libc.musl-x86_64.so.1", Any, None),
                "so:libc.musl-x86_64.so.1",
            ),
            ("cmd:busybox", dep("cmd:busybox", Any, None), "cmd:busybox"),
            ("cmd:[", dep("cmd:[", Any, None), "cmd:["),
            (
                "pc:zlib=1.3",
                dep("pc:zlib", Equal, Some("1.3")),
                "pc:zlib=1.3",
            ),
            (
                "pc:gtk+-3.0>=3.24",
                dep("pc:gtk+-3.0", GreaterEqual, Some("3.24")),
                "pc:gtk+-3.0>=3.24",
            ),
            (
                "so:libstdc++.so.6=6.0.33",
                dep("so:libstdc++.so.6", Equal, Some("6.0.33")),
                "so:libstdc++.so.6=6.0.33",
            ),
            ("/bin/sh", dep("/bin/sh", Any, None), "/bin/sh"),
            (
                "py3.12:setuptools=70.3.0-r0",
                dep("py3.12:setuptools", Equal, Some("70.3.0-r0")),
                "py3.12:setuptools=70.3.0-r0",
            ),
            (
                "openssl-provider-fips=3.0.9-r2",
                dep("openssl-provider-fips", Equal, Some("3.0.9-r2")),
                "openssl-provider-fips=3.0.9-r2",
            ),
            (
                "name=1.0~c0ffee-r0",
                dep("name", Equal, Some("1.0~c0ffee-r0")),
                "name=1.0~c0ffee-r0",
            ),
            ("R", dep("R", Any, None), "R"),
            (
                "name<~1.2",
                dep("name", LessFuzzy, Some("1.2")),
                "name<~1.2",
            ),
            (
                "name~<1.2",
                dep("name", LessFuzzy, Some("1.2")),
                "name<~1.2",
            ),
            (
                "name=<~1.2",
                dep("name", LessFuzzy, Some("1.2")),
                "name<~1.2",
            ),
            (
                "name>~1.2",
                dep("name", GreaterFuzzy, Some("1.2")),
                "name>~1.2",
            ),
            (
                "name~>1.2",
                dep("name", GreaterFuzzy, Some("1.2")),
                "name>~1.2",
            ),
            (
                "name><Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=",
                dep("name", Checksum, Some("Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=")),
                "name><Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=",
            ),
            ("name<>1", dep("name", Checksum, Some("1")), "name><1"),
            // apk does not check a checksum pin's text.
            (
                "name><v2.4",
                dep("name", Checksum, Some("v2.4")),
                "name><v2.4",
            ),
            // Trailing separators are ignored, as `apk add` ignores them.
            ("name=1.0 ", dep("name", Equal, Some("1.0")), "name=1.0"),
            ("name\n", dep("name", Any, None), "name"),
            // apk does not restrict name characters: these parse and never resolve.
            ("na#me", dep("na#me", Any, None), "na#me"),
            ("naïve", dep("naïve", Any, None), "naïve"),
            ("q\tx", dep("q\tx", Any, None), "q\tx"),
            ("Q*?", dep("Q*?", Any, None), "Q*?"),
            ("name!", dep("name!", Any, None), "name!"),
            ("=1.0", dep("", Equal, Some("1.0")), "=1.0"),
            ("!", conflicting(dep("", Any, None)), "!"),
            ("!!name", conflicting(dep("!name", Any, None)), "!!name"),
            ("@edge", tagged(dep("", Any, None), "edge"), "@edge"),
            ("name@", tagged(dep("name", Any, None), ""), "name@"),
            (
                "name@edge@main",
                tagged(dep("name", Any, None), "edge@main"),
                "name@edge@main",
            ),
        ];
        for (atom, expected, canonical) in &cases {
            check(atom, expected, canonical);
        }
    }

    fn check_error(atom: &str, message: &str) {
        match Dependency::parse(atom) {
            Ok(parsed) => panic!("{atom:?} parsed as {parsed:?}"),
            Err(error) => assert_eq!(error.to_string(), message, "{atom:?}"),
        }
    }

    #[test]
    fn rejects_what_apk_add_rejects_naming_the_atom() {
        for (atom, message) in [
            ("", "empty dependency atom"),
            (" ", "empty dependency atom"),
            (" name", "dependency ` name` is more than one atom"),
            ("na me", "dependency `na me` is more than one atom"),
            ("name=1 2", "dependency `name=1 2` is more than one atom"),
            (
                "name=1.0 other",
                "dependency `name=1.0 other` is more than one atom",
            ),
            (
                "name\nother",
                "dependency `name\nother` is more than one atom",
            ),
            (
                "name=",
                "dependency `name=` has operator `=` but no version",
            ),
            (
                "name>=",
                "dependency `name>=` has operator `>=` but no version",
            ),
            (
                "name~",
                "dependency `name~` has operator `~` but no version",
            ),
            (
                "name<>",
                "dependency `name<>` has operator `<>` but no version",
            ),
            (
                "name@=",
                "dependency `name@=` has operator `=` but no version",
            ),
            (
                "name=abc",
                "dependency `name=abc` has invalid version `abc`",
            ),
            (
                "name=v1.0",
                "dependency `name=v1.0` has invalid version `v1.0`",
            ),
            (
                "name=1.0_foo",
                "dependency `name=1.0_foo` has invalid version `1.0_foo`",
            ),
            (
                "name=1.2@edge",
                "dependency `name=1.2@edge` has invalid version `1.2@edge`",
            ),
            (
                "name>=1.0<2.0",
                "dependency `name>=1.0<2.0` has invalid version `1.0<2.0`",
            ),
            ("name=!1", "dependency `name=!1` has invalid version `!1`"),
            (
                "name<~1.0-",
                "dependency `name<~1.0-` has invalid version `1.0-`",
            ),
        ] {
            check_error(atom, message);
        }
    }

    #[test]
    fn error_variants_carry_the_atom() {
        assert_eq!(
            Dependency::parse("name>=1.0_foo"),
            Err(ConstraintError::InvalidVersion {
                atom: "name>=1.0_foo".to_owned(),
                version: "1.0_foo".to_owned(),
            })
        );
        assert_eq!(
            Dependency::parse("name>~"),
            Err(ConstraintError::MissingVersion {
                atom: "name>~".to_owned(),
                operator: ">~".to_owned(),
            })
        );
        assert_eq!(
            Dependency::parse("a b"),
            Err(ConstraintError::SeveralAtoms {
                atom: "a b".to_owned(),
            })
        );
    }

    fn check_match(atom: &str, version: &str, expected: bool) {
        let dependency = Dependency::parse(atom).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(dependency.matches(version), expected, "{atom} vs {version}");
    }

    #[test]
    fn version_tests() {
        for (atom, version, expected) in [
            ("name", "1.0", true),
            ("name", "anything", true),
            ("name@edge", "0", true),
            ("name=1.2-r0", "1.2-r0", true),
            ("name=1.2-r0", "1.2-r1", false),
            ("name=1.2-r0", "1.2", false),
            ("name=1.0", "1.00", false),
            ("name=1", "01", true),
            ("name<2", "1.9", true),
            ("name<2", "2_rc1", true),
            ("name<2", "2", false),
            ("name<2", "2-r0", false),
            ("name<=2", "2", true),
            ("name<=2", "1", true),
            ("name<=2", "2-r0", false),
            ("name>1", "1-r1", true),
            ("name>1", "1.0", true),
            ("name>1", "1", false),
            ("name>1", "1_rc1", false),
            ("name>=1", "1", true),
            ("name>=1", "1.0.1", true),
            ("name>=1", "1_rc1", false),
            ("name>=1", "0.9", false),
            ("go~1.25", "1.25", true),
            ("go~1.25", "1.25.8", true),
            ("go~1.25", "1.25.8-r3", true),
            ("go~1.25", "1.250", false),
            ("go~1.25", "1.26", false),
            ("go=~1.25", "1.25.1", true),
            ("name~1.7.1", "1.7.1-r1", true),
            ("name~1.7.1-r2", "1.7.1-r1", false),
            ("name>2", "1.0~c0ffee", false),
            ("name>1.0", "1.0~c0ffee", true),
            // The conflict flag is the caller's business: the version test is the same.
            ("!name<2", "1", true),
            ("!name<2", "3", false),
            // The fuzzy ranges: less or greater, or a fuzzy match.
            ("name<~1.25", "1.24", true),
            ("name<~1.25", "1.25", true),
            ("name<~1.25", "1.25.8-r3", true),
            ("name<~1.25", "1.25_rc1", true),
            ("name<~1.25", "1.26", false),
            ("name<~1.25", "1.250", false),
            ("name>~1.25", "1.26", true),
            ("name>~1.25", "1.25.8", true),
            ("name>~1.25", "1.25_rc1", true),
            ("name>~1.25", "1.24.9", false),
            ("name>~1.25", "1.2", false),
            // `<>=` admits every comparison result.
            ("name<>=9", "1", true),
            ("name<>=9", "v2.4", true),
            // Invalid provider versions compare the way apk compares them.
            ("pc:librtmp=2.4", "v2.4", false),
            ("name>=0", "v2.4", false),
            ("name<0", "v2.4", true),
            ("name<1.0", "1.0-foo", true),
            ("name>1.0-r1", "1.0-foo", false),
            // `1.0` is a token-wise prefix of `1.0-foo`, whatever comes after it.
            ("name~1.0", "1.0-foo", true),
            ("name~1.0-r1", "1.0-foo", false),
            ("name<~1.0", "1.0-foo", true),
            ("name<~1.0", "", true),
            ("name>=1.0", "", false),
        ] {
            check_match(atom, version, expected);
        }
    }

    #[test]
    fn atom_without_version_test_matches_everything() {
        let mut inconsistent = dep("name", VersionOp::Equal, None);
        assert!(inconsistent.matches("1.0"));
        inconsistent.op = VersionOp::Any;
        inconsistent.version = Some("2.0".to_owned());
        assert!(inconsistent.matches("1.0"));
        assert_eq!(inconsistent.to_string(), "name");
    }

    #[test]
    fn parses_lists() {
        use VersionOp::*;
        assert_eq!(
            parse_list("so:libc.musl-x86_64.so.1  cmd:busybox pc:zlib=1.3\n!foo<2\n"),
            Ok(vec![
                dep("so:libc.musl-x86_64.so.1", Any, None),
                dep("cmd:busybox", Any, None),
                dep("pc:zlib", Equal, Some("1.3")),
                conflicting(dep("foo", Less, Some("2"))),
            ])
        );
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(parse_list(" \n \n"), Ok(vec![]));
        assert_eq!(
            parse_list("a b=abc c").map_err(|error| error.to_string()),
            Err("dependency `b=abc` has invalid version `abc`".to_owned())
        );
        // A tab is not a separator.
        assert_eq!(parse_list("a\tb"), Ok(vec![dep("a\tb", Any, None)]));
    }

    fn index_list(list: &str) -> (Vec<String>, Option<String>) {
        let parsed = parse_index_list(list);
        (
            parsed.atoms.iter().map(ToString::to_string).collect(),
            parsed.problem.map(|problem| problem.to_string()),
        )
    }

    #[test]
    fn index_lists_keep_what_apk_keeps() {
        let owned = |atoms: &[&str]| atoms.iter().map(|atom| (*atom).to_owned()).collect();
        for (list, atoms, problem) in [
            ("", owned(&[]), None),
            ("a b=1 !c<2", owned(&["a", "b=1", "!c<2"]), None),
            ("a  b\nc ", owned(&["a", "b", "c"]), None),
            // A separator at the very start is an atom with the empty name, as in apk.
            (" a", owned(&["", "a"]), None),
            // Broken atoms are kept; the first is reported.
            (
                "pc:librtmp=v2.4 x=1.0-foo y",
                owned(&["pc:librtmp=v2.4", "x=1.0-foo", "y"]),
                Some("dependency `pc:librtmp=v2.4` has invalid version `v2.4`"),
            ),
            // `><` and `<>=` versions are not checked.
            ("a><xyz b<>=v2", owned(&["a><xyz", "b"]), None),
            // A word that does not parse, or has a tag, ends the list.
            (
                "a b= c",
                owned(&["a"]),
                Some("dependency `b=` has operator `=` but no version"),
            ),
            (
                "a b@edge c",
                owned(&["a"]),
                Some(
                    "dependency `b@edge` has a repository tag, which package metadata may not \
                     have",
                ),
            ),
            (
                "a=v1 b@edge c",
                owned(&["a=v1"]),
                Some("dependency `a=v1` has invalid version `v1`"),
            ),
        ] {
            assert_eq!(
                index_list(list),
                (atoms, problem.map(str::to_owned)),
                "{list:?}"
            );
        }
        let parsed = parse_index_list("p:pc:librtmp=v2.4");
        assert!(parsed.atoms[0].is_broken());
        assert_eq!(parsed.atoms[0].version.as_deref(), Some("v2.4"));
    }

    #[test]
    fn checksum_pins_compare_the_first_twenty_bytes() {
        let sha1 = "Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=";
        let pin = Dependency::parse(&format!("name><{sha1}")).unwrap();
        assert!(pin.matches_checksum(sha1));
        assert!(pin.matches_checksum("X1464f4f42415242415a5155583132333435363738"));
        assert!(!pin.matches_checksum("Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(pin.matches_package("1.0", sha1));
        assert!(!pin.matches_package("1.0", "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        // A SHA-256 sized pin never matches (apk compares 20 bytes).
        let long = format!("Q2{}", "A".repeat(43)) + "=";
        let pin = Dependency::parse(&format!("name><{long}")).unwrap();
        assert!(!pin.matches_checksum(&long));
        // Not a pin.
        assert!(!Dependency::parse("name=1").unwrap().matches_checksum(sha1));
        // A conflicting pin runs the version test, as apk does.
        let conflict = Dependency::parse(&format!("!name><{sha1}")).unwrap();
        assert!(conflict.matches_package("1.0", sha1));
        assert!(!conflict.matches_package("v1", sha1));
    }

    #[test]
    fn broken_atoms() {
        for (atom, broken) in [
            ("a", false),
            ("a=1", false),
            ("a=v1", true),
            ("a<~1.", true),
            ("a><v1", false),
            ("a<>=v1", false),
            ("a<>~v1", false),
        ] {
            let list = parse_index_list(atom);
            assert_eq!(list.atoms[0].is_broken(), broken, "{atom}");
            assert_eq!(Dependency::parse(atom).is_ok(), !broken, "{atom}");
        }
    }

    /// Arguments `apk add` accepted or refused, from `tests/reference/golden/dependency-atoms.tsv`.
    const GOLDEN_ATOMS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/reference/golden/dependency-atoms.tsv"
    ));

    /// Version tests `apk add` passed or failed, from `tests/reference/golden/version-match.tsv`.
    const GOLDEN_MATCHES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/reference/golden/version-match.tsv"
    ));

    #[test]
    fn accepts_exactly_the_atoms_apk_add_accepts() {
        let rows = golden::rows(GOLDEN_ATOMS);
        let disagreements: Vec<String> = rows
            .iter()
            .filter_map(|row| {
                let [atom, accepted] = row.as_slice() else {
                    panic!("malformed golden row {row:?}");
                };
                let parsed = Dependency::parse(atom);
                (parsed.is_ok() != (accepted == "1"))
                    .then(|| format!("{atom:?}: {parsed:?}, apk accepted: {accepted}"))
            })
            .collect();
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
        assert_eq!(rows.len(), 194);
    }

    #[test]
    fn matches_exactly_what_apk_add_matches() {
        let rows = golden::rows(GOLDEN_MATCHES);
        let disagreements: Vec<String> = rows
            .iter()
            .filter_map(|row| {
                let [version, op, wanted, matched] = row.as_slice() else {
                    panic!("malformed golden row {row:?}");
                };
                let atom = format!("name{op}{wanted}");
                let dependency =
                    Dependency::parse(&atom).unwrap_or_else(|error| panic!("{atom}: {error}"));
                let ours = dependency.matches(version);
                (ours != (matched == "1")).then(|| format!("{atom} vs {version:?}: {ours}"))
            })
            .collect();
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
        assert_eq!(rows.len(), 2585);
    }

    #[test]
    fn world_file_round_trip() {
        let world =
            "alpine-baselayout\nbusybox@edge\n!doas\ngo~1.25\nca-certificates-bundle=20241121-r1\n";
        let parsed = parse_list(world).unwrap_or_else(|error| panic!("{error}"));
        let mut written = String::new();
        for dependency in &parsed {
            written.push_str(&dependency.to_string());
            written.push('\n');
        }
        assert_eq!(written, world);
    }

    #[test]
    fn operators_print_canonically() {
        for (op, symbol) in [
            (VersionOp::Any, ""),
            (VersionOp::Equal, "="),
            (VersionOp::Less, "<"),
            (VersionOp::Greater, ">"),
            (VersionOp::LessEqual, "<="),
            (VersionOp::GreaterEqual, ">="),
            (VersionOp::Fuzzy, "~"),
            (VersionOp::LessFuzzy, "<~"),
            (VersionOp::GreaterFuzzy, ">~"),
            (VersionOp::Checksum, "><"),
        ] {
            assert_eq!(op.as_str(), symbol);
            assert_eq!(op.to_string(), symbol);
        }
    }
}
