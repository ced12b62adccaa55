//! What a QuestDB server does with a restored root when it starts, written from the reference
//! (`shared/reference/questdb-checkpoint.md` §2.2 and §5b), independently of bk's own code so
//! a test can catch bk arming recovery the wrong way.
//!
//! - 8.1.0 and later: `_restore` in the root triggers recovery from `.checkpoint/db/` (or
//!   `snapshot/db/`); the trigger without a checkpoint directory refuses to start. Without the
//!   trigger, the instance-id rule below still applies.
//! - Before 8.1.0 there is no trigger: recovery from `snapshot/db/` runs only when the
//!   server's `cairo.snapshot.instance.id` (the `QDB_CAIRO_SNAPSHOT_INSTANCE_ID` environment
//!   variable wins over `conf/server.conf`) and the id in `snapshot/db/_snapshot` are both
//!   non-empty and differ. Recovery ends by deleting the trigger, then the checkpoint's `db/`.

use std::path::Path;

/// A version as `(major, minor, patch)`; unparsable parts read 0.
pub fn version_numbers(version: &str) -> (u64, u64, u64) {
    let mut parts = version.split(['.', '-']).map(|part| part.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// QuestDB's on-disk string: `i32` count of UTF-16 units, then the units, little-endian.
pub fn questdb_string(text: &str) -> Vec<u8> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut bytes = (units.len() as i32).to_le_bytes().to_vec();
    bytes.extend(units.iter().flat_map(|unit| unit.to_le_bytes()));
    bytes
}

fn read_questdb_string(bytes: &[u8]) -> String {
    let Some(count) = bytes.get(..4).and_then(|head| head.try_into().ok()).map(i32::from_le_bytes)
    else {
        return String::new();
    };
    let units: Vec<u16> = bytes
        .get(4..4 + 2 * count.max(0) as usize)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The server's `cairo.snapshot.instance.id`: `env` (the environment variable's value) when
/// set, else the last setting in `conf/server.conf`, else empty.
pub fn configured_instance_id(root: &Path, env: Option<&str>) -> String {
    if let Some(value) = env {
        return value.to_string();
    }
    let conf = std::fs::read_to_string(root.join("conf/server.conf")).unwrap_or_default();
    conf.lines()
        .rev()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("cairo.snapshot.instance.id")?.trim_start();
            Some(rest.strip_prefix('=')?.trim().to_string())
        })
        .unwrap_or_default()
}

