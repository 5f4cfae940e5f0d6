//! The builder Job and its input ConfigMap for one build of an ImageBuild, and the small
//! readers of a Job's labels and state that the other modules share.
//!
//! Pure: [`desired_job`] turns an ImageBuild, a [`Trigger`] and the operator [`Config`] into
//! the objects to create; it never talks to the API server. Names are deterministic (the
//! ImageBuild's name plus a hash of its uid, generation and the trigger), so an operator that
//! restarts mid-build computes the same name and its create fails with `AlreadyExists`
//! instead of starting a duplicate build.
//!
//! The Job: `restartPolicy: Never`; `backoffLimit: 1` (one more Pod after a transient failure
//! such as a registry hiccup); a Pod failure policy that ignores disruptions (eviction,
//! preemption: the Pod is replaced without counting as a failure) and fails the Job at once
//! when the builder exits with [`TERMINAL_EXIT_CODE`] (a failure that retrying cannot fix);
//! `activeDeadlineSeconds` from `spec.builder.timeout`; a Pod that passes the Pod Security
//! Standards `restricted` profile with a read-only root filesystem.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use securebuild_crds::duration::{DurationError, parse_duration};
use securebuild_crds::imagebuild::BuildReason;
use securebuild_crds::{ConfigError as ImageConfigError, ImageBuild, ImageConfiguration};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::triggers::{Trigger, TriggerKind};

/// `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "securebuild-operator";
/// `app.kubernetes.io/component` on builder Jobs, Pods and ConfigMaps.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The value of [`COMPONENT_LABEL`].
pub const COMPONENT: &str = "builder";
/// The ImageBuild a Job builds (its name, cut to 63 characters; the owner reference decides).
pub const IMAGEBUILD_LABEL: &str = "securebuild.dev/imagebuild";
/// The ImageBuild generation a Job builds.
pub const GENERATION_LABEL: &str = "securebuild.dev/generation";
/// Why a Job runs: `SpecChanged`, `Manual` or `PackageUpdate`.
pub const TRIGGER_LABEL: &str = "securebuild.dev/trigger";
/// A sentence explaining why a Job runs.
pub const TRIGGER_ANNOTATION: &str = "securebuild.dev/trigger-reason";
/// The lock digest that triggered a `PackageUpdate` build.
pub const LOCK_DIGEST_ANNOTATION: &str = "securebuild.dev/lock-digest";
/// The merged configuration's digest that triggered an `IncludeChanged` build.
pub const CONFIGURATION_DIGEST_ANNOTATION: &str = "securebuild.dev/configuration-digest";
/// The `securebuild.dev/rebuild` value that triggered a `Manual` build.
pub const REBUILD_REQUEST_ANNOTATION: &str = "securebuild.dev/rebuild-request";
/// The label the Job controller puts on a Job's Pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The annotation that makes `kubectl logs` pick the builder container.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The Job condition of a Job that succeeded.
pub const JOB_COMPLETE: &str = "Complete";
/// The Job condition of a Job that failed.
pub const JOB_FAILED: &str = "Failed";
/// A condition status that holds.
pub const CONDITION_TRUE: &str = "True";

/// The builder container's name.
pub const CONTAINER_NAME: &str = "builder";
/// Where the input ConfigMap is mounted.
pub const INPUT_DIR: &str = "/input";
/// The ConfigMap key (and file under [`INPUT_DIR`]) of the apko configuration.
pub const IMAGE_CONFIG_KEY: &str = "image.yaml";
/// The ConfigMap key (and file under [`INPUT_DIR`]) of the push target.
pub const TARGET_KEY: &str = "target.json";
/// The writable work directory (an emptyDir).
pub const WORK_DIR: &str = "/work";
/// The package cache, inside [`WORK_DIR`].
pub const CACHE_DIR: &str = "/work/cache";
/// The writable temporary directory (an emptyDir).
pub const TMP_DIR: &str = "/tmp";
/// Where the push Secret's `config.json` is mounted (`DOCKER_CONFIG`).
pub const DOCKER_CONFIG_DIR: &str = "/docker";
/// The file the builder writes its [`securebuild_builder::result::BuildResult`] to.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The uid and gid the builder runs as (the `nonroot` user of distroless and Wolfi images).
pub const BUILDER_UID: i64 = 65532;
/// Pods the Job may start beyond the first after a failure.
pub const BACKOFF_LIMIT: i32 = 1;
/// The builder's exit code for failures that retrying cannot fix (invalid configuration,
/// unresolvable packages, failed verification): the Job fails at once.
pub const TERMINAL_EXIT_CODE: i32 = 2;
/// The `sizeLimit` of the `/tmp` emptyDir.
pub const TMP_SIZE_LIMIT: &str = "1Gi";

