//! Offline checks of a restored QuestDB root (`questdb-checkpoint.md` §2–4): the checkpoint
//! (`.checkpoint/db/`, or `snapshot/db/` before 8.1.1) is complete — each of its tables has
//! `_meta`, `_txn` and `_cv` and its data directory under `db/` — every table directory under
//! `db/` has those files, and recovery is armed: `_restore` next to `.checkpoint/`, or for a
//! legacy snapshot a `cairo.snapshot.instance.id` in `conf/server.conf` that differs from the
//! snapshot's (both non-empty), without which QuestDB before 8.1.0 ignores the snapshot.

use std::path::Path;

use crate::questdb::recovery::{
    decode_questdb_string, property, INSTANCE_ID_KEY, SERVER_CONF, SNAPSHOT_META,
};

/// The files QuestDB needs in every table directory (and its checkpoint copy).
const TABLE_FILES: [&str; 3] = ["_meta", "_txn", "_cv"];

/// Checks the root; returns what passed.
///
/// # Errors
/// The first failure, naming the table and the file.
pub fn check_root(root: &Path) -> Result<Vec<String>, String> {
    let mut checks = Vec::new();
    let tables = table_dirs(&root.join("db"))?;
    if tables.is_empty() {
        return Err("no table directory under `db/`: the backup holds no QuestDB data".to_string());
    }
    for table in &tables {
        require_files(&root.join("db").join(table), &format!("db/{table}"))?;
    }
    checks.push(format!("{} tables under db/ each have _meta, _txn, _cv", tables.len()));
    let checkpoint = [".checkpoint/db", "snapshot/db"]
        .into_iter()
        .find(|dir| root.join(dir).is_dir())
        .ok_or_else(|| {
            "no checkpoint in the backup (neither `.checkpoint/db/` nor `snapshot/db/`): it was copied outside \
             checkpoint mode, so QuestDB has nothing consistent to recover from"
                .to_string()
        })?;
    let checkpointed = table_dirs(&root.join(checkpoint))?;
    for table in &checkpointed {
        require_files(&root.join(checkpoint).join(table), &format!("{checkpoint}/{table}"))?;
        if !root.join("db").join(table).is_dir() {
            return Err(format!(
                "table `{table}` is in the checkpoint (`{checkpoint}/`) but its data directory `db/{table}` is missing"
            ));
        }
    }
    checks.push(format!(
        "checkpoint `{checkpoint}/` complete: {} tables, each with _meta, _txn, _cv and its data under db/",
        checkpointed.len()
    ));
    checks.push(if checkpoint == ".checkpoint/db" {
        restore_file_armed(root)?
    } else {
        instance_id_armed(root)?
    });
    Ok(checks)
}

fn restore_file_armed(root: &Path) -> Result<String, String> {
    if !root.join("_restore").is_file() {
        return Err("the `_restore` trigger is missing: QuestDB would start without recovering from the checkpoint".to_string());
    }
    Ok("`_restore` trigger present".to_string())
}

/// QuestDB before 8.1.0 recovers from `snapshot/` only when both ids are set and differ.
fn instance_id_armed(root: &Path) -> Result<String, String> {
    let meta = std::fs::read(root.join(SNAPSHOT_META))
        .map_err(|error| format!("`{SNAPSHOT_META}` cannot be read ({error}): QuestDB would not recover from the snapshot"))?;
    let stored = decode_questdb_string(&meta).unwrap_or_default();
    let conf = std::fs::read_to_string(root.join(SERVER_CONF)).unwrap_or_default();
    let current = property(&conf, INSTANCE_ID_KEY).unwrap_or_default();
    if stored.is_empty() || current.is_empty() || stored == current {
        return Err(format!(
            "recovery from the legacy snapshot is not armed: `{INSTANCE_ID_KEY}` is `{current}` in `{SERVER_CONF}` and \
             `{stored}` in the snapshot; QuestDB before 8.1.0 recovers only when both are set and differ"
        ));
    }
    Ok(format!(
        "legacy snapshot armed: `{INSTANCE_ID_KEY}={current}` in `{SERVER_CONF}` differs from the snapshot's `{stored}`"
    ))
}

