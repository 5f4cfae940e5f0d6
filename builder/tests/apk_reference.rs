//! Differential tests against the real apk-tools 3.0.6: the golden files under
//! `tests/reference/golden/` hold what `apk add --simulate` selected (or refused) for each case,
//! recorded by `tests/reference/record-apk-solver.py`; these tests ask SecureBuild the same
//! questions and require the same answers: the same packages in the same install order, and a
//! refusal wherever apk refuses.
//!
//! - `random_repositories_agree_with_apk`: generated repositories and worlds; the golden file
//!   holds the inputs too, so this runs everywhere.
//! - `apk_tools_solver_suite_agrees_with_apk` and `alpine_indexes_agree_with_apk`: inputs that
//!   belong to other projects (apk-tools' `test/solver` suite, Alpine's signed indexes as kept in
//!   apko's test data) are not part of this repository; these tests read them from the
//!   directory named by `SECUREBUILD_REFERENCE_DATA` (default `../shared/apk-reference` beside
//!   the workspace) and are run by `.ci/test` when it exists. See docs/apk-compatibility.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use securebuild_builder::apk::index::{PackageRecord, parse_index};
use securebuild_builder::apk::solver::{self, SolverRepository};
use securebuild_builder::apk::world;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Extra golden files of random cases to check, `:`-separated (e.g. a new seed being tried).
const EXTRA_GOLDEN_ENV: &str = "SECUREBUILD_APK_EXTRA_GOLDEN";
/// Directory holding the reference data of other projects.
const REFERENCE_DATA_ENV: &str = "SECUREBUILD_REFERENCE_DATA";
/// How many disagreements to print in full.
const SHOWN_DISAGREEMENTS: usize = 15;

#[derive(Deserialize)]
struct Header {
    apk: String,
    #[serde(default)]
    index_sha256: Option<String>,
    #[serde(default)]
    arch: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Repo {
    tag: Option<String>,
    index: String,
}

#[derive(Deserialize, Clone)]
struct Answer {
    status: i32,
    installs: Vec<String>,
    output: String,
}

#[derive(Deserialize)]
struct RandomCase {
    id: String,
    arch: String,
    repos: Vec<Repo>,
    args: Vec<String>,
    apk: Answer,
}

#[derive(Deserialize)]
struct SuiteCase {
    id: String,
    inputs_sha256: String,
    args: Vec<String>,
    fresh_install: bool,
    apk: Option<Answer>,
}

#[derive(Deserialize)]
struct IndexCase {
    id: String,
    args: Vec<String>,
    apk: Answer,
}

/// SecureBuild's answer: the install list, or the error text.
type Ours = Result<Vec<String>, String>;

/// How one case compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Agree,
    SameSetOtherOrder,
    OtherSelection,
    WeRefuseApkSelects,
    WeSelectApkRefuses,
}

fn verdict(apk: &Answer, ours: &Ours) -> Verdict {
    match (apk.status == 0, ours) {
        (true, Ok(list)) if *list == apk.installs => Verdict::Agree,
        (true, Ok(list)) => {
            let mut a = list.clone();
            let mut b = apk.installs.clone();
            a.sort();
            b.sort();
            if a == b {
                Verdict::SameSetOtherOrder
            } else {
                Verdict::OtherSelection
            }
        }
        (true, Err(_)) => Verdict::WeRefuseApkSelects,
        (false, Ok(_)) => Verdict::WeSelectApkRefuses,
        (false, Err(_)) => Verdict::Agree,
    }
}

/// Tallies verdicts and keeps the first disagreements for the report.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<Verdict, usize>,
    selected: usize,
    refused: usize,
    shown: String,
}

impl Tally {
    fn add(&mut self, id: &str, input: &dyn Fn() -> String, apk: &Answer, ours: &Ours) {
        if apk.status == 0 {
            self.selected += 1;
        } else {
            self.refused += 1;
        }
        let verdict = verdict(apk, ours);
        *self.counts.entry(verdict).or_default() += 1;
        if verdict != Verdict::Agree && self.disagreements() <= SHOWN_DISAGREEMENTS {
            let _ = writeln!(
                self.shown,
                "--- {id}: {verdict:?}\n{}\napk (exit {}): {:?}\n{}securebuild: {:?}\n",
                input(),
                apk.status,
                apk.installs,
                apk.output,
                ours
            );
        }
    }

