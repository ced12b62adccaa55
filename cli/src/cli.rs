//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Submit, watch and inspect bk backups.
#[derive(Debug, Parser)]
#[command(name = "bkctl", version, about)]
pub(crate) struct Cli {
    /// Coordinator endpoints, comma-separated `host:port`; any replica will do.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_ENDPOINTS",
        default_value = "127.0.0.1:7400"
    )]
    pub(crate) endpoint: String,
    /// Bearer token for the Control API (when the coordinator requires one). Prefer the
    /// environment: a flag shows in the process list.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// PEM CA bundle the coordinator's certificate chains to; connects over TLS.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_CA_CERT",
        value_name = "FILE"
    )]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate, for a coordinator that requires mutual TLS (with `--key`).
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_CLIENT_CERT",
        value_name = "FILE"
    )]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_CLIENT_KEY",
        value_name = "FILE"
    )]
    pub(crate) key: Option<std::path::PathBuf>,
    /// Name to check the coordinator's certificate against, when it differs from the host
    /// in `--endpoint`.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "BK_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub(crate) tls_server_name: Option<String>,
    /// Answer `jobs`, `job`, `backups` and `show` from the replica in `--endpoint` as it
    /// stands, even a follower that may lag the leader (to compare replicas). Without it the
    /// leader answers, so what you just submitted or saw committed is there.
    #[arg(long, global = true, help_heading = "Connection")]
    pub(crate) local: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, help_heading = "Output", value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The TLS files given on the command line or in the environment.
    pub(crate) fn tls_files(&self) -> bk_proto::tls::ClientTlsFiles {
        bk_proto::tls::ClientTlsFiles {
            ca_file: self.ca_cert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            server_name: self.tls_server_name.clone(),
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable.
    Table,
    /// One JSON document on stdout.
    Json,
    /// The same document as YAML.
    Yaml,
}

impl OutputFormat {
    /// Whether people read it (progress bars and notes go to stderr only then).
    pub(crate) fn is_table(self) -> bool {
        self == OutputFormat::Table
    }
}

/// Commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage sources (database deployments to back up).
    #[command(subcommand)]
    Source(SourceCommand),
    /// List sources.
    Sources,
    /// Manage repositories (where backups live).
    #[command(subcommand)]
    Repo(RepoCommand),
    /// List repositories.
    Repos,
    /// Submit a job.
    #[command(subcommand)]
    Submit(SubmitCommand),
    /// Follow a job live: bars per phase and node with objects, bytes and rate.
    Watch {
        /// The job id.
        job_id: String,
    },
    /// Cancel a job: its remaining tasks are skipped, its cleanup still runs, nothing is committed.
    Cancel {
        /// The job id.
        job_id: String,
    },
    /// Show one job: phases, tasks, timings, errors, waiting reasons.
    Job {
        /// The job id.
        job_id: String,
    },
    /// List jobs, newest first.
    Jobs {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// List committed backups, newest first.
    Backups {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
    },
    /// Show one backup.
    Show {
        /// The backup id.
        backup_id: String,
    },
    /// List registered workers.
    Workers,
    /// Backups (and prunes) the leader submits on a cron pattern.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Inspect and change the coordinator cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// One screen: the coordinator cluster, workers, running jobs, the last backup per source.
    Status,
    /// Print a shell completion script: `bkctl completion bash > /etc/bash_completion.d/bkctl`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run everything locally: a coordinator, one worker per node, a sample cluster, a backup.
    Demo(DemoArgs),
}

/// `bkctl source …`
#[derive(Debug, Subcommand)]
pub(crate) enum SourceCommand {
    /// Register (or replace) a source.
    Add(SourceAddArgs),
}

/// Kinds of source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SourceKind {
    /// InfluxDB 3 Enterprise: a cluster id, a compactor and data nodes.
    #[value(name = "influxdb3-enterprise")]
    Influxdb3Enterprise,
    /// InfluxDB 3 Core: a single node.
    #[value(name = "influxdb3-core")]
    Influxdb3Core,
    /// QuestDB: one server; its worker's store is the server root. The PostgreSQL wire
    /// password stays with that worker (its config or BK_QUESTDB_PASSWORD), never here.
    #[value(name = "questdb")]
    Questdb,
}

/// `bkctl source add`
#[derive(Debug, Args)]
pub(crate) struct SourceAddArgs {
    /// The source's name.
    pub(crate) name: String,
    /// Its kind.
    #[arg(long, value_enum)]
    pub(crate) kind: SourceKind,
    /// Enterprise: the cluster id.
    #[arg(long)]
    pub(crate) cluster_id: Option<String>,
    /// Enterprise: the compactor's node id.
    #[arg(long)]
    pub(crate) compactor: Option<String>,
    /// Enterprise: data node ids, comma-separated. Core: the node id.
    #[arg(long, value_delimiter = ',')]
    pub(crate) nodes: Vec<String>,
    /// HTTP endpoint of a node, `NODE=URL` (repeatable); restore uses it to check the node is down.
    #[arg(long = "http", value_name = "NODE=URL")]
    pub(crate) http_endpoints: Vec<String>,
    /// QuestDB: `host:port` of the PostgreSQL wire endpoint (QuestDB's default port is 8812).
    #[arg(long = "pg", value_name = "HOST:PORT")]
    pub(crate) pg_addr: Option<String>,
}

