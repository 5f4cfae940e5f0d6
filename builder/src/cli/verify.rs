//! `securebuild verify IMAGE --key PUB [--attestation TYPE]...`: checks an image's cosign
//! signatures (and, when asked, its attestations) in a registry with a public key and prints
//! what it verified; any failure is an error, so the command exits non-zero with the reason.
//!
//! It prints nothing on failure (the caller reports the error on stderr) and reads no private
//! key.

use std::io::Write;

use crate::attest::publish::{repository_name, tag_or_digest};
use crate::attest::verify::verify_image;
use crate::cli::sign::{load_verifying_key, open_registry, parse_image};
use crate::cli::{VerifyArgs, VerifyOutput};
use crate::error::{Error, Result};

/// Runs `securebuild verify`.
pub async fn run(args: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let reference = parse_image(&args.image)?;
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
    let text = match args.output {
        VerifyOutput::Text => report.to_text(),
        VerifyOutput::Json => format!("{}\n", report.to_json()),
    };
    out.write_all(text.as_bytes()).map_err(Error::Output)?;
    Ok(())
}
