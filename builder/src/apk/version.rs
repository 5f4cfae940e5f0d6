//! apk version strings: validation, ordering and the fuzzy prefix test, exactly as apk-tools
//! 3.0.6 does them (`apk_version_validate`, `apk_version_compare` and
//! `apk_version_compare_fuzzy` in `src/version.c`).
//!
//! The grammar is `number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}`. Both strings are
//! tokenised and compared token by token:
//!
//! - The first number is compared numerically. Every later dot-separated number is compared
//!   numerically unless either side starts with `0`, in which case the two digit strings are
//!   compared bytewise, shorter-prefix first (`1.05 < 1.1`, `1.010 < 1.09`, `1.0 < 1.00`).
//!   Numbers are accumulated as wrapping 64-bit integers (`18446744073709551616 = 0`).
//! - A single lowercase letter may follow the numbers (`1.2a`), compared by its byte value.
//! - Suffixes `_alpha _beta _pre _rc` sort before the release, `_cvs _svn _git _hg _p` after it,
//!   each optionally numbered (`_rc2`); several may follow each other (`_alpha_pre2`).
//! - `~hash` (lowercase hex) names the commit a package was built from; hashes compare bytewise.
//! - `-rN` is the package revision.
//! - When the tokens agree until one version goes on with a different kind of token, the one
//!   going on with the "earlier" kind is newer: `1.0_rc1 < 1.0 < 1.0-r1 < 1.0~c0ffee < 1.0_p1 <
//!   1.0a < 1.0.1`, a pre-release suffix always being older.
//!
//! Invalid versions are not an error here, because apk keeps them: an index may hold
//! `V:v2.4` or `p:pc:librtmp=v2.4`, and apk compares such versions like any other. The walk
//! goes on until the token kinds differ; a token the grammar does not allow ends the walk as an
//! "invalid" token, which ranks below every valid continuation (the end of the string included)
//! except a pre-release suffix, which is checked first. Two strings that become invalid at the
//! same token compare equal whatever follows (`v2.4 = v2.5`, `1.0-foo = 1.0-bar`), and a string
//! invalid from its first byte is older than every valid version (`v2.4 < 0`). apk refuses
//! invalid versions only where a person types them (`apk version --test`, `apk add name=v2`);
//! callers that want that call [`is_valid`] first.
//!
//! The differential test at the bottom of this file holds these functions to the answers of the
//! real `apk version` on the pairs in `tests/reference/golden/version-compare.tsv` (recorded by
//! `tests/reference/record-apk-versions.py`).
//!
//! This module deliberately does not parse dependency atoms (see the `constraint` module) and
//! keeps no state: every function works on the strings it is given.

use std::cmp::Ordering;

/// Kinds of version tokens, in the order apk-tools declares them. The order matters: when two
/// versions agree up to a point and then go on with different kinds of token, the one going on
/// with the smaller kind is the newer one (pre-release suffixes aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TokenKind {
    /// The leading number.
    InitialDigit,
    /// A number after a dot.
    Digit,
    /// The single letter after the numbers.
    Letter,
    /// `_name`.
    Suffix,
    /// The number directly after a suffix name.
    SuffixNumber,
    /// `~hex`.
    CommitHash,
    /// `-rN`.
    Revision,
    /// Nothing left.
    End,
    /// Anything the grammar does not allow.
    Invalid,
}

/// Suffix ranks: pre-release suffixes rank below [`SUFFIX_RANK_RELEASE`], post-release above.
const PRE_RELEASE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_RELEASE_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];
const SUFFIX_RANK_RELEASE: u8 = PRE_RELEASE_SUFFIXES.len() as u8;

/// Rank of a suffix name, or `None` for a name apk does not know.
fn suffix_rank(name: &[u8]) -> Option<u8> {
    if let Some(index) = PRE_RELEASE_SUFFIXES
        .iter()
        .position(|known| known.as_bytes() == name)
    {
        return u8::try_from(index).ok();
    }
    POST_RELEASE_SUFFIXES
        .iter()
        .position(|known| known.as_bytes() == name)
        .and_then(|index| u8::try_from(index).ok())
        .map(|index| SUFFIX_RANK_RELEASE + 1 + index)
}

/// Walks a version string one token at a time, keeping the current token's kind and value.
struct Tokenizer<'a> {
    rest: &'a [u8],
    kind: TokenKind,
    text: &'a [u8],
    number: u64,
    suffix: u8,
}

impl<'a> Tokenizer<'a> {
    /// Starts at the leading number (the first token always has to be one).
    fn new(version: &'a str) -> Self {
        let mut tokenizer = Tokenizer {
            rest: version.as_bytes(),
            kind: TokenKind::InitialDigit,
            text: &[],
            number: 0,
            suffix: 0,
        };
        tokenizer.take_digits();
        tokenizer
    }

    /// Consumes a run of decimal digits as the current token's value; an empty run is invalid.
    fn take_digits(&mut self) {
        let length = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.rest.split_at(length);
        self.text = digits;
        self.rest = rest;
        self.number = digits.iter().fold(0u64, |number, digit| {
            number
                .wrapping_mul(10)
                .wrapping_add(u64::from(digit - b'0'))
        });
        if digits.is_empty() {
            self.kind = TokenKind::Invalid;
        }
    }

    /// Consumes the longest prefix of `rest` whose bytes satisfy `accept`.
    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a [u8] {
        let length = self.rest.iter().take_while(|b| accept(**b)).count();
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        taken
    }

    /// Moves to the next token, checking that it may follow the current one.
    fn advance(&mut self) {
        let Some(&first) = self.rest.first() else {
            self.kind = TokenKind::End;
            return;
        };
        match first {
            b'a'..=b'z' => {
                if self.kind > TokenKind::Digit {
                    self.kind = TokenKind::Invalid;
                    return;
                }
                let (letter, rest) = self.rest.split_at(1);
                self.text = letter;
                self.rest = rest;
                self.kind = TokenKind::Letter;
            }
            b'.' | b'0'..=b'9' => {
                if first == b'.' {
                    if self.kind > TokenKind::Digit {
                        self.kind = TokenKind::Invalid;
                        return;
                    }
                    self.rest = &self.rest[1..];
                }
                self.kind = match self.kind {
                    TokenKind::InitialDigit | TokenKind::Digit => TokenKind::Digit,
                    TokenKind::Suffix => TokenKind::SuffixNumber,
                    _ => {
                        self.kind = TokenKind::Invalid;
                        return;
                    }
                };
                self.take_digits();
            }
            b'_' => {
                if self.kind > TokenKind::SuffixNumber {
                    self.kind = TokenKind::Invalid;
                    return;
                }
                self.rest = &self.rest[1..];
                let name = self.take_while(|b| b.is_ascii_lowercase());
                self.text = name;
                match suffix_rank(name) {
                    Some(rank) => {
                        self.suffix = rank;
                        self.kind = TokenKind::Suffix;
                    }
                    None => self.kind = TokenKind::Invalid,
                }
            }
            b'~' => {
                if self.kind >= TokenKind::CommitHash {
                    self.kind = TokenKind::Invalid;
                    return;
                }
                self.rest = &self.rest[1..];
                let hash = self.take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                self.text = hash;
                self.kind = if hash.is_empty() {
                    TokenKind::Invalid
                } else {
                    TokenKind::CommitHash
                };
            }
            b'-' => {
                if self.kind >= TokenKind::Revision || !self.rest.starts_with(b"-r") {
                    self.kind = TokenKind::Invalid;
                    return;
                }
                self.rest = &self.rest[2..];
                self.kind = TokenKind::Revision;
                self.take_digits();
            }
            _ => self.kind = TokenKind::Invalid,
        }
    }

