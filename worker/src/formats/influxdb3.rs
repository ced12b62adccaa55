//! InfluxDB 3's file formats, checked as bytes stream past (`influxdb3_wal/src/serialize.rs`,
//! `influxdb3_catalog/src/format/header.rs`, `influxdb3_catalog/src/serialize/versions/`,
//! `influxdb3_write/src/paths.rs` at v3.10.1).

use bk_proto::influxdb3_layout::{V1_CATALOG_CHECKPOINT, V1_CATALOG_LOGS};
use crc_fast::{CrcAlgorithm, Digest};

/// The WAL file identifier.
const WAL_MAGIC: &[u8; 8] = b"idb3.001";
/// The v3 catalog header's magic and size.
const CATALOG_MAGIC: &[u8; 4] = b"IDB3";
const CATALOG_HEADER_SIZE: usize = 64;
/// v1/v2 catalog files: a 10-byte version id (`idb3.004.l`), then a big-endian CRC32.
const LEGACY_CATALOG_PREFIX: usize = 14;
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// Snapshot manifests are buffered to be parsed; larger ones are copied unvalidated.
const MAX_MANIFEST_BYTES: usize = 256 << 20;

/// Which format a key holds, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A WAL file, with the sequence in its name.
    Wal,
    /// A v3 catalog image (`catalog/v3/snapshot`).
    CatalogImage,
    /// A v3 catalog log, with the sequence in its name.
    CatalogLog(u64),
    /// A v1 or v2 catalog file (log or checkpoint).
    LegacyCatalog,
    /// A snapshot manifest; `u64::MAX - snapshot_sequence_number` is its name.
    SnapshotManifest(u64),
    /// A parquet file.
    Parquet,
    /// Something bk does not know: copied unvalidated.
    Unknown,
}

impl FileKind {
    /// The kind of the object at `key`.
    pub fn of(key: &str) -> FileKind {
        let name = key.rsplit('/').next().unwrap_or(key);
        let parent = key.rsplit('/').nth(1).unwrap_or("");
        let grandparent = key.rsplit('/').nth(2).unwrap_or("");
        let number = |stem: Option<&str>, digits: usize| {
            stem.filter(|stem| stem.len() == digits && stem.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|stem| stem.parse::<u64>().ok())
        };
        if parent == "wal" && number(name.strip_suffix(".wal"), 11).is_some() {
            return FileKind::Wal;
        }
        if key.ends_with("catalog/v3/snapshot") && parent == "v3" {
            return FileKind::CatalogImage;
        }
        if parent == "logs" && grandparent == "v3" {
            if let Some(sequence) = number(name.strip_suffix(".catalog"), 20) {
                return FileKind::CatalogLog(sequence);
            }
        }
        let v2 = grandparent == "v2" && parent == "logs" || parent == "v2" && name == "snapshot";
        let v1 = parent == V1_CATALOG_LOGS.trim_end_matches('/') || name == V1_CATALOG_CHECKPOINT;
        if (v1 || v2)
            && (name.ends_with(".catalog") || name == "snapshot" || name == V1_CATALOG_CHECKPOINT)
        {
            return FileKind::LegacyCatalog;
        }
        if parent == "snapshots" {
            if let Some(inverted) = number(name.strip_suffix(".info.json"), 20) {
                return FileKind::SnapshotManifest(inverted);
            }
        }
        if name.ends_with(".parquet") {
            return FileKind::Parquet;
        }
        FileKind::Unknown
    }

    /// How operators name it.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Wal => "WAL file",
            FileKind::CatalogImage => "catalog image",
            FileKind::CatalogLog(_) => "catalog log",
            FileKind::LegacyCatalog => "catalog file",
            FileKind::SnapshotManifest(_) => "snapshot manifest",
            FileKind::Parquet => "parquet file",
            FileKind::Unknown => "object",
        }
    }
}

/// What a valid object told about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validated {
    /// A v3 catalog file's catalog UUID (every file of one catalog must carry the same).
    pub catalog_uuid: Option<u128>,
    /// A v3 catalog file's sequence (for a log, the one its name carries too).
    pub catalog_sequence: Option<u64>,
}

