//! The binary form of a chunk of a sorted run (its plaintext, before zstd and sealing).
//!
//! ```text
//! chunk = "bklist1\n" ‖ count (varint) ‖ count × item
//! item  = shared (varint) ‖ suffix length (varint) ‖ suffix ‖ kind (u8) ‖ body
//! kind  = 0: deleted (no body) | 1: object | 2: object with an ETag
//! body  = size (varint) ‖ modified_ns (zigzag varint) ‖ [ETag length (varint) ‖ ETag]
//!         ‖ blob count (varint) ‖ blob count × 32-byte blob id
//! ```
//! Keys are strictly increasing and stored as the number of leading bytes shared with the
//! previous key plus the rest: a directory of a thousand WAL files costs their distinct digits,
//! not a thousand full paths. Integers are LEB128 varints; no JSON, no hex.

use super::entry::{ListItem, ObjectEntry};
use crate::repository::crypto::BlobId;

const MAGIC: &[u8; 8] = b"bklist1\n";
const KIND_DELETED: u8 = 0;
const KIND_OBJECT: u8 = 1;
const KIND_OBJECT_WITH_ETAG: u8 = 2;

/// Builds one chunk's plaintext, item by item.
#[derive(Debug, Default)]
pub struct ChunkEncoder {
    body: Vec<u8>,
    count: u64,
    previous: String,
    first: Option<String>,
}

impl ChunkEncoder {
    /// Appends `item`, whose key must be greater than the previous item's.
    ///
    /// # Errors
    /// A description when the key is not greater than the previous one: a run must be sorted
    /// (readers merge runs by key), so writing it out of order would be a bug, never data.
    pub fn push(&mut self, item: &ListItem) -> Result<(), String> {
        let key = item.key();
        if self.count > 0 && key <= self.previous.as_str() {
            return Err(format!("object list out of key order: `{key}` after `{}`", self.previous));
        }
        let shared = common_prefix(&self.previous, key);
        put_varint(&mut self.body, shared as u64);
        put_varint(&mut self.body, (key.len() - shared) as u64);
        self.body.extend_from_slice(&key.as_bytes()[shared..]);
        match item {
            ListItem::Deleted(_) => self.body.push(KIND_DELETED),
            ListItem::Object(entry) => encode_object(&mut self.body, entry),
        }
        self.previous.clear();
        self.previous.push_str(key);
        if self.first.is_none() {
            self.first = Some(key.to_string());
        }
        self.count += 1;
        Ok(())
    }

    /// Items so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Encoded bytes so far (about what the chunk will weigh).
    pub fn encoded_len(&self) -> usize {
        self.body.len()
    }

    /// The first and last keys, when any item was pushed.
    pub fn key_range(&self) -> Option<(String, String)> {
        self.first.clone().map(|first| (first, self.previous.clone()))
    }

    /// The chunk's plaintext; the encoder starts over empty.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 10 + self.body.len());
        out.extend_from_slice(MAGIC);
        put_varint(&mut out, self.count);
        out.extend_from_slice(&self.body);
        *self = Self::default();
        out
    }
}

fn encode_object(out: &mut Vec<u8>, entry: &ObjectEntry) {
    out.push(if entry.etag.is_some() { KIND_OBJECT_WITH_ETAG } else { KIND_OBJECT });
    put_varint(out, entry.size);
    put_varint(out, zigzag(entry.modified_ns));
    if let Some(etag) = &entry.etag {
        put_varint(out, etag.len() as u64);
        out.extend_from_slice(etag.as_bytes());
    }
    put_varint(out, entry.blobs.len() as u64);
    for blob in &entry.blobs {
        out.extend_from_slice(&blob.0);
    }
}

/// Decodes a chunk's plaintext.
///
/// # Errors
/// A description of the first malformation (truncation, an unknown kind, keys out of order,
/// a key that is not UTF-8).
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<ListItem>, String> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a bk object list chunk")?;
    let mut reader = Reader { bytes: body, at: 0 };
    let count = reader.varint()?;
    // Each item takes at least 3 bytes: a count beyond that is damage, not a reason to allocate.
    if count > (body.len() / 3) as u64 + 1 {
        return Err(format!("says {count} items but holds {} bytes", body.len()));
    }
    let mut items = Vec::with_capacity(count as usize);
    let mut previous: Vec<u8> = Vec::new();
    for index in 0..count {
        let shared = reader.varint()? as usize;
        let suffix_len = reader.varint()? as usize;
        if shared > previous.len() {
            return Err(format!("item {index} shares more than the previous key holds"));
        }
        previous.truncate(shared);
        previous.extend_from_slice(reader.take(suffix_len)?);
        let key = std::str::from_utf8(&previous)
            .map_err(|_| format!("item {index}: key is not UTF-8"))?
            .to_string();
        if let Some(last) = items.last().map(ListItem::key) {
            if key.as_str() <= last {
                return Err(format!("item {index}: key `{key}` not after `{last}`"));
            }
        }
        let item = match reader.byte()? {
            KIND_DELETED => ListItem::Deleted(key),
            kind @ (KIND_OBJECT | KIND_OBJECT_WITH_ETAG) => {
                ListItem::Object(decode_object(&mut reader, key, kind == KIND_OBJECT_WITH_ETAG)?)
            }
            other => return Err(format!("item {index}: unknown kind {other}")),
        };
        items.push(item);
    }
    if reader.at != body.len() {
        return Err(format!("{} bytes after the last item", body.len() - reader.at));
    }
    Ok(items)
}

