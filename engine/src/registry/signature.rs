//! Signatures of published plugins: ed25519 over the manifest's digest.
//!
//! A signature names the manifest, which names the component's digest, so
//! it covers every byte that runs, and the repository it was published in
//! (not the registry: a mirror keeps it valid), so that a signed plugin
//! copied into another repository of the same publisher is not signed
//! there. The message is prefixed with what it is (`stepback plugin
//! signature v1`), so a signature made for anything else with the same key
//! never passes for one. A plugin's signatures travel as
//! one JSON document ([`Signatures`]), pushed next to the manifest under
//! the tag `sha256-HEX.sig` (cosign's scheme, for registries without the
//! referrers API) and kept in the store once pulled, so that checking it
//! needs no network.

use super::digest::Digest;
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The first word of a secret key file.
const SECRET_HEADER: &str = "stepback-ed25519-secret-key-v1";
/// The domain separation of the signed message.
const CONTEXT: &[u8] = b"stepback plugin signature v1\n";

/// A public key, written `ed25519:BASE64` (in trust policies, locks and messages).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses `ed25519:BASE64`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bad =
            |why: &str| format!("{text:?} is not a public key: {why} (keys are written ed25519:BASE64)");
        let b64 = text
            .trim()
            .strip_prefix("ed25519:")
            .ok_or_else(|| bad("no `ed25519:`"))?;
        let bytes = B64.decode(b64).map_err(|_| bad("not base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad("not a point of the curve"))
    }

    /// Reads a `.pub` file (its first line is the key).
    pub fn read(path: &Path) -> anyhow::Result<PublicKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        PublicKey::parse(text.lines().next().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A secret key, read from its file.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the kernel's random numbers.
    pub fn generate() -> anyhow::Result<SecretKey> {
        let mut seed = [0u8; 32];
        let mut filled = 0;
        while filled < seed.len() {
            filled += rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty())
                .context("reading random numbers for the key")?;
        }
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Writes the key to `path` (this user's only, mode 600; never over an
    /// existing file) and its public key to `path.pub`.
    pub fn write(&self, path: &Path) -> anyhow::Result<std::path::PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let public = path.with_file_name(format!(
            "{}.pub",
            path.file_name()
                .context("the key's path names no file")?
                .to_string_lossy()
        ));
        for p in [path, public.as_path()] {
            if p.symlink_metadata().is_ok() {
                bail!("{} exists: a key is never written over a file", p.display());
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{SECRET_HEADER} {}", B64.encode(self.0.to_bytes()))?;
        file.sync_all()?;
        std::fs::write(&public, format!("{}\n", self.public()))
            .with_context(|| format!("writing {}", public.display()))?;
        Ok(public)
    }

    /// Reads a key file written by [`SecretKey::write`].
    pub fn read(path: &Path) -> anyhow::Result<SecretKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let b64 = text.trim().strip_prefix(SECRET_HEADER).with_context(|| {
            format!(
                "{} is not a Stepback secret key (`stepback-ed25519-secret-key-v1` and the key)",
                path.display()
            )
        })?;
        let bytes = B64
            .decode(b64.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let seed = bytes
            .with_context(|| format!("{}: the key is damaged (not 32 bytes of base64)", path.display()))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs the plugin whose manifest is `manifest`, published in `repository`.
    pub fn sign(&self, repository: &str, manifest: &Digest) -> Signature {
        Signature {
            key: self.public().to_string(),
            signature: B64.encode(self.0.sign(&message(repository, manifest)).to_bytes()),
        }
    }
}

fn message(repository: &str, manifest: &Digest) -> Vec<u8> {
    [CONTEXT, format!("{repository}\n{manifest}").as_bytes()].concat()
}

impl Signature {
    /// Whether it is a valid signature by its own key of `manifest` in
    /// `repository` (whoever that key is): the key it names, if so.
    fn verifies(&self, repository: &str, manifest: &Digest) -> Option<PublicKey> {
        let key = PublicKey::parse(&self.key).ok()?;
        let bytes = B64.decode(&self.signature).ok()?;
        let signature = ed25519_dalek::Signature::from_slice(&bytes).ok()?;
        key.0.verify(&message(repository, manifest), &signature).ok()?;
        Some(key)
    }
}

/// One signature: who made it, and its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    /// The signer's public key, `ed25519:BASE64`.
    pub key: String,
    /// The 64 bytes of the signature, base64.
    pub signature: String,
}

/// A plugin's signatures, as pushed beside it and kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signatures {
    /// The document's format: 1.
    pub version: u32,
    /// The repository signed for (`acme/hello`).
    pub repository: String,
    /// The manifest signed.
    pub manifest: Digest,
    /// One per key that signed it.
    pub signatures: Vec<Signature>,
}

impl Signatures {
    /// No signatures yet, of `manifest` in `repository`.
    pub fn new(repository: &str, manifest: &Digest) -> Signatures {
        Signatures {
            version: 1,
            repository: repository.to_owned(),
            manifest: manifest.clone(),
            signatures: Vec::new(),
        }
    }

    /// Only the signatures that verify, each under its own key: what may
    /// be kept, so that a forged entry never displaces a good one.
    pub fn valid(&self) -> Signatures {
        let mut valid = Signatures::new(&self.repository, &self.manifest);
        valid.signatures = (self.signatures.iter())
            .filter(|s| s.verifies(&self.repository, &self.manifest).is_some())
            .cloned()
            .collect();
        valid
    }

    /// The document in `bytes`.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Signatures> {
        let doc: Signatures = serde_json::from_slice(bytes).context("not a signature document")?;
        if doc.version != 1 {
            bail!(
                "signature document version {} (this Stepback reads 1)",
                doc.version
            );
        }
        Ok(doc)
    }

    /// As bytes to push or keep.
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("signatures serialize")
    }

    /// Adds `signature`, replacing an earlier one by the same key.
    pub fn add(&mut self, signature: Signature) {
        self.signatures.retain(|s| s.key != signature.key);
        self.signatures.push(signature);
    }

    /// The first signer among `trusted` whose signature of `manifest` in
    /// `repository` is here and verifies; `Err` says what is here instead:
    /// keys not trusted, or a trusted key's signature that does not verify
    /// (of another manifest or repository, or altered).
    pub fn verify(
        &self,
        repository: &str,
        manifest: &Digest,
        trusted: &[PublicKey],
    ) -> Result<PublicKey, Untrusted> {
        let mut untrusted = Vec::new();
        let mut forged = Vec::new();
        for s in &self.signatures {
            let key = PublicKey::parse(&s.key).ok().filter(|k| trusted.contains(k));
            let Some(key) = key else {
                untrusted.push(s.key.clone());
                continue;
            };
            match s.verifies(repository, manifest) {
                Some(key) => return Ok(key),
                None => forged.push(key),
            }
        }
        Err(match (forged.is_empty(), untrusted.is_empty()) {
            (false, _) => Untrusted::Invalid(forged),
            (true, false) => Untrusted::OtherKeys(untrusted),
            (true, true) => Untrusted::Unsigned,
        })
    }
}

