//! The coordinator's config file (`version = 1` TOML), with environment overrides.
//!
//! Loading is three pure steps: [`CoordinatorConfig::parse`] → [`CoordinatorConfig::apply_env`]
//! (the env map is injected) → [`CoordinatorConfig::validate`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bk_proto::support::{env_override, parse_versioned, ConfigError, LogFormat};
use bk_proto::tls::{ClientTlsFiles, ServerTlsFiles};
use serde::{Deserialize, Serialize};

/// The config format version this binary reads.
pub const CONFIG_VERSION: i64 = 1;

/// Everything a coordinator replica needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// This replica's id, unique within the coordinator cluster (env `BK_REPLICA_ID`).
    pub replica_id: u64,
    /// Address the gRPC server binds; port 0 picks a free port (env `BK_LISTEN_ADDR`).
    pub listen_addr: String,
    /// Address clients, workers and other replicas use to reach this replica; defaults to the
    /// bound address (env `BK_ADVERTISE_ADDR`).
    pub advertise_addr: Option<String>,
    /// Where the Raft log and snapshots live (env `BK_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Initialise a new single-replica cluster on first start. Leave on for the first replica;
    /// replicas that will join an existing cluster set it to false.
    pub bootstrap: bool,
    /// A worker silent for this long loses its tasks to a new attempt (env `BK_LEASE_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub lease_timeout: Duration,
    /// Raft timing and log compaction.
    pub raft: RaftTuning,
    /// `text` or `json` (env `BK_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Bearer tokens for clients and workers.
    pub auth: AuthConfig,
    /// TLS on the gRPC port and on calls to the other replicas.
    pub tls: CoordinatorTls,
    /// How long finished jobs stay in the replicated state (their backups stay listed).
    pub jobs: JobHistoryConfig,
    /// The web console on the gRPC port.
    pub console: ConsoleConfig,
    /// What the operator promises per source; the console and the metrics judge sources by it.
    pub objectives: ObjectivesConfig,
}

/// `[console]`: the read-only web console at `/ui`, behind the client tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve `/ui` (env `BK_CONSOLE`; default on). Off, `/ui` answers 404.
    pub enabled: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[objectives]`: the recovery-point objective (how old the newest backup may be) and how old
/// the newest drill may be. Exported as metrics, so alert rules follow the same numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectivesConfig {
    /// Default RPO (env `BK_RPO`; default 25h: a nightly backup with an hour of slack).
    #[serde(with = "humantime_serde")]
    pub rpo: Duration,
    /// RPO per source name, e.g. `{ "prod-influx" = "1h" }`.
    pub rpo_by_source: std::collections::BTreeMap<String, humantime_serde::Serde<Duration>>,
    /// The newest drill may be this old (env `BK_DRILL_MAX_AGE`; default 8 days: weekly drills).
    #[serde(with = "humantime_serde")]
    pub drill_max_age: Duration,
}

impl Default for ObjectivesConfig {
    fn default() -> Self {
        let objectives = crate::core::source_health::Objectives::default();
        Self {
            rpo: Duration::from_millis(objectives.rpo_ms),
            rpo_by_source: std::collections::BTreeMap::new(),
            drill_max_age: Duration::from_millis(objectives.drill_max_age_ms),
        }
    }
}

impl ObjectivesConfig {
    /// The rule the core applies.
    pub fn objectives(&self) -> crate::core::source_health::Objectives {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        crate::core::source_health::Objectives {
            rpo_ms: millis(self.rpo),
            rpo_by_source: self
                .rpo_by_source
                .iter()
                .map(|(source, rpo)| (source.clone(), millis(**rpo)))
                .collect(),
            drill_max_age_ms: millis(self.drill_max_age),
        }
    }
}

/// `[jobs]`: finished jobs kept for `keep_finished_for` and at most `keep_finished` of them;
/// older ones are dropped from the state (and so from every snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobHistoryConfig {
    /// Keep a finished job this long (default 31 days).
    #[serde(with = "humantime_serde")]
    pub keep_finished_for: Duration,
    /// Keep at most this many finished jobs (default 5,000).
    pub keep_finished: usize,
    /// The newest this many finished jobs keep every task in the state (default 10); older
    /// ones keep a summary per phase and the tasks that failed or warned, so a month of jobs
    /// of a thousand-node cluster stays small.
    pub keep_task_details: usize,
    /// ... and those keep at most this many tasks together (default 20,000; the newest finished
    /// job always keeps its own): what bounds a coordinator's memory at a thousand workers.
    pub keep_task_details_tasks: usize,
}

impl Default for JobHistoryConfig {
    fn default() -> Self {
        let history = crate::core::job::history::JobHistory::default();
        Self {
            keep_finished_for: Duration::from_millis(history.keep_for_ms),
            keep_finished: history.keep_last,
            keep_task_details: history.keep_task_details,
            keep_task_details_tasks: history.keep_task_details_tasks,
        }
    }
}

impl JobHistoryConfig {
    /// The rule the core applies.
    pub fn history(&self) -> crate::core::job::history::JobHistory {
        crate::core::job::history::JobHistory {
            keep_for_ms: u64::try_from(self.keep_finished_for.as_millis()).unwrap_or(u64::MAX),
            keep_last: self.keep_finished,
            keep_task_details: self.keep_task_details,
            keep_task_details_tasks: self.keep_task_details_tasks,
        }
    }
}

/// TLS for the replica's gRPC port (clients, workers, other replicas all use it) and for the
/// Raft calls it makes to the other replicas. Off when no certificate is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorTls {
    /// PEM certificate chain this replica presents, to its clients and (as a client certificate)
    /// to the other replicas (env `BK_TLS_CERT_FILE`). Setting it turns TLS on.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (env `BK_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle the other replicas' certificates chain to (env `BK_TLS_CA_FILE`); required
    /// with `cert_file`, since replicas call each other.
    pub ca_file: Option<PathBuf>,
    /// PEM CA bundle every client (bkctl, workers, other replicas) must present a certificate
    /// from: mutual TLS (env `BK_TLS_CLIENT_CA_FILE`). Tokens are still checked on top.
    pub client_ca_file: Option<PathBuf>,
}

