//! The console's pages as server-rendered HTML: the image list, one image (conditions,
//! platforms, signature and attestations with the commands that verify them, SBOM downloads,
//! the build history with each build's package changes, the installed packages), and the
//! package search.
//!
//! Pure: every function takes the ImageBuilds as the watch cache holds them and returns the
//! page. The part of a page that follows the cluster sits in `<div id="live">`, which the
//! script replaces when the server says the caches changed.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use securebuild_builder::apk::version;
use securebuild_builder::attest::provenance::SLSA_PROVENANCE_V1;
use securebuild_builder::attest::sbom::SPDX_PREDICATE_TYPE;
use securebuild_crds::ImageBuild;
use securebuild_crds::imagebuild::{
    BuildOutcome, BuildReason, HistoryEntry, ImageBuildStatus, PackageChange,
};

use super::html::{Esc, Section, copyable, image_href, page, query_value, short_digest, time};
use super::model::{ImageRow, ListFilter, NextResolution, State, build_duration, human_duration};
use super::sbom::{platform_file_name, spdx_attestation};
use super::search::{PackageQuery, images_without_list, search};
use crate::resolver::platform_name;

/// What the pages say about the operator itself.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// Whether the operator signs (a signing key is configured): the public key is then at
    /// `/cosign.pub`.
    pub signs: bool,
}

/// The `data-version` of the live region: changes whenever any watched ImageBuild changes.
pub fn version_of(images: &[Arc<ImageBuild>]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for ib in images {
        hasher.update(ib.metadata.uid.as_deref().unwrap_or_default());
        hasher.update([0]);
        hasher.update(ib.metadata.resource_version.as_deref().unwrap_or_default());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

fn state_badge(state: State) -> String {
    format!(
        "<span class=\"state state-{}\">{}</span>",
        state.as_str(),
        state.label()
    )
}

fn reason_label(reason: BuildReason) -> &'static str {
    match reason {
        BuildReason::SpecChanged => "Spec change",
        BuildReason::Manual => "Manual rebuild",
        BuildReason::PackageUpdate => "Package update",
        BuildReason::IncludeChanged => "Included configuration changed",
    }
}

fn outcome_label(outcome: BuildOutcome) -> &'static str {
    match outcome {
        BuildOutcome::Running => "Running",
        BuildOutcome::Succeeded => "Succeeded",
        BuildOutcome::Failed => "Failed",
    }
}

fn next_resolution(next: Option<&NextResolution>) -> String {
    match next {
        None => "<span class=\"muted\">on spec change</span>".to_string(),
        Some(NextResolution::Due) => "due now".to_string(),
        Some(NextResolution::At(at)) => time(at),
    }
}

/// The image list with `filter` applied.
pub fn images_page(
    images: &[Arc<ImageBuild>],
    filter: &ListFilter,
    active: bool,
    now: Timestamp,
) -> String {
    let rows: Vec<ImageRow> = images.iter().map(|ib| ImageRow::of(ib, now)).collect();
    let namespaces: BTreeSet<&str> = rows.iter().map(|r| r.namespace.as_str()).collect();
    let mut body = String::with_capacity(1024 + rows.len() * 900);
    body.push_str("<h1>Images</h1>\n");
    body.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Filter images\">\n",
    );
    body.push_str(
        "<label for=\"f-namespace\">Namespace<select id=\"f-namespace\" name=\"namespace\">\
         <option value=\"\">All namespaces</option>",
    );
    for namespace in &namespaces {
        let selected = filter.namespace.as_deref() == Some(*namespace);
        let _ = write!(
            body,
            "<option{}>{}</option>",
            if selected { " selected" } else { "" },
            Esc(namespace)
        );
    }
    body.push_str(
        "</select></label>\n<label for=\"f-state\">State<select id=\"f-state\" name=\"state\">\
         <option value=\"\">All states</option>",
    );
    for state in State::ALL {
        let _ = write!(
            body,
            "<option value=\"{}\"{}>{}</option>",
            state.as_str(),
            if filter.state == Some(state) {
                " selected"
            } else {
                ""
            },
            state.label()
        );
    }
    let _ = writeln!(
        body,
        "</select></label>\n<label for=\"f-q\">Name, repository, tag or reason\
         <input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\"></label>\n\
         <button type=\"submit\">Filter</button>\n</form>",
        Esc(filter.text.as_deref().unwrap_or_default())
    );
    let _ = writeln!(
        body,
        "<div id=\"live\" data-version=\"{}\">",
        version_of(images)
    );
    if !active {
        body.push_str(
            "<p class=\"error\" id=\"inactive\">This operator replica does not watch ImageBuilds \
             yet (it is starting), so it has none to show. Reload in a moment.</p>\n",
        );
    }
    let shown: Vec<&ImageRow> = rows.iter().filter(|row| filter.matches(row)).collect();
    let _ = writeln!(
        body,
        "<p class=\"count\" id=\"image-count\">{} of {} images</p>",
        shown.len(),
        rows.len()
    );
    body.push_str(
        "<table id=\"images\">\n<caption class=\"visually-hidden\">ImageBuilds</caption>\n\
         <thead><tr><th scope=\"col\">ImageBuild</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Image</th><th scope=\"col\">Tags</th><th scope=\"col\">Packages</th>\
         <th scope=\"col\">Last build</th><th scope=\"col\">Next re-resolution</th></tr></thead>\n<tbody>\n",
    );
    for row in shown {
        image_row(&mut body, row);
    }
    body.push_str("</tbody>\n</table>\n</div>\n");
    page("Images", Section::Images, &body)
}

