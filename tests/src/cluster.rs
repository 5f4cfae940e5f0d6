//! Prepares a test control plane for the operator the way the Helm chart installs it: the
//! CRD, the chart's own ServiceAccount and RBAC objects (rendered by Helm's engine from
//! `charts/securebuild`), a kubeconfig holding that ServiceAccount's token, the signing key
//! Secret, and namespaces of their own for tests.
//!
//! Only the RBAC objects of the chart are applied: the operator itself runs as a local process,
//! so the Deployment, Service and ConfigMap are left out.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "securebuild-e2e";
/// The release name the chart is rendered with.
pub const RELEASE: &str = "securebuild";
/// The release namespace: the operator's own namespace.
pub const OPERATOR_NAMESPACE: &str = "securebuild-system";
/// The chart's ServiceAccount for [`RELEASE`].
pub const SERVICE_ACCOUNT: &str = "securebuild";
/// The chart's default signing key Secret.
pub const SIGNING_SECRET: &str = "securebuild-signing-key";
/// The variable naming the Python with `helm-python-sdk`.
pub const PYTHON_ENV: &str = "SECUREBUILD_PYTHON";
/// The variable naming a CRD YAML file to apply instead of the generated one (for example an
/// older release's, to test against it).
pub const CRD_ENV: &str = "SECUREBUILD_E2E_CRD";
/// How long the ServiceAccount token is valid.
pub const TOKEN_SECONDS: i64 = 4 * 3600;

const CRD_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// Renders the chart and prints the manifests as JSON (template path → text).
const HELM_RENDER: &str = r#"
import json, sys
import helm_python as helm
request = json.load(sys.stdin)
with helm.Chart.load(request["chart"]) as chart:
    manifests = chart.render(request["values"], name=request["release"],
                             namespace=request["namespace"], is_install=True)
json.dump(manifests, sys.stdout)
"#;

