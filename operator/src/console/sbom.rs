//! SBOM downloads: the SPDX document the operator attested for one platform of an image, read
//! back from the registry and checked before it is served, or the same document as a CycloneDX
//! 1.5 BOM.
//!
//! The attestation is found through the status (`status.attestations`: the `.att` tag of the
//! platform's manifest and the digest of its DSSE envelope), fetched with the ImageBuild's push
//! credentials, its digest checked against the recorded one, its signature verified with the
//! operator's own public key, and its statement checked to be an SPDX document about that
//! manifest. Nothing is served that the operator did not sign.

use securebuild_builder::attest::cosign::attestation_tag;
use securebuild_builder::attest::cyclonedx::bom_from_spdx;
use securebuild_builder::attest::dsse::Envelope;
use securebuild_builder::attest::intoto::Statement;
use securebuild_builder::attest::sbom::{SPDX_PREDICATE_TYPE, SpdxDocument};
use securebuild_builder::error::Chain;
use securebuild_crds::ImageBuild;
use securebuild_crds::imagebuild::{AttestationReference, ImageBuildStatus, PlatformDigest};
use securebuild_registry::reference::parse_reference;

use super::{ConsoleError, SbomSource};
use crate::resolver::platform_name;

/// The formats offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON, as attested.
    Spdx,
    /// CycloneDX 1.5 JSON, converted from the attested SPDX document.
    CycloneDx,
}

impl SbomFormat {
    /// The content type served.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Spdx => "application/spdx+json",
            Self::CycloneDx => "application/vnd.cyclonedx+json",
        }
    }
}

/// The platform and format of a download file name: `amd64.spdx.json`, `arm-v7.cdx.json`.
pub fn parse_file_name(file: &str) -> Option<(String, SbomFormat)> {
    if let Some(platform) = file.strip_suffix(".spdx.json") {
        return Some((platform.to_string(), SbomFormat::Spdx));
    }
    file.strip_suffix(".cdx.json")
        .map(|platform| (platform.to_string(), SbomFormat::CycloneDx))
}

/// Where the SPDX attestation of one platform is: the repository, the envelope's digest and
/// the manifest it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationLocation {
    /// The repository holding the `.att` artifact.
    pub repository: String,
    /// The digest of the DSSE envelope layer.
    pub envelope: String,
    /// The platform manifest's digest.
    pub subject: String,
}

/// The download name of a platform: `amd64`, `arm-v7`.
pub fn platform_file_name(platform: &PlatformDigest) -> String {
    platform_name(&platform.architecture, platform.variant.as_deref()).replace('/', "-")
}

/// The SPDX attestation recorded on the manifest `digest`, with the repository holding it.
pub fn spdx_attestation<'a>(
    status: &'a ImageBuildStatus,
    digest: &str,
) -> Option<(&'a AttestationReference, &'a str)> {
    let tag = format!(":{}", attestation_tag(digest).ok()?);
    status.attestations.iter().find_map(|attestation| {
        let repository = attestation.reference.strip_suffix(&tag)?;
        (attestation.predicate_type == SPDX_PREDICATE_TYPE).then_some((attestation, repository))
    })
}

/// The SPDX attestation of `platform` (`amd64`, `arm-v7`) recorded in `ib`'s status.
pub fn locate(ib: &ImageBuild, platform: &str) -> Result<AttestationLocation, ConsoleError> {
    let not_found = || ConsoleError::NotFound {
        what: format!("no SBOM of platform `{platform}` is recorded for this image"),
    };
    let status = ib.status.as_ref().ok_or_else(not_found)?;
    let manifest = status
        .platforms
        .iter()
        .find(|p| platform_file_name(p) == platform)
        .ok_or_else(not_found)?;
    let (attestation, repository) =
        spdx_attestation(status, &manifest.digest).ok_or_else(not_found)?;
    Ok(AttestationLocation {
        repository: repository.to_string(),
        envelope: attestation.digest.clone(),
        subject: manifest.digest.clone(),
    })
}

