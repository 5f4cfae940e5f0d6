//! Signing and attesting an image in a real `docker-registry` and verifying it: idempotent
//! re-signing, a second signer appended next to the first, provenance and SBOM attestations,
//! wrong keys and tampered signature and attestation manifests, and the `sign` / `verify`
//! subcommands. Python's `cryptography` and `securesystemslib`, reading the registry over plain
//! HTTP with `urllib`, check independently that the stored artifacts are cosign-compatible.
//!
//! The subcommands are driven in-process — arguments parsed by the real clap tree
//! (`Cli::try_parse_from`), then `cli::sign::run` / `cli::verify::run` — because a test in this
//! crate cannot name the `securebuild` binary of another crate, and a binary found next to the
//! test executable may be stale. What `main` adds (printing the error to stderr, exit code 1) is
//! a thin wrapper around the `Err` these tests assert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use securebuild_builder::attest::cosign::{
    self, Manifest, SIGNATURE_ANNOTATION, attestation_tag, signature_tag,
};
use securebuild_builder::attest::dsse::Envelope;
use securebuild_builder::attest::keys::{SigningKey, VerifyingKey};
use securebuild_builder::attest::provenance::{ProvenanceInputs, SLSA_PROVENANCE_V1};
use securebuild_builder::attest::publish::{
    self, BuildSboms, PublishedImage, PublishedPlatform, SignatureStore,
};
use securebuild_builder::attest::sbom::{
    Distro, ImageDescriptor, SPDX_PREDICATE_TYPE, SbomInput, SbomPackage,
};
use securebuild_builder::attest::verify::{AttestationType, VerificationReport, verify_image};
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_registry::auth::DockerConfig;
use securebuild_registry::digest::sha256_digest as sha256;
use securebuild_registry::{Registry, RegistryOptions};
use securebuild_tests::registry::TestRegistry;
use serde_json::{Value, json};

use crate::{PYTHON_ENV, python};

const REPOSITORY_PATH: &str = "team/app";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Reads the `.sig` and `.att` manifests of an image straight from the registry API and checks
/// every signature with `cryptography` and every attestation envelope with `securesystemslib`,
/// as a cosign verifier would. Prints one JSON document.
const COSIGN_CHECK_SCRIPT: &str = r#"
import base64, json, sys, urllib.request
try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
except ImportError as error:
    print("missing python module (install cryptography and securesystemslib): %s" % error, file=sys.stderr)
    sys.exit(3)

base, repository, digest, key_path = sys.argv[1:5]
public = load_pem_public_key(open(key_path, "rb").read())
assert isinstance(public.curve, ec.SECP256R1)
# cosign leaves the DSSE key id empty; securesystemslib matches key ids, so the key gets "" too.
template = SSlibKey.from_crypto(public, scheme="ecdsa-sha2-nistp256")
dsse_key = SSlibKey("", template.keytype, template.scheme, template.keyval)

def get(path, accept=None):
    request = urllib.request.Request(base + "/v2/" + repository + path)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request) as response:
        return response.read()

def manifest(tag):
    return json.loads(get("/manifests/" + tag, "application/vnd.oci.image.manifest.v1+json"))

hex_digest = digest.split(":", 1)[1]
result = {"signatures": [], "attestations": []}
for layer in manifest("sha256-%s.sig" % hex_digest)["layers"]:
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
    payload = get("/blobs/" + layer["digest"])
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    try:
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        valid = True
    except Exception:
        valid = False
    claims = json.loads(payload)
    assert claims["critical"]["type"] == "cosign container image signature"
    result["signatures"].append({
        "valid": valid,
        "digest": claims["critical"]["image"]["docker-manifest-digest"],
        "reference": claims["critical"]["identity"]["docker-reference"],
        "optional": claims["optional"],
    })
