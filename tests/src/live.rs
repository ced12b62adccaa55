//! Live mode: keeps doing to a generated tree what InfluxDB 3 nodes do while a backup runs.
//!
//! Per tick, in InfluxDB's own order (`shared/reference/influxdb3-layout.md` §3): the catalog
//! appends a log (and every few ticks replaces its image); every node flushes a new WAL file;
//! every `snapshot_every` ticks a node snapshots: parquet files first, then the manifest (which
//! lists files removed by retention), then deletes the snapshotted WAL files beyond the newest
//! `keep_snapshotted_wal`. Every file is written to `<path>#<n>` and renamed, as InfluxDB's file
//! object store does, so readers never see half a file. Deterministic for a seed (the sequence
//! of operations; how they interleave with a backup is up to the clock).

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;

use crate::influx_files::{catalog_v3_file, catalog_v3_uuid, parquet_table_file, wal_file};

/// 2026-11-22T00:00:00Z in nanoseconds: where live-written parquet tables start (a minute per
/// WAL file after it).
const LIVE_EPOCH_NS: i64 = 1_795_305_600_000_000_000;
/// How fast the live cluster changes.
#[derive(Clone, Debug)]
pub struct LiveParams {
    /// RNG seed for file contents and sizes.
    pub seed: u64,
    /// A node snapshots every this many ticks.
    pub snapshot_every: u32,
    /// Snapshotted WAL files kept (`--snapshotted-wal-files-to-keep`).
    pub keep_snapshotted_wal: u64,
    /// Parquet files written per snapshot.
    pub parquet_per_snapshot: u32,
    /// Parquet file size range, bytes.
    pub parquet_size: (u64, u64),
    /// Every this many snapshots, the oldest parquet file is removed (listed in the manifest's
    /// `removed_files`, then deleted). 0: never.
    pub retention_every: u32,
    /// The catalog image is replaced every this many ticks.
    pub image_every: u32,
    /// Snapshots name a catalog sequence this far beyond the newest catalog log: nodes writing
    /// against another catalog than the one under the catalog prefix (a wrong cluster id, a
    /// stale copy of the catalog). 0 in a healthy cluster.
    pub catalog_lead: u64,
}

impl Default for LiveParams {
    fn default() -> Self {
        Self {
            seed: 7,
            snapshot_every: 3,
            keep_snapshotted_wal: 2,
            parquet_per_snapshot: 2,
            parquet_size: (2048, 16384),
            retention_every: 2,
            image_every: 5,
            catalog_lead: 0,
        }
    }
}

/// One node's live state, resumed from a generated tree.
pub struct LiveNode {
    root: PathBuf,
    node: String,
    next_wal: u64,
    oldest_wal: u64,
    snapshot_sequence: u64,
    live_parquet: VecDeque<String>,
    ticks: u64,
}

impl LiveNode {
    /// Resumes `node` from what is on disk under `root`.
    ///
    /// # Errors
    /// IO errors reading the tree.
    pub fn resume(root: &Path, node: &str) -> std::io::Result<Self> {
        let wal: Vec<u64> = numbered(&root.join(node).join("wal"), ".wal")?;
        let snapshots: Vec<u64> = numbered(&root.join(node).join("snapshots"), ".info.json")?;
        let snapshot_sequence =
            snapshots.iter().map(|inverted| u64::MAX - inverted).max().unwrap_or(0);
        let mut live_parquet = VecDeque::new();
        collect_files(&root.join(node).join("dbs"), root, &mut live_parquet)?;
        Ok(Self {
            root: root.to_path_buf(),
            node: node.to_string(),
            next_wal: wal.iter().max().map_or(1, |last| last + 1),
            oldest_wal: wal.iter().min().copied().unwrap_or(1),
            snapshot_sequence,
            live_parquet,
            ticks: 0,
        })
    }