    /// Whether the current token is a pre-release suffix (`_alpha` … `_rc`).
    fn is_pre_release_suffix(&self) -> bool {
        self.kind == TokenKind::Suffix && self.suffix < SUFFIX_RANK_RELEASE
    }
}

/// Compares two tokens of the same kind.
fn compare_tokens(a: &Tokenizer<'_>, b: &Tokenizer<'_>) -> Ordering {
    match a.kind {
        TokenKind::Digit if a.text.first() == Some(&b'0') || b.text.first() == Some(&b'0') => {
            a.text.cmp(b.text)
        }
        TokenKind::InitialDigit
        | TokenKind::Digit
        | TokenKind::SuffixNumber
        | TokenKind::Revision => a.number.cmp(&b.number),
        TokenKind::Letter => a.text.first().cmp(&b.text.first()),
        TokenKind::Suffix => a.suffix.cmp(&b.suffix),
        TokenKind::CommitHash | TokenKind::End | TokenKind::Invalid => a.text.cmp(b.text),
    }
}

/// apk's comparison; with `fuzzy`, `a` also equals `b` when `b` is a token-wise prefix of `a`.
fn compare_with(a: &str, b: &str, fuzzy: bool) -> Ordering {
    let mut left = Tokenizer::new(a);
    let mut right = Tokenizer::new(b);
    while left.kind == right.kind && left.kind < TokenKind::End {
        let ordering = compare_tokens(&left, &right);
        if ordering != Ordering::Equal {
            return ordering;
        }
        left.advance();
        right.advance();
    }
    if left.kind == right.kind || (fuzzy && right.kind == TokenKind::End) {
        return Ordering::Equal;
    }
    // Equal so far: the version that goes on is newer, unless it goes on with a pre-release
    // suffix. Invalid ranks last, so an invalid continuation is older than any other.
    if left.is_pre_release_suffix() {
        return Ordering::Less;
    }
    if right.is_pre_release_suffix() {
        return Ordering::Greater;
    }
    right.kind.cmp(&left.kind)
}

/// Whether `version` is a well-formed apk version (`apk_version_validate`).
pub fn is_valid(version: &str) -> bool {
    let mut tokenizer = Tokenizer::new(version);
    while tokenizer.kind < TokenKind::End {
        tokenizer.advance();
    }
    tokenizer.kind == TokenKind::End
}

/// Orders two versions the way apk does (`apk_version_compare`), including its treatment of
/// invalid versions described in the module documentation.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_with(a, b, false)
}

/// apk's fuzzy comparison (`apk_version_compare_fuzzy` with `fuzzy` set, behind the `~`, `<~`
/// and `>~` operators): like [`compare`], except that `a` also equals `b` when `b` is a
/// token-wise prefix of `a` (`compare_fuzzy("1.25.8-r3", "1.25")` is equal).
pub fn compare_fuzzy(a: &str, b: &str) -> Ordering {
    compare_with(a, b, true)
}

/// Whether `version` satisfies the fuzzy constraint `~prefix`: every token of `prefix` matches
/// the corresponding token of `version`, which may go on. `go~1.25` therefore matches 1.25,
/// 1.25.8, 1.25.8-r3 and also the pre-release 1.25_rc1, but not 1.250, 1.26 or 1.2.
pub fn fuzzy_matches(version: &str, prefix: &str) -> bool {
    compare_fuzzy(version, prefix) == Ordering::Equal
}

