//! Errors as the OCI Distribution Specification has registries report them: a status and the
//! `{"errors": [{"code", "message"}]}` body, with the codes the proxy sends.

use http::StatusCode;

/// An error code of the distribution spec (plus `UNKNOWN`, which `distribution` sends for
/// failures of its own and clients show as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: the blob is not in the repository.
    BlobUnknown,
    /// `DIGEST_INVALID`: a digest is malformed or the content does not match it.
    DigestInvalid,
    /// `MANIFEST_INVALID`: the reference is neither a tag nor a digest.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`: the manifest is not in the repository.
    ManifestUnknown,
    /// `NAME_INVALID`: the repository name breaks the grammar.
    NameInvalid,
    /// `NAME_UNKNOWN`: no route maps the name, or the upstream does not know it.
    NameUnknown,
    /// `UNAUTHORIZED`: credentials are needed.
    Unauthorized,
    /// `DENIED`: the operation is not allowed.
    Denied,
    /// `UNSUPPORTED`: writes and uploads.
    Unsupported,
    /// `TOOMANYREQUESTS`: the upstream is rate limiting.
    TooManyRequests,
    /// `PAGINATION_NUMBER_INVALID`: `n` or `last` of a tag list is malformed.
    PaginationInvalid,
    /// `RANGE_INVALID`: the `Range` header is not one byte range (sent with `416`).
    RangeInvalid,
    /// Not a distribution path at all (`404`, code `UNSUPPORTED`).
    NotFound,
    /// `UNKNOWN`: the upstream failed, timed out or served content that does not match.
    UpstreamFailed,
    /// `UNKNOWN` with `504`: the upstream did not answer in time.
    UpstreamTimeout,
}

impl ErrorCode {
    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported | Self::NotFound => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::PaginationInvalid => "PAGINATION_NUMBER_INVALID",
            Self::RangeInvalid => "RANGE_INVALID",
            Self::UpstreamFailed | Self::UpstreamTimeout => "UNKNOWN",
        }
    }

    /// The status the code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BlobUnknown | Self::ManifestUnknown | Self::NameUnknown | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::DigestInvalid
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::PaginationInvalid => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// An error to send to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The code (and with it the status).
    pub code: ErrorCode,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The `WWW-Authenticate` challenge to send with an `UNAUTHORIZED` error.
    pub challenge: Option<String>,
}

impl SpecError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: String) -> Self {
        Self {
            code,
            message,
            challenge: None,
        }
    }

    /// The same error with a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message }]
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_spec_envelope() {
        let error = SpecError::new(ErrorCode::Unsupported, "no \"writes\"".to_owned());
        let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
        assert_eq!(body["errors"][0]["message"], "no \"writes\"");
        assert_eq!(error.code.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(ErrorCode::Denied.status(), StatusCode::FORBIDDEN);
        assert_eq!(ErrorCode::NameUnknown.status(), StatusCode::NOT_FOUND);
    }
}
