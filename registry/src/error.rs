//! The crate's errors: [`RegistryError`] for everything a registry exchange can go wrong with,
//! the request it was about ([`RequestContext`]), what the registry said ([`ResponseDetail`]),
//! and [`Chain`] for logging an error with its causes on one line.

use std::error::Error as StdError;
use std::fmt;

use oci_client::errors::OciDistributionError;
use serde::Deserialize;

use crate::auth::{AuthError, CredentialSource, shorten};
use crate::layout::LayoutError;

/// Failures talking to a registry or reading the layout to push.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why it does not parse.
        #[source]
        source: oci_client::ParseError,
    },
    /// A tag does not match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {tag:?}")]
    InvalidTag {
        /// The tag.
        tag: String,
    },
    /// A digest is not `sha256:` followed by 64 lower-case hex digits.
    #[error("unsupported or malformed digest {digest:?} (only sha256 is supported)")]
    InvalidDigest {
        /// The digest.
        digest: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient {
        /// Underlying failure.
        #[source]
        source: reqwest::Error,
    },
    /// The `oci-client` client for a registry could not be built.
    #[error("building the registry client for {registry}")]
    ClientBuild {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: OciDistributionError,
    },
    /// The credential lookup task did not finish.
    #[error("looking up credentials for registry {registry} was aborted")]
    CredentialLookupAborted {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The registry's credentials could not be determined.
    #[error("looking up credentials for registry {registry}")]
    Credentials {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: Box<AuthError>,
    },
    /// The connection failed or timed out.
    #[error("{context}: connection failed")]
    Connection {
        /// The request.
        context: Box<RequestContext>,
        /// Underlying failure.
        #[source]
        source: reqwest::Error,
    },
    /// A streamed request failed: not sent, cut off, or silent for the read timeout.
    #[error("{context}: transfer failed")]
    Transfer {
        /// The request.
        context: Box<RequestContext>,
        /// Underlying failure.
        #[source]
        source: crate::transport::TransferError,
    },
    /// The streaming HTTP client could not be built.
    #[error("building the streaming HTTP client")]
    StreamingClient {
        /// Underlying failure.
        #[source]
        source: crate::transport::TransferError,
    },
    /// The registry answered with an unexpected status.
    #[error("{context}: status {status}: {detail}")]
    Status {
        /// The request.
        context: Box<RequestContext>,
        /// The HTTP status.
        status: u16,
        /// The error envelope or body the registry sent.
        detail: ResponseDetail,
    },
    /// The registry refused the credentials (or their absence).
    #[error(
        "{context}: status {status}: access denied using {credentials}: {detail}; {hint}",
        hint = access_hint(*status, credentials, context)
    )]
    Unauthorized {
        /// The request.
        context: Box<RequestContext>,
        /// 401 or 403.
        status: u16,
        /// Where the credentials came from.
        credentials: Box<CredentialSource>,
        /// The error envelope or body the registry sent.
        detail: ResponseDetail,
    },
    /// The registry's token server rejected the credentials.
    #[error(
        "registry {registry} rejected the credentials from {credentials} for {repository}: {message}; \
         log in again with `docker login {registry}` or fix --registry-config"
    )]
    AuthenticationFailed {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Where the credentials came from.
        credentials: Box<CredentialSource>,
        /// What the token server said, shortened.
        message: String,
    },
    /// An identity token needs a bearer-token registry, and this one does not offer it.
    #[error(
        "registry {registry} does not offer bearer tokens, so the identity token from {credentials} cannot be used"
    )]
    IdentityTokenUnsupported {
        /// The registry.
        registry: String,
        /// Where the identity token came from.
        credentials: Box<CredentialSource>,
    },
    /// The token server's answer has no token.
    #[error("the token server of registry {registry} answered without a token")]
    InvalidToken {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// A response body was larger than allowed.
    #[error("{context}: response is larger than {limit} bytes")]
    TooLarge {
        /// The request.
        context: Box<RequestContext>,
        /// The limit.
        limit: u64,
    },
    /// The manifest or tag does not exist.
    #[error("{context}: not found")]
    NotFound {
        /// The request.
        context: Box<RequestContext>,
    },
    /// Content or a reported digest does not match the digest it should have.
    #[error("{context}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The request.
        context: Box<RequestContext>,
        /// The digest that was expected.
        expected: String,
        /// The digest found (computed or reported).
        actual: String,
    },
    /// A fetched manifest says neither in its body nor in `Content-Type` what it is.
    #[error("{context}: the manifest has no media type")]
    MissingMediaType {
        /// The request.
        context: Box<RequestContext>,
    },
    /// A manifest to push is larger than [`crate::MAX_MANIFEST_BYTES`].
    #[error(
        "manifest {digest} for {registry}/{repository} is {size} bytes, over the limit of {limit}"
    )]
    ManifestTooLarge {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The push target names a digest that is not the layout's.
    #[error("target {reference} names digest {expected}, but the layout's root is {actual}")]
    TargetDigestMismatch {
        /// The target reference.
        reference: String,
        /// The digest in the reference.
        expected: String,
        /// The layout root's digest.
        actual: String,
    },
    /// Another `oci-client` failure.
    #[error("{context}")]
    Client {
        /// The request.
        context: Box<RequestContext>,
        /// Underlying failure.
        #[source]
        source: OciDistributionError,
    },
    /// The layout could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl RegistryError {
    /// Whether retrying may help: connection failures, 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Transfer { .. } => true,
            Self::Status { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// What a request was doing when it failed, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Obtaining a token.
    Authenticating,
    /// `HEAD` on a blob.
    CheckingBlob,
    /// Uploading a blob.
    UploadingBlob,
    /// Downloading a blob.
    FetchingBlob,
    /// `HEAD` on a manifest or tag.
    CheckingManifest,
    /// `GET` on a manifest or tag.
    FetchingManifest,
    /// `PUT` of a manifest or tag.
    PushingManifest,
    /// A pull-side request passed on for someone else.
    Pulling,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authenticating => "authenticating for",
            Self::CheckingBlob => "checking blob",
            Self::UploadingBlob => "uploading blob",
            Self::FetchingBlob => "fetching blob",
            Self::CheckingManifest => "checking manifest",
            Self::FetchingManifest => "fetching manifest",
            Self::PushingManifest => "pushing manifest",
            Self::Pulling => "pulling",
        })
    }
}

