//! SPDX 2.3 JSON documents describing an image's installed APK packages, and an index-level
//! document describing a multi-arch image index; it describes what it is given and does not read
//! the installed database itself.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::license::{LicenseReference, NOASSERTION, normalize_license, sanitize_idstring};
use super::purl::{apk_purl, oci_purl};
use super::{InvalidDigest, normalize_timestamp, sha256_hex};

/// `spdxVersion` written.
pub const SPDX_VERSION: &str = "SPDX-2.3";
/// `dataLicense` every SPDX document carries.
pub const DATA_LICENSE: &str = "CC0-1.0";
/// Identifier of the document element.
pub const DOCUMENT_SPDXID: &str = "SPDXRef-DOCUMENT";
/// Base of the document namespaces written.
pub const NAMESPACE_BASE: &str = "https://securebuild.dev/spdx/";
/// Tool name in `creationInfo.creators`.
pub const TOOL_NAME: &str = "securebuild";
/// Media type of an SPDX JSON document (cosign's `.sbom` attachment layer).
pub const SPDX_JSON_MEDIA_TYPE: &str = "text/spdx+json";
/// Predicate type of an SPDX attestation, as cosign names it.
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// Relationship: the document describes an element.
pub const RELATIONSHIP_DESCRIBES: &str = "DESCRIBES";
/// Relationship: an element contains another.
pub const RELATIONSHIP_CONTAINS: &str = "CONTAINS";
/// Relationship: a package depends on another.
pub const RELATIONSHIP_DEPENDS_ON: &str = "DEPENDS_ON";
/// External reference category of package-manager identifiers.
pub const CATEGORY_PACKAGE_MANAGER: &str = "PACKAGE-MANAGER";
/// External reference type of a purl.
pub const REFERENCE_TYPE_PURL: &str = "purl";
/// Package purpose of an image.
pub const PURPOSE_CONTAINER: &str = "CONTAINER";
/// Checksum algorithm name for SHA-1.
pub const CHECKSUM_SHA1: &str = "SHA1";
/// Checksum algorithm name for SHA-256.
pub const CHECKSUM_SHA256: &str = "SHA256";
/// Prefix of an APK `C:` checksum holding a base64 SHA-1.
const APK_SHA1_PREFIX: &str = "Q1";
/// SPDX id of the image package in a per-image document.
const IMAGE_SPDXID: &str = "SPDXRef-Image";
/// SPDX id of the index package in an index document.
const INDEX_SPDXID: &str = "SPDXRef-ImageIndex";

/// Errors building an SBOM.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// An image or index digest is malformed.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// The creation time is not RFC 3339.
    #[error("sbom creation time {value:?} is not an rfc 3339 timestamp")]
    InvalidTimestamp {
        /// The rejected value.
        value: String,
        /// The parse error.
        source: jiff::Error,
    },
    /// Two packages have the same name.
    #[error("package {name:?} is listed twice")]
    DuplicatePackage {
        /// The repeated name.
        name: String,
    },
    /// A dependency edge names a package that is not in the set.
    #[error(
        "package {package:?} depends on {dependency:?}, which is not among the installed packages"
    )]
    UnknownDependency {
        /// The depending package.
        package: String,
        /// The missing dependency.
        dependency: String,
    },
    /// An APK checksum is not `Q1` followed by the base64 of a SHA-1.
    #[error("package {package:?} has malformed apk checksum {checksum:?}")]
    InvalidApkChecksum {
        /// The package.
        package: String,
        /// The rejected checksum.
        checksum: String,
    },
    /// A required field is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
}

/// An SPDX 2.3 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxDocument {
    /// Always [`SPDX_VERSION`].
    #[serde(rename = "spdxVersion")]
    pub spdx_version: String,
    /// Always [`DATA_LICENSE`].
    #[serde(rename = "dataLicense")]
    pub data_license: String,
    /// Always [`DOCUMENT_SPDXID`].
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Document name.
    pub name: String,
    /// Unique URI of this document.
    #[serde(rename = "documentNamespace")]
    pub document_namespace: String,
    /// Who made the document and when.
    #[serde(rename = "creationInfo")]
    pub creation_info: CreationInfo,
    /// Described packages.
    pub packages: Vec<SpdxPackage>,
    /// Relationships between the document and packages.
    pub relationships: Vec<Relationship>,
    /// Licenses referenced as `LicenseRef-`.
    #[serde(
        rename = "hasExtractedLicensingInfos",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extracted_licensing_infos: Vec<ExtractedLicensingInfo>,
}

