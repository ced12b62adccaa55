//! A node's consistency check: is what was copied a state InfluxDB 3 can restart from?
//!
//! InfluxDB replays every WAL file after the newest snapshot's `wal_file_sequence_number` (W)
//! and does not notice a missing one; it loads the parquet files the snapshot manifests name
//! and does not check they exist (`shared/reference/influxdb3-layout.md` §2). So the backup of a
//! node must hold WAL W+1, W+2, … without a gap, and every parquet file a copied manifest names
//! (minus `removed_files`). On a live node neither is guaranteed by copying prefixes in
//! parallel: a snapshot landing mid-copy deletes old WAL files and adds parquet files. When the
//! check fails, a repair round re-lists `snapshots/`, copies the new manifests, the parquet files
//! they name and the WAL files after the new W, and checks again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bk_proto::model::{ConsistencyPoint, CopyPhase, CorruptObject, PartRef, TaskReport};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use serde_json::Value;

use super::context::TaskContext;
use super::copy::{head_if_exists, list_prefix, CopyTotals, ScopeTarget, SetCopier};
use super::purged;
use crate::error::TaskError;
use crate::repository::crypto::BlobId;
use crate::repository::index::IndexEntry;
use crate::repository::list::{MergedView, ObjectEntry};
use crate::repository::manifest::{Scope, ScopeList};
use crate::repository::staging::read_done;

/// What a snapshot manifest says, as far as consistency is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snapshot_sequence_number`.
    pub snapshot_sequence: u64,
    /// `wal_file_sequence_number`: the last WAL file the snapshot covers.
    pub wal_sequence: u64,
    /// `catalog_sequence_number`.
    pub catalog_sequence: u64,
    /// Paths of the parquet files it adds.
    pub parquet: Vec<String>,
    /// Paths of the parquet files it removes.
    pub removed: Vec<String>,
}

/// What was copied of a node, as far as consistency is concerned, kept small: its WAL files and
/// snapshot manifests, and of its parquet files only those a manifest names (looked up in the
/// node's lists, which are never read whole: a node of a million objects costs the chunks the
/// named files fall in).
#[derive(Debug, Default)]
pub struct NodeCopy {
    /// Fingerprints of the keys known copied: WAL files, snapshot manifests, named parquet
    /// files found in the lists, and everything a repair copied.
    present: HashSet<u128>,
    /// Copied snapshot manifests (by key): their sequences (the parquet they name is tallied).
    snapshots: BTreeMap<String, SnapshotInfo>,
    /// Sequences of the copied WAL files.
    wal: BTreeSet<u64>,
    /// Fingerprints of the parquet files some manifest removes.
    removed: HashSet<u128>,
    /// Parquet files some manifest names that were not copied when it was read (checked again
    /// against `present` and `removed`).
    named_not_copied: BTreeMap<u128, String>,
}

fn fingerprint(key: &str) -> u128 {
    let hash = blake3::hash(key.as_bytes());
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().unwrap_or([0; 16]))
}

impl NodeCopy {
    /// Records a copied object.
    pub fn add_key(&mut self, node: &str, key: &str) {
        self.present.insert(fingerprint(key));
        if under(key, node, "wal/") {
            self.wal.extend(wal_sequence(key));
        }
    }

