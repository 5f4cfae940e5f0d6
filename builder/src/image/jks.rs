//! Java KeyStore (JKS) files: the codec `certificates` uses to add certificates to a Java
//! truststore (`/etc/ssl/certs/java/cacerts`), reading and writing it as apko does through
//! `github.com/pavlo-v-chernykh/keystore-go/v4` (v4.5.0, the version apko's `go.mod` pins).
//!
//! The format, every integer big-endian:
//!
//! ```text
//! u32 magic 0xFEEDFEED, u32 version (1 or 2), u32 number of entries, the entries,
//! then the SHA-1 of: the password as UTF-16BE, "Mighty Aphrodite", every byte before the digest.
//!
//! entry:       u32 tag (1 private key, 2 trusted certificate), string alias,
//!              u64 creation time in milliseconds since the Unix epoch, then
//!   tag 1:     u32 length + the protected (encrypted) private key, u32 chain length, certificates
//!   tag 2:     one certificate
//! certificate: string type (version 2 only; version 1 has none), u32 length + the DER bytes
//! string:      u16 length + bytes
//! ```
//!
//! What keystore-go (and so apko) does, and this module with it:
//!
//! - Aliases and certificate types are kept as the bytes of the file: nothing is decoded from
//!   Java's modified UTF-8 or re-encoded, and a loaded alias keeps its case. An alias set with
//!   [`KeyStore::set_trusted_certificate`] is lower-cased first, as keystore-go's
//!   `SetTrustedCertificateEntry` does (apko's aliases are ASCII).
//! - Entries are kept in a map: a later entry with an alias already seen replaces the earlier
//!   one, and writing them goes in byte order of the aliases (apko loads with
//!   `WithOrderedAliases`), not in the order of the file.
//! - A private key stays as the protected bytes in the file; it is never decrypted.
//! - Writing always gives version 2; a version 1 file's certificates get the type `X509`
//!   (keystore-go's `defaultCertificateType`).
//! - The version is checked only when a certificate is read, and bytes after the digest are
//!   ignored.
//!
//! Reading works on the bytes in memory: every length is checked against what is left before
//! anything is allocated, so a truncated or garbled file is an error, not a panic or a large
//! allocation.

use std::collections::BTreeMap;

use sha1::{Digest as _, Sha1};

/// The first four bytes of a JKS file.
pub const MAGIC: u32 = 0xFEED_FEED;
/// The version written, and the only one besides 1 that is read.
pub const VERSION_2: u32 = 2;
/// The version without certificate types.
pub const VERSION_1: u32 = 1;
/// The entry tag of a private key with its certificate chain.
pub const PRIVATE_KEY_TAG: u32 = 1;
/// The entry tag of a trusted certificate.
pub const TRUSTED_CERTIFICATE_TAG: u32 = 2;
/// The text hashed after the password, before the content.
pub const WHITENER: &[u8] = b"Mighty Aphrodite";
/// The type Java and apko give X.509 certificates.
pub const X509: &[u8] = b"X.509";
/// The type keystore-go gives the certificates of a version 1 file.
pub const VERSION_1_CERTIFICATE_TYPE: &[u8] = b"X509";
/// Length of the SHA-1 digest at the end.
const DIGEST_LEN: usize = 20;

/// Why a keystore could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JksError {
    /// Fewer bytes left than a field needs.
    #[error(
        "the file is truncated or garbled: {what} at byte {offset} needs {needed} bytes, {left} are left"
    )]
    Truncated {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its length.
        needed: u64,
        /// The bytes left in the file.
        left: usize,
    },
    /// Not a JKS file.
    #[error("not a JKS keystore: it starts with {found:#010x}, not 0xfeedfeed{hint}")]
    Magic {
        /// The first four bytes.
        found: u32,
        /// A note on what the file may be instead.
        hint: &'static str,
    },
    /// A version other than 1 or 2, found when reading a certificate.
    #[error("unsupported JKS version {version} (only 1 and 2 exist)")]
    Version {
        /// The version in the header.
        version: u32,
    },
    /// An entry that is neither a private key nor a trusted certificate.
    #[error("entry {index} at byte {offset} has the unknown tag {tag} (1 and 2 exist)")]
    Tag {
        /// The entry's position in the file, from 0.
        index: u32,
        /// Where its tag is.
        offset: usize,
        /// The tag.
        tag: u32,
    },
    /// The integrity digest does not match.
    #[error(
        "the integrity digest does not match: the file is corrupt or not protected by the expected password"
    )]
    Digest,
    /// A certificate without a type or without content.
    #[error("a certificate needs a type and content")]
    EmptyCertificate,
    /// A field too long for its length prefix.
    #[error("cannot write {what} of {len} (at most {max})")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The largest its prefix can say.
        max: u64,
    },
}

