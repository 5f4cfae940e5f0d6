//! SLSA provenance v1 predicates for SecureBuild image builds, assembled from plain inputs
//! (resolved packages, indexes and keys, run metadata); it does not gather those inputs itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::intoto::{DIGEST_SHA256, DigestSet, Statement, StatementError, Subject};
use super::normalize_timestamp;
use securebuild_registry::digest::is_sha256_hex;

/// Predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Build type of a SecureBuild image build.
pub const SECUREBUILD_BUILD_TYPE: &str = "https://securebuild.dev/ImageBuild/v1";
/// Key of the builder version in `runDetails.builder.version`.
pub const BUILDER_VERSION_KEY: &str = "securebuild";
/// Annotation carrying a package's APK checksum (`Q1…`) on its resolved dependency.
pub const APK_CHECKSUM_ANNOTATION: &str = "apkChecksum";
/// Annotation carrying a package's version on its resolved dependency.
pub const APK_VERSION_ANNOTATION: &str = "version";
/// Name given to APK index dependencies.
pub const APK_INDEX_NAME: &str = "APKINDEX.tar.gz";

/// Errors assembling provenance.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// A SHA-256 digest is not 64 hexadecimal digits.
    #[error("resolved dependency {uri:?} has invalid sha256 digest {digest:?}")]
    InvalidDigest {
        /// The dependency's URI.
        uri: String,
        /// The rejected digest.
        digest: String,
    },
    /// A timestamp is not RFC 3339.
    #[error("{field} {value:?} is not an rfc 3339 timestamp")]
    InvalidTimestamp {
        /// Which timestamp.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// The parse error.
        source: jiff::Error,
    },
    /// The external parameters are not a JSON object.
    #[error("externalParameters must be a json object")]
    ExternalParametersNotObject,
    /// A required text field is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// The statement could not be built.
    #[error(transparent)]
    Statement(#[from] StatementError),
}

/// A SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What the build was asked to do and what it consumed.
    pub build_definition: BuildDefinition,
    /// Who ran the build and when.
    pub run_details: RunDetails,
}

/// `buildDefinition` of a SLSA v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// URI of the build template; [`SECUREBUILD_BUILD_TYPE`].
    pub build_type: String,
    /// Parameters under the control of the requester (image configuration and target).
    pub external_parameters: serde_json::Value,
    /// Parameters the builder chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<serde_json::Value>,
    /// Artifacts fetched during the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// An in-toto ResourceDescriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// URI identifying the resource (a purl for packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Digests of the resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: DigestSet,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the resource was fetched from, when it differs from `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    /// Extra information about the resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// `runDetails` of a SLSA v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// The build platform.
    pub builder: Builder,
    /// Timing and identity of this run.
    pub metadata: BuildMetadata,
}

/// `runDetails.builder` of a SLSA v1 predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// URI identifying the build platform instance.
    pub id: String,
    /// Versions of the builder's components.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

/// `runDetails.metadata` of a SLSA v1 predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// Identifier of this run.
    pub invocation_id: String,
    /// When the build started (RFC 3339, UTC).
    pub started_on: String,
    /// When the build finished (RFC 3339, UTC).
    pub finished_on: String,
}

/// A package installed into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Package URL (`pkg:apk/...`).
    pub purl: String,
    /// URL the `.apk` file was fetched from.
    pub download_url: String,
    /// Hexadecimal SHA-256 of the `.apk` file.
    pub sha256: String,
    /// The index's checksum of the package (`Q1…`), when known.
    pub apk_checksum: Option<String>,
}

/// A repository index the resolver read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIndex {
    /// URL of the `APKINDEX.tar.gz`.
    pub uri: String,
    /// Hexadecimal SHA-256 of the index file.
    pub sha256: String,
}

/// A signing key trusted to verify indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    /// Key file name (as apk names keys).
    pub name: String,
    /// Where the key came from.
    pub uri: String,
    /// Hexadecimal SHA-256 of the key file.
    pub sha256: String,
}

/// Everything a provenance predicate records about one build.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceInputs {
    /// URI identifying the builder instance.
    pub builder_id: String,
    /// SecureBuild version.
    pub builder_version: String,
    /// The image configuration and target, as given by the requester (a JSON object).
    pub external_parameters: serde_json::Value,
    /// Parameters the builder chose, if any.
    pub internal_parameters: Option<serde_json::Value>,
    /// Installed packages.
    pub packages: Vec<ResolvedPackage>,
    /// Indexes read.
    pub indexes: Vec<ResolvedIndex>,
    /// Keys trusted.
    pub keys: Vec<ResolvedKey>,
    /// Identifier of this run.
    pub invocation_id: String,
    /// Start time, RFC 3339.
    pub started_on: String,
    /// End time, RFC 3339.
    pub finished_on: String,
}