if len(sys.argv) > 5:
    for layer in manifest("sha256-%s.att" % hex_digest)["layers"]:
        assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json", layer
        assert layer["annotations"]["dev.cosignproject.cosign/signature"] == ""
        envelope = Envelope.from_dict(json.loads(get("/blobs/" + layer["digest"])))
        envelope.verify([dsse_key], 1)
        assert envelope.payload_type == "application/vnd.in-toto+json"
        statement = json.loads(envelope.payload)
        assert statement["predicateType"] == layer["annotations"]["predicateType"]
        result["attestations"].append({
            "type": statement["_type"],
            "predicateType": statement["predicateType"],
            "subjects": ["%s@sha256:%s" % (s["name"], s["digest"]["sha256"]) for s in statement["subject"]],
        })
print(json.dumps(result, sort_keys=True))
"#;

/// A hand-made two-platform image pushed to the test registry under `latest`.
struct PushedImage {
    repository: String,
    index: String,
    platforms: Vec<(String, String)>,
}

fn client() -> Registry {
    client_with(DockerConfig::empty())
}

fn client_with(docker_config: DockerConfig) -> Registry {
    Registry::new(RegistryOptions {
        docker_config,
        retries: 1,
        ..RegistryOptions::default()
    })
    .unwrap()
}

/// Pushes configs, one layer, two manifests and the index, then tags the index `latest`.
async fn push_image(registry: &Registry, server: &TestRegistry) -> PushedImage {
    let repository = format!("{}/{REPOSITORY_PATH}", server.host());
    let layer = b"hand-made layer: not a real tar, registries do not look".to_vec();
    registry.push_blob(&repository, &layer).await.unwrap();
    let mut platforms = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        }))
        .unwrap();
        registry.push_blob(&repository, &config).await.unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let digest = sha256(&manifest);
        registry
            .push_manifest(&repository, &digest, &manifest, OCI_MANIFEST)
            .await
            .unwrap();
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        platforms.push((arch.to_owned(), digest));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    let index_digest = registry
        .push_manifest(&repository, "latest", &index, OCI_INDEX)
        .await
        .unwrap();
    assert_eq!(index_digest, sha256(&index));
    PushedImage {
        repository,
        index: index_digest,
        platforms,
    }
}

/// The manifest under `tag`, parsed as a signature manifest.
async fn manifest_under(registry: &Registry, repository: &str, tag: &str) -> (Manifest, String) {
    let fetched = SignatureStore::fetch_manifest(registry, repository, tag)
        .await
        .unwrap();
    (Manifest::from_json(&fetched.bytes).unwrap(), fetched.digest)
}

/// Replaces layer `position` of the manifest under `tag` with `payload` (annotations kept) and
/// pushes the modified blob and manifest, as an attacker with write access could.
async fn tamper_layer(
    registry: &Registry,
    repository: &str,
    tag: &str,
    position: usize,
    payload: &[u8],
) {
    let (mut manifest, _) = manifest_under(registry, repository, tag).await;
    registry.push_blob(repository, payload).await.unwrap();
    manifest.layers[position].digest = sha256(payload);
    manifest.layers[position].size = payload.len() as u64;
    let media_type = manifest.media_type.clone().unwrap();
    registry
        .push_manifest(repository, tag, &manifest.to_json(), &media_type)
        .await
        .unwrap();
}

async fn verify(
    registry: &Registry,
    image: &PushedImage,
    reference: &str,
    key: &VerifyingKey,
    attestations: &[AttestationType],
) -> Result<VerificationReport, String> {
    verify_image(registry, &image.repository, reference, key, attestations)
        .await
        .map_err(|error| securebuild_builder::error::chain(&error))
}

fn provenance(repository: &str) -> ProvenanceInputs {
    ProvenanceInputs {
        builder_id: "https://securebuild.dev/builder/integration".to_owned(),
        builder_version: "0.1.0".to_owned(),
        external_parameters: json!({"target": repository}),
        internal_parameters: None,
        packages: Vec::new(),
        indexes: Vec::new(),
        keys: Vec::new(),
        invocation_id: "sign-verify-1".to_owned(),
        started_on: "2024-05-06T07:08:09Z".to_owned(),
        finished_on: "2024-05-06T07:10:09Z".to_owned(),
    }
}

