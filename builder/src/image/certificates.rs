//! `certificates`: CA certificates added to the image's bundles, as apko's `installCertificates`
//! (`pkg/build/certificates.go`) adds them.
//!
//! Inline certificates (`additional`) are written to
//! `/usr/local/share/ca-certificates/<name>-<sha256 of the DER>.crt`; then the inline
//! certificates, followed by the certificate files of the packages that provide one of
//! `providers` (sorted by path), are appended to every CA bundle that exists, each followed by
//! an empty line, and added to the Java truststore when it exists (see [`super::jks`]): under
//! the alias `<name>-<sha256>` for an inline certificate and `pkg-<sha256>` for a package's,
//! created at the build time. Runs after `paths` mutations, as in apko.
//!
//! Then, on every build, [`write_checksums`] writes a `sha256sum -c` file next to each CA bundle
//! and Java truststore that exists, as apko's `writeCABundleChecksums` does.

use sha2::{Digest as _, Sha256};

use securebuild_crds::image_config::ImageCertificates;

use super::entry::{EntryKind, LayerEntry};
use super::jks::{self, JksError, KeyStore, TrustedCertificateEntry};
use super::paths::{self, TreePathError};
use super::pem;
use super::tree::{Content, ContentSource, Node, Tree};

/// Where individual certificate files live (read by `update-ca-certificates`).
pub const CA_CERTS_DIR: &str = "usr/local/share/ca-certificates";

/// The CA bundles apko appends to, when they exist.
pub const CA_BUNDLE_PATHS: [&str; 3] = [
    "etc/ssl/certs/ca-certificates.crt",
    "var/lib/ecs/deps/execute-command/certs/tls-ca-bundle.pem",
    "kaniko/ssl/certs/ca-certificates.crt",
];

/// The Java truststores apko adds certificates to, when they exist.
pub const JAVA_TRUSTSTORE_PATHS: [&str; 1] = ["etc/ssl/certs/java/cacerts"];

/// The password apko reads and writes the Java truststores with (Java's default for `cacerts`).
pub const JAVA_TRUSTSTORE_PASSWORD: &str = "changeit";

/// Mode of the certificate files and of the directory created for them.
const FILE_MODE: u32 = 0o644;
const DIRECTORY_MODE: u32 = 0o755;

/// Mode of a checksum file the build creates: read-only, as apko writes it.
pub const CHECKSUM_MODE: u32 = 0o444;

/// Why certificates could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CertificatesError {
    /// An inline certificate that is not exactly one valid PEM certificate.
    #[error(
        "certificate `{name}` in certificates.additional is invalid: {problem}; paste exactly one PEM certificate"
    )]
    Invalid {
        /// The entry's name.
        name: String,
        /// What is wrong.
        problem: CertificateProblem,
    },
    /// A provider package's certificate file that cannot be read.
    #[error("cannot read certificate file /{path} of a certificate provider")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A CA bundle that cannot be read.
    #[error("cannot read CA bundle /{path}")]
    ReadBundle {
        /// The bundle.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A Java truststore that cannot be read.
    #[error("cannot read the Java truststore /{path}")]
    ReadTruststore {
        /// The truststore.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A bundle or certificate path that does not resolve inside the image.
    #[error("cannot resolve /{path} in the image")]
    Resolve {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: super::paths::TreePathError,
    },
    /// A Java truststore that is not a JKS keystore protected by `changeit` (apko fails too).
    #[error(
        "cannot load the Java truststore /{path} (a JKS keystore with the password `{JAVA_TRUSTSTORE_PASSWORD}`) to add certificates to it: {source}"
    )]
    LoadTruststore {
        /// The truststore.
        path: String,
        /// Why.
        #[source]
        source: JksError,
    },
    /// A Java truststore path that is something other than a regular file.
    #[error(
        "cannot load the Java truststore /{path} to add certificates to it: it is not a regular file"
    )]
    TruststoreNotAFile {
        /// The path.
        path: String,
    },
    /// A Java truststore that cannot be written back.
    #[error("cannot write the Java truststore /{path}: {source}")]
    WriteTruststore {
        /// The truststore.
        path: String,
        /// Why.
        #[source]
        source: JksError,
    },
    /// A CA bundle or Java truststore path holding something other than a regular file, whose
    /// checksum cannot be taken (apko fails too, on every build).
    #[error(
        "cannot take the checksum of /{path}: it is a {kind}, not a regular file; a CA bundle or Java truststore path must hold a file or nothing"
    )]
    StoreNotAFile {
        /// The path, symlinks followed.
        path: String,
        /// What is there.
        kind: &'static str,
    },
    /// A checksum file that cannot be written.
    #[error("cannot write the checksum file /{path}: {problem}")]
    WriteChecksum {
        /// The checksum file, symlinks followed.
        path: String,
        /// Why.
        problem: String,
    },
}

/// What is wrong with a certificate's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// Empty content.
    #[error("no certificate data provided")]
    Empty,
    /// No PEM block at all.
    #[error("no certificates found in PEM data")]
    NoBlock,
    /// More than one block.
    #[error("multiple certificates found; only one is allowed")]
    Multiple,
    /// A block of another type.
    #[error("expected a CERTIFICATE block, got {label}")]
    NotACertificate {
        /// The block's type.
        label: String,
    },
    /// A block with `Key: value` headers.
    #[error("PEM headers are not supported")]
    Headers,
    /// Bytes that are not a DER X.509 certificate.
    #[error("the block is not a DER-encoded X.509 certificate")]
    NotX509,
}

/// A validated certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The certificate re-encoded as PEM (text around the block dropped).
    pub pem: String,
    /// Lower-case hex SHA-256 of the DER bytes.
    pub fingerprint: String,
    /// The DER bytes.
    pub der: Vec<u8>,
}

/// Parses text holding exactly one PEM certificate, as apko's `parseCertificates`.
pub fn parse_certificate(text: &str) -> Result<Certificate, CertificateProblem> {
    if text.is_empty() {
        return Err(CertificateProblem::Empty);
    }
    let blocks = pem::decode_all(text);
    let block = match blocks.as_slice() {
        [] => return Err(CertificateProblem::NoBlock),
        [one] => one,
        [first, ..] if first.label != "CERTIFICATE" => {
            return Err(CertificateProblem::NotACertificate {
                label: first.label.clone(),
            });
        }
        _ => return Err(CertificateProblem::Multiple),
    };
    if block.label != "CERTIFICATE" {
        return Err(CertificateProblem::NotACertificate {
            label: block.label.clone(),
        });
    }
    if block.has_headers {
        return Err(CertificateProblem::Headers);
    }
    if !is_x509_certificate(&block.bytes) {
        return Err(CertificateProblem::NotX509);
    }
    Ok(Certificate {
        pem: block.encode(),
        fingerprint: hex::encode(Sha256::digest(&block.bytes)),
        der: block.bytes.clone(),
    })
}

