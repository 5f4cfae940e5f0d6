//! The Helm chart `charts/securebuild`, linted and rendered by Helm's own engine: the
//! `helm-python-sdk` package, which embeds Helm's Go SDK (no `helm` binary needed).
//!
//! Checks what rendering can show: every Pod the chart and the operator create passes Pod
//! Security `restricted`, the configuration file is one the operator accepts, the RBAC rules
//! grant exactly the verbs the operator's code uses, and `values.schema.json` rejects bad
//! values. Nothing is installed: no cluster, no API server admission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodSpec;
use securebuild_crds::ImageBuild;
use securebuild_operator::config::{Backend, Config, DEFAULT_BUILDER_IMAGE, SecretRef};
use securebuild_operator::job::desired_job;
use securebuild_operator::leader::LEASE_NAME;
use securebuild_operator::podsecurity::check_restricted;
use securebuild_operator::triggers::{Trigger, TriggerKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{PYTHON_ENV, python, workspace_root};

const CHART_DIR: &str = "charts/securebuild";
const RELEASE: &str = "securebuild";
const NAMESPACE: &str = "securebuild-system";
const CONFIG_PATH: &str = "/etc/securebuild/config.yaml";
const SIGNING_SECRET: &str = "securebuild-signing-key";

/// Lints and renders the chart once per values document, in one Python process. Prints one
/// JSON object: the Helm SDK version and, per case, the lint report and the rendered templates
/// or the render error.
const HELM_SCRIPT: &str = r#"
import json, sys
try:
    import helm_python as helm
except Exception as error:
    json.dump({"setup_error": f"{type(error).__name__}: {error}"}, sys.stdout)
    sys.exit(0)
request = json.load(sys.stdin)
results = []
with helm.Chart.load(request["chart"]) as chart:
    for values in request["cases"]:
        result = {}
        try:
            result["lint"] = helm.lint(request["chart"], values, strict=True, namespace=request["namespace"])
        except helm.HelmError as error:
            result["lint_error"] = f"{type(error).__name__}: {error}"
        try:
            result["manifests"] = chart.render(
                values, name=request["release"], namespace=request["namespace"], is_install=True)
        except helm.HelmError as error:
            result["render_error"] = f"{type(error).__name__}: {error}"
        results.append(result)
json.dump({"helm": helm.helm_sdk_version(), "results": results}, sys.stdout)
"#;

// ---------------------------------------------------------------------------------------------
// Rendering

/// One lint and render of the chart.
#[derive(Debug, Deserialize)]
struct HelmResult {
    /// `{"messages": [{"severity", "path", "error"}], "errors": [...]}`.
    lint: Option<Value>,
    lint_error: Option<String>,
    /// Template path → rendered text.
    manifests: Option<BTreeMap<String, String>>,
    render_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelmOutput {
    setup_error: Option<String>,
    #[serde(default)]
    results: Vec<HelmResult>,
}

/// Runs Helm on each values document (`null` for the chart's defaults).
fn helm(cases: &[Value]) -> Vec<HelmResult> {
    let python = python();
    let chart = workspace_root().join(CHART_DIR);
    let request = json!({
        "chart": chart.to_string_lossy(),
        "release": RELEASE,
        "namespace": NAMESPACE,
        "cases": cases,
    });
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(HELM_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `{python}` ({error}): the chart tests render with Helm's engine from the \
                 Python package helm-python-sdk; run `bash .ci/test`, which installs it, or set \
                 {PYTHON_ENV} to a Python that has it"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .expect("send the request to Python");
    let output = child.wait_with_output().expect("wait for Python");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Helm script failed under `{python}`:\n{stderr}"
    );
    let parsed: HelmOutput = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("the Helm script printed no JSON ({error}):\n{stderr}"));
    if let Some(error) = parsed.setup_error {
        panic!(
            "`{python}` cannot import helm_python ({error}): the chart tests need the Python \
             package helm-python-sdk (listed in .ci/requirements.txt); run `bash .ci/test` or set \
             {PYTHON_ENV} to a Python that has it"
        );
    }
    assert_eq!(parsed.results.len(), cases.len(), "one result per case");
    parsed.results
}

/// The documents Helm rendered, in template order, with empty documents dropped.
fn documents(result: &HelmResult) -> Vec<Value> {
    if let Some(error) = &result.render_error {
        panic!("rendering failed: {error}");
    }
    let manifests = result
        .manifests
        .as_ref()
        .expect("manifests when rendering succeeded");
    manifests
        .iter()
        .filter(|(template, _)| !template.ends_with("NOTES.txt"))
        .flat_map(|(template, text)| yaml_documents(text, template))
        .collect()
}

/// The non-empty documents of a multi-document YAML stream.
fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{what} is not valid YAML: {error}\n{text}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Fails on any lint finding worse than informational (Helm's strict lint).
fn assert_lint_clean(result: &HelmResult) {
    if let Some(error) = &result.lint_error {
        panic!("helm lint could not run: {error}");
    }
    let lint = result.lint.as_ref().expect("a lint report");
    let findings: Vec<&Value> = lint["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["severity"].as_i64().unwrap_or(0) >= 2)
                .collect()
        })
        .unwrap_or_default();
    assert!(findings.is_empty(), "helm lint findings: {findings:#?}");
    assert_eq!(lint["errors"], json!([]), "helm lint errors");
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn only<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found = find(documents, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}, got {}", found.len());
    found[0]
}

fn kinds(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn deployment(documents: &[Value]) -> Deployment {
    serde_json::from_value(only(documents, "Deployment").clone())
        .expect("a valid apps/v1 Deployment")
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the Deployment has a Pod template")
}

/// The operator's configuration as the rendered ConfigMap holds it, loaded by the operator's
/// own loader (without environment overrides).
fn operator_config(documents: &[Value]) -> Config {
    let config_map = only(documents, "ConfigMap");
    let text = config_map["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap");
    Config::from_sources(Some(text), &|_| None).unwrap_or_else(|error| {
        panic!("the operator rejects the chart's configuration: {error}\n{text}")
    })
}

/// The example ImageBuild, as the API server would hand it to the operator.
fn example_image_build() -> ImageBuild {
    let text = std::fs::read_to_string(workspace_root().join("examples/imagebuild.yaml"))
        .expect("read examples/imagebuild.yaml");
    let mut ib: ImageBuild =
        serde_norway::from_str(&text).expect("examples/imagebuild.yaml is an ImageBuild");
    ib.metadata.uid = Some("0b9b8a0e-6c1d-4f4e-9a43-2f9f4b5c7d11".to_string());
    ib.metadata.generation = Some(1);
    ib
}

/// The builder Job the operator would create for the example under `config`.
fn builder_pod_spec(ib: &ImageBuild, config: &Config) -> PodSpec {
    let trigger = Trigger {
        generation: 1,
        kind: TriggerKind::SpecChanged,
    };
    let (_, job) =
        desired_job(ib, &trigger, config).unwrap_or_else(|error| panic!("desired_job: {error}"));
    job.spec
        .and_then(|s| s.template.spec)
        .expect("the Job has a Pod template")
}

fn env_field_ref<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a str> {
    spec.containers[0]
        .env
        .as_deref()?
        .iter()
        .find(|e| e.name == name)?
        .value_from
        .as_ref()?
        .field_ref
        .as_ref()
        .map(|f| f.field_path.as_str())
}

// ---------------------------------------------------------------------------------------------
// Default and non-default values

#[test]
fn default_values_render_a_restricted_operator() {
    let results = helm(&[Value::Null]);
    let result = &results[0];
    assert_lint_clean(result);
    let documents = documents(result);
    let expected: BTreeSet<String> = [
        "ServiceAccount/securebuild",
        "ConfigMap/securebuild",
        "Service/securebuild",
        "Service/securebuild-console",
        "Deployment/securebuild",
        "ClusterRole/securebuild",
        "ClusterRoleBinding/securebuild",
        "Role/securebuild-own",
        "RoleBinding/securebuild-own",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(kinds(&documents), expected);

    let deployment = deployment(&documents);
    let spec = pod_spec(&deployment);
    assert_eq!(
        check_restricted(spec),
        Vec::<String>::new(),
        "the operator Pod is not restricted"
    );
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let container = &spec.containers[0];
    assert_eq!(
        container.args.as_deref().unwrap_or_default(),
        [
            "run",
            "--config",
            CONFIG_PATH,
            "--http-addr",
            "0.0.0.0:8080",
            "--console-addr",
            "0.0.0.0:8081",
            "--leader-election"
        ]
    );
    let security = container
        .security_context
        .as_ref()
        .expect("a container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let pod_security = spec
        .security_context
        .as_ref()
        .expect("a Pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(
        env_field_ref(spec, "POD_NAMESPACE"),
        Some("metadata.namespace")
    );
    assert_eq!(env_field_ref(spec, "POD_NAME"), Some("metadata.name"));

    let http_port = container
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a port named http");
    assert_eq!(http_port.container_port, 8080);
    let probe_path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(container.liveness_probe.as_ref()).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(container.readiness_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
    let mounted_config = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|v| v.config_map.as_ref())
        .expect("the configuration volume");
    assert_eq!(mounted_config.name, "securebuild");
    let mount = container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| CONFIG_PATH.starts_with(&format!("{}/", m.mount_path)))
        .expect("the configuration mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("securebuild"));

    let service = named(&documents, "Service", RELEASE);
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let template_labels = &only(&documents, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"]
        .as_object()
        .expect("a Service selector")
    {
        assert_eq!(
            &template_labels[key], value,
            "the Service selects the operator Pods by {key}"
        );
    }

    // The chart's defaults are the operator's defaults, and the operator accepts the file.
    let config = operator_config(&documents);
    let defaults = Config::default();
    assert_eq!(config.namespace, NAMESPACE);
    assert_eq!(config.builder_image, DEFAULT_BUILDER_IMAGE);
    assert_eq!(
        config.signing_key,
        Some(SecretRef {
            name: SIGNING_SECRET.to_string(),
            namespace: NAMESPACE.to_string(),
        })
    );
    assert_eq!(config.backend, Backend::Pod);
    assert_eq!(config.max_concurrent_builds, defaults.max_concurrent_builds);
    assert_eq!(config.reconcile_concurrency, defaults.reconcile_concurrency);
    assert_eq!(config.default_resources, defaults.default_resources);
    assert_eq!(config.work_size_limit, defaults.work_size_limit);
    assert_eq!(config.default_timeout, defaults.default_timeout);
    assert_eq!(config.job_ttl_seconds, Some(86400));
    assert!(config.watch_namespaces.is_empty());

    // The builder Job the operator creates under this configuration is restricted too.
    let mut ib = example_image_build();
    ib.spec.target.repository = "registry.example.com/team/hello".to_string();
    let builder = builder_pod_spec(&ib, &config);
    assert_eq!(
        check_restricted(&builder),
        Vec::<String>::new(),
        "the builder Pod is not restricted"
    );
    assert_eq!(
        builder.containers[0].image.as_deref(),
        Some(DEFAULT_BUILDER_IMAGE)
    );

    let notes = result
        .manifests
        .as_ref()
        .and_then(|m| m.iter().find(|(path, _)| path.ends_with("NOTES.txt")))
        .map(|(_, text)| text.as_str())
        .expect("NOTES.txt");
    for expected in [
        "kubectl wait imagebuild/base --for=condition=Ready",
        "cosign verify --key cosign.pub --insecure-ignore-tlog",
        "cosign verify-attestation --key cosign.pub --insecure-ignore-tlog --type slsaprovenance1",
        "cosign generate-key-pair k8s://securebuild-system/securebuild-signing-key",
    ] {
        assert!(
            notes.contains(expected),
            "NOTES.txt lacks `{expected}`:\n{notes}"
        );
    }
}

#[test]
fn non_default_values_render_monitoring_policy_and_the_crd() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let values = json!({
        "replicas": 1,
        "backend": "local",
        "serviceMonitor": {"enabled": true, "interval": "30s", "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": true, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        "crds": {"template": true},
        "registryPrefix": "registry.example.com/images",
        "builder": {"image": {"digest": digest}, "workSizeLimit": "20Gi"},
        "jobTtlSecondsAfterFinished": null,
        "httpPort": 9090,
        "console": {"enabled": false},
    });
    let results = helm(&[values]);
    let result = &results[0];
    assert_lint_clean(result);
    let documents = documents(result);

    // One replica: no leader election, no Lease permission, never two operators at once.
    let deployment = deployment(&documents);
    let spec = pod_spec(&deployment);
    assert_eq!(
        check_restricted(spec),
        Vec::<String>::new(),
        "the operator Pod is not restricted"
    );
    let args = spec.containers[0].args.clone().unwrap_or_default();
    assert_eq!(
        args,
        [
            "run",
            "--config",
            CONFIG_PATH,
            "--http-addr",
            "0.0.0.0:9090"
        ]
    );
    let strategy = deployment.spec.as_ref().and_then(|s| s.strategy.as_ref());
    assert_eq!(strategy.and_then(|s| s.type_.as_deref()), Some("Recreate"));
    let role = only(&documents, "Role");
    assert!(
        !role["rules"].to_string().contains("leases"),
        "a single replica needs no Lease: {role}"
    );

    // The local backend builds under /tmp: the emptyDir gets the build's size limit.
    let tmp = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == "tmp")
        .and_then(|v| v.empty_dir.as_ref())
        .expect("the tmp emptyDir");
    assert_eq!(tmp.size_limit.as_ref().map(|q| q.0.as_str()), Some("20Gi"));

    let config = operator_config(&documents);
    assert_eq!(config.backend, Backend::Local);
    assert_eq!(config.job_ttl_seconds, None);
    assert_eq!(
        config.registry_prefix.as_deref(),
        Some("registry.example.com/images")
    );
    assert_eq!(
        config.builder_image,
        format!("ghcr.io/securebuild/securebuild@{digest}")
    );
    let builder = builder_pod_spec(&example_image_build(), &config);
    assert_eq!(
        check_restricted(&builder),
        Vec::<String>::new(),
        "the builder Pod is not restricted"
    );

    // The ServiceMonitor scrapes the Service's metrics port.
    let service = only(&documents, "Service");
    let monitor = only(&documents, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("a selector")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects the Service by {key}"
        );
    }

    // The NetworkPolicy admits scrapes on the HTTP port only and covers the operator Pods.
    let policy = only(&documents, "NetworkPolicy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"],
        json!([{"port": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}])
    );
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        only(&documents, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    let egress_ports: BTreeSet<i64> = policy["spec"]["egress"]
        .as_array()
        .expect("egress rules")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|port| port["port"].as_i64())
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 80, 443, 6443]));

    // The templated CRD is the committed one, labelled and kept on uninstall.
    let crd = only(&documents, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    let committed_text = std::fs::read_to_string(
        workspace_root()
            .join(CHART_DIR)
            .join("crds/imagebuilds.securebuild.dev.yaml"),
    )
    .expect("read the committed CRD");
    let committed = yaml_documents(&committed_text, "the committed CRD").remove(0);
    let mut rendered = crd.clone();
    let metadata = rendered["metadata"].as_object_mut().expect("metadata");
    metadata.remove("labels");
    metadata.remove("annotations");
    assert_eq!(
        rendered, committed,
        "the templated CRD differs from crds/imagebuilds.securebuild.dev.yaml"
    );
}

