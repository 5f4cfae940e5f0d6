//! Which finished builder Jobs to delete: the newest `successfulJobsHistoryLimit` succeeded
//! and `failedJobsHistoryLimit` failed Jobs are kept, as a CronJob keeps its Jobs.
//!
//! Pure: returns names; the controller deletes. Active Jobs are never chosen, and neither is a
//! Job the caller says the status has not recorded yet.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use crate::job::{JobState, job_state, newest_first};

/// The names of the Jobs to delete, oldest first, given the history limits. `keep` names a Job
/// that must stay whatever the limits say (the one whose result is not recorded yet).
pub fn jobs_to_delete(
    jobs: &[Job],
    successful_limit: u32,
    failed_limit: u32,
    keep: Option<&str>,
) -> Vec<String> {
    let mut sorted: Vec<&Job> = jobs.iter().collect();
    sorted.sort_by(|a, b| newest_first(*a, *b));
    let limit = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
    let (mut succeeded, mut failed) = (0usize, 0usize);
    let mut doomed = Vec::new();
    for job in sorted {
        let name = job.name_any();
        let (seen, allowed) = match job_state(job) {
            JobState::Active => continue,
            JobState::Succeeded => (&mut succeeded, limit(successful_limit)),
            JobState::Failed => (&mut failed, limit(failed_limit)),
        };
        *seen += 1;
        if *seen > allowed && keep != Some(name.as_str()) {
            doomed.push(name);
        }
    }
    doomed.reverse();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, TestJob};

    fn check(
        name: &str,
        jobs: &[Job],
        successful: u32,
        failed: u32,
        keep: Option<&str>,
        expected: &[&str],
    ) {
        assert_eq!(
            jobs_to_delete(jobs, successful, failed, keep),
            expected,
            "{name}"
        );
    }

    #[test]
    fn history_limits() {
        let ib = TestImageBuild::new().build();
        let ok = |name: &str, created: i64| {
            TestJob::for_build(&ib, name)
                .created(created)
                .succeeded()
                .build()
        };
        let bad = |name: &str, created: i64| {
            TestJob::for_build(&ib, name)
                .created(created)
                .failed("BackoffLimitExceeded")
                .build()
        };
        let active =
            |name: &str, created: i64| TestJob::for_build(&ib, name).created(created).build();
        let jobs = vec![
            ok("s1", 1),
            bad("f1", 2),
            ok("s2", 3),
            bad("f2", 4),
            ok("s3", 5),
            active("a1", 0),
            ok("s4", 6),
        ];

        check("defaults", &jobs, 3, 1, None, &["s1", "f1"]);
        check("keep all", &jobs, 10, 10, None, &[]);
        check(
            "keep none",
            &jobs,
            0,
            0,
            None,
            &["s1", "f1", "s2", "f2", "s3", "s4"],
        );
        check(
            "unrecorded job stays",
            &jobs,
            0,
            0,
            Some("s4"),
            &["s1", "f1", "s2", "f2", "s3"],
        );
        check(
            "active never",
            &[active("a1", 1), active("a2", 2)],
            0,
            0,
            None,
            &[],
        );
        check("empty", &[], 3, 1, None, &[]);
        // same creation time: the name breaks the tie
        check("tie", &[ok("b", 1), ok("a", 1)], 1, 1, None, &["a"]);
    }
}
