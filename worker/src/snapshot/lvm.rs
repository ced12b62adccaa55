//! `lvm`: a thin snapshot of the logical volume the store is on (LVM suspends the device, so
//! the filesystem is frozen and clean for that instant), mounted read-only at
//! `<scratch>/<name>`. Thin only: a thin snapshot needs no size, so none has to be guessed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::{arg, run};

/// The volume and mount a store is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// `vg/lv`.
    pub name: String,
    /// Where its filesystem is mounted.
    pub mount_point: PathBuf,
    /// Its filesystem type (mount options differ).
    pub fstype: String,
}

/// Finds the thin logical volume `root` is on.
///
/// # Errors
/// `root` is not on a logical volume, or not on a thin one.
pub async fn volume_of(root: &Path, timeout: Duration) -> Result<Volume, String> {
    let found =
        run("findmnt", &["-n", "-o", "SOURCE,TARGET,FSTYPE", "--target", arg(root)?], &[], timeout)
            .await?;
    let fields: Vec<&str> = found.stdout.split_whitespace().collect();
    let [device, mount_point, fstype] = fields[..] else {
        return Err(format!(
            "cannot tell the device `{}` is on (findmnt said `{}`)",
            root.display(),
            found.stdout.trim()
        ));
    };
    let listed = run(
        "lvs",
        &["--noheadings", "--separator", "|", "-o", "vg_name,lv_name,pool_lv", device],
        &[],
        timeout,
    )
    .await
    .map_err(|error| {
        format!("`{}` is on {device}, which is not an LVM logical volume ({error})", root.display())
    })?;
    let parts: Vec<&str> = listed.stdout.trim().split('|').map(str::trim).collect();
    let [vg, lv, pool] = parts[..] else {
        return Err(format!("cannot read `lvs` for {device}: `{}`", listed.stdout.trim()));
    };
    if pool.is_empty() {
        return Err(format!(
            "`{}` is on {vg}/{lv}, which is not a thin volume: bk takes thin snapshots only (a classic snapshot needs a \
             size guessed in advance and fails when it fills); use a thin pool, or method \"command\"",
            root.display()
        ));
    }
    Ok(Volume {
        name: format!("{vg}/{lv}"),
        mount_point: PathBuf::from(mount_point),
        fstype: fstype.to_string(),
    })
}

/// Snapshots the volume `root` is on as `<vg>/<name>` and mounts it read-only at
/// `<scratch>/<name>`. Returns the store's directory inside the mount and the snapshot volume.
///
/// # Errors
/// Not on a thin volume; `lvcreate` or `mount` failed.
pub async fn take(
    root: &Path,
    scratch: &Path,
    name: &str,
    timeout: Duration,
) -> Result<(PathBuf, String), String> {
    let volume = volume_of(root, timeout).await?;
    let vg = volume.name.split('/').next().unwrap_or_default();
    let snapshot = format!("{vg}/{name}");
    let mount = scratch.join(name);
    delete(&mount, &snapshot, timeout).await?;
    run(
        "lvcreate",
        &["--snapshot", "--setactivationskip", "n", "--name", name, &volume.name],
        &[],
        timeout,
    )
    .await?;
    tokio::fs::create_dir_all(&mount)
        .await
        .map_err(|error| format!("cannot create `{}`: {error}", mount.display()))?;
    // A snapshot of a mounted filesystem carries its UUID and, for a journal, a log to replay:
    // mount it read-only without either.
    let options = match volume.fstype.as_str() {
        "xfs" => "ro,nouuid,norecovery",
        "ext4" | "ext3" => "ro,noload",
        _ => "ro",
    };
    let device = format!("/dev/{snapshot}");
    if let Err(error) = run("mount", &["-o", options, &device, arg(&mount)?], &[], timeout).await {
        let _ = delete(&mount, &snapshot, timeout).await;
        return Err(error);
    }
    let inside = root.strip_prefix(&volume.mount_point).unwrap_or(Path::new(""));
    Ok((mount.join(inside), snapshot))
}

/// Unmounts and removes the snapshot; nothing to do for what is already gone.
///
/// # Errors
/// `umount` or `lvremove` failed.
pub async fn delete(mount: &Path, snapshot: &str, timeout: Duration) -> Result<(), String> {
    if is_mounted(mount) {
        run("umount", &[arg(mount)?], &[], timeout).await?;
    }
    if run("lvs", &[snapshot], &[], timeout).await.is_ok() {
        run("lvremove", &["-y", snapshot], &[], timeout).await?;
    }
    match tokio::fs::remove_dir(mount).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove the mount point `{}`: {error}", mount.display()))
        }
        _ => Ok(()),
    }
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|point| Path::new(point) == path)
}