/// `creationInfo` of an SPDX document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    /// Creation time, `YYYY-MM-DDThh:mm:ssZ`.
    pub created: String,
    /// Creators, e.g. `Tool: securebuild-0.1.0`.
    pub creators: Vec<String>,
    /// SPDX License List version the license identifiers come from.
    pub license_list_version: String,
}

/// An SPDX package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxPackage {
    /// Package name.
    pub name: String,
    /// Element identifier.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    /// Distributor, `Organization: …` or `NOASSERTION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Original author, `Person: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<String>,
    /// Where the package can be downloaded, or `NOASSERTION`.
    pub download_location: String,
    /// Always false: files are not enumerated.
    pub files_analyzed: bool,
    /// Package checksums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    /// Project home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// How the package was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    /// License concluded by this document's author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_concluded: Option<String>,
    /// License the package declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_declared: Option<String>,
    /// Short description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// External identifiers such as purls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// What the package is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
}

/// A checksum of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    /// Algorithm, e.g. [`CHECKSUM_SHA1`].
    pub algorithm: String,
    /// Lowercase hexadecimal value.
    pub checksum_value: String,
}

/// An external reference of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    /// Category, e.g. [`CATEGORY_PACKAGE_MANAGER`].
    pub reference_category: String,
    /// Type, e.g. [`REFERENCE_TYPE_PURL`].
    pub reference_type: String,
    /// The reference itself.
    pub reference_locator: String,
}

/// A relationship between two elements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    /// The subject element.
    pub spdx_element_id: String,
    /// Relationship type, e.g. [`RELATIONSHIP_CONTAINS`].
    pub relationship_type: String,
    /// The object element.
    pub related_spdx_element: String,
}

/// A license declared by this document under a `LicenseRef-` identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicensingInfo {
    /// The `LicenseRef-` identifier.
    pub license_id: String,
    /// The license text or name from the package metadata.
    pub extracted_text: String,
}

/// An installed APK package as the SBOM needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomPackage {
    /// Package name (`P:`).
    pub name: String,
    /// Package version (`V:`).
    pub version: String,
    /// APK architecture (`A:`), e.g. `x86_64`.
    pub arch: String,
    /// License field (`L:`).
    pub license: Option<String>,
    /// Origin (source) package (`o:`).
    pub origin: Option<String>,
    /// Maintainer (`m:`), `Name <email>`.
    pub maintainer: Option<String>,
    /// One-line description (`T:`).
    pub description: Option<String>,
    /// Project URL (`U:`).
    pub homepage: Option<String>,
    /// URL the `.apk` was fetched from.
    pub download_location: Option<String>,
    /// Index checksum (`C:`), `Q1` + base64 SHA-1.
    pub checksum: Option<String>,
    /// Names of installed packages this one depends on.
    pub dependencies: Vec<String>,
}

/// The image an SBOM describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDescriptor {
    /// Repository (`registry/path/name`).
    pub repository: String,
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// OCI architecture, e.g. `amd64` (with variant if any, e.g. `arm64-v8`).
    pub arch: String,
    /// Tag the image was pushed under, if any.
    pub tag: Option<String>,
}

/// The distribution the packages come from, per `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    /// `ID`, e.g. `alpine` (the purl namespace).
    pub id: String,
    /// `VERSION_ID`, e.g. `3.20.3` (the purl `distro` qualifier).
    pub version_id: Option<String>,
    /// Supplier organization named in each package's `supplier`, e.g. `Alpine Linux`.
    pub supplier: Option<String>,
}

/// Everything an image SBOM records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomInput {
    /// The image.
    pub image: ImageDescriptor,
    /// The distribution.
    pub distro: Distro,
    /// Installed packages.
    pub packages: Vec<SbomPackage>,
    /// Creation time, RFC 3339 (normalized to UTC seconds).
    pub created: String,
    /// SecureBuild version.
    pub tool_version: String,
}

/// A multi-arch image index and its per-platform images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexDescriptor {
    /// Repository (`registry/path/name`).
    pub repository: String,
    /// Index digest, `sha256:<hex>`.
    pub digest: String,
    /// Tag the index was pushed under, if any.
    pub tag: Option<String>,
    /// The platform images.
    pub images: Vec<ImageDescriptor>,
}

