//! CycloneDX 1.5 JSON BOMs for an image's installed APK packages, built from the same inputs as
//! the SPDX documents ([`image_cyclonedx`]) or converted from an SPDX 2.x document
//! ([`bom_from_spdx`]), so a holder of only the attached SPDX attestation can offer CycloneDX too;
//! it does not read the installed database itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use super::license::{NOASSERTION, NONE, normalize_license};
use super::purl::{apk_purl, oci_purl};
use super::sbom::{
    CheckedInput, PURPOSE_CONTAINER, REFERENCE_TYPE_PURL, RELATIONSHIP_CONTAINS,
    RELATIONSHIP_DEPENDS_ON, RELATIONSHIP_DESCRIBES, SbomError, SbomInput, SpdxDocument,
    SpdxPackage, apk_checksum_sha1_hex, check_input,
};
use super::{normalize_timestamp, sha256_hex};

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
/// Prefix of the SPDX `sourceInfo` that records a package's origin (as `image_spdx` writes it).
const SOURCE_INFO_ORIGIN_PREFIX: &str = "built from origin package ";
/// SPDX relationship: the subject is contained by the object (the reverse of `CONTAINS`).
const RELATIONSHIP_CONTAINED_BY: &str = "CONTAINED_BY";
/// SPDX relationship: the object is described by the subject (the reverse of `DESCRIBES`).
const RELATIONSHIP_DESCRIBED_BY: &str = "DESCRIBED_BY";
/// Suffix of the SPDX relationships saying the subject is a dependency of the object
/// (`DEPENDENCY_OF`, `RUNTIME_DEPENDENCY_OF`, `BUILD_DEPENDENCY_OF`, …).
const RELATIONSHIP_DEPENDENCY_OF_SUFFIX: &str = "DEPENDENCY_OF";
/// Prefix of the `spdxVersion`s [`bom_from_spdx`] reads.
const SPDX_2_PREFIX: &str = "SPDX-2.";
/// The RFC 4122 URL namespace for name-based UUIDs.
const UUID_NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// Errors converting an SPDX document into a CycloneDX BOM.
#[derive(Debug, thiserror::Error)]
pub enum SpdxConversionError {
    /// The document is not SPDX 2.x.
    #[error("spdx document has spdxVersion {version:?}, expected SPDX-2.x")]
    UnsupportedVersion {
        /// The rejected `spdxVersion`.
        version: String,
    },
    /// `creationInfo.created` is not RFC 3339.
    #[error("spdx creationInfo.created {value:?} is not an rfc 3339 timestamp")]
    InvalidTimestamp {
        /// The rejected value.
        value: String,
        /// The parse error.
        source: jiff::Error,
    },
    /// The document has no package to describe in `metadata.component`.
    #[error("spdx document {document:?} has no packages")]
    NoPackages {
        /// The document's name.
        document: String,
    },
    /// A field the conversion needs is missing or empty.
    #[error("spdx {element} has no {field}")]
    MissingField {
        /// The document or package, e.g. `package "SPDXRef-Package-musl-1.2.5-r0"`.
        element: String,
        /// The SPDX field, e.g. `name`.
        field: &'static str,
    },
    /// Two packages share an SPDX identifier, so relationships cannot be resolved.
    #[error("spdx id {id:?} is used by more than one package")]
    DuplicateId {
        /// The repeated `SPDXID`.
        id: String,
    },
}

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
        let reference = unique_reference(&mut used, package_purl(input, package));
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
    let tool = tool_component(super::sbom::TOOL_NAME, Some(&input.tool_version));
    Ok(Bom {
        bom_format: BOM_FORMAT.to_owned(),
        spec_version: SPEC_VERSION.to_owned(),
        serial_number: image_serial_number(hex, &image.arch),
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

/// Converts an SPDX 2.x document into a CycloneDX BOM. For a per-image document written by
/// [`super::sbom::image_spdx`] the result equals what [`image_cyclonedx`] writes for the same
/// input, byte for byte, except where the SPDX writer already dropped or cleaned a value (see
/// "Losses"). Documents from other tools convert with what they have.
///
/// # Mapping
///
/// 1. `metadata.component` is the package the document `DESCRIBES` (the first one whose
///    `primaryPackagePurpose` is `CONTAINER` when it describes several). Without a `DESCRIBES`
///    relationship it is the first `CONTAINER` package, else the first package.
/// 2. Every other package becomes a component, ordered by name then version as
///    [`image_cyclonedx`] orders them. A package's `bom-ref` is its purl (with `#2`, `#3`, …
///    when the purl is taken), or its `SPDXID` when it has no purl.
/// 3. Per package: `primaryPackagePurpose` gives the component type (`library` when absent),
///    `supplier` the supplier's name, `originator` the author (`Person: Name (email)` becomes
///    `Name <email>`), `versionInfo` the version, `checksums` the hashes CycloneDX knows,
///    `licenseDeclared` (else `licenseConcluded`) the license expression unless it is
///    `NOASSERTION` or `NONE`, the first `purl` external reference the purl, `homepage` and
///    `downloadLocation` the `website` and `distribution` links, and a `sourceInfo` of the form
///    `built from origin package <origin>` the [`PROPERTY_APK_ORIGIN`] property.
/// 4. `DEPENDS_ON` and `CONTAINS` between packages, and their reverses (`*DEPENDENCY_OF`,
///    `CONTAINED_BY`), become `dependencies`; each component gets an entry, the described package
///    first. Relationships to files, snippets or other documents are ignored.
/// 5. `creationInfo.created` becomes the timestamp (normalized to UTC seconds) and every
///    `Tool: <name>-<version>` creator a tool; other creators are dropped.
/// 6. The serial number is derived as [`image_cyclonedx`] derives it, from the image digest
///    (the version of the described package's `pkg:oci` purl, else its `versionInfo` when it is a
///    `CONTAINER`) and the purl's `arch`; a document not describing an image by digest gets a
///    version-5 UUID of its `documentNamespace`.
///
/// # Losses
///
/// The SPDX writer keeps less than the CycloneDX writer in three places, so converting its
/// document cannot restore them:
/// - home page and download URLs that are absolute but that the SPDX writer does not accept as
///   download locations (not `http`, `https` or `ftp`, or a host that is not dot-separated
///   letters, digits and hyphens ending in an alphabetic top-level label, e.g.
///   `http://127.0.0.1:8080/…`, `http://localhost/…`, `https://libstdc++.example.org/`,
///   `file://…`) are `NOASSERTION` or absent in SPDX, so the `website`/`distribution` link is
///   missing;
/// - the maintainer is rewritten as `Person: Name (email)`: one without a name (`<a@b>`) is
///   absent, and parentheses, control characters, extra spaces and text after `>` are lost;
/// - the distro supplier is rewritten as `Organization: Name` without parentheses, control
///   characters or surrounding spaces, and dropped when nothing is left.
///
/// # Errors
///
/// An `spdxVersion` other than `SPDX-2.x`, a `created` that is not RFC 3339, a document without
/// packages, a package with an empty `SPDXID` or `name`, a `SPDXID` used twice, or an empty
/// `documentNamespace` when the serial number has to come from it.
pub fn bom_from_spdx(document: &SpdxDocument) -> Result<Bom, SpdxConversionError> {
    if !document.spdx_version.starts_with(SPDX_2_PREFIX) {
        return Err(SpdxConversionError::UnsupportedVersion {
            version: document.spdx_version.clone(),
        });
    }
    let created = &document.creation_info.created;
    let timestamp =
        normalize_timestamp(created).map_err(|source| SpdxConversionError::InvalidTimestamp {
            value: created.clone(),
            source,
        })?;
    let mut by_id: BTreeMap<&str, &SpdxPackage> = BTreeMap::new();
    for package in &document.packages {
        if package.spdx_id.is_empty() {
            return Err(SpdxConversionError::MissingField {
                element: format!("package {:?}", package.name),
                field: "SPDXID",
            });
        }
        if package.name.is_empty() {
            return Err(SpdxConversionError::MissingField {
                element: format!("package {:?}", package.spdx_id),
                field: "name",
            });
        }
        if by_id.insert(&package.spdx_id, package).is_some() {
            return Err(SpdxConversionError::DuplicateId {
                id: package.spdx_id.clone(),
            });
        }
    }
    let root =
        described_package(document, &by_id).ok_or_else(|| SpdxConversionError::NoPackages {
            document: document.name.clone(),
        })?;
    let mut packages: Vec<&SpdxPackage> = document
        .packages
        .iter()
        .filter(|package| package.spdx_id != root.spdx_id)
        .collect();
    packages.sort_by(|a, b| (&a.name, &a.version_info).cmp(&(&b.name, &b.version_info)));

    let root_ref = reference_base(root);
    let mut used = BTreeSet::from([root_ref.clone()]);
    let mut refs: BTreeMap<&str, String> = BTreeMap::from([(root.spdx_id.as_str(), root_ref)]);
    for package in &packages {
        let reference = unique_reference(&mut used, reference_base(package));
        refs.insert(&package.spdx_id, reference);
    }

    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for relationship in &document.relationships {
        let subject = relationship.spdx_element_id.as_str();
        let object = relationship.related_spdx_element.as_str();
        let (from, to) = match dependency_direction(&relationship.relationship_type) {
            Some(Direction::Forward) => (subject, object),
            Some(Direction::Reverse) => (object, subject),
            None => continue,
        };
        let (Some(from_ref), Some(to_ref)) = (refs.get(from), refs.get(to)) else {
            continue;
        };
        if from_ref != to_ref {
            edges.entry(from).or_default().insert(to_ref.clone());
        }
    }

    let mut dependencies = Vec::with_capacity(packages.len() + 1);
    let mut components = Vec::with_capacity(packages.len());
    for (position, package) in std::iter::once(root).chain(packages).enumerate() {
        let reference = refs
            .get(package.spdx_id.as_str())
            .cloned()
            .unwrap_or_default();
        dependencies.push(Dependency {
            reference: reference.clone(),
            depends_on: edges
                .remove(package.spdx_id.as_str())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        });
        if position > 0 {
            components.push(spdx_component(package, reference));
        }
    }
    let root_component = spdx_component(
        root,
        refs.get(root.spdx_id.as_str()).cloned().unwrap_or_default(),
    );

    let serial_number = match image_identity(root) {
        Some((hex, arch)) => image_serial_number(&hex, &arch),
        None if document.document_namespace.is_empty() => {
            return Err(SpdxConversionError::MissingField {
                element: "document".to_owned(),
                field: "documentNamespace",
            });
        }
        None => format!(
            "urn:uuid:{}",
            uuid_v5(&UUID_NAMESPACE_URL, document.document_namespace.as_bytes())
        ),
    };
    let tools = document
        .creation_info
        .creators
        .iter()
        .filter_map(|creator| creator.strip_prefix("Tool:"))
        .map(|tool| {
            let (name, version) = split_tool(tool.trim_start());
            tool_component(name, version)
        })
        .collect();
    Ok(Bom {
        bom_format: BOM_FORMAT.to_owned(),
        spec_version: SPEC_VERSION.to_owned(),
        serial_number,
        version: 1,
        metadata: Metadata {
            timestamp,
            tools: Tools { components: tools },
            component: root_component,
        },
        components,
        dependencies,
    })
}

/// Which way an SPDX relationship points as a dependency edge.
enum Direction {
    /// Subject depends on (or contains) the object.
    Forward,
    /// Object depends on (or contains) the subject.
    Reverse,
}

/// How an SPDX relationship type maps onto the CycloneDX dependency graph, if it does.
fn dependency_direction(relationship_type: &str) -> Option<Direction> {
    match relationship_type {
        RELATIONSHIP_DEPENDS_ON | RELATIONSHIP_CONTAINS => Some(Direction::Forward),
        RELATIONSHIP_CONTAINED_BY => Some(Direction::Reverse),
        other if other.ends_with(RELATIONSHIP_DEPENDENCY_OF_SUFFIX) => Some(Direction::Reverse),
        _ => None,
    }
}

/// The package a document is about: the first described `CONTAINER`, else the first described
/// package, else the first `CONTAINER` package, else the first package.
fn described_package<'d>(
    document: &'d SpdxDocument,
    by_id: &BTreeMap<&str, &'d SpdxPackage>,
) -> Option<&'d SpdxPackage> {
    let is_container = |package: &&SpdxPackage| {
        package.primary_package_purpose.as_deref() == Some(PURPOSE_CONTAINER)
    };
    let described: Vec<&SpdxPackage> = document
        .relationships
        .iter()
        .filter_map(
            |relationship| match relationship.relationship_type.as_str() {
                RELATIONSHIP_DESCRIBES if relationship.spdx_element_id == document.spdx_id => {
                    Some(relationship.related_spdx_element.as_str())
                }
                RELATIONSHIP_DESCRIBED_BY
                    if relationship.related_spdx_element == document.spdx_id =>
                {
                    Some(relationship.spdx_element_id.as_str())
                }
                _ => None,
            },
        )
        .filter_map(|id| by_id.get(id).copied())
        .collect();
    let all: Vec<&SpdxPackage> = document.packages.iter().collect();
    let candidates = if described.is_empty() { all } else { described };
    candidates
        .iter()
        .copied()
        .find(is_container)
        .or_else(|| candidates.first().copied())
}

