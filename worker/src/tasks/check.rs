//! `bkctl repo check`: is the repository sound, whatever its backups? restic's `check`, kopia's
//! `snapshot verify`, over bk's format.
//!
//! 1. Every index file reads (decrypts, parses).
//! 2. Every pack's header reads (two ranged reads from its end, then decrypted), and every
//!    index entry of the pack is in it where the index says.
//! 3. Every pack an index names exists.
//! 4. Every backup's manifest reads, and every blob its object lists name is indexed, in a
//!    pack that exists.
//! 5. With `read_data_percent`, that share of the packs (chosen by pack id, so repeated checks
//!    cover different packs as ids change) is read whole and every blob in it decrypted and
//!    re-hashed.
//!
//! Problems fail the job, each named. Packs no index lists (a backup that died before writing
//! its index, a prune cut short) are reported but are not a problem: they hold nothing a backup
//! needs, and the next prune deletes them.

use std::collections::{BTreeMap, HashMap, HashSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use futures::{stream, StreamExt};
use object_store::ObjectStoreExt;

use super::context::TaskContext;
use super::prune::{pack_sizes, referenced_blobs};
use super::verify::{verify_pack, Problems, PACKS_IN_FLIGHT};
use crate::error::TaskError;
use crate::repository::crypto::BlobId;
use crate::repository::index::{index_path, list_index_files, list_partitions, read_index};
use crate::repository::layout::{pack_path, BACKUPS_DIR};
use crate::repository::list_paths;
use crate::repository::pack::{decode_header, PackEntry, PackId};
use crate::repository::reader::read_manifest;

/// Checks the repository; problems in the report fail the job.
///
/// # Errors
/// Store errors that leave nothing to report (the packs cannot be listed).
pub async fn check_repository(
    context: &TaskContext,
    read_data_percent: u32,
) -> Result<TaskReport, TaskError> {
    let mut problems = Problems::default();
    let indexed = read_indexes(context, &mut problems).await?;
    let packs: BTreeMap<PackId, u64> = pack_sizes(&context.repository).await?;
    let unindexed = check_packs(context, &indexed, &packs, &mut problems).await;
    let backups = check_backups(context, &indexed, &packs, &mut problems).await?;
    let unreferenced = packs
        .keys()
        .filter(|pack| {
            indexed.by_pack.get(*pack).is_none_or(|entries| {
                !entries.iter().any(|entry| backups.referenced.contains(&entry.id))
            })
        })
        .count();
    let read = read_data(context, &indexed, &packs, read_data_percent, &mut problems).await?;
    let total: u64 = packs.values().sum();
    let mut report = problems.into_report(packs.len() as u64, total);
    report.events.push(format!(
        "{} index file(s), {} blob(s) indexed; {} pack(s), {total} bytes, every header read; {} \
         backup(s), {} blob(s) they name; read {read_data_percent}% of the data: {} pack(s), {} bytes, every blob \
         decrypted and hashed",
        indexed.num_files,
        indexed.index.len(),
        packs.len(),
        backups.num_backups,
        backups.referenced.len(),
        read.0,
        read.1
    ));
    if unindexed.0 > 0 {
        report.warnings.push(format!(
            "{} pack(s) ({} bytes) are in no index: left by a backup or prune that stopped before writing its index; \
             nothing needs them, the next prune deletes them",
            unindexed.0, unindexed.1
        ));
    }
    if unreferenced > unindexed.0 {
        report.events.push(format!(
            "{} indexed pack(s) hold no blob a backup uses (forgotten backups): the next prune deletes them",
            unreferenced - unindexed.0
        ));
    }
    Ok(report)
}

/// What the repository's index files say, read whole.
struct Indexed {
    /// Where each blob is.
    index: HashMap<BlobId, (PackId, PackEntry)>,
    /// The blobs of each pack.
    by_pack: HashMap<PackId, Vec<PackEntry>>,
    /// Index files listed (read or not).
    num_files: usize,
}

/// Step 1: every index file reads; an unreadable one is a problem.
async fn read_indexes(
    context: &TaskContext,
    problems: &mut Problems,
) -> Result<Indexed, TaskError> {
    let repository = &context.repository;
    let store = repository.store.as_ref();
    let mut index: HashMap<BlobId, (PackId, PackEntry)> = HashMap::new();
    let mut num_files = 0;
    for partition in list_partitions(store).await? {
        for name in list_index_files(store, &partition).await? {
            let path = index_path(&partition, &name);
            num_files += 1;
            match read_index(store, &repository.key, &path).await {
                Ok(entries) => {
                    for entry in entries {
                        index.insert(entry.entry.id, (entry.pack, entry.entry));
                    }
                }
                Err(error) => problems.push(format!("index file `{path}` cannot be read: {error}")),
            }
        }
    }
    let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (pack, entry) in index.values() {
        by_pack.entry(*pack).or_default().push(*entry);
    }
    Ok(Indexed { index, by_pack, num_files })
}

/// Steps 2 and 3: every pack's header reads and holds what the index places in it, and every
/// pack the index names exists. Returns the packs in no index (count, bytes).
async fn check_packs(
    context: &TaskContext,
    indexed: &Indexed,
    packs: &BTreeMap<PackId, u64>,
    problems: &mut Problems,
) -> (usize, u64) {
    let mut unindexed = (0usize, 0u64);
    for (pack, size) in packs {
        let expected = indexed.by_pack.get(pack).map(Vec::as_slice).unwrap_or_default();
        if expected.is_empty() {
            unindexed.0 += 1;
            unindexed.1 += size;
        }
        match read_header(context, *pack, *size).await {
            Ok(entries) => {
                let held: HashMap<BlobId, &PackEntry> =
                    entries.iter().map(|entry| (entry.id, entry)).collect();
                if let Some(wanted) =
                    expected.iter().find(|entry| held.get(&entry.id) != Some(entry))
                {
                    problems.push(format!(
                        "pack `{}` does not hold blob {} where the index says (its header lists {} blobs)",
                        pack_path(*pack),
                        wanted.id,
                        entries.len()
                    ));
                }
            }
            Err(reason) => {
                problems.push(format!("pack `{}` is unreadable: {reason}", pack_path(*pack)))
            }
        }
    }
    for (pack, entries) in &indexed.by_pack {
        if !packs.contains_key(pack) {
            problems.push(format!(
                "pack `{}` is missing: the index places {} blob(s) in it",
                pack_path(*pack),
                entries.len()
            ));
        }
    }
    unindexed
}

/// The backups found and every blob they name.
struct Backups {
    num_backups: usize,
    referenced: HashSet<BlobId>,
}

/// Step 4: every backup's manifest and object lists read, and every blob they name is indexed
/// in a pack that exists.
async fn check_backups(
    context: &TaskContext,
    indexed: &Indexed,
    packs: &BTreeMap<PackId, u64>,
    problems: &mut Problems,
) -> Result<Backups, TaskError> {
    let repository = &context.repository;
    let mut found = Backups { num_backups: 0, referenced: HashSet::new() };
    for key in list_paths(repository.store.as_ref(), BACKUPS_DIR).await? {
        let Some(backup_id) = key
            .filename()
            .filter(|name| *name == "manifest")
            .and_then(|_| key.parts().nth(1))
            .and_then(|part| part.as_ref().parse::<BackupId>().ok())
        else {
            continue;
        };
        found.num_backups += 1;
        let manifest = match read_manifest(repository, backup_id).await {
            Ok(manifest) => manifest,
            Err(error) => {
                problems.push(format!("backup {backup_id}: its manifest cannot be read: {error}"));
                continue;
            }
        };
        let blobs = match referenced_blobs(repository, std::slice::from_ref(&manifest)).await {
            Ok(blobs) => blobs,
            Err(error) => {
                problems
                    .push(format!("backup {backup_id}: its object lists cannot be read: {error}"));
                continue;
            }
        };
        let unindexed: Vec<&BlobId> =
            blobs.keys().filter(|id| !indexed.index.contains_key(*id)).collect();
        let lost: Vec<&BlobId> = blobs
            .keys()
            .filter(|id| indexed.index.get(*id).is_some_and(|(pack, _)| !packs.contains_key(pack)))
            .collect();
        if let Some(first) = unindexed.first() {
            problems.push(format!(
                "backup {backup_id} names {} blob(s) no index lists (e.g. {first}): a restore of it fails",
                unindexed.len()
            ));
        }
        if let Some(first) = lost.first() {
            problems.push(format!(
                "backup {backup_id} needs {} blob(s) in missing packs (e.g. {first}): a restore of it fails",
                lost.len()
            ));
        }
        found.referenced.extend(blobs.into_keys());
    }
    Ok(found)
}

/// Step 5: the chosen share of the packs read whole, every blob decrypted and re-hashed, a few
/// packs at a time (one after the other, a check over S3 was mostly waiting). Returns what was
/// read (packs, bytes).
///
/// # Errors
/// The store failing while a pack is read: the check could not look, which is not a finding.
async fn read_data(
    context: &TaskContext,
    indexed: &Indexed,
    packs: &BTreeMap<PackId, u64>,
    read_data_percent: u32,
    problems: &mut Problems,
) -> Result<(usize, u64), TaskError> {
    let chosen_packs: Vec<(PackId, u64)> = packs
        .iter()
        .filter(|(pack, _)| chosen(pack, read_data_percent))
        .map(|(pack, size)| (*pack, *size))
        .collect();
    let reads: Vec<_> = chosen_packs
        .iter()
        .map(|(pack, _)| {
            let expected = indexed.by_pack.get(pack).map(Vec::as_slice).unwrap_or_default();
            verify_pack(&context.repository, *pack, expected)
        })
        .collect();
    let found: Vec<_> = stream::iter(reads).buffered(PACKS_IN_FLIGHT).collect().await;
    for pack_problems in found {
        for (_, problem) in pack_problems? {
            problems.push(problem);
        }
    }
    Ok((chosen_packs.len(), chosen_packs.iter().map(|(_, size)| size).sum()))
}

/// Whether `--read-data PERCENT` reads this pack: by its id, so the choice is spread evenly.
fn chosen(pack: &PackId, percent: u32) -> bool {
    let hex = pack.to_hex();
    let bucket = u32::from_str_radix(hex.get(..4).unwrap_or("0"), 16).unwrap_or(0) % 100;
    bucket < percent.min(100)
}

/// A pack's header from two ranged reads at its end: the 4-byte trailer, then the header.
async fn read_header(
    context: &TaskContext,
    pack: PackId,
    size: u64,
) -> Result<Vec<PackEntry>, String> {
    let store = context.repository.store.as_ref();
    let path = pack_path(pack);
    if size < 4 {
        return Err(format!("{size} bytes, shorter than its trailer"));
    }
    let trailer =
        store.get_range(&path, size - 4..size).await.map_err(|error| error.to_string())?;
    let length = u64::from(u32::from_le_bytes(
        trailer.as_ref().try_into().map_err(|_| "its trailer does not read".to_string())?,
    ));
    if length > size - 4 {
        return Err(format!("its header length {length} exceeds the pack ({size} bytes)"));
    }
    let sealed = store
        .get_range(&path, size - 4 - length..size - 4)
        .await
        .map_err(|error| error.to_string())?;
    let plaintext = context
        .repository
        .key
        .open(&pack.header_context(), &sealed)
        .map_err(|error| format!("its header does not open ({error})"))?;
    decode_header(&plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_data_chooses_about_the_share_asked_for() {
        let packs: Vec<PackId> = (0..2000).map(|_| PackId::generate().unwrap()).collect();
        for (percent, low, high) in [(0, 0, 0), (10, 120, 280), (50, 850, 1150), (100, 2000, 2000)]
        {
            let count = packs.iter().filter(|pack| chosen(pack, percent)).count();
            assert!((low..=high).contains(&count), "{percent}%: {count} of 2000");
        }
    }
}