const VOLUME_INPUT: &str = "input";
const VOLUME_WORK: &str = "work";
const VOLUME_TMP: &str = "tmp";
const VOLUME_DOCKER: &str = "docker-config";
const HASH_LEN: usize = 10;
const MAX_NAME_LEN: usize = 63;
const MAX_LABEL_VALUE_LEN: usize = 63;

/// Why the objects for a build cannot be made; each is an invalid ImageBuild (or operator
/// configuration), never a transient condition.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The ImageBuild has no name, namespace or uid (it was never stored).
    #[error("ImageBuild `{name}` lacks {field}; only stored objects can be built")]
    MissingMetadata {
        /// The ImageBuild's name, if any.
        name: String,
        /// The missing field.
        field: &'static str,
    },
    /// The image configuration cannot be written as YAML.
    #[error("cannot write the image configuration of ImageBuild `{name}`")]
    ImageConfig {
        /// The ImageBuild.
        name: String,
        /// The serializer's error.
        #[source]
        source: ImageConfigError,
    },
    /// `spec.builder.timeout` is not a Go duration.
    #[error("invalid spec.builder.timeout of ImageBuild `{name}`")]
    Timeout {
        /// The ImageBuild.
        name: String,
        /// Why it does not parse.
        #[source]
        source: DurationError,
    },
    /// `spec.target.repository` has no registry host and the operator has no registry prefix.
    #[error(
        "spec.target.repository `{repository}` has no registry host and the operator has no registryPrefix; write the full repository, e.g. `registry.example.com/{repository}`"
    )]
    RelativeRepository {
        /// The repository as written.
        repository: String,
    },
    /// No repositories in the ImageBuild and none configured in the operator.
    #[error(
        "ImageBuild `{name}` lists no repositories in spec.image.contents.repositories and the operator has no defaultRepositories"
    )]
    NoRepositories {
        /// The ImageBuild.
        name: String,
    },
}

/// The push target as written into the input ConfigMap ([`TARGET_KEY`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetFile<'a> {
    repository: &'a str,
    tags: &'a [String],
    image_build: ImageBuildRef<'a>,
    trigger: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageBuildRef<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    generation: i64,
}

/// The state of a Job as its conditions tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Neither `Complete` nor `Failed` yet.
    Active,
    /// `Complete=True`.
    Succeeded,
    /// `Failed=True`.
    Failed,
}

/// Reads a Job's state from its `Complete` and `Failed` conditions (the interim
/// `SuccessCriteriaMet` and `FailureTarget` conditions still count as active, since Pods may
/// still be terminating).
pub fn job_state(job: &Job) -> JobState {
    if true_condition(job, JOB_COMPLETE).is_some() {
        JobState::Succeeded
    } else if true_condition(job, JOB_FAILED).is_some() {
        JobState::Failed
    } else {
        JobState::Active
    }
}

/// The Job's condition of type `kind`, when its status is `True`.
pub fn true_condition<'a>(job: &'a Job, kind: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == CONDITION_TRUE)
}

/// The generation a Job builds, from its label.
pub fn job_generation(job: &Job) -> Option<i64> {
    job.labels().get(GENERATION_LABEL)?.parse().ok()
}

/// Why a Job runs, from its label.
pub fn job_reason(job: &Job) -> Option<BuildReason> {
    let label = job.labels().get(TRIGGER_LABEL)?;
    [
        BuildReason::SpecChanged,
        BuildReason::Manual,
        BuildReason::PackageUpdate,
        BuildReason::IncludeChanged,
    ]
    .into_iter()
    .find(|reason| reason_name(*reason) == label)
}

/// The lock digest that triggered a `PackageUpdate` Job.
pub fn job_lock_digest(job: &Job) -> Option<&str> {
    job.annotations()
        .get(LOCK_DIGEST_ANNOTATION)
        .map(String::as_str)
}

