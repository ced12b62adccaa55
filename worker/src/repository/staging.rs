//! A task attempt's records in the repository's staging area.
//!
//! ```text
//! staging/<task>/a<attempt>/progress   what the attempt has copied so far (replaced at each save)
//! staging/<task>/a<attempt>/done       its result: report, scope list, blobs to index
//! ```
//! An attempt saves its progress every `progress_save_interval` (the run it is writing, cut
//! where it got, and the locations of the blobs it stored that no index file lists yet), and
//! writes its done record last. A later attempt of the same task reads the runs earlier
//! attempts wrote as a list of objects already copied, and reuses those whose source object is
//! unchanged without reading them; it carries their blob locations along, so the commit reads
//! exactly one attempt per task. Staging goes with the job (`RemoveStaging`).

use bk_proto::ids::TaskId;
use object_store::path::Path;

use super::index::IndexEntry;
use super::layout::{done_key, progress_key, task_staging_dir};
use super::list::RunRef;
use super::manifest::{DoneRecord, ProgressRecord};
use super::metadata::{read_json, write_json};
use super::opened::Repository;
use crate::error::{RepositoryError, RepositoryResult};

/// Saves an attempt's progress.
///
/// # Errors
/// [`RepositoryError`] when the write fails.
pub async fn write_progress(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
    record: &ProgressRecord,
) -> RepositoryResult<()> {
    let key = progress_key(task_id, attempt);
    write_json(repository.store.as_ref(), &repository.key, &key, record).await
}

/// Writes an attempt's done record.
///
/// # Errors
/// [`RepositoryError`] when the write fails.
pub async fn write_done(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
    record: &DoneRecord,
) -> RepositoryResult<()> {
    write_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt), record)
        .await
}

/// Reads the done record of an attempt.
///
/// # Errors
/// [`RepositoryError`] when it is missing or does not open.
pub async fn read_done(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<DoneRecord> {
    read_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt)).await
}

/// What attempts before the current one of a task recorded.
#[derive(Debug, Default)]
pub struct EarlierWork {
    /// The runs they wrote, oldest attempt first (read merged, the newest attempt wins).
    pub runs: Vec<RunRef>,
    /// Locations of blobs they stored that no index file lists.
    pub blobs: Vec<IndexEntry>,
}

/// Reads what attempts before `attempt` of `task_id` recorded: each one's done record, or its
/// last progress save.
///
/// # Errors
/// [`RepositoryError`] when listing or reading fails.
pub async fn read_earlier(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<EarlierWork> {
    let dir = task_staging_dir(task_id);
    let mut found: Vec<(u32, Path)> = Vec::new();
    for path in super::list_paths(repository.store.as_ref(), dir.as_ref()).await? {
        let Some(number) = attempt_of(&path).filter(|number| *number < attempt) else { continue };
        if matches!(path.filename(), Some("done" | "progress")) {
            found.push((number, path));
        }
    }
    // Per attempt the done record if there is one (it is complete), else the progress save.
    found.sort_by(|(a, a_path), (b, b_path)| {
        a.cmp(b).then_with(|| {
            (a_path.filename() == Some("done")).cmp(&(b_path.filename() == Some("done")))
        })
    });
    let mut work = EarlierWork::default();
    let mut chosen: Vec<(u32, Path)> = Vec::new();
    for (number, path) in found {
        match chosen.last_mut() {
            Some((last, kept)) if *last == number => *kept = path,
            _ => chosen.push((number, path)),
        }
    }
    for (_, path) in chosen {
        let read = if path.filename() == Some("done") {
            read_json::<DoneRecord>(repository.store.as_ref(), &repository.key, &path)
                .await
                .map(|done| (done.written, done.blobs))
        } else {
            read_json::<ProgressRecord>(repository.store.as_ref(), &repository.key, &path)
                .await
                .map(|progress| (progress.written, progress.blobs))
        };
        match read {
            Ok((run, blobs)) => {
                if !run.chunks.is_empty() {
                    work.runs.push(run);
                }
                work.blobs.extend(blobs);
            }
            // Reuse is an optimisation: a record that does not open (an attempt that ran under
            // the config that lost an initialisation race, sealed with its key; or damage) is
            // not reused, and its objects are copied again.
            Err(RepositoryError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "an earlier attempt's staging record does not open: its objects are copied again");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(work)
}

/// The attempt number in `staging/<task>/a<n>/<file>`.
fn attempt_of(path: &Path) -> Option<u32> {
    let parts: Vec<_> = path.parts().collect();
    let dir = parts.get(parts.len().checked_sub(2)?)?;
    dir.as_ref().strip_prefix('a')?.parse().ok()
}

/// Reads a job's small plain JSON marker in staging (the QuestDB checkpoint marker, snapshot
/// records: no secrets, read by whichever worker runs the job's cleanup); `None` when absent.
///
/// # Errors
/// Store errors; a marker that does not parse.
pub async fn read_marker<T: serde::de::DeserializeOwned>(
    repository: &Repository,
    key: &Path,
) -> RepositoryResult<Option<T>> {
    match super::metadata::read_all(repository.store.as_ref(), key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            RepositoryError::Corrupt { key: key.to_string(), reason: error.to_string() }
        }),
        Err(RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. }) => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Writes a marker [`read_marker`] reads.
///
/// # Errors
/// Store errors.
pub async fn write_marker<T: serde::Serialize>(
    repository: &Repository,
    key: &Path,
    value: &T,
) -> RepositoryResult<()> {
    use object_store::ObjectStoreExt;
    let bytes = serde_json::to_vec(value).map_err(|error| RepositoryError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })?;
    repository
        .store
        .put(key, object_store::PutPayload::from(bytes))
        .await
        .map_err(RepositoryError::store(key.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_attempt_numbers_are_read_from_record_keys() {
        let path = Path::from("staging/01M8A8K5M4V56XN1S5AM6WRNAA/p0/t1/a12/done");
        assert_eq!(attempt_of(&path), Some(12));
        assert_eq!(attempt_of(&Path::from("staging/x/p0/t1/b2/done")), None);
        assert_eq!(attempt_of(&Path::from("done")), None);
    }
}
