//! The `ImageBuild` custom resource (`securebuild.dev/v1alpha1`): what to build (`spec.image`),
//! where to push it (`spec.target`), how to sign and attest it, and the status the operator
//! reports back.
//!
//! Types and schema only: no IO, no reconcile logic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::image_config::ImageConfiguration;

/// The annotation that requests a rebuild: set it to a new value (for example a timestamp) and
/// the operator builds again, recording `Manual` as the reason.
pub const REBUILD_ANNOTATION: &str = "securebuild.dev/rebuild";

/// An image to build from APK packages, push, sign and attest.
///
/// The operator reconciles each generation (and each rebuild trigger) into one builder Job and
/// reports the image digest, tags, signature and attestations in `status`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "securebuild.dev",
    version = "v1alpha1",
    kind = "ImageBuild",
    plural = "imagebuilds",
    singular = "imagebuild",
    shortname = "ib",
    category = "securebuild",
    namespaced,
    status = "ImageBuildStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Packages","type":"integer","priority":1,"jsonPath":".status.packages.count"}"#,
    printcolumn = r#"{"name":"Last build","type":"date","priority":1,"jsonPath":".status.lastBuild.completionTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildSpec {
    /// The image, as an apko configuration; an apko YAML file pastes in unchanged.
    pub image: ImageConfiguration,

    /// Where the image is pushed and how it is tagged.
    pub target: Target,

    /// Whether the operator signs the image.
    #[serde(default)]
    pub signing: Signing,

    /// Which attestations the operator attaches to the image.
    #[serde(default)]
    pub attestations: Attestations,

    /// Settings of the builder Pod.
    #[serde(default)]
    pub builder: BuilderSettings,

    /// When to rebuild without a spec change, and how much history to keep.
    #[serde(default)]
    pub rebuild: RebuildPolicy,
}

/// The push target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The repository, either full (`registry.example.com/team/app`) or relative to the
    /// operator's registry prefix (`team/app`). No tag or digest.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
    )]
    pub repository: String,

    /// Tags, as templates over the resolved package versions: `latest`, `{{ version "go" }}`
    /// (the resolved version of `go` without its `-rN` revision, e.g. `1.25.8`),
    /// `{{ fullversion "go" }}` (with the revision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,

    /// A `kubernetes.io/dockerconfigjson` Secret in the ImageBuild's namespace with credentials
    /// for the registry; mounted into the builder Pod and read by the operator to push
    /// signatures and attestations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_ref: Option<SecretReference>,
}

/// A reference to a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Signing settings. Keys belong to the operator, never to the ImageBuild.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signing {
    /// Sign the image with the operator's key (cosign format, `sha256-<digest>.sig`).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for Signing {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Attestations attached to the image (in-toto statements in DSSE envelopes, cosign
/// `sha256-<digest>.att`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attestations {
    /// Attach SLSA provenance v1 (`https://slsa.dev/provenance/v1`).
    #[serde(default = "default_true")]
    pub provenance: bool,

    /// Attach an SPDX 2.3 SBOM (`https://spdx.dev/Document`).
    #[serde(default = "default_true")]
    pub sbom: bool,
}

impl Default for Attestations {
    fn default() -> Self {
        Self {
            provenance: true,
            sbom: true,
        }
    }
}

/// Settings of the builder Pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuilderSettings {
    /// Compute resources of the builder container; the operator's defaults apply when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the builder Pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the builder Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// How long one build may run (a Go duration such as `30m` or `1h30m`; default `30m`).
    /// It becomes the Job's `activeDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// When to rebuild without a spec change, and how much history to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildPolicy {
    /// Re-resolve the packages this often (a Go duration such as `6h`) and build when a newer
    /// matching package changes the lock. Unset: only spec changes and the
    /// `securebuild.dev/rebuild` annotation trigger builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub interval: Option<String>,

    /// How many succeeded builder Jobs to keep.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_jobs_history_limit: u32,

    /// How many failed builder Jobs to keep.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: u32,

    /// How many recent builds `status.history` lists.
    #[serde(default = "default_status_history")]
    #[schemars(range(min = 1, max = 50))]
    pub status_history_limit: u32,
}

