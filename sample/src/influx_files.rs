//! InfluxDB 3's file formats as the server writes them (v3.10.1: `influxdb3_wal/src/serialize.rs`,
//! `influxdb3_catalog/src/format/header.rs`, `influxdb3_catalog/src/serialize/versions/mod.rs`),
//! so generated trees pass the checks bk makes of them, and tests can damage them precisely.

/// A WAL file: `idb3.001`, the big-endian CRC32 of the payload, the payload.
pub fn wal_file(payload: &[u8]) -> Vec<u8> {
    let mut file = b"idb3.001".to_vec();
    file.extend_from_slice(&crc32(payload).to_be_bytes());
    file.extend_from_slice(payload);
    file
}

/// A v3 catalog file (image when `is_image`, else a log): the 64-byte little-endian header
/// (`IDB3`, format 1, header CRC over 0x0C..0x40, flags, catalog UUID, sequence, record count,
/// group count, payload length and CRC), then the payload.
pub fn catalog_v3_file(uuid: u128, sequence: u64, is_image: bool, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 64];
    header[..4].copy_from_slice(b"IDB3");
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    header[0x0C..0x0E].copy_from_slice(&u16::from(is_image).to_le_bytes());
    header[0x10..0x20].copy_from_slice(&uuid.to_le_bytes());
    header[0x20..0x28].copy_from_slice(&sequence.to_le_bytes());
    header[0x28..0x2C].copy_from_slice(&1u32.to_le_bytes());
    header[0x2C..0x30].copy_from_slice(&u32::from(is_image).to_le_bytes());
    header[0x30..0x38].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[0x38..0x3C].copy_from_slice(&crc32(payload).to_le_bytes());
    let header_crc = crc32(&header[0x0C..]);
    header[0x08..0x0C].copy_from_slice(&header_crc.to_le_bytes());
    [header.as_slice(), payload].concat()
}

/// The catalog UUID in a v3 catalog file's header, if it has one.
pub fn catalog_v3_uuid(file: &[u8]) -> Option<u128> {
    let bytes: [u8; 16] = file.get(0x10..0x20)?.try_into().ok()?;
    (file.starts_with(b"IDB3")).then(|| u128::from_le_bytes(bytes))
}

/// A v1/v2 catalog file: a 10-byte version id (`idb3.004.l`, `idb3.004.s`), the big-endian
/// CRC32 of the payload, the (JSON) payload.
pub fn legacy_catalog_file(version_id: &[u8; 10], payload: &[u8]) -> Vec<u8> {
    let mut file = version_id.to_vec();
    file.extend_from_slice(&crc32(payload).to_be_bytes());
    file.extend_from_slice(payload);
    file
}

/// `PAR1`, body, `PAR1`: a parquet file's framing.
pub fn parquet_file(body: &[u8]) -> Vec<u8> {
    [b"PAR1".as_slice(), body, b"PAR1"].concat()
}

/// A real parquet file as InfluxDB 3 persists a table chunk, reduced to what bk reads: a
/// `time` column (nanoseconds, with min/max statistics in the footer) and a `payload` column
/// that gives the file its size. `payload` is split evenly over `rows` rows; row `i` has time
/// `first_ns + i × step_ns`.
///
/// # Panics
/// Only if the parquet writer fails on in-memory data (a bug).
pub fn parquet_table_file(rows: u64, first_ns: i64, step_ns: i64, payload: &[u8]) -> Vec<u8> {
    use parquet::basic::Compression;
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::ColumnPath;
    use std::sync::Arc;

    let rows = rows.max(1);
    let schema =
        "message table { required int64 time (TIMESTAMP(NANOS,false)); required binary payload; }";
    let schema =
        Arc::new(parquet::schema::parser::parse_message_type(schema).expect("valid schema"));
    let properties = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_column_statistics_enabled(ColumnPath::from("payload"), EnabledStatistics::None)
        .build();
    let times: Vec<i64> = (0..rows as i64).map(|row| first_ns + row * step_ns).collect();
    let per_row = payload.len().div_ceil(rows as usize).max(1);
    let mut values: Vec<ByteArray> =
        payload.chunks(per_row).map(|chunk| ByteArray::from(chunk.to_vec())).collect();
    values.resize(rows as usize, ByteArray::from(Vec::new()));
    let mut file = Vec::with_capacity(payload.len() + 4096);
    let mut writer =
        SerializedFileWriter::new(&mut file, schema, Arc::new(properties)).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    while let Some(mut column) = group.next_column().expect("column") {
        match column.untyped() {
            ColumnWriter::Int64ColumnWriter(typed) => {
                typed.write_batch(&times, None, None).expect("times");
            }
            ColumnWriter::ByteArrayColumnWriter(typed) => {
                typed.write_batch(&values, None, None).expect("payload");
            }
            _ => unreachable!("the schema has two columns"),
        }
        column.close().expect("close column");
    }
    group.close().expect("close row group");
    writer.close().expect("close file");
    file
}

/// CRC-32 (ISO-HDLC, as crc32fast), bit by bit: test files are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_crc32_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn test_catalog_header_carries_the_uuid_and_payload_facts() {
        let file = catalog_v3_file(42, 7, false, b"records");
        assert_eq!(file.len(), 64 + 7);
        assert_eq!(catalog_v3_uuid(&file), Some(42));
        assert_eq!(u64::from_le_bytes(file[0x20..0x28].try_into().unwrap()), 7);
        let header_crc = u32::from_le_bytes(file[8..12].try_into().unwrap());
        assert_eq!(header_crc, crc32(&file[0x0C..64]));
    }
}