/// The component for an SPDX package with `bom-ref` `reference`.
fn spdx_component(package: &SpdxPackage, reference: String) -> Component {
    let hashes = package
        .checksums
        .iter()
        .filter_map(|checksum| {
            cyclonedx_hash_algorithm(&checksum.algorithm).map(|alg| Hash {
                alg: alg.to_owned(),
                content: checksum.checksum_value.clone(),
            })
        })
        .collect();
    let licenses = [&package.license_declared, &package.license_concluded]
        .into_iter()
        .flatten()
        .find(|expression| is_assertion(expression))
        .map(|expression| LicenseChoice {
            expression: expression.clone(),
        })
        .into_iter()
        .collect();
    let mut external_references = Vec::new();
    for (kind, url) in [
        (REFERENCE_WEBSITE, package.homepage.as_deref()),
        (
            REFERENCE_DISTRIBUTION,
            Some(package.download_location.as_str()),
        ),
    ] {
        if let Some(url) = url.filter(|url| is_assertion(url) && is_plain_url(url)) {
            external_references.push(ExternalReference {
                reference_type: kind.to_owned(),
                url: url.to_owned(),
            });
        }
    }
    let properties = package
        .source_info
        .as_deref()
        .and_then(|info| info.strip_prefix(SOURCE_INFO_ORIGIN_PREFIX))
        .filter(|origin| !origin.is_empty())
        .map(|origin| Property {
            name: PROPERTY_APK_ORIGIN.to_owned(),
            value: origin.to_owned(),
        })
        .into_iter()
        .collect();
    Component {
        component_type: component_type(package.primary_package_purpose.as_deref()).to_owned(),
        bom_ref: Some(reference),
        supplier: package
            .supplier
            .as_deref()
            .filter(|agent| is_assertion(agent))
            .map(|agent| parse_agent(agent).0)
            .filter(|name| !name.is_empty())
            .map(|name| OrganizationalEntity { name }),
        author: package
            .originator
            .as_deref()
            .filter(|agent| is_assertion(agent))
            .map(|agent| match parse_agent(agent) {
                (name, None) => name,
                (name, Some(email)) if name.is_empty() => format!("<{email}>"),
                (name, Some(email)) => format!("{name} <{email}>"),
            })
            .filter(|author| !author.is_empty()),
        name: package.name.clone(),
        version: package.version_info.clone(),
        description: package.description.clone().filter(|text| !text.is_empty()),
        hashes,
        licenses,
        purl: spdx_purl(package).map(str::to_owned),
        external_references,
        properties,
    }
}

