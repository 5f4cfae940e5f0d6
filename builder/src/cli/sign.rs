//! `securebuild sign IMAGE --key KEY`: signs an image in a registry with a cosign key, appending
//! a simple-signing layer to its `sha256-<hex>.sig` manifest, and the key, password and
//! registry plumbing `securebuild verify` shares.
//!
//! Key passwords come from `--key-password-file`, `SECUREBUILD_KEY_PASSWORD` or cosign's
//! `COSIGN_PASSWORD`, in that order, never from a command-line value; nothing here prompts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::attest::keys::{KeyError, SigningKey, VerifyingKey};
use crate::attest::publish::{self, repository_name, tag_or_digest};
use crate::cli::SignArgs;
use crate::error::{Error, Result};
use securebuild_registry::auth::{AuthError, DockerConfig};
use securebuild_registry::{Reference, Registry, RegistryError, RegistryOptions};

/// Environment variable holding the signing key's password.
pub const KEY_PASSWORD_ENV: &str = "SECUREBUILD_KEY_PASSWORD";
/// cosign's environment variable for the key password, honoured for compatibility.
pub const COSIGN_PASSWORD_ENV: &str = "COSIGN_PASSWORD";
/// Largest key or password file read.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Failures of the `sign` and `verify` commands before or around the library calls.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A key or password file could not be read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key or password file is larger than [`MAX_KEY_FILE_BYTES`].
    #[error("{path} is larger than {max} bytes")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The key file does not hold a usable key.
    #[error("key {path}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The key is encrypted and no password was supplied.
    #[error(
        "key {path} is encrypted: set {KEY_PASSWORD_ENV} (or {COSIGN_PASSWORD_ENV}) or pass --key-password-file"
    )]
    PasswordRequired {
        /// The key file.
        path: PathBuf,
    },
    /// An environment variable holding a password is not valid UTF-8.
    #[error("environment variable {name} is not valid utf-8")]
    PasswordEncoding {
        /// The variable.
        name: &'static str,
    },
    /// A `-a` annotation is not `KEY=VALUE`.
    #[error("annotation {annotation:?} is not KEY=VALUE with a non-empty KEY")]
    Annotation {
        /// The argument as given.
        annotation: String,
    },
    /// No valid signature carries the annotations `verify -a` asked for.
    #[error(
        "no valid signature of {image} carries the annotations {wanted}; the valid ones carry: {found}"
    )]
    AnnotationsNotSigned {
        /// The image (`repository@digest`).
        image: String,
        /// The annotations asked for, `key=value` joined by `, `.
        wanted: String,
        /// The annotations of each valid signature, `;`-separated.
        found: String,
    },
    /// The docker configuration could not be loaded.
    #[error("registry configuration")]
    RegistryConfig {
        /// What failed.
        source: AuthError,
    },
    /// The image reference is invalid or the registry client cannot be built.
    #[error(transparent)]
    Registry {
        /// What failed.
        source: RegistryError,
    },
}

/// Runs `securebuild sign`.
pub async fn run(args: &SignArgs, out: &mut dyn Write) -> Result<()> {
    let reference = parse_image(&args.image)?;
    let annotations = parse_annotations(&args.annotations)?;
    let key = read_signing_key(&args.key, args.key_password_file.as_deref())?;
    let registry = open_registry(args.registry_config.as_deref(), &args.insecure_registries)?;
    let repository = repository_name(&reference);
    let digest = publish::resolve_digest(&registry, &repository, tag_or_digest(&reference))
        .await
        .map_err(publish::PublishError::from)?;
    let annotations = (!annotations.is_empty()).then_some(&annotations);
    let signature = publish::sign_image(&registry, &repository, &digest, &key, annotations).await?;
    let state = if signature.appended {
        "pushed"
    } else {
        "already present"
    };
    writeln!(out, "signed {repository}@{digest}").map_err(Error::Output)?;
    writeln!(
        out,
        "signature {}@{} ({state})",
        signature.reference, signature.digest
    )
    .map_err(Error::Output)?;
    Ok(())
}

