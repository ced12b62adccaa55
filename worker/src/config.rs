//! The worker's config file (`version = 1` TOML), with environment overrides.
//!
//! Secrets never sit inline in a committed config: an object-store option ending in `_file`
//! names a file holding the value (`aws_secret_access_key_file = "/run/secrets/s3"`), and the
//! standard `AWS_*`, `AZURE_*`, `GOOGLE_*` environment variables are read too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bk_proto::support::{env_override, parse_versioned, ConfigError, LogFormat};
use serde::{Deserialize, Serialize};

/// The config format version this binary reads.
pub const CONFIG_VERSION: i64 = 1;

/// Everything a worker needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The source (as registered with `bkctl source add`) whose node this worker runs next to
    /// (env `BK_SOURCE`).
    pub source: String,
    /// The node id of that node (env `BK_NODE`).
    pub node: String,
    /// Stable worker id; defaults to `<source>/<node>` (env `BK_WORKER_ID`).
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Coordinator replicas, `host:port` (env `BK_ENDPOINTS`, comma-separated).
    pub coordinator_endpoints: Vec<String>,
    /// The node's object store (where InfluxDB 3 keeps this node's files).
    pub store: StoreConfig,
    /// Per repository name, how to reach it (credentials) and its passphrase. A repository
    /// without an entry is opened with its URL and the standard environment variables, and the
    /// default passphrase.
    #[serde(default)]
    pub repositories: BTreeMap<String, StoreOptions>,
    /// File holding the passphrase of repositories without their own `password_file` (re-read
    /// for every task, so it rotates without a restart; env `BK_REPOSITORY_PASSWORD` gives it
    /// inline). Passphrases stay on the workers: the coordinator never holds one.
    #[serde(default)]
    pub repository_password_file: Option<std::path::PathBuf>,
    /// The default passphrase inline (env `BK_REPOSITORY_PASSWORD`); never printed.
    #[serde(default, skip_serializing)]
    pub repository_password: Option<String>,
    /// Argon2id's cost for the keys this worker makes (a new repository, `bkctl repo key add`);
    /// an existing key keeps its own.
    #[serde(default)]
    pub key_derivation: crate::repository::keys::KdfSettings,
    /// Tasks run at once (env `BK_MAX_PARALLEL_TASKS`).
    #[serde(default = "default_max_parallel_tasks")]
    pub max_parallel_tasks: usize,
    /// Objects copied at once across all tasks; memory is bounded by this × the chunk size
    /// (env `BK_MAX_CONCURRENT_OBJECTS`).
    #[serde(default = "default_max_concurrent_objects")]
    pub max_concurrent_objects: usize,
    /// Cap on bytes read from sources and the repository per second, across all tasks
    /// (env `BK_MAX_BYTES_PER_SECOND`; absent: unlimited).
    #[serde(default)]
    pub max_bytes_per_second: Option<u64>,
    /// Where to serve Prometheus `GET /metrics` (e.g. `127.0.0.1:9401`); absent: not served.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How often a running task saves the list of objects it has copied (one PUT each), so a
    /// new attempt after a crash reuses them instead of copying them again: at most this much
    /// copying is lost to a crash (plus the pack being filled). Env `BK_PROGRESS_SAVE_INTERVAL`.
    #[serde(default = "default_progress_save_interval", with = "humantime_serde")]
    pub progress_save_interval: Duration,
    /// How often the worker tells the coordinator it is alive.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// `text` or `json` (env `BK_LOG_FORMAT`).
    #[serde(default)]
    pub log_format: LogFormat,
    /// File holding the join token this worker presents to the coordinator (re-read for every
    /// call, so it rotates without a restart).
    #[serde(default)]
    pub join_token_file: Option<std::path::PathBuf>,
    /// The join token inline (env `BK_JOIN_TOKEN`); never printed.
    #[serde(default, skip_serializing)]
    pub join_token: Option<String>,
    /// For a QuestDB server: how to talk to it. Its credentials stay here, on the worker.
    #[serde(default)]
    pub questdb: QuestDbConfig,
    /// TLS towards the coordinator: the CA its replicas' certificates chain to and, when it
    /// requires mutual TLS, this worker's certificate (`ca_file`, `cert_file`, `key_file`,
    /// `server_name`; env `BK_TLS_*`).
    #[serde(default)]
    pub tls: bk_proto::tls::ClientTlsFiles,
    /// How requests to cloud stores (sources and repositories) are retried.
    #[serde(default)]
    pub retry: crate::store::RetrySettings,
    /// Where the worker keeps its local copy of repository indexes (a redb file per repository,
    /// see `repository::index_cache`; env `BK_CACHE_DIR`) and its listing memos (`listings/`,
    /// see `local_list`). A cache: deleting it costs one read of the index files of this
    /// worker's node and one full listing. Default: `$XDG_CACHE_HOME/bk/<worker id>`, else
    /// `~/.cache/bk/<worker id>`; with neither, in memory (filled again at every start).
    #[serde(default)]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Restore drills: scratch space and how to start the database. Absent: this worker runs
    /// no drills.
    #[serde(default)]
    pub drill: Option<crate::drill::config::DrillConfig>,
    /// Filesystem or volume snapshots backups copy from (`method = "none"` when absent).
    #[serde(default)]
    pub snapshot: Option<crate::snapshot::config::SnapshotConfig>,
    /// Switches that turn a feature off to measure what it costs (benchmarks only; from the
    /// environment, never the file).
    #[serde(skip)]
    pub bench: BenchSwitches,
}

