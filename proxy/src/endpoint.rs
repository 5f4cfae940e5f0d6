//! What a request asks for: the path and method of a request mapped onto the pull endpoints of
//! the OCI Distribution Specification, or onto the reason it is refused. Pure; no IO.

use crate::names::{is_sha256_digest, is_valid_name, is_valid_tag, looks_like_digest};
use crate::spec_error::{ErrorCode, SpecError};

/// The API root.
pub const API_ROOT: &str = "/v2/";

/// A pull endpoint of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`, the API version check.
    ApiRoot,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The repository name as the client gave it.
        name: String,
        /// The tag or digest.
        reference: ManifestReference,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository name.
        name: String,
        /// The digest.
        digest: String,
    },
    /// `/v2/<name>/tags/list`.
    Tags {
        /// The repository name.
        name: String,
    },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// The repository name.
        name: String,
        /// The subject's digest.
        digest: String,
    },
}

/// A manifest named by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestReference {
    /// A tag.
    Tag(String),
    /// A `sha256:` digest.
    Digest(String),
}

impl ManifestReference {
    /// The tag or digest as it appears in the path.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tag(text) | Self::Digest(text) => text,
        }
    }
}

impl Endpoint {
    /// The repository name the endpoint is about (none for the API root).
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::ApiRoot => None,
            Self::Manifest { name, .. }
            | Self::Blob { name, .. }
            | Self::Tags { name }
            | Self::Referrers { name, .. } => Some(name),
        }
    }
}

