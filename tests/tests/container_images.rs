//! The container images: `images/Dockerfile` read by a small Dockerfile parser and checked for
//! what the Pods rely on (a numeric non-root `USER`, nothing but the binaries copied from the
//! build stage, exec-form entrypoints naming binaries the workspace builds, bases pinned on one
//! Debian release), the image names and tags agreeing across `images/README.md`, the chart and
//! the operator's defaults, and the image configurations (`images/*.apko.yaml`) and package
//! descriptions (`images/*.package.yaml`) checked against the Dockerfile images and the
//! workspace; `own_images` builds the images from them.
//!
//! No image is built with docker here. The parser covers the Dockerfile subset the images use:
//! comments, `\` continuations, parser directives (an `escape` directive is rejected), exec and
//! shell forms, leading `--flags`, and global `ARG` defaults substituted into `FROM`; it does
//! not expand other variables and does not read heredocs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::Parser;
use securebuild_builder::apk::constraint::Dependency;
use securebuild_builder::apk::repository::{RepositoryLocation, RepositorySpec};
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_builder::package::PackageConfig;
use securebuild_crds::ImageConfiguration;
use securebuild_operator::config::DEFAULT_BUILDER_IMAGE;
use securebuild_operator::job::BUILDER_UID;
use serde_json::Value;

use crate::workspace_root;

const DOCKERFILE: &str = "images/Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const IMAGES_README: &str = "images/README.md";
/// The image configurations and the Dockerfile targets they replace.
const APKO_CONFIGS: [(&str, &str); 3] = [
    ("images/securebuild.apko.yaml", BUILDER_TARGET),
    ("images/securebuild-operator.apko.yaml", OPERATOR_TARGET),
    ("images/securebuild-proxy.apko.yaml", PROXY_TARGET),
];
const VALUES: &str = "charts/securebuild/values.yaml";
const CHART: &str = "charts/securebuild/Chart.yaml";
/// The Dockerfile target of the `securebuild` CLI image that builder Jobs run.
const BUILDER_TARGET: &str = "builder";
/// The Dockerfile target of the operator image.
const OPERATOR_TARGET: &str = "operator";
/// The Dockerfile target of the read-only registry proxy image.
const PROXY_TARGET: &str = "proxy";
/// The directory the build stage leaves the binaries in.
const BUILD_OUTPUT_DIR: &str = "/out";
/// Where the final stages install the binaries.
const INSTALL_DIR: &str = "/usr/bin";
/// Debian codenames and release numbers of the bases the Dockerfile may use.
const DEBIAN_RELEASES: &[(&str, &str)] =
    &[("bullseye", "11"), ("bookworm", "12"), ("trixie", "13")];
/// Programs that would make an entrypoint a shell.
const SHELLS: &[&str] = &["sh", "ash", "bash", "dash", "zsh", "busybox"];
/// OCI label keys every final stage sets.
const LABEL_SOURCE: &str = "org.opencontainers.image.source";
const LABEL_LICENSES: &str = "org.opencontainers.image.licenses";
const LABEL_VERSION: &str = "org.opencontainers.image.version";

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile parser

/// Why a Dockerfile could not be read.
#[derive(Debug, thiserror::Error)]
enum DockerfileError {
    /// A parser directive this parser does not implement.
    #[error("line {line}: unsupported parser directive `{directive}`")]
    Directive { line: usize, directive: String },
    /// The file ends inside a `\` continuation.
    #[error("line {line}: the instruction's continuation never ends")]
    UnterminatedContinuation { line: usize },
    /// An instruction other than `ARG` before the first `FROM`.
    #[error("line {line}: `{keyword}` before the first FROM")]
    BeforeFrom { line: usize, keyword: String },
    /// A `FROM` that names no image, or has words after `AS name`.
    #[error("line {line}: malformed FROM `{arguments}`")]
    From { line: usize, arguments: String },
    /// Two stages with one name.
    #[error("line {line}: stage name `{name}` is used twice")]
    DuplicateStage { line: usize, name: String },
    /// An exec form that is not a JSON array of strings.
    #[error("line {line}: `{keyword}` exec form is not a JSON array of strings: {source}")]
    ExecForm {
        line: usize,
        keyword: String,
        #[source]
        source: serde_json::Error,
    },
    /// Quotes that never close.
    #[error("unterminated quote in `{text}`")]
    Quote { text: String },
}

/// One instruction, continuation lines joined.
#[derive(Clone, Debug, PartialEq)]
struct Instruction {
    /// Line of the instruction's first line (1-based).
    line: usize,
    /// The keyword, upper-cased.
    keyword: String,
    /// Everything after the keyword.
    arguments: String,
}

/// An instruction's leading `--name[=value]` flags: name → values, in order.
type Flags = BTreeMap<String, Vec<String>>;

impl Instruction {
    /// Leading `--name[=value]` flags and the words after them (quote-aware).
    fn flags_and_words(&self) -> Result<(Flags, Vec<String>), DockerfileError> {
        let mut flags = Flags::new();
        let mut words = split_words(&self.arguments)?.into_iter().peekable();
        while let Some(word) = words.next_if(|word| word.starts_with("--")) {
            let (name, value) = word[2..].split_once('=').unwrap_or((&word[2..], ""));
            flags
                .entry(name.to_string())
                .or_default()
                .push(value.to_string());
        }
        Ok((flags, words.collect()))
    }

    /// The exec form (`["a", "b"]`), or `None` for the shell form.
    fn exec_form(&self) -> Result<Option<Vec<String>>, DockerfileError> {
        if !self.arguments.starts_with('[') {
            return Ok(None);
        }
        serde_json::from_str(&self.arguments)
            .map(Some)
            .map_err(|source| DockerfileError::ExecForm {
                line: self.line,
                keyword: self.keyword.clone(),
                source,
            })
    }
}