fn sboms(image: &PushedImage) -> BuildSboms {
    BuildSboms {
        created: "2024-05-06T07:10:09Z".to_owned(),
        tool_version: "0.1.0".to_owned(),
        images: image
            .platforms
            .iter()
            .map(|(arch, digest)| SbomInput {
                image: ImageDescriptor {
                    repository: image.repository.clone(),
                    digest: digest.clone(),
                    arch: arch.clone(),
                    tag: None,
                },
                distro: Distro {
                    id: "alpine".to_owned(),
                    version_id: Some("3.20.3".to_owned()),
                    supplier: Some("Alpine Linux".to_owned()),
                },
                packages: vec![SbomPackage {
                    name: "busybox".to_owned(),
                    version: "1.36.1-r29".to_owned(),
                    arch: if arch == "amd64" { "x86_64" } else { "aarch64" }.to_owned(),
                    license: Some("GPL-2.0-only".to_owned()),
                    ..SbomPackage::default()
                }],
                created: "2024-05-06T07:10:09Z".to_owned(),
                tool_version: "0.1.0".to_owned(),
            })
            .collect(),
    }
}

/// Attests `image` with provenance and SBOMs, signed by `key`.
async fn attest(
    registry: &Registry,
    image: &PushedImage,
    key: &SigningKey,
) -> publish::AttestationSummary {
    publish::attest_build(
        registry,
        &published(image),
        key,
        Some(&provenance(&image.repository)),
        Some(&sboms(image)),
    )
    .await
    .unwrap()
}

fn published(image: &PushedImage) -> PublishedImage {
    PublishedImage {
        repository: image.repository.clone(),
        digest: image.index.clone(),
        tag: Some("latest".to_owned()),
        platforms: image
            .platforms
            .iter()
            .map(|(arch, digest)| PublishedPlatform {
                arch: arch.clone(),
                digest: digest.clone(),
            })
            .collect(),
    }
}

