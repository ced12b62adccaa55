//! Real bk processes for black-box tests: a `bk-coordinator` and `bk-worker`s on loopback, each
//! binding port 0 and announcing its address on its first stdout line, driven with `bkctl`.
//!
//! The binaries are the workspace's own (`target/<profile>/`), built by `cargo test` /
//! `cargo nextest run` because their packages have integration tests. Processes are killed when
//! the sandbox is dropped; on a failing test the sandbox directory (with every process's log) is
//! kept and its path printed (always, with `BK_KEEP_SANDBOX=1`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// The passphrase every sandbox worker holds for every repository (`BK_REPOSITORY_PASSWORD`,
/// unless a test gives workers another). Tests grep logs and records for it.
pub const REPOSITORY_PASSPHRASE: &str = "sandbox-passphrase-1c9e5b27";

/// A coordinator cluster and its workers, as real processes.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    /// Replica `i + 1` at index `i`.
    replicas: Vec<Replica>,
    /// Extra environment for every coordinator (e.g. Raft snapshot settings).
    coordinator_env: Vec<(String, String)>,
    /// The bearer token bkctl presents (`BK_TOKEN`), if any.
    token: Option<String>,
    /// Extra environment for bkctl (e.g. `BK_CA_CERT`).
    bkctl_env: Vec<(String, String)>,
    /// Extra environment for workers started from now on (e.g. `AWS_*` credentials).
    worker_env: Vec<(String, String)>,
    /// The repository passphrase workers started from now on get (`BK_REPOSITORY_PASSWORD`).
    worker_passphrase: Option<String>,
    workers: Vec<(String, Child)>,
}

struct Replica {
    address: String,
    child: Option<Child>,
}

/// Path of a workspace binary built in the same profile as the running executable: a test
/// executable lives in `target/<profile>/deps`, the benchmark in `target/<profile>`.
///
/// # Panics
/// When the binary has not been built, with the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe.parent().expect("an executable lives in a directory");
    let profile_dir = if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir };
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "`{}` not found: build it first with `cargo build --bins`",
        path.display()
    );
    path
}