/// One build stage.
#[derive(Clone, Debug, PartialEq)]
struct Stage {
    /// Line of its `FROM`.
    line: usize,
    /// `AS name`, lower-cased as Docker compares it.
    name: Option<String>,
    /// The base as written.
    base_written: String,
    /// The base with global `ARG` defaults substituted.
    base: String,
    /// The instructions after `FROM`.
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }

    /// The stage's `ARG` defaults (`ARG NAME=default`; `None` without a default).
    fn args(&self) -> BTreeMap<String, Option<String>> {
        self.all("ARG").map(|i| parse_arg(&i.arguments)).collect()
    }

    /// `LABEL key=value ...` pairs, quotes removed.
    fn labels(&self) -> BTreeMap<String, String> {
        self.all("LABEL")
            .flat_map(|i| split_words(&i.arguments).expect("labels quote correctly"))
            .filter_map(|word| {
                word.split_once('=')
                    .map(|(key, value)| (key.to_string(), value.to_string()))
            })
            .collect()
    }
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq)]
struct Dockerfile {
    /// `ARG`s before the first `FROM`, with their defaults.
    global_args: BTreeMap<String, Option<String>>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Result<Self, DockerfileError> {
        let instructions = logical_lines(text)?;
        let mut global_args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (line, content) in instructions {
            let (keyword, arguments) = content
                .split_once(char::is_whitespace)
                .unwrap_or((content.as_str(), ""));
            let instruction = Instruction {
                line,
                keyword: keyword.to_ascii_uppercase(),
                arguments: arguments.trim().to_string(),
            };
            match (instruction.keyword.as_str(), stages.last_mut()) {
                ("FROM", _) => {
                    let stage = parse_from(&instruction, &global_args)?;
                    if let Some(name) = &stage.name
                        && stages.iter().any(|s| s.name.as_ref() == Some(name))
                    {
                        return Err(DockerfileError::DuplicateStage {
                            line,
                            name: name.clone(),
                        });
                    }
                    stages.push(stage);
                }
                ("ARG", None) => {
                    let (name, default) = parse_arg(&instruction.arguments);
                    global_args.insert(name, default);
                }
                (_, None) => {
                    return Err(DockerfileError::BeforeFrom {
                        line,
                        keyword: instruction.keyword,
                    });
                }
                (_, Some(stage)) => stage.instructions.push(instruction),
            }
        }
        Ok(Self {
            global_args,
            stages,
        })
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// Stages no other stage builds on or copies from: the images a target can produce.
    fn final_stages(&self) -> Vec<&Stage> {
        let mut used = BTreeSet::new();
        for stage in &self.stages {
            used.insert(stage.base_written.to_ascii_lowercase());
            for copy in stage.all("COPY").chain(stage.all("ADD")) {
                let (flags, _) = copy.flags_and_words().expect("COPY flags parse");
                used.extend(
                    flags
                        .get("from")
                        .into_iter()
                        .flatten()
                        .map(|s| s.to_ascii_lowercase()),
                );
            }
        }
        self.stages
            .iter()
            .enumerate()
            .filter(|(index, stage)| {
                !used.contains(&index.to_string())
                    && !stage.name.as_ref().is_some_and(|name| used.contains(name))
            })
            .map(|(_, stage)| stage)
            .collect()
    }
}

/// Joins `\` continuations; drops blank lines and comments (also inside continuations, as
/// Docker does). Returns (first line, text) per instruction.
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, DockerfileError> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut in_directives = true;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if in_directives {
            if let Some(directive) = parse_directive(trimmed) {
                let (key, _) = directive;
                if key != "syntax" && key != "check" {
                    return Err(DockerfileError::Directive {
                        line: number,
                        directive: trimmed.to_string(),
                    });
                }
                continue;
            }
            in_directives = false;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        let (start, mut joined) = current.take().unwrap_or((number, String::new()));
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body);
        if continues {
            current = Some((start, joined));
        } else {
            lines.push((start, joined));
        }
    }
    if let Some((line, _)) = current {
        return Err(DockerfileError::UnterminatedContinuation { line });
    }
    Ok(lines)
}

/// `# key=value` at the top of the file, key lower-cased.
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim();
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| (key.to_ascii_lowercase(), value.trim().to_string()))
}

fn parse_arg(arguments: &str) -> (String, Option<String>) {
    match arguments.split_once('=') {
        Some((name, default)) => (
            name.trim().to_string(),
            Some(default.trim().trim_matches('"').to_string()),
        ),
        None => (arguments.trim().to_string(), None),
    }
}

fn parse_from(
    instruction: &Instruction,
    global_args: &BTreeMap<String, Option<String>>,
) -> Result<Stage, DockerfileError> {
    let malformed = || DockerfileError::From {
        line: instruction.line,
        arguments: instruction.arguments.clone(),
    };
    let (_, words) = instruction.flags_and_words()?;
    let (base_written, name) = match words.as_slice() {
        [base] => (base.clone(), None),
        [base, as_keyword, name] if as_keyword.eq_ignore_ascii_case("as") => {
            (base.clone(), Some(name.to_ascii_lowercase()))
        }
        _ => return Err(malformed()),
    };
    Ok(Stage {
        line: instruction.line,
        name,
        base: substitute(&base_written, global_args),
        base_written,
        instructions: Vec::new(),
    })
}

/// Replaces `${NAME}` and `$NAME` with global `ARG` defaults (unknown names become empty, as
/// Docker does).
fn substitute(text: &str, args: &BTreeMap<String, Option<String>>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        let (name, remainder) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((name, remainder)) => (name, remainder),
                None => (braced, ""),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(args.get(name).cloned().flatten().as_deref().unwrap_or(""));
        rest = remainder;
    }
    out.push_str(rest);
    out
}

