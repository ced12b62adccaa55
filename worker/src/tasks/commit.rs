//! Committing a backup: the accepted attempts' results become segments, the blob locations they
//! recorded become the backup's index file, then the manifest is written create-only. The
//! manifest's existence is the backup's existence.
//!
//! Before anything is written, every blob every entry names must be in the committed index or in
//! an accepted attempt's records: a manifest never names a blob no index lists. A retried commit
//! writes the same segments and index (deterministic given the accepted attempts); a manifest
//! already there with the same segments means an earlier attempt committed, which is success.
//!
//! An attempt that found nothing changed in its scope wrote no entries: it names the
//! parent's segments holding them. A parent segment all of whose scopes (every task that put
//! entries in it) are unchanged in this job is named by the new manifest as it is; otherwise the
//! unchanged scopes' entries are taken from it into new segments. So an unchanged node costs
//! no segment write, and the next backup finds the segment in its worker's cache.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::{ExclusionReport, PartRef, TaskReport};
use tracing::info;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::crypto::BlobId;
use crate::repository::index::{write_index, BlobIndex, IndexEntry};
use crate::repository::layout::{manifest_key, segment_key};
use crate::repository::manifest::{Manifest, ObjectEntry, Scope, SegmentRef, MANIFEST_FORMAT};
use crate::repository::metadata::{create_sealed, read_json, write_json};
use crate::repository::staging::read_attempt;
use crate::tasks::copy::unchanged_entries;

/// Objects per segment: bounds the commit's memory and a reader's.
const OBJECTS_PER_SEGMENT: usize = 20_000;

/// Merges `parts` into segments, the index and the manifest of `backup_id`.
///
/// # Errors
/// [`TaskError::Repository`] when a result is missing or a write fails; a different manifest
/// already at the key is reported as corrupt (never overwritten).
pub async fn commit_backup(
    context: &TaskContext,
    backup_id: BackupId,
    created_at_ms: u64,
    parts: &[PartRef],
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let committed = context.repositories.index(repository).await?;
    let mut listing = Listing {
        committed: &committed,
        new_blobs: BTreeMap::new(),
        segments: SegmentWriter::new(backup_id),
        num_objects: 0,
        num_bytes: 0,
    };
    let mut shared = SharedSegments::default();
    let mut exclusions: Vec<ExclusionReport> = Vec::new();
    let mut corrupt = Vec::new();
    for part in parts {
        if part.attempt == 0 {
            return Err(TaskError::Invalid(format!(
                "copy task `{}` has no accepted attempt",
                part.task_id
            )));
        }
        let (done, attempt_parts) = read_attempt(repository, part.task_id, part.attempt).await?;
        exclusions.extend(done.report.exclusions);
        corrupt.extend(done.report.corrupt);
        let taken = match &done.unchanged {
            Some(parent_segments) => shared.unchanged(&done.scope, parent_segments),
            None => shared.changed(&done.scope),
        };
        listing.take_from_parents(context, taken.taken).await?;
        for segment in taken.whole {
            // Its entries' blobs were all in the committed index when the unchanged tasks
            // checked them (reuse requires it), and no prune runs while this job holds the
            // repository: they still are.
            listing.num_objects += segment.num_objects;
            listing.num_bytes += segment.num_bytes;
            context.progress.done(segment.num_bytes);
            listing.segments.name(context, segment).await?;
        }
        for attempt_part in attempt_parts {
            for blob in attempt_part.blobs {
                if !committed.contains_key(&blob.entry.id) {
                    listing.new_blobs.insert(blob.entry.id, blob);
                }
            }
            for entry in attempt_part.entries {
                listing.add(context, entry, &done.scope).await?;
            }
        }
    }
    listing.take_from_parents(context, shared.finish()).await?;
    let Listing { new_blobs, mut segments, num_objects, num_bytes, .. } = listing;
    segments.flush(context).await?;
    if !new_blobs.is_empty() {
        let entries: Vec<IndexEntry> = new_blobs.into_values().collect();
        write_index(repository.store.as_ref(), &repository.key, &backup_id.to_string(), &entries)
            .await?;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        backup_id,
        source: context.spec.source.clone(),
        created_at_ms,
        repository_id: repository.config.repository_id.clone(),
        num_objects,
        num_bytes,
        segments: std::mem::take(&mut segments.segments),
        exclusions,
        corrupt,
    };
    let key = manifest_key(backup_id);
    write_manifest(context, &manifest).await?;
    let segments_written = segments.written;
    let segments_shared = manifest.segments.len() - segments_written;
    info!(%backup_id, num_objects, num_bytes, segments_written, segments_shared, "backup committed");
    Ok(TaskReport {
        num_objects,
        num_bytes,
        manifest_key: Some(key.to_string()),
        ..TaskReport::default()
    })
}

