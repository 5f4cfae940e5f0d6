//! Verifying apk v2 signatures (`.SIGN.RSA.<key>`, `.SIGN.RSA256.<key>`, `.SIGN.RSA512.<key>`)
//! against a keyring of trusted RSA public keys named by their file names.
//!
//! A signature is RSASSA-PKCS1-v1_5 over the digest of the signed member's compressed bytes
//! (the control member of a package, the index member of an `APKINDEX.tar.gz`); the digests
//! come from `archive`. This module reads no archives and fetches no keys. DSA signatures,
//! which apk-tools still recognises, are reported as unsupported.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsa::PublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::archive::{MemberDigests, SIGNATURE_ENTRY_PREFIX, SignatureEntry};

/// Scheme name of PKCS#1 v1.5 signatures over SHA-1: `.SIGN.RSA.<key>`.
pub const SCHEME_RSA_SHA1: &str = "RSA";
/// Scheme name of PKCS#1 v1.5 signatures over SHA-256: `.SIGN.RSA256.<key>`.
pub const SCHEME_RSA_SHA256: &str = "RSA256";
/// Scheme name of PKCS#1 v1.5 signatures over SHA-512: `.SIGN.RSA512.<key>`.
pub const SCHEME_RSA_SHA512: &str = "RSA512";
/// Scheme name of DSA signatures over SHA-1: `.SIGN.DSA.<key>` (recognised, not supported).
pub const SCHEME_DSA_SHA1: &str = "DSA";

/// PEM label of an SPKI (`PUBLIC KEY`) key, what `abuild-keygen` and `openssl rsa -pubout` write.
pub const PEM_LABEL_SPKI: &str = "PUBLIC KEY";
/// PEM label of a PKCS#1 (`RSA PUBLIC KEY`) key.
pub const PEM_LABEL_PKCS1: &str = "RSA PUBLIC KEY";

const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";
const PEM_DASHES: &str = "-----";

/// The digest and algorithm a signature entry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// `RSA`: RSASSA-PKCS1-v1_5 with SHA-1.
    RsaSha1,
    /// `RSA256`: RSASSA-PKCS1-v1_5 with SHA-256.
    RsaSha256,
    /// `RSA512`: RSASSA-PKCS1-v1_5 with SHA-512.
    RsaSha512,
    /// `DSA`: DSA with SHA-1; recognised so that selection matches apk-tools, never verified.
    DsaSha1,
}

