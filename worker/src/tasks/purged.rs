//! Was a parquet file the snapshot manifests still name deleted by InfluxDB itself?
//!
//! InfluxDB 3 never rewrites its snapshot manifests when its retention handler or a hard
//! delete removes gen1 files (`influxdb3-layout.md` §3): it deletes the files with
//! `max_time` before the cut-off, then rewrites the table's index,
//! `<node>/db-indices/<db id>/<table id>/index.info.json`, without them
//! (`table_index_cache.rs`, `purge_expired`). So a manifest naming a missing file is expected
//! only when that index no longer lists it. A file the index still lists (or a table without an
//! index: before 3.3 retention went through the manifests' `removed_files`) was deleted by
//! something else: the source is damaged and a restore would lack its rows.
//!
//! Why the index and not the catalog's retention period: the catalog is bitcode records that
//! only InfluxDB's own types decode, while the index is JSON InfluxDB writes for exactly this
//! decision, covering hard deletes (which no period explains) too.

use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::context::TaskContext;
use crate::error::TaskError;

/// What InfluxDB's table index says about a missing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The index no longer lists it: InfluxDB deleted it (retention or hard delete).
    Purged,
    /// Deleted by something other than InfluxDB; why bk thinks so.
    Damaged(String),
}

/// The index file of the table a parquet path belongs to:
/// `<node>/dbs/<db>/<table>/…` (3.6+) or `<node>/dbs/<db name>-<db>/<table name>-<table>/…`.
pub fn index_key(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    let node = parts.next()?;
    if parts.next()? != "dbs" {
        return None;
    }
    let id = |part: &str| {
        part.rsplit('-')
            .next()
            .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    let (db, table) = (id(parts.next()?)?, id(parts.next()?)?);
    Some(format!("{node}/db-indices/{db}/{table}/index.info.json"))
}

/// Whether the index JSON lists `path` among its files (objects with a `path`, as InfluxDB
/// writes them).
pub fn index_lists(index: &Value, path: &str) -> bool {
    index["files"].as_array().is_some_and(|files| {
        files.iter().any(|file| file["path"].as_str().or_else(|| file.as_str()) == Some(path))
    })
}

/// Decides for a parquet file named by a manifest and missing from the source.
///
/// # Errors
/// Store errors reading the index.
pub async fn verdict(context: &TaskContext, path: &str) -> Result<Verdict, TaskError> {
    let Some(key) = index_key(path) else {
        return Ok(Verdict::Damaged("its path names no database and table".to_string()));
    };
    let bytes = match context.source.get(&Path::from(key.as_str())).await {
        Ok(found) => found
            .bytes()
            .await
            .map_err(|source| TaskError::Source { key: key.clone(), source })?,
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(Verdict::Damaged(format!(
                "the table has no index `{key}`, so only a manifest's `removed_files` could have removed it"
            )))
        }
        Err(source) => return Err(TaskError::Source { key, source }),
    };
    let index: Value = serde_json::from_slice(&bytes).map_err(|error| {
        TaskError::Invalid(format!("InfluxDB's table index `{key}` does not parse: {error}"))
    })?;
    if index_lists(&index, path) {
        Ok(Verdict::Damaged(format!(
            "InfluxDB's table index `{key}` still lists it, so InfluxDB did not delete it (if its retention was purging \
             this table at that very moment, run the backup again)"
        )))
    } else {
        Ok(Verdict::Purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_the_index_of_a_parquet_path_is_found_for_both_path_layouts() {
        // (case, parquet path, index key)
        let cases = [
            (
                "3.6+ ids",
                "node1/dbs/3/7/2026-01-01/00-10/0000000042.parquet",
                Some("node1/db-indices/3/7/index.info.json"),
            ),
            (
                "3.0-3.5 names with ids",
                "node1/dbs/metrics-3/cpu-7/2026-01-01/00-10/0000000042.parquet",
                Some("node1/db-indices/3/7/index.info.json"),
            ),
            (
                "names with dashes",
                "n/dbs/my-db-12/my-table-4/x.parquet",
                Some("n/db-indices/12/4/index.info.json"),
            ),
            ("not under dbs/", "node1/wal/00000000001.wal", None),
            ("no ids", "node1/dbs/metrics/cpu/x.parquet", None),
        ];
        for (case, path, key) in cases {
            assert_eq!(index_key(path).as_deref(), key, "{case}");
        }
    }

    #[test]
    fn test_listed_means_the_index_still_holds_the_path() {
        let index = json!({"node_id": "node1", "db_id": 3, "table_id": 7, "files": [
            {"id": 1, "path": "node1/dbs/3/7/a.parquet", "max_time": 10},
        ]});
        assert!(index_lists(&index, "node1/dbs/3/7/a.parquet"));
        assert!(!index_lists(&index, "node1/dbs/3/7/b.parquet"));
        assert!(!index_lists(&json!({}), "node1/dbs/3/7/a.parquet"));
    }
}
