//! Seeded fault campaigns: for each seed, a deterministic draw of a cluster, a workload and
//! faults, run against real processes; then, with every fault healed, the invariants bk
//! promises are checked. What FoundationDB and TigerBeetle do with simulation, done here with
//! processes, so what it finds is what operators would meet.
//!
//! A schedule: 3 coordinator replicas, 4 workers on a generated InfluxDB 3 Enterprise tree
//! that a live writer keeps changing (WAL, snapshots, parquet, retention deletes), a file
//! repository (on its own tmpfs when run as root); a workload of backups (full and
//! incremental), deep verifies, restores, drills, prunes, passphrases added and removed, and
//! (in some seeds) a schedule running backups, backups with a prune, or drills every few
//! seconds, submitted while faults strike at
//! drawn moments: `kill -9` of the leader, a follower or a worker (restarted after a drawn
//! pause), `SIGSTOP`/`SIGCONT` of a worker, the repository's filesystem full (root only); on
//! S3 (each worker reaches Garage through a fault proxy of its own): `503 SlowDown`, resets,
//! latency, damaged uploads and cut-short responses on every link, or one worker's link gone
//! silent (a partition only that worker's timeouts notice). Then
//! every fault is healed and:
//! 1. every job ends (succeeded, failed with a reason, or cancelled) within a bound: every job
//!    the coordinator lists, the schedule's included;
//! 2. every committed backup verifies deep and restores to a tree InfluxDB can restart from
//!    (the tree at its consistency point cannot be known exactly under a live writer: the
//!    restartability invariants of [`crate::invariants`] are what a restore must give);
//! 3. `bkctl repo check --read-data 100` passes;
//! 4. the replicas agree: the same applied index, the same jobs and backups.
//!
//! `cargo run --release -p bk-tests --bin chaos -- --seeds 500`; a failing seed prints the line
//! that replays it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::invariants::check_tree;
use crate::layout::{generate, LayoutParams};
use crate::live::{LiveParams, LiveWriter};
use crate::sandbox::Sandbox;

/// A fault the campaign injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `kill -9` of the leader replica, restarted later.
    KillLeader,
    /// `kill -9` of a follower replica, restarted later.
    KillFollower,
    /// `kill -9` of a worker, restarted later.
    KillWorker,
    /// `SIGSTOP` of a worker, `SIGCONT` later.
    PauseWorker,
    /// The repository's filesystem fills up (a tmpfs shrunk to what it holds), grown later.
    /// Root only; never drawn elsewhere.
    FillRepositoryDisk,
    /// S3 answers every request `503 SlowDown` (an S3 repository only, as the ones below).
    S3SlowDown,
    /// S3 connections are reset mid-request.
    S3Reset,
    /// S3 answers a second late on every new connection.
    S3Latency,
    /// Every pack upload arrives with a flipped byte.
    S3DamageUploads,
    /// Every S3 response is cut after its first 4 KiB.
    S3TruncatedBodies,
    /// One worker's link to the store goes silent (a partition: nothing answers), the other
    /// workers' stays up.
    WorkerCutFromStore,
}

impl Fault {
    const ALL: [Fault; 11] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::KillWorker,
        Fault::PauseWorker,
        Fault::FillRepositoryDisk,
        Fault::S3SlowDown,
        Fault::S3Reset,
        Fault::S3Latency,
        Fault::S3DamageUploads,
        Fault::S3TruncatedBodies,
        Fault::WorkerCutFromStore,
    ];

    /// As printed.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 leader",
            Fault::KillFollower => "kill -9 follower",
            Fault::KillWorker => "kill -9 worker",
            Fault::PauseWorker => "SIGSTOP worker",
            Fault::FillRepositoryDisk => "repository disk full",
            Fault::S3SlowDown => "S3 503 SlowDown",
            Fault::S3Reset => "S3 connection resets",
            Fault::S3Latency => "S3 latency spike",
            Fault::S3DamageUploads => "S3 damaged uploads",
            Fault::S3TruncatedBodies => "S3 truncated bodies",
            Fault::WorkerCutFromStore => "worker cut off from S3",
        }
    }
}