#[test]
fn the_console_gets_its_port_service_ingress_and_policy() {
    let values = json!({
        "networkPolicy": {"enabled": true},
        "console": {
            "port": 9443,
            "service": {"port": 8443},
            "ingress": {
                "enabled": true,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/auth-url": "https://auth.example.com/oauth2/auth"},
                "hosts": ["console.example.com"],
            },
            "from": [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}],
        },
    });
    let results = helm(&[values, json!({"console": {"enabled": false}})]);
    assert_lint_clean(&results[0]);
    let documents = documents(&results[0]);
    let deployment = deployment(&documents);
    let container = &pod_spec(&deployment).containers[0];
    let args = container.args.clone().unwrap_or_default();
    let at = args
        .iter()
        .position(|a| a == "--console-addr")
        .expect("--console-addr");
    assert_eq!(args[at + 1], "0.0.0.0:9443");
    let port = container
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.name.as_deref() == Some("console"))
        .expect("the console container port");
    assert_eq!(port.container_port, 9443);

    let service = named(&documents, "Service", &format!("{RELEASE}-console"));
    assert_eq!(service["spec"]["ports"][0]["port"], 8443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "console");
    assert_eq!(
        service["spec"]["selector"],
        only(&documents, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    let ingress = only(&documents, "Ingress");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "console.example.com");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], format!("{RELEASE}-console"));
    assert_eq!(backend["port"]["name"], "console");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"],
        "https://auth.example.com/oauth2/auth"
    );
    let policy = only(&documents, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][1]["ports"],
        json!([{"port": "console", "protocol": "TCP"}])
    );
    assert_eq!(
        policy["spec"]["ingress"][1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}])
    );

    // Off: no port, no flag, no Service.
    let off = self::documents(&results[1]);
    let off_deployment = self::deployment(&off);
    let args = pod_spec(&off_deployment).containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(!args.iter().any(|a| a == "--console-addr"), "{args:?}");
    assert!(!kinds(&off).contains(&format!("Service/{RELEASE}-console")));
}

