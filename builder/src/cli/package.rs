//! `securebuild package CONFIG.yaml --destdir DIR --signing-key KEY`: packages a staged
//! directory as a signed APK in `<output>/<arch>/` and re-indexes that directory.

use std::io::Write;

use crate::build::source_date_epoch_from_env;
use crate::cli::PackageArgs;
use crate::error::{Error, Result};
use crate::package::index::IndexOptions;
use crate::package::{PackageConfig, PackageOptions, SigningKey, write_package};
use crate::package::{index, write_repository_index};

/// Runs `securebuild package`.
pub fn run(args: &PackageArgs, out: &mut dyn Write) -> Result<()> {
    let config = PackageConfig::load(&args.config)?;
    let key = SigningKey::load(&args.signing_key)?;
    let build_date = args
        .source_date_epoch
        .or_else(source_date_epoch_from_env)
        .unwrap_or(0);
    let arch = args
        .arch
        .clone()
        .unwrap_or_else(|| crate::resolve::host_arch().to_owned());
    let options = PackageOptions {
        arch: arch.clone(),
        build_date,
        threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    let written = write_package(&config, &args.destdir, &key, &options, &args.output)?;
    writeln!(
        out,
        "wrote {} ({} bytes, {} installed)",
        written.path.display(),
        written.size,
        written.installed_size
    )
    .map_err(Error::Output)?;
    for atom in &written.depends {
        writeln!(out, "  depend = {atom}").map_err(Error::Output)?;
    }
    for atom in &written.provides {
        writeln!(out, "  provides = {atom}").map_err(Error::Output)?;
    }
    if !args.no_index {
        let arch_dir = args.output.join(&arch);
        let count = write_repository_index(
            &arch_dir,
            &key,
            &IndexOptions {
                description: String::new(),
                mtime: build_date,
            },
        )?;
        writeln!(
            out,
            "indexed {count} package{} in {}",
            if count == 1 { "" } else { "s" },
            arch_dir.join(index::INDEX_FILE).display()
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}