/// Checks one object as its bytes stream past: [`Validator::update`] with every piece, in
/// order, then [`Validator::finish`]. Holds a few bytes, except for snapshot manifests (JSON,
/// parsed whole, up to 256 MiB).
#[derive(Debug)]
pub struct Validator {
    kind: FileKind,
    /// The leading bytes a header needs (WAL 12, catalog 64, legacy catalog 14, parquet 4).
    head: Vec<u8>,
    head_len: usize,
    /// CRC32 of everything after the head.
    crc: Digest,
    /// The last four bytes seen (parquet's closing magic).
    tail: [u8; 4],
    length: u64,
    /// A snapshot manifest's bytes, while under the limit.
    whole: Option<Vec<u8>>,
}

impl Validator {
    /// A validator for an object at `key`; `None` for kinds bk does not know.
    pub fn for_key(key: &str) -> Option<Validator> {
        let kind = FileKind::of(key);
        let head_len = match kind {
            FileKind::Wal => WAL_MAGIC.len() + 4,
            FileKind::CatalogImage | FileKind::CatalogLog(_) => CATALOG_HEADER_SIZE,
            FileKind::LegacyCatalog => LEGACY_CATALOG_PREFIX,
            FileKind::Parquet => PARQUET_MAGIC.len(),
            FileKind::SnapshotManifest(_) => 0,
            FileKind::Unknown => return None,
        };
        let whole = matches!(kind, FileKind::SnapshotManifest(_)).then(Vec::new);
        Some(Validator {
            kind,
            head: Vec::with_capacity(head_len),
            head_len,
            crc: Digest::new(CrcAlgorithm::Crc32IsoHdlc),
            tail: [0; 4],
            length: 0,
            whole,
        })
    }

    /// The kind being checked.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Feeds the next piece of the object.
    pub fn update(&mut self, mut piece: &[u8]) {
        self.length += piece.len() as u64;
        if let Some(whole) = &mut self.whole {
            if whole.len() + piece.len() <= MAX_MANIFEST_BYTES {
                whole.extend_from_slice(piece);
            } else {
                self.whole = None;
                self.kind = FileKind::Unknown; // Too large to parse here: copied unvalidated.
            }
            return;
        }
        self.remember_tail(piece);
        if self.head.len() < self.head_len {
            let take = (self.head_len - self.head.len()).min(piece.len());
            self.head.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
        }
        if !piece.is_empty() && self.kind != FileKind::Parquet {
            self.crc.update(piece);
        }
    }

    fn remember_tail(&mut self, piece: &[u8]) {
        if piece.len() >= 4 {
            self.tail.copy_from_slice(&piece[piece.len() - 4..]);
        } else {
            let keep = 4 - piece.len();
            self.tail.copy_within(piece.len().., 0);
            self.tail[keep..].copy_from_slice(piece);
        }
    }

    /// Ends the check.
    ///
    /// # Errors
    /// What is wrong with the object, in words an operator can act on.
    pub fn finish(self) -> Result<Validated, String> {
        let crc = self.crc.finalize() as u32;
        match self.kind {
            FileKind::Wal => check_wal(&self.head, crc).map(|()| Validated::default()),
            FileKind::CatalogImage | FileKind::CatalogLog(_) => {
                check_catalog(&self.head, self.kind, self.length, crc)
            }
            FileKind::LegacyCatalog => {
                check_legacy_catalog(&self.head, crc).map(|()| Validated::default())
            }
            FileKind::SnapshotManifest(inverted) => {
                let bytes = self.whole.unwrap_or_default();
                check_snapshot_manifest(&bytes, inverted).map(|()| Validated::default())
            }
            FileKind::Parquet => {
                check_parquet(&self.head, &self.tail, self.length).map(|()| Validated::default())
            }
            FileKind::Unknown => Ok(Validated::default()),
        }
    }
}

fn check_wal(head: &[u8], payload_crc: u32) -> Result<(), String> {
    check_framed(head, WAL_MAGIC.len(), payload_crc, |id| {
        (id == WAL_MAGIC).then_some(()).ok_or_else(|| {
            format!("bad magic {:?}, expected `idb3.001`", String::from_utf8_lossy(id))
        })
    })
}

/// A file framed as an identifier of `id_len` bytes, the big-endian CRC32 of the payload, then
/// the payload (WAL files, v1/v2 catalog files); `check_id` judges the identifier.
fn check_framed(
    head: &[u8],
    id_len: usize,
    payload_crc: u32,
    check_id: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    if head.len() < id_len + 4 {
        return Err(format!(
            "truncated: {} bytes, the file has at least {}",
            head.len(),
            id_len + 4
        ));
    }
    check_id(&head[..id_len])?;
    let recorded =
        u32::from_be_bytes([head[id_len], head[id_len + 1], head[id_len + 2], head[id_len + 3]]);
    if recorded != payload_crc {
        return Err(format!(
            "CRC32 mismatch: the file records {recorded:#010x}, its payload hashes to {payload_crc:#010x}"
        ));
    }
    Ok(())
}