    /// Named parquet files not known copied (yet to be looked up in the lists), sorted.
    fn named_unknown(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .named_not_copied
            .iter()
            .filter(|(print, _)| !self.present.contains(*print))
            .map(|(_, path)| path.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Whether `key` was copied.
    pub fn holds(&self, key: &str) -> bool {
        self.present.contains(&fingerprint(key))
    }

    /// Records a copied snapshot manifest, as read from the backup.
    pub fn add_snapshot(&mut self, key: &str, mut info: SnapshotInfo) {
        for path in info.parquet.drain(..) {
            let print = fingerprint(&path);
            if !self.present.contains(&print) {
                self.named_not_copied.insert(print, path);
            }
        }
        self.removed.extend(info.removed.drain(..).map(|path| fingerprint(&path)));
        self.snapshots.insert(key.to_string(), info);
    }

    /// Whether snapshot manifest `key` was read.
    pub fn has_snapshot(&self, key: &str) -> bool {
        self.snapshots.contains_key(key)
    }

    fn newest(&self) -> Option<&SnapshotInfo> {
        self.snapshots.values().max_by_key(|info| info.snapshot_sequence)
    }
}

/// Where the copied objects of a node stand.
#[derive(Debug, PartialEq, Eq)]
pub struct Assessment {
    /// The consistency point, if the state is consistent.
    pub point: ConsistencyPoint,
    /// The first WAL gap after W, described.
    pub gap: Option<String>,
    /// Parquet files named by a copied manifest and not in the backup.
    pub missing_parquet: Vec<String>,
}

/// Runs the check with up to `max_rounds` repair rounds.
///
/// # Errors
/// [`TaskError::Invalid`] describing the remaining inconsistency when the rounds run out (the
/// job then fails and commits nothing); store errors otherwise.
pub async fn check_node_consistency(
    context: &TaskContext,
    node: &str,
    phase: CopyPhase,
    parts: &[PartRef],
    max_rounds: u32,
) -> Result<TaskReport, TaskError> {
    let mut repair = NodeRepair::start(context, node, phase, parts).await?;
    for round in 0..=max_rounds {
        let assessment = assess(node, &repair.copy, &repair.settled);
        if assessment.gap.is_none() && assessment.missing_parquet.is_empty() {
            return repair.finish(assessment.point, round == 0).await;
        }
        let reason = describe(&assessment);
        if round == max_rounds {
            return Err(TaskError::Invalid(format!(
                "node `{node}` is still inconsistent after {max_rounds} repair rounds ({reason}); no backup is committed. \
                 The node deletes files faster than bk copies them: retry, or keep more WAL files on the node \
                 (--snapshotted-wal-files-to-keep)"
            )));
        }
        repair.repair(round + 1, &assessment, &reason).await?;
    }
    unreachable!("the loop returns on its last round")
}

/// A node's check in progress: what its copy tasks copied, what repairs added, and the missing
/// files already settled.
struct NodeRepair<'a> {
    context: &'a TaskContext,
    node: &'a str,
    copier: SetCopier<'a>,
    copy: NodeCopy,
    /// The node's copy tasks' lists.
    lists: Vec<ScopeList>,
    /// Where the blobs the node's copy tasks stored are, when no index file lists them yet.
    located: HashMap<BlobId, IndexEntry>,
    report: TaskReport,
    /// Missing files settled (not looked for again).
    settled: HashSet<String>,
    /// Of those, the ones InfluxDB itself deleted.
    retention_deleted: HashSet<String>,
    /// Files named by a manifest that a head found gone from the source.
    gone_from_source: HashSet<String>,
}

impl<'a> NodeRepair<'a> {
    /// Reads what the node's copy tasks recorded: their object lists and the snapshot
    /// manifests among them.
    async fn start(
        context: &'a TaskContext,
        node: &'a str,
        phase: CopyPhase,
        parts: &[PartRef],
    ) -> Result<Self, TaskError> {
        let mut lists: Vec<ScopeList> = Vec::new();
        let mut located: HashMap<BlobId, IndexEntry> = HashMap::new();
        // Manifests that failed their format check are not read: the commit gate names them.
        let mut corrupt: HashSet<String> = HashSet::new();
        for part in parts {
            let done = read_done(&context.repository, part.task_id, part.attempt).await?;
            corrupt.extend(done.report.corrupt.iter().map(|object| object.key.clone()));
            located.extend(done.blobs.into_iter().map(|blob| (blob.entry.id, blob)));
            lists.extend(done.list);
        }
        let target = ScopeTarget {
            phase,
            node: node.to_string(),
            scope: Scope::prefix(&format!("{node}/")),
        };
        let copier = SetCopier::start(context, target, false).await?;
        let mut copy = NodeCopy::default();
        let mut manifests: Vec<ObjectEntry> = Vec::new();
        for prefix in [format!("{node}/wal/"), format!("{node}/snapshots/")] {
            for list in &lists {
                let Some(prefix) = narrower(&list.scope.prefix, &prefix) else { continue };
                let mut view =
                    MergedView::new(&context.repository, &list.runs, prefix).in_scope(&list.scope);
                while let Some(entry) = view.next().await? {
                    copy.add_key(node, &entry.key);
                    if is_snapshot_manifest(node, &entry.key) && !corrupt.contains(&entry.key) {
                        manifests.push(entry);
                    }
                }
            }
        }
        read_snapshots(&copier, manifests, &located, &mut copy).await?;
        let mut repair = Self {
            context,
            node,
            copier,
            copy,
            lists,
            located,
            report: TaskReport::default(),
            settled: HashSet::new(),
            retention_deleted: HashSet::new(),
            gone_from_source: HashSet::new(),
        };
        repair.look_up_named().await?;
        Ok(repair)
    }

