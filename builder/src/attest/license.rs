//! Turns APK license fields into valid SPDX license expressions, naming unlisted licenses as
//! `LicenseRef-` identifiers with their original text; it does not judge which license applies.

use std::cmp::Ordering;

use sha2::Digest as _;

use super::spdx_license_list::{EXCEPTION_IDS, LICENSE_IDS};

/// The SPDX value for "no information".
pub const NOASSERTION: &str = "NOASSERTION";
/// The SPDX value for "known to be absent".
pub const NONE: &str = "NONE";
/// Prefix of a document-local license identifier.
pub const LICENSE_REF_PREFIX: &str = "LicenseRef-";
/// Version of the SPDX License List used to recognise identifiers.
pub const LICENSE_LIST_VERSION: &str = super::spdx_license_list::LICENSE_LIST_VERSION;

/// A license expression valid under SPDX 2.3 Annex D.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseExpression {
    /// The expression, or [`NOASSERTION`] / [`NONE`].
    pub expression: String,
    /// `LicenseRef-` identifiers the expression uses, with the text each stands for.
    pub references: Vec<LicenseReference>,
}

/// A document-local license identifier and the license text or name it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LicenseReference {
    /// `LicenseRef-<idstring>`.
    pub id: String,
    /// The original text from the package metadata.
    pub text: String,
}

/// A lexical element of a license field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    With,
    Word(String),
}

/// Converts an APK `L:` field into an SPDX license expression. Listed identifiers are matched
/// case-insensitively and written in their canonical case; operators are upper-cased; a bare
/// space-separated list becomes an `AND` of its members; anything else that is not a listed
/// identifier becomes `LicenseRef-<sanitized>`. A field that cannot be parsed as an expression
/// becomes one `LicenseRef-` standing for the whole field.
pub fn normalize_license(raw: &str) -> LicenseExpression {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case(NOASSERTION) {
        return LicenseExpression {
            expression: NOASSERTION.to_owned(),
            references: Vec::new(),
        };
    }
    if trimmed.eq_ignore_ascii_case(NONE) {
        return LicenseExpression {
            expression: NONE.to_owned(),
            references: Vec::new(),
        };
    }
    let mut tokens = tokenize(trimmed);
    let bare = tokens.iter().all(|token| matches!(token, Token::Word(_)));
    if bare && tokens.len() > 1 {
        let any_listed = tokens.iter().any(|token| match token {
            Token::Word(word) => listed_license(word).is_some(),
            _ => false,
        });
        if !any_listed {
            return whole_field_reference(trimmed);
        }
        tokens = join_with_and(tokens);
    }
    match render(&tokens) {
        Some(expression) => expression,
        None => whole_field_reference(trimmed),
    }
}