/// The symbol `apk version --test` prints for a comparison result: `<`, `=` or `>`.
pub fn compare_display(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// Reading the golden files `tests/reference/record-apk-versions.py` writes.
#[cfg(test)]
pub(crate) mod golden {
    /// The rows of a golden TSV file: `#` lines skipped, fields split at tabs and unescaped
    /// (`\\`, `\t`, `\n`, `\r`, `\xNN` for one byte of the UTF-8 text).
    pub(crate) fn rows(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split('\t').map(unescape).collect())
            .collect()
    }

    fn unescape(field: &str) -> String {
        let mut bytes = Vec::with_capacity(field.len());
        let mut rest = field.as_bytes();
        while let Some((&byte, tail)) = rest.split_first() {
            rest = tail;
            if byte != b'\\' {
                bytes.push(byte);
                continue;
            }
            let (&escape, tail) = rest.split_first().expect("escape at the end of a field");
            rest = tail;
            bytes.push(match escape {
                b'\\' => b'\\',
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                b'x' => {
                    let (hex, tail) = rest.split_at(2);
                    rest = tail;
                    u8::from_str_radix(std::str::from_utf8(hex).expect("hex escape"), 16)
                        .expect("hex escape")
                }
                other => panic!("unknown escape \\{}", char::from(other)),
            });
        }
        String::from_utf8(bytes).expect("golden fields are UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Asserts `compare(a, b) == expected` and, since apk's comparison is antisymmetric, the
    /// reverse for `compare(b, a)`.
    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(
            compare(a, b),
            expected,
            "expected {a} {} {b}",
            compare_display(expected)
        );
        assert_eq!(
            compare(b, a),
            expected.reverse(),
            "expected {b} {} {a}",
            compare_display(expected.reverse())
        );
    }

    fn ordering_from_symbol(symbol: &str) -> Ordering {
        match symbol {
            "<" => Less,
            "=" => Equal,
            ">" => Greater,
            other => panic!("unknown comparison symbol {other:?}"),
        }
    }

    /// Runs a table of `a op b` lines (the format of apk-tools' `test/version.data`); text after
    /// the third field is a comment. Returns how many lines were checked.
    fn check_table(table: &str) -> usize {
        let mut checked = 0;
        for line in table.lines().filter(|line| !line.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (Some(a), Some(symbol), Some(b)) = (fields.next(), fields.next(), fields.next())
            else {
                panic!("malformed table line {line:?}");
            };
            check(a, b, ordering_from_symbol(symbol));
            checked += 1;
        }
        checked
    }

    /// apk-tools' own `test/version.data` (the cases `apk version -t` / `apk vertest` run).
    const APK_TOOLS_VERSION_DATA: &str = "\
2.34 > 0.1.0_alpha
23_foo > 4_beta
1.0 < 1.0bc # invalid. do string sort
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha < 0.1.3_alpha
0.1.3_alpha > 0.1.0_alpha
0.1.0_alpha2 > 0.1.0_alpha
0.1.0_alpha < 2.2.39-r1
2.2.39-r1 > 1.0.4-r3
1.0.4-r3 < 1.0.4-r4
1.0.4-r4 < 1.6
1.6 > 1.0.2
1.0.2 > 0.7-r1
0.7-r1 < 1.0.0
1.0.0 < 1.0.1
1.0.1 < 1.1
1.1 > 1.1_alpha1
1.1_alpha1 < 1.2.1
1.2.1 > 1.2
1.2 < 1.3_alpha
1.3_alpha < 1.3_alpha2
1.3_alpha2 < 1.3_alpha3
1.3_alpha8 > 0.6.0
0.6.0 < 0.6.1
0.6.1 < 0.7.0
0.7.0 < 0.8_beta1
0.8_beta1 < 0.8_beta2
0.8_beta4 < 4.8-r1
4.8-r1 > 3.10.18-r1
3.10.18-r1 > 2.3.0b-r1
2.3.0b-r1 < 2.3.0b-r2
2.3.0b-r2 < 2.3.0b-r3
2.3.0b-r3 < 2.3.0b-r4
2.3.0b-r4 > 0.12.1
0.12.1 < 0.12.2
0.12.2 < 0.12.3
0.12.3 > 0.12
0.12 < 0.13_beta1
0.13_beta1 < 0.13_beta2
0.13_beta2 < 0.13_beta3
0.13_beta3 < 0.13_beta4
0.13_beta4 < 0.13_beta5
0.13_beta5 > 0.9.12
0.9.12 < 0.9.13
0.9.13 > 0.9.12
0.9.12 < 0.9.13
0.9.13 > 0.0.16
0.0.16 < 0.6
0.6 < 2.1.13-r3
2.1.13-r3 < 2.1.15-r2
2.1.15-r2 < 2.1.15-r3
2.1.15-r3 > 1.2.11
1.2.11 < 1.2.12.1
1.2.12.1 < 1.2.13
1.2.13 < 1.2.14-r1
1.2.14-r1 > 0.7.1
0.7.1 > 0.5.4
0.5.4 < 0.7.0
0.7.0 < 1.2.13
1.2.13 > 1.0.8
1.0.8 < 1.2.1
1.2.1 > 0.7-r1
0.7-r1 < 2.4.32
2.4.32 < 2.8-r4
2.8-r4 > 0.9.6
0.9.6 > 0.2.0-r1
0.2.0-r1 = 0.2.0-r1
0.2.0-r1 < 3.1_p16
3.1_p16 < 3.1_p17
3.1_p17 > 1.06-r6
1.06-r6 < 006
006 > 1.0.0
1.0.0 < 1.2.2-r1
1.2.2-r1 > 1.2.2
1.2.2 > 0.3-r1
0.3-r1 < 9.3.2-r4
9.3.2-r4 < 9.3.4-r2
9.3.4-r2 > 9.3.4
9.3.4 > 9.3.2
9.3.2 < 9.3.4
9.3.4 > 1.1.3
1.1.3 < 2.16.1-r3
2.16.1-r3 = 2.16.1-r3
2.16.1-r3 > 2.1.0-r2
2.1.0-r2 < 2.9.3-r1
2.9.3-r1 > 0.9-r1
0.9-r1 > 0.8-r1
0.8-r1 < 1.0.6-r3
1.0.6-r3 > 0.11
0.11 < 0.12
0.12 < 1.2.1-r1
1.2.1-r1 < 1.2.2.1
1.2.2.1 < 1.4.1-r1
1.4.1-r1 < 1.4.1-r2
1.4.1-r2 > 1.2.2
1.2.2 < 1.3
1.3 > 1.0.3-r6
1.0.3-r6 < 1.0.4
1.0.4 < 2.59
2.59 < 20050718-r1
20050718-r1 < 20050718-r2
20050718-r2 > 3.9.8-r5
3.9.8-r5 > 2.01.01_alpha10
2.01.01_alpha10 > 0.94
0.94 < 1.0
1.0 > 0.99.3.20040818
0.99.3.20040818 > 0.7
0.7 < 1.21-r1
1.21-r1 > 0.13
0.13 < 0.90.1-r1
0.90.1-r1 > 0.10.2
0.10.2 < 0.10.3
0.10.3 < 1.6
1.6 < 1.39
1.39 > 1.00_beta2
1.00_beta2 > 0.9.2
0.9.2 < 5.94-r1
5.94-r1 < 6.4
6.4 > 2.6-r5
2.6-r5 > 1.4
1.4 < 2.8.9-r1
2.8.9-r1 > 2.8.9
2.8.9 > 1.1
1.1 > 1.0.3-r2
1.0.3-r2 < 1.3.4-r3
1.3.4-r3 < 2.2
2.2 > 1.2.6
1.2.6 < 7.15.1-r1
7.15.1-r1 > 1.02
1.02 < 1.03-r1
1.03-r1 < 1.12.12-r2
1.12.12-r2 < 2.8.0.6-r1
2.8.0.6-r1 > 0.5.2.7
0.5.2.7 < 4.2.52_p2-r1
4.2.52_p2-r1 < 4.2.52_p4-r2
4.2.52_p4-r2 > 1.02.07
1.02.07 < 1.02.10-r1
1.02.10-r1 < 3.0.3-r9
3.0.3-r9 > 2.0.5-r1
2.0.5-r1 < 4.5
4.5 > 2.8.7-r1
2.8.7-r1 > 1.0.5
1.0.5 < 8
8 < 9
9 > 2.18.3-r10
2.18.3-r10 > 1.05-r18
1.05-r18 < 1.05-r19
1.05-r19 < 2.2.5
2.2.5 < 2.8
2.8 < 2.20.1
2.20.1 < 2.20.3
2.20.3 < 2.31
2.31 < 2.34
2.34 < 2.38
2.38 < 20050405
20050405 > 1.8
1.8 < 2.11-r1
2.11-r1 > 2.11
2.11 > 0.1.6-r3
0.1.6-r3 < 0.47-r1
0.47-r1 < 0.49
0.49 < 3.6.8-r2
3.6.8-r2 > 1.39
1.39 < 2.43
2.43 > 2.0.6-r1
2.0.6-r1 > 0.2-r6
0.2-r6 < 0.4
0.4 < 1.0.0
1.0.0 < 10-r1
10-r1 > 4
4 > 0.7.3-r2
0.7.3-r2 > 0.7.3
0.7.3 < 1.95.8
1.95.8 > 1.1.19
1.1.19 > 1.1.5
1.1.5 < 6.3.2-r1
6.3.2-r1 < 6.3.3
6.3.3 > 4.17-r1
4.17-r1 < 4.18
4.18 < 4.19
4.19 > 4.3.0
4.3.0 < 4.3.2-r1
4.3.2-r1 > 4.3.2
4.3.2 > 0.68-r3
0.68-r3 < 1.0.0
1.0.0 < 1.0.1
1.0.1 > 1.0.0
1.0.0 = 1.0.0
1.0.0 < 1.0.1
1.0.1 < 2.3.2-r1
2.3.2-r1 < 2.4.2
2.4.2 < 20060720
20060720 > 3.0.20060720
3.0.20060720 < 20060720
20060720 > 1.1
1.1 = 1.1
1.1 < 1.1.1-r1
1.1.1-r1 < 1.1.3-r1
1.1.3-r1 < 1.1.3-r2
1.1.3-r2 < 2.1.10-r2
2.1.10-r2 > 0.7.18-r2
0.7.18-r2 < 0.17-r6
0.17-r6 < 2.6.1
2.6.1 < 2.6.3
2.6.3 < 3.1.5-r2
3.1.5-r2 < 3.4.6-r1
3.4.6-r1 < 3.4.6-r2
3.4.6-r2 = 3.4.6-r2
3.4.6-r2 > 2.0.33
2.0.33 < 2.0.34
2.0.34 > 1.8.3-r2
1.8.3-r2 < 1.8.3-r3
1.8.3-r3 < 4.1
4.1 < 8.54
8.54 > 4.1.4
4.1.4 > 1.2.10-r5
1.2.10-r5 < 4.1.4-r3
4.1.4-r3 = 4.1.4-r3
4.1.4-r3 < 4.2.1
4.2.1 > 4.1.0
4.1.0 < 8.11
8.11 > 1.4.4-r1
1.4.4-r1 < 2.1.9.200602141850
2.1.9.200602141850 > 1.6
1.6 < 2.5.1-r8
2.5.1-r8 < 2.5.1a-r1
2.5.1a-r1 > 1.19.2-r1
1.19.2-r1 > 0.97-r2
0.97-r2 < 0.97-r3
0.97-r3 < 1.3.5-r10
1.3.5-r10 > 1.3.5-r8
1.3.5-r8 < 1.3.5-r9
1.3.5-r9 > 1.0
1.0 < 1.1
1.1 > 0.9.11
0.9.11 < 0.9.12
0.9.12 < 0.9.13
0.9.13 < 0.9.14
0.9.14 < 0.9.15
0.9.15 < 0.9.16
0.9.16 > 0.3-r2
0.3-r2 < 6.3
6.3 < 6.6
6.6 < 6.9
6.9 > 0.7.2-r3
0.7.2-r3 < 1.2.10
1.2.10 < 20040923-r2
20040923-r2 > 20040401
20040401 > 2.0.0_rc3-r1
2.0.0_rc3-r1 > 1.5
1.5 < 4.4
4.4 > 1.0.1
1.0.1 < 2.2.0
2.2.0 > 1.1.0-r2
1.1.0-r2 > 0.3
0.3 < 20020207-r2
20020207-r2 > 1.31-r2
1.31-r2 < 3.7
3.7 > 2.0.1
2.0.1 < 2.0.2
2.0.2 > 0.99.163
0.99.163 < 2.6.15.20060110
2.6.15.20060110 < 2.6.16.20060323
2.6.16.20060323 < 2.6.19.20061214
2.6.19.20061214 > 0.6.2-r1
0.6.2-r1 < 0.6.3
0.6.3 < 0.6.5
0.6.5 < 1.3.5-r1
1.3.5-r1 < 1.3.5-r4
1.3.5-r4 < 3.0.0-r2
3.0.0-r2 < 021109-r3
021109-r3 < 20060512
20060512 > 1.24
1.24 > 0.9.16-r1
0.9.16-r1 < 3.9_pre20060124
3.9_pre20060124 > 0.01
0.01 < 0.06
0.06 < 1.1.7
1.1.7 < 6b-r7
6b-r7 > 1.12-r7
1.12-r7 < 1.12-r8
1.12-r8 > 1.1.12
1.1.12 < 1.1.13
1.1.13 > 0.3
0.3 < 0.5
0.5 < 3.96.1
3.96.1 < 3.97
3.97 > 0.10.0-r1
0.10.0-r1 > 0.10.0
0.10.0 < 0.10.1_rc1
0.10.1_rc1 > 0.9.11
0.9.11 < 394
394 > 2.31
2.31 > 1.0.1
1.0.1 = 1.0.1
1.0.1 < 1.0.3
1.0.3 > 1.0.2
1.0.2 = 1.0.2
1.0.2 > 1.0.1
1.0.1 = 1.0.1
1.0.1 < 1.2.2
1.2.2 < 2.1.10
2.1.10 > 1.0.1
1.0.1 < 1.0.2
1.0.2 < 3.5.5
3.5.5 > 1.1.1
1.1.1 > 0.9.1
0.9.1 < 1.0.2
1.0.2 > 1.0.1
1.0.1 < 1.0.2
1.0.2 > 1.0.1
1.0.1 = 1.0.1
1.0.1 < 1.0.5
1.0.5 > 0.8.5
0.8.5 < 0.8.6-r3
0.8.6-r3 < 2.3.17
2.3.17 > 1.10-r5
1.10-r5 < 1.10-r9
1.10-r9 < 2.0.2
2.0.2 > 1.1a
1.1a < 1.3a
1.3a > 1.0.2
1.0.2 < 1.2.2-r1
1.2.2-r1 > 1.0-r1
1.0-r1 > 0.15.1b
0.15.1b < 1.0.1
1.0.1 < 1.06-r1
1.06-r1 < 1.06-r2
1.06-r2 > 0.15.1b-r2
0.15.1b-r2 > 0.15.1b
0.15.1b < 2.5.7
2.5.7 > 1.1.2.1-r1
1.1.2.1-r1 > 0.0.31
0.0.31 < 0.0.50
0.0.50 > 0.0.16
0.0.16 < 0.0.25
0.0.25 < 0.17
0.17 > 0.5.0
0.5.0 < 1.1.2
1.1.2 < 1.1.3
1.1.3 < 1.1.20
1.1.20 > 0.9.4
0.9.4 < 0.9.5
0.9.5 < 6.3
6.3 < 6.6
6.6 > 6.3
6.3 < 6.6
6.6 > 1.2.12-r1
1.2.12-r1 < 1.2.13
1.2.13 < 1.2.14
1.2.14 < 1.2.15
1.2.15 < 8.0.12
8.0.12 > 8.0.9
8.0.9 > 1.2.3-r1
1.2.3-r1 < 1.2.4-r1
1.2.4-r1 > 0.1
0.1 < 0.3.5
0.3.5 < 1.5.22
1.5.22 > 0.1.11
0.1.11 < 0.1.12
0.1.12 < 1.1.4.1
1.1.4.1 > 1.1.0
1.1.0 < 1.1.2
1.1.2 > 1.0.3
1.0.3 > 1.0.2
1.0.2 < 2.6.26
2.6.26 < 2.6.27
2.6.27 > 1.1.17
1.1.17 < 1.4.11
1.4.11 < 22.7-r1
22.7-r1 < 22.7.3-r1
22.7.3-r1 > 22.7
22.7 > 2.1_pre20
2.1_pre20 < 2.1_pre26
2.1_pre26 > 0.2.3-r2
0.2.3-r2 > 0.2.2
0.2.2 < 2.10.0
2.10.0 < 2.10.1
2.10.1 > 02.08.01b
02.08.01b < 4.77
4.77 > 0.17
0.17 < 5.1.1-r1
5.1.1-r1 < 5.1.1-r2
5.1.1-r2 > 5.1.1
5.1.1 > 1.2
1.2 < 5.1
5.1 > 2.02.06
2.02.06 < 2.02.10
2.02.10 < 2.8.5-r3
2.8.5-r3 < 2.8.6-r1
2.8.6-r1 < 2.8.6-r2
2.8.6-r2 > 2.02-r1
2.02-r1 > 1.5.0-r1
1.5.0-r1 > 1.5.0
1.5.0 > 0.9.2
0.9.2 < 8.1.2.20040524-r1
8.1.2.20040524-r1 < 8.1.2.20050715-r1
8.1.2.20050715-r1 < 20030215
20030215 > 3.80-r4
3.80-r4 < 3.81
3.81 > 1.6d
1.6d > 1.2.07.8
1.2.07.8 < 1.2.12.04
1.2.12.04 < 1.2.12.05
1.2.12.05 < 1.3.3
1.3.3 < 2.6.4
2.6.4 > 2.5.2
2.5.2 < 2.6.1
2.6.1 > 2.6
2.6 < 6.5.1-r1
6.5.1-r1 > 1.1.35-r1
1.1.35-r1 < 1.1.35-r2
1.1.35-r2 > 0.9.2
0.9.2 < 1.07-r1
1.07-r1 < 1.07.5
1.07.5 > 1.07
1.07 < 1.19
1.19 < 2.1-r2
2.1-r2 < 2.2
2.2 > 1.0.4
1.0.4 < 20060811
20060811 < 20061003
20061003 > 0.1_pre20060810
0.1_pre20060810 < 0.1_pre20060817
0.1_pre20060817 < 1.0.3
1.0.3 > 1.0.2
1.0.2 > 1.0.1
1.0.1 < 3.2.2-r1
3.2.2-r1 < 3.2.2-r2
3.2.2-r2 < 3.3.17
3.3.17 > 0.59s-r11
0.59s-r11 < 0.65
0.65 > 0.2.10-r2
0.2.10-r2 < 2.01
2.01 < 3.9.10
3.9.10 > 1.2.18
1.2.18 < 1.5.11-r2
1.5.11-r2 < 1.5.13-r1
1.5.13-r1 > 1.3.12-r1
1.3.12-r1 < 2.0.1
2.0.1 < 2.0.2
2.0.2 < 2.0.3
2.0.3 > 0.2.0
0.2.0 < 5.5-r2
5.5-r2 < 5.5-r3
5.5-r3 > 0.25.3
0.25.3 < 0.26.1-r1
0.26.1-r1 < 5.2.1.2-r1
5.2.1.2-r1 < 5.4
5.4 > 1.60-r11
1.60-r11 < 1.60-r12
1.60-r12 < 110-r8
110-r8 > 0.17-r2
0.17-r2 < 1.05-r4
1.05-r4 < 5.28.0
5.28.0 > 0.51.6-r1
0.51.6-r1 < 1.0.6-r6
1.0.6-r6 > 0.8.3
0.8.3 < 1.42
1.42 < 20030719
20030719 > 4.01
4.01 < 4.20
4.20 > 0.20070118
0.20070118 < 0.20070207_rc1
0.20070207_rc1 < 1.0
1.0 < 1.13.0
1.13.0 < 1.13.1
1.13.1 > 0.21
0.21 > 0.3.7-r3
0.3.7-r3 < 0.4.10
0.4.10 < 0.5.0
0.5.0 < 0.5.5
0.5.5 < 0.5.7
0.5.7 < 0.6.11-r1
0.6.11-r1 < 2.3.30-r2
2.3.30-r2 < 3.7_p1
3.7_p1 > 1.3
1.3 > 0.10.1
0.10.1 < 4.3_p2-r1
4.3_p2-r1 < 4.3_p2-r5
4.3_p2-r5 < 4.4_p1-r6
4.4_p1-r6 < 4.5_p1-r1
4.5_p1-r1 > 4.5_p1
4.5_p1 < 4.5_p1-r1
4.5_p1-r1 > 4.5_p1
4.5_p1 > 0.9.8c-r1
0.9.8c-r1 < 0.9.8d
0.9.8d < 2.4.4
2.4.4 < 2.4.7
2.4.7 > 2.0.6
2.0.6 = 2.0.6
2.0.6 > 0.78-r3
0.78-r3 > 0.3.2
0.3.2 < 1.7.1-r1
1.7.1-r1 < 2.5.9
2.5.9 > 0.1.13
0.1.13 < 0.1.15
0.1.15 < 0.4
0.4 < 0.9.6
0.9.6 < 2.2.0-r1
2.2.0-r1 < 2.2.3-r2
2.2.3-r2 < 013
013 < 014-r1
014-r1 > 1.3.1-r1
1.3.1-r1 < 5.8.8-r2
5.8.8-r2 > 5.1.6-r4
5.1.6-r4 < 5.1.6-r6
5.1.6-r6 < 5.2.1-r3
5.2.1-r3 > 0.11.3
0.11.3 = 0.11.3
0.11.3 < 1.10.7
1.10.7 > 1.7-r1
1.7-r1 > 0.1.20
0.1.20 < 0.1.23
0.1.23 < 5b-r9
5b-r9 > 2.2.10
2.2.10 < 2.3.6
2.3.6 < 8.0.12
8.0.12 > 2.4.3-r16
2.4.3-r16 < 2.4.4-r4
2.4.4-r4 < 3.0.3-r5
3.0.3-r5 < 3.0.6
3.0.6 < 3.2.6
3.2.6 < 3.2.7
3.2.7 > 0.3.1_rc8
0.3.1_rc8 < 22.2
22.2 < 22.3
22.3 > 1.2.2
1.2.2 < 2.04
2.04 < 2.4.3-r1
2.4.3-r1 < 2.4.3-r4
2.4.3-r4 > 0.98.6-r1
0.98.6-r1 < 5.7-r2
5.7-r2 < 5.7-r3
5.7-r3 > 5.1_p4
5.1_p4 > 1.0.5
1.0.5 < 3.6.19-r1
3.6.19-r1 > 3.6.19
3.6.19 > 1.0.1
1.0.1 < 3.8
3.8 > 0.2.3
0.2.3 < 1.2.15-r3
1.2.15-r3 > 1.2.6-r1
1.2.6-r1 < 2.6.8-r2
2.6.8-r2 < 2.6.9-r1
2.6.9-r1 > 1.7
1.7 < 1.7b
1.7b < 1.8.4-r3
1.8.4-r3 < 1.8.5
1.8.5 < 1.8.5_p2
1.8.5_p2 > 1.1.3
1.1.3 < 3.0.22-r3
3.0.22-r3 < 3.0.24
3.0.24 = 3.0.24
3.0.24 = 3.0.24
3.0.24 < 4.0.2-r5
4.0.2-r5 < 4.0.3
4.0.3 > 0.98
0.98 < 1.00
1.00 < 4.1.4-r1
4.1.4-r1 < 4.1.5
4.1.5 > 2.3
2.3 < 2.17-r3
2.17-r3 > 0.1.7
0.1.7 < 1.11
1.11 < 4.2.1-r11
4.2.1-r11 > 3.2.3
3.2.3 < 3.2.4
3.2.4 < 3.2.8
3.2.8 < 3.2.9
3.2.9 > 3.2.3
3.2.3 < 3.2.4
3.2.4 < 3.2.8
3.2.8 < 3.2.9
3.2.9 > 1.4.9-r2
1.4.9-r2 < 2.9.11_pre20051101-r2
2.9.11_pre20051101-r2 < 2.9.11_pre20051101-r3
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
2.9.11_pre20051101 < 2.9.11_pre20061021-r1
2.9.11_pre20061021-r1 < 2.9.11_pre20061021-r2
2.9.11_pre20061021-r2 < 5.36-r1
5.36-r1 > 1.0.1
1.0.1 < 7.0-r2
7.0-r2 > 2.4.5
2.4.5 < 2.6.1.2
2.6.1.2 < 2.6.1.3-r1
2.6.1.3-r1 > 2.6.1.3
2.6.1.3 < 2.6.1.3-r1
2.6.1.3-r1 < 12.17.9
12.17.9 > 1.1.12
1.1.12 > 1.1.7
1.1.7 < 2.5.14
2.5.14 < 2.6.6-r1
2.6.6-r1 < 2.6.7
2.6.7 < 2.6.9-r1
2.6.9-r1 > 2.6.9
2.6.9 > 1.39
1.39 > 0.9
0.9 < 2.61-r2
2.61-r2 < 4.5.14
4.5.14 > 4.09-r1
4.09-r1 > 1.3.1
1.3.1 < 1.3.2-r3
1.3.2-r3 < 1.6.8_p12-r1
1.6.8_p12-r1 > 1.6.8_p9-r2
1.6.8_p9-r2 > 1.3.0-r1
1.3.0-r1 < 3.11
3.11 < 3.20
3.20 > 1.6.11-r1
1.6.11-r1 > 1.6.9
1.6.9 < 5.0.5-r2
5.0.5-r2 > 2.86-r5
2.86-r5 < 2.86-r6
2.86-r6 > 1.15.1-r1
1.15.1-r1 < 8.4.9
8.4.9 > 7.6-r8
7.6-r8 > 3.9.4-r2
3.9.4-r2 < 3.9.4-r3
3.9.4-r3 < 3.9.5-r2
3.9.5-r2 > 1.1.9
1.1.9 > 1.0.6
1.0.6 < 5.9
5.9 < 6.5
6.5 > 0.40-r1
0.40-r1 < 2.25b-r5
2.25b-r5 < 2.25b-r6
2.25b-r6 > 1.0.4
1.0.4 < 1.0.5
1.0.5 < 1.4_p12-r2
1.4_p12-r2 < 1.4_p12-r5
1.4_p12-r5 > 1.1
1.1 > 0.2.0-r1
0.2.0-r1 < 0.2.1
0.2.1 < 0.9.28-r1
0.9.28-r1 < 0.9.28-r2
0.9.28-r2 < 0.9.28.1
0.9.28.1 > 0.9.28
0.9.28 < 0.9.28.1
0.9.28.1 < 087-r1
087-r1 < 103
103 < 104-r11
104-r11 > 104-r9
104-r9 > 1.23-r1
1.23-r1 > 1.23
1.23 < 1.23-r1
1.23-r1 > 1.0.2
1.0.2 < 5.52-r1
5.52-r1 > 1.2.5_rc2
1.2.5_rc2 > 0.1
0.1 < 0.71-r1
0.71-r1 < 20040406-r1
20040406-r1 > 2.12r-r4
2.12r-r4 < 2.12r-r5
2.12r-r5 > 0.0.7
0.0.7 < 1.0.3
1.0.3 < 1.8
1.8 < 7.0.17
7.0.17 < 7.0.174
7.0.174 > 7.0.17
7.0.17 < 7.0.174
7.0.174 > 1.0.1
1.0.1 < 1.1.1-r3
1.1.1-r3 > 0.3.4_pre20061029
0.3.4_pre20061029 < 0.4.0
0.4.0 > 0.1.2
0.1.2 < 1.10.2
1.10.2 < 2.16
2.16 < 28
28 > 0.99.4
0.99.4 < 1.13
1.13 > 1.0.1
1.0.1 < 1.1.2-r2
1.1.2-r2 > 1.1.0
1.1.0 < 1.1.1
1.1.1 = 1.1.1
1.1.1 > 0.6.0
0.6.0 < 6.6.3
6.6.3 > 1.1.1
1.1.1 > 1.1.0
1.1.0 = 1.1.0
1.1.0 > 0.2.0
0.2.0 < 0.3.0
0.3.0 < 1.1.1
1.1.1 < 1.2.0
1.2.0 > 1.1.0
1.1.0 < 1.6.5
1.6.5 > 1.1.0
1.1.0 < 1.4.2
1.4.2 > 1.1.1
1.1.1 < 2.8.1
2.8.1 > 1.2.0
1.2.0 < 4.1.0
4.1.0 > 0.4.1
0.4.1 < 1.9.1
1.9.1 < 2.1.1
2.1.1 > 1.4.1
1.4.1 > 0.9.1-r1
0.9.1-r1 > 0.8.1
0.8.1 < 1.2.1-r1
1.2.1-r1 > 1.1.0
1.1.0 < 1.2.1
1.2.1 > 1.1.0
1.1.0 > 0.1.1
0.1.1 < 1.2.1
1.2.1 < 4.1.0
4.1.0 > 0.2.1-r1
0.2.1-r1 < 1.1.0
1.1.0 < 2.7.11
2.7.11 > 1.0.2-r6
1.0.2-r6 > 1.0.2
1.0.2 > 0.8
0.8 < 1.1.1-r4
1.1.1-r4 < 222
222 > 1.0.1
1.0.1 < 1.2.12-r1
1.2.12-r1 > 1.2.8
1.2.8 < 1.2.9.1-r1
1.2.9.1-r1 > 1.2.9.1
1.2.9.1 < 2.31-r1
2.31-r1 > 2.31
2.31 > 1.2.3-r1
1.2.3-r1 > 1.2.3
1.2.3 < 4.2.5
4.2.5 < 4.3.2-r2
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0
6.0_pre1 < 6.0
6.1_pre1 < 6.1
6.0_p1 > 6.0
6.1_p1 > 6.1
";

    /// Cases go-apk (apko's resolver) adds on top of apk-tools' data.
    const GO_APK_EXTRA_DATA: &str = "\
1.2.3-r0 = 1.2.3-r0
0.0_git20230331 < 0.0_git20230508
2.0.0 < 2.0.6-r0
6.4_p20231125-r0 > 6.4-r2
";

    #[test]
    fn apk_tools_version_data() {
        assert_eq!(check_table(APK_TOOLS_VERSION_DATA), 733);
    }

    #[test]
    fn go_apk_version_data() {
        assert_eq!(check_table(GO_APK_EXTRA_DATA), 4);
    }

    #[test]
    fn apk_tools_version_data_is_valid_except_its_invalid_cases() {
        let known_invalid = ["23_foo", "1.0bc"];
        for line in APK_TOOLS_VERSION_DATA.lines() {
            let mut fields = line.split_whitespace();
            for version in [fields.next(), fields.nth(1)].into_iter().flatten() {
                assert_eq!(
                    is_valid(version),
                    !known_invalid.contains(&version),
                    "{version}"
                );
            }
        }
    }

    #[test]
    fn leading_zeros_compare_as_digit_strings_after_the_first_number() {
        for (a, b, expected) in [
            ("1.02", "1.2", Less),
            ("1.05", "1.1", Less),
            ("1.010", "1.09", Less),
            ("1.10", "1.05", Greater),
            ("1.0", "1.00", Less),
            ("1.00", "1.000", Less),
            ("1.001", "1.01", Less),
            ("1.01", "1.01", Equal),
            ("8.2.0", "8.2.001", Less),
            ("8.2.001", "8.2.002", Less),
            ("1.0.9", "1.0.10", Less),
            ("1.09", "1.1", Less),
            ("1.2.0", "1.2.00", Less),
            // The leading number is always numeric.
            ("01", "1", Equal),
            ("007", "7", Equal),
            ("010", "9", Greater),
            ("0", "00", Equal),
            // Without leading zeros every number is numeric.
            ("1.2", "1.10", Less),
            ("1.9", "1.10", Less),
            ("2", "10", Less),
            ("1.100", "1.99", Greater),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn numbers_and_trailing_components() {
        for (a, b, expected) in [
            ("1", "1", Equal),
            ("1.0", "1.0", Equal),
            ("1.0.0", "1.0", Greater),
            ("1.0.0.0", "1.0.0", Greater),
            ("1.2.3", "1.2.4", Less),
            ("2.0", "1.99.99", Greater),
            ("20240101", "20231231", Greater),
            ("1.2.3.4.5.6", "1.2.3.4.5.7", Less),
            ("4294967296", "4294967295", Greater),
            ("18446744073709551615", "18446744073709551614", Greater),
            // apk accumulates numbers in a wrapping 64-bit integer: 2^64 reads as 0.
            ("18446744073709551616", "0", Equal),
            ("18446744073709551617", "1", Equal),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn letters() {
        for (a, b, expected) in [
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0b", Less),
            ("1.0z", "1.0y", Greater),
            ("1.0a", "1.0a", Equal),
            ("1.0z", "1.0.1", Less),
            ("1.0a", "1.0_p1", Greater),
            ("1.0a", "1.0-r9", Greater),
            ("1a", "1", Greater),
            ("1a", "2", Less),
            ("1.0a-r1", "1.0a-r2", Less),
            ("1.0b-r1", "1.0a-r2", Greater),
            ("1.0a_alpha", "1.0a", Less),
            ("1.0a_p1", "1.0a", Greater),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn suffixes() {
        let ladder = [
            "1.0_alpha",
            "1.0_alpha1",
            "1.0_alpha2",
            "1.0_alpha10",
            "1.0_beta",
            "1.0_beta1",
            "1.0_pre",
            "1.0_pre20240101",
            "1.0_rc",
            "1.0_rc1",
            "1.0_rc2",
            "1.0",
            "1.0-r1",
            "1.0_cvs",
            "1.0_svn",
            "1.0_git",
            "1.0_git20240101",
            "1.0_hg",
            "1.0_p",
            "1.0_p1",
            "1.0_p1-r1",
            "1.0_p2",
            "1.0_p10",
            "1.0a",
            "1.0.1_alpha",
            "1.0.1",
        ];
        for (index, older) in ladder.iter().enumerate() {
            check(older, older, Equal);
            for newer in &ladder[index + 1..] {
                check(older, newer, Less);
            }
        }
        for (a, b, expected) in [
            ("1.0_alpha", "1.0_alpha0", Less),
            ("1.0_alpha0", "1.0_alpha00", Equal),
            ("1.0_rc1", "1.0_rc1_p1", Less),
            ("1.0_rc1_p1", "1.0_rc2", Less),
            ("1.0_alpha_pre2", "1.0_alpha", Less),
            ("1.0_alpha_beta", "1.0_alpha_alpha", Greater),
            ("1.0_p1_p1", "1.0_p1", Greater),
            ("1.0_rc1-r5", "1.0-r0", Less),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn revisions() {
        for (a, b, expected) in [
            ("1.0-r0", "1.0", Greater),
            ("1.0-r1", "1.0-r2", Less),
            ("1.0-r10", "1.0-r9", Greater),
            ("1.0-r01", "1.0-r1", Equal),
            ("1.0-r0", "1.0-r00", Equal),
            ("1.0-r100", "1.0.1-r0", Less),
            ("1.0-r5", "1.0a-r0", Less),
            ("2.0-r0", "1.0-r99", Greater),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn commit_hashes() {
        for (a, b, expected) in [
            ("1.0~abc", "1.0~abc", Equal),
            ("1.0~abc", "1.0~abd", Less),
            ("1.0~ab", "1.0~abc", Less),
            ("1.0~b", "1.0~abc", Greater),
            ("1.0~0", "1.0~a", Less),
            ("1.0~abc", "1.0", Greater),
            ("1.0~abc", "1.0-r1", Greater),
            ("1.0~abc", "1.0_p1", Less),
            ("1.0~abc-r1", "1.0~abc-r2", Less),
            ("1.0~abc-r5", "1.0~abd-r1", Less),
            ("1.0~abc-r1", "1.0~abc", Greater),
            ("1.0_p1~abc", "1.0_p1", Greater),
            ("1.0_rc1~abc", "1.0", Less),
            ("1.0a~abc", "1.0a", Greater),
            ("24.079.58964~7943616", "24.079.58964~7943617", Less),
        ] {
            check(a, b, expected);
        }
    }

    #[test]
    fn invalid_versions_compare_like_apk() {
        for (a, b, expected) in [
            // An invalid continuation is older than anything, even the end of the string.
            ("1.0", "1.0bc", Less),
            ("1.0b", "1.0bc", Greater),
            ("1.0_foo", "1.0", Less),
            ("1.0-1", "1.0", Less),
            ("1.0-r", "1.0", Less),
            ("1.", "1", Less),
            ("1.0~", "1.0", Less),
            ("1.0~XYZ", "1.0", Less),
            ("1.0 ", "1.0", Less),
            // A pre-release suffix is checked before the token kinds.
            ("1.0_alpha", "1.0_foo", Less),
            // Earlier differences still decide.
            ("2.0_foo", "1.0", Greater),
            ("23_foo", "4_beta", Greater),
            // Invalid at the same token: equal, whatever follows.
            ("1.0_foo", "1.0_bar", Equal),
            ("1.0a1", "1.0a2", Equal),
            ("abc", "xyz", Equal),
            ("", "abc", Equal),
            ("", "", Equal),
            ("v1.0", "v2.0", Equal),
            // Invalid from the start: older than every valid version.
            ("abc", "0", Less),
            ("", "0", Less),
            ("v2.0", "1.0", Less),
        ] {
            check(a, b, expected);
        }
    }

    fn check_valid(version: &str, expected: bool) {
        assert_eq!(is_valid(version), expected, "is_valid({version:?})");
    }

    #[test]
    fn validity() {
        for version in [
            "0",
            "1",
            "006",
            "1.0",
            "1.2.3.4.5.6.7.8",
            "20240101",
            "1a",
            "1.0a",
            "1.0z-r0",
            "2.12r-r4",
            "1_alpha",
            "1.0_alpha1",
            "1.0_beta",
            "1.0_pre20240101",
            "1.0_rc1",
            "1.0_cvs",
            "1.0_svn",
            "1.0_git20240101",
            "1.0_hg",
            "1.0_p",
            "1.0_p10",
            "0.1.0_alpha_pre2",
            "1.0_p1_p2",
            "1.0a_p1",
            "1.0-r0",
            "1.0-r01",
            "1.0_p1-r2",
            "1.0~abc123",
            "1.0~0123456789abcdef",
            "1.0~abc123-r1",
            "1.0_rc1~deadbeef-r0",
            "1.0a~beef",
            "24.079.58964~7943616",
            "18446744073709551616",
        ] {
            check_valid(version, true);
        }
        for version in [
            "",
            "a",
            "v1.0",
            ".1",
            "1.",
            "1..2",
            "-r1",
            "_alpha",
            "1.0-",
            "1.0-r",
            "1.0-1",
            "1.0-rc1",
            "1.0-r1a",
            "1.0-r1.2",
            "1.0-r1-r2",
            "1.0-r1_p1",
            "1.0-r1~abc",
            "1.0_",
            "1.0_foo",
            "1.0_patch",
            "1.0_Alpha",
            "1.0_alpha.1",
            "1.0_alpha-",
            "1.0_rc-1",
            "1.0A",
            "1.0ab",
            "1.0a1",
            "1.0a.1",
            "1.0~",
            "1.0~ABC",
            "1.0~xyz",
            "1.0~ab~cd",
            "1.0~abc_p1",
            "1.0~abc.1",
            "1.0 ",
            " 1.0",
            "1.0\n",
            "1,0",
            "1.0+2",
            "1.0:1",
            "1:1.0",
            "1.0\u{0}",
            "1.\u{ff10}",
        ] {
            check_valid(version, false);
        }
    }

    fn check_fuzzy(version: &str, prefix: &str, expected: bool) {
        assert_eq!(
            fuzzy_matches(version, prefix),
            expected,
            "{version} ~ {prefix}"
        );
    }

    #[test]
    fn fuzzy_matching() {
        for (version, prefix, expected) in [
            ("1.25", "1.25", true),
            ("1.25.8", "1.25", true),
            ("1.25.8-r3", "1.25", true),
            ("1.25-r0", "1.25", true),
            ("1.25a", "1.25", true),
            ("1.25_rc1", "1.25", true),
            ("1.25_p1", "1.25", true),
            ("1.25~abc", "1.25", true),
            ("1.250", "1.25", false),
            ("1.26", "1.25", false),
            ("1.24.9", "1.25", false),
            ("1.2", "1.25", false),
            ("1", "1.25", false),
            ("2", "1", false),
            ("1.0", "1", true),
            ("1", "1.0", false),
            ("1.25.8-r3", "1.25.8", true),
            ("1.25.8-r3", "1.25.8-r3", true),
            ("1.25.8-r3", "1.25.8-r2", false),
            ("1.25.80", "1.25.8", false),
            ("1.7.1-r1", "1.7", true),
            ("1.7.1-r1", "1.7.1", true),
            ("1.7.1-r1", "1.7.1-r2", false),
            ("1.3.6-r0", "1.6", false),
            ("4.5.6-r7", "4.5.6", true),
            ("1.05.1", "1.05", true),
            ("1.05", "1.0", false),
            ("1.0_rc1", "1.0_rc", true),
            ("1.0_rc1", "1.0_rc2", false),
            ("1.0_rc", "1.0_rc1", false),
        ] {
            check_fuzzy(version, prefix, expected);
        }
    }

    /// The pairs `apk version` compared, from `tests/reference/golden/version-compare.tsv`.
    const GOLDEN_COMPARE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/reference/golden/version-compare.tsv"
    ));

    #[test]
    fn agrees_with_apk_on_every_recorded_pair() {
        let rows = golden::rows(GOLDEN_COMPARE);
        let mut disagreements = Vec::new();
        let mut tested = 0;
        for row in &rows {
            let [a, b, valid_a, valid_b, test, expected] = row.as_slice() else {
                panic!("malformed golden row {row:?}");
            };
            let symbol = compare_display(compare(a, b));
            if symbol != expected {
                disagreements.push(format!("compare({a:?}, {b:?}) = {symbol}, apk: {expected}"));
            }
            for (version, valid) in [(a, valid_a), (b, valid_b)] {
                if is_valid(version) != (valid == "1") {
                    disagreements.push(format!("is_valid({version:?}), apk: {valid}"));
                }
            }
            // `apk version --test` answers only for two valid versions, and then the same.
            if test != "!" {
                tested += 1;
                assert!(is_valid(a) && is_valid(b), "{a:?} {b:?}");
                assert_eq!(test, expected, "{a:?} {b:?}");
            }
        }
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
        assert_eq!((rows.len(), tested), (900, 460));
    }

    #[test]
    fn display_symbols() {
        assert_eq!(compare_display(Less), "<");
        assert_eq!(compare_display(Equal), "=");
        assert_eq!(compare_display(Greater), ">");
        assert_eq!(compare_display(compare("1.0", "1.0-r1")), "<");
    }
}
