//! What the console shows of one ImageBuild, derived from the object in the watch cache: its
//! state (Ready, building, Stalled with its reason), image reference, tags, package count,
//! last build and next re-resolution, and the filters of the image list.
//!
//! Pure: no clock (the caller passes `now`), no IO.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use securebuild_crds::ImageBuild;
use securebuild_crds::conditions::{ConditionType, find_condition};
use securebuild_crds::imagebuild::{BuildOutcome, HistoryEntry};

use crate::triggers::{self, rebuild_interval};

/// The state of an ImageBuild at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// The image of the current generation is built, pushed and signed.
    Ready,
    /// A build is queued or running.
    Building,
    /// The last build failed; nothing happens until the spec or the rebuild request changes.
    Stalled,
    /// Not reconciled yet.
    Pending,
}

impl State {
    /// Every state, in the order the filter offers them.
    pub const ALL: [State; 4] = [
        State::Ready,
        State::Building,
        State::Stalled,
        State::Pending,
    ];

    /// The word shown and used in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Building => "building",
            Self::Stalled => "stalled",
            Self::Pending => "pending",
        }
    }

    /// The state a filter names.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The label shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Building => "Building",
            Self::Stalled => "Stalled",
            Self::Pending => "Pending",
        }
    }
}

/// The state of `ib`, with the reason and message of the condition that decides it.
pub fn state_of(ib: &ImageBuild) -> (State, Option<String>, Option<String>) {
    let Some(status) = ib.status.as_ref() else {
        return (State::Pending, None, None);
    };
    let condition = |kind| find_condition(&status.conditions, kind);
    let describe = |c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
        (Some(c.reason.clone()), Some(c.message.clone()))
    };
    if let Some(stalled) = condition(ConditionType::Stalled).filter(|c| c.status == "True") {
        let (reason, message) = describe(stalled);
        return (State::Stalled, reason, message);
    }
    let running = status
        .last_build
        .as_ref()
        .is_some_and(|b| b.outcome == BuildOutcome::Running);
    if let Some(reconciling) = condition(ConditionType::Reconciling).filter(|c| c.status == "True")
    {
        let (reason, message) = describe(reconciling);
        return (State::Building, reason, message);
    }
    if running {
        return (State::Building, None, None);
    }
    match condition(ConditionType::Ready) {
        Some(ready) if ready.status == "True" => {
            let (reason, message) = describe(ready);
            (State::Ready, reason, message)
        }
        Some(other) => {
            let (reason, message) = describe(other);
            (State::Pending, reason, message)
        }
        None => (State::Pending, None, None),
    }
}

/// One row of the image list.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRow {
    /// The namespace.
    pub namespace: String,
    /// The ImageBuild's name.
    pub name: String,
    /// The state.
    pub state: State,
    /// The reason of the deciding condition.
    pub reason: Option<String>,
    /// Its message.
    pub message: Option<String>,
    /// The push target as written in the spec.
    pub repository: String,
    /// The image by digest, the pull name when the operator has a `pullPrefix`.
    pub image: Option<String>,
    /// The tags pushed.
    pub tags: Vec<String>,
    /// How many packages the image installs.
    pub packages: Option<u32>,
    /// When the last build finished (or started, while it runs).
    pub last_build: Option<String>,
    /// When the packages are next re-resolved: `None` without `rebuild.interval`.
    pub next_resolution: Option<NextResolution>,
}

/// When the packages are next re-resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextResolution {
    /// At this time (RFC 3339).
    At(String),
    /// As soon as the operator gets to it.
    Due,
}

impl ImageRow {
    /// The row of `ib` at `now`.
    pub fn of(ib: &ImageBuild, now: Timestamp) -> Self {
        let (state, reason, message) = state_of(ib);
        let status = ib.status.as_ref();
        let image = status.and_then(|s| s.pull_image.clone().or_else(|| s.latest_image.clone()));
        let last_build = status
            .and_then(|s| s.last_build.as_ref())
            .and_then(|b| b.completion_time.clone().or_else(|| b.start_time.clone()));
        let next_resolution = rebuild_interval(ib).map(|interval| {
            next_resolution(
                status.and_then(|s| s.last_resolved.as_deref()),
                interval,
                now,
            )
        });
        Self {
            namespace: ib.namespace().unwrap_or_default(),
            name: ib.name_any(),
            state,
            reason,
            message,
            repository: ib.spec.target.repository.clone(),
            image,
            tags: status.map(|s| s.tags.clone()).unwrap_or_default(),
            packages: status.and_then(|s| s.packages.as_ref()).map(|p| p.count),
            last_build,
            next_resolution,
        }
    }
}

