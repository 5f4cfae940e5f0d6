//! Dependencies and provides found in the staged files, as melange's analysis writes them:
//!
//! - every dynamically linked program or library depends on `so:<name>` for its interpreter's
//!   file name (`so:ld-linux-x86-64.so.2`) and for each `DT_NEEDED` library with a versioned
//!   name (`so:libc.so.6`);
//! - a shared library with a `DT_SONAME` under `lib/`, `usr/lib/`, `lib64/` or `usr/lib64/`
//!   provides `so:<soname>=<version>`, the version being what follows `.so.` (or `0`);
//! - an executable (all of `r-x` for everyone) or symlink in `bin/`, `sbin/`, `usr/bin/` or
//!   `usr/sbin/` provides `cmd:<name>=<package version>`;
//! - a dependency the package itself provides is dropped.
//!
//! Every ELF program or shared library must be built for the package's architecture: a
//! package for `aarch64` holding an `x86_64` binary is refused before it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use super::PackagingError;
use super::config::Options;
use super::stage::StagedEntry;
use crate::elf::{self, ET_DYN, ET_EXEC};
use crate::image::entry::EntryKind;

/// Directories whose shared libraries provide `so:` names.
const LIBRARY_DIRS: &[&str] = &["lib", "usr/lib", "lib64", "usr/lib64"];
/// Directories whose executables provide `cmd:` names.
const COMMAND_DIRS: &[&str] = &["bin", "sbin", "usr/bin", "usr/sbin"];

/// What the files of a package need and offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generated {
    /// `so:` dependencies, sorted.
    pub depends: Vec<String>,
    /// `so:` and `cmd:` provides, sorted.
    pub provides: Vec<String>,
}

/// Scans the staged entries of a package for `arch` whose version is `full_version`.
pub fn analyze(
    staged: &[StagedEntry],
    arch: &str,
    full_version: &str,
    options: &Options,
) -> Result<Generated, PackagingError> {
    let machine = elf::machine_for_apk_arch(arch);
    let mut depends = BTreeSet::new();
    // soname → version, for provides and for dropping self-satisfied dependencies.
    let mut sonames: BTreeMap<String, String> = BTreeMap::new();
    let mut commands = BTreeSet::new();
    for staged in staged {
        let entry = &staged.entry;
        let (dir, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
        let executable = match &entry.kind {
            EntryKind::File { .. } => entry.mode & 0o555 == 0o555,
            EntryKind::Symlink { .. } => true,
            _ => false,
        };
        if executable && COMMAND_DIRS.contains(&dir) {
            commands.insert(name.to_owned());
        }
        let Some(source) = &staged.source else {
            continue;
        };
        let file = File::open(source).map_err(PackagingError::file(source))?;
        let Some(parsed) = elf::read_elf(&file).map_err(PackagingError::file(source))? else {
            continue;
        };
        if parsed.e_type != ET_EXEC && parsed.e_type != ET_DYN {
            continue;
        }
        if let Some(expected) = machine
            && parsed.machine != expected
        {
            return Err(PackagingError::ForeignBinary {
                path: Path::new(&entry.path).to_path_buf(),
                found: elf::machine_name(parsed.machine),
                arch: arch.to_owned(),
            });
        }
        if let Some(interpreter) = &parsed.interpreter {
            let base = interpreter.rsplit('/').next().unwrap_or(interpreter);
            // musl's interpreter is a link to libc itself, which is what provides it.
            depends.insert(format!("so:{}", base.replace("ld-musl", "libc.musl")));
        }
        for needed in &parsed.needed {
            if needed.contains(".so.") {
                depends.insert(format!("so:{needed}"));
            }
        }
        if parsed.e_type == ET_DYN
            && LIBRARY_DIRS.contains(&dir)
            && let Some(soname) = &parsed.soname
        {
            let version = soname.split_once(".so.").map_or("0", |(_, v)| v);
            sonames.insert(soname.clone(), version.to_owned());
        }
    }

    let mut provides = BTreeSet::new();
    if !options.no_provides {
        for (soname, version) in &sonames {
            provides.insert(format!("so:{soname}={version}"));
        }
        if !options.no_commands {
            for command in &commands {
                provides.insert(format!("cmd:{command}={full_version}"));
            }
        }
    }
    let depends = if options.no_depends {
        Vec::new()
    } else {
        depends
            .into_iter()
            .filter(|dep| {
                dep.strip_prefix("so:")
                    .is_none_or(|soname| !sonames.contains_key(soname))
            })
            .collect()
    };
    Ok(Generated {
        depends,
        provides: provides.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::entry::LayerEntry;
    use crate::resolve::host_arch;

    fn staged(path: &str, mode: u32, source: Option<&Path>) -> StagedEntry {
        StagedEntry {
            entry: LayerEntry::file(path, 1, mode, 0),
            source: source.map(Path::to_path_buf),
            sha1: None,
        }
    }

    #[test]
    fn a_real_program_depends_on_its_interpreter_and_libraries() {
        let exe = std::env::current_exe().unwrap();
        let entries = [staged("usr/bin/tool", 0o755, Some(&exe))];
        let generated = analyze(&entries, host_arch(), "1.0-r0", &Options::default()).unwrap();
        assert!(
            generated
                .depends
                .iter()
                .any(|d| d.starts_with("so:libc.so.")),
            "{generated:?}"
        );
        assert!(
            generated.depends.iter().any(|d| d.starts_with("so:ld-")),
            "{generated:?}"
        );
        assert_eq!(generated.provides, ["cmd:tool=1.0-r0"]);

        let no = Options {
            no_depends: true,
            no_provides: true,
            no_commands: false,
        };
        let generated = analyze(&entries, host_arch(), "1.0-r0", &no).unwrap();
        assert_eq!(generated, Generated::default());
    }

    #[test]
    fn a_binary_for_another_architecture_is_refused() {
        let exe = std::env::current_exe().unwrap();
        let other = if host_arch() == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let entries = [staged("usr/bin/tool", 0o755, Some(&exe))];
        let error = analyze(&entries, other, "1-r0", &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("usr/bin/tool") && error.contains(other),
            "{error}"
        );
    }

    #[test]
    fn commands_need_every_execute_bit_and_a_command_dir() {
        let entries = [
            staged("usr/bin/all", 0o755, None),
            staged("usr/bin/owner-only", 0o700, None),
            staged("usr/share/tool", 0o755, None),
            staged("sbin/init", 0o555, None),
            StagedEntry {
                entry: LayerEntry::symlink("bin/sh", "busybox", 0),
                source: None,
                sha1: None,
            },
        ];
        let generated = analyze(&entries, "x86_64", "2-r1", &Options::default()).unwrap();
        assert_eq!(
            generated.provides,
            ["cmd:all=2-r1", "cmd:init=2-r1", "cmd:sh=2-r1"]
        );
    }
}
