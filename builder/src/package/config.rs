//! The package description `securebuild package` reads: melange's `package:` block (name,
//! version, epoch, description, url, commit, copyright licenses, dependencies, options,
//! target-architecture), so that a melange file's metadata carries over unchanged.
//!
//! securebuild does not run build steps: the files come from a staged directory, so a file
//! with melange's `pipeline`, `subpackages`, `environment` or other top-level keys is refused
//! with a message saying so, instead of producing a package without the files those steps
//! would have made. Unknown keys inside `package:` are errors too, named by serde.

use std::path::Path;

use serde::Deserialize;

use super::PackagingError;
use crate::apk::constraint::Dependency;
use crate::apk::version;

/// Top-level keys of a melange file that name build steps this command does not run.
const BUILD_STEP_KEYS: &[&str] = &[
    "pipeline",
    "subpackages",
    "environment",
    "vars",
    "var-transforms",
    "data",
    "test",
    "update",
];

/// `package:` of a melange configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PackageConfig {
    /// Package name (`pkgname`).
    pub name: String,
    /// Upstream version; the package version is `<version>-r<epoch>`.
    pub version: String,
    /// Package release number.
    #[serde(default)]
    pub epoch: u64,
    /// One-line description (`pkgdesc`).
    #[serde(default)]
    pub description: String,
    /// Project URL (`url`).
    #[serde(default)]
    pub url: Option<String>,
    /// Source commit (`commit`).
    #[serde(default)]
    pub commit: Option<String>,
    /// Licenses; the package's `license` is their `license` values joined with ` AND `.
    #[serde(default)]
    pub copyright: Vec<Copyright>,
    /// Declared dependencies and provides, added to the ones found in the files.
    #[serde(default)]
    pub dependencies: Dependencies,
    /// Switches for the generated dependencies and provides.
    #[serde(default)]
    pub options: Options,
    /// Architectures this package may be built for (`all` for any); empty means any.
    #[serde(default)]
    pub target_architecture: Vec<String>,
}

/// One `copyright:` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Copyright {
    /// SPDX license expression.
    pub license: String,
    /// Paths the license covers (accepted for melange compatibility; not used).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Copyright attestation text (accepted for melange compatibility; not used).
    #[serde(default)]
    pub attestation: Option<String>,
    /// Path of the license file (accepted for melange compatibility; not used).
    #[serde(default)]
    pub license_path: Option<String>,
}

/// `dependencies:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Dependencies {
    /// Runtime dependencies (`depend`), e.g. `ca-certificates-bundle` or `so:libssl.so.3`.
    #[serde(default)]
    pub runtime: Vec<String>,
    /// Provides (`provides`), e.g. `cmd:foo=1.0-r0`.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Packages whose files this one may overwrite (`replaces`).
    #[serde(default)]
    pub replaces: Vec<String>,
    /// `provider_priority`.
    #[serde(default)]
    pub provider_priority: Option<u64>,
    /// `replaces_priority`.
    #[serde(default)]
    pub replaces_priority: Option<u64>,
}

/// `options:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// Do not generate `so:` and `cmd:` provides.
    #[serde(default)]
    pub no_provides: bool,
    /// Do not generate `so:` dependencies.
    #[serde(default)]
    pub no_depends: bool,
    /// Do not generate `cmd:` provides.
    #[serde(default)]
    pub no_commands: bool,
}