#[test]
fn crd_template_is_off_by_default_and_needs_install() {
    let results = helm(&[
        Value::Null,
        json!({"crds": {"install": false, "template": true}}),
    ]);
    for result in &results {
        assert!(find(&documents(result), "CustomResourceDefinition").is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// Where a permission applies: the namespaces of reconciled ImageBuilds (cluster-wide, or each
/// watched namespace), or the operator's own namespace.
#[derive(Clone, Copy)]
enum Scope {
    ImageBuildNamespaces,
    OperatorNamespace,
}

/// One permission the operator's code needs: scope, API group, resource, verbs, and the one
/// object it is limited to (`""` for any).
type Need = (
    Scope,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

/// Every API call the operator makes in the namespaces of its ImageBuilds, and nothing else.
const NEEDS: &[Need] = &[
    // controller.rs `run`: `Controller::new` on `Api<ImageBuild>` (a reflector: list, then
    // watch), after a `list` that checks the CRD is installed. Nothing reads one by name.
    (
        Scope::ImageBuildNamespaces,
        "securebuild.dev",
        "imagebuilds",
        &["list", "watch"],
        "",
    ),
    // controller.rs `patch_status`: server-side apply on the status subresource.
    (
        Scope::ImageBuildNamespaces,
        "securebuild.dev",
        "imagebuilds/status",
        &["patch"],
        "",
    ),
    // job.rs `desired_job`: Jobs and ConfigMaps are owned with blockOwnerDeletion=true, which
    // the OwnerReferencesPermissionEnforcement admission plugin allows only with update on
    // the owner's finalizers.
    (
        Scope::ImageBuildNamespaces,
        "securebuild.dev",
        "imagebuilds/finalizers",
        &["update"],
        "",
    ),
    // controller.rs: `Controller::owns` watches Jobs (list, watch); `Reconciler::run` lists
    // them by `job::selector`; `create_objects` creates; `apply_retention` deletes.
    (
        Scope::ImageBuildNamespaces,
        "batch",
        "jobs",
        &["list", "watch", "create", "delete"],
        "",
    ),
    // backend.rs: `PodBackend` creates the input ConfigMap and deletes it after the build;
    // `LocalBackend` keeps it as the build's record: lists an ImageBuild's records, writes a
    // build's end into its annotations (a merge patch), deletes it beyond the history limits.
    // includes.rs: `ApiConfigMaps` gets included ConfigMaps; controller.rs
    // `included_config_map_refs` watches their metadata (list, watch).
    (
        Scope::ImageBuildNamespaces,
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
        "",
    ),
    // controller.rs `observe`: lists a finished Job's Pods by the job-name label for the
    // builder's result in the termination message.
    (Scope::ImageBuildNamespaces, "", "pods", &["list"], ""),
    // controller.rs `publish`: kube's event Recorder creates events.k8s.io Events and patches
    // repeated ones.
    (
        Scope::ImageBuildNamespaces,
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "",
    ),
    // The signing hook (hooks.rs `PostBuild`): spec.target.pushSecretRef, read to push
    // signatures and attestations next to the image.
    (Scope::ImageBuildNamespaces, "", "secrets", &["get"], ""),
];

/// Permissions in the operator's namespace, when leader election is on (more than one
/// replica): leader.rs `run_as_leader` uses kube-lease-manager, which creates the Lease when
/// missing (create cannot be limited to a name), reads it, and takes, renews and releases it
/// with patches.
const LEADER_NEEDS: &[Need] = &[
    (
        Scope::OperatorNamespace,
        "coordination.k8s.io",
        "leases",
        &["create"],
        "",
    ),
    (
        Scope::OperatorNamespace,
        "coordination.k8s.io",
        "leases",
        &["get", "patch"],
        LEASE_NAME,
    ),
];

/// The signing key (config.rs `signingKeySecret`), read by the signing hook; no other Secret
/// of the operator's namespace.
const SIGNING_NEEDS: &[Need] = &[(
    Scope::OperatorNamespace,
    "",
    "secrets",
    &["get"],
    SIGNING_SECRET,
)];

/// One granted permission: the namespace (`*` for cluster-wide), API group, resource, verb and
/// object name (`*` for any).
type Grant = (String, String, String, String, String);

/// Everything the rendered RBAC grants the operator's ServiceAccount.
fn granted(documents: &[Value]) -> BTreeSet<Grant> {
    let account = only(documents, "ServiceAccount")["metadata"]["name"].clone();
    let binds_operator = |binding: &Value| {
        binding["subjects"].as_array().is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == NAMESPACE
            })
        })
    };
    let role_rules = |kind: &str, name: &Value, namespace: Option<&str>| -> Vec<Value> {
        let role = documents.iter().find(|d| {
            d["kind"] == kind
                && &d["metadata"]["name"] == name
                && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        });
        let role = role.unwrap_or_else(|| panic!("a binding refers to the missing {kind} {name}"));
        role["rules"].as_array().cloned().unwrap_or_default()
    };
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };

    let mut grants = BTreeSet::new();
    for binding in documents.iter().filter(|d| binds_operator(d)) {
        let role_ref = &binding["roleRef"];
        let (scope, rules) = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => (
                "*".to_string(),
                role_rules("ClusterRole", &role_ref["name"], None),
            ),
            Some("RoleBinding") => {
                let namespace = binding["metadata"]["namespace"]
                    .as_str()
                    .expect("a RoleBinding namespace");
                let rules = match role_ref["kind"].as_str() {
                    Some("ClusterRole") => role_rules("ClusterRole", &role_ref["name"], None),
                    _ => role_rules("Role", &role_ref["name"], Some(namespace)),
                };
                (namespace.to_string(), rules)
            }
            _ => continue,
        };
        for rule in rules {
            let mut names = strings(&rule["resourceNames"]);
            if names.is_empty() {
                names.push("*".to_string());
            }
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        for name in &names {
                            grants.insert((
                                scope.clone(),
                                group.clone(),
                                resource.clone(),
                                verb.clone(),
                                name.clone(),
                            ));
                        }
                    }
                }
            }
        }
    }
    grants
}

