//! The console's routes against ImageBuilds in a cache: what each page shows, what it refuses,
//! and the headers every response carries.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt as _;
use securebuild_crds::ImageBuild;
use securebuild_crds::conditions::Reason;
use securebuild_crds::imagebuild::{
    ArtifactReference, AttestationReference, BuildOutcome, BuildReason, HistoryEntry,
    InstalledPackage, PackageChange, PlatformDigest,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::*;
use crate::fixtures::TestImageBuild;

fn installed(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        architectures: vec!["aarch64".into(), "x86_64".into()],
    }
}

/// `team/<name>`, built twice: the second build moved `go` from 1.25.7 to 1.25.8 and added
/// `tzdata`.
fn ready_image(name: &str) -> ImageBuild {
    let mut ib = TestImageBuild::new()
        .succeeded(2, &format!("{name}-2"), "sha256:lock2")
        .build();
    ib.metadata.name = Some(name.into());
    ib.metadata.resource_version = Some("7".into());
    let status = ib.status.as_mut().unwrap();
    let digest = format!("sha256:{}", "a".repeat(64));
    status.latest_image = Some(format!("registry.example:5000/team/{name}@{digest}"));
    status.tags = vec!["latest".into(), "1.25.8".into()];
    status.platforms = vec![PlatformDigest {
        architecture: "amd64".into(),
        variant: None,
        digest: format!("sha256:{}", "b".repeat(64)),
    }];
    status.signature = Some(ArtifactReference {
        reference: format!(
            "registry.example:5000/team/{name}:sha256-{}.sig",
            "a".repeat(64)
        ),
        digest: format!("sha256:{}", "c".repeat(64)),
    });
    status.attestations = vec![AttestationReference {
        predicate_type: "https://spdx.dev/Document".into(),
        reference: format!(
            "registry.example:5000/team/{name}:sha256-{}.att",
            "b".repeat(64)
        ),
        digest: format!("sha256:{}", "d".repeat(64)),
    }];
    let packages = status.packages.as_mut().unwrap();
    packages.installed = vec![
        installed("busybox", "1.36.1-r2"),
        installed("go", "1.25.8-r0"),
        installed("tzdata", "2026a-r0"),
    ];
    status.history = vec![
        HistoryEntry {
            digest: Some(digest),
            reason: BuildReason::PackageUpdate,
            outcome: BuildOutcome::Succeeded,
            time: "2026-12-07T10:05:00Z".into(),
            lock_digest: Some("sha256:lock2".into()),
            job: Some(format!("{name}-2")),
            start_time: Some("2026-12-07T10:03:48Z".into()),
            failure: None,
            package_changes_omitted: None,
            package_changes: Some(vec![
                PackageChange {
                    name: "go".into(),
                    from: Some("1.25.7-r0".into()),
                    to: Some("1.25.8-r0".into()),
                    architectures: vec!["aarch64".into(), "x86_64".into()],
                },
                PackageChange {
                    name: "tzdata".into(),
                    from: None,
                    to: Some("2026a-r0".into()),
                    architectures: vec!["aarch64".into(), "x86_64".into()],
                },
            ]),
        },
        HistoryEntry {
            digest: Some(format!("sha256:{}", "e".repeat(64))),
            reason: BuildReason::SpecChanged,
            outcome: BuildOutcome::Succeeded,
            time: "2026-12-06T09:00:00Z".into(),
            lock_digest: Some("sha256:lock1".into()),
            job: Some(format!("{name}-1")),
            start_time: None,
            failure: None,
            package_changes: None,
            package_changes_omitted: None,
        },
    ];
    ib
}

fn stalled_image(name: &str) -> ImageBuild {
    let mut ib = TestImageBuild::new()
        .failed(1, &format!("{name}-1"), Reason::ResolutionFailed)
        .build();
    ib.metadata.name = Some(name.into());
    ib.metadata.namespace = Some("other".into());
    ib
}

fn state_with(images: Vec<ImageBuild>) -> ConsoleState {
    ConsoleState {
        watched: WatchedImageBuilds::from_objects(images),
        sbom: None,
        shutdown: CancellationToken::new(),
    }
}

async fn request(
    state: &ConsoleState,
    method: Method,
    uri: &str,
) -> (StatusCode, String, Response) {
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 16 << 20).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    (status, text, Response::from_parts(parts, Body::empty()))
}

async fn get(state: &ConsoleState, uri: &str) -> (StatusCode, String) {
    let (status, body, _) = request(state, Method::GET, uri).await;
    (status, body)
}

