//! Filesystem and volume snapshots (`[snapshot]`): QuestDB held for the snapshot, not the copy.
//!
//! On real filesystems on loop devices (btrfs; XFS with reflinks; an LVM thin volume when the
//! kernel has device-mapper): `CHECKPOINT CREATE`, the snapshot, `CHECKPOINT RELEASE` all
//! before the first copy task starts, the copy from the snapshot, the snapshot deleted by the
//! cleanup, and a restore byte-identical to the root at the snapshot. The `command` method
//! with a script, and a worker killed with -9 between CREATE and RELEASE and between the
//! snapshot and its deletion: neither a held checkpoint nor a snapshot is left behind.
//! InfluxDB 3 Enterprise on btrfs, written live while it is backed up: one snapshot per node,
//! nothing to repair, a restartable restore.
//! Loop devices need root; as another user the tests say so and do nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bk_tests::invariants::check_tree;
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::live::{LiveParams, LiveWriter};
use bk_tests::loopfs::{unavailable, Kind, LoopFilesystem};
use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
use bk_tests::sandbox::Sandbox;
use bk_tests::tree::hash_tree;
use serde_json::Value;

use crate::support::run_job;

const PASSWORD: &str = "pg-secret";

/// A QuestDB root, its peer, a source `qdb` (node `q`) and a repository `repo`.
struct Setup {
    sandbox: Sandbox,
    server: Option<QuestDbPeer>,
    root: PathBuf,
}

impl Setup {
    fn new(sandbox: Sandbox, root: PathBuf) -> Setup {
        generate_root(&root, 3, 3, 64 * 1024, 28).unwrap();
        let mut config = PeerConfig::new(&root);
        config.password = PASSWORD.to_string();
        let peer = QuestDbPeer::start(config).unwrap();
        let repository = format!("file://{}", sandbox.path().join("repository").display());
        sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
        let add = ["source", "add", "qdb", "--kind", "questdb", "--nodes", "q", "--pg"];
        sandbox.bkctl_json(&[&add[..], &[peer.address()]].concat()).unwrap();
        Setup { sandbox, server: Some(peer), root }
    }

    fn peer(&self) -> &QuestDbPeer {
        self.server.as_ref().expect("the server runs until the restore")
    }

    fn start_worker(&mut self, extra: &str) {
        let section = worker_section(PASSWORD, "");
        let config = format!("{extra}\n{section}");
        self.sandbox.start_worker_with("qdb", "q", &self.root, &config).unwrap();
    }

    fn submit_backup(&self) -> String {
        let job = self
            .sandbox
            .bkctl_json(&["submit", "backup", "--source", "qdb", "--repo", "repo"])
            .unwrap();
        job["job_id"].as_str().unwrap().to_string()
    }

    fn wait_ended(&self, job_id: &str) -> Value {
        self.sandbox
            .wait_until(Duration::from_secs(120), &format!("job {job_id} to end"), || {
                let job = self.sandbox.bkctl_json(&["job", job_id]).ok()?;
                ["succeeded", "failed", "cancelled"]
                    .contains(&job["state"].as_str()?)
                    .then_some(job)
            })
            .unwrap()
    }

    /// The root as the backup must hold it: the live root (unchanged since), the checkpoint's
    /// files, without what a backup leaves out.
    fn expected_tree(&self) -> BTreeMap<String, (u64, String)> {
        let mut expected = hash_tree(&self.root).unwrap();
        expected.retain(|key, _| {
            !["log/", "public/", "tmp/"].iter().any(|prefix| key.starts_with(prefix))
        });
        let checkpoint_dir = self.sandbox.path().join("checkpoint-files");
        for (key, bytes) in self.peer().last_checkpoint_files() {
            let path = checkpoint_dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        expected.extend(hash_tree(&checkpoint_dir).unwrap());
        expected
    }

    /// Stops the server, restores `backup_id` into a new directory; returns its tree without
    /// `_restore`, and the tree expected.
    #[allow(clippy::type_complexity)]
    fn stop_and_restore(
        &mut self,
        backup_id: &str,
    ) -> (BTreeMap<String, (u64, String)>, BTreeMap<String, (u64, String)>) {
        let expected = self.expected_tree();
        self.server = None; // Stopped: its port refuses connections.
        let target = self.sandbox.path().join(format!("restored-{backup_id}"));
        let url = format!("file://{}", target.display());
        let output = self
            .sandbox
            .bkctl(&["-o", "json", "submit", "restore", "--backup", backup_id, "--target", &url])
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let submitted: Value = serde_json::from_slice(&output.stdout).unwrap();
        let restore = self.wait_ended(submitted["job_id"].as_str().unwrap());
        assert_eq!(restore["state"], "succeeded", "{restore}");
        let mut tree = hash_tree(&target).unwrap();
        assert!(tree.remove("_restore").is_some(), "the restore armed recovery");
        (tree, expected)
    }

    /// When the peer received `statement` last (ms since the epoch).
    fn received(&self, statement: &str) -> u64 {
        self.peer()
            .statement_times()
            .iter()
            .rev()
            .find(|(sent, _)| sent.eq_ignore_ascii_case(statement))
            .map(|(_, at)| *at)
            .unwrap_or_else(|| {
                panic!("`{statement}` never received: {:?}", self.peer().statements())
            })
    }
}

fn snapshot_section(method: &str, scratch: &Path) -> String {
    format!(
        "[snapshot]\nmethod = \"{method}\"\nscratch = \"{}\"\ntimeout = \"60s\"\n",
        scratch.display()
    )
}

fn leftovers(scratch: &Path) -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // A reflink clone is retired into `.bk-trash/` and deleted in the background: it counts
    // until it is gone.
    let retired =
        names(&scratch.join(".bk-trash")).into_iter().map(|name| format!(".bk-trash/{name}"));
    names(scratch).into_iter().filter(|name| name.starts_with("bk-")).chain(retired).collect()
}