/// Builds the provenance predicate; dependencies are listed indexes first, then keys, then
/// packages, each group sorted, so equal inputs give equal bytes.
pub fn build_provenance(inputs: &ProvenanceInputs) -> Result<Provenance, ProvenanceError> {
    if !inputs.external_parameters.is_object() {
        return Err(ProvenanceError::ExternalParametersNotObject);
    }
    if inputs.builder_id.is_empty() {
        return Err(ProvenanceError::Empty {
            field: "builder id",
        });
    }
    let started_on = timestamp("startedOn", &inputs.started_on)?;
    let finished_on = timestamp("finishedOn", &inputs.finished_on)?;

    let mut indexes = inputs.indexes.clone();
    indexes.sort_by(|a, b| (&a.uri, &a.sha256).cmp(&(&b.uri, &b.sha256)));
    indexes.dedup();
    let mut keys = inputs.keys.clone();
    keys.sort_by(|a, b| (&a.name, &a.uri, &a.sha256).cmp(&(&b.name, &b.uri, &b.sha256)));
    keys.dedup();
    let mut packages = inputs.packages.clone();
    packages.sort_by(|a, b| (&a.name, &a.version, &a.purl).cmp(&(&b.name, &b.version, &b.purl)));
    packages.dedup();

    let mut resolved = Vec::with_capacity(indexes.len() + keys.len() + packages.len());
    for index in &indexes {
        resolved.push(ResourceDescriptor {
            uri: Some(index.uri.clone()),
            digest: sha256_set(&index.uri, &index.sha256)?,
            name: Some(APK_INDEX_NAME.to_owned()),
            download_location: None,
            annotations: BTreeMap::new(),
        });
    }
    for key in &keys {
        resolved.push(ResourceDescriptor {
            uri: Some(key.uri.clone()),
            digest: sha256_set(&key.uri, &key.sha256)?,
            name: Some(key.name.clone()),
            download_location: None,
            annotations: BTreeMap::new(),
        });
    }
    for package in &packages {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            APK_VERSION_ANNOTATION.to_owned(),
            serde_json::Value::from(package.version.clone()),
        );
        if let Some(checksum) = &package.apk_checksum {
            annotations.insert(
                APK_CHECKSUM_ANNOTATION.to_owned(),
                serde_json::Value::from(checksum.clone()),
            );
        }
        resolved.push(ResourceDescriptor {
            uri: Some(package.purl.clone()),
            digest: sha256_set(&package.download_url, &package.sha256)?,
            name: Some(package.name.clone()),
            download_location: Some(package.download_url.clone()),
            annotations,
        });
    }

    Ok(Provenance {
        build_definition: BuildDefinition {
            build_type: SECUREBUILD_BUILD_TYPE.to_owned(),
            external_parameters: inputs.external_parameters.clone(),
            internal_parameters: inputs.internal_parameters.clone(),
            resolved_dependencies: resolved,
        },
        run_details: RunDetails {
            builder: Builder {
                id: inputs.builder_id.clone(),
                version: BTreeMap::from([(
                    BUILDER_VERSION_KEY.to_owned(),
                    inputs.builder_version.clone(),
                )]),
            },
            metadata: BuildMetadata {
                invocation_id: inputs.invocation_id.clone(),
                started_on,
                finished_on,
            },
        },
    })
}

/// Wraps `provenance` in an in-toto statement about `subjects`.
pub fn provenance_statement(
    subjects: Vec<Subject>,
    provenance: &Provenance,
) -> Result<Statement, ProvenanceError> {
    // Serializing plain data into a JSON value cannot fail.
    let predicate = serde_json::to_value(provenance).unwrap_or_default();
    Ok(Statement::new(subjects, SLSA_PROVENANCE_V1, predicate)?)
}

/// A digest set holding one SHA-256 digest, lowercased after validation.
fn sha256_set(uri: &str, hex: &str) -> Result<DigestSet, ProvenanceError> {
    let lower = hex.to_ascii_lowercase();
    if !is_sha256_hex(&lower) {
        return Err(ProvenanceError::InvalidDigest {
            uri: uri.to_owned(),
            digest: hex.to_owned(),
        });
    }
    Ok(BTreeMap::from([(DIGEST_SHA256.to_owned(), lower)]))
}

