//! Prune: forget backups, then drop the packs nothing uses and repack the ones mostly unused.
//!
//! Runs under the coordinator's repository lock: no other job uses the repository meanwhile, so
//! every blob a backup could need is referenced by a committed manifest or not written yet.
//!
//! Sweeping, in an order a crash at any point leaves restorable: (1) read every index file and
//! every remaining manifest (one unreadable manifest stops the prune before anything is
//! deleted: its blobs must not be swept); (2) copy the referenced blobs of packs whose unused
//! share exceeds `max_unused_percent` into new packs (sealed bytes are copied as they are: a
//! blob is bound to its id, not to its pack); (3) write one new index file listing every
//! referenced blob where it now is; (4) delete the old index files; (5) delete the packs no
//! longer needed. Until (4), readers may see a blob in two places, both valid.

use std::collections::{HashMap, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::blob::SealedBlob;
use crate::repository::crypto::BlobId;
use crate::repository::index::{read_index, write_index, IndexEntry};
use crate::repository::layout::{
    index_path, manifest_key, pack_path, BACKUPS_DIR, INDEX_DIR, PACKS_DIR,
};
use crate::repository::pack::{PackEntry, PackId};
use crate::repository::reader::{read_manifest, read_pack_range, read_segment};
use crate::repository::{list_paths, open::Repository};

/// Forgets `backups`: the manifests first (the backups are gone at once), then every segment
/// of a backup without a manifest that no remaining manifest names. Segments are shared: an
/// unchanged incremental names its parent's segments instead of writing them again, so a
/// forgotten backup's segments may still be a kept backup's, and are deleted only once no
/// manifest names them (then also those of a backup forgotten earlier).
///
/// # Errors
/// Store errors, or a remaining manifest that cannot be read (then no segment is deleted: the
/// forgotten backups are gone, their segments stay until a later prune can read every manifest).
pub async fn forget_backups(
    context: &TaskContext,
    backups: &[BackupId],
    dry_run: bool,
) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    if !dry_run {
        report.forgotten = backups.to_vec();
    }
    let repository = &context.repository;
    let store = repository.store.as_ref();
    for backup_id in backups {
        let verb = if dry_run { "would forget" } else { "forgot" };
        report.events.push(format!("{verb} backup {backup_id}"));
        report.num_objects += 1;
        if dry_run {
            continue;
        }
        let key = manifest_key(*backup_id);
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(RepositoryError::store(key.to_string())(error).into()),
        }
    }
    if dry_run {
        return Ok(report);
    }
    let files = list_paths(store, BACKUPS_DIR).await?;
    let with_manifest: HashSet<String> = files
        .iter()
        .filter(|path| path.filename() == Some("manifest"))
        .filter_map(|path| path.parts().nth(1).map(|part| part.as_ref().to_string()))
        .collect();
    let mut named: HashSet<String> = HashSet::new();
    for backup in &with_manifest {
        let Ok(backup_id) = backup.parse::<BackupId>() else { continue };
        let manifest = read_manifest(repository, backup_id).await?;
        named.extend(manifest.segments.into_iter().map(|segment| segment.key));
    }
    let unnamed: Vec<Path> = files
        .into_iter()
        .filter(|path| {
            let backup = path.parts().nth(1).map(|part| part.as_ref().to_string());
            backup.is_some_and(|backup| !with_manifest.contains(&backup))
                && !named.contains(path.as_ref())
        })
        .collect();
    let _: Vec<Path> = store
        .delete_stream(stream::iter(unnamed.into_iter().map(Ok)).boxed())
        .try_collect()
        .await
        .map_err(RepositoryError::store(BACKUPS_DIR))?;
    Ok(report)
}

/// What a pack becomes.
#[derive(Debug, Default)]
struct Plan {
    /// Packs no remaining backup uses a blob of, with their sizes.
    drop: Vec<(PackId, u64)>,
    /// Packs to copy the used blobs out of, with their sizes and used bytes.
    repack: Vec<(PackId, u64, u64)>,
    /// Packs kept as they are, with their sizes.
    keep: Vec<(PackId, u64)>,
}