/// Backs up with `configured` (which must resolve to `method`), checks the server was released before the copy started, the
/// snapshot is gone after the job, and the restore is the root at the snapshot.
fn back_up_from_a_snapshot(mut setup: Setup, configured: &str, method: &str, scratch: &Path) {
    std::fs::create_dir_all(scratch).unwrap();
    setup.start_worker(&snapshot_section(configured, scratch));
    let job = run_job(&setup.sandbox, &["submit", "backup", "--source", "qdb", "--repo", "repo"]);
    let backup_id = job["backup_id"].as_str().unwrap();
    let backup = setup.sandbox.bkctl_json(&["show", backup_id]).unwrap();
    let copy =
        backup["phases"].as_array().unwrap().iter().find(|phase| phase["name"] == "copy").unwrap();
    let released = setup.received("CHECKPOINT RELEASE");
    assert!(
        setup.received("CHECKPOINT CREATE") <= released
            && released <= copy["started_at_ms"].as_u64().unwrap(),
        "{method}: the checkpoint must be released before the copy starts; statements {:?}, backup {backup}",
        setup.peer().statement_times()
    );
    assert!(backup["snapshot"].as_str().unwrap().starts_with(method), "{backup}");
    assert!(backup["checkpoint_held_ms"].as_u64().is_some(), "{backup}");
    assert!(setup.peer().ended_released(), "{:?}", setup.peer().statements());
    setup
        .sandbox
        .wait_until(Duration::from_secs(30), "the snapshot to be deleted", || {
            leftovers(scratch).is_empty().then_some(())
        })
        .unwrap();
    let (restored, expected) = setup.stop_and_restore(backup_id);
    assert_eq!(restored, expected, "{method}: restored root differs");
}

/// A loop filesystem of `kind` under a new sandbox, or `None` (said why) when none can be made.
fn filesystem(kind: Kind) -> Option<(Sandbox, LoopFilesystem)> {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return None;
    }
    let sandbox = Sandbox::start().unwrap();
    match LoopFilesystem::create(sandbox.path(), "fs", kind, 512) {
        Ok(filesystem) => Some((sandbox, filesystem)),
        Err(error) if kind == Kind::LvmThinXfs && error.contains("device-mapper") => {
            eprintln!("skipped: the kernel has no device-mapper, so no LVM here: {error}");
            None
        }
        Err(error) => panic!("cannot make a {kind:?} loop filesystem: {error}"),
    }
}

#[test]
fn test_questdb_is_released_before_the_copy_with_a_btrfs_snapshot() {
    let Some((sandbox, filesystem)) = filesystem(Kind::Btrfs) else { return };
    let root = filesystem.subvolume("questdb").unwrap();
    let scratch = filesystem.mount.join("snapshots");
    back_up_from_a_snapshot(Setup::new(sandbox, root), "btrfs", "btrfs", &scratch);
}

#[test]
fn test_questdb_is_released_before_the_copy_with_a_reflink_clone_on_xfs_chosen_by_auto() {
    let Some((sandbox, filesystem)) = filesystem(Kind::Xfs) else { return };
    let root = filesystem.mount.join("questdb");
    let scratch = filesystem.mount.join("snapshots");
    // Not btrfs, not LVM: `auto` settles on a reflink clone.
    back_up_from_a_snapshot(Setup::new(sandbox, root), "auto", "reflink", &scratch);
}

#[test]
fn test_questdb_is_released_before_the_copy_with_an_lvm_thin_snapshot() {
    let Some((sandbox, filesystem)) = filesystem(Kind::LvmThinXfs) else { return };
    let root = filesystem.mount.join("questdb");
    let scratch = sandbox.path().join("lvm-mounts");
    back_up_from_a_snapshot(Setup::new(sandbox, root), "lvm", "lvm", &scratch);
}