    /// Looks the parquet files the manifests name, and that are not known copied, up in the
    /// node's lists: only the chunks they fall in are read.
    async fn look_up_named(&mut self) -> Result<(), TaskError> {
        let keys = self.copy.named_unknown();
        if keys.is_empty() {
            return Ok(());
        }
        for list in &self.lists {
            let mut view = MergedView::for_keys(&self.context.repository, &list.runs, &keys)
                .in_scope(&list.scope);
            while let Some(entry) = view.next().await? {
                if keys.binary_search(&entry.key).is_ok() {
                    self.copy.present.insert(fingerprint(&entry.key));
                }
            }
        }
        Ok(())
    }

    /// The node is consistent at `point`: records it and finishes the copy of repairs.
    async fn finish(
        mut self,
        mut point: ConsistencyPoint,
        first_round: bool,
    ) -> Result<TaskReport, TaskError> {
        point.retention_deleted = self.retention_deleted.iter().cloned().collect();
        point.retention_deleted.sort();
        self.report.consistency = Some(point);
        if first_round {
            let snapshot = crate::snapshot::read_record(self.context, self.node).await?;
            if let Some(record) =
                snapshot.filter(|record| record.state == crate::snapshot::RecordState::Taken)
            {
                self.report.events.push(format!(
                    "node `{}` copied from {} snapshot `{}`: consistent as copied, nothing to repair",
                    self.node,
                    record.method.as_str(),
                    record.name
                ));
            }
        }
        self.copier.finish(self.report, false).await
    }

    /// One repair round: copies the missing parquet files the source still has and, when a
    /// WAL file or a parquet file is gone, the snapshot manifests and WAL files written since.
    async fn repair(
        &mut self,
        round: u32,
        assessment: &Assessment,
        reason: &str,
    ) -> Result<(), TaskError> {
        let (mut repaired, relist) = self.find_missing(assessment).await?;
        let (mut new_manifests, mut new_wal) = (0, 0);
        if relist {
            new_manifests = self.copy_new_manifests().await?;
            let wal = self.list_new_wal().await?;
            new_wal = wal.len();
            repaired.extend(wal);
        }
        let num_parquet = repaired.len() - new_wal;
        let totals = self.copier.copy(repaired).await?;
        absorb(self.node, &mut self.copy, &mut self.report, totals);
        self.report.events.push(format!(
            "repair round {round} on `{}` ({reason}): copied {new_manifests} new snapshot manifest(s), {num_parquet} parquet file(s), {new_wal} WAL file(s)",
            self.node
        ));
        Ok(())
    }

    /// The missing parquet files the source still has, and whether to re-list (a WAL gap, or a
    /// file gone from the source). A parquet file missing from the source was most likely
    /// removed by a newer snapshot (recorded in its `removed_files`): it is looked for again
    /// after a re-list before it is judged retention-deleted or damaged.
    async fn find_missing(
        &mut self,
        assessment: &Assessment,
    ) -> Result<(Vec<ObjectMeta>, bool), TaskError> {
        let mut repaired = Vec::new();
        let mut relist = assessment.gap.is_some();
        for path in &assessment.missing_parquet {
            if self.gone_from_source.contains(path) {
                // Settled either way: retention-deleted, or damage the commit gate names.
                self.settled.insert(path.clone());
                self.judge_gone(path).await?;
                continue;
            }
            match head_if_exists(self.context, path).await? {
                Some(meta) => repaired.push(meta),
                None => {
                    self.gone_from_source.insert(path.clone());
                    relist = true;
                }
            }
        }
        Ok((repaired, relist))
    }

