//! A realistic InfluxDB 3 object-store tree, from the facts in
//! `shared/reference/influxdb3-layout.md` (InfluxDB 3.10.1 source):
//!
//! ```text
//! <node>/wal/00000000001.wal                          11-digit WAL sequence, "idb3.001" + CRC32 + payload
//! <node>/snapshots/<u64::MAX - seq:020>.info.json     snapshot manifest naming its parquet files
//! <node>/dbs/<db>/<table>/<YYYY-MM-DD>/<HH-MM>/<wal seq:010>.parquet
//! <node>/table-index-conversion-completed, <node>/db-indices/<db>/<table>/index.info.json
//! <node>/table-snapshots/<db>/<table>/<seq:020>.info.json   (transient, excluded from backups)
//! <cluster>/catalog/v3/snapshot + <cluster>/catalog/v3/logs/<seq:020>.catalog   ("IDB3" header)
//! <cluster>/enterprise, <cluster>/commercial_license
//! <compactor>/cs/…, <compactor>/cd/…, <compactor>/c/…   (compaction summaries, details, output)
//! ```
//! Deterministic for a given seed.

use std::fs;
use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;

use crate::influx_files::{
    catalog_v3_file, legacy_catalog_file, parquet_file, parquet_table_file, wal_file,
};

/// 2026-11-21T00:00:00Z in nanoseconds: the day the generated parquet paths name.
const CHUNK_EPOCH_NS: i64 = 1_795_219_200_000_000_000;

/// Which catalog layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogFlavor {
    /// `catalog/v3/snapshot` + `catalog/v3/logs/*.catalog` (3.10+).
    V3,
    /// `catalog/v2/snapshot` + `catalog/v2/logs/*.catalog` (3.4–3.9).
    V2,
    /// `catalogs/*.catalog` + `_catalog_checkpoint` (3.0–3.3).
    V1,
    /// No catalog at all (a misconfigured or wrong cluster id).
    None,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct LayoutParams {
    /// Enterprise cluster id; `None` for Core (catalog under the node).
    pub cluster_id: Option<String>,
    /// The compactor's node id (Enterprise only).
    pub compactor_node: Option<String>,
    /// Data node ids (Core: exactly one).
    pub data_nodes: Vec<String>,
    /// Catalog layout.
    pub catalog: CatalogFlavor,
    /// Snapshots per node; each covers `wal_per_snapshot` WAL files.
    pub snapshots_per_node: u32,
    /// WAL files per snapshot.
    pub wal_per_snapshot: u32,
    /// Snapshotted WAL files kept (as `--snapshotted-wal-files-to-keep`), plus un-snapshotted ones.
    pub wal_files_kept: u32,
    /// Parquet files per snapshot.
    pub parquet_per_snapshot: u32,
    /// Parquet file sizes, bytes (uniform in the range).
    pub parquet_size: (u64, u64),
    /// WAL file payload size, bytes.
    pub wal_size: u64,
    /// Write licence files.
    pub licence: bool,
    /// RNG seed.
    pub seed: u64,
}

impl LayoutParams {
    /// A 3-data-node + compactor Enterprise cluster with a v3 catalog, of roughly `total_bytes`.
    pub fn enterprise(total_bytes: u64) -> Self {
        let nodes = 4u64;
        let snapshots = 6u64;
        let parquet_per_snapshot = 4u64;
        let average = (total_bytes / (nodes * snapshots * parquet_per_snapshot)).max(1024);
        Self {
            cluster_id: Some("cluster1".to_string()),
            compactor_node: Some("compactor".to_string()),
            data_nodes: vec!["node1".to_string(), "node2".to_string(), "node3".to_string()],
            catalog: CatalogFlavor::V3,
            snapshots_per_node: snapshots as u32,
            wal_per_snapshot: 5,
            wal_files_kept: 12,
            parquet_per_snapshot: parquet_per_snapshot as u32,
            parquet_size: (average / 2, average * 3 / 2),
            wal_size: 4096,
            licence: true,
            seed: 42,
        }
    }