/// The SBOM of `platform` in `format`, as JSON bytes.
pub async fn document(
    source: &SbomSource,
    ib: &ImageBuild,
    platform: &str,
    format: SbomFormat,
) -> Result<Vec<u8>, ConsoleError> {
    let location = locate(ib, platform)?;
    let signer = source.signer.as_ref().ok_or(ConsoleError::NoSigningKey)?;
    let key = signer
        .signing_key()
        .await
        .map_err(|error| ConsoleError::Sbom {
            message: format!("cannot read the operator's signing key: {}", Chain(&error)),
        })?;
    let registry = crate::credentials::registry_for(&source.client, ib, &source.config)
        .await
        .map_err(|error| ConsoleError::Sbom {
            message: format!("cannot use the push credentials: {}", Chain(&error)),
        })?;
    let reference = parse_reference(&location.repository).map_err(|error| ConsoleError::Sbom {
        message: format!(
            "the recorded attestation names no valid repository: {}",
            Chain(&error)
        ),
    })?;
    let bytes = registry
        .fetch_blob(&reference, &location.envelope)
        .await
        .map_err(|error| ConsoleError::Sbom {
            message: format!(
                "cannot fetch the attestation {}@{}: {}",
                location.repository,
                location.envelope,
                Chain(&error)
            ),
        })?;
    let envelope = Envelope::from_json(&bytes).map_err(|error| ConsoleError::Sbom {
        message: format!("the attestation is not a DSSE envelope: {}", Chain(&error)),
    })?;
    let statement = Statement::open(
        &envelope,
        &key.verifying_key(),
        &location.subject,
        SPDX_PREDICATE_TYPE,
    )
    .map_err(|error| ConsoleError::Sbom {
        message: format!(
            "the attestation does not verify with the operator's key as an SPDX document about {}: {}",
            location.subject,
            Chain(&error)
        ),
    })?;
    match format {
        SbomFormat::Spdx => {
            serde_json::to_vec_pretty(&statement.predicate).map_err(|error| ConsoleError::Sbom {
                message: format!("cannot write the SPDX document: {error}"),
            })
        }
        SbomFormat::CycloneDx => {
            let spdx: SpdxDocument =
                serde_json::from_value(statement.predicate).map_err(|error| {
                    ConsoleError::Sbom {
                        message: format!("the attested SPDX document cannot be read: {error}"),
                    }
                })?;
            let bom = bom_from_spdx(&spdx).map_err(|error| ConsoleError::Sbom {
                message: format!(
                    "the SPDX document cannot be converted to CycloneDX: {}",
                    Chain(&error)
                ),
            })?;
            Ok(bom.to_json())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestImageBuild;
    use securebuild_crds::imagebuild::{AttestationReference, PlatformDigest};

    #[test]
    fn file_names_name_platform_and_format() {
        assert_eq!(
            parse_file_name("amd64.spdx.json"),
            Some(("amd64".into(), SbomFormat::Spdx))
        );
        assert_eq!(
            parse_file_name("arm-v7.cdx.json"),
            Some(("arm-v7".into(), SbomFormat::CycloneDx))
        );
        assert_eq!(parse_file_name("amd64.json"), None);
    }

    #[test]
    fn the_platform_attestation_is_found_through_the_status() {
        let mut ib = TestImageBuild::new().build();
        let amd = format!("sha256:{}", "a".repeat(64));
        let arm = format!("sha256:{}", "b".repeat(64));
        let mut status = ib.status.clone().unwrap_or_default();
        status.platforms = vec![
            PlatformDigest {
                architecture: "amd64".into(),
                variant: None,
                digest: amd.clone(),
            },
            PlatformDigest {
                architecture: "arm".into(),
                variant: Some("v7".into()),
                digest: arm.clone(),
            },
        ];
        status.attestations = vec![AttestationReference {
            predicate_type: SPDX_PREDICATE_TYPE.into(),
            reference: format!("r.example:5000/team/app:sha256-{}.att", "b".repeat(64)),
            digest: "sha256:envelope".into(),
        }];
        ib.status = Some(status);
        assert_eq!(
            locate(&ib, "arm-v7").unwrap(),
            AttestationLocation {
                repository: "r.example:5000/team/app".into(),
                envelope: "sha256:envelope".into(),
                subject: arm,
            }
        );
        let error = locate(&ib, "amd64").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no SBOM of platform `amd64` is recorded")
        );
        assert!(locate(&ib, "riscv64").is_err());
    }
}