fn table_dirs(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot list `{}`: {error}", dir.display()))?;
    let mut tables = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot list `{}`: {error}", dir.display()))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            tables.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    tables.sort();
    Ok(tables)
}

fn require_files(dir: &Path, shown: &str) -> Result<(), String> {
    for file in TABLE_FILES {
        if !dir.join(file).is_file() {
            return Err(format!("`{shown}/{file}` is missing: QuestDB cannot open that table"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::questdb::recovery::encode_questdb_string;

    /// A root with table `trades` complete under `db/` and in the checkpoint directory `dir`.
    fn root(dir: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for base in ["db", dir] {
            let table = root.path().join(base).join("trades");
            std::fs::create_dir_all(&table).unwrap();
            for file in TABLE_FILES {
                std::fs::write(table.join(file), b"x").unwrap();
            }
        }
        root
    }

    fn legacy(stored: &str, current: &str) -> tempfile::TempDir {
        let root = root("snapshot/db");
        std::fs::write(root.path().join(SNAPSHOT_META), encode_questdb_string(stored)).unwrap();
        std::fs::create_dir_all(root.path().join("conf")).unwrap();
        let conf = format!("{INSTANCE_ID_KEY}={current}\n");
        std::fs::write(root.path().join(SERVER_CONF), conf).unwrap();
        root
    }

    #[test]
    fn test_a_restored_root_passes_only_when_complete_and_armed() {
        let armed = root(".checkpoint/db");
        std::fs::write(armed.path().join("_restore"), b"").unwrap();
        let unarmed = root(".checkpoint/db");
        let torn = root(".checkpoint/db");
        std::fs::write(torn.path().join("_restore"), b"").unwrap();
        std::fs::remove_file(torn.path().join("db/trades/_cv")).unwrap();
        let orphan = root(".checkpoint/db");
        std::fs::write(orphan.path().join("_restore"), b"").unwrap();
        std::fs::create_dir_all(orphan.path().join(".checkpoint/db/quotes")).unwrap();
        for file in TABLE_FILES {
            std::fs::write(orphan.path().join(".checkpoint/db/quotes").join(file), b"x").unwrap();
        }
        let live_copy = root(".checkpoint/db");
        std::fs::remove_dir_all(live_copy.path().join(".checkpoint")).unwrap();
        let cases: Vec<(&str, &tempfile::TempDir, Result<&str, &str>)> = vec![
            ("checkpoint and _restore", &armed, Ok("`_restore` trigger present")),
            ("no _restore", &unarmed, Err("`_restore` trigger is missing")),
            ("a table file missing", &torn, Err("`db/trades/_cv` is missing")),
            ("checkpointed table without data", &orphan, Err("`db/quotes` is missing")),
            ("copied outside checkpoint mode", &live_copy, Err("no checkpoint in the backup")),
        ];
        let legacy_armed = legacy("bk-source", "bk-restore-01M9");
        let legacy_same = legacy("bk-source", "bk-source");
        let legacy_cases: Vec<(&str, &tempfile::TempDir, Result<&str, &str>)> = vec![
            ("legacy, ids differ", &legacy_armed, Ok("legacy snapshot armed")),
            ("legacy, same id", &legacy_same, Err("not armed")),
        ];
        for (case, root, expected) in cases.into_iter().chain(legacy_cases) {
            match (check_root(root.path()), expected) {
                (Ok(checks), Ok(text)) => {
                    assert!(checks.iter().any(|check| check.contains(text)), "{case}: {checks:?}")
                }
                (Err(error), Err(text)) => assert!(error.contains(text), "{case}: {error}"),
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }
}