/// The new backup's object list as it is built: each entry checked, counted and written.
struct Listing<'a> {
    committed: &'a BlobIndex,
    /// Blob locations the accepted attempts recorded that the committed index lacks.
    new_blobs: BTreeMap<BlobId, IndexEntry>,
    segments: SegmentWriter,
    num_objects: u64,
    num_bytes: u64,
}

impl Listing<'_> {
    /// Adds `entry`, copied by the task over `scope`.
    async fn add(
        &mut self,
        context: &TaskContext,
        entry: ObjectEntry,
        scope: &Scope,
    ) -> Result<(), TaskError> {
        check_blobs_indexed(&entry, self.committed, &self.new_blobs)?;
        self.num_objects += 1;
        self.num_bytes += entry.size;
        context.progress.done(entry.size);
        self.segments.push(context, entry, scope).await
    }

    /// Adds the entries in each scope of its parent segment (unchanged scopes whose segment is
    /// not shared whole).
    async fn take_from_parents(
        &mut self,
        context: &TaskContext,
        taken: Vec<(Scope, SegmentRef)>,
    ) -> Result<(), TaskError> {
        for (scope, segment) in taken {
            for entry in unchanged_entries(context, &scope, std::slice::from_ref(&segment)).await? {
                self.add(context, entry, &scope).await?;
            }
        }
        Ok(())
    }
}

/// Refuses an entry naming a blob no index lists: committing it would make a backup that
/// cannot be restored.
fn check_blobs_indexed(
    entry: &ObjectEntry,
    committed: &BlobIndex,
    new_blobs: &BTreeMap<BlobId, IndexEntry>,
) -> Result<(), TaskError> {
    match entry.blobs.iter().find(|id| !committed.contains_key(id) && !new_blobs.contains_key(id)) {
        None => Ok(()),
        Some(id) => Err(TaskError::Damaged(format!(
            "object `{}` names blob {id}, which no index and no accepted attempt records: nothing is committed",
            entry.key
        ))),
    }
}

async fn write_manifest(context: &TaskContext, manifest: &Manifest) -> Result<(), TaskError> {
    let repository = &context.repository;
    let key = manifest_key(manifest.backup_id);
    let json = serde_json::to_vec(manifest).map_err(|error| RepositoryError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })?;
    if create_sealed(repository.store.as_ref(), &repository.key, &key, &json).await? {
        return Ok(());
    }
    let existing: Manifest = read_json(repository.store.as_ref(), &repository.key, &key).await?;
    if existing.segments == manifest.segments && existing.num_objects == manifest.num_objects {
        Ok(())
    } else {
        Err(RepositoryError::Corrupt {
            key: key.to_string(),
            reason: "a different manifest already exists for this backup id".to_string(),
        }
        .into())
    }
}

/// What to do with the entries of an attempt's scope that live in parent segments.
#[derive(Default)]
struct Taken {
    /// Parent segments named by the new manifest as they are.
    whole: Vec<SegmentRef>,
    /// (scope, parent segment): copy the segment's entries in the scope.
    taken: Vec<(Scope, SegmentRef)>,
}

/// The parent segments unchanged attempts named, until each is known to be shared whole (every
/// scope it holds is unchanged) or not.
#[derive(Default)]
struct SharedSegments {
    /// By segment key: the segment and the unchanged scopes that named it so far. Ordered: a
    /// retried commit must write the same segments in the same order (its manifest is compared
    /// with one an earlier attempt may have committed).
    pending: BTreeMap<String, (SegmentRef, BTreeSet<Scope>)>,
    /// Segment keys decided (named whole or taken from).
    decided: HashSet<String>,
    /// Scopes an attempt of this job copied or changed something in.
    changed: HashSet<Scope>,
}

impl SharedSegments {
    /// An attempt over `scope` found its entries in `parent_segments`, unchanged.
    fn unchanged(&mut self, scope: &Scope, parent_segments: &[SegmentRef]) -> Taken {
        let mut taken = Taken::default();
        for segment in parent_segments {
            let shareable = segment.scopes.iter().any(|known| known == scope)
                && !segment.scopes.iter().any(|known| self.changed.contains(known))
                && !self.decided.contains(&segment.key);
            if !shareable {
                taken.taken.push((scope.clone(), segment.clone()));
                continue;
            }
            let (_, scopes) = self
                .pending
                .entry(segment.key.clone())
                .or_insert_with(|| (segment.clone(), BTreeSet::new()));
            scopes.insert(scope.clone());
            if segment.scopes.iter().all(|known| scopes.contains(known)) {
                self.pending.remove(&segment.key);
                self.decided.insert(segment.key.clone());
                taken.whole.push(segment.clone());
            }
        }
        taken
    }

