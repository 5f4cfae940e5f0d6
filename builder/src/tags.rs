//! Tag templates over resolved package versions: `latest`, `{{ version "go" }}` (the version
//! without its `-rN` revision, e.g. `1.25.8`), `{{ fullversion "go" }}` (with it, `1.25.8-r3`).
//!
//! Pure: a template and a name → version lookup in, a valid OCI tag out.

use std::collections::BTreeMap;

/// The longest tag the OCI distribution spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// Errors from expanding a tag template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// `{{` without a matching `}}`.
    #[error("tag template `{template}`: `{{{{` is not closed by `}}}}`")]
    Unclosed {
        /// The template.
        template: String,
    },
    /// An expression other than `version "pkg"` or `fullversion "pkg"`.
    #[error(
        "tag template `{template}`: unknown expression `{expression}`; use {{{{ version \"PACKAGE\" }}}} or {{{{ fullversion \"PACKAGE\" }}}}"
    )]
    Expression {
        /// The template.
        template: String,
        /// The expression between the braces.
        expression: String,
    },
    /// The template names a package that is not in the image.
    #[error("tag template `{template}`: package `{package}` is not installed in the image")]
    UnknownPackage {
        /// The template.
        template: String,
        /// The package name.
        package: String,
    },
    /// The expanded tag is not a valid OCI tag.
    #[error(
        "tag `{tag}` (from template `{template}`) is not a valid tag: use letters, digits, `_`, `.` and `-`, start with a letter, digit or `_`, at most 128 characters"
    )]
    Invalid {
        /// The template.
        template: String,
        /// The expanded tag.
        tag: String,
    },
}

/// Expands one template against resolved package versions (name → full apk version).
pub fn expand(template: &str, versions: &BTreeMap<String, String>) -> Result<String, TagError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TagError::Unclosed {
            template: template.to_string(),
        })?;
        out.push_str(&evaluate(template, after[..end].trim(), versions)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if is_valid_tag(&out) {
        Ok(out)
    } else {
        Err(TagError::Invalid {
            template: template.to_string(),
            tag: out,
        })
    }
}

/// Expands every template, keeping the first occurrence of duplicates.
pub fn expand_all(
    templates: &[String],
    versions: &BTreeMap<String, String>,
) -> Result<Vec<String>, TagError> {
    let mut tags = Vec::new();
    for template in templates {
        let tag = expand(template, versions)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// Whether `tag` matches the distribution spec's `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= MAX_TAG_LEN
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn evaluate(
    template: &str,
    expression: &str,
    versions: &BTreeMap<String, String>,
) -> Result<String, TagError> {
    let bad = || TagError::Expression {
        template: template.to_string(),
        expression: expression.to_string(),
    };
    let (function, argument) = expression.split_once(char::is_whitespace).ok_or_else(bad)?;
    let package = argument
        .trim()
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .filter(|p| !p.is_empty() && !p.contains('"'))
        .ok_or_else(bad)?;
    let full = versions
        .get(package)
        .ok_or_else(|| TagError::UnknownPackage {
            template: template.to_string(),
            package: package.to_string(),
        })?;
    match function {
        "version" => Ok(without_revision(full).to_string()),
        "fullversion" => Ok(full.clone()),
        _ => Err(bad()),
    }
}

/// `1.25.8-r3` → `1.25.8`; versions without a revision are returned unchanged.
fn without_revision(version: &str) -> &str {
    match version.rfind("-r") {
        Some(pos)
            if pos + 2 < version.len()
                && version[pos + 2..].chars().all(|c| c.is_ascii_digit()) =>
        {
            &version[..pos]
        }
        _ => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> BTreeMap<String, String> {
        [
            ("go", "1.25.8-r3"),
            ("busybox", "1.37.0"),
            ("odd", "2.0~abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn check(template: &str, expected: Result<&str, &str>) {
        let result = expand(template, &versions());
        match expected {
            Ok(tag) => assert_eq!(result.as_deref(), Ok(tag), "{template}"),
            Err(fragment) => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains(fragment), "{template}: {message}");
            }
        }
    }

    #[test]
    fn templates() {
        check("latest", Ok("latest"));
        check("{{ version \"go\" }}", Ok("1.25.8"));
        check("{{version \"go\"}}", Ok("1.25.8"));
        check("{{ fullversion \"go\" }}", Ok("1.25.8-r3"));
        check(
            "go-{{ version \"go\" }}-bb{{ version \"busybox\" }}",
            Ok("go-1.25.8-bb1.37.0"),
        );
        check("{{ version \"busybox\" }}", Ok("1.37.0"));
        check(
            "{{ version \"rust\" }}",
            Err("package `rust` is not installed"),
        );
        check(
            "{{ release \"go\" }}",
            Err("unknown expression `release \"go\"`"),
        );
        check("{{ version go }}", Err("unknown expression"));
        check("{{ version \"go\" ", Err("is not closed"));
        check("{{ fullversion \"odd\" }}", Err("is not a valid tag"));
        check("-leading", Err("is not a valid tag"));
        check("", Err("is not a valid tag"));
    }

    #[test]
    fn duplicates_are_dropped_in_order() {
        let templates = vec![
            "{{ version \"busybox\" }}".to_string(),
            "latest".to_string(),
            "1.37.0".to_string(),
        ];
        assert_eq!(
            expand_all(&templates, &versions()).unwrap(),
            ["1.37.0", "latest"]
        );
    }
}
