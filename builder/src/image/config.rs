//! The OCI image configuration JSON of one architecture's image, built from the apko image
//! configuration as apko builds it: `Env` with apko's `PATH` and `SSL_CERT_FILE` defaults added
//! when missing and sorted as `KEY=value` strings, `Entrypoint` from `shell-fragment`
//! (`/bin/sh -c …`) or from `command` split like google/shlex splits it, `Cmd` split the same
//! way, one history entry, and no timestamp other than the given creation time.
//!
//! Serialization is deterministic: fields in go-containerregistry's order, maps sorted, no
//! whitespace. Unlike apko, the config's `Labels` carry the image annotations. Nothing here
//! does IO; manifests and the layout are in `layout`.

use std::collections::BTreeMap;

use securebuild_crds::image_config::{Architecture, ImageConfiguration};
use serde::Serialize;

/// OCI media type of an image configuration.
pub const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The only operating system images are built for.
pub const OS_LINUX: &str = "linux";
/// `rootfs.type` of every image.
pub const ROOTFS_TYPE_LAYERS: &str = "layers";
/// The config's `author`.
pub const AUTHOR: &str = "github.com/securebuild/securebuild";
/// `created_by` and `author` of the history entry.
pub const HISTORY_CREATED_BY: &str = "securebuild";
/// `comment` of the history entry.
pub const HISTORY_COMMENT: &str = "This is a SecureBuild single-layer image";
/// Environment variable set by default: the search path.
pub const ENV_PATH: &str = "PATH";
/// `PATH` when the configuration sets none (apko's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Environment variable set by default: the CA bundle.
pub const ENV_SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// `SSL_CERT_FILE` when the configuration sets none (apko's default).
pub const DEFAULT_SSL_CERT_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The shell a `shell-fragment` entrypoint runs in, and its flag.
pub const SHELL_FRAGMENT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// apko's supervised entrypoint type, which is not supported.
pub const ENTRYPOINT_TYPE_SERVICE_BUNDLE: &str = "service-bundle";
/// Annotation: the image's source repository.
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// Annotation: the source revision.
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
/// Annotation: the creation time.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Latest creation time accepted: 9999-12-30T22:00:00Z, the end of the time library's range.
pub const MAX_CREATED: i64 = 253_402_207_200;

/// Why a command line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote is opened and never closed.
    #[error("unterminated {quote} quote in `{text}`")]
    UnterminatedQuote {
        /// The quote character.
        quote: char,
        /// The text being split.
        text: String,
    },
    /// The text ends with a lone backslash.
    #[error("`{text}` ends with an escape character")]
    TrailingEscape {
        /// The text being split.
        text: String,
    },
}

/// Why the image config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageConfigError {
    /// The creation time cannot be written as RFC 3339.
    #[error("creation time {epoch} is outside 1970-01-01 to 9999-12-30")]
    Created {
        /// Seconds since the epoch.
        epoch: i64,
    },
    /// `entrypoint.command` does not split.
    #[error("cannot split entrypoint.command")]
    Entrypoint(#[source] SplitError),
    /// `cmd` does not split.
    #[error("cannot split cmd")]
    Cmd(#[source] SplitError),
    /// An entrypoint type other than a plain command or `service-bundle`.
    #[error(
        "entrypoint type `{kind}` is not supported; use command or shell-fragment, or type service-bundle"
    )]
    UnsupportedEntrypointType {
        /// The type as configured.
        kind: String,
    },
    /// An environment variable name that is empty or contains `=`.
    #[error("invalid environment variable name `{name}`")]
    InvalidEnvironmentName {
        /// The name as configured.
        name: String,
    },
    /// A layer diff ID that is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid layer diff ID `{diff_id}`")]
    InvalidDiffId {
        /// The value given.
        diff_id: String,
    },
    /// Encoding the JSON failed.
    #[error("cannot encode the image config")]
    Json(#[source] serde_json::Error),
}

/// What an image config is built from.
#[derive(Clone, Copy, Debug)]
pub struct ConfigInput<'a> {
    /// The apko image configuration.
    pub image: &'a ImageConfiguration,
    /// The architecture of this image.
    pub arch: &'a Architecture,
    /// `sha256:` digests of the uncompressed layers, bottom first.
    pub diff_ids: &'a [String],
    /// Creation time, seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub created: i64,
    /// The OCI `User` (the resolved `run-as`), if any.
    pub user: Option<&'a str>,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    architecture: &'a str,
    author: &'a str,
    created: &'a str,
    history: [History<'a>; 1],
    os: &'a str,
    rootfs: RootFs<'a>,
    config: RuntimeConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
struct History<'a> {
    author: &'a str,
    created: &'a str,
    created_by: &'a str,
    comment: &'a str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: &'a [String],
}

