//! ECDSA P-256 signing keys in the PEM formats cosign reads and writes: its scrypt +
//! NaCl-secretbox encrypted private key, plain PKCS#8 and SEC1 private keys, and SPKI public keys
//! (`cosign.pub`); it does not ask for passwords or read files, callers pass bytes in.

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use serde::{Deserialize, Serialize};
use xsalsa20poly1305::aead::{Aead as _, KeyInit as _};
use zeroize::Zeroizing;

/// PEM label cosign writes for an encrypted private key today.
pub const SIGSTORE_ENCRYPTED_PEM_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign releases wrote for an encrypted private key.
pub const COSIGN_ENCRYPTED_PEM_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// PEM label of an unencrypted PKCS#8 private key.
pub const PKCS8_PEM_LABEL: &str = "PRIVATE KEY";
/// PEM label of an unencrypted SEC1 elliptic-curve private key.
pub const SEC1_PEM_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of an SPKI public key, as in `cosign.pub`.
pub const PUBLIC_KEY_PEM_LABEL: &str = "PUBLIC KEY";

/// Key-derivation function name in the encrypted key document.
const KDF_SCRYPT: &str = "scrypt";
/// Cipher name in the encrypted key document.
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
/// scrypt cost parameters (N, r, p) cosign accepts, the first being the one it writes.
const SCRYPT_ACCEPTED_PARAMS: [(u64, u32, u32); 3] =
    [(32_768, 8, 1), (65_536, 8, 1), (131_072, 8, 1)];
/// Length of the random scrypt salt.
const SALT_LEN: usize = 32;
/// Length of the XSalsa20 nonce.
const NONCE_LEN: usize = 24;
/// Length of the derived secretbox key.
const SECRETBOX_KEY_LEN: usize = 32;
/// Largest PEM document accepted, far above any real key.
const MAX_PEM_LEN: usize = 64 * 1024;

/// Errors reading, writing or using a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input is not a single well-formed PEM document.
    #[error("malformed pem document")]
    Pem {
        /// What the PEM decoder rejected.
        source: pem_rfc7468::Error,
    },
    /// The input exceeds the size limit.
    #[error("pem document of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The PEM block is not a kind of key this module reads here.
    #[error("unsupported pem block type {label:?}, expected {expected}")]
    UnsupportedPemLabel {
        /// The label found.
        label: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// An encrypted key was given without a password.
    #[error("the {label:?} key is encrypted and no password was given")]
    PasswordRequired {
        /// The PEM label of the key.
        label: String,
    },
    /// The encrypted key body is not the expected JSON document.
    #[error("encrypted key body is not valid json")]
    EncryptedKeyJson {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The encrypted key names a key-derivation function other than scrypt.
    #[error("unsupported key derivation function {name:?}, expected {KDF_SCRYPT:?}")]
    UnsupportedKdf {
        /// The name found.
        name: String,
    },
    /// The encrypted key names a cipher other than NaCl secretbox.
    #[error("unsupported cipher {name:?}, expected {CIPHER_SECRETBOX:?}")]
    UnsupportedCipher {
        /// The name found.
        name: String,
    },
    /// The scrypt parameters are not among the ones cosign writes.
    #[error("unsupported scrypt parameters N={n} r={r} p={p}")]
    UnsupportedScryptParams {
        /// Cost.
        n: u64,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// A base64 field of the encrypted key does not decode.
    #[error("field {field} of the encrypted key is not valid base64")]
    Base64 {
        /// Field name.
        field: &'static str,
        /// The decoding error.
        source: base64::DecodeError,
    },
    /// A field of the encrypted key has the wrong length.
    #[error("field {field} of the encrypted key is {actual} bytes, expected {expected}")]
    FieldLength {
        /// Field name.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// The secret scalar is not 32 bytes encoding a number in `1..n`.
    #[error("invalid p-256 secret scalar ({len} bytes)")]
    InvalidScalar {
        /// Length of the rejected scalar.
        len: usize,
    },
    /// Authenticated decryption failed.
    #[error("cannot decrypt the private key: wrong password or corrupted key")]
    WrongPassword,
    /// Authenticated encryption failed.
    #[error("cannot encrypt the private key")]
    Encrypt,
    /// The decrypted or plain PKCS#8 document is not an ECDSA P-256 private key.
    #[error("invalid pkcs#8 p-256 private key")]
    Pkcs8 {
        /// The decoding error.
        source: p256::pkcs8::Error,
    },
    /// The SEC1 document is not a P-256 private key.
    #[error("invalid sec1 p-256 private key")]
    Sec1 {
        /// The decoding error.
        source: p256::elliptic_curve::DecodeError,
    },
    /// The public key document is not a P-256 SPKI public key.
    #[error("invalid p-256 public key")]
    PublicKey {
        /// The decoding error.
        source: p256::pkcs8::spki::Error,
    },
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Random {
        /// The generator's error.
        source: getrandom::Error,
    },
    /// The signature bytes are not an ASN.1 DER ECDSA signature.
    #[error("malformed ecdsa signature ({len} bytes): not ASN.1 DER")]
    MalformedSignature {
        /// Length of the rejected signature.
        len: usize,
    },
    /// The signature does not verify with this key.
    #[error("signature does not verify with the public key")]
    BadSignature,
}

/// An ECDSA P-256 private key that signs with SHA-256 and writes ASN.1 DER signatures, as cosign.
#[derive(Clone)]
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: p256::ecdsa::VerifyingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VerifyingKey({})",
            hex::encode(self.inner.to_sec1_point(true).as_bytes())
        )
    }
}