    /// One flush: a new WAL file, and a snapshot every `snapshot_every` ticks.
    ///
    /// # Errors
    /// IO errors writing or deleting files.
    pub fn tick(
        &mut self,
        params: &LiveParams,
        catalog_sequence: u64,
        rng: &mut StdRng,
    ) -> std::io::Result<()> {
        self.ticks += 1;
        let catalog_sequence = catalog_sequence + params.catalog_lead;
        let mut payload = vec![0u8; 512];
        rng.fill_bytes(&mut payload);
        write_atomically(
            &self.root,
            &format!("{}/wal/{:011}.wal", self.node, self.next_wal),
            &wal_file(&payload),
        )?;
        self.next_wal += 1;
        if self.ticks % u64::from(params.snapshot_every.max(1)) == 0 {
            self.snapshot(params, catalog_sequence, rng)?;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        params: &LiveParams,
        catalog_sequence: u64,
        rng: &mut StdRng,
    ) -> std::io::Result<()> {
        let node = self.node.clone();
        let covered = self.next_wal - 1;
        self.snapshot_sequence += 1;
        let mut files = Vec::new();
        for index in 0..params.parquet_per_snapshot {
            let path = format!(
                "{node}/dbs/1/{index}/2026-11-22/{:02}-{:02}/{covered:010}.parquet",
                (covered / 60) % 24,
                covered % 60
            );
            let size = rng.random_range(params.parquet_size.0..=params.parquet_size.1);
            let mut body = vec![0u8; size as usize];
            rng.fill_bytes(&mut body);
            // A real parquet table, as InfluxDB persists one and as the generator writes them:
            // drills read its footer and count its rows.
            let rows = (size / 4096).max(1);
            let first_ns = LIVE_EPOCH_NS + covered as i64 * 60_000_000_000;
            let file = parquet_table_file(rows, first_ns, 1_000_000_000, &body);
            write_atomically(&self.root, &path, &file)?;
            let max_ns = first_ns + (rows as i64 - 1) * 1_000_000_000;
            files.push(json!({"id": covered * 10 + u64::from(index), "path": path,
                              "size_bytes": file.len(), "row_count": rows, "chunk_time": first_ns,
                              "min_time": first_ns, "max_time": max_ns}));
            self.live_parquet.push_back(path);
        }
        let mut removed = Vec::new();
        let retention_due = params.retention_every > 0
            && self.snapshot_sequence % u64::from(params.retention_every) == 0;
        if retention_due && self.live_parquet.len() > files.len() {
            if let Some(oldest) = self.live_parquet.pop_front() {
                removed.push(json!({"id": 0, "path": oldest, "size_bytes": 0, "row_count": 0, "chunk_time": 0, "min_time": 0, "max_time": 0}));
            }
        }
        let manifest = json!({
            "version": "1", "node_id": node, "next_file_id": covered * 10 + 10,
            "snapshot_sequence_number": self.snapshot_sequence, "wal_file_sequence_number": covered,
            "catalog_sequence_number": catalog_sequence, "parquet_size_bytes": 0, "row_count": 0,
            "min_time": 0, "max_time": 1,
            "databases": [[1, {"tables": [[0, files]]}]],
            "removed_files": if removed.is_empty() { json!([]) } else { json!([[1, {"tables": [[0, removed.clone()]]}]]) },
        });
        let name = u64::MAX - self.snapshot_sequence;
        write_atomically(
            &self.root,
            &format!("{node}/snapshots/{name:020}.info.json"),
            manifest.to_string().as_bytes(),
        )?;
        // Retention deletes best-effort after the manifest recorded the removal.
        for file in &removed {
            let _ = fs::remove_file(self.root.join(file["path"].as_str().unwrap_or_default()));
        }
        // WAL cleanup after the snapshot completed: keep the newest `keep` snapshotted files.
        let delete_through = covered.saturating_sub(params.keep_snapshotted_wal);
        while self.oldest_wal <= delete_through {
            let _ =
                fs::remove_file(self.root.join(format!("{node}/wal/{:011}.wal", self.oldest_wal)));
            self.oldest_wal += 1;
        }
        Ok(())
    }
}

/// The cluster catalog's live state: logs appended, image replaced.
pub struct LiveCatalog {
    root: PathBuf,
    prefix: String,
    sequence: u64,
    ticks: u64,
    /// The catalog's UUID, read from its image: every file of one catalog carries it.
    uuid: u128,
}

impl LiveCatalog {
    /// Resumes the v3 catalog under `prefix` (a cluster or Core node id).
    ///
    /// # Errors
    /// IO errors reading the tree.
    pub fn resume(root: &Path, prefix: &str) -> std::io::Result<Self> {
        let logs = numbered(&root.join(prefix).join("catalog/v3/logs"), ".catalog")?;
        let image = fs::read(root.join(prefix).join("catalog/v3/snapshot")).unwrap_or_default();
        Ok(Self {
            root: root.to_path_buf(),
            prefix: prefix.to_string(),
            sequence: logs.iter().max().copied().unwrap_or(0),
            ticks: 0,
            uuid: catalog_v3_uuid(&image).unwrap_or(1),
        })
    }