impl CoordinatorTls {
    /// What the gRPC server presents and checks.
    pub fn server_files(&self) -> ServerTlsFiles {
        ServerTlsFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
        }
    }

    /// What this replica trusts and presents when it calls another replica.
    pub fn peer_client_files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name: None,
        }
    }
}

/// Bearer tokens. An API with no token configured is open (fine on a laptop, not in production).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File of tokens clients (bkctl, other gRPC clients) present on the Control API, one per
    /// line; re-read when it changes (env `BK_CLIENT_TOKENS_FILE`).
    pub client_tokens_file: Option<PathBuf>,
    /// File of join tokens workers present on the WorkerHub API (env `BK_WORKER_TOKENS_FILE`).
    pub worker_tokens_file: Option<PathBuf>,
    /// Client tokens from env `BK_CLIENT_TOKENS` (comma-separated); never printed.
    #[serde(skip)]
    pub client_tokens: Vec<String>,
    /// Worker tokens from env `BK_WORKER_TOKENS` (comma-separated); never printed.
    #[serde(skip)]
    pub worker_tokens: Vec<String>,
}

/// Raft timing and log compaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// How often the leader heartbeats followers.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing for this long (randomised up to twice it) calls an election.
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
    /// Take a snapshot (and let the log be purged) after this many entries.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind the snapshot (so a briefly lagging follower catches up from the
    /// log instead of a snapshot); older ones are purged.
    pub keep_entries_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1500),
            snapshot_after_entries: 5000,
            keep_entries_after_snapshot: 500,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            replica_id: 1,
            listen_addr: "127.0.0.1:7400".to_string(),
            advertise_addr: None,
            data_dir: PathBuf::from("/var/lib/bk/coordinator"),
            bootstrap: true,
            lease_timeout: Duration::from_secs(30),
            raft: RaftTuning::default(),
            log_format: LogFormat::Text,
            auth: AuthConfig::default(),
            tls: CoordinatorTls::default(),
            jobs: JobHistoryConfig::default(),
            console: ConsoleConfig::default(),
            objectives: ObjectivesConfig::default(),
        }
    }
}