/// What one schedule did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The database, when not InfluxDB 3 Enterprise (`questdb`: the PostgreSQL-wire peer).
    pub database: Option<&'static str>,
    /// Where the repository was: `file` or `s3` (Garage behind a proxy that injects faults).
    pub repository: &'static str,
    /// The schedule drawn, if any (its cron and what it runs).
    pub schedule: Option<String>,
    /// Faults injected.
    pub faults: Vec<Fault>,
    /// Jobs by kind and final state.
    pub jobs: BTreeMap<(String, String), usize>,
    /// Committed backups checked.
    pub backups: usize,
    /// Invariants that did not hold, each described.
    pub violations: Vec<String>,
    /// Jobs that failed, with their reasons (a job may fail under a fault; it must say why).
    pub failures: Vec<String>,
    /// Seconds spent in each stage of the schedule, in order (where a campaign's time goes).
    pub stages: Vec<(&'static str, f64)>,
    /// When the last stage ended.
    stage_started: Option<Instant>,
}

impl Outcome {
    /// One line: seed, faults, jobs, violations.
    pub fn line(&self) -> String {
        let mut line = format!("seed {:>4}: ", self.seed);
        if let Some(database) = self.database {
            let _ = write!(line, "{database} on ");
        }
        let _ = write!(line, "{} repository", self.repository);
        if let Some(schedule) = &self.schedule {
            let _ = write!(line, ", schedule {schedule}");
        }
        let _ = write!(line, "; {} fault(s) [", self.faults.len());
        line.push_str(&self.faults.iter().map(|fault| fault.name()).collect::<Vec<_>>().join(", "));
        line.push_str("]; jobs");
        for ((kind, state), count) in &self.jobs {
            let _ = write!(line, " {kind}/{state}={count}");
        }
        let _ = write!(
            line,
            "; {} backup(s) checked; {} violation(s)",
            self.backups,
            self.violations.len()
        );
        let total: f64 = self.stages.iter().map(|(_, seconds)| seconds).sum();
        let _ = write!(line, "; {total:.1} s (");
        let stages: Vec<String> =
            self.stages.iter().map(|(stage, seconds)| format!("{stage} {seconds:.1}")).collect();
        line.push_str(&stages.join(", "));
        line.push(')');
        line
    }

    /// Ends the current stage, naming it.
    fn stage(&mut self, name: &'static str) {
        let now = Instant::now();
        if let Some(started) = self.stage_started.replace(now) {
            self.stages.push((name, (now - started).as_secs_f64()));
        }
    }
}

/// A process the campaign stopped or killed, or a fault it switched on, to heal.
enum Wound {
    Replica(u64),
    Worker(String),
    Paused(String),
    DiskFull,
    /// An S3 fault on every worker's link, or (`Some(node)`) on one worker's.
    S3(Option<String>),
}

/// An S3 repository: Garage, reached by each worker through a proxy of its own, so a fault
/// can strike every worker's link or one worker's alone.
struct S3Repository {
    garage: crate::garage::Garage,
    /// Each node's proxy and its worker's `[repositories.repo]` table (credentials from a file,
    /// endpoint that proxy).
    links: BTreeMap<String, (crate::flaky_proxy::FlakyProxy, String)>,
}

impl S3Repository {
    /// `None` when Garage is not installed: the seed uses a file repository.
    fn start(dir: &Path, nodes: &[String]) -> Option<S3Repository> {
        let garage = crate::garage::Garage::start(&dir.join("garage")).ok()?;
        let secret_file = dir.join("garage").join("secret-key");
        std::fs::write(&secret_file, crate::garage::SECRET_ACCESS_KEY).ok()?;
        let upstream = garage.endpoint().trim_start_matches("http://").to_string();
        let mut links = BTreeMap::new();
        for node in nodes {
            let proxy = crate::flaky_proxy::FlakyProxy::start(&upstream, 0).ok()?;
            let table = format!(
                "[repositories.repo]\noptions = {}\n",
                garage.options_toml_at(&proxy.endpoint(), &secret_file)
            );
            links.insert(node.clone(), (proxy, table));
        }
        Some(S3Repository { garage, links })
    }

    /// Puts first among the violations that Garage itself died during the seed (the harness's
    /// store, not bk's fault): every check after that fails for the harness's reason.
    fn note_garage_exit(&mut self, outcome: &mut Outcome) {
        if let Some(status) = self.garage.exited() {
            let why = format!("harness: Garage exited during the seed ({status}); see garage.log");
            outcome.violations.insert(0, why);
        }
    }

    /// Switches `fault` on every worker's link, or on `node`'s alone.
    fn set_fault(&self, node: Option<&str>, fault: crate::flaky_proxy::ProxyFault) {
        let chosen = |name: &String| node.is_none_or(|node| node == name.as_str());
        for (_, (proxy, _)) in self.links.iter().filter(|(name, _)| chosen(name)) {
            proxy.set_fault(fault);
        }
    }
}

