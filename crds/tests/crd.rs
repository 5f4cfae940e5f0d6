//! Checks of the generated CustomResourceDefinition: committed copy up to date, structural
//! schema rules the API server enforces, list-map conditions, printer columns that resolve, and
//! the examples round-tripping through the types.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kube::CustomResourceExt;
use securebuild_crds::{CRD_PATH, ImageBuild, ImageConfiguration, crd_yaml};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn crd_json() -> Value {
    serde_json::to_value(ImageBuild::crd()).unwrap()
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crd_is_up_to_date() {
    let path = workspace_root().join(CRD_PATH);
    let generated = crd_yaml().unwrap();
    if std::env::var_os("SECUREBUILD_UPDATE_CRD").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{CRD_PATH} is stale: run `cargo run -q -p securebuild-operator -- crd > {CRD_PATH}` \
         (or this test with SECUREBUILD_UPDATE_CRD=1) and commit the result"
    );
}

#[test]
fn names_scope_and_subresources() {
    let crd = crd_json();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "imagebuilds.securebuild.dev");
    assert_eq!(spec["group"], "securebuild.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "ImageBuild");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["ib"]));
    assert_eq!(
        spec["names"]["categories"],
        serde_json::json!(["securebuild"])
    );
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
}

/// Keywords the API server forbids inside `anyOf`/`allOf`/`oneOf`/`not`.
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
];

