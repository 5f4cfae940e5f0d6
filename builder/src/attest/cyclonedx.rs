//! CycloneDX 1.5 JSON BOMs for an image's installed APK packages, built from the same inputs as
//! the SPDX documents; it does not read the installed database itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use super::license::{NOASSERTION, NONE, normalize_license};
use super::purl::{apk_purl, oci_purl};
use super::sbom::{CheckedInput, SbomError, SbomInput, apk_checksum_sha1_hex, check_input};

/// `bomFormat` of every CycloneDX document.
pub const BOM_FORMAT: &str = "CycloneDX";
/// `specVersion` written.
pub const SPEC_VERSION: &str = "1.5";
/// Media type of a CycloneDX JSON document.
pub const CYCLONEDX_JSON_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// Predicate type of a CycloneDX attestation, as cosign names it.
pub const CYCLONEDX_PREDICATE_TYPE: &str = "https://cyclonedx.org/bom";
/// Base of the names the serial numbers are derived from.
pub const SERIAL_NAME_BASE: &str = "https://securebuild.dev/cyclonedx/";
/// Property recording a package's origin (source) package.
pub const PROPERTY_APK_ORIGIN: &str = "securebuild:apk:origin";
/// Component type of the image.
const TYPE_CONTAINER: &str = "container";
/// Component type of an installed package.
const TYPE_LIBRARY: &str = "library";
/// Component type of the generating tool.
const TYPE_APPLICATION: &str = "application";
/// Hash algorithm name for SHA-1.
const HASH_SHA1: &str = "SHA-1";
/// Hash algorithm name for SHA-256.
const HASH_SHA256: &str = "SHA-256";
/// External reference type of a project home page.
const REFERENCE_WEBSITE: &str = "website";
/// External reference type of a download location.
const REFERENCE_DISTRIBUTION: &str = "distribution";
/// The RFC 4122 URL namespace for name-based UUIDs.
const UUID_NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// A CycloneDX 1.5 BOM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    /// Always [`BOM_FORMAT`].
    pub bom_format: String,
    /// Always [`SPEC_VERSION`].
    pub spec_version: String,
    /// `urn:uuid:` derived from the image digest and architecture.
    pub serial_number: String,
    /// BOM revision, 1.
    pub version: u32,
    /// What the BOM describes and who made it.
    pub metadata: Metadata,
    /// Installed packages.
    pub components: Vec<Component>,
    /// Dependency graph.
    pub dependencies: Vec<Dependency>,
}

/// `metadata` of a BOM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Creation time, RFC 3339 UTC.
    pub timestamp: String,
    /// Tools that made the BOM.
    pub tools: Tools,
    /// The image.
    pub component: Component,
}

/// `metadata.tools` in the CycloneDX 1.5 object form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    /// The tools as components.
    pub components: Vec<Component>,
}

/// A CycloneDX component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Component type, e.g. `library`.
    #[serde(rename = "type")]
    pub component_type: String,
    /// Identifier referenced by the dependency graph.
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    /// Supplier organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<OrganizationalEntity>,
    /// Author (the package maintainer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Name.
    pub name: String,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    /// License expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    /// Package URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Links such as the home page and download location.
    #[serde(
        rename = "externalReferences",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_references: Vec<ExternalReference>,
    /// Extra name/value facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationalEntity {
    /// Organization name.
    pub name: String,
}

/// A hash of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash {
    /// Algorithm, e.g. `SHA-1`.
    pub alg: String,
    /// Lowercase hexadecimal value.
    pub content: String,
}

/// A license given as an SPDX expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseChoice {
    /// The SPDX license expression.
    pub expression: String,
}

/// A link from a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReference {
    /// Link type, e.g. `website`.
    #[serde(rename = "type")]
    pub reference_type: String,
    /// The URL.
    pub url: String,
}

/// A name/value property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    /// Property name.
    pub name: String,
    /// Property value.
    pub value: String,
}