/// Splits a field into tokens; commas separate like spaces.
fn tokenize(field: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if word.is_empty() {
            return;
        }
        let token = match word.to_ascii_uppercase().as_str() {
            "AND" => Token::And,
            "OR" => Token::Or,
            "WITH" => Token::With,
            _ => Token::Word(word.clone()),
        };
        tokens.push(token);
        word.clear();
    };
    for ch in field.chars() {
        match ch {
            '(' | ')' => {
                flush(&mut word, &mut tokens);
                tokens.push(if ch == '(' { Token::Open } else { Token::Close });
            }
            ',' => flush(&mut word, &mut tokens),
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// Interleaves `AND` between the words of a bare list.
fn join_with_and(words: Vec<Token>) -> Vec<Token> {
    let mut joined = Vec::with_capacity(words.len() * 2);
    for (position, word) in words.into_iter().enumerate() {
        if position > 0 {
            joined.push(Token::And);
        }
        joined.push(word);
    }
    joined
}

/// Parses `tokens` as `or-expr := and-expr (OR and-expr)*`, `and-expr := term (AND term)*`,
/// `term := '(' or-expr ')' | license [WITH exception]`, and renders the canonical text.
fn render(tokens: &[Token]) -> Option<LicenseExpression> {
    let mut parser = Parser {
        tokens,
        position: 0,
        references: Vec::new(),
    };
    let text = parser.or_expression()?;
    if parser.position != tokens.len() {
        return None;
    }
    let mut references = parser.references;
    references.sort();
    references.dedup_by(|a, b| a.id == b.id);
    Some(LicenseExpression {
        expression: text,
        references,
    })
}

/// Recursive-descent parser over license tokens.
struct Parser<'t> {
    tokens: &'t [Token],
    position: usize,
    references: Vec<LicenseReference>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.position);
        self.position += 1;
        token
    }

    fn or_expression(&mut self) -> Option<String> {
        let mut text = self.and_expression()?;
        while self.peek() == Some(&Token::Or) {
            self.position += 1;
            text = format!("{text} OR {}", self.and_expression()?);
        }
        Some(text)
    }

    fn and_expression(&mut self) -> Option<String> {
        let mut text = self.term()?;
        while self.peek() == Some(&Token::And) {
            self.position += 1;
            text = format!("{text} AND {}", self.term()?);
        }
        Some(text)
    }

    fn term(&mut self) -> Option<String> {
        match self.next()?.clone() {
            Token::Open => {
                let inner = self.or_expression()?;
                (self.next()? == &Token::Close).then(|| format!("({inner})"))
            }
            Token::Word(word) => {
                let license = self.license(&word);
                if self.peek() == Some(&Token::With) {
                    self.position += 1;
                    let Token::Word(exception) = self.next()?.clone() else {
                        return None;
                    };
                    let exception = listed(EXCEPTION_IDS, &exception)?;
                    return Some(format!("{license} WITH {exception}"));
                }
                Some(license)
            }
            _ => None,
        }
    }

    /// The canonical identifier for a license word, registering a reference when unlisted.
    fn license(&mut self, word: &str) -> String {
        if let Some(listed) = listed_license(word) {
            return listed;
        }
        let reference = match strip_prefix_ignore_case(word, LICENSE_REF_PREFIX) {
            Some(rest) => reference_for(rest, word),
            None => reference_for(word, word),
        };
        let id = reference.id.clone();
        self.references.push(reference);
        id
    }
}

/// The canonical form of a listed license identifier, with an optional `+` suffix.
fn listed_license(word: &str) -> Option<String> {
    if let Some(id) = listed(LICENSE_IDS, word) {
        return Some(id.to_owned());
    }
    let base = word.strip_suffix('+')?;
    listed(LICENSE_IDS, base).map(|id| format!("{id}+"))
}

/// Case-insensitive lookup in a table sorted by lowercase.
fn listed(table: &'static [&'static str], word: &str) -> Option<&'static str> {
    table
        .binary_search_by(|probe| compare_ignore_case(probe, word))
        .ok()
        .and_then(|index| table.get(index).copied())
}

/// Compares two ASCII strings by their lowercase forms.
fn compare_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// `word` without `prefix`, compared case-insensitively.
fn strip_prefix_ignore_case<'w>(word: &'w str, prefix: &str) -> Option<&'w str> {
    let head = word.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &word[prefix.len()..])
}

/// A reference whose idstring is `name` sanitized and whose text is `text`.
fn reference_for(name: &str, text: &str) -> LicenseReference {
    LicenseReference {
        id: format!("{LICENSE_REF_PREFIX}{}", sanitize_idstring(name)),
        text: text.to_owned(),
    }
}

/// One reference standing for the whole field.
fn whole_field_reference(field: &str) -> LicenseExpression {
    let reference = reference_for(field, field);
    LicenseExpression {
        expression: reference.id.clone(),
        references: vec![reference],
    }
}

