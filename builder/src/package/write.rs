//! Writes one signed `.apk` v2 package from a staged directory: the data member (the staged
//! tree as a complete tar, each regular file carrying `APK-TOOLS.checksum.SHA1`), the control
//! member (`.PKGINFO` in abuild's field order, with `datahash` over the data member) and the
//! signature member over the control member. The file appears under its final name only when
//! complete (written beside it, then renamed), so an interrupted run never leaves a truncated
//! package where an index would pick it up.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::PackagingError;
use super::config::PackageConfig;
use super::depends::{self, Generated};
use super::sign::{SigningKey, gzip_member};
use super::stage::{self, StagedEntry};
use crate::apk::archive::PKGINFO_ENTRY;
use crate::image::entry::{EntryKind, LayerEntry};
use crate::image::install::PAX_APK_CHECKSUM;
use crate::image::layer::{Compression, LayerSink, LayerWriter};
use securebuild_registry::digest::SHA256_PREFIX;

/// Deflate level of the data member (what melange and abuild use).
pub const DATA_GZIP_LEVEL: u32 = 9;

/// How to write a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageOptions {
    /// apk architecture, e.g. `x86_64`, `aarch64` or `noarch`.
    pub arch: String,
    /// `builddate` and every entry's mtime, seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub build_date: i64,
    /// Threads compressing the data member (the output does not depend on it).
    pub threads: usize,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenPackage {
    /// The `.apk` file.
    pub path: PathBuf,
    /// `pkgname`.
    pub name: String,
    /// `pkgver`.
    pub version: String,
    /// Size of the `.apk` file.
    pub size: u64,
    /// `size`: the sum of the regular files' sizes.
    pub installed_size: u64,
    /// Every `depend` atom.
    pub depends: Vec<String>,
    /// Every `provides` atom.
    pub provides: Vec<String>,
}

/// Packages `destdir` as `config` describes, signs it with `key` and writes
/// `<output>/<arch>/<name>-<version>.apk`.
pub fn write_package(
    config: &PackageConfig,
    destdir: &Path,
    key: &SigningKey,
    options: &PackageOptions,
    output: &Path,
) -> Result<WrittenPackage, PackagingError> {
    let arch = options.arch.as_str();
    if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(PackagingError::InvalidArch {
            arch: arch.to_owned(),
        });
    }
    if !config.allows_arch(arch) {
        return Err(PackagingError::ArchNotTargeted {
            package: config.name.clone(),
            arch: arch.to_owned(),
            targets: config.target_architecture.clone(),
        });
    }
    let version = config.full_version();
    let staged = stage::stage(destdir, options.build_date)?;
    let generated = depends::analyze(&staged, arch, &version, &config.options)?;
    let installed_size: u64 = staged.iter().map(StagedEntry::size).sum();

    let arch_dir = output.join(arch);
    std::fs::create_dir_all(&arch_dir).map_err(PackagingError::file(&arch_dir))?;
    let mut data = tempfile::tempfile_in(&arch_dir).map_err(PackagingError::file(&arch_dir))?;
    let datahash = write_data(&staged, &mut data, options.threads)?;

    let (depends, provides) = merged(config, &generated);
    let pkginfo = pkginfo(
        config,
        options,
        installed_size,
        &depends,
        &provides,
        &datahash,
    );
    let control = control_member(&pkginfo, options.build_date)?;
    let signature = key.signature_member(&control, options.build_date)?;

    let file_name = format!("{}-{version}.apk", config.name);
    let path = arch_dir.join(&file_name);
    let size = super::write_file_atomically(&path, |writer| {
        writer.write_all(&signature)?;
        writer.write_all(&control)?;
        data.rewind()?;
        io::copy(&mut data, writer).map(drop)
    })?;
    Ok(WrittenPackage {
        path,
        name: config.name.clone(),
        version,
        size,
        installed_size,
        depends,
        provides,
    })
}