    fn total(&self) -> usize {
        self.counts.values().sum()
    }

    fn disagreements(&self) -> usize {
        self.total() - self.counts.get(&Verdict::Agree).copied().unwrap_or(0)
    }

    fn assert_all_agree(&self, what: &str) {
        println!(
            "{what}: {} cases ({} selected by apk, {} refused), {} agree; {:?}",
            self.total(),
            self.selected,
            self.refused,
            self.total() - self.disagreements(),
            self.counts
        );
        assert!(self.total() > 0, "{what}: no cases were read");
        assert_eq!(
            self.disagreements(),
            0,
            "{what}: SecureBuild disagrees with apk-tools 3.0.6 on {} of {} cases; the first:\n{}",
            self.disagreements(),
            self.total(),
            self.shown
        );
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/golden")
}

fn read_golden<T: for<'de> Deserialize<'de>>(path: &Path) -> (Header, Vec<T>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read golden file {}: {err}", path.display()));
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().expect("a header line")).unwrap();
    assert!(
        header.apk.starts_with("apk-tools 3.0.6"),
        "{} was recorded with {}, not apk-tools 3.0.6",
        path.display(),
        header.apk
    );
    let rows = lines
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (header, rows)
}

/// Solves `args` against plain-text indexes the way `securebuild resolve` does after fetching.
fn solve_texts(repos: &[Repo], args: &[String], arch: &str) -> Ours {
    let records: Vec<Vec<PackageRecord>> = repos
        .iter()
        .enumerate()
        .map(|(n, repo)| parse_index(&repo.index).map_err(|err| format!("repo{n}: {err}")))
        .collect::<Result<_, _>>()?;
    let repositories: Vec<SolverRepository<'_>> = records
        .iter()
        .zip(repos)
        .enumerate()
        .map(|(n, (packages, repo))| SolverRepository {
            name: format!("repo{n}"),
            tag: repo.tag.clone(),
            packages,
        })
        .collect();
    let world = world::from_atoms(args).map_err(|err| err.to_string())?;
    let solution = solver::solve(&repositories, &world, arch).map_err(|err| err.to_string())?;
    Ok(solution
        .packages
        .iter()
        .map(|selection| selection.package.display_name())
        .collect())
}

fn describe(repos: &[Repo], args: &[String]) -> String {
    let mut text = format!("apk add {}\n", args.join(" "));
    for (n, repo) in repos.iter().enumerate() {
        let tag = repo
            .tag
            .as_deref()
            .map(|t| format!(" @{t}"))
            .unwrap_or_default();
        let _ = writeln!(text, "[repo{n}{tag}]\n{}", repo.index.trim_end());
    }
    text
}

