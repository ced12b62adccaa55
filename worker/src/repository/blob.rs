//! Blobs: one chunk of an object, identified by the keyed BLAKE3 of its plaintext, compressed
//! with zstd when that shrinks it, sealed bound to its id.
//!
//! Compression is tried on two 32 KiB samples first, from the chunk's start and its middle, and
//! the whole chunk is compressed only when both shrink: parquet files (already compressed) and
//! other incompressible data are stored raw after compressing 64 KiB, not the whole chunk. One
//! sample from the start was not enough: a parquet file whose first column is small and
//! compressible (a timestamp column) looked compressible, and its whole first chunk was
//! compressed at the repository's level to save a tenth of a percent (5 % of a worker's CPU in
//! the bench's backup into S3).

use super::config::{Cipher, RepositoryConfig};
use super::crypto::{BlobId, MasterKey};
use super::pack::{PackEntry, FLAG_COMPRESSED};

/// Bytes of each of the two samples compressed to judge whether a chunk is worth compressing.
const SAMPLE: usize = 32 << 10;
/// A sample must shrink to this share of its size for the chunk to be compressed.
const WORTH_IT: f64 = 0.97;

/// A blob ready to go into a pack.
#[derive(Debug)]
pub struct SealedBlob {
    /// Its id.
    pub id: BlobId,
    /// What is stored: sealed (and maybe compressed) plaintext.
    pub bytes: Vec<u8>,
    /// The plaintext's length.
    pub raw_length: u32,
    /// Whether `bytes` holds zstd-compressed plaintext.
    pub compressed: bool,
}

/// Seals `plaintext` (whose id is `id`) as `config` says, into `out` (the caller's buffer,
/// so it chooses the thread that allocates it).
///
/// # Errors
/// When compression or the random source fails.
pub fn seal_blob(
    key: &MasterKey,
    config: &RepositoryConfig,
    id: BlobId,
    plaintext: &[u8],
    mut out: Vec<u8>,
) -> Result<SealedBlob, String> {
    let compressed = compress_if_smaller(plaintext, config.compression_level)?;
    let payload = compressed.as_deref().unwrap_or(plaintext);
    match config.cipher {
        Cipher::Aes256Gcm => key.seal_into(&id.0, payload, &mut out)?,
        Cipher::BenchmarkOnlyPlaintext => {
            out.clear();
            out.extend_from_slice(payload);
        }
    }
    let bytes = out;
    let raw_length = u32::try_from(plaintext.len())
        .map_err(|_| format!("a {}-byte chunk is larger than blobs can be", plaintext.len()))?;
    Ok(SealedBlob { id, bytes, raw_length, compressed: compressed.is_some() })
}

/// The plaintext of a stored blob, checked against its id.
///
/// # Errors
/// A description when it does not open, decompress to its length, or hash to its id.
pub fn open_blob(
    key: &MasterKey,
    config: &RepositoryConfig,
    entry: &PackEntry,
    stored: &[u8],
) -> Result<Vec<u8>, String> {
    let payload = match config.cipher {
        Cipher::Aes256Gcm => key.open(&entry.id.0, stored).map_err(|error| error.to_string())?,
        Cipher::BenchmarkOnlyPlaintext => stored.to_vec(),
    };
    Ok(decompress_and_check(key, entry, &payload)?.unwrap_or(payload))
}

/// Where an opened blob's plaintext is.
#[derive(Debug, PartialEq, Eq)]
pub enum Plaintext {
    /// In the stored bytes, decrypted where they lie, at this range.
    InPlace(std::ops::Range<usize>),
    /// Decompressed into a buffer of its own.
    Decompressed(Vec<u8>),
}

/// Opens a stored blob where it lies (`stored` is decrypted in place), checked against its id
/// as [`open_blob`] does. Why: a restore holds the pack range it read; copying every blob out
/// of it into a fresh buffer cost it more in page faults than decrypting (see
/// [`super::buffers`]).
///
/// # Errors
/// A description when it does not open, decompress to its length, or hash to its id (then
/// `stored` may hold garbage).
pub fn open_blob_in_place(
    key: &MasterKey,
    config: &RepositoryConfig,
    entry: &PackEntry,
    stored: &mut [u8],
) -> Result<Plaintext, String> {
    let payload = match config.cipher {
        Cipher::Aes256Gcm => {
            key.open_in_place(&entry.id.0, stored).map_err(|error| error.to_string())?
        }
        Cipher::BenchmarkOnlyPlaintext => 0..stored.len(),
    };
    let decompressed = decompress_and_check(key, entry, &stored[payload.clone()])?;
    Ok(decompressed.map_or(Plaintext::InPlace(payload), Plaintext::Decompressed))
}

/// The decompressed plaintext when the blob is compressed (`None`: `payload` is it), after
/// checking the plaintext's length and id.
fn decompress_and_check(
    key: &MasterKey,
    entry: &PackEntry,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let decompressed = if entry.is_compressed() {
        let plaintext = zstd::bulk::decompress(payload, entry.raw_length as usize)
            .map_err(|error| format!("does not decompress: {error}"))?;
        Some(plaintext)
    } else {
        None
    };
    let plaintext = decompressed.as_deref().unwrap_or(payload);
    if plaintext.len() != entry.raw_length as usize {
        return Err(format!(
            "holds {} bytes, its index says {}",
            plaintext.len(),
            entry.raw_length
        ));
    }
    let actual = key.blob_id(plaintext);
    if actual != entry.id {
        return Err(format!("its content hashes to {actual}"));
    }
    Ok(decompressed)
}