impl SignatureScheme {
    /// The scheme's name in entry names, e.g. `RSA256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaSha1 => SCHEME_RSA_SHA1,
            Self::RsaSha256 => SCHEME_RSA_SHA256,
            Self::RsaSha512 => SCHEME_RSA_SHA512,
            Self::DsaSha1 => SCHEME_DSA_SHA1,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            SCHEME_RSA_SHA1 => Some(Self::RsaSha1),
            SCHEME_RSA_SHA256 => Some(Self::RsaSha256),
            SCHEME_RSA_SHA512 => Some(Self::RsaSha512),
            SCHEME_DSA_SHA1 => Some(Self::DsaSha1),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be loaded or a signature could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Not `.SIGN.<scheme>.<key name>` with a non-empty key name without `/`.
    #[error("malformed signature entry name `{name}`")]
    MalformedEntryName {
        /// The entry name.
        name: String,
    },
    /// A scheme this verifier does not know or support (`DSA`, or an unknown name).
    #[error("unsupported signature scheme `{scheme}` in `{name}`")]
    UnsupportedScheme {
        /// The entry name.
        name: String,
        /// The scheme part of the name.
        scheme: String,
    },
    /// The signing key is not in the keyring.
    #[error("UNTRUSTED signature: no trusted key named `{key}`")]
    UntrustedKey {
        /// The key name from the entry name.
        key: String,
    },
    /// None of the signature entries names a trusted key.
    #[error("UNTRUSTED signature: none of the signing keys is trusted ({})", keys.join(", "))]
    NoTrustedSignature {
        /// The key names the entries name (or the entry names, when not parseable).
        keys: Vec<String>,
    },
    /// The signature does not verify with the named trusted key.
    #[error("BAD signature `{name}`: it does not verify with trusted key `{key}`")]
    BadSignature {
        /// The entry name.
        name: String,
        /// The key name.
        key: String,
    },
    /// There are no signature entries at all.
    #[error("unsigned: there is no signature entry")]
    Unsigned,
    /// A digest argument of the wrong length for the scheme.
    #[error("{scheme} digest must be {expected} bytes, got {actual}")]
    DigestLength {
        /// The scheme.
        scheme: SignatureScheme,
        /// Expected length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// A key name that cannot appear in a signature entry name (empty or containing `/`).
    #[error("invalid key name `{name}`")]
    InvalidKeyName {
        /// The key name.
        name: String,
    },
    /// Text that is not a PEM `PUBLIC KEY` or `RSA PUBLIC KEY` block.
    #[error("key `{name}` is not a PEM `{PEM_LABEL_SPKI}` or `{PEM_LABEL_PKCS1}` block")]
    NotPemPublicKey {
        /// The key name.
        name: String,
    },
    /// A `PUBLIC KEY` block that is not a valid RSA SubjectPublicKeyInfo.
    #[error("key `{name}` is not a valid RSA public key (SPKI)")]
    InvalidSpkiKey {
        /// The key name.
        name: String,
        /// What the decoder reported.
        #[source]
        source: rsa::pkcs8::spki::Error,
    },
    /// An `RSA PUBLIC KEY` block that is not a valid PKCS#1 RSA public key.
    #[error("key `{name}` is not a valid RSA public key (PKCS#1)")]
    InvalidPkcs1Key {
        /// The key name.
        name: String,
        /// What the decoder reported.
        #[source]
        source: rsa::pkcs1::Error,
    },
    /// A key file that could not be read.
    #[error("cannot read key file {path}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A key file that is not UTF-8 text.
    #[error("key file {path} is not UTF-8 text")]
    KeyNotText {
        /// The file.
        path: PathBuf,
    },
}

/// Splits `.SIGN.<scheme>.<key name>` into the scheme and the key name.
///
/// An unknown scheme is [`SignatureError::UnsupportedScheme`]; a name without the prefix, without
/// a key name or with a `/` is [`SignatureError::MalformedEntryName`].
pub fn parse_signature_name(entry_name: &str) -> Result<(SignatureScheme, &str), SignatureError> {
    let malformed = || SignatureError::MalformedEntryName {
        name: entry_name.to_owned(),
    };
    let rest = entry_name
        .strip_prefix(SIGNATURE_ENTRY_PREFIX)
        .ok_or_else(malformed)?;
    let (scheme, key) = rest.split_once('.').ok_or_else(malformed)?;
    if scheme.is_empty() || key.is_empty() || key.contains('/') {
        return Err(malformed());
    }
    let scheme =
        SignatureScheme::from_name(scheme).ok_or_else(|| SignatureError::UnsupportedScheme {
            name: entry_name.to_owned(),
            scheme: scheme.to_owned(),
        })?;
    Ok((scheme, key))
}

/// Trusted RSA public keys, by the file name signatures refer to them with (for example
/// `alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub`).
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<String, PublicKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a key under `name`.
    pub fn add_key(&mut self, name: &str, key: PublicKey) -> Result<(), SignatureError> {
        if name.is_empty() || name.contains('/') {
            return Err(SignatureError::InvalidKeyName {
                name: name.to_owned(),
            });
        }
        self.keys.insert(name.to_owned(), key);
        Ok(())
    }

    /// Adds a PEM public key: `-----BEGIN PUBLIC KEY-----` (SPKI, what abuild writes) or
    /// `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1). Text before the block is ignored.
    pub fn add_pem(&mut self, name: &str, pem: &str) -> Result<(), SignatureError> {
        let not_pem = || SignatureError::NotPemPublicKey {
            name: name.to_owned(),
        };
        let (label, block) = pem_block(pem).ok_or_else(not_pem)?;
        let key = match label {
            PEM_LABEL_SPKI => PublicKey::from_public_key_pem(block).map_err(|source| {
                SignatureError::InvalidSpkiKey {
                    name: name.to_owned(),
                    source,
                }
            })?,
            PEM_LABEL_PKCS1 => PublicKey::from_pkcs1_pem(block).map_err(|source| {
                SignatureError::InvalidPkcs1Key {
                    name: name.to_owned(),
                    source,
                }
            })?,
            _ => return Err(not_pem()),
        };
        self.add_key(name, key)
    }

