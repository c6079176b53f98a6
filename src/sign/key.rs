//! Reading key files: an ECDSA P-256 private key in PEM, as openssl
//! writes it (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, password-protected
//! PKCS#8 `ENCRYPTED PRIVATE KEY`) or as `cosign generate-key-pair` does
//! (`ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt + NaCl secretbox around PKCS#8),
//! or its public half (`PUBLIC KEY`, SubjectPublicKeyInfo: what cosign writes
//! to cosign.pub and `openssl pkey -pubout` prints), which only verifies.
//! Every problem is named without key bytes.

use std::path::PathBuf;

use base64::Engine as _;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::der::Decode as _;
use p256::pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use p256::pkcs8::{EncryptedPrivateKeyInfo, ObjectIdentifier, PrivateKeyInfo};
use p256::SecretKey;

/// The environment variable holding the password of an encrypted key.
pub const PASSWORD_ENV: &str = "IMGRAPH_SIGNING_PASSWORD";

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP256R1: &str = "1.2.840.10045.3.1.7";

/// A key that cannot be used, with where it was asked for.
#[derive(Debug, thiserror::Error)]
#[error("{at}: key {}: {problem}", path.display())]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// `images.toml:LINE:COL` of `sign`, or the flag (`verify --key`).
    pub at: String,
    /// What is wrong.
    #[source]
    pub problem: KeyProblem,
}

/// What is wrong with a key file. No variant holds key bytes or the password.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// Missing or unreadable.
    #[error("cannot read it ({0}); fix the path, or make a key pair with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cosign.key` (its public half: `openssl pkey -in cosign.key -pubout -out cosign.pub`)")]
    Read(#[source] std::io::Error),
    /// No PEM key block.
    #[error("is not a PEM key (no `-----BEGIN PUBLIC KEY-----` or `-----BEGIN ... PRIVATE KEY-----` block); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cosign.key`")]
    NotPem,
    /// A PEM block of a kind imgraph does not read.
    #[error("holds a `{0}` block; use an ECDSA P-256 key in PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or cosign's (`ENCRYPTED SIGSTORE PRIVATE KEY`) PEM, or its public half (`PUBLIC KEY`) to verify")]
    Unsupported(String),
    /// A public key where signing needs the private one.
    #[error("holds a public key (`-----BEGIN PUBLIC KEY-----`), which verifies signatures but cannot make them; to push signed images point `sign = {{ key = ... }}` at the private key (cosign.key; its password in {PASSWORD_ENV}), or remove `sign` to push unsigned; with the public key, `imgraph verify --pushed` checks what was pushed")]
    PublicOnly,
    /// OpenSSL's legacy `Proc-Type: 4,ENCRYPTED` PEM encryption.
    #[error("is encrypted the legacy OpenSSL way (`Proc-Type` header); convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.key -out cosign.key`")]
    LegacyEncrypted,
    /// Encrypted, and no password given.
    #[error("is encrypted and {PASSWORD_ENV} is not set; export {PASSWORD_ENV} with its password")]
    NoPassword,
    /// The password does not decrypt it.
    #[error("cannot be decrypted with the password in {PASSWORD_ENV} (wrong password?)")]
    WrongPassword,
    /// Another algorithm or curve.
    #[error("is not an ECDSA P-256 key ({0}); signatures are ECDSA P-256 with SHA-256, as cosign makes them: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`")]
    NotP256(String),
    /// The DER inside is broken.
    #[error("is not a valid {what}: {reason}")]
    Malformed {
        /// `PKCS#8 key`, `SEC1 key`, ...
        what: &'static str,
        /// The decoder's words (no key bytes).
        reason: String,
    },
}

/// What a key file holds.
pub(super) enum Parsed {
    /// A private key (signs; its public half verifies).
    Private(SigningKey),
    /// A public key alone (verifies).
    Public(VerifyingKey),
}

/// Reads and parses the key file.
pub(super) fn load(path: &std::path::Path, password: Option<&str>) -> Result<Parsed, KeyProblem> {
    let text = std::fs::read(path).map_err(KeyProblem::Read)?;
    parse_any(&String::from_utf8_lossy(&text), password)
}

