//! `btrfs`: a read-only snapshot of the store's subvolume, atomic, in `<scratch>/<name>`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::{arg, run};

/// btrfs's magic in `statfs`'s `f_type`.
const BTRFS_SUPER_MAGIC: u64 = 0x9123_683E;
/// The inode number of every subvolume's root directory.
const SUBVOLUME_ROOT_INODE: u64 = 256;

/// Why `root` cannot be snapshotted with btrfs, if it cannot.
pub fn unusable(root: &Path) -> Option<String> {
    let on_btrfs = rustix::fs::statfs(root).map(|stat| stat.f_type as u64 == BTRFS_SUPER_MAGIC);
    match (on_btrfs, std::fs::metadata(root)) {
        (Err(error), _) => Some(format!("cannot read the filesystem of `{}`: {error}", root.display())),
        (Ok(false), _) => Some(format!("`{}` is not on btrfs", root.display())),
        (_, Err(error)) => Some(format!("cannot read `{}`: {error}", root.display())),
        (_, Ok(meta)) if meta.ino() != SUBVOLUME_ROOT_INODE => Some(format!(
            "`{}` is on btrfs but is not a subvolume root: a btrfs snapshot takes a whole subvolume; make the store's \
             directory one (`btrfs subvolume create`, then move the data in) or use method \"reflink\"",
            root.display()
        )),
        _ => None,
    }
}

/// Why a snapshot of `root` is unsafe for a database that renames files into place without
/// fsync (InfluxDB 3), if it is: the filesystem is not mounted with `flushoncommit`. Without it
/// a snapshot holds what a power loss would leave: files renamed into place moments before can
/// be there without their data (measured on a loop btrfs, a writer doing write-then-rename every
/// few milliseconds: 525 short files across 20 snapshots, 246 with a `syncfs` first, 0 with
/// `flushoncommit`). QuestDB is not exposed (its checkpoint syncs, and recovery rolls back what
/// came after). `None` also when `root` is not on btrfs at all: [`take`] says why then.
pub async fn unsafe_for_unsynced_writers(root: &Path, timeout: Duration) -> Option<String> {
    if unusable(root).is_some() {
        return None;
    }
    let options =
        run("findmnt", &["-n", "-o", "OPTIONS", "--target", arg(root).ok()?], &[], timeout).await;
    let flushes = options.is_ok_and(|options| {
        options.stdout.trim().split(',').any(|option| option == "flushoncommit")
    });
    (!flushes).then(|| {
        format!(
            "the btrfs filesystem of `{}` is not mounted with `flushoncommit`: without it a snapshot can hold files \
             InfluxDB renamed into place moments before without their data (InfluxDB 3 does not fsync), as a power loss \
             would; mount it with `-o flushoncommit` (add it to /etc/fstab)",
            root.display()
        )
    })
}

/// Snapshots `root` read-only into `<scratch>/<name>` (replacing one an earlier attempt left).
///
/// # Errors
/// `root` is not a subvolume root, or `btrfs` failed (scratch on another filesystem).
pub async fn take(
    root: &Path,
    scratch: &Path,
    name: &str,
    timeout: Duration,
) -> Result<PathBuf, String> {
    if let Some(reason) = unusable(root) {
        return Err(reason);
    }
    let target = scratch.join(name);
    delete(&target, timeout).await?;
    run("btrfs", &["subvolume", "snapshot", "-r", arg(root)?, arg(&target)?], &[], timeout)
        .await
        .map_err(|error| {
        format!(
            "{error} (is scratch `{}` on the same btrfs filesystem as the store?)",
            scratch.display()
        )
    })?;
    Ok(target)
}

/// Deletes the snapshot at `target`; nothing to do when it is gone.
///
/// # Errors
/// `btrfs subvolume delete` failed.
pub async fn delete(target: &Path, timeout: Duration) -> Result<(), String> {
    if !target.exists() {
        return Ok(());
    }
    run("btrfs", &["subvolume", "delete", arg(target)?], &[], timeout).await.map(|_| ())
}
