//! The repository's keys and the sealing of every byte it stores.
//!
//! One random 32-byte **master key** per repository, stored only wrapped (see
//! [`super::keys`]). Two keys are derived from it with BLAKE3's key derivation:
//! - the **encryption key**: AES-256-GCM (aws-lc, the library TLS already links), a fresh
//!   random 96-bit nonce per sealed message. A sealed message is `nonce ‖ ciphertext ‖ tag`
//!   (28 bytes of overhead). Random nonces stay safe for about 2³² messages per key, far beyond
//!   any repository's blob count;
//! - the **id key**: blob ids are the keyed BLAKE3 of the plaintext, so equal content
//!   deduplicates while ids reveal nothing about it.
//!
//! Every message is bound to where it belongs through its associated data (a blob to its id, a
//! manifest to its backup, …): moving a valid message elsewhere fails to open.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// Bytes a sealed message adds to its plaintext: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// A blob's id: the keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// Lower-case hex, as stored in segments and shown in messages.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl serde::Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        BlobId::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("not a 64-hex-digit blob id"))
    }
}

/// A sealed message did not open: altered, truncated, moved, or sealed with another key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: altered, truncated, misplaced, or sealed with another key")]
pub struct OpenError;

/// The unwrapped master key and what is derived from it. Never logged, never serialized.
pub struct MasterKey {
    raw: [u8; 32],
    encryption: LessSafeKey,
    id_key: [u8; 32],
    list_id_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> Result<Self, String> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| "the system random source failed")?;
        Ok(Self::from_raw(raw))
    }

    /// The master key from its 32 bytes (as unwrapped from a key file).
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let encryption_key = blake3::derive_key("bk repository 2026 encryption key", &raw);
        let id_key = blake3::derive_key("bk repository 2026 blob id key", &raw);
        let list_id_key = blake3::derive_key("bk repository 2026 object list chunk id key", &raw);
        // Cannot fail: the key has AES-256's length.
        let unbound = UnboundKey::new(&AES_256_GCM, &encryption_key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM"));
        Self { raw, encryption: LessSafeKey::new(unbound), id_key, list_id_key }
    }

    /// The 32 bytes, for wrapping into a key file only.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The id of a blob with this plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// The id of an object list chunk with this plaintext: equal chunks (an unchanged part of a
    /// list written again) get the same name, and a name reveals nothing of the keys in it.
    pub fn list_chunk_id(&self, plaintext: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.list_id_key, plaintext).as_bytes()
    }

    /// A keyed hasher producing blob ids, for plaintext fed in pieces.
    pub fn blob_id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// Seals `plaintext` bound to `context`.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
        seal_with(&self.encryption, context, plaintext)
    }

    /// Seals `plaintext` bound to `context` into `out` (cleared first; given so the caller
    /// chooses where the buffer is allocated).
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn seal_into(
        &self,
        context: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        seal_into_with(&self.encryption, context, plaintext, out)
    }

    /// Opens a message sealed with [`MasterKey::seal`] under the same `context`.
    ///
    /// # Errors
    /// [`OpenError`] when it does not authenticate.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open_with(&self.encryption, context, sealed)
    }

    /// Opens a sealed message where it lies: `sealed` is decrypted in place and the
    /// plaintext's range in it returned. Why: a restore reads megabytes of sealed blobs into a
    /// buffer it owns; a copy of each into a fresh allocation cost more (page faults on new
    /// pages) than decrypting it.
    ///
    /// # Errors
    /// [`OpenError`] when it does not authenticate (then `sealed` holds garbage).
    pub fn open_in_place(
        &self,
        context: &[u8],
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, OpenError> {
        open_in_place_with(&self.encryption, context, sealed)
    }
}

/// Seals `plaintext` with `key`, bound to `context`: `nonce ‖ ciphertext ‖ tag`.
///
/// # Errors
/// When the system's random source fails.
pub fn seal_with(key: &LessSafeKey, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    seal_into_with(key, context, plaintext, &mut sealed)?;
    Ok(sealed)
}

fn seal_into_with(
    key: &LessSafeKey,
    context: &[u8],
    plaintext: &[u8],
    sealed: &mut Vec<u8>,
) -> Result<(), String> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "the system random source failed")?;
    sealed.clear();
    sealed.reserve(plaintext.len() + SEAL_OVERHEAD);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut sealed[NONCE_LEN..],
        )
        .map_err(|_| "sealing failed".to_string())?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens `nonce ‖ ciphertext ‖ tag` sealed by [`seal_with`] with `key` and `context`.
///
/// # Errors
/// [`OpenError`] when it does not authenticate.
pub fn open_with(key: &LessSafeKey, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().map_err(|_| OpenError)?;
    let mut in_out = sealed[NONCE_LEN..].to_vec();
    let plaintext_len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut in_out)
        .map_err(|_| OpenError)?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

/// Decrypts `sealed` (`nonce ‖ ciphertext ‖ tag`) in place; the plaintext's range in it.
fn open_in_place_with(
    key: &LessSafeKey,
    context: &[u8],
    sealed: &mut [u8],
) -> Result<std::ops::Range<usize>, OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let (nonce, in_out) = sealed.split_at_mut(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| OpenError)?;
    let plaintext_len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(context), in_out)
        .map_err(|_| OpenError)?
        .len();
    Ok(NONCE_LEN..NONCE_LEN + plaintext_len)
}

/// An AES-256-GCM key from 32 bytes (a passphrase-derived key-encryption key).
pub fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sealed_messages_open_only_in_their_context_and_unaltered() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"manifest 1", b"the object list").unwrap();
        assert_eq!(sealed.len(), 15 + SEAL_OVERHEAD);
        assert_eq!(key.open(b"manifest 1", &sealed).unwrap(), b"the object list");
        assert_eq!(key.open(b"manifest 2", &sealed), Err(OpenError), "moved elsewhere");
        for index in [0, NONCE_LEN, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[index] ^= 1;
            assert_eq!(key.open(b"manifest 1", &flipped), Err(OpenError), "byte {index}");
        }
        assert_eq!(key.open(b"manifest 1", &sealed[..10]), Err(OpenError));
        let mut in_place = sealed.clone();
        let range = key.open_in_place(b"manifest 1", &mut in_place).unwrap();
        assert_eq!(&in_place[range], b"the object list");
        let mut moved = sealed.clone();
        assert_eq!(key.open_in_place(b"manifest 2", &mut moved), Err(OpenError));
        assert_eq!(key.open_in_place(b"manifest 1", &mut in_place[..10]), Err(OpenError));
        let other = MasterKey::generate().unwrap();
        assert_eq!(other.open(b"manifest 1", &sealed), Err(OpenError), "another repository");
    }

    #[test]
    fn test_blob_ids_are_keyed_and_deterministic() {
        let key = MasterKey::from_raw([7; 32]);
        assert_eq!(key.blob_id(b"x"), key.blob_id(b"x"));
        assert_ne!(key.blob_id(b"x"), key.blob_id(b"y"));
        assert_ne!(key.blob_id(b"x"), MasterKey::from_raw([8; 32]).blob_id(b"x"));
        assert_ne!(key.blob_id(b"x").0, *blake3::hash(b"x").as_bytes(), "ids reveal nothing");
        let mut hasher = key.blob_id_hasher();
        hasher.update(b"x");
        assert_eq!(BlobId(*hasher.finalize().as_bytes()), key.blob_id(b"x"));
        let id = key.blob_id(b"x");
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
    }
}