/// The repository's own filesystem: a tmpfs that a fault shrinks to what it holds (every
/// write then fails with ENOSPC) and healing grows back. Unmounted on drop. `None` where tmpfs
/// cannot be mounted (not root): the fault is then never drawn.
struct RepositoryDisk {
    mount: std::path::PathBuf,
}

/// The size the repository's tmpfs has when healthy.
const DISK_SIZE: &str = "size=1g";

impl RepositoryDisk {
    fn mount(path: &Path) -> Option<RepositoryDisk> {
        std::fs::create_dir_all(path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", DISK_SIZE, "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| RepositoryDisk { mount: path.to_path_buf() })
    }

    /// Quiet: a shrink below what a running backup has written since `df` is refused, and
    /// `fill` tries again.
    fn remount(&self, size: &str) -> bool {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,{size}"), "tmpfs"])
            .arg(&self.mount)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Shrinks the filesystem to what it holds now (plus a page or two). Backups write
    /// between the `df` and the remount, which then refuses a size below what the tmpfs
    /// holds: measure again, a few times, rather than drop the drawn fault.
    fn fill(&self) -> bool {
        (0..5).any(|_| {
            let used = std::process::Command::new("df")
                .args(["-B1", "--output=used"])
                .arg(&self.mount)
                .output()
                .ok()
                .and_then(|output| {
                    let text = String::from_utf8_lossy(&output.stdout).into_owned();
                    text.lines().nth(1)?.trim().parse::<u64>().ok()
                });
            used.is_some_and(|used| self.remount(&format!("size={}", used + 8192)))
        })
    }
}

impl Drop for RepositoryDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// What the workload and the checks need to know of the database under test.
struct Deployment<'a> {
    /// The source's name.
    source: &'a str,
    /// Its nodes, one worker each.
    nodes: &'a [String],
    /// The root of the nodes' store (what workers read).
    store: &'a Path,
    /// The workers' extra config (drill scratch, `[questdb]`).
    worker_extra: String,
    /// The S3 repository, whose table differs per worker (each its own link).
    s3: Option<&'a S3Repository>,
    /// Flags every restore takes (InfluxDB: the nodes are stopped).
    restore_flags: &'a [&'a str],
    /// Whether restores and drills are drawn while the workload runs (QuestDB: a restore is
    /// refused while the server answers, and a drill needs a server binary): drawn as verifies
    /// otherwise, and a drill schedule as a backup schedule.
    live_restores: bool,
}

impl Deployment<'_> {
    /// The config `node`'s worker starts with: the shared extra, then its repository table.
    fn worker_config(&self, node: &str) -> String {
        let table = self.s3.and_then(|s3| s3.links.get(node)).map(|(_, table)| table.as_str());
        format!("{}{}", self.worker_extra, table.unwrap_or(""))
    }

    /// Starts (or restarts) `node`'s worker.
    fn start_worker(&self, sandbox: &mut Sandbox, node: &str) -> anyhow::Result<()> {
        sandbox.start_worker_with(self.source, node, self.store, &self.worker_config(node))
    }
}

/// Where the repository lives, and its faults.
type RepositoryHandles<'a> = (Option<&'a RepositoryDisk>, Option<&'a S3Repository>);

/// Registers repository `repo`: on S3 under `prefix` (Garage behind the fault proxy) in half
/// the seeds where Garage is installed, else a file repository on its own tmpfs (as root).
fn add_repository(
    sandbox: &Sandbox,
    rng: &mut StdRng,
    (prefix, nodes): (&str, &[String]),
    outcome: &mut Outcome,
) -> anyhow::Result<(Option<RepositoryDisk>, Option<S3Repository>)> {
    let s3 = if rng.random_bool(0.5) { S3Repository::start(sandbox.path(), nodes) } else { None };
    let repository_dir = sandbox.path().join("repository");
    let (disk, repository) = match &s3 {
        Some(_) => (None, format!("s3://{}/{prefix}", crate::garage::BUCKET)),
        None => {
            (RepositoryDisk::mount(&repository_dir), format!("file://{}", repository_dir.display()))
        }
    };
    outcome.repository = if s3.is_some() { "s3" } else { "file" };
    sandbox.bkctl_json(&["repo", "add", "repo", &repository, "--chunk-size", "65536"])?;
    Ok((disk, s3))
}