/// A certificate: its type (`X.509`) and encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The type, as the bytes of the file.
    pub kind: Vec<u8>,
    /// The encoded certificate (DER for X.509).
    pub content: Vec<u8>,
}

impl Certificate {
    /// An X.509 certificate from its DER bytes.
    pub fn x509(der: impl Into<Vec<u8>>) -> Self {
        Self {
            kind: X509.to_vec(),
            content: der.into(),
        }
    }
}

/// A trusted certificate entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCertificateEntry {
    /// Milliseconds since the Unix epoch, as stored (Java's `Date.getTime()`).
    pub creation_time: u64,
    /// The certificate.
    pub certificate: Certificate,
}

/// A private key entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKeyEntry {
    /// Milliseconds since the Unix epoch, as stored.
    pub creation_time: u64,
    /// The protected key as stored (an `EncryptedPrivateKeyInfo`); never decrypted here.
    pub protected_key: Vec<u8>,
    /// The certificate chain, leaf first.
    pub chain: Vec<Certificate>,
}

/// One entry of a keystore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A private key with its certificate chain.
    PrivateKey(PrivateKeyEntry),
    /// A trusted certificate.
    TrustedCertificate(TrustedCertificateEntry),
}

/// A keystore: entries by alias, in byte order of the aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStore {
    entries: BTreeMap<Vec<u8>, Entry>,
}

impl KeyStore {
    /// An empty keystore.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a keystore and checks its digest with `password`, as keystore-go's `Load`.
    pub fn decode(bytes: &[u8], password: &str) -> Result<Self, JksError> {
        let mut reader = Reader { bytes, offset: 0 };
        let magic = reader.u32("the magic number")?;
        if magic != MAGIC {
            return Err(JksError::Magic {
                found: magic,
                hint: magic_hint(bytes),
            });
        }
        let version = reader.u32("the version")?;
        let count = reader.u32("the number of entries")?;
        let mut store = Self::new();
        // Not preallocated: each entry takes at least 18 bytes, so a garbled count ends with
        // `Truncated` once the bytes run out.
        for index in 0..count {
            let tag_offset = reader.offset;
            let tag = reader.u32("an entry tag")?;
            let alias = reader.string("an alias")?.to_vec();
            let entry = match tag {
                PRIVATE_KEY_TAG => {
                    let creation_time = reader.u64("a creation time")?;
                    let len = reader.u32("a private key length")?;
                    let protected_key = reader.take(u64::from(len), "a private key")?.to_vec();
                    let chain_len = reader.u32("a certificate chain length")?;
                    let mut chain = Vec::new();
                    for _ in 0..chain_len {
                        chain.push(reader.certificate(version)?);
                    }
                    Entry::PrivateKey(PrivateKeyEntry {
                        creation_time,
                        protected_key,
                        chain,
                    })
                }
                TRUSTED_CERTIFICATE_TAG => {
                    let creation_time = reader.u64("a creation time")?;
                    Entry::TrustedCertificate(TrustedCertificateEntry {
                        creation_time,
                        certificate: reader.certificate(version)?,
                    })
                }
                tag => {
                    return Err(JksError::Tag {
                        index,
                        offset: tag_offset,
                        tag,
                    });
                }
            };
            store.entries.insert(alias, entry);
        }
        let computed = digest(password, &bytes[..reader.offset]);
        let stored = reader.take(DIGEST_LEN as u64, "the integrity digest")?;
        if stored != computed.as_slice() {
            return Err(JksError::Digest);
        }
        Ok(store)
    }