/// Splits on whitespace outside quotes; quotes are removed, `\` escapes the next character
/// inside double quotes and outside quotes.
fn split_words(text: &str) -> Result<Vec<String>, DockerfileError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(DockerfileError::Quote {
            text: text.to_string(),
        });
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&read(DOCKERFILE)).expect("images/Dockerfile parses")
}

#[test]
fn dockerfile_parser_cases() {
    fn check(text: &str, expected: Result<Vec<(&str, &str)>, &str>) {
        let parsed = Dockerfile::parse(text);
        match (parsed, expected) {
            (Ok(dockerfile), Ok(instructions)) => {
                let got: Vec<(String, String)> = dockerfile
                    .stages
                    .iter()
                    .flat_map(|stage| {
                        std::iter::once(("FROM".to_string(), stage.base.clone())).chain(
                            stage
                                .instructions
                                .iter()
                                .map(|i| (i.keyword.clone(), i.arguments.clone())),
                        )
                    })
                    .collect();
                let want: Vec<(String, String)> = instructions
                    .iter()
                    .map(|(k, a)| (k.to_string(), a.to_string()))
                    .collect();
                assert_eq!(got, want, "{text}");
            }
            (Err(error), Err(message)) => {
                let error = error.to_string();
                assert!(
                    error.contains(message),
                    "`{error}` lacks `{message}` for {text}"
                );
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    check(
        "# syntax=docker/dockerfile:1\nFROM alpine AS a\nRUN echo a \\\n  # a comment\n\n  && echo b\nUSER 1:1\n",
        Ok(vec![
            ("FROM", "alpine"),
            ("RUN", "echo a && echo b"),
            ("USER", "1:1"),
        ]),
    );
    check(
        "ARG BASE=debian:12\nARG TAG\nfrom ${BASE} as Build\ncmd [\"x\"]\n",
        Ok(vec![("FROM", "debian:12"), ("CMD", "[\"x\"]")]),
    );
    check(
        "ARG R=reg.example/x\nFROM --platform=$BUILDPLATFORM $R:1@sha256:ab AS b\n",
        Ok(vec![("FROM", "reg.example/x:1@sha256:ab")]),
    );
    check(
        "# escape=`\nFROM alpine\n",
        Err("unsupported parser directive"),
    );
    check(
        "FROM alpine\nRUN a \\\n",
        Err("line 2: the instruction's continuation"),
    );
    check("USER 1\nFROM alpine\n", Err("`USER` before the first FROM"));
    check("FROM\n", Err("malformed FROM"));
    check("FROM a AS x y\n", Err("malformed FROM"));
    check(
        "FROM a AS x\nFROM b AS X\n",
        Err("stage name `x` is used twice"),
    );
    check(
        "FROM a\nLABEL a=\"b\n",
        Ok(vec![("FROM", "a"), ("LABEL", "a=\"b")]),
    );

    let parsed = Dockerfile::parse(
        "FROM a AS build\nFROM b AS one\nCOPY --from=build /x /x\nFROM one AS two\nFROM b AS three\nCOPY --from=0 /y /y\nLABEL k=\"v w\" j=x\nENTRYPOINT [\"/x\", 1]\n",
    )
    .unwrap();
    let finals: Vec<_> = parsed
        .final_stages()
        .iter()
        .map(|s| s.name.clone().unwrap())
        .collect();
    assert_eq!(finals, ["two", "three"]);
    let three = parsed.stage("three").unwrap();
    assert_eq!(
        three.labels(),
        BTreeMap::from([("j".into(), "x".into()), ("k".into(), "v w".into())])
    );
    let error = three.last("ENTRYPOINT").unwrap().exec_form().unwrap_err();
    assert!(
        error.to_string().contains("line 8: `ENTRYPOINT` exec form"),
        "{error}"
    );
    assert_eq!(
        split_words(r#"a "b c" 'd e' f\ g "h\"i""#).unwrap(),
        ["a", "b c", "d e", "f g", "h\"i"]
    );
    assert!(split_words("a \"b").is_err());
}

// ---------------------------------------------------------------------------------------------
// Workspace facts

/// A Cargo.toml read line by line: `[package] name`, `[[bin]] name`s, and the workspace's
/// `version`, `rust-version`, `license` and `repository`.
#[derive(Debug, Default)]
struct Manifest {
    package: Option<String>,
    bins: Vec<String>,
    fields: BTreeMap<(String, String), String>,
}

fn manifest(relative: &str) -> Manifest {
    let mut manifest = Manifest::default();
    let mut section = String::new();
    for line in read(relative).lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(value) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        match (section.as_str(), key) {
            ("package", "name") => manifest.package = Some(value.to_string()),
            ("bin", "name") => manifest.bins.push(value.to_string()),
            _ => {}
        }
        manifest
            .fields
            .insert((section.clone(), key.to_string()), value.to_string());
    }
    manifest
}

pub(crate) fn workspace_field(key: &str) -> String {
    manifest("Cargo.toml")
        .fields
        .get(&("workspace.package".to_string(), key.to_string()))
        .unwrap_or_else(|| panic!("Cargo.toml has no workspace.package.{key}"))
        .clone()
}

/// The workspace's `members`, as `Cargo.toml` lists them (one line).
fn workspace_members() -> Vec<String> {
    let text = read("Cargo.toml");
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("members"))
        .expect("Cargo.toml lists the workspace members");
    let list = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("members on one line: `{line}`"));
    let members: Vec<String> = list
        .split(',')
        .map(|member| member.trim().trim_matches('"').to_string())
        .filter(|member| !member.is_empty())
        .collect();
    assert!(!members.is_empty(), "`{line}`");
    members
}

/// Binary name → the package that builds it, for the crates that ship binaries.
fn workspace_binaries() -> BTreeMap<String, String> {
    let mut binaries = BTreeMap::new();
    for crate_manifest in [
        "builder/Cargo.toml",
        "operator/Cargo.toml",
        "proxy/Cargo.toml",
    ] {
        let manifest = manifest(crate_manifest);
        let package = manifest.package.expect("a [package] name");
        assert!(
            !manifest.bins.is_empty(),
            "{crate_manifest} declares no [[bin]]"
        );
        for bin in manifest.bins {
            binaries.insert(bin, package.clone());
        }
    }
    binaries
}

fn yaml_file(relative: &str) -> Value {
    serde_norway::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn parse_version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|part| part.parse().unwrap_or_else(|_| panic!("version `{text}`")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile's images

/// The binary a final stage installs: the one `COPY`, checked to come from the build stage.
fn installed_binary(
    stage: &Stage,
    build_stage: &str,
    binaries: &BTreeMap<String, String>,
) -> String {
    let stage_name = stage.name.clone().unwrap_or_default();
    assert!(
        stage.last("ADD").is_none(),
        "{stage_name}: ADD brings in more than the binary"
    );
    assert!(
        stage.last("RUN").is_none(),
        "{stage_name}: RUN in a final stage (its base has no shell, and nothing but the binary belongs in it)"
    );
    let copies: Vec<&Instruction> = stage.all("COPY").collect();
    assert_eq!(
        copies.len(),
        1,
        "{stage_name}: exactly one COPY, the binary"
    );
    let copy = copies[0];
    let (flags, words) = copy.flags_and_words().unwrap();
    assert_eq!(
        flags.get("from").map(Vec::as_slice),
        Some([build_stage.to_string()].as_slice()),
        "{stage_name}: COPY only from the build stage (line {})",
        copy.line
    );
    let [source, destination] = words.as_slice() else {
        panic!("{stage_name}: COPY one file to one place, got {words:?}");
    };
    let binary = source
        .strip_prefix(BUILD_OUTPUT_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or_else(|| {
            panic!("{stage_name}: COPY source `{source}` is not in {BUILD_OUTPUT_DIR}")
        });
    assert!(
        binaries.contains_key(binary),
        "{stage_name}: `{binary}` is not a [[bin]] of the workspace ({binaries:?})"
    );
    assert_eq!(
        destination,
        &format!("{INSTALL_DIR}/{binary}"),
        "{stage_name}: install path"
    );
    if let Some(owner) = flags.get("chown") {
        assert!(
            owner.iter().all(|o| o == "0:0" || o == "root:root"),
            "{stage_name}: the binary must stay root-owned, not writable by the user it runs as"
        );
    }
    binary.to_string()
}

#[test]
fn final_stages_run_as_the_builder_uid_and_install_only_a_workspace_binary() {
    let dockerfile = dockerfile();
    let binaries = workspace_binaries();
    let finals = dockerfile.final_stages();
    let names: BTreeSet<String> = finals.iter().filter_map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            BUILDER_TARGET.to_string(),
            OPERATOR_TARGET.to_string(),
            PROXY_TARGET.to_string(),
        ]),
        "the final stages are exactly the documented targets"
    );
    let build_stage = build_stage(&dockerfile);
    let values = yaml_file(VALUES);
    let pod_uid = values["podSecurityContext"]["runAsUser"].as_i64();
    let build_name = build_stage.name.clone().expect("the build stage is named");

    let mut installed = BTreeMap::new();
    for stage in finals {
        let name = stage.name.clone().unwrap();
        // USER: numeric, not root, and the UID:GID the chart's and the builder Jobs' Pods use.
        let user = stage
            .last("USER")
            .unwrap_or_else(|| panic!("{name}: no USER, it would run as root"));
        let ids: Vec<i64> = user
            .arguments
            .split(':')
            .map(|id| {
                id.parse()
                    .unwrap_or_else(|_| panic!("{name}: USER `{}` is not numeric", user.arguments))
            })
            .collect();
        assert_eq!(ids.len(), 2, "{name}: USER names both UID and GID");
        assert!(
            ids.iter().all(|id| *id > 0),
            "{name}: USER {} is root",
            user.arguments
        );
        assert_eq!(
            ids,
            [BUILDER_UID, BUILDER_UID],
            "{name}: USER is the builder Pods' UID:GID"
        );
        assert_eq!(
            Some(ids[0]),
            pod_uid,
            "{name}: USER is the chart's runAsUser"
        );

        let binary = installed_binary(stage, &build_name, &binaries);

        // ENTRYPOINT: exec form, the installed binary alone (Jobs and the Deployment pass args).
        let entrypoint = stage
            .last("ENTRYPOINT")
            .unwrap_or_else(|| panic!("{name}: no ENTRYPOINT"));
        let exec = entrypoint
            .exec_form()
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: ENTRYPOINT is shell form, which needs /bin/sh"));
        assert_eq!(
            exec,
            [format!("{INSTALL_DIR}/{binary}")],
            "{name}: ENTRYPOINT"
        );

        // OCI labels: the workspace's repository and license, the version from a build arg.
        let labels = stage.labels();
        assert_eq!(
            labels.get(LABEL_SOURCE),
            Some(&workspace_field("repository")),
            "{name}"
        );
        assert_eq!(
            labels.get(LABEL_LICENSES),
            Some(&workspace_field("license")),
            "{name}"
        );
        assert_eq!(
            labels.get(LABEL_VERSION).map(String::as_str),
            Some("${VERSION}"),
            "{name}"
        );
        assert_eq!(
            stage.args().get("VERSION"),
            Some(&Some(workspace_field("version"))),
            "{name}: the VERSION default is the workspace version"
        );
        installed.insert(name, binary);
    }
    assert_eq!(installed[BUILDER_TARGET], "securebuild");
    assert_eq!(installed[OPERATOR_TARGET], "securebuild-operator");
    assert_eq!(installed[PROXY_TARGET], "securebuild-proxy");
}

/// The stage the final stages copy from: the one that runs `cargo build`.
fn build_stage(dockerfile: &Dockerfile) -> &Stage {
    let builds: Vec<&Stage> = dockerfile
        .stages
        .iter()
        .filter(|stage| {
            stage
                .all("RUN")
                .any(|run| run.arguments.contains("cargo build"))
        })
        .collect();
    assert_eq!(builds.len(), 1, "one stage runs cargo build");
    builds[0]
}

#[test]
fn the_build_stage_builds_every_installed_binary_locked_with_cache_mounts() {
    let dockerfile = dockerfile();
    let binaries = workspace_binaries();
    let stage = build_stage(&dockerfile);
    let run = stage
        .all("RUN")
        .find(|run| run.arguments.contains("cargo build"))
        .unwrap();
    let (flags, words) = run.flags_and_words().unwrap();

    let mounts = flags.get("mount").cloned().unwrap_or_default();
    let cache_targets: BTreeSet<&str> = mounts
        .iter()
        .filter(|mount| mount.split(',').any(|option| option == "type=cache"))
        .filter_map(|mount| {
            mount
                .split(',')
                .find_map(|option| option.strip_prefix("target="))
        })
        .collect();
    let workdir = stage.last("WORKDIR").expect("the build stage sets WORKDIR");
    let target_dir = format!("{}/target", workdir.arguments.trim_end_matches('/'));
    for needed in ["/usr/local/cargo/registry", target_dir.as_str()] {
        assert!(
            cache_targets.contains(needed),
            "no cache mount for {needed}: {mounts:?}"
        );
    }

    let command = words.join(" ");
    let cargo = command
        .split("&&")
        .map(str::trim)
        .find(|part| part.starts_with("cargo build"))
        .unwrap();
    let cargo_words: Vec<&str> = cargo.split_whitespace().collect();
    assert!(cargo_words.contains(&"--release"), "{cargo}");
    assert!(cargo_words.contains(&"--locked"), "{cargo}");
    let packages: BTreeSet<&str> = cargo_words
        .windows(2)
        .filter(|pair| pair[0] == "-p" || pair[0] == "--package")
        .map(|pair| pair[1])
        .collect();

    let build_name = stage.name.clone().unwrap();
    for final_stage in dockerfile.final_stages() {
        let binary = installed_binary(final_stage, &build_name, &binaries);
        assert!(
            packages.contains(binaries[&binary].as_str()),
            "`{cargo}` does not build package {} of `{binary}`",
            binaries[&binary]
        );
        // The target directory is a cache mount: the binary must be copied out in the same RUN.
        assert!(
            command.contains(&format!("target/release/{binary}"))
                && command.contains(&format!("{BUILD_OUTPUT_DIR}/")),
            "`{binary}` is not copied from target/release to {BUILD_OUTPUT_DIR}: {command}"
        );
    }
}

/// (repository, tag or None, digest or None) of an image reference.
fn split_reference(reference: &str) -> (String, Option<String>, Option<String>) {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest.to_string())),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rsplit_once(':') {
        Some((_, tag)) => (
            name[..name.len() - tag.len() - 1].to_string(),
            Some(tag.to_string()),
            digest,
        ),
        None => (name.to_string(), None, digest),
    }
}

