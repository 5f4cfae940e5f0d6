//! `securebuild build CONFIG.yaml`: builds the image and writes an OCI layout (`--output`, the
//! default when nothing is pushed) and/or pushes it (`--push`), then prints the index digest
//! and each platform's digest and, with `--result`, writes the compact JSON result.

use std::io::Write;
use std::path::{Path, PathBuf};

use securebuild_crds::ImageConfiguration;
use securebuild_crds::image_config::Architecture;

use crate::attest::inputs::{self, RunDetails};
use crate::attest::publish::{self, PublishedImage};
use crate::build::{self, BuildOptions};
use crate::cli::BuildArgs;
use crate::cli::sign::{open_registry, parse_image, read_signing_key};
use crate::error::{Error, Result};
use crate::image::config as image_config;
use crate::image::layer::Compression;
use crate::image::layers::LayerKind;
use crate::lock::Lock;
use crate::result::BuildResult;

/// Runs `securebuild build`.
pub async fn run(args: &BuildArgs, out: &mut dyn Write) -> Result<()> {
    let outcome = build_and_publish(args, out).await;
    if let Some(path) = &args.result {
        let result = match &outcome {
            Ok(result) => result.clone(),
            Err(error) => BuildResult::failure(error.reason(), crate::error::chain(error)),
        };
        write_result(path, &result)?;
    }
    outcome.map(|_| ())
}

async fn build_and_publish(args: &BuildArgs, out: &mut dyn Write) -> Result<BuildResult> {
    let config = read_config(&args.config)?;
    let options = options(args)?;
    // Parse the push target before building, so a typo fails fast.
    let target = args.push.as_deref().map(parse_image).transpose()?;
    // Without --output a pushed image's layout lives in a temporary directory.
    let scratch;
    let (output, keep) = match (&args.output, &target) {
        (Some(dir), _) => (dir.clone(), true),
        (None, None) => (default_output(&args.config), true),
        (None, Some(_)) => {
            let parent = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
            scratch = tempfile::Builder::new()
                .prefix(".securebuild-push-")
                .tempdir_in(&parent)
                .map_err(|source| Error::File {
                    path: parent.clone(),
                    source,
                })?;
            (scratch.path().join("image.oci"), false)
        }
    };
    // Read the signing key before building, so a wrong password fails fast.
    let signing_key = args
        .sign_key
        .as_deref()
        .map(|path| read_signing_key(path, args.key_password_file.as_deref()))
        .transpose()?;
    let started = jiff::Timestamp::now();
    let image = build::build(&config, &options, &output).await?;
    let mut reference = None;
    if let Some(target) = &target {
        let registry = open_registry(args.registry_config.as_deref(), &args.insecure_registries)?
            .with_blob_record(
                &options
                    .cache_dir
                    .join(securebuild_registry::blob_record::RECORD_FILE),
            );
        let report = registry
            .push_layout(image.layout_dir(), target, &image.tags)
            .await?;
        writeln!(
            out,
            "pushed {} ({} blobs uploaded, {} bytes; {} mounted; {} already present)",
            report.reference,
            report.blobs_uploaded,
            report.bytes_uploaded,
            report.blobs_mounted,
            report.blobs_skipped
        )
        .map_err(Error::Output)?;
        reference = Some(report.reference);
        let result = image.result(reference.clone());
        if let (Some(key), Some(published)) = (
            &signing_key,
            result.image.as_ref().and_then(PublishedImage::from_result),
        ) {
            let packages: Vec<Vec<_>> =
                image.platforms.iter().map(|p| p.packages.clone()).collect();
            let created = image_config::rfc3339(image.created)?;
            let run = RunDetails {
                builder_id: args.builder_id.clone(),
                invocation_id: format!("{}@{}", published.repository, published.digest),
                started_on: image_config::rfc3339(started.as_second())?,
                finished_on: image_config::rfc3339(jiff::Timestamp::now().as_second())?,
                created: created.clone(),
            };
            let distro = inputs::distro(
                &image
                    .platforms
                    .first()
                    .map(|p| p.release.clone())
                    .unwrap_or_default(),
            );
            let provenance = args.provenance.then(|| {
                inputs::provenance_inputs(
                    &config,
                    &distro,
                    &published.repository,
                    &image.tags,
                    &image.resolution,
                    &packages,
                    &run,
                )
            });
            let sboms = args.sbom.then(|| {
                inputs::sbom_inputs(&distro, &published, &image.resolution, &packages, &created)
            });
            let summary = publish::attest_build(
                &registry,
                &published,
                key,
                provenance.as_ref(),
                sboms.as_ref(),
            )
            .await?;
            writeln!(out, "signed {}", summary.signature.reference).map_err(Error::Output)?;
            if let Some(provenance) = &summary.provenance {
                writeln!(out, "attested provenance {}", provenance.reference)
                    .map_err(Error::Output)?;
            }
            for sbom in &summary.sboms {
                writeln!(out, "attested sbom {}", sbom.artifact.reference)
                    .map_err(Error::Output)?;
            }
        }
    }
    let result = image.result(reference);
    for platform in &image.platforms {
        out.write_all(layer_table(platform).as_bytes())
            .map_err(Error::Output)?;
    }
    writeln!(out, "index: {}", image.index.digest).map_err(Error::Output)?;
    for platform in &image.platforms {
        let p = platform.arch.platform();
        let name = match p.variant {
            Some(variant) => format!("linux/{}/{variant}", p.architecture),
            None => format!("linux/{}", p.architecture),
        };
        writeln!(out, "{name}: {}", platform.manifest.digest).map_err(Error::Output)?;
    }
    if keep {
        writeln!(out, "wrote {}", image.layout_dir().display()).map_err(Error::Output)?;
    }
    Ok(result)
}

