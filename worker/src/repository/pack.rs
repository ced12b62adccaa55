//! Packs: many sealed blobs in one object, so small files cost a share of a PUT, not a PUT.
//!
//! ```text
//! pack = blob₀ ‖ blob₁ ‖ … ‖ sealed header ‖ header length (u32, little-endian)
//! header = count (u32) ‖ count × entry
//! entry  = blob id (32) ‖ offset (u64) ‖ sealed length (u32) ‖ raw length (u32) ‖ flags (u8)
//! ```
//! Every blob is sealed on its own (bound to its id), so a reader fetches one with a ranged GET
//! of `offset..offset + length`, and repacking copies sealed bytes without re-encrypting them.
//! The header, sealed and bound to the pack's id, lists the blobs: `verify --deep` reads it to
//! check every byte of a pack, and prune reads it to rebuild an index.

use super::crypto::BlobId;

/// Bytes of one header entry.
pub const ENTRY_SIZE: usize = 32 + 8 + 4 + 4 + 1;
/// The blob is zstd-compressed inside its seal.
pub const FLAG_COMPRESSED: u8 = 1;

/// A pack's id: 16 random bytes, its name in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    /// A new random id.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random source failed")?;
        Ok(Self(bytes))
    }

    /// 32 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits (a pack's file name).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The associated data binding a pack's header to the pack.
    pub fn header_context(&self) -> Vec<u8> {
        format!("bk pack {}", self.to_hex()).into_bytes()
    }
}

/// Where one blob sits in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The blob.
    pub id: BlobId,
    /// Offset of its sealed bytes in the pack.
    pub offset: u64,
    /// Length of its sealed bytes.
    pub length: u32,
    /// Length of its plaintext.
    pub raw_length: u32,
    /// [`FLAG_COMPRESSED`].
    pub flags: u8,
}

impl PackEntry {
    /// Whether the blob is compressed inside its seal.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// Appends its fixed-size encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
        out.push(self.flags);
    }

    /// Decodes one entry from `ENTRY_SIZE` bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ENTRY_SIZE {
            return None;
        }
        Some(Self {
            id: BlobId(bytes[..32].try_into().ok()?),
            offset: u64::from_le_bytes(bytes[32..40].try_into().ok()?),
            length: u32::from_le_bytes(bytes[40..44].try_into().ok()?),
            raw_length: u32::from_le_bytes(bytes[44..48].try_into().ok()?),
            flags: bytes[48],
        })
    }
}

/// Encodes a pack header's plaintext.
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_SIZE);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        entry.encode_into(&mut out);
    }
    out
}

/// Decodes a pack header's plaintext.
///
/// # Errors
/// A description when its length does not match its count.
pub fn decode_header(bytes: &[u8]) -> Result<Vec<PackEntry>, String> {
    let count = bytes
        .get(..4)
        .and_then(|count| count.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("the header is empty")? as usize;
    if bytes.len() != 4 + count * ENTRY_SIZE {
        return Err(format!("the header says {count} blobs but holds {} bytes", bytes.len()));
    }
    bytes[4..]
        .chunks_exact(ENTRY_SIZE)
        .map(|entry| PackEntry::decode(entry).ok_or_else(|| "malformed entry".to_string()))
        .collect()
}

/// Splits a whole pack into its sealed header: `(header, end of the blob area)`.
///
/// # Errors
/// A description when the trailer does not fit the pack.
pub fn sealed_header(pack: &[u8]) -> Result<(&[u8], usize), String> {
    if pack.len() < 4 {
        return Err("shorter than its trailer".to_string());
    }
    let trailer = pack.len() - 4;
    let length = u32::from_le_bytes([
        pack[trailer],
        pack[trailer + 1],
        pack[trailer + 2],
        pack[trailer + 3],
    ]) as usize;
    if length > trailer {
        return Err(format!("its header length {length} exceeds the pack"));
    }
    Ok((&pack[trailer - length..trailer], trailer - length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_header_entries_round_trip_and_bad_lengths_are_refused() {
        let entries = vec![
            PackEntry { id: BlobId([1; 32]), offset: 0, length: 100, raw_length: 72, flags: 0 },
            PackEntry {
                id: BlobId([2; 32]),
                offset: 100,
                length: 50,
                raw_length: 400,
                flags: FLAG_COMPRESSED,
            },
        ];
        let encoded = encode_header(&entries);
        assert_eq!(decode_header(&encoded).unwrap(), entries);
        assert!(decode_header(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode_header(&[]).is_err());
        let pack = [vec![9u8; 150], encoded.clone(), (encoded.len() as u32).to_le_bytes().to_vec()]
            .concat();
        assert_eq!(sealed_header(&pack).unwrap(), (encoded.as_slice(), 150));
        assert!(sealed_header(&[0, 0, 0, 99]).is_err());
    }
}