/// Failures preparing the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Helm's engine could not render the chart.
    #[error("cannot render the chart {chart} with `{python}`: {detail}")]
    Render {
        /// The chart directory.
        chart: PathBuf,
        /// The Python interpreter.
        python: String,
        /// What went wrong.
        detail: String,
    },
    /// A rendered document is not a valid object of its kind.
    #[error("the chart's {kind} is invalid")]
    Manifest {
        /// The kind.
        kind: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// An API call failed.
    #[error("cannot {verb} {what}")]
    Api {
        /// What the call did.
        verb: &'static str,
        /// The object.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The CRD YAML cannot be generated or parsed.
    #[error("cannot generate the CRD: {detail}")]
    Crd {
        /// What went wrong.
        detail: String,
    },
    /// The CRD did not become established.
    #[error("the CRD {name} is not established after {CRD_WAIT:?}")]
    CrdNotEstablished {
        /// The CRD.
        name: String,
    },
    /// The admin kubeconfig names no cluster.
    #[error("the admin kubeconfig names no cluster")]
    NoCluster,
    /// A file cannot be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

fn api_error(
    verb: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Api { verb, what, source }
}

/// Applies the ImageBuild CRD (the one [`securebuild_crds::crd_yaml`] generates, or the YAML
/// file [`CRD_ENV`] names) and waits until it is established.
pub async fn apply_crd(client: &Client) -> Result<(), ClusterError> {
    let yaml = match std::env::var_os(CRD_ENV) {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| ClusterError::Crd {
            detail: format!("{}: {e}", PathBuf::from(path).display()),
        })?,
        None => securebuild_crds::crd_yaml().map_err(|e| ClusterError::Crd {
            detail: e.to_string(),
        })?,
    };
    let crd: CustomResourceDefinition =
        serde_norway::from_str(&yaml).map_err(|e| ClusterError::Crd {
            detail: e.to_string(),
        })?;
    let name = crd.name_any();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(api_error("apply", format!("CRD {name}")))?;
    let deadline = std::time::Instant::now() + CRD_WAIT;
    loop {
        let current = crds
            .get(&name)
            .await
            .map_err(api_error("get", format!("CRD {name}")))?;
        let established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(ClusterError::CrdNotEstablished { name });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Renders `chart` with `values` through Helm's engine and returns the documents.
pub fn render_chart(chart: &Path, values: &Value) -> Result<Vec<Value>, ClusterError> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_string());
    let failed = |detail: String| ClusterError::Render {
        chart: chart.to_path_buf(),
        python: python.clone(),
        detail,
    };
    let request = json!({
        "chart": chart.to_string_lossy(),
        "release": RELEASE,
        "namespace": OPERATOR_NAMESPACE,
        "values": values,
    });
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(HELM_RENDER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let manifests: BTreeMap<String, String> =
        serde_json::from_slice(&output.stdout).map_err(|e| failed(e.to_string()))?;
    let mut documents = Vec::new();
    let yaml = manifests
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml") || path.ends_with(".yml"))
        .map(|(_, text)| text);
    for text in yaml {
        for document in text.split("\n---") {
            let value: Value = match serde_norway::from_str(document) {
                Ok(value) => value,
                Err(error) => return Err(failed(error.to_string())),
            };
            if value.is_object() {
                documents.push(value);
            }
        }
    }
    Ok(documents)
}

/// Applies the chart's ServiceAccount, ClusterRole, Roles and bindings (rendered with
/// `values`) and the operator namespace; returns how many objects were applied.
pub async fn install_chart_rbac(
    client: &Client,
    chart: &Path,
    values: &Value,
) -> Result<usize, ClusterError> {
    ensure_namespace(client, OPERATOR_NAMESPACE, &[]).await?;
    let mut applied = 0;
    for document in render_chart(chart, values)? {
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let decode = |source| ClusterError::Manifest {
            kind: kind.clone(),
            source,
        };
        match kind.as_str() {
            "ServiceAccount" => {
                let object: ServiceAccount = serde_json::from_value(document).map_err(decode)?;
                apply_namespaced(client, &object, &params).await?;
            }
            "Role" => {
                let object: Role = serde_json::from_value(document).map_err(decode)?;
                apply_namespaced(client, &object, &params).await?;
            }
            "RoleBinding" => {
                let object: RoleBinding = serde_json::from_value(document).map_err(decode)?;
                apply_namespaced(client, &object, &params).await?;
            }
            "ClusterRole" => {
                let object: ClusterRole = serde_json::from_value(document).map_err(decode)?;
                let api: Api<ClusterRole> = Api::all(client.clone());
                api.patch(&object.name_any(), &params, &Patch::Apply(&object))
                    .await
                    .map_err(api_error(
                        "apply",
                        format!("ClusterRole {}", object.name_any()),
                    ))?;
            }
            "ClusterRoleBinding" => {
                let object: ClusterRoleBinding =
                    serde_json::from_value(document).map_err(decode)?;
                let api: Api<ClusterRoleBinding> = Api::all(client.clone());
                api.patch(&object.name_any(), &params, &Patch::Apply(&object))
                    .await
                    .map_err(api_error(
                        "apply",
                        format!("ClusterRoleBinding {}", object.name_any()),
                    ))?;
            }
            _ => continue,
        }
        applied += 1;
    }
    Ok(applied)
}

async fn apply_namespaced<K>(
    client: &Client,
    object: &K,
    params: &PatchParams,
) -> Result<(), ClusterError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let namespace = object
        .namespace()
        .unwrap_or_else(|| OPERATOR_NAMESPACE.to_string());
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(&object.name_any(), params, &Patch::Apply(object))
        .await
        .map_err(api_error(
            "apply",
            format!("{} {namespace}/{}", K::kind(&()), object.name_any()),
        ))?;
    Ok(())
}

/// Creates `name` with `labels` unless it exists.
pub async fn ensure_namespace(
    client: &Client,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<(), ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.to_string());
    for (key, value) in labels {
        namespace
            .labels_mut()
            .insert((*key).to_string(), (*value).to_string());
    }
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        Err(error) => Err(api_error("create", format!("namespace {name}"))(error)),
    }
}

/// Deletes the namespace `name` (in the background).
pub async fn delete_namespace(client: &Client, name: &str) -> Result<(), ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(api_error("delete", format!("namespace {name}"))(error)),
    }
}

/// Creates or replaces the Secret `namespace/name` with `data` and type `type_`.
pub async fn apply_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    data: &[(&str, &[u8])],
) -> Result<(), ClusterError> {
    let mut secret = Secret {
        type_: Some(type_.to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_string());
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(api_error("apply", format!("Secret {namespace}/{name}")))?;
    Ok(())
}

/// Asks the TokenRequest API for a token of the chart's ServiceAccount and writes a kubeconfig
/// that uses it against `server` (the admin kubeconfig's server when `None`), with the admin
/// kubeconfig's CA.
pub async fn service_account_kubeconfig(
    client: &Client,
    admin: &Kubeconfig,
    server: Option<&str>,
    path: &Path,
) -> Result<(), ClusterError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(api_error(
            "request a token for",
            format!("ServiceAccount {OPERATOR_NAMESPACE}/{SERVICE_ACCOUNT}"),
        ))?;
    let token = issued.status.map(|s| s.token).unwrap_or_default();
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or(ClusterError::NoCluster)?;
    let server = server
        .map(str::to_string)
        .or(cluster.server)
        .ok_or(ClusterError::NoCluster)?;
    let ca = cluster.certificate_authority_data.unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {SERVICE_ACCOUNT}\n  user:\n    token: {token}\ncontexts:\n- name: operator\n  context:\n    cluster: test\n    user: {SERVICE_ACCOUNT}\ncurrent-context: operator\n"
    );
    std::fs::write(path, text).map_err(|source| ClusterError::Write {
        path: path.to_path_buf(),
        source,
    })
}
