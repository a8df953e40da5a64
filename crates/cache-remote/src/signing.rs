//! Ed25519 signatures of published entries. Only writers hold a secret key (a file named by
//! `GLOVEBOX_CACHE_REMOTE_SIGNING_KEY`); readers verify against named public keys (a file named by
//! `GLOVEBOX_CACHE_REMOTE_TRUSTED_KEYS`, several for rotation), as Nix's binary caches do. Keys
//! are written in hex: `NAME:HEX` for a secret key file, `NAME HEX` a line for trusted keys.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use cache_core::keys::hex;

use crate::error::RemoteSetupError;

/// The secret key this process signs with, and its name.
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The public keys an entry may be signed by.
#[derive(Debug, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, VerifyingKey>,
}

/// A signature, with the name of the key that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The key's name (at most 255 bytes).
    pub key_name: String,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

impl SecretKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<Self, RemoteSetupError> {
        check_name(name, Path::new("-"))?;
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut seed))
            .map_err(|err| RemoteSetupError::KeyFile {
                path: PathBuf::from("/dev/urandom"),
                message: err.to_string(),
            })?;
        Ok(SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a key file (`NAME:HEX`, the form [`SecretKey::to_file_text`] writes).
    pub fn read(path: &Path) -> Result<Self, RemoteSetupError> {
        let text = std::fs::read_to_string(path).map_err(|err| RemoteSetupError::KeyFile {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        let bad = |message: &str| RemoteSetupError::KeyFile {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let (name, hex) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:HEX"))?;
        check_name(name, path)?;
        let seed: [u8; 32] = parse_hex(hex).ok_or_else(|| bad("the key is not 64 hex digits"))?;
        Ok(SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The key file's text: `NAME:HEX` and a newline.
    pub fn to_file_text(&self) -> String {
        format!("{}:{}\n", self.name, hex(&self.key.to_bytes()))
    }

    /// The line a trusted keys file takes for this key: `NAME HEX`.
    pub fn public_line(&self) -> String {
        format!("{} {}", self.name, hex(self.key.verifying_key().as_bytes()))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signed {
        Signed {
            key_name: self.name.clone(),
            signature: self.key.sign(message).to_bytes(),
        }
    }
}

impl TrustedKeys {
    /// Reads a trusted keys file: `NAME HEX` a line; blank lines and `#` comments skipped.
    pub fn read(path: &Path) -> Result<Self, RemoteSetupError> {
        let text = std::fs::read_to_string(path).map_err(|err| RemoteSetupError::KeyFile {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses a trusted keys file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, RemoteSetupError> {
        let mut keys = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: &str| RemoteSetupError::KeyFile {
                path: path.to_owned(),
                message: format!("line {}: {message}", number + 1),
            };
            let (name, hex) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected NAME HEX"))?;
            check_name(name, path)?;
            let bytes: [u8; 32] =
                parse_hex(hex.trim()).ok_or_else(|| bad("the key is not 64 hex digits"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 key"))?;
            keys.insert(name.to_owned(), key);
        }
        if keys.is_empty() {
            return Err(RemoteSetupError::KeyFile {
                path: path.to_owned(),
                message: "no keys: an empty trusted keys file would reject every entry".to_owned(),
            });
        }
        Ok(TrustedKeys { keys })
    }

    /// Whether `signed` is a valid signature of `message` by one of these keys.
    pub fn verify(&self, message: &[u8], signed: &Signed) -> bool {
        self.keys.get(&signed.key_name).is_some_and(|key| {
            key.verify_strict(message, &Signature::from_bytes(&signed.signature))
                .is_ok()
        })
    }
}

fn check_name(name: &str, path: &Path) -> Result<(), RemoteSetupError> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(RemoteSetupError::KeyFile {
            path: path.to_owned(),
            message: format!("key name `{name}` must be 1 to 255 letters, digits, `-`, `_` or `.`"),
        });
    }
    Ok(())
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    cache_core::keys::from_hex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_what_its_public_line_verifies_and_nothing_else() {
        let key = SecretKey::generate("ci-2026").unwrap();
        let again = SecretKey::read_text_for_test(&key.to_file_text());
        let trusted = TrustedKeys::parse(&key.public_line(), Path::new("t")).unwrap();
        let signed = again.sign(b"message");
        assert!(trusted.verify(b"message", &signed));
        assert!(!trusted.verify(b"massage", &signed));
        let other = SecretKey::generate("ci-2026").unwrap().sign(b"message");
        assert!(!trusted.verify(b"message", &other), "same name, other key");
        let unnamed = Signed {
            key_name: "someone".to_owned(),
            ..signed
        };
        assert!(!trusted.verify(b"message", &unnamed));
    }

    #[test]
    fn malformed_key_files_are_refused_naming_the_line() {
        let err = TrustedKeys::parse("# comment\nname nothex\n", Path::new("keys")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = TrustedKeys::parse("\n# only comments\n", Path::new("keys")).unwrap_err();
        assert!(err.to_string().contains("no keys"), "{err}");
        assert!(SecretKey::generate("bad name").is_err());
    }

    impl SecretKey {
        fn read_text_for_test(text: &str) -> SecretKey {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("key");
            std::fs::write(&path, text).unwrap();
            SecretKey::read(&path).unwrap()
        }
    }
}
