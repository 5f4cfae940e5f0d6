//! Package search across every watched image: which images install a package, at which
//! version, on which architectures — optionally only versions in a range written in apk's own
//! syntax (`>=3.3.0`, `<3.3.2-r1`, `~1.25`, several at once meaning all of them), compared with
//! apk's version rules (`securebuild_builder::apk::constraint`).
//!
//! Pure: it reads ImageBuilds and returns rows.

use kube::ResourceExt;
use securebuild_builder::apk::constraint::Dependency;
use securebuild_crds::ImageBuild;

/// Characters of apk's version operators.
const OPERATOR_CHARS: [char; 4] = ['<', '>', '=', '~'];

/// A search that cannot run as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A range part is not an operator followed by an apk version.
    #[error(
        "`{part}` is not an apk version constraint: write an operator (<, <=, =, >=, >, ~, <~, >~) followed by a version, e.g. `>=3.3.0-r0` or `~1.25`"
    )]
    Constraint {
        /// The part as written.
        part: String,
    },
    /// The name field holds something that is not a package name or an apk atom.
    #[error(
        "`{name}` is not a package name: write a name such as `openssl`, a pattern such as `lib*`, or an apk atom such as `openssl<3.3.2-r1`"
    )]
    Name {
        /// The name as written.
        name: String,
    },
}

/// A package search: a name (exact, or a pattern with `*`) and version constraints that must
/// all hold.
#[derive(Clone, Debug)]
pub struct PackageQuery {
    name: String,
    constraints: Vec<Dependency>,
}

impl PackageQuery {
    /// The query of a `name` field (a name, a `*` pattern, or an apk atom such as
    /// `go~1.25`) and a `range` field (constraints separated by spaces or commas).
    pub fn parse(name: &str, range: &str) -> Result<Self, SearchError> {
        let name = name.trim();
        let mut constraints = Vec::new();
        let bare = match name.find(OPERATOR_CHARS) {
            Some(at) => {
                let atom = Dependency::parse(name).map_err(|_| SearchError::Name {
                    name: name.to_string(),
                })?;
                if atom.conflict || atom.tag.is_some() || atom.name.contains('*') {
                    return Err(SearchError::Name {
                        name: name.to_string(),
                    });
                }
                constraints.push(atom);
                &name[..at]
            }
            None => name,
        };
        if bare.is_empty()
            || bare
                .chars()
                .any(|c| c.is_whitespace() || c == '!' || c == '@')
        {
            return Err(SearchError::Name {
                name: name.to_string(),
            });
        }
        for part in range
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            constraints.push(parse_constraint(part)?);
        }
        Ok(Self {
            name: bare.to_string(),
            constraints,
        })
    }

    /// Whether a package `name` at `version` is one the query asks for.
    pub fn matches(&self, name: &str, version: &str) -> bool {
        name_matches(&self.name, name) && self.constraints.iter().all(|c| c.matches(version))
    }
}

