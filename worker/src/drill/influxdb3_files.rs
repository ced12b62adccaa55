//! Offline checks of a restored InfluxDB 3 tree, with what bk knows of its formats
//! (`influxdb3-layout.md`): the catalog loads (headers, CRCs, one catalog UUID, contiguous log
//! sequences), every snapshot manifest parses, every parquet file the manifests keep exists and
//! its footer reads (rows per table and time range from the footers), and the WAL files after
//! the newest snapshot are contiguous and CRC-clean. The first failure is returned, naming the
//! file; a server started on such a tree would start and then fail (or silently miss data).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bk_proto::model::TableFacts;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::statistics::Statistics;
use serde_json::Value;

use super::files::{files_under, read};
use crate::formats::influxdb3::{FileKind, Validated, Validator};
use crate::tasks::consistency::wal_sequence;
use crate::tasks::influxdb3::{log_gap, mixed_catalog_uuids};

/// What the offline checks found.
#[derive(Debug, Default)]
pub struct OfflineFacts {
    /// What passed, one line each.
    pub checks: Vec<String>,
    /// Rows and time range per table (`dbs/<db id>/<table id>`), from the parquet footers.
    pub tables: Vec<TableFacts>,
}

/// Checks the tree under `root` for `nodes`, with the catalog under `catalog_prefix` (the
/// cluster id on Enterprise, the node id on Core). Parquet files in `retention_deleted` (the
/// backup found them deleted by retention, while the manifests still name them) may be missing.
///
/// # Errors
/// The first failure, naming the file and what is wrong.
pub fn check_tree(
    root: &Path,
    nodes: &[String],
    catalog_prefix: &str,
    retention_deleted: &BTreeSet<String>,
) -> Result<OfflineFacts, String> {
    let mut facts = OfflineFacts::default();
    facts.checks.push(check_catalog(root, catalog_prefix)?);
    let mut tables: BTreeMap<String, TableRange> = BTreeMap::new();
    for node in nodes {
        facts.checks.extend(check_node(root, node, retention_deleted, &mut tables)?);
    }
    facts.tables = tables.into_iter().map(|(table, range)| range.facts(table)).collect();
    Ok(facts)
}

/// Checks `bytes`, the object at `key`, with bk's format validators.
fn validate(key: &str, bytes: &[u8]) -> Result<Validated, String> {
    let Some(mut validator) = Validator::for_key(key) else { return Ok(Validated::default()) };
    validator.update(bytes);
    let kind = validator.kind().describe();
    validator.finish().map_err(|reason| format!("{kind} `{key}`: {reason}"))
}

/// The catalog as the backup's own catalog copy checks it ([`log_gap`],
/// [`mixed_catalog_uuids`]): every file valid, one catalog UUID, v3 logs after the image
/// without a gap.
fn check_catalog(root: &Path, prefix: &str) -> Result<String, String> {
    let mut uuids = Vec::new();
    let mut image_sequence = None;
    let mut logs = Vec::new();
    let mut legacy = 0;
    for (relative, path) in files_under(&root.join(prefix))? {
        let key = format!("{prefix}/{relative}");
        let kind = FileKind::of(&key);
        if !matches!(
            kind,
            FileKind::CatalogImage | FileKind::CatalogLog(_) | FileKind::LegacyCatalog
        ) {
            continue;
        }
        let validated = validate(&key, &read(&path)?)?;
        uuids.extend(validated.catalog_uuid.map(|uuid| (key.clone(), uuid)));
        match kind {
            FileKind::CatalogImage => image_sequence = validated.catalog_sequence,
            FileKind::CatalogLog(sequence) => logs.push(sequence),
            _ => legacy += 1,
        }
    }
    if let Some(mixed) = mixed_catalog_uuids(&uuids).first() {
        return Err(mixed.reason.clone());
    }
    if image_sequence.is_none() && logs.is_empty() {
        if legacy == 0 {
            return Err(format!(
                "no catalog under `{prefix}/` in the restored tree (catalog/v3/, catalog/v2/ or catalogs/): the server \
                 would start with an empty catalog and see no data"
            ));
        }
        return Ok(format!("catalog (3.0-3.9 layout): {legacy} files with valid headers and CRCs"));
    }
    logs.sort_unstable();
    if let Some(gap) = log_gap(image_sequence.unwrap_or(0), &logs) {
        return Err(format!(
            "catalog logs under `{prefix}/catalog/v3/logs/` have a gap ({gap}): the logs in between are missing, so \
             the catalog cannot be replayed"
        ));
    }
    let newest = logs.last().copied().max(image_sequence).unwrap_or(0);
    Ok(format!(
        "catalog v3: {} + {} logs load (headers, CRCs, one catalog UUID), contiguous to sequence {newest}",
        image_sequence.map_or("no image".to_string(), |sequence| format!("image at sequence {sequence}")),
        logs.len()
    ))
}

