//! `securebuild apk version`: `--test V1 V2` prints `<`, `=` or `>`; `--check V...` names every
//! invalid version and fails if there is one.

use std::io::Write;

use crate::apk::version;
use crate::cli::ApkVersionArgs;
use crate::error::{Error, Result};

/// Runs `securebuild apk version`.
pub fn run(args: &ApkVersionArgs, out: &mut dyn Write) -> Result<()> {
    if let Some([a, b]) = args.test.as_deref() {
        writeln!(out, "{}", version::compare_display(version::compare(a, b)))
            .map_err(Error::Output)?;
        return Ok(());
    }
    let versions = args.check.as_deref().unwrap_or_default();
    let invalid: Vec<String> = versions
        .iter()
        .filter(|v| !version::is_valid(v))
        .cloned()
        .collect();
    for v in &invalid {
        writeln!(out, "{v}").map_err(Error::Output)?;
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidVersions { versions: invalid })
    }
}