/// Whether an SPDX value says something, i.e. is neither `NOASSERTION` nor `NONE`.
fn is_assertion(value: &str) -> bool {
    value != NOASSERTION && value != NONE
}

/// The first purl among a package's external references.
fn spdx_purl(package: &SpdxPackage) -> Option<&str> {
    package
        .external_refs
        .iter()
        .find(|reference| reference.reference_type == REFERENCE_TYPE_PURL)
        .map(|reference| reference.reference_locator.as_str())
}

/// The `bom-ref` a package wants: its purl, else its SPDX id.
fn reference_base(package: &SpdxPackage) -> String {
    spdx_purl(package).unwrap_or(&package.spdx_id).to_owned()
}

/// The CycloneDX component type of an SPDX `primaryPackagePurpose`.
fn component_type(purpose: Option<&str>) -> &'static str {
    match purpose {
        Some("CONTAINER") => TYPE_CONTAINER,
        Some("APPLICATION") => TYPE_APPLICATION,
        Some("FRAMEWORK") => "framework",
        Some("OPERATING-SYSTEM" | "OPERATING_SYSTEM") => "operating-system",
        Some("DEVICE") => "device",
        Some("FIRMWARE") => "firmware",
        Some("FILE") => "file",
        _ => TYPE_LIBRARY,
    }
}