/// One node of the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The component's `bom-ref`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `bom-ref`s it depends on, sorted.
    pub depends_on: Vec<String>,
}

impl Bom {
    /// The compact JSON serialization.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, vectors and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Builds the CycloneDX BOM for one platform image: the image as `metadata.component`, every
/// installed package as a component, and the dependency graph (the image depends on every
/// package). Components are ordered by name so equal inputs give equal bytes.
pub fn image_cyclonedx(input: &SbomInput) -> Result<Bom, SbomError> {
    let image = &input.image;
    let CheckedInput {
        hex,
        created: timestamp,
        packages,
    } = check_input(input)?;
    let mut refs: BTreeMap<&str, String> = BTreeMap::new();
    let image_ref = oci_purl(
        &image.repository,
        &image.digest,
        Some(&image.arch),
        image.tag.as_deref(),
    );
    let mut used = BTreeSet::from([image_ref.clone()]);
    for package in &packages {
        let purl = package_purl(input, package);
        let mut reference = purl.clone();
        let mut counter = 1;
        while used.contains(&reference) {
            counter += 1;
            reference = format!("{purl}#{counter}");
        }
        used.insert(reference.clone());
        refs.insert(&package.name, reference);
    }

    let mut components = Vec::with_capacity(packages.len());
    let mut dependencies = vec![Dependency {
        reference: image_ref.clone(),
        depends_on: refs.values().cloned().collect(),
    }];
    dependencies[0].depends_on.sort();
    for package in &packages {
        let reference = refs.get(package.name.as_str()).cloned().unwrap_or_default();
        let license = normalize_license(package.license.as_deref().unwrap_or_default());
        let licenses = if license.expression == NOASSERTION || license.expression == NONE {
            Vec::new()
        } else {
            vec![LicenseChoice {
                expression: license.expression,
            }]
        };
        let hashes = match package.checksum.as_deref() {
            Some(checksum) => {
                vec![Hash {
                    alg: HASH_SHA1.to_owned(),
                    content: apk_checksum_sha1_hex(&package.name, checksum)?,
                }]
            }
            None => Vec::new(),
        };
        let mut external_references = Vec::new();
        for (kind, url) in [
            (REFERENCE_WEBSITE, &package.homepage),
            (REFERENCE_DISTRIBUTION, &package.download_location),
        ] {
            if let Some(url) = url.as_deref().filter(|url| is_plain_url(url)) {
                external_references.push(ExternalReference {
                    reference_type: kind.to_owned(),
                    url: url.to_owned(),
                });
            }
        }
        let properties = package
            .origin
            .iter()
            .filter(|origin| !origin.is_empty())
            .map(|origin| Property {
                name: PROPERTY_APK_ORIGIN.to_owned(),
                value: origin.clone(),
            })
            .collect();
        let mut depends_on = BTreeSet::new();
        for dependency in &package.dependencies {
            let target =
                refs.get(dependency.as_str())
                    .ok_or_else(|| SbomError::UnknownDependency {
                        package: package.name.clone(),
                        dependency: dependency.clone(),
                    })?;
            if *target != reference {
                depends_on.insert(target.clone());
            }
        }
        dependencies.push(Dependency {
            reference: reference.clone(),
            depends_on: depends_on.into_iter().collect(),
        });
        components.push(Component {
            component_type: TYPE_LIBRARY.to_owned(),
            bom_ref: Some(reference),
            supplier: input
                .distro
                .supplier
                .as_ref()
                .filter(|name| !name.is_empty())
                .map(|name| OrganizationalEntity { name: name.clone() }),
            author: package
                .maintainer
                .clone()
                .filter(|maintainer| !maintainer.is_empty()),
            name: package.name.clone(),
            version: Some(package.version.clone()),
            description: package.description.clone().filter(|text| !text.is_empty()),
            hashes,
            licenses,
            purl: Some(package_purl(input, package)),
            external_references,
            properties,
        });
    }

    let image_component = Component {
        component_type: TYPE_CONTAINER.to_owned(),
        bom_ref: Some(image_ref.clone()),
        supplier: None,
        author: None,
        name: image.repository.clone(),
        version: Some(image.digest.clone()),
        description: None,
        hashes: vec![Hash {
            alg: HASH_SHA256.to_owned(),
            content: hex.to_owned(),
        }],
        licenses: Vec::new(),
        purl: Some(image_ref),
        external_references: Vec::new(),
        properties: Vec::new(),
    };
    let tool = Component {
        component_type: TYPE_APPLICATION.to_owned(),
        bom_ref: None,
        supplier: None,
        author: None,
        name: super::sbom::TOOL_NAME.to_owned(),
        version: Some(input.tool_version.clone()),
        description: None,
        hashes: Vec::new(),
        licenses: Vec::new(),
        purl: None,
        external_references: Vec::new(),
        properties: Vec::new(),
    };
    let serial_name = format!("{SERIAL_NAME_BASE}sha256-{hex}-{}", image.arch);
    Ok(Bom {
        bom_format: BOM_FORMAT.to_owned(),
        spec_version: SPEC_VERSION.to_owned(),
        serial_number: format!(
            "urn:uuid:{}",
            uuid_v5(&UUID_NAMESPACE_URL, serial_name.as_bytes())
        ),
        version: 1,
        metadata: Metadata {
            timestamp,
            tools: Tools {
                components: vec![tool],
            },
            component: image_component,
        },
        components,
        dependencies,
    })
}

/// The purl of an installed package in this input's distribution.
fn package_purl(input: &SbomInput, package: &super::sbom::SbomPackage) -> String {
    apk_purl(
        &input.distro.id,
        &package.name,
        &package.version,
        &package.arch,
        input.distro.version_id.as_deref(),
    )
}

/// Whether `url` looks like an absolute URL without whitespace.
fn is_plain_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !rest.is_empty()
    }) && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The RFC 4122 version-5 (SHA-1, name-based) UUID of `name` in `namespace`, formatted.