#[test]
fn test_a_store_that_is_not_a_subvolume_is_refused_and_released() {
    let Some((sandbox, filesystem)) = filesystem(Kind::Btrfs) else { return };
    let root = filesystem.mount.join("plain-directory");
    let scratch = filesystem.mount.join("snapshots");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut setup = Setup::new(sandbox, root);
    setup.start_worker(&snapshot_section("btrfs", &scratch));
    let job = setup.wait_ended(&setup.submit_backup());
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("is on btrfs but is not a subvolume root"), "{error}");
    assert!(error.contains("btrfs subvolume create"), "the error says how to fix it: {error}");
    setup
        .sandbox
        .wait_until(Duration::from_secs(30), "the checkpoint to be released", || {
            setup.peer().ended_released().then_some(())
        })
        .unwrap();
    assert!(leftovers(&scratch).is_empty());
}

/// A `command` snapshot: `create` copies the root (holding while `hold` exists, after making
/// the copy, so a test can kill the worker mid-create) and logs; `delete` removes and logs.
fn command_section(dir: &Path) -> String {
    let create =
        "echo \"create $BK_SNAPSHOT_NAME\" >> \"$LOG\"; rm -rf \"$SNAPS/$BK_SNAPSHOT_NAME\"; \
         cp -a \"$BK_SNAPSHOT_SOURCE\" \"$SNAPS/$BK_SNAPSHOT_NAME\"; touch \"$SNAPS/created\"; \
         for i in $(seq 600); do [ -e \"$SNAPS/hold\" ] || break; sleep 0.1; done; \
         echo \"log line that is not the path\"; echo \"$SNAPS/$BK_SNAPSHOT_NAME\"";
    let delete = "echo \"delete $BK_SNAPSHOT_NAME $BK_SNAPSHOT_PATH\" >> \"$LOG\"; rm -rf \"$SNAPS/$BK_SNAPSHOT_NAME\"";
    let bind = |line: &str| {
        line.replace("$LOG", &dir.join("commands.log").display().to_string())
            .replace("$SNAPS", &dir.display().to_string())
            .replace('"', "\\\"")
    };
    format!(
        "[snapshot]\nmethod = \"command\"\ncreate = \"{}\"\ndelete = \"{}\"\ntimeout = \"90s\"\n",
        bind(create),
        bind(delete)
    )
}

fn task_state(job: &Value, phase: &str) -> Option<String> {
    let phases = job["phases"].as_array()?;
    let phase = phases.iter().find(|candidate| candidate["name"] == phase)?;
    phase["tasks"][0]["state"].as_str().map(str::to_string)
}

