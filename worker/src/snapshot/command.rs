//! `command`: the operator's own snapshot (EBS, GCE PD, Azure disk, ZFS, …) through a `create`
//! and a `delete` command. bk passes the store's directory and a snapshot name in the
//! environment and reads, from the last line `create` prints, where the store's files can be
//! read; it logs what the commands print.

use std::path::{Path, PathBuf};

use super::config::SnapshotConfig;
use super::run::{arg, run_shell};

/// Runs `create`; returns the directory it printed.
///
/// # Errors
/// The command failed, printed nothing, or printed a path that is not a directory.
pub async fn take(config: &SnapshotConfig, root: &Path, name: &str) -> Result<PathBuf, String> {
    let line = config.create.as_deref().ok_or("[snapshot] method = \"command\" needs `create`")?;
    let scratch = config.scratch.as_deref().map(arg).transpose()?.unwrap_or("");
    let env = [
        ("BK_SNAPSHOT_NAME", name),
        ("BK_SNAPSHOT_SOURCE", arg(root)?),
        ("BK_SNAPSHOT_SCRATCH", scratch),
    ];
    let output = run_shell("[snapshot] create", line, &env, config.timeout).await?;
    let printed = output.stdout.lines().rev().map(str::trim).find(|line| !line.is_empty()).ok_or_else(|| {
        "the snapshot `create` command printed nothing: its last line must be the directory where the store's files \
         can be read"
            .to_string()
    })?;
    let path = PathBuf::from(printed);
    if !path.is_absolute() || !path.is_dir() {
        return Err(format!(
            "the snapshot `create` command's last line `{printed}` is not a directory: it must print where the store's \
             files can be read"
        ));
    }
    Ok(path)
}

/// Runs `delete`.
///
/// # Errors
/// The command failed.
pub async fn delete(
    config: &SnapshotConfig,
    root: &Path,
    name: &str,
    path: Option<&Path>,
) -> Result<(), String> {
    let line = config.delete.as_deref().ok_or("[snapshot] method = \"command\" needs `delete`")?;
    let path = path.map(arg).transpose()?.unwrap_or("");
    let env = [
        ("BK_SNAPSHOT_NAME", name),
        ("BK_SNAPSHOT_SOURCE", arg(root)?),
        ("BK_SNAPSHOT_PATH", path),
    ];
    run_shell("[snapshot] delete", line, &env, config.timeout).await.map(|_| ())
}
