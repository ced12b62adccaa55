//! Verifying a backup.
//!
//! Shallow: the manifest and every chunk of its object lists open (they are sealed: any
//! alteration fails), every blob the backup names is in an index file, and every pack holding
//! one exists (one listing of `packs/`, not a request per blob). Object lists are streamed a
//! batch of entries at a time: memory does not grow with the backup. Deep: every pack holding a blob of
//! the backup is read whole; its header must open and list each blob where the index says, and
//! every blob in it must open and hash to its id. A byte flipped anywhere in such a pack, a blob
//! swapped for another, a pack from another repository: each is a problem naming the object.

use std::collections::{BTreeMap, HashMap, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt};

use super::context::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::crypto::BlobId;
use crate::repository::index::list_partitions;
use crate::repository::index_cache::IndexView;
use crate::repository::layout::{pack_path, PACKS_DIR};
use crate::repository::list::{MergedView, ObjectEntry};
use crate::repository::metadata::read_all;
use crate::repository::pack::{decode_header, sealed_header, PackEntry, PackId};
use crate::repository::reader::{
    check_key_is_safe, open_stored_blob, read_located_blob, read_manifest, BlobReadError,
};
use crate::repository::{list_paths, opened::Repository};

/// Problems listed in full; beyond this only their count is reported.
const MAX_LISTED_PROBLEMS: usize = 1000;
/// Packs read at once by a deep verification.
pub(crate) const PACKS_IN_FLIGHT: usize = 4;
/// Blobs read at once from packs a deep verification has already read whole.
const BLOBS_IN_FLIGHT: usize = 16;
/// Entries checked together (their packs grouped): memory is bounded by a batch.
const BATCH: usize = 4096;

