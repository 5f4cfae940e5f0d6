//! Dependency atoms as apk writes them: `name`, `name=1.2`, `name~1.2`, `!name`, `name@tag`,
//! `so:libc.musl-x86_64.so.1`, and the version tests they imply.
//!
//! The accepted form is apk-tools' `[!]name[@tag][op version]` (`apk_blob_pull_dep`): the name
//! runs up to the first operator character (`<`, `>`, `=`, `~`), the repository tag is whatever
//! follows the first `@` of that name, and the operator is the whole run of operator characters,
//! combined the way apk combines them (so `=~` and `~=` are `~`, `=<` is `<=`). Printing follows
//! `apk_blob_push_dep`: conflict mark, name, `@tag`, then the canonical operator and the version,
//! which is also the line format of `/etc/apk/world`.
//!
//! Pure: parsing, printing and matching only. It deliberately does not support apk's checksum
//! pins (`name><Q1…`, written for packages added from local files) or the apk 3 range-fuzzy
//! operators `>~` and `<~`; both are rejected with an error naming the atom.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::version;

/// Marks a conflict atom (`!name`).
pub const CONFLICT_PREFIX: char = '!';
/// Separates a name from its repository tag (`name@tag`).
pub const TAG_SEPARATOR: char = '@';
/// Characters that separate atoms in a list (APKINDEX `D:`/`p:`/`i:` lines, `/etc/apk/world`).
pub const LIST_SEPARATORS: [char; 2] = [' ', '\n'];

const OPERATOR_LESS: char = '<';
const OPERATOR_GREATER: char = '>';
const OPERATOR_EQUAL: char = '=';
const OPERATOR_FUZZY: char = '~';

/// Whether `c` is one of apk's version operator characters.
fn is_operator_char(c: char) -> bool {
    matches!(
        c,
        OPERATOR_LESS | OPERATOR_GREATER | OPERATOR_EQUAL | OPERATOR_FUZZY
    )
}

/// Characters apk allows in a dependency name (apk-tools' `APK_CTYPE_DEPENDENCY_NAME`): letters,
/// digits and `+ , - . / : [ ] _`, which covers names such as `so:libstdc++.so.6`, `cmd:[`,
/// `pc:gtk+-3.0` and `/bin/sh`. Repository tags use the same set.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | ',' | '-' | '.' | '/' | ':' | '[' | ']' | '_')
}

/// Errors from parsing a dependency atom; every variant names the offending atom.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConstraintError {
    /// The atom was the empty string.
    #[error("empty dependency atom")]
    Empty,
    /// Nothing before the tag or operator (`=1.0`, `!`, `@edge`).
    #[error("dependency `{atom}` has an empty name")]
    EmptyName {
        /// The atom as given.
        atom: String,
    },
    /// The name contains a character apk does not allow in names (whitespace, `!`, `#`, …).
    #[error("dependency `{atom}` has invalid character {character:?} in its name")]
    InvalidNameCharacter {
        /// The atom as given.
        atom: String,
        /// The first character that is not allowed.
        character: char,
    },
    /// `name@` with nothing after the `@`.
    #[error("dependency `{atom}` has an empty repository tag")]
    EmptyTag {
        /// The atom as given.
        atom: String,
    },
    /// The repository tag contains a character that is not allowed (including a second `@`).
    #[error("dependency `{atom}` has invalid character {character:?} in its repository tag")]
    InvalidTagCharacter {
        /// The atom as given.
        atom: String,
        /// The first character that is not allowed.
        character: char,
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
    /// after the version, `name=1.0@edge`, which apk rejects too).
    #[error("dependency `{atom}` has invalid version `{version}`")]
    InvalidVersion {
        /// The atom as given.
        atom: String,
        /// The text after the operator.
        version: String,
    },
    /// An operator apk knows but this engine does not support: checksum pins (`><`) and the
    /// range-fuzzy `>~` and `<~`.
    #[error("dependency `{atom}` uses unsupported operator `{operator}`")]
    UnsupportedOperator {
        /// The atom as given.
        atom: String,
        /// The operator characters.
        operator: String,
    },
}