/// Writes the data member into `out`; returns its `datahash` (hex SHA-256 of the compressed
/// bytes).
fn write_data(
    staged: &[StagedEntry],
    out: &mut File,
    threads: usize,
) -> Result<String, PackagingError> {
    let sink = LayerSink::with_threads(
        BufWriter::new(out),
        Compression::Gzip {
            level: DATA_GZIP_LEVEL,
        },
        threads,
    )?;
    let mut tar = LayerWriter::new(sink);
    for entry in staged {
        match (&entry.entry.kind, &entry.source, entry.sha1) {
            (EntryKind::File { .. }, Some(source), Some(sha1)) => {
                let records = checksum_record(sha1);
                let file = File::open(source).map_err(PackagingError::file(source))?;
                let mut reader = HashingReader {
                    inner: file,
                    hasher: Sha1::new(),
                };
                tar.append_file_with_records(&entry.entry, &records, &mut reader)
                    .map_err(|error| match error {
                        crate::image::layer::LayerError::ContentTooShort { .. }
                        | crate::image::layer::LayerError::ContentTooLong { .. } => {
                            stage::changed(source)
                        }
                        other => other.into(),
                    })?;
                let read: [u8; 20] = reader.hasher.finalize().into();
                if read != sha1 {
                    return Err(stage::changed(source));
                }
            }
            (EntryKind::Symlink { .. }, _, Some(sha1)) => {
                tar.append_file_with_records(&entry.entry, &checksum_record(sha1), io::empty())?;
            }
            _ => tar.append(&entry.entry)?,
        }
    }
    let sink = tar.finish()?;
    let (digests, mut writer) = sink.finish_into_inner()?;
    writer.flush().map_err(|source| PackagingError::Compress {
        what: "the data member",
        source,
    })?;
    Ok(digests
        .digest
        .strip_prefix(SHA256_PREFIX)
        .unwrap_or(&digests.digest)
        .to_owned())
}

/// apk's per-entry checksum PAX record.
fn checksum_record(sha1: [u8; 20]) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(PAX_APK_CHECKSUM.to_owned(), hex::encode(sha1).into_bytes())])
}

/// The declared atoms first, in their order, then the generated ones; no atom twice.
fn merged(config: &PackageConfig, generated: &Generated) -> (Vec<String>, Vec<String>) {
    let merge = |declared: &[String], found: &[String]| {
        let mut out: Vec<String> = Vec::new();
        for atom in declared.iter().chain(found) {
            if !out.contains(atom) {
                out.push(atom.clone());
            }
        }
        out
    };
    (
        merge(&config.dependencies.runtime, &generated.depends),
        merge(&config.dependencies.provides, &generated.provides),
    )
}