/// The Debian release number a base image tag names (`bookworm` or `debian12`).
fn debian_release(reference: &str) -> String {
    DEBIAN_RELEASES
        .iter()
        .find(|(codename, number)| {
            reference.contains(codename) || reference.contains(&format!("debian{number}"))
        })
        .map(|(_, number)| number.to_string())
        .unwrap_or_else(|| panic!("`{reference}` names no Debian release"))
}

#[test]
fn bases_are_pinned_and_share_a_debian_release() {
    let dockerfile = dockerfile();
    let build = build_stage(&dockerfile);
    // The bases come from global ARGs with defaults, so `--build-arg` can pin them by digest
    // as images/README.md describes, and a build without build args is complete.
    for name in ["RUST_IMAGE", "RUNTIME_IMAGE"] {
        let default = dockerfile.global_args.get(name).cloned().flatten();
        assert!(
            default.is_some_and(|d| !d.is_empty()),
            "no default for ARG {name}"
        );
    }
    let mut releases = BTreeSet::new();
    for stage in &dockerfile.stages {
        if dockerfile
            .stage(&stage.base_written.to_ascii_lowercase())
            .is_some()
        {
            continue;
        }
        let (repository, tag, digest) = split_reference(&stage.base);
        assert!(!repository.is_empty(), "line {}: no base", stage.line);
        let tag = tag.unwrap_or_else(|| panic!("line {}: `{}` has no tag", stage.line, stage.base));
        assert_ne!(tag, "latest", "line {}: `latest` is not a pin", stage.line);
        if let Some(digest) = digest {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            assert!(
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "line {}: malformed digest `{digest}`",
                stage.line
            );
        }
        releases.insert(debian_release(&stage.base));
    }
    assert_eq!(
        releases.len(),
        1,
        "the bases mix Debian releases (glibc): {releases:?}"
    );

    // The Rust image: an exact toolchain version, at least the workspace's rust-version.
    let (repository, tag, _) = split_reference(&build.base);
    assert!(
        repository.ends_with("rust"),
        "the build stage uses the official Rust image"
    );
    let tag = tag.unwrap();
    let version = tag.split('-').next().unwrap();
    let toolchain = parse_version(version);
    assert_eq!(
        toolchain.len(),
        3,
        "Rust image tag `{tag}` is not an exact toolchain version"
    );
    assert!(
        toolchain >= parse_version(&workspace_field("rust-version")),
        "Rust {version} is older than the workspace's rust-version"
    );
}

