//! `contents.runtime_keyring`: inline public keys written to `/etc/apk/keys` after the packages
//! are installed, as apko's `installRuntimeKeyring` (`pkg/build/runtime_keyring.go`) writes
//! them. They are a runtime trust anchor for `runtime_repositories` only: resolution never
//! sees them.

use rsa::pkcs8::DecodePublicKey as _;

use securebuild_crds::image_config::RuntimeKeyringEntry;

use super::entry::LayerEntry;
use super::pem;
use super::tree::{Content, Node, Tree};

/// The directory apk reads trusted keys from.
pub const APK_KEYS_DIR: &str = "etc/apk/keys";

/// Why a runtime key could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeKeyringError {
    /// Content that is not exactly one PEM RSA public key.
    #[error(
        "runtime_keyring entry `{name}` is invalid: {problem}; paste one PEM RSA public key (-----BEGIN PUBLIC KEY-----)"
    )]
    Invalid {
        /// The entry's name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A name that is already a file under `/etc/apk/keys` (a build keyring key, or a package's).
    #[error(
        "runtime_keyring entry `{name}` collides with the existing /etc/apk/keys/{name}; give the runtime key another name"
    )]
    Collision {
        /// The entry's name.
        name: String,
    },
}

/// Writes the keys, in name order, as 0644 root-owned files.
pub fn install_runtime_keyring(
    tree: &mut Tree,
    keys: &[RuntimeKeyringEntry],
    mtime: i64,
) -> Result<(), RuntimeKeyringError> {
    if keys.is_empty() {
        return Ok(());
    }
    if !tree.contains(APK_KEYS_DIR) {
        tree.ensure_parents(APK_KEYS_DIR, mtime);
        tree.insert(Node {
            entry: LayerEntry::directory(APK_KEYS_DIR, 0o755, mtime),
            content: Content::Empty,
            owner: None,
        });
    }
    let mut keys: Vec<&RuntimeKeyringEntry> = keys.iter().collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    for key in keys {
        let encoded =
            parse_public_key(&key.content).map_err(|problem| RuntimeKeyringError::Invalid {
                name: key.name.clone(),
                problem,
            })?;
        // The name is validated (no `/`, no leading `.`). Anything already there, even a
        // symlink, is a collision, as in apko.
        let path = format!("{APK_KEYS_DIR}/{}", key.name);
        if tree.contains(&path) {
            return Err(RuntimeKeyringError::Collision {
                name: key.name.clone(),
            });
        }
        tree.put_file(&path, encoded.into_bytes(), 0o644, 0, 0, mtime);
    }
    Ok(())
}

/// One PEM `PUBLIC KEY` block holding an RSA key, re-encoded (text around it dropped).
fn parse_public_key(text: &str) -> Result<String, &'static str> {
    if text.is_empty() {
        return Err("no key data provided");
    }
    let blocks = pem::decode_all(text);
    let block = match blocks.as_slice() {
        [] => return Err("no PEM block found"),
        [one] => one,
        [first, ..] if first.label != "PUBLIC KEY" => return Err("expected a PUBLIC KEY block"),
        _ => return Err("multiple PEM blocks found; only one is allowed"),
    };
    if block.label != "PUBLIC KEY" {
        return Err("expected a PUBLIC KEY block");
    }
    rsa::PublicKey::from_public_key_der(&block.bytes).map_err(|_| "not an RSA public key")?;
    Ok(pem::encode("PUBLIC KEY", &block.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::NoSpools;

    /// The key of apko's `examples/runtime-keyring.yaml`.
    const KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtfLcP/XCqh9zuL8J1sIu
ADYZt1xafrimFkOMHgldT+0Mpi3ORy6lf29Ccc+4Hfe2P/ImlB89THtIjMNGk58C
fZVod8z2cc52aV5YvNbFDxSoOPSc4D+IqL9bE6ICc0HS2kef1Rm6ZY1G8JoNs2zR
nquL6XyV7+gPC9KNhGi16f8qyhvMy3dkGPmqtXuI+j7p0XtDB1/e3xe+Mg+kQ47A
DiE2XB+9nbvOKOXuuUscerhEnvYPLRjDQECkRzLN76CPJsGwoBn7In/kMFecQuLD
LbYPdu/s8Pvz4wDurWOzUShbrF6Ka9ARRZVN57+4u6k+zuIi0XF5UCHicrjl6jYR
FQIDAQAB
-----END PUBLIC KEY-----
";

    fn entry(name: &str, content: &str) -> RuntimeKeyringEntry {
        RuntimeKeyringEntry {
            name: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn keys_are_written_canonically_and_never_over_existing_ones() {
        let mut tree = Tree::new();
        let keys = [
            entry("z.rsa.pub", &format!("comment\n{KEY}trailing")),
            entry("a.rsa.pub", KEY),
        ];
        install_runtime_keyring(&mut tree, &keys, 5).unwrap();
        for name in ["a.rsa.pub", "z.rsa.pub"] {
            let path = format!("{APK_KEYS_DIR}/{name}");
            assert_eq!(
                tree.read(&path, &NoSpools).unwrap().unwrap(),
                KEY.as_bytes()
            );
            let e = &tree.get(&path).unwrap().entry;
            assert_eq!((e.mode, e.uid, e.mtime), (0o644, 0, 5));
        }
        assert_eq!(tree.get(APK_KEYS_DIR).unwrap().entry.mode, 0o755);

        let error = install_runtime_keyring(&mut tree, &[entry("a.rsa.pub", KEY)], 5)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("collides with the existing /etc/apk/keys/a.rsa.pub"),
            "{error}"
        );

        for (content, problem) in [
            ("", "no key data"),
            ("junk", "no PEM block"),
            (&format!("{KEY}{KEY}") as &str, "multiple PEM blocks"),
            (
                &pem::encode("CERTIFICATE", b"x") as &str,
                "expected a PUBLIC KEY",
            ),
            (
                &pem::encode("PUBLIC KEY", b"x") as &str,
                "not an RSA public key",
            ),
        ] {
            let error = install_runtime_keyring(&mut Tree::new(), &[entry("k", content)], 5)
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{error}");
        }
    }
}