    /// A parquet file still missing after a re-list: deleted by InfluxDB (recorded), or
    /// damage (a corrupt object the commit gate names).
    async fn judge_gone(&mut self, path: &str) -> Result<(), TaskError> {
        match purged::verdict(self.context, path).await? {
            purged::Verdict::Purged => {
                self.retention_deleted.insert(path.to_string());
                self.report.events.push(format!(
                    "parquet `{path}` named by a snapshot was deleted by InfluxDB (retention or hard delete: \
                     its table index no longer lists it) before it could be copied"
                ));
            }
            purged::Verdict::Damaged(why) => self.report.corrupt.push(CorruptObject {
                key: path.to_string(),
                reason: format!(
                    "parquet file `{path}`: missing from the source although a snapshot manifest names it and \
                     no newer one removes it; {why}: it was deleted outside InfluxDB, and a restore would lack \
                     its rows"
                ),
            }),
        }
        Ok(())
    }

    /// Copies the snapshot manifests written since the copy and reads them. Returns how many.
    async fn copy_new_manifests(&mut self) -> Result<usize, TaskError> {
        let copy = &self.copy;
        let listed: Vec<ObjectMeta> =
            list_prefix(self.context, &format!("{}/snapshots/", self.node))
                .try_filter(|meta| futures::future::ready(!copy.holds(meta.location.as_ref())))
                .try_collect()
                .await?;
        let num_listed = listed.len();
        let totals = self.copier.copy(listed).await?;
        let manifests = totals.entries.iter().filter(|entry| {
            is_snapshot_manifest(self.node, &entry.key)
                && !totals.corrupt.iter().any(|object| object.key == entry.key)
        });
        read_snapshots(&self.copier, manifests.cloned().collect(), &self.located, &mut self.copy)
            .await?;
        absorb(self.node, &mut self.copy, &mut self.report, totals);
        self.look_up_named().await?;
        Ok(num_listed)
    }

    /// The WAL files after the newest copied snapshot's that the copy lacks.
    async fn list_new_wal(&self) -> Result<Vec<ObjectMeta>, TaskError> {
        let copy = &self.copy;
        let newest_wal = copy.newest().map_or(0, |info| info.wal_sequence);
        let wal = list_prefix(self.context, &format!("{}/wal/", self.node))
            .try_filter(|meta| {
                let key = meta.location.as_ref();
                let wanted = !copy.holds(key)
                    && wal_sequence(key).is_some_and(|sequence| sequence > newest_wal);
                futures::future::ready(wanted)
            })
            .try_collect()
            .await?;
        Ok(wal)
    }
}

fn is_snapshot_manifest(node: &str, key: &str) -> bool {
    under(key, node, "snapshots/") && key.ends_with(".info.json")
}

/// Whether `key` is under `<node>/<dir>` (`dir` ending in `/`).
fn under(key: &str, node: &str, dir: &str) -> bool {
    key.strip_prefix(node)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| rest.starts_with(dir))
}

/// Of two directory-like prefixes, the narrower when one holds the other; `None` when they
/// hold no key in common.
fn narrower<'p>(a: &'p str, b: &'p str) -> Option<&'p str> {
    if b.starts_with(a) {
        Some(b)
    } else if a.starts_with(b) {
        Some(a)
    } else {
        None
    }
}

fn absorb(node: &str, copy: &mut NodeCopy, report: &mut TaskReport, totals: CopyTotals) {
    totals.add_to(report);
    for entry in &totals.entries {
        copy.add_key(node, &entry.key);
    }
}

/// How many snapshot manifests are read back from the repository at once. A live node
/// writes thousands (the campaign's seed 419: 7,970 on a node), and one at a time each cost
/// an S3 round trip: minutes of a consistency check spent waiting.
const MANIFESTS_IN_FLIGHT: usize = 16;