    /// The benchmark's mix, of roughly `total_bytes`: a 3-data-node + compactor Enterprise cluster
    /// whose nodes each keep about a thousand small (4 KiB) WAL files, twelve snapshot manifests,
    /// and parquet files from 1 MiB up to 64 MiB (the upper end shrinks for totals under about
    /// 1.5 GiB, where 64 MiB files would not fit twelve snapshots per node).
    pub fn benchmark_mix(total_bytes: u64) -> Self {
        const MIB: u64 = 1 << 20;
        let snapshots = 12u64;
        let files_per_round = 4 * snapshots;
        let parquet_per_snapshot = (total_bytes / (files_per_round * 65 * MIB / 2)).max(1);
        let average = total_bytes / (files_per_round * parquet_per_snapshot);
        let largest = (2 * average).saturating_sub(MIB).clamp(MIB, 64 * MIB);
        Self {
            snapshots_per_node: snapshots as u32,
            wal_per_snapshot: 90,
            wal_files_kept: 1000,
            parquet_per_snapshot: parquet_per_snapshot as u32,
            parquet_size: (MIB.min(largest), largest),
            wal_size: 4096,
            ..Self::enterprise(total_bytes)
        }
    }

    /// `nodes` data nodes and a compactor, each with about `objects_per_node` small objects
    /// (mostly WAL, one parquet per ten WAL files): the coordinator's scale test, where object
    /// counts matter and bytes do not.
    pub fn many_nodes(nodes: usize, objects_per_node: u32) -> Self {
        let snapshots = 10u32;
        let wal_per_snapshot = (objects_per_node * 10 / 11 / snapshots).max(1);
        Self {
            data_nodes: (1..=nodes).map(|index| format!("node{index:03}")).collect(),
            snapshots_per_node: snapshots,
            wal_per_snapshot,
            wal_files_kept: snapshots * wal_per_snapshot,
            parquet_per_snapshot: (wal_per_snapshot / 10).max(1),
            parquet_size: (512, 2048),
            wal_size: 256,
            ..Self::enterprise(1 << 20)
        }
    }