/// Runs the schedule of `seed` in a fresh sandbox.
///
/// # Errors
/// When the cluster cannot be set up at all (not an invariant: nothing was tested).
pub fn run_schedule(seed: u64) -> anyhow::Result<Outcome> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcome = Outcome { seed, stage_started: Some(Instant::now()), ..Outcome::default() };
    let mut sandbox = Sandbox::start_cluster(3, &[("BK_LEASE_TIMEOUT", "3s")])?;
    let mut params = LayoutParams::enterprise(1 << 20);
    params.seed = seed;
    let store = sandbox.path().join("store");
    generate(&store, &params)?;
    sandbox.register_source("src", &params)?;
    let mut nodes = params.data_nodes.clone();
    nodes.extend(params.compactor_node.clone());
    let prefix = format!("chaos-{seed}");
    let (disk, mut s3) = add_repository(&sandbox, &mut rng, (&prefix, &nodes), &mut outcome)?;
    let deployment = Deployment {
        source: "src",
        nodes: &nodes,
        store: &store,
        // Every worker can drill (offline checks), into scratch of its own.
        worker_extra: format!(
            "[drill]\nscratch_dir = \"{}\"\n",
            sandbox.path().join("scratch").display()
        ),
        s3: s3.as_ref(),
        restore_flags: &["--nodes-stopped"],
        live_restores: true,
    };
    for node in &nodes {
        deployment.start_worker(&mut sandbox, node)?;
    }
    let live = LiveParams {
        seed,
        snapshot_every: rng.random_range(1..4),
        keep_snapshotted_wal: rng.random_range(0..3),
        ..LiveParams::default()
    };
    let writer = LiveWriter::spawn(
        &store,
        &nodes,
        "cluster1",
        live,
        Duration::from_millis(rng.random_range(2..20)),
    )?;
    let repository_handles = (disk.as_ref(), s3.as_ref());
    let job_ids =
        run_workload(&mut sandbox, &deployment, repository_handles, &mut rng, &mut outcome);
    let ticks = writer.stop()?;
    anyhow::ensure!(ticks > 0, "the live writer never ran");
    let restartable = |target: &Path| Ok(check_tree(target, &nodes, "cluster1")?);
    check_invariants(&sandbox, &deployment, &job_ids, &mut outcome, &mut |_| {}, &restartable);
    if let Some(s3) = s3.as_mut() {
        s3.note_garage_exit(&mut outcome);
    }
    // The sandbox's directory goes first; the tmpfs inside it is unmounted after.
    outcome.stage("agree");
    drop(sandbox);
    drop(disk);
    drop(s3);
    outcome.stage("teardown");
    Ok(outcome)
}

/// The QuestDB password the peer and the worker share.
const QUESTDB_PASSWORD: &str = "chaos-pg-password";

/// Runs the QuestDB schedule of `seed`: the same workload and faults on one QuestDB server (the
/// PostgreSQL-wire peer, a drawn version: 9.x with `CHECKPOINT`, or 8.0.x with `SNAPSHOT`) and
/// its worker. Restores and drills are not drawn while it runs (a restore is refused while the
/// server answers); after the workload: no checkpoint may be held, then the server stops and
/// every committed backup must restore to the root it copied.
///
/// # Errors
/// When the cluster cannot be set up at all.
pub fn run_questdb_schedule(seed: u64) -> anyhow::Result<Outcome> {
    use crate::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5155_4553_5444_4221);
    let mut outcome = Outcome {
        seed,
        database: Some("questdb"),
        stage_started: Some(Instant::now()),
        ..Outcome::default()
    };
    let mut sandbox = Sandbox::start_cluster(3, &[("BK_LEASE_TIMEOUT", "3s")])?;
    let root = sandbox.path().join("questdb-root");
    crate::questdb_layout::generate_root(&root, 3, 3, 4096, seed)?;
    let version = if rng.random_bool(0.5) { "9.0.3" } else { "8.0.3" };
    let mut config = PeerConfig::version(&root, version);
    config.password = QUESTDB_PASSWORD.to_string();
    config.create_delay = Duration::from_millis(rng.random_range(0..300));
    let peer = QuestDbPeer::start(config)?;
    let address = peer.address().to_string();
    sandbox.bkctl_json(&[
        "source", "add", "qdb", "--kind", "questdb", "--nodes", "qnode", "--pg", &address,
    ])?;
    let nodes = vec!["qnode".to_string()];
    let prefix = format!("chaos-questdb-{seed}");
    let (disk, mut s3) = add_repository(&sandbox, &mut rng, (&prefix, &nodes), &mut outcome)?;
    let deployment = Deployment {
        source: "qdb",
        nodes: &nodes,
        store: &root,
        worker_extra: format!("{}\n", worker_section(QUESTDB_PASSWORD, "")),
        s3: s3.as_ref(),
        restore_flags: &[],
        live_restores: false,
    };
    deployment.start_worker(&mut sandbox, "qnode")?;
    let expected = crate::tree::hash_tree(&root)?;
    let job_ids = run_workload(
        &mut sandbox,
        &deployment,
        (disk.as_ref(), s3.as_ref()),
        &mut rng,
        &mut outcome,
    );
    let mut peer = Some(peer);
    let mut release_and_stop = |outcome: &mut Outcome| {
        if peer.as_ref().is_some_and(QuestDbPeer::in_checkpoint) {
            outcome.violations.push("QuestDB was left in checkpoint mode".to_string());
        }
        peer = None; // The server stops: its port refuses connections, restores may run.
    };
    let restored = |target: &Path| restored_questdb_root(target, &expected, version);
    check_invariants(
        &sandbox,
        &deployment,
        &job_ids,
        &mut outcome,
        &mut release_and_stop,
        &restored,
    );
    if let Some(s3) = s3.as_mut() {
        s3.note_garage_exit(&mut outcome);
    }
    outcome.stage("agree");
    drop(sandbox);
    drop(disk);
    drop(s3);
    outcome.stage("teardown");
    Ok(outcome)
}

