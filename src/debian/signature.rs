//! Verifying a Debian archive's `InRelease`: an OpenPGP cleartext-signed message,
//! checked against a keyring file the way `gpgv` does for apt.
//!
//! The OpenPGP implementation is rPGP (`pgp`): pure Rust on the RustCrypto
//! primitives, so no C library or system gpg is needed at run time, and it verifies
//! both kinds of key Debian signs with (RSA 4096 archive keys, which sign with a
//! subkey, and ed25519 release keys). Sequoia's pure-Rust backend is marked
//! experimental and variable-time by its authors, and its default backend is nettle (C).
//!
//! What is returned is only ever the text the signature covers (dash-unescaped, as
//! RFC 9580 section 7 hashes it): anything outside the signed block (leading or
//! trailing data, armor headers) is refused rather than returned.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pgp::composed::{CleartextSignedMessage, PublicOrSecret, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;

/// Why an `InRelease` (or a keyring) was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The keyring file could not be read.
    #[error("cannot read the keyring {}: {source}", path.display())]
    KeyringIo {
        /// The keyring file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The keyring holds no OpenPGP public key that could be parsed.
    #[error("the keyring {} holds no usable OpenPGP public key ({reason}); give a binary .gpg or an ASCII-armored .asc keyring such as /usr/share/keyrings/debian-archive-keyring.gpg", path.display())]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The input is not a well-formed cleartext-signed message.
    #[error("not a valid OpenPGP cleartext-signed message: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A signature by a key in the keyring does not verify: the text was altered,
    /// or the signature is corrupt or uses a digest too weak to trust.
    #[error("BAD signature by key {key}: {reason}")]
    BadSignature {
        /// The signing key's fingerprint (or key id when the signature names no fingerprint).
        key: String,
        /// Why it does not verify.
        reason: String,
    },
    /// The key that made a signature has expired or was revoked (`EXPKEYSIG`,
    /// `REVKEYSIG`): the archive moved to a new key, or the keyring is outdated.
    #[error("signature by key {key}, which {reason}; update the keyring (the debian-archive-keyring package) or use a key that is still valid")]
    KeyNotValid {
        /// The signing key's fingerprint.
        key: String,
        /// `expired on <date>` or `was revoked`.
        reason: String,
    },
    /// No signature was made by a key in the keyring.
    #[error("signed by key {} which is not in the keyring {} (NO_PUBKEY); add the key to the keyring or point `keyring` at the one that holds it", issuers.join(", "), keyring.display())]
    UnknownKey {
        /// Key ids (16 hex digits, uppercase) the signatures name as their issuers.
        issuers: Vec<String>,
        /// The keyring that was searched.
        keyring: PathBuf,
    },
}

/// The public keys of a keyring file, loaded once and used for every suite.
#[derive(Debug, Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SignedPublicKey>,
}

/// A verified `InRelease`: the signed text and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Exactly the text the signature covers, dash-unescaped, lines ending in `\n`;
    /// the line break before the signature block is not part of it (RFC 9580 7.1),
    /// so there is no final `\n`.
    pub text: String,
    /// The primary-key fingerprint (40 uppercase hex digits, as `gpg` prints it) of
    /// the first signature that verified.
    pub fingerprint: String,
    /// Every primary-key fingerprint whose signature verified, in message order
    /// (Debian signs with the archive key and the release key).
    pub signers: Vec<String>,
}

impl Keyring {
    /// Reads a binary (`.gpg`) or ASCII-armored (`.asc`) keyring holding one or more
    /// public keys. Keys the parser cannot read are skipped (an archive keyring may
    /// carry keys in formats nobody signs with any more); none at all is an error.
    pub fn load(path: &Path) -> Result<Keyring, SignatureError> {
        let bytes = std::fs::read(path).map_err(|source| SignatureError::KeyringIo {
            path: path.to_path_buf(),
            source,
        })?;
        Keyring::from_bytes(&bytes, path)
    }