/// The structural-schema rules of apiextensions.k8s.io/v1, plus "every object typed".
fn structural_violations(node: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    for banned in [
        "$ref",
        "$schema",
        "definitions",
        "$defs",
        "id",
        "patternProperties",
    ] {
        if map.contains_key(banned) {
            out.push(format!("{path}: `{banned}` is not allowed"));
        }
    }
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTORS {
            if map.contains_key(*key) {
                out.push(format!("{path}: `{key}` must not appear inside a junctor"));
            }
        }
    } else if !map.contains_key("type") && !int_or_string && !preserve {
        out.push(format!("{path}: no type"));
    }
    if int_or_string {
        if map.contains_key("type") {
            out.push(format!("{path}: int-or-string must not have a type"));
        }
        if let Some(any_of) = map.get("anyOf") {
            let expected = serde_json::json!([{"type": "integer"}, {"type": "string"}]);
            if any_of != &expected {
                out.push(format!(
                    "{path}: int-or-string anyOf must be exactly integer|string"
                ));
            }
        }
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!(
            "{path}: additionalProperties: false is not allowed"
        ));
    }
    if map.get("type") == Some(&Value::String("array".into())) && !map.contains_key("items") {
        out.push(format!("{path}: array without items"));
    }
    if map.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
        let keys = map["x-kubernetes-list-map-keys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let required = map["items"]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for key in keys {
            if !required.contains(&key) {
                out.push(format!(
                    "{path}: list-map key {key} is not required in items"
                ));
            }
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_violations(child, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), in_junctor, out);
    }
    if let Some(additional) = map.get("additionalProperties").filter(|v| v.is_object()) {
        structural_violations(additional, &format!("{path}{{}}"), in_junctor, out);
    }
    for junctor in ["anyOf", "allOf", "oneOf"] {
        if let Some(branches) = map.get(junctor).and_then(Value::as_array)
            && !int_or_string
        {
            for (i, branch) in branches.iter().enumerate() {
                structural_violations(branch, &format!("{path}<{junctor}{i}>"), true, out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        structural_violations(not, &format!("{path}<not>"), true, out);
    }
}

#[test]
fn schema_is_structural_and_every_node_is_typed() {
    let mut violations = Vec::new();
    structural_violations(&schema(), "", false, &mut violations);
    assert!(
        violations.is_empty(),
        "structural schema violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let required = conditions["items"]["required"].as_array().unwrap();
    for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
        assert!(required.contains(&Value::String(field.into())), "{field}");
    }
}

/// Resolves a printer column's JSONPath (the subset kubectl columns use) against the schema.
fn resolve_column(schema: &Value, json_path: &str) -> Option<Value> {
    let mut node = schema.clone();
    let mut rest = json_path.strip_prefix('.')?;
    if rest.starts_with("metadata.") {
        return Some(serde_json::json!({"type": "string"}));
    }
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let field = &rest[..end];
        node = node["properties"].get(field)?.clone();
        rest = &rest[end..];
        if let Some(filter) = rest.strip_prefix("[?(") {
            let close = filter.find(")]")?;
            node = node["items"].clone();
            rest = &filter[close + 2..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(node)
}

#[test]
fn printer_columns_point_at_fields_that_exist() {
    let crd = crd_json();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<_> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Ready", "Reason", "Digest", "Age", "Packages", "Last build"]
    );
    let schema = schema();
    for column in &columns {
        let path = column["jsonPath"].as_str().unwrap();
        let field = resolve_column(&schema, path)
            .unwrap_or_else(|| panic!("column {} points at missing {path}", column["name"]));
        let column_type = column["type"].as_str().unwrap();
        let field_type = field["type"].as_str().unwrap_or("");
        let compatible = match column_type {
            "date" | "string" => field_type == "string",
            "integer" => field_type == "integer",
            other => panic!("unexpected column type {other}"),
        };
        assert!(
            compatible,
            "{path}: column {column_type} over field {field_type}"
        );
    }
    let wide: Vec<_> = columns
        .iter()
        .filter(|c| c["priority"] == 1)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["Packages", "Last build"]);
}

#[test]
fn validation_rules_are_in_the_schema() {
    let schema = schema();
    let spec = &schema["properties"]["spec"];
    let required = spec["required"].as_array().unwrap();
    assert!(required.contains(&Value::String("image".into())));
    assert!(required.contains(&Value::String("target".into())));
    let image = &spec["properties"]["image"];
    assert!(
        image["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("packages")
    );
    let path_type = &image["properties"]["paths"]["items"]["properties"]["type"];
    assert_eq!(
        path_type["enum"],
        serde_json::json!([
            "directory",
            "empty-file",
            "hardlink",
            "symlink",
            "permissions"
        ])
    );
    let repository = &spec["properties"]["target"]["properties"]["repository"];
    assert!(repository["pattern"].is_string());
}

#[test]
fn example_imagebuild_round_trips() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("examples/imagebuild.yaml")).unwrap();
    let build: ImageBuild = serde_norway::from_str(&text).unwrap();
    assert_eq!(build.spec.target.tags[1], "{{ version \"hello\" }}");
    let again: ImageBuild =
        serde_norway::from_str(&serde_norway::to_string(&build).unwrap()).unwrap();
    assert_eq!(again, build);
    let json: ImageBuild = serde_json::from_value(serde_json::to_value(&build).unwrap()).unwrap();
    assert_eq!(json, build);
}

#[test]
fn every_example_apko_file_parses_and_round_trips() {
    let dir = workspace_root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".apko.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let config = ImageConfiguration::from_yaml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = ImageConfiguration::from_yaml(&config.to_yaml().unwrap()).unwrap();
        assert_eq!(again, config, "{name}");
        seen += 1;
    }
    assert!(
        seen >= 2,
        "expected at least two apko examples, found {seen}"
    );
}

#[test]
fn the_imagebuild_embeds_the_apko_example_unchanged() {
    let root = workspace_root();
    let build: ImageBuild = serde_norway::from_str(
        &std::fs::read_to_string(root.join("examples/imagebuild.yaml")).unwrap(),
    )
    .unwrap();
    let apko = ImageConfiguration::from_yaml(
        &std::fs::read_to_string(root.join("examples/hello.apko.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(build.spec.image.contents.packages, apko.contents.packages);
    assert_eq!(build.spec.image.entrypoint, apko.entrypoint);
    assert_eq!(build.spec.image.accounts, apko.accounts);
}