/// The JSON document inside an encrypted cosign key.
#[derive(Debug, Serialize, Deserialize)]
struct EncryptedKeyDocument {
    kdf: KdfSection,
    cipher: CipherSection,
    ciphertext: String,
}

/// Key-derivation part of [`EncryptedKeyDocument`].
#[derive(Debug, Serialize, Deserialize)]
struct KdfSection {
    name: String,
    params: ScryptParams,
    salt: String,
}

/// scrypt cost parameters as cosign spells them.
#[derive(Debug, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

/// Cipher part of [`EncryptedKeyDocument`].
#[derive(Debug, Serialize, Deserialize)]
struct CipherSection {
    name: String,
    nonce: String,
}

impl SigningKey {
    /// Generates a fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut()).map_err(|source| KeyError::Random { source })?;
            // A 32-byte string is a valid scalar unless it is zero or not below the group order,
            // which happens with probability about 2^-32; draw again in that case.
            if let Ok(inner) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
                return Ok(Self { inner });
            }
        }
    }

    /// Builds a key from its 32-byte big-endian secret scalar.
    pub fn from_scalar_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::InvalidScalar { len: bytes.len() });
        }
        p256::ecdsa::SigningKey::from_slice(bytes)
            .map(|inner| Self { inner })
            .map_err(|_| KeyError::InvalidScalar { len: bytes.len() })
    }

    /// Reads a private key PEM: cosign's encrypted key (`ENCRYPTED SIGSTORE PRIVATE KEY` or
    /// `ENCRYPTED COSIGN PRIVATE KEY`, which needs `password`), PKCS#8 `PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY` (for which `password` is ignored).
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, body) = decode_pem(pem)?;
        let body = Zeroizing::new(body);
        match label.as_str() {
            SIGSTORE_ENCRYPTED_PEM_LABEL | COSIGN_ENCRYPTED_PEM_LABEL => {
                let password = password.ok_or_else(|| KeyError::PasswordRequired {
                    label: label.clone(),
                })?;
                let der = decrypt_key_document(&body, password)?;
                Self::from_pkcs8_der(&der)
            }
            PKCS8_PEM_LABEL => Self::from_pkcs8_der(&body),
            SEC1_PEM_LABEL => {
                let secret = p256::SecretKey::from_sec1_der(&body)
                    .map_err(|source| KeyError::Sec1 { source })?;
                Ok(Self {
                    inner: p256::ecdsa::SigningKey::from(&secret),
                })
            }
            _ => Err(KeyError::UnsupportedPemLabel {
                label,
                expected: "an encrypted cosign key, PRIVATE KEY or EC PRIVATE KEY",
            }),
        }
    }

    /// Reads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .map(|inner| Self { inner })
            .map_err(|source| KeyError::Pkcs8 { source })
    }

    /// The PKCS#8 DER encoding of this key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let document = self
            .inner
            .to_pkcs8_der()
            .map_err(|source| KeyError::Pkcs8 { source })?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// This key as an unencrypted PKCS#8 `PRIVATE KEY` PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.to_pkcs8_der()?;
        encode_pem(PKCS8_PEM_LABEL, &der).map(Zeroizing::new)
    }

    /// This key as cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` PEM, encrypted under `password` with
    /// a fresh random salt and nonce.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut salt).map_err(|source| KeyError::Random { source })?;
        getrandom::fill(&mut nonce).map_err(|source| KeyError::Random { source })?;
        self.to_encrypted_pem_with(password, &salt, &nonce)
    }

    /// [`Self::to_encrypted_pem`] with a caller-chosen salt and nonce (reproducible output).
    fn to_encrypted_pem_with(
        &self,
        password: &[u8],
        salt: &[u8; SALT_LEN],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<String, KeyError> {
        let der = self.to_pkcs8_der()?;
        let body = encrypt_key_document(&der, password, salt, nonce)?;
        encode_pem(SIGSTORE_ENCRYPTED_PEM_LABEL, &body)
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// Signs `message` with ECDSA P-256 over SHA-256 (deterministic nonce per RFC 6979) and
    /// returns the ASN.1 DER signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::DerSignature = self.inner.sign(message);
        signature.as_bytes().to_vec()
    }
}