/// Deletes every pack no remaining manifest references a blob of, repacks packs whose unused
/// share exceeds `max_unused_percent`, and rewrites the index (in a dry run, ignoring
/// `forgotten` backups, and changing nothing).
///
/// # Errors
/// Store errors, or a manifest or segment that cannot be read (then nothing is deleted), or a
/// remaining backup naming a blob no index lists (the repository is damaged: verify it).
pub async fn sweep_packs(
    context: &TaskContext,
    forgotten: &[BackupId],
    dry_run: bool,
    max_unused_percent: u32,
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let index_files = list_names(repository, INDEX_DIR).await?;
    let mut index: HashMap<BlobId, (PackId, PackEntry)> = HashMap::new();
    for name in &index_files {
        for entry in read_index(repository.store.as_ref(), &repository.key, name).await? {
            index.insert(entry.entry.id, (entry.pack, entry.entry));
        }
    }
    let (referenced, num_backups) = referenced_blobs(repository, forgotten, dry_run).await?;
    if let Some(missing) = referenced.iter().find(|id| !index.contains_key(id)) {
        return Err(TaskError::Damaged(format!(
            "a remaining backup names blob {missing}, which no index lists: the repository is damaged, nothing was \
             pruned. Run `bkctl submit verify --deep` on the repository's backups"
        )));
    }
    let sizes: HashMap<PackId, u64> = repository
        .store
        .list(Some(&Path::from(PACKS_DIR)))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(PackId::from_hex).map(|pack| (pack, meta.size)))
        })
        .try_collect()
        .await
        .map_err(RepositoryError::store(PACKS_DIR))?;
    let plan = plan_packs(&index, &referenced, &sizes, max_unused_percent);
    let mut report = TaskReport::default();
    let bytes = |packs: &[(PackId, u64)]| packs.iter().map(|(_, size)| size).sum::<u64>();
    let repack_bytes: u64 = plan.repack.iter().map(|(_, size, _)| size).sum();
    let repack_used: u64 = plan.repack.iter().map(|(_, _, used)| used).sum();
    let verb = if dry_run { "would" } else { "did" };
    report.events.push(format!(
        "{verb} delete {} pack(s) no backup uses ({} bytes); {verb} repack {} pack(s) more than {max_unused_percent}% unused \
         ({repack_bytes} bytes, {repack_used} of them in use); {} pack(s) kept ({} bytes); {} blob(s) referenced by \
         {num_backups} backup(s)",
        plan.drop.len(),
        bytes(&plan.drop),
        plan.repack.len(),
        plan.keep.len(),
        bytes(&plan.keep),
        referenced.len()
    ));
    report.num_objects = (plan.drop.len() + plan.repack.len()) as u64;
    report.num_bytes = bytes(&plan.drop) + repack_bytes - repack_used;
    if dry_run {
        return Ok(report);
    }
    let moved = repack(context, &plan.repack, &index, &referenced).await?;
    let mut live: Vec<IndexEntry> = referenced
        .iter()
        .filter_map(|id| {
            moved.get(id).copied().or_else(|| {
                index.get(id).map(|(pack, entry)| IndexEntry { pack: *pack, entry: *entry })
            })
        })
        .collect();
    live.sort_by_key(|entry| entry.entry.id);
    let new_index = format!("prune-{}", ulid::Ulid::new().to_string().to_lowercase());
    write_index(repository.store.as_ref(), &repository.key, &new_index, &live).await?;
    delete_all(repository, index_files.iter().map(|name| index_path(name)).collect()).await?;
    let gone: Vec<Path> = plan
        .drop
        .iter()
        .map(|(pack, _)| *pack)
        .chain(plan.repack.iter().map(|(pack, _, _)| *pack))
        .map(pack_path)
        .collect();
    delete_all(repository, gone).await?;
    report.transfer.repository_puts =
        context.requests.puts.load(std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

/// Decides each listed pack's fate. Pure.
fn plan_packs(
    index: &HashMap<BlobId, (PackId, PackEntry)>,
    referenced: &HashSet<BlobId>,
    sizes: &HashMap<PackId, u64>,
    max_unused_percent: u32,
) -> Plan {
    let mut used: HashMap<PackId, u64> = HashMap::new();
    for id in referenced {
        if let Some((pack, entry)) = index.get(id) {
            *used.entry(*pack).or_default() += u64::from(entry.length);
        }
    }
    let mut plan = Plan::default();
    let mut packs: Vec<(&PackId, &u64)> = sizes.iter().collect();
    packs.sort();
    for (pack, size) in packs {
        match used.get(pack).copied().unwrap_or(0) {
            0 => plan.drop.push((*pack, *size)),
            in_use if (size - in_use.min(*size)) * 100 > *size * u64::from(max_unused_percent) => {
                plan.repack.push((*pack, *size, in_use))
            }
            _ => plan.keep.push((*pack, *size)),
        }
    }
    plan
}

/// Blobs the remaining backups use (in a dry run, ignoring `forgotten` ones), and how many
/// backups that is.
async fn referenced_blobs(
    repository: &Repository,
    forgotten: &[BackupId],
    dry_run: bool,
) -> Result<(HashSet<BlobId>, usize), TaskError> {
    let forgotten: HashSet<&BackupId> = forgotten.iter().collect();
    let manifests: Vec<Path> = list_paths(repository.store.as_ref(), BACKUPS_DIR)
        .await?
        .into_iter()
        .filter(|path| path.filename() == Some("manifest"))
        .collect();
    let mut referenced = HashSet::new();
    let mut num_backups = 0;
    // Segments are shared between backups (unchanged incrementals): each is read once.
    let mut read_segments: HashSet<String> = HashSet::new();
    for key in &manifests {
        let Some(backup_id) =
            key.parts().nth(1).and_then(|part| part.as_ref().parse::<BackupId>().ok())
        else {
            continue;
        };
        if dry_run && forgotten.contains(&backup_id) {
            continue;
        }
        num_backups += 1;
        let manifest = read_manifest(repository, backup_id).await?;
        for segment in &manifest.segments {
            if !read_segments.insert(segment.key.clone()) {
                continue;
            }
            for entry in read_segment(repository, segment).await? {
                referenced.extend(entry.blobs);
            }
        }
    }
    Ok((referenced, num_backups))
}

/// Copies the referenced blobs of `packs` into new packs; where they are now.
async fn repack(
    context: &TaskContext,
    packs: &[(PackId, u64, u64)],
    index: &HashMap<BlobId, (PackId, PackEntry)>,
    referenced: &HashSet<BlobId>,
) -> Result<HashMap<BlobId, IndexEntry>, TaskError> {
    let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for id in referenced {
        if let Some((pack, entry)) = index.get(id) {
            by_pack.entry(*pack).or_default().push(*entry);
        }
    }
    let mut handles = Vec::new();
    for (pack, _, _) in packs {
        let Some(entries) = by_pack.get(pack) else { continue };
        let start = entries.iter().map(|entry| entry.offset).min().unwrap_or(0);
        let end =
            entries.iter().map(|entry| entry.offset + u64::from(entry.length)).max().unwrap_or(0);
        let bytes = read_pack_range(&context.repository, *pack, start, end).await?;
        for entry in entries {
            let from = (entry.offset - start) as usize;
            let blob = SealedBlob {
                id: entry.id,
                bytes: bytes[from..from + entry.length as usize].to_vec(),
                raw_length: entry.raw_length,
                compressed: entry.is_compressed(),
            };
            handles.push(context.packer.add(blob, &context.requests).await.0);
        }
    }
    context.packer.flush(&context.requests);
    let mut moved = HashMap::new();
    for handle in handles {
        let entry = handle.stored().await.map_err(RepositoryError::WriteFailed)?;
        moved.insert(entry.entry.id, entry);
    }
    Ok(moved)
}

async fn list_names(repository: &Repository, dir: &str) -> Result<Vec<String>, TaskError> {
    Ok(list_paths(repository.store.as_ref(), dir)
        .await?
        .into_iter()
        .filter_map(|path| path.filename().map(str::to_string))
        .collect())
}

async fn delete_all(repository: &Repository, paths: Vec<Path>) -> Result<(), TaskError> {
    let locations = stream::iter(paths.into_iter().map(Ok)).boxed();
    let _: Vec<Path> = repository
        .store
        .delete_stream(locations)
        .try_collect()
        .await
        .map_err(RepositoryError::store("packs/ and index/"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(byte: u8, length: u32) -> PackEntry {
        PackEntry { id: BlobId([byte; 32]), offset: 0, length, raw_length: length, flags: 0 }
    }

    #[test]
    fn test_packs_are_dropped_repacked_or_kept_by_their_unused_share() {
        let (a, b, c) = (PackId([1; 16]), PackId([2; 16]), PackId([3; 16]));
        let orphan = PackId([4; 16]);
        let index: HashMap<BlobId, (PackId, PackEntry)> = [
            (BlobId([1; 32]), (a, entry(1, 95))), // a: 95 of 100 used: kept at 10 %.
            (BlobId([2; 32]), (b, entry(2, 50))), // b: 50 of 100 used: repacked.
            (BlobId([3; 32]), (c, entry(3, 100))), // c: nothing used: dropped.
        ]
        .into();
        let referenced: HashSet<BlobId> = [BlobId([1; 32]), BlobId([2; 32])].into();
        let sizes: HashMap<PackId, u64> = [(a, 100), (b, 100), (c, 100), (orphan, 7)].into();
        let plan = plan_packs(&index, &referenced, &sizes, 10);
        assert_eq!(plan.keep, [(a, 100)]);
        assert_eq!(plan.repack, [(b, 100, 50)]);
        assert_eq!(plan.drop, [(c, 100), (orphan, 7)], "a pack no index lists is garbage too");
        let strict = plan_packs(&index, &referenced, &sizes, 0);
        assert_eq!(strict.repack.len(), 2, "0 %: repack whatever has unused bytes");
    }
}