#[tokio::test]
async fn the_list_shows_every_image_and_filters() {
    let state = state_with(vec![ready_image("app"), stalled_image("broken")]);
    let (status, html) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 of 2 images"), "{html}");
    assert!(html.contains("<a id=\"image:team/app\" href=\"/images/team/app\">team/app</a>"));
    assert!(
        html.contains(
            "<a id=\"image:other/broken\" href=\"/images/other/broken\">other/broken</a>"
        )
    );
    assert!(html.contains("data-state=\"ready\""));
    assert!(html.contains("data-state=\"stalled\""));
    assert!(
        html.contains("ResolutionFailed"),
        "the stalled reason is shown"
    );
    assert!(html.contains(&format!(
        "data-copy=\"registry.example:5000/team/app@sha256:{}\"",
        "a".repeat(64)
    )));

    let (_, html) = get(&state, "/?state=stalled").await;
    assert!(html.contains("1 of 2 images"));
    assert!(!html.contains("team/app</a>"));
    let (_, html) = get(&state, "/?namespace=team&state=&q=").await;
    assert!(html.contains("1 of 2 images"));
    assert!(html.contains("<option selected>team</option>"));
    let (_, html) = get(&state, "/?q=BROK").await;
    assert!(html.contains("1 of 2 images"));
    assert!(html.contains("other/broken</a>"));
}