/// Why no trusted signature was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// No signature at all.
    Unsigned,
    /// Signed only by keys not trusted here.
    OtherKeys(Vec<String>),
    /// A trusted key's signature does not verify: the plugin or its
    /// signature was altered.
    Invalid(Vec<PublicKey>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_manifest_repository_and_a_trusted_key() {
        let (ours, theirs) = (SecretKey::generate().unwrap(), SecretKey::generate().unwrap());
        let manifest = Digest::of(b"manifest");
        let mut doc = Signatures::new("acme/hello", &manifest);
        assert_eq!(
            doc.verify("acme/hello", &manifest, &[ours.public()]),
            Err(Untrusted::Unsigned)
        );
        doc.add(theirs.sign("acme/hello", &manifest));
        assert_eq!(
            doc.verify("acme/hello", &manifest, &[ours.public()]),
            Err(Untrusted::OtherKeys(vec![theirs.public().to_string()]))
        );
        doc.add(ours.sign("acme/hello", &manifest));
        let doc = Signatures::parse(&doc.bytes()).unwrap();
        assert_eq!(
            doc.verify("acme/hello", &manifest, &[ours.public()]),
            Ok(ours.public())
        );
        // Another manifest, or the same one copied to another repository.
        let other = Digest::of(b"other");
        for (repository, digest) in [("acme/hello", &other), ("acme/rs", &manifest)] {
            assert_eq!(
                doc.verify(repository, digest, &[ours.public()]),
                Err(Untrusted::Invalid(vec![ours.public()]))
            );
        }
        // Only what verifies is kept.
        let mut forged = Signatures::new("acme/hello", &manifest);
        forged.add(Signature {
            key: ours.public().to_string(),
            signature: B64.encode([0u8; 64]),
        });
        forged.add(theirs.sign("acme/hello", &manifest));
        assert_eq!(
            forged.valid().signatures,
            vec![theirs.sign("acme/hello", &manifest)]
        );
    }

    #[test]
    fn keys_round_trip_through_their_files_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme");
        let key = SecretKey::generate().unwrap();
        let public = key.write(&path).unwrap();
        assert_eq!(PublicKey::read(&public).unwrap(), key.public());
        assert_eq!(SecretKey::read(&path).unwrap().public(), key.public());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = SecretKey::generate()
            .unwrap()
            .write(&path)
            .unwrap_err()
            .to_string();
        assert!(again.contains("never written over"), "{again}");
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
    }
}