/// `bkctl schedule …`
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Register (or replace) a schedule.
    Add(ScheduleAddArgs),
    /// List schedules and their last runs.
    List,
    /// Remove a schedule.
    Remove {
        /// The schedule's name.
        name: String,
    },
}

/// `bkctl schedule add`: the fields of a schedule.
#[derive(Debug, Args)]
pub(crate) struct ScheduleAddArgs {
    /// The schedule's name.
    pub(crate) name: String,
    /// The source to back up.
    #[arg(long)]
    pub(crate) source: String,
    /// The repository.
    #[arg(long = "repo")]
    pub(crate) repository: String,
    /// Cron pattern, UTC: `0 2 * * *` (5 fields), or 6 with seconds first.
    #[arg(long)]
    pub(crate) cron: String,
    /// After each backup, prune keeping the N newest.
    #[arg(long, default_value_t = 0)]
    pub(crate) prune_keep_last: u32,
    /// … and the newest of each of the N most recent days.
    #[arg(long, default_value_t = 0)]
    pub(crate) prune_keep_daily: u32,
    /// … weeks.
    #[arg(long, default_value_t = 0)]
    pub(crate) prune_keep_weekly: u32,
    /// … months.
    #[arg(long, default_value_t = 0)]
    pub(crate) prune_keep_monthly: u32,
    /// Drill the newest backup of the source in the repository instead of backing up (e.g.
    /// weekly, after the nightly backups): `bkctl backups` and the
    /// `bk_backup_last_drill_success_timestamp_seconds` metric show how it went.
    #[arg(long, conflicts_with_all = ["prune_keep_last", "prune_keep_daily", "prune_keep_weekly", "prune_keep_monthly"])]
    pub(crate) drill: bool,
}

/// `bkctl cluster …`
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Replicas, roles, term, applied index and, from the leader, replication lag.
    Status,
    /// Add a replica (started with `--join`): it catches up as a learner, then votes.
    AddReplica {
        /// Its replica id.
        replica_id: u64,
        /// `host:port` where the other replicas reach it.
        address: String,
    },
    /// Remove a replica from the cluster.
    RemoveReplica {
        /// Its replica id.
        replica_id: u64,
    },
}

/// `bkctl repo …`
#[derive(Debug, Subcommand)]
pub(crate) enum RepoCommand {
    /// Register (or replace) a repository. Its workers need its passphrase (`password_file`
    /// under `[repositories.NAME]`); the first backup creates it, encrypted.
    Add {
        /// The repository's name.
        name: String,
        /// `file:///backups/bk`, `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`.
        url: String,
        /// Largest blob, e.g. `8MiB` (the default), fixed when the repository is first written.
        #[arg(long, value_parser = parse_size)]
        chunk_size: Option<u64>,
        /// Pack size, e.g. `16MiB` (the default): one PUT per pack. Fixed when first written.
        #[arg(long, value_parser = parse_size)]
        pack_size: Option<u64>,
        /// zstd level for blobs (default 3; 0 turns compression off). Fixed when first written.
        #[arg(long)]
        compression_level: Option<i32>,
    },
    /// Manage the repository's passphrases: each is a key file wrapping the same master key,
    /// so adding and removing one rewrites no data. Runs on a worker holding a passphrase.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check the whole repository (restic's `check`): every index file and pack header reads,
    /// every blob a backup names is indexed in a pack that exists, and with `--read-data` a share
    /// of the packs is read and every blob in it re-hashed. Exits non-zero naming each problem.
    Check {
        /// The repository.
        repository: String,
        /// Percent of the packs to read whole (0 to 100; default 0: headers only).
        #[arg(long, default_value_t = 0, value_name = "PERCENT")]
        read_data: u32,
    },
}

/// `bkctl repo key …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Add a passphrase, read from a file on the worker that runs the job (it never passes
    /// through the coordinator). Then give the workers the new passphrase and remove the old key.
    Add {
        /// The repository.
        repository: String,
        /// A file on the worker holding the new passphrase.
        #[arg(long)]
        new_password_file: String,
    },
    /// List the key files (the one the worker's passphrase opens is marked current).
    List {
        /// The repository.
        repository: String,
    },
    /// Remove a key file. Refused for the key the worker's own passphrase opens, and for the
    /// last key.
    Remove {
        /// The repository.
        repository: String,
        /// The key's id (`bkctl repo key list`).
        key_id: String,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    bk_proto::support::parse_byte_size(text)
}

fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    number.parse().map_err(|_| format!("`{text}` is not a percentage (e.g. `10` or `10%`)"))
}

