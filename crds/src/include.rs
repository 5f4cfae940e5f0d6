//! `include`: one configuration names another, which is loaded (recursively) and merged under
//! it with apko's rules (`ImageConfiguration.MergeInto` in apko's
//! `pkg/build/types/image_configuration.go`).
//!
//! The merge is pure. Loading takes a [`ConfigSource`] that reads files, so this crate still does
//! no IO: the CLI passes one over the local filesystem.

use std::path::{Path, PathBuf};

use crate::image_config::{ConfigError, ImageAccounts, ImageConfiguration, ImageEntrypoint};

/// Reads configuration files for [`load`].
pub trait ConfigSource {
    /// The file at `path`: its identity (a canonical path, used to detect cycles) and its text,
    /// or `None` when there is no file there.
    fn read(&self, path: &Path) -> std::io::Result<Option<(PathBuf, String)>>;
}

/// Errors from loading a configuration and its includes.
#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    /// A configuration file that cannot be read.
    #[error("cannot read image configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The top-level file does not exist.
    #[error("image configuration {} does not exist", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// An include that names no existing file.
    #[error(
        "{} includes `{include}`, which does not exist (looked at {}); fix the path, relative to the including file",
        from.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    IncludeNotFound {
        /// The including file.
        from: PathBuf,
        /// The include as written.
        include: String,
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A file that includes itself, directly or through others.
    #[error(
        "include cycle: {}; remove one of these includes",
        chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" includes ")
    )]
    Cycle {
        /// The files of the cycle, from the first to the one it returns to.
        chain: Vec<PathBuf>,
    },
    /// A file that does not parse.
    #[error("invalid image configuration {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
}

/// Loads the configuration at `path` and every configuration it includes, merged with apko's
/// rules; the result has no `include`. A relative include is looked up next to the including
/// file, then in each of `search` (the CLI passes the working directory, where apko looks).
pub fn load(
    path: &Path,
    search: &[PathBuf],
    source: &dyn ConfigSource,
) -> Result<ImageConfiguration, IncludeError> {
    let (id, text) = source
        .read(path)
        .map_err(|e| IncludeError::Read {
            path: path.to_path_buf(),
            source: e,
        })?
        .ok_or_else(|| IncludeError::NotFound {
            path: path.to_path_buf(),
        })?;
    load_chain(path, id, &text, search, source, &mut Vec::new())
}

fn load_chain(
    path: &Path,
    id: PathBuf,
    text: &str,
    search: &[PathBuf],
    source: &dyn ConfigSource,
    chain: &mut Vec<PathBuf>,
) -> Result<ImageConfiguration, IncludeError> {
    if let Some(start) = chain.iter().position(|seen| *seen == id) {
        let mut cycle = chain[start..].to_vec();
        cycle.push(id);
        return Err(IncludeError::Cycle { chain: cycle });
    }
    chain.push(id);
    let mut config = ImageConfiguration::from_yaml(text).map_err(|e| IncludeError::Parse {
        path: path.to_path_buf(),
        source: e,
    })?;
    if let Some(include) = config.include.take() {
        let tried = candidates(path, &include, search);
        let mut found = None;
        for candidate in &tried {
            let read = source.read(candidate).map_err(|e| IncludeError::Read {
                path: candidate.clone(),
                source: e,
            })?;
            if let Some(file) = read {
                found = Some((candidate.clone(), file));
                break;
            }
        }
        let Some((included_path, (included_id, included_text))) = found else {
            return Err(IncludeError::IncludeNotFound {
                from: path.to_path_buf(),
                include,
                tried,
            });
        };
        let included = load_chain(
            &included_path,
            included_id,
            &included_text,
            search,
            source,
            chain,
        )?;
        merge_into(included, &mut config);
    }
    chain.pop();
    Ok(config)
}

