//! Hashing directory trees, to compare a source with what a backup holds or a restore wrote.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// `relative path → (size, BLAKE3 hex)` of every file under `root`.
///
/// # Errors
/// IO errors reading the tree.
pub fn hash_tree(root: &Path) -> std::io::Result<BTreeMap<String, (u64, String)>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                let bytes = fs::read(&path)?;
                let relative = path.strip_prefix(root).map_err(std::io::Error::other)?;
                let key = relative.to_string_lossy().replace('\\', "/");
                files.insert(key, (bytes.len() as u64, blake3::hash(&bytes).to_hex().to_string()));
            }
        }
    }
    Ok(files)
}

/// Copies the directory tree `from` into `to` (created as needed).
///
/// # Errors
/// IO errors.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