#[test]
fn random_repositories_agree_with_apk() {
    let mut files = vec![golden_dir().join("solver-random.jsonl")];
    if let Ok(extra) = std::env::var(EXTRA_GOLDEN_ENV) {
        files.extend(
            extra
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut tally = Tally::default();
    for file in &files {
        let (_, cases) = read_golden::<RandomCase>(file);
        for case in cases {
            let ours = solve_texts(&case.repos, &case.args, &case.arch);
            tally.add(
                &case.id,
                &|| describe(&case.repos, &case.args),
                &case.apk,
                &ours,
            );
        }
    }
    tally.assert_all_agree("random repositories");
}

fn reference_data() -> PathBuf {
    match std::env::var_os(REFERENCE_DATA_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/apk-reference"),
    }
}

fn require_dir(dir: &Path) -> &Path {
    assert!(
        dir.is_dir(),
        "{} is missing: set {REFERENCE_DATA_ENV} to a directory laid out as \
         docs/apk-compatibility.md describes",
        dir.display()
    );
    dir
}

fn sha256_of_files(paths: &[PathBuf]) -> String {
    let mut outer = Sha256::new();
    for path in paths {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        outer.update(Sha256::digest(&bytes));
    }
    hex::encode(outer.finalize())
}

/// `@REPO` lines of a suite test, as (tag, file).
fn suite_repos(test: &str) -> Vec<(Option<String>, String)> {
    test.lines()
        .filter_map(|line| line.strip_prefix("@REPO "))
        .map(|rest| match rest.strip_prefix('@') {
            Some(tagged) => {
                let (tag, file) = tagged.split_once(' ').expect("@REPO @tag file");
                (Some(tag.to_owned()), file.to_owned())
            }
            None => (None, rest.to_owned()),
        })
        .collect()
}

#[test]
#[ignore = "needs apk-tools' test/solver directory under SECUREBUILD_REFERENCE_DATA (run by .ci/test when present)"]
fn apk_tools_solver_suite_agrees_with_apk() {
    let dir = reference_data().join("apk-tools-3.0.6/test/solver");
    let dir = require_dir(&dir);
    let (_, cases) = read_golden::<SuiteCase>(&golden_dir().join("solver-suite.jsonl"));
    let mut tally = Tally::default();
    let mut upgrades = Vec::new();
    for case in cases {
        let test_path = dir.join(format!("{}.test", case.id));
        let test = std::fs::read_to_string(&test_path).unwrap();
        let repos_of_test = suite_repos(&test);
        let mut inputs = vec![test_path];
        inputs.extend(repos_of_test.iter().map(|(_, file)| dir.join(file)));
        assert_eq!(
            sha256_of_files(&inputs),
            case.inputs_sha256,
            "{}: the suite's files differ from those the golden answers were recorded on",
            case.id
        );
        let Some(apk) = case.apk.as_ref().filter(|_| case.fresh_install) else {
            upgrades.push(case.id);
            continue;
        };
        let repos: Vec<Repo> = repos_of_test
            .iter()
            .map(|(tag, file)| Repo {
                tag: tag.clone(),
                index: std::fs::read_to_string(dir.join(file)).unwrap(),
            })
            .collect();
        let args = &case.args[1..];
        let ours = solve_texts(&repos, args, "x86_64");
        tally.add(&case.id, &|| describe(&repos, args), apk, &ours);
    }
    println!(
        "apk-tools solver suite: {} upgrade cases not run (SecureBuild installs into empty roots only): {}",
        upgrades.len(),
        upgrades.join(" ")
    );
    tally.assert_all_agree("apk-tools solver suite (fresh installs)");
}

/// Runs the recorded requests against one real signed index through `securebuild resolve`'s
/// own path: signature verification with the real keys, parsing, solving.
fn check_real_index(golden: &str, subdir: &str) {
    let data = reference_data();
    let source = require_dir(&data.join(subdir)).join("APKINDEX.tar.gz");
    let keys_dir = data.join("alpine-keys");
    let keys: Vec<String> = std::fs::read_dir(require_dir(&keys_dir))
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .collect();
    let (header, cases) = read_golden::<IndexCase>(&golden_dir().join(golden));
    let arch = header.arch.expect("the header names the architecture");
    let bytes = std::fs::read(&source).unwrap();
    assert_eq!(
        Some(hex::encode(Sha256::digest(&bytes))),
        header.index_sha256,
        "{} is not the index the golden answers were recorded on",
        source.display()
    );
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(&arch)).unwrap();
    std::fs::write(repo.path().join(&arch).join("APKINDEX.tar.gz"), &bytes).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tally = Tally::default();
    for case in cases {
        let request = securebuild_builder::resolve::ResolveRequest {
            repositories: vec![repo.path().display().to_string()],
            keyring: keys.clone(),
            packages: case.args.clone(),
            archs: vec![arch.clone()],
            ..Default::default()
        };
        let ours = runtime
            .block_on(securebuild_builder::resolve::resolve(&request))
            .map(|resolution| {
                resolution.archs[0]
                    .packages
                    .iter()
                    .map(|p| p.record.display_name())
                    .collect()
            })
            .map_err(|err| err.to_string());
        tally.add(
            &case.id,
            &|| format!("apk add {}", case.args.join(" ")),
            &case.apk,
            &ours,
        );
    }
    tally.assert_all_agree(golden);
}

#[test]
#[ignore = "needs Alpine's v3.16 x86_64 index and keys under SECUREBUILD_REFERENCE_DATA (run by .ci/test when present)"]
fn alpine_v316_index_agrees_with_apk() {
    check_real_index("alpine-v3.16-x86_64.jsonl", "alpine-v3.16-x86_64");
}

#[test]
#[ignore = "needs Alpine's v3.17 aarch64 index and keys under SECUREBUILD_REFERENCE_DATA (run by .ci/test when present)"]
fn alpine_v317_index_agrees_with_apk() {
    check_real_index("alpine-v3.17-aarch64.jsonl", "alpine-v3.17-aarch64");
}