/// The next re-resolution after `last` (RFC 3339) for `interval`.
fn next_resolution(last: Option<&str>, interval: Duration, now: Timestamp) -> NextResolution {
    match triggers::next_resolution(last, interval) {
        Some(next) if next > now => NextResolution::At(crate::status::format_time(next)),
        _ => NextResolution::Due,
    }
}

/// The filters of the image list, from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this state.
    pub state: Option<State>,
    /// Only rows whose name, namespace, repository, image, tags or reason contain this text
    /// (case-insensitive).
    pub text: Option<String>,
}

impl ListFilter {
    /// The filter of a query string's `namespace`, `state` and `q`; empty values mean "any".
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            namespace: get("namespace"),
            state: get("state").and_then(|s| State::parse(&s)),
            text: get("q").map(|q| q.to_lowercase()),
        }
    }

    /// Whether `row` passes.
    pub fn matches(&self, row: &ImageRow) -> bool {
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != row.namespace)
        {
            return false;
        }
        if self.state.is_some_and(|state| state != row.state) {
            return false;
        }
        let Some(text) = &self.text else {
            return true;
        };
        let contains = |field: &str| field.to_lowercase().contains(text.as_str());
        contains(&row.name)
            || contains(&row.namespace)
            || contains(&row.repository)
            || row.image.as_deref().is_some_and(contains)
            || row.reason.as_deref().is_some_and(contains)
            || row.tags.iter().any(|t| contains(t))
    }
}

/// How long a history entry's build took, when its start is known.
pub fn build_duration(entry: &HistoryEntry) -> Option<Duration> {
    let start = entry.start_time.as_deref()?.parse::<Timestamp>().ok()?;
    let end = entry.time.parse::<Timestamp>().ok()?;
    let seconds = end.as_second().checked_sub(start.as_second())?;
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// A duration as people read it: `45s`, `3m 12s`, `2h 5m`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestImageBuild;
    use securebuild_crds::conditions::Reason;

    fn now() -> Timestamp {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn states_follow_the_conditions() {
        assert_eq!(
            state_of(&TestImageBuild::new().build()),
            (State::Pending, None, None)
        );
        assert_eq!(
            state_of(&TestImageBuild::new().running(1, "app-1").build()),
            (
                State::Building,
                Some("Building".into()),
                Some("building".into())
            )
        );
        let failed = TestImageBuild::new()
            .failed(1, "app-1", Reason::ResolutionFailed)
            .build();
        let (state, reason, _) = state_of(&failed);
        assert_eq!(
            (state, reason.as_deref()),
            (State::Stalled, Some("ResolutionFailed"))
        );
        let built = TestImageBuild::new()
            .succeeded(1, "app-1", "sha256:lock")
            .build();
        assert_eq!(state_of(&built).0, State::Ready);
        // A running build whose Reconciling condition is not written yet is building too.
        let mut running = built;
        if let Some(record) = running.status.as_mut().and_then(|s| s.last_build.as_mut()) {
            record.outcome = BuildOutcome::Running;
        }
        assert_eq!(state_of(&running).0, State::Building);
    }

    #[test]
    fn next_resolution_is_last_plus_interval_or_due() {
        let interval = Duration::from_secs(6 * 3600);
        assert_eq!(
            next_resolution(Some("2026-12-07T10:00:00Z"), interval, now()),
            NextResolution::At("2026-12-07T16:00:00Z".into())
        );
        assert_eq!(
            next_resolution(Some("2026-12-07T05:00:00Z"), interval, now()),
            NextResolution::Due
        );
        assert_eq!(next_resolution(None, interval, now()), NextResolution::Due);
    }

    #[test]
    fn filters_by_namespace_state_and_text() {
        let row = ImageRow::of(&TestImageBuild::new().build(), now());
        let filter = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ListFilter::from_query(&pairs)
        };
        assert!(filter(&[]).matches(&row));
        assert!(filter(&[("namespace", ""), ("state", ""), ("q", " ")]).matches(&row));
        assert!(filter(&[("namespace", &row.namespace)]).matches(&row));
        assert!(!filter(&[("namespace", "other")]).matches(&row));
        assert!(filter(&[("state", "pending")]).matches(&row));
        assert!(!filter(&[("state", "ready")]).matches(&row));
        assert!(filter(&[("q", &row.name.to_uppercase())]).matches(&row));
        assert!(!filter(&[("q", "no-such-text")]).matches(&row));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h 5m");
    }
}
