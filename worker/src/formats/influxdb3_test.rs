use super::*;

/// A WAL file as `serialize_to_file_bytes` writes it.
fn wal(payload: &[u8]) -> Vec<u8> {
    let mut file = WAL_MAGIC.to_vec();
    file.extend_from_slice(&crc32(payload).to_be_bytes());
    file.extend_from_slice(payload);
    file
}

/// A v3 catalog file as `Header::to_bytes` writes it.
fn catalog(sequence: u64, snapshot: bool, uuid: u128, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 64];
    header[..4].copy_from_slice(CATALOG_MAGIC);
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    header[0x0C..0x0E].copy_from_slice(&u16::from(snapshot).to_le_bytes());
    header[0x10..0x20].copy_from_slice(&uuid.to_le_bytes());
    header[0x20..0x28].copy_from_slice(&sequence.to_le_bytes());
    header[0x30..0x38].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[0x38..0x3C].copy_from_slice(&crc32(payload).to_le_bytes());
    let header_crc = crc32(&header[0x0C..]);
    header[8..12].copy_from_slice(&header_crc.to_le_bytes());
    [header.as_slice(), payload].concat()
}

/// Runs a validator over `bytes` fed in pieces of `piece` bytes.
fn check(key: &str, bytes: &[u8], piece: usize) -> Result<Validated, String> {
    let mut validator = Validator::for_key(key).expect("a known kind");
    for part in bytes.chunks(piece.max(1)) {
        validator.update(part);
    }
    validator.finish()
}

fn check_every_split(key: &str, bytes: &[u8]) -> Result<Validated, String> {
    let whole = check(key, bytes, bytes.len());
    for piece in [1, 3, 7, 64, 65] {
        assert_eq!(check(key, bytes, piece), whole, "{key} fed in pieces of {piece}");
    }
    whole
}

#[test]
fn test_kinds_are_told_from_real_names() {
    let cases = [
        ("node1/wal/00000000001.wal", FileKind::Wal),
        ("node1/wal/1.wal", FileKind::Unknown),
        ("cluster1/catalog/v3/snapshot", FileKind::CatalogImage),
        ("cluster1/catalog/v3/logs/00000000000000000007.catalog", FileKind::CatalogLog(7)),
        ("cluster1/catalog/v2/logs/00000000000000000007.catalog", FileKind::LegacyCatalog),
        ("cluster1/catalog/v2/snapshot", FileKind::LegacyCatalog),
        ("cluster1/catalogs/00000000000000000003.catalog", FileKind::LegacyCatalog),
        ("cluster1/_catalog_checkpoint", FileKind::LegacyCatalog),
        (
            "node1/snapshots/18446744073709551614.info.json",
            FileKind::SnapshotManifest(18446744073709551614),
        ),
        ("node1/dbs/1/0/2026-11-21/23-10/0000000003.parquet", FileKind::Parquet),
        ("db/trades~1/2024-01-01/data.parquet", FileKind::Parquet),
        ("node1/db-indices/1/0/index.info.json", FileKind::Unknown),
        ("db/trades~1/_txn", FileKind::Unknown),
    ];
    for (key, kind) in cases {
        assert_eq!(FileKind::of(key), kind, "{key}");
    }
    assert!(Validator::for_key("conf/server.conf").is_none());
}

#[test]
fn test_wal_files_are_checked_for_magic_and_crc() {
    let key = "node1/wal/00000000001.wal";
    let good = wal(b"bitcode payload of a write batch");
    assert_eq!(check_every_split(key, &good), Ok(Validated::default()));
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(check_every_split(key, &flipped).unwrap_err().contains("CRC32 mismatch"));
    let mut magic = good.clone();
    magic[0] = b'x';
    assert!(check(key, &magic, 5).unwrap_err().contains("bad magic"));
    assert!(check(key, &good[..10], 4).unwrap_err().contains("truncated"));
}

#[test]
fn test_catalog_files_are_checked_header_payload_and_name() {
    let uuid = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
    let log = catalog(7, false, uuid, &[0xAB; 300]);
    let key = "c/catalog/v3/logs/00000000000000000007.catalog";
    let validated = Validated { catalog_uuid: Some(uuid), catalog_sequence: Some(7) };
    assert_eq!(check_every_split(key, &log), Ok(validated));
    let image = catalog(5, true, uuid, &[1; 100]);
    let image = check("c/catalog/v3/snapshot", &image, 17).unwrap();
    assert_eq!((image.catalog_uuid, image.catalog_sequence), (Some(uuid), Some(5)));

    let mut payload_flip = log.clone();
    payload_flip[100] ^= 0xFF;
    assert!(check(key, &payload_flip, 9).unwrap_err().contains("payload CRC32 mismatch"));
    let mut header_flip = log.clone();
    header_flip[0x22] ^= 1;
    assert!(check(key, &header_flip, 9).unwrap_err().contains("header CRC32 mismatch"));
    let truncated = &log[..log.len() - 10];
    assert!(check(key, truncated, 9).unwrap_err().contains("truncated?"));
    let misnamed = "c/catalog/v3/logs/00000000000000000008.catalog";
    assert!(check(misnamed, &log, 64).unwrap_err().contains("name 8"));
    assert!(check("c/catalog/v3/snapshot", &log, 64).unwrap_err().contains("SNAPSHOT flag"));
}

#[test]
fn test_legacy_catalog_files_are_checked_for_version_id_and_crc() {
    let payload = br#"{"sequence":3}"#;
    let mut file = b"idb3.004.l".to_vec();
    file.extend_from_slice(&crc32(payload).to_be_bytes());
    file.extend_from_slice(payload);
    let key = "c/catalogs/00000000000000000003.catalog";
    assert_eq!(check_every_split(key, &file), Ok(Validated::default()));
    let mut flipped = file.clone();
    flipped[20] ^= 1;
    assert!(check(key, &flipped, 3).unwrap_err().contains("CRC32 mismatch"));
}

#[test]
fn test_snapshot_manifests_must_parse_and_match_their_name() {
    let manifest = br#"{"version":"1","snapshot_sequence_number":1,"wal_file_sequence_number":9}"#;
    let key = "node1/snapshots/18446744073709551614.info.json";
    assert_eq!(check_every_split(key, manifest), Ok(Validated::default()));
    let truncated = &manifest[..manifest.len() - 5];
    assert!(check(key, truncated, 8).unwrap_err().contains("does not parse"));
    let other = "node1/snapshots/18446744073709551613.info.json";
    assert!(check(other, manifest, 8).unwrap_err().contains("does not match its name"));
}

#[test]
fn test_parquet_needs_its_magic_at_both_ends() {
    let key = "node1/dbs/1/0/2026-11-21/23-10/0000000003.parquet";
    let good = [PARQUET_MAGIC.as_slice(), &[9; 40], PARQUET_MAGIC].concat();
    assert_eq!(check_every_split(key, &good), Ok(Validated::default()));
    let cut = &good[..good.len() - 2];
    assert!(check(key, cut, 3).unwrap_err().contains("does not end"));
    assert!(check(key, &good[4..], 3).unwrap_err().contains("does not start"));
}
