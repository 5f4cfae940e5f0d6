//! `securebuild apk version`: `--test V1 V2` prints `<`, `=` or `>` (and, as apk, nothing but
//! an error when either version is invalid); `--check V...` names every
//! invalid version and fails if there is one.

use std::io::Write;

use crate::apk::version;
use crate::cli::ApkVersionArgs;
use crate::error::{Error, Result};

/// Runs `securebuild apk version`.
pub fn run(args: &ApkVersionArgs, out: &mut dyn Write) -> Result<()> {
    if let Some([a, b]) = args.test.as_deref() {
        // apk prints no order for an invalid version and fails.
        let invalid: Vec<String> = [a, b]
            .into_iter()
            .filter(|v| !version::is_valid(v))
            .cloned()
            .collect();
        if !invalid.is_empty() {
            return Err(Error::InvalidVersions { versions: invalid });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn test(a: &str, b: &str) -> (Result<()>, String) {
        let args = ApkVersionArgs {
            test: Some(vec![a.to_owned(), b.to_owned()]),
            check: None,
        };
        let mut out = Vec::new();
        let result = run(&args, &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn test_prints_the_order_of_valid_versions_only() {
        let (result, out) = test("1.2.3-r0", "1.2.10");
        assert!(result.is_ok());
        assert_eq!(out, "<\n");
        let (result, out) = test("v2.4", "1.0");
        assert_eq!(out, "");
        let Err(Error::InvalidVersions { versions }) = result else {
            panic!("an invalid version must fail");
        };
        assert_eq!(versions, ["v2.4"]);
    }
}
