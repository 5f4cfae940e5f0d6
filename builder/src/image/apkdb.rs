//! The apk database written into the image, so that apk itself and scanners (grype, trivy,
//! syft) see the installed packages: `/usr/lib/apk/db/{installed,triggers,scripts.tar,lock}`
//! (with `/lib/apk` linked to it when nothing else provides that path) and
//! `/etc/apk/{world,repositories,arch,keys/*}`, as apko lays them out.
//!
//! The installed database is apk-tools' format: each package's index fields (in
//! `apk_pkg_write_index_header` order), then `r:` and `q:` from the package's own `.PKGINFO`
//! (as `apk_db_fdb_write` writes them; the index's `r:`, `q:` and fields apk does not know are
//! not carried over), followed by its paths: `F:dir` lines (with
//! `M:uid:gid:mode` unless root-owned 0755), and for everything else `R:name` lines (with
//! `a:uid:gid:mode` unless root-owned 0644, and `Z:Q1…` when the SHA-1 is known), directories
//! sorted with their files before their subdirectories, as apko sorts them. A path whose parent
//! directories the package does not list gets them listed, as apk-tools does, instead of being
//! dropped. Nothing here verifies packages or decides what is installed.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use securebuild_crds::image_config::Architecture;

use super::entry::{EntryKind, LayerEntry};
use super::install::InstalledPath;
use super::layer::{LayerError, LayerWriter};
use super::paths::{self, TreePathError};
use super::tree::{Content, Node, Tree};
use crate::apk::constraint::Dependency;
use crate::apk::index::{CHECKSUM_PREFIX_SHA1_BASE64, PackageRecord, write_record};

/// The installed-packages database.
pub const INSTALLED_PATH: &str = "usr/lib/apk/db/installed";
/// Package triggers: one line per package with triggers.
pub const TRIGGERS_PATH: &str = "usr/lib/apk/db/triggers";
/// Package scripts, as a tar archive.
pub const SCRIPTS_PATH: &str = "usr/lib/apk/db/scripts.tar";
/// apk's lock file (empty).
pub const LOCK_PATH: &str = "usr/lib/apk/db/lock";
/// The directory holding the database.
pub const DB_PARENT: &str = "usr/lib/apk";
/// Where apk-tools 2 looks for the database; linked to [`DB_PARENT`] when absent.
pub const LEGACY_DB_PARENT: &str = "lib/apk";
/// The packages the image was asked for.
pub const WORLD_PATH: &str = "etc/apk/world";
/// Repositories apk in the image uses.
pub const REPOSITORIES_PATH: &str = "etc/apk/repositories";
/// The image's apk architecture.
pub const ARCH_PATH: &str = "etc/apk/arch";
/// Trusted signing keys.
pub const KEYS_DIR: &str = "etc/apk/keys";
/// Cache directories apko creates.
pub const CACHE_DIRS: [&str; 2] = ["var/cache/apk", "var/cache/misc"];

/// Mode of the database and configuration files.
pub const DB_FILE_MODE: u32 = 0o644;
/// Mode of the lock file.
pub const LOCK_FILE_MODE: u32 = 0o600;
/// Mode of scripts inside `scripts.tar`.
pub const SCRIPT_MODE: u32 = 0o755;
/// Directory mode that needs no `M:` line.
pub const DEFAULT_DB_DIR_MODE: u32 = 0o755;
/// File mode that needs no `a:` line.
pub const DEFAULT_DB_FILE_MODE: u32 = 0o644;

/// Installed-database line prefix: a directory.
const LINE_DIRECTORY: &str = "F:";
/// Installed-database line prefix: a directory's owner and mode.
const LINE_DIRECTORY_ACL: &str = "M:";
/// Installed-database line prefix: a file (or symlink, …) in the last directory.
const LINE_FILE: &str = "R:";
/// Installed-database line prefix: a file's owner and mode.
const LINE_FILE_ACL: &str = "a:";
/// Installed-database line prefix: a file's checksum.
const LINE_FILE_CHECKSUM: &str = "Z:";
/// Permission bits recorded in the database.
const MODE_BITS: u32 = 0o7777;

/// The script actions apk keeps from a package's control files (`.pre-install`, …), in apk's
/// order (`apk_script_types` in apk-tools' `package.c`).
pub const SCRIPT_ACTIONS: [&str; 7] = [
    "pre-install",
    "post-install",
    "pre-deinstall",
    "post-deinstall",
    "pre-upgrade",
    "post-upgrade",
    "trigger",
];

/// A package script for `scripts.tar`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageScript {
    /// The control file name, e.g. `.post-install` (the leading dot is optional).
    pub name: String,
    /// The script's bytes.
    pub content: Vec<u8>,
}