/// What the operator needs for the given watched namespaces, replicas and signing key.
fn needed(watch: &[&str], leader: bool, signing: bool) -> BTreeSet<Grant> {
    let mut needs: Vec<Need> = NEEDS.to_vec();
    if leader {
        needs.extend_from_slice(LEADER_NEEDS);
    }
    if signing {
        needs.extend_from_slice(SIGNING_NEEDS);
    }
    let imagebuild_scopes: Vec<String> = if watch.is_empty() {
        vec!["*".to_string()]
    } else {
        watch.iter().map(|ns| ns.to_string()).collect()
    };
    let mut grants = BTreeSet::new();
    for (scope, group, resource, verbs, name) in needs {
        let scopes = match scope {
            Scope::ImageBuildNamespaces => imagebuild_scopes.clone(),
            Scope::OperatorNamespace => vec![NAMESPACE.to_string()],
        };
        let name = if name.is_empty() { "*" } else { name };
        for scope in scopes {
            for verb in verbs {
                grants.insert((
                    scope.clone(),
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    name.to_string(),
                ));
            }
        }
    }
    grants
}

/// One RBAC case: its name, the values, and the grants the code needs under them.
struct RbacCase {
    name: &'static str,
    values: Value,
    expected: BTreeSet<Grant>,
}