/// A private key if the text holds one, else a `PUBLIC KEY` block's key.
pub(super) fn parse_any(text: &str, password: Option<&str>) -> Result<Parsed, KeyProblem> {
    let all = blocks(text);
    if !all.iter().any(|b| b.label.ends_with("PRIVATE KEY")) {
        if let Some(b) = all.iter().find(|b| b.label == "PUBLIC KEY") {
            return spki(&b.der).map(Parsed::Public);
        }
    }
    parse(text, password).map(Parsed::Private)
}

/// An ECDSA key on P-256, the only curve cosign's keys use; anything else is named.
fn require_p256(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), KeyProblem> {
    let curve = alg.parameters_oid().ok();
    if alg.oid != oid(ID_EC_PUBLIC_KEY) || curve != Some(oid(SECP256R1)) {
        return Err(KeyProblem::NotP256(algorithm_name(alg.oid, curve)));
    }
    Ok(())
}

/// A DER SubjectPublicKeyInfo holding a P-256 key.
fn spki(der: &[u8]) -> Result<VerifyingKey, KeyProblem> {
    let info = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| KeyProblem::Malformed {
        what: "public key",
        reason: e.to_string(),
    })?;
    require_p256(&info.algorithm)?;
    VerifyingKey::from_sec1_bytes(info.subject_public_key.raw_bytes()).map_err(|_| {
        KeyProblem::Malformed {
            what: "P-256 public key",
            reason: "its point is not on the curve".into(),
        }
    })
}

/// One PEM block: its label, whether it had headers saying it is encrypted, and
/// its decoded bytes.
struct Block {
    label: String,
    legacy_encrypted: bool,
    der: Vec<u8>,
}

/// Every `-----BEGIN X-----` .. `-----END X-----` block (openssl's `ecparam
/// -genkey` writes an `EC PARAMETERS` block before the key).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<(String, bool, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_owned(), false, String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some((begun, legacy, body)) = current.take() {
                if begun == label {
                    out.push(Block {
                        label: begun,
                        legacy_encrypted: legacy,
                        der: base64::engine::general_purpose::STANDARD
                            .decode(body)
                            .unwrap_or_default(),
                    });
                }
            }
        } else if let Some((_, legacy, body)) = current.as_mut() {
            if let Some((name, value)) = line.split_once(':') {
                if name.trim() == "Proc-Type" && value.contains("ENCRYPTED") {
                    *legacy = true;
                }
            } else {
                body.push_str(line);
            }
        }
    }
    out
}

/// Parses PEM text into a P-256 signing key.
pub(super) fn parse(text: &str, password: Option<&str>) -> Result<SigningKey, KeyProblem> {
    let blocks = blocks(text);
    let Some(block) = blocks.iter().find(|b| b.label.ends_with("PRIVATE KEY")) else {
        return Err(match blocks.first() {
            Some(b) if b.label != "EC PARAMETERS" => KeyProblem::Unsupported(b.label.clone()),
            _ => KeyProblem::NotPem,
        });
    };
    if block.legacy_encrypted {
        return Err(KeyProblem::LegacyEncrypted);
    }
    let secret = match block.label.as_str() {
        "PRIVATE KEY" => pkcs8(&block.der)?,
        "EC PRIVATE KEY" => SecretKey::from_sec1_der(&block.der).map_err(|_| {
            KeyProblem::NotP256("a SEC1 key that does not decode as a P-256 key".into())
        })?,
        "ENCRYPTED PRIVATE KEY" => {
            let password = password.ok_or(KeyProblem::NoPassword)?;
            let info = EncryptedPrivateKeyInfo::from_der(&block.der).map_err(|e| {
                KeyProblem::Malformed {
                    what: "encrypted PKCS#8 key",
                    reason: e.to_string(),
                }
            })?;
            let doc = info
                .decrypt(password)
                .map_err(|_| KeyProblem::WrongPassword)?;
            // A wrong password can decrypt to garbage with valid padding.
            pkcs8(doc.as_bytes()).map_err(|e| match e {
                KeyProblem::Malformed { .. } => KeyProblem::WrongPassword,
                other => other,
            })?
        }
        "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
            let password = password.ok_or(KeyProblem::NoPassword)?;
            let der = cosign_decrypt(&block.der, password)?;
            pkcs8(&der)?
        }
        other => return Err(KeyProblem::Unsupported(other.to_owned())),
    };
    Ok(SigningKey::from(&secret))
}