/// `.PKGINFO`, fields in the order abuild writes them.
fn pkginfo(
    config: &PackageConfig,
    options: &PackageOptions,
    installed_size: u64,
    depends: &[String],
    provides: &[String],
    datahash: &str,
) -> String {
    let mut lines = vec![
        "# Generated by securebuild".to_owned(),
        format!("pkgname = {}", config.name),
        format!("pkgver = {}", config.full_version()),
        format!("pkgdesc = {}", config.description),
    ];
    if let Some(url) = &config.url {
        lines.push(format!("url = {url}"));
    }
    lines.push(format!("builddate = {}", options.build_date));
    lines.push(format!("size = {installed_size}"));
    lines.push(format!("arch = {}", options.arch));
    lines.push(format!("origin = {}", config.name));
    if let Some(commit) = &config.commit {
        lines.push(format!("commit = {commit}"));
    }
    lines.push(format!("license = {}", config.license()));
    for atom in &config.dependencies.replaces {
        lines.push(format!("replaces = {atom}"));
    }
    if let Some(priority) = config.dependencies.provider_priority {
        lines.push(format!("provider_priority = {priority}"));
    }
    if let Some(priority) = config.dependencies.replaces_priority {
        lines.push(format!("replaces_priority = {priority}"));
    }
    for atom in provides {
        lines.push(format!("provides = {atom}"));
    }
    for atom in depends {
        lines.push(format!("depend = {atom}"));
    }
    lines.push(format!("datahash = {datahash}"));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The gzipped control tar holding `.PKGINFO`, without end-of-archive blocks.
fn control_member(pkginfo: &str, mtime: i64) -> Result<Vec<u8>, PackagingError> {
    let entry = LayerEntry::file(PKGINFO_ENTRY, pkginfo.len() as u64, 0o644, mtime);
    let mut tar = LayerWriter::new(Vec::new());
    tar.append_file(&entry, pkginfo.as_bytes())?;
    gzip_member(&tar.finish_without_trailer()?, "the control member")
}

/// A reader that hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hasher: Sha1,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::apk::archive::{Limits, read_index_archive, read_package};
    use crate::apk::index::parse_index;
    use crate::apk::signature::Keyring;
    use crate::package::index::{IndexOptions, write_repository_index};
    use crate::package::sign::tests::test_key;

    const CONFIG: &str = "\
package:
  name: hello
  version: 1.2.3
  epoch: 4
  description: Says hello
  url: https://example.com/hello
  commit: 0123abcd
  copyright:
    - license: Apache-2.0
  dependencies:
    runtime: [ca-certificates-bundle]
    provides: [greeter=1.2.3-r4]
";

    fn staged_tree(root: &Path) {
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("usr/bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/hello"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("etc/hello.conf"), b"greeting=hi\n").unwrap();
        std::os::unix::fs::symlink("hello", root.join("usr/bin/hi")).unwrap();
    }

    fn options() -> PackageOptions {
        PackageOptions {
            arch: "x86_64".into(),
            build_date: 1_700_000_000,
            threads: 2,
        }
    }

    #[test]
    fn package_reads_back_signed_with_checksums_and_pkginfo() {
        let tmp = tempfile::tempdir().unwrap();
        let stage_dir = tmp.path().join("stage");
        staged_tree(&stage_dir);
        let config = PackageConfig::from_yaml(CONFIG).unwrap();
        let key = test_key();
        let repo = tmp.path().join("repo");
        let written = write_package(&config, &stage_dir, &key, &options(), &repo).unwrap();
        assert_eq!(written.path, repo.join("x86_64/hello-1.2.3-r4.apk"));
        assert_eq!(written.installed_size, 21 + 12);
        assert_eq!(written.depends, ["ca-certificates-bundle"]);
        assert_eq!(
            written.provides,
            ["greeter=1.2.3-r4", "cmd:hello=1.2.3-r4", "cmd:hi=1.2.3-r4"]
        );

        let bytes = std::fs::read(&written.path).unwrap();
        assert_eq!(bytes.len() as u64, written.size);
        let mut archive = read_package(bytes.as_slice(), &Limits::default()).unwrap();
        let mut keyring = Keyring::new();
        keyring
            .add_pem(key.name(), &key.public_key_pem().unwrap())
            .unwrap();
        assert_eq!(
            keyring
                .verify_entries(&archive.signatures, &archive.control.digests)
                .unwrap(),
            key.name()
        );
        assert_eq!(archive.signatures[0].name, ".SIGN.RSA256.test.rsa.pub");
        let info = &archive.control.pkginfo;
        assert_eq!(info.pkgname, "hello");
        assert_eq!(info.pkgver, "1.2.3-r4");
        assert_eq!(info.arch, "x86_64");
        assert_eq!(info.origin.as_deref(), Some("hello"));
        assert_eq!(info.commit.as_deref(), Some("0123abcd"));
        assert_eq!(info.license, "Apache-2.0");
        assert_eq!(info.builddate, Some(1_700_000_000));
        assert_eq!(info.size, Some(33));
        assert_eq!(info.depend, ["ca-certificates-bundle"]);

        let mut data = Vec::new();
        archive.data.read_to_end(&mut data).unwrap();
        archive.data.finish().unwrap();
        let mut tar = tar::Archive::new(data.as_slice());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let header = entry.header().clone();
            assert_eq!(header.mtime().unwrap(), 1_700_000_000, "{path}");
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            let checksum = entry.pax_extensions().unwrap().and_then(|records| {
                records
                    .filter_map(Result::ok)
                    .find(|r| r.key() == Ok(PAX_APK_CHECKSUM))
                    .map(|r| r.value().unwrap().to_owned())
            });
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if header.entry_type().is_file() {
                assert_eq!(
                    checksum.as_deref(),
                    Some(hex::encode(Sha1::digest(&content)).as_str()),
                    "{path}"
                );
            } else if header.entry_type().is_symlink() {
                let target = header.link_name().unwrap().unwrap();
                let target = target.to_str().unwrap().as_bytes().to_vec();
                assert_eq!(
                    checksum.as_deref(),
                    Some(hex::encode(Sha1::digest(&target)).as_str()),
                    "{path}"
                );
            } else {
                assert_eq!(checksum, None, "{path}");
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            [
                "etc",
                "etc/hello.conf",
                "usr",
                "usr/bin",
                "usr/bin/hello",
                "usr/bin/hi"
            ]
        );
    }

    #[test]
    fn same_inputs_same_bytes_and_the_index_lists_every_package() {
        let tmp = tempfile::tempdir().unwrap();
        let stage_dir = tmp.path().join("stage");
        staged_tree(&stage_dir);
        let config = PackageConfig::from_yaml(CONFIG).unwrap();
        let key = test_key();
        let first =
            write_package(&config, &stage_dir, &key, &options(), &tmp.path().join("a")).unwrap();
        let one_thread = PackageOptions {
            threads: 1,
            ..options()
        };
        let second = write_package(
            &config,
            &stage_dir,
            &key,
            &one_thread,
            &tmp.path().join("b"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&first.path).unwrap(),
            std::fs::read(&second.path).unwrap()
        );

        let other = PackageConfig::from_yaml(
            "package: {name: aardvark, version: '0.1', copyright: [{license: MIT}]}\n",
        )
        .unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let repo = tmp.path().join("a");
        let aardvark = write_package(&other, &empty, &key, &options(), &repo).unwrap();
        let arch_dir = repo.join("x86_64");
        let index_options = IndexOptions {
            description: "test repository".into(),
            mtime: 1_700_000_000,
        };
        assert_eq!(
            write_repository_index(&arch_dir, &key, &index_options).unwrap(),
            2
        );
        let bytes = std::fs::read(arch_dir.join("APKINDEX.tar.gz")).unwrap();
        let index = read_index_archive(bytes.as_slice(), &Limits::default()).unwrap();
        let mut keyring = Keyring::new();
        keyring
            .add_pem(key.name(), &key.public_key_pem().unwrap())
            .unwrap();
        keyring
            .verify_entries(&index.signatures, &index.digests)
            .unwrap();
        assert_eq!(index.description.as_deref(), Some("test repository"));
        let records = parse_index(&index.index).unwrap();
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["aardvark", "hello"]);
        let hello = &records[1];
        let package = std::fs::read(&first.path).unwrap();
        let archive = read_package(package.as_slice(), &Limits::default()).unwrap();
        assert_eq!(hello.checksum, archive.control.digests.checksum());
        assert_eq!(hello.size, first.size);
        assert_eq!(hello.installed_size, 33);
        assert_eq!(hello.version, "1.2.3-r4");
        assert_eq!(hello.build_time, Some(1_700_000_000));
        assert_eq!(hello.origin.as_deref(), Some("hello"));
        assert_eq!(hello.commit.as_deref(), Some("0123abcd"));
        assert_eq!(
            hello
                .provides
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["greeter=1.2.3-r4", "cmd:hello=1.2.3-r4", "cmd:hi=1.2.3-r4"]
        );
        assert_eq!(records[0].size, aardvark.size);
        // Re-indexing gives the same bytes.
        write_repository_index(&arch_dir, &key, &index_options).unwrap();
        assert_eq!(
            std::fs::read(arch_dir.join("APKINDEX.tar.gz")).unwrap(),
            bytes
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let key = test_key();
        let config = PackageConfig::from_yaml(
            "package: {name: a, version: '1', target-architecture: [aarch64]}\n",
        )
        .unwrap();
        let error = write_package(&config, tmp.path(), &key, &options(), tmp.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("for aarch64 only"), "{error}");
        let bad_arch = PackageOptions {
            arch: "x86/64".into(),
            ..options()
        };
        let config = PackageConfig::from_yaml("package: {name: a, version: '1'}\n").unwrap();
        let error = write_package(&config, tmp.path(), &key, &bad_arch, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an apk architecture"), "{error}");
        // A truncated package is named, not indexed.
        let arch_dir = tmp.path().join("x86_64");
        std::fs::create_dir_all(&arch_dir).unwrap();
        std::fs::write(arch_dir.join("broken-1-r0.apk"), b"\x1f\x8b\x08").unwrap();
        let error = write_repository_index(&arch_dir, &key, &IndexOptions::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("broken-1-r0.apk"), "{error}");
        assert!(!arch_dir.join("APKINDEX.tar.gz").exists());
    }
}
