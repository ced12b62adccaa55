//! Prune: forget backups, then drop the packs nothing uses and repack the ones mostly unused.
//!
//! Runs under the coordinator's repository lock: no other job uses the repository meanwhile, so
//! every blob a backup could need is referenced by a committed manifest or not written yet.
//!
//! Sweeping, in an order a crash at any point leaves restorable: (1) read every index file and
//! every remaining manifest (one unreadable manifest stops the prune before anything is
//! deleted: its blobs must not be swept); (2) copy the referenced blobs of packs whose unused
//! share exceeds `max_unused_percent` into new packs (sealed bytes are copied as they are: a
//! blob is bound to its id, not to its pack); (3) write, per index partition, new index files
//! listing every blob the partition's scopes name where it now is; (4) delete the old index
//! files; (5) delete the packs no longer needed. Until (4), readers may see a blob in two
//! places, both valid; workers whose local index had imported a deleted file import their
//! partition anew.
//!
//! Memory: the sweep holds the repository's index and the referenced blob ids (about 100 bytes
//! a blob); backups, restores and verifies do not (see `repository::index`).

use std::collections::{BTreeMap, HashMap, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::context::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::blob::SealedBlob;
use crate::repository::crypto::BlobId;
use crate::repository::index::{
    index_path, list_index_files, list_partitions, read_index, write_index_files, IndexEntry,
};
use crate::repository::layout::{manifest_key, pack_path, BACKUPS_DIR, LISTS_DIR, PACKS_DIR};
use crate::repository::list::{ListItem, RunCursor};
use crate::repository::manifest::Manifest;
use crate::repository::pack::{PackEntry, PackId};
use crate::repository::reader::{read_manifest, read_pack_range};
use crate::repository::{list_paths, opened::Repository};

/// Forgets `backups`: the manifests first (the backups are gone at once), then every object
/// list chunk no remaining manifest names, and any leftover of a backup without a manifest.
/// Chunks are shared: a backup's runs are named by the later backups whose deltas sit on top
/// of them, so a forgotten backup's chunks are deleted only once no manifest names them.
///
/// # Errors
/// Store errors, or a remaining manifest that cannot be read (then no chunk is deleted: the
/// forgotten backups are gone, their chunks stay until a later prune can read every manifest).
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
    let mut named: HashSet<Path> = HashSet::new();
    for manifest in remaining_manifests(repository, &[], false).await? {
        named.extend(manifest.runs().flat_map(|run| run.files()));
    }
    let unnamed: Vec<Path> = list_paths(store, LISTS_DIR)
        .await?
        .into_iter()
        .chain(
            list_paths(store, BACKUPS_DIR)
                .await?
                .into_iter()
                .filter(|path| path.filename() != Some("manifest")),
        )
        .filter(|path| !named.contains(path))
        .collect();
    delete_all(repository, unnamed).await?;
    Ok(report)
}

/// Every manifest in the repository (in a dry run, but `forgotten`).
///
/// # Errors
/// One that cannot be read: its blobs and chunks must not be swept.
async fn remaining_manifests(
    repository: &Repository,
    forgotten: &[BackupId],
    dry_run: bool,
) -> Result<Vec<Manifest>, TaskError> {
    let mut manifests = Vec::new();
    for key in list_paths(repository.store.as_ref(), BACKUPS_DIR).await? {
        if key.filename() != Some("manifest") {
            continue;
        }
        let Some(backup_id) =
            key.parts().nth(1).and_then(|part| part.as_ref().parse::<BackupId>().ok())
        else {
            continue;
        };
        if dry_run && forgotten.contains(&backup_id) {
            continue;
        }
        manifests.push(read_manifest(repository, backup_id).await?);
    }
    Ok(manifests)
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
    let mut index_files: Vec<Path> = Vec::new();
    let mut index: HashMap<BlobId, (PackId, PackEntry)> = HashMap::new();
    for partition in list_partitions(repository.store.as_ref()).await? {
        for name in list_index_files(repository.store.as_ref(), &partition).await? {
            let path = index_path(&partition, &name);
            for entry in read_index(repository.store.as_ref(), &repository.key, &path).await? {
                index.insert(entry.entry.id, (entry.pack, entry.entry));
            }
            index_files.push(path);
        }
    }
    let manifests = remaining_manifests(repository, forgotten, dry_run).await?;
    let num_backups = manifests.len();
    let referenced = referenced_blobs(repository, &manifests).await?;
    if let Some(missing) = referenced.keys().find(|id| !index.contains_key(id)) {
        return Err(TaskError::Damaged(format!(
            "a remaining backup names blob {missing}, which no index lists: the repository is damaged, nothing was \
             pruned. Run `bkctl submit verify --deep` on the repository's backups"
        )));
    }
    let sizes: HashMap<PackId, u64> = pack_sizes(repository).await?;
    let referenced_ids: HashSet<BlobId> = referenced.keys().copied().collect();
    let plan = plan_packs(&index, &referenced_ids, &sizes, max_unused_percent);
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
    let moved = repack(context, &plan.repack, &index, &referenced_ids).await?;
    // Each partition gets the blobs its scopes name, where they now are.
    let mut by_partition: BTreeMap<&str, Vec<IndexEntry>> = BTreeMap::new();
    for (id, partitions) in &referenced {
        let Some(entry) = moved.get(id).copied().or_else(|| {
            index.get(id).map(|(pack, entry)| IndexEntry { pack: *pack, entry: *entry })
        }) else {
            continue;
        };
        for partition in partitions {
            by_partition.entry(partition.as_str()).or_default().push(entry);
        }
    }
    let name = format!("prune-{}", ulid::Ulid::new().to_string().to_lowercase());
    for (partition, mut entries) in by_partition {
        entries.sort_by_key(|entry| entry.entry.id);
        write_index_files(repository.store.as_ref(), &repository.key, partition, &name, &entries)
            .await?;
    }
    delete_all(repository, index_files).await?;
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

/// Every pack in the repository with its size, as listed.
///
/// # Errors
/// Store errors listing `packs/`.
pub(crate) async fn pack_sizes<C: FromIterator<(PackId, u64)> + Default + Extend<(PackId, u64)>>(
    repository: &Repository,
) -> Result<C, TaskError> {
    Ok(repository
        .store
        .list(Some(&Path::from(PACKS_DIR)))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(PackId::from_hex).map(|pack| (pack, meta.size)))
        })
        .try_collect()
        .await
        .map_err(RepositoryError::store(PACKS_DIR))?)
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

/// Blobs the `manifests` use, each with the index partitions whose scopes name it. Every run
/// is read once (runs are shared between backups), a chunk at a time.
pub(crate) async fn referenced_blobs(
    repository: &Repository,
    manifests: &[Manifest],
) -> Result<HashMap<BlobId, Vec<String>>, TaskError> {
    let mut referenced: HashMap<BlobId, Vec<String>> = HashMap::new();
    let mut read: HashSet<(String, String)> = HashSet::new();
    for manifest in manifests {
        for list in &manifest.scopes {
            let partition = list.partition();
            for run in &list.runs {
                let identity = serde_json::to_string(&run.chunks).unwrap_or_default();
                if !read.insert((partition.clone(), identity)) {
                    continue;
                }
                let mut cursor = RunCursor::new(repository, run, "");
                while let Some(item) = cursor.next().await? {
                    let ListItem::Object(entry) = item else { continue };
                    for id in entry.blobs {
                        let partitions = referenced.entry(id).or_default();
                        if !partitions.contains(&partition) {
                            partitions.push(partition.clone());
                        }
                    }
                }
            }
        }
    }
    Ok(referenced)
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
