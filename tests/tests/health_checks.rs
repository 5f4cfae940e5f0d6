//! How tools read an ImageBuild's health: the Argo CD health check
//! (`charts/securebuild/argocd/health.lua`) run by a real Lua interpreter on sample objects, and
//! the kstatus rules (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, which Flux and kpt use)
//! applied to the same statuses.
//!
//! The samples are built with the API types and condition helpers, and with the operator's own
//! status functions along one ImageBuild's life. No cluster and no Argo CD: the Lua script gets
//! `obj` as Argo CD hands it over (the object as a Lua table), in an environment that holds only
//! what the script may use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use securebuild_crds::conditions::{ConditionType, Reason, set_condition};
use securebuild_crds::imagebuild::{BuildFailure, BuildOutcome, BuildReason, BuildRecord};
use securebuild_crds::{ImageBuild, ImageBuildSpec, ImageBuildStatus};
use serde_json::{Value, json};

use crate::workspace_root;

/// The variable naming the Lua interpreter; `lua5.4` when unset.
const LUA_ENV: &str = "SECUREBUILD_LUA";
const DEFAULT_LUA: &str = "lua5.4";
/// The health check, relative to the workspace root.
const HEALTH_LUA: &str = "charts/securebuild/argocd/health.lua";
/// The globals Argo CD's sandbox offers that the script is allowed to use.
const LUA_GLOBALS: [&str; 2] = ["ipairs", "tostring"];

const GENERATION: i64 = 3;
const IMAGE: &str = "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn now() -> Timestamp {
    Timestamp::from_second(1_750_000_000).expect("a valid timestamp")
}

// ---------------------------------------------------------------------------------------------
// JSON → Lua table literals