/// Reads the copied snapshot manifests `copy` does not know yet (from the repository: what was
/// copied, not what the source holds now), [`MANIFESTS_IN_FLIGHT`] at a time, and tallies them
/// in the order given.
async fn read_snapshots(
    copier: &SetCopier<'_>,
    entries: Vec<ObjectEntry>,
    located: &HashMap<BlobId, IndexEntry>,
    copy: &mut NodeCopy,
) -> Result<(), TaskError> {
    let unknown: Vec<ObjectEntry> =
        entries.into_iter().filter(|entry| !copy.has_snapshot(&entry.key)).collect();
    let mut read = futures::stream::iter(unknown)
        .map(|entry| async move {
            let bytes = copier.read_back(&entry, located).await?;
            let info = parse_snapshot(&bytes).map_err(|reason| {
                TaskError::Invalid(format!(
                    "snapshot manifest `{}` does not parse: {reason}",
                    entry.key
                ))
            })?;
            Ok::<_, TaskError>((entry.key, info))
        })
        .buffered(MANIFESTS_IN_FLIGHT);
    while let Some((key, info)) = read.try_next().await? {
        copy.add_snapshot(&key, info);
    }
    Ok(())
}

/// Checks the invariants over what was copied. Pure.
pub fn assess(node: &str, copy: &NodeCopy, settled: &HashSet<String>) -> Assessment {
    let newest = copy.newest();
    let covered = newest.map_or(0, |info| info.wal_sequence);
    let mut gap = None;
    let mut last = covered;
    for sequence in copy.wal.range(covered + 1..) {
        if *sequence != last + 1 {
            gap = Some(format!(
                "WAL {}..={} missing after the snapshot covering WAL {covered}",
                last + 1,
                sequence - 1
            ));
            break;
        }
        last = *sequence;
    }
    let missing_parquet: Vec<String> = copy
        .named_not_copied
        .iter()
        .filter(|(print, path)| {
            !copy.present.contains(print)
                && !copy.removed.contains(print)
                && !settled.contains(*path)
        })
        .map(|(_, path)| path.clone())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let point = ConsistencyPoint {
        retention_deleted: Vec::new(),
        node: node.to_string(),
        snapshot_sequence: newest.map_or(0, |info| info.snapshot_sequence),
        snapshot_wal_sequence: covered,
        last_wal_sequence: last,
        required_catalog_sequence: copy
            .snapshots
            .values()
            .map(|info| info.catalog_sequence)
            .max()
            .unwrap_or(0),
    };
    Assessment { point, gap, missing_parquet }
}

fn describe(assessment: &Assessment) -> String {
    let mut reasons = Vec::new();
    if let Some(gap) = &assessment.gap {
        reasons.push(gap.clone());
    }
    if let Some(first) = assessment.missing_parquet.first() {
        reasons.push(format!(
            "{} parquet file(s) named by a snapshot not copied, e.g. `{first}`",
            assessment.missing_parquet.len()
        ));
    }
    reasons.join("; ")
}

/// The sequence of a WAL key `<node>/wal/<seq:011>.wal`.
pub fn wal_sequence(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".wal")?.parse().ok()
}

/// Parses the fields consistency needs from a snapshot manifest (JSON, `version` "1").
///
/// # Errors
/// A message when required fields are missing.
pub fn parse_snapshot(bytes: &[u8]) -> Result<SnapshotInfo, String> {
    let manifest: Value = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    let number =
        |field: &str| manifest[field].as_u64().ok_or_else(|| format!("`{field}` is missing"));
    Ok(SnapshotInfo {
        snapshot_sequence: number("snapshot_sequence_number")?,
        wal_sequence: number("wal_file_sequence_number")?,
        catalog_sequence: manifest["catalog_sequence_number"].as_u64().unwrap_or(0),
        parquet: parquet_paths(&manifest["databases"]),
        removed: parquet_paths(&manifest["removed_files"]),
    })
}

/// Paths in `[[db_id, {"tables": [[table_id, [file, …]], …]}], …]`, in object_store's canonical
/// form so they compare with listed keys.
fn parquet_paths(databases: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    for database in databases.as_array().into_iter().flatten() {
        for table in database[1]["tables"].as_array().into_iter().flatten() {
            for file in table[1].as_array().into_iter().flatten() {
                if let Some(path) = file["path"].as_str() {
                    paths.push(object_store::path::Path::from(path).to_string());
                }
            }
        }
    }
    paths
}

#[cfg(test)]
#[path = "consistency_test.rs"]
mod consistency_test;