/// Parses the IMAGE argument.
pub(crate) fn parse_image(image: &str) -> Result<Reference, CommandError> {
    securebuild_registry::parse_reference(image).map_err(|source| CommandError::Registry { source })
}

/// A registry client with the docker configuration (`--registry-config`, else
/// `$DOCKER_CONFIG` or `~/.docker`) and the plain-HTTP hosts.
pub(crate) fn open_registry(
    config: Option<&Path>,
    insecure_registries: &[String],
) -> Result<Registry, CommandError> {
    let docker_config =
        DockerConfig::load(config).map_err(|source| CommandError::RegistryConfig { source })?;
    Registry::new(RegistryOptions {
        insecure_registries: insecure_registries.to_vec(),
        docker_config,
        ..RegistryOptions::default()
    })
    .map_err(|source| CommandError::Registry { source })
}

/// `-a KEY=VALUE` arguments as a map (a repeated key keeps its last value, as cosign does).
pub(crate) fn parse_annotations(
    annotations: &[String],
) -> Result<BTreeMap<String, String>, CommandError> {
    annotations
        .iter()
        .map(|annotation| match annotation.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(CommandError::Annotation {
                annotation: annotation.clone(),
            }),
        })
        .collect()
}

/// The key password: the first line of `password_file` (without its line ending), else
/// `$SECUREBUILD_KEY_PASSWORD`, else `$COSIGN_PASSWORD` (as read by `env`); `None` when none is
/// set. A variable that is set but empty is an empty password, as with cosign.
pub(crate) fn key_password(
    password_file: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<Zeroizing<Vec<u8>>>, CommandError> {
    if let Some(path) = password_file {
        let contents = read_small_file(path)?;
        let line_end = contents
            .iter()
            .position(|&byte| byte == b'\n')
            .unwrap_or(contents.len());
        let mut line = &contents[..line_end];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        return Ok(Some(Zeroizing::new(line.to_vec())));
    }
    for name in [KEY_PASSWORD_ENV, COSIGN_PASSWORD_ENV] {
        if let Some(value) = env(name) {
            let value = value
                .into_string()
                .map_err(|_| CommandError::PasswordEncoding { name })?;
            return Ok(Some(Zeroizing::new(value.into_bytes())));
        }
    }
    Ok(None)
}

/// Reads a private key file with the password [`key_password`] finds (from `password_file` or
/// the environment).
pub(crate) fn read_signing_key(
    path: &Path,
    password_file: Option<&Path>,
) -> Result<SigningKey, CommandError> {
    let password = key_password(password_file, |name| std::env::var_os(name))?;
    load_signing_key(path, password.as_deref().map(|p| p.as_slice()))
}

/// Reads a private key file (cosign's encrypted key, PKCS#8 or SEC1 PEM).
pub(crate) fn load_signing_key(
    path: &Path,
    password: Option<&[u8]>,
) -> Result<SigningKey, CommandError> {
    let pem = read_small_file(path)?;
    SigningKey::from_pem(&pem, password).map_err(|source| match source {
        KeyError::PasswordRequired { .. } => CommandError::PasswordRequired {
            path: path.to_owned(),
        },
        source => CommandError::Key {
            path: path.to_owned(),
            source,
        },
    })
}

/// Reads a public key file (`cosign.pub`).
pub(crate) fn load_verifying_key(path: &Path) -> Result<VerifyingKey, CommandError> {
    let pem = read_small_file(path)?;
    VerifyingKey::from_pem(&pem).map_err(|source| CommandError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads at most [`MAX_KEY_FILE_BYTES`] from `path`.
fn read_small_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CommandError> {
    let read_error = |source| CommandError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut contents = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(read_error)?;
    if contents.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(CommandError::FileTooLarge {
            path: path.to_owned(),
            max: MAX_KEY_FILE_BYTES,
        });
    }
    Ok(contents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn password_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        fn check(file: Option<&Path>, env: &[(&str, &str)], expected: Option<&str>) {
            let password = key_password(file, env_of(env)).unwrap();
            assert_eq!(
                password
                    .as_deref()
                    .map(|p| String::from_utf8(p.clone()).unwrap()),
                expected.map(str::to_owned),
                "{file:?} {env:?}"
            );
        }
        std::fs::write(&file, "from-file\r\nsecond line\n").unwrap();
        let both = [(KEY_PASSWORD_ENV, "ours"), (COSIGN_PASSWORD_ENV, "cosign")];
        check(Some(&file), &both, Some("from-file"));
        check(None, &both, Some("ours"));
        check(None, &[(COSIGN_PASSWORD_ENV, "cosign")], Some("cosign"));
        check(None, &[(COSIGN_PASSWORD_ENV, "")], Some(""));
        check(None, &[("OTHER", "x")], None);
        std::fs::write(&file, "no newline").unwrap();
        check(Some(&file), &[], Some("no newline"));
        std::fs::write(&file, "").unwrap();
        check(Some(&file), &[], Some(""));

        let missing = dir.path().join("missing");
        let error = key_password(Some(&missing), env_of(&[])).unwrap_err();
        assert!(error.to_string().starts_with("cannot read "), "{error}");
        std::fs::write(&file, vec![b'x'; MAX_KEY_FILE_BYTES as usize + 1]).unwrap();
        let error = key_password(Some(&file), env_of(&[])).unwrap_err();
        assert!(error.to_string().contains("is larger than"), "{error}");
    }

    #[test]
    fn keys_load_with_and_without_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let encrypted = dir.path().join("cosign.key");
        std::fs::write(&encrypted, key.to_encrypted_pem(b"hunter2").unwrap()).unwrap();
        let plain = dir.path().join("plain.key");
        std::fs::write(&plain, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let public = dir.path().join("cosign.pub");
        std::fs::write(&public, key.verifying_key().to_pem().unwrap()).unwrap();

        let loaded = load_signing_key(&encrypted, Some(b"hunter2")).unwrap();
        assert_eq!(loaded.verifying_key(), key.verifying_key());
        assert_eq!(
            load_signing_key(&plain, None).unwrap().verifying_key(),
            key.verifying_key()
        );
        assert_eq!(load_verifying_key(&public).unwrap(), key.verifying_key());

        fn check(result: Result<impl std::fmt::Debug, CommandError>, expected: &str) {
            let error = crate::error::chain(&result.unwrap_err());
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
        check(
            load_signing_key(&encrypted, None),
            "is encrypted: set SECUREBUILD_KEY_PASSWORD (or COSIGN_PASSWORD) or pass --key-password-file",
        );
        check(
            load_signing_key(&encrypted, Some(b"wrong")),
            "wrong password",
        );
        check(
            load_signing_key(&public, None),
            "unsupported pem block type",
        );
        check(load_verifying_key(&plain), "unsupported pem block type");
        check(
            load_verifying_key(&dir.path().join("absent.pub")),
            "cannot read",
        );
    }

    #[test]
    fn annotations_parse_as_key_value() {
        fn check(input: &[&str], expected: Option<&[(&str, &str)]>) {
            let input: Vec<String> = input.iter().map(|s| (*s).to_owned()).collect();
            let parsed = parse_annotations(&input).ok();
            let expected = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>()
            });
            assert_eq!(parsed, expected, "{input:?}");
        }
        check(&[], Some(&[]));
        check(&["a=1", "b=x=y"], Some(&[("a", "1"), ("b", "x=y")]));
        check(&["a=1", "a=2"], Some(&[("a", "2")]));
        check(&["a="], Some(&[("a", "")]));
        check(&["novalue"], None);
        check(&["=value"], None);
    }
}