impl VerifyingKey {
    /// Reads a `PUBLIC KEY` (SPKI) PEM such as `cosign.pub`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (label, body) = decode_pem(pem)?;
        if label != PUBLIC_KEY_PEM_LABEL {
            return Err(KeyError::UnsupportedPemLabel {
                label,
                expected: "PUBLIC KEY",
            });
        }
        Self::from_spki_der(&body)
    }

    /// Reads an SPKI DER public key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(|inner| Self { inner })
            .map_err(|source| KeyError::PublicKey { source })
    }

    /// The SPKI DER encoding of this key.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let document = self
            .inner
            .to_public_key_der()
            .map_err(|source| KeyError::PublicKey { source })?;
        Ok(document.as_bytes().to_vec())
    }

    /// This key as a `PUBLIC KEY` PEM, the content of `cosign.pub`.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        encode_pem(PUBLIC_KEY_PEM_LABEL, &self.to_spki_der()?)
    }

    /// Checks an ASN.1 DER ECDSA P-256 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<(), KeyError> {
        let signature = p256::ecdsa::Signature::from_der(der_signature).map_err(|_| {
            KeyError::MalformedSignature {
                len: der_signature.len(),
            }
        })?;
        self.inner
            .verify(message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// Decodes one PEM document, tolerating text around the armour, and returns its label and body.
fn decode_pem(pem: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(KeyError::TooLarge {
            len: pem.len(),
            max: MAX_PEM_LEN,
        });
    }
    let start = find(pem, b"-----BEGIN ").unwrap_or(0);
    let armoured = &pem[start..];
    // Cut after the end line so trailing text does not confuse the strict decoder.
    let armoured = match find(armoured, b"-----END ") {
        Some(end) => {
            let after = end + b"-----END ".len();
            let close =
                find(&armoured[after..], b"-----").map_or(armoured.len(), |i| after + i + 5);
            &armoured[..close]
        }
        None => armoured,
    };
    let (label, body) =
        pem_rfc7468::decode_vec(armoured).map_err(|source| KeyError::Pem { source })?;
    Ok((label.to_owned(), body))
}

