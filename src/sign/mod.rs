//! Cosign-compatible image signatures: the signing key (`[settings] sign`), the
//! simple-signing payload naming a repository and a manifest digest, and ECDSA
//! P-256 / SHA-256 signatures over its exact bytes.
//!
//! Signing is deterministic (RFC 6979 nonces): the same key signs the same
//! payload to the same bytes, so a re-push finds every signature already there
//! and uploads nothing. Where signatures live in a registry is the business of
//! the registry client's `signatures` module.
//!
//! Key material never leaves [`Signer`]: its `Debug` prints the public key's
//! fingerprint only, and no error carries key bytes or the password.
//!
//! Whoever checks a pushed image has the public key only: [`KeyFile`] reads
//! either half, and a [`PublicKey`] verifies without the private key or its
//! password.

mod key;

pub use key::{KeyError, KeyProblem, PASSWORD_ENV};

use std::fmt;
use std::path::Path;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey as _;

/// A loaded signing key. Cheap to share; prints no secret.
pub struct Signer {
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key().fingerprint())
            .finish()
    }
}

/// What a key file holds: a private key signs (and its public half
/// verifies); a public key (`cosign.pub`) only verifies.
#[derive(Debug)]
pub enum KeyFile {
    /// A private key.
    Private(Signer),
    /// A `PUBLIC KEY` alone.
    Public(PublicKey),
}

impl KeyFile {
    /// Loads the key at `path`: a private key in PEM (PKCS#8, SEC1, encrypted
    /// PKCS#8, cosign's; the password from [`PASSWORD_ENV`]) or a `PUBLIC KEY`.
    /// `at` is where it was asked for (`images.toml:12:8`, `verify --key`),
    /// for the error.
    pub fn load(path: &Path, at: &str) -> Result<KeyFile, KeyError> {
        let password = std::env::var_os(PASSWORD_ENV).map(|p| p.to_string_lossy().into_owned());
        key::load(path, password.as_deref())
            .map(KeyFile::from)
            .map_err(|problem| KeyError {
                path: path.to_path_buf(),
                at: at.to_owned(),
                problem,
            })
    }

    /// From PEM text, with an optional password (tests and library users).
    pub fn from_pem(pem: &str, password: Option<&str>) -> Result<KeyFile, KeyProblem> {
        key::parse_any(pem, password).map(KeyFile::from)
    }

    /// The key that verifies: the public half of either.
    pub fn public_key(&self) -> PublicKey {
        match self {
            KeyFile::Private(s) => s.public_key(),
            KeyFile::Public(p) => p.clone(),
        }
    }
}

impl From<key::Parsed> for KeyFile {
    fn from(parsed: key::Parsed) -> KeyFile {
        match parsed {
            key::Parsed::Private(key) => KeyFile::Private(Signer { key }),
            key::Parsed::Public(key) => KeyFile::Public(PublicKey(key)),
        }
    }
}

impl Signer {
    /// Loads the private key at `path` (see [`KeyFile::load`]); a public key
    /// there is [`KeyProblem::PublicOnly`]: it cannot sign.
    pub fn load(path: &Path, at: &str) -> Result<Signer, KeyError> {
        match KeyFile::load(path, at)? {
            KeyFile::Private(s) => Ok(s),
            KeyFile::Public(_) => Err(KeyError {
                path: path.to_path_buf(),
                at: at.to_owned(),
                problem: KeyProblem::PublicOnly,
            }),
        }
    }

    /// From PEM text, with an optional password (tests and library users).
    pub fn from_pem(pem: &str, password: Option<&str>) -> Result<Signer, KeyProblem> {
        key::parse(pem, password).map(|key| Signer { key })
    }

    /// The DER (ASN.1) ECDSA signature over `payload`'s exact bytes, SHA-256.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(payload);
        sig.to_der().as_bytes().to_vec()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.key.verifying_key())
    }
}