/// Writes a JSON value as a Lua expression: objects and arrays become table constructors,
/// `null` becomes `nil` (an absent field, as Argo CD's decoder makes it), strings are escaped
/// byte by byte so that any input stays a valid literal.
fn lua_literal(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                out.push_str(&integer.to_string());
            } else if let Some(integer) = number.as_u64() {
                out.push_str(&integer.to_string());
            } else {
                let float = number.as_f64().expect("JSON numbers are finite");
                out.push_str(&format!("{float:?}"));
            }
        }
        Value::String(text) => lua_string(text, out),
        Value::Array(items) => {
            out.push('{');
            for item in items {
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(fields) => {
            out.push('{');
            for (key, item) in fields {
                out.push('[');
                lua_string(key, out);
                out.push_str("] = ");
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

/// A quoted Lua string: printable ASCII as is (with `"` and `\` escaped), every other byte as a
/// three-digit decimal escape, which Lua 5.1 through 5.4 all read.
fn lua_string(text: &str, out: &mut String) {
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Running the health check

/// What the health check returned.
#[derive(Debug, PartialEq, Eq)]
struct Health {
    status: String,
    message: String,
}

fn lua_interpreter() -> String {
    std::env::var(LUA_ENV).unwrap_or_else(|_| DEFAULT_LUA.to_string())
}

/// Runs health.lua with `obj` bound to `object`, in an environment holding only
/// [`LUA_GLOBALS`] (Argo CD's sandbox has more, but the script must not need it).
fn run_health(object: &Value) -> Health {
    let script_path = workspace_root().join(HEALTH_LUA);
    let mut harness = String::from("local env = { obj = ");
    lua_literal(object, &mut harness);
    for global in LUA_GLOBALS {
        harness.push_str(&format!(", {global} = {global}"));
    }
    harness.push_str(" }\nlocal chunk = assert(loadfile(");
    lua_string(&script_path.to_string_lossy(), &mut harness);
    harness.push_str(
        ", \"t\", env))\n\
         local hs = chunk()\n\
         assert(type(hs) == \"table\", \"health.lua must return a table\")\n\
         io.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let harness_path = dir.path().join("harness.lua");
    std::fs::write(&harness_path, &harness).expect("write the Lua harness");
    let interpreter = lua_interpreter();
    let output = Command::new(&interpreter)
        .arg(&harness_path)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run the Lua interpreter `{interpreter}` ({error}); install Debian's lua5.4 \
                 package (bash .ci/test does) or set {LUA_ENV}"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "health.lua failed on {object}:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, message) = stdout.split_once('\n').unwrap_or((stdout.as_ref(), ""));
    Health {
        status: status.to_string(),
        message: message.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// kstatus, as sigs.k8s.io/cli-utils/pkg/kstatus/status computes it for a custom resource

/// The kstatus status of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// kstatus' `Compute` for a type without built-in rules: deletion first; then
/// `status.observedGeneration` (only when present) against `metadata.generation`; then the
/// first `Reconciling=True` or `Stalled=True` condition in list order; otherwise `Current`.
/// kstatus never reads `Ready`.
fn kstatus(object: &Value) -> (KStatus, String) {
    let deletion = object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str);
    if deletion.is_some_and(|d| !d.is_empty()) {
        return (
            KStatus::Terminating,
            "Resource scheduled for deletion".to_string(),
        );
    }
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        let kind = object["kind"].as_str().unwrap_or_default();
        return (
            KStatus::InProgress,
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for condition in conditions {
        let message = condition["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (condition["type"].as_str(), condition["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return (KStatus::InProgress, message),
            (Some("Stalled"), Some("True")) => return (KStatus::Failed, message),
            _ => {}
        }
    }
    (KStatus::Current, "Resource is current".to_string())
}

// ---------------------------------------------------------------------------------------------
// Sample ImageBuilds

/// One condition to set: type, status, reason, message, generation.
type Set<'a> = (ConditionType, bool, Reason, &'a str, i64);

fn conditions(sets: &[Set<'_>]) -> Vec<Condition> {
    let mut conditions = Vec::new();
    for (kind, status, reason, message, generation) in sets {
        set_condition(
            &mut conditions,
            *kind,
            *status,
            *reason,
            *message,
            Some(*generation),
            now(),
        );
    }
    conditions
}

fn status_with(observed: Option<i64>, sets: &[Set<'_>]) -> ImageBuildStatus {
    ImageBuildStatus {
        observed_generation: observed,
        conditions: conditions(sets),
        ..ImageBuildStatus::default()
    }
}

/// An ImageBuild at [`GENERATION`] with the given status, as JSON.
fn image_build(status: Option<ImageBuildStatus>) -> Value {
    let mut ib = ImageBuild::new("app", ImageBuildSpec::default());
    ib.metadata.namespace = Some("team-a".to_string());
    ib.metadata.generation = Some(GENERATION);
    ib.metadata.uid = Some("5f1c2b7e-0000-4000-8000-000000000001".to_string());
    ib.status = status;
    serde_json::to_value(&ib).expect("an ImageBuild serializes")
}

fn failed_record(reason: Reason, message: &str) -> BuildRecord {
    BuildRecord {
        job: "app-0123456789".to_string(),
        reason: BuildReason::SpecChanged,
        generation: GENERATION,
        outcome: BuildOutcome::Failed,
        start_time: Some("2025-06-15T15:00:00Z".to_string()),
        completion_time: Some("2025-06-15T15:02:00Z".to_string()),
        failure: Some(BuildFailure {
            reason: reason.as_str().to_string(),
            message: message.to_string(),
            log_snippet: Some("error: resolve: no package matches go~1.99".to_string()),
        }),
    }
}

/// A sample, what Argo CD must report for it, and what kstatus computes.
struct Case {
    name: &'static str,
    object: Value,
    health: &'static str,
    /// A fragment of the health message.
    message: &'static str,
    kstatus: KStatus,
}

fn cases() -> Vec<Case> {
    use ConditionType::{Ready, Reconciling, Stalled};
    let g = GENERATION;
    let built = format!("built {IMAGE}");
    let push_failure = "push registry.example.com/team/app: 503 Service Unavailable";
    let resolution_failure = "no package matches go~1.99";

    let mut stalled = status_with(
        Some(g),
        &[
            (
                Ready,
                false,
                Reason::ResolutionFailed,
                resolution_failure,
                g,
            ),
            (
                Stalled,
                true,
                Reason::ResolutionFailed,
                resolution_failure,
                g,
            ),
        ],
    );
    stalled.last_build = Some(failed_record(Reason::ResolutionFailed, resolution_failure));
    let mut push_failed = status_with(
        Some(g),
        &[(Ready, false, Reason::PushFailed, push_failure, g)],
    );
    push_failed.last_build = Some(failed_record(Reason::PushFailed, push_failure));
    let mut succeeded = status_with(Some(g), &[(Ready, true, Reason::Succeeded, &built, g)]);
    succeeded.latest_image = Some(IMAGE.to_string());
    succeeded.digest = IMAGE.split_once('@').map(|(_, digest)| digest.to_string());

    let mut terminating = image_build(Some(succeeded.clone()));
    terminating["metadata"]["deletionTimestamp"] = json!("2025-06-15T16:00:00Z");

    vec![
        Case {
            name: "healthy: Ready=True for the current generation",
            object: image_build(Some(succeeded.clone())),
            health: "Healthy",
            message: "Succeeded: built registry.example.com/team/app@sha256:",
            kstatus: KStatus::Current,
        },
        Case {
            name: "progressing: no status yet",
            object: image_build(None),
            health: "Progressing",
            message: "Waiting for the operator to report status",
            // kstatus checks observedGeneration only when it is present.
            kstatus: KStatus::Current,
        },
        Case {
            name: "progressing: status without observedGeneration",
            object: image_build(Some(ImageBuildStatus::default())),
            health: "Progressing",
            message: "observe generation 3 (status describes none)",
            kstatus: KStatus::Current,
        },
        Case {
            name: "progressing: stale observedGeneration, even with Ready=True",
            object: image_build(Some(ImageBuildStatus {
                observed_generation: Some(g - 1),
                ..succeeded.clone()
            })),
            health: "Progressing",
            message: "observe generation 3 (status describes 2)",
            kstatus: KStatus::InProgress,
        },
        Case {
            name: "progressing: Ready=True but for an older generation",
            object: image_build(Some(status_with(
                Some(g),
                &[(Ready, true, Reason::Succeeded, &built, g - 1)],
            ))),
            health: "Progressing",
            message: "Ready describes generation 2, not 3",
            kstatus: KStatus::Current,
        },
        Case {
            name: "progressing: reconciling, build pending",
            object: image_build(Some(status_with(
                Some(g),
                &[
                    (
                        Ready,
                        false,
                        Reason::BuildPending,
                        "spec changed: started Job app-0123456789",
                        g,
                    ),
                    (
                        Reconciling,
                        true,
                        Reason::BuildPending,
                        "spec changed: started Job app-0123456789",
                        g,
                    ),
                ],
            ))),
            health: "Progressing",
            message: "BuildPending: spec changed: started Job app-0123456789",
            kstatus: KStatus::InProgress,
        },
        Case {
            name: "progressing: reconciling, building",
            object: image_build(Some(status_with(
                Some(g),
                &[
                    (
                        Ready,
                        false,
                        Reason::Building,
                        "building generation 3 in Job app-0123456789",
                        g,
                    ),
                    (
                        Reconciling,
                        true,
                        Reason::Building,
                        "building generation 3 in Job app-0123456789",
                        g,
                    ),
                ],
            ))),
            health: "Progressing",
            message: "Building: building generation 3 in Job app-0123456789",
            kstatus: KStatus::InProgress,
        },
        Case {
            name: "progressing: rebuilding after a failure clears Stalled",
            object: image_build(Some(status_with(
                Some(g),
                &[
                    (
                        Ready,
                        false,
                        Reason::BuildPending,
                        "waiting for a build slot (4 of 4 builds running)",
                        g,
                    ),
                    (
                        Reconciling,
                        true,
                        Reason::BuildPending,
                        "waiting for a build slot (4 of 4 builds running)",
                        g,
                    ),
                ],
            ))),
            health: "Progressing",
            message: "waiting for a build slot",
            kstatus: KStatus::InProgress,
        },
        Case {
            name: "progressing: resolved, not built yet",
            object: image_build(Some(status_with(
                Some(g),
                &[(Ready, false, Reason::BuildPending, "not built yet", g)],
            ))),
            health: "Progressing",
            message: "BuildPending: not built yet",
            kstatus: KStatus::Current,
        },
        Case {
            name: "degraded: stalled on a terminal failure",
            object: image_build(Some(stalled)),
            health: "Degraded",
            message: "ResolutionFailed: no package matches go~1.99",
            kstatus: KStatus::Failed,
        },
        Case {
            name: "degraded: invalid spec",
            object: image_build(Some(status_with(
                Some(g),
                &[
                    (
                        Ready,
                        false,
                        Reason::InvalidSpec,
                        "spec.target.repository `team/app` has no registry host",
                        g,
                    ),
                    (
                        Stalled,
                        true,
                        Reason::InvalidSpec,
                        "spec.target.repository `team/app` has no registry host",
                        g,
                    ),
                ],
            ))),
            health: "Degraded",
            message: "InvalidSpec: spec.target.repository `team/app` has no registry host",
            kstatus: KStatus::Failed,
        },
        Case {
            name: "degraded: failed with a retryable reason (no Stalled)",
            object: image_build(Some(push_failed)),
            health: "Degraded",
            message: "PushFailed: push registry.example.com/team/app: 503",
            // kstatus reads only Reconciling and Stalled: a failure that is not terminal and
            // not being retried reads as Current.
            kstatus: KStatus::Current,
        },
        Case {
            name: "degraded: signing failed after the push",
            object: image_build(Some(status_with(
                Some(g),
                &[(
                    Ready,
                    false,
                    Reason::SigningFailed,
                    "signing key Secret securebuild-signing-key not found",
                    g,
                )],
            ))),
            health: "Degraded",
            message: "SigningFailed: signing key Secret securebuild-signing-key not found",
            kstatus: KStatus::Current,
        },
        Case {
            name: "terminating: kstatus reports deletion first",
            object: terminating,
            health: "Healthy",
            message: "Succeeded: built",
            kstatus: KStatus::Terminating,
        },
    ]
}

#[test]
fn argo_cd_health_of_sample_imagebuilds() {
    let mut failures = Vec::new();
    for case in cases() {
        let health = run_health(&case.object);
        if health.status != case.health || !health.message.contains(case.message) {
            failures.push(format!(
                "{}: expected {} containing `{}`, got {} `{}`",
                case.name, case.health, case.message, health.status, health.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "health.lua disagrees:\n{}",
        failures.join("\n")
    );
}

#[test]
fn kstatus_reading_of_sample_imagebuilds() {
    let mut failures = Vec::new();
    for case in cases() {
        let (status, message) = kstatus(&case.object);
        if status != case.kstatus {
            failures.push(format!(
                "{}: expected {:?}, got {status:?} ({message})",
                case.name, case.kstatus
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "kstatus disagrees:\n{}",
        failures.join("\n")
    );
}

#[test]
fn kstatus_messages_follow_the_conditions() {
    let cases = cases();
    let find = |name: &str| {
        cases
            .iter()
            .find(|c| c.name.starts_with(name))
            .map(|c| kstatus(&c.object))
            .expect("a sample with that name")
    };
    assert_eq!(
        find("progressing: stale observedGeneration"),
        (
            KStatus::InProgress,
            "ImageBuild generation is 3, but latest observed generation is 2".to_string()
        )
    );
    assert_eq!(
        find("progressing: reconciling, building"),
        (
            KStatus::InProgress,
            "building generation 3 in Job app-0123456789".to_string()
        )
    );
    assert_eq!(
        find("degraded: stalled"),
        (KStatus::Failed, "no package matches go~1.99".to_string())
    );
}

/// The operator keeps conditions in the order Ready, Reconciling, Stalled; kstatus takes the
/// first of Reconciling and Stalled that is True, and health.lua checks Reconciling first too,
/// so the two agree even on a status that has both.
#[test]
fn reconciling_wins_over_stalled_in_both_readers() {
    use ConditionType::{Ready, Reconciling, Stalled};
    let g = GENERATION;
    let object = image_build(Some(status_with(
        Some(g),
        &[
            (Stalled, true, Reason::InvalidSpec, "bad", g),
            (Reconciling, true, Reason::Building, "building", g),
            (Ready, false, Reason::Building, "building", g),
        ],
    )));
    let types: Vec<&str> = object["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
    assert_eq!(kstatus(&object).0, KStatus::InProgress);
    assert_eq!(run_health(&object).status, "Progressing");
}

#[test]
fn health_check_survives_hostile_objects() {
    // Odd but decodable objects: the script must still return a status, never raise.
    let odd = [
        json!({"metadata": {}, "status": {}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": []}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready"}]}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "False", "reason": "", "message": "quote \" backslash \\ newline \n ü"}
        ]}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "Whatever"}
        ]}}),
    ];
    let expected = [
        "Progressing",
        "Progressing",
        "Progressing",
        "Progressing",
        "Progressing",
    ];
    for (object, status) in odd.iter().zip(expected) {
        let health = run_health(object);
        assert_eq!(health.status, status, "{object}");
        assert!(!health.message.is_empty(), "{object}");
    }
    let message = run_health(&odd[3]).message;
    assert_eq!(message, "quote \" backslash \\ newline \n ü");
}

#[test]
fn lua_literals_are_exact() {
    let cases = [
        (json!(null), "nil"),
        (json!(true), "true"),
        (json!(-7), "-7"),
        (json!(1.5), "1.5"),
        (json!("a\"b\\c\n"), "\"a\\\"b\\\\c\\010\""),
        (json!("ü"), "\"\\195\\188\""),
        (json!([1, "x"]), "{1, \"x\", }"),
        (
            json!({"b": 1, "a": {"c": []}}),
            "{[\"a\"] = {[\"c\"] = {}, }, [\"b\"] = 1, }",
        ),
    ];
    for (value, expected) in cases {
        let mut out = String::new();
        lua_literal(&value, &mut out);
        assert_eq!(out, expected, "{value}");
    }
}

/// The statuses the operator itself writes (`securebuild_operator::status`) along one
/// ImageBuild's life, read by both health readers.
#[test]
fn operator_status_transitions_read_as_documented() {
    use securebuild_builder::result::{ImageResult, PlatformResult};
    use securebuild_operator::hooks::SigningOutcome;
    use securebuild_operator::status::{
        Failure, Finish, build_finished, build_lost, build_queued, build_started, invalid_spec,
    };
    use securebuild_operator::triggers::{Trigger, TriggerKind};

    let job = "app-0123456789";
    let mut ib = ImageBuild::new("app", ImageBuildSpec::default());
    ib.metadata.namespace = Some("team-a".to_string());
    ib.metadata.uid = Some("5f1c2b7e-0000-4000-8000-000000000001".to_string());
    ib.metadata.generation = Some(1);
    let trigger = Trigger {
        generation: 1,
        kind: TriggerKind::SpecChanged,
    };
    let with = |ib: &ImageBuild, status: ImageBuildStatus| {
        let mut next = ib.clone();
        next.status = Some(status);
        next
    };
    let failed = |reason: Reason, message: &str| {
        Finish::Failed(Failure {
            reason,
            message: message.to_string(),
            log_snippet: Some("error: the last lines of the log".to_string()),
        })
    };
    let image = ImageResult {
        digest: format!("sha256:{}", "ab".repeat(32)),
        reference: Some(format!(
            "registry.example.com/team/app@sha256:{}",
            "ab".repeat(32)
        )),
        platforms: vec![PlatformResult {
            arch: "amd64".to_string(),
            variant: None,
            digest: format!("sha256:{}", "cd".repeat(32)),
        }],
        tags: vec!["latest".to_string()],
        lock: format!("sha256:{}", "ef".repeat(32)),
        packages: 14,
    };

    let started = with(&ib, build_started(&ib, &trigger, job, now()));
    let queued = with(&ib, build_queued(&ib, &trigger, 4, 4, now()));
    let succeeded = with(
        &started,
        build_finished(
            &started,
            job,
            None,
            &Finish::Succeeded {
                image: image.clone(),
                signing: SigningOutcome::default(),
            },
            now(),
        ),
    );
    let mut changed = succeeded.clone();
    changed.metadata.generation = Some(2);
    let stalled = with(
        &started,
        build_finished(
            &started,
            job,
            None,
            &failed(Reason::ResolutionFailed, "no go-1.99"),
            now(),
        ),
    );
    let push_failed = with(
        &started,
        build_finished(
            &started,
            job,
            None,
            &failed(Reason::PushFailed, "503 from the registry"),
            now(),
        ),
    );
    let signing_failed = with(
        &started,
        build_finished(
            &started,
            job,
            None,
            &Finish::SigningFailed {
                image,
                message: "the signing key Secret is missing".to_string(),
            },
            now(),
        ),
    );
    let lost = with(&started, build_lost(&started, job, now()));
    let invalid = with(
        &ib,
        invalid_spec(&ib, "spec.target.repository has no registry host", now()),
    );

    let cases: [(&str, &ImageBuild, &str, &str, KStatus); 10] = [
        (
            "new",
            &ib,
            "Progressing",
            "Waiting for the operator",
            KStatus::Current,
        ),
        (
            "started",
            &started,
            "Progressing",
            "BuildPending: spec changed",
            KStatus::InProgress,
        ),
        (
            "queued",
            &queued,
            "Progressing",
            "waiting for a build slot (4 of 4",
            KStatus::InProgress,
        ),
        (
            "succeeded",
            &succeeded,
            "Healthy",
            "Succeeded: built registry.example.com/team/app@sha256:",
            KStatus::Current,
        ),
        (
            "spec changed",
            &changed,
            "Progressing",
            "observe generation 2 (status describes 1)",
            KStatus::InProgress,
        ),
        (
            "terminal failure",
            &stalled,
            "Degraded",
            "ResolutionFailed: no go-1.99",
            KStatus::Failed,
        ),
        // Every failed build is Stalled (nothing retries it on its own), so kstatus reads Failed.
        (
            "transient failure",
            &push_failed,
            "Degraded",
            "PushFailed: 503 from the registry",
            KStatus::Failed,
        ),
        (
            "signing failed",
            &signing_failed,
            "Degraded",
            "SigningFailed: the signing key Secret",
            KStatus::Failed,
        ),
        (
            "job lost",
            &lost,
            "Degraded",
            "BuildFailed: the builder Job app-0123456789 was deleted",
            KStatus::Failed,
        ),
        (
            "invalid spec",
            &invalid,
            "Degraded",
            "InvalidSpec: spec.target.repository",
            KStatus::Failed,
        ),
    ];
    let mut failures = Vec::new();
    for (name, ib, health, message, expected_kstatus) in cases {
        let object = serde_json::to_value(ib).expect("an ImageBuild serializes");
        let got = run_health(&object);
        if got.status != health || !got.message.contains(message) {
            failures.push(format!(
                "{name}: Argo CD expected {health} `{message}`, got {} `{}`",
                got.status, got.message
            ));
        }
        let (status, detail) = kstatus(&object);
        if status != expected_kstatus {
            failures.push(format!(
                "{name}: kstatus expected {expected_kstatus:?}, got {status:?} ({detail})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let last_failure = stalled
        .status
        .and_then(|s| s.last_build)
        .and_then(|b| b.failure)
        .expect("a recorded failure");
    assert_eq!(
        last_failure.log_snippet.as_deref(),
        Some("error: the last lines of the log")
    );
}