/// One installed package as the database records it.
#[derive(Clone, Copy, Debug)]
pub struct DbPackage<'a> {
    /// The package's index record.
    pub record: &'a PackageRecord,
    /// The paths it owns.
    pub files: &'a [InstalledPath],
    /// Its install scripts.
    pub scripts: &'a [PackageScript],
    /// Its trigger paths (the `triggers` of `.PKGINFO`).
    pub triggers: &'a [String],
    /// The `replaces` of its `.PKGINFO` (`r:`).
    pub replaces: &'a [Dependency],
    /// The `replaces_priority` of its `.PKGINFO` (`q:`, written when not 0).
    pub replaces_priority: u16,
}

/// A public key for `/etc/apk/keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkKey {
    /// File name, e.g. `wolfi-signing.rsa.pub`.
    pub name: String,
    /// The PEM bytes.
    pub pem: Vec<u8>,
}

/// Everything the apk database step writes.
#[derive(Clone, Copy, Debug)]
pub struct ApkDbInput<'a> {
    /// Installed packages, in install order.
    pub packages: &'a [DbPackage<'a>],
    /// The requested packages (`contents.packages`), written sorted to `/etc/apk/world`.
    pub world: &'a [String],
    /// `contents.repositories`.
    pub repositories: &'a [String],
    /// `contents.runtime_repositories`; written after the repositories.
    pub runtime_repositories: &'a [String],
    /// The keyring.
    pub keys: &'a [ApkKey],
    /// The image architecture.
    pub arch: &'a Architecture,
}