/// Where a relative include may be: next to the including file, then under each search
/// directory. An absolute include is only itself.
fn candidates(from: &Path, include: &str, search: &[PathBuf]) -> Vec<PathBuf> {
    let include = Path::new(include);
    if include.is_absolute() {
        return vec![include.to_path_buf()];
    }
    let dir = from.parent().unwrap_or_else(|| Path::new(""));
    let mut out = vec![dir.join(include)];
    for base in search {
        let candidate = base.join(include);
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// Merges `base` (the included configuration) into `target` (the including one), as apko's
/// `MergeInto`: a scalar or section of `target` wins when set; lists are `base`'s entries
/// followed by `target`'s; maps keep `target`'s values and add `base`'s other keys.
pub fn merge_into(base: ImageConfiguration, target: &mut ImageConfiguration) {
    // apko replaces the whole entrypoint only when the target's is entirely empty, so a target
    // that sets just `services` keeps the base's `type` out.
    if target
        .entrypoint
        .as_ref()
        .is_none_or(|e| *e == ImageEntrypoint::default())
    {
        target.entrypoint = base.entrypoint;
    }
    fill(&mut target.cmd, base.cmd);
    fill(&mut target.stop_signal, base.stop_signal);
    fill(&mut target.work_dir, base.work_dir);
    fill(&mut target.layering, base.layering);
    fill(&mut target.format, base.format);
    fill(&mut target.certificates, base.certificates);
    if target.archs.is_empty() {
        target.archs = base.archs;
    }
    match (&mut target.accounts, base.accounts) {
        (_, None) => {}
        (None, Some(base)) => target.accounts = Some(base),
        (Some(target), Some(base)) => merge_accounts(base, target),
    }
    for (key, value) in base.environment {
        target.environment.entry(key).or_insert(value);
    }
    target.paths = concat(base.paths, &mut target.paths);
    for (key, value) in base.annotations {
        target.annotations.entry(key).or_insert(value);
    }
    target.volumes = concat(base.volumes, &mut target.volumes);

    // Not in apko's configuration, merged the same way: the included file's values unless the
    // including file sets them.
    fill(&mut target.vcs_url, base.vcs_url);
    fill(&mut target.os_release, base.os_release);

    let (base, target) = (base.contents, &mut target.contents);
    target.keyring = concat(base.keyring, &mut target.keyring);
    target.runtime_keyring = concat(base.runtime_keyring, &mut target.runtime_keyring);
    target.build_repositories = concat(base.build_repositories, &mut target.build_repositories);
    target.runtime_repositories =
        concat(base.runtime_repositories, &mut target.runtime_repositories);
    target.repositories = concat(base.repositories, &mut target.repositories);
    target.packages = concat(base.packages, &mut target.packages);
}

fn merge_accounts(base: ImageAccounts, target: &mut ImageAccounts) {
    fill(&mut target.run_as, base.run_as);
    target.users = concat(base.users, &mut target.users);
    target.groups = concat(base.groups, &mut target.groups);
}

/// Sets `target` to `base` when `target` is unset. apko treats an empty string as unset.
fn fill<T: IsUnset>(target: &mut Option<T>, base: Option<T>) {
    if target.as_ref().is_none_or(IsUnset::is_unset)
        && let Some(base) = base
    {
        *target = Some(base);
    }
}

trait IsUnset {
    fn is_unset(&self) -> bool;
}

impl IsUnset for String {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

macro_rules! never_unset {
    ($($t:ty),*) => {$(impl IsUnset for $t { fn is_unset(&self) -> bool { false } })*};
}
never_unset!(
    crate::image_config::Layering,
    crate::image_config::LayerFormat,
    crate::image_config::ImageCertificates,
    crate::image_config::OsRelease
);

fn concat<T>(mut base: Vec<T>, target: &mut Vec<T>) -> Vec<T> {
    base.append(target);
    base
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Files in memory; the path is the identity.
    struct Files(BTreeMap<PathBuf, String>);

    impl ConfigSource for Files {
        fn read(&self, path: &Path) -> std::io::Result<Option<(PathBuf, String)>> {
            // Resolve `..` lexically, as a canonical path would.
            let mut normal = PathBuf::new();
            for part in path.components() {
                match part {
                    std::path::Component::ParentDir => {
                        normal.pop();
                    }
                    other => normal.push(other),
                }
            }
            Ok(self
                .0
                .get(&normal)
                .map(|text| (normal.clone(), text.clone())))
        }
    }

    fn files(entries: &[(&str, &str)]) -> Files {
        Files(
            entries
                .iter()
                .map(|(p, t)| (PathBuf::from(p), (*t).to_string()))
                .collect(),
        )
    }

    fn parse(text: &str) -> ImageConfiguration {
        ImageConfiguration::from_yaml(text).unwrap()
    }

    // The cases of apko's `TestMergeInto`.
    #[test]
    fn merge_follows_apkos_rules() {
        let check = |base: &str, target: &str, expected: &str| {
            let mut merged = parse(target);
            merge_into(parse(base), &mut merged);
            assert_eq!(merged, parse(expected), "{base} onto {target}");
        };
        check(
            "contents: {keyring: [foo], build_repositories: [foo], repositories: [foo], packages: [foo]}\nenvironment: {EXTRA: foo, VAR: foo}\nannotations: {org.extra: foo, org.blah: foo}\nvolumes: [volume1]\ncertificates: {additional: [{name: foo, content: bar}]}\n",
            "contents: {keyring: [bar], build_repositories: [bar], repositories: [bar], packages: [bar]}\n",
            "contents: {keyring: [foo, bar], build_repositories: [foo, bar], repositories: [foo, bar], packages: [foo, bar]}\nenvironment: {EXTRA: foo, VAR: foo}\nannotations: {org.extra: foo, org.blah: foo}\nvolumes: [volume1]\ncertificates: {additional: [{name: foo, content: bar}]}\n",
        );
        check(
            "contents: {keyring: [foo], packages: [foo]}\ncmd: foo\nstop-signal: SIGFOO\nwork-dir: /foo\naccounts: {run-as: foo, users: [{username: foo, uid: 1000, gid: 1000, homedir: /home/foo}]}\nenvironment: {EXTRA: foo, VAR: foo}\nannotations: {org.extra: foo, org.blah: foo}\n",
            "cmd: bar\nstop-signal: SIGBAR\nwork-dir: /bar\naccounts: {run-as: bar, users: [{username: bar, uid: 1001, gid: 1001, homedir: /home/bar}]}\nenvironment: {VAR: bar}\nannotations: {org.blah: bar}\n",
            "contents: {keyring: [foo], packages: [foo]}\ncmd: bar\nstop-signal: SIGBAR\nwork-dir: /bar\naccounts: {run-as: bar, users: [{username: foo, uid: 1000, gid: 1000, homedir: /home/foo}, {username: bar, uid: 1001, gid: 1001, homedir: /home/bar}]}\nenvironment: {EXTRA: foo, VAR: bar}\nannotations: {org.extra: foo, org.blah: bar}\n",
        );
        // Sections are taken whole: the target's certificates replace the base's.
        check(
            "certificates: {providers: [a]}\nlayering: {strategy: origin, budget: 3}\narchs: [x86_64]\npaths: [{path: /a, type: directory}]\ncontents: {runtime_keyring: [{name: a, content: x}]}\n",
            "certificates: {additional: [{name: b, content: y}]}\narchs: [aarch64]\npaths: [{path: /b, type: directory}]\ncontents: {runtime_keyring: [{name: b, content: y}]}\n",
            "certificates: {additional: [{name: b, content: y}]}\nlayering: {strategy: origin, budget: 3}\narchs: [aarch64]\npaths: [{path: /a, type: directory}, {path: /b, type: directory}]\ncontents: {runtime_keyring: [{name: a, content: x}, {name: b, content: y}]}\n",
        );
    }

    // apko's `TestOverlayWithAdditionalPackages`: a chain of two includes.
    #[test]
    fn chains_of_includes_merge_in_order() {
        let source = files(&[
            (
                "cfg/base.yaml",
                "contents:\n  build_repositories: [secret repository]\n  runtime_repositories: [runtime repository]\n  repositories: [repository]\n  keyring: [key]\n  packages: [package]\n",
            ),
            ("cfg/overlay.yaml", "include: base.yaml\n"),
            (
                "cfg/sub/top.yaml",
                "include: ../overlay.yaml\ncontents:\n  build_repositories: [other_secret repository]\n  runtime_repositories: [other runtime repository]\n  packages: [other_package]\n",
            ),
        ]);
        let config = load(Path::new("cfg/sub/top.yaml"), &[], &source).unwrap();
        assert_eq!(config.include, None);
        assert_eq!(
            config.contents.build_repositories,
            ["secret repository", "other_secret repository"]
        );
        assert_eq!(
            config.contents.runtime_repositories,
            ["runtime repository", "other runtime repository"]
        );
        assert_eq!(config.contents.repositories, ["repository"]);
        assert_eq!(config.contents.keyring, ["key"]);
        assert_eq!(config.contents.packages, ["package", "other_package"]);
    }

    #[test]
    fn includes_fall_back_to_the_search_directories() {
        // apko's own examples name includes relative to the directory apko runs in.
        let source = files(&[
            ("repo/examples/base.yaml", "contents: {packages: [a]}\n"),
            ("repo/examples/top.yaml", "include: examples/base.yaml\n"),
        ]);
        let config = load(
            Path::new("repo/examples/top.yaml"),
            &[PathBuf::from("repo")],
            &source,
        )
        .unwrap();
        assert_eq!(config.contents.packages, ["a"]);
        let error = load(Path::new("repo/examples/top.yaml"), &[], &source)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("repo/examples/top.yaml includes `examples/base.yaml`, which does not exist (looked at repo/examples/examples/base.yaml)"),
            "{error}"
        );
    }

    #[test]
    fn cycles_name_the_files() {
        let source = files(&[
            ("a.yaml", "include: b.yaml\n"),
            ("b.yaml", "include: c.yaml\n"),
            ("c.yaml", "include: b.yaml\n"),
            ("self.yaml", "include: self.yaml\n"),
        ]);
        let error = load(Path::new("a.yaml"), &[], &source)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "include cycle: b.yaml includes c.yaml includes b.yaml; remove one of these includes"
        );
        let error = load(Path::new("self.yaml"), &[], &source)
            .unwrap_err()
            .to_string();
        assert!(error.contains("self.yaml includes self.yaml"), "{error}");
    }

    #[test]
    fn errors_name_the_file() {
        let source = files(&[
            ("a.yaml", "include: b.yaml\n"),
            ("b.yaml", "contents: [x]\n"),
        ]);
        let error = load(Path::new("a.yaml"), &[], &source).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invalid image configuration b.yaml"),
            "{error}"
        );
        assert!(matches!(
            load(Path::new("missing.yaml"), &[], &source),
            Err(IncludeError::NotFound { .. })
        ));
    }
}