    /// An attempt over `scope` copied or changed something: no segment holding `scope` is
    /// shared whole, so the unchanged scopes that named one take their entries from it.
    fn changed(&mut self, scope: &Scope) -> Taken {
        self.changed.insert(scope.clone());
        let broken: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (segment, _))| segment.scopes.iter().any(|known| known == scope))
            .map(|(key, _)| key.clone())
            .collect();
        let mut taken = Taken::default();
        for key in broken {
            taken.taken.extend(self.take(&key));
        }
        taken
    }

    /// The segments some of whose scopes no attempt of this job copied: their unchanged
    /// scopes take their entries from them.
    fn finish(mut self) -> Vec<(Scope, SegmentRef)> {
        let keys: Vec<String> = self.pending.keys().cloned().collect();
        keys.iter().flat_map(|key| self.take(key)).collect()
    }

    fn take(&mut self, key: &str) -> Vec<(Scope, SegmentRef)> {
        let Some((segment, scopes)) = self.pending.remove(key) else { return Vec::new() };
        self.decided.insert(key.to_string());
        scopes.into_iter().map(|scope| (scope, segment.clone())).collect()
    }
}

struct SegmentWriter {
    backup_id: BackupId,
    buffer: Vec<ObjectEntry>,
    /// The scopes of the tasks whose entries are in `buffer`.
    scopes: BTreeSet<Scope>,
    segments: Vec<SegmentRef>,
    /// Segments written so far (their keys are numbered; named parent segments are not).
    written: usize,
}

impl SegmentWriter {
    fn new(backup_id: BackupId) -> Self {
        Self {
            backup_id,
            buffer: Vec::new(),
            scopes: BTreeSet::new(),
            segments: Vec::new(),
            written: 0,
        }
    }

    /// Appends `entry` of the task that copied `scope`, starting a new segment when the node
    /// changes (copy tasks are planned node by node) or the segment is full.
    async fn push(
        &mut self,
        context: &TaskContext,
        entry: ObjectEntry,
        scope: &Scope,
    ) -> Result<(), TaskError> {
        let new_node = self.buffer.last().is_some_and(|last| last.node != entry.node);
        if new_node || self.buffer.len() >= OBJECTS_PER_SEGMENT {
            self.flush(context).await?;
        }
        if !self.scopes.contains(scope) {
            self.scopes.insert(scope.clone());
        }
        self.buffer.push(entry);
        Ok(())
    }

    /// Names a parent's segment as it is, after the entries buffered so far.
    async fn name(&mut self, context: &TaskContext, segment: SegmentRef) -> Result<(), TaskError> {
        self.flush(context).await?;
        self.segments.push(segment);
        Ok(())
    }

    async fn flush(&mut self, context: &TaskContext) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let key = segment_key(self.backup_id, self.written);
        self.written += 1;
        let repository = &context.repository;
        write_json(repository.store.as_ref(), &repository.key, &key, &self.buffer).await?;
        let first = self.buffer.iter().map(|entry| &entry.key).min();
        let last = self.buffer.iter().map(|entry| &entry.key).max();
        // A segment split because it was full holds part of a scope's entries: shared whole
        // later only if that scope is unchanged, which holds for the rest of it too.
        self.segments.push(SegmentRef {
            key: key.to_string(),
            num_objects: self.buffer.len() as u64,
            keys: first.zip(last).map(|(first, last)| (first.clone(), last.clone())),
            scopes: std::mem::take(&mut self.scopes).into_iter().collect(),
            num_bytes: self.buffer.iter().map(|entry| entry.size).sum(),
        });
        self.buffer.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::pack::{PackEntry, PackId};

    fn segment(key: &str, scopes: &[&Scope]) -> SegmentRef {
        SegmentRef {
            key: key.to_string(),
            num_objects: 1,
            keys: None,
            scopes: scopes.iter().map(|scope| (*scope).clone()).collect(),
            num_bytes: 1,
        }
    }