/// Encodes `body` as a PEM document with LF line endings and 64-column lines.
fn encode_pem(label: &str, body: &[u8]) -> Result<String, KeyError> {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, body)
        .map_err(|source| KeyError::Pem { source })
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Derives the secretbox key from `password` with scrypt.
fn derive_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let n = 1u64 << log_n;
    let params = scrypt::Params::new(log_n, r, p)
        .map_err(|_| KeyError::UnsupportedScryptParams { n, r, p })?;
    let mut key = Zeroizing::new([0u8; SECRETBOX_KEY_LEN]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|_| KeyError::UnsupportedScryptParams { n, r, p })?;
    Ok(key)
}

/// Encrypts `plaintext` into cosign's encrypted-key JSON document (the PEM body).
fn encrypt_key_document(
    plaintext: &[u8],
    password: &[u8],
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyError> {
    let (n, r, p) = SCRYPT_ACCEPTED_PARAMS[0];
    let key = derive_key(password, salt, n.trailing_zeros() as u8, r, p)?;
    let cipher =
        xsalsa20poly1305::XSalsa20Poly1305::new(xsalsa20poly1305::Key::from_slice(key.as_ref()));
    let ciphertext = cipher
        .encrypt(xsalsa20poly1305::Nonce::from_slice(nonce), plaintext)
        .map_err(|_| KeyError::Encrypt)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let document = EncryptedKeyDocument {
        kdf: KdfSection {
            name: KDF_SCRYPT.to_owned(),
            params: ScryptParams { n, r, p },
            salt: b64.encode(salt),
        },
        cipher: CipherSection {
            name: CIPHER_SECRETBOX.to_owned(),
            nonce: b64.encode(nonce),
        },
        ciphertext: b64.encode(ciphertext),
    };
    serde_json::to_vec(&document).map_err(|source| KeyError::EncryptedKeyJson { source })
}

/// Decrypts cosign's encrypted-key JSON document with `password`.
fn decrypt_key_document(document: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let document: EncryptedKeyDocument =
        serde_json::from_slice(document).map_err(|source| KeyError::EncryptedKeyJson { source })?;
    if document.kdf.name != KDF_SCRYPT {
        return Err(KeyError::UnsupportedKdf {
            name: document.kdf.name,
        });
    }
    if document.cipher.name != CIPHER_SECRETBOX {
        return Err(KeyError::UnsupportedCipher {
            name: document.cipher.name,
        });
    }
    let ScryptParams { n, r, p } = document.kdf.params;
    if !SCRYPT_ACCEPTED_PARAMS.contains(&(n, r, p)) {
        return Err(KeyError::UnsupportedScryptParams { n, r, p });
    }
    let salt = decode_field("kdf.salt", &document.kdf.salt)?;
    let nonce = decode_field("cipher.nonce", &document.cipher.nonce)?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyError::FieldLength {
            field: "cipher.nonce",
            expected: NONCE_LEN,
            actual: nonce.len(),
        });
    }
    let ciphertext = decode_field("ciphertext", &document.ciphertext)?;
    let key = derive_key(password, &salt, n.trailing_zeros() as u8, r, p)?;
    let cipher =
        xsalsa20poly1305::XSalsa20Poly1305::new(xsalsa20poly1305::Key::from_slice(key.as_ref()));
    cipher
        .decrypt(
            xsalsa20poly1305::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map(Zeroizing::new)
        .map_err(|_| KeyError::WrongPassword)
}

