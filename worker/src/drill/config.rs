//! The worker's `[drill]` section: where drills may restore, and how to start the database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Scratch space and start commands for restore drills. A worker without this section never
/// runs a drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// A local directory the worker may fill and wipe (it keeps `data/` and `logs/` there).
    /// Refused when it overlaps the node's store or a repository: a drill must never write
    /// where production data or backups live.
    pub scratch_dir: PathBuf,
    /// The `influxdb3` binary to start on a restored InfluxDB 3 backup; absent: offline checks
    /// only.
    #[serde(default)]
    pub influxdb3_binary: Option<PathBuf>,
    /// Extra arguments appended to bk's own `serve --object-store file --data-dir DIR
    /// --node-id N --http-bind 127.0.0.1:PORT --without-auth --disable-telemetry-upload`.
    #[serde(default)]
    pub influxdb3_args: Vec<String>,
    /// The argv that starts QuestDB in the foreground (the JVM line `questdb.sh` runs, e.g.
    /// `["java", "-p", "questdb.jar", "-m", "io.questdb/io.questdb.ServerMain"]`; `questdb.sh
    /// start` itself daemonizes and returns, which a drill reports as an early exit); bk
    /// appends `-d ROOT` and sets `QDB_PG_NET_BIND_TO` to a free loopback port. Absent: offline
    /// checks only.
    #[serde(default)]
    pub questdb_command: Vec<String>,
    /// How long the database may take to answer its health check.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
    /// How long one query may take.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(120)
}

impl DrillConfig {
    /// A drill config with only a scratch directory (offline checks only).
    pub fn new(scratch_dir: impl Into<PathBuf>) -> Self {
        Self {
            scratch_dir: scratch_dir.into(),
            influxdb3_binary: None,
            influxdb3_args: Vec::new(),
            questdb_command: Vec::new(),
            start_timeout: default_start_timeout(),
            query_timeout: default_query_timeout(),
        }
    }

    /// This worker's own part of the scratch (`<scratch_dir>/<worker id>`): workers sharing a
    /// host and a scratch directory never wipe each other's drills.
    pub fn worker_dir(&self, worker_id: &str) -> PathBuf {
        self.scratch_dir.join(worker_id.replace(['/', ':', '\\'], "-"))
    }

    /// Where this worker's drills restore, one directory per drill task (drills may run side by
    /// side); wiped when the worker starts, so a drill cut short by a crash leaves nothing.
    pub fn data_root(&self, worker_id: &str) -> PathBuf {
        self.worker_dir(worker_id).join("data")
    }

    /// Where database logs of failed drills are kept.
    pub fn logs_dir(&self, worker_id: &str) -> PathBuf {
        self.worker_dir(worker_id).join("logs")
    }

    /// Refuses a scratch directory that is relative or overlaps `url` (a `file://` store or
    /// repository); cloud URLs cannot overlap a local directory.
    ///
    /// # Errors
    /// A message naming both places and the fix.
    pub fn check_apart_from(&self, what: &str, url: &str) -> Result<(), String> {
        if !self.scratch_dir.is_absolute() {
            return Err(format!(
                "[drill] scratch_dir `{}` must be an absolute path",
                self.scratch_dir.display()
            ));
        }
        let Some(path) = local_path(url) else { return Ok(()) };
        let scratch = resolved(&self.scratch_dir);
        let other = resolved(&path);
        if scratch.starts_with(&other) || other.starts_with(&scratch) {
            return Err(format!(
                "[drill] scratch_dir `{}` overlaps the {what} `{url}`: a drill fills and wipes its scratch, so it \
                 must be a directory of its own, apart from the store and every repository",
                self.scratch_dir.display()
            ));
        }
        Ok(())
    }
}

fn local_path(url: &str) -> Option<PathBuf> {
    let url = url::Url::parse(url).ok()?;
    (url.scheme() == "file").then(|| url.to_file_path().ok()).flatten()
}

/// The path with symlinks resolved as far as it exists (the rest appended), so `/a/link/x` and
/// `/real/x` compare equal.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(|name| name.to_os_string()) else { break };
        rest.push(name);
        if !existing.pop() {
            break;
        }
    }
    let mut full = existing.canonicalize().unwrap_or(existing);
    full.extend(rest.iter().rev());
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_scratch_must_be_apart_from_stores_and_repositories() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().display().to_string();
        let config = DrillConfig::new(root.path().join("scratch"));
        let cases = [
            (format!("file://{base}/store"), true),
            (format!("file://{base}"), false),
            (format!("file://{base}/scratch/inner"), false),
            (format!("file://{base}/scratch"), false),
            ("s3://bucket/prefix".to_string(), true),
        ];
        for (url, apart) in cases {
            let result = config.check_apart_from("store", &url);
            assert_eq!(result.is_ok(), apart, "{url}: {result:?}");
        }
        let error = config.check_apart_from("store", &format!("file://{base}")).unwrap_err();
        assert!(error.contains("must be a directory of its own"), "{error}");
        // Workers sharing a scratch directory each keep to their own part of it.
        assert_ne!(config.data_root("src/node1"), config.data_root("src/node2"));
        assert!(config.data_root("src/node1").starts_with(root.path().join("scratch/src-node1")));
        let relative = DrillConfig::new("scratch").check_apart_from("store", "s3://b").unwrap_err();
        assert!(relative.contains("absolute"), "{relative}");
    }
}