/// What is wrong with a restored QuestDB root: every file the root held (logs and temporary
/// files aside, which a backup leaves out; and `conf/server.conf`, where an 8.0 restore arms
/// recovery with a new instance id) restored byte for byte, and the server of `version`
/// recovering from it on start (`questdb_recovery`, QuestDB's start-up rules).
fn restored_questdb_root(
    target: &Path,
    expected: &BTreeMap<String, (u64, String)>,
    version: &str,
) -> anyhow::Result<Vec<String>> {
    let restored = crate::tree::hash_tree(target)?;
    let mut violations = Vec::new();
    let skipped = |key: &str| {
        ["log/", "public/", "tmp/"].iter().any(|prefix| key.starts_with(prefix))
            || key == "conf/server.conf"
    };
    for (key, file) in expected.iter().filter(|(key, _)| !skipped(key)) {
        match restored.get(key) {
            None => violations.push(format!("`{key}` is missing")),
            Some(found) if found != file => violations.push(format!("`{key}` differs")),
            Some(_) => {}
        }
    }
    match crate::questdb_recovery::recover_on_start(target, version, None) {
        Ok(Some(_)) => {}
        Ok(None) => violations.push(format!("QuestDB {version} starts without recovering it")),
        Err(refusal) => violations.push(format!("QuestDB {version} refuses to start: {refusal}")),
    }
    Ok(violations)
}

/// The drawn workload with faults between submissions, every fault healed at its end, the
/// schedule (if drawn) removed. Every job id the coordinator lists.
fn run_workload(
    sandbox: &mut Sandbox,
    deployment: &Deployment<'_>,
    repository: RepositoryHandles<'_>,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> Vec<String> {
    outcome.stage("setup");
    let schedule = draw_schedule(sandbox, deployment, rng);
    outcome.schedule = schedule.as_ref().map(|(_, what)| what.clone());
    let schedule = schedule.map(|(name, _)| name);
    // The workload, with faults between submissions.
    let mut job_ids = Vec::new();
    let mut wounds: Vec<(Instant, Wound)> = Vec::new();
    let steps = rng.random_range(4..8);
    for step in 0..steps {
        let submitted = if step > 0 && wounds.is_empty() && rng.random_bool(0.2) {
            // Key jobs are waited for, so only while nothing is wounded (a lost quorum would
            // hold the workload up).
            key_step(sandbox, rng)
        } else {
            submit_step(sandbox, deployment, rng, step == 0)
        };
        if let Some(job_id) = submitted {
            job_ids.push(job_id);
        }
        if rng.random_bool(0.6) {
            let fault = Fault::ALL[rng.random_range(0..Fault::ALL.len())];
            if let Some(wound) = strike(sandbox, fault, deployment.nodes, repository, rng) {
                outcome.faults.push(fault);
                let heal_after = Duration::from_millis(rng.random_range(200..4000));
                wounds.push((Instant::now() + heal_after, wound));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(50..1500)));
        heal_due(sandbox, &mut wounds, deployment, repository, false);
    }
    heal_due(sandbox, &mut wounds, deployment, repository, true);
    if let Some(name) = &schedule {
        // No new runs while the invariants are checked; a removal refused during a leader
        // change is tried again.
        let removed = sandbox.wait_until(Duration::from_secs(30), "the schedule's removal", || {
            sandbox.bkctl(&["schedule", "remove", name]).ok().filter(|out| out.status.success())
        });
        if removed.is_err() {
            outcome.violations.push(format!("schedule `{name}` could not be removed"));
        }
    }
    job_ids.extend(listed_jobs(sandbox));
    job_ids.sort();
    job_ids.dedup();
    outcome.stage("workload");
    job_ids
}

