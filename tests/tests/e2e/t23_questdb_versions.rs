//! QuestDB across versions (7.x, 8.0.x, 8.1.0 with the legacy `SNAPSHOT` statements and no
//! `checkpoint_status()`; 8.1.1 and 9.x with `CHECKPOINT`) × every way a backup can go wrong.
//! Whatever happens, the server must end as bk found it: the last statement it received is a
//! release and it is not in checkpoint mode. Asserted on each peer's own statement log.
//!
//! Every version runs as its own source, server root, peer and worker in one sandbox, so a
//! failure path is exercised on all versions by the same jobs at the same time.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
use bk_tests::questdb_recovery::recover_on_start;
use bk_tests::sandbox::Sandbox;
use bk_tests::tree::hash_tree;
use serde_json::Value;

/// One of each: 7.x, 8.0.x and 8.1.0 (legacy statements; 7.x announces no version), 8.1.1 (the
/// first with CHECKPOINT and `checkpoint_status()`), 9.x.
const VERSIONS: [&str; 5] = ["7.3.10", "8.0.3", "8.1.0", "8.1.1", "9.0.0"];
const PASSWORD: &str = "pg-secret";

struct Server {
    version: &'static str,
    source: String,
    node: String,
    root: PathBuf,
    peer: Option<QuestDbPeer>,
}

impl Server {
    fn peer(&self) -> &QuestDbPeer {
        self.peer.as_ref().expect("the peer is running")
    }

    fn is_legacy(&self) -> bool {
        ["7.", "8.0.", "8.1.0"].iter().any(|prefix| self.version.starts_with(prefix))
    }

    /// Fails unless the server ended released and idle, printing what it received.
    fn assert_ended_released(&self, what: &str) {
        assert!(
            self.peer().ended_released(),
            "QuestDB {} after {what}: not left released and idle; statements: {:?}",
            self.version,
            self.peer().statements()
        );
    }
}

struct Matrix {
    sandbox: Sandbox,
    servers: Vec<Server>,
}

impl Matrix {
    /// A sandbox with `replicas` coordinators, a repository `repo`, and per version a root, a
    /// peer configured by `configure`, a source `qdb-<version>` and its worker.
    fn new(replicas: u64, configure: impl Fn(&mut PeerConfig)) -> Matrix {
        let mut sandbox = Sandbox::start_cluster(replicas, &[]).unwrap();
        let repository = format!("file://{}", sandbox.path().join("repository").display());
        sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
        let mut servers = Vec::new();
        for version in VERSIONS {
            let root = sandbox.path().join(format!("root-{version}"));
            generate_root(&root, 2, 2, 2048, 11).unwrap();
            let mut config = PeerConfig::version(&root, version);
            config.password = PASSWORD.to_string();
            configure(&mut config);
            let peer = QuestDbPeer::start(config).unwrap();
            let (source, node) = (format!("qdb-{version}"), format!("q-{version}"));
            sandbox
                .bkctl_json(&[
                    "source",
                    "add",
                    &source,
                    "--kind",
                    "questdb",
                    "--nodes",
                    &node,
                    "--pg",
                    peer.address(),
                ])
                .unwrap();
            let server = Server { version, source, node, root, peer: Some(peer) };
            start_worker(&mut sandbox, &server);
            servers.push(server);
        }
        Matrix { sandbox, servers }
    }

