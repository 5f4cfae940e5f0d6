//! `spec.image.include` in an ImageBuild: the configurations it names are keys of ConfigMaps in
//! the ImageBuild's namespace, read and merged under the spec with apko's rules
//! ([`securebuild_crds::include::merge_into`]), as the CLI merges included files.
//!
//! The forms:
//!
//! - `include: configmap:NAME/KEY` — the key `KEY` of the ConfigMap `NAME`. This is the only
//!   form an ImageBuild's spec takes.
//! - inside an included configuration, also a bare `KEY` (or `./KEY`): another key of the same
//!   ConfigMap, as a relative include names a file next to the including one. A directory of
//!   apko configurations becomes one ConfigMap with `kubectl create configmap NAME
//!   --from-file=DIR/` and includes each other unchanged.
//!
//! The merged configuration has no `include`; its digest and the ConfigMaps it came from are
//! recorded in the status ([`ConfigurationSources`]), and a change of that digest starts a
//! build. A name that does not exist, a configuration that does not parse, or a cycle is an
//! error that names the ConfigMap and key.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};
use securebuild_crds::ImageBuild;
use securebuild_crds::image_config::{ConfigError, ImageConfiguration};
use securebuild_crds::imagebuild::{ConfigurationSources, IncludedConfiguration};
use sha2::{Digest, Sha256};

/// The prefix of an include that names a ConfigMap key.
pub const CONFIG_MAP_SCHEME: &str = "configmap:";
/// How many includes a chain may have.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// Why the includes of an ImageBuild cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    /// An include that is not in one of the accepted forms.
    #[error(
        "{from}: include `{include}` does not name a ConfigMap key; an ImageBuild includes configurations from ConfigMaps in its namespace: write `include: configmap:NAME/KEY` (inside an included configuration, a bare KEY names another key of the same ConfigMap)"
    )]
    Form {
        /// Where the include is written.
        from: String,
        /// The include as written.
        include: String,
    },
    /// The ConfigMap does not exist.
    #[error(
        "{from} includes `{include}`, but ConfigMap `{namespace}/{config_map}` does not exist; create it or fix the include"
    )]
    NoConfigMap {
        /// Where the include is written.
        from: String,
        /// The include as written.
        include: String,
        /// The namespace.
        namespace: String,
        /// The ConfigMap's name.
        config_map: String,
    },
    /// The ConfigMap exists but has no such key.
    #[error(
        "{from} includes `{include}`, but ConfigMap `{namespace}/{config_map}` has no key `{key}` (it has: {keys}); add the key or fix the include"
    )]
    NoKey {
        /// Where the include is written.
        from: String,
        /// The include as written.
        include: String,
        /// The namespace.
        namespace: String,
        /// The ConfigMap's name.
        config_map: String,
        /// The key.
        key: String,
        /// The keys it has, comma-separated.
        keys: String,
    },
    /// An included configuration that does not parse.
    #[error("invalid image configuration in {source_name}")]
    Parse {
        /// `ConfigMap ns/name key k`.
        source_name: String,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// A configuration that includes itself, directly or through others.
    #[error("include cycle: {}; remove one of these includes", chain.join(" includes "))]
    Cycle {
        /// The configurations of the cycle, from the first to the one it returns to.
        chain: Vec<String>,
    },
    /// A chain of includes longer than [`MAX_INCLUDE_DEPTH`].
    #[error("{from}: more than {MAX_INCLUDE_DEPTH} nested includes; flatten the chain")]
    TooDeep {
        /// The ImageBuild.
        from: String,
    },
    /// The merged configuration cannot be written as YAML (to take its digest).
    #[error("cannot write the merged image configuration of {from}")]
    Serialize {
        /// The ImageBuild.
        from: String,
        /// The serializer's error.
        #[source]
        source: ConfigError,
    },
    /// The API server could not be asked (a transient failure: the reconcile is retried).
    #[error("cannot get ConfigMap `{namespace}/{config_map}`")]
    Api {
        /// The namespace.
        namespace: String,
        /// The ConfigMap's name.
        config_map: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl IncludeError {
    /// Whether asking again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Api { .. })
    }

    /// The ConfigMap key that was looked for and not found.
    pub fn missing(&self) -> Option<IncludedConfiguration> {
        match self {
            Self::NoConfigMap {
                config_map,
                include,
                ..
            }
            | Self::NoKey {
                config_map,
                include,
                ..
            } => {
                let key = include
                    .strip_prefix(CONFIG_MAP_SCHEME)
                    .and_then(|rest| rest.split_once('/'))
                    .map_or(include.trim_start_matches("./"), |(_, key)| key);
                Some(IncludedConfiguration {
                    config_map: config_map.clone(),
                    key: key.to_string(),
                    resource_version: None,
                })
            }
            _ => None,
        }
    }
}

/// Reads ConfigMaps for [`merge_includes`].
pub trait ConfigMapSource: Send + Sync {
    /// The ConfigMap `namespace/name`, or `None` when it does not exist.
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, kube::Error>>;
}

/// ConfigMaps read from the API server.
#[derive(Clone)]
pub struct ApiConfigMaps(pub Client);

impl ConfigMapSource for ApiConfigMaps {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, kube::Error>> {
        Box::pin(async move {
            Api::<ConfigMap>::namespaced(self.0.clone(), namespace)
                .get_opt(name)
                .await
        })
    }
}

/// An ImageBuild's configuration with its includes merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The merged configuration (no `include`).
    pub image: ImageConfiguration,
    /// Its digest and sources, for the status.
    pub sources: ConfigurationSources,
}