/// What to do about a refusal: with credentials that the registry accepts but that may not
/// do this (`403`, or a `401` to credentials that were sent: a token without the scope), grant
/// them access; without credentials, log in.
fn access_hint(status: u16, credentials: &CredentialSource, context: &RequestContext) -> String {
    let registry = &context.registry;
    let repository = &context.repository;
    if status == 403 {
        return format!(
            "the registry knows these credentials but does not allow them this on {repository}: \
             grant them access to {registry}/{repository}"
        );
    }
    if credentials.is_anonymous() {
        return format!(
            "log in with `docker login {registry}`, or give credentials for {registry} \
             (--registry-config, or an ImageBuild's push Secret)"
        );
    }
    format!(
        "if these credentials are right, they are not allowed this on {repository}: grant them \
         access to {registry}/{repository}; otherwise log in again with `docker login {registry}`"
    )
}

/// The request an error is about: what was being done, to which digest or tag, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// What was being done.
    pub action: Action,
    /// The registry as in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// The digest or tag involved.
    pub target: String,
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {}/{}",
            self.action, self.target, self.registry, self.repository
        )
    }
}

/// What a registry said about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDetail {
    /// The distribution error envelope (`{"errors": [{"code", "message"}]}`).
    Envelope(Vec<ErrorEntry>),
    /// A body that is not an envelope, shortened.
    Text(String),
    /// No body.
    Empty,
}

/// One entry of the distribution error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorEntry {
    /// The error code, such as `MANIFEST_UNKNOWN` or `DENIED`.
    pub code: String,
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
}