    /// Writes the keystore (version 2, entries in alias order) with the digest for `password`,
    /// as keystore-go's `Store`.
    pub fn encode(&self, password: &str) -> Result<Vec<u8>, JksError> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION_2.to_be_bytes());
        put_u32_len(&mut out, self.entries.len(), "the number of entries")?;
        for (alias, entry) in &self.entries {
            match entry {
                Entry::PrivateKey(key) => {
                    out.extend_from_slice(&PRIVATE_KEY_TAG.to_be_bytes());
                    put_string(&mut out, alias, "an alias")?;
                    out.extend_from_slice(&key.creation_time.to_be_bytes());
                    put_u32_len(&mut out, key.protected_key.len(), "a private key")?;
                    out.extend_from_slice(&key.protected_key);
                    put_u32_len(&mut out, key.chain.len(), "a certificate chain")?;
                    for certificate in &key.chain {
                        put_certificate(&mut out, certificate)?;
                    }
                }
                Entry::TrustedCertificate(trusted) => {
                    out.extend_from_slice(&TRUSTED_CERTIFICATE_TAG.to_be_bytes());
                    put_string(&mut out, alias, "an alias")?;
                    out.extend_from_slice(&trusted.creation_time.to_be_bytes());
                    put_certificate(&mut out, &trusted.certificate)?;
                }
            }
        }
        let digest = digest(password, &out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Adds or replaces a trusted certificate under `alias` lower-cased (ASCII), as
    /// keystore-go's `SetTrustedCertificateEntry` without `WithCaseExactAliases`.
    pub fn set_trusted_certificate(
        &mut self,
        alias: &str,
        entry: TrustedCertificateEntry,
    ) -> Result<(), JksError> {
        if entry.certificate.kind.is_empty() || entry.certificate.content.is_empty() {
            return Err(JksError::EmptyCertificate);
        }
        self.entries.insert(
            alias.to_ascii_lowercase().into_bytes(),
            Entry::TrustedCertificate(entry),
        );
        Ok(())
    }

    /// Adds or replaces an entry under `alias` exactly as given, as reading a file does.
    pub fn insert(&mut self, alias: impl Into<Vec<u8>>, entry: Entry) -> Option<Entry> {
        self.entries.insert(alias.into(), entry)
    }

    /// The entry under exactly `alias`.
    pub fn get(&self, alias: &[u8]) -> Option<&Entry> {
        self.entries.get(alias)
    }

    /// The entries in the order they are written.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries
            .iter()
            .map(|(alias, entry)| (alias.as_slice(), entry))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The password's bytes as keystore-go hashes them: a zero byte before each byte (UTF-16BE for
/// an ASCII password such as `changeit`).
fn password_bytes(password: &str) -> Vec<u8> {
    password.bytes().flat_map(|b| [0, b]).collect()
}

fn digest(password: &str, content: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha1::new();
    hasher.update(password_bytes(password));
    hasher.update(WHITENER);
    hasher.update(content);
    hasher.finalize().into()
}

/// What a file that is not JKS probably is.
fn magic_hint(bytes: &[u8]) -> &'static str {
    match bytes.first() {
        Some(0x30) => " (it looks like DER, perhaps a PKCS#12 keystore)",
        _ if bytes.starts_with(&[0xCE, 0xCE, 0xCE, 0xCE]) => " (it is a JCEKS keystore)",
        _ if bytes.starts_with(b"-----BEGIN") => " (it is PEM text)",
        _ => "",
    }
}

fn put_u32_len(out: &mut Vec<u8>, len: usize, what: &'static str) -> Result<(), JksError> {
    let value = u32::try_from(len).map_err(|_| JksError::TooLong {
        what,
        len,
        max: u64::from(u32::MAX),
    })?;
    out.extend_from_slice(&value.to_be_bytes());
    Ok(())
}