/// An empty JSON object, the value type of `Volumes`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
}

/// The image config JSON bytes (the config blob).
pub fn image_config_json(input: &ConfigInput<'_>) -> Result<Vec<u8>, ImageConfigError> {
    for diff_id in input.diff_ids {
        if securebuild_registry::digest::sha256_hex(diff_id).is_none() {
            return Err(ImageConfigError::InvalidDiffId {
                diff_id: diff_id.clone(),
            });
        }
    }
    let created = rfc3339(input.created)?;
    let platform = input.arch.platform();
    let image = input.image;
    let config = ConfigFile {
        architecture: platform.architecture,
        author: AUTHOR,
        created: &created,
        history: [History {
            author: HISTORY_CREATED_BY,
            created: &created,
            created_by: HISTORY_CREATED_BY,
            comment: HISTORY_COMMENT,
        }],
        os: OS_LINUX,
        rootfs: RootFs {
            kind: ROOTFS_TYPE_LAYERS,
            diff_ids: input.diff_ids,
        },
        config: RuntimeConfig {
            cmd: command(image)?,
            entrypoint: entrypoint(image)?,
            env: environment(image)?,
            labels: annotations(image),
            user: input.user.filter(|u| !u.is_empty()).map(str::to_string),
            volumes: image
                .volumes
                .iter()
                .map(|volume| (volume.clone(), Empty {}))
                .collect(),
            working_dir: image.work_dir.clone().filter(|d| !d.is_empty()),
            stop_signal: image.stop_signal.clone().filter(|s| !s.is_empty()),
        },
        variant: platform.variant,
    };
    serde_json::to_vec(&config).map_err(ImageConfigError::Json)
}

/// `Env`: the configured variables plus apko's `PATH` and `SSL_CERT_FILE` defaults where
/// missing, as `KEY=value` sorted bytewise.
pub fn environment(image: &ImageConfiguration) -> Result<Vec<String>, ImageConfigError> {
    let mut env = image.environment.clone();
    for (name, value) in [
        (ENV_PATH, DEFAULT_PATH),
        (ENV_SSL_CERT_FILE, DEFAULT_SSL_CERT_FILE),
    ] {
        env.entry(name.to_string())
            .or_insert_with(|| value.to_string());
    }
    let mut pairs = Vec::with_capacity(env.len());
    for (name, value) in env {
        if name.is_empty() || name.contains('=') {
            return Err(ImageConfigError::InvalidEnvironmentName { name });
        }
        pairs.push(format!("{name}={value}"));
    }
    pairs.sort();
    Ok(pairs)
}

/// `Entrypoint`: `/bin/sh -c <fragment>` for a shell fragment, else the split command (for a
/// `service-bundle`, the `/bin/s6-svscan /sv` that `image::services` sets).
pub fn entrypoint(image: &ImageConfiguration) -> Result<Option<Vec<String>>, ImageConfigError> {
    let Some(entrypoint) = &image.entrypoint else {
        return Ok(None);
    };
    if let Some(kind) = entrypoint
        .kind
        .as_deref()
        .filter(|k| !k.is_empty() && *k != securebuild_crds::image_config::SERVICE_BUNDLE)
    {
        return Err(ImageConfigError::UnsupportedEntrypointType {
            kind: kind.to_string(),
        });
    }
    if let Some(fragment) = entrypoint
        .shell_fragment
        .as_deref()
        .filter(|f| !f.is_empty())
    {
        let mut words: Vec<String> = SHELL_FRAGMENT_SHELL.iter().map(|w| w.to_string()).collect();
        words.push(fragment.to_string());
        return Ok(Some(words));
    }
    split_words(entrypoint.command.as_deref(), ImageConfigError::Entrypoint)
}

/// `Cmd`: the split `cmd`.
pub fn command(image: &ImageConfiguration) -> Result<Option<Vec<String>>, ImageConfigError> {
    split_words(image.cmd.as_deref(), ImageConfigError::Cmd)
}

/// The words of a configured command line; `None` when it is unset or has no words.
fn split_words(
    text: Option<&str>,
    error: fn(SplitError) -> ImageConfigError,
) -> Result<Option<Vec<String>>, ImageConfigError> {
    match text.filter(|t| !t.is_empty()) {
        Some(text) => {
            let words = split_shell_words(text).map_err(error)?;
            Ok((!words.is_empty()).then_some(words))
        }
        None => Ok(None),
    }
}