/// Maps a request onto an endpoint. Methods other than `GET` and `HEAD`, uploads and the
/// catalog are refused; malformed names, tags and digests are reported as the spec names them.
pub fn parse(method: &http::Method, path: &str) -> Result<Endpoint, SpecError> {
    let Some(rest) = path.strip_prefix(API_ROOT) else {
        return Err(SpecError::new(
            ErrorCode::NotFound,
            format!("{path} is not part of the distribution API, which is under {API_ROOT}"),
        ));
    };
    let read_only = method == http::Method::GET || method == http::Method::HEAD;
    if !read_only {
        return Err(SpecError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported: this registry only serves pulls (GET and HEAD)"),
        ));
    }
    if rest.is_empty() {
        return Ok(Endpoint::ApiRoot);
    }
    if rest == "_catalog" || rest.starts_with("_catalog/") {
        return Err(SpecError::new(
            ErrorCode::Denied,
            "listing repositories is not offered by this registry; pull by name".to_owned(),
        ));
    }
    if rest.contains("/blobs/uploads") {
        return Err(SpecError::new(
            ErrorCode::Unsupported,
            "uploads are not supported: this registry only serves pulls".to_owned(),
        ));
    }
    let route = [
        ("/manifests/", Kind::Manifest),
        ("/blobs/", Kind::Blob),
        ("/referrers/", Kind::Referrers),
    ]
    .into_iter()
    .find_map(|(marker, kind)| {
        let (name, target) = rest.rsplit_once(marker)?;
        Some((name, kind, target))
    });
    let (name, kind, target) = match route {
        Some(found) => found,
        None => match rest.strip_suffix("/tags/list") {
            Some(name) => (name, Kind::Tags, ""),
            None => {
                return Err(SpecError::new(
                    ErrorCode::NotFound,
                    format!("{path} is not a pull endpoint of the distribution API"),
                ));
            }
        },
    };
    if !is_valid_name(name) {
        return Err(SpecError::new(
            ErrorCode::NameInvalid,
            format!(
                "{name:?} is not a valid repository name (lower-case components of letters and \
                 digits joined by '.', '_', '__' or '-', separated by '/')"
            ),
        ));
    }
    let name = name.to_owned();
    let digest = |target: &str| -> Result<String, SpecError> {
        if is_sha256_digest(target) {
            Ok(target.to_owned())
        } else {
            Err(SpecError::new(
                ErrorCode::DigestInvalid,
                format!(
                    "{target:?} is not a digest this registry serves (sha256:<64 lower-case hex digits>)"
                ),
            ))
        }
    };
    Ok(match kind {
        Kind::Manifest if looks_like_digest(target) => Endpoint::Manifest {
            name,
            reference: ManifestReference::Digest(digest(target)?),
        },
        Kind::Manifest if is_valid_tag(target) => Endpoint::Manifest {
            name,
            reference: ManifestReference::Tag(target.to_owned()),
        },
        Kind::Manifest => {
            return Err(SpecError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "{target:?} is neither a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}) nor a digest"
                ),
            ));
        }
        Kind::Blob => Endpoint::Blob {
            name,
            digest: digest(target)?,
        },
        Kind::Referrers => Endpoint::Referrers {
            name,
            digest: digest(target)?,
        },
        Kind::Tags => Endpoint::Tags { name },
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Manifest,
    Blob,
    Referrers,
    Tags,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(method: http::Method, path: &str) -> ErrorCode {
        parse(&method, path).unwrap_err().code
    }

    #[test]
    fn pull_endpoints_are_recognised() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let get = http::Method::GET;
        assert_eq!(parse(&get, "/v2/").unwrap(), Endpoint::ApiRoot);
        assert_eq!(
            parse(&http::Method::HEAD, "/v2/a/b/manifests/v1").unwrap(),
            Endpoint::Manifest {
                name: "a/b".to_owned(),
                reference: ManifestReference::Tag("v1".to_owned())
            }
        );
        assert_eq!(
            parse(&get, &format!("/v2/a/manifests/{digest}")).unwrap(),
            Endpoint::Manifest {
                name: "a".to_owned(),
                reference: ManifestReference::Digest(digest.clone())
            }
        );
        assert_eq!(
            parse(&get, &format!("/v2/blobs/blobs/{digest}")).unwrap(),
            Endpoint::Blob {
                name: "blobs".to_owned(),
                digest: digest.clone()
            }
        );
        assert_eq!(
            parse(&get, "/v2/x/y/tags/list").unwrap(),
            Endpoint::Tags {
                name: "x/y".to_owned()
            }
        );
        assert_eq!(
            parse(&get, &format!("/v2/x/referrers/{digest}")).unwrap(),
            Endpoint::Referrers {
                name: "x".to_owned(),
                digest
            }
        );
    }

    #[test]
    fn everything_else_is_refused_with_the_spec_code() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        for method in [
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
        ] {
            assert_eq!(
                code(method.clone(), "/v2/a/manifests/v1"),
                ErrorCode::Unsupported
            );
            assert_eq!(code(method, "/v2/a/blobs/uploads/"), ErrorCode::Unsupported);
        }
        assert_eq!(code(http::Method::GET, "/v2/_catalog"), ErrorCode::Denied);
        assert_eq!(
            code(http::Method::GET, "/v2/a/blobs/uploads/x"),
            ErrorCode::Unsupported
        );
        assert_eq!(
            code(http::Method::GET, "/v2/A/tags/list"),
            ErrorCode::NameInvalid
        );
        assert_eq!(
            code(http::Method::GET, "/v2/a//b/tags/list"),
            ErrorCode::NameInvalid
        );
        assert_eq!(
            code(http::Method::GET, "/v2/a/blobs/sha256:abc"),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(
                http::Method::GET,
                &format!("/v2/a/blobs/{}", digest.to_uppercase())
            ),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(http::Method::GET, "/v2/a/manifests/md5:00"),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(http::Method::GET, "/v2/a/manifests/-bad"),
            ErrorCode::ManifestInvalid
        );
        assert_eq!(code(http::Method::GET, "/v2/a/other"), ErrorCode::NotFound);
        assert_eq!(code(http::Method::GET, "/elsewhere"), ErrorCode::NotFound);
    }
}