/// The version test of a dependency atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionOp {
    /// No version constraint: any version matches.
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
        }
    }

    /// Combines a run of operator characters the way apk does: each character adds its test
    /// (`~` adds "fuzzy equal"), so order and repetition do not matter.
    fn from_symbols(atom: &str, symbols: &str) -> Result<Self, ConstraintError> {
        let has = |c: char| symbols.contains(c);
        let (less, greater, fuzzy) = (
            has(OPERATOR_LESS),
            has(OPERATOR_GREATER),
            has(OPERATOR_FUZZY),
        );
        let equal = fuzzy || has(OPERATOR_EQUAL);
        let unsupported = || ConstraintError::UnsupportedOperator {
            atom: atom.to_owned(),
            operator: symbols.to_owned(),
        };
        Ok(match (less, greater, equal) {
            (true, true, _) => return Err(unsupported()),
            _ if fuzzy && (less || greater) => return Err(unsupported()),
            _ if fuzzy => VersionOp::Fuzzy,
            (true, false, true) => VersionOp::LessEqual,
            (true, false, false) => VersionOp::Less,
            (false, true, true) => VersionOp::GreaterEqual,
            (false, true, false) => VersionOp::Greater,
            (false, false, _) => VersionOp::Equal,
        })
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
    /// Package or virtual name.
    pub name: String,
    /// Version operator; [`VersionOp::Any`] when `version` is `None`.
    pub op: VersionOp,
    /// Version the operator compares against.
    pub version: Option<String>,
    /// `!name`: the package must not be installed (or must not match the version test).
    pub conflict: bool,
    /// `name@tag`: only packages from repositories tagged `tag` (or untagged ones when the
    /// package was already pinned) may satisfy it.
    pub tag: Option<String>,
}

impl Dependency {
    /// Parses one atom in any form apk accepts in world files, `apk add` arguments and APKINDEX
    /// dependency lines: `name`, `name=1.2-r0`, `name<1`, `name>1`, `name<=1`, `name>=1`,
    /// `name~1.2` (also `=~`, `~=`), `!name`, `!name<2`, `name@tag`, `name@tag=1.2`, and virtual
    /// names such as `so:libc.musl-x86_64.so.1`, `cmd:busybox` or `pc:zlib=1.3`.
    pub fn parse(atom: &str) -> Result<Self, ConstraintError> {
        if atom.is_empty() {
            return Err(ConstraintError::Empty);
        }
        let (conflict, body) = match atom.strip_prefix(CONFLICT_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, atom),
        };
        let (name_and_tag, operator) = match body.find(is_operator_char) {
            Some(start) => {
                let (name_and_tag, test) = body.split_at(start);
                let length = test
                    .find(|c: char| !is_operator_char(c))
                    .unwrap_or(test.len());
                (name_and_tag, Some(test.split_at(length)))
            }
            None => (body, None),
        };
        let (name, tag) = match name_and_tag.split_once(TAG_SEPARATOR) {
            Some((name, tag)) => (name, Some(tag)),
            None => (name_and_tag, None),
        };

        if name.is_empty() {
            return Err(ConstraintError::EmptyName {
                atom: atom.to_owned(),
            });
        }
        if let Some(character) = name.chars().find(|c| !is_name_char(*c)) {
            return Err(ConstraintError::InvalidNameCharacter {
                atom: atom.to_owned(),
                character,
            });
        }
        if let Some(tag) = tag {
            if tag.is_empty() {
                return Err(ConstraintError::EmptyTag {
                    atom: atom.to_owned(),
                });
            }
            if let Some(character) = tag.chars().find(|c| !is_name_char(*c)) {
                return Err(ConstraintError::InvalidTagCharacter {
                    atom: atom.to_owned(),
                    character,
                });
            }
        }

        let (op, version) = match operator {
            None => (VersionOp::Any, None),
            Some((symbols, version)) => {
                let op = VersionOp::from_symbols(atom, symbols)?;
                if version.is_empty() {
                    return Err(ConstraintError::MissingVersion {
                        atom: atom.to_owned(),
                        operator: symbols.to_owned(),
                    });
                }
                if !version::is_valid(version) {
                    return Err(ConstraintError::InvalidVersion {
                        atom: atom.to_owned(),
                        version: version.to_owned(),
                    });
                }
                (op, Some(version.to_owned()))
            }
        };