    /// Parses keyring bytes; `path` only names the keyring in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Keyring, SignatureError> {
        let bad = |reason: String| SignatureError::Keyring {
            path: path.to_path_buf(),
            reason,
        };
        let (parsed, _) =
            PublicOrSecret::from_reader_many(bytes).map_err(|e| bad(e.to_string()))?;
        let mut keys = Vec::new();
        let mut last_error = None;
        for key in parsed {
            match key {
                // A secret key's public half would verify too, but a keyring of
                // secret keys is a mistake worth no special case: skip it.
                Ok(k) => {
                    if let Ok(public) = SignedPublicKey::try_from(k) {
                        keys.push(public);
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if keys.is_empty() {
            return Err(bad(last_error.unwrap_or_else(|| "no key found".into())));
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies a cleartext-signed message (`InRelease`) at time `now`.
    ///
    /// Accepted when at least one signature was made by a key (or a validly bound
    /// signing subkey) in the keyring that has neither expired by `now` nor been
    /// revoked, and every signature by a keyring key verifies (one that does not is
    /// an error even when another verifies); signatures by keys not in the keyring,
    /// or by expired or revoked ones, are ignored when another signature is good.
    pub fn verify_cleartext(
        &self,
        message: &[u8],
        now: SystemTime,
    ) -> Result<Verified, SignatureError> {
        let malformed = |reason: String| SignatureError::Malformed { reason };
        let text =
            std::str::from_utf8(message).map_err(|e| malformed(format!("not UTF-8 text ({e})")))?;
        let (msg, _headers) =
            CleartextSignedMessage::from_string(text).map_err(|e| malformed(e.to_string()))?;
        if msg.signatures().is_empty() {
            return Err(malformed("it carries no signature".into()));
        }
        // What the signatures were computed over (CRLF line ends, RFC 9580 7.1).
        let signed = msg.signed_text();
        let mut signers = Vec::new();
        let mut unknown = BTreeSet::new();
        let mut invalid = None;
        for sig in msg.signatures() {
            match self.verify_one(sig, signed.as_bytes(), now) {
                Ok(Some(fingerprint)) => {
                    if !signers.contains(&fingerprint) {
                        signers.push(fingerprint);
                    }
                }
                Ok(None) => {
                    unknown.insert(issuer_name(sig));
                }
                // An expired or revoked key's signature is worthless but not a sign
                // of tampering: another key's may still carry the message (Debian
                // signs with the old release's key too while a new one rolls in).
                Err(e @ SignatureError::KeyNotValid { .. }) => {
                    invalid.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(fingerprint) = signers.first().cloned() else {
            return Err(invalid.unwrap_or_else(|| SignatureError::UnknownKey {
                issuers: unknown.into_iter().collect(),
                keyring: self.path.clone(),
            }));
        };
        Ok(Verified {
            text: signed.replace("\r\n", "\n"),
            fingerprint,
            signers,
        })
    }

    /// Checks one signature: `Ok(Some(primary fingerprint))` when it verifies,
    /// `Ok(None)` when no keyring key made it, an error when a keyring key did and it
    /// does not verify.
    fn verify_one(
        &self,
        sig: &Signature,
        data: &[u8],
        now: SystemTime,
    ) -> Result<Option<String>, SignatureError> {
        let fingerprints: Vec<Vec<u8>> = sig
            .issuer_fingerprint()
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        let key_ids: Vec<Vec<u8>> = sig
            .issuer_key_id()
            .iter()
            .map(|k| k.as_ref().to_vec())
            .collect();
        // A signature that names no issuer (RFC 9580 says it should) is matched to
        // no key: it counts as by an unknown key, never as verified by guesswork.
        let names = |fp: &[u8], id: &[u8]| {
            fingerprints.iter().any(|f| f.as_slice() == fp)
                || key_ids.iter().any(|k| k.as_slice() == id)
        };
        let bad = |key: String, reason: String| SignatureError::BadSignature { key, reason };
        for key in &self.keys {
            let primary = format!("{:X}", key.fingerprint());
            let check = |outcome: pgp::errors::Result<()>, signer: String| {
                check_digest_and_type(sig).map_err(|r| bad(signer.clone(), r))?;
                outcome.map_err(|e| bad(signer, e.to_string()))
            };
            if names(key.fingerprint().as_bytes(), key.legacy_key_id().as_ref()) {
                check(sig.verify(&key.primary_key, data), primary.clone())?;
                primary_validity(key, now).map_err(|reason| SignatureError::KeyNotValid {
                    key: primary.clone(),
                    reason,
                })?;
                return Ok(Some(primary));
            }
            for sub in &key.public_subkeys {
                if names(
                    sub.key.fingerprint().as_bytes(),
                    sub.key.legacy_key_id().as_ref(),
                ) {
                    let signer = format!("{:X} (subkey of {primary})", sub.key.fingerprint());
                    sub.verify_bindings(&key.primary_key).map_err(|e| {
                        bad(
                            signer.clone(),
                            format!("the subkey is not validly bound to its primary key: {e}"),
                        )
                    })?;
                    check(sig.verify(&sub.key, data), signer.clone())?;
                    primary_validity(key, now)
                        .and_then(|()| {
                            let newest = newest(
                                sub.signatures
                                    .iter()
                                    .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
                            );
                            if sub
                                .signatures
                                .iter()
                                .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
                            {
                                return Err("was revoked".to_string());
                            }
                            not_expired(sub.key.created_at(), newest, now)
                        })
                        .map_err(|reason| SignatureError::KeyNotValid {
                            key: signer,
                            reason,
                        })?;
                    return Ok(Some(primary));
                }
            }
        }
        Ok(None)
    }
}

/// A primary key is usable unless revoked or past the expiry its newest
/// self-signature sets. The keyring is trusted as a whole (as `gpgv` trusts it), so
/// a revocation signature in it counts without further checks.
fn primary_validity(key: &SignedPublicKey, now: SystemTime) -> Result<(), String> {
    if !key.details.revocation_signatures.is_empty() {
        return Err("was revoked".into());
    }
    let own = key.legacy_key_id();
    let self_sigs = key
        .details
        .users
        .iter()
        .flat_map(|u| &u.signatures)
        .chain(&key.details.direct_signatures)
        .filter(|s| s.issuer_key_id().iter().any(|id| **id == own) || s.issuer_key_id().is_empty());
    not_expired(key.created_at(), newest(self_sigs), now)
}

/// The signature created last.
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(|t| t.as_secs()))
}

/// Fails when `binding` gives the key an expiry (seconds after `created`) before `now`.
fn not_expired(
    created: pgp::types::Timestamp,
    binding: Option<&Signature>,
    now: SystemTime,
) -> Result<(), String> {
    let Some(life) = binding.and_then(Signature::key_expiration_time) else {
        return Ok(());
    };
    if life.as_secs() == 0 {
        return Ok(());
    }
    let expires =
        SystemTime::from(created) + std::time::Duration::from_secs(u64::from(life.as_secs()));
    if expires <= now {
        Err(format!(
            "expired on {}",
            crate::debian::release::format_date(expires)
        ))
    } else {
        Ok(())
    }
}

/// Refuses what apt refuses before any math: digests with known collisions
/// (MD5, SHA-1, RIPEMD-160) and signatures that are not over a text document.
fn check_digest_and_type(sig: &Signature) -> Result<(), String> {
    match sig.hash_alg() {
        Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160) => {
            return Err(format!(
                "it uses the weak digest {}",
                sig.hash_alg().map(|h| h.to_string()).unwrap_or_default()
            ))
        }
        None => return Err("unknown signature version".into()),
        Some(_) => {}
    }
    match sig.typ() {
        Some(SignatureType::Text | SignatureType::Binary) => Ok(()),
        other => Err(format!(
            "a {other:?} signature cannot sign a cleartext message"
        )),
    }
}

/// The key id a signature names (16 uppercase hex digits), from its issuer
/// fingerprint or key id subpacket.
fn issuer_name(sig: &Signature) -> String {
    if let Some(id) = sig.issuer_key_id().first() {
        return hex::encode_upper(id.as_ref());
    }
    if let Some(fp) = sig.issuer_fingerprint().first() {
        let bytes = fp.as_bytes();
        // A v4 key id is the fingerprint's last 8 bytes; v6 its first 8.
        let id = if bytes.len() == 20 {
            &bytes[12..]
        } else {
            &bytes[..8.min(bytes.len())]
        };
        return hex::encode_upper(id);
    }
    "(unnamed)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::from_bytes(b"not a key", &dir.path().join("k.gpg")).unwrap_err();
        assert!(matches!(err, SignatureError::Keyring { .. }), "{err}");
    }
}
