//! [`BuildResult`]: the compact JSON a build leaves behind, written with `--result FILE` and, in a
//! builder Pod, to the termination message the operator reads. This is the contract between the
//! builder and the operator: fields are only ever added.
//!
//! Kubernetes keeps at most 4 KiB of a termination message, so names are short and
//! [`BuildResult::to_termination_message`] trims what it must (the tag list first) to fit.

use serde::{Deserialize, Serialize};

/// The version of the result format.
pub const RESULT_VERSION: u32 = 1;

/// The most a Kubernetes termination message keeps, in bytes.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// What a build produced, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    /// Format version ([`RESULT_VERSION`]).
    pub v: u32,
    /// Set when the build succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageResult>,
    /// Set when the build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureResult>,
}

/// A built (and possibly pushed) image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image index digest, `sha256:…`.
    pub digest: String,
    /// `repository@sha256:…` when pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// One entry per architecture.
    pub platforms: Vec<PlatformResult>,
    /// The tags pushed, after template expansion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// SHA-256 of the lockfile the image was built from, `sha256:…`.
    pub lock: String,
    /// Packages installed per architecture.
    pub packages: u32,
}

/// One architecture's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformResult {
    /// OCI architecture, e.g. `arm64`.
    pub arch: String,
    /// OCI variant, e.g. `v7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Manifest digest, `sha256:…`.
    pub digest: String,
}

/// Why a build failed, in the operator's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureResult {
    /// CamelCase reason (`ResolutionFailed`, `PackageVerificationFailed`, `PushFailed`, …).
    pub reason: String,
    /// The error message.
    pub message: String,
}

impl BuildResult {
    /// A successful result.
    pub fn success(image: ImageResult) -> Self {
        Self {
            v: RESULT_VERSION,
            image: Some(image),
            error: None,
        }
    }

    /// A failed result.
    pub fn failure(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            v: RESULT_VERSION,
            image: None,
            error: Some(FailureResult {
                reason: reason.into(),
                message: message.into(),
            }),
        }
    }

    /// Parses a result (from a file or a termination message).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text.trim())
    }

    /// The result as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; fall back to a minimal failure record.
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(
                r#"{"v":1,"error":{"reason":"BuildFailed","message":"unserializable result"}}"#,
            )
        })
    }

    /// The result as JSON of at most [`TERMINATION_MESSAGE_LIMIT`] bytes: drops tags beyond the
    /// first few, then shortens a failure message in its middle (keeping its context and its root
    /// cause), so the operator always gets valid JSON.
    pub fn to_termination_message(&self) -> String {
        let mut result = self.clone();
        let mut json = result.to_json();
        while json.len() > TERMINATION_MESSAGE_LIMIT {
            if let Some(image) = result.image.as_mut().filter(|i| !i.tags.is_empty()) {
                image.tags.pop();
            } else if let Some(error) = result.error.as_mut().filter(|e| e.message.len() > 64) {
                // JSON escaping can make the message longer in the output than in memory.
                let excess = json.len() - TERMINATION_MESSAGE_LIMIT;
                let keep = error.message.len().saturating_sub(excess.max(8));
                error.message = crate::error::shorten_middle(&error.message, keep);
            } else {
                break;
            }
            json = result.to_json();
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: usize) -> ImageResult {
        ImageResult {
            digest: format!("sha256:{}", "a".repeat(64)),
            reference: Some(format!(
                "registry.example.com/team/app@sha256:{}",
                "a".repeat(64)
            )),
            platforms: vec![
                PlatformResult {
                    arch: "amd64".into(),
                    variant: None,
                    digest: format!("sha256:{}", "b".repeat(64)),
                },
                PlatformResult {
                    arch: "arm".into(),
                    variant: Some("v7".into()),
                    digest: format!("sha256:{}", "c".repeat(64)),
                },
            ],
            tags: (0..tags).map(|i| format!("tag-{i}")).collect(),
            lock: format!("sha256:{}", "d".repeat(64)),
            packages: 42,
        }
    }

    #[test]
    fn round_trips() {
        let result = BuildResult::success(image(2));
        assert_eq!(BuildResult::parse(&result.to_json()).unwrap(), result);
        let failure = BuildResult::failure("ResolutionFailed", "unable to select packages");
        assert_eq!(BuildResult::parse(&failure.to_json()).unwrap(), failure);
    }

    #[test]
    fn termination_message_fits_and_stays_valid() {
        let big = BuildResult::success(image(500));
        let message = big.to_termination_message();
        assert!(message.len() <= TERMINATION_MESSAGE_LIMIT);
        let parsed = BuildResult::parse(&message).unwrap();
        assert_eq!(
            parsed.image.as_ref().unwrap().digest,
            big.image.as_ref().unwrap().digest
        );
        assert!(!parsed.image.unwrap().tags.is_empty());

        let long = BuildResult::failure(
            "BuildFailed",
            format!("cannot build: {}: root cause", "é".repeat(5000)),
        );
        let message = long.to_termination_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{}",
            message.len()
        );
        let kept = BuildResult::parse(&message).unwrap().error.unwrap().message;
        assert!(kept.starts_with("cannot build: ") && kept.ends_with(": root cause"));
        assert!(kept.contains(" … "));
    }
}
