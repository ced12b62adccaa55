//! Reading a restored tree on local disk: every file under a directory with its store key, and
//! what the tree takes.

use std::path::{Path, PathBuf};

/// Every file under `root`, as (`key` relative to `root` with `/`, path), sorted by key.
///
/// # Errors
/// IO errors, naming the directory.
pub fn files_under(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(format!("cannot list `{}`: {error}", directory.display())),
        };
        for entry in entries {
            let entry =
                entry.map_err(|error| format!("cannot list `{}`: {error}", directory.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|error| format!("cannot stat `{}`: {error}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let Ok(relative) = path.strip_prefix(root) else { continue };
                let key = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((key, path));
            }
        }
    }
    files.sort();
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