/// An ECDSA P-256 public key: what verifies a [`Signer`]'s signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), what `cosign verify
    /// --key` and `openssl dgst -verify` read.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap_or_default()
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo: names the key in messages.
    pub fn fingerprint(&self) -> String {
        let der = self.0.to_public_key_der().map(|d| d.into_vec());
        crate::digest::sha256(&der.unwrap_or_default())
    }

    /// Whether `signature` (DER) is this key's signature over `payload`.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature).is_ok_and(|s| self.0.verify(payload, &s).is_ok())
    }
}

/// The simple-signing payload cosign signs and verifies: the repository
/// (`host/namespace/name`, no tag) and the manifest digest. Byte-for-byte what
/// cosign writes, so `cosign verify` accepts it.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let doc = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": serde_json::Value::Null,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// What a payload says: `(docker-reference, docker-manifest-digest)`, or `None`
/// when it is not a cosign simple-signing payload.
pub fn read_payload(bytes: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let c = v.get("critical")?;
    if c.get("type")?.as_str()? != "cosign container image signature" {
        return None;
    }
    Some((
        c.pointer("/identity/docker-reference")?
            .as_str()?
            .to_owned(),
        c.pointer("/image/docker-manifest-digest")?
            .as_str()?
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey -noout` (a throwaway test key).
    const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEICwF8O50mGnx8buV5O0F5lHyKv03F9SGDihDb8nvXZWcoAoGCCqGSM49
AwEHoUQDQgAE092QhYVmgyvxpqxpNKI5pSRznuqdtj0ialXowHg/KtCGTJl1Q/ia
VuxQe6B2AxCWcpN5JY/l+FSdbMT6bCfh0A==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn payload_is_what_cosign_writes() {
        let p = payload("127.0.0.1:5000/library/hello", "sha256:abc");
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/library/hello"},"image":{"docker-manifest-digest":"sha256:abc"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(
            read_payload(&p),
            Some(("127.0.0.1:5000/library/hello".into(), "sha256:abc".into()))
        );
    }

    // `openssl pkey -pubout` of SEC1.
    const SEC1_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE092QhYVmgyvxpqxpNKI5pSRznuqd
tj0ialXowHg/KtCGTJl1Q/iaVuxQe6B2AxCWcpN5JY/l+FSdbMT6bCfh0A==
-----END PUBLIC KEY-----
";

    // A P-384 public key (`openssl genpkey ... P-384 | openssl pkey -pubout`).
    const P384_PUB: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEV3e+9I8cK8N53or3HK7rxfZf56EfIdGu
qJqKGZGsu4jzZGycHHH3Mirblo/Ok3g62cczcAZ2n5+PPmK/SEtr1VYT1W9oY1tO
eRF0EVX4dfN7mJEDQJfESMo3R9PceU0n
-----END PUBLIC KEY-----
";

    #[test]
    fn a_public_key_alone_verifies_and_cannot_sign() {
        let signer = Signer::from_pem(SEC1, None).unwrap();
        let sig = signer.sign(b"payload");
        let public = match KeyFile::from_pem(SEC1_PUB, None).unwrap() {
            KeyFile::Public(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(public, signer.public_key());
        assert_eq!(public.to_pem(), SEC1_PUB);
        assert!(public.verify(b"payload", &sig));
        assert!(matches!(
            KeyFile::from_pem(SEC1, None).unwrap(),
            KeyFile::Private(_)
        ));
        assert!(matches!(
            KeyFile::from_pem(P384_PUB, None),
            Err(KeyProblem::NotP256(what)) if what == "an EC key on P-384"
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.pub");
        std::fs::write(&path, SEC1_PUB).unwrap();
        let err = Signer::load(&path, "images.toml:3:8").unwrap_err();
        assert!(matches!(err.problem, KeyProblem::PublicOnly));
        assert!(err.to_string().contains("cannot make them"), "{err}");
    }

    #[test]
    fn signing_is_deterministic_and_verifies() {
        let s = Signer::from_pem(SEC1, None).unwrap();
        let a = s.sign(b"payload");
        assert_eq!(a, s.sign(b"payload"));
        assert!(s.public_key().verify(b"payload", &a));
        assert!(!s.public_key().verify(b"payloaD", &a));
        assert!(!format!("{s:?}").contains("MHcCAQEE"));
        assert!(!format!("{s:?}").contains("LAXw7nSY"));
    }
}