/// The JSON inside a cosign key's PEM (go-securesystemslib's `encrypted`):
/// byte fields are standard base64.
#[derive(serde::Deserialize)]
struct CosignSealed {
    kdf: CosignKdf,
    cipher: CosignCipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct CosignKdf {
    name: String,
    params: CosignScrypt,
    salt: String,
}

#[derive(serde::Deserialize)]
struct CosignScrypt {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct CosignCipher {
    name: String,
    nonce: String,
}

/// Opens a cosign key: scrypt(password, salt, N, r, p) -> 32-byte key,
/// XSalsa20-Poly1305 (NaCl secretbox) -> PKCS#8 DER.
fn cosign_decrypt(sealed: &[u8], password: &str) -> Result<Vec<u8>, KeyProblem> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let bad = |reason: &str| KeyProblem::Malformed {
        what: "cosign key",
        reason: reason.to_owned(),
    };
    let s: CosignSealed =
        serde_json::from_slice(sealed).map_err(|e| bad(&format!("not its JSON: {e}")))?;
    if s.kdf.name != "scrypt" || s.cipher.name != "nacl/secretbox" {
        return Err(bad(&format!(
            "kdf {:?} with cipher {:?}, expected scrypt with nacl/secretbox",
            s.kdf.name, s.cipher.name
        )));
    }
    let b64 = |v: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| bad(&format!("{what} is not base64")))
    };
    let (salt, nonce, ciphertext) = (
        b64(&s.kdf.salt, "salt")?,
        b64(&s.cipher.nonce, "nonce")?,
        b64(&s.ciphertext, "ciphertext")?,
    );
    let n = s.kdf.params.n;
    // cosign uses N = 2^15; 2^20 with r = 8 is already 1 GiB of memory.
    if !n.is_power_of_two() || !(2..=1 << 20).contains(&n) || nonce.len() != 24 {
        return Err(bad(
            "scrypt N must be a power of two up to 2^20, the nonce 24 bytes",
        ));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, s.kdf.params.r, s.kdf.params.p, 32)
        .map_err(|e| bad(&format!("scrypt parameters: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key)
        .map_err(|e| bad(&format!("scrypt: {e}")))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| KeyProblem::WrongPassword)
}

/// A DER PKCS#8 PrivateKeyInfo holding a P-256 key.
fn pkcs8(der: &[u8]) -> Result<SecretKey, KeyProblem> {
    let info = PrivateKeyInfo::from_der(der).map_err(|e| KeyProblem::Malformed {
        what: "PKCS#8 key",
        reason: e.to_string(),
    })?;
    require_p256(&info.algorithm)?;
    SecretKey::try_from(info).map_err(|e| KeyProblem::Malformed {
        what: "P-256 key",
        reason: e.to_string(),
    })
}

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

/// Names for the keys people have lying around.
fn algorithm_name(alg: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    let name = |o: ObjectIdentifier| match o.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.2.840.10045.2.1" => "EC".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => format!("OID {other}"),
    };
    match curve {
        Some(c) if alg == oid(ID_EC_PUBLIC_KEY) => format!("an EC key on {}", name(c)),
        _ => format!("a {} key", name(alg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_skip_parameters_and_see_legacy_headers() {
        let text = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
                    -----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let b = blocks(text);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label, "EC PARAMETERS");
        assert!(b[1].legacy_encrypted);
        assert!(matches!(
            parse(text, None),
            Err(KeyProblem::LegacyEncrypted)
        ));
        assert!(matches!(parse("hello", None), Err(KeyProblem::NotPem)));
        assert!(matches!(
            parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None),
            Err(KeyProblem::Unsupported(l)) if l == "CERTIFICATE"
        ));
    }
}