/// Submits one drawn job; `None` when there was nothing to submit (no backup yet) or the
/// submission was refused (during a leader change: that is not a job).
fn submit_step(
    sandbox: &Sandbox,
    deployment: &Deployment<'_>,
    rng: &mut StdRng,
    first: bool,
) -> Option<String> {
    let backups = committed_backups(sandbox);
    let kind = if first || backups.is_empty() { 0 } else { rng.random_range(0..7) };
    // Without live restores a restore or drill is a verify (the same draws: seeds replay).
    let kind = if !deployment.live_restores && (kind == 4 || kind == 5) { 3 } else { kind };
    let source = deployment.source.to_string();
    let any_backup = |rng: &mut StdRng| backups[rng.random_range(0..backups.len())].clone();
    let args: Vec<String> = match kind {
        0 | 1 => {
            vec!["backup".into(), "--source".into(), source.clone(), "--repo".into(), "repo".into()]
        }
        2 => vec![
            "backup".into(),
            "--source".into(),
            source.clone(),
            "--repo".into(),
            "repo".into(),
            "--full".into(),
        ],
        3 => vec!["verify".into(), "--backup".into(), any_backup(rng), "--deep".into()],
        4 => {
            let target = sandbox.path().join(format!("restore-{}", ulid::Ulid::new()));
            let url = format!("file://{}", target.display());
            let mut args =
                vec!["restore".into(), "--backup".into(), any_backup(rng), "--target".into(), url];
            args.extend(deployment.restore_flags.iter().map(|flag| flag.to_string()));
            args
        }
        5 => vec!["drill".into(), "--backup".into(), any_backup(rng)],
        _ => vec![
            "prune".into(),
            "--repo".into(),
            "repo".into(),
            "--source".into(),
            source.clone(),
            "--keep-last".into(),
            "2".into(),
        ],
    };
    let mut full = vec!["submit"];
    full.extend(args.iter().map(String::as_str));
    let job = sandbox.bkctl_json(&full).ok()?;
    job["job_id"].as_str().map(str::to_string)
}

/// Registers a schedule in half the seeds: backups, backups with a prune, or drills, every
/// few seconds. Its name (to remove it before the checks) and what it runs.
fn draw_schedule(
    sandbox: &Sandbox,
    deployment: &Deployment<'_>,
    rng: &mut StdRng,
) -> Option<(String, String)> {
    if !rng.random_bool(0.5) {
        return None;
    }
    let cron = format!("*/{} * * * * *", rng.random_range(3..7));
    let mut args =
        vec!["schedule", "add", "chaos", "--source", deployment.source, "--repo", "repo", "--cron"];
    args.push(&cron);
    let what = match rng.random_range(0..3) {
        0 => "backups",
        1 => {
            args.extend(["--prune-keep-last", "2"]);
            "backups+prune"
        }
        _ if deployment.live_restores => {
            args.push("--drill");
            "drills"
        }
        _ => "backups",
    };
    let added = sandbox.bkctl(&args).ok().filter(|out| out.status.success());
    added.map(|_| ("chaos".to_string(), format!("`{cron}` {what}")))
}

/// Adds a passphrase (from a file the workers can read) or removes one added before (never
/// the one the workers hold: that is refused, and would lock them out). The job's id.
fn key_step(sandbox: &Sandbox, rng: &mut StdRng) -> Option<String> {
    // Key jobs wait their turn behind the repository lock: never longer than a minute here.
    let limit = Duration::from_secs(60);
    let listed = sandbox.bkctl_json_within(limit, &["repo", "key", "list", "repo"]).ok()?;
    let others: Vec<String> = listed["keys"]
        .as_array()?
        .iter()
        .filter(|key| key["current"] == false)
        .filter_map(|key| key["key_id"].as_str().map(str::to_string))
        .collect();
    let done = if others.is_empty() || rng.random_bool(0.5) {
        let file = sandbox.path().join(format!("passphrase-{}", ulid::Ulid::new()));
        std::fs::write(&file, format!("chaos passphrase {}\n", rng.random::<u64>())).ok()?;
        let file = file.display().to_string();
        sandbox
            .bkctl_json_within(limit, &["repo", "key", "add", "repo", "--new-password-file", &file])
    } else {
        let key_id = &others[rng.random_range(0..others.len())];
        sandbox.bkctl_json_within(limit, &["repo", "key", "remove", "repo", key_id])
    };
    done.ok()?["job_id"].as_str().map(str::to_string)
}

