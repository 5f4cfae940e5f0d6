//! `certificates`: CA certificates added to the image's bundles, as apko's `installCertificates`
//! (`pkg/build/certificates.go`) adds them.
//!
//! Inline certificates (`additional`) are written to
//! `/usr/local/share/ca-certificates/<name>-<sha256 of the DER>.crt`; then the inline
//! certificates, followed by the certificate files of the packages that provide one of
//! `providers` (sorted by path), are appended to every CA bundle that exists, each followed by
//! an empty line. Runs after `paths` mutations, as in apko.

use sha2::{Digest as _, Sha256};

use securebuild_crds::image_config::ImageCertificates;

use super::entry::{EntryKind, LayerEntry};
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

/// The Java truststore apko also adds certificates to.
pub const JAVA_TRUSTSTORE_PATH: &str = "etc/ssl/certs/java/cacerts";

/// Mode of the certificate files and of the directory created for them.
const FILE_MODE: u32 = 0o644;
const DIRECTORY_MODE: u32 = 0o755;

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
    /// A bundle or certificate path that does not resolve inside the image.
    #[error("cannot resolve /{path} in the image")]
    Resolve {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: super::paths::TreePathError,
    },
    /// The image has a Java truststore, which apko would also update.
    #[error(
        "adding certificates to the Java truststore /{JAVA_TRUSTSTORE_PATH} is not supported yet; leave the package that installs it out of the image or drop `certificates`"
    )]
    JavaTruststore,
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
            certs.push(cert);
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
                certs.push(cert);
            }
        }
    }
    if certs.is_empty() {
        return Ok(());
    }
    if read_file(tree, source, JAVA_TRUSTSTORE_PATH)?.is_some() {
        return Err(CertificatesError::JavaTruststore);
    }

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
        for cert in &certs {
            // A newline between certificates, as update-ca-certificates writes them.
            bytes.extend_from_slice(cert.pem.as_bytes());
            bytes.push(b'\n');
        }
        let Some(node) = tree.file_node(&target).map(|n| n.entry.path.clone()) else {
            continue;
        };
        if let Some(node) = tree.get_mut(&node) {
            node.entry.kind = EntryKind::File {
                size: bytes.len() as u64,
            };
            node.entry.mtime = mtime;
            node.content = Content::inline(bytes);
        }
    }
    Ok(())
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

        // A Java truststore is refused rather than left without the certificates.
        let mut tree = Tree::new();
        tree.put_file(JAVA_TRUSTSTORE_PATH, b"jks".to_vec(), 0o644, 0, 0, 1);
        assert!(matches!(
            install_certificates(
                &mut tree,
                &NoSpools,
                Some(&additional(&[("a", CERT_1)])),
                &[],
                9
            ),
            Err(CertificatesError::JavaTruststore)
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
}