/// One parquet file a manifest names.
struct ParquetRef {
    table: String,
    row_count: Option<u64>,
    manifest: String,
}

fn check_node(
    root: &Path,
    node: &str,
    retention_deleted: &BTreeSet<String>,
    tables: &mut BTreeMap<String, TableRange>,
) -> Result<Vec<String>, String> {
    let snapshots = read_manifests(root, node)?;
    let mut checks = check_parquet(root, node, &snapshots, retention_deleted, tables)?;
    checks.push(check_wal(root, node, snapshots.covered_wal)?);
    Ok(checks)
}

/// What a node's snapshot manifests say together.
struct Snapshots {
    /// Parquet files added and not removed by a later manifest, by path.
    kept: BTreeMap<String, ParquetRef>,
    /// The WAL the newest snapshot covers.
    covered_wal: u64,
    num_manifests: usize,
}

/// Every snapshot manifest of the node validates and parses.
fn read_manifests(root: &Path, node: &str) -> Result<Snapshots, String> {
    let mut added: BTreeMap<String, ParquetRef> = BTreeMap::new();
    let mut removed = BTreeSet::new();
    let mut covered_wal = 0u64;
    let mut newest_snapshot = None;
    let mut num_manifests = 0;
    for (relative, path) in files_under(&root.join(node).join("snapshots"))? {
        let key = format!("{node}/snapshots/{relative}");
        if !matches!(FileKind::of(&key), FileKind::SnapshotManifest(_)) {
            continue;
        }
        let bytes = read(&path)?;
        validate(&key, &bytes)?;
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|error| format!("snapshot manifest `{key}` does not parse: {error}"))?;
        let sequence = manifest["snapshot_sequence_number"].as_u64().unwrap_or(0);
        if newest_snapshot.is_none_or(|newest| sequence > newest) {
            newest_snapshot = Some(sequence);
            covered_wal = manifest["wal_file_sequence_number"].as_u64().unwrap_or(0);
        }
        for (path, file) in parquet_files(&manifest["databases"], &key) {
            added.insert(path, file);
        }
        removed.extend(
            parquet_files(&manifest["removed_files"], &key).into_iter().map(|(path, _)| path),
        );
        num_manifests += 1;
    }
    added.retain(|path, _| !removed.contains(path));
    Ok(Snapshots { kept: added, covered_wal, num_manifests })
}