#[test]
fn test_a_command_snapshot_survives_a_worker_killed_mid_create_and_mid_copy() {
    let sandbox = Sandbox::start().unwrap();
    let root = sandbox.path().join("questdb");
    let snaps = sandbox.path().join("command-snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let mut setup = Setup::new(sandbox, root);
    let section = command_section(&snaps);
    let log = || std::fs::read_to_string(snaps.join("commands.log")).unwrap_or_default();

    // Killed between CREATE and RELEASE: the server is held and the snapshot half made.
    std::fs::write(snaps.join("hold"), b"").unwrap();
    setup.start_worker(&section);
    let job_id = setup.submit_backup();
    setup
        .sandbox
        .wait_until(Duration::from_secs(60), "the create command to have copied", || {
            (snaps.join("created").exists() && setup.peer().in_checkpoint()).then_some(())
        })
        .unwrap();
    setup.sandbox.kill_worker("q");
    assert!(setup.peer().in_checkpoint(), "killed while holding: still in checkpoint mode");
    std::fs::remove_file(snaps.join("hold")).unwrap();
    std::fs::remove_file(snaps.join("created")).unwrap();
    setup.start_worker(&section);
    let job = setup.wait_ended(&job_id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(setup.peer().ended_released(), "{:?}", setup.peer().statements());
    setup
        .sandbox
        .wait_until(Duration::from_secs(30), "every snapshot deleted", || {
            leftovers(&snaps).is_empty().then_some(())
        })
        .unwrap();
    assert!(log().contains("delete bk-"), "the cleanup ran the delete command: {}", log());
    let backup = setup.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    assert!(backup["snapshot"].as_str().unwrap().starts_with("command"), "{backup}");

    // Killed between the snapshot and its deletion: the copy is slowed to stand there.
    setup.sandbox.kill_worker("q");
    setup.start_worker(&format!("max_bytes_per_second = 262144\n{section}"));
    let job_id = setup.submit_backup();
    setup
        .sandbox
        .wait_until(Duration::from_secs(60), "the snapshot taken and the copy running", || {
            let job = setup.sandbox.bkctl_json(&["job", &job_id]).ok()?;
            (task_state(&job, "prepare")? == "succeeded" && !leftovers(&snaps).is_empty())
                .then_some(())
        })
        .unwrap();
    assert!(!setup.peer().in_checkpoint(), "released as soon as the snapshot was taken");
    setup.sandbox.kill_worker("q");
    setup.start_worker(&section);
    let job = setup.wait_ended(&job_id);
    assert_eq!(job["state"], "succeeded", "{job}");
    setup
        .sandbox
        .wait_until(Duration::from_secs(30), "the snapshot deleted after the crash", || {
            leftovers(&snaps).is_empty().then_some(())
        })
        .unwrap();
    assert!(setup.peer().ended_released(), "{:?}", setup.peer().statements());
    let (restored, expected) = setup.stop_and_restore(job["backup_id"].as_str().unwrap());
    assert_eq!(restored, expected, "restored root differs");
}

/// Every event of every task of a job.
fn job_events(job: &Value) -> Vec<String> {
    let tasks =
        job["phases"].as_array().into_iter().flatten().flat_map(|phase| phase["tasks"].as_array());
    tasks
        .flatten()
        .flat_map(|task| task["events"].as_array())
        .flatten()
        .map(|event| event.to_string())
        .collect()
}

#[test]
fn test_a_live_influxdb_cluster_on_btrfs_is_copied_from_one_snapshot_per_node() {
    let Some((sandbox, filesystem)) = filesystem(Kind::Btrfs) else { return };
    let mut sandbox = sandbox;
    let store = filesystem.subvolume("store").unwrap();
    let scratch = filesystem.mount.join("snapshots");
    std::fs::create_dir_all(&scratch).unwrap();
    let params = LayoutParams::enterprise(1 << 20);
    generate(&store, &params).unwrap();
    sandbox.register_source("src", &params).unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository, "--chunk-size", "65536"]).unwrap();
    let mut nodes = params.data_nodes.clone();
    nodes.extend(params.compactor_node.clone());
    for node in &nodes {
        sandbox
            .start_worker_with("src", node, &store, &snapshot_section("btrfs", &scratch))
            .unwrap();
    }
    // Without `flushoncommit` a btrfs snapshot can hold files renamed into place without their
    // data: refused for InfluxDB, saying how to mount it.
    let job =
        sandbox.bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo"]).unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let failed = sandbox
        .wait_until(Duration::from_secs(60), "the backup to fail", || {
            let job = sandbox.bkctl_json(&["job", &job_id]).ok()?;
            (job["state"] == "failed").then_some(job)
        })
        .unwrap();
    assert!(failed["error"].as_str().unwrap().contains("-o flushoncommit"), "{failed}");
    filesystem.remount("flushoncommit").unwrap();
    // The live writer of t09 that makes most live backups repair: a snapshot every tick, every
    // snapshotted WAL file deleted at once. From a snapshot there is nothing to repair.
    let live =
        LiveParams { seed: 3, snapshot_every: 1, keep_snapshotted_wal: 0, ..LiveParams::default() };
    for attempt in 1..=3 {
        let writer =
            LiveWriter::spawn(&store, &nodes, "cluster1", live.clone(), Duration::from_millis(1))
                .unwrap();
        let job = run_job(&sandbox, &["submit", "backup", "--source", "src", "--repo", "repo"]);
        assert!(writer.stop().unwrap() > 0, "the live writer never ran");
        assert_eq!(job["phases"][0]["name"], "snapshot", "attempt {attempt}: {job}");
        let events = job_events(&job);
        assert!(
            !events.iter().any(|event| event.contains("repair round")),
            "attempt {attempt}: {events:?}"
        );
        for node in &nodes {
            let copied = format!("node `{node}` copied from btrfs snapshot");
            assert!(
                node == params.compactor_node.as_ref().unwrap()
                    || events.iter().any(|event| event.contains(&copied) && event.contains("nothing to repair")),
                "attempt {attempt}: {copied} not in {events:?}"
            );
        }
        sandbox
            .wait_until(Duration::from_secs(30), "every node's snapshot deleted", || {
                leftovers(&scratch).is_empty().then_some(())
            })
            .unwrap();
        let target = sandbox.path().join(format!("restored-{attempt}"));
        let url = format!("file://{}", target.display());
        let backup_id = job["backup_id"].as_str().unwrap();
        run_job(
            &sandbox,
            &["submit", "restore", "--backup", backup_id, "--target", &url, "--nodes-stopped"],
        );
        let violations = check_tree(&target, &nodes, "cluster1").unwrap();
        assert!(
            violations.is_empty(),
            "attempt {attempt}: restored tree is not restartable: {violations:?}"
        );
    }
}
