//! What InfluxDB 3 needs to restart from a tree without silently losing data, checked on a
//! restored (or copied) tree: per node, the WAL files after the newest snapshot's
//! `wal_file_sequence_number` are contiguous and every parquet file the manifests name (minus
//! `removed_files`) exists; the catalog's logs after its image are contiguous and the catalog is
//! at least as new as every snapshot.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

/// Every violated invariant, described (empty: the tree is restartable).
///
/// # Errors
/// IO errors reading the tree.
pub fn check_tree(
    root: &Path,
    nodes: &[String],
    catalog_prefix: &str,
) -> std::io::Result<Vec<String>> {
    let mut violations = Vec::new();
    let mut required_catalog = 0;
    for node in nodes {
        let (node_violations, node_required) = check_node(root, node)?;
        violations.extend(node_violations);
        required_catalog = required_catalog.max(node_required);
    }
    let catalog_dir = root.join(catalog_prefix).join("catalog/v3");
    let image = fs::read(catalog_dir.join("snapshot")).ok();
    let image_sequence = image
        .as_ref()
        .filter(|bytes| bytes.len() >= 40)
        .map(|bytes| u64::from_le_bytes(bytes[32..40].try_into().unwrap_or_default()))
        .unwrap_or(0);
    let mut logs = numbers(&catalog_dir.join("logs"), ".catalog")?;
    logs.sort_unstable();
    if let Some((expected, found)) = first_gap(image_sequence, &logs) {
        violations.push(format!("catalog: log {expected} missing (next is {found})"));
    }
    let catalog_sequence = logs.last().copied().unwrap_or(0).max(image_sequence);
    if catalog_sequence < required_catalog {
        violations.push(format!("catalog sequence {catalog_sequence} is older than a snapshot needs ({required_catalog})"));
    }
    Ok(violations)
}

/// A node's violations and the newest catalog sequence its snapshots need.
fn check_node(root: &Path, node: &str) -> std::io::Result<(Vec<String>, u64)> {
    let mut violations = Vec::new();
    let snapshots_dir = root.join(node).join("snapshots");
    let mut manifests: Vec<Value> = Vec::new();
    if snapshots_dir.is_dir() {
        for entry in fs::read_dir(&snapshots_dir)? {
            let bytes = fs::read(entry?.path())?;
            manifests.push(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?);
        }
    }
    let newest = manifests
        .iter()
        .max_by_key(|manifest| manifest["snapshot_sequence_number"].as_u64().unwrap_or(0));
    let covered =
        newest.and_then(|manifest| manifest["wal_file_sequence_number"].as_u64()).unwrap_or(0);
    let mut wal = numbers(&root.join(node).join("wal"), ".wal")?;
    wal.sort_unstable();
    if let Some((expected, found)) = first_gap(covered, &wal) {
        violations.push(format!(
            "{node}: WAL {expected}..={} missing after the snapshot covering WAL {covered}",
            found - 1
        ));
    }
    let removed: HashSet<String> =
        manifests.iter().flat_map(|manifest| paths(&manifest["removed_files"])).collect();
    for path in manifests.iter().flat_map(|manifest| paths(&manifest["databases"])) {
        if !removed.contains(&path) && !root.join(&path).is_file() {
            violations.push(format!("{node}: parquet `{path}` named by a snapshot is missing"));
        }
    }
    let required = manifests
        .iter()
        .filter_map(|manifest| manifest["catalog_sequence_number"].as_u64())
        .max()
        .unwrap_or(0);
    Ok((violations, required))
}

/// In sorted `sequences`, the first number after `after` that does not follow its predecessor:
/// `(expected, found)`.
fn first_gap(after: u64, sequences: &[u64]) -> Option<(u64, u64)> {
    let following = sequences.iter().copied().filter(|sequence| *sequence > after);
    (after + 1..).zip(following).find(|(expected, found)| expected != found)
}

fn paths(databases: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    for database in databases.as_array().into_iter().flatten() {
        for table in database[1]["tables"].as_array().into_iter().flatten() {
            for file in table[1].as_array().into_iter().flatten() {
                paths.extend(file["path"].as_str().map(str::to_string));
            }
        }
    }
    paths
}

fn numbers(dir: &Path, suffix: &str) -> std::io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    if dir.is_dir() {
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            numbers.extend(name.strip_suffix(suffix).and_then(|stem| stem.parse::<u64>().ok()));
        }
    }
    Ok(numbers)
}
