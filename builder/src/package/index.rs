//! `APKINDEX.tar.gz` from `.apk` files, as `apk index` and `melange index` write it: one record
//! per package built from its `.PKGINFO` (`C:` is the SHA-1 of its control member, `S:` the
//! file size), sorted by name and version so the same packages give the same bytes, in a tar
//! holding `DESCRIPTION` and `APKINDEX`, preceded by a signature member over that tar's gzip
//! member. Packages are read through the same size-capped splitter `securebuild build` uses,
//! so a truncated or malformed `.apk` is named instead of indexed.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::PackagingError;
use super::sign::{SigningKey, gzip_member};
use crate::apk::archive::{DESCRIPTION_ENTRY, INDEX_ENTRY, Limits, PkgInfo, read_package};
use crate::apk::constraint::Dependency;
use crate::apk::index::{PackageRecord, write_index};
use crate::apk::version;
use crate::image::entry::LayerEntry;
use crate::image::layer::LayerWriter;

/// The index file's name in a repository's architecture directory.
pub const INDEX_FILE: &str = "APKINDEX.tar.gz";

/// How to write an index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// The `DESCRIPTION` entry (`apk index -d`), empty for none.
    pub description: String,
    /// mtime of the index tar's entries (`SOURCE_DATE_EPOCH`).
    pub mtime: i64,
}

/// The index record of one `.apk` file.
pub fn package_record(path: &Path) -> Result<PackageRecord, PackagingError> {
    let file = File::open(path).map_err(PackagingError::file(path))?;
    let size = file.metadata().map_err(PackagingError::file(path))?.len();
    let archive = read_package(BufReader::new(file), &Limits::default()).map_err(|source| {
        PackagingError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let control = archive.control;
    record_from(&control.pkginfo, control.digests.checksum(), size).map_err(
        |(field, value, problem)| PackagingError::InvalidPkgInfo {
            path: path.to_path_buf(),
            field,
            value,
            problem,
        },
    )
}

/// A `.PKGINFO` field the index cannot hold: (field, value, problem).
type FieldProblem = (&'static str, String, String);

fn record_from(info: &PkgInfo, checksum: String, size: u64) -> Result<PackageRecord, FieldProblem> {
    if info.pkgname.is_empty() {
        return Err(("pkgname", String::new(), "missing".into()));
    }
    if !version::is_valid(&info.pkgver) {
        return Err((
            "pkgver",
            info.pkgver.clone(),
            "not a valid apk version".into(),
        ));
    }
    let atoms = |field: &'static str, list: &[String]| -> Result<Vec<Dependency>, FieldProblem> {
        list.iter()
            .map(|atom| Dependency::parse(atom).map_err(|e| (field, atom.clone(), e.to_string())))
            .collect()
    };
    Ok(PackageRecord {
        checksum,
        name: info.pkgname.clone(),
        version: info.pkgver.clone(),
        arch: info.arch.clone(),
        size,
        installed_size: info.size.unwrap_or(0),
        description: info.pkgdesc.clone(),
        url: info.url.clone(),
        license: info.license.clone(),
        origin: info.origin.clone(),
        maintainer: info.maintainer.clone(),
        build_time: info.builddate,
        commit: info.commit.clone(),
        depends: atoms("depend", &info.depend)?,
        provides: atoms("provides", &info.provides)?,
        install_if: atoms("install_if", &info.install_if)?,
        provider_priority: info.provider_priority,
        replaces: atoms("replaces", &info.replaces)?,
        replaces_priority: info.replaces_priority,
        other: Vec::new(),
        uninstallable: None,
    })
}

/// The signed `APKINDEX.tar.gz` bytes for `records`.
pub fn index_bytes(
    mut records: Vec<PackageRecord>,
    key: &SigningKey,
    options: &IndexOptions,
) -> Result<Vec<u8>, PackagingError> {
    records.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| version::compare(&a.version, &b.version))
            .then_with(|| a.arch.cmp(&b.arch))
            .then_with(|| a.checksum.cmp(&b.checksum))
    });
    let text = write_index(&records);
    let mut tar = LayerWriter::new(Vec::new());
    if !options.description.is_empty() {
        let entry = LayerEntry::file(
            DESCRIPTION_ENTRY,
            options.description.len() as u64,
            0o644,
            options.mtime,
        );
        tar.append_file(&entry, options.description.as_bytes())?;
    }
    let entry = LayerEntry::file(INDEX_ENTRY, text.len() as u64, 0o644, options.mtime);
    tar.append_file(&entry, text.as_bytes())?;
    let index = gzip_member(&tar.finish()?, "the index member")?;
    let mut bytes = key.signature_member(&index, options.mtime)?;
    bytes.extend_from_slice(&index);
    Ok(bytes)
}

/// Indexes `packages` into the signed index file `output` (written beside it, then renamed).
pub fn write_index_file(
    packages: &[PathBuf],
    output: &Path,
    key: &SigningKey,
    options: &IndexOptions,
) -> Result<usize, PackagingError> {
    let records = packages
        .iter()
        .map(|path| package_record(path))
        .collect::<Result<Vec<_>, _>>()?;
    let count = records.len();
    let bytes = index_bytes(records, key, options)?;
    super::write_file_atomically(output, |writer| writer.write_all(&bytes))?;
    Ok(count)
}

/// Re-indexes every `.apk` in a repository's architecture directory into its
/// `APKINDEX.tar.gz`; returns how many packages it lists.
pub fn write_repository_index(
    arch_dir: &Path,
    key: &SigningKey,
    options: &IndexOptions,
) -> Result<usize, PackagingError> {
    let mut packages = Vec::new();
    for entry in std::fs::read_dir(arch_dir).map_err(PackagingError::file(arch_dir))? {
        let entry = entry.map_err(PackagingError::file(arch_dir))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "apk")
            && entry
                .file_type()
                .map_err(PackagingError::file(&path))?
                .is_file()
        {
            packages.push(path);
        }
    }
    packages.sort();
    write_index_file(&packages, &arch_dir.join(INDEX_FILE), key, options)
}