/// Benchmark switches, read once from the environment (`=1` turns one on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchSwitches {
    /// `BK_SKIP_FORMAT_CHECKS`: copies do not check the databases' formats.
    pub skip_format_checks: bool,
    /// `BK_BENCH_UNENCRYPTED_BLOBS`: a new repository stores blobs unencrypted, and such a
    /// repository may be opened.
    pub unencrypted_blobs: bool,
    /// `BK_BENCH_NO_LISTING_MEMO`: listings of the node store read every directory.
    pub no_listing_memo: bool,
}

impl BenchSwitches {
    fn from_env(env: &HashMap<String, String>) -> Self {
        let on = |name: &str| env.get(name).is_some_and(|value| value == "1");
        Self {
            skip_format_checks: on("BK_SKIP_FORMAT_CHECKS"),
            unencrypted_blobs: on("BK_BENCH_UNENCRYPTED_BLOBS"),
            no_listing_memo: on("BK_BENCH_NO_LISTING_MEMO"),
        }
    }
}

/// A bytes-per-second rate as operators write it: `100MiB`, `100MiB/s`, `1.5GiB`, `500KiB/s` or
/// a plain byte count (`--max-bandwidth`, env `BK_MAX_BANDWIDTH`); units as
/// [`bk_proto::support::parse_byte_size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRate(pub u64);

impl std::str::FromStr for ByteRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let bytes =
            bk_proto::support::parse_byte_size(trimmed.strip_suffix("/s").unwrap_or(trimmed))?;
        if bytes == 0 {
            return Err(format!("`{text}` is zero: leave the limit out for unlimited"));
        }
        Ok(Self(bytes))
    }
}

/// How the worker talks to the QuestDB server next to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuestDbConfig {
    /// PostgreSQL wire user (env `BK_QUESTDB_USER`).
    pub user: String,
    /// File holding the password (preferred; re-read for every task).
    pub password_file: Option<std::path::PathBuf>,
    /// The password inline (env `BK_QUESTDB_PASSWORD`); never printed.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Refuse `CHECKPOINT CREATE` when the server root's filesystem has less free space than
    /// this (percent). Below 50 % (QuestDB's advice) a warning is recorded.
    pub min_free_disk_percent: f64,
    /// How long one statement may take (`CHECKPOINT CREATE` can wait up to QuestDB's
    /// `query.timeout`, 60 s by default).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for QuestDbConfig {
    fn default() -> Self {
        Self {
            user: "admin".to_string(),
            password_file: None,
            password: None,
            min_free_disk_percent: 10.0,
            statement_timeout: Duration::from_secs(120),
        }
    }
}