/// Every parquet file the manifests keep is present (or was deleted by retention, as the
/// backup recorded) and its footer agrees with the manifest; adds each to its table's range.
fn check_parquet(
    root: &Path,
    node: &str,
    snapshots: &Snapshots,
    retention_deleted: &BTreeSet<String>,
    tables: &mut BTreeMap<String, TableRange>,
) -> Result<Vec<String>, String> {
    let mut rows = 0u64;
    let mut files = 0;
    let mut expired = Vec::new();
    for (path, file) in &snapshots.kept {
        let local = root.join(path);
        if !local.is_file() && retention_deleted.contains(path) {
            expired.push(path.as_str());
            continue;
        }
        if !local.is_file() {
            return Err(format!(
                "parquet file `{path}` named by snapshot manifest `{}` is missing from the restored tree: queries \
                 over its time range would fail",
                file.manifest
            ));
        }
        let footer =
            read_footer(&local).map_err(|reason| format!("parquet file `{path}`: {reason}"))?;
        if let Some(expected) = file.row_count.filter(|expected| *expected != footer.rows) {
            return Err(format!(
                "parquet file `{path}` holds {} rows by its footer, but snapshot manifest `{}` says {expected}",
                footer.rows, file.manifest
            ));
        }
        tables.entry(file.table.clone()).or_default().add(&footer);
        rows += footer.rows;
        files += 1;
    }
    let mut checks = vec![format!(
        "{node}: {} snapshot manifests parse; the {files} parquet files they keep are present and their \
         footers read ({rows} rows)",
        snapshots.num_manifests
    )];
    if let Some(first) = expired.first() {
        checks.push(format!(
            "{node}: {} parquet file(s) the manifests still name were deleted by retention before the backup (as \
             the backup recorded; e.g. `{first}`): expected missing, the server has no rows from them",
            expired.len()
        ));
    }
    Ok(checks)
}

/// The WAL files after the newest snapshot are contiguous and pass their CRC.
fn check_wal(root: &Path, node: &str, covered_wal: u64) -> Result<String, String> {
    let mut wal: Vec<(u64, String, std::path::PathBuf)> =
        files_under(&root.join(node).join("wal"))?
            .into_iter()
            .filter_map(|(relative, path)| {
                let key = format!("{node}/wal/{relative}");
                let sequence = wal_sequence(&key)?;
                (sequence > covered_wal).then_some((sequence, key, path))
            })
            .collect();
    wal.sort();
    for (expected, (sequence, key, path)) in (covered_wal + 1..).zip(&wal) {
        if *sequence != expected {
            return Err(format!(
                "{node}: WAL {expected}..={} missing after the snapshot covering WAL {covered_wal}: the writes in \
                 them are lost on replay",
                sequence - 1
            ));
        }
        validate(key, &read(path)?)?;
    }
    Ok(match wal.last() {
        Some((last, _, _)) => format!(
            "{node}: WAL {}..={last} after the snapshot covering WAL {covered_wal} contiguous and CRC-clean",
            covered_wal + 1
        ),
        None => format!("{node}: no WAL after the snapshot covering WAL {covered_wal}"),
    })
}

/// Parquet files in `[[db_id, {"tables": [[table_id, [file, …]], …]}], …]`, by path.
fn parquet_files(databases: &Value, manifest: &str) -> Vec<(String, ParquetRef)> {
    let mut files = Vec::new();
    for database in databases.as_array().into_iter().flatten() {
        for table in database[1]["tables"].as_array().into_iter().flatten() {
            let name = format!("dbs/{}/{}", id(&database[0]), id(&table[0]));
            for file in table[1].as_array().into_iter().flatten() {
                let Some(path) = file["path"].as_str() else { continue };
                let reference = ParquetRef {
                    table: name.clone(),
                    row_count: file["row_count"].as_u64(),
                    manifest: manifest.to_string(),
                };
                files.push((object_store::path::Path::from(path).to_string(), reference));
            }
        }
    }
    files
}

fn id(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What a parquet footer says.
pub struct Footer {
    /// Rows.
    pub rows: u64,
    /// The `time` column's minimum and maximum (ns since the epoch), over row groups with
    /// statistics.
    pub time: Option<(i64, i64)>,
}

/// Reads a parquet file's footer (metadata only: no page is read).
///
/// # Errors
/// When the file is not parquet or its footer does not decode.
pub fn read_footer(path: &Path) -> Result<Footer, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|error| format!("its footer does not read: {error}"))?;
    let rows = u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
    let schema = metadata.file_metadata().schema_descr();
    let column = (0..schema.num_columns()).find(|index| schema.column(*index).name() == "time");
    let mut time: Option<(i64, i64)> = None;
    for group in metadata.row_groups() {
        let Some(Statistics::Int64(stats)) =
            column.and_then(|index| group.column(index).statistics())
        else {
            continue;
        };
        if let (Some(min), Some(max)) = (stats.min_opt(), stats.max_opt()) {
            time = Some(time.map_or((*min, *max), |(lo, hi)| (lo.min(*min), hi.max(*max))));
        }
    }
    Ok(Footer { rows, time })
}