    fn keys(taken: &[(Scope, SegmentRef)]) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> =
            taken.iter().map(|(scope, s)| (scope.prefix.clone(), s.key.clone())).collect();
        keys.sort();
        keys
    }

    #[test]
    fn test_a_parent_segment_is_shared_whole_once_every_scope_it_holds_is_unchanged() {
        let (wal, dbs) = (Scope::prefix("n1/wal/"), Scope::prefix("n1/dbs/"));
        let node = segment("s1", &[&wal, &dbs]);
        let mut shared = SharedSegments::default();
        let first = shared.unchanged(&wal, std::slice::from_ref(&node));
        assert!(first.whole.is_empty() && first.taken.is_empty(), "decided before all scopes");
        let second = shared.unchanged(&dbs, std::slice::from_ref(&node));
        assert_eq!(second.whole, vec![node.clone()]);
        assert!(second.taken.is_empty());
        assert!(shared.finish().is_empty());
    }

    #[test]
    fn test_a_changed_scope_makes_the_unchanged_ones_take_their_entries_from_the_parent() {
        let (wal, dbs, other) =
            (Scope::prefix("n1/wal/"), Scope::prefix("n1/dbs/"), Scope::prefix("n1/"));
        let node = segment("s1", &[&wal, &dbs, &other]);
        // Changed after an unchanged one: the waiting scope takes its entries.
        let mut shared = SharedSegments::default();
        assert!(shared.unchanged(&wal, std::slice::from_ref(&node)).taken.is_empty());
        let broken = shared.changed(&dbs);
        assert_eq!(keys(&broken.taken), [("n1/wal/".to_string(), "s1".to_string())]);
        let later = shared.unchanged(&other, std::slice::from_ref(&node));
        assert_eq!(keys(&later.taken), [("n1/".to_string(), "s1".to_string())]);
        assert!(later.whole.is_empty());
        // Changed before: taken at once.
        let mut shared = SharedSegments::default();
        shared.changed(&dbs);
        let taken = shared.unchanged(&wal, std::slice::from_ref(&node));
        assert_eq!(keys(&taken.taken), [("n1/wal/".to_string(), "s1".to_string())]);
        // A scope no attempt of the job covers (a task no longer planned): taken at the end.
        let mut shared = SharedSegments::default();
        shared.unchanged(&wal, std::slice::from_ref(&node));
        shared.unchanged(&dbs, std::slice::from_ref(&node));
        let rest = shared.finish();
        assert_eq!(
            keys(&rest),
            [("n1/dbs/".to_string(), "s1".to_string()), ("n1/wal/".to_string(), "s1".to_string())]
        );
        // Taken in segment key order, whatever order they were named in: a retried commit
        // writes the same segments.
        let mut shared = SharedSegments::default();
        let other = segment("s0", &[&wal, &dbs]);
        shared.unchanged(&wal, &[node.clone(), other.clone()]);
        let order: Vec<String> = shared.finish().into_iter().map(|(_, s)| s.key).collect();
        assert_eq!(order, ["s0", "s1"]);
        // A segment of unknown scopes is never shared whole.
        let mut shared = SharedSegments::default();
        let unknown = segment("s2", &[]);
        let taken = shared.unchanged(&wal, std::slice::from_ref(&unknown));
        assert_eq!(keys(&taken.taken), [("n1/wal/".to_string(), "s2".to_string())]);
    }

    #[test]
    fn test_an_entry_naming_a_blob_no_index_records_is_refused() {
        let (known, new, unknown) = (BlobId([1; 32]), BlobId([2; 32]), BlobId([3; 32]));
        let place = |id| PackEntry { id, offset: 0, length: 1, raw_length: 1, flags: 0 };
        let committed: BlobIndex = [(known, (PackId([0; 16]), place(known)))].into();
        let new_blobs: BTreeMap<BlobId, IndexEntry> =
            [(new, IndexEntry { pack: PackId([1; 16]), entry: place(new) })].into();
        let entry = |blobs: Vec<BlobId>| ObjectEntry {
            key: "node1/wal/1.wal".to_string(),
            size: 1,
            blobs,
            etag: None,
            last_modified: String::new(),
            phase: bk_proto::model::CopyPhase::Nodes,
            node: "node1".to_string(),
        };
        assert!(check_blobs_indexed(&entry(vec![known, new]), &committed, &new_blobs).is_ok());
        let error =
            check_blobs_indexed(&entry(vec![known, unknown]), &committed, &new_blobs).unwrap_err();
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains("node1/wal/1.wal") && message.contains(&unknown.to_string()),
            "{message}"
        );
    }
}
