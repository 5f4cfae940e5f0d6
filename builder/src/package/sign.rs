//! The RSA key that signs packages and indexes, and the signature member it makes: a tar
//! holding one `.SIGN.RSA256.<key name>` entry (RSASSA-PKCS1-v1_5 over the SHA-256 of the
//! signed member's compressed bytes), gzipped, without the end-of-archive blocks, as melange
//! and `abuild-sign` write it. The key name is the private key's file name plus `.pub`, the
//! name the public key must have in a keyring (`/etc/apk/keys`, apko's `keyring:`).
//!
//! Keys are PEM, PKCS#1 (`RSA PRIVATE KEY`, what `openssl genrsa` and `abuild-keygen` write) or
//! PKCS#8 (`PRIVATE KEY`), unencrypted, at least 2048 bits.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use rsa::PrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey as Pkcs1v15SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::SignatureEncoding;
use rsa::signature::hazmat::PrehashSigner;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use super::PackagingError;
use crate::apk::signature::SCHEME_RSA_SHA256;
use crate::image::entry::LayerEntry;
use crate::image::layer::LayerWriter;

/// Smallest key accepted, in bits.
pub const MIN_KEY_BITS: usize = 2048;

/// Why a private key cannot sign packages.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM is encrypted.
    #[error(
        "encrypted keys are not supported: decrypt it with `openssl rsa -in KEY -out KEY.plain`"
    )]
    Encrypted,
    /// Not an RSA private key in PEM.
    #[error(
        "not an RSA private key in PEM (`RSA PRIVATE KEY` or `PRIVATE KEY`); make one with `openssl genrsa -out NAME.rsa 4096`"
    )]
    NotRsa,
    /// The modulus is too short.
    #[error("a {bits}-bit key is too small: use at least {MIN_KEY_BITS} bits")]
    TooSmall {
        /// The key's size.
        bits: usize,
    },
    /// The file name cannot name the public key in keyrings.
    #[error("the file name must be UTF-8 without `/`: it names the public key in keyrings")]
    FileName,
}

/// An RSA private key and the name its public half goes by.
pub struct SigningKey {
    name: String,
    key: PrivateKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PEM private key; its name is the file name plus `.pub`.
    pub fn load(path: &Path) -> Result<Self, PackagingError> {
        let pem = std::fs::read_to_string(path).map_err(PackagingError::file(path))?;
        let key_error = |source| PackagingError::Key {
            path: path.to_path_buf(),
            source,
        };
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| key_error(KeyError::FileName))?;
        Self::from_pem(&format!("{base}.pub"), &pem).map_err(key_error)
    }

    /// A key from PEM text, named `name` (e.g. `packages.rsa.pub`).
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, KeyError> {
        if pem.contains("ENCRYPTED") {
            return Err(KeyError::Encrypted);
        }
        let key = PrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| PrivateKey::from_pkcs8_pem(pem))
            .map_err(|_| KeyError::NotRsa)?;
        let bits = key.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(KeyError::FileName);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// The public key's name in keyrings.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key as SPKI PEM (`PUBLIC KEY`), what keyrings hold.
    pub fn public_key_pem(&self) -> Result<String, PackagingError> {
        self.key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|source| PackagingError::PublicKey {
                key: self.name.clone(),
                source,
            })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PackagingError> {
        let signer = Pkcs1v15SigningKey::<Sha256>::new(self.key.clone());
        signer
            .sign_prehash(&Sha256::digest(message))
            .map(|signature| signature.to_vec())
            .map_err(|source| PackagingError::Sign {
                key: self.name.clone(),
                source,
            })
    }

    /// The gzipped signature member over `signed` (a member's compressed bytes), its entry
    /// dated `mtime`.
    pub fn signature_member(&self, signed: &[u8], mtime: i64) -> Result<Vec<u8>, PackagingError> {
        let signature = self.sign(signed)?;
        let entry = LayerEntry::file(
            format!(".SIGN.{SCHEME_RSA_SHA256}.{}", self.name),
            signature.len() as u64,
            0o644,
            mtime,
        );
        let mut tar = LayerWriter::new(Vec::new());
        tar.append_file(&entry, signature.as_slice())?;
        gzip_member(&tar.finish_without_trailer()?, "the signature member")
    }
}

/// One gzip member of `bytes` at the best compression, with no name and a zero mtime.
pub fn gzip_member(bytes: &[u8], what: &'static str) -> Result<Vec<u8>, PackagingError> {
    let compress = |source: std::io::Error| PackagingError::Compress { what, source };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).map_err(compress)?;
    encoder.finish().map_err(compress)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::apk::archive::MemberDigests;
    use crate::apk::signature::Keyring;
    use rsa::Generate;
    use rsa::pkcs8::EncodePrivateKey;

    /// A 2048-bit key, generated once per test process.
    pub(crate) fn test_key() -> SigningKey {
        static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let pem = PEM.get_or_init(|| {
            let key = PrivateKey::generate();
            key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
        });
        SigningKey::from_pem("test.rsa.pub", pem).unwrap()
    }

    pub(crate) fn digests(bytes: &[u8]) -> MemberDigests {
        MemberDigests {
            sha1: <sha1::Sha1 as Digest>::digest(bytes).into(),
            sha256: Sha256::digest(bytes).into(),
            sha512: sha2::Sha512::digest(bytes).into(),
            compressed_size: bytes.len() as u64,
        }
    }

    #[test]
    fn signature_verifies_with_the_public_key_under_its_name() {
        let key = test_key();
        let signed = b"control member bytes";
        let signature = key.sign(signed).unwrap();
        let mut keyring = Keyring::new();
        keyring
            .add_pem(key.name(), &key.public_key_pem().unwrap())
            .unwrap();
        let name = format!(".SIGN.RSA256.{}", key.name());
        assert_eq!(
            keyring
                .verify_digests(&name, &signature, &digests(signed))
                .unwrap(),
            "test.rsa.pub"
        );
        assert!(
            keyring
                .verify_digests(&name, &signature, &digests(b"other"))
                .is_err()
        );
        // Deterministic: PKCS#1 v1.5 has no randomness.
        assert_eq!(signature, key.sign(signed).unwrap());
    }

    #[test]
    fn bad_keys_are_explained() {
        let cases = [
            ("", "not an RSA private key"),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", "encrypted keys"),
        ];
        for (pem, expected) in cases {
            let error = SigningKey::from_pem("k.pub", pem).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let pem = test_key().key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let error = SigningKey::from_pem("a/b.pub", &pem).unwrap_err();
        assert!(matches!(error, KeyError::FileName), "{error}");
    }
}