/// Every job the coordinator lists (the workload's and the schedule's).
fn listed_jobs(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .bkctl_json(&["jobs", "--limit", "1000"])
        .ok()
        .and_then(|jobs| jobs.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|job| job["id"].as_str().map(str::to_string))
        .collect()
}

fn committed_backups(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .bkctl_json(&["backups"])
        .ok()
        .and_then(|backups| backups.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|backup| {
            backup["id"].as_str().or_else(|| backup["backup_id"].as_str()).map(str::to_string)
        })
        .collect()
}

/// Injects `fault`; what to heal, or `None` when it could not be injected (no leader known).
fn strike(
    sandbox: &mut Sandbox,
    fault: Fault,
    nodes: &[String],
    (disk, s3): RepositoryHandles<'_>,
    rng: &mut StdRng,
) -> Option<Wound> {
    use crate::flaky_proxy::ProxyFault;
    let switch = |proxy_fault: ProxyFault| {
        s3.map(|s3| {
            s3.set_fault(None, proxy_fault);
            Wound::S3(None)
        })
    };
    match fault {
        Fault::FillRepositoryDisk => disk?.fill().then_some(Wound::DiskFull),
        Fault::S3SlowDown => switch(ProxyFault::SlowDown),
        Fault::S3Reset => switch(ProxyFault::Reset),
        Fault::S3Latency => switch(ProxyFault::Latency),
        Fault::S3DamageUploads => switch(ProxyFault::DamageUploads),
        Fault::S3TruncatedBodies => switch(ProxyFault::TruncateResponses),
        Fault::WorkerCutFromStore => {
            let s3 = s3?;
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            s3.set_fault(Some(&node), ProxyFault::Unreachable);
            Some(Wound::S3(Some(node)))
        }
        Fault::KillLeader | Fault::KillFollower => {
            let leader = sandbox.leader_id()?;
            let id = if fault == Fault::KillLeader {
                leader
            } else {
                [1, 2, 3].into_iter().filter(|id| *id != leader).nth(rng.random_range(0..2))?
            };
            sandbox.kill_replica(id);
            Some(Wound::Replica(id))
        }
        Fault::KillWorker => {
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            sandbox.kill_worker(&node);
            Some(Wound::Worker(node))
        }
        Fault::PauseWorker => {
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            sandbox.signal_worker(&node, "STOP").then_some(Wound::Paused(node))
        }
    }
}

/// Heals the wounds that are due (all of them with `all`).
fn heal_due(
    sandbox: &mut Sandbox,
    wounds: &mut Vec<(Instant, Wound)>,
    deployment: &Deployment<'_>,
    (disk, s3): RepositoryHandles<'_>,
    all: bool,
) {
    let now = Instant::now();
    let mut kept = Vec::new();
    for (due, wound) in wounds.drain(..) {
        if !all && due > now {
            kept.push((due, wound));
            continue;
        }
        match wound {
            Wound::Replica(id) => {
                let _ = sandbox.start_replica(id);
            }
            Wound::Worker(node) => {
                let _ = deployment.start_worker(sandbox, &node);
            }
            Wound::Paused(node) => {
                sandbox.signal_worker(&node, "CONT");
            }
            Wound::DiskFull => {
                if let Some(disk) = disk {
                    disk.remount(DISK_SIZE);
                }
            }
            Wound::S3(node) => {
                if let Some(s3) = s3 {
                    s3.set_fault(node.as_deref(), crate::flaky_proxy::ProxyFault::None);
                }
            }
        }
    }
    *wounds = kept;
}

