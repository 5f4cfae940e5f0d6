//! Console render time: the image list of 1,000 ImageBuilds (the target: under 200 ms of
//! server time), one image's page, and a package search across all of them, each rendered from
//! a watch cache holding 1,000 ImageBuilds with realistic statuses (3 namespaces, 40 installed
//! packages on two architectures, 10 history entries with package changes, a few stalled and
//! building).
//!
//! The baseline, measured in the same run, is serializing the same 1,000 objects to JSON (what
//! the API server does for `kubectl get imagebuilds -A -o json`), so the ratios compare the
//! console with the cost of merely listing the objects. It prints medians and ratios and asserts
//! nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use securebuild_crds::conditions::{ConditionType, Reason, set_condition};
use securebuild_crds::imagebuild::{
    ArtifactReference, AttestationReference, BuildOutcome, BuildReason, BuildRecord, HistoryEntry,
    ImageBuildSpec, ImageBuildStatus, InstalledPackage, PackageChange, PackageSummary,
    PlatformDigest, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::console::model::ListFilter;
use securebuild_operator::console::pages::{
    Site, image_page, images_page, packages_page, version_of,
};
use securebuild_operator::watched::WatchedImageBuilds;

const IMAGE_BUILDS: usize = 1000;
const PACKAGES: usize = 40;
const HISTORY: usize = 10;
const ROUNDS: usize = 30;
const TARGET: Duration = Duration::from_millis(200);

fn digest(seed: usize, salt: char) -> String {
    format!("sha256:{:0>63}{salt}", seed)
}

fn image_build(index: usize, now: Timestamp) -> ImageBuild {
    let image = ImageConfiguration::from_yaml(
        "contents:\n  repositories: [https://packages.example.com/os]\n  keyring: [https://packages.example.com/os/key.rsa.pub]\n  packages: [base, hello]\narchs: [x86_64, aarch64]\n",
    )
    .unwrap();
    let namespace = ["team-a", "team-b", "platform"][index % 3];
    let spec = ImageBuildSpec {
        image,
        target: Target {
            repository: format!("registry.example.com/{namespace}/app-{index}"),
            tags: vec!["latest".into(), "1.25.8".into()],
            push_secret_ref: None,
        },
        ..ImageBuildSpec::default()
    };
    let mut ib = ImageBuild::new(&format!("app-{index:04}"), spec);
    ib.metadata.namespace = Some(namespace.into());
    ib.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
    ib.metadata.resource_version = Some(format!("{}", 1000 + index));
    ib.metadata.generation = Some(1);
    ib.spec.rebuild.interval = Some("6h".into());
    let archs = vec!["aarch64".to_string(), "x86_64".to_string()];
    let installed: Vec<InstalledPackage> = (0..PACKAGES)
        .map(|p| InstalledPackage {
            name: format!("package-{p:02}"),
            version: format!("1.{}.{}-r{}", p % 7, index % 5, p % 3),
            architectures: archs.clone(),
        })
        .collect();
    let history = (0..HISTORY)
        .map(|h| HistoryEntry {
            digest: Some(digest(index * 100 + h, 'a')),
            reason: if h % 3 == 0 {
                BuildReason::SpecChanged
            } else {
                BuildReason::PackageUpdate
            },
            outcome: BuildOutcome::Succeeded,
            time: format!("2026-12-{:02}T10:05:00Z", 1 + h % 28),
            lock_digest: Some(digest(index * 100 + h, 'd')),
            job: Some(format!("app-{index:04}-{h}")),
            start_time: Some(format!("2026-12-{:02}T10:03:48Z", 1 + h % 28)),
            failure: None,
            package_changes_omitted: None,
            package_changes: Some(
                (0..3)
                    .map(|c| PackageChange {
                        name: format!("package-{:02}", (h + c) % PACKAGES),
                        from: Some(format!("1.{c}.0-r0")),
                        to: Some(format!("1.{c}.1-r0")),
                        architectures: archs.clone(),
                    })
                    .collect(),
            ),
        })
        .collect();
    let repository = format!("registry.example.com/{namespace}/app-{index}");
    let index_digest = digest(index, 'a');
    let mut status = ImageBuildStatus {
        observed_generation: Some(1),
        latest_image: Some(format!("{repository}@{index_digest}")),
        digest: Some(index_digest.clone()),
        platforms: ["amd64", "arm64"]
            .iter()
            .enumerate()
            .map(|(i, arch)| PlatformDigest {
                architecture: (*arch).into(),
                variant: None,
                digest: digest(index * 10 + i, 'b'),
            })
            .collect(),
        tags: vec!["latest".into(), "1.25.8".into()],
        packages: Some(PackageSummary {
            count: u32::try_from(PACKAGES).unwrap(),
            lock_digest: digest(index, 'd'),
            installed,
        }),
        signature: Some(ArtifactReference {
            reference: format!("{repository}:{}.sig", index_digest.replacen(':', "-", 1)),
            digest: digest(index, 'c'),
        }),
        attestations: vec![AttestationReference {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            reference: format!("{repository}:{}.att", index_digest.replacen(':', "-", 1)),
            digest: digest(index, 'e'),
        }],
        last_build: Some(BuildRecord {
            job: format!("app-{index:04}-0"),
            reason: BuildReason::PackageUpdate,
            generation: 1,
            outcome: if index % 50 == 7 {
                BuildOutcome::Running
            } else {
                BuildOutcome::Succeeded
            },
            start_time: Some("2026-12-07T10:03:48Z".into()),
            completion_time: Some("2026-12-07T10:05:00Z".into()),
            failure: None,
        }),
        history,
        last_resolved: Some("2026-12-07T10:00:00Z".into()),
        ..ImageBuildStatus::default()
    };
    let stalled = index % 40 == 3;
    set_condition(
        &mut status.conditions,
        ConditionType::Ready,
        !stalled,
        if stalled {
            Reason::ResolutionFailed
        } else {
            Reason::Succeeded
        },
        if stalled {
            "no package `nope` in any repository"
        } else {
            "built"
        },
        Some(1),
        now,
    );
    if stalled {
        set_condition(
            &mut status.conditions,
            ConditionType::Stalled,
            true,
            Reason::ResolutionFailed,
            "no package `nope` in any repository",
            Some(1),
            now,
        );
    }
    ib.status = Some(status);
    ib
}

/// The median of `ROUNDS` runs of `work`, and the size of what it returned.
fn median(mut work: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        size = std::hint::black_box(work());
        times.push(started.elapsed());
    }
    times.sort();
    (times[ROUNDS / 2], size)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let objects: Vec<ImageBuild> = (0..IMAGE_BUILDS).map(|i| image_build(i, now)).collect();
    let watched = WatchedImageBuilds::from_objects(objects);
    let snapshot = watched.snapshot();
    assert_eq!(snapshot.len(), IMAGE_BUILDS);

    let (baseline, json_bytes) = median(|| {
        let items: Vec<&ImageBuild> = snapshot.iter().map(|ib| ib.as_ref()).collect();
        serde_json::to_vec(&items).unwrap().len()
    });
    let all = ListFilter::default();
    let (list, list_bytes) = median(|| images_page(&watched.snapshot(), &all, true, now).len());
    let filtered = ListFilter {
        text: Some("app-09".into()),
        ..ListFilter::default()
    };
    let (list_filtered, _) =
        median(|| images_page(&watched.snapshot(), &filtered, true, now).len());
    let site = Site { signs: true };
    let (one, one_bytes) = median(|| {
        let snapshot = watched.snapshot();
        let version = version_of(&snapshot);
        image_page(&snapshot[IMAGE_BUILDS / 2], &version, &site, now).len()
    });
    let (search, _) =
        median(|| packages_page(&watched.snapshot(), "package-0*", ">=1.2.0 <1.5").len());

    println!(
        "console render, {IMAGE_BUILDS} ImageBuilds ({PACKAGES} packages, {HISTORY} history entries each), median of {ROUNDS}"
    );
    println!(
        "  baseline: the objects as JSON        {:>8.2} ms ({json_bytes} bytes)",
        ms(baseline)
    );
    let row = |name: &str, took: Duration, extra: String| {
        println!(
            "  {name:<36} {:>8.2} ms  {:>5.2}x baseline{extra}",
            ms(took),
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    row(
        "image list, all 1,000",
        list,
        format!(
            "  ({list_bytes} bytes; target < {} ms: {})",
            TARGET.as_millis(),
            if list < TARGET { "met" } else { "NOT met" }
        ),
    );
    row("image list, text filter", list_filtered, String::new());
    row("one image", one, format!("  ({one_bytes} bytes)"));
    row("package search across all", search, String::new());
}