#[derive(Default)]
struct TableRange {
    rows: u64,
    time: Option<(i64, i64)>,
}

impl TableRange {
    fn add(&mut self, footer: &Footer) {
        self.rows += footer.rows;
        if let Some((min, max)) = footer.time {
            self.time = Some(self.time.map_or((min, max), |(lo, hi)| (lo.min(min), hi.max(max))));
        }
    }

    fn facts(self, table: String) -> TableFacts {
        let format = |nanos: i64| {
            chrono::DateTime::from_timestamp_nanos(nanos)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        };
        TableFacts {
            table,
            rows: self.rows,
            min_time: self.time.map(|(min, _)| format(min)).unwrap_or_default(),
            max_time: self.time.map(|(_, max)| format(max)).unwrap_or_default(),
            from: "files".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bk_sample::layout::{generate, LayoutParams};

    use super::*;

    /// A generated one-node Core tree (node `node0`, catalog under `node0/`) and its keys.
    fn tree() -> (tempfile::TempDir, Vec<String>) {
        let root = tempfile::tempdir().unwrap();
        let generated = generate(root.path(), &LayoutParams::core(256 << 10)).unwrap();
        (root, generated.keys)
    }

    fn check(root: &Path) -> Result<OfflineFacts, String> {
        check_tree(root, &["node0".to_string()], "node0", &BTreeSet::new())
    }

    /// The last key under `prefix` ending in `suffix`.
    fn last(keys: &[String], prefix: &str, suffix: &str) -> String {
        let found = keys.iter().filter(|key| key.starts_with(prefix) && key.ends_with(suffix));
        found.max().cloned().unwrap_or_else(|| panic!("no {prefix}…{suffix} in {keys:?}"))
    }

    #[test]
    fn test_a_generated_tree_passes_with_rows_and_ranges_per_table() {
        let (root, _) = tree();
        let facts = check(root.path()).unwrap();
        assert!(
            facts.checks.iter().any(|check| check.contains("snapshot manifests parse")),
            "{:?}",
            facts.checks
        );
        assert!(!facts.tables.is_empty());
        assert!(facts
            .tables
            .iter()
            .all(|table| table.rows > 0 && table.min_time <= table.max_time));
    }

    #[test]
    fn test_each_kind_of_damage_fails_naming_the_file() {
        /// Damages the tree, returning the key it damaged.
        type Damage = fn(&Path, &[String]) -> String;
        let cases: Vec<(&str, Damage)> = vec![
            ("a parquet file the manifests keep is gone", |root, keys| {
                let parquet = last(keys, "node0/dbs/", ".parquet");
                std::fs::remove_file(root.join(&parquet)).unwrap();
                parquet
            }),
            ("the newest WAL file is cut short", |root, keys| {
                let wal = last(keys, "node0/wal/", ".wal");
                let bytes = std::fs::read(root.join(&wal)).unwrap();
                std::fs::write(root.join(&wal), &bytes[..bytes.len() / 2]).unwrap();
                wal
            }),
            ("a catalog log has a flipped byte", |root, keys| {
                let log = last(keys, "node0/catalog/", ".catalog");
                let mut bytes = std::fs::read(root.join(&log)).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                std::fs::write(root.join(&log), bytes).unwrap();
                log
            }),
        ];
        for (case, damage) in cases {
            let (root, keys) = tree();
            let damaged = damage(root.path(), &keys);
            let error = check(root.path()).map(|facts| facts.checks).unwrap_err();
            let name = damaged.rsplit('/').next().unwrap_or_default();
            assert!(error.contains(name), "{case}: the error does not name `{damaged}`: {error}");
        }
    }
}