fn check_catalog(
    head: &[u8],
    kind: FileKind,
    length: u64,
    payload_crc: u32,
) -> Result<Validated, String> {
    if head.len() < CATALOG_HEADER_SIZE {
        return Err(format!("truncated: {} bytes, the header alone is 64", head.len()));
    }
    let u32_at = |offset: usize| {
        u32::from_le_bytes([head[offset], head[offset + 1], head[offset + 2], head[offset + 3]])
    };
    let u64_at = |offset: usize| u64::from(u32_at(offset)) | u64::from(u32_at(offset + 4)) << 32;
    if &head[..4] != CATALOG_MAGIC {
        return Err(format!(
            "bad magic {:?}, expected `IDB3`",
            String::from_utf8_lossy(&head[..4])
        ));
    }
    if u32_at(4) != 1 {
        return Err(format!("unknown format version {}", u32_at(4)));
    }
    let header_crc = crc32(&head[0x0C..CATALOG_HEADER_SIZE]);
    if u32_at(8) != header_crc {
        return Err(format!(
            "header CRC32 mismatch: recorded {:#010x}, the header hashes to {header_crc:#010x}",
            u32_at(8)
        ));
    }
    let is_snapshot = u16::from_le_bytes([head[0x0C], head[0x0D]]) & 1 == 1;
    match kind {
        FileKind::CatalogImage if !is_snapshot => {
            return Err("the image's header lacks the SNAPSHOT flag".to_string())
        }
        FileKind::CatalogLog(_) if is_snapshot => {
            return Err("a log whose header has the SNAPSHOT flag".to_string())
        }
        _ => {}
    }
    let sequence = u64_at(0x20);
    if let FileKind::CatalogLog(named) = kind {
        if named != sequence {
            return Err(format!("its header says sequence {sequence}, its name {named}"));
        }
    }
    let payload_len = u64_at(0x30);
    let actual_len = length - CATALOG_HEADER_SIZE as u64;
    if payload_len != actual_len {
        return Err(format!(
            "the header records a {payload_len}-byte payload, the file holds {actual_len} (truncated?)"
        ));
    }
    if u32_at(0x38) != payload_crc {
        return Err(format!(
            "payload CRC32 mismatch: recorded {:#010x}, the payload hashes to {payload_crc:#010x}",
            u32_at(0x38)
        ));
    }
    let uuid = u128::from(u64_at(0x10)) | u128::from(u64_at(0x18)) << 64;
    Ok(Validated { catalog_uuid: Some(uuid), catalog_sequence: Some(sequence) })
}

fn check_legacy_catalog(head: &[u8], payload_crc: u32) -> Result<(), String> {
    check_framed(head, LEGACY_CATALOG_PREFIX - 4, payload_crc, |id| {
        id.starts_with(b"idb3.").then_some(()).ok_or_else(|| {
            format!(
                "unknown version id {:?}, expected `idb3.NNN.l` or `idb3.NNN.s`",
                String::from_utf8_lossy(id)
            )
        })
    })
}

fn check_snapshot_manifest(bytes: &[u8], inverted: u64) -> Result<(), String> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| format!("does not parse as JSON ({error})"))?;
    let sequence =
        manifest["snapshot_sequence_number"].as_u64().ok_or("has no `snapshot_sequence_number`")?;
    if manifest["wal_file_sequence_number"].as_u64().is_none() {
        return Err("has no `wal_file_sequence_number`".to_string());
    }
    if u64::MAX - sequence != inverted {
        return Err(format!(
            "its snapshot_sequence_number {sequence} does not match its name (which says {})",
            u64::MAX - inverted
        ));
    }
    Ok(())
}

fn check_parquet(head: &[u8], tail: &[u8; 4], length: u64) -> Result<(), String> {
    if length < 8 {
        return Err(format!("truncated: {length} bytes"));
    }
    if head != PARQUET_MAGIC {
        return Err("does not start with the `PAR1` magic".to_string());
    }
    if tail != PARQUET_MAGIC {
        return Err("does not end with the `PAR1` magic (truncated?)".to_string());
    }
    Ok(())
}

/// CRC-32 (ISO-HDLC, as zlib and crc32fast) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32IsoHdlc, bytes) as u32
}

#[cfg(test)]
#[path = "influxdb3_test.rs"]
mod influxdb3_test;