fn image_row(body: &mut String, row: &ImageRow) {
    let _ = write!(
        body,
        "<tr data-namespace=\"{ns}\" data-name=\"{name}\" data-state=\"{state}\">\
         <th scope=\"row\"><a id=\"image:{ns}/{name}\" href=\"{href}\">{ns}/{name}</a></th><td>{badge}",
        ns = Esc(&row.namespace),
        name = Esc(&row.name),
        state = row.state.as_str(),
        href = image_href(&row.namespace, &row.name),
        badge = state_badge(row.state),
    );
    if row.state != State::Ready
        && let Some(reason) = &row.reason
    {
        let _ = write!(
            body,
            "<span class=\"reason\" title=\"{}\">{}</span>",
            Esc(row.message.as_deref().unwrap_or_default()),
            Esc(reason)
        );
    }
    body.push_str("</td><td>");
    match &row.image {
        Some(image) => body.push_str(&copyable(image, &format!("image of {}", row.name))),
        None => {
            let _ = write!(
                body,
                "<span class=\"muted\">{} (not built yet)</span>",
                Esc(&row.repository)
            );
        }
    }
    body.push_str("</td><td>");
    for (i, tag) in row.tags.iter().enumerate() {
        if i > 0 {
            body.push_str(", ");
        }
        let _ = write!(body, "<code class=\"tag\">{}</code>", Esc(tag));
    }
    body.push_str("</td><td>");
    if let Some(count) = row.packages {
        let _ = write!(body, "{count}");
    }
    body.push_str("</td><td>");
    if let Some(last) = &row.last_build {
        body.push_str(&time(last));
    }
    body.push_str("</td><td>");
    body.push_str(&next_resolution(row.next_resolution.as_ref()));
    body.push_str("</td></tr>\n");
}

/// One image's page.
pub fn image_page(ib: &ImageBuild, versions: &str, site: &Site, now: Timestamp) -> String {
    let row = ImageRow::of(ib, now);
    let title = format!("{}/{}", row.namespace, row.name);
    let status = ib.status.clone().unwrap_or_default();
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<nav aria-label=\"Breadcrumb\" class=\"muted\"><a href=\"/\">Images</a> / {}</nav>\n\
         <div id=\"live\" data-version=\"{}\">\n<h1>{}</h1>\n<p id=\"state\">{}",
        Esc(&title),
        Esc(versions),
        Esc(&title),
        state_badge(row.state)
    );
    if let Some(reason) = &row.reason {
        let _ = write!(body, " <strong>{}</strong>", Esc(reason));
    }
    if let Some(message) = &row.message {
        let _ = write!(body, ": {}", Esc(message));
    }
    body.push_str("</p>\n");

    summary(&mut body, ib, &row, &status);
    conditions(&mut body, &status);
    platforms(&mut body, &row, &status);
    verification(&mut body, &status, site);
    last_failure(&mut body, &status);
    history(&mut body, &status, ib.spec.rebuild.status_history_limit);
    installed(&mut body, &status);
    body.push_str("</div>\n");
    page(&title, Section::Images, &body)
}