    /// Loads a PEM key file under its file name; returns that name.
    pub fn load_file(&mut self, path: &Path) -> Result<String, SignatureError> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| SignatureError::InvalidKeyName {
                name: path.display().to_string(),
            })?
            .to_owned();
        let bytes = std::fs::read(path).map_err(|source| SignatureError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| SignatureError::KeyNotText {
            path: path.to_owned(),
        })?;
        self.add_pem(&name, &text)?;
        Ok(name)
    }

    /// The key named `name`, if trusted.
    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.keys.get(name)
    }

    /// The trusted key names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies one signature entry given the SHA-1 and SHA-256 digests of the signed member's
    /// compressed bytes; returns the name of the key that verified it.
    ///
    /// `RSA512` entries need the SHA-512 digest: use [`Keyring::verify_digests`] for them.
    pub fn verify(
        &self,
        entry_name: &str,
        signature: &[u8],
        digest_sha1: &[u8],
        digest_sha256: &[u8],
    ) -> Result<&str, SignatureError> {
        let (scheme, key_name) = parse_signature_name(entry_name)?;
        let digest = match scheme {
            SignatureScheme::RsaSha1 => digest_sha1,
            SignatureScheme::RsaSha256 => digest_sha256,
            SignatureScheme::RsaSha512 | SignatureScheme::DsaSha1 => {
                return Err(unsupported(entry_name, scheme));
            }
        };
        self.verify_with(entry_name, scheme, key_name, signature, digest)
    }

    /// Verifies one signature entry given all digests of the signed member.
    pub fn verify_digests(
        &self,
        entry_name: &str,
        signature: &[u8],
        digests: &MemberDigests,
    ) -> Result<&str, SignatureError> {
        let (scheme, key_name) = parse_signature_name(entry_name)?;
        let digest: &[u8] = match scheme {
            SignatureScheme::RsaSha1 => &digests.sha1,
            SignatureScheme::RsaSha256 => &digests.sha256,
            SignatureScheme::RsaSha512 => &digests.sha512,
            SignatureScheme::DsaSha1 => return Err(unsupported(entry_name, scheme)),
        };
        self.verify_with(entry_name, scheme, key_name, signature, digest)
    }

    /// Verifies a signature member the way apk-tools does: the first entry with a recognised
    /// scheme whose key is trusted is the one verified, and its result is final (later entries
    /// are not tried). Entries with unrecognised schemes or malformed names are skipped. With no
    /// entries the result is [`SignatureError::Unsigned`]; when no entry names a trusted key it
    /// is [`SignatureError::NoTrustedSignature`].
    pub fn verify_entries(
        &self,
        entries: &[SignatureEntry],
        digests: &MemberDigests,
    ) -> Result<&str, SignatureError> {
        if entries.is_empty() {
            return Err(SignatureError::Unsigned);
        }
        let mut untrusted = Vec::new();
        for entry in entries {
            let Ok((_, key_name)) = parse_signature_name(&entry.name) else {
                untrusted.push(entry.name.clone());
                continue;
            };
            if self.keys.contains_key(key_name) {
                return self.verify_digests(&entry.name, &entry.signature, digests);
            }
            untrusted.push(key_name.to_owned());
        }
        Err(SignatureError::NoTrustedSignature { keys: untrusted })
    }

    fn verify_with(
        &self,
        entry_name: &str,
        scheme: SignatureScheme,
        key_name: &str,
        signature: &[u8],
        digest: &[u8],
    ) -> Result<&str, SignatureError> {
        let (name, key) =
            self.keys
                .get_key_value(key_name)
                .ok_or_else(|| SignatureError::UntrustedKey {
                    key: key_name.to_owned(),
                })?;
        let expected = match scheme {
            SignatureScheme::RsaSha1 | SignatureScheme::DsaSha1 => 20,
            SignatureScheme::RsaSha256 => 32,
            SignatureScheme::RsaSha512 => 64,
        };
        if digest.len() != expected {
            return Err(SignatureError::DigestLength {
                scheme,
                expected,
                actual: digest.len(),
            });
        }
        let verified = match scheme {
            SignatureScheme::RsaSha1 => key.pkcs1v15_verify_prehash::<Sha1>(digest, signature),
            SignatureScheme::RsaSha256 => key.pkcs1v15_verify_prehash::<Sha256>(digest, signature),
            SignatureScheme::RsaSha512 => key.pkcs1v15_verify_prehash::<Sha512>(digest, signature),
            SignatureScheme::DsaSha1 => return Err(unsupported(entry_name, scheme)),
        };
        verified.map_err(|_| SignatureError::BadSignature {
            name: entry_name.to_owned(),
            key: name.clone(),
        })?;
        Ok(name)
    }
}