#[test]
fn rbac_grants_exactly_what_the_code_needs() {
    // A cluster-wide binding where namespaces are watched would show up as grants in `*`.
    let cases = [
        RbacCase {
            name: "defaults: cluster-wide, leader election, signing",
            values: Value::Null,
            expected: needed(&[], true, true),
        },
        RbacCase {
            name: "watched namespaces: bound per namespace",
            values: json!({"watchNamespaces": ["team-a", "team-b"]}),
            expected: needed(&["team-a", "team-b"], true, true),
        },
        RbacCase {
            name: "watched namespace that is the operator's own",
            values: json!({"watchNamespaces": [NAMESPACE]}),
            expected: needed(&[NAMESPACE], true, true),
        },
        RbacCase {
            name: "one replica, no signing: nothing in the operator namespace",
            values: json!({"replicas": 1, "signingKey": {"secretName": ""}}),
            expected: needed(&[], false, false),
        },
        RbacCase {
            name: "rbac.create=false",
            values: json!({"rbac": {"create": false}}),
            expected: BTreeSet::new(),
        },
    ];
    let values: Vec<Value> = cases.iter().map(|case| case.values.clone()).collect();
    let results = helm(&values);
    for (case, result) in cases.iter().zip(&results) {
        assert_lint_clean(result);
        let granted = granted(&documents(result));
        let extra: Vec<_> = granted.difference(&case.expected).collect();
        let missing: Vec<_> = case.expected.difference(&granted).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{}: RBAC differs from what the code needs\n  granted but not needed: {extra:#?}\n  needed but not granted: {missing:#?}",
            case.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// The document of `kind` named `name`.
fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(documents)))
}