// ---------------------------------------------------------------------------------------------
// .dockerignore

/// Matches one path segment against a glob segment (`*`, `?`).
fn segment_matches(pattern: &[char], text: &[char]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            segment_matches(&pattern[1..], text)
                || (!text.is_empty() && segment_matches(pattern, &text[1..]))
        }
        (Some('?'), Some(_)) => segment_matches(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => segment_matches(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Matches path segments against pattern segments, `**` standing for any number of segments.
fn path_matches(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            path_matches(&pattern[1..], path)
                || (!path.is_empty() && path_matches(pattern, &path[1..]))
        }
        (Some(p), Some(t)) => {
            let p: Vec<char> = p.chars().collect();
            let t: Vec<char> = t.chars().collect();
            segment_matches(&p, &t) && path_matches(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

/// Whether Docker leaves `path` out of the build context: the last pattern that matches the
/// path or one of its parent directories decides, `!` patterns re-including.
fn dockerignore_excludes(patterns: &[String], path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let mut excluded = false;
    for pattern in patterns {
        let (include, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        let pattern_segments: Vec<&str> = pattern
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let matched =
            (1..=segments.len()).any(|end| path_matches(&pattern_segments, &segments[..end]));
        if matched {
            excluded = !include;
        }
    }
    excluded
}

fn dockerignore_patterns() -> Vec<String> {
    read(DOCKERIGNORE)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Every file under `dir`, as paths relative to the workspace root.
fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, root, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn dockerignore_sends_the_sources_and_nothing_else() {
    let patterns = dockerignore_patterns();
    let root = workspace_root();

    // Everything the build stage copies from the context is sent: the manifests and every
    // source file of the crates it names.
    let dockerfile = dockerfile();
    let build = build_stage(&dockerfile);
    let mut sent = Vec::new();
    for copy in build.all("COPY") {
        let (flags, words) = copy.flags_and_words().unwrap();
        assert!(
            !flags.contains_key("from"),
            "the build stage copies from the context only"
        );
        let (_, sources) = words.split_last().unwrap();
        for source in sources {
            let path = root.join(source);
            if path.is_dir() {
                let mut files = Vec::new();
                files_under(&path.join("src"), &root, &mut files);
                files.push(format!("{source}/Cargo.toml"));
                sent.extend(files);
            } else {
                sent.push(source.clone());
            }
        }
    }
    // Cargo refuses a workspace with a member missing, so every member is copied and sent.
    let members = workspace_members();
    for crate_dir in ["crds", "registry", "builder", "proxy", "operator", "tests"] {
        assert!(members.iter().any(|m| m == crate_dir), "{members:?}");
    }
    for crate_dir in &members {
        assert!(
            sent.iter()
                .any(|p| p.starts_with(&format!("{crate_dir}/src/"))),
            "the build stage does not copy workspace member {crate_dir}"
        );
        assert!(
            sent.contains(&format!("{crate_dir}/Cargo.toml")),
            "{crate_dir}/Cargo.toml"
        );
    }
    for path in &sent {
        assert!(
            !dockerignore_excludes(&patterns, path),
            "{path} is left out of the context"
        );
    }

    for path in [
        "target/release/securebuild",
        "builder/target/debug/x",
        ".git/HEAD",
        ".git/objects/pack/pack-1.pack",
        "charts/securebuild/values.yaml",
        "docs/install.md",
        "examples/repo/x86_64/APKINDEX.tar.gz",
        "tests/data/registry.tar",
        "tests/fixtures/big.oci/index.json",
        "builder/src/.main.rs.swp",
        "images/Dockerfile",
    ] {
        assert!(
            dockerignore_excludes(&patterns, path),
            "{path} is sent in the context"
        );
    }
}

#[test]
fn dockerignore_matching_cases() {
    fn check(patterns: &[&str], path: &str, excluded: bool) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            dockerignore_excludes(&patterns, path),
            excluded,
            "{patterns:?} {path}"
        );
    }
    check(&["*"], "a/b/c", true);
    check(&["*", "!a"], "a/b/c", false);
    check(&["*", "!a/", "**/target/"], "a/target/x", true);
    check(&["**/target"], "target", true);
    check(&["*.md"], "docs/x.md", false);
    check(&["**/*.md"], "docs/x.md", true);
    check(&["a?c"], "abc", true);
    check(&["a?c"], "ac", false);
    check(&["/docs/"], "docs/x.md", true);
    check(&[], "anything", false);
}

// ---------------------------------------------------------------------------------------------
// Names and tags across the README, the chart and the operator

/// The commands in the README's fenced code blocks, continuations joined.
fn readme_commands() -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in read(IMAGES_README).lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block || line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(body) => {
                current.push_str(body);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let words = split_words(&current).expect("README commands quote correctly");
                if !words.is_empty() {
                    commands.push(words);
                }
                current.clear();
            }
        }
    }
    commands
}

/// The `docker buildx build` commands of the Dockerfile's header comment, continuations
/// joined.
fn dockerfile_header_commands() -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in read(DOCKERFILE).lines() {
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let comment = comment.trim();
        if current.is_empty() && !comment.starts_with("docker buildx build") {
            continue;
        }
        match comment.strip_suffix('\\') {
            Some(body) => {
                current.push_str(body);
                current.push(' ');
            }
            None => {
                current.push_str(comment);
                commands.push(split_words(&current).expect("header commands quote correctly"));
                current.clear();
            }
        }
    }
    commands
}