impl Default for RebuildPolicy {
    fn default() -> Self {
        Self {
            interval: None,
            successful_jobs_history_limit: default_successful_history(),
            failed_jobs_history_limit: default_failed_history(),
            status_history_limit: default_status_history(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_successful_history() -> u32 {
    3
}

fn default_failed_history() -> u32 {
    1
}

fn default_status_history() -> u32 {
    10
}

/// What the operator observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (always present), `Reconciling` (while a build runs) and `Stalled` (after a
    /// failure that will not heal until the spec changes), as kstatus and Flux read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The last image built, as `repository@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<String>,

    /// The last image built by the name it is pulled by, when the operator's `pullPrefix`
    /// (a read-only proxy) fronts the registry it was pushed to: `latestImage` with
    /// `pullPrefix` in place of `registryPrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_image: Option<String>,

    /// The digest of the image index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// The per-architecture image manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformDigest>,

    /// The tags pushed, after template expansion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,

    /// The resolved package set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageSummary>,

    /// The SPDX SBOM attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<ArtifactReference>,

    /// The cosign signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ArtifactReference>,

    /// Every attestation attached to the image (provenance, SBOM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationReference>,

    /// The most recent build, running or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build: Option<BuildRecord>,

    /// Recent builds, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,

    /// The value of the `securebuild.dev/rebuild` annotation that was last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rebuild_request: Option<String>,

    /// When the packages were last re-resolved for `rebuild.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resolved: Option<String>,

    /// The image configuration the last build used, when `spec.image.include` names other
    /// configurations: its digest and where its parts came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ConfigurationSources>,
}

/// The image configuration a build used after merging `spec.image.include`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSources {
    /// `sha256:<hex>` of the merged configuration (as YAML): a build starts again when it
    /// changes.
    pub digest: String,
    /// The included configurations, the one `spec.image.include` names first, each with the
    /// ConfigMap's `resourceVersion` when it was read.
    pub includes: Vec<IncludedConfiguration>,
}

/// One included configuration: a key of a ConfigMap in the ImageBuild's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncludedConfiguration {
    /// The ConfigMap's name.
    pub config_map: String,
    /// The key holding the configuration.
    pub key: String,
    /// The ConfigMap's `resourceVersion` when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// One architecture's image manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlatformDigest {
    /// OCI architecture, e.g. `amd64`.
    pub architecture: String,
    /// OCI variant, e.g. `v7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Manifest digest, `sha256:…`.
    pub digest: String,
}

/// Summary of the resolved package set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageSummary {
    /// How many packages the image holds (per architecture).
    pub count: u32,
    /// SHA-256 of the lockfile: changes whenever any resolved package changes.
    pub lock_digest: String,
    /// The installed packages, by name and version, as the operator resolved them again from
    /// the signed indexes after the build (empty when it could not: the lock differed, or the
    /// repositories were unreachable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<InstalledPackage>,
}

/// One installed package version.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct InstalledPackage {
    /// The package name.
    pub name: String,
    /// The apk version, e.g. `1.25.8-r0`.
    pub version: String,
    /// The APK architectures that install this version (`x86_64`, `aarch64`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
}

/// How one package changed between a build and the one before it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct PackageChange {
    /// The package name.
    pub name: String,
    /// The version before; absent for an added package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version after; absent for a removed package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The APK architectures the change applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
}

/// A reference to an artifact stored next to the image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactReference {
    /// `repository:sha256-<hex>.sig` (or `.att`), the tag cosign looks up.
    pub reference: String,
    /// Digest of the manifest behind the tag.
    pub digest: String,
}

/// An attestation attached to the image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationReference {
    /// The in-toto predicate type, e.g. `https://slsa.dev/provenance/v1`.
    pub predicate_type: String,
    /// `repository:sha256-<hex>.att`.
    pub reference: String,
    /// Digest of the DSSE envelope layer.
    pub digest: String,
}

/// Why a build ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuildReason {
    /// The spec changed (a new generation).
    SpecChanged,
    /// The `securebuild.dev/rebuild` annotation changed.
    Manual,
    /// Re-resolving found newer packages (the lock digest changed).
    PackageUpdate,
    /// A configuration that `spec.image.include` names (a ConfigMap key) changed.
    IncludeChanged,
}

/// How a build ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuildOutcome {
    /// Still running.
    Running,
    /// Built, pushed, and signed/attested as requested.
    Succeeded,
    /// Failed; see `failure`.
    Failed,
}

/// One build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildRecord {
    /// The build's name: the builder Job's name, or the same deterministic name for a build the
    /// operator ran in-process (`local` backend).
    pub job: String,
    /// Why it ran.
    pub reason: BuildReason,
    /// The generation it built.
    pub generation: i64,
    /// Running, succeeded or failed.
    pub outcome: BuildOutcome,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BuildFailure>,
}

/// A failed build's reason, message and the end of its log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildFailure {
    /// CamelCase reason, e.g. `ResolutionFailed`, `PushFailed`, `OutOfMemory`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The last lines of the builder's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_snippet: Option<String>,
}

/// A recent build in `status.history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The image index digest, for a successful build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it ran.
    pub reason: BuildReason,
    /// How it ended.
    pub outcome: BuildOutcome,
    /// When it finished (RFC 3339).
    pub time: String,
    /// The lock digest it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_digest: Option<String>,
    /// The build's name (Job name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Why a failed build failed: its reason and message, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// What changed in the installed packages against the previous successful build; absent
    /// when either package list is unknown, empty when nothing changed. At most 100 entries,
    /// so that the status stays small; `packageChangesOmitted` counts the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_changes: Option<Vec<PackageChange>>,
    /// How many package changes beyond the recorded ones the build made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_changes_omitted: Option<u32>,
}
