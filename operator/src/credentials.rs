//! Registry clients for an ImageBuild's image, with the credentials of its push Secret: the
//! `.dockerconfigjson` key of the `kubernetes.io/dockerconfigjson` Secret named in
//! `spec.target.pushSecretRef`, in the ImageBuild's namespace — exactly what a builder Pod
//! mounts. `local` builds push with it and signing pushes signatures and attestations with it.
//!
//! The operator never runs a credential helper on behalf of a Secret (that would let anyone who
//! can write a Secret pick a program for the operator to run): a configuration naming
//! `credsStore` or `credHelpers` is refused. Secrets are read on every call, never cached.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use securebuild_crds::ImageBuild;
use securebuild_registry::auth::{AuthError, DockerConfig};
use securebuild_registry::{Registry, RegistryError, RegistryOptions};

use crate::config::Config;
use crate::job::DOCKER_CONFIG_JSON_KEY;

/// The docker configuration field that names a default credential helper.
pub const CREDS_STORE_FIELD: &str = "credsStore";
/// The docker configuration field that names per-registry credential helpers.
pub const CRED_HELPERS_FIELD: &str = "credHelpers";

/// Why no registry client could be made for an ImageBuild.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The Secret cannot be read (missing, or the operator may not get it).
    #[error("cannot read the push Secret `{secret}`")]
    Read {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The Secret has no `.dockerconfigjson` key.
    #[error(
        "the push Secret `{secret}` has no `{key}` key; create it with `kubectl create secret docker-registry`"
    )]
    MissingKey {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The key looked for.
        key: &'static str,
    },
    /// The configuration names a credential helper.
    #[error(
        "the push Secret `{secret}` names credential helpers (`{field}`); put the credentials themselves in `auths`"
    )]
    CredentialHelper {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The field naming the helper.
        field: &'static str,
    },
    /// The configuration is not a valid docker `config.json`.
    #[error("the push Secret `{secret}` is not a docker configuration")]
    Config {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The parser's error.
        #[source]
        source: AuthError,
    },
    /// The registry client cannot be created.
    #[error("cannot create the registry client")]
    Registry {
        /// The client's error.
        #[source]
        source: RegistryError,
    },
}

/// The docker configuration in a push Secret; `secret` (`namespace/name`) names it in errors.
pub fn docker_config_from_secret(
    secret: &Secret,
    name: &str,
) -> Result<DockerConfig, CredentialsError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(DOCKER_CONFIG_JSON_KEY))
        .map(|value| value.0.as_slice())
        .ok_or_else(|| CredentialsError::MissingKey {
            secret: name.to_string(),
            key: DOCKER_CONFIG_JSON_KEY,
        })?;
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) {
        for field in [CREDS_STORE_FIELD, CRED_HELPERS_FIELD] {
            let names_helper = match fields.get(field) {
                Some(serde_json::Value::String(helper)) => !helper.is_empty(),
                Some(serde_json::Value::Object(helpers)) => !helpers.is_empty(),
                Some(serde_json::Value::Null) | None => false,
                Some(_) => true,
            };
            if names_helper {
                return Err(CredentialsError::CredentialHelper {
                    secret: name.to_string(),
                    field,
                });
            }
        }
    }
    let path = PathBuf::from(format!("secret/{name}/{DOCKER_CONFIG_JSON_KEY}"));
    DockerConfig::parse(&path, bytes).map_err(|source| CredentialsError::Config {
        secret: name.to_string(),
        source,
    })
}

/// The docker configuration for pushing `ib`: its push Secret's, or an empty one (anonymous)
/// when it names none.
pub async fn docker_config_for(
    client: &Client,
    ib: &ImageBuild,
) -> Result<DockerConfig, CredentialsError> {
    let Some(reference) = &ib.spec.target.push_secret_ref else {
        return Ok(DockerConfig::empty());
    };
    let namespace = ib.namespace().unwrap_or_default();
    let name = format!("{namespace}/{}", reference.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets
        .get(&reference.name)
        .await
        .map_err(|source| CredentialsError::Read {
            secret: name.clone(),
            source,
        })?;
    docker_config_from_secret(&secret, &name)
}

/// A registry client with `ib`'s push credentials and the operator's plain-HTTP registries.
pub async fn registry_for(
    client: &Client,
    ib: &ImageBuild,
    config: &Config,
) -> Result<Registry, CredentialsError> {
    let docker_config = docker_config_for(client, ib).await?;
    Registry::new(RegistryOptions {
        insecure_registries: config.insecure_registries.clone(),
        docker_config,
        ..RegistryOptions::default()
    })
    .map_err(|source| CredentialsError::Registry { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use securebuild_registry::auth::Credentials;
    use std::collections::BTreeMap;

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_auths_from_the_secret() {
        // `user:secret` in base64.
        let config = docker_config_from_secret(
            &secret(
                ".dockerconfigjson",
                r#"{"auths":{"registry.example.com":{"auth":"dXNlcjpzZWNyZXQ="}}}"#,
            ),
            "team/regcred",
        )
        .unwrap();
        let resolved = config.resolve("registry.example.com").unwrap();
        assert!(
            matches!(resolved.credentials, Credentials::Basic { ref username, .. } if username == "user"),
            "{:?}",
            resolved.credentials
        );
        let anonymous = config.resolve("other.example.com").unwrap();
        assert!(matches!(anonymous.credentials, Credentials::Anonymous));
    }

    #[test]
    fn refuses_unusable_secrets() {
        let cases = [
            (secret(".dockercfg", "{}"), "has no `.dockerconfigjson` key"),
            (
                secret(".dockerconfigjson", r#"{"credsStore":"desktop"}"#),
                "names credential helpers (`credsStore`)",
            ),
            (
                secret(
                    ".dockerconfigjson",
                    r#"{"credHelpers":{"registry.example.com":"ecr-login"}}"#,
                ),
                "names credential helpers (`credHelpers`)",
            ),
            (
                secret(".dockerconfigjson", "not json"),
                "is not a docker configuration",
            ),
            (Secret::default(), "has no `.dockerconfigjson` key"),
        ];
        for (secret, expected) in cases {
            let error = docker_config_from_secret(&secret, "team/regcred").unwrap_err();
            let text = error.to_string();
            assert!(text.contains("`team/regcred`"), "{text}");
            assert!(text.contains(expected), "expected `{expected}` in `{text}`");
        }
    }

    #[test]
    fn empty_helper_fields_are_harmless() {
        let config = docker_config_from_secret(
            &secret(
                ".dockerconfigjson",
                r#"{"auths":{},"credsStore":"","credHelpers":{}}"#,
            ),
            "team/regcred",
        )
        .unwrap();
        let resolved = config.resolve("registry.example.com").unwrap();
        assert!(matches!(resolved.credentials, Credentials::Anonymous));
    }
}