    /// Submits a backup of every server; returns the job ids in `VERSIONS` order.
    fn submit_backups(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| {
                let job = self
                    .sandbox
                    .bkctl_json(&["submit", "backup", "--source", &server.source, "--repo", "repo"])
                    .unwrap();
                job["job_id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn wait_all_in_checkpoint_mode(&self) {
        for server in &self.servers {
            let what = format!("QuestDB {} in checkpoint mode", server.version);
            self.sandbox
                .wait_until(Duration::from_secs(30), &what, || {
                    server.peer().in_checkpoint().then_some(())
                })
                .unwrap();
        }
    }

    /// Waits for every job to end; returns them in order.
    fn wait_ended(&self, job_ids: &[String]) -> Vec<Value> {
        job_ids
            .iter()
            .map(|job_id| {
                self.sandbox
                    .wait_until(Duration::from_secs(90), &format!("job {job_id} to end"), || {
                        let job = self.sandbox.bkctl_json(&["job", job_id]).ok()?;
                        let state = job["state"].as_str()?.to_string();
                        ["succeeded", "failed", "cancelled"]
                            .contains(&state.as_str())
                            .then_some(job)
                    })
                    .unwrap()
            })
            .collect()
    }

    fn assert_all_ended_released(&self, what: &str) {
        for server in &self.servers {
            server.assert_ended_released(what);
        }
    }
}

fn start_worker(sandbox: &mut Sandbox, server: &Server) {
    let section = worker_section(PASSWORD, "");
    sandbox.start_worker_with(&server.source, &server.node, &server.root, &section).unwrap();
}

fn sent(peer: &QuestDbPeer, statement: &str) -> usize {
    peer.statements().iter().filter(|sent| sent.eq_ignore_ascii_case(statement)).count()
}

#[test]
fn test_every_version_backs_up_and_restores_with_its_own_statements() {
    let mut matrix = Matrix::new(1, |_| {});
    let jobs = matrix.wait_ended(&matrix.submit_backups());
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        assert_eq!(job["state"], "succeeded", "QuestDB {}: {job}", server.version);
        let peer = server.peer();
        if server.is_legacy() {
            assert_eq!(
                (sent(peer, "SNAPSHOT PREPARE"), sent(peer, "SNAPSHOT COMPLETE")),
                (1, 1),
                "QuestDB {}: {:?}",
                server.version,
                peer.statements()
            );
            assert!(
                !peer.statements().iter().any(|sent| sent.contains("checkpoint_status")),
                "QuestDB {} has no checkpoint_status(), bk asked for it: {:?}",
                server.version,
                peer.statements()
            );
        } else {
            assert_eq!(
                (sent(peer, "CHECKPOINT CREATE"), sent(peer, "CHECKPOINT RELEASE")),
                (1, 1),
                "QuestDB {}: {:?}",
                server.version,
                peer.statements()
            );
        }
        server.assert_ended_released("a backup");
    }
    // Restore each, server stopped, and compare with the root at the checkpoint.
    for (index, job) in jobs.iter().enumerate() {
        let server = &matrix.servers[index];
        let mut expected = hash_tree(&server.root).unwrap();
        expected.retain(|key, _| {
            !["log/", "public/", "tmp/"].iter().any(|prefix| key.starts_with(prefix))
        });
        let checkpoint_dir = matrix.sandbox.path().join(format!("checkpoint-{}", server.version));
        for (key, bytes) in server.peer().last_checkpoint_files() {
            let path = checkpoint_dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        expected.extend(hash_tree(&checkpoint_dir).unwrap());
        // Recovery armed: `_restore` next to `.checkpoint/`; for a legacy snapshot a new instance
        // id in the conf (and the snapshot's, when it had none), checked by starting below.
        let armed_by_id = ["conf/server.conf", "snapshot/db/_snapshot"];
        if server.is_legacy() {
            expected.retain(|key, _| !armed_by_id.contains(&key.as_str()));
        } else {
            expected.insert("_restore".to_string(), (0, blake3::hash(b"").to_hex().to_string()));
        }
        matrix.servers[index].peer = None; // Stopped: its port refuses connections.
        let server = &matrix.servers[index];
        let target = matrix.sandbox.path().join(format!("restored-{}", server.version));
        let url = format!("file://{}", target.display());
        let backup_id = job["backup_id"].as_str().unwrap();
        let output = matrix
            .sandbox
            .bkctl(&["-o", "json", "submit", "restore", "--backup", backup_id, "--target", &url])
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let submitted: Value = serde_json::from_slice(&output.stdout).unwrap();
        let restore = matrix.wait_ended(&[submitted["job_id"].as_str().unwrap().to_string()]);
        assert_eq!(restore[0]["state"], "succeeded", "QuestDB {}: {}", server.version, restore[0]);
        let mut restored: BTreeMap<String, (u64, String)> = hash_tree(&target).unwrap();
        if server.is_legacy() {
            restored.retain(|key, _| !armed_by_id.contains(&key.as_str()));
        }
        assert_eq!(restored, expected, "QuestDB {}: restored root differs", server.version);
        // A server of the backup's version recovers from the restored checkpoint when it starts.
        let recovered = recover_on_start(&target, server.version, None);
        assert!(
            matches!(recovered, Ok(Some(_))),
            "QuestDB {} would not recover from the restored root: {recovered:?}",
            server.version
        );
    }
}

#[test]
fn test_a_failing_checkpoint_status_never_keeps_the_server_in_checkpoint_mode() {
    let matrix = Matrix::new(1, |config| config.status_fails = true);
    let jobs = matrix.wait_ended(&matrix.submit_backups());
    matrix.assert_all_ended_released("a backup whose checkpoint_status() fails");
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        // Without the status, ownership rests on the job's marker: the backup still works.
        assert_eq!(job["state"], "succeeded", "QuestDB {}: {job}", server.version);
    }
}

#[test]
fn test_a_failed_copy_releases_on_every_version() {
    let matrix = Matrix::new(1, |_| {});
    for server in &matrix.servers {
        // A name that is not UTF-8 cannot be an object key: copying db/ fails.
        let bad_name = std::ffi::OsString::from_vec(b"bad\xff".to_vec());
        std::fs::write(server.root.join("db").join(bad_name), b"x").unwrap();
    }
    let jobs = matrix.wait_ended(&matrix.submit_backups());
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        assert_eq!(job["state"], "failed", "QuestDB {}: {job}", server.version);
        assert!(job["error"].as_str().unwrap().contains("copy db/"), "{job}");
    }
    matrix.assert_all_ended_released("a failed copy");
    assert_eq!(matrix.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
}

#[test]
fn test_a_worker_killed_holding_the_checkpoint_releases_on_every_version() {
    let mut matrix = Matrix::new(1, |config| config.create_delay = Duration::from_secs(2));
    let job_ids = matrix.submit_backups();
    matrix.wait_all_in_checkpoint_mode();
    for index in 0..matrix.servers.len() {
        let node = matrix.servers[index].node.clone();
        matrix.sandbox.kill_worker(&node); // Before CREATE answered: the job may hold it.
    }
    for server in &matrix.servers {
        start_worker(&mut matrix.sandbox, server);
    }
    let jobs = matrix.wait_ended(&job_ids);
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        assert_eq!(job["state"], "succeeded", "QuestDB {}: {job}", server.version);
        let events = job["phases"][0]["tasks"][0]["events"].to_string();
        assert!(events.contains("earlier attempt of this job"), "{}: {events}", server.version);
    }
    matrix.assert_all_ended_released("a worker killed with -9");
}