impl CoordinatorConfig {
    /// Parses a config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the unknown key, bad value or unsupported version.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        parse_versioned(text, CONFIG_VERSION)
    }

    /// Applies `BK_*` overrides from `env`.
    ///
    /// # Errors
    /// [`ConfigError::Env`] when a variable does not parse.
    pub fn apply_env(mut self, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(value) = env_override(env, "BK_REPLICA_ID")? {
            self.replica_id = value;
        }
        if let Some(value) = env_override(env, "BK_LISTEN_ADDR")? {
            self.listen_addr = value;
        }
        if let Some(value) = env_override::<String>(env, "BK_ADVERTISE_ADDR")? {
            self.advertise_addr = Some(value);
        }
        if let Some(value) = env_override(env, "BK_DATA_DIR")? {
            self.data_dir = value;
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_LEASE_TIMEOUT")? {
            self.lease_timeout = value.into();
        }
        if let Some(value) = env_override(env, "BK_LOG_FORMAT")? {
            self.log_format = value;
        }
        if let Some(value) = env_override(env, "BK_CLIENT_TOKENS_FILE")? {
            self.auth.client_tokens_file = Some(value);
        }
        if let Some(value) = env_override(env, "BK_WORKER_TOKENS_FILE")? {
            self.auth.worker_tokens_file = Some(value);
        }
        if let Some(value) = env_override::<String>(env, "BK_CLIENT_TOKENS")? {
            self.auth.client_tokens = value.split(',').map(str::to_string).collect();
        }
        if let Some(value) = env_override::<String>(env, "BK_WORKER_TOKENS")? {
            self.auth.worker_tokens = value.split(',').map(str::to_string).collect();
        }
        if let Some(value) = env_override::<bool>(env, "BK_CONSOLE")? {
            self.console.enabled = value;
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_RPO")? {
            self.objectives.rpo = value.into();
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_DRILL_MAX_AGE")? {
            self.objectives.drill_max_age = value.into();
        }
        if let Some(value) = env_override::<bool>(env, "BK_BOOTSTRAP")? {
            self.bootstrap = value;
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_RAFT_HEARTBEAT_INTERVAL")?
        {
            self.raft.heartbeat_interval = value.into();
        }
        if let Some(value) = env_override::<humantime::Duration>(env, "BK_RAFT_ELECTION_TIMEOUT")? {
            self.raft.election_timeout = value.into();
        }
        if let Some(value) = env_override(env, "BK_RAFT_SNAPSHOT_AFTER_ENTRIES")? {
            self.raft.snapshot_after_entries = value;
        }
        if let Some(value) = env_override(env, "BK_RAFT_KEEP_ENTRIES_AFTER_SNAPSHOT")? {
            self.raft.keep_entries_after_snapshot = value;
        }
        for (variable, slot) in [
            ("BK_TLS_CERT_FILE", &mut self.tls.cert_file),
            ("BK_TLS_KEY_FILE", &mut self.tls.key_file),
            ("BK_TLS_CA_FILE", &mut self.tls.ca_file),
            ("BK_TLS_CLIENT_CA_FILE", &mut self.tls.client_ca_file),
        ] {
            if let Some(value) = env_override(env, variable)? {
                *slot = Some(value);
            }
        }
        Ok(self)
    }

    /// Checks values that parse but cannot work.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.replica_id == 0 {
            return Err(ConfigError::Invalid("`replica_id` must be at least 1".to_string()));
        }
        if self.lease_timeout < Duration::from_millis(200) {
            return Err(ConfigError::Invalid("`lease_timeout` must be at least 200ms".to_string()));
        }
        if self.raft.election_timeout <= self.raft.heartbeat_interval * 2 {
            return Err(ConfigError::Invalid(
                "`raft.election_timeout` must be more than twice `raft.heartbeat_interval`"
                    .to_string(),
            ));
        }
        if self.tls.cert_file.is_some() && self.tls.ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "`tls.ca_file` is required with `tls.cert_file`: replicas call each other over \
                 TLS and verify each other's certificates with it (give the CA that signed \
                 `tls.cert_file`)"
                    .to_string(),
            ));
        }
        Ok(self)
    }

    /// A config for tests and the demo: the given data dir, port 0, short timeouts.
    pub fn for_test(data_dir: PathBuf) -> Self {
        Self {
            listen_addr: "127.0.0.1:0".to_string(),
            data_dir,
            lease_timeout: Duration::from_secs(3),
            raft: RaftTuning {
                heartbeat_interval: Duration::from_millis(100),
                election_timeout: Duration::from_millis(500),
                snapshot_after_entries: 5000,
                keep_entries_after_snapshot: 500,
            },
            ..Self::default()
        }
    }

    /// The openraft config derived from [`RaftTuning`].
    pub fn openraft_config(&self) -> openraft::Config {
        let election_ms = self.raft.election_timeout.as_millis() as u64;
        openraft::Config {
            cluster_name: "bk".to_string(),
            heartbeat_interval: self.raft.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.raft.snapshot_after_entries,
            ),
            max_in_snapshot_log_to_keep: self.raft.keep_entries_after_snapshot,
            purge_batch_size: 1,
            ..openraft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_example_config_in_deploy_parses_and_validates() {
        let text = include_str!("../../deploy/coordinator.toml");
        let config = CoordinatorConfig::parse(text).unwrap().validate().unwrap();
        assert_eq!(config.replica_id, 1);
        assert_eq!(config.lease_timeout, Duration::from_secs(30));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/bk/coordinator"));
        assert!(config.tls.server_files().requires_client_certificates());
        assert!(config.console.enabled);
        let objectives = config.objectives.objectives();
        assert_eq!(objectives.rpo_for("prod-influx"), 3_600_000);
        assert_eq!(objectives.rpo_for("other"), 25 * 3_600_000);
        assert_eq!(objectives.drill_max_age_ms, 8 * 24 * 3_600_000);
    }

    #[test]
    fn test_env_overrides_win_and_bad_values_name_the_variable() {
        let env: HashMap<String, String> = [
            ("BK_LISTEN_ADDR".to_string(), "0.0.0.0:9000".to_string()),
            ("BK_LEASE_TIMEOUT".to_string(), "5s".to_string()),
        ]
        .into();
        let config = CoordinatorConfig::default().apply_env(&env).unwrap();
        assert_eq!(config.listen_addr, "0.0.0.0:9000");
        assert_eq!(config.lease_timeout, Duration::from_secs(5));
        let env: HashMap<String, String> =
            [("BK_REPLICA_ID".to_string(), "one".to_string())].into();
        let error = CoordinatorConfig::default().apply_env(&env).unwrap_err().to_string();
        assert!(error.contains("BK_REPLICA_ID"), "{error}");
    }

    #[test]
    fn test_tls_from_env_and_a_certificate_without_a_ca_is_refused() {
        let env: HashMap<String, String> = [
            ("BK_TLS_CERT_FILE".to_string(), "/etc/bk/tls.crt".to_string()),
            ("BK_TLS_KEY_FILE".to_string(), "/etc/bk/tls.key".to_string()),
        ]
        .into();
        let config = CoordinatorConfig::default().apply_env(&env).unwrap();
        assert_eq!(config.tls.server_files().cert_file, Some(PathBuf::from("/etc/bk/tls.crt")));
        let error = config.clone().validate().unwrap_err().to_string();
        assert!(error.contains("tls.ca_file"), "{error}");
        let env: HashMap<String, String> =
            [("BK_TLS_CA_FILE".to_string(), "/etc/bk/ca.crt".to_string())].into();
        let config = config.apply_env(&env).unwrap().validate().unwrap();
        let peer = config.tls.peer_client_files();
        assert_eq!(peer.ca_file, Some(PathBuf::from("/etc/bk/ca.crt")));
        assert_eq!(peer.cert_file, Some(PathBuf::from("/etc/bk/tls.crt")));
    }

    #[test]
    fn test_unknown_key_is_named() {
        let error =
            CoordinatorConfig::parse("version = 1\nlease_timout = '3s'").unwrap_err().to_string();
        assert!(error.contains("lease_timout"), "{error}");
    }
}