/// `bkctl submit …`
#[derive(Debug, Subcommand)]
pub(crate) enum SubmitCommand {
    /// Back up a source into a repository. Prints the job id (or, with --wait, the outcome).
    Backup {
        /// The source.
        #[arg(long)]
        source: String,
        /// The repository.
        #[arg(long = "repo")]
        repository: String,
        /// Wait for the job to end (live bars on a terminal); exit non-zero if it failed.
        #[arg(long)]
        wait: bool,
        /// QuestDB: take over a checkpoint someone else holds (and release it when done)
        /// instead of failing.
        #[arg(long)]
        adopt_checkpoint: bool,
        /// Read every object instead of reusing unchanged ones from the latest backup of this
        /// source in this repository (backups are incremental by default).
        #[arg(long)]
        full: bool,
        /// Commit even if source objects fail their database's format check (bad WAL CRC,
        /// truncated manifest, parquet without its magic); `bkctl show` lists them. Without
        /// it such a backup fails before its commit, naming each.
        #[arg(long)]
        allow_corrupt: bool,
    },
    /// Forget backups no keep rule keeps (restic's semantics), then delete the chunks nothing
    /// references any more. Waits for other jobs on the repository, and they wait for it.
    Prune(PruneArgs),
    /// Restore a backup onto stopped nodes, in reverse stage order, behind guards.
    Restore(RestoreArgs),
    /// Prove a backup restorable: restore it into a worker's drill scratch space, check the
    /// files offline, start the database on them (when the worker's `[drill]` says how), ask it
    /// per table for rows and time range, then wipe the scratch. Recorded on the backup
    /// (`bkctl show`). Needs a worker of the source with a `[drill]` section.
    Drill {
        /// The backup id.
        #[arg(long = "backup", required_unless_present = "source", conflicts_with = "source")]
        backup_id: Option<String>,
        /// Drill the newest backup of this source instead.
        #[arg(long)]
        source: Option<String>,
        /// With --source: only backups in this repository.
        #[arg(long = "repo", requires = "source")]
        repository: Option<String>,
        /// Wait for the drill to end; exit non-zero if it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Verify a backup: every chunk exists, or (--deep) re-hashes to its name.
    Verify {
        /// The backup id.
        #[arg(long = "backup")]
        backup_id: String,
        /// Re-read and re-hash every chunk.
        #[arg(long)]
        deep: bool,
        /// Wait for the job to end; exit non-zero if it found problems.
        #[arg(long)]
        wait: bool,
    },
}

/// `bkctl submit prune`
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// The repository.
    #[arg(long = "repo")]
    pub(crate) repository: String,
    /// The source whose backups are pruned.
    #[arg(long)]
    pub(crate) source: String,
    /// Keep the N newest backups.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_last: u32,
    /// Keep the newest backup of each of the N most recent days that have one (UTC).
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_daily: u32,
    /// Likewise per week (Monday to Sunday).
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_weekly: u32,
    /// Likewise per calendar month.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_monthly: u32,
    /// List what would be forgotten and deleted, delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Repack a pack when more than this share of it belongs to no remaining backup (default
    /// 10%; 0: repack any pack with unused bytes).
    #[arg(long, value_parser = parse_percent)]
    pub(crate) max_unused: Option<u32>,
    /// Wait for the job to end; exit non-zero if it failed.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// `bkctl submit restore`
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup id.
    #[arg(long = "backup")]
    pub(crate) backup_id: String,
    /// Target store: `URL` for every node (one bucket or directory), or `NODE=URL` per node
    /// (`cluster=URL` for the catalog and licence objects). Repeatable.
    #[arg(long = "target", required = true)]
    pub(crate) targets: Vec<String>,
    /// You stopped every node (required for nodes without a registered HTTP endpoint).
    #[arg(long)]
    pub(crate) nodes_stopped: bool,
    /// Delete exactly the prefixes the restore writes (after every guard passed).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) wipe: bool,
    /// Continue an earlier restore into the same target: objects already right are kept.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Wait for the job to end; exit non-zero if it failed.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// `bkctl demo`
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Size of the generated sample cluster, e.g. `20MiB`, `1GiB`.
    #[arg(long, default_value = "16MiB")]
    pub(crate) size: String,
    /// Where to put the cluster, repository and coordinator data (default: a new temp dir).
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn test_a_command_help_lists_its_own_options_before_the_global_ones() {
        let mut command = Cli::command();
        command.build(); // Propagates the global options to the subcommands, as parsing does.
        let submit = command.find_subcommand_mut("submit").unwrap();
        let help = submit.find_subcommand_mut("backup").unwrap().render_help().to_string();
        let own = help.find("--source").unwrap();
        let connection = help.find("Connection:").unwrap_or_else(|| panic!("{help}"));
        assert!(own < connection, "{help}");
        assert!(help[connection..].contains("--endpoint"), "{help}");
        assert!(!help[..connection].contains("--ca-cert"), "{help}");
    }
}