/// The invariants, once every fault is healed. `before_restores` runs once every job has
/// ended (QuestDB: no checkpoint held, then the server stops); `restored` judges a restored
/// tree (the violations it finds).
fn check_invariants(
    sandbox: &Sandbox,
    deployment: &Deployment<'_>,
    job_ids: &[String],
    outcome: &mut Outcome,
    before_restores: &mut dyn FnMut(&mut Outcome),
    restored: &dyn Fn(&Path) -> anyhow::Result<Vec<String>>,
) {
    // 1. Every job ends.
    for job_id in job_ids {
        let ended =
            sandbox.wait_until(Duration::from_secs(180), &format!("job {job_id} to end"), || {
                let job = sandbox.bkctl_json(&["job", job_id]).ok()?;
                let state = job["state"].as_str()?.to_string();
                ["succeeded", "failed", "cancelled"].contains(&state.as_str()).then_some(job)
            });
        match ended {
            Ok(job) => {
                let key = (
                    job["kind"].as_str().unwrap_or("?").to_string(),
                    job["state"].as_str().unwrap_or("?").to_string(),
                );
                *outcome.jobs.entry(key.clone()).or_default() += 1;
                if job["state"] == "failed" {
                    match job["error"].as_str().filter(|error| !error.is_empty()) {
                        None => {
                            outcome.violations.push(format!("job {job_id} failed without a reason"))
                        }
                        Some(error) => {
                            outcome.failures.push(format!("{} {job_id}: {error}", key.0))
                        }
                    }
                }
            }
            Err(_) => outcome
                .violations
                .push(format!("job {job_id} is stuck: not ended 180 s after every fault healed")),
        }
    }
    outcome.stage("jobs end");
    before_restores(outcome);
    // 2. Every committed backup verifies deep and restores to a restartable tree.
    for backup_id in committed_backups(sandbox) {
        outcome.backups += 1;
        let verify = run_waited(sandbox, &["verify", "--backup", &backup_id, "--deep"]);
        if let Err(error) = verify {
            outcome
                .violations
                .push(format!("committed backup {backup_id} fails deep verify: {error}"));
            continue;
        }
        let target = sandbox.path().join(format!("check-{backup_id}"));
        let url = format!("file://{}", target.display());
        let mut restore = vec!["restore", "--backup", &backup_id, "--target", &url];
        restore.extend_from_slice(deployment.restore_flags);
        match run_waited(sandbox, &restore) {
            Err(error) => outcome
                .violations
                .push(format!("committed backup {backup_id} does not restore: {error}")),
            Ok(_) => match restored(&target) {
                Ok(violations) if violations.is_empty() => {}
                Ok(violations) => outcome.violations.push(format!(
                    "backup {backup_id} restores to a tree the database cannot restart from: {}",
                    violations.join("; ")
                )),
                Err(error) => outcome
                    .violations
                    .push(format!("cannot read the restore of {backup_id}: {error}")),
            },
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    outcome.stage("verify+restore");
    // 3. The repository is sound.
    match sandbox.bkctl(&["-o", "json", "repo", "check", "repo", "--read-data", "100"]) {
        Ok(output) if output.status.success() => {}
        Ok(output) => outcome.violations.push(format!(
            "repo check fails: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(error) => outcome.violations.push(format!("repo check could not run: {error}")),
    }
    // The workers' passphrase still opens the repository, and its key is the current one.
    let current = sandbox.bkctl_json(&["repo", "key", "list", "repo"]).ok().and_then(|listed| {
        Some(listed["keys"].as_array()?.iter().filter(|key| key["current"] == true).count())
    });
    if current != Some(1) {
        outcome
            .violations
            .push(format!("the workers' key is not the one current key: {current:?}"));
    }
    outcome.stage("repo check");
    // 4. The replicas agree.
    let agreed = sandbox.wait_until(Duration::from_secs(30), "the replicas to agree", || {
        let applied: Vec<u64> = (1..=3)
            .filter_map(|id| {
                sandbox.bkctl_json_at(sandbox.replica_endpoint(id), &["cluster", "status"]).ok()
            })
            .filter_map(|status| status["last_applied_index"].as_u64())
            .collect();
        (applied.len() == 3 && applied.iter().all(|index| *index == applied[0])).then_some(applied)
    });
    if agreed.is_err() {
        outcome
            .violations
            .push("the replicas did not reach the same applied index within 30 s".to_string());
    } else {
        let views: Vec<Value> = (1..=3)
            .filter_map(|id| {
                sandbox.bkctl_json_at(sandbox.replica_endpoint(id), &["--local", "backups"]).ok()
            })
            .collect();
        if views.len() != 3 || views.iter().any(|view| view != &views[0]) {
            outcome.violations.push("the replicas list different backups".to_string());
        }
    }
}

/// Submits `args` with `--wait`; the job's error when it did not succeed.
fn run_waited(sandbox: &Sandbox, args: &[&str]) -> Result<Value, String> {
    let mut full = vec!["-o", "json", "submit"];
    full.extend_from_slice(args);
    full.push("--wait");
    let started = Instant::now();
    let output = sandbox.bkctl(&full).map_err(|error| error.to_string())?;
    let job: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if std::env::var_os("CHAOS_DEBUG").is_some() {
        eprintln!("{:?} {:.1}s {}", args, started.elapsed().as_secs_f64(), job);
    }
    if output.status.success() {
        Ok(job)
    } else {
        Err(job["error"]
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned(), str::to_string))
    }
}