impl PackageConfig {
    /// Reads and validates a package configuration file.
    pub fn load(path: &Path) -> Result<Self, PackagingError> {
        let text = std::fs::read_to_string(path).map_err(PackagingError::file(path))?;
        Self::from_yaml(&text).map_err(|message| PackagingError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and validates a package configuration; the error says what to change.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let document: serde_norway::Value =
            serde_norway::from_str(text).map_err(|error| error.to_string())?;
        let serde_norway::Value::Mapping(top) = document else {
            return Err("expected a mapping with a `package:` key".into());
        };
        let mut package = None;
        let mut steps = Vec::new();
        let mut unknown = Vec::new();
        for (key, value) in top {
            let name = key.as_str().unwrap_or_default().to_owned();
            if name == "package" {
                package = Some(value);
            } else if BUILD_STEP_KEYS.contains(&name.as_str()) {
                steps.push(name);
            } else {
                unknown.push(name);
            }
        }
        if !steps.is_empty() {
            return Err(format!(
                "`{}` describe build steps, which securebuild does not run: build first, \
                 install the files into a directory, and pass it with --destdir; keep only \
                 `package:` here",
                steps.join("`, `")
            ));
        }
        if !unknown.is_empty() {
            return Err(format!(
                "unknown top-level key `{}`: only `package:` is read",
                unknown.join("`, `")
            ));
        }
        let package = package.ok_or("no `package:` key")?;
        let config: Self =
            serde_norway::from_value(package).map_err(|error| format!("package: {error}"))?;
        config.validate()?;
        Ok(config)
    }

    /// The package version: `<version>-r<epoch>`.
    pub fn full_version(&self) -> String {
        format!("{}-r{}", self.version, self.epoch)
    }

    /// The `license` value: every copyright license, joined with ` AND `.
    pub fn license(&self) -> String {
        let licenses: Vec<&str> = self
            .copyright
            .iter()
            .map(|c| c.license.trim())
            .filter(|l| !l.is_empty())
            .collect();
        licenses.join(" AND ")
    }

    /// Whether the package may be built for `arch`.
    pub fn allows_arch(&self, arch: &str) -> bool {
        self.target_architecture.is_empty()
            || self
                .target_architecture
                .iter()
                .any(|a| a == "all" || a == arch)
    }

    fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "package.name {:?} is not a valid apk package name (letters, digits, `+`, \
                 `-`, `.`, `_`; starting with a letter or digit)",
                self.name
            ));
        }
        if self.version.contains("-r") || !version::is_valid(&self.full_version()) {
            return Err(format!(
                "package.version {:?} is not a valid apk version (e.g. `1.2.3`, `1.2.3_rc1`); \
                 the release number goes in package.epoch",
                self.version
            ));
        }
        for (field, line) in [
            ("description", self.description.as_str()),
            ("url", self.url.as_deref().unwrap_or("")),
            ("commit", self.commit.as_deref().unwrap_or("")),
        ] {
            if line.contains(['\n', '\r']) {
                return Err(format!("package.{field} must be one line"));
            }
        }
        if self.license().contains(['\n', '\r']) {
            return Err("package.copyright licenses must be one line each".into());
        }
        let lists = [
            ("dependencies.runtime", &self.dependencies.runtime),
            ("dependencies.provides", &self.dependencies.provides),
            ("dependencies.replaces", &self.dependencies.replaces),
        ];
        for (field, atoms) in lists {
            for atom in atoms {
                if atom.split_whitespace().count() != 1 {
                    return Err(format!(
                        "package.{field}: {atom:?} must be one dependency without spaces"
                    ));
                }
                Dependency::parse(atom)
                    .map_err(|error| format!("package.{field}: {atom:?}: {error}"))?;
            }
        }
        Ok(())
    }
}

/// An apk package name: what apk-tools accepts in `P:` and the solver's world.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECUREBUILD: &str = "\
package:
  name: securebuild
  version: 0.1.0
  epoch: 2
  description: Builds images
  url: https://github.com/securebuild/securebuild
  copyright:
    - license: Apache-2.0
    - license: MIT
      paths: ['*']
  dependencies:
    runtime:
      - ca-certificates-bundle
    provides:
      - securebuild-cli=0.1.0-r2
  options:
    no-commands: true
  target-architecture: [x86_64, aarch64]
";

    #[test]
    fn reads_melange_package_block() {
        let config = PackageConfig::from_yaml(SECUREBUILD).unwrap();
        assert_eq!(config.name, "securebuild");
        assert_eq!(config.full_version(), "0.1.0-r2");
        assert_eq!(config.license(), "Apache-2.0 AND MIT");
        assert_eq!(config.dependencies.runtime, ["ca-certificates-bundle"]);
        assert!(config.options.no_commands);
        assert!(config.allows_arch("aarch64"));
        assert!(!config.allows_arch("riscv64"));
    }

    #[test]
    fn refuses_build_steps_unknown_keys_and_bad_values() {
        let cases: &[(&str, &str)] = &[
            (
                "package: {name: a, version: '1'}\npipeline:\n  - runs: make\n",
                "`pipeline` describe build steps",
            ),
            (
                "package: {name: a, version: '1'}\nfoo: 1\n",
                "unknown top-level key `foo`",
            ),
            ("name: a\n", "unknown top-level key `name`"),
            (
                "package: {name: a, version: '1', colour: red}\n",
                "unknown field `colour`",
            ),
            (
                "package: {name: -a, version: '1'}\n",
                "not a valid apk package name",
            ),
            (
                "package: {name: a, version: 1.0-r1}\n",
                "release number goes in package.epoch",
            ),
            (
                "package: {name: a, version: x.y}\n",
                "not a valid apk version",
            ),
            (
                "package: {name: a, version: '1', dependencies: {runtime: ['b c']}}\n",
                "one dependency without spaces",
            ),
            (
                "package: {name: a, version: '1', dependencies: {runtime: ['b>=']}}\n",
                "dependencies.runtime",
            ),
            ("[]\n", "expected a mapping"),
            ("{}\n", "no `package:` key"),
        ];
        for (text, expected) in cases {
            let error = PackageConfig::from_yaml(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn package_names() {
        for good in [
            "a",
            "libgcc",
            "py3-foo",
            "c++",
            "ca-certificates-bundle",
            "go-1.25",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "a:b", "a=1", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