#[test]
fn the_proxy_renders_restricted_with_its_routes_service_and_ingress() {
    let values = json!({
        "proxy": {
            "enabled": true,
            "routes": [
                {"vanity": "images.example.com/", "upstream": "registry.internal:5000/team/"},
                {"vanity": "hello", "upstream": "registry.internal:5000/team/hello", "access": "passthrough"},
            ],
            "registryConfigSecret": "proxy-upstream",
            "tlsSecret": "proxy-tls",
            "insecureUpstreams": ["registry.internal:5000"],
            "ingress": {"enabled": true, "className": "nginx", "hosts": ["images.example.com"]},
        },
    });
    let results = helm(&[Value::Null, values]);
    // Off by default.
    assert!(
        !kinds(&documents(&results[0]))
            .iter()
            .any(|kind| kind.contains("proxy")),
        "{:?}",
        kinds(&documents(&results[0]))
    );
    let result = &results[1];
    assert_lint_clean(result);
    let documents = documents(result);
    let name = format!("{RELEASE}-proxy");
    for kind in ["ConfigMap", "Deployment", "Service", "Ingress"] {
        named(&documents, kind, &name);
    }
    let deployment: Deployment =
        serde_json::from_value(named(&documents, "Deployment", &name).clone()).unwrap();
    let spec = pod_spec(&deployment);
    assert_eq!(
        check_restricted(spec),
        Vec::<String>::new(),
        "the proxy Pod is not restricted"
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    let container = &spec.containers[0];
    assert_eq!(
        container.args.as_deref().unwrap_or_default(),
        ["--config", "/etc/securebuild-proxy/proxy.yaml"]
    );
    // The operator's selector does not take the proxy's Pods, nor the other way round.
    let operator: Deployment =
        serde_json::from_value(named(&documents, "Deployment", RELEASE).clone()).unwrap();
    let selector = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .clone()
            .unwrap()
    };
    let pod_labels = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap()
    };
    let selects = |selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
        selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    };
    assert!(!selects(&selector(&operator), &pod_labels(&deployment)));
    assert!(!selects(&selector(&deployment), &pod_labels(&operator)));
    let service = named(&documents, "Service", &name);
    assert!(selects(
        &serde_json::from_value(service["spec"]["selector"].clone()).unwrap(),
        &pod_labels(&deployment)
    ));

    // The configuration file is one the proxy accepts, with every route.
    let text = named(&documents, "ConfigMap", &name)["data"]["proxy.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, &text).unwrap();
    let config = securebuild_proxy::config::ProxyConfig::load(&path)
        .unwrap_or_else(|error| panic!("{}: {text}", securebuild_proxy::error_chain(&error)));
    let routes = config.route_table().unwrap();
    assert_eq!(routes.routes().len(), 2);
    assert_eq!(
        config.registry_config.as_deref(),
        Some(std::path::Path::new(
            "/etc/securebuild-proxy/registry/config.json"
        ))
    );
    assert_eq!(config.insecure_upstreams, ["registry.internal:5000"]);
    let tls = config.tls.expect("TLS files");
    assert_eq!(
        tls.certificate,
        std::path::Path::new("/etc/securebuild-proxy/tls/tls.crt")
    );
    assert_eq!(config.listen.port(), 5000);

    // Bad routes are refused by the schema.
    let bad = helm(&[json!({"proxy": {"routes": [{"vanity": "Hello", "upstream": "r:5000/x"}]}})]);
    let error = bad[0].render_error.as_deref().expect("a schema error");
    assert!(error.contains("/proxy/routes/0/vanity"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// values.schema.json

#[test]
fn values_schema_rejects_bad_values() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"backend": "docker"}), "/backend"),
        (json!({"replicas": "two"}), "/replicas"),
        (json!({"replica": 2}), "replica"),
        (json!({"image": {"digest": "sha256:abc"}}), "/image/digest"),
        (json!({"image": {"registry": "ghcr.io"}}), "registry"),
        (json!({"watchNamespaces": ["Team_A"]}), "/watchNamespaces/0"),
        (
            json!({"defaultKeyring": ["https://example.com/key.rsa.pub"]}),
            "/defaultRepositories",
        ),
        (
            json!({"registryPrefix": "https://registry.example.com"}),
            "/registryPrefix",
        ),
        (json!({"maxConcurrentBuilds": 0}), "/maxConcurrentBuilds"),
        (
            json!({"jobTtlSecondsAfterFinished": -1}),
            "/jobTtlSecondsAfterFinished",
        ),
        (
            json!({"builder": {"defaultTimeout": "1 day"}}),
            "/builder/defaultTimeout",
        ),
        (
            json!({"builder": {"workSizeLimit": "lots"}}),
            "/builder/workSizeLimit",
        ),
        (
            json!({"resources": {"limits": {"memory": "1 GB"}}}),
            "/resources/limits/memory",
        ),
        (json!({"httpPort": 80}), "/httpPort"),
        (json!({"console": {"port": 80}}), "/console/port"),
        (json!({"console": {"enable": true}}), "enable"),
        (json!({"crds": {"template": "yes"}}), "/crds/template"),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (
            json!({"signingKey": {"secretName": "Signing_Key"}}),
            "/signingKey/secretName",
        ),
    ];
    let values: Vec<Value> = cases.iter().map(|(values, _)| values.clone()).collect();
    let results = helm(&values);
    for ((values, fragment), result) in cases.iter().zip(&results) {
        let error = result
            .render_error
            .as_deref()
            .unwrap_or_else(|| panic!("rendering with {values} must fail, but it succeeded"));
        assert!(
            error.contains("schema"),
            "{values}: not a schema error: {error}"
        );
        assert!(
            error.contains(fragment),
            "{values}: the error does not name `{fragment}`: {error}"
        );
        let lint_errors = result
            .lint
            .as_ref()
            .map(|l| l["errors"].clone())
            .unwrap_or_default();
        assert_ne!(lint_errors, json!([]), "{values}: helm lint accepts it");
    }
}

