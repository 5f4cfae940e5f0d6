//! `securebuild lock CONFIG.yaml -o LOCK.json`: resolves the configuration for every
//! architecture, fetches and verifies the packages, and writes apko's lockfile format.

use std::io::Write;

use crate::build::{self, BuildOptions};
use crate::cli::LockArgs;
use crate::cli::build::read_config;
use crate::error::{Error, Result};

/// Runs `securebuild lock`.
pub async fn run(args: &LockArgs, out: &mut dyn Write) -> Result<()> {
    let config = read_config(&args.config)?;
    let mut options = BuildOptions {
        config_path: Some(args.config.clone()),
        allow_untrusted: args.allow_untrusted,
        ..BuildOptions::default()
    };
    if let Some(dir) = &args.cache_dir {
        options.cache_dir = dir.clone();
    }
    let resolution = build::resolve_config(&config, &options).await?;
    let packages = build::fetch_packages(&resolution, &options).await?;
    let slices: Vec<&[_]> = packages.iter().map(Vec::as_slice).collect();
    let lock = build::lock_from(&config, &options, &resolution, &slices);
    std::fs::write(&args.output, lock.to_json()).map_err(|source| Error::File {
        path: args.output.clone(),
        source,
    })?;
    let count: usize = packages.iter().map(Vec::len).sum();
    writeln!(
        out,
        "locked {count} packages for {} to {}",
        resolution
            .archs
            .iter()
            .map(|a| a.arch.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.output.display()
    )
    .map_err(Error::Output)?;
    Ok(())
}