impl SpdxDocument {
    /// The compact JSON serialization.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, vectors and booleans cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Builds the SPDX document for one platform image: the image package, every APK package it
/// contains, and their dependencies. Packages are ordered by name, relationships by kind then
/// elements, so equal inputs give equal bytes.
pub fn image_spdx(input: &SbomInput) -> Result<SpdxDocument, SbomError> {
    let image = &input.image;
    let CheckedInput {
        hex,
        created,
        packages,
    } = check_input(input)?;
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut used = BTreeSet::from([DOCUMENT_SPDXID.to_owned(), IMAGE_SPDXID.to_owned()]);
    for package in &packages {
        let id = unique_id(
            &mut used,
            &format!("SPDXRef-Package-{}-{}", package.name, package.version),
            &package.name,
        );
        ids.insert(&package.name, id);
    }

    let mut spdx_packages = vec![image_package(IMAGE_SPDXID.to_owned(), image, hex)];
    let mut references: BTreeMap<String, String> = BTreeMap::new();
    let mut relationships = vec![Relationship {
        spdx_element_id: DOCUMENT_SPDXID.to_owned(),
        relationship_type: RELATIONSHIP_DESCRIBES.to_owned(),
        related_spdx_element: IMAGE_SPDXID.to_owned(),
    }];
    let mut dependency_edges = BTreeSet::new();
    for package in &packages {
        let id = ids.get(package.name.as_str()).cloned().unwrap_or_default();
        spdx_packages.push(apk_package(
            id.clone(),
            package,
            &input.distro,
            &mut references,
        )?);
        relationships.push(Relationship {
            spdx_element_id: IMAGE_SPDXID.to_owned(),
            relationship_type: RELATIONSHIP_CONTAINS.to_owned(),
            related_spdx_element: id.clone(),
        });
        for dependency in &package.dependencies {
            let target =
                ids.get(dependency.as_str())
                    .ok_or_else(|| SbomError::UnknownDependency {
                        package: package.name.clone(),
                        dependency: dependency.clone(),
                    })?;
            if *target != id {
                dependency_edges.insert((id.clone(), target.clone()));
            }
        }
    }
    relationships.extend(dependency_edges.into_iter().map(|(from, to)| Relationship {
        spdx_element_id: from,
        relationship_type: RELATIONSHIP_DEPENDS_ON.to_owned(),
        related_spdx_element: to,
    }));

    Ok(SpdxDocument {
        spdx_version: SPDX_VERSION.to_owned(),
        data_license: DATA_LICENSE.to_owned(),
        spdx_id: DOCUMENT_SPDXID.to_owned(),
        name: format!("{}@{}", image.repository, image.digest),
        document_namespace: format!(
            "{NAMESPACE_BASE}sha256-{hex}-{}",
            sanitize_idstring(&image.arch)
        ),
        creation_info: creation_info(created, &input.tool_version),
        packages: spdx_packages,
        relationships,
        extracted_licensing_infos: references
            .into_iter()
            .map(|(license_id, extracted_text)| ExtractedLicensingInfo {
                license_id,
                extracted_text,
            })
            .collect(),
    })
}

/// Builds the SPDX document for a multi-arch index: the index package containing one package per
/// platform image (each platform image has its own document from [`image_spdx`]).
pub fn index_spdx(
    index: &IndexDescriptor,
    created: &str,
    tool_version: &str,
) -> Result<SpdxDocument, SbomError> {
    let hex = sha256_hex(&index.digest)?;
    let created = creation_time(created)?;
    let mut images: Vec<&ImageDescriptor> = index.images.iter().collect();
    images.sort_by(|a, b| (&a.arch, &a.digest).cmp(&(&b.arch, &b.digest)));

    let index_package = container_package(
        INDEX_SPDXID.to_owned(),
        &index.repository,
        &index.digest,
        hex,
        None,
        index.tag.as_deref(),
        Some("multi-platform image index".to_owned()),
    );
    let mut packages = vec![index_package];
    let mut relationships = vec![Relationship {
        spdx_element_id: DOCUMENT_SPDXID.to_owned(),
        relationship_type: RELATIONSHIP_DESCRIBES.to_owned(),
        related_spdx_element: INDEX_SPDXID.to_owned(),
    }];
    let mut used = BTreeSet::from([DOCUMENT_SPDXID.to_owned(), INDEX_SPDXID.to_owned()]);
    for image in images {
        let image_hex = sha256_hex(&image.digest)?;
        let id = unique_id(
            &mut used,
            &format!("SPDXRef-Image-{}", image.arch),
            &image.digest,
        );
        packages.push(image_package(id.clone(), image, image_hex));
        relationships.push(Relationship {
            spdx_element_id: INDEX_SPDXID.to_owned(),
            relationship_type: RELATIONSHIP_CONTAINS.to_owned(),
            related_spdx_element: id,
        });
    }

    Ok(SpdxDocument {
        spdx_version: SPDX_VERSION.to_owned(),
        data_license: DATA_LICENSE.to_owned(),
        spdx_id: DOCUMENT_SPDXID.to_owned(),
        name: format!("{}@{}", index.repository, index.digest),
        document_namespace: format!("{NAMESPACE_BASE}sha256-{hex}-index"),
        creation_info: creation_info(created, tool_version),
        packages,
        relationships,
        extracted_licensing_infos: Vec::new(),
    })
}

/// The SPDX package describing a platform image.
fn image_package(spdx_id: String, image: &ImageDescriptor, hex: &str) -> SpdxPackage {
    container_package(
        spdx_id,
        &image.repository,
        &image.digest,
        hex,
        Some(&image.arch),
        image.tag.as_deref(),
        None,
    )
}

/// The SPDX package describing an image or image index `digest` (whose hex part is `hex`) in
/// `repository`.
fn container_package(
    spdx_id: String,
    repository: &str,
    digest: &str,
    hex: &str,
    arch: Option<&str>,
    tag: Option<&str>,
    description: Option<String>,
) -> SpdxPackage {
    SpdxPackage {
        name: repository.to_owned(),
        spdx_id,
        version_info: Some(digest.to_owned()),
        supplier: Some(NOASSERTION.to_owned()),
        originator: None,
        download_location: NOASSERTION.to_owned(),
        files_analyzed: false,
        checksums: vec![Checksum {
            algorithm: CHECKSUM_SHA256.to_owned(),
            checksum_value: hex.to_owned(),
        }],
        homepage: None,
        source_info: None,
        license_concluded: None,
        license_declared: None,
        description,
        external_refs: vec![purl_ref(oci_purl(repository, digest, arch, tag))],
        primary_package_purpose: Some(PURPOSE_CONTAINER.to_owned()),
    }
}

/// The SPDX package describing an installed APK package.
fn apk_package(
    spdx_id: String,
    package: &SbomPackage,
    distro: &Distro,
    references: &mut BTreeMap<String, String>,
) -> Result<SpdxPackage, SbomError> {
    let license = normalize_license(package.license.as_deref().unwrap_or_default());
    for LicenseReference { id, text } in license.references {
        references.entry(id).or_insert(text);
    }
    let checksums = match package.checksum.as_deref() {
        Some(checksum) => vec![Checksum {
            algorithm: CHECKSUM_SHA1.to_owned(),
            checksum_value: apk_checksum_sha1_hex(&package.name, checksum)?,
        }],
        None => Vec::new(),
    };
    let supplier = distro
        .supplier
        .as_deref()
        .map(agent_name)
        .filter(|name| !name.is_empty())
        .map_or_else(
            || NOASSERTION.to_owned(),
            |name| format!("Organization: {name}"),
        );
    Ok(SpdxPackage {
        name: package.name.clone(),
        spdx_id,
        version_info: Some(package.version.clone()),
        supplier: Some(supplier),
        originator: package.maintainer.as_deref().and_then(person_agent),
        download_location: package
            .download_location
            .as_deref()
            .filter(|url| is_download_url(url))
            .map_or_else(|| NOASSERTION.to_owned(), str::to_owned),
        files_analyzed: false,
        checksums,
        homepage: package
            .homepage
            .as_deref()
            .filter(|url| is_download_url(url))
            .map(str::to_owned),
        source_info: package
            .origin
            .as_deref()
            .filter(|origin| !origin.is_empty())
            .map(|origin| format!("built from origin package {origin}")),
        license_concluded: Some(NOASSERTION.to_owned()),
        license_declared: Some(license.expression),
        description: package.description.clone().filter(|text| !text.is_empty()),
        external_refs: vec![purl_ref(apk_purl(
            &distro.id,
            &package.name,
            &package.version,
            &package.arch,
            distro.version_id.as_deref(),
        ))],
        primary_package_purpose: None,
    })
}

/// A purl external reference.
fn purl_ref(purl: String) -> ExternalRef {
    ExternalRef {
        reference_category: CATEGORY_PACKAGE_MANAGER.to_owned(),
        reference_type: REFERENCE_TYPE_PURL.to_owned(),
        reference_locator: purl,
    }
}

/// `creationInfo` for a document created at `created` by this tool.
fn creation_info(created: String, tool_version: &str) -> CreationInfo {
    CreationInfo {
        created,
        creators: vec![format!("Tool: {TOOL_NAME}-{tool_version}")],
        license_list_version: super::license::LICENSE_LIST_VERSION.to_owned(),
    }
}

/// What every image SBOM format checks and derives from its input first.
pub(crate) struct CheckedInput<'a> {
    /// The hex part of the image digest.
    pub(crate) hex: &'a str,
    /// The normalized creation time.
    pub(crate) created: String,
    /// The packages ordered by name, then version; each name occurs once.
    pub(crate) packages: Vec<&'a SbomPackage>,
}