/// Validates and normalizes an RFC 3339 timestamp.
fn timestamp(field: &'static str, value: &str) -> Result<String, ProvenanceError> {
    normalize_timestamp(value).map_err(|source| ProvenanceError::InvalidTimestamp {
        field,
        value: value.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn inputs() -> ProvenanceInputs {
        ProvenanceInputs {
            builder_id: "https://securebuild.dev/builder/cluster-a".to_owned(),
            builder_version: "0.1.0".to_owned(),
            external_parameters: serde_json::json!({
                "target": "registry.example/app",
                "configuration": {"contents": {"packages": ["busybox"]}}
            }),
            internal_parameters: None,
            packages: vec![
                ResolvedPackage {
                    name: "musl".to_owned(),
                    version: "1.2.5-r0".to_owned(),
                    purl: "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64".to_owned(),
                    download_url: "https://dl.example/alpine/main/x86_64/musl-1.2.5-r0.apk"
                        .to_owned(),
                    sha256: "B".repeat(64),
                    apk_checksum: None,
                },
                ResolvedPackage {
                    name: "busybox".to_owned(),
                    version: "1.36.1-r29".to_owned(),
                    purl: "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64".to_owned(),
                    download_url: "https://dl.example/alpine/main/x86_64/busybox-1.36.1-r29.apk"
                        .to_owned(),
                    sha256: "a".repeat(64),
                    apk_checksum: Some("Q1abc=".to_owned()),
                },
            ],
            indexes: vec![ResolvedIndex {
                uri: "https://dl.example/alpine/main/x86_64/APKINDEX.tar.gz".to_owned(),
                sha256: "c".repeat(64),
            }],
            keys: vec![ResolvedKey {
                name: "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub".to_owned(),
                uri: "file:///etc/apk/keys/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub"
                    .to_owned(),
                sha256: "d".repeat(64),
            }],
            invocation_id: "build-42".to_owned(),
            started_on: "2024-01-02T03:04:05.678+01:00".to_owned(),
            finished_on: "2024-01-02T02:10:00Z".to_owned(),
        }
    }

    #[test]
    fn builds_slsa_v1_predicate() {
        let provenance = build_provenance(&inputs()).unwrap();
        let json = serde_json::to_value(&provenance).unwrap();
        assert_eq!(json["buildDefinition"]["buildType"], SECUREBUILD_BUILD_TYPE);
        assert_eq!(
            json["buildDefinition"]["externalParameters"]["target"],
            "registry.example/app"
        );
        assert!(json["buildDefinition"].get("internalParameters").is_none());
        let deps = json["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "APKINDEX.tar.gz",
                "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub",
                "busybox",
                "musl"
            ]
        );
        assert_eq!(
            deps[2],
            serde_json::json!({
                "uri": "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64",
                "digest": {"sha256": "a".repeat(64)},
                "name": "busybox",
                "downloadLocation": "https://dl.example/alpine/main/x86_64/busybox-1.36.1-r29.apk",
                "annotations": {"apkChecksum": "Q1abc=", "version": "1.36.1-r29"}
            })
        );
        assert_eq!(
            deps[3]["digest"]["sha256"],
            "b".repeat(64),
            "digests are lowercased"
        );
        assert_eq!(
            json["runDetails"],
            serde_json::json!({
                "builder": {
                    "id": "https://securebuild.dev/builder/cluster-a",
                    "version": {"securebuild": "0.1.0"}
                },
                "metadata": {
                    "invocationId": "build-42",
                    "startedOn": "2024-01-02T02:04:05Z",
                    "finishedOn": "2024-01-02T02:10:00Z"
                }
            })
        );
    }

    #[test]
    fn output_is_independent_of_input_order() {
        let first = build_provenance(&inputs()).unwrap();
        let mut shuffled = inputs();
        shuffled.packages.reverse();
        shuffled.packages.push(shuffled.packages[0].clone());
        assert_eq!(build_provenance(&shuffled).unwrap(), first);
    }

    #[test]
    fn rejects_invalid_inputs() {
        fn check(mutate: impl Fn(&mut ProvenanceInputs), expected: &str) {
            let mut bad = inputs();
            mutate(&mut bad);
            let error = build_provenance(&bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        check(
            |i| i.external_parameters = serde_json::json!([1]),
            "externalParameters must be a json object",
        );
        check(
            |i| i.started_on = "last tuesday".to_owned(),
            "startedOn \"last tuesday\" is not an rfc 3339",
        );
        check(
            |i| i.indexes[0].sha256 = "zz".to_owned(),
            "invalid sha256 digest \"zz\"",
        );
        check(
            |i| i.packages[0].sha256 = "a".repeat(63),
            "has invalid sha256 digest",
        );
        check(|i| i.builder_id.clear(), "builder id must not be empty");
    }

    #[test]
    fn wraps_in_statement() {
        let provenance = build_provenance(&inputs()).unwrap();
        let digest = format!("sha256:{}", "e".repeat(64));
        let subject = Subject::image("registry.example/app", &digest).unwrap();
        let statement = provenance_statement(vec![subject], &provenance).unwrap();
        assert_eq!(statement.predicate_type, SLSA_PROVENANCE_V1);
        assert_eq!(
            statement.predicate["buildDefinition"]["buildType"],
            SECUREBUILD_BUILD_TYPE
        );
        let round_trip: Provenance = serde_json::from_value(statement.predicate).unwrap();
        assert_eq!(round_trip, provenance);
    }
}