fn uuid_v5(namespace: &[u8; 16], name: &[u8]) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(namespace);
    hasher.update(name);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::attest::sbom::{Distro, ImageDescriptor, SbomPackage};

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn input() -> SbomInput {
        SbomInput {
            image: ImageDescriptor {
                repository: "registry.example.com/app".to_owned(),
                digest: DIGEST.to_owned(),
                arch: "arm64".to_owned(),
                tag: None,
            },
            distro: Distro {
                id: "alpine".to_owned(),
                version_id: None,
                supplier: Some("Alpine Linux".to_owned()),
            },
            packages: vec![
                SbomPackage {
                    name: "musl".to_owned(),
                    version: "1.2.5-r0".to_owned(),
                    arch: "aarch64".to_owned(),
                    license: Some("MIT".to_owned()),
                    ..SbomPackage::default()
                },
                SbomPackage {
                    name: "busybox".to_owned(),
                    version: "1.36.1-r29".to_owned(),
                    arch: "aarch64".to_owned(),
                    license: Some("GPL-2.0-only".to_owned()),
                    origin: Some("busybox".to_owned()),
                    maintainer: Some("Sören Tempel <soeren+alpine@soeren-tempel.net>".to_owned()),
                    homepage: Some("https://busybox.net/".to_owned()),
                    checksum: Some("Q1hsmJMzk4r/VG8w1srQGHkiq6zE0=".to_owned()),
                    dependencies: vec!["musl".to_owned(), "busybox".to_owned()],
                    ..SbomPackage::default()
                },
            ],
            created: "2024-07-01T10:00:00Z".to_owned(),
            tool_version: "0.1.0".to_owned(),
        }
    }

    #[test]
    fn builds_cyclonedx_bom() {
        let bom = image_cyclonedx(&input()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bom.to_json()).unwrap();
        assert_eq!(json["bomFormat"], "CycloneDX");
        assert_eq!(json["specVersion"], "1.5");
        assert_eq!(json["version"], 1);
        let serial = json["serialNumber"].as_str().unwrap();
        let uuid = serial.strip_prefix("urn:uuid:").unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "5", "version 5");
        assert!(
            matches!(&uuid[19..20], "8" | "9" | "a" | "b"),
            "rfc 4122 variant"
        );
        assert_eq!(json["metadata"]["timestamp"], "2024-07-01T10:00:00Z");
        assert_eq!(
            json["metadata"]["tools"],
            serde_json::json!({
                "components": [{"type": "application", "name": "securebuild", "version": "0.1.0"}]
            })
        );
        let image_ref =
            format!("pkg:oci/app@{DIGEST}?arch=arm64&repository_url=registry.example.com%2Fapp");
        assert_eq!(json["metadata"]["component"]["bom-ref"], image_ref.as_str());
        assert_eq!(json["metadata"]["component"]["type"], "container");
        assert_eq!(
            json["components"][0],
            serde_json::json!({
                "type": "library",
                "bom-ref": "pkg:apk/alpine/busybox@1.36.1-r29?arch=aarch64",
                "supplier": {"name": "Alpine Linux"},
                "author": "Sören Tempel <soeren+alpine@soeren-tempel.net>",
                "name": "busybox",
                "version": "1.36.1-r29",
                "hashes": [{"alg": "SHA-1", "content": "86c989333938aff546f30d6cad0187922abacc4d"}],
                "licenses": [{"expression": "GPL-2.0-only"}],
                "purl": "pkg:apk/alpine/busybox@1.36.1-r29?arch=aarch64",
                "externalReferences": [{"type": "website", "url": "https://busybox.net/"}],
                "properties": [{"name": "securebuild:apk:origin", "value": "busybox"}]
            })
        );
        assert_eq!(
            json["dependencies"],
            serde_json::json!([
                {"ref": image_ref, "dependsOn": ["pkg:apk/alpine/busybox@1.36.1-r29?arch=aarch64", "pkg:apk/alpine/musl@1.2.5-r0?arch=aarch64"]},
                {"ref": "pkg:apk/alpine/busybox@1.36.1-r29?arch=aarch64", "dependsOn": ["pkg:apk/alpine/musl@1.2.5-r0?arch=aarch64"]},
                {"ref": "pkg:apk/alpine/musl@1.2.5-r0?arch=aarch64", "dependsOn": []}
            ])
        );
    }

    #[test]
    fn serial_number_is_reproducible_and_digest_bound() {
        let first = image_cyclonedx(&input()).unwrap();
        let mut reordered = input();
        reordered.packages.reverse();
        assert_eq!(
            image_cyclonedx(&reordered).unwrap().to_json(),
            first.to_json()
        );
        let mut other = input();
        other.image.digest = DIGEST.replace('1', "2");
        assert_ne!(
            image_cyclonedx(&other).unwrap().serial_number,
            first.serial_number
        );
    }

    #[test]
    fn uuid_v5_matches_python_uuid5() {
        // Python: uuid.uuid5(uuid.NAMESPACE_URL, "https://www.example.com/")
        assert_eq!(
            uuid_v5(&UUID_NAMESPACE_URL, b"https://www.example.com/"),
            "3d3ed9d2-aa3d-5fa6-90e8-ed662e90f559"
        );
    }

    #[test]
    fn rejects_bad_input() {
        fn check(mutate: impl Fn(&mut SbomInput), expected: &str) {
            let mut bad = input();
            mutate(&mut bad);
            let error = image_cyclonedx(&bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        check(
            |i| i.image.digest = "latest".to_owned(),
            "invalid digest \"latest\"",
        );
        check(
            |i| i.packages[0].dependencies.push("ghost".to_owned()),
            "depends on \"ghost\"",
        );
        check(
            |i| i.packages[1].checksum = Some("Q1!".to_owned()),
            "malformed apk checksum",
        );
        check(
            |i| i.created = "soon".to_owned(),
            "is not an rfc 3339 timestamp",
        );
    }
}
