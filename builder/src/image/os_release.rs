//! `/etc/os-release`: reads what the packages installed, applies the configuration's
//! `os-release` fields (as apko does: configured keys replace the package's, others stay), and
//! reports the `ID`, `VERSION_ID` and `NAME` that package URLs in the SBOM name.
//!
//! Pure apart from reading file contents through [`ContentSource`].

use securebuild_crds::image_config::OsRelease;

use super::paths;
use super::tree::{ContentSource, Tree};

/// Where the file lives.
pub const OS_RELEASE_PATH: &str = "etc/os-release";

/// What the image says about its distribution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// `ID`.
    pub id: Option<String>,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `NAME`.
    pub name: Option<String>,
}

/// Errors reading or writing `/etc/os-release`.
#[derive(Debug, thiserror::Error)]
pub enum OsReleaseError {
    /// The path cannot be resolved inside the image.
    #[error("cannot resolve /etc/os-release")]
    Path {
        /// Why.
        #[source]
        source: paths::TreePathError,
    },
    /// The file's content could not be read back.
    #[error("cannot read /etc/os-release")]
    Read {
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Applies `configured` to the image's os-release (when given) and returns the release info.
pub fn apply_os_release(
    tree: &mut Tree,
    source: &dyn ContentSource,
    configured: Option<&OsRelease>,
    mtime: i64,
) -> Result<ReleaseInfo, OsReleaseError> {
    let path = paths::resolve(tree, OS_RELEASE_PATH, true)
        .map_err(|source| OsReleaseError::Path { source })?;
    let existing = if path.is_empty() {
        None
    } else {
        tree.read(&path, source)
            .map_err(|source| OsReleaseError::Read { source })?
    };
    let mut lines: Vec<(String, String)> = existing
        .as_deref()
        .map(|bytes| parse(&String::from_utf8_lossy(bytes)))
        .unwrap_or_default();
    if let Some(configured) = configured {
        let fields = [
            ("ID", &configured.id),
            ("NAME", &configured.name),
            ("VERSION_ID", &configured.version_id),
            ("PRETTY_NAME", &configured.pretty_name),
            ("HOME_URL", &configured.home_url),
            ("BUG_REPORT_URL", &configured.bug_report_url),
        ];
        let mut changed = false;
        for (key, value) in fields {
            if let Some(value) = value {
                changed = true;
                match lines.iter_mut().find(|(k, _)| k == key) {
                    Some(line) => line.1 = value.clone(),
                    None => lines.push((key.to_string(), value.clone())),
                }
            }
        }
        if changed {
            let target = if path.is_empty() {
                OS_RELEASE_PATH.to_string()
            } else {
                path.clone()
            };
            let (mode, uid, gid) = tree
                .get(&target)
                .map_or((0o644, 0, 0), |n| (n.entry.mode, n.entry.uid, n.entry.gid));
            tree.put_file(&target, render(&lines).into_bytes(), mode, uid, gid, mtime);
        }
    }
    let get = |key: &str| {
        lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    Ok(ReleaseInfo {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        name: get("NAME"),
    })
}

/// Parses `KEY=value` lines, unquoting values; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect()
}

fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
    }
    value.to_string()
}

fn render(lines: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in lines {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if plain {
            out.push_str(&format!("{key}={value}\n"));
        } else {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!("{key}=\"{escaped}\"\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::NoSpools;

    #[test]
    fn reads_and_overrides() {
        let mut tree = Tree::new();
        tree.put_file(
            OS_RELEASE_PATH,
            b"ID=wolfi\nNAME=\"Wolfi\"\n# comment\nVERSION_ID=20230201\n".to_vec(),
            0o644,
            0,
            0,
            1,
        );
        let info = apply_os_release(&mut tree, &NoSpools, None, 1).unwrap();
        assert_eq!(info.id.as_deref(), Some("wolfi"));
        assert_eq!(info.name.as_deref(), Some("Wolfi"));
        assert_eq!(info.version_id.as_deref(), Some("20230201"));

        let configured = OsRelease {
            name: Some("Acme Linux".into()),
            pretty_name: Some("Acme \"Base\"".into()),
            ..OsRelease::default()
        };
        let info = apply_os_release(&mut tree, &NoSpools, Some(&configured), 1).unwrap();
        assert_eq!(info.id.as_deref(), Some("wolfi"));
        assert_eq!(info.name.as_deref(), Some("Acme Linux"));
        let text =
            String::from_utf8(tree.read(OS_RELEASE_PATH, &NoSpools).unwrap().unwrap()).unwrap();
        assert_eq!(
            text,
            "ID=wolfi\nNAME=\"Acme Linux\"\nVERSION_ID=20230201\nPRETTY_NAME=\"Acme \\\"Base\\\"\"\n"
        );
        assert_eq!(parse(&text)[3].1, "Acme \"Base\"");
    }

    #[test]
    fn missing_file_is_created_only_when_configured() {
        let mut tree = Tree::new();
        assert_eq!(
            apply_os_release(&mut tree, &NoSpools, None, 1).unwrap(),
            ReleaseInfo::default()
        );
        assert!(tree.is_empty());
        let configured = OsRelease {
            id: Some("acme".into()),
            ..OsRelease::default()
        };
        let info = apply_os_release(&mut tree, &NoSpools, Some(&configured), 1).unwrap();
        assert_eq!(info.id.as_deref(), Some("acme"));
        assert!(tree.contains(OS_RELEASE_PATH));
    }
}