/// `--name value` or `--name=value` options of a command.
fn options(command: &[String], names: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    for (index, word) in command.iter().enumerate() {
        for name in names {
            if word == name {
                values.extend(command.get(index + 1).cloned());
            } else if let Some(value) = word.strip_prefix(&format!("{name}=")) {
                values.push(value.to_string());
            }
        }
    }
    values
}

#[test]
fn image_names_and_tags_agree_across_readme_chart_and_operator() {
    let version = workspace_field("version");
    let chart = yaml_file(CHART);
    let values = yaml_file(VALUES);
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version.as_str()),
        "Chart appVersion"
    );
    assert_eq!(
        DEFAULT_BUILDER_IMAGE,
        format!("ghcr.io/securebuild/securebuild:{version}"),
        "the operator's default builder image"
    );

    let dockerfile = dockerfile();
    let finals: BTreeSet<String> = dockerfile
        .final_stages()
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();

    let mut documented = BTreeMap::new();
    for command in readme_commands() {
        if !command.starts_with(&["docker".into(), "buildx".into(), "build".into()]) {
            continue;
        }
        let targets = options(&command, &["--target"]);
        let [target] = targets.as_slice() else {
            panic!("README build command names no single --target: {command:?}");
        };
        assert!(
            finals.contains(target),
            "README builds unknown target `{target}`"
        );
        assert_eq!(
            options(&command, &["-f", "--file"]),
            [DOCKERFILE],
            "{command:?}"
        );
        // The publishing commands name the released tags; local ones (`--load`) may not.
        if command.iter().any(|word| word == "--push") {
            for reference in options(&command, &["-t", "--tag"]) {
                documented.insert(target.clone(), reference);
            }
        }
        let build_args = options(&command, &["--build-arg"]);
        for build_arg in build_args {
            let (name, value) = build_arg.split_once('=').unwrap();
            if name == "VERSION" {
                assert_eq!(value, version, "README --build-arg VERSION");
            }
        }
        if let Some(platforms) = options(&command, &["--platform"]).first() {
            assert_eq!(platforms, "linux/amd64,linux/arm64", "{command:?}");
        }
    }

    let builder_reference = documented
        .get(BUILDER_TARGET)
        .expect("the README shows how to build and tag the builder image");
    let operator_reference = documented
        .get(OPERATOR_TARGET)
        .expect("the README shows how to build and tag the operator image");
    let proxy_reference = documented
        .get(PROXY_TARGET)
        .expect("the README shows how to build and tag the proxy image");
    assert_eq!(
        builder_reference, DEFAULT_BUILDER_IMAGE,
        "README builder tag"
    );

    // The Dockerfile's header shows one command per target, with the README's tags.
    let mut header = BTreeMap::new();
    for command in dockerfile_header_commands() {
        let targets = options(&command, &["--target"]);
        let [target] = targets.as_slice() else {
            panic!("Dockerfile header command names no single --target: {command:?}");
        };
        let tags = options(&command, &["-t", "--tag"]);
        let [tag] = tags.as_slice() else {
            panic!("Dockerfile header command names no single tag: {command:?}");
        };
        assert_eq!(
            options(&command, &["-f", "--file"]),
            [DOCKERFILE],
            "{command:?}"
        );
        assert_eq!(
            Some(tag),
            documented.get(target),
            "the Dockerfile header and the README tag target `{target}` alike"
        );
        header.insert(target.clone(), tag.clone());
    }
    assert_eq!(
        header.keys().cloned().collect::<BTreeSet<_>>(),
        finals,
        "the Dockerfile header shows how to build every target"
    );

    for (reference, values_image, what) in [
        (
            builder_reference,
            &values["builder"]["image"],
            "builder.image",
        ),
        (operator_reference, &values["image"], "image"),
        (proxy_reference, &values["proxy"]["image"], "proxy.image"),
    ] {
        let (repository, tag, digest) = split_reference(reference);
        assert_eq!(digest, None, "{reference}");
        assert_eq!(
            values_image["repository"].as_str(),
            Some(repository.as_str()),
            "{what}"
        );
        assert_eq!(tag.as_deref(), Some(version.as_str()), "{reference}");
        // An empty tag means appVersion, which is the documented tag.
        let values_tag = values_image["tag"].as_str().unwrap_or_default();
        assert!(
            values_tag.is_empty() || values_tag == version,
            "{what}.tag `{values_tag}` is not the documented tag"
        );
    }
}