/// The CycloneDX name of an SPDX checksum algorithm, if CycloneDX 1.5 has it.
fn cyclonedx_hash_algorithm(algorithm: &str) -> Option<&'static str> {
    Some(match algorithm {
        "SHA1" => HASH_SHA1,
        "SHA256" => HASH_SHA256,
        "SHA384" => "SHA-384",
        "SHA512" => "SHA-512",
        "MD5" => "MD5",
        "SHA3-256" => "SHA3-256",
        "SHA3-384" => "SHA3-384",
        "SHA3-512" => "SHA3-512",
        "BLAKE2b-256" => "BLAKE2b-256",
        "BLAKE2b-384" => "BLAKE2b-384",
        "BLAKE2b-512" => "BLAKE2b-512",
        "BLAKE3" => "BLAKE3",
        _ => return None,
    })
}

/// The name and email of an SPDX agent, `Person: Name (email)`, `Organization: Name` or
/// `Tool: name`; the kind is optional.
fn parse_agent(agent: &str) -> (String, Option<String>) {
    let text = ["Person:", "Organization:", "Tool:"]
        .iter()
        .find_map(|kind| agent.strip_prefix(kind))
        .unwrap_or(agent)
        .trim();
    if let Some(open) = text.strip_suffix(')').and_then(|inner| inner.rfind('(')) {
        let email = text[open + 1..text.len() - 1].trim();
        let name = text[..open].trim();
        if !email.is_empty() {
            return (name.to_owned(), Some(email.to_owned()));
        }
        return (name.to_owned(), None);
    }
    (text.to_owned(), None)
}

