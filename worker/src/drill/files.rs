//! Reading a restored tree on local disk: every file under a directory with its store key, and
//! what the tree takes.

use std::path::{Path, PathBuf};

/// Every file under `root`, as (`key` relative to `root` with `/`, path), depth first, each
/// directory in name order.
///
/// # Errors
/// IO errors, naming the directory.
pub fn files_under(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|error| format!("cannot list `{}`: {error}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else { continue };
        let parts: Vec<_> =
            relative.components().map(|part| part.as_os_str().to_string_lossy()).collect();
        files.push((parts.join("/"), entry.into_path()));
    }
    Ok(files)
}

/// Bytes of the files under `root` (what a drill's scratch holds).
pub fn bytes_under(root: &Path) -> u64 {
    files_under(root)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Reads a whole file, naming it on error.
///
/// # Errors
/// IO errors.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))
}