#[test]
fn test_the_leader_killed_mid_backup_still_releases_on_every_version() {
    let mut matrix = Matrix::new(3, |config| config.create_delay = Duration::from_secs(1));
    let job_ids = matrix.submit_backups();
    matrix.wait_all_in_checkpoint_mode();
    let leader = matrix.sandbox.leader_id().expect("a leader");
    matrix.sandbox.kill_replica(leader);
    let jobs = matrix.wait_ended(&job_ids);
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        assert_eq!(job["state"], "succeeded", "QuestDB {}: {job}", server.version);
    }
    matrix.assert_all_ended_released("the coordinator leader killed with -9");
}

#[test]
fn test_cancel_in_checkpoint_mode_releases_on_every_version() {
    let matrix = Matrix::new(1, |config| config.create_delay = Duration::from_secs(1));
    let job_ids = matrix.submit_backups();
    matrix.wait_all_in_checkpoint_mode();
    for job_id in &job_ids {
        matrix.sandbox.bkctl_json(&["cancel", job_id]).unwrap();
    }
    let jobs = matrix.wait_ended(&job_ids);
    for (server, job) in matrix.servers.iter().zip(&jobs) {
        assert_eq!(job["state"], "cancelled", "QuestDB {}: {job}", server.version);
    }
    // Cleanup released before the job ended; a prepare whose CREATE answered after that
    // releases again when it sees the marker: wait for that last release.
    for server in &matrix.servers {
        matrix
            .sandbox
            .wait_until(Duration::from_secs(20), "the checkpoint released", || {
                server.peer().ended_released().then_some(())
            })
            .unwrap();
    }
    assert_eq!(matrix.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
    for job_id in &job_ids {
        let staging = matrix.sandbox.path().join("repository/staging").join(job_id);
        assert!(!staging.exists(), "staging of {job_id} was left behind");
        let again = matrix.sandbox.bkctl(&["cancel", job_id]).unwrap();
        assert!(!again.status.success(), "an ended job cannot be cancelled twice");
    }
    for job_id in &job_ids {
        let staging = matrix.sandbox.path().join("repository/staging").join(job_id);
        assert!(!staging.exists(), "staging of {job_id} was left behind");
        let again = matrix.sandbox.bkctl(&["cancel", job_id]).unwrap();
        assert!(!again.status.success(), "an ended job cannot be cancelled twice");
    }
}