#[tokio::test]
async fn one_image_shows_history_diffs_and_verification() {
    let state = state_with(vec![ready_image("app")]);
    let (status, html) = get(&state, "/images/team/app").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>team/app</h1>"));
    assert!(html.contains("Package update · Succeeded"));
    assert!(html.contains("took 1m 12s"));
    assert!(html.contains(
        "<tr data-package=\"go\" data-change=\"upgraded\"><th scope=\"row\">go</th>\
         <td class=\"upgraded\">upgraded</td><td><code>1.25.7-r0</code></td><td><code>1.25.8-r0</code></td>"
    ));
    assert!(html.contains("data-package=\"tzdata\" data-change=\"added\""));
    assert!(
        html.contains("The first build of this image."),
        "the first build has nothing to compare with"
    );
    assert!(!html.contains("Package changes unknown"));
    let image = format!("registry.example:5000/team/app@sha256:{}", "a".repeat(64));
    assert!(html.contains(&format!(
        "cosign verify --key cosign.pub --insecure-ignore-tlog {image}"
    )));
    assert!(html.contains(&format!(
        "cosign verify-attestation --key cosign.pub --insecure-ignore-tlog --type spdxjson {image}"
    )));
    assert!(html.contains(&format!(
        "securebuild verify --key cosign.pub --attestation spdx {image}"
    )));
    assert!(html.contains("href=\"/images/team/app/sbom/amd64.spdx.json\""));
    assert!(html.contains("href=\"/images/team/app/sbom/amd64.cdx.json\""));
    assert!(html.contains("3 package versions"));

    let (status, html) = get(&state, "/images/team/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("No ImageBuild team/missing is watched by this operator."));
}

#[tokio::test]
async fn failures_show_their_message_and_log() {
    let mut ib = stalled_image("broken");
    let record = ib
        .status
        .as_mut()
        .and_then(|s| s.last_build.as_mut())
        .unwrap();
    record.failure = Some(securebuild_crds::imagebuild::BuildFailure {
        reason: "ResolutionFailed".into(),
        message: "no package `nope` <in any repository>".into(),
        log_snippet: Some("resolving...\nerror: nope".into()),
    });
    let state = state_with(vec![ib]);
    let (_, html) = get(&state, "/images/other/broken").await;
    assert!(html.contains("<h2 id=\"failure\">Last failure</h2>"));
    assert!(html.contains("no package `nope` &lt;in any repository&gt;"));
    assert!(html.contains("resolving...\nerror: nope</pre>"));
}

#[tokio::test]
async fn hostile_text_is_escaped_everywhere() {
    let mut ib = ready_image("app");
    let status = ib.status.as_mut().unwrap();
    status.tags = vec!["<img src=x onerror=alert(1)>".into()];
    status.packages.as_mut().unwrap().installed[0].version = "\"><script>x</script>".into();
    let state = state_with(vec![ib]);
    for uri in [
        "/",
        "/images/team/app",
        "/packages?name=busybox",
        "/?q=%3Cscript%3E",
        "/packages?name=%3Cb%3E&range=%3Cx",
    ] {
        let (_, html) = get(&state, uri).await;
        assert!(!html.contains("<script>x"), "{uri}");
        assert!(!html.contains("<img src=x"), "{uri}");
        assert!(!html.contains("<b>"), "{uri}");
    }
}

#[tokio::test]
async fn package_search_finds_images_by_version_range() {
    let mut old = ready_image("old");
    old.status
        .as_mut()
        .unwrap()
        .packages
        .as_mut()
        .unwrap()
        .installed = vec![installed("go", "1.25.7-r0")];
    let state = state_with(vec![ready_image("app"), old, stalled_image("broken")]);
    let (_, html) = get(&state, "/packages?name=go&range=%3C1.25.8").await;
    assert!(
        html.contains("1 image installs a matching package."),
        "{html}"
    );
    assert!(html.contains("data-image=\"team/old\""));
    assert!(!html.contains("data-image=\"team/app\""));
    let (_, html) = get(&state, "/packages?name=go~1.25").await;
    assert!(html.contains("2 images install a matching package."));
    let (_, html) = get(&state, "/packages?name=go&range=1.25").await;
    assert!(html.contains("id=\"search-error\""));
    assert!(html.contains("is not an apk version constraint"));
    let (_, html) = get(&state, "/packages").await;
    assert!(html.contains("Enter a package name"));
}

#[tokio::test]
async fn nothing_can_be_changed_and_every_response_is_locked_down() {
    let state = state_with(vec![ready_image("app")]);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let (status, _, _) = request(&state, method.clone(), "/images/team/app").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let (status, _, response) = request(&state, Method::GET, "/").await;
    assert_eq!(status, StatusCode::OK);
    let headers = response.headers();
    assert_eq!(
        headers[header::CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let (status, css, response) = request(&state, Method::GET, html::STYLESHEET_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert!(css.contains(".state-ready"));
    let (status, _) = get(&state, html::SCRIPT_PATH).await;
    assert_eq!(status, StatusCode::OK);
    let (status, html) = get(&state, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no page at /nope."));
    let (status, text) = get(&state, "/images/team/app/sbom/amd64.spdx.json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let (status, text) = get(&state, "/images/team/app/sbom/amd64.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("PLATFORM.spdx.json"));
    let (status, _) = get(&state, "/cosign.pub").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_event_stream_is_not_buffered_by_proxies() {
    let state = state_with(vec![ready_image("app")]);
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .uri("/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    state.shutdown.cancel();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("event: update\ndata: "), "{text:?}");
}

#[tokio::test]
async fn an_idle_replica_says_so() {
    let state = ConsoleState {
        watched: WatchedImageBuilds::default(),
        sbom: None,
        shutdown: CancellationToken::new(),
    };
    let (_, html) = get(&state, "/").await;
    assert!(html.contains("id=\"inactive\""));
    assert!(html.contains("0 of 0 images"));
}

#[tokio::test]
async fn live_updates_follow_the_caches() {
    let watched = WatchedImageBuilds::from_objects([ready_image("app")]);
    let shutdown = CancellationToken::new();
    let mut events = Box::pin(live::updates(watched.clone(), shutdown.clone()));
    let first = tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let version = pages::version_of(&watched.snapshot());
    assert!(format!("{first:?}").contains(&version), "{first:?}");

    // A change in the caches (a new store, as after a restart) is the next event.
    let mut changed = ready_image("app");
    changed.metadata.resource_version = Some("8".into());
    let other = WatchedImageBuilds::from_objects([changed]);
    let stores = other.stores_for_tests();
    watched.replace(stores);
    let next = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let new_version = pages::version_of(&watched.snapshot());
    assert_ne!(new_version, version);
    assert!(format!("{next:?}").contains(&new_version), "{next:?}");

    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the stream ends at shutdown");
}

/// The WCAG 2 contrast ratio of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |hex: &str| {
        let channel = |i: usize| {
            let value =
                f64::from(u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
            if value <= 0.03928 {
                value / 12.92
            } else {
                ((value + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn every_text_colour_keeps_wcag_aa_contrast() {
    let variable = |name: &str| {
        let start = STYLESHEET
            .find(&format!("--{name}:"))
            .unwrap_or_else(|| panic!("--{name} in the stylesheet"));
        let value = STYLESHEET[start..].split_once(':').unwrap().1;
        value.split_once(';').unwrap().0.trim().to_string()
    };
    let pairs = [
        ("fg", "bg"),
        ("fg", "panel"),
        ("muted", "bg"),
        ("muted", "panel"),
        ("link", "bg"),
        ("link", "panel"),
        ("ready-fg", "ready-bg"),
        ("building-fg", "building-bg"),
        ("stalled-fg", "stalled-bg"),
        ("pending-fg", "pending-bg"),
        ("ready-fg", "bg"),
        ("stalled-fg", "bg"),
    ];
    for (text, background) in pairs {
        let ratio = contrast(&variable(text), &variable(background));
        assert!(
            ratio >= 4.5,
            "--{text} on --{background}: {ratio:.2}:1 is below 4.5:1"
        );
    }
    // The focus outline stands out against the page (WCAG 1.4.11: 3:1).
    assert!(contrast(&variable("focus"), &variable("bg")) >= 3.0);
}