/// A certificate provider: an installed package's `provides` and the paths it owns.
#[derive(Clone, Copy, Debug)]
pub struct ProviderPackage<'a> {
    /// The package's `provides` atoms as written (`name` or `name=version`).
    pub provides: &'a [String],
    /// Paths the package owns, with their kinds.
    pub paths: &'a [(String, EntryKind)],
}

/// Installs `certificates` into the tree (see the module documentation).
pub fn install_certificates(
    tree: &mut Tree,
    source: &dyn ContentSource,
    certificates: Option<&ImageCertificates>,
    packages: &[ProviderPackage<'_>],
    mtime: i64,
) -> Result<(), CertificatesError> {
    let Some(certificates) = certificates else {
        return Ok(());
    };
    let mut certs = Vec::new();
    if !certificates.additional.is_empty() {
        if !tree.contains(CA_CERTS_DIR) {
            tree.ensure_parents(CA_CERTS_DIR, mtime);
            tree.insert(directory(CA_CERTS_DIR, mtime));
        }
        for entry in &certificates.additional {
            let cert = parse_certificate(&entry.content).map_err(|problem| {
                CertificatesError::Invalid {
                    name: entry.name.clone(),
                    problem,
                }
            })?;
            // The name is validated (no `/`, no leading `.`) and the fingerprint is hex.
            let path = format!("{CA_CERTS_DIR}/{}-{}.crt", entry.name, cert.fingerprint);
            tree.put_file(&path, cert.pem.clone().into_bytes(), FILE_MODE, 0, 0, mtime);
            let alias = format!("{}-{}", entry.name, cert.fingerprint);
            certs.push((cert, alias));
        }
    }

    if !certificates.providers.is_empty() {
        let prefix = format!("{CA_CERTS_DIR}/");
        let mut files: Vec<&str> = packages
            .iter()
            // apko matches the `provides` strings exactly, so `custom-ca-certificates=1.0`
            // does not provide `custom-ca-certificates`.
            .filter(|p| {
                p.provides
                    .iter()
                    .any(|a| certificates.providers.contains(a))
            })
            .flat_map(|p| p.paths.iter())
            .filter(|(path, kind)| {
                *kind != EntryKind::Directory
                    && path.starts_with(&prefix)
                    && (path.ends_with(".crt") || path.ends_with(".pem"))
            })
            .map(|(path, _)| path.as_str())
            .collect();
        files.sort_unstable();
        for path in files {
            let bytes = read_file(tree, source, path)?.ok_or_else(|| CertificatesError::Read {
                path: path.to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
            // apko skips a provider's file that is not exactly one certificate, silently.
            if let Ok(cert) = parse_certificate(&String::from_utf8_lossy(&bytes)) {
                let alias = format!("pkg-{}", cert.fingerprint);
                certs.push((cert, alias));
            }
        }
    }
    if certs.is_empty() {
        return Ok(());
    }
    // Loaded before anything is changed: one that does not load fails the build, as in apko.
    let truststores = load_java_truststores(tree, source)?;

    for bundle in CA_BUNDLE_PATHS {
        let target = super::paths::resolve(tree, bundle, true).map_err(|source| {
            CertificatesError::Resolve {
                path: bundle.to_string(),
                source,
            }
        })?;
        // A missing bundle is left missing.
        let Some(mut bytes) = read_file(tree, source, &target)? else {
            continue;
        };
        for (cert, _) in &certs {
            // A newline between certificates, as update-ca-certificates writes them.
            bytes.extend_from_slice(cert.pem.as_bytes());
            bytes.push(b'\n');
        }
        replace_content(tree, &target, bytes, mtime);
    }

    // apko's entries are created at the build time (`CreationTime: builtTime`), which
    // keystore-go stores as Unix milliseconds (Go's `UnixMilli`, wrapping as Go's int64 does).
    let creation_time = mtime.wrapping_mul(1000).cast_unsigned();
    for (path, mut store) in truststores {
        for (cert, alias) in &certs {
            let entry = TrustedCertificateEntry {
                creation_time,
                certificate: jks::Certificate::x509(cert.der.clone()),
            };
            store
                .set_trusted_certificate(alias, entry)
                .map_err(|source| CertificatesError::WriteTruststore {
                    path: path.clone(),
                    source,
                })?;
        }
        let bytes = store.encode(JAVA_TRUSTSTORE_PASSWORD).map_err(|source| {
            CertificatesError::WriteTruststore {
                path: path.clone(),
                source,
            }
        })?;
        replace_content(tree, &path, bytes, mtime);
    }
    Ok(())
}

/// The checksum file of a CA bundle or Java truststore path, as apko's
/// `caBundleChecksumSidecar` names it: `etc/ssl/certs/ca-certificates.crt` has
/// `etc/ssl/certs/.ca-certificates.crt.sha256`.
pub fn checksum_path(store: &str) -> String {
    match paths::parent(store) {
        "" => format!(".{}.sha256", paths::base_name(store)),
        dir => format!("{dir}/.{}.sha256", paths::base_name(store)),
    }
}

/// Writes the checksum file of every CA bundle and Java truststore that exists, in the order of
/// [`CA_BUNDLE_PATHS`] then [`JAVA_TRUSTSTORE_PATHS`], as apko's `writeCABundleChecksums`
/// writes them: one `sha256sum -c` line, `<sha256 hex>  <base name of the path>\n`, so
/// `cd /etc/ssl/certs && sha256sum -c .ca-certificates.crt.sha256` checks the bundle.
///
/// apko runs this on every build, right after the certificates are installed, whether or not
/// `certificates` is configured, so every image that ships a bundle or truststore gets one; the
/// caller does the same. The sum is of the bytes as they are then (certificates appended); the
/// truststore's is of the whole JKS file, which is not parsed here. A new checksum file is
/// root-owned, mode [`CHECKSUM_MODE`], with modification time `mtime`. A path with nothing
/// there (or a symlink to nothing) gets no checksum file.
pub fn write_checksums(
    tree: &mut Tree,
    source: &dyn ContentSource,
    mtime: i64,
) -> Result<(), CertificatesError> {
    for store in CA_BUNDLE_PATHS.iter().chain(&JAVA_TRUSTSTORE_PATHS) {
        // One path after the other, as apko does: a checksum file written through a symlink
        // onto a later path is what that path's sum sees.
        let Some(bytes) = read_store(tree, source, store)? else {
            continue;
        };
        // Named after the path as configured: a bundle behind a symlink is summed where it
        // lives, under the symlink's name, and its checksum file lies next to the symlink.
        let line = format!(
            "{}  {}\n",
            hex::encode(Sha256::digest(&bytes)),
            paths::base_name(store)
        );
        write_checksum(tree, &checksum_path(store), line.into_bytes(), mtime)?;
    }
    Ok(())
}

/// The bytes of a CA bundle or truststore, through symlinks and hard links, as apko's
/// `ReadFile` finds them; `None` when there is nothing there.
fn read_store(
    tree: &Tree,
    source: &dyn ContentSource,
    path: &str,
) -> Result<Option<Vec<u8>>, CertificatesError> {
    let target = match paths::resolve(tree, path, true) {
        Ok(target) => target,
        // apko finds nothing under a component that is a file, and moves on.
        Err(TreePathError::NotADirectory { .. }) => return Ok(None),
        Err(source) => {
            return Err(CertificatesError::Resolve {
                path: path.to_string(),
                source,
            });
        }
    };
    // Surprising, but apko's: a directory where a bundle would be (or a symlink to one, the
    // root included) fails every build, `certificates` configured or not ("is a directory").
    // Devices and FIFOs fail too; apko's filesystem never has one there at this point.
    if target.is_empty() {
        return Err(CertificatesError::StoreNotAFile {
            path: target,
            kind: "directory",
        });
    }
    let Some(node) = tree.get(&target) else {
        return Ok(None);
    };
    let Some(file) = tree.file_node(&target).map(|n| n.entry.path.clone()) else {
        return Err(CertificatesError::StoreNotAFile {
            path: target,
            kind: paths::kind_name(&node.entry.kind),
        });
    };
    let read = tree.read(&file, source);
    let bytes = if JAVA_TRUSTSTORE_PATHS.contains(&path) {
        read.map_err(|e| CertificatesError::ReadTruststore {
            path: file.clone(),
            source: e,
        })?
    } else {
        read.map_err(|e| CertificatesError::ReadBundle {
            path: file.clone(),
            source: e,
        })?
    };
    Ok(Some(bytes.unwrap_or_default()))
}

/// Writes a checksum file as apko's `WriteFile` and `Chtimes` do: through a symlink at `path`
/// (creating the file it names when that is missing), and into an existing file keeping its
/// mode and owner (surprising, but apko's: an existing checksum file, a package's or one
/// `paths` made, stays as writable as it was; only a new one is read-only).
fn write_checksum(
    tree: &mut Tree,
    path: &str,
    bytes: Vec<u8>,
    mtime: i64,
) -> Result<(), CertificatesError> {
    let resolve_error = |source| CertificatesError::Resolve {
        path: path.to_string(),
        source,
    };
    let target = paths::resolve(tree, path, true).map_err(resolve_error)?;
    if let Some(node) = tree.get(&target) {
        if tree.file_node(&target).is_none() {
            return Err(CertificatesError::WriteChecksum {
                path: target,
                problem: format!(
                    "a {} is there, not a regular file",
                    paths::kind_name(&node.entry.kind)
                ),
            });
        }
        replace_content(tree, &target, bytes, mtime);
        return Ok(());
    }
    paths::check_storable(&target).map_err(resolve_error)?;
    // A store's own directory exists; only a symlink at `path` can name a missing one.
    let dir = paths::parent(&target);
    if !dir.is_empty()
        && !matches!(
            tree.get(dir).map(|n| &n.entry.kind),
            Some(EntryKind::Directory)
        )
    {
        return Err(CertificatesError::WriteChecksum {
            path: target.clone(),
            problem: format!("its directory /{dir} does not exist"),
        });
    }
    tree.put_file(&target, bytes, CHECKSUM_MODE, 0, 0, mtime);
    Ok(())
}

/// The Java truststores that exist, by the path of the file they live in (symlinks followed),
/// read as apko's `loadJavaTruststores` reads them.
fn load_java_truststores(
    tree: &Tree,
    source: &dyn ContentSource,
) -> Result<Vec<(String, KeyStore)>, CertificatesError> {
    let mut truststores = Vec::new();
    for path in JAVA_TRUSTSTORE_PATHS {
        let target = super::paths::resolve(tree, path, true).map_err(|source| {
            CertificatesError::Resolve {
                path: path.to_string(),
                source,
            }
        })?;
        // A missing truststore (or a symlink to nothing) is left alone.
        if !tree.contains(&target) {
            continue;
        }
        let Some(file) = tree.file_node(&target).map(|n| n.entry.path.clone()) else {
            return Err(CertificatesError::TruststoreNotAFile { path: target });
        };
        let bytes = tree
            .read(&file, source)
            .map_err(|e| CertificatesError::ReadTruststore {
                path: file.clone(),
                source: e,
            })?
            .unwrap_or_default();
        let store = KeyStore::decode(&bytes, JAVA_TRUSTSTORE_PASSWORD).map_err(|source| {
            CertificatesError::LoadTruststore {
                path: target.clone(),
                source,
            }
        })?;
        truststores.push((file, store));
    }
    Ok(truststores)
}

/// Gives the regular file at `path` (through a hard link) new content and mtime, keeping its
/// mode, owner and the package that installed it.
fn replace_content(tree: &mut Tree, path: &str, bytes: Vec<u8>, mtime: i64) {
    let Some(file) = tree.file_node(path).map(|n| n.entry.path.clone()) else {
        return;
    };
    if let Some(node) = tree.get_mut(&file) {
        node.entry.kind = EntryKind::File {
            size: bytes.len() as u64,
        };
        node.entry.mtime = mtime;
        node.content = Content::inline(bytes);
    }
}

/// A regular file's bytes, through symlinks and hard links; `None` when there is none.
fn read_file(
    tree: &Tree,
    source: &dyn ContentSource,
    path: &str,
) -> Result<Option<Vec<u8>>, CertificatesError> {
    let resolved =
        super::paths::resolve(tree, path, true).map_err(|e| CertificatesError::Resolve {
            path: path.to_string(),
            source: e,
        })?;
    let Some(node) = tree.file_node(&resolved) else {
        return Ok(None);
    };
    let target = node.entry.path.clone();
    tree.read(&target, source)
        .map_err(|e| CertificatesError::ReadBundle {
            path: target.clone(),
            source: e,
        })
}

fn directory(path: &str, mtime: i64) -> Node {
    Node {
        entry: LayerEntry::directory(path, DIRECTORY_MODE, mtime),
        content: Content::Empty,
        owner: None,
    }
}

/// Whether `der` is one DER `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { … },
/// signatureAlgorithm SEQUENCE, signatureValue BIT STRING }` whose `tbsCertificate` has the
/// serial number, algorithm, issuer, validity, subject and key fields of RFC 5280, in order.
fn is_x509_certificate(der: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const VERSION: u8 = 0xa0;
    let Some((SEQUENCE, body, [])) = tlv(der) else {
        return false;
    };
    let Some((SEQUENCE, tbs, rest)) = tlv(body) else {
        return false;
    };
    let Some((SEQUENCE, _, rest)) = tlv(rest) else {
        return false;
    };
    let Some((BIT_STRING, _, [])) = tlv(rest) else {
        return false;
    };
    let mut fields = tbs;
    if let Some((VERSION, _, rest)) = tlv(fields) {
        fields = rest;
    }
    let Some((INTEGER, _, mut fields)) = tlv(fields) else {
        return false;
    };
    // signature, issuer, validity, subject, subjectPublicKeyInfo
    for _ in 0..5 {
        match tlv(fields) {
            Some((SEQUENCE, _, rest)) => fields = rest,
            _ => return false,
        }
    }
    true
}

/// One DER tag-length-value: (tag, value, what follows). Only definite lengths.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use securebuild_crds::image_config::AdditionalCertificate;

    use super::*;
    use crate::image::tree::NoSpools;

    /// A self-signed test root (`testdata/test-root-1.pem`) and its fingerprint, the SHA-256 of
    /// its DER as `openssl x509 -outform DER | sha256sum` prints it.
    const CERT_1: &str = include_str!("testdata/test-root-1.pem");
    const CERT_1_FINGERPRINT: &str =
        "b533734285f50a1a9da7149f6afcfccd880a99f3c097e8fc4489af719dbffc69";
    /// A second self-signed test root and its fingerprint.
    const CERT_2: &str = include_str!("testdata/test-root-2.pem");
    const CERT_2_FINGERPRINT: &str =
        "5f22a7da8c99affe618dd129302326cb5c96ef781b7cfc52f54b6ec1193ca4af";

    // The cases of apko's `TestParseCertificates`.
    #[test]
    fn parsing_follows_apko() {
        let cert = parse_certificate(CERT_1).unwrap();
        assert_eq!(cert.fingerprint, CERT_1_FINGERPRINT);
        assert_eq!(cert.pem, CERT_1);
        let cert = parse_certificate(&format!("extra text\n{CERT_1}")).unwrap();
        assert_eq!(cert.pem, CERT_1, "text around the block is dropped");
        assert_eq!(
            parse_certificate(&format!("{CERT_1}\n{CERT_2}")),
            Err(CertificateProblem::Multiple)
        );
        assert_eq!(parse_certificate(""), Err(CertificateProblem::Empty));
        assert_eq!(
            parse_certificate("not a certificate"),
            Err(CertificateProblem::NoBlock)
        );
        let key = pem::encode("PUBLIC KEY", b"x");
        assert!(matches!(
            parse_certificate(&key),
            Err(CertificateProblem::NotACertificate { .. })
        ));
        let garbage = pem::encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        assert_eq!(
            parse_certificate(&garbage),
            Err(CertificateProblem::NotX509)
        );
    }

    fn additional(entries: &[(&str, &str)]) -> ImageCertificates {
        ImageCertificates {
            additional: entries
                .iter()
                .map(|(name, content)| AdditionalCertificate {
                    name: (*name).to_string(),
                    content: (*content).to_string(),
                })
                .collect(),
            providers: Vec::new(),
        }
    }

    fn text(tree: &Tree, path: &str) -> String {
        String::from_utf8(tree.read(path, &NoSpools).unwrap().unwrap()).unwrap()
    }

    // The inline cases of apko's `TestInstallCertificates`.
    #[test]
    fn inline_certificates_follow_apko() {
        let file_1 = format!("{CA_CERTS_DIR}/test-cert-1-{CERT_1_FINGERPRINT}.crt");
        let file_2 = format!("{CA_CERTS_DIR}/test-cert-2-{CERT_2_FINGERPRINT}.crt");

        // No bundle: only the individual file.
        let mut tree = Tree::new();
        let config = additional(&[("test-cert-1", CERT_1)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 9).unwrap();
        assert_eq!(text(&tree, &file_1), CERT_1);
        assert_eq!(tree.get(&file_1).unwrap().entry.mode, 0o644);
        assert_eq!(tree.get(CA_CERTS_DIR).unwrap().entry.mode, 0o755);
        assert!(!tree.contains(CA_BUNDLE_PATHS[0]));

        // Two bundles, two certificates, in order, each followed by an empty line.
        let mut tree = Tree::new();
        tree.put_file(
            CA_BUNDLE_PATHS[0],
            b"# Existing CA Bundle\n".to_vec(),
            0o644,
            0,
            0,
            1,
        );
        tree.put_file(
            CA_BUNDLE_PATHS[1],
            b"# Another CA Bundle\n".to_vec(),
            0o600,
            0,
            0,
            1,
        );
        let config = additional(&[("test-cert-1", CERT_1), ("test-cert-2", CERT_2)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 9).unwrap();
        assert_eq!(
            text(&tree, CA_BUNDLE_PATHS[0]),
            format!("# Existing CA Bundle\n{CERT_1}\n{CERT_2}\n")
        );
        assert_eq!(
            text(&tree, CA_BUNDLE_PATHS[1]),
            format!("# Another CA Bundle\n{CERT_1}\n{CERT_2}\n")
        );
        let bundle = &tree.get(CA_BUNDLE_PATHS[1]).unwrap().entry;
        assert_eq!((bundle.mode, bundle.mtime), (0o600, 9));
        assert_eq!(text(&tree, &file_1), CERT_1);
        assert_eq!(text(&tree, &file_2), CERT_2);

        // The same name twice: two files, told apart by their fingerprints.
        let mut tree = Tree::new();
        let config = additional(&[("test-cert", CERT_1), ("test-cert", CERT_2)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 9).unwrap();
        assert!(tree.contains(&format!(
            "{CA_CERTS_DIR}/test-cert-{CERT_1_FINGERPRINT}.crt"
        )));
        assert!(tree.contains(&format!(
            "{CA_CERTS_DIR}/test-cert-{CERT_2_FINGERPRINT}.crt"
        )));

        // A bundle behind a symlink is appended to where it lives.
        let mut tree = Tree::new();
        tree.put_file("etc/ssl/cert.pem", b"".to_vec(), 0o644, 0, 0, 1);
        tree.ensure_parents(CA_BUNDLE_PATHS[0], 1);
        tree.insert(Node {
            entry: LayerEntry::symlink(CA_BUNDLE_PATHS[0], "../cert.pem", 1),
            content: Content::Empty,
            owner: None,
        });
        let config = additional(&[("a", CERT_1)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 9).unwrap();
        assert_eq!(text(&tree, "etc/ssl/cert.pem"), format!("{CERT_1}\n"));

        // Invalid content names the entry.
        let error = install_certificates(
            &mut Tree::new(),
            &NoSpools,
            Some(&additional(&[("bad", "not a certificate")])),
            &[],
            9,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("certificate `bad`"), "{error}");
    }

    const TRUSTSTORE: &str = JAVA_TRUSTSTORE_PATHS[0];

    /// apko's test helper `createTruststore`: trusted certificates by alias, created at
    /// `epoch` seconds, written in alias order.
    fn truststore(epoch: i64, certs: &[(&str, &str)]) -> Vec<u8> {
        let mut store = KeyStore::new();
        for (alias, text) in certs {
            let cert = parse_certificate(text).unwrap();
            let entry = TrustedCertificateEntry {
                creation_time: (epoch * 1000) as u64,
                certificate: jks::Certificate::x509(cert.der),
            };
            store.set_trusted_certificate(alias, entry).unwrap();
        }
        store.encode(JAVA_TRUSTSTORE_PASSWORD).unwrap()
    }

    fn bytes(tree: &Tree, path: &str) -> Vec<u8> {
        tree.read(path, &NoSpools).unwrap().unwrap()
    }

    // The truststore cases of apko's `TestInstallCertificates` (its epoch is 1337).
    #[test]
    fn java_truststore_follows_apko() {
        let existing = truststore(1337, &[("existing", CERT_2)]);
        let alias_1 = format!("test-cert-{CERT_1_FINGERPRINT}");

        // "inline certificate with existing Java truststore"
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], b"# B\n".to_vec(), 0o644, 0, 0, 1);
        tree.put_file(TRUSTSTORE, existing.clone(), 0o644, 0, 0, 1);
        let config = additional(&[("test-cert", CERT_1)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 1337).unwrap();
        assert_eq!(
            bytes(&tree, TRUSTSTORE),
            truststore(1337, &[("existing", CERT_2), (&alias_1, CERT_1)])
        );
        assert_eq!(text(&tree, CA_BUNDLE_PATHS[0]), format!("# B\n{CERT_1}\n"));

        // "multiple inline certificates with existing Java truststore"
        let mut tree = Tree::new();
        tree.put_file(TRUSTSTORE, existing.clone(), 0o644, 0, 0, 1);
        let config = additional(&[("test-cert-1", CERT_1), ("test-cert-2", CERT_2)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 1337).unwrap();
        assert_eq!(
            bytes(&tree, TRUSTSTORE),
            truststore(
                1337,
                &[
                    ("existing", CERT_2),
                    (&format!("test-cert-1-{CERT_1_FINGERPRINT}"), CERT_1),
                    (&format!("test-cert-2-{CERT_2_FINGERPRINT}"), CERT_2),
                ]
            )
        );

        // "inline and package certs both appended to bundle and truststore": a package's
        // certificate is `pkg-<sha256>`.
        let mut tree = Tree::new();
        tree.put_file(TRUSTSTORE, existing.clone(), 0o644, 0, 0, 1);
        let cert_file = format!("{CA_CERTS_DIR}/cert.crt");
        tree.put_file(&cert_file, CERT_2.as_bytes().to_vec(), 0o644, 0, 0, 1);
        let paths = vec![(cert_file, EntryKind::File { size: 0 })];
        let provides = vec!["custom-ca-certificates".to_string()];
        let packages = [ProviderPackage {
            provides: &provides,
            paths: &paths,
        }];
        let mut config = additional(&[("inline-cert", CERT_1)]);
        config.providers = provides.clone();
        install_certificates(&mut tree, &NoSpools, Some(&config), &packages, 1337).unwrap();
        assert_eq!(
            bytes(&tree, TRUSTSTORE),
            truststore(
                1337,
                &[
                    ("existing", CERT_2),
                    (&format!("inline-cert-{CERT_1_FINGERPRINT}"), CERT_1),
                    (&format!("pkg-{CERT_2_FINGERPRINT}"), CERT_2),
                ]
            )
        );
    }

    #[test]
    fn java_truststore_keeps_what_it_has() {
        // A private key entry, an alias with capitals (keystore-go keeps a loaded alias as it
        // is) and an entry the new certificate replaces.
        let private_key = jks::Entry::PrivateKey(jks::PrivateKeyEntry {
            creation_time: 42,
            protected_key: vec![1, 2, 3],
            chain: vec![jks::Certificate::x509(
                parse_certificate(CERT_2).unwrap().der,
            )],
        });
        let old = jks::Entry::TrustedCertificate(TrustedCertificateEntry {
            creation_time: 7,
            certificate: jks::Certificate::x509(parse_certificate(CERT_2).unwrap().der),
        });
        let alias = format!("new-{CERT_1_FINGERPRINT}");
        let mut store = KeyStore::new();
        store.insert("server", private_key.clone());
        store.insert("Old-Root", old.clone());
        store.insert(alias.clone(), old.clone());
        let mut tree = Tree::new();
        tree.put_file(
            TRUSTSTORE,
            store.encode(JAVA_TRUSTSTORE_PASSWORD).unwrap(),
            0o640,
            0,
            999,
            1,
        );
        // The configured name's capitals are lowered in the alias (keystore-go's
        // `SetTrustedCertificateEntry`); the file name keeps them.
        let config = additional(&[("NEW", CERT_1)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 1_700_000_000).unwrap();
        let node = tree.get(TRUSTSTORE).unwrap();
        assert_eq!(
            (node.entry.mode, node.entry.gid, node.entry.mtime),
            (0o640, 999, 1_700_000_000)
        );
        assert!(tree.contains(&format!("{CA_CERTS_DIR}/NEW-{CERT_1_FINGERPRINT}.crt")));
        let written = bytes(&tree, TRUSTSTORE);
        let loaded = KeyStore::decode(&written, JAVA_TRUSTSTORE_PASSWORD).unwrap();
        assert_eq!(
            loaded.entries().map(|(a, _)| a).collect::<Vec<_>>(),
            [b"Old-Root".as_slice(), alias.as_bytes(), b"server"]
        );
        assert_eq!(loaded.get(b"server"), Some(&private_key));
        assert_eq!(loaded.get(b"Old-Root"), Some(&old));
        assert_eq!(
            loaded.get(alias.as_bytes()),
            Some(&jks::Entry::TrustedCertificate(TrustedCertificateEntry {
                creation_time: 1_700_000_000_000,
                certificate: jks::Certificate::x509(parse_certificate(CERT_1).unwrap().der),
            }))
        );

        // The same configuration again changes nothing: deterministic.
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 1_700_000_000).unwrap();
        assert_eq!(bytes(&tree, TRUSTSTORE), written);
    }

    #[test]
    fn java_truststore_edge_cases() {
        let one = additional(&[("a", CERT_1)]);
        let alias = format!("a-{CERT_1_FINGERPRINT}");

        // Behind a symlink: written where it lives.
        let mut tree = Tree::new();
        tree.put_file("usr/lib/jvm/cacerts", truststore(1, &[]), 0o644, 0, 0, 1);
        tree.ensure_parents(TRUSTSTORE, 1);
        tree.insert(Node {
            entry: LayerEntry::symlink(TRUSTSTORE, "../../../../usr/lib/jvm/cacerts", 1),
            content: Content::Empty,
            owner: None,
        });
        install_certificates(&mut tree, &NoSpools, Some(&one), &[], 9).unwrap();
        assert_eq!(
            bytes(&tree, "usr/lib/jvm/cacerts"),
            truststore(9, &[(&alias, CERT_1)])
        );
        assert!(matches!(
            tree.get(TRUSTSTORE).unwrap().entry.kind,
            EntryKind::Symlink { .. }
        ));

        // Nothing to add: not read, not rewritten.
        let mut tree = Tree::new();
        tree.put_file(TRUSTSTORE, b"garbage".to_vec(), 0o644, 0, 0, 1);
        install_certificates(&mut tree, &NoSpools, Some(&additional(&[])), &[], 9).unwrap();
        assert_eq!(bytes(&tree, TRUSTSTORE), b"garbage");

        // One that does not load fails the build, naming the file, before anything changes.
        for (content, problem) in [
            (b"garbage".to_vec(), "not a JKS keystore"),
            (b"".to_vec(), "truncated"),
            (truststore(1, &[("x", CERT_2)])[..40].to_vec(), "truncated"),
            (
                {
                    let mut store = KeyStore::new();
                    store.insert(
                        "x",
                        jks::Entry::PrivateKey(jks::PrivateKeyEntry {
                            creation_time: 0,
                            protected_key: vec![1],
                            chain: Vec::new(),
                        }),
                    );
                    store.encode("another password").unwrap()
                },
                "integrity digest does not match",
            ),
        ] {
            let mut tree = Tree::new();
            tree.put_file(CA_BUNDLE_PATHS[0], b"# B\n".to_vec(), 0o644, 0, 0, 1);
            tree.put_file(TRUSTSTORE, content.clone(), 0o644, 0, 0, 1);
            let error = install_certificates(&mut tree, &NoSpools, Some(&one), &[], 9)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("cannot load the Java truststore /{TRUSTSTORE} ")),
                "{error}"
            );
            assert!(error.contains(problem), "{error}");
            assert_eq!(bytes(&tree, TRUSTSTORE), content);
            assert_eq!(text(&tree, CA_BUNDLE_PATHS[0]), "# B\n");
        }

        // A directory where the truststore would be.
        let mut tree = Tree::new();
        tree.ensure_parents(TRUSTSTORE, 1);
        tree.insert(directory(TRUSTSTORE, 1));
        assert!(matches!(
            install_certificates(&mut tree, &NoSpools, Some(&one), &[], 9),
            Err(CertificatesError::TruststoreNotAFile { .. })
        ));
    }

    // The package cases of apko's `TestInstallCertificates`.
    #[test]
    fn provider_certificates_follow_apko() {
        let providers = ImageCertificates {
            additional: vec![AdditionalCertificate {
                name: "inline-cert".into(),
                content: CERT_2.into(),
            }],
            providers: vec!["custom-ca-certificates".into()],
        };
        let mut tree = Tree::new();
        tree.put_file(
            CA_BUNDLE_PATHS[0],
            b"# Existing Bundle\n".to_vec(),
            0o644,
            0,
            0,
            1,
        );
        let dir = |p: &str| (p.to_string(), EntryKind::Directory);
        let file = |p: &str, t: &mut Tree, content: &str| {
            t.put_file(p, content.as_bytes().to_vec(), 0o644, 0, 0, 1);
            (p.to_string(), EntryKind::File { size: 0 })
        };
        let provider_paths = vec![
            dir(CA_CERTS_DIR),
            file(&format!("{CA_CERTS_DIR}/b.crt"), &mut tree, CERT_1),
            file(
                &format!("{CA_CERTS_DIR}/README.md"),
                &mut tree,
                "not a cert",
            ),
            file(&format!("{CA_CERTS_DIR}/c.pem"), &mut tree, "broken"),
        ];
        let sneaky_paths = vec![file(&format!("{CA_CERTS_DIR}/a.crt"), &mut tree, CERT_2)];
        let provides = vec!["custom-ca-certificates".to_string()];
        let versioned = vec!["custom-ca-certificates=1.0".to_string()];
        let packages = [
            ProviderPackage {
                provides: &versioned,
                paths: &sneaky_paths,
            },
            ProviderPackage {
                provides: &provides,
                paths: &provider_paths,
            },
        ];
        install_certificates(&mut tree, &NoSpools, Some(&providers), &packages, 9).unwrap();
        // Inline first, then the provider's valid files; README.md, the invalid c.pem and the
        // package that provides a versioned name are left out.
        assert_eq!(
            text(&tree, CA_BUNDLE_PATHS[0]),
            format!("# Existing Bundle\n{CERT_2}\n{CERT_1}\n")
        );
    }

    /// A `sha256sum` line for `content` named `name`.
    fn sum_line(content: &[u8], name: &str) -> String {
        format!("{}  {name}\n", hex::encode(Sha256::digest(content)))
    }

    fn symlink(tree: &mut Tree, path: &str, target: &str) {
        tree.ensure_parents(path, 1);
        tree.insert(Node {
            entry: LayerEntry::symlink(path, target, 1),
            content: Content::Empty,
            owner: None,
        });
    }

    // apko's `TestWriteCABundleChecksums`: both PEM bundles and the truststore (its bytes
    // summed as they are), read-only, root's, at the build time (its epoch is 1337).
    #[test]
    fn checksums_follow_apko() {
        assert_eq!(
            [
                checksum_path(CA_BUNDLE_PATHS[0]),
                checksum_path(CA_BUNDLE_PATHS[1]),
                checksum_path(CA_BUNDLE_PATHS[2]),
                checksum_path(TRUSTSTORE),
                checksum_path("top"),
            ],
            [
                "etc/ssl/certs/.ca-certificates.crt.sha256",
                "var/lib/ecs/deps/execute-command/certs/.tls-ca-bundle.pem.sha256",
                "kaniko/ssl/certs/.ca-certificates.crt.sha256",
                "etc/ssl/certs/java/.cacerts.sha256",
                ".top.sha256",
            ]
        );
        let bundle = b"-----BEGIN CERTIFICATE-----\nbundle\n-----END CERTIFICATE-----\n";
        let aws = b"-----BEGIN CERTIFICATE-----\naws\n-----END CERTIFICATE-----\n";
        let truststore = b"not-really-jks-but-bytes-are-hashed-as-is";
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], bundle.to_vec(), 0o644, 0, 0, 1);
        tree.put_file(CA_BUNDLE_PATHS[1], aws.to_vec(), 0o644, 0, 0, 1);
        tree.put_file(TRUSTSTORE, truststore.to_vec(), 0o644, 0, 0, 1);
        let before = tree.len();
        write_checksums(&mut tree, &NoSpools, 1337).unwrap();
        for (store, content, name) in [
            (CA_BUNDLE_PATHS[0], bundle.as_slice(), "ca-certificates.crt"),
            (CA_BUNDLE_PATHS[1], aws.as_slice(), "tls-ca-bundle.pem"),
            (TRUSTSTORE, truststore.as_slice(), "cacerts"),
        ] {
            let path = checksum_path(store);
            assert_eq!(text(&tree, &path), sum_line(content, name));
            let node = tree.get(&path).unwrap();
            assert_eq!(
                (
                    node.entry.mode,
                    node.entry.uid,
                    node.entry.gid,
                    node.entry.mtime,
                    node.owner
                ),
                (0o444, 0, 0, 1337, None),
                "{path}"
            );
            // The stores themselves are left as they were.
            assert_eq!(bytes(&tree, store), content);
            assert_eq!(tree.get(store).unwrap().entry.mtime, 1);
        }
        // Three files, nothing for the missing kaniko bundle.
        assert_eq!(tree.len(), before + 3);
        assert!(!tree.contains(&checksum_path(CA_BUNDLE_PATHS[2])));
        assert!(!tree.contains("kaniko"));

        // The same tree again: the same files.
        let mut again = tree.clone();
        write_checksums(&mut again, &NoSpools, 1337).unwrap();
        assert_eq!(
            again.iter().collect::<Vec<_>>(),
            tree.iter().collect::<Vec<_>>()
        );
    }

    // apko's `TestWriteCABundleChecksumsNoBundles`: nothing there, nothing written, no error.
    #[test]
    fn checksums_without_stores_write_nothing() {
        let mut tree = Tree::new();
        write_checksums(&mut tree, &NoSpools, 1337).unwrap();
        assert!(tree.is_empty());
        // A symlink to nothing is nothing; so is a path under a file.
        let mut tree = Tree::new();
        symlink(&mut tree, CA_BUNDLE_PATHS[0], "../missing.pem");
        tree.put_file("kaniko", b"a file".to_vec(), 0o644, 0, 0, 1);
        let before: Vec<Node> = tree.iter().cloned().collect();
        write_checksums(&mut tree, &NoSpools, 1337).unwrap();
        assert_eq!(tree.iter().cloned().collect::<Vec<_>>(), before);
    }

    // apko's `TestBuildImageWithCertPackages`: the checksum is of the bundle as it is after the
    // certificates are appended (there, an empty bundle, then four certificates).
    #[test]
    fn checksums_are_of_the_stores_with_the_certificates_added() {
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], Vec::new(), 0o644, 0, 0, 1);
        tree.put_file(TRUSTSTORE, truststore(1, &[]), 0o644, 0, 0, 1);
        // An empty bundle's line, against the well-known SHA-256 of nothing.
        let mut untouched = tree.clone();
        write_checksums(&mut untouched, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&untouched, &checksum_path(CA_BUNDLE_PATHS[0])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  ca-certificates.crt\n"
        );

        let config = additional(&[("a", CERT_1), ("b", CERT_2)]);
        install_certificates(&mut tree, &NoSpools, Some(&config), &[], 9).unwrap();
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        let bundle = bytes(&tree, CA_BUNDLE_PATHS[0]);
        assert_eq!(bundle, format!("{CERT_1}\n{CERT_2}\n").into_bytes());
        assert_eq!(
            text(&tree, &checksum_path(CA_BUNDLE_PATHS[0])),
            sum_line(&bundle, "ca-certificates.crt")
        );
        let store = bytes(&tree, TRUSTSTORE);
        assert_eq!(
            store,
            truststore(
                9,
                &[
                    (&format!("a-{CERT_1_FINGERPRINT}"), CERT_1),
                    (&format!("b-{CERT_2_FINGERPRINT}"), CERT_2)
                ]
            )
        );
        assert_eq!(
            text(&tree, &checksum_path(TRUSTSTORE)),
            sum_line(&store, "cacerts")
        );
    }

    // What apko's filesystem does with symlinks, hard links and files already there.
    #[test]
    fn checksums_follow_apko_through_links_and_existing_files() {
        // A bundle behind a symlink: summed where it lives, named and placed as the symlink.
        let mut tree = Tree::new();
        tree.put_file("etc/ssl/cert.pem", b"pem".to_vec(), 0o644, 0, 0, 1);
        symlink(&mut tree, CA_BUNDLE_PATHS[0], "../cert.pem");
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&tree, "etc/ssl/certs/.ca-certificates.crt.sha256"),
            sum_line(b"pem", "ca-certificates.crt")
        );
        assert!(!tree.contains("etc/ssl/.cert.pem.sha256"));

        // A directory of stores behind a symlink: the checksum file lies where it resolves.
        let mut tree = Tree::new();
        tree.put_file(
            "usr/share/certs/ca-certificates.crt",
            b"pem".to_vec(),
            0o644,
            0,
            0,
            1,
        );
        symlink(&mut tree, "etc/ssl/certs", "/usr/share/certs");
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&tree, "usr/share/certs/.ca-certificates.crt.sha256"),
            sum_line(b"pem", "ca-certificates.crt")
        );

        // A hard link: the file it names is summed.
        let mut tree = Tree::new();
        tree.put_file("etc/ssl/cert.pem", b"pem".to_vec(), 0o644, 0, 0, 1);
        tree.ensure_parents(CA_BUNDLE_PATHS[0], 1);
        let mut link = LayerEntry::file(CA_BUNDLE_PATHS[0], 0, 0o644, 1);
        link.kind = EntryKind::Hardlink {
            target: "etc/ssl/cert.pem".into(),
        };
        tree.insert(Node {
            entry: link,
            content: Content::Empty,
            owner: None,
        });
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&tree, &checksum_path(CA_BUNDLE_PATHS[0])),
            sum_line(b"pem", "ca-certificates.crt")
        );

        // A checksum file already there (a package's, here writable and group-owned): new
        // content and mtime; its mode, owner and package stay.
        let sidecar = checksum_path(CA_BUNDLE_PATHS[0]);
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], b"pem".to_vec(), 0o644, 0, 0, 1);
        tree.put_file(
            &sidecar,
            b"stale  ca-certificates.crt\n".to_vec(),
            0o664,
            0,
            999,
            1,
        );
        tree.get_mut(&sidecar).unwrap().owner = Some(3);
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&tree, &sidecar),
            sum_line(b"pem", "ca-certificates.crt")
        );
        let node = tree.get(&sidecar).unwrap();
        assert_eq!(
            (
                node.entry.mode,
                node.entry.gid,
                node.entry.mtime,
                node.owner
            ),
            (0o664, 999, 9, Some(3))
        );

        // A checksum file that is a symlink: written where it points, created there when
        // missing; the symlink stays.
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], b"pem".to_vec(), 0o644, 0, 0, 1);
        tree.put_file(TRUSTSTORE, b"jks".to_vec(), 0o644, 0, 0, 1);
        tree.put_file("var/sums/bundle", b"old".to_vec(), 0o600, 0, 0, 1);
        symlink(&mut tree, &sidecar, "/var/sums/bundle");
        symlink(
            &mut tree,
            &checksum_path(TRUSTSTORE),
            "/var/sums/truststore",
        );
        write_checksums(&mut tree, &NoSpools, 9).unwrap();
        assert_eq!(
            text(&tree, "var/sums/bundle"),
            sum_line(b"pem", "ca-certificates.crt")
        );
        assert_eq!(tree.get("var/sums/bundle").unwrap().entry.mode, 0o600);
        assert_eq!(
            text(&tree, "var/sums/truststore"),
            sum_line(b"jks", "cacerts")
        );
        assert_eq!(tree.get("var/sums/truststore").unwrap().entry.mode, 0o444);
        assert!(matches!(
            tree.get(&sidecar).unwrap().entry.kind,
            EntryKind::Symlink { .. }
        ));
    }

    #[test]
    fn checksums_fail_where_apko_fails() {
        // A directory where a store would be, whether or not certificates are added.
        let mut tree = Tree::new();
        tree.ensure_parents(TRUSTSTORE, 1);
        tree.insert(directory(TRUSTSTORE, 1));
        let error = write_checksums(&mut tree, &NoSpools, 9).unwrap_err();
        assert!(
            matches!(&error, CertificatesError::StoreNotAFile { path, kind: "directory" } if path == TRUSTSTORE),
            "{error}"
        );

        // A symlink to the root is a directory too.
        let mut tree = Tree::new();
        symlink(&mut tree, CA_BUNDLE_PATHS[1], "/");
        let error = write_checksums(&mut tree, &NoSpools, 9)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot take the checksum of /: it is a directory"),
            "{error}"
        );

        // A directory where the checksum file would be.
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], b"pem".to_vec(), 0o644, 0, 0, 1);
        tree.insert(directory(&checksum_path(CA_BUNDLE_PATHS[0]), 1));
        let error = write_checksums(&mut tree, &NoSpools, 9)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "cannot write the checksum file /etc/ssl/certs/.ca-certificates.crt.sha256: a directory is there, not a regular file"
        );

        // A checksum file that is a symlink into a directory that does not exist.
        let mut tree = Tree::new();
        tree.put_file(CA_BUNDLE_PATHS[0], b"pem".to_vec(), 0o644, 0, 0, 1);
        symlink(
            &mut tree,
            &checksum_path(CA_BUNDLE_PATHS[0]),
            "/nowhere/sum",
        );
        let error = write_checksums(&mut tree, &NoSpools, 9)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "cannot write the checksum file /nowhere/sum: its directory /nowhere does not exist"
        );

        // A symlink loop.
        let mut tree = Tree::new();
        symlink(&mut tree, CA_BUNDLE_PATHS[0], "ca-certificates.crt");
        assert!(matches!(
            write_checksums(&mut tree, &NoSpools, 9),
            Err(CertificatesError::Resolve { .. })
        ));
    }
}
