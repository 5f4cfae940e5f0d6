//! `securebuild resolve`: what `apk add PACKAGE...` would install into an empty root, one
//! `name-version` a line in install order (or JSON with `--json`).

use std::io::Write;

use serde::Serialize;

use crate::cli::ResolveArgs;
use crate::error::{Error, Result};
use crate::resolve::{ResolveRequest, host_arch, resolve};

#[derive(Serialize)]
struct JsonPackage<'a> {
    name: &'a str,
    version: &'a str,
    arch: &'a str,
    repository: &'a str,
    checksum: &'a str,
}

/// Runs `securebuild resolve`.
pub async fn run(args: &ResolveArgs, out: &mut dyn Write) -> Result<()> {
    let arch = args.arch.clone().unwrap_or_else(|| host_arch().to_string());
    let request = ResolveRequest {
        repositories: args.repository.clone(),
        keyring: args.keyring.clone(),
        packages: args.packages.clone(),
        archs: vec![arch],
        base_dir: None,
        allow_untrusted: args.allow_untrusted,
        cache_dir: args.cache_dir.clone(),
    };
    let resolution = resolve(&request).await?;
    let Some(arch) = resolution.archs.first() else {
        return Ok(());
    };
    if args.json {
        let packages: Vec<JsonPackage<'_>> = arch
            .packages
            .iter()
            .map(|p| JsonPackage {
                name: &p.record.name,
                version: &p.record.version,
                arch: &p.record.arch,
                repository: &arch.index_of(p).spec.original,
                checksum: &p.record.checksum,
            })
            .collect();
        let text = serde_json::to_string_pretty(&packages).unwrap_or_default();
        writeln!(out, "{text}").map_err(Error::Output)?;
    } else {
        for package in &arch.packages {
            writeln!(out, "{}-{}", package.record.name, package.record.version)
                .map_err(Error::Output)?;
        }
    }
    Ok(())
}