fn put_string(out: &mut Vec<u8>, value: &[u8], what: &'static str) -> Result<(), JksError> {
    let len = u16::try_from(value.len()).map_err(|_| JksError::TooLong {
        what,
        len: value.len(),
        max: u64::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn put_certificate(out: &mut Vec<u8>, certificate: &Certificate) -> Result<(), JksError> {
    put_string(out, &certificate.kind, "a certificate type")?;
    put_u32_len(out, certificate.content.len(), "a certificate")?;
    out.extend_from_slice(&certificate.content);
    Ok(())
}

/// Reads fields from the bytes, checking every length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], JksError> {
        let left = self.bytes.len() - self.offset;
        let Some(len) = usize::try_from(len).ok().filter(|&len| len <= left) else {
            return Err(JksError::Truncated {
                what,
                offset: self.offset,
                needed: len,
                left,
            });
        };
        let taken = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], JksError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N as u64, what)?);
        Ok(array)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, JksError> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, JksError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, JksError> {
        self.array(what).map(u64::from_be_bytes)
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], JksError> {
        let len = self.u16(what)?;
        self.take(u64::from(len), what)
    }

    fn certificate(&mut self, version: u32) -> Result<Certificate, JksError> {
        let kind = match version {
            VERSION_1 => VERSION_1_CERTIFICATE_TYPE.to_vec(),
            VERSION_2 => self.string("a certificate type")?.to_vec(),
            version => return Err(JksError::Version { version }),
        };
        let len = self.u32("a certificate length")?;
        let content = self.take(u64::from(len), "a certificate")?.to_vec();
        Ok(Certificate { kind, content })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::image::pem;

    const PASSWORD: &str = "changeit";

    /// The DER of a self-signed test root (`testdata/test-root-<n>.pem`).
    fn test_root(n: u8) -> Vec<u8> {
        let text = match n {
            1 => include_str!("testdata/test-root-1.pem"),
            _ => include_str!("testdata/test-root-2.pem"),
        };
        pem::decode_all(text).remove(0).bytes
    }

    fn trusted(creation_time: u64, content: &[u8]) -> Entry {
        Entry::TrustedCertificate(TrustedCertificateEntry {
            creation_time,
            certificate: Certificate::x509(content),
        })
    }

    /// The hand-checked example of `layout_is_keystore_go_s`: a trusted certificate "a" and a
    /// private key "b", both created at 1337 s (1 337 000 ms = 0x1466a8, the epoch of apko's
    /// `TestInstallCertificates`).
    fn small_store() -> KeyStore {
        let mut store = KeyStore::new();
        // Inserted out of order: writing sorts the aliases.
        store.insert(
            "b",
            Entry::PrivateKey(PrivateKeyEntry {
                creation_time: 1_337_000,
                protected_key: vec![0xaa, 0xbb, 0xcc],
                chain: vec![Certificate::x509([0x30, 0x00])],
            }),
        );
        store.insert("a", trusted(1_337_000, &[0x30, 0x03, 0x02, 0x01, 0x01]));
        store
    }

    /// The bytes keystore-go v4.5.0 writes for `small_store()` with the password `changeit`,
    /// following its code line by line (`keystore.go` `Store`, `encoder.go`, `common.go` at tag
    /// v4.5.0, commit ae44a5e2).
    fn small_store_bytes() -> Vec<u8> {
        let parts: &[&str] = &[
            // keystore.go:112 writeUint32(magic), common.go:8 magic = 0xfeedfeed
            "feedfeed",
            // keystore.go:116 "always write latest version": writeUint32(version02)
            "00000002",
            // keystore.go:120 writeUint32(uint32(len(ks.m)))
            "00000002",
            // keystore.go:124 ks.Aliases(), sorted by sort.Strings (keystore.go:323) since apko
            // loads WithOrderedAliases: "a" first.
            // encoder.go:135 writeUint32(trustedCertificateTag), common.go:14 = 2
            "00000002",
            // encoder.go:139 writeString(alias): encoder.go:57 uint16 length, :61 the bytes
            "000161",
            // encoder.go:143 writeUint64(uint64(CreationTime.UnixMilli()))
            "00000000001466a8",
            // encoder.go:147 writeCertificate: encoder.go:69 writeString(Type) "X.509"
            "0005582e353039",
            // encoder.go:78 writeUint32(length), :82 the content
            "00000005",
            "3003020101",
            // "b": encoder.go:90 writeUint32(privateKeyTag), common.go:13 = 1
            "00000001",
            // encoder.go:94 writeString(alias)
            "000162",
            // encoder.go:98 writeUint64(uint64(CreationTime.UnixMilli()))
            "00000000001466a8",
            // encoder.go:107 writeUint32(length of the protected key), :111 its bytes
            "00000003",
            "aabbcc",
            // encoder.go:121 writeUint32(number of certificates)
            "00000001",
            // encoder.go:126 writeCertificate per certificate: type, length, content
            "0005582e353039",
            "00000002",
            "3000",
            // keystore.go:139 writeBytes(e.h.Sum(nil)): the SHA-1 that keystore.go:104 and
            // :108 start with passwordBytes("changeit") (common.go:21, a zero before each
            // byte) and "Mighty Aphrodite" (common.go:19), then every byte written above
            // (encoder.go:44). Computed apart from this code:
            //   python3 -c 'import hashlib; print(hashlib.sha1(b"\0c\0h\0a\0n\0g\0e\0i\0t"
            //     + b"Mighty Aphrodite" + bytes.fromhex("feedfeed…3000")).hexdigest())'
            "5b4b3a9cce1bf62b",
            "8dfa8799f5d9d2ab",
            "b008b88a",
        ];
        hex::decode(parts.concat()).unwrap()
    }

    #[test]
    fn layout_is_keystore_go_s() {
        let bytes = small_store().encode(PASSWORD).unwrap();
        assert_eq!(hex::encode(&bytes), hex::encode(small_store_bytes()));
        assert_eq!(bytes.len(), 12 + 31 + 39 + 20);
    }

    #[test]
    fn round_trip_keeps_every_entry() {
        let mut store = small_store();
        store.insert("c", trusted(u64::MAX, &test_root(1)));
        store.insert("Mixed Case é", trusted(0, &test_root(2)));
        let bytes = store.encode(PASSWORD).unwrap();
        let decoded = KeyStore::decode(&bytes, PASSWORD).unwrap();
        assert_eq!(decoded, store);
        assert_eq!(decoded.encode(PASSWORD).unwrap(), bytes);
        assert_eq!(
            decoded.entries().map(|(a, _)| a).collect::<Vec<_>>(),
            [b"Mixed Case \xc3\xa9".as_slice(), b"a", b"b", b"c"],
            "byte order, case kept"
        );
        assert!(matches!(
            decoded.get(b"b"),
            Some(Entry::PrivateKey(PrivateKeyEntry { protected_key, .. })) if protected_key == &[0xaa, 0xbb, 0xcc]
        ));
        assert_eq!(
            KeyStore::decode(&small_store_bytes(), PASSWORD).unwrap(),
            small_store()
        );
        let empty = KeyStore::new().encode(PASSWORD).unwrap();
        assert_eq!(
            &empty[..12],
            hex::decode("feedfeed0000000200000000").unwrap()
        );
        assert!(KeyStore::decode(&empty, PASSWORD).unwrap().is_empty());
    }

    #[test]
    fn set_trusted_certificate_lower_cases_and_replaces() {
        let mut store = KeyStore::new();
        store.insert("Kept-Case", trusted(1, &[1]));
        let entry = |time| TrustedCertificateEntry {
            creation_time: time,
            certificate: Certificate::x509([2]),
        };
        store.set_trusted_certificate("New-Cert", entry(1)).unwrap();
        store.set_trusted_certificate("new-cert", entry(2)).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.get(b"Kept-Case").is_some());
        assert_eq!(
            store.get(b"new-cert"),
            Some(&Entry::TrustedCertificate(entry(2)))
        );
        let empty = TrustedCertificateEntry {
            creation_time: 0,
            certificate: Certificate::x509([]),
        };
        assert_eq!(
            store.set_trusted_certificate("x", empty),
            Err(JksError::EmptyCertificate)
        );
    }

    #[test]
    fn version_1_and_repeated_aliases_read_as_keystore_go_reads_them() {
        // Version 1: no certificate type; keystore-go reads "X509" and writes version 2.
        let mut body = hex::decode(concat!(
            "feedfeed",
            "00000001",
            "00000001",
            "00000002",
            "000161",
            "00000000001466a8",
            "00000005",
            "3003020101"
        ))
        .unwrap();
        let sum = digest(PASSWORD, &body);
        assert_eq!(
            hex::encode(sum),
            "e120e30f62771dff4adc9b671c020a62716789e6",
            "python3 hashlib over the same bytes"
        );
        body.extend_from_slice(&sum);
        let store = KeyStore::decode(&body, PASSWORD).unwrap();
        let Some(Entry::TrustedCertificate(entry)) = store.get(b"a") else {
            panic!("{store:?}");
        };
        assert_eq!(entry.certificate.kind, b"X509");
        let rewritten = store.encode(PASSWORD).unwrap();
        assert_eq!(&rewritten[4..8], &[0, 0, 0, 2]);
        assert_eq!(&rewritten[27..33], b"\x00\x04X509");

        // The same alias twice: the later entry wins and the count shrinks.
        let mut body = hex::decode("feedfeed0000000200000002").unwrap();
        for content in [[0x01], [0x02]] {
            body.extend_from_slice(&hex::decode("000000020001610000000000000001").unwrap());
            body.extend_from_slice(&hex::decode("0005582e35303900000001").unwrap());
            body.extend_from_slice(&content);
        }
        let sum = digest(PASSWORD, &body);
        body.extend_from_slice(&sum);
        // Bytes after the digest are not read.
        body.extend_from_slice(b"trailing");
        let store = KeyStore::decode(&body, PASSWORD).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.get(b"a"), Some(&trusted(1, &[0x02])));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let bytes = small_store_bytes();
        // Every truncation.
        for len in 0..bytes.len() {
            let error = KeyStore::decode(&bytes[..len], PASSWORD).unwrap_err();
            assert!(
                matches!(error, JksError::Truncated { .. }),
                "{len}: {error}"
            );
        }
        // Every single-byte change is caught (by the digest at the latest).
        for index in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[index] ^= 0x40;
            assert!(KeyStore::decode(&garbled, PASSWORD).is_err(), "{index}");
        }
        // Huge counts and lengths, with no bytes behind them: no allocation, an error.
        let huge_count = hex::decode("feedfeed00000002ffffffff").unwrap();
        assert!(matches!(
            KeyStore::decode(&huge_count, PASSWORD),
            Err(JksError::Truncated {
                what: "an entry tag",
                ..
            })
        ));
        let huge_cert = hex::decode(concat!(
            "feedfeed",
            "00000002",
            "00000001",
            "00000002",
            "000161",
            "0000000000000001",
            "0005582e353039",
            "ffffffff"
        ))
        .unwrap();
        let error = KeyStore::decode(&huge_cert, PASSWORD).unwrap_err();
        assert_eq!(
            error,
            JksError::Truncated {
                what: "a certificate",
                offset: 38,
                needed: 0xffff_ffff,
                left: 0
            }
        );
        assert!(
            error
                .to_string()
                .contains("needs 4294967295 bytes, 0 are left")
        );
        let huge_chain = hex::decode(concat!(
            "feedfeed",
            "00000002",
            "00000001",
            "00000001",
            "000161",
            "0000000000000001",
            "00000000",
            "ffffffff"
        ))
        .unwrap();
        assert!(matches!(
            KeyStore::decode(&huge_chain, PASSWORD),
            Err(JksError::Truncated {
                what: "a certificate type",
                ..
            })
        ));

        // Wrong magic, with a hint for PKCS#12; an unknown tag; an unknown version; a wrong
        // password.
        let error = KeyStore::decode(b"\x30\x82\x01\x00", PASSWORD).unwrap_err();
        assert!(error.to_string().contains("PKCS#12"), "{error}");
        let tag = hex::decode("feedfeed000000020000000100000003000161").unwrap();
        assert_eq!(
            KeyStore::decode(&tag, PASSWORD),
            Err(JksError::Tag {
                index: 0,
                offset: 12,
                tag: 3
            })
        );
        let mut version = bytes.clone();
        version[7] = 3;
        assert_eq!(
            KeyStore::decode(&version, PASSWORD),
            Err(JksError::Version { version: 3 })
        );
        assert_eq!(KeyStore::decode(&bytes, "secret"), Err(JksError::Digest));
    }

    #[test]
    fn too_long_fields_are_refused_when_writing() {
        let mut store = KeyStore::new();
        store.insert(vec![b'a'; 65_536], trusted(0, &[1]));
        assert!(matches!(
            store.encode(PASSWORD),
            Err(JksError::TooLong {
                what: "an alias",
                ..
            })
        ));
    }

    // keytool, Java's own tool, as the independent reader and writer.

    /// Runs `keytool` with `args` and returns its standard output; fails the test when it
    /// cannot run or exits non-zero.
    fn keytool(args: &[&str]) -> String {
        let output = Command::new("keytool")
            // A fixed locale and time zone for the dates it prints.
            .args([
                "-J-Duser.language=en",
                "-J-Duser.country=US",
                "-J-Duser.timezone=UTC",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run keytool ({error}); the JKS tests check truststores with Java's \
                     keytool: install a Java runtime (Debian: apt-get install default-jre-headless)"
                )
            });
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "keytool {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn keytool_list(path: &Path) -> String {
        keytool(&[
            "-list",
            "-v",
            "-keystore",
            path.to_str().unwrap(),
            "-storepass",
            PASSWORD,
        ])
    }

    /// The SHA-256 fingerprint as keytool prints it (`B5:33:…`).
    fn keytool_fingerprint(der: &[u8]) -> String {
        Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// keytool's `-list -v` as (alias, entry type, creation date, SHA-256 fingerprints), in its
    /// order.
    fn listed(listing: &str) -> Vec<(String, String, String, Vec<String>)> {
        let mut entries: Vec<(String, String, String, Vec<String>)> = Vec::new();
        for line in listing.lines() {
            let line = line.trim();
            if let Some(alias) = line.strip_prefix("Alias name: ") {
                entries.push((alias.into(), String::new(), String::new(), Vec::new()));
            } else if let Some(last) = entries.last_mut() {
                if let Some(kind) = line.strip_prefix("Entry type: ") {
                    last.1 = kind.into();
                } else if let Some(date) = line.strip_prefix("Creation date: ") {
                    last.2 = date.into();
                } else if let Some(fingerprint) = line.strip_prefix("SHA256: ") {
                    last.3.push(fingerprint.into());
                }
            }
        }
        entries
    }

    #[test]
    fn keytool_reads_a_written_truststore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cacerts");
        let mut store = KeyStore::new();
        // 2023-11-14T22:13:20Z.
        let entry = |n| TrustedCertificateEntry {
            creation_time: 1_700_000_000_000,
            certificate: Certificate::x509(test_root(n)),
        };
        store
            .set_trusted_certificate("corp-root-2", entry(2))
            .unwrap();
        store
            .set_trusted_certificate("Corp-Root-1", entry(1))
            .unwrap();
        std::fs::write(&path, store.encode(PASSWORD).unwrap()).unwrap();

        let listing = keytool_list(&path);
        assert!(listing.contains("Keystore type: JKS"), "{listing}");
        assert!(
            listing.contains("Your keystore contains 2 entries"),
            "{listing}"
        );
        let mut entries = listed(&listing);
        entries.sort();
        let expected = |alias: &str, n| {
            (
                alias.to_string(),
                "trustedCertEntry".to_string(),
                "Nov 14, 2023".to_string(),
                vec![keytool_fingerprint(&test_root(n))],
            )
        };
        assert_eq!(
            entries,
            [expected("corp-root-1", 1), expected("corp-root-2", 2)],
            "{listing}"
        );
    }

    #[test]
    fn truststore_made_by_keytool_importcert_is_read_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cacerts");
        let pem_path = dir.path().join("root-1.pem");
        std::fs::write(&pem_path, include_str!("testdata/test-root-1.pem")).unwrap();
        keytool(&[
            "-importcert",
            "-noprompt",
            "-storetype",
            "JKS",
            "-alias",
            "Existing",
            "-file",
            pem_path.to_str().unwrap(),
            "-keystore",
            path.to_str().unwrap(),
            "-storepass",
            PASSWORD,
        ]);
        let original = std::fs::read(&path).unwrap();
        let mut store = KeyStore::decode(&original, PASSWORD).unwrap();
        // keytool lower-cases aliases itself; a one-entry file is written back as it was.
        let Some(Entry::TrustedCertificate(existing)) = store.get(b"existing") else {
            panic!("{store:?}");
        };
        assert_eq!(existing.certificate, Certificate::x509(test_root(1)));
        assert_eq!(store.encode(PASSWORD).unwrap(), original);

        store
            .set_trusted_certificate(
                "added",
                TrustedCertificateEntry {
                    creation_time: 1_700_000_000_000,
                    certificate: Certificate::x509(test_root(2)),
                },
            )
            .unwrap();
        std::fs::write(&path, store.encode(PASSWORD).unwrap()).unwrap();
        let listing = keytool_list(&path);
        let mut summary: Vec<(String, String, Vec<String>)> = listed(&listing)
            .into_iter()
            .map(|(alias, kind, _, fingerprints)| (alias, kind, fingerprints))
            .collect();
        summary.sort();
        let expected = |alias: &str, n| {
            (
                alias.to_string(),
                "trustedCertEntry".to_string(),
                vec![keytool_fingerprint(&test_root(n))],
            )
        };
        assert_eq!(
            summary,
            [expected("added", 2), expected("existing", 1)],
            "{listing}"
        );
    }

    #[test]
    fn keystore_with_a_keytool_genkeypair_private_key_is_read_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.jks");
        let path_str = path.to_str().unwrap();
        keytool(&[
            "-genkeypair",
            "-storetype",
            "JKS",
            "-alias",
            "server",
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-dname",
            "CN=server",
            "-validity",
            "2",
            "-keystore",
            path_str,
            "-storepass",
            PASSWORD,
            "-keypass",
            PASSWORD,
        ]);
        let original = std::fs::read(&path).unwrap();
        let mut store = KeyStore::decode(&original, PASSWORD).unwrap();
        let Some(Entry::PrivateKey(key)) = store.get(b"server").cloned() else {
            panic!("{store:?}");
        };
        assert_eq!(key.chain.len(), 1);
        assert_eq!(key.chain[0].kind, X509);
        assert_eq!(store.encode(PASSWORD).unwrap(), original);

        store
            .set_trusted_certificate(
                "added",
                TrustedCertificateEntry {
                    creation_time: 1_700_000_000_000,
                    certificate: Certificate::x509(test_root(1)),
                },
            )
            .unwrap();
        let written = store.encode(PASSWORD).unwrap();
        std::fs::write(&path, &written).unwrap();
        // The private key entry is the same bytes as before: find them in the new file.
        let entry_bytes = &original[12..original.len() - DIGEST_LEN];
        assert!(
            written.windows(entry_bytes.len()).any(|w| w == entry_bytes),
            "the private key entry changed"
        );

        let listing = keytool_list(&path);
        let mut entries = listed(&listing);
        entries.sort();
        assert_eq!(entries.len(), 2, "{listing}");
        assert_eq!(entries[0].0, "added");
        assert_eq!(entries[0].1, "trustedCertEntry");
        assert_eq!(entries[0].3, [keytool_fingerprint(&test_root(1))]);
        assert_eq!(entries[1].0, "server");
        assert_eq!(entries[1].1, "PrivateKeyEntry");
        assert_eq!(entries[1].3, [keytool_fingerprint(&key.chain[0].content)]);
        // The key still decrypts: keytool signs a certificate request with it.
        let request = keytool(&[
            "-certreq",
            "-alias",
            "server",
            "-keystore",
            path_str,
            "-storepass",
            PASSWORD,
            "-keypass",
            PASSWORD,
        ]);
        assert!(
            request.contains("BEGIN NEW CERTIFICATE REQUEST"),
            "{request}"
        );
    }
}