/// The image annotations: the configured ones, then `vcs-url` as the source (and, after an
/// `@`, the revision), which takes precedence as in apko.
pub fn annotations(image: &ImageConfiguration) -> BTreeMap<String, String> {
    let mut annotations = image.annotations.clone();
    if let Some(url) = image.vcs_url.as_deref().filter(|u| !u.is_empty()) {
        let split = url.rsplit_once('@').filter(|(repo, revision)| {
            !repo.is_empty() && !revision.is_empty() && !revision.contains(['/', ':'])
        });
        match split {
            Some((repo, revision)) => {
                annotations.insert(ANNOTATION_SOURCE.to_string(), repo.to_string());
                annotations.insert(ANNOTATION_REVISION.to_string(), revision.to_string());
            }
            None => {
                annotations.insert(ANNOTATION_SOURCE.to_string(), url.to_string());
            }
        }
    }
    annotations
}

/// Seconds since the epoch as RFC 3339 in UTC, as Go writes a `time.Time` without fractional
/// seconds: `2024-01-02T03:04:05Z`.
pub fn rfc3339(epoch: i64) -> Result<String, ImageConfigError> {
    if !(0..=MAX_CREATED).contains(&epoch) {
        return Err(ImageConfigError::Created { epoch });
    }
    let timestamp =
        jiff::Timestamp::from_second(epoch).map_err(|_| ImageConfigError::Created { epoch })?;
    Ok(timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Splits a command line into words as google/shlex (which apko uses) does: blanks
/// (space, tab, CR, LF) separate words; `'…'` is literal; in `"…"` a backslash makes the next
/// character literal; outside quotes a backslash escapes the next character; a `#` at the start
/// of a word comments out the rest of the line. An unterminated quote or a trailing backslash
/// is an error.
pub fn split_shell_words(text: &str) -> Result<Vec<String>, SplitError> {
    enum State {
        Between,
        Word,
        Escape,
        Single,
        Double,
        DoubleEscape,
        Comment,
    }
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Between;
    for c in text.chars() {
        state = match state {
            State::Between => match c {
                c if is_blank(c) => State::Between,
                '#' => State::Comment,
                '\'' => State::Single,
                '"' => State::Double,
                '\\' => State::Escape,
                c => {
                    word.push(c);
                    State::Word
                }
            },
            State::Word => match c {
                c if is_blank(c) => {
                    words.push(std::mem::take(&mut word));
                    State::Between
                }
                '\'' => State::Single,
                '"' => State::Double,
                '\\' => State::Escape,
                c => {
                    word.push(c);
                    State::Word
                }
            },
            State::Escape => {
                word.push(c);
                State::Word
            }
            State::Single => match c {
                '\'' => State::Word,
                c => {
                    word.push(c);
                    State::Single
                }
            },
            State::Double => match c {
                '"' => State::Word,
                '\\' => State::DoubleEscape,
                c => {
                    word.push(c);
                    State::Double
                }
            },
            State::DoubleEscape => {
                word.push(c);
                State::Double
            }
            State::Comment => match c {
                '\n' => State::Between,
                _ => State::Comment,
            },
        };
    }
    match state {
        State::Between | State::Comment => {}
        State::Word => words.push(word),
        State::Escape | State::DoubleEscape => {
            return Err(SplitError::TrailingEscape {
                text: text.to_string(),
            });
        }
        State::Single | State::Double => {
            let quote = if matches!(state, State::Single) {
                '\''
            } else {
                '"'
            };
            return Err(SplitError::UnterminatedQuote {
                quote,
                text: text.to_string(),
            });
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use securebuild_crds::image_config::{ImageAccounts, ImageEntrypoint};

    const DIFF_ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn json(input: &ConfigInput<'_>) -> serde_json::Value {
        serde_json::from_slice(&image_config_json(input).unwrap()).unwrap()
    }

    #[test]
    fn minimal_config_is_exactly_as_expected() {
        let image = ImageConfiguration::default();
        let arch = Architecture::parse("amd64").unwrap();
        let diff_ids = [DIFF_ID.to_string()];
        let input = ConfigInput {
            image: &image,
            arch: &arch,
            diff_ids: &diff_ids,
            created: 0,
            user: None,
        };
        let bytes = image_config_json(&input).unwrap();
        let expected = format!(
            concat!(
                r#"{{"architecture":"amd64","author":"github.com/securebuild/securebuild","#,
                r#""created":"1970-01-01T00:00:00Z","history":[{{"author":"securebuild","#,
                r#""created":"1970-01-01T00:00:00Z","created_by":"securebuild","#,
                r#""comment":"This is a SecureBuild single-layer image"}}],"os":"linux","#,
                r#""rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{"Env":["#,
                r#""PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","#,
                r#""SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}}}}"#
            ),
            DIFF_ID
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn every_field() {
        let image = ImageConfiguration::from_yaml(
            r#"
contents: {packages: [busybox]}
entrypoint:
  command: /usr/bin/app --flag "two words"
cmd: serve --port=8080
stop-signal: SIGTERM
work-dir: /srv
accounts: {run-as: app}
environment:
  PATH: /custom/bin
  A_VAR: x=y
  Z: last
volumes: [/data, /cache, /data]
annotations:
  org.opencontainers.image.authors: Platform Team
  org.opencontainers.image.source: overridden
vcs-url: https://github.com/example/images@0123abc
"#,
        )
        .unwrap();
        let arch = Architecture::parse("armv7").unwrap();
        let diff_ids = [DIFF_ID.to_string()];
        let input = ConfigInput {
            image: &image,
            arch: &arch,
            diff_ids: &diff_ids,
            created: 1_700_000_000,
            user: Some("65532"),
        };
        let value = json(&input);
        assert_eq!(value["architecture"], "arm");
        assert_eq!(value["variant"], "v7");
        assert_eq!(value["created"], "2023-11-14T22:13:20Z");
        assert_eq!(value["history"][0]["created"], "2023-11-14T22:13:20Z");
        let config = &value["config"];
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(["/usr/bin/app", "--flag", "two words"])
        );
        assert_eq!(config["Cmd"], serde_json::json!(["serve", "--port=8080"]));
        assert_eq!(
            config["Env"],
            serde_json::json!([
                "A_VAR=x=y",
                "PATH=/custom/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "Z=last"
            ])
        );
        assert_eq!(config["User"], "65532");
        assert_eq!(config["WorkingDir"], "/srv");
        assert_eq!(config["StopSignal"], "SIGTERM");
        assert_eq!(
            config["Volumes"],
            serde_json::json!({"/cache": {}, "/data": {}})
        );
        assert_eq!(
            config["Labels"],
            serde_json::json!({
                "org.opencontainers.image.authors": "Platform Team",
                "org.opencontainers.image.revision": "0123abc",
                "org.opencontainers.image.source": "https://github.com/example/images"
            })
        );
        // Same input, same bytes.
        assert_eq!(
            image_config_json(&input).unwrap(),
            image_config_json(&input).unwrap()
        );
    }

    #[test]
    fn entrypoint_forms() {
        let check = |entrypoint: ImageEntrypoint, expected: Result<Option<&[&str]>, &str>| {
            let image = ImageConfiguration {
                entrypoint: Some(entrypoint.clone()),
                ..ImageConfiguration::default()
            };
            match (entrypoint_words(&image), expected) {
                (Ok(got), Ok(want)) => assert_eq!(
                    got,
                    want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                    "{entrypoint:?}"
                ),
                (Err(err), Err(fragment)) => {
                    assert!(err.to_string().contains(fragment), "{err}")
                }
                (got, want) => panic!("{entrypoint:?}: got {got:?}, want {want:?}"),
            }
        };
        fn entrypoint_words(
            image: &ImageConfiguration,
        ) -> Result<Option<Vec<String>>, ImageConfigError> {
            entrypoint(image)
        }
        let command = |c: &str| ImageEntrypoint {
            command: Some(c.into()),
            ..ImageEntrypoint::default()
        };
        check(command("/bin/sh -l"), Ok(Some(&["/bin/sh", "-l"])));
        check(command(""), Ok(None));
        check(command("   "), Ok(None));
        check(
            ImageEntrypoint {
                shell_fragment: Some("echo $HOME && exec app".into()),
                command: Some("/ignored".into()),
                ..ImageEntrypoint::default()
            },
            Ok(Some(&["/bin/sh", "-c", "echo $HOME && exec app"])),
        );
        check(
            command("'unterminated"),
            Err("cannot split entrypoint.command"),
        );
        check(
            ImageEntrypoint {
                kind: Some("oneshot".into()),
                ..ImageEntrypoint::default()
            },
            Err("entrypoint type `oneshot` is not supported"),
        );
        check(
            ImageEntrypoint {
                kind: Some("service-bundle".into()),
                command: Some("/bin/s6-svscan /sv".into()),
                ..ImageEntrypoint::default()
            },
            Ok(Some(&["/bin/s6-svscan", "/sv"])),
        );
    }

    #[test]
    fn splitting() {
        let check = |text: &str, expected: Result<&[&str], SplitError>| {
            let got = split_shell_words(text);
            match expected {
                Ok(words) => assert_eq!(got.unwrap(), words, "{text:?}"),
                Err(err) => assert_eq!(got, Err(err), "{text:?}"),
            }
        };
        check("a b  c", Ok(&["a", "b", "c"]));
        check(
            "  leading and trailing  ",
            Ok(&["leading", "and", "trailing"]),
        );
        check("tab\tand\nnewline", Ok(&["tab", "and", "newline"]));
        check(r#"one "two three" four"#, Ok(&["one", "two three", "four"]));
        check("it's quoted'", Ok(&["its quoted"]));
        check(r#"'single $x "y"'"#, Ok(&[r#"single $x "y""#]));
        check(r#""a\"b" "c\\d" "e\f""#, Ok(&[r#"a"b"#, r"c\d", "ef"]));
        check(r"escaped\ space", Ok(&["escaped space"]));
        check(r#"a""b"#, Ok(&["ab"]));
        check(r#"x "" y"#, Ok(&["x", "", "y"]));
        check("--opt=va#lue", Ok(&["--opt=va#lue"]));
        check("cmd # comment\nnext", Ok(&["cmd", "next"]));
        check("#only a comment", Ok(&[]));
        check("", Ok(&[]));
        check("ünïcode ✓", Ok(&["ünïcode", "✓"]));
        check(
            "'open",
            Err(SplitError::UnterminatedQuote {
                quote: '\'',
                text: "'open".into(),
            }),
        );
        check(
            r#"a "open"#,
            Err(SplitError::UnterminatedQuote {
                quote: '"',
                text: r#"a "open"#.into(),
            }),
        );
        check(
            r"trailing\",
            Err(SplitError::TrailingEscape {
                text: r"trailing\".into(),
            }),
        );
        check(
            r#""in quotes\"#,
            Err(SplitError::TrailingEscape {
                text: r#""in quotes\"#.into(),
            }),
        );
    }

    #[test]
    fn annotations_from_vcs_url() {
        let check = |url: &str, source: &str, revision: Option<&str>| {
            let image = ImageConfiguration {
                vcs_url: Some(url.into()),
                ..ImageConfiguration::default()
            };
            let annotations = annotations(&image);
            assert_eq!(annotations[ANNOTATION_SOURCE], source, "{url}");
            assert_eq!(
                annotations.get(ANNOTATION_REVISION).map(String::as_str),
                revision,
                "{url}"
            );
        };
        check("https://github.com/a/b", "https://github.com/a/b", None);
        check(
            "https://github.com/a/b@abc123",
            "https://github.com/a/b",
            Some("abc123"),
        );
        check("git@github.com:a/b", "git@github.com:a/b", None);
        check(
            "git@github.com:a/b@v1.2",
            "git@github.com:a/b",
            Some("v1.2"),
        );
    }

    #[test]
    fn invalid_inputs() {
        let arch = Architecture::parse("arm64").unwrap();
        let mut image = ImageConfiguration::default();
        let good = [DIFF_ID.to_string()];
        let input = |image: &ImageConfiguration, diff_ids: &[String], created: i64| {
            image_config_json(&ConfigInput {
                image,
                arch: &arch,
                diff_ids,
                created,
                user: None,
            })
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            input(&image, &["sha256:ABC".to_string()], 0),
            "invalid layer diff ID `sha256:ABC`"
        );
        assert_eq!(
            input(&image, &good, -1),
            "creation time -1 is outside 1970-01-01 to 9999-12-30"
        );
        assert!(input(&image, &good, MAX_CREATED + 1).contains("outside"));
        image.environment.insert("A=B".into(), "c".into());
        assert_eq!(
            input(&image, &good, 0),
            "invalid environment variable name `A=B`"
        );
        let image = ImageConfiguration {
            cmd: Some("\"x".into()),
            accounts: Some(ImageAccounts::default()),
            ..ImageConfiguration::default()
        };
        assert_eq!(input(&image, &good, 0), "cannot split cmd");
        assert_eq!(rfc3339(MAX_CREATED).unwrap(), "9999-12-30T22:00:00Z");
    }
}
