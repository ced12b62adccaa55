//! Prune: forget backups, then sweep the chunks nothing references.
//!
//! Runs under the coordinator's repository lock: no other job uses the repository meanwhile, so
//! every chunk a running backup could need is either referenced by a committed manifest or not
//! yet written.

use std::collections::HashSet;

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::layout::{backup_dir, manifest_key};
use crate::repository::reader::{read_manifest, read_segment};

/// Forgets `backups`: the manifest first (the backup is gone at once), then the segments.
///
/// # Errors
/// Store errors; a backup already gone is not one.
pub async fn forget_backups(
    context: &TaskContext,
    backups: &[BackupId],
    dry_run: bool,
) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    if !dry_run {
        report.forgotten = backups.to_vec();
    }
    let repository = context.repository.as_ref();
    for backup_id in backups {
        let verb = if dry_run { "would forget" } else { "forgot" };
        report.events.push(format!("{verb} backup {backup_id}"));
        report.num_objects += 1;
        if dry_run {
            continue;
        }
        let key = manifest_key(*backup_id);
        match repository.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(RepositoryError::store(key.to_string())(error).into()),
        }
        let dir = Path::from(backup_dir(*backup_id));
        let rest = repository.list(Some(&dir)).map_ok(|meta| meta.location).boxed();
        let _: Vec<Path> = repository
            .delete_stream(rest)
            .try_collect()
            .await
            .map_err(RepositoryError::store(dir.to_string()))?;
    }
    Ok(report)
}

/// Deletes every chunk no remaining manifest references (in a dry run, ignoring `forgotten`
/// ones, and deleting nothing).
///
/// # Errors
/// Store errors, or a manifest or segment that cannot be read (then nothing is deleted: an
/// unreadable backup's chunks must not be swept).
pub async fn sweep_chunks(
    context: &TaskContext,
    forgotten: &[BackupId],
    dry_run: bool,
) -> Result<TaskReport, TaskError> {
    let repository = context.repository.as_ref();
    let forgotten: HashSet<String> = forgotten.iter().map(ToString::to_string).collect();
    let manifests: Vec<Path> = repository
        .list(Some(&Path::from("backups")))
        .try_filter(|meta| futures::future::ready(meta.location.filename() == Some("manifest")))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(RepositoryError::store("backups/"))?;
    let mut referenced: HashSet<String> = HashSet::new();
    let mut num_backups = 0;
    for key in &manifests {
        let backup_id: BackupId =
            match key.parts().nth(1).and_then(|part| part.as_ref().parse().ok()) {
                Some(backup_id) => backup_id,
                None => continue,
            };
        if dry_run && forgotten.contains(&backup_id.to_string()) {
            continue;
        }
        num_backups += 1;
        let manifest = read_manifest(repository, backup_id).await?;
        for segment in &manifest.segments {
            for entry in read_segment(repository, segment).await? {
                referenced.extend(entry.chunks);
            }
        }
    }
    let unreferenced: Vec<object_store::ObjectMeta> = repository
        .list(Some(&Path::from("chunks")))
        .try_filter(|meta| {
            futures::future::ready(
                !meta.location.filename().is_some_and(|name| referenced.contains(name)),
            )
        })
        .try_collect()
        .await
        .map_err(RepositoryError::store("chunks/"))?;
    let bytes: u64 = unreferenced.iter().map(|meta| meta.size).sum();
    let mut report = TaskReport {
        num_objects: unreferenced.len() as u64,
        num_bytes: bytes,
        ..TaskReport::default()
    };
    let verb = if dry_run { "would delete" } else { "deleted" };
    report.events.push(format!(
        "{verb} {} unreferenced chunk(s), {bytes} bytes; {} chunk(s) referenced by {num_backups} backup(s) kept",
        unreferenced.len(),
        referenced.len()
    ));
    if !dry_run {
        let locations =
            stream::iter(unreferenced.into_iter().map(|meta| Ok(meta.location))).boxed();
        let _: Vec<Path> = repository
            .delete_stream(locations)
            .try_collect()
            .await
            .map_err(RepositoryError::store("chunks/"))?;
    }
    Ok(report)
}