#[test]
fn chart_metadata_matches_the_release() {
    let text = std::fs::read_to_string(workspace_root().join(CHART_DIR).join("Chart.yaml"))
        .expect("read Chart.yaml");
    let chart: Value = serde_norway::from_str(&text).expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "securebuild");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let schema_text =
        std::fs::read_to_string(workspace_root().join(CHART_DIR).join("values.schema.json"))
            .expect("read the schema");
    let schema: Value = serde_json::from_str(&schema_text).expect("values.schema.json is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    // Every default value is described by the schema.
    let values_text = std::fs::read_to_string(workspace_root().join(CHART_DIR).join("values.yaml"))
        .expect("read values.yaml");
    let values: Value = serde_norway::from_str(&values_text).expect("values.yaml is YAML");
    let mut undescribed = Vec::new();
    undescribed_keys(&values, &schema, &schema, "", &mut undescribed);
    assert!(
        undescribed.is_empty(),
        "values without a schema entry: {undescribed:?}"
    );
}

/// Collects the keys of `values` that `schema` does not list under `properties` (following
/// local `$ref`s), down to objects the schema leaves open.
fn undescribed_keys(
    values: &Value,
    schema: &Value,
    root: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let schema = resolve(schema, root);
    let Some(fields) = values.as_object() else {
        return;
    };
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (key, value) in fields {
        let child_path = format!("{path}/{key}");
        match properties.get(key) {
            Some(child) => undescribed_keys(value, child, root, &child_path, out),
            None => out.push(child_path),
        }
    }
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => root
            .pointer(pointer)
            .map_or(schema, |target| resolve(target, root)),
        None => schema,
    }
}