/// Decodes a standard-alphabet padded base64 field, as Go's `encoding/json` writes `[]byte`.
fn decode_field(field: &'static str, value: &str) -> Result<Vec<u8>, KeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|source| KeyError::Base64 { field, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Secret scalar of the key in the DSSE protocol test vector.
    const DSSE_VECTOR_SCALAR: &str =
        "d73ec437fd6346e3619c5ebfdfff0f6916804955ad32ac9ac492b0ede1f6ffb7";

    fn vector_key() -> SigningKey {
        SigningKey::from_scalar_bytes(&hex::decode(DSSE_VECTOR_SCALAR).unwrap()).unwrap()
    }

    #[test]
    fn decrypts_reference_encrypted_document() {
        // Vector from go-securesystemslib's `encrypted` package (the code cosign uses).
        let document = br#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;
        let plaintext = decrypt_key_document(document, b"supersecret").unwrap();
        assert_eq!(plaintext.as_slice(), b"reallyimportant");
        assert!(matches!(
            decrypt_key_document(document, b"supersecreT"),
            Err(KeyError::WrongPassword)
        ));
    }

    #[test]
    fn encrypted_pem_round_trip_and_wrong_password() {
        let key = vector_key();
        let pem = key.to_encrypted_pem(b"correct horse").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = SigningKey::from_pem(pem.as_bytes(), Some(b"correct horse")).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
        let wrong = SigningKey::from_pem(pem.as_bytes(), Some(b"wrong")).unwrap_err();
        assert!(matches!(wrong, KeyError::WrongPassword));
        assert_eq!(
            wrong.to_string(),
            "cannot decrypt the private key: wrong password or corrupted key"
        );
        let missing = SigningKey::from_pem(pem.as_bytes(), None).unwrap_err();
        assert!(
            matches!(missing, KeyError::PasswordRequired { .. }),
            "{missing}"
        );
    }

    #[test]
    fn encrypted_pem_is_reproducible_for_fixed_salt_and_nonce() {
        let key = vector_key();
        let salt = [7u8; SALT_LEN];
        let nonce = [9u8; NONCE_LEN];
        let first = key.to_encrypted_pem_with(b"pw", &salt, &nonce).unwrap();
        let second = key.to_encrypted_pem_with(b"pw", &salt, &nonce).unwrap();
        assert_eq!(first, second);
        let (label, body) = decode_pem(first.as_bytes()).unwrap();
        assert_eq!(label, SIGSTORE_ENCRYPTED_PEM_LABEL);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["kdf"]["name"], "scrypt");
        assert_eq!(
            json["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(
            json["kdf"]["salt"],
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
        );
        assert_eq!(json["cipher"]["name"], "nacl/secretbox");
        assert_eq!(json["cipher"]["nonce"], "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ");
        // Field order matches what cosign writes.
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"#),
            "{text}"
        );
        // Older label is accepted as well.
        let legacy = first.replace(SIGSTORE_ENCRYPTED_PEM_LABEL, COSIGN_ENCRYPTED_PEM_LABEL);
        let back = SigningKey::from_pem(legacy.as_bytes(), Some(b"pw")).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
    }

    #[test]
    fn rejects_hostile_encrypted_documents() {
        fn check(document: &str, expected: &str) {
            let pem = encode_pem(SIGSTORE_ENCRYPTED_PEM_LABEL, document.as_bytes()).unwrap();
            let error = SigningKey::from_pem(pem.as_bytes(), Some(b"pw"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{document}: {error}");
        }
        let good_salt = "N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g=";
        let good_nonce = "2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik";
        check("{", "not valid json");
        check(
            &format!(
                r#"{{"kdf":{{"name":"argon2","params":{{"N":32768,"r":8,"p":1}},"salt":"{good_salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{good_nonce}"}},"ciphertext":"AA=="}}"#
            ),
            "unsupported key derivation function \"argon2\"",
        );
        check(
            &format!(
                r#"{{"kdf":{{"name":"scrypt","params":{{"N":32768,"r":8,"p":1}},"salt":"{good_salt}"}},"cipher":{{"name":"aes-gcm","nonce":"{good_nonce}"}},"ciphertext":"AA=="}}"#
            ),
            "unsupported cipher \"aes-gcm\"",
        );
        check(
            &format!(
                r#"{{"kdf":{{"name":"scrypt","params":{{"N":1099511627776,"r":8,"p":1}},"salt":"{good_salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{good_nonce}"}},"ciphertext":"AA=="}}"#
            ),
            "unsupported scrypt parameters N=1099511627776",
        );
        check(
            &format!(
                r#"{{"kdf":{{"name":"scrypt","params":{{"N":32768,"r":8,"p":1}},"salt":"{good_salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"AAAA"}},"ciphertext":"AA=="}}"#
            ),
            "field cipher.nonce of the encrypted key is 3 bytes, expected 24",
        );
        check(
            &format!(
                r#"{{"kdf":{{"name":"scrypt","params":{{"N":32768,"r":8,"p":1}},"salt":"***"}},"cipher":{{"name":"nacl/secretbox","nonce":"{good_nonce}"}},"ciphertext":"AA=="}}"#
            ),
            "field kdf.salt of the encrypted key is not valid base64",
        );
        check(
            &format!(
                r#"{{"kdf":{{"name":"scrypt","params":{{"N":32768,"r":8,"p":1}},"salt":"{good_salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{good_nonce}"}},"ciphertext":""}}"#
            ),
            "wrong password or corrupted key",
        );
    }

    #[test]
    fn reads_plain_pkcs8_sec1_and_public_pems() {
        let key = vector_key();
        let pkcs8 = key.to_pkcs8_pem().unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let from_pkcs8 = SigningKey::from_pem(pkcs8.as_bytes(), None).unwrap();
        assert_eq!(from_pkcs8.verifying_key(), key.verifying_key());

        let secret =
            p256::SecretKey::from_slice(&hex::decode(DSSE_VECTOR_SCALAR).unwrap()).unwrap();
        let sec1 = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let with_text = format!("comment before\n{}\ntrailing", sec1.as_str());
        let from_sec1 = SigningKey::from_pem(with_text.as_bytes(), Some(b"ignored")).unwrap();
        assert_eq!(from_sec1.verifying_key(), key.verifying_key());

        let public = key.verifying_key().to_pem().unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            VerifyingKey::from_pem(public.as_bytes()).unwrap(),
            key.verifying_key()
        );
    }

    #[test]
    fn rejects_wrong_pem_kinds() {
        fn check(input: &[u8], expected: &str) {
            let private = SigningKey::from_pem(input, Some(b"pw"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(private.contains(expected), "{private}");
        }
        let public = vector_key().verifying_key().to_pem().unwrap();
        check(
            public.as_bytes(),
            "unsupported pem block type \"PUBLIC KEY\"",
        );
        check(b"not a pem at all", "malformed pem document");
        check(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "invalid pkcs#8",
        );
        check(&vec![b'a'; MAX_PEM_LEN + 1], "exceeds the 65536 byte limit");
        let private = vector_key().to_pkcs8_pem().unwrap();
        let error = VerifyingKey::from_pem(private.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unsupported pem block type \"PRIVATE KEY\""),
            "{error}"
        );
    }

    #[test]
    fn signs_and_verifies_der_signatures() {
        let key = vector_key();
        let signature = key.sign(b"payload");
        assert_eq!(signature[0], 0x30, "DER SEQUENCE");
        key.verifying_key().verify(b"payload", &signature).unwrap();
        assert!(matches!(
            key.verifying_key().verify(b"payloaD", &signature),
            Err(KeyError::BadSignature)
        ));
        assert!(matches!(
            key.verifying_key().verify(b"payload", &signature[1..]),
            Err(KeyError::MalformedSignature { .. })
        ));
        assert!(matches!(
            SigningKey::from_scalar_bytes(&[0u8; 32]),
            Err(KeyError::InvalidScalar { len: 32 })
        ));
        assert!(matches!(
            SigningKey::from_scalar_bytes(&[1u8; 31]),
            Err(KeyError::InvalidScalar { len: 31 })
        ));
        let other = SigningKey::generate().unwrap();
        assert_ne!(other.verifying_key(), key.verifying_key());
        assert!(
            other
                .verifying_key()
                .verify(b"payload", &signature)
                .is_err()
        );
    }
}
