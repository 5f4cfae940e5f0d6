//! `securebuild verify IMAGE --key PUB [--attestation TYPE]... [-a KEY=VALUE]...`: checks an
//! image's cosign signatures (and, when asked, its attestations) in a registry with a public key
//! and prints what it verified; any failure is an error, so the command exits non-zero with the
//! reason. As with cosign, what is checked is the signed digest and the annotations asked for,
//! not the name the image was asked for by (the report shows the signed reference).
//!
//! It prints nothing on failure (the caller reports the error on stderr) and reads no private
//! key.

use std::io::Write;

use crate::attest::publish::{repository_name, tag_or_digest};
use crate::attest::verify::verify_image;
use crate::cli::sign::{
    CommandError, load_verifying_key, open_registry, parse_annotations, parse_image,
};
use crate::cli::{VerifyArgs, VerifyOutput};
use crate::error::{Error, Result};

/// Runs `securebuild verify`.
pub async fn run(args: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let reference = parse_image(&args.image)?;
    let wanted = parse_annotations(&args.annotations)?;
    let key = load_verifying_key(&args.key)?;
    let registry = open_registry(args.registry_config.as_deref(), &args.insecure_registries)?;
    let repository = repository_name(&reference);
    let report = verify_image(
        &registry,
        &repository,
        tag_or_digest(&reference),
        &key,
        &args.attestations,
    )
    .await?;
    let carries_wanted = |annotations: &std::collections::BTreeMap<String, serde_json::Value>| {
        wanted.iter().all(|(key, value)| {
            annotations.get(key).and_then(|found| found.as_str()) == Some(value)
        })
    };
    if !report
        .signatures
        .iter()
        .any(|signature| carries_wanted(&signature.annotations))
    {
        let join = |pairs: Vec<String>| {
            if pairs.is_empty() {
                "none".to_owned()
            } else {
                pairs.join(", ")
            }
        };
        return Err(CommandError::AnnotationsNotSigned {
            image: format!("{}@{}", report.repository, report.digest),
            wanted: join(
                wanted
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect(),
            ),
            found: report
                .signatures
                .iter()
                .map(|signature| {
                    join(
                        signature
                            .annotations
                            .iter()
                            .map(|(key, value)| match value {
                                serde_json::Value::String(text) => format!("{key}={text}"),
                                other => format!("{key}={other}"),
                            })
                            .collect(),
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        }
        .into());
    }
    let text = match args.output {
        VerifyOutput::Text => report.to_text(),
        VerifyOutput::Json => format!("{}\n", report.to_json()),
    };
    out.write_all(text.as_bytes()).map_err(Error::Output)?;
    Ok(())
}