/// Checks the image digest, the distro id, the creation time and that no package name repeats,
/// in that order.
pub(crate) fn check_input(input: &SbomInput) -> Result<CheckedInput<'_>, SbomError> {
    let hex = sha256_hex(&input.image.digest)?;
    if input.distro.id.is_empty() {
        return Err(SbomError::Empty { field: "distro id" });
    }
    let created = creation_time(&input.created)?;
    let mut packages: Vec<&SbomPackage> = input.packages.iter().collect();
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    // Sorting puts packages of the same name next to each other.
    if let Some(pair) = packages
        .windows(2)
        .find(|pair| pair[0].name == pair[1].name)
    {
        return Err(SbomError::DuplicatePackage {
            name: pair[1].name.clone(),
        });
    }
    Ok(CheckedInput {
        hex,
        created,
        packages,
    })
}

/// Validates and normalizes the creation time.
fn creation_time(value: &str) -> Result<String, SbomError> {
    normalize_timestamp(value).map_err(|source| SbomError::InvalidTimestamp {
        value: value.to_owned(),
        source,
    })
}

/// A sanitized SPDX id built from `wanted`, made unique with a hash of `seed` when taken.
fn unique_id(used: &mut BTreeSet<String>, wanted: &str, seed: &str) -> String {
    let base = match wanted.strip_prefix("SPDXRef-") {
        Some(rest) => format!("SPDXRef-{}", sanitize_idstring(rest)),
        None => format!("SPDXRef-{}", sanitize_idstring(wanted)),
    };
    let mut candidate = base.clone();
    let mut salt = 0u32;
    while used.contains(&candidate) {
        let digest = sha2::Sha256::digest(format!("{seed}\n{salt}").as_bytes());
        candidate = format!("{base}-{}", hex::encode(&digest[..4]));
        salt += 1;
    }
    used.insert(candidate.clone());
    candidate
}