fn unsupported(entry_name: &str, scheme: SignatureScheme) -> SignatureError {
    SignatureError::UnsupportedScheme {
        name: entry_name.to_owned(),
        scheme: scheme.as_str().to_owned(),
    }
}

/// Finds the first PEM block: its label and the text from `-----BEGIN` to the end of the
/// matching `-----END <label>-----` line.
fn pem_block(text: &str) -> Option<(&str, &str)> {
    let start = text.find(PEM_BEGIN)?;
    let after_begin = &text[start + PEM_BEGIN.len()..];
    let label_len = after_begin.find(PEM_DASHES)?;
    let label = &after_begin[..label_len];
    let end_marker = format!("{PEM_END}{label}{PEM_DASHES}");
    let end = start + text[start..].find(&end_marker)? + end_marker.len();
    Some((label, &text[start..end]))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::{Generate, PrivateKey};
    use sha1::Digest;

    use super::*;

    const KEY_NAME: &str = "builder-6165ee59.rsa.pub";
    const OTHER_KEY_NAME: &str = "other-00000000.rsa.pub";

    fn keys() -> &'static (PrivateKey, PrivateKey) {
        static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
        KEYS.get_or_init(|| (PrivateKey::generate(), PrivateKey::generate()))
    }

    fn spki_pem(key: &PrivateKey) -> String {
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn keyring() -> Keyring {
        let mut keyring = Keyring::new();
        keyring.add_pem(KEY_NAME, &spki_pem(&keys().0)).unwrap();
        keyring
    }

    /// The compressed bytes a signature covers, and their digests.
    fn signed_member() -> (Vec<u8>, MemberDigests) {
        let member = b"\x1f\x8b compressed control member bytes".to_vec();
        let digests = MemberDigests {
            sha1: Sha1::digest(&member).into(),
            sha256: Sha256::digest(&member).into(),
            sha512: Sha512::digest(&member).into(),
            compressed_size: member.len() as u64,
        };
        (member, digests)
    }

    fn sign(key: &PrivateKey, scheme: SignatureScheme, member: &[u8]) -> Vec<u8> {
        match scheme {
            SignatureScheme::RsaSha1 => key.pkcs1v15_sign::<Sha1>(member),
            SignatureScheme::RsaSha256 => key.pkcs1v15_sign::<Sha256>(member),
            SignatureScheme::RsaSha512 => key.pkcs1v15_sign::<Sha512>(member),
            SignatureScheme::DsaSha1 => unreachable!("no DSA signing in tests"),
        }
        .unwrap()
    }

    fn entry(scheme: &str, key_name: &str, signature: Vec<u8>) -> SignatureEntry {
        SignatureEntry {
            name: format!(".SIGN.{scheme}.{key_name}"),
            signature,
        }
    }

    #[test]
    fn verifies_every_rsa_scheme() {
        let keyring = keyring();
        let (member, digests) = signed_member();
        for scheme in [
            SignatureScheme::RsaSha1,
            SignatureScheme::RsaSha256,
            SignatureScheme::RsaSha512,
        ] {
            let signature = sign(&keys().0, scheme, &member);
            let name = format!(".SIGN.{scheme}.{KEY_NAME}");
            assert_eq!(
                keyring.verify_digests(&name, &signature, &digests).unwrap(),
                KEY_NAME
            );
            if scheme != SignatureScheme::RsaSha512 {
                assert_eq!(
                    keyring
                        .verify(&name, &signature, &digests.sha1, &digests.sha256)
                        .unwrap(),
                    KEY_NAME
                );
            }
        }
    }

    #[test]
    fn accepts_pkcs1_pem_and_text_around_the_block() {
        let pem = keys()
            .0
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        let mut keyring = Keyring::new();
        keyring
            .add_pem(KEY_NAME, &format!("comment line\n{pem}\n"))
            .unwrap();
        let (member, digests) = signed_member();
        let signature = sign(&keys().0, SignatureScheme::RsaSha256, &member);
        let name = format!(".SIGN.RSA256.{KEY_NAME}");
        assert_eq!(
            keyring.verify_digests(&name, &signature, &digests).unwrap(),
            KEY_NAME
        );
    }

    #[test]
    fn tampered_data_or_signature_is_a_bad_signature() {
        let keyring = keyring();
        let (member, digests) = signed_member();
        let mut tampered_member = member.clone();
        tampered_member[3] ^= 1;
        let signature = sign(&keys().0, SignatureScheme::RsaSha1, &tampered_member);
        let name = format!(".SIGN.RSA.{KEY_NAME}");
        let error = keyring
            .verify(&name, &signature, &digests.sha1, &digests.sha256)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("BAD signature `{name}`: it does not verify with trusted key `{KEY_NAME}`")
        );

        let mut signature = sign(&keys().0, SignatureScheme::RsaSha1, &member);
        signature[10] ^= 0x40;
        let error = keyring
            .verify(&name, &signature, &digests.sha1, &digests.sha256)
            .unwrap_err();
        assert!(
            matches!(error, SignatureError::BadSignature { .. }),
            "{error}"
        );

        // A SHA-1 signature presented as an RSA256 one.
        let signature = sign(&keys().0, SignatureScheme::RsaSha1, &member);
        let error = keyring
            .verify_digests(&format!(".SIGN.RSA256.{KEY_NAME}"), &signature, &digests)
            .unwrap_err();
        assert!(
            matches!(error, SignatureError::BadSignature { .. }),
            "{error}"
        );
    }

    #[test]
    fn wrong_key_under_a_trusted_name_is_a_bad_signature() {
        let keyring = keyring();
        let (member, digests) = signed_member();
        let signature = sign(&keys().1, SignatureScheme::RsaSha256, &member);
        let error = keyring
            .verify_digests(&format!(".SIGN.RSA256.{KEY_NAME}"), &signature, &digests)
            .unwrap_err();
        assert!(
            matches!(error, SignatureError::BadSignature { .. }),
            "{error}"
        );
    }

    fn check(entry_name: &str, digest_sha1: &[u8], expected: &str) {
        let keyring = keyring();
        let (_, digests) = signed_member();
        let error = keyring
            .verify(entry_name, b"sig", digest_sha1, &digests.sha256)
            .unwrap_err();
        assert_eq!(error.to_string(), expected, "{entry_name}");
    }

    #[test]
    fn entry_name_and_digest_errors() {
        let (_, digests) = signed_member();
        let sha1 = digests.sha1;
        check(
            &format!(".SIGN.RSA.{OTHER_KEY_NAME}"),
            &sha1,
            &format!("UNTRUSTED signature: no trusted key named `{OTHER_KEY_NAME}`"),
        );
        check(
            ".SIGN.RSA.",
            &sha1,
            "malformed signature entry name `.SIGN.RSA.`",
        );
        check(
            ".SIGN.RSA",
            &sha1,
            "malformed signature entry name `.SIGN.RSA`",
        );
        check(
            ".PKGINFO",
            &sha1,
            "malformed signature entry name `.PKGINFO`",
        );
        check(
            ".SIGN.RSA.dir/key.pub",
            &sha1,
            "malformed signature entry name `.SIGN.RSA.dir/key.pub`",
        );
        check(
            &format!(".SIGN.ED25519.{KEY_NAME}"),
            &sha1,
            &format!("unsupported signature scheme `ED25519` in `.SIGN.ED25519.{KEY_NAME}`"),
        );
        check(
            &format!(".SIGN.DSA.{KEY_NAME}"),
            &sha1,
            &format!("unsupported signature scheme `DSA` in `.SIGN.DSA.{KEY_NAME}`"),
        );
        check(
            &format!(".SIGN.RSA512.{KEY_NAME}"),
            &sha1,
            &format!("unsupported signature scheme `RSA512` in `.SIGN.RSA512.{KEY_NAME}`"),
        );
        check(
            &format!(".SIGN.RSA.{KEY_NAME}"),
            &sha1[..19],
            "RSA digest must be 20 bytes, got 19",
        );
    }

    #[test]
    fn entries_follow_apk_selection() {
        let keyring = keyring();
        let (member, digests) = signed_member();
        let good = sign(&keys().0, SignatureScheme::RsaSha256, &member);

        // Unknown keys and schemes are skipped until a trusted key is found.
        let entries = vec![
            entry("RSA", OTHER_KEY_NAME, vec![1, 2, 3]),
            entry("ED25519", KEY_NAME, vec![4]),
            entry("RSA256", KEY_NAME, good.clone()),
        ];
        assert_eq!(
            keyring.verify_entries(&entries, &digests).unwrap(),
            KEY_NAME
        );

        // The first trusted entry decides: a bad one is not rescued by a later good one.
        let entries = vec![
            entry("RSA", KEY_NAME, vec![0; 384]),
            entry("RSA256", KEY_NAME, good),
        ];
        let error = keyring.verify_entries(&entries, &digests).unwrap_err();
        assert!(
            matches!(error, SignatureError::BadSignature { .. }),
            "{error}"
        );

        let entries = vec![
            entry("RSA", OTHER_KEY_NAME, vec![1]),
            entry("RSA256", "third.rsa.pub", vec![1]),
        ];
        let error = keyring.verify_entries(&entries, &digests).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "UNTRUSTED signature: none of the signing keys is trusted ({OTHER_KEY_NAME}, third.rsa.pub)"
            )
        );

        let error = keyring.verify_entries(&[], &digests).unwrap_err();
        assert_eq!(error.to_string(), "unsigned: there is no signature entry");
    }

    #[test]
    fn loads_key_files_and_rejects_bad_keys() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(KEY_NAME);
        std::fs::write(&path, spki_pem(&keys().0)).unwrap();
        let mut keyring = Keyring::new();
        assert_eq!(keyring.load_file(&path).unwrap(), KEY_NAME);
        assert_eq!(keyring.names().collect::<Vec<_>>(), [KEY_NAME]);
        assert_eq!(keyring.len(), 1);
        assert!(keyring.get(KEY_NAME).is_some());

        let missing = directory.path().join("missing.rsa.pub");
        assert!(matches!(
            keyring.load_file(&missing),
            Err(SignatureError::ReadKey { .. })
        ));
        let binary = directory.path().join("binary.rsa.pub");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            keyring.load_file(&binary),
            Err(SignatureError::KeyNotText { .. })
        ));

        let cases: Vec<(&str, String, &str)> = vec![
            (
                "k",
                "not a key".to_owned(),
                "key `k` is not a PEM `PUBLIC KEY` or `RSA PUBLIC KEY` block",
            ),
            (
                "k",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
                "key `k` is not a PEM `PUBLIC KEY` or `RSA PUBLIC KEY` block",
            ),
            (
                "k",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
                "key `k` is not a valid RSA public key (SPKI)",
            ),
            (
                "k",
                "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n".to_owned(),
                "key `k` is not a valid RSA public key (PKCS#1)",
            ),
            ("dir/k", spki_pem(&keys().0), "invalid key name `dir/k`"),
            ("", spki_pem(&keys().0), "invalid key name ``"),
        ];
        for (name, pem, expected) in cases {
            let error = Keyring::new().add_pem(name, &pem).unwrap_err();
            assert_eq!(error.to_string(), expected, "{pem}");
        }
    }
}