/// Splits an SPDX tool creator `name-version` at the version: after the tool name for this
/// tool, else at the first `-` followed by a digit.
fn split_tool(tool: &str) -> (&str, Option<&str>) {
    let ours = super::sbom::TOOL_NAME;
    if let Some(version) = tool
        .strip_prefix(ours)
        .and_then(|rest| rest.strip_prefix('-'))
    {
        return (ours, Some(version));
    }
    tool.char_indices()
        .find(|&(index, c)| {
            c == '-' && tool[index + 1..].starts_with(|next: char| next.is_ascii_digit())
        })
        .map_or((tool, None), |(index, _)| {
            (&tool[..index], Some(&tool[index + 1..]))
        })
}

/// The hex digest and architecture of the image a package describes: the version and `arch` of
/// its `pkg:oci` purl, else its `versionInfo` when it is a `CONTAINER`.
fn image_identity(package: &SpdxPackage) -> Option<(String, String)> {
    let purl = spdx_purl(package).filter(|purl| purl_type(purl) == Some("oci"));
    let arch = purl
        .and_then(|purl| purl_qualifier(purl, super::purl::QUALIFIER_ARCH))
        .unwrap_or_default();
    let from_purl = purl.and_then(purl_version);
    let from_version = package
        .version_info
        .clone()
        .filter(|_| package.primary_package_purpose.as_deref() == Some(PURPOSE_CONTAINER));
    [from_purl, from_version]
        .into_iter()
        .flatten()
        .find_map(|digest| sha256_hex(&digest).ok().map(str::to_owned))
        .map(|hex| (hex, arch))
}

/// The type of a purl (`pkg:<type>/…`).
fn purl_type(purl: &str) -> Option<&str> {
    purl.strip_prefix("pkg:")?
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|kind| !kind.is_empty())
}

/// The decoded version of a purl (`…@<version>?…#…`).
fn purl_version(purl: &str) -> Option<String> {
    let path = purl.split('#').next()?.split('?').next()?;
    let (_, version) = path.strip_prefix("pkg:")?.rsplit_once('@')?;
    percent_decode(version)
}

/// The decoded value of qualifier `key` of a purl.
fn purl_qualifier(purl: &str, key: &str) -> Option<String> {
    let (_, qualifiers) = purl.split('#').next()?.split_once('?')?;
    qualifiers
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .and_then(|(_, value)| percent_decode(value))
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let escape = value.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(escape, 16).ok()?);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The serial number of the BOM of the image with digest hex `hex` and architecture `arch`.
fn image_serial_number(hex: &str, arch: &str) -> String {
    let name = format!("{SERIAL_NAME_BASE}sha256-{hex}-{arch}");
    format!("urn:uuid:{}", uuid_v5(&UUID_NAMESPACE_URL, name.as_bytes()))
}

/// A tool component `name` at `version`.
fn tool_component(name: &str, version: Option<&str>) -> Component {
    Component {
        component_type: TYPE_APPLICATION.to_owned(),
        bom_ref: None,
        supplier: None,
        author: None,
        name: name.to_owned(),
        version: version.map(str::to_owned),
        description: None,
        hashes: Vec::new(),
        licenses: Vec::new(),
        purl: None,
        external_references: Vec::new(),
        properties: Vec::new(),
    }
}