impl ResponseDetail {
    /// Interprets a response body.
    pub fn from_body(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            errors: Vec<ErrorEntry>,
        }
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
            && !envelope.errors.is_empty()
        {
            return Self::Envelope(envelope.errors);
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            Self::Empty
        } else {
            Self::Text(shorten(text))
        }
    }

    /// Whether the envelope carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Self::Envelope(errors) if errors.iter().any(|error| error.code == code))
    }
}

impl fmt::Display for ResponseDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Envelope(errors) => {
                for (index, error) in errors.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    if error.message.is_empty() {
                        write!(f, "{}", error.code)?;
                    } else {
                        write!(f, "{}: {}", error.code, error.message)?;
                    }
                }
                Ok(())
            }
            Self::Text(text) => f.write_str(text),
            Self::Empty => f.write_str("no details"),
        }
    }
}

/// Whether a status is worth retrying: 408, 429 and 5xx.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Displays an error and its `source()` chain on one line, joined by `": "`; a cause whose
/// text the line already contains is skipped (`tracing::warn!(error = %Chain(&error), …)`).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let message = cause.to_string();
            if !text.contains(&message) {
                text.push_str(": ");
                text.push_str(&message);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::MAX_MESSAGE_CHARS as MAX_DETAIL_CHARS;

    #[test]
    fn refusals_say_whether_to_log_in_or_to_grant_access() {
        let context = RequestContext {
            action: Action::UploadingBlob,
            registry: "r.example".into(),
            repository: "team/app".into(),
            target: "sha256:abc".into(),
        };
        let anonymous = CredentialSource::NoConfig { looked_at: None };
        let file = CredentialSource::ConfigFile {
            path: "/home/a/.docker/config.json".into(),
            key: "r.example".into(),
        };
        let hint = access_hint(401, &anonymous, &context);
        assert!(
            hint.starts_with("log in with `docker login r.example`"),
            "{hint}"
        );
        let hint = access_hint(401, &file, &context);
        assert!(hint.contains("not allowed this on team/app"), "{hint}");
        assert!(
            hint.contains("log in again with `docker login r.example`"),
            "{hint}"
        );
        let hint = access_hint(403, &file, &context);
        assert!(
            hint.contains("grant them access to r.example/team/app"),
            "{hint}"
        );
        assert!(!hint.contains("docker login"), "{hint}");
    }

    #[test]
    fn error_details_keep_the_envelope() {
        let envelope = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}},{"code":"DENIED"}]}"#;
        let detail = ResponseDetail::from_body(envelope);
        assert!(detail.has_code("MANIFEST_UNKNOWN") && detail.has_code("DENIED"));
        assert_eq!(
            detail.to_string(),
            "MANIFEST_UNKNOWN: manifest unknown; DENIED"
        );
        assert_eq!(ResponseDetail::from_body(b"  "), ResponseDetail::Empty);
        assert_eq!(
            ResponseDetail::from_body(b"<html>bad gateway</html>"),
            ResponseDetail::Text("<html>bad gateway</html>".to_owned())
        );
        let long = "x".repeat(5000);
        let ResponseDetail::Text(text) = ResponseDetail::from_body(long.as_bytes()) else {
            panic!("expected text");
        };
        assert!(text.chars().count() <= MAX_DETAIL_CHARS + 1);

        let error = RegistryError::Status {
            context: Box::new(RequestContext {
                action: Action::PushingManifest,
                registry: "127.0.0.1:5000".to_owned(),
                repository: "app".to_owned(),
                target: "v1".to_owned(),
            }),
            status: 400,
            detail,
        };
        assert_eq!(
            error.to_string(),
            "pushing manifest v1 in 127.0.0.1:5000/app: status 400: MANIFEST_UNKNOWN: manifest unknown; DENIED"
        );
        assert!(!error.is_transient());
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (404, false),
            (401, false),
        ] {
            let error = RegistryError::Status {
                context: Box::new(RequestContext {
                    action: Action::CheckingBlob,
                    registry: "r".to_owned(),
                    repository: "p".to_owned(),
                    target: "t".to_owned(),
                }),
                status,
                detail: ResponseDetail::Empty,
            };
            assert_eq!(error.is_transient(), transient, "{status}");
        }
    }
}