/// One include resolved to a ConfigMap key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyRef {
    config_map: String,
    key: String,
}

impl KeyRef {
    fn describe(&self, namespace: &str) -> String {
        format!("ConfigMap {namespace}/{} key {}", self.config_map, self.key)
    }
}

/// Parses `include` as written in `within` (the including ConfigMap; `None` in the spec).
fn parse_include(include: &str, within: Option<&str>, from: &str) -> Result<KeyRef, IncludeError> {
    let form = || IncludeError::Form {
        from: from.to_string(),
        include: include.to_string(),
    };
    if let Some(rest) = include.strip_prefix(CONFIG_MAP_SCHEME) {
        let (config_map, key) = rest.split_once('/').ok_or_else(form)?;
        if !is_dns_subdomain(config_map) || !is_config_map_key(key) {
            return Err(form());
        }
        return Ok(KeyRef {
            config_map: config_map.to_string(),
            key: key.to_string(),
        });
    }
    let within = within.ok_or_else(form)?;
    let key = include.strip_prefix("./").unwrap_or(include);
    if !is_config_map_key(key) {
        return Err(form());
    }
    Ok(KeyRef {
        config_map: within.to_string(),
        key: key.to_string(),
    })
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A ConfigMap data key: `[-._a-zA-Z0-9]+`, at most 253 bytes, not `.` or `..`.
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The ConfigMaps `ib`'s spec names directly, for mapping ConfigMap changes to ImageBuilds.
pub fn spec_config_map(ib: &ImageBuild) -> Option<String> {
    let include = ib.spec.image.include.as_deref()?;
    parse_include(include, None, "").ok().map(|r| r.config_map)
}

/// Whether a change of ConfigMap `name` may change `ib`'s merged configuration: the spec or
/// the last recorded sources name it.
pub fn depends_on(ib: &ImageBuild, name: &str) -> bool {
    spec_config_map(ib).as_deref() == Some(name)
        || ib
            .status
            .as_ref()
            .and_then(|s| s.configuration.as_ref())
            .is_some_and(|c| c.includes.iter().any(|i| i.config_map == name))
}

/// `ib` with its includes merged, or `None` when its spec includes nothing. Every ConfigMap
/// is read once per call (a chain through one ConfigMap reads it once).
pub async fn merge_includes(
    ib: &ImageBuild,
    source: &dyn ConfigMapSource,
) -> Result<Option<Merged>, IncludeError> {
    let Some(first) = ib.spec.image.include.clone() else {
        return Ok(None);
    };
    let namespace = ib.namespace().unwrap_or_default();
    let top = format!("ImageBuild {namespace}/{}", ib.name_any());
    let mut chain: Vec<KeyRef> = Vec::new();
    let mut includes: Vec<IncludedConfiguration> = Vec::new();
    let mut layers: Vec<ImageConfiguration> = Vec::new();
    let mut read: Vec<ConfigMap> = Vec::new();

    let mut next = Some((first, None::<String>, top.clone()));
    while let Some((include, within, from)) = next.take() {
        let reference = parse_include(&include, within.as_deref(), &from)?;
        if let Some(start) = chain.iter().position(|seen| *seen == reference) {
            let mut cycle: Vec<String> = chain[start..]
                .iter()
                .map(|r| r.describe(&namespace))
                .collect();
            cycle.push(reference.describe(&namespace));
            return Err(IncludeError::Cycle { chain: cycle });
        }
        if chain.len() >= MAX_INCLUDE_DEPTH {
            return Err(IncludeError::TooDeep { from: top });
        }
        let config_map = match read.iter().find(|c| c.name_any() == reference.config_map) {
            Some(known) => known.clone(),
            None => {
                let fetched = source
                    .get(&namespace, &reference.config_map)
                    .await
                    .map_err(|e| IncludeError::Api {
                        namespace: namespace.clone(),
                        config_map: reference.config_map.clone(),
                        source: e,
                    })?
                    .ok_or_else(|| IncludeError::NoConfigMap {
                        from: from.clone(),
                        include: include.clone(),
                        namespace: namespace.clone(),
                        config_map: reference.config_map.clone(),
                    })?;
                read.push(fetched.clone());
                fetched
            }
        };
        let data = config_map.data.clone().unwrap_or_default();
        let Some(text) = data.get(&reference.key) else {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            return Err(IncludeError::NoKey {
                from,
                include,
                namespace: namespace.clone(),
                config_map: reference.config_map.clone(),
                key: reference.key.clone(),
                keys: if keys.is_empty() {
                    "no keys".to_string()
                } else {
                    keys.join(", ")
                },
            });
        };
        let described = reference.describe(&namespace);
        let mut config = ImageConfiguration::from_yaml(text).map_err(|e| IncludeError::Parse {
            source_name: described.clone(),
            source: e,
        })?;
        includes.push(IncludedConfiguration {
            config_map: reference.config_map.clone(),
            key: reference.key.clone(),
            resource_version: config_map.resource_version(),
        });
        if let Some(deeper) = config.include.take() {
            next = Some((deeper, Some(reference.config_map.clone()), described));
        }
        layers.push(config);
        chain.push(reference);
    }

    // The deepest configuration is the base of the one that includes it, and so on up to
    // the spec, exactly as nested files merge.
    let mut merged = layers.pop().unwrap_or_default();
    while let Some(mut above) = layers.pop() {
        securebuild_crds::include::merge_into(merged, &mut above);
        merged = above;
    }
    let mut image = ib.spec.image.clone();
    image.include = None;
    securebuild_crds::include::merge_into(merged, &mut image);
    let yaml = image.to_yaml().map_err(|source| IncludeError::Serialize {
        from: top.clone(),
        source,
    })?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(yaml.as_bytes())));
    Ok(Some(Merged {
        image,
        sources: ConfigurationSources { digest, includes },
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::fixtures::TestImageBuild;

    #[derive(Default)]
    struct Maps {
        maps: BTreeMap<String, BTreeMap<String, String>>,
        gets: Mutex<Vec<String>>,
    }

    impl Maps {
        fn with(mut self, name: &str, key: &str, text: &str) -> Self {
            self.maps
                .entry(name.to_string())
                .or_default()
                .insert(key.to_string(), text.to_string());
            self
        }
    }

    impl ConfigMapSource for Maps {
        fn get<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<ConfigMap>, kube::Error>> {
            self.gets
                .lock()
                .unwrap()
                .push(format!("{namespace}/{name}"));
            let found = self.maps.get(name).map(|data| ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    resource_version: Some("7".to_string()),
                    ..Default::default()
                },
                data: Some(data.clone()),
                ..Default::default()
            });
            Box::pin(async move { Ok(found) })
        }
    }

    fn including(include: &str, own: &str) -> ImageBuild {
        let mut ib = TestImageBuild::new().build();
        ib.spec.image = ImageConfiguration::from_yaml(own).unwrap();
        ib.spec.image.include = Some(include.to_string());
        ib
    }

    #[tokio::test]
    async fn chains_merge_like_nested_files() {
        let maps = Maps::default()
            .with(
                "base",
                "base.yaml",
                "include: ./os.yaml\ncontents:\n  packages: [busybox]\nenvironment: {A: base, B: base}\n",
            )
            .with(
                "base",
                "os.yaml",
                "contents:\n  repositories: [https://os.example/main]\n  packages: [os-release]\ncmd: /bin/sh\n",
            );
        let ib = including(
            "configmap:base/base.yaml",
            "contents:\n  packages: [app]\nenvironment: {A: app}\n",
        );
        let merged = merge_includes(&ib, &maps).await.unwrap().unwrap();
        assert_eq!(
            merged.image.contents.packages,
            ["os-release", "busybox", "app"],
            "lists: the included entries first"
        );
        assert_eq!(
            merged.image.environment["A"], "app",
            "the including side wins"
        );
        assert_eq!(merged.image.environment["B"], "base");
        assert_eq!(merged.image.cmd.as_deref(), Some("/bin/sh"));
        assert_eq!(merged.image.include, None);
        assert_eq!(
            merged.sources.includes,
            [
                IncludedConfiguration {
                    config_map: "base".into(),
                    key: "base.yaml".into(),
                    resource_version: Some("7".into()),
                },
                IncludedConfiguration {
                    config_map: "base".into(),
                    key: "os.yaml".into(),
                    resource_version: Some("7".into()),
                },
            ]
        );
        assert!(merged.sources.digest.starts_with("sha256:"));
        assert_eq!(maps.gets.lock().unwrap().len(), 1, "one read per ConfigMap");

        // The same sources give the same digest; a changed source another.
        let again = merge_includes(&ib, &maps).await.unwrap().unwrap();
        assert_eq!(again.sources.digest, merged.sources.digest);
        let changed = Maps::default().with(
            "base",
            "base.yaml",
            "contents:\n  packages: [busybox, curl]\n",
        );
        let other = merge_includes(&ib, &changed).await.unwrap().unwrap();
        assert_ne!(other.sources.digest, merged.sources.digest);
    }

    #[tokio::test]
    async fn no_include_is_nothing_to_merge() {
        let ib = TestImageBuild::new().build();
        assert_eq!(merge_includes(&ib, &Maps::default()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn errors_name_the_configmap_and_key() {
        let ib = including("configmap:missing/base.yaml", "contents: {packages: [a]}");
        let error = merge_includes(&ib, &Maps::default()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "ImageBuild team/app includes `configmap:missing/base.yaml`, but ConfigMap `team/missing` does not exist; create it or fix the include"
        );
        assert!(!error.is_transient());

        let maps = Maps::default().with("base", "other.yaml", "{}");
        let ib = including("configmap:base/base.yaml", "contents: {packages: [a]}");
        let error = merge_includes(&ib, &maps).await.unwrap_err().to_string();
        assert!(
            error.contains("has no key `base.yaml` (it has: other.yaml)"),
            "{error}"
        );

        let maps = Maps::default().with("base", "base.yaml", "contents: [not, a, map]\n");
        let error = merge_includes(&ib, &maps).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid image configuration in ConfigMap team/base key base.yaml"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn paths_are_refused_with_the_form_to_write() {
        for include in [
            "base.yaml",
            "../base.yaml",
            "configmap:base",
            "configmap:Bad/x.yaml",
        ] {
            let ib = including(include, "contents: {packages: [a]}");
            let error = merge_includes(&ib, &Maps::default()).await.unwrap_err();
            assert!(
                matches!(error, IncludeError::Form { .. }),
                "{include}: {error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("write `include: configmap:NAME/KEY`"),
                "{error}"
            );
        }
        // Inside a ConfigMap, a path that leaves it is refused too.
        let maps = Maps::default().with("base", "a.yaml", "include: ../b.yaml\n");
        let ib = including("configmap:base/a.yaml", "contents: {packages: [a]}");
        let error = merge_includes(&ib, &maps).await.unwrap_err();
        assert!(matches!(error, IncludeError::Form { .. }), "{error}");
    }

    #[tokio::test]
    async fn cycles_name_every_configuration() {
        let maps = Maps::default()
            .with("base", "a.yaml", "include: b.yaml\n")
            .with("base", "b.yaml", "include: configmap:base/a.yaml\n");
        let ib = including("configmap:base/a.yaml", "contents: {packages: [a]}");
        let error = merge_includes(&ib, &maps).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "include cycle: ConfigMap team/base key a.yaml includes ConfigMap team/base key b.yaml includes ConfigMap team/base key a.yaml; remove one of these includes"
        );
    }

    #[test]
    fn dependencies_come_from_the_spec_and_the_status() {
        let mut ib = including("configmap:base/a.yaml", "contents: {packages: [a]}");
        assert!(depends_on(&ib, "base"));
        assert!(!depends_on(&ib, "os"));
        ib.status = Some(securebuild_crds::imagebuild::ImageBuildStatus {
            configuration: Some(ConfigurationSources {
                digest: String::new(),
                includes: vec![IncludedConfiguration {
                    config_map: "os".into(),
                    key: "os.yaml".into(),
                    resource_version: None,
                }],
            }),
            ..Default::default()
        });
        assert!(depends_on(&ib, "os"));
    }
}