/// `base` as a `bom-ref`, suffixed `#2`, `#3`, … when `used` already has it; records the result.
fn unique_reference(used: &mut BTreeSet<String>, base: String) -> String {
    let mut reference = base.clone();
    let mut counter = 1;
    while used.contains(&reference) {
        counter += 1;
        reference = format!("{base}#{counter}");
    }
    used.insert(reference.clone());
    reference
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
    use crate::attest::sbom::{Distro, ImageDescriptor, SbomPackage, image_spdx};

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

    /// The image `sbom.rs` tests with, plus a package with several dependencies. `sbom.rs`
    /// gives `libstdc++` the home page `https://libstdc++.example.org/`, which the SPDX writer
    /// drops (see the losses test); here every home page survives.
    fn alpine_input() -> SbomInput {
        let mut input = crate::attest::sbom::tests::input();
        for package in &mut input.packages {
            package.homepage = Some(format!(
                "https://{}.example.org/",
                package.name.trim_end_matches('+')
            ));
        }
        input.packages.push(crate::attest::sbom::tests::package(
            "apk-tools",
            "2.14.4-r0",
            "GPL-2.0-only",
            &["musl", "busybox"],
        ));
        input
    }

    /// Degenerate but accepted values: an architecture that needs percent-encoding, empty tag,
    /// distro version, supplier, tool version, package version, description and origin, absent
    /// and `NONE` licenses, purls differing only in case, SPDX ids that collide after
    /// sanitizing, self and repeated dependencies.
    fn edge_input() -> SbomInput {
        let bare = |name: &str, version: &str| SbomPackage {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: "armv7".to_owned(),
            ..SbomPackage::default()
        };
        SbomInput {
            image: ImageDescriptor {
                repository: "localhost:5000/Team/App".to_owned(),
                digest: DIGEST.replace('1', "e"),
                arch: "arm/v7".to_owned(),
                tag: Some(String::new()),
            },
            distro: Distro {
                id: "Wolfi".to_owned(),
                version_id: Some(String::new()),
                supplier: None,
            },
            packages: vec![
                SbomPackage {
                    license: Some("NONE".to_owned()),
                    description: Some(String::new()),
                    origin: Some(String::new()),
                    maintainer: Some("Just A Name".to_owned()),
                    homepage: Some("not a url".to_owned()),
                    dependencies: vec!["Foo".to_owned(), "Foo".to_owned(), "foo".to_owned()],
                    ..bare("foo", "1")
                },
                SbomPackage {
                    license: Some("  ".to_owned()),
                    dependencies: vec!["a_b".to_owned()],
                    ..bare("Foo", "1")
                },
                bare("a_b", ""),
                SbomPackage {
                    license: Some("BSD-3-Clause OR (MIT AND Zlib)".to_owned()),
                    dependencies: vec!["a_b".to_owned()],
                    ..bare("a-b", "2")
                },
            ],
            created: "2024-02-29T23:59:59-00:30".to_owned(),
            tool_version: String::new(),
        }
    }

    /// The differential check: the BOM converted from the SPDX document (directly and after a
    /// JSON round trip) is byte-identical to the one written from the input.
    fn check_round_trip(input: &SbomInput) {
        let document = image_spdx(input).unwrap();
        let expected = String::from_utf8(image_cyclonedx(input).unwrap().to_json()).unwrap();
        let converted = String::from_utf8(bom_from_spdx(&document).unwrap().to_json()).unwrap();
        assert_eq!(converted, expected);
        let parsed: SpdxDocument = serde_json::from_slice(&document.to_json()).unwrap();
        assert_eq!(parsed, document);
        let reparsed = String::from_utf8(bom_from_spdx(&parsed).unwrap().to_json()).unwrap();
        assert_eq!(reparsed, expected);
    }

    #[test]
    fn spdx_conversion_equals_direct_bom() {
        let mut empty = input();
        empty.packages.clear();
        for input in [input(), alpine_input(), edge_input(), empty] {
            check_round_trip(&input);
        }
    }

    #[test]
    fn spdx_conversion_keeps_what_the_fixtures_exercise() {
        // Guards the differential test against fixtures that stop exercising the mapping.
        let bom = bom_from_spdx(&image_spdx(&alpine_input()).unwrap()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bom.to_json()).unwrap();
        let licenses: Vec<&str> = json["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["licenses"][0]["expression"].as_str().unwrap())
            .collect();
        assert!(licenses.contains(&"LicenseRef-custom"));
        assert!(licenses.contains(&"GPL-3.0-or-later WITH GCC-exception-3.1"));
        assert_eq!(
            json["metadata"]["component"]["purl"],
            format!(
                "pkg:oci/app@{DIGEST}?arch=amd64&repository_url=registry.example.com%2Fteam%2Fapp&tag=v1"
            )
        );
        let edge = bom_from_spdx(&image_spdx(&edge_input()).unwrap()).unwrap();
        let refs: Vec<&str> = edge
            .components
            .iter()
            .map(|c| c.bom_ref.as_deref().unwrap())
            .collect();
        assert!(
            refs.contains(&"pkg:apk/wolfi/foo@1?arch=armv7#2"),
            "{refs:?}"
        );
        assert_eq!(
            edge.metadata.component.purl.as_deref(),
            Some(
                "pkg:oci/app@sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee?arch=arm%2Fv7&repository_url=localhost:5000%2FTeam%2FApp"
            )
        );
    }

    #[test]
    fn spdx_conversion_losses_are_exactly_the_documented_ones() {
        // The SPDX writer drops URLs it does not accept as download locations, rewrites
        // maintainers as `Person: Name (email)` and suppliers as `Organization: Name`; the
        // converted BOM equals the direct one with exactly those fields changed.
        let mut lossy = input();
        lossy.distro.supplier = Some(" Alpine (Linux) ".to_owned());
        lossy.packages[0].maintainer = Some("<only@email>".to_owned());
        lossy.packages[0].homepage = Some("http://localhost/musl".to_owned());
        lossy.packages[0].download_location =
            Some("http://127.0.0.1:8080/aarch64/musl-1.2.5-r0.apk".to_owned());
        lossy.packages[1].maintainer = Some("A (B)  <c@d> trailing".to_owned());
        lossy.packages[1].homepage = Some("https://libstdc++.example.org/".to_owned());
        lossy.packages[1].download_location = Some("file:///tmp/busybox.apk".to_owned());
        let lost = [
            "http://localhost/musl",
            "http://127.0.0.1:8080/aarch64/musl-1.2.5-r0.apk",
            "https://libstdc++.example.org/",
            "file:///tmp/busybox.apk",
        ];
        let mut expected = image_cyclonedx(&lossy).unwrap();
        for component in &mut expected.components {
            component
                .external_references
                .retain(|reference| !lost.contains(&reference.url.as_str()));
            component.supplier = Some(OrganizationalEntity {
                name: "Alpine Linux".to_owned(),
            });
            component.author = match component.name.as_str() {
                "busybox" => Some("A B <c@d>".to_owned()),
                _ => None,
            };
        }
        let converted = bom_from_spdx(&image_spdx(&lossy).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(converted.to_json()).unwrap(),
            String::from_utf8(expected.to_json()).unwrap()
        );
        assert_ne!(converted, image_cyclonedx(&lossy).unwrap());
    }

    const FOREIGN_SPDX: &str = r#"{
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "foreign",
        "documentNamespace": "https://example.org/spdx/foreign-1",
        "creationInfo": {
            "created": "2023-05-06T07:08:09Z",
            "creators": ["Organization: Acme", "Tool: othertool-2.3.4"],
            "licenseListVersion": "3.20"
        },
        "packages": [
            {"name": "lib-b", "SPDXID": "SPDXRef-b", "downloadLocation": "NOASSERTION",
             "filesAnalyzed": false, "supplier": "NOASSERTION", "originator": "NOASSERTION",
             "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
             "copyrightText": "NOASSERTION"},
            {"name": "app", "SPDXID": "SPDXRef-app", "versionInfo": "1.0",
             "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
             "originator": "Organization: Acme Corp (ops@acme.example)",
             "checksums": [
                 {"algorithm": "MD5", "checksumValue": "d41d8cd98f00b204e9800998ecf8427e"},
                 {"algorithm": "SHA224", "checksumValue": "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"}
             ],
             "licenseConcluded": "Apache-2.0", "licenseDeclared": "NOASSERTION",
             "sourceInfo": "built by hand", "primaryPackagePurpose": "APPLICATION"},
            {"name": "lib-a", "SPDXID": "SPDXRef-a",
             "downloadLocation": "git+https://github.com/acme/lib-a", "filesAnalyzed": false,
             "externalRefs": [{"referenceCategory": "SECURITY", "referenceType": "cpe23Type",
                               "referenceLocator": "cpe:2.3:a:acme:lib-a:*:*:*:*:*:*:*:*"}]}
        ],
        "files": [{"fileName": "./x", "SPDXID": "SPDXRef-File-x"}],
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-app"},
            {"spdxElementId": "SPDXRef-a", "relationshipType": "DEPENDENCY_OF", "relatedSpdxElement": "SPDXRef-app"},
            {"spdxElementId": "SPDXRef-a", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "SPDXRef-b"},
            {"spdxElementId": "SPDXRef-app", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-File-x"},
            {"spdxElementId": "SPDXRef-b", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "DocumentRef-ext:SPDXRef-z"},
            {"spdxElementId": "SPDXRef-b", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "NOASSERTION"}
        ]
    }"#;

    #[test]
    fn converts_foreign_spdx_document() {
        let document: SpdxDocument = serde_json::from_str(FOREIGN_SPDX).unwrap();
        let bom = bom_from_spdx(&document).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bom.to_json()).unwrap();
        let serial = format!(
            "urn:uuid:{}",
            uuid_v5(&UUID_NAMESPACE_URL, b"https://example.org/spdx/foreign-1")
        );
        assert_eq!(
            json,
            serde_json::json!({
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "serialNumber": serial,
                "version": 1,
                "metadata": {
                    "timestamp": "2023-05-06T07:08:09Z",
                    "tools": {"components": [
                        {"type": "application", "name": "othertool", "version": "2.3.4"}
                    ]},
                    "component": {
                        "type": "application",
                        "bom-ref": "SPDXRef-app",
                        "author": "Acme Corp <ops@acme.example>",
                        "name": "app",
                        "version": "1.0",
                        "hashes": [{"alg": "MD5", "content": "d41d8cd98f00b204e9800998ecf8427e"}],
                        "licenses": [{"expression": "Apache-2.0"}]
                    }
                },
                "components": [
                    {
                        "type": "library",
                        "bom-ref": "SPDXRef-a",
                        "name": "lib-a",
                        "externalReferences": [
                            {"type": "distribution", "url": "git+https://github.com/acme/lib-a"}
                        ]
                    },
                    {"type": "library", "bom-ref": "SPDXRef-b", "name": "lib-b"}
                ],
                "dependencies": [
                    {"ref": "SPDXRef-app", "dependsOn": ["SPDXRef-a"]},
                    {"ref": "SPDXRef-a", "dependsOn": ["SPDXRef-b"]},
                    {"ref": "SPDXRef-b", "dependsOn": []}
                ]
            })
        );

        // Without a DESCRIBES relationship the first package describes the document.
        let mut undescribed = document.clone();
        undescribed
            .relationships
            .retain(|r| r.relationship_type != RELATIONSHIP_DESCRIBES);
        let bom = bom_from_spdx(&undescribed).unwrap();
        assert_eq!(bom.metadata.component.name, "lib-b");
        assert_eq!(bom.components.len(), 2);
    }

    #[test]
    fn spdx_conversion_rejects_unusable_documents() {
        fn check(document: &SpdxDocument, expected: &str) {
            let error = bom_from_spdx(document).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let empty = SpdxDocument {
            spdx_version: String::new(),
            data_license: String::new(),
            spdx_id: String::new(),
            name: String::new(),
            document_namespace: String::new(),
            creation_info: crate::attest::sbom::CreationInfo {
                created: String::new(),
                creators: Vec::new(),
                license_list_version: String::new(),
            },
            packages: Vec::new(),
            relationships: Vec::new(),
            extracted_licensing_infos: Vec::new(),
        };
        check(
            &empty,
            "spdx document has spdxVersion \"\", expected SPDX-2.x",
        );
        let mut no_time = empty.clone();
        no_time.spdx_version = "SPDX-2.3".to_owned();
        check(&no_time, "creationInfo.created \"\" is not an rfc 3339");
        let mut no_packages = no_time.clone();
        no_packages.name = "garbage".to_owned();
        no_packages.creation_info.created = "2024-01-01T00:00:00Z".to_owned();
        check(&no_packages, "spdx document \"garbage\" has no packages");

        let foreign: SpdxDocument = serde_json::from_str(FOREIGN_SPDX).unwrap();
        let mut unnamed = foreign.clone();
        unnamed.packages[2].name.clear();
        check(&unnamed, "spdx package \"SPDXRef-a\" has no name");
        let mut no_id = foreign.clone();
        no_id.packages[2].spdx_id.clear();
        check(&no_id, "spdx package \"lib-a\" has no SPDXID");
        let mut duplicate = foreign.clone();
        duplicate.packages[0].spdx_id = "SPDXRef-a".to_owned();
        check(
            &duplicate,
            "spdx id \"SPDXRef-a\" is used by more than one package",
        );
        let mut no_namespace = foreign.clone();
        no_namespace.document_namespace.clear();
        check(&no_namespace, "spdx document has no documentNamespace");
        let mut old = foreign;
        old.spdx_version = "SPDX-3.0".to_owned();
        check(&old, "spdxVersion \"SPDX-3.0\"");

        // What does not even parse as SPDX never reaches the conversion.
        for garbage in ["", "garbage", "{}", "[]", r#"{"spdxVersion": "SPDX-2.3"}"#] {
            assert!(
                serde_json::from_str::<SpdxDocument>(garbage).is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn serial_number_comes_from_the_image_digest() {
        // A securebuild document's serial is the one image_cyclonedx derives from digest and
        // arch; a foreign document describing a container by digest but without a purl gets the
        // same derivation with an empty architecture.
        let mut document = image_spdx(&input()).unwrap();
        assert_eq!(
            bom_from_spdx(&document).unwrap().serial_number,
            image_serial_number(&"1".repeat(64), "arm64")
        );
        document.packages[0].external_refs.clear();
        assert_eq!(
            bom_from_spdx(&document).unwrap().serial_number,
            image_serial_number(&"1".repeat(64), "")
        );
    }

    #[test]
    fn purl_parts() {
        let purl = "pkg:oci/app@sha256%3Aab?arch=arm%2Fv7&repository_url=r%2Fapp#sub/path";
        assert_eq!(purl_type(purl), Some("oci"));
        assert_eq!(purl_version(purl).as_deref(), Some("sha256:ab"));
        assert_eq!(purl_qualifier(purl, "arch").as_deref(), Some("arm/v7"));
        assert_eq!(purl_qualifier(purl, "tag"), None);
        assert_eq!(purl_version("pkg:apk/alpine/musl"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%C3%A9"), Some("é".to_owned()));
        assert_eq!(
            split_tool("securebuild-0.1.0-rc-1"),
            ("securebuild", Some("0.1.0-rc-1"))
        );
        assert_eq!(split_tool("syft-v1-0.100.0"), ("syft-v1", Some("0.100.0")));
        assert_eq!(split_tool("handmade"), ("handmade", None));
    }
}
