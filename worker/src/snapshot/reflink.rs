//! `reflink`: a copy-on-write clone of the store's tree (`cp -a --reflink=always`, XFS with
//! reflink and btrfs), in `<scratch>/<name>`. Each file is cloned at its own instant, so the
//! tree as a whole is not: only QuestDB's checkpoint makes it consistent.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::{arg, run};

/// Why `root` cannot be cloned into `scratch`, if it cannot be known before trying.
pub fn unusable(root: &Path, scratch: &Path) -> Option<String> {
    let device = |path: &Path| std::fs::metadata(path).map(|meta| meta.dev());
    match (device(root), device(scratch)) {
        (Ok(root_device), Ok(scratch_device)) if root_device != scratch_device => Some(format!(
            "scratch `{}` is on another filesystem than the store `{}`: a reflink clone stays on one filesystem",
            scratch.display(),
            root.display()
        )),
        (Err(error), _) => Some(format!("cannot read `{}`: {error}", root.display())),
        (_, Err(error)) => Some(format!("cannot read scratch `{}`: {error}", scratch.display())),
        _ => None,
    }
}

/// Clones `root` into `<scratch>/<name>` (replacing one an earlier attempt left).
///
/// # Errors
/// Another filesystem, or the filesystem cannot clone (`cp` says `Operation not supported`).
pub async fn take(
    root: &Path,
    scratch: &Path,
    name: &str,
    timeout: Duration,
) -> Result<PathBuf, String> {
    if let Some(reason) = unusable(root, scratch) {
        return Err(reason);
    }
    let target = scratch.join(name);
    delete(&target).await?;
    tokio::fs::create_dir(&target)
        .await
        .map_err(|error| format!("cannot create `{}`: {error}", target.display()))?;
    let from = format!("{}/.", arg(root)?);
    let cloned = run("cp", &["-a", "--reflink=always", &from, arg(&target)?], &[], timeout).await;
    if let Err(error) = cloned {
        let _ = delete(&target).await;
        return Err(format!(
            "{error} (does the filesystem support reflinks? XFS needs `mkfs.xfs -m reflink=1`)"
        ));
    }
    Ok(target)
}

/// Deletes the clone; nothing to do when it is gone.
///
/// # Errors
/// It could not be removed.
pub async fn delete(target: &Path) -> Result<(), String> {
    match tokio::fs::remove_dir_all(target).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("cannot delete the clone `{}`: {error}", target.display())),
    }
}