impl Sandbox {
    /// Starts a single-replica coordinator with a short lease timeout.
    ///
    /// # Errors
    /// When the coordinator cannot start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_cluster(1, &[])
    }

    /// Starts `replicas` coordinator replicas: replica 1 initialises the cluster, the others
    /// start with `--join` and are added with `bkctl cluster add-replica`. `env` is given to
    /// every replica (e.g. `BK_RAFT_SNAPSHOT_AFTER_ENTRIES`).
    ///
    /// # Errors
    /// When a replica cannot start or join.
    pub fn start_cluster(replicas: u64, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_cluster_with(replicas, env, &[])
    }

    /// As [`Sandbox::start_cluster`], with `bkctl_env` given to every bkctl from the start (the
    /// replicas are added with bkctl, so a TLS cluster needs its client files here).
    ///
    /// # Errors
    /// When a replica cannot start or join.
    pub fn start_cluster_with(
        replicas: u64,
        env: &[(&str, &str)],
        bkctl_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bk-sandbox-").tempdir()?;
        let coordinator_env =
            env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let mut sandbox = Self {
            dir: Some(dir),
            replicas: Vec::new(),
            coordinator_env,
            token: None,
            bkctl_env: Vec::new(),
            worker_env: Vec::new(),
            worker_passphrase: Some(REPOSITORY_PASSPHRASE.to_string()),
            workers: Vec::new(),
        };
        sandbox.set_bkctl_env(bkctl_env);
        for id in 1..=replicas {
            let (child, address) = sandbox.spawn_replica(id, "127.0.0.1:0", id > 1)?;
            sandbox.replicas.push(Replica { address, child: Some(child) });
        }
        for id in 2..=replicas {
            let address = sandbox.replica_endpoint(id).to_string();
            sandbox.bkctl_json(&["cluster", "add-replica", &id.to_string(), &address])?;
        }
        Ok(sandbox)
    }

    fn spawn_replica(&self, id: u64, listen: &str, join: bool) -> anyhow::Result<(Child, String)> {
        let mut command = Command::new(binary("bk-coordinator"));
        command
            .args(["--listen", listen, "--replica-id", &id.to_string(), "--data-dir"])
            .arg(self.path().join(format!("coordinator-{id}")))
            .env("BK_LEASE_TIMEOUT", "3s")
            .env("BK_RAFT_HEARTBEAT_INTERVAL", "100ms")
            .env("BK_RAFT_ELECTION_TIMEOUT", "600ms")
            .envs(self.coordinator_env.iter().map(|(key, value)| (key, value)));
        if join {
            command.arg("--join");
        }
        let (child, first_line) =
            spawn_announcing(command, &self.path().join(format!("coordinator-{id}.log")))?;
        let address = first_line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line from bk-coordinator: {first_line}"))?
            .to_string();
        Ok((child, address))
    }

    /// Starts a new replica `id` with `--join` and adds it with `bkctl cluster add-replica`.
    /// Returns its address and the add command's JSON answer.
    ///
    /// # Errors
    /// When it cannot start or join.
    pub fn add_replica(&mut self, id: u64) -> anyhow::Result<(String, Value)> {
        anyhow::ensure!(
            id as usize == self.replicas.len() + 1,
            "replica ids are assigned in order"
        );
        let (child, address) = self.spawn_replica(id, "127.0.0.1:0", true)?;
        self.replicas.push(Replica { address: address.clone(), child: Some(child) });
        let answer = self.bkctl_json(&["cluster", "add-replica", &id.to_string(), &address])?;
        Ok((address, answer))
    }

    /// Gives bkctl `env` (replacing what was given before), e.g. `BK_CA_CERT` for a TLS cluster.
    pub fn set_bkctl_env(&mut self, env: &[(&str, &str)]) {
        self.bkctl_env =
            env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
    }

    /// Gives workers started from now on `env` (replacing what was given before).
    pub fn set_worker_env(&mut self, env: Vec<(String, String)>) {
        self.worker_env = env;
    }

    /// Gives workers started from now on `passphrase` as their default repository passphrase
    /// (`BK_REPOSITORY_PASSWORD`), or none.
    pub fn set_worker_passphrase(&mut self, passphrase: Option<&str>) {
        self.worker_passphrase = passphrase.map(str::to_string);
    }

    /// Makes bkctl present `token` (or none) from now on.
    pub fn set_token(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_string);
    }

    /// Kills replica `id` with SIGKILL, as a crash would.
    pub fn kill_replica(&mut self, id: u64) {
        if let Some(mut child) =
            self.replicas.get_mut(id as usize - 1).and_then(|replica| replica.child.take())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts replica `id` again on its address and data directory.
    ///
    /// # Errors
    /// When it cannot start, or comes back on another address.
    pub fn start_replica(&mut self, id: u64) -> anyhow::Result<()> {
        let address = self.replica_endpoint(id).to_string();
        let (child, started_at) = self.spawn_replica(id, &address, id > 1)?;
        anyhow::ensure!(
            started_at == address,
            "replica {id} restarted at {started_at}, not {address}"
        );
        self.replicas[id as usize - 1].child = Some(child);
        Ok(())
    }

    /// Kills the (first) coordinator with SIGKILL and starts it again on the same address and
    /// data directory.
    ///
    /// # Errors
    /// When it cannot start again.
    pub fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.kill_replica(1);
        self.start_replica(1)
    }

    /// The replica the cluster currently follows, from `bkctl cluster status`.
    pub fn leader_id(&self) -> Option<u64> {
        let status = self.bkctl_json(&["cluster", "status"]).ok()?;
        status["leader_id"].as_u64().filter(|leader| *leader != 0)
    }

    /// The address of replica `id`.
    pub fn replica_endpoint(&self, id: u64) -> &str {
        &self.replicas[id as usize - 1].address
    }

    /// The sandbox's directory (logs, coordinator data; tests put their trees here too).
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("the directory lives as long as the sandbox")
    }

    /// Every replica's address, comma-separated (what bkctl and workers are given).
    pub fn endpoint(&self) -> String {
        self.replicas.iter().map(|replica| replica.address.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Starts a worker for `node` of `source`, whose store is the directory `store_root`.
    ///
    /// # Errors
    /// When the worker cannot start.
    pub fn start_worker(
        &mut self,
        source: &str,
        node: &str,
        store_root: &Path,
    ) -> anyhow::Result<()> {
        self.start_worker_with(source, node, store_root, "")
    }

    /// Starts a worker as [`Sandbox::start_worker`] does, with `extra` TOML appended to its
    /// top-level keys (e.g. a `[questdb]` section; the `[store]` table comes after it).
    ///
    /// # Errors
    /// When the worker cannot start.
    pub fn start_worker_with(
        &mut self,
        source: &str,
        node: &str,
        store_root: &Path,
        extra: &str,
    ) -> anyhow::Result<()> {
        let store = format!("[store]\nurl = \"file://{}\"\n", store_root.display());
        self.start_worker_toml(source, node, extra, &store)
    }

    /// Starts a worker whose config is the sandbox's top-level keys, then `extra` (top-level
    /// keys), then `tables` (TOML tables: `[store]`, `[repositories.NAME]`, …).
    ///
    /// # Errors
    /// When the worker cannot start.
    pub fn start_worker_toml(
        &mut self,
        source: &str,
        node: &str,
        extra: &str,
        tables: &str,
    ) -> anyhow::Result<()> {
        let config_path = self.path().join(format!("worker-{node}.toml"));
        let config = format!(
            "version = 1\nsource = \"{source}\"\nnode = \"{node}\"\ncoordinator_endpoints = [{}]\n\
             heartbeat_interval = \"500ms\"\n{extra}\n{tables}",
            self.replicas
                .iter()
                .map(|replica| format!("\"{}\"", replica.address))
                .collect::<Vec<_>>()
                .join(", "),
        );
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary("bk-worker"));
        command
            .arg("--config")
            .arg(&config_path)
            .env_remove("BK_REPOSITORY_PASSWORD")
            .envs(self.worker_passphrase.iter().map(|value| ("BK_REPOSITORY_PASSWORD", value)))
            // Keys made by tests derive in milliseconds, not production's fraction of a second.
            .env("BK_ARGON2_MEMORY_KIB", "1024")
            .env("BK_ARGON2_ITERATIONS", "1")
            // The local index cache stays in the sandbox (a restarted worker finds its own).
            .env("BK_CACHE_DIR", self.path().join(format!("cache-{node}")))
            .envs(self.worker_env.iter().cloned());
        let (child, _) =
            spawn_announcing(command, &self.path().join(format!("worker-{node}.log")))?;
        self.workers.push((node.to_string(), child));
        Ok(())
    }

    /// The peak resident memory (Linux `VmHWM`) of the worker of `node`, in bytes; `None` when it
    /// is not running or the platform has no `/proc`.
    pub fn worker_peak_rss_bytes(&self, node: &str) -> Option<u64> {
        let (_, child) = self.workers.iter().find(|(name, _)| name == node)?;
        peak_rss_bytes(child)
    }

    /// The environment the worker of `node` runs with now (Linux `/proc/PID/environ`: after
    /// the worker started itself again with its allocator settings); `None` when it is not
    /// running or the platform has no `/proc`.
    pub fn worker_environment(&self, node: &str) -> Option<Vec<(String, String)>> {
        let (_, child) = self.workers.iter().find(|(name, _)| name == node)?;
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).ok()?;
        let pairs = environ.split(|byte| *byte == 0).filter_map(|pair| {
            let (name, value) = std::str::from_utf8(pair).ok()?.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        });
        Some(pairs.collect())
    }

    /// Resets every worker's peak resident memory (`/proc/PID/clear_refs`), so that
    /// [`Sandbox::worker_peak_rss_bytes`] reports the peak since: one job's, not the run's.
    pub fn reset_worker_peak_rss(&self) {
        for (_, child) in &self.workers {
            let _ = std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5");
        }
    }

    /// CPU time (user and system) replica `id` used so far, seconds; `None` when it is not
    /// running or the platform has no `/proc`.
    pub fn replica_cpu_seconds(&self, id: u64) -> Option<f64> {
        let child = self.replicas.get(id as usize - 1)?.child.as_ref()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?;
        // Fields after the command (which may hold spaces) start after the last `)`.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// The peak resident memory of replica `id`, as [`Sandbox::worker_peak_rss_bytes`].
    pub fn replica_peak_rss_bytes(&self, id: u64) -> Option<u64> {
        peak_rss_bytes(self.replicas.get(id as usize - 1)?.child.as_ref()?)
    }

    /// Kills the worker of `node` (SIGKILL), as a crash would.
    pub fn kill_worker(&mut self, node: &str) {
        if let Some(index) = self.workers.iter().position(|(name, _)| name == node) {
            let (_, mut child) = self.workers.remove(index);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the worker of `node`; whether it was running.
    pub fn signal_worker(&self, node: &str, signal: &str) -> bool {
        let Some((_, child)) = self.workers.iter().find(|(name, _)| name == node) else {
            return false;
        };
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Runs `bkctl` against the coordinator.
    ///
    /// # Errors
    /// When bkctl cannot be run at all.
    pub fn bkctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.bkctl_at(&self.endpoint(), args)
    }

    /// Runs `bkctl` against `endpoint` only (e.g. one replica, to read its own status).
    ///
    /// # Errors
    /// When bkctl cannot be run at all.
    pub fn bkctl_at(&self, endpoint: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(binary("bkctl"))
            .arg("--endpoint")
            .arg(endpoint)
            .args(args)
            .env_remove("BK_TOKEN")
            .envs(self.token.iter().map(|token| ("BK_TOKEN", token)))
            .envs(self.bkctl_env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .output()
            .context("failed to run bkctl")
    }

    /// Runs `bkctl -o json …`, requires success, and parses its output.
    ///
    /// # Errors
    /// When bkctl fails (the error carries its stderr) or prints no JSON.
    pub fn bkctl_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.bkctl_json_at(&self.endpoint(), args)
    }

    /// As [`Sandbox::bkctl_json`], against `endpoint` only.
    ///
    /// # Errors
    /// As [`Sandbox::bkctl_json`].
    pub fn bkctl_json_at(&self, endpoint: &str, args: &[&str]) -> anyhow::Result<Value> {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let output = self.bkctl_at(endpoint, &full)?;
        if !output.status.success() {
            bail!("bkctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!("bkctl {args:?} printed no JSON: {}", String::from_utf8_lossy(&output.stdout))
        })
    }

    /// As [`Sandbox::bkctl_json`], but gives up after `limit` (the process is killed): for
    /// commands that wait for a job the workload must not be held up by.
    ///
    /// # Errors
    /// When bkctl fails, prints no JSON, or has not finished within `limit`.
    pub fn bkctl_json_within(&self, limit: Duration, args: &[&str]) -> anyhow::Result<Value> {
        let mut child = Command::new(binary("bkctl"))
            .arg("--endpoint")
            .arg(self.endpoint())
            .args(["-o", "json"])
            .args(args)
            .env_remove("BK_TOKEN")
            .envs(self.token.iter().map(|token| ("BK_TOKEN", token)))
            .envs(self.bkctl_env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to run bkctl")?;
        let deadline = Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("bkctl {args:?} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("bkctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Registers the cluster `params` describes as source `name` (Enterprise when it has a
    /// cluster id and a compactor, Core otherwise).
    ///
    /// # Errors
    /// When bkctl refuses it.
    pub fn register_source(
        &self,
        name: &str,
        params: &crate::layout::LayoutParams,
    ) -> anyhow::Result<()> {
        let nodes = params.data_nodes.join(",");
        let mut args = vec!["source", "add", name];
        match (&params.cluster_id, &params.compactor_node) {
            (Some(cluster_id), Some(compactor)) => args.extend([
                "--kind",
                "influxdb3-enterprise",
                "--cluster-id",
                cluster_id,
                "--compactor",
                compactor,
            ]),
            _ => args.extend(["--kind", "influxdb3-core"]),
        }
        args.extend(["--nodes", &nodes]);
        self.bkctl_json(&args).map(drop)
    }

    /// Polls `probe` until it returns `Some`, failing after `timeout` with `what`.
    ///
    /// # Errors
    /// When `timeout` passes first, naming `what`.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe() {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; logs in {}",
                    self.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let children = self
            .workers
            .iter_mut()
            .map(|(_, child)| child)
            .chain(self.replicas.iter_mut().filter_map(|replica| replica.child.as_mut()));
        for child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("BK_KEEP_SANDBOX").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("sandbox kept for inspection: {}", dir.keep().display());
            }
        }
    }
}

fn peak_rss_bytes(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `command`'s program and arguments, for messages. Never its environment: `Command`'s `Debug`
/// prints the variables it sets, and those carry tokens and object-store secrets.
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Spawns `command` with stderr appended to `log`, and returns it with its first stdout line.
fn spawn_announcing(mut command: Command, log: &Path) -> anyhow::Result<(Child, String)> {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("failed to spawn `{}`", command_line(&command)))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut first_line = String::new();
    BufReader::new(stdout).read_line(&mut first_line)?;
    if first_line.is_empty() {
        let _ = child.wait();
        bail!(
            "`{}` exited before announcing itself; see {}",
            command_line(&command),
            log.display()
        );
    }
    Ok((child, first_line.trim().to_string()))
}