/// Verifies `backup_id`. Problems are returned in the report (the job fails on them); an error
/// is returned only when verification itself could not run.
///
/// # Errors
/// [`TaskError::Repository`] when the repository cannot be listed at all.
pub async fn verify_backup(
    context: &TaskContext,
    backup_id: BackupId,
    deep: bool,
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let mut problems = Problems::default();
    let manifest = match read_manifest(repository, backup_id).await {
        Ok(manifest) => manifest,
        Err(error) if store_failed(&error) => return Err(error.into()),
        Err(error) => {
            problems.push(format!("manifest: {error}"));
            return Ok(problems.into_report(0, 0));
        }
    };
    let partitions = list_partitions(repository.store.as_ref()).await?;
    let index = context.worker.repositories.index_anew(repository, &partitions).await?;
    for unreadable in index.unreadable() {
        problems.push(format!("index: {unreadable}"));
    }
    let existing = list_packs(repository).await?;
    let mut checked = Checked { existing, verified: HashSet::new(), deep };
    let (mut num_objects, mut num_bytes) = (0u64, 0u64);
    for list in &manifest.scopes {
        let mut view =
            MergedView::new(repository, &list.runs, &list.scope.prefix).in_scope(&list.scope);
        let mut listed = 0u64;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match view.next().await {
                    Ok(Some(entry)) => batch.push(entry),
                    Ok(None) => break,
                    Err(error) if store_failed(&error) => return Err(error.into()),
                    Err(error) => {
                        problems.push(format!("object list: {error}"));
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            listed += batch.len() as u64;
            for entry in &batch {
                context.progress.listed(entry.size);
                num_bytes += entry.size;
            }
            verify_batch(context, &index, &mut checked, &batch, &mut problems).await?;
            for entry in &batch {
                context.progress.done(entry.size);
            }
        }
        if listed != list.num_objects {
            problems.push(format!(
                "the manifest says {} objects under `{}`, its runs hold {listed}",
                list.num_objects, list.scope.prefix
            ));
        }
        num_objects += listed;
    }
    if num_objects != manifest.num_objects {
        problems.push(format!(
            "the manifest says {} objects, its runs hold {num_objects}",
            manifest.num_objects
        ));
    }
    Ok(problems.into_report(num_objects, num_bytes))
}

/// What verification knows of the packs.
struct Checked {
    /// Every pack in the repository (one listing).
    existing: HashSet<PackId>,
    /// Packs read whole and checked (deep).
    verified: HashSet<PackId>,
    deep: bool,
}

/// Checks a batch of entries: keys, every blob indexed, every pack holding one present; deep:
/// packs not checked yet read whole, blobs of packs checked before read on their own.
///
/// # Errors
/// The store failing (after its retries) while a pack is read: that says nothing about the
/// backup, so it is the task's error (retried when transient), never a problem of the backup.
async fn verify_batch(
    context: &TaskContext,
    index: &IndexView,
    checked: &mut Checked,
    batch: &[ObjectEntry],
    problems: &mut Problems,
) -> Result<(), TaskError> {
    let repository = &context.repository;
    // The first object naming each blob: problems name objects, not only blobs.
    let mut users: HashMap<BlobId, &str> = HashMap::new();
    let mut by_pack: BTreeMap<PackId, Vec<PackEntry>> = BTreeMap::new();
    for entry in batch {
        if let Err(refusal) = check_key_is_safe(&entry.key) {
            problems.push(refusal);
        }
        for id in &entry.blobs {
            if users.contains_key(id) {
                continue;
            }
            users.insert(*id, &entry.key);
            match index.get(id) {
                Some((pack, place)) => by_pack.entry(pack).or_default().push(place),
                None => problems.push(format!(
                    "object `{}`: blob {id} is in no index{}",
                    entry.key,
                    index.why_missing()
                )),
            }
        }
    }
    for (pack, entries) in &by_pack {
        if !checked.existing.contains(pack) {
            let object = users.get(&entries[0].id).copied().unwrap_or("");
            problems.push(format!(
                "object `{object}`: pack `{}` holding {} of the backup's blobs is missing",
                pack_path(*pack),
                entries.len()
            ));
        }
    }
    if !checked.deep {
        return Ok(());
    }
    let (fresh, seen): (Vec<_>, Vec<_>) = by_pack
        .iter()
        .filter(|(pack, _)| checked.existing.contains(pack))
        .partition(|(pack, _)| !checked.verified.contains(pack));
    // Futures collected first: a closure inside the stream type trips rustc's Send inference.
    let checks: Vec<_> =
        fresh.iter().map(|(pack, entries)| verify_pack(repository, **pack, entries)).collect();
    let found: Vec<Result<Vec<Finding>, RepositoryError>> =
        stream::iter(checks).buffer_unordered(PACKS_IN_FLIGHT).collect().await;
    checked.verified.extend(fresh.iter().map(|(pack, _)| **pack));
    let mut found: Vec<Finding> =
        found.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
    // Blobs of packs read whole by an earlier batch (packs are shared between scopes) are read
    // on their own, many at once: one after the other, each a round trip, a deep verify over S3
    // spent most of its time waiting (26 s for a 15 MB backup in the chaos campaign).
    let reads: Vec<_> = seen
        .iter()
        .flat_map(|(pack, entries)| entries.iter().map(move |place| (**pack, place)))
        .map(|(pack, place)| async move {
            match read_located_blob(repository, pack, place).await {
                Ok(_) => Ok(None),
                Err(BlobReadError::Repository(error)) if store_failed(&error) => Err(error),
                Err(problem) => Ok(Some((Some(place.id), problem.to_string()))),
            }
        })
        .collect();
    let failed: Vec<Result<Option<Finding>, RepositoryError>> =
        stream::iter(reads).buffer_unordered(BLOBS_IN_FLIGHT).collect().await;
    for failure in failed {
        found.extend(failure?);
    }
    for (blob, problem) in found {
        match blob.and_then(|id| users.get(&id)) {
            Some(object) => problems.push(format!("object `{object}`: {problem}")),
            None => problems.push(problem),
        }
    }
    Ok(())
}

async fn list_packs(repository: &Repository) -> Result<HashSet<PackId>, TaskError> {
    Ok(list_paths(repository.store.as_ref(), PACKS_DIR)
        .await?
        .iter()
        .filter_map(|path| path.filename().and_then(PackId::from_hex))
        .collect())
}

/// Reads a whole pack and checks it: header, every blob, and that the backup's blobs are where
/// the index says. Problems come with the blob they are about, when there is one.
///
/// # Errors
/// The store failing while the pack is read (not a missing pack: that is a problem).
pub(crate) async fn verify_pack(
    repository: &Repository,
    pack: PackId,
    expected: &[PackEntry],
) -> Result<Vec<Finding>, RepositoryError> {
    let path = pack_path(pack);
    let bytes = match read_all(repository.store.as_ref(), &path).await {
        Ok(bytes) => bytes,
        Err(error) if store_failed(&error) => return Err(error),
        Err(error) => return Ok(vec![(None, format!("pack `{path}`: {error}"))]),
    };
    let header = sealed_header(&bytes).and_then(|(sealed, blob_end)| {
        let plaintext = repository
            .key
            .open(&pack.header_context(), sealed)
            .map_err(|error| format!("its header does not open ({error})"))?;
        Ok((decode_header(&plaintext)?, blob_end))
    });
    let mut problems = Vec::new();
    let (entries, blob_end) = match header {
        Ok(header) => header,
        Err(reason) => {
            // Without a header, each of the backup's blobs is checked where the index says.
            problems.push((None, format!("pack `{path}` is damaged: {reason}")));
            for entry in expected {
                let end = (entry.offset + u64::from(entry.length)) as usize;
                let checked = bytes
                    .get(entry.offset as usize..end)
                    .ok_or_else(|| format!("blob {} lies beyond pack `{path}`", entry.id))
                    .and_then(|stored| {
                        open_stored_blob(repository, pack, entry, stored)
                            .map_err(|error| error.to_string())
                    });
                if let Err(problem) = checked {
                    problems.push((Some(entry.id), problem));
                }
            }
            return Ok(problems);
        }
    };
    for entry in &entries {
        let end = entry.offset + u64::from(entry.length);
        if end > blob_end as u64 {
            problems.push((
                Some(entry.id),
                format!("blob {} lies beyond the blobs of pack `{path}`", entry.id),
            ));
            continue;
        }
        let stored = &bytes[entry.offset as usize..end as usize];
        if let Err(error) = open_stored_blob(repository, pack, entry, stored) {
            problems.push((Some(entry.id), error.to_string()));
        }
    }
    for wanted in expected {
        if !entries.contains(wanted) {
            problems.push((
                Some(wanted.id),
                format!("pack `{path}` does not hold blob {} where the index says", wanted.id),
            ));
        }
    }
    Ok(problems)
}

/// Whether reading failed because the store did (after its retries), which says nothing about
/// the backup: the task's error, retried when transient. A missing object or one that does not
/// hold what bk wrote is a finding about the backup instead.
pub(crate) fn store_failed(error: &RepositoryError) -> bool {
    match error {
        RepositoryError::Store { source, .. } => {
            !matches!(source, object_store::Error::NotFound { .. })
        }
        RepositoryError::Corrupt { .. } => false,
        _ => true,
    }
}

/// A problem found in a pack, with the blob it is about when there is one.
pub(crate) type Finding = (Option<BlobId>, String);

/// Problems found, the first ones listed and the rest counted.
#[derive(Default)]
pub(crate) struct Problems {
    listed: Vec<String>,
    num_unlisted: usize,
}

impl Problems {
    pub(crate) fn push(&mut self, problem: String) {
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(problem);
        } else {
            self.num_unlisted += 1;
        }
    }

    pub(crate) fn into_report(mut self, num_objects: u64, num_bytes: u64) -> TaskReport {
        if self.num_unlisted > 0 {
            self.listed.push(format!("… and {} more problems", self.num_unlisted));
        }
        TaskReport { num_objects, num_bytes, problems: self.listed, ..TaskReport::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_failing_store_is_the_tasks_error_and_a_missing_or_altered_object_a_finding() {
        let store = |source| RepositoryError::Store { key: "packs/ab/ab".into(), source };
        let reset =
            object_store::Error::Generic { store: "S3", source: "connection reset by peer".into() };
        let missing =
            object_store::Error::NotFound { path: "packs/ab/ab".into(), source: "".into() };
        let altered = RepositoryError::Corrupt { key: "packs/ab/ab".into(), reason: "tag".into() };
        assert!(store_failed(&store(reset)));
        assert!(!store_failed(&store(missing)));
        assert!(!store_failed(&altered));
    }

    #[test]
    fn test_problems_past_the_listed_maximum_are_counted_not_listed() {
        let mut problems = Problems::default();
        for n in 0..MAX_LISTED_PROBLEMS + 3 {
            problems.push(format!("problem {n}"));
        }
        let report = problems.into_report(10, 100);
        assert_eq!(report.problems.len(), MAX_LISTED_PROBLEMS + 1);
        assert_eq!(report.problems.last().unwrap(), "… and 3 more problems");
        assert_eq!((report.num_objects, report.num_bytes), (10, 100));
        assert!(Problems::default().into_report(0, 0).problems.is_empty());
    }
}
