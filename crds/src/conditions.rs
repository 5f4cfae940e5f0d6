//! Condition types, CamelCase reasons, the list-map schema of `status.conditions`, and pure
//! functions that set and clear conditions the way kstatus and Flux expect.
//!
//! The rules: `Ready` is always present; `Reconciling` and `Stalled` exist only while they are
//! `True` (they are removed, not set to `False`); `lastTransitionTime` changes only when the
//! status changes; every condition carries the generation it describes. No IO, no clock: the
//! caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition types an ImageBuild reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The latest image for the current generation is built, pushed and signed.
    Ready,
    /// A build for the current generation is in progress.
    Reconciling,
    /// The last build failed in a way that will not heal until the spec changes.
    Stalled,
}

impl ConditionType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}

/// Why a condition has its status. CamelCase on the wire, as Kubernetes requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The image is built, pushed and (as requested) signed and attested.
    Succeeded,
    /// A build was started and is waiting for its Pod.
    BuildPending,
    /// A build is running.
    Building,
    /// The spec cannot be built as written (bad constraint, unknown architecture, …).
    InvalidSpec,
    /// The packages cannot be resolved against the repositories.
    ResolutionFailed,
    /// A package or index failed signature or checksum verification.
    PackageVerificationFailed,
    /// A repository or key could not be fetched.
    FetchFailed,
    /// The image could not be pushed.
    PushFailed,
    /// The push Secret is missing or unusable.
    CredentialsInvalid,
    /// The build exceeded its timeout.
    BuildTimeout,
    /// The builder Pod was evicted.
    PodEvicted,
    /// The builder ran out of memory.
    OutOfMemory,
    /// The image was pushed but could not be signed or attested.
    SigningFailed,
    /// The builder failed for another reason; see the message.
    BuildFailed,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::BuildPending => "BuildPending",
            Self::Building => "Building",
            Self::InvalidSpec => "InvalidSpec",
            Self::ResolutionFailed => "ResolutionFailed",
            Self::PackageVerificationFailed => "PackageVerificationFailed",
            Self::FetchFailed => "FetchFailed",
            Self::PushFailed => "PushFailed",
            Self::CredentialsInvalid => "CredentialsInvalid",
            Self::BuildTimeout => "BuildTimeout",
            Self::PodEvicted => "PodEvicted",
            Self::OutOfMemory => "OutOfMemory",
            Self::SigningFailed => "SigningFailed",
            Self::BuildFailed => "BuildFailed",
        }
    }

    /// Every reason, for exhaustive tests and documentation.
    pub const ALL: [Reason; 14] = [
        Self::Succeeded,
        Self::BuildPending,
        Self::Building,
        Self::InvalidSpec,
        Self::ResolutionFailed,
        Self::PackageVerificationFailed,
        Self::FetchFailed,
        Self::PushFailed,
        Self::CredentialsInvalid,
        Self::BuildTimeout,
        Self::PodEvicted,
        Self::OutOfMemory,
        Self::SigningFailed,
        Self::BuildFailed,
    ];

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether another attempt with the same inputs cannot succeed: the spec, the packages or
    /// the limits must change first. Every failed build sets `Stalled` (the operator does not
    /// retry on its own); for the other reasons a rebuild request alone may be enough.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::InvalidSpec
                | Self::ResolutionFailed
                | Self::PackageVerificationFailed
                | Self::BuildTimeout
                | Self::OutOfMemory
                | Self::CredentialsInvalid
        )
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    status: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == kind.as_str()) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = reason.as_str().to_string();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: kind.as_str().to_string(),
            status,
            reason: reason.as_str().to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
    sort_conditions(conditions);
}

/// Removes a condition (for `Reconciling` and `Stalled` once they stop being true).
pub fn remove_condition(conditions: &mut Vec<Condition>, kind: ConditionType) {
    conditions.retain(|c| c.type_ != kind.as_str());
}

/// Finds a condition by type.
pub fn find_condition(conditions: &[Condition], kind: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == kind.as_str())
}

/// Whether a condition is present with status `True`.
pub fn is_true(conditions: &[Condition], kind: ConditionType) -> bool {
    find_condition(conditions, kind).is_some_and(|c| c.status == "True")
}

/// Keeps conditions in a fixed order (Ready, Reconciling, Stalled, then others by name) so that
/// status writes are stable.
fn sort_conditions(conditions: &mut [Condition]) {
    let rank = |c: &Condition| match c.type_.as_str() {
        "Ready" => 0,
        "Reconciling" => 1,
        "Stalled" => 2,
        _ => 3,
    };
    conditions.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.type_.cmp(&b.type_)));
}

/// The schema of `status.conditions`: metav1.Condition items in a list-map keyed by `type`, so
/// that server-side apply merges conditions by type.
pub fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Ready (always present), Reconciling and Stalled (only while True).",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "description": "A metav1.Condition.",
            "properties": {
                "lastTransitionTime": {
                    "description": "When the status last changed.",
                    "type": "string",
                    "format": "date-time"
                },
                "message": {
                    "description": "Human-readable details.",
                    "type": "string",
                    "maxLength": 32768
                },
                "observedGeneration": {
                    "description": "The generation the condition describes.",
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                },
                "reason": {
                    "description": "CamelCase reason.",
                    "type": "string",
                    "maxLength": 1024,
                    "minLength": 1,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "status": {
                    "description": "True, False or Unknown.",
                    "type": "string",
                    "enum": ["True", "False", "Unknown"]
                },
                "type": {
                    "description": "Ready, Reconciling or Stalled.",
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                }
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            false,
            Reason::Building,
            "building",
            Some(1),
            at(10),
        );
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            false,
            Reason::BuildPending,
            "waiting",
            Some(2),
            at(20),
        );
        let ready = find_condition(&conditions, ConditionType::Ready).unwrap();
        assert_eq!(ready.last_transition_time, Time(at(10)));
        assert_eq!(ready.reason, "BuildPending");
        assert_eq!(ready.observed_generation, Some(2));
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            true,
            Reason::Succeeded,
            "built",
            Some(2),
            at(30),
        );
        let ready = find_condition(&conditions, ConditionType::Ready).unwrap();
        assert_eq!(ready.last_transition_time, Time(at(30)));
        assert!(is_true(&conditions, ConditionType::Ready));
    }

    #[test]
    fn conditions_keep_a_stable_order_and_can_be_removed() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionType::Stalled,
            true,
            Reason::InvalidSpec,
            "bad",
            Some(1),
            at(1),
        );
        set_condition(
            &mut conditions,
            ConditionType::Reconciling,
            true,
            Reason::Building,
            "",
            Some(1),
            at(1),
        );
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            false,
            Reason::InvalidSpec,
            "bad",
            Some(1),
            at(1),
        );
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
        remove_condition(&mut conditions, ConditionType::Reconciling);
        remove_condition(&mut conditions, ConditionType::Stalled);
        assert_eq!(conditions.len(), 1);
        assert!(!is_true(&conditions, ConditionType::Stalled));
    }

    #[test]
    fn reasons_are_camel_case_and_parse_back() {
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(name.chars().next().unwrap().is_ascii_uppercase(), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert_eq!(Reason::parse(name), Some(reason));
        }
        assert!(Reason::InvalidSpec.is_terminal());
        assert!(!Reason::PushFailed.is_terminal());
        assert!(!Reason::PodEvicted.is_terminal());
    }
}