/// Runs QuestDB `version`'s start-up recovery on `root`. `Ok(Some(line))`: it recovered, with
/// the log line a real server writes; `Ok(None)`: it started without recovering.
///
/// # Errors
/// The message with which a real server refuses to start.
pub fn recover_on_start(
    root: &Path,
    version: &str,
    env_instance_id: Option<&str>,
) -> Result<Option<String>, String> {
    let has_trigger_file = version_numbers(version) >= (8, 1, 0);
    let checkpoint = if !has_trigger_file {
        "snapshot"
    } else if root.join(".checkpoint").is_dir() || !root.join("snapshot").is_dir() {
        ".checkpoint"
    } else {
        "snapshot"
    };
    let db = root.join(checkpoint).join("db");
    let trigger = root.join("_restore");
    let triggered = has_trigger_file && trigger.is_file();
    if !db.is_dir() {
        if triggered {
            return Err(format!(
                "checkpoint trigger file found, but the checkpoint directory does not exist [dir={}/, trigger={}]",
                db.display(),
                trigger.display()
            ));
        }
        return Ok(None);
    }
    let meta = ["_snapshot", "_checkpoint_meta.d"]
        .iter()
        .map(|name| db.join(name))
        .find(|path| path.is_file());
    let Some(meta) = meta else {
        if triggered {
            return Err(format!(
                "checkpoint trigger file found, but the checkpoint metadata file does not exist [file={}, trigger={}]",
                db.join("_checkpoint_meta.d").display(),
                trigger.display()
            ));
        }
        return Ok(None);
    };
    let line = if triggered {
        "starting checkpoint recovery [trigger=file]".to_string()
    } else {
        let current = configured_instance_id(root, env_instance_id);
        let previous = if meta.ends_with("_snapshot") {
            read_questdb_string(&std::fs::read(&meta).map_err(|error| error.to_string())?)
        } else {
            String::new()
        };
        if current.is_empty() || previous.is_empty() || current == previous {
            return Ok(None);
        }
        format!("starting snapshot recovery [currentId=`{current}`, previousId=`{previous}`]")
    };
    if triggered {
        std::fs::remove_file(&trigger).map_err(|error| {
            format!(
                "could not remove restore trigger file. file permission issues? [file={}]: {error}",
                trigger.display()
            )
        })?;
    }
    std::fs::remove_dir_all(&db).map_err(|error| {
        format!("could not remove checkpoint dir [dir={}]: {error}", db.display())
    })?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (relative, bytes) in files {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    #[test]
    fn test_servers_recover_as_the_reference_says() {
        let conf = |id: &str| format!("cairo.snapshot.instance.id={id}\n").into_bytes();
        let snapshot = |id: &str| ("snapshot/db/_snapshot", questdb_string(id));
        let checkpoint = (".checkpoint/db/_checkpoint_meta.d", vec![1u8]);
        // (case, version, files, recovers)
        type Case = (&'static str, &'static str, Vec<(&'static str, Vec<u8>)>, bool);
        let cases: Vec<Case> = vec![
            ("9.x with the trigger", "9.0.0", vec![checkpoint.clone(), ("_restore", vec![])], true),
            ("9.x without it", "9.0.0", vec![checkpoint.clone()], false),
            ("8.0 ignores the trigger", "8.0.3", vec![snapshot("a"), ("_restore", vec![])], false),
            (
                "8.0, ids differ",
                "8.0.3",
                vec![snapshot("a"), ("conf/server.conf", conf("b"))],
                true,
            ),
            (
                "8.0, ids equal",
                "8.0.3",
                vec![snapshot("a"), ("conf/server.conf", conf("a"))],
                false,
            ),
            (
                "8.0, snapshot id empty",
                "8.0.3",
                vec![snapshot(""), ("conf/server.conf", conf("b"))],
                false,
            ),
            ("8.0, no configured id", "8.0.3", vec![snapshot("a")], false),
            (
                "9.x still honours the ids",
                "9.0.0",
                vec![snapshot("a"), ("conf/server.conf", conf("b"))],
                true,
            ),
        ];
        for (case, version, files, recovers) in cases {
            let root = root_with(&files);
            let recovered = recover_on_start(root.path(), version, None).unwrap();
            assert_eq!(recovered.is_some(), recovers, "{case}: {recovered:?}");
            let left = root.path().join("snapshot/db").is_dir()
                || root.path().join(".checkpoint/db").is_dir();
            assert_eq!(left, !recovers, "{case}: the checkpoint goes exactly when recovered");
        }
    }

    #[test]
    fn test_the_trigger_without_a_checkpoint_refuses_to_start() {
        let root = root_with(&[("_restore", vec![])]);
        let error = recover_on_start(root.path(), "9.0.0", None).unwrap_err();
        assert!(
            error.starts_with(
                "checkpoint trigger file found, but the checkpoint directory does not exist"
            ),
            "{error}"
        );
        assert_eq!(recover_on_start(root.path(), "8.0.3", None), Ok(None), "8.0 has no trigger");
    }

    #[test]
    fn test_the_environment_overrides_the_configured_id() {
        let root = root_with(&[
            ("snapshot/db/_snapshot", questdb_string("a")),
            ("conf/server.conf", b"cairo.snapshot.instance.id=b\n".to_vec()),
        ]);
        assert_eq!(recover_on_start(root.path(), "8.0.3", Some("a")), Ok(None));
    }
}
