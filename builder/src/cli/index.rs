//! `securebuild index PACKAGE.apk... -o APKINDEX.tar.gz --signing-key KEY`: a signed index
//! of the given packages, as `apk index` and `melange index` write it.

use std::io::Write;

use crate::build::source_date_epoch_from_env;
use crate::cli::IndexArgs;
use crate::error::{Error, Result};
use crate::package::SigningKey;
use crate::package::index::{IndexOptions, write_index_file};

/// Runs `securebuild index`.
pub fn run(args: &IndexArgs, out: &mut dyn Write) -> Result<()> {
    let key = SigningKey::load(&args.signing_key)?;
    let options = IndexOptions {
        description: args.description.clone(),
        mtime: args
            .source_date_epoch
            .or_else(source_date_epoch_from_env)
            .unwrap_or(0),
    };
    let count = write_index_file(&args.packages, &args.output, &key, &options)?;
    writeln!(
        out,
        "indexed {count} package{} in {}, signed with {}",
        if count == 1 { "" } else { "s" },
        args.output.display(),
        key.name()
    )
    .map_err(Error::Output)?;
    Ok(())
}