/// An object store: a URL plus options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `file:///var/lib/influxdb3`, `s3://bucket[/prefix]`, `az://container[/prefix]`,
    /// `gs://bucket[/prefix]` (env `BK_STORE_URL`).
    pub url: String,
    /// Builder options (object_store config keys such as `aws_region`, `aws_endpoint`,
    /// `aws_allow_http`); keys ending in `_file` are read from that file.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A repository as this worker reaches it (its URL comes from the coordinator).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// As [`StoreConfig::options`].
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// File holding the repository's passphrase, re-read for every task (env
    /// `BK_REPOSITORY_PASSWORD_<NAME>` gives it inline, NAME upper-cased, other characters `_`).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The passphrase inline (from the environment only); never printed.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

fn default_max_parallel_tasks() -> usize {
    4
}

fn default_max_concurrent_objects() -> usize {
    16
}

fn default_progress_save_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(2)
}

impl WorkerConfig {
    /// Parses a config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the unknown key, bad value or unsupported version.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        parse_versioned(text, CONFIG_VERSION)
    }

    /// A config with defaults for everything but what identifies the worker.
    pub fn new(
        source: &str,
        node: &str,
        store_url: &str,
        coordinator_endpoints: Vec<String>,
    ) -> Self {
        Self {
            source: source.to_string(),
            node: node.to_string(),
            worker_id: None,
            coordinator_endpoints,
            store: StoreConfig { url: store_url.to_string(), options: BTreeMap::new() },
            repositories: BTreeMap::new(),
            repository_password_file: None,
            repository_password: None,
            key_derivation: crate::repository::keys::KdfSettings::default(),
            max_parallel_tasks: default_max_parallel_tasks(),
            max_concurrent_objects: default_max_concurrent_objects(),
            max_bytes_per_second: None,
            metrics_listen: None,
            heartbeat_interval: default_heartbeat_interval(),
            progress_save_interval: default_progress_save_interval(),
            log_format: LogFormat::Text,
            questdb: QuestDbConfig::default(),
            tls: bk_proto::tls::ClientTlsFiles::default(),
            retry: crate::store::RetrySettings::default(),
            join_token_file: None,
            join_token: None,
            cache_dir: None,
            drill: None,
            snapshot: None,
            bench: BenchSwitches::default(),
        }
    }

    /// Applies `BK_*` overrides from `env`.
    ///
    /// # Errors
    /// [`ConfigError::Env`] when a variable does not parse.
    pub fn apply_env(mut self, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(value) = env_override(env, "BK_SOURCE")? {
            self.source = value;
        }
        if let Some(value) = env_override(env, "BK_NODE")? {
            self.node = value;
        }
        if let Some(value) = env_override::<String>(env, "BK_WORKER_ID")? {
            self.worker_id = Some(value);
        }
        if let Some(value) = env_override::<String>(env, "BK_ENDPOINTS")? {
            self.coordinator_endpoints =
                value.split(',').map(|endpoint| endpoint.trim().to_string()).collect();
        }
        if let Some(value) = env_override(env, "BK_STORE_URL")? {
            self.store.url = value;
        }
        if let Some(value) = env_override(env, "BK_MAX_PARALLEL_TASKS")? {
            self.max_parallel_tasks = value;
        }
        if let Some(value) = env_override(env, "BK_MAX_CONCURRENT_OBJECTS")? {
            self.max_concurrent_objects = value;
        }
        if let Some(value) = env_override::<u64>(env, "BK_MAX_BYTES_PER_SECOND")? {
            self.max_bytes_per_second = Some(value);
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_PROGRESS_SAVE_INTERVAL")?
        {
            self.progress_save_interval = value.into();
        }
        if let Some(value) = env_override::<String>(env, "BK_CACHE_DIR")? {
            self.cache_dir = Some(value.into());
        }
        if let Some(value) = env_override(env, "BK_LOG_FORMAT")? {
            self.log_format = value;
        }
        if let Some(value) = env_override::<String>(env, "BK_JOIN_TOKEN")? {
            self.join_token = Some(value);
        }
        if let Some(value) = env_override(env, "BK_QUESTDB_USER")? {
            self.questdb.user = value;
        }
        if let Some(value) = env_override::<String>(env, "BK_QUESTDB_PASSWORD")? {
            self.questdb.password = Some(value);
        }
        if let Some(value) = env_override::<String>(env, "BK_REPOSITORY_PASSWORD")? {
            self.repository_password = Some(value);
        }
        for (name, repository) in &mut self.repositories {
            let variable =
                format!("BK_REPOSITORY_PASSWORD_{}", crate::repository::open::env_suffix(name));
            if let Some(value) = env_override::<String>(env, &variable)? {
                repository.password = Some(value);
            }
        }
        if let Some(value) = env_override(env, "BK_ARGON2_MEMORY_KIB")? {
            self.key_derivation.memory_kib = value;
        }
        if let Some(value) = env_override(env, "BK_ARGON2_ITERATIONS")? {
            self.key_derivation.iterations = value;
        }
        self.tls.apply_env(env)?;
        if let Some(value) = env_override(env, "BK_RETRY_MAX_RETRIES")? {
            self.retry.max_retries = value;
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_RETRY_TIMEOUT")? {
            self.retry.retry_timeout = value.into();
        }
        if let Some(value) = env_override::<ByteRate>(env, "BK_MAX_BANDWIDTH")? {
            self.max_bytes_per_second = Some(value.0);
        }
        self.bench = BenchSwitches::from_env(env);
        Ok(self)
    }

    /// Where the local index cache lives: `cache_dir`, or the user's cache directory (from
    /// `env`, the process environment) with this worker's id; `None`: in memory.
    pub fn index_cache_dir(&self, env: &[(String, String)]) -> Option<std::path::PathBuf> {
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let var = |name: &str| {
            env.iter()
                .find(|(key, value)| key == name && !value.is_empty())
                .map(|(_, value)| value.clone())
        };
        let base = var("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|home| std::path::Path::new(&home).join(".cache")))?;
        let worker = self.worker_id().replace(['/', '\\', ':'], "_");
        Some(base.join("bk").join(worker))
    }

    /// Checks values that parse but cannot work.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_string()));
        if self.source.is_empty() || self.node.is_empty() {
            return invalid("`source` and `node` are required (or BK_SOURCE / BK_NODE)");
        }
        if self.store.url.is_empty() {
            return invalid(
                "`store.url` is required: the node's object store, e.g. file:///var/lib/influxdb3",
            );
        }
        if self.coordinator_endpoints.iter().all(|endpoint| endpoint.trim().is_empty()) {
            return invalid("`coordinator_endpoints` is empty (or set BK_ENDPOINTS)");
        }
        if self.max_parallel_tasks == 0 || self.max_concurrent_objects == 0 {
            return invalid("`max_parallel_tasks` and `max_concurrent_objects` must be at least 1");
        }
        if let Some(drill) = &self.drill {
            drill
                .check_apart_from("node's store", &self.store.url)
                .map_err(ConfigError::Invalid)?;
        }
        if let Some(snapshot) = &self.snapshot {
            snapshot.validate(self.store_root().as_deref()).map_err(ConfigError::Invalid)?;
        }
        Ok(self)
    }

    /// The store's directory when it is local (`file:///path`).
    pub fn store_root(&self) -> Option<std::path::PathBuf> {
        url::Url::parse(&self.store.url)
            .ok()
            .filter(|url| url.scheme() == "file")
            .and_then(|url| url.to_file_path().ok())
    }

    /// The passphrase of repository `name`, read now (from its file when configured, so a
    /// rotated passphrase is used from the next task on); `None` when none is configured.
    /// An environment variable `BK_REPOSITORY_PASSWORD_<NAME>` not in the config file also
    /// counts (`env`: the process environment).
    ///
    /// # Errors
    /// When a configured file cannot be read, naming the file.
    pub fn repository_passphrase(
        &self,
        name: &str,
        env: &[(String, String)],
    ) -> Result<Option<crate::repository::keys::Passphrase>, String> {
        let own = self.repositories.get(name);
        let variable =
            format!("BK_REPOSITORY_PASSWORD_{}", crate::repository::open::env_suffix(name));
        let from_env = env.iter().find(|(key, _)| *key == variable).map(|(_, value)| value.clone());
        let file = own.and_then(|repository| repository.password_file.as_ref());
        let inline = own.and_then(|repository| repository.password.clone()).or(from_env);
        let (file, inline) = match (file, inline) {
            (None, None) => {
                (self.repository_password_file.as_ref(), self.repository_password.clone())
            }
            other => other,
        };
        let passphrase = match (file, inline) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|error| {
                    format!("cannot read the passphrase file `{}`: {error}", path.display())
                })?,
            (None, Some(inline)) => inline,
            (None, None) => return Ok(None),
        };
        if passphrase.is_empty() {
            return Err(format!("the passphrase for repository `{name}` is empty"));
        }
        Ok(Some(crate::repository::keys::Passphrase(passphrase.into_bytes())))
    }

    /// Repositories this worker has a passphrase for, as it registers them (`*`: it has a
    /// default passphrase, so any).
    pub fn repositories_with_passphrase(&self) -> Vec<String> {
        if self.repository_password_file.is_some() || self.repository_password.is_some() {
            return vec!["*".to_string()];
        }
        self.repositories
            .iter()
            .filter(|(_, repository)| {
                repository.password_file.is_some() || repository.password.is_some()
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The worker id: configured, or `<source>/<node>`.
    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| format!("{}/{}", self.source, self.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_example_config_in_deploy_parses_and_validates() {
        let text = include_str!("../../deploy/worker.toml");
        let config = WorkerConfig::parse(text).unwrap().validate().unwrap();
        assert_eq!(config.worker_id(), "prod/node1");
        assert_eq!(config.store.url, "file:///var/lib/influxdb3");
        assert!(config.repositories.contains_key("offsite"));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.tls.ca_file.as_deref(), Some(std::path::Path::new("/etc/bk/tls/ca.crt")));
        assert_eq!(config.retry.max_backoff, Duration::from_secs(15));
    }

    #[test]
    fn test_bandwidth_takes_units_and_names_bad_ones() {
        assert_eq!("100MiB".parse::<ByteRate>(), Ok(ByteRate(100 << 20)));
        assert_eq!("1.5GiB/s".parse::<ByteRate>(), Ok(ByteRate(3 << 29)));
        assert_eq!("4096".parse::<ByteRate>(), Ok(ByteRate(4096)));
        assert!("10 parsecs".parse::<ByteRate>().unwrap_err().contains("parsecs"));
        assert!("0MiB".parse::<ByteRate>().unwrap_err().contains("unlimited"));
        let env: HashMap<String, String> = [
            ("BK_MAX_BANDWIDTH".to_string(), "8MiB/s".to_string()),
            ("BK_RETRY_MAX_RETRIES".to_string(), "3".to_string()),
        ]
        .into();
        let config = WorkerConfig::new("s", "n", "file:///x", vec!["127.0.0.1:1".into()])
            .apply_env(&env)
            .unwrap();
        assert_eq!(config.max_bytes_per_second, Some(8 << 20));
        assert_eq!(config.retry.max_retries, 3);
    }

    #[test]
    fn test_missing_store_names_the_key() {
        let config = WorkerConfig::new("s", "n", "", vec!["127.0.0.1:1".into()]);
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("store.url"), "{error}");
    }
}