/// Runs [`COSIGN_CHECK_SCRIPT`] and returns its JSON, failing clearly without the modules.
fn python_check(
    server: &TestRegistry,
    digest: &str,
    key: &VerifyingKey,
    attestations: bool,
) -> Value {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("cosign.pub");
    std::fs::write(&key_path, key.to_pem().unwrap()).unwrap();
    let mut command = Command::new(&python);
    command
        .arg("-c")
        .arg(COSIGN_CHECK_SCRIPT)
        .arg(server.url())
        .arg(REPOSITORY_PATH)
        .arg(digest)
        .arg(&key_path)
        .stdin(Stdio::null());
    if attestations {
        command.arg("attestations");
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {python:?} (set {PYTHON_ENV}): {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "{python}: {stderr}; set {PYTHON_ENV} to a python with cryptography and securesystemslib"
    );
    assert!(output.status.success(), "python check failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn signing_is_idempotent_and_a_second_signer_is_appended() {
    let server = TestRegistry::start().unwrap();
    let registry = client();
    let image = push_image(&registry, &server).await;
    let sig_tag = signature_tag(&image.index).unwrap();
    let first = SigningKey::generate().unwrap();
    let second = SigningKey::generate().unwrap();

    let signed = publish::sign_image(&registry, &image.repository, &image.index, &first, None)
        .await
        .unwrap();
    assert!(signed.appended);
    assert_eq!(signed.reference, format!("{}:{sig_tag}", image.repository));
    let (manifest, digest) = manifest_under(&registry, &image.repository, &sig_tag).await;
    assert_eq!(digest, signed.digest);
    assert_eq!(manifest.layers.len(), 1);

    // Signing again changes nothing: same manifest, still one layer.
    let again = publish::sign_image(&registry, &image.repository, &image.index, &first, None)
        .await
        .unwrap();
    assert!(!again.appended);
    let (manifest_again, digest_again) =
        manifest_under(&registry, &image.repository, &sig_tag).await;
    assert_eq!(digest_again, digest);
    assert_eq!(manifest_again.layers.len(), 1);

    // A second key appends; the first signature stays where it was.
    let other = publish::sign_image(&registry, &image.repository, &image.index, &second, None)
        .await
        .unwrap();
    assert!(other.appended);
    let (both, _) = manifest_under(&registry, &image.repository, &sig_tag).await;
    assert_eq!(both.layers.len(), 2);
    assert_eq!(both.layers[0], manifest.layers[0]);
    // Every blob the manifest names is in the registry.
    SignatureStore::fetch_blob(&registry, &image.repository, &both.config.digest)
        .await
        .unwrap();

    for (key, valid_position) in [(&first, 0), (&second, 1)] {
        let report = verify(&registry, &image, "latest", &key.verifying_key(), &[])
            .await
            .unwrap();
        assert_eq!(report.digest, image.index);
        assert_eq!(report.signatures.len(), 1);
        assert_eq!(
            report.signatures[0].layer,
            both.layers[valid_position].digest
        );
        assert_eq!(report.signatures[0].docker_reference, image.repository);
        assert_eq!(report.rejected_signatures.len(), 1);
    }
    let by_digest = verify(&registry, &image, &image.index, &first.verifying_key(), &[])
        .await
        .unwrap();
    assert_eq!(by_digest.digest, image.index);

    let stranger = SigningKey::generate().unwrap().verifying_key();
    let error = verify(&registry, &image, "latest", &stranger, &[])
        .await
        .unwrap_err();
    assert!(
        error.contains(&format!(
            "no valid signature for {}@{} with the given key",
            image.repository, image.index
        )) && error.contains("layer 2 (sha256:"),
        "{error}"
    );

    // An image that was never signed.
    let (_, platform) = &image.platforms[0];
    let error = verify(&registry, &image, platform, &first.verifying_key(), &[])
        .await
        .unwrap_err();
    assert!(error.contains("no signatures found for"), "{error}");

    // Python's cryptography checks both signatures the registry holds.
    let checked = python_check(&server, &image.index, &first.verifying_key(), false);
    let signatures = checked["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 2);
    assert_eq!(signatures[0]["valid"], true);
    assert_eq!(signatures[1]["valid"], false, "signed by the other key");
    for signature in signatures {
        assert_eq!(signature["digest"], image.index.as_str());
        assert_eq!(signature["reference"], image.repository.as_str());
        assert_eq!(signature["optional"], Value::Null);
    }
}

#[tokio::test]
async fn build_attestations_verify_and_tampering_is_caught() {
    let server = TestRegistry::start().unwrap();
    let registry = client();
    let image = push_image(&registry, &server).await;
    let key = SigningKey::generate().unwrap();
    let public = key.verifying_key();
    let summary = attest(&registry, &image, &key).await;
    assert_eq!(summary.sboms.len(), 3);
    let att_tag = attestation_tag(&image.index).unwrap();
    assert_eq!(
        summary.provenance.as_ref().unwrap().reference,
        format!("{}:{att_tag}", image.repository)
    );

    let report = verify(
        &registry,
        &image,
        "latest",
        &public,
        &[AttestationType::SlsaProvenance, AttestationType::Spdx],
    )
    .await
    .unwrap();
    let index_subject = format!("{}@{}", image.repository, image.index);
    let attested: Vec<(&str, &[String])> = report
        .attestations
        .iter()
        .map(|a| (a.predicate_type.as_str(), a.subjects.as_slice()))
        .collect();
    assert_eq!(
        attested,
        [
            (SLSA_PROVENANCE_V1, std::slice::from_ref(&index_subject)),
            (SPDX_PREDICATE_TYPE, std::slice::from_ref(&index_subject)),
        ]
    );
    let text = report.to_text();
    assert!(
        text.contains("signatures: 1 valid of 1")
            && text.contains("attestations: 2 valid of 2")
            && text.contains(&format!(
                "predicateType=https://slsa.dev/provenance/v1 subjects={index_subject}"
            )),
        "{text}"
    );

    // Attesting the same build again stores nothing new.
    let again = attest(&registry, &image, &key).await;
    assert_eq!(
        again.provenance.unwrap().digest,
        summary.sboms[0].artifact.digest
    );
    let (attestations, _) = manifest_under(&registry, &image.repository, &att_tag).await;
    assert_eq!(attestations.layers.len(), 2);

    // Each platform manifest carries its own SPDX document about itself.
    for (arch, digest) in &image.platforms {
        let (manifest, _) = manifest_under(
            &registry,
            &image.repository,
            &attestation_tag(digest).unwrap(),
        )
        .await;
        assert_eq!(manifest.layers.len(), 1, "{arch}");
        let envelope = Envelope::from_json(
            &SignatureStore::fetch_blob(&registry, &image.repository, &manifest.layers[0].digest)
                .await
                .unwrap(),
        )
        .unwrap();
        let statement = securebuild_builder::attest::intoto::Statement::open(
            &envelope,
            &public,
            digest,
            SPDX_PREDICATE_TYPE,
        )
        .unwrap();
        assert!(
            statement.predicate["documentNamespace"]
                .as_str()
                .unwrap()
                .ends_with(&format!("-{arch}")),
            "{arch}"
        );
    }

    // securesystemslib and cryptography accept every stored artifact.
    let checked = python_check(&server, &image.index, &public, true);
    assert_eq!(checked["signatures"][0]["valid"], true);
    assert_eq!(
        checked["attestations"],
        json!([
            {"type": "https://in-toto.io/Statement/v1", "predicateType": SLSA_PROVENANCE_V1, "subjects": [index_subject]},
            {"type": "https://in-toto.io/Statement/v1", "predicateType": SPDX_PREDICATE_TYPE, "subjects": [index_subject]},
        ])
    );

    // The wrong key verifies neither signatures nor attestations.
    let stranger = SigningKey::generate().unwrap().verifying_key();
    let error = verify(
        &registry,
        &image,
        "latest",
        &stranger,
        &[AttestationType::Spdx],
    )
    .await
    .unwrap_err();
    assert!(error.contains("no valid signature"), "{error}");

    // A tampered envelope: the provenance statement rewritten, its signature kept.
    let (manifest, _) = manifest_under(&registry, &image.repository, &att_tag).await;
    let genuine =
        SignatureStore::fetch_blob(&registry, &image.repository, &manifest.layers[0].digest)
            .await
            .unwrap();
    let mut envelope = Envelope::from_json(&genuine).unwrap();
    let mut statement: Value = serde_json::from_slice(&base64_decode(&envelope.payload)).unwrap();
    statement["predicate"]["runDetails"]["builder"]["id"] = json!("https://evil.example/");
    envelope.payload = base64_encode(&serde_json::to_vec(&statement).unwrap());
    tamper_layer(
        &registry,
        &image.repository,
        &att_tag,
        0,
        &envelope.to_json(),
    )
    .await;
    let error = verify(
        &registry,
        &image,
        "latest",
        &public,
        &[AttestationType::SlsaProvenance],
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("no valid https://slsa.dev/provenance/v1 attestation")
            && error.contains("layer 1 (sha256:")
            && error.contains(
                "dsse envelope: none of the 1 signature(s) on the dsse envelope verifies"
            ),
        "{error}"
    );
    // The untouched SBOM attestation still verifies.
    verify(
        &registry,
        &image,
        "latest",
        &public,
        &[AttestationType::Spdx],
    )
    .await
    .unwrap();

    // A tampered payload: the signed digest claim kept, the repository claim rewritten.
    let sig_tag = signature_tag(&image.index).unwrap();
    let (manifest, _) = manifest_under(&registry, &image.repository, &sig_tag).await;
    let payload =
        SignatureStore::fetch_blob(&registry, &image.repository, &manifest.layers[0].digest)
            .await
            .unwrap();
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace(REPOSITORY_PATH, "team/other")
        .into_bytes();
    tamper_layer(&registry, &image.repository, &sig_tag, 0, &tampered).await;
    let error = verify(&registry, &image, "latest", &public, &[])
        .await
        .unwrap_err();
    assert!(
        error.contains("no valid signature")
            && error
                .contains("simple-signing payload: signature does not verify with the public key"),
        "{error}"
    );
    let checked = python_check(&server, &image.index, &public, false);
    assert_eq!(checked["signatures"][0]["valid"], false);

    // A tampered signature annotation over the genuine payload.
    let (mut manifest, _) = manifest_under(&registry, &image.repository, &sig_tag).await;
    let genuine_payload =
        cosign::simple_signing_payload(&image.repository, &image.index, None).unwrap();
    registry
        .push_blob(&image.repository, &genuine_payload)
        .await
        .unwrap();
    manifest.layers[0].digest = sha256(&genuine_payload);
    manifest.layers[0].size = genuine_payload.len() as u64;
    manifest.layers[0].annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        base64_encode(&SigningKey::generate().unwrap().sign(&genuine_payload)),
    )]));
    registry
        .push_manifest(
            &image.repository,
            &sig_tag,
            &manifest.to_json(),
            OCI_MANIFEST,
        )
        .await
        .unwrap();
    let error = verify(&registry, &image, "latest", &public, &[])
        .await
        .unwrap_err();
    assert!(error.contains("signature does not verify"), "{error}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Parses `args` with the real argument tree.
fn parse(args: &[&str]) -> Result<CliCommand, String> {
    use clap::Parser as _;
    Cli::try_parse_from(std::iter::once("securebuild").chain(args.iter().copied()))
        .map(|cli| cli.command)
        .map_err(|error| error.to_string())
}

/// Runs `securebuild ARGS...` in-process and returns its stdout, or the error `main` would
/// print to stderr.
async fn run_cli(args: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    let result = match parse(args)? {
        CliCommand::Sign(args) => securebuild_builder::cli::sign::run(&args, &mut out).await,
        CliCommand::Verify(args) => securebuild_builder::cli::verify::run(&args, &mut out).await,
        other => panic!("not a signing command: {other:?}"),
    };
    result
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|error| securebuild_builder::error::chain(&error))
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_and_verify_subcommands_against_an_authenticated_registry() {
    let server = TestRegistry::start_with_auth("builder", "s3cret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let docker_config = server.docker_config_json(dir.path()).unwrap();
    let registry = client_with(DockerConfig::from_file(&docker_config).unwrap());
    let image = push_image(&registry, &server).await;
    let config = docker_config.to_str().unwrap();

    let key = SigningKey::generate().unwrap();
    let key_file = write(
        dir.path(),
        "cosign.key",
        key.to_encrypted_pem(b"correct horse").unwrap().as_bytes(),
    );
    let password_file = write(dir.path(), "password", b"correct horse\n");
    let public_file = write(
        dir.path(),
        "cosign.pub",
        key.verifying_key().to_pem().unwrap().as_bytes(),
    );
    let tagged = format!("{}:latest", image.repository);
    let sig_reference = format!(
        "{}:{}",
        image.repository,
        signature_tag(&image.index).unwrap()
    );

    // Without credentials the registry refuses.
    let empty_config = write(dir.path(), "empty.json", b"{}");
    let error = run_cli(&[
        "sign",
        &tagged,
        "--key",
        &key_file,
        "--key-password-file",
        &password_file,
        "--registry-config",
        &empty_config,
    ])
    .await
    .unwrap_err();
    assert!(
        error.contains("401") || error.contains("nauthorized"),
        "{error}"
    );

    // No password for an encrypted key.
    let error = run_cli(&[
        "sign",
        &tagged,
        "--key",
        &key_file,
        "--registry-config",
        config,
    ])
    .await;
    // The variables may be set in the environment running the tests; only check the message
    // when they are not.
    if std::env::var_os("SECUREBUILD_KEY_PASSWORD").is_none()
        && std::env::var_os("COSIGN_PASSWORD").is_none()
    {
        let error = error.unwrap_err();
        assert!(
            error.contains("is encrypted: set SECUREBUILD_KEY_PASSWORD (or COSIGN_PASSWORD) or pass --key-password-file"),
            "{error}"
        );
    }
    // Passwords are never command-line values.
    let error = parse(&["sign", &tagged, "--key", &key_file, "--key-password", "x"]).unwrap_err();
    assert!(error.contains("--key-password"), "{error}");

    let sign_args = [
        "sign",
        tagged.as_str(),
        "--key",
        &key_file,
        "--key-password-file",
        &password_file,
        "--registry-config",
        config,
        "-a",
        "team=blue",
        "--annotations",
        "build=42",
    ];
    let out = run_cli(&sign_args).await.unwrap();
    let (manifest, sig_digest) = manifest_under(
        &registry,
        &image.repository,
        &signature_tag(&image.index).unwrap(),
    )
    .await;
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(
        out,
        format!(
            "signed {}@{}\nsignature {sig_reference}@{sig_digest} (pushed)\n",
            image.repository, image.index
        )
    );
    let out = run_cli(&sign_args).await.unwrap();
    assert!(
        out.ends_with(&format!("@{sig_digest} (already present)\n")),
        "{out}"
    );

    let error = run_cli(&[
        "sign",
        &tagged,
        "--key",
        &key_file,
        "--key-password-file",
        &password_file,
        "-a",
        "novalue",
    ])
    .await
    .unwrap_err();
    assert!(
        error.contains("annotation \"novalue\" is not KEY=VALUE"),
        "{error}"
    );

    // Verify: signatures only, then with attestations once they exist.
    let out = run_cli(&[
        "verify",
        &tagged,
        "--key",
        &public_file,
        "--registry-config",
        config,
    ])
    .await
    .unwrap();
    assert!(
        out.starts_with(&format!(
            "verified {}@{}\nsignatures: 1 valid of 1 in {sig_reference}\n",
            image.repository, image.index
        )) && out.contains("build=42 team=blue\n"),
        "{out}"
    );
    let error = run_cli(&[
        "verify",
        &tagged,
        "--key",
        &public_file,
        "--registry-config",
        config,
        "--attestation",
        "spdx",
    ])
    .await
    .unwrap_err();
    assert!(error.contains("no attestations found for"), "{error}");

    attest(&registry, &image, &key).await;
    let by_digest = format!("{}@{}", image.repository, image.index);
    let out = run_cli(&[
        "verify",
        &by_digest,
        "--key",
        &public_file,
        "--registry-config",
        config,
        "--attestation",
        "slsaprovenance",
        "--attestation",
        "spdx",
        "--output",
        "json",
    ])
    .await
    .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["digest"], image.index.as_str());
    assert_eq!(
        report["signatures"][0]["annotations"],
        json!({"build": "42", "team": "blue"})
    );
    assert_eq!(
        report["attestations"][0]["predicate_type"],
        SLSA_PROVENANCE_V1
    );
    assert_eq!(
        report["attestations"][1]["predicate_type"],
        SPDX_PREDICATE_TYPE
    );

    let error = run_cli(&[
        "verify",
        &tagged,
        "--key",
        &public_file,
        "--registry-config",
        config,
        "--attestation",
        "cyclonedx",
    ])
    .await
    .unwrap_err();
    assert!(
        error.contains("no valid https://cyclonedx.org/bom attestation")
            && error.contains(
                "valid predicate types: https://slsa.dev/provenance/v1, https://spdx.dev/Document"
            ),
        "{error}"
    );
    let error = parse(&[
        "verify",
        &tagged,
        "--key",
        &public_file,
        "--attestation",
        "vuln",
    ])
    .unwrap_err();
    assert!(
        error.contains("unknown attestation type \"vuln\""),
        "{error}"
    );

    let wrong = write(
        dir.path(),
        "wrong.pub",
        SigningKey::generate()
            .unwrap()
            .verifying_key()
            .to_pem()
            .unwrap()
            .as_bytes(),
    );
    let error = run_cli(&[
        "verify",
        &tagged,
        "--key",
        &wrong,
        "--registry-config",
        config,
    ])
    .await
    .unwrap_err();
    assert!(error.contains("no valid signature"), "{error}");
    let error = run_cli(&[
        "verify",
        &tagged,
        "--key",
        &key_file,
        "--registry-config",
        config,
    ])
    .await
    .unwrap_err();
    assert!(error.contains("unsupported pem block type"), "{error}");
    let error = run_cli(&["verify", "not a reference", "--key", &public_file])
        .await
        .unwrap_err();
    assert!(error.contains("invalid image reference"), "{error}");
}