fn summary(body: &mut String, ib: &ImageBuild, row: &ImageRow, status: &ImageBuildStatus) {
    body.push_str("<h2 id=\"image\">Image</h2>\n<dl class=\"facts\">\n");
    let _ = writeln!(
        body,
        "<dt>Repository</dt><dd><code>{}</code></dd>",
        Esc(&ib.spec.target.repository)
    );
    if let Some(latest) = &status.latest_image {
        let _ = writeln!(
            body,
            "<dt>Pushed as</dt><dd>{}</dd>",
            copyable(latest, "pushed image reference")
        );
    }
    if let Some(pull) = &status.pull_image {
        let _ = writeln!(
            body,
            "<dt>Pull as</dt><dd>{}</dd>",
            copyable(pull, "pull reference")
        );
    }
    if !status.tags.is_empty() {
        body.push_str("<dt>Tags</dt><dd>");
        for (i, tag) in status.tags.iter().enumerate() {
            if i > 0 {
                body.push_str(", ");
            }
            let _ = write!(body, "<code class=\"tag\">{}</code>", Esc(tag));
        }
        body.push_str("</dd>\n");
    }
    if let Some(packages) = &status.packages {
        let _ = writeln!(
            body,
            "<dt>Packages</dt><dd>{} per architecture, lock {}</dd>",
            packages.count,
            short_digest(&packages.lock_digest)
        );
    }
    if let Some(last) = &row.last_build {
        let _ = writeln!(body, "<dt>Last build</dt><dd>{}</dd>", time(last));
    }
    let _ = writeln!(
        body,
        "<dt>Next re-resolution</dt><dd>{}</dd>",
        next_resolution(row.next_resolution.as_ref())
    );
    if let Some(configuration) = &status.configuration {
        body.push_str("<dt>Included configurations</dt><dd>");
        for (i, include) in configuration.includes.iter().enumerate() {
            if i > 0 {
                body.push_str(", ");
            }
            let _ = write!(
                body,
                "<code>{}/{}</code>",
                Esc(&include.config_map),
                Esc(&include.key)
            );
        }
        body.push_str("</dd>\n");
    }
    body.push_str("</dl>\n");
}

fn conditions(body: &mut String, status: &ImageBuildStatus) {
    body.push_str(
        "<h2 id=\"conditions\">Conditions</h2>\n<table>\n<thead><tr><th scope=\"col\">Type</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Reason</th><th scope=\"col\">Message</th>\
         <th scope=\"col\">Since</th></tr></thead>\n<tbody>\n",
    );
    for condition in &status.conditions {
        let since = condition.last_transition_time.0.to_string();
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&condition.type_),
            Esc(&condition.status),
            Esc(&condition.reason),
            Esc(&condition.message),
            time(&since)
        );
    }
    body.push_str("</tbody>\n</table>\n");
}

fn platforms(body: &mut String, row: &ImageRow, status: &ImageBuildStatus) {
    if status.platforms.is_empty() {
        return;
    }
    body.push_str(
        "<h2 id=\"platforms\">Platforms</h2>\n<table>\n<thead><tr><th scope=\"col\">Platform</th>\
         <th scope=\"col\">Manifest</th><th scope=\"col\">SBOM</th></tr></thead>\n<tbody>\n",
    );
    let base = image_href(&row.namespace, &row.name);
    for platform in &status.platforms {
        let name = platform_name(&platform.architecture, platform.variant.as_deref());
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>",
            Esc(&name),
            short_digest(&platform.digest)
        );
        if spdx_attestation(status, &platform.digest).is_some() {
            let file = platform_file_name(platform);
            let _ = write!(
                body,
                "<a href=\"{base}/sbom/{f}.spdx.json\" download>SPDX</a> · \
                 <a href=\"{base}/sbom/{f}.cdx.json\" download>CycloneDX</a>",
                f = query_value(&file),
            );
        } else {
            body.push_str("<span class=\"muted\">none attached</span>");
        }
        body.push_str("</td></tr>\n");
    }
    body.push_str("</tbody>\n</table>\n");
}