/// Why the apk database could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ApkDbError {
    /// A key file name that is not a plain file name.
    #[error("invalid key file name {name:?}; it must be a plain file name")]
    InvalidKeyName {
        /// The name.
        name: String,
    },
    /// A script name that cannot be stored in `scripts.tar`.
    #[error("package {package} has an invalid script name {name:?}")]
    InvalidScriptName {
        /// `name-version`.
        package: String,
        /// The name.
        name: String,
    },
    /// A world constraint, repository, trigger or installed path that is empty or would break
    /// its line-based file.
    #[error("invalid {what} {value:?}: it must be non-empty and on one line")]
    InvalidLine {
        /// What the value is, e.g. `repository`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A database path could not be resolved or its parents created.
    #[error("cannot write /{path}")]
    Path {
        /// Tree path.
        path: String,
        /// Why.
        #[source]
        source: TreePathError,
    },
    /// Something other than a regular file is where a database file goes.
    #[error("cannot write /{path}: a {existing} is there")]
    Occupied {
        /// Tree path.
        path: String,
        /// What is there.
        existing: &'static str,
    },
    /// `scripts.tar` could not be encoded.
    #[error("cannot encode {SCRIPTS_PATH}")]
    Scripts(#[source] LayerError),
}

/// Writes the apk database and configuration into the tree. Created files and directories
/// are root-owned with modification time `mtime`; an existing regular file at a database path
/// keeps its mode and owner.
pub fn write_apk_database(
    tree: &mut Tree,
    input: &ApkDbInput<'_>,
    mtime: i64,
) -> Result<(), ApkDbError> {
    let installed = installed_database(input.packages)?;
    let triggers = triggers_file(input.packages)?;
    let scripts = scripts_tar(input.packages, mtime)?;
    let world = world_file(input.world)?;
    let repositories = repositories_file(input.repositories, input.runtime_repositories)?;
    for key in input.keys {
        check_key_name(&key.name)?;
    }

    for dir in [KEYS_DIR, "usr/lib/apk/db"].into_iter().chain(CACHE_DIRS) {
        make_dirs(tree, dir, mtime)?;
    }
    put_file(tree, WORLD_PATH, world.into_bytes(), DB_FILE_MODE, mtime)?;
    put_file(
        tree,
        REPOSITORIES_PATH,
        repositories.into_bytes(),
        DB_FILE_MODE,
        mtime,
    )?;
    let arch = format!("{}\n", input.arch.apk());
    put_file(tree, ARCH_PATH, arch.into_bytes(), DB_FILE_MODE, mtime)?;
    for key in input.keys {
        let path = format!("{KEYS_DIR}/{}", key.name);
        put_file(tree, &path, key.pem.clone(), DB_FILE_MODE, mtime)?;
    }
    put_file(
        tree,
        INSTALLED_PATH,
        installed.into_bytes(),
        DB_FILE_MODE,
        mtime,
    )?;
    put_file(
        tree,
        TRIGGERS_PATH,
        triggers.into_bytes(),
        DB_FILE_MODE,
        mtime,
    )?;
    put_file(tree, SCRIPTS_PATH, scripts, DB_FILE_MODE, mtime)?;
    put_file(tree, LOCK_PATH, Vec::new(), LOCK_FILE_MODE, mtime)?;
    link_legacy_location(tree, mtime)
}

/// The installed database text: each package's record and paths, followed by a blank line.
pub fn installed_database(packages: &[DbPackage<'_>]) -> Result<String, ApkDbError> {
    let mut out = String::new();
    for package in packages {
        write_record(&installed_record(package), &mut out);
        for file in package.files {
            check_line("installed path", &file.path)?;
        }
        write_paths(&database_order(package.files), &mut out);
        out.push('\n');
    }
    Ok(out)
}

/// The record as apk's installed database holds it (`apk_db_fdb_write`): the index record's
/// fields, `o:`, `m:`, `c:`, `t:` and `k:` only when not empty or 0, `r:` and `q:` (when not 0)
/// from the package's `.PKGINFO`, and no fields apk does not know.
fn installed_record(package: &DbPackage<'_>) -> PackageRecord {
    let record = package.record;
    let non_empty = |value: &Option<String>| value.clone().filter(|text| !text.is_empty());
    PackageRecord {
        origin: non_empty(&record.origin),
        maintainer: non_empty(&record.maintainer),
        commit: non_empty(&record.commit),
        build_time: record.build_time.filter(|time| *time != 0),
        provider_priority: record.provider_priority.filter(|priority| *priority != 0),
        replaces: package.replaces.to_vec(),
        replaces_priority: (package.replaces_priority != 0)
            .then_some(u64::from(package.replaces_priority)),
        other: Vec::new(),
        ..record.clone()
    }
}

/// A path as the database lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DbPath {
    path: String,
    is_dir: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    sha1: Option<[u8; 20]>,
}

/// The package's paths in database order, with missing parent directories added and
/// duplicates dropped.
fn database_order(files: &[InstalledPath]) -> Vec<DbPath> {
    let mut seen = HashSet::new();
    let mut listed: Vec<DbPath> = Vec::new();
    for file in files {
        let path = file.path.trim_matches('/').to_string();
        if path.is_empty() || !seen.insert(path.clone()) {
            continue;
        }
        listed.push(DbPath {
            path,
            is_dir: file.kind == EntryKind::Directory,
            mode: file.mode & MODE_BITS,
            uid: file.uid,
            gid: file.gid,
            sha1: file.sha1,
        });
    }
    let dirs: HashSet<String> = listed
        .iter()
        .filter(|p| p.is_dir)
        .map(|p| p.path.clone())
        .collect();
    let mut missing = BTreeSet::new();
    for entry in &listed {
        let mut parent = paths::parent(&entry.path);
        while !parent.is_empty() {
            if !dirs.contains(parent) {
                missing.insert(parent.to_string());
            }
            parent = paths::parent(parent);
        }
    }
    listed.extend(missing.into_iter().map(|path| DbPath {
        path,
        is_dir: true,
        mode: DEFAULT_DB_DIR_MODE,
        uid: 0,
        gid: 0,
        sha1: None,
    }));
    let parts: Vec<Vec<&str>> = listed.iter().map(|p| p.path.split('/').collect()).collect();
    let mut order: Vec<usize> = (0..listed.len()).collect();
    order.sort_by(|&a, &b| database_cmp(&parts[a], listed[a].is_dir, &parts[b], listed[b].is_dir));
    order.into_iter().map(|i| listed[i].clone()).collect()
}

/// apko's `pathCompare`: within a directory, non-directories first, each group by name; a
/// directory before everything below it.
fn database_cmp(a_parts: &[&str], a_is_dir: bool, b_parts: &[&str], b_is_dir: bool) -> Ordering {
    let mut n = 0;
    while n + 1 < a_parts.len() && n + 1 < b_parts.len() {
        match a_parts[n].cmp(b_parts[n]) {
            Ordering::Equal => n += 1,
            other => return other,
        }
    }
    let a_dir = n + 1 < a_parts.len() || a_is_dir;
    let b_dir = n + 1 < b_parts.len() || b_is_dir;
    match (a_dir, b_dir) {
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        _ => a_parts[n]
            .cmp(b_parts[n])
            .then(a_parts.len().cmp(&b_parts.len())),
    }
}

/// Writes `F:`/`M:`/`R:`/`a:`/`Z:` lines for paths in database order.
fn write_paths(paths_in_order: &[DbPath], out: &mut String) {
    let mut in_directory = false;
    for entry in paths_in_order {
        if entry.is_dir {
            push_line(out, LINE_DIRECTORY, &entry.path);
            push_acl(out, LINE_DIRECTORY_ACL, entry, DEFAULT_DB_DIR_MODE);
            in_directory = true;
            continue;
        }
        if !in_directory {
            push_line(out, LINE_DIRECTORY, "");
            in_directory = true;
        }
        push_line(out, LINE_FILE, paths::base_name(&entry.path));
        push_acl(out, LINE_FILE_ACL, entry, DEFAULT_DB_FILE_MODE);
        if let Some(sha1) = entry.sha1 {
            let checksum = format!("{CHECKSUM_PREFIX_SHA1_BASE64}{}", BASE64.encode(sha1));
            push_line(out, LINE_FILE_CHECKSUM, &checksum);
        }
    }
}

fn push_line(out: &mut String, prefix: &str, value: &str) {
    out.push_str(prefix);
    out.push_str(value);
    out.push('\n');
}

/// An `M:`/`a:` line (`uid:gid:mode`) unless the path is root-owned with `default_mode`.
fn push_acl(out: &mut String, prefix: &str, entry: &DbPath, default_mode: u32) {
    if entry.mode != default_mode || entry.uid != 0 || entry.gid != 0 {
        let acl = format!("{}:{}:{:04o}", entry.uid, entry.gid, entry.mode);
        push_line(out, prefix, &acl);
    }
}

fn check_line(what: &'static str, value: &str) -> Result<(), ApkDbError> {
    if value.is_empty() || value.contains(['\n', '\r']) {
        return Err(ApkDbError::InvalidLine {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// [`check_line`], and no whitespace either: the value is one word of its line.
fn check_word(what: &'static str, value: &str) -> Result<(), ApkDbError> {
    check_line(what, value)?;
    if value.contains(char::is_whitespace) {
        return Err(ApkDbError::InvalidLine {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// `/etc/apk/world`: the constraints sorted and deduplicated, one per line.
fn world_file(world: &[String]) -> Result<String, ApkDbError> {
    let mut constraints = BTreeSet::new();
    for constraint in world {
        check_word("world constraint", constraint)?;
        constraints.insert(constraint.as_str());
    }
    Ok(constraints.iter().map(|c| format!("{c}\n")).collect())
}

/// `/etc/apk/repositories`: repositories then runtime repositories, duplicates dropped.
fn repositories_file(repositories: &[String], runtime: &[String]) -> Result<String, ApkDbError> {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for repository in repositories.iter().chain(runtime) {
        check_line("repository", repository)?;
        if seen.insert(repository.as_str()) {
            out.push_str(repository);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `triggers`: `<checksum> <path> <path>…` for each package with triggers.
fn triggers_file(packages: &[DbPackage<'_>]) -> Result<String, ApkDbError> {
    let mut out = String::new();
    for package in packages {
        if package.triggers.is_empty() {
            continue;
        }
        check_line("package checksum", &package.record.checksum)?;
        out.push_str(&package.record.checksum);
        for trigger in package.triggers {
            check_word("trigger", trigger)?;
            out.push(' ');
            out.push_str(trigger);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `scripts.tar`: every package's scripts named `<name>-<version>.<checksum>.<action>`, as
/// apk-tools names them, mode 0755, root-owned, modification time `mtime`.
fn scripts_tar(packages: &[DbPackage<'_>], mtime: i64) -> Result<Vec<u8>, ApkDbError> {
    let mut writer = LayerWriter::new(Vec::new());
    for package in packages {
        let record = package.record;
        for script in package.scripts {
            let action = script.name.strip_prefix('.').unwrap_or(&script.name);
            let valid = !action.is_empty()
                && action
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid || record.checksum.contains('/') {
                return Err(ApkDbError::InvalidScriptName {
                    package: record.display_name(),
                    name: script.name.clone(),
                });
            }
            let name = format!(
                "{}-{}.{}.{action}",
                record.name, record.version, record.checksum
            );
            let entry = LayerEntry::file(name, script.content.len() as u64, SCRIPT_MODE, mtime);
            writer
                .append_file(&entry, script.content.as_slice())
                .map_err(ApkDbError::Scripts)?;
        }
    }
    writer.finish().map_err(ApkDbError::Scripts)
}

fn check_key_name(name: &str) -> Result<(), ApkDbError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\0', '\n', '\r']);
    if valid {
        Ok(())
    } else {
        Err(ApkDbError::InvalidKeyName {
            name: name.to_string(),
        })
    }
}

fn make_dirs(tree: &mut Tree, dir: &str, mtime: i64) -> Result<(), ApkDbError> {
    let path_error = |source| ApkDbError::Path {
        path: dir.to_string(),
        source,
    };
    let resolved = paths::resolve(tree, dir, true).map_err(path_error)?;
    paths::make_dirs(tree, &resolved, paths::DEFAULT_DIRECTORY_MODE, mtime).map_err(path_error)?;
    Ok(())
}

/// Writes a regular file (following symlinks), creating parents.
fn put_file(
    tree: &mut Tree,
    path: &str,
    bytes: Vec<u8>,
    mode: u32,
    mtime: i64,
) -> Result<(), ApkDbError> {
    let path_error = |source| ApkDbError::Path {
        path: path.to_string(),
        source,
    };
    let resolved = paths::resolve(tree, path, true).map_err(path_error)?;
    paths::check_storable(&resolved).map_err(path_error)?;
    paths::make_dirs(
        tree,
        paths::parent(&resolved),
        paths::DEFAULT_DIRECTORY_MODE,
        mtime,
    )
    .map_err(path_error)?;
    let size = bytes.len() as u64;
    match tree.get_mut(&resolved) {
        Some(node) if matches!(node.entry.kind, EntryKind::File { .. }) => {
            node.entry.kind = EntryKind::File { size };
            node.entry.mtime = mtime;
            node.content = Content::inline(bytes);
        }
        Some(node) if !matches!(node.entry.kind, EntryKind::Hardlink { .. }) => {
            return Err(ApkDbError::Occupied {
                path: path.to_string(),
                existing: paths::kind_name(&node.entry.kind),
            });
        }
        _ => {
            tree.insert(Node {
                entry: LayerEntry::file(resolved.as_str(), size, mode, mtime),
                content: Content::inline(bytes),
                owner: None,
            });
        }
    }
    Ok(())
}

/// Makes `/lib/apk` (or, when that is a real directory, `/lib/apk/db`) lead to the database
/// when nothing else does.
fn link_legacy_location(tree: &mut Tree, mtime: i64) -> Result<(), ApkDbError> {
    let path_error = |source| ApkDbError::Path {
        path: LEGACY_DB_PARENT.to_string(),
        source,
    };
    let resolved = paths::resolve(tree, LEGACY_DB_PARENT, true).map_err(path_error)?;
    if resolved == DB_PARENT {
        return Ok(());
    }
    let (link, target) = match tree.get(&resolved).map(|n| &n.entry.kind) {
        None => (
            paths::resolve(tree, LEGACY_DB_PARENT, false).map_err(path_error)?,
            DB_PARENT.to_string(),
        ),
        Some(EntryKind::Directory) => {
            let db = format!("{resolved}/db");
            if tree.contains(&db) {
                return Ok(());
            }
            (db, format!("{DB_PARENT}/db"))
        }
        Some(_) => return Ok(()),
    };
    if link.is_empty() || tree.contains(&link) {
        return Ok(());
    }
    paths::check_storable(&link).map_err(path_error)?;
    let link_parent = paths::parent(&link);
    paths::make_dirs(tree, link_parent, paths::DEFAULT_DIRECTORY_MODE, mtime)
        .map_err(path_error)?;
    let depth = link_parent.split('/').filter(|c| !c.is_empty()).count();
    let relative = format!("{}{target}", "../".repeat(depth));
    tree.insert(Node {
        entry: LayerEntry::symlink(link.as_str(), relative, mtime),
        content: Content::Empty,
        owner: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::index::parse_index;

    fn record(name: &str, version: &str) -> PackageRecord {
        let text = format!(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:{name}\nV:{version}\nA:x86_64\nS:100\nI:200\n\
             T:the {name} package\nU:https://example.com\nL:MIT\no:{name}\nm:Maintainer <m@example.com>\n\
             t:1700000000\nc:abc123\nD:so:libc.so.6\np:cmd:{name}={version}\nr:old-{name}\nq:1\n"
        );
        parse_index(&text).unwrap().remove(0)
    }

    fn path(path: &str, kind: EntryKind, mode: u32, sha: Option<u8>) -> InstalledPath {
        InstalledPath {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            sha1: sha.map(|b| [b; 20]),
        }
    }

    fn file(p: &str, mode: u32, sha: u8) -> InstalledPath {
        path(p, EntryKind::File { size: 1 }, mode, Some(sha))
    }

    fn dir(p: &str) -> InstalledPath {
        path(p, EntryKind::Directory, 0o755, None)
    }

    /// An input with nothing but the architecture.
    fn empty_input(arch: &Architecture) -> ApkDbInput<'_> {
        ApkDbInput {
            packages: &[],
            world: &[],
            repositories: &[],
            runtime_repositories: &[],
            keys: &[],
            arch,
        }
    }

    #[test]
    fn installed_database_format() {
        let busybox = record("busybox", "1.37.0-r0");
        let mut tmp = dir("tmp");
        tmp.mode = 0o1777;
        let mut owned = file("var/lib/app/data", 0o640, 3);
        owned.uid = 100;
        owned.gid = 101;
        let files = vec![
            dir("usr/bin"),
            file("usr/bin/busybox", 0o755, 1),
            path(
                "usr/bin/sh",
                EntryKind::Symlink {
                    target: "busybox".into(),
                },
                0o777,
                Some(2),
            ),
            dir("usr"),
            file("usr/zzz", 0o644, 4),
            dir("etc"),
            path("etc/securetty", EntryKind::File { size: 0 }, 0o644, None),
            tmp,
            file("topfile", 0o4755, 5),
            owned,
            file("usr/bin/busybox", 0o755, 1),
        ];
        let replaces = [Dependency::parse("old-busybox").unwrap()];
        let package = DbPackage {
            record: &busybox,
            files: &files,
            scripts: &[],
            triggers: &[],
            replaces: &replaces,
            replaces_priority: 1,
        };
        let text = installed_database(&[package]).unwrap();
        let z = |b: u8| BASE64.encode([b; 20]);
        let expected = format!(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:busybox\nV:1.37.0-r0\nA:x86_64\nS:100\nI:200\n\
             T:the busybox package\nU:https://example.com\nL:MIT\no:busybox\n\
             m:Maintainer <m@example.com>\nt:1700000000\nc:abc123\nD:so:libc.so.6\n\
             p:cmd:busybox=1.37.0-r0\nr:old-busybox\nq:1\n\
             F:\nR:topfile\na:0:0:4755\nZ:Q1{}\n\
             F:etc\nR:securetty\n\
             F:tmp\nM:0:0:1777\n\
             F:usr\nR:zzz\nZ:Q1{}\n\
             F:usr/bin\nR:busybox\na:0:0:0755\nZ:Q1{}\nR:sh\na:0:0:0777\nZ:Q1{}\n\
             F:var\nF:var/lib\nF:var/lib/app\nR:data\na:100:101:0640\nZ:Q1{}\n\n",
            z(5),
            z(4),
            z(1),
            z(2),
            z(3)
        );
        assert_eq!(text, expected);
        // apk can read it back: the header part is index text.
        let records = parse_index(
            &text
                .lines()
                .filter(|l| {
                    !["F:", "M:", "R:", "a:", "Z:"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(records, [busybox]);
    }

    #[test]
    fn replaces_come_from_the_package_not_the_index() {
        let check = |replaces: &[&str], priority: u16, expected: &str| {
            let mut record = record("layout", "1.0-r0");
            record.other.push(('z', "unknown".into()));
            let replaces: Vec<Dependency> = replaces
                .iter()
                .map(|atom| Dependency::parse(atom).unwrap())
                .collect();
            let package = DbPackage {
                record: &record,
                files: &[],
                scripts: &[],
                triggers: &[],
                replaces: &replaces,
                replaces_priority: priority,
            };
            let text = installed_database(&[package]).unwrap();
            let tail: Vec<&str> = text
                .lines()
                .skip_while(|line| !line.starts_with("p:"))
                .skip(1)
                .filter(|line| !line.is_empty())
                .collect();
            assert_eq!(tail.join("\n"), expected, "{text}");
        };
        // The index's `r:old-layout` and `q:1` are not the package's.
        check(&[], 0, "");
        check(&["base"], 0, "r:base");
        check(&["base<2", "!other"], 7, "r:base<2 !other\nq:7");
        check(&[], 300, "q:300");
    }

    #[test]
    fn empty_and_zero_fields_are_left_out_as_apk_does() {
        let text = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:x\nV:1-r0\nA:x86_64\nS:1\nI:2\nT:\nU:\nL:\n\
                    o:\nm:\nt:0\nc:\nk:0\n";
        let record = parse_index(text).unwrap().remove(0);
        let package = DbPackage {
            record: &record,
            files: &[],
            scripts: &[],
            triggers: &[],
            replaces: &[],
            replaces_priority: 0,
        };
        assert_eq!(
            installed_database(&[package]).unwrap(),
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:x\nV:1-r0\nA:x86_64\nS:1\nI:2\nT:\nU:\nL:\n\n"
        );
    }

    #[test]
    fn database_order_cases() {
        let check = |input: &[(&str, bool)], expected: &[&str]| {
            let files: Vec<InstalledPath> = input
                .iter()
                .map(|(p, is_dir)| {
                    if *is_dir {
                        dir(p)
                    } else {
                        path(p, EntryKind::File { size: 0 }, 0o644, None)
                    }
                })
                .collect();
            let got: Vec<String> = database_order(&files).into_iter().map(|p| p.path).collect();
            assert_eq!(got, expected, "{input:?}");
        };
        check(
            &[("b", true), ("a", false), ("b/x", false), ("a2", true)],
            &["a", "a2", "b", "b/x"],
        );
        check(
            &[
                ("usr/lib/z", true),
                ("usr/lib/a.so", false),
                ("usr/lib", true),
                ("usr", true),
            ],
            &["usr", "usr/lib", "usr/lib/a.so", "usr/lib/z"],
        );
        // Parents a package does not list are added.
        check(
            &[("opt/app/bin/run", false)],
            &["opt", "opt/app", "opt/app/bin", "opt/app/bin/run"],
        );
        // Files before subdirectories, whatever the names.
        check(
            &[("d/a", true), ("d/z", false), ("d", true)],
            &["d", "d/z", "d/a"],
        );
        check(&[("/etc/", true), ("etc", true)], &["etc"]);
    }

    #[test]
    fn writes_every_database_file() {
        let arch = Architecture::parse("aarch64").unwrap();
        let busybox = record("busybox", "1.37.0-r0");
        let files = [
            dir("usr"),
            dir("usr/bin"),
            file("usr/bin/busybox", 0o755, 1),
        ];
        let scripts = [PackageScript {
            name: ".post-install".into(),
            content: b"#!/bin/sh\nexit 0\n".to_vec(),
        }];
        let triggers = ["/usr/share/fonts/*".to_string(), "/bin".to_string()];
        let packages = [DbPackage {
            record: &busybox,
            files: &files,
            scripts: &scripts,
            triggers: &triggers,
            replaces: &[],
            replaces_priority: 0,
        }];
        let world = [
            "zlib".to_string(),
            "busybox".to_string(),
            "zlib".to_string(),
        ];
        let repositories = [
            "https://packages.wolfi.dev/os".to_string(),
            "@local /work/packages".to_string(),
        ];
        let runtime = [
            "https://packages.wolfi.dev/os".to_string(),
            "https://extra".to_string(),
        ];
        let keys = [ApkKey {
            name: "wolfi-signing.rsa.pub".into(),
            pem: b"-----BEGIN PUBLIC KEY-----\n".to_vec(),
        }];
        let input = ApkDbInput {
            packages: &packages,
            world: &world,
            repositories: &repositories,
            runtime_repositories: &runtime,
            keys: &keys,
            arch: &arch,
        };
        let mut tree = Tree::new();
        write_apk_database(&mut tree, &input, 42).unwrap();
        let read = |p: &str| {
            let node = tree.get(p).unwrap_or_else(|| panic!("{p} missing"));
            match &node.content {
                Content::Inline(bytes) => bytes.to_vec(),
                Content::Empty => Vec::new(),
                Content::Spool { .. } => unreachable!(),
            }
        };
        assert_eq!(read(WORLD_PATH), b"busybox\nzlib\n");
        assert_eq!(
            read(REPOSITORIES_PATH),
            b"https://packages.wolfi.dev/os\n@local /work/packages\nhttps://extra\n"
        );
        assert_eq!(read(ARCH_PATH), b"aarch64\n");
        assert_eq!(
            read("etc/apk/keys/wolfi-signing.rsa.pub"),
            b"-----BEGIN PUBLIC KEY-----\n"
        );
        assert_eq!(
            read(TRIGGERS_PATH),
            b"Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA= /usr/share/fonts/* /bin\n"
        );
        assert!(
            String::from_utf8(read(INSTALLED_PATH))
                .unwrap()
                .contains("R:busybox\n")
        );
        assert_eq!(read(LOCK_PATH), b"");
        assert_eq!(tree.get(LOCK_PATH).unwrap().entry.mode, 0o600);
        assert_eq!(tree.get(INSTALLED_PATH).unwrap().entry.mode, 0o644);
        assert_eq!(tree.get(INSTALLED_PATH).unwrap().entry.mtime, 42);
        for dir in [
            "var/cache/apk",
            "var/cache/misc",
            "etc/apk/keys",
            "usr/lib/apk/db",
        ] {
            assert_eq!(
                tree.get(dir).unwrap().entry.kind,
                EntryKind::Directory,
                "{dir}"
            );
        }
        assert_eq!(
            tree.get("lib/apk").unwrap().entry.kind,
            EntryKind::Symlink {
                target: "../usr/lib/apk".into()
            }
        );

        let tar_bytes = read(SCRIPTS_PATH);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let entries: Vec<(String, u32, u64, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut content).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().mtime().unwrap(),
                    content,
                )
            })
            .collect();
        assert_eq!(
            entries,
            [(
                "busybox-1.37.0-r0.Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=.post-install".to_string(),
                0o755,
                42,
                b"#!/bin/sh\nexit 0\n".to_vec()
            )]
        );
    }

    #[test]
    fn empty_database_matches_apko() {
        let arch = Architecture::parse("x86_64").unwrap();
        let mut tree = Tree::new();
        write_apk_database(&mut tree, &empty_input(&arch), 0).unwrap();
        let scripts = tree.get(SCRIPTS_PATH).unwrap();
        assert_eq!(scripts.content, Content::inline(vec![0u8; 1024]));
        assert_eq!(tree.get(INSTALLED_PATH).unwrap().content, Content::Empty);
        assert_eq!(tree.get(TRIGGERS_PATH).unwrap().content, Content::Empty);
    }

    #[test]
    fn legacy_location() {
        let check = |setup: &dyn Fn(&mut Tree), link: &str, expected: Option<&str>| {
            let mut tree = Tree::new();
            setup(&mut tree);
            let arch = Architecture::parse("x86_64").unwrap();
            write_apk_database(&mut tree, &empty_input(&arch), 0).unwrap();
            let kind = tree.get(link).map(|n| n.entry.kind.clone());
            let want = expected.map(|t| EntryKind::Symlink { target: t.into() });
            match want {
                Some(want) => assert_eq!(kind, Some(want), "{link}"),
                None => assert!(
                    !matches!(kind, Some(EntryKind::Symlink { .. })),
                    "{link}: {kind:?}"
                ),
            }
        };
        let merged = |tree: &mut Tree| {
            tree.put_file("usr/lib/placeholder", Vec::new(), 0o644, 0, 0, 0);
            tree.insert(Node {
                entry: LayerEntry::symlink("lib", "usr/lib", 0),
                content: Content::Empty,
                owner: None,
            });
        };
        check(&|_| {}, "lib/apk", Some("../usr/lib/apk"));
        check(&merged, "lib", Some("usr/lib"));
        check(&merged, "usr/lib/apk", None);
        let real_dir = |tree: &mut Tree| {
            tree.put_file("lib/apk/exec/x", Vec::new(), 0o644, 0, 0, 0);
        };
        check(&real_dir, "lib/apk/db", Some("../../usr/lib/apk/db"));
    }

    #[test]
    fn invalid_inputs() {
        let arch = Architecture::parse("x86_64").unwrap();
        let busybox = record("busybox", "1.0-r0");
        let bad_script = [PackageScript {
            name: "../evil".into(),
            content: Vec::new(),
        }];
        let packages = [DbPackage {
            record: &busybox,
            files: &[],
            scripts: &bad_script,
            triggers: &[],
            replaces: &[],
            replaces_priority: 0,
        }];
        let base = empty_input(&arch);
        let check = |input: ApkDbInput<'_>, fragment: &str| {
            let mut tree = Tree::new();
            let message = write_apk_database(&mut tree, &input, 0)
                .unwrap_err()
                .to_string();
            assert!(message.contains(fragment), "{message} lacks {fragment}");
        };
        let keys = [ApkKey {
            name: "../x.pub".into(),
            pem: Vec::new(),
        }];
        check(
            ApkDbInput {
                keys: &keys,
                ..base
            },
            "invalid key file name \"../x.pub\"",
        );
        let world = ["a b".to_string()];
        check(
            ApkDbInput {
                world: &world,
                ..base
            },
            "invalid world constraint \"a b\"",
        );
        let repos = ["https://x\nhttps://y".to_string()];
        check(
            ApkDbInput {
                repositories: &repos,
                ..base
            },
            "invalid repository",
        );
        check(
            ApkDbInput {
                packages: &packages,
                ..base
            },
            "package busybox-1.0-r0 has an invalid script name \"../evil\"",
        );
        let mut tree = Tree::new();
        tree.insert(Node {
            entry: LayerEntry::directory("etc", 0o755, 0),
            content: Content::Empty,
            owner: None,
        });
        tree.insert(Node {
            entry: LayerEntry::directory("etc/apk", 0o755, 0),
            content: Content::Empty,
            owner: None,
        });
        tree.insert(Node {
            entry: LayerEntry::directory("etc/apk/world", 0o755, 0),
            content: Content::Empty,
            owner: None,
        });
        let message = write_apk_database(&mut tree, &base, 0)
            .unwrap_err()
            .to_string();
        assert_eq!(message, "cannot write /etc/apk/world: a directory is there");
    }
}