/// The lowercase hex SHA-1 in an APK `Q1<base64>` checksum.
pub fn apk_checksum_sha1_hex(package: &str, checksum: &str) -> Result<String, SbomError> {
    let invalid = || SbomError::InvalidApkChecksum {
        package: package.to_owned(),
        checksum: checksum.to_owned(),
    };
    let encoded = checksum.strip_prefix(APK_SHA1_PREFIX).ok_or_else(invalid)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid())?;
    if raw.len() != 20 {
        return Err(invalid());
    }
    Ok(hex::encode(raw))
}

/// Removes characters that would break the SPDX agent syntax (parentheses, control characters).
fn agent_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `Person: Name (email)` from an APK maintainer `Name <email>`, if it has a name.
fn person_agent(maintainer: &str) -> Option<String> {
    let (name, email) = match maintainer.split_once('<') {
        Some((name, rest)) => (name, rest.split('>').next().unwrap_or_default()),
        None => (maintainer, ""),
    };
    let name = agent_name(name);
    let email = agent_name(email);
    match (name.is_empty(), email.is_empty()) {
        (true, _) => None,
        (false, true) => Some(format!("Person: {name}")),
        (false, false) => Some(format!("Person: {name} ({email})")),
    }
}

/// Whether `url` is an http(s) or ftp URL with a dotted host name, the download locations SPDX
/// validators accept; others are recorded as `NOASSERTION`.
fn is_download_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ftp"
    ) {
        return false;
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    if port.is_some_and(|port| {
        port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit())
    }) {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let tld = labels.last().copied().unwrap_or_default();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && (2..=5).contains(&tld.len())
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::attest::test_support;

    const IMAGE_DIGEST: &str =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    /// An Alpine package with every field set, depending on `dependencies`.
    pub(crate) fn package(
        name: &str,
        version: &str,
        license: &str,
        dependencies: &[&str],
    ) -> SbomPackage {
        SbomPackage {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: "x86_64".to_owned(),
            license: Some(license.to_owned()),
            origin: Some(name.to_owned()),
            maintainer: Some("Natanael Copa <ncopa@alpinelinux.org>".to_owned()),
            description: Some(format!("the {name} package")),
            homepage: Some(format!("https://{name}.example.org/")),
            download_location: Some(format!(
                "https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/{name}-{version}.apk"
            )),
            checksum: Some("Q1hsmJMzk4r/VG8w1srQGHkiq6zE0=".to_owned()),
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    /// An Alpine image: a `LicenseRef-` license, a `WITH` exception, an `AND` list,
    /// maintainers, origins, download locations and dependencies.
    pub(crate) fn input() -> SbomInput {
        SbomInput {
            image: ImageDescriptor {
                repository: "registry.example.com/team/app".to_owned(),
                digest: IMAGE_DIGEST.to_owned(),
                arch: "amd64".to_owned(),
                tag: Some("v1".to_owned()),
            },
            distro: Distro {
                id: "alpine".to_owned(),
                version_id: Some("3.20.3".to_owned()),
                supplier: Some("Alpine Linux".to_owned()),
            },
            packages: vec![
                package("musl", "1.2.5-r0", "MIT", &[]),
                package("busybox", "1.36.1-r29", "GPL-2.0-only", &["musl"]),
                package(
                    "ca-certificates-bundle",
                    "20240705-r0",
                    "MPL-2.0 AND MIT",
                    &[],
                ),
                package("alpine-keys", "2.4-r1", "custom", &[]),
                package(
                    "libstdc++",
                    "13.2.1_git20240309-r0",
                    "gpl-3.0-or-later with GCC-exception-3.1",
                    &["musl"],
                ),
            ],
            created: "2024-07-01T12:00:00.5+02:00".to_owned(),
            tool_version: "0.1.0".to_owned(),
        }
    }

    #[test]
    fn document_fields() {
        let document = image_spdx(&input()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&document.to_json()).unwrap();
        assert_eq!(json["spdxVersion"], "SPDX-2.3");
        assert_eq!(json["dataLicense"], "CC0-1.0");
        assert_eq!(json["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(
            json["name"],
            format!("registry.example.com/team/app@{IMAGE_DIGEST}")
        );
        assert_eq!(
            json["documentNamespace"],
            "https://securebuild.dev/spdx/sha256-1111111111111111111111111111111111111111111111111111111111111111-amd64"
        );
        assert_eq!(
            json["creationInfo"],
            serde_json::json!({"created": "2024-07-01T10:00:00Z", "creators": ["Tool: securebuild-0.1.0"], "licenseListVersion": "3.27"})
        );
        let names: Vec<&str> = json["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "registry.example.com/team/app",
                "alpine-keys",
                "busybox",
                "ca-certificates-bundle",
                "libstdc++",
                "musl"
            ]
        );
        assert_eq!(
            json["packages"][0],
            serde_json::json!({
                "name": "registry.example.com/team/app",
                "SPDXID": "SPDXRef-Image",
                "versionInfo": IMAGE_DIGEST,
                "supplier": "NOASSERTION",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "checksums": [{"algorithm": "SHA256", "checksumValue": "1".repeat(64)}],
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": format!("pkg:oci/app@{IMAGE_DIGEST}?arch=amd64&repository_url=registry.example.com%2Fteam%2Fapp&tag=v1")
                }],
                "primaryPackagePurpose": "CONTAINER"
            })
        );
        assert_eq!(
            json["packages"][2],
            serde_json::json!({
                "name": "busybox",
                "SPDXID": "SPDXRef-Package-busybox-1.36.1-r29",
                "versionInfo": "1.36.1-r29",
                "supplier": "Organization: Alpine Linux",
                "originator": "Person: Natanael Copa (ncopa@alpinelinux.org)",
                "downloadLocation": "https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/busybox-1.36.1-r29.apk",
                "filesAnalyzed": false,
                "checksums": [{"algorithm": "SHA1", "checksumValue": "86c989333938aff546f30d6cad0187922abacc4d"}],
                "homepage": "https://busybox.example.org/",
                "sourceInfo": "built from origin package busybox",
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "GPL-2.0-only",
                "description": "the busybox package",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&distro=alpine-3.20.3"
                }]
            })
        );
        assert_eq!(json["packages"][1]["licenseDeclared"], "LicenseRef-custom");
        assert_eq!(
            json["packages"][4]["SPDXID"],
            "SPDXRef-Package-libstdc---13.2.1-git20240309-r0"
        );
        assert_eq!(
            json["packages"][4]["licenseDeclared"],
            "GPL-3.0-or-later WITH GCC-exception-3.1"
        );
        assert_eq!(
            json["hasExtractedLicensingInfos"],
            serde_json::json!([{"licenseId": "LicenseRef-custom", "extractedText": "custom"}])
        );
        let relationships: Vec<(String, String, String)> = document
            .relationships
            .iter()
            .map(|r| {
                (
                    r.spdx_element_id.clone(),
                    r.relationship_type.clone(),
                    r.related_spdx_element.clone(),
                )
            })
            .collect();
        let rel = |a: &str, t: &str, b: &str| (a.to_owned(), t.to_owned(), b.to_owned());
        assert_eq!(
            relationships,
            [
                rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"),
                rel(
                    "SPDXRef-Image",
                    "CONTAINS",
                    "SPDXRef-Package-alpine-keys-2.4-r1"
                ),
                rel(
                    "SPDXRef-Image",
                    "CONTAINS",
                    "SPDXRef-Package-busybox-1.36.1-r29"
                ),
                rel(
                    "SPDXRef-Image",
                    "CONTAINS",
                    "SPDXRef-Package-ca-certificates-bundle-20240705-r0"
                ),
                rel(
                    "SPDXRef-Image",
                    "CONTAINS",
                    "SPDXRef-Package-libstdc---13.2.1-git20240309-r0"
                ),
                rel("SPDXRef-Image", "CONTAINS", "SPDXRef-Package-musl-1.2.5-r0"),
                rel(
                    "SPDXRef-Package-busybox-1.36.1-r29",
                    "DEPENDS_ON",
                    "SPDXRef-Package-musl-1.2.5-r0"
                ),
                rel(
                    "SPDXRef-Package-libstdc---13.2.1-git20240309-r0",
                    "DEPENDS_ON",
                    "SPDXRef-Package-musl-1.2.5-r0"
                ),
            ]
        );
    }

    #[test]
    fn output_is_deterministic_and_order_independent() {
        let first = image_spdx(&input()).unwrap().to_json();
        let mut shuffled = input();
        shuffled.packages.reverse();
        assert_eq!(image_spdx(&shuffled).unwrap().to_json(), first);
    }

    #[test]
    fn colliding_ids_are_made_unique() {
        let mut colliding = input();
        colliding.packages = vec![
            package("a_b", "1", "MIT", &[]),
            package("a-b", "1", "MIT", &[]),
        ];
        let document = image_spdx(&colliding).unwrap();
        let ids: BTreeSet<&str> = document
            .packages
            .iter()
            .map(|p| p.spdx_id.as_str())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains("SPDXRef-Package-a-b-1"));
    }

    #[test]
    fn unusable_fields_degrade_to_noassertion() {
        let mut odd = input();
        odd.packages = vec![SbomPackage {
            name: "odd".to_owned(),
            version: "1".to_owned(),
            arch: "x86_64".to_owned(),
            maintainer: Some("<only@email>".to_owned()),
            homepage: Some("not a url".to_owned()),
            download_location: Some("http://127.0.0.1:8080/x86_64/odd-1.apk".to_owned()),
            ..SbomPackage::default()
        }];
        odd.distro.supplier = None;
        let document = image_spdx(&odd).unwrap();
        let package = &document.packages[1];
        assert_eq!(package.supplier.as_deref(), Some("NOASSERTION"));
        assert_eq!(package.originator, None);
        assert_eq!(package.homepage, None);
        assert_eq!(package.download_location, "NOASSERTION");
        assert_eq!(package.license_declared.as_deref(), Some("NOASSERTION"));
        assert!(package.checksums.is_empty());
    }

    #[test]
    fn rejects_bad_input() {
        fn check(mutate: impl Fn(&mut SbomInput), expected: &str) {
            let mut bad = input();
            mutate(&mut bad);
            let error = image_spdx(&bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        check(
            |i| i.image.digest = "sha256:abc".to_owned(),
            "invalid digest \"sha256:abc\"",
        );
        check(
            |i| i.created = "noon".to_owned(),
            "creation time \"noon\" is not an rfc 3339",
        );
        check(
            |i| i.packages.push(package("musl", "9", "MIT", &[])),
            "package \"musl\" is listed twice",
        );
        check(
            |i| {
                i.packages
                    .push(package("x", "1", "MIT", &["so:libc.musl-x86_64.so.1"]))
            },
            "package \"x\" depends on \"so:libc.musl-x86_64.so.1\"",
        );
        check(
            |i| i.packages[0].checksum = Some("Q1AAAA".to_owned()),
            "malformed apk checksum \"Q1AAAA\"",
        );
        check(
            |i| i.packages[0].checksum = Some("deadbeef".to_owned()),
            "malformed apk checksum \"deadbeef\"",
        );
        check(|i| i.distro.id.clear(), "distro id must not be empty");
    }

    #[test]
    fn download_urls() {
        fn check(url: &str, ok: bool) {
            assert_eq!(is_download_url(url), ok, "{url}");
        }
        check(
            "https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/a-1.apk",
            true,
        );
        check("http://mirror.example.com:8080/a.apk", true);
        check("ftp://ftp.example.org/", true);
        check("https://127.0.0.1/a.apk", false);
        check("http://localhost:8080/a.apk", false);
        check("file:///tmp/a.apk", false);
        check("https://example.com/a b", false);
        check("https://example.com:/a", false);
    }

    #[test]
    fn index_document() {
        let index = IndexDescriptor {
            repository: "registry.example.com/team/app".to_owned(),
            digest: format!("sha256:{}", "9".repeat(64)),
            tag: Some("v1".to_owned()),
            images: vec![
                ImageDescriptor {
                    repository: "registry.example.com/team/app".to_owned(),
                    digest: format!("sha256:{}", "2".repeat(64)),
                    arch: "arm64".to_owned(),
                    tag: None,
                },
                ImageDescriptor {
                    repository: "registry.example.com/team/app".to_owned(),
                    digest: IMAGE_DIGEST.to_owned(),
                    arch: "amd64".to_owned(),
                    tag: None,
                },
            ],
        };
        let document = index_spdx(&index, "2024-07-01T10:00:00Z", "0.1.0").unwrap();
        assert_eq!(
            document.document_namespace,
            format!(
                "https://securebuild.dev/spdx/sha256-{}-index",
                "9".repeat(64)
            )
        );
        let ids: Vec<&str> = document
            .packages
            .iter()
            .map(|p| p.spdx_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "SPDXRef-ImageIndex",
                "SPDXRef-Image-amd64",
                "SPDXRef-Image-arm64"
            ]
        );
        assert_eq!(
            document.packages[0].external_refs[0].reference_locator,
            format!(
                "pkg:oci/app@sha256:{}?repository_url=registry.example.com%2Fteam%2Fapp&tag=v1",
                "9".repeat(64)
            )
        );
        assert_eq!(document.relationships.len(), 3);
        assert_eq!(document.relationships[1].relationship_type, "CONTAINS");
        validate_with_pyspdxtools(&document, "index");
    }

    #[test]
    fn pyspdxtools_validates_image_document() {
        validate_with_pyspdxtools(&image_spdx(&input()).unwrap(), "image");
    }

    /// Runs the SPDX reference validator (`pyspdxtools -i`) on `document`.
    fn validate_with_pyspdxtools(document: &SpdxDocument, label: &str) {
        test_support::require_module("spdx_tools");
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(format!("{label}.spdx.json"));
        std::fs::write(&path, document.to_json()).unwrap();
        let path = path.to_str().unwrap();
        let script = "import sys\nfrom spdx_tools.spdx.clitools.pyspdxtools import main\nsys.argv = ['pyspdxtools', '-i', sys.argv[1]]\nmain()\n";
        let output = test_support::run_python(script, &[path], b"");
        assert!(!output.contains("invalid"), "{output}");
    }
}