/// One range part: an operator and a version, e.g. `>=1.2.3-r0`.
fn parse_constraint(part: &str) -> Result<Dependency, SearchError> {
    let error = || SearchError::Constraint {
        part: part.to_string(),
    };
    if !part.starts_with(OPERATOR_CHARS) {
        return Err(error());
    }
    // The name is irrelevant to a version test; `x` makes the part an atom apk parses.
    let atom = Dependency::parse(&format!("x{part}")).map_err(|_| error())?;
    if atom.version.is_none() || atom.tag.is_some() {
        return Err(error());
    }
    Ok(atom)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn name_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return false,
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let last = rest.len().saturating_sub(1);
    for (i, part) in rest.iter().enumerate() {
        if i == last {
            return remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// An image that installs a package the query asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageHit {
    /// The ImageBuild's namespace.
    pub namespace: String,
    /// The ImageBuild's name.
    pub image_build: String,
    /// The package name.
    pub package: String,
    /// The installed version.
    pub version: String,
    /// The architectures that install it.
    pub architectures: Vec<String>,
}

/// Every installed package of `images` the query asks for, sorted by package, version,
/// namespace and ImageBuild.
pub fn search<'a>(
    query: &PackageQuery,
    images: impl IntoIterator<Item = &'a ImageBuild>,
) -> Vec<PackageHit> {
    let mut hits = Vec::new();
    for ib in images {
        let Some(packages) = ib.status.as_ref().and_then(|s| s.packages.as_ref()) else {
            continue;
        };
        for package in &packages.installed {
            if query.matches(&package.name, &package.version) {
                hits.push(PackageHit {
                    namespace: ib.namespace().unwrap_or_default(),
                    image_build: ib.name_any(),
                    package: package.name.clone(),
                    version: package.version.clone(),
                    architectures: package.architectures.clone(),
                });
            }
        }
    }
    hits.sort_by(|a, b| {
        (&a.package, &a.namespace, &a.image_build, &a.version).cmp(&(
            &b.package,
            &b.namespace,
            &b.image_build,
            &b.version,
        ))
    });
    hits
}

/// How many watched images have no package list (built before lists were recorded, or whose
/// packages could not be resolved again): a search cannot see into them.
pub fn images_without_list<'a>(images: impl IntoIterator<Item = &'a ImageBuild>) -> usize {
    images
        .into_iter()
        .filter(|ib| {
            ib.status
                .as_ref()
                .and_then(|s| s.packages.as_ref())
                .is_some_and(|p| p.installed.is_empty())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestImageBuild;
    use securebuild_crds::imagebuild::{InstalledPackage, PackageSummary};

    fn image(name: &str, packages: &[(&str, &str)]) -> ImageBuild {
        let mut ib = TestImageBuild::new().build();
        ib.metadata.name = Some(name.into());
        let mut status = ib.status.clone().unwrap_or_default();
        status.packages = Some(PackageSummary {
            count: u32::try_from(packages.len()).unwrap(),
            lock_digest: "sha256:lock".into(),
            installed: packages
                .iter()
                .map(|(name, version)| InstalledPackage {
                    name: (*name).into(),
                    version: (*version).into(),
                    architectures: vec!["x86_64".into()],
                })
                .collect(),
        });
        ib.status = Some(status);
        ib
    }

    fn found(name: &str, range: &str, images: &[ImageBuild]) -> Vec<(String, String)> {
        let query = PackageQuery::parse(name, range).unwrap();
        search(&query, images)
            .into_iter()
            .map(|hit| (hit.image_build, hit.version))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn ranges_use_apk_version_rules() {
        let images = [
            image("old", &[("openssl", "3.3.0-r0"), ("go", "1.24.9-r1")]),
            image("fixed", &[("openssl", "3.3.2-r1"), ("go", "1.25.8-r0")]),
            image("pre", &[("openssl", "3.3.2_rc1-r0")]),
            image("none", &[("busybox", "1.36.1-r2")]),
        ];
        assert_eq!(
            found("openssl", "", &images),
            pairs(&[
                ("fixed", "3.3.2-r1"),
                ("old", "3.3.0-r0"),
                ("pre", "3.3.2_rc1-r0")
            ])
        );
        // apk orders a release candidate before its release.
        assert_eq!(
            found("openssl", "<3.3.2-r1", &images),
            pairs(&[("old", "3.3.0-r0"), ("pre", "3.3.2_rc1-r0")])
        );
        assert_eq!(
            found("openssl<3.3.2-r1", "", &images),
            found("openssl", "<3.3.2-r1", &images)
        );
        assert_eq!(
            found("openssl", ">=3.3.0, <3.3.2_rc1", &images),
            pairs(&[("old", "3.3.0-r0")])
        );
        // `~` is apk's fuzzy match: 1.25 matches 1.25.8-r0 but not 1.24.9-r1.
        assert_eq!(
            found("go~1.25", "", &images),
            pairs(&[("fixed", "1.25.8-r0")])
        );
        assert_eq!(
            found("go", ">~1.24", &images),
            pairs(&[("fixed", "1.25.8-r0"), ("old", "1.24.9-r1")])
        );
        assert!(
            found("openss", "", &images).is_empty(),
            "names match exactly"
        );
        assert_eq!(
            found("open*", "", &images).len(),
            3,
            "a pattern matches by prefix"
        );
        assert_eq!(found("*box", "", &images), pairs(&[("none", "1.36.1-r2")]));
        assert_eq!(found("b*s*x", "", &images).len(), 1);
        assert!(found("b*q*x", "", &images).is_empty());
    }

    #[test]
    fn bad_queries_say_what_to_write() {
        let error = PackageQuery::parse("openssl", ">=3..1").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`>=3..1` is not an apk version constraint")
        );
        let error = PackageQuery::parse("openssl", "3.3.0").unwrap_err();
        assert!(matches!(error, SearchError::Constraint { .. }));
        assert!(PackageQuery::parse("", "").is_err());
        assert!(PackageQuery::parse("!openssl", "").is_err());
        assert!(PackageQuery::parse("openssl@edge", "").is_err());
        assert!(PackageQuery::parse("open ssl", "").is_err());
        assert!(PackageQuery::parse("openssl>=", "").is_err());
    }

    #[test]
    fn images_without_a_list_are_counted() {
        let images = [
            image("listed", &[("go", "1.25.8-r0")]),
            image("unlisted", &[]),
        ];
        assert_eq!(images_without_list(&images), 1);
    }
}