/// zstd-compressed `plaintext`, when compression is on and shrinks it.
fn compress_if_smaller(plaintext: &[u8], level: i32) -> Result<Option<Vec<u8>>, String> {
    if level == 0 || plaintext.len() < 64 {
        return Ok(None);
    }
    if plaintext.len() > 2 * SAMPLE {
        let middle = plaintext.len() / 2;
        for sample in [&plaintext[..SAMPLE], &plaintext[middle..middle + SAMPLE]] {
            let compressed = zstd::bulk::compress(sample, 1).map_err(|error| error.to_string())?;
            if compressed.len() as f64 > SAMPLE as f64 * WORTH_IT {
                return Ok(None);
            }
        }
    }
    let compressed = zstd::bulk::compress(plaintext, level).map_err(|error| error.to_string())?;
    Ok((compressed.len() < plaintext.len()).then_some(compressed))
}

/// The pack entry of a blob written at `offset`.
pub fn pack_entry(blob: &SealedBlob, offset: u64) -> PackEntry {
    PackEntry {
        id: blob.id,
        offset,
        length: blob.bytes.len() as u32,
        raw_length: blob.raw_length,
        flags: if blob.compressed { FLAG_COMPRESSED } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::InitSettings;
    use super::*;

    fn config(compression_level: i32, unencrypted_blobs: bool) -> RepositoryConfig {
        let settings = InitSettings {
            chunk_size: 1 << 20,
            pack_size: 1 << 24,
            compression_level,
            unencrypted_blobs,
        };
        RepositoryConfig::new("c".into(), settings)
    }

    #[test]
    fn test_compressible_blobs_shrink_and_incompressible_ones_are_stored_raw() {
        let key = MasterKey::generate().unwrap();
        let text = b"cpu,host=a usage=1.0 1700000000\n".repeat(4000);
        let mut noise = vec![0u8; 200_000];
        aws_lc_rs::rand::fill(&mut noise).unwrap();
        for (plaintext, shrinks) in [(text.as_slice(), true), (noise.as_slice(), false)] {
            let config = config(3, false);
            let id = key.blob_id(plaintext);
            let blob = seal_blob(&key, &config, id, plaintext, Vec::new()).unwrap();
            assert_eq!(blob.compressed, shrinks);
            assert_eq!(blob.bytes.len() < plaintext.len(), shrinks);
            let entry = pack_entry(&blob, 0);
            assert_eq!(open_blob(&key, &config, &entry, &blob.bytes).unwrap(), plaintext);
            let mut in_place = blob.bytes.clone();
            match open_blob_in_place(&key, &config, &entry, &mut in_place).unwrap() {
                Plaintext::InPlace(range) => {
                    assert!(!shrinks);
                    assert_eq!(&in_place[range], plaintext);
                }
                Plaintext::Decompressed(opened) => {
                    assert!(shrinks);
                    assert_eq!(opened, plaintext);
                }
            }
        }
        let off =
            seal_blob(&key, &config(0, false), key.blob_id(&text), &text, Vec::new()).unwrap();
        assert!(!off.compressed, "level 0 never compresses");
        // A compressible head (a parquet file's timestamp column) on incompressible data: the
        // middle sample says no, so the chunk is stored raw instead of compressed for ~4 %.
        let mut headed = vec![0u8; 40_000];
        headed.extend_from_slice(&noise);
        headed.extend_from_slice(&noise);
        headed.extend_from_slice(&noise);
        let blob = seal_blob(&key, &config(3, false), key.blob_id(&headed), &headed, Vec::new());
        assert!(!blob.unwrap().compressed);
    }

    #[test]
    fn test_a_blob_swapped_for_another_or_flipped_does_not_open() {
        let key = MasterKey::generate().unwrap();
        let config = config(3, false);
        let (a, b) = (b"first blob".as_slice(), b"second blob".as_slice());
        let sealed_a = seal_blob(&key, &config, key.blob_id(a), a, Vec::new()).unwrap();
        let sealed_b = seal_blob(&key, &config, key.blob_id(b), b, Vec::new()).unwrap();
        let entry_a = pack_entry(&sealed_a, 0);
        assert!(open_blob(&key, &config, &entry_a, &sealed_b.bytes).is_err(), "swapped");
        let mut flipped = sealed_a.bytes.clone();
        flipped[15] ^= 1;
        assert!(open_blob(&key, &config, &entry_a, &flipped).is_err(), "flipped");
        assert!(open_blob_in_place(&key, &config, &entry_a, &mut flipped).is_err(), "flipped");
        let mut swapped = sealed_b.bytes.clone();
        assert!(open_blob_in_place(&key, &config, &entry_a, &mut swapped).is_err(), "swapped");
        // Unencrypted (benchmarks): the keyed id still catches a swap.
        let plain = self::config(3, true);
        let stored_b = seal_blob(&key, &plain, key.blob_id(b), b, Vec::new()).unwrap();
        let mut entry = pack_entry(&stored_b, 0);
        entry.id = key.blob_id(a);
        assert!(open_blob(&key, &plain, &entry, &stored_b.bytes).is_err());
        let mut stored = stored_b.bytes.clone();
        assert!(open_blob_in_place(&key, &plain, &entry, &mut stored).is_err());
    }
}