/// The layer table of one platform: per layer, bottom first, its number, whether its blob is a
/// package's data section used as it is (`reused`) or written by the builder (`rebuilt`), what
/// made it, its size, digest and packages (and, for a package that could not be used as it
/// is, why).
pub(crate) fn layer_table(platform: &build::BuiltPlatform) -> String {
    let p = platform.arch.platform();
    let name = match p.variant {
        Some(variant) => format!("linux/{}/{variant}", p.architecture),
        None => format!("linux/{}", p.architecture),
    };
    let mut table = format!(
        "layers of {name}:\n  {:>3}  {:<7}  {:<7}  {:>12}  {:<12}  packages\n",
        "#", "data", "kind", "bytes", "digest"
    );
    for (number, layer) in platform.layers.iter().enumerate() {
        let reused = if layer.kind == LayerKind::Package {
            "reused"
        } else {
            "rebuilt"
        };
        let short = layer
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&layer.digest)
            .get(..12)
            .unwrap_or_default();
        let packages = if layer.packages.is_empty() {
            "-".to_string()
        } else {
            layer.packages.join(" ")
        };
        table.push_str(&format!(
            "  {:>3}  {reused:<7}  {:<7}  {:>12}  {short}  {packages}\n",
            number + 1,
            layer.kind.as_str(),
            layer.size,
        ));
        if let Some(reason) = &layer.reason {
            table.push_str(&format!("       (not reused: {reason})\n"));
        }
    }
    table
}

/// Reads and parses the image configuration file with its includes.
pub(crate) fn read_config(path: &Path) -> Result<ImageConfiguration> {
    crate::config_file::read_config(path)
}

/// The build options the flags describe.
pub(crate) fn options(args: &BuildArgs) -> Result<BuildOptions> {
    let mut options = BuildOptions {
        config_path: Some(args.config.clone()),
        archs: args
            .arch
            .iter()
            .map(|a| Architecture::parse(a))
            .collect::<Result<Vec<_>, _>>()?,
        allow_untrusted: args.allow_untrusted,
        source_date_epoch: args.source_date_epoch,
        tags: args.tag.clone(),
        ..BuildOptions::default()
    };
    if let Some(dir) = &args.cache_dir {
        options.cache_dir = dir.clone();
    }
    options.compression = match args.compression.as_str() {
        "gzip" => Compression::Gzip {
            level: args
                .compression_level
                .unwrap_or(crate::image::layer::DEFAULT_GZIP_LEVEL as i32)
                as u32,
        },
        "zstd" => Compression::Zstd {
            level: args
                .compression_level
                .unwrap_or(crate::image::layer::DEFAULT_ZSTD_LEVEL),
        },
        other => {
            return Err(Error::Unsupported {
                what: format!("compression `{other}` (use gzip or zstd)"),
            });
        }
    };
    if let Some(limit) = args.max_entry_size {
        options.limits.guard.max_entry_size = limit;
    }
    if let Some(limit) = args.max_total_size {
        options.limits.guard.max_total_size = limit;
    }
    if let Some(limit) = args.max_entries {
        options.limits.guard.max_entries = limit;
    }
    if let Some(path) = &args.lockfile {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        options.lockfile = Some(Lock::parse(&text)?);
    }
    // Stage next to the output so the finished layout moves into place by rename.
    // Without either, work in the system temp directory (`TMPDIR`).
    options.work_dir = match (&args.work_dir, &args.output) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(output)) => Some(
            output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        ),
        (None, None) => None,
    };
    Ok(options)
}

/// `hello.apko.yaml` → `hello.oci`.
fn default_output(config: &Path) -> PathBuf {
    let name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string());
    let stem = name
        .trim_end_matches(".yaml")
        .trim_end_matches(".yml")
        .trim_end_matches(".apko");
    PathBuf::from(format!("{stem}.oci"))
}

fn write_result(path: &Path, result: &BuildResult) -> Result<()> {
    let text = if path == Path::new("/dev/termination-log") {
        result.to_termination_message()
    } else {
        result.to_json()
    };
    std::fs::write(path, text).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}