#[test]
fn documented_securebuild_commands_parse() {
    let mut signed = Vec::new();
    let mut verified = Vec::new();
    let mut packaged = Vec::new();
    let mut built = Vec::new();
    for command in readme_commands() {
        if command.first().map(String::as_str) != Some("securebuild") {
            continue;
        }
        let cli = Cli::try_parse_from(&command)
            .unwrap_or_else(|error| panic!("README command {command:?}: {error}"));
        match cli.command {
            CliCommand::Sign(args) => signed.push(args),
            CliCommand::Verify(args) => verified.push(args),
            CliCommand::Package(args) => packaged.push(args),
            CliCommand::Build(args) => built.push(args),
            other => panic!("unexpected README command {other:?}"),
        }
    }
    let repositories = [
        "ghcr.io/securebuild/securebuild",
        "ghcr.io/securebuild/securebuild-operator",
        "ghcr.io/securebuild/securebuild-proxy",
    ];
    for repository in repositories {
        let sign = signed
            .iter()
            .find(|args| split_reference(&args.image).0 == repository)
            .unwrap_or_else(|| panic!("the README does not sign {repository}"));
        assert!(
            sign.image.contains('@'),
            "{repository} is signed by tag, not by digest"
        );
        assert_eq!(sign.key, Path::new("cosign.key"));
        let verify = verified
            .iter()
            .find(|args| split_reference(&args.image).0 == repository)
            .unwrap_or_else(|| panic!("the README does not verify {repository}"));
        assert_eq!(verify.key, Path::new("cosign.pub"));
    }
    // The package and build steps name the files of this directory, as the script runs them.
    assert!(!packaged.is_empty(), "the README shows the package step");
    for args in &packaged {
        assert!(
            workspace_root().join(&args.config).is_file(),
            "{}",
            args.config.display()
        );
        assert_eq!(args.signing_key, Path::new("securebuild-packages.rsa"));
        assert_eq!(args.output, Path::new("images/packages"));
    }
    assert!(!built.is_empty(), "the README shows the build step");
    for args in &built {
        assert!(
            workspace_root().join(&args.config).is_file(),
            "{}",
            args.config.display()
        );
        let push = args.push.as_deref().expect("the build step pushes");
        assert!(repositories.contains(&push), "{push}");
        assert!(args.sign_key.is_some() && args.sbom && args.provenance);
    }
    let script = read("images/build-images.sh");
    for step in ["package", "build"] {
        assert!(
            script.contains(&format!("\"$SECUREBUILD\" {step} ")),
            "build-images.sh runs securebuild {step}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The apko configuration

fn apko_config(relative: &str) -> ImageConfiguration {
    ImageConfiguration::from_yaml(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} parses: {e}"))
}

#[test]
fn apko_configurations_run_the_binaries_as_nonroot_without_a_shell() {
    for (relative, target) in APKO_CONFIGS {
        check_apko_configuration(relative, target);
    }
}

#[test]
fn package_descriptions_match_the_workspace_and_the_image_configurations() {
    let version = workspace_field("version");
    let license = workspace_field("license");
    for (relative, _) in APKO_CONFIGS {
        let image = relative
            .strip_prefix("images/")
            .and_then(|r| r.strip_suffix(".apko.yaml"))
            .unwrap();
        let package_file = format!("images/{image}.package.yaml");
        let package = PackageConfig::from_yaml(&read(&package_file))
            .unwrap_or_else(|e| panic!("{package_file}: {e}"));
        assert_eq!(package.name, image, "{package_file}");
        assert_eq!(
            package.full_version(),
            format!("{version}-r0"),
            "{package_file}"
        );
        assert_eq!(package.license(), license, "{package_file}");
        let config = apko_config(relative);
        for arch in &config.archs {
            assert!(
                package.allows_arch(arch.apk()),
                "{package_file} cannot be built for {arch:?}, which {relative} needs"
            );
        }
        assert!(
            config
                .contents
                .packages
                .iter()
                .any(|atom| atom.split('@').next() == Some(image)),
            "{relative} installs {image}"
        );
    }
}

fn check_apko_configuration(relative: &str, target: &str) {
    let config = apko_config(relative);
    let uid = u32::try_from(BUILDER_UID).unwrap();

    let accounts = config.accounts.as_ref().expect("accounts");
    assert_eq!(accounts.run_as.as_deref(), Some(uid.to_string().as_str()));
    let user = accounts
        .users
        .iter()
        .find(|u| u.uid == uid)
        .expect("a user with the UID");
    assert_eq!(user.gid, Some(uid));
    assert!(
        accounts.groups.iter().any(|g| g.gid == uid),
        "a group with the GID"
    );

    // Exec form: the same binary as the Dockerfile's builder image, no shell.
    let entrypoint = config.entrypoint.as_ref().expect("entrypoint");
    assert_eq!(entrypoint.shell_fragment, None);
    assert_eq!(entrypoint.kind, None);
    let command = split_words(entrypoint.command.as_deref().expect("command")).unwrap();
    let program = Path::new(&command[0])
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        !SHELLS.contains(&program.as_str()),
        "entrypoint `{}` is a shell",
        command[0]
    );
    let dockerfile = dockerfile();
    let stage = dockerfile.stage(target).unwrap();
    let docker_entrypoint = stage
        .last("ENTRYPOINT")
        .unwrap()
        .exec_form()
        .unwrap()
        .unwrap();
    assert_eq!(
        command, docker_entrypoint,
        "the same entrypoint as the Dockerfile image"
    );

    // Packages: Wolfi's runtime and the packaged binary, pinned to the local repository.
    let packages: Vec<Dependency> = config
        .contents
        .packages
        .iter()
        .map(|atom| Dependency::parse(atom).unwrap())
        .collect();
    for runtime in ["wolfi-baselayout", "ca-certificates-bundle"] {
        assert!(
            packages
                .iter()
                .any(|p| p.name == runtime && p.tag.is_none()),
            "{runtime}"
        );
    }
    let binary = packages
        .iter()
        .find(|p| p.name == program)
        .expect("the packaged binary");
    let tag = binary
        .tag
        .clone()
        .expect("the binary is pinned to a tagged repository");

    let base_dir = workspace_root().join("images");
    let repositories: Vec<RepositorySpec> = config
        .contents
        .repositories
        .iter()
        .map(|text| RepositorySpec::parse(text, Some(&base_dir)).unwrap())
        .collect();
    let local = repositories
        .iter()
        .find(|r| r.tag.as_deref() == Some(tag.as_str()))
        .unwrap_or_else(|| panic!("no repository tagged @{tag}"));
    assert!(
        matches!(&local.location, RepositoryLocation::Directory(dir) if dir.starts_with(&base_dir)),
        "the packaged binary comes from a local repository next to the configuration: {local:?}"
    );
    assert!(
        repositories
            .iter()
            .any(|r| r.tag.is_none() && r.original == "https://packages.wolfi.dev/os"),
        "Wolfi is the untagged repository"
    );
    assert!(
        config
            .contents
            .keyring
            .contains(&"https://packages.wolfi.dev/os/wolfi-signing.rsa.pub".to_string())
    );
    assert!(
        config
            .contents
            .keyring
            .iter()
            .any(|key| key.starts_with("./")),
        "a local key"
    );

    // The architectures are the platforms the Dockerfile images are built for.
    let platforms: BTreeSet<&str> = config
        .archs
        .iter()
        .map(|a| a.platform().architecture)
        .collect();
    assert_eq!(platforms, BTreeSet::from(["amd64", "arm64"]));
}