fn decode_object(
    reader: &mut Reader<'_>,
    key: String,
    has_etag: bool,
) -> Result<ObjectEntry, String> {
    let size = reader.varint()?;
    let modified_ns = unzigzag(reader.varint()?);
    let etag = if has_etag {
        let length = reader.varint()? as usize;
        let bytes = reader.take(length)?;
        Some(String::from_utf8(bytes.to_vec()).map_err(|_| format!("`{key}`: ETag is not UTF-8"))?)
    } else {
        None
    };
    let num_blobs = reader.varint()? as usize;
    let ids = reader.take(num_blobs.checked_mul(32).ok_or("blob count overflows")?)?;
    let blobs = ids.chunks_exact(32).map(|id| BlobId(id.try_into().unwrap_or([0; 32]))).collect();
    Ok(ObjectEntry { key, size, modified_ns, etag, blobs })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.bytes.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(length).ok_or("truncated")?;
        let bytes = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(bytes)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 64 bits".to_string())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Bytes shared at the start of `a` and `b`, cut back to a character boundary of `b`.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(shared) {
        shared -= 1;
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, blobs: usize, etag: Option<&str>) -> ListItem {
        ListItem::Object(ObjectEntry {
            key: key.to_string(),
            size: 4096 * blobs as u64 + 7,
            modified_ns: -1_700_000_000_123_456_789,
            etag: etag.map(str::to_string),
            blobs: (0..blobs).map(|n| BlobId([n as u8; 32])).collect(),
        })
    }

    #[test]
    fn test_a_chunk_round_trips_objects_deletions_and_odd_keys() {
        let items = vec![
            object("node1/dbs/0/1/2026-11-21/00-00/0000000001.parquet", 3, Some("a-b-c")),
            object("node1/dbs/0/1/2026-11-21/00-10/0000000002.parquet", 0, None),
            ListItem::Deleted("node1/wal/00000000001.wal".to_string()),
            object("node1/wal/00000000002.wal", 1, Some("")),
            object("node1/wal/é%2F#x", 1, None),
            object("node1/wal/éa", 2, None),
        ];
        let mut encoder = ChunkEncoder::default();
        for item in &items {
            encoder.push(item).unwrap();
        }
        assert_eq!(encoder.count(), 6);
        let (first, last) = encoder.key_range().unwrap();
        assert_eq!((first.as_str(), last.as_str()), (items[0].key(), items[5].key()));
        let bytes = encoder.finish();
        assert_eq!(decode_chunk(&bytes).unwrap(), items);
        assert_eq!(encoder.count(), 0, "the encoder starts over");
        assert_eq!(decode_chunk(&encoder.finish()).unwrap(), Vec::new());
    }

    #[test]
    fn test_keys_out_of_order_are_refused_on_both_sides() {
        let mut encoder = ChunkEncoder::default();
        encoder.push(&object("b", 1, None)).unwrap();
        let error = encoder.push(&object("a", 1, None)).unwrap_err();
        assert!(error.contains("`a` after `b`"), "{error}");
        assert!(encoder.push(&object("b", 1, None)).is_err(), "a repeated key");
    }

    #[test]
    fn test_damaged_chunks_are_errors_never_panics() {
        let mut encoder = ChunkEncoder::default();
        encoder.push(&object("node1/wal/00000000001.wal", 2, Some("etag"))).unwrap();
        encoder.push(&object("node1/wal/00000000002.wal", 1, None)).unwrap();
        let bytes = encoder.finish();
        for cut in 0..bytes.len() {
            assert!(decode_chunk(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_chunk(&extra).unwrap_err().contains("after the last item"));
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_chunk(&huge).unwrap_err().contains("says"));
        assert!(decode_chunk(b"{\"json\": true}").is_err());
    }

    #[test]
    fn test_shared_prefixes_make_a_directory_of_wal_files_cheap() {
        let mut encoder = ChunkEncoder::default();
        for sequence in 0..1000 {
            let key = format!("node1/wal/{sequence:011}.wal");
            encoder.push(&object(&key, 1, Some("0-1234567890-4096"))).unwrap();
        }
        let per_item = encoder.encoded_len() / 1000;
        assert!(per_item < 32 + 40, "{per_item} bytes per WAL entry");
    }

    #[test]
    fn test_varints_and_zigzag_cover_the_extremes() {
        for value in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Reader { bytes: &out, at: 0 }.varint().unwrap(), value);
        }
        for value in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(common_prefix("ab\u{e9}", "ab\u{e8}"), 2, "never inside a character");
    }
}