    /// The newest catalog sequence.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Appends a log; every `image_every` ticks, replaces the image with one at the newest sequence.
    ///
    /// # Errors
    /// IO errors writing files.
    pub fn tick(&mut self, params: &LiveParams) -> std::io::Result<()> {
        self.ticks += 1;
        self.sequence += 1;
        write_atomically(
            &self.root,
            &format!("{}/catalog/v3/logs/{:020}.catalog", self.prefix, self.sequence),
            &catalog_v3_file(self.uuid, self.sequence, false, &[0xAB; 128]),
        )?;
        if self.ticks % u64::from(params.image_every.max(1)) == 0 {
            write_atomically(
                &self.root,
                &format!("{}/catalog/v3/snapshot", self.prefix),
                &catalog_v3_file(self.uuid, self.sequence, true, &[0xCD; 128]),
            )?;
        }
        Ok(())
    }
}

/// A thread running a live cluster until stopped.
pub struct LiveWriter {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<std::io::Result<u64>>,
}

impl LiveWriter {
    /// Starts ticking `nodes` and the catalog under `catalog_prefix`, one tick per `interval`.
    ///
    /// # Errors
    /// IO errors resuming the tree.
    pub fn spawn(
        root: &Path,
        nodes: &[String],
        catalog_prefix: &str,
        params: LiveParams,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let mut live_nodes: Vec<LiveNode> =
            nodes.iter().map(|node| LiveNode::resume(root, node)).collect::<Result<_, _>>()?;
        let mut catalog = LiveCatalog::resume(root, catalog_prefix)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(params.seed);
            let mut ticks = 0;
            while !stopping.load(Ordering::Relaxed) {
                catalog.tick(&params)?;
                for node in &mut live_nodes {
                    node.tick(&params, catalog.sequence(), &mut rng)?;
                }
                ticks += 1;
                std::thread::sleep(interval);
            }
            Ok(ticks)
        });
        Ok(Self { stop, handle })
    }

    /// Stops the writer and returns how many ticks it ran.
    ///
    /// # Errors
    /// The writer's IO error, if it failed.
    pub fn stop(self) -> std::io::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().map_err(|_| std::io::Error::other("live writer panicked"))?
    }
}

/// Writes `<root>/<key>` the way InfluxDB's file store does: a `#<n>` staging file, then rename.
/// Tests that change an InfluxDB 3 node's files use it too: the worker trusts that every write
/// there changes the file's directory (`shared/reference/influxdb3-layout.md`), which an
/// in-place rewrite does not.
///
/// # Errors
/// The file system's, if the directory, the staging file or the rename fails.
pub fn write_atomically(root: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = root.join(key);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let staging = PathBuf::from(format!("{}#1", path.display()));
    fs::write(&staging, bytes)?;
    fs::rename(&staging, &path)
}

/// The numbers in the names of the files of `dir` ending in `suffix`.
fn numbered(dir: &Path, suffix: &str) -> std::io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    if !dir.is_dir() {
        return Ok(numbers);
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if let Some(number) = name.strip_suffix(suffix).and_then(|stem| stem.parse().ok()) {
            numbers.push(number);
        }
    }
    Ok(numbers)
}

fn collect_files(dir: &Path, root: &Path, into: &mut VecDeque<String>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, root, into)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            into.push_back(relative.to_string_lossy().to_string());
        }
    }
    Ok(())
}