fn verification(body: &mut String, status: &ImageBuildStatus, site: &Site) {
    body.push_str("<h2 id=\"verification\">Signature and attestations</h2>\n");
    let Some(signature) = &status.signature else {
        body.push_str("<p>Not signed.</p>\n");
        return;
    };
    let _ = writeln!(
        body,
        "<dl class=\"facts\"><dt>Signature</dt><dd><code>{}</code> ({})</dd></dl>",
        Esc(&signature.reference),
        short_digest(&signature.digest)
    );
    if !status.attestations.is_empty() {
        body.push_str(
            "<table>\n<caption>Attestations</caption>\n<thead><tr><th scope=\"col\">Predicate</th>\
             <th scope=\"col\">Attached to</th><th scope=\"col\">Envelope</th></tr></thead>\n<tbody>\n",
        );
        for attestation in &status.attestations {
            let _ = writeln!(
                body,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                Esc(&attestation.predicate_type),
                Esc(&attestation.reference),
                short_digest(&attestation.digest)
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    let image = status
        .pull_image
        .as_deref()
        .or(status.latest_image.as_deref())
        .unwrap_or_default();
    let provenance = status
        .attestations
        .iter()
        .any(|a| a.predicate_type == SLSA_PROVENANCE_V1);
    let sbom = status
        .attestations
        .iter()
        .any(|a| a.predicate_type == SPDX_PREDICATE_TYPE);
    if site.signs {
        body.push_str(
            "<p>The operator's public key: <a href=\"/cosign.pub\" download>cosign.pub</a>.</p>\n",
        );
    }
    let mut cosign = format!("cosign verify --key cosign.pub --insecure-ignore-tlog {image}");
    let mut securebuild = format!("securebuild verify --key cosign.pub {image}");
    if provenance {
        let _ = write!(
            cosign,
            "\ncosign verify-attestation --key cosign.pub --insecure-ignore-tlog --type slsaprovenance1 {image}"
        );
        securebuild = securebuild.replace(
            " --key cosign.pub ",
            " --key cosign.pub --attestation slsaprovenance ",
        );
    }
    if sbom {
        let _ = write!(
            cosign,
            "\ncosign verify-attestation --key cosign.pub --insecure-ignore-tlog --type spdxjson {image}"
        );
        securebuild = securebuild.replace(
            " --key cosign.pub ",
            " --key cosign.pub --attestation spdx ",
        );
    }
    let _ = writeln!(
        body,
        "<h3>Verify with cosign</h3>\n<pre id=\"verify-cosign\"><code data-copy=\"{c}\" data-copy-label=\"cosign commands\">{c}</code></pre>\n\
         <h3>Verify with securebuild</h3>\n<pre id=\"verify-securebuild\"><code data-copy=\"{s}\" data-copy-label=\"securebuild command\">{s}</code></pre>",
        c = Esc(&cosign),
        s = Esc(&securebuild)
    );
}

fn last_failure(body: &mut String, status: &ImageBuildStatus) {
    let Some(failure) = status.last_build.as_ref().and_then(|b| b.failure.as_ref()) else {
        return;
    };
    let _ = writeln!(
        body,
        "<h2 id=\"failure\">Last failure</h2>\n<p class=\"error\"><strong>{}</strong>: {}</p>",
        Esc(&failure.reason),
        Esc(&failure.message)
    );
    if let Some(log) = &failure.log_snippet {
        let _ = writeln!(
            body,
            "<pre aria-label=\"The end of the builder's log\">{}</pre>",
            Esc(log)
        );
    }
}

fn history(body: &mut String, status: &ImageBuildStatus, history_limit: u32) {
    body.push_str("<h2 id=\"history\">Build history</h2>\n<ol class=\"timeline\">\n");
    if let Some(running) = status
        .last_build
        .as_ref()
        .filter(|b| b.outcome == BuildOutcome::Running)
    {
        let _ = write!(
            body,
            "<li class=\"outcome-Running\"><h3>{} <span class=\"muted\">running</span></h3>\
             <p>Build <code>{}</code> of generation {}",
            reason_label(running.reason),
            Esc(&running.job),
            running.generation
        );
        if let Some(start) = &running.start_time {
            let _ = write!(body, ", started {}", time(start));
        }
        body.push_str(".</p></li>\n");
    }
    if status.history.is_empty() && status.last_build.is_none() {
        body.push_str("<li>No builds yet.</li>\n");
    }
    // The oldest entry of a history shorter than its limit is the image's first build.
    let first = (status.history.len() < usize::try_from(history_limit).unwrap_or(usize::MAX))
        .then(|| status.history.len().checked_sub(1))
        .flatten();
    for (i, entry) in status.history.iter().enumerate() {
        history_entry(body, i, entry, first == Some(i));
    }
    body.push_str("</ol>\n");
}

fn history_entry(body: &mut String, index: usize, entry: &HistoryEntry, first: bool) {
    let _ = write!(
        body,
        "<li class=\"outcome-{outcome}\" id=\"build-{index}\"><h3>{when} · {reason} · {outcome}</h3><p>",
        outcome = outcome_label(entry.outcome),
        when = time(&entry.time),
        reason = reason_label(entry.reason),
    );
    let mut facts = Vec::new();
    if let Some(duration) = build_duration(entry) {
        facts.push(format!("took {}", human_duration(duration)));
    }
    if let Some(digest) = &entry.digest {
        facts.push(format!("image {}", short_digest(digest)));
    }
    if let Some(job) = &entry.job {
        facts.push(format!("build <code>{}</code>", Esc(job)));
    }
    body.push_str(&facts.join(", "));
    body.push_str("</p>\n");
    if let Some(failure) = &entry.failure {
        let _ = writeln!(body, "<p class=\"error\">{}</p>", Esc(failure));
    }
    match &entry.package_changes {
        None if first && entry.outcome == BuildOutcome::Succeeded => {
            body.push_str("<p>The first build of this image.</p>\n");
        }
        None if entry.outcome == BuildOutcome::Succeeded => body.push_str(
            "<p class=\"muted\">Package changes unknown: no package list was recorded for this \
             build or the one before.</p>\n",
        ),
        None => {}
        Some(changes) if changes.is_empty() => {
            body.push_str("<p>No package changes.</p>\n");
        }
        Some(changes) => package_changes(body, index, changes),
    }
    if let Some(omitted) = entry.package_changes_omitted {
        let _ = writeln!(
            body,
            "<p class=\"muted\">{omitted} more package change{} not recorded in the status: \
             compare the two builds' SBOMs for all of them.</p>",
            if omitted == 1 { " is" } else { "s are" }
        );
    }
    body.push_str("</li>\n");
}

fn change_kind(change: &PackageChange) -> &'static str {
    match (&change.from, &change.to) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        (Some(from), Some(to)) => match version::compare(to, from) {
            Ordering::Greater => "upgraded",
            Ordering::Less => "downgraded",
            Ordering::Equal => "rebuilt",
        },
        (None, None) => "unchanged",
    }
}

fn package_changes(body: &mut String, index: usize, changes: &[PackageChange]) {
    let _ = writeln!(
        body,
        "<table class=\"changes\" id=\"changes-{index}\">\n<caption>{} package change{}</caption>\n\
         <thead><tr><th scope=\"col\">Package</th><th scope=\"col\">Change</th>\
         <th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\">Architectures</th></tr></thead>\n<tbody>",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" }
    );
    for change in changes {
        let kind = change_kind(change);
        let _ = writeln!(
            body,
            "<tr data-package=\"{name}\" data-change=\"{kind}\"><th scope=\"row\">{name}</th>\
             <td class=\"{kind}\">{kind}</td><td><code>{from}</code></td><td><code>{to}</code></td><td>{archs}</td></tr>",
            name = Esc(&change.name),
            from = Esc(change.from.as_deref().unwrap_or("")),
            to = Esc(change.to.as_deref().unwrap_or("")),
            archs = Esc(&change.architectures.join(", ")),
        );
    }
    body.push_str("</tbody>\n</table>\n");
}

fn installed(body: &mut String, status: &ImageBuildStatus) {
    let Some(packages) = status.packages.as_ref() else {
        return;
    };
    body.push_str("<h2 id=\"packages\">Installed packages</h2>\n");
    if packages.installed.is_empty() {
        body.push_str(
            "<p class=\"muted\">No package list is recorded for this image (the operator could \
             not resolve its packages again after the build).</p>\n",
        );
        return;
    }
    let _ = writeln!(
        body,
        "<details><summary>{} package versions</summary>\n<table id=\"installed\">\n\
         <thead><tr><th scope=\"col\">Package</th><th scope=\"col\">Version</th>\
         <th scope=\"col\">Architectures</th></tr></thead>\n<tbody>",
        packages.installed.len()
    );
    for package in &packages.installed {
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\"><a href=\"/packages?name={q}\">{name}</a></th><td><code>{version}</code></td><td>{archs}</td></tr>",
            q = query_value(&package.name),
            name = Esc(&package.name),
            version = Esc(&package.version),
            archs = Esc(&package.architectures.join(", ")),
        );
    }
    body.push_str("</tbody>\n</table>\n</details>\n");
}