/// Keeps the characters SPDX allows in an idstring (letters, digits, `.` and `-`), replacing
/// others with `-`; a name with none of them is replaced by a hash of it.
pub fn sanitize_idstring(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8])
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn check(raw: &str, expression: &str, references: &[(&str, &str)]) {
        let normalized = normalize_license(raw);
        assert_eq!(normalized.expression, expression, "{raw:?}");
        let refs: Vec<(&str, &str)> = normalized
            .references
            .iter()
            .map(|r| (r.id.as_str(), r.text.as_str()))
            .collect();
        assert_eq!(refs, references, "{raw:?}");
    }

    #[test]
    fn normalizes_apk_license_fields() {
        check("GPL-2.0-only AND MIT", "GPL-2.0-only AND MIT", &[]);
        check("mit", "MIT", &[]);
        check(
            "gpl-2.0-or-later or bsd-3-clause",
            "GPL-2.0-or-later OR BSD-3-Clause",
            &[],
        );
        check("GPL-2.0+", "GPL-2.0+", &[]);
        check("LGPL-2.1-or-later+", "LGPL-2.1-or-later+", &[]);
        check("MIT BSD-2-Clause", "MIT AND BSD-2-Clause", &[]);
        check("MIT, Zlib", "MIT AND Zlib", &[]);
        check(
            "(MIT OR Apache-2.0) AND BSD-3-Clause",
            "(MIT OR Apache-2.0) AND BSD-3-Clause",
            &[],
        );
        check("( MIT or Apache-2.0 )", "(MIT OR Apache-2.0)", &[]);
        check(
            "GPL-2.0-or-later WITH classpath-exception-2.0",
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
            &[],
        );
        check(
            "custom",
            "LicenseRef-custom",
            &[("LicenseRef-custom", "custom")],
        );
        check(
            "MIT AND custom",
            "MIT AND LicenseRef-custom",
            &[("LicenseRef-custom", "custom")],
        );
        check(
            "LicenseRef-Foo_Bar",
            "LicenseRef-Foo-Bar",
            &[("LicenseRef-Foo-Bar", "LicenseRef-Foo_Bar")],
        );
        check(
            "Public Domain",
            "LicenseRef-Public-Domain",
            &[("LicenseRef-Public-Domain", "Public Domain")],
        );
        check(
            "MIT custom custom",
            "MIT AND LicenseRef-custom AND LicenseRef-custom",
            &[("LicenseRef-custom", "custom")],
        );
        check("", NOASSERTION, &[]);
        check("  noassertion ", NOASSERTION, &[]);
        check("NONE", NONE, &[]);
    }

    #[test]
    fn unparseable_fields_become_one_reference() {
        check(
            "MIT AND",
            "LicenseRef-MIT-AND",
            &[("LicenseRef-MIT-AND", "MIT AND")],
        );
        check("(MIT", "LicenseRef-MIT", &[("LicenseRef-MIT", "(MIT")]);
        check("MIT)", "LicenseRef-MIT", &[("LicenseRef-MIT", "MIT)")]);
        check(
            "MIT WITH nonsense",
            "LicenseRef-MIT-WITH-nonsense",
            &[("LicenseRef-MIT-WITH-nonsense", "MIT WITH nonsense")],
        );
        check(
            "AND OR",
            "LicenseRef-AND-OR",
            &[("LicenseRef-AND-OR", "AND OR")],
        );
        let hashed = normalize_license("©");
        assert!(
            hashed.expression.starts_with("LicenseRef-") && hashed.expression.len() == 11 + 16,
            "{hashed:?}"
        );
        assert_eq!(hashed.references[0].text, "©");
    }

    #[test]
    fn sanitizes_idstrings() {
        assert_eq!(sanitize_idstring("a b/c.d-e"), "a-b-c.d-e");
        assert_eq!(sanitize_idstring("--x--"), "x");
        assert_eq!(sanitize_idstring("***").len(), 16);
    }

    #[test]
    fn license_tables_are_sorted_for_lookup() {
        for table in [LICENSE_IDS, EXCEPTION_IDS] {
            assert!(
                table
                    .windows(2)
                    .all(|pair| compare_ignore_case(pair[0], pair[1]) == Ordering::Less)
            );
        }
    }
}