    /// A single Core node with its catalog under the node id.
    pub fn core(total_bytes: u64) -> Self {
        let mut params = Self::enterprise(total_bytes * 4);
        params.cluster_id = None;
        params.compactor_node = None;
        params.data_nodes = vec!["node0".to_string()];
        params.licence = false;
        params
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    /// Every object key written (relative to the root), sorted.
    pub keys: Vec<String>,
    /// Total bytes written.
    pub num_bytes: u64,
}

/// Writes the tree under `root` (which is the object store's root, e.g. InfluxDB's data dir).
///
/// # Errors
/// IO errors writing files.
pub fn generate(root: &Path, params: &LayoutParams) -> std::io::Result<Generated> {
    let mut writer = TreeWriter {
        root,
        generated: Generated::default(),
        rng: StdRng::seed_from_u64(params.seed),
    };
    let mut nodes = params.data_nodes.clone();
    nodes.extend(params.compactor_node.clone());
    for node in &nodes {
        write_node(&mut writer, node, params)?;
    }
    if let Some(compactor) = &params.compactor_node {
        write_compactor(&mut writer, compactor, params)?;
    }
    let catalog_prefix = params.cluster_id.clone().unwrap_or_else(|| params.data_nodes[0].clone());
    // At least as many logs as the newest snapshot needs (they name sequence `2 × snapshot`).
    let num_logs = (nodes.len() as u64 * 3).max(2 * u64::from(params.snapshots_per_node));
    write_catalog(&mut writer, &catalog_prefix, params.catalog, num_logs)?;
    if let Some(cluster) = &params.cluster_id {
        let enterprise = json!({"cluster_id": cluster, "nodes": nodes, "mode": "all"});
        writer.write(&format!("{cluster}/enterprise"), enterprise.to_string().as_bytes())?;
        if params.licence {
            let licence = writer.random_bytes(1200);
            writer.write(&format!("{cluster}/commercial_license"), &licence)?;
        }
    }
    let mut generated = writer.generated;
    generated.keys.sort();
    Ok(generated)
}

/// Many small parquet files, as a node that keeps weeks of 10-minute chunks of many tables
/// holds them: each 10-minute slot, every table writes one file, under
/// `<node>/dbs/7/<table>/<YYYY-MM-DD>/<HH-MM>/<slot:010>.parquet` (days from 2026-09-01).
/// The bench's large trees; a later `first_slot` adds the next slots (what a live node writes
/// between two backups: a file per table, each in a new directory).
#[derive(Clone, Debug)]
pub struct SmallParquet {
    /// The nodes that get them, each `per_node`.
    pub nodes: Vec<String>,
    /// Files per node.
    pub per_node: u64,
    /// Tables per node (files go round-robin over them, then to the next slot).
    pub tables: u64,
    /// Bytes per file (`PAR1` at both ends, random in between).
    pub size: u64,
    /// The 10-minute slot of each node's first file.
    pub first_slot: u64,
    /// RNG seed.
    pub seed: u64,
}

impl SmallParquet {
    /// The slot after the last one these files fill.
    pub fn next_slot(&self) -> u64 {
        self.first_slot + self.per_node.div_ceil(self.tables.max(1))
    }
}

/// Writes `spec`'s files under `root`.
///
/// # Errors
/// IO errors writing files.
pub fn add_small_parquet(root: &Path, spec: &SmallParquet) -> std::io::Result<Generated> {
    let mut writer =
        TreeWriter { root, generated: Generated::default(), rng: StdRng::seed_from_u64(spec.seed) };
    let day_zero = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default();
    let mut body = vec![0u8; spec.size.max(8) as usize];
    body[..4].copy_from_slice(b"PAR1");
    let end = body.len();
    body[end - 4..].copy_from_slice(b"PAR1");
    for node in &spec.nodes {
        let mut made_dirs = std::collections::HashSet::new();
        for index in 0..spec.per_node {
            let table = index % spec.tables.max(1);
            let slot = spec.first_slot + index / spec.tables.max(1);
            let minutes = slot * 10;
            let date = day_zero + chrono::Days::new(minutes / 1440);
            let dir = format!(
                "{node}/dbs/7/{table}/{}/{:02}-{:02}",
                date.format("%Y-%m-%d"),
                minutes % 1440 / 60,
                minutes % 60
            );
            if made_dirs.insert(dir.clone()) {
                fs::create_dir_all(root.join(&dir))?;
            }
            writer.rng.fill_bytes(&mut body[4..end - 4]);
            let key = format!("{dir}/{slot:010}.parquet");
            fs::File::create(root.join(&key))?.write_all(&body)?;
            writer.generated.keys.push(key);
            writer.generated.num_bytes += body.len() as u64;
        }
    }
    writer.generated.keys.sort();
    Ok(writer.generated)
}

fn write_node(
    writer: &mut TreeWriter<'_>,
    node: &str,
    params: &LayoutParams,
) -> std::io::Result<()> {
    let total_wal = params.snapshots_per_node * params.wal_per_snapshot;
    // Un-snapshotted WAL files after the last snapshot, as on a live node.
    let unsnapshotted = params.wal_per_snapshot / 2 + 1;
    let first_kept = total_wal.saturating_sub(params.wal_files_kept).max(1);
    for sequence in first_kept..=total_wal + unsnapshotted {
        let payload = writer.random_bytes(params.wal_size);
        writer.write(&format!("{node}/wal/{sequence:011}.wal"), &wal_file(&payload))?;
    }
    let (db_id, table_id) = (1u32, 0u32);
    let mut all_parquet = Vec::new();
    // Per table, its files as InfluxDB's table index lists them (`CoreTableIndex`).
    let mut per_table: std::collections::BTreeMap<u32, Vec<serde_json::Value>> = Default::default();
    for snapshot in 1..=params.snapshots_per_node {
        let last_wal = snapshot * params.wal_per_snapshot;
        let mut files = Vec::new();
        for index in 0..params.parquet_per_snapshot {
            let minutes = (snapshot * params.parquet_per_snapshot + index) * 10;
            let path = format!(
                "{node}/dbs/{db_id}/{}/2026-11-21/{:02}-{:02}/{last_wal:010}.parquet",
                table_id + index % 2,
                (minutes / 60) % 24,
                minutes % 60
            );
            let size = writer.rng.random_range(
                params.parquet_size.0..=params.parquet_size.1.max(params.parquet_size.0),
            );
            let body = writer.random_bytes(size);
            // One row per 4 KiB, one second apart, from the chunk's start time.
            let rows = (size / 4096).max(1);
            let first_ns = CHUNK_EPOCH_NS + i64::from(minutes) * 60_000_000_000;
            let file = parquet_table_file(rows, first_ns, 1_000_000_000, &body);
            writer.write(&path, &file)?;
            let max_ns = first_ns + (rows as i64 - 1) * 1_000_000_000;
            let entry = json!({"id": all_parquet.len(), "path": path, "size_bytes": file.len(), "row_count": rows,
                              "chunk_time": first_ns, "min_time": first_ns, "max_time": max_ns});
            files.push(entry.clone());
            per_table.entry(table_id + index % 2).or_default().push(entry);
            all_parquet.push(path);
        }
        let manifest = json!({
            "version": "1", "node_id": node, "next_file_id": all_parquet.len(), "snapshot_sequence_number": snapshot,
            "wal_file_sequence_number": last_wal, "catalog_sequence_number": snapshot * 2,
            "parquet_size_bytes": 0, "row_count": 0, "min_time": 0, "max_time": 1,
            "databases": [[db_id, {"tables": [[table_id, files]]}]], "removed_files": []
        });
        let name = u64::MAX - u64::from(snapshot);
        writer.write(
            &format!("{node}/snapshots/{name:020}.info.json"),
            serde_json::to_vec_pretty(&manifest)?.as_slice(),
        )?;
    }
    let marker = json!({"last_sequence_number": params.snapshots_per_node});
    writer.write(
        &format!("{node}/table-index-conversion-completed"),
        marker.to_string().as_bytes(),
    )?;
    for (table, files) in &per_table {
        let index = json!({"node_id": node, "db_id": db_id, "table_id": table, "files": files,
                           "latest_snapshot_sequence_number": params.snapshots_per_node});
        writer.write(
            &format!("{node}/db-indices/{db_id}/{table}/index.info.json"),
            index.to_string().as_bytes(),
        )?;
    }
    let delta = json!({"snapshot_sequence_number": params.snapshots_per_node, "files": []});
    writer.write(
        &format!(
            "{node}/table-snapshots/{db_id}/{table_id}/{:020}.info.json",
            params.snapshots_per_node
        ),
        delta.to_string().as_bytes(),
    )?;
    Ok(())
}

fn write_compactor(
    writer: &mut TreeWriter<'_>,
    compactor: &str,
    params: &LayoutParams,
) -> std::io::Result<()> {
    for generation in 1..=3u32 {
        let summary = json!({"generation": generation, "compacted_files": generation * 4});
        writer.write(
            &format!("{compactor}/cs/{generation:020}.json"),
            summary.to_string().as_bytes(),
        )?;
        let detail = json!({"generation": generation, "db_id": 1, "table_id": 0, "inputs": []});
        writer.write(
            &format!("{compactor}/cd/1/0/{generation:020}.json"),
            detail.to_string().as_bytes(),
        )?;
        let size = params.parquet_size.1.max(1024);
        let body = writer.random_bytes(size);
        writer.write(
            &format!("{compactor}/c/1/0/{generation:020}/0000000001.parquet"),
            &parquet_file(&body),
        )?;
        writer.write(
            &format!("{compactor}/c/1/0/{generation:020}/generation.json"),
            b"{\"level\":2}",
        )?;
    }
    Ok(())
}

fn write_catalog(
    writer: &mut TreeWriter<'_>,
    prefix: &str,
    flavor: CatalogFlavor,
    num_logs: u64,
) -> std::io::Result<()> {
    let image_sequence = num_logs / 2;
    let uuid = u128::from(writer.rng.next_u64()) << 64 | u128::from(writer.rng.next_u64());
    match flavor {
        CatalogFlavor::V3 => {
            let body = writer.random_bytes(2048);
            writer.write(
                &format!("{prefix}/catalog/v3/snapshot"),
                &catalog_v3_file(uuid, image_sequence, true, &body),
            )?;
            for sequence in 1..=num_logs {
                let body = writer.random_bytes(300);
                writer.write(
                    &format!("{prefix}/catalog/v3/logs/{sequence:020}.catalog"),
                    &catalog_v3_file(uuid, sequence, false, &body),
                )?;
            }
        }
        CatalogFlavor::V2 => {
            let paths =
                (format!("{prefix}/catalog/v2/snapshot"), format!("{prefix}/catalog/v2/logs"));
            write_legacy_catalog(writer, &paths, b"idb3.004", image_sequence, num_logs)?;
        }
        CatalogFlavor::V1 => {
            let paths = (format!("{prefix}/_catalog_checkpoint"), format!("{prefix}/catalogs"));
            write_legacy_catalog(writer, &paths, b"idb3.001", image_sequence, num_logs)?;
        }
        CatalogFlavor::None => {}
    }
    Ok(())
}

/// A v1/v2 catalog: the checkpoint (image) at `paths.0`, logs `1..=num_logs` under `paths.1`,
/// framed with `version` (`idb3.004`) + `.s` or `.l`.
fn write_legacy_catalog(
    writer: &mut TreeWriter<'_>,
    paths: &(String, String),
    version: &[u8; 8],
    image_sequence: u64,
    num_logs: u64,
) -> std::io::Result<()> {
    let json = |sequence: u64| json!({"sequence": sequence, "ops": []}).to_string().into_bytes();
    let id = |suffix: &[u8; 2]| -> [u8; 10] {
        let mut id = [0u8; 10];
        id[..8].copy_from_slice(version);
        id[8..].copy_from_slice(suffix);
        id
    };
    writer.write(&paths.0, &legacy_catalog_file(&id(b".s"), &json(image_sequence)))?;
    for sequence in 1..=num_logs {
        let key = format!("{}/{sequence:020}.catalog", paths.1);
        writer.write(&key, &legacy_catalog_file(&id(b".l"), &json(sequence)))?;
    }
    Ok(())
}

struct TreeWriter<'a> {
    root: &'a Path,
    generated: Generated,
    rng: StdRng,
}