/// Whether the ImageBuild is the Job's controller (same uid), which tells Jobs of a deleted and
/// re-created ImageBuild of the same name apart.
pub fn is_owned_by(job: &Job, ib: &ImageBuild) -> bool {
    let Some(uid) = ib.meta().uid.as_deref() else {
        return false;
    };
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Orders objects (Jobs, their Pods) newest first: by creation time, then by name, so that the
/// order is total.
pub fn newest_first<K: Resource>(a: &K, b: &K) -> std::cmp::Ordering {
    let created = |object: &K| object.meta().creation_timestamp.as_ref().map(|t| t.0);
    created(b)
        .cmp(&created(a))
        .then_with(|| b.name_any().cmp(&a.name_any()))
}

/// The label selector of every Job built for the ImageBuild named `name`.
pub fn selector(name: &str) -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGER},{IMAGEBUILD_LABEL}={}",
        label_value(name)
    )
}

/// The label selector of every object the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// A name as a label value: cut to 63 characters and trimmed so that it ends with an
/// alphanumeric character.
pub fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(MAX_LABEL_VALUE_LEN).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The deterministic name of the Job (and ConfigMap) for a build: the ImageBuild's name, cut
/// so that the whole stays within 63 characters, then `-` and ten hex digits of
/// SHA-256(uid, generation, trigger reason, trigger token).
pub fn job_name(ib_name: &str, uid: &str, trigger: &Trigger) -> String {
    let mut hasher = Sha256::new();
    for part in [
        uid,
        &trigger.generation.to_string(),
        reason_name(trigger.reason()),
        trigger.token(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let hash = hex::encode(hasher.finalize());
    let hash = &hash[..HASH_LEN];
    let room = MAX_NAME_LEN - HASH_LEN - 1;
    let prefix: String = ib_name
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .take(room)
        .collect();
    let prefix = prefix.trim_end_matches('-');
    if prefix.is_empty() {
        format!("build-{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The wire name of a build reason.
pub fn reason_name(reason: BuildReason) -> &'static str {
    match reason {
        BuildReason::SpecChanged => "SpecChanged",
        BuildReason::Manual => "Manual",
        BuildReason::PackageUpdate => "PackageUpdate",
        BuildReason::IncludeChanged => "IncludeChanged",
    }
}

/// The repository to push to: `spec.target.repository` when it names a registry host (its
/// first component has a `.` or `:` or is `localhost`), otherwise prefixed with the operator's
/// registry prefix.
pub fn push_repository(repository: &str, config: &Config) -> Result<String, JobError> {
    let first = repository.split('/').next().unwrap_or_default();
    let has_host = repository.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        return Ok(repository.to_string());
    }
    match &config.registry_prefix {
        Some(prefix) => Ok(format!("{prefix}/{repository}")),
        None => Err(JobError::RelativeRepository {
            repository: repository.to_string(),
        }),
    }
}

/// `image` (`repository@digest` or `repository:tag`) by the name it is pulled by: with the
/// operator's `pullPrefix`, an image under `registryPrefix` is named with `pullPrefix` in its
/// place; `None` for any other image, or without a `pullPrefix`.
pub fn pull_reference(image: &str, config: &Config) -> Option<String> {
    let pull = config.pull_prefix.as_deref()?;
    let registry = config.registry_prefix.as_deref()?;
    let rest = image.strip_prefix(registry)?.strip_prefix('/')?;
    Some(format!("{pull}/{rest}"))
}

/// How long the build may run: `spec.builder.timeout`, or the operator's default.
pub fn build_timeout(ib: &ImageBuild, config: &Config) -> Result<Duration, JobError> {
    match ib.spec.builder.timeout.as_deref() {
        Some(text) => parse_duration(text).map_err(|source| JobError::Timeout {
            name: ib.name_any(),
            source,
        }),
        None => Ok(config.default_timeout),
    }
}

/// The image configuration a build of `ib` uses: the spec's, with the operator's default
/// repositories and keyring when the spec lists no repositories. Every backend builds (and
/// re-resolution and signing resolve) exactly this.
pub fn effective_image(ib: &ImageBuild, config: &Config) -> Result<ImageConfiguration, JobError> {
    let mut image = ib.spec.image.clone();
    if image.contents.repositories.is_empty() {
        if config.default_repositories.is_empty() {
            return Err(JobError::NoRepositories {
                name: ib.name_any(),
            });
        }
        image.contents.repositories = config.default_repositories.clone();
        for key in &config.default_keyring {
            if !image.contents.keyring.contains(key) {
                image.contents.keyring.push(key.clone());
            }
        }
    }
    Ok(image)
}

/// The ConfigMap holding the build input and the Job that runs the builder, both owned by the
/// ImageBuild and named [`job_name`].
pub fn desired_job(
    ib: &ImageBuild,
    trigger: &Trigger,
    config: &Config,
) -> Result<(ConfigMap, Job), JobError> {
    let name = ib.name_any();
    let missing = |field| JobError::MissingMetadata {
        name: name.clone(),
        field,
    };
    let namespace = ib
        .namespace()
        .ok_or_else(|| missing("metadata.namespace"))?;
    let uid = ib
        .meta()
        .uid
        .clone()
        .ok_or_else(|| missing("metadata.uid"))?;
    let mut owner = ib
        .controller_owner_ref(&())
        .ok_or_else(|| missing("metadata.name"))?;
    owner.block_owner_deletion = Some(true);
    let object_name = job_name(&name, &uid, trigger);

    let repository = push_repository(&ib.spec.target.repository, config)?;
    let timeout = build_timeout(ib, config)?;
    let active_deadline = i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX);

    let image = effective_image(ib, config)?;
    let image_yaml = image.to_yaml().map_err(|source| JobError::ImageConfig {
        name: name.clone(),
        source,
    })?;
    let target = TargetFile {
        repository: &repository,
        tags: &ib.spec.target.tags,
        image_build: ImageBuildRef {
            namespace: &namespace,
            name: &name,
            uid: &uid,
            generation: trigger.generation,
        },
        trigger: reason_name(trigger.reason()),
    };
    // Plain structs of strings and integers always serialize.
    let target_json = serde_json::to_string_pretty(&target).unwrap_or_default();

    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (COMPONENT_LABEL.to_string(), COMPONENT.to_string()),
        (IMAGEBUILD_LABEL.to_string(), label_value(&name)),
        (GENERATION_LABEL.to_string(), trigger.generation.to_string()),
        (
            TRIGGER_LABEL.to_string(),
            reason_name(trigger.reason()).to_string(),
        ),
    ]);
    let mut annotations = BTreeMap::from([(TRIGGER_ANNOTATION.to_string(), trigger.describe())]);
    match &trigger.kind {
        TriggerKind::PackageUpdate { lock_digest } => {
            annotations.insert(LOCK_DIGEST_ANNOTATION.to_string(), lock_digest.clone());
        }
        TriggerKind::Manual { request } => {
            annotations.insert(REBUILD_REQUEST_ANNOTATION.to_string(), request.clone());
        }
        TriggerKind::IncludeChanged { digest } => {
            annotations.insert(CONFIGURATION_DIGEST_ANNOTATION.to_string(), digest.clone());
        }
        TriggerKind::SpecChanged => {}
    }

    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(object_name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (IMAGE_CONFIG_KEY.to_string(), image_yaml),
            (TARGET_KEY.to_string(), target_json),
        ])),
        immutable: Some(true),
        ..ConfigMap::default()
    };

    let mut args = vec![
        "build".to_string(),
        format!("{INPUT_DIR}/{IMAGE_CONFIG_KEY}"),
        "--push".to_string(),
        repository.clone(),
    ];
    for tag in &ib.spec.target.tags {
        args.push("--tag".to_string());
        args.push(tag.clone());
    }
    args.extend(
        ["--result", TERMINATION_LOG, "--cache-dir", CACHE_DIR]
            .into_iter()
            .map(str::to_string),
    );
    for registry in &config.insecure_registries {
        args.push("--insecure-registry".to_string());
        args.push(registry.clone());
    }

    // Spools and layers (as large as the image, uncompressed) go to the work volume, whose
    // sizeLimit is sized for them; /tmp stays small.
    let mut env = vec![env_var("HOME", TMP_DIR), env_var("TMPDIR", WORK_DIR)];
    let mut volume_mounts = vec![
        mount(VOLUME_INPUT, INPUT_DIR, true),
        mount(VOLUME_WORK, WORK_DIR, false),
        mount(VOLUME_TMP, TMP_DIR, false),
    ];
    let mut volumes = vec![
        Volume {
            name: VOLUME_INPUT.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: object_name.clone(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(VOLUME_WORK, config.work_size_limit.clone()),
        empty_dir(VOLUME_TMP, Quantity(TMP_SIZE_LIMIT.to_string())),
    ];
    if let Some(secret) = &ib.spec.target.push_secret_ref {
        env.push(env_var("DOCKER_CONFIG", DOCKER_CONFIG_DIR));
        volume_mounts.push(mount(VOLUME_DOCKER, DOCKER_CONFIG_DIR, true));
        volumes.push(Volume {
            name: VOLUME_DOCKER.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: DOCKER_CONFIG_JSON_KEY.to_string(),
                    path: "config.json".to_string(),
                    mode: None,
                }]),
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Volume::default()
        });
    }

    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(config.builder_image.clone()),
        args: Some(args),
        env: Some(env),
        working_dir: Some(WORK_DIR.to_string()),
        volume_mounts: Some(volume_mounts),
        resources: Some(
            ib.spec
                .builder
                .resources
                .clone()
                .unwrap_or_else(|| config.default_resources.clone()),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_string()]),
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            privileged: Some(false),
            ..SecurityContext::default()
        }),
        termination_message_path: Some(TERMINATION_LOG.to_string()),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        restart_policy: Some("Never".to_string()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        service_account_name: config.builder_service_account.clone(),
        node_selector: Some(ib.spec.builder.node_selector.clone()).filter(|m| !m.is_empty()),
        tolerations: Some(ib.spec.builder.tolerations.clone()).filter(|t| !t.is_empty()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(BUILDER_UID),
            run_as_group: Some(BUILDER_UID),
            fs_group: Some(BUILDER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    let job = Job {
        metadata: ObjectMeta {
            name: Some(object_name.clone()),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(active_deadline),
            ttl_seconds_after_finished: config.job_ttl_seconds,
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![
                    PodFailurePolicyRule {
                        action: "Ignore".to_string(),
                        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                            type_: "DisruptionTarget".to_string(),
                            status: "True".to_string(),
                        }]),
                        on_exit_codes: None,
                    },
                    PodFailurePolicyRule {
                        action: "FailJob".to_string(),
                        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                            container_name: Some(CONTAINER_NAME.to_string()),
                            operator: "In".to_string(),
                            values: vec![TERMINAL_EXIT_CODE],
                        }),
                        on_pod_conditions: None,
                    },
                ],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some({
                        let mut pod_annotations = annotations;
                        pod_annotations.insert(
                            DEFAULT_CONTAINER_ANNOTATION.to_string(),
                            CONTAINER_NAME.to_string(),
                        );
                        pod_annotations
                    }),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    };
    Ok((config_map, job))
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, size_limit: Quantity) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(size_limit),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::fixtures::{TestImageBuild, UID};
    use crate::podsecurity::check_restricted;
    use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};

    fn config() -> Config {
        Config {
            registry_prefix: Some("registry.example.com/images".into()),
            default_repositories: vec!["https://packages.example/os".into()],
            default_keyring: vec!["https://packages.example/key.rsa.pub".into()],
            job_ttl_seconds: Some(600),
            ..Config::default()
        }
    }

    fn spec_changed(generation: i64) -> Trigger {
        Trigger {
            generation,
            kind: TriggerKind::SpecChanged,
        }
    }

    fn pod_spec(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn job_passes_pod_security_restricted() {
        let ib = TestImageBuild::new().push_secret("push").build();
        let (_, job) = desired_job(&ib, &spec_changed(1), &config()).unwrap();
        let spec = pod_spec(&job);
        assert_eq!(check_restricted(spec), Vec::<String>::new());
        let container = &spec.containers[0];
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let pod_security = spec.security_context.as_ref().unwrap();
        assert_eq!(pod_security.fs_group, Some(65532));
        assert_eq!(pod_security.run_as_group, Some(65532));
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn job_runs_the_builder_with_structured_arguments() {
        let ib = TestImageBuild::new()
            .tags(&["latest", "{{ version \"go\" }}"])
            .build();
        let (config_map, job) = desired_job(&ib, &spec_changed(3), &config()).unwrap();
        let container = &pod_spec(&job).containers[0];
        assert_eq!(container.command, None);
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "build",
                "/input/image.yaml",
                "--push",
                "registry.example.com/team/app",
                "--tag",
                "latest",
                "--tag",
                "{{ version \"go\" }}",
                "--result",
                "/dev/termination-log",
                "--cache-dir",
                "/work/cache"
            ]
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(1));
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        assert_eq!(spec.ttl_seconds_after_finished, Some(600));
        let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
        assert_eq!(rules[0].action, "Ignore");
        assert_eq!(
            rules[1].on_exit_codes.as_ref().unwrap().values,
            [TERMINAL_EXIT_CODE]
        );

        let data = config_map.data.as_ref().unwrap();
        let image =
            securebuild_crds::ImageConfiguration::from_yaml(&data[IMAGE_CONFIG_KEY]).unwrap();
        assert_eq!(image, ib.spec.image);
        let target: serde_json::Value = serde_json::from_str(&data[TARGET_KEY]).unwrap();
        assert_eq!(target["repository"], "registry.example.com/team/app");
        assert_eq!(target["imageBuild"]["generation"], 3);
        assert_eq!(target["trigger"], "SpecChanged");
        assert_eq!(config_map.immutable, Some(true));
    }

    #[test]
    fn insecure_registries_reach_the_builder() {
        let ib = TestImageBuild::new().build();
        let cfg = Config {
            insecure_registries: vec!["kind-registry:5000".into(), "10.0.0.0/8".into()],
            ..config()
        };
        let (_, job) = desired_job(&ib, &spec_changed(1), &cfg).unwrap();
        let args = pod_spec(&job).containers[0].args.clone().unwrap();
        assert_eq!(
            args[args.len() - 4..],
            [
                "--insecure-registry",
                "kind-registry:5000",
                "--insecure-registry",
                "10.0.0.0/8"
            ]
        );
        let image = effective_image(&ib, &cfg).unwrap();
        assert_eq!(image, ib.spec.image);
    }

    #[test]
    fn labels_annotations_and_owner() {
        let ib = TestImageBuild::new().build();
        let trigger = Trigger {
            generation: 2,
            kind: TriggerKind::PackageUpdate {
                lock_digest: "sha256:abc".into(),
            },
        };
        let (config_map, job) = desired_job(&ib, &trigger, &config()).unwrap();
        for meta in [&job.metadata, &config_map.metadata] {
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[MANAGED_BY_LABEL], "securebuild-operator");
            assert_eq!(labels[IMAGEBUILD_LABEL], "app");
            assert_eq!(labels[GENERATION_LABEL], "2");
            assert_eq!(labels[TRIGGER_LABEL], "PackageUpdate");
            let annotations = meta.annotations.as_ref().unwrap();
            assert_eq!(annotations[LOCK_DIGEST_ANNOTATION], "sha256:abc");
            assert!(annotations[TRIGGER_ANNOTATION].contains("sha256:abc"));
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.uid, UID);
            assert_eq!(owner.kind, "ImageBuild");
            assert_eq!(owner.controller, Some(true));
            assert_eq!(owner.block_owner_deletion, Some(true));
        }
        assert_eq!(job_generation(&job), Some(2));
        assert_eq!(job_reason(&job), Some(BuildReason::PackageUpdate));
        assert_eq!(job_lock_digest(&job), Some("sha256:abc"));
        assert!(is_owned_by(&job, &ib));
        let other = TestImageBuild::new().uid("another-uid").build();
        assert!(!is_owned_by(&job, &other));
        let template_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        assert_eq!(
            template_labels.labels.as_ref().unwrap()[IMAGEBUILD_LABEL],
            "app"
        );
    }

    #[test]
    fn manual_trigger_records_the_request() {
        let ib = TestImageBuild::new().build();
        let trigger = Trigger {
            generation: 1,
            kind: TriggerKind::Manual {
                request: "2025-01-01".into(),
            },
        };
        let (_, job) = desired_job(&ib, &trigger, &config()).unwrap();
        assert_eq!(job.annotations()[REBUILD_REQUEST_ANNOTATION], "2025-01-01");
        assert!(!job.annotations().contains_key(LOCK_DIGEST_ANNOTATION));
    }

    #[test]
    fn names_are_deterministic_short_and_distinct() {
        let trigger = spec_changed(1);
        let a = job_name("app", "uid-1", &trigger);
        assert_eq!(a, job_name("app", "uid-1", &trigger));
        assert!(a.starts_with("app-") && a.len() == 4 + HASH_LEN, "{a}");
        assert_ne!(a, job_name("app", "uid-2", &trigger));
        assert_ne!(a, job_name("app", "uid-1", &spec_changed(2)));
        let manual = |request: &str| Trigger {
            generation: 1,
            kind: TriggerKind::Manual {
                request: request.into(),
            },
        };
        assert_ne!(
            job_name("app", "uid-1", &manual("a")),
            job_name("app", "uid-1", &manual("b"))
        );

        let long = format!("{}.{}", "x".repeat(60), "y".repeat(100));
        let name = job_name(&long, "uid-1", &trigger);
        assert_eq!(name.len(), 63);
        assert!(config::is_dns_label(&name), "{name}");
        let dotted = job_name(&format!("{}-.b", "a".repeat(51)), "u", &trigger);
        assert!(config::is_dns_label(&dotted), "{dotted}");
    }

    #[test]
    fn label_values_fit() {
        assert_eq!(label_value("app"), "app");
        let long = format!("{}-.{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(label_value(&long), "a".repeat(62));
        assert_eq!(
            selector("app"),
            "app.kubernetes.io/managed-by=securebuild-operator,securebuild.dev/imagebuild=app"
        );
    }

    #[test]
    fn repositories() {
        let cases = [
            (
                "registry.example.com/team/app",
                Some("registry.example.com/team/app"),
            ),
            ("localhost:5000/app", Some("localhost:5000/app")),
            ("localhost/app", Some("localhost/app")),
            ("team/app", Some("registry.example.com/images/team/app")),
            ("app", Some("registry.example.com/images/app")),
        ];
        for (input, expected) in cases {
            assert_eq!(
                push_repository(input, &config()).ok().as_deref(),
                expected,
                "{input}"
            );
        }
        let error = push_repository("team/app", &Config::default()).unwrap_err();
        assert!(error.to_string().contains("registryPrefix"), "{error}");
    }

    #[test]
    fn pull_names_replace_the_registry_prefix() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let proxied = Config {
            pull_prefix: Some("images.example.com".into()),
            ..config()
        };
        let cases = [
            (
                format!("registry.example.com/images/team/app@{digest}"),
                Some(format!("images.example.com/team/app@{digest}")),
            ),
            (
                "registry.example.com/images/app:latest".to_string(),
                Some("images.example.com/app:latest".to_string()),
            ),
            // Only whole path components: `images2` is another repository.
            (format!("registry.example.com/images2/app@{digest}"), None),
            (format!("other.example.com/images/app@{digest}"), None),
        ];
        for (image, expected) in cases {
            assert_eq!(pull_reference(&image, &proxied), expected, "{image}");
        }
        let image = format!("registry.example.com/images/app@{digest}");
        assert_eq!(pull_reference(&image, &config()), None, "no pullPrefix");
    }

    #[test]
    fn defaults_apply_only_without_repositories() {
        let ib = TestImageBuild::new()
            .repositories(&[])
            .keyring(&["https://mine/key.pub"])
            .build();
        let (config_map, _) = desired_job(&ib, &spec_changed(1), &config()).unwrap();
        let image = securebuild_crds::ImageConfiguration::from_yaml(
            &config_map.data.unwrap()[IMAGE_CONFIG_KEY],
        )
        .unwrap();
        assert_eq!(image.contents.repositories, ["https://packages.example/os"]);
        assert_eq!(
            image.contents.keyring,
            [
                "https://mine/key.pub",
                "https://packages.example/key.rsa.pub"
            ]
        );

        let own = TestImageBuild::new().build();
        let (config_map, _) = desired_job(&own, &spec_changed(1), &config()).unwrap();
        let image = securebuild_crds::ImageConfiguration::from_yaml(
            &config_map.data.unwrap()[IMAGE_CONFIG_KEY],
        )
        .unwrap();
        assert_eq!(image.contents.keyring, own.spec.image.contents.keyring);

        let bare = Config {
            default_repositories: vec![],
            default_keyring: vec![],
            ..config()
        };
        let error = desired_job(&ib, &spec_changed(1), &bare).unwrap_err();
        assert!(matches!(error, JobError::NoRepositories { .. }), "{error}");
    }

    #[test]
    fn push_secret_mounts_docker_config() {
        let ib = TestImageBuild::new().push_secret("regcred").build();
        let (_, job) = desired_job(&ib, &spec_changed(1), &config()).unwrap();
        let spec = pod_spec(&job);
        let volume = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.secret.is_some())
            .unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("regcred"));
        let item = &secret.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            (".dockerconfigjson", "config.json")
        );
        let container = &spec.containers[0];
        let env = container.env.as_ref().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "DOCKER_CONFIG" && e.value.as_deref() == Some("/docker"))
        );
        let docker = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/docker")
            .unwrap();
        assert_eq!(docker.read_only, Some(true));

        let without = TestImageBuild::new().build();
        let (_, job) = desired_job(&without, &spec_changed(1), &config()).unwrap();
        let env = pod_spec(&job).containers[0].env.clone().unwrap();
        assert!(!env.iter().any(|e| e.name == "DOCKER_CONFIG"));
    }

    #[test]
    fn volumes_and_mounts() {
        let ib = TestImageBuild::new().build();
        let (_, job) = desired_job(&ib, &spec_changed(1), &config()).unwrap();
        let spec = pod_spec(&job);
        let volumes = spec.volumes.as_ref().unwrap();
        let work = volumes.iter().find(|v| v.name == "work").unwrap();
        assert_eq!(
            work.empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("10Gi".into()))
        );
        let mounts = spec.containers[0].volume_mounts.as_ref().unwrap();
        let by_path = |path: &str| {
            mounts
                .iter()
                .find(|m| m.mount_path == path)
                .unwrap()
                .read_only
        };
        assert_eq!(by_path("/input"), Some(true));
        assert_eq!(by_path("/work"), Some(false));
        assert_eq!(by_path("/tmp"), Some(false));
    }

    #[test]
    fn builder_settings_from_spec_or_defaults() {
        let mut ib = TestImageBuild::new().timeout("1h30m").build();
        ib.spec
            .builder
            .node_selector
            .insert("kubernetes.io/arch".into(), "arm64".into());
        ib.spec.builder.tolerations.push(Toleration {
            key: Some("builders".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        });
        ib.spec.builder.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("8Gi".into()))])),
            ..ResourceRequirements::default()
        });
        let cfg = Config {
            builder_service_account: Some("builder".into()),
            ..config()
        };
        let (_, job) = desired_job(&ib, &spec_changed(1), &cfg).unwrap();
        assert_eq!(
            job.spec.as_ref().unwrap().active_deadline_seconds,
            Some(5400)
        );
        let spec = pod_spec(&job);
        assert_eq!(
            spec.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
            "arm64"
        );
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .clone()
            .unwrap();
        assert_eq!(limits["memory"], Quantity("8Gi".into()));

        let plain = TestImageBuild::new().build();
        let (_, job) = desired_job(&plain, &spec_changed(1), &config()).unwrap();
        let spec = pod_spec(&job);
        assert_eq!(spec.node_selector, None);
        assert_eq!(spec.tolerations, None);
        assert_eq!(spec.service_account_name, None);
        assert_eq!(
            spec.containers[0].resources,
            Some(Config::default().default_resources)
        );

        let bad = TestImageBuild::new().timeout("forever").build();
        let error = desired_job(&bad, &spec_changed(1), &config()).unwrap_err();
        assert!(
            error.to_string().contains("spec.builder.timeout"),
            "{error}"
        );
    }

    #[test]
    fn unstored_imagebuilds_are_rejected() {
        let mut ib = TestImageBuild::new().build();
        ib.metadata.uid = None;
        let error = desired_job(&ib, &spec_changed(1), &config()).unwrap_err();
        assert!(error.to_string().contains("metadata.uid"), "{error}");
        let mut ib = TestImageBuild::new().build();
        ib.metadata.namespace = None;
        let error = desired_job(&ib, &spec_changed(1), &config()).unwrap_err();
        assert!(error.to_string().contains("metadata.namespace"), "{error}");
    }

    #[test]
    fn job_states() {
        let cases = [
            (vec![], JobState::Active),
            (vec![("SuccessCriteriaMet", "True")], JobState::Active),
            (vec![("FailureTarget", "True")], JobState::Active),
            (vec![("Complete", "True")], JobState::Succeeded),
            (vec![("Failed", "True")], JobState::Failed),
            (vec![("Failed", "False")], JobState::Active),
        ];
        for (conditions, expected) in cases {
            let mut job = Job::default();
            crate::fixtures::set_job_conditions(&mut job, &conditions);
            assert_eq!(job_state(&job), expected, "{conditions:?}");
        }
    }

    #[test]
    fn unknown_labels_read_as_none() {
        let mut job = Job::default();
        job.labels_mut()
            .insert(TRIGGER_LABEL.into(), "Other".into());
        job.labels_mut().insert(GENERATION_LABEL.into(), "x".into());
        assert_eq!(job_reason(&job), None);
        assert_eq!(job_generation(&job), None);
    }
}
