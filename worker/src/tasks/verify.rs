//! Verifying a backup, object by object.
//!
//! Shallow: the manifest and every segment read back with the hashes the manifest records, and
//! every chunk named exists (one listing of `chunks/`, not a request per chunk). Deep: every
//! chunk is re-read and re-hashed, and every object's chunks re-hash to the object's BLAKE3.

use std::collections::HashSet;

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::layout::chunk_key;
use crate::repository::manifest::ObjectEntry;
use crate::repository::reader::{check_key_is_safe, read_all, read_manifest, read_segment};

/// Problems listed in full; beyond this only their count is reported.
const MAX_LISTED_PROBLEMS: usize = 1000;

/// Verifies `backup_id`. Problems are returned in the report (the job fails on them); an error
/// is returned only when verification itself could not run.
///
/// # Errors
/// [`TaskError::Repository`] when the repository cannot be read at all.
pub async fn verify_backup(
    context: &TaskContext,
    backup_id: BackupId,
    deep: bool,
) -> Result<TaskReport, TaskError> {
    let repository = context.repository.as_ref();
    let mut problems = Problems::default();
    let manifest = match read_manifest(repository, backup_id).await {
        Ok(manifest) => manifest,
        Err(error) => {
            problems.push(format!("manifest: {error}"));
            return Ok(problems.into_report(0, 0));
        }
    };
    let existing_chunks = if deep { HashSet::new() } else { list_chunks(context).await? };
    let mut verified_chunks: HashSet<String> = HashSet::new();
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
            if deep {
                for problem in verify_deep(context, &entry, &mut verified_chunks).await? {
                    problems.push(problem);
                }
            } else {
                for chunk in entry.chunks.iter().filter(|chunk| !existing_chunks.contains(*chunk)) {
                    problems.push(format!(
                        "object `{}`: chunk `{chunk}` is missing from the repository",
                        entry.key
                    ));
                }
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
    Ok(problems.into_report(num_objects, num_bytes))
}

/// Re-reads every chunk of `entry` not verified yet; returns what is wrong with the object.
async fn verify_deep(
    context: &TaskContext,
    entry: &ObjectEntry,
    verified_chunks: &mut HashSet<String>,
) -> Result<Vec<String>, TaskError> {
    let mut problems = Vec::new();
    let mut object_hasher = blake3::Hasher::new();
    let mut whole_object_readable = true;
    for chunk in &entry.chunks {
        let bytes = match read_all(context.repository.as_ref(), &chunk_key(chunk)).await {
            Ok(bytes) => bytes,
            Err(RepositoryError::Store {
                source: object_store::Error::NotFound { .. }, ..
            }) => {
                problems.push(format!(
                    "object `{}`: chunk `{chunk}` is missing from the repository",
                    entry.key
                ));
                whole_object_readable = false;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        object_hasher.update(&bytes);
        if verified_chunks.contains(chunk) {
            continue;
        }
        let actual = blake3::hash(&bytes).to_hex().to_string();
        if actual == *chunk {
            verified_chunks.insert(chunk.clone());
        } else {
            problems.push(format!(
                "object `{}`: chunk `{chunk}` is corrupt (its bytes hash to `{actual}`)",
                entry.key
            ));
            whole_object_readable = false;
        }
    }
    if whole_object_readable && object_hasher.finalize().to_hex().as_str() != entry.blake3 {
        problems.push(format!(
            "object `{}`: its chunks do not hash to the object's BLAKE3 `{}`",
            entry.key, entry.blake3
        ));
    }
    Ok(problems)
}

async fn list_chunks(context: &TaskContext) -> Result<HashSet<String>, TaskError> {
    let prefix = Path::from("chunks");
    let names: Vec<String> = context
        .repository
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
        .boxed()
        .try_collect()
        .await
        .map_err(RepositoryError::store("chunks/"))?;
    Ok(names.into_iter().collect())
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