impl TreeWriter<'_> {
    fn write(&mut self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::File::create(&path)?.write_all(bytes)?;
        self.generated.keys.push(key.to_string());
        self.generated.num_bytes += bytes.len() as u64;
        Ok(())
    }

    fn random_bytes(&mut self, size: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; size as usize];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_generated_tree_uses_real_names_and_manifests_name_existing_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate(dir.path(), &LayoutParams::enterprise(2 << 20)).unwrap();
        let has = |key: &str| generated.keys.iter().any(|k| k == key);
        assert!(has("node1/wal/00000000030.wal"), "11-digit WAL names");
        assert!(
            has("node1/snapshots/18446744073709551614.info.json"),
            "inverted snapshot sequence"
        );
        assert!(has("cluster1/catalog/v3/snapshot"));
        assert!(has("cluster1/catalog/v3/logs/00000000000000000001.catalog"));
        assert!(has("compactor/cs/00000000000000000001.json"));
        assert!(has("cluster1/commercial_license"));
        let manifest: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.path().join("node2/snapshots/18446744073709551614.info.json")).unwrap(),
        )
        .unwrap();
        let files = &manifest["databases"][0][1]["tables"][0][1];
        for file in files.as_array().unwrap() {
            let path = file["path"].as_str().unwrap();
            assert!(path.starts_with("node2/dbs/1/"), "{path}");
            assert!(
                dir.path().join(path).is_file(),
                "manifest names a missing parquet file {path}"
            );
        }
        let wal = fs::read(dir.path().join("node1/wal/00000000030.wal")).unwrap();
        assert_eq!(&wal[..8], b"idb3.001");
        let crc = crate::influx_files::crc32(&wal[12..]);
        assert_eq!(u32::from_be_bytes(wal[8..12].try_into().unwrap()), crc);
    }

    #[test]
    fn test_same_seed_same_tree() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let params = LayoutParams::enterprise(1 << 20);
        generate(first.path(), &params).unwrap();
        generate(second.path(), &params).unwrap();
        assert_eq!(
            crate::tree::hash_tree(first.path()).unwrap(),
            crate::tree::hash_tree(second.path()).unwrap()
        );
    }
}
