//! Verifying a backup.
//!
//! Shallow: the manifest and every segment open (they are sealed: any alteration fails), every
//! index file opens, every blob the backup names is in the index, and every pack holding one
//! exists (one listing of `packs/`, not a request per blob). Deep: every pack holding a blob of
//! the backup is read whole; its header must open and list each blob where the index says, and
//! every blob in it must open and hash to its id. A byte flipped anywhere in such a pack, a blob
//! swapped for another, a pack from another repository: each is a problem naming the object.

use std::collections::{BTreeMap, HashMap, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt};

use super::TaskContext;
use crate::error::TaskError;
use crate::repository::crypto::BlobId;
use crate::repository::index::{read_index, BlobIndex};
use crate::repository::layout::{pack_path, INDEX_DIR, PACKS_DIR};
use crate::repository::pack::{decode_header, sealed_header, PackEntry, PackId};
use crate::repository::reader::{
    check_key_is_safe, open_stored_blob, read_all, read_manifest, read_segment,
};
use crate::repository::{list_paths, open::Repository};

/// Problems listed in full; beyond this only their count is reported.
const MAX_LISTED_PROBLEMS: usize = 1000;
/// Packs read at once by a deep verification.
const PACKS_IN_FLIGHT: usize = 4;

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
        Err(error) => {
            problems.push(format!("manifest: {error}"));
            return Ok(problems.into_report(0, 0));
        }
    };
    let index = load_index(repository, &mut problems).await?;
    // The first object naming each blob: problems name objects, not only blobs.
    let mut users: HashMap<BlobId, String> = HashMap::new();
    let (mut num_objects, mut num_bytes) = (0u64, 0u64);
    for segment in &manifest.segments {
        let entries = match read_segment(repository, segment).await {
            Ok(entries) => entries,
            Err(error) => {
                problems.push(format!("segment: {error}"));
                continue;
            }
        };
        for entry in entries {
            context.progress.listed(entry.size);
            if let Err(refusal) = check_key_is_safe(&entry.key) {
                problems.push(refusal);
            }
            for id in &entry.blobs {
                if !index.contains_key(id) {
                    problems.push(format!("object `{}`: blob {id} is in no index", entry.key));
                }
                users.entry(*id).or_insert_with(|| entry.key.clone());
            }
            num_objects += 1;
            num_bytes += entry.size;
            context.progress.done(entry.size);
        }
    }
    if num_objects != manifest.num_objects {
        problems.push(format!(
            "the manifest says {} objects, its segments hold {num_objects}",
            manifest.num_objects
        ));
    }
    let mut by_pack: BTreeMap<PackId, Vec<PackEntry>> = BTreeMap::new();
    for id in users.keys() {
        if let Some((pack, entry)) = index.get(id) {
            by_pack.entry(*pack).or_default().push(*entry);
        }
    }
    let existing = list_packs(repository).await?;
    for (pack, entries) in &by_pack {
        if !existing.contains(pack) {
            let object = &users[&entries[0].id];
            problems.push(format!(
                "object `{object}`: pack `{}` holding {} of the backup's blobs is missing",
                pack_path(*pack),
                entries.len()
            ));
        }
    }
    if deep {
        // Futures collected first: a closure inside the stream type trips rustc's Send inference.
        let checks: Vec<_> = by_pack
            .iter()
            .filter(|(pack, _)| existing.contains(pack))
            .map(|(pack, entries)| verify_pack(repository, *pack, entries))
            .collect();
        let found: Vec<Vec<(Option<BlobId>, String)>> =
            stream::iter(checks).buffer_unordered(PACKS_IN_FLIGHT).collect().await;
        for (blob, problem) in found.into_iter().flatten() {
            match blob.and_then(|id| users.get(&id)) {
                Some(object) => problems.push(format!("object `{object}`: {problem}")),
                None => problems.push(problem),
            }
        }
    }
    Ok(problems.into_report(num_objects, num_bytes))
}

/// Every index file, opened; those that do not open are problems (their blobs then show as
/// "in no index").
async fn load_index(
    repository: &Repository,
    problems: &mut Problems,
) -> Result<BlobIndex, TaskError> {
    let mut index = BlobIndex::new();
    for path in list_paths(repository.store.as_ref(), INDEX_DIR).await? {
        let Some(name) = path.filename() else { continue };
        match read_index(repository.store.as_ref(), &repository.key, name).await {
            Ok(entries) => index.extend(
                entries.into_iter().map(|entry| (entry.entry.id, (entry.pack, entry.entry))),
            ),
            Err(error) => problems.push(format!("index: {error}")),
        }
    }
    Ok(index)
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
async fn verify_pack(
    repository: &Repository,
    pack: PackId,
    expected: &[PackEntry],
) -> Vec<(Option<BlobId>, String)> {
    let path = pack_path(pack);
    let bytes = match read_all(repository.store.as_ref(), &path).await {
        Ok(bytes) => bytes,
        Err(error) => return vec![(None, format!("pack `{path}`: {error}"))],
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
            return problems;
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
    problems
}

#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    num_unlisted: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(problem);
        } else {
            self.num_unlisted += 1;
        }
    }

    fn into_report(mut self, num_objects: u64, num_bytes: u64) -> TaskReport {
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