        Ok(Dependency {
            name: name.to_owned(),
            op,
            version,
            conflict,
            tag: tag.map(str::to_owned),
        })
    }

    /// Whether a package or provide at `version` passes this atom's version test, with apk's
    /// comparison rules (`apk_version_match`). The conflict flag and the tag are ignored: callers
    /// decide what a match means for `!name` and which repositories a tag admits. An atom without
    /// a version test matches every version.
    pub fn matches(&self, version: &str) -> bool {
        let Some(wanted) = self.version.as_deref() else {
            return true;
        };
        match self.op {
            VersionOp::Any => true,
            VersionOp::Fuzzy => version::fuzzy_matches(version, wanted),
            VersionOp::Equal => version::compare(version, wanted).is_eq(),
            VersionOp::Less => version::compare(version, wanted).is_lt(),
            VersionOp::Greater => version::compare(version, wanted).is_gt(),
            VersionOp::LessEqual => version::compare(version, wanted).is_le(),
            VersionOp::GreaterEqual => version::compare(version, wanted).is_ge(),
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
/// APKINDEX `D:`, `p:` and `i:` lines and `/etc/apk/world`. The first bad atom fails the list.
pub fn parse_list(list: &str) -> Result<Vec<Dependency>, ConstraintError> {
    list.split(LIST_SEPARATORS)
        .filter(|atom| !atom.is_empty())
        .map(Dependency::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rejects_malformed_atoms_naming_them() {
        for (atom, message) in [
            ("", "empty dependency atom"),
            ("=1.0", "dependency `=1.0` has an empty name"),
            ("!", "dependency `!` has an empty name"),
            ("!=1", "dependency `!=1` has an empty name"),
            ("@edge", "dependency `@edge` has an empty name"),
            (
                "na me",
                "dependency `na me` has invalid character ' ' in its name",
            ),
            (
                " name",
                "dependency ` name` has invalid character ' ' in its name",
            ),
            (
                "name\t",
                "dependency `name\t` has invalid character '\\t' in its name",
            ),
            (
                "name!",
                "dependency `name!` has invalid character '!' in its name",
            ),
            (
                "!!name",
                "dependency `!!name` has invalid character '!' in its name",
            ),
            (
                "na#me=1",
                "dependency `na#me=1` has invalid character '#' in its name",
            ),
            (
                "naïve",
                "dependency `naïve` has invalid character 'ï' in its name",
            ),
            ("name@", "dependency `name@` has an empty repository tag"),
            (
                "name@=1.0",
                "dependency `name@=1.0` has an empty repository tag",
            ),
            (
                "name@edge@main",
                "dependency `name@edge@main` has invalid character '@' in its repository tag",
            ),
            (
                "name@ed ge",
                "dependency `name@ed ge` has invalid character ' ' in its repository tag",
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
                "name=1.0 ",
                "dependency `name=1.0 ` has invalid version `1.0 `",
            ),
            (
                "name=1.0 other",
                "dependency `name=1.0 other` has invalid version `1.0 other`",
            ),
            (
                "name>=1.0<2.0",
                "dependency `name>=1.0<2.0` has invalid version `1.0<2.0`",
            ),
            (
                "name><Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=",
                "dependency `name><Q1Rk9PQkFSQkFaUVVYMTIzNDU2Nzg=` uses unsupported operator `><`",
            ),
            (
                "name<>1",
                "dependency `name<>1` uses unsupported operator `<>`",
            ),
            (
                "name>~1.0",
                "dependency `name>~1.0` uses unsupported operator `>~`",
            ),
            (
                "name<~1.0",
                "dependency `name<~1.0` uses unsupported operator `<~`",
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
            Dependency::parse("name>~1"),
            Err(ConstraintError::UnsupportedOperator {
                atom: "name>~1".to_owned(),
                operator: ">~".to_owned(),
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
        assert_eq!(
            parse_list("a\tb").map_err(|error| error.to_string()),
            Err("dependency `a\tb` has invalid character '\\t' in its name".to_owned())
        );
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
        ] {
            assert_eq!(op.as_str(), symbol);
            assert_eq!(op.to_string(), symbol);
        }
    }
}