/// The package search page: the form, and the images that hold the package when a name was
/// given.
pub fn packages_page(images: &[Arc<ImageBuild>], name: &str, range: &str) -> String {
    let mut body = String::with_capacity(8 * 1024);
    let _ = writeln!(
        body,
        "<h1>Packages</h1>\n<form class=\"filters\" method=\"get\" action=\"/packages\" role=\"search\" aria-label=\"Search packages\">\n\
         <label for=\"p-name\">Package<input id=\"p-name\" name=\"name\" type=\"search\" value=\"{name}\" \
         placeholder=\"openssl\" aria-describedby=\"p-help\" required></label>\n\
         <label for=\"p-range\">Versions (apk syntax)<input id=\"p-range\" name=\"range\" value=\"{range}\" \
         placeholder=\"&gt;=3.3.0 &lt;3.3.2-r1\" aria-describedby=\"p-help\"></label>\n\
         <button type=\"submit\">Search</button>\n</form>\n\
         <p id=\"p-help\" class=\"muted\">A name, or a pattern with <code>*</code>; versions as apk \
         writes them: <code>&lt;</code>, <code>&lt;=</code>, <code>=</code>, <code>&gt;=</code>, \
         <code>&gt;</code>, <code>~</code> (fuzzy), several at once all apply. An atom such as \
         <code>go~1.25</code> in the name field works too.</p>",
        name = Esc(name),
        range = Esc(range),
    );
    let _ = writeln!(
        body,
        "<div id=\"live\" data-version=\"{}\">",
        version_of(images)
    );
    if name.trim().is_empty() {
        body.push_str("<p>Enter a package name to see which images install it.</p>\n");
    } else {
        match PackageQuery::parse(name, range) {
            Err(error) => {
                let _ = writeln!(
                    body,
                    "<p class=\"error\" id=\"search-error\" role=\"alert\">{}</p>",
                    Esc(&error.to_string())
                );
            }
            Ok(query) => {
                let hits = search(&query, images.iter().map(|ib| ib.as_ref()));
                let images_hit: BTreeSet<(&str, &str)> = hits
                    .iter()
                    .map(|h| (h.namespace.as_str(), h.image_build.as_str()))
                    .collect();
                let _ = writeln!(
                    body,
                    "<p class=\"count\" id=\"result-count\">{} a matching package.</p>",
                    if images_hit.len() == 1 {
                        "1 image installs".to_string()
                    } else {
                        format!("{} images install", images_hit.len())
                    }
                );
                let unknown = images_without_list(images.iter().map(|ib| ib.as_ref()));
                if unknown > 0 {
                    let _ = writeln!(
                        body,
                        "<p class=\"muted\">{unknown} image{} ha{} no recorded package list and \
                         cannot be searched.</p>",
                        if unknown == 1 { "" } else { "s" },
                        if unknown == 1 { "s" } else { "ve" }
                    );
                }
                if !hits.is_empty() {
                    body.push_str(
                        "<table id=\"results\">\n<caption class=\"visually-hidden\">Images with the package</caption>\n\
                         <thead><tr><th scope=\"col\">ImageBuild</th><th scope=\"col\">Package</th>\
                         <th scope=\"col\">Version</th><th scope=\"col\">Architectures</th></tr></thead>\n<tbody>\n",
                    );
                    for hit in &hits {
                        let _ = writeln!(
                            body,
                            "<tr data-image=\"{ns}/{ib}\"><th scope=\"row\"><a href=\"{href}\">{ns}/{ib}</a></th>\
                             <td>{package}</td><td><code>{version}</code></td><td>{archs}</td></tr>",
                            ns = Esc(&hit.namespace),
                            ib = Esc(&hit.image_build),
                            href = image_href(&hit.namespace, &hit.image_build),
                            package = Esc(&hit.package),
                            version = Esc(&hit.version),
                            archs = Esc(&hit.architectures.join(", ")),
                        );
                    }
                    body.push_str("</tbody>\n</table>\n");
                }
            }
        }
    }
    body.push_str("</div>\n");
    page("Packages", Section::Packages, &body)
}

/// The page of something that is not there.
pub fn not_found_page(what: &str) -> String {
    let body = format!(
        "<h1>Not found</h1>\n<p>{}</p>\n<p><a href=\"/\">All images</a></p>\n",
        Esc(what)
    );
    page("Not found", Section::Images, &body)
}
