//! QuestDB: checkpoint over PG wire, copy the root, release no matter what; restore with
//! `_restore`. The server is a protocol-level peer (no QuestDB can be installed here).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{PeerConfig, QuestDbPeer};
use bk_tests::sandbox::Sandbox;
use bk_tests::tree::hash_tree;
use serde_json::Value;

const PASSWORD: &str = "s3cret-pg-password";

struct QuestDbSetup {
    sandbox: Sandbox,
    root: PathBuf,
    peer: Option<QuestDbPeer>,
}

impl QuestDbSetup {
    /// A QuestDB root, a peer serving it, a coordinator, source `qdb` and repository `repo`.
    fn new(configure: impl FnOnce(&mut PeerConfig)) -> QuestDbSetup {
        let sandbox = Sandbox::start().unwrap();
        let root = sandbox.path().join("questdb-root");
        generate_root(&root, 3, 3, 4096, 5).unwrap();
        let mut config = PeerConfig::new(&root);
        config.password = PASSWORD.to_string();
        configure(&mut config);
        let peer = QuestDbPeer::start(config).unwrap();
        let address = peer.address().to_string();
        sandbox
            .bkctl_json(&[
                "source", "add", "qdb", "--kind", "questdb", "--nodes", "qnode", "--pg", &address,
            ])
            .unwrap();
        let repository = format!("file://{}", sandbox.path().join("repository").display());
        sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
        QuestDbSetup { sandbox, root, peer: Some(peer) }
    }

    fn start_worker(&mut self, password: &str, extra: &str) {
        let section = format!("[questdb]\nuser = \"admin\"\npassword = \"{password}\"\n{extra}");
        let root = self.root.clone();
        self.sandbox.start_worker_with("qdb", "qnode", &root, &section).unwrap();
    }

    fn peer(&self) -> &QuestDbPeer {
        self.peer.as_ref().expect("the peer is running")
    }

    fn backup(&self, extra: &[&str]) -> (bool, Value) {
        let mut args =
            vec!["-o", "json", "submit", "backup", "--source", "qdb", "--repo", "repo", "--wait"];
        args.extend_from_slice(extra);
        let output = self.sandbox.bkctl(&args).unwrap();
        (output.status.success(), serde_json::from_slice(&output.stdout).unwrap())
    }

    /// Submits a backup and waits until the server is in checkpoint mode; returns the job id.
    fn backup_until_checkpoint_mode(&self) -> String {
        let submitted = self
            .sandbox
            .bkctl_json(&["submit", "backup", "--source", "qdb", "--repo", "repo"])
            .unwrap();
        let condition = || self.peer().in_checkpoint().then_some(());
        self.sandbox
            .wait_until(Duration::from_secs(20), "QuestDB in checkpoint mode", condition)
            .unwrap();
        submitted["job_id"].as_str().unwrap().to_string()
    }

    fn restore(&self, backup_id: &str, target: &std::path::Path) -> (bool, Value) {
        let url = format!("file://{}", target.display());
        let output = self
            .sandbox
            .bkctl(&[
                "-o", "json", "submit", "restore", "--backup", backup_id, "--target", &url,
                "--wait",
            ])
            .unwrap();
        (output.status.success(), serde_json::from_slice(&output.stdout).unwrap())
    }
}

fn sent(peer: &QuestDbPeer, statement: &str) -> usize {
    peer.statements().iter().filter(|sent| sent.eq_ignore_ascii_case(statement)).count()
}

#[test]
fn test_backup_and_restore_round_trip_gives_the_root_at_the_checkpoint() {
    let mut setup = QuestDbSetup::new(|_| {});
    setup.start_worker(PASSWORD, "");
    let (succeeded, job) = setup.backup(&[]);
    assert!(succeeded, "backup failed: {job}");
    let phases: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["prepare", "copy", "release", "commit"]);
    assert_eq!(
        (sent(setup.peer(), "CHECKPOINT CREATE"), sent(setup.peer(), "CHECKPOINT RELEASE")),
        (1, 1)
    );
    assert!(!setup.peer().in_checkpoint(), "the server was left in checkpoint mode");
    let backup = setup.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    let excluded: Vec<&str> = backup["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap())
        .collect();
    assert!(
        excluded.contains(&"log/") && excluded.contains(&"public/") && excluded.contains(&"tmp/"),
        "{excluded:?}"
    );

    // What the root held at the checkpoint: today's files plus the checkpoint's metadata copies.
    let mut expected: BTreeMap<String, (u64, String)> = hash_tree(&setup.root).unwrap();
    expected
        .retain(|key, _| !["log/", "public/", "tmp/"].iter().any(|prefix| key.starts_with(prefix)));
    let checkpoint = setup.sandbox.path().join("expected-checkpoint");
    for (key, bytes) in checkpoint_files_of(&job, &setup) {
        let path = checkpoint.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    expected.extend(hash_tree(&checkpoint).unwrap());
    expected.insert("_restore".to_string(), (0, blake3::hash(b"").to_hex().to_string()));

    setup.peer = None; // The server is stopped: its port refuses connections.
    let target = setup.sandbox.path().join("restored-root");
    let (succeeded, restore_job) = setup.restore(job["backup_id"].as_str().unwrap(), &target);
    assert!(succeeded, "restore failed: {restore_job}");
    assert_eq!(
        hash_tree(&target).unwrap(),
        expected,
        "the restored root is not the root at the checkpoint"
    );
    let phases: Vec<&str> = restore_job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["preflight", "restore", "trigger"]);
    let advice = restore_job["phases"][2]["tasks"][0]["warnings"].to_string();
    assert!(advice.contains("start QuestDB now") && advice.contains("_restore"), "{advice}");
}

/// The checkpoint files as backed up (the peer deleted them on release): read back from the
/// repository through the manifest, the way a user would inspect a backup.
fn checkpoint_files_of(job: &Value, setup: &QuestDbSetup) -> Vec<(String, Vec<u8>)> {
    let repository = setup.sandbox.path().join("repository");
    let manifest_path =
        repository.join(format!("backups/{}/manifest", job["backup_id"].as_str().unwrap()));
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let mut files = Vec::new();
    for segment in manifest["segments"].as_array().unwrap() {
        let bytes = std::fs::read(repository.join(segment["key"].as_str().unwrap())).unwrap();
        for line in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
            let entry: Value = serde_json::from_slice(line).unwrap();
            let key = entry["key"].as_str().unwrap();
            if key.starts_with(".checkpoint/") {
                let mut content = Vec::new();
                for chunk in entry["chunks"].as_array().unwrap() {
                    let hash = chunk.as_str().unwrap();
                    content.extend(
                        std::fs::read(repository.join(format!("chunks/{}/{hash}", &hash[..2])))
                            .unwrap(),
                    );
                }
                files.push((key.to_string(), content));
            }
        }
    }
    assert!(!files.is_empty(), "the backup holds no .checkpoint/ files");
    files
}

#[test]
fn test_servers_before_8_1_1_get_the_legacy_snapshot_statements() {
    let mut setup = QuestDbSetup::new(|config| config.version = "7.3.10".to_string());
    setup.start_worker(PASSWORD, "");
    let (succeeded, job) = setup.backup(&[]);
    assert!(succeeded, "backup failed: {job}");
    assert_eq!(
        (sent(setup.peer(), "SNAPSHOT PREPARE"), sent(setup.peer(), "SNAPSHOT COMPLETE")),
        (1, 1)
    );
    assert_eq!(sent(setup.peer(), "CHECKPOINT CREATE"), 0);
    let copied = job["phases"][1]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["label"] == "copy snapshot/")
        .unwrap()
        .clone();
    assert!(copied["objects_done"].as_u64().unwrap() > 0, "snapshot/ was not copied: {copied}");
}

#[test]
fn test_a_checkpoint_held_by_someone_else_fails_clearly_and_is_left_alone_unless_adopted() {
    let mut setup = QuestDbSetup::new(|_| {});
    setup.start_worker(PASSWORD, "");
    setup.peer().force_checkpoint().unwrap();
    let (succeeded, job) = setup.backup(&[]);
    assert!(!succeeded, "backup took someone else's checkpoint: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("someone else holds the checkpoint") && error.contains("--adopt-checkpoint"),
        "{error}"
    );
    assert!(setup.peer().in_checkpoint(), "bk released a checkpoint it did not create");
    assert_eq!(sent(setup.peer(), "CHECKPOINT RELEASE"), 0);

    let (succeeded, job) = setup.backup(&["--adopt-checkpoint"]);
    assert!(succeeded, "adopting backup failed: {job}");
    assert!(!setup.peer().in_checkpoint(), "the adopted checkpoint was not released");
}

#[test]
fn test_a_failed_copy_still_releases_the_checkpoint_and_commits_nothing() {
    let mut setup = QuestDbSetup::new(|_| {});
    // A file name that is not UTF-8 cannot be listed as an object key: the copy of db/ fails.
    let bad_name = std::ffi::OsString::from_vec(b"bad\xff".to_vec());
    std::fs::write(setup.root.join("db").join(bad_name), b"x").unwrap();
    setup.start_worker(PASSWORD, "");
    let (succeeded, job) = setup.backup(&[]);
    assert!(!succeeded, "backup with an unreadable file succeeded: {job}");
    assert!(job["error"].as_str().unwrap().contains("copy db/"), "{job}");
    assert!(!setup.peer().in_checkpoint(), "the checkpoint was not released after the failure");
    assert_eq!(sent(setup.peer(), "CHECKPOINT RELEASE"), 1);
    assert_eq!(setup.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
}

#[test]
fn test_a_worker_killed_after_create_releases_when_it_comes_back() {
    let mut setup = QuestDbSetup::new(|config| config.create_delay = Duration::from_secs(2));
    setup.start_worker(PASSWORD, "");
    let job_id = setup.backup_until_checkpoint_mode();
    setup.sandbox.kill_worker("qnode"); // Dies holding the checkpoint, before CREATE answered.
    assert!(setup.peer().in_checkpoint());
    setup.start_worker(PASSWORD, "");
    let output = setup.sandbox.bkctl(&["-o", "json", "watch", &job_id]).unwrap();
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(output.status.success(), "job failed after the worker came back: {job}");
    assert!(!setup.peer().in_checkpoint(), "the checkpoint was not released");
    assert!(
        job["phases"][0]["tasks"][0]["events"].to_string().contains("earlier attempt of this job"),
        "{job}"
    );
}

#[test]
fn test_restore_is_refused_while_the_pg_port_answers() {
    let mut setup = QuestDbSetup::new(|_| {});
    setup.start_worker(PASSWORD, "");
    let (succeeded, job) = setup.backup(&[]);
    assert!(succeeded, "backup failed: {job}");
    let target = setup.sandbox.path().join("restored-root");
    let (succeeded, restore_job) = setup.restore(job["backup_id"].as_str().unwrap(), &target);
    assert!(!succeeded, "restored while QuestDB runs: {restore_job}");
    assert!(restore_job["error"].as_str().unwrap().contains("is running"), "{restore_job}");
    assert!(!target.exists(), "a refused restore wrote into the target");
}

#[test]
fn test_a_wrong_password_is_a_clear_error_and_leaves_no_checkpoint() {
    let mut setup = QuestDbSetup::new(|_| {});
    setup.start_worker("not-the-password", "");
    let (succeeded, job) = setup.backup(&[]);
    assert!(!succeeded);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("refused the login of user `admin`")
            && error.contains("questdb.password_file"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "the password leaked into the error");
    assert!(!setup.peer().in_checkpoint());
    assert_eq!(sent(setup.peer(), "CHECKPOINT CREATE"), 0);
}

#[test]
fn test_too_little_free_disk_refuses_the_checkpoint() {
    let mut setup = QuestDbSetup::new(|_| {});
    setup.start_worker(PASSWORD, "min_free_disk_percent = 100.5");
    let (succeeded, job) = setup.backup(&[]);
    assert!(!succeeded);
    assert!(job["error"].as_str().unwrap().contains("questdb.min_free_disk_percent"), "{job}");
    assert_eq!(sent(setup.peer(), "CHECKPOINT CREATE"), 0);
}

#[test]
fn test_cancel_during_the_checkpoint_releases_it_and_commits_nothing() {
    let mut setup = QuestDbSetup::new(|config| config.create_delay = Duration::from_secs(1));
    setup.start_worker(PASSWORD, "");
    let job_id = setup.backup_until_checkpoint_mode();
    let cancelled = setup.sandbox.bkctl_json(&["cancel", &job_id]).unwrap();
    assert_eq!(cancelled["cancelled"], true);
    let output = setup.sandbox.bkctl(&["-o", "json", "watch", &job_id]).unwrap();
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(!output.status.success(), "watching a cancelled job must exit non-zero");
    setup
        .sandbox
        .wait_until(Duration::from_secs(20), "the checkpoint released", || {
            (!setup.peer().in_checkpoint()).then_some(())
        })
        .unwrap();
    assert_eq!(setup.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
    assert!(
        !setup.sandbox.path().join("repository/staging").join(&job_id).exists(),
        "staging was left behind"
    );
    let again = setup.sandbox.bkctl(&["cancel", &job_id]).unwrap();
    assert!(!again.status.success(), "an ended job cannot be cancelled twice");
}

#[test]
fn test_a_coordinator_restart_mid_backup_still_ends_with_the_checkpoint_released() {
    let mut setup = QuestDbSetup::new(|config| config.create_delay = Duration::from_secs(1));
    setup.start_worker(PASSWORD, "");
    let job_id = setup.backup_until_checkpoint_mode();
    setup.sandbox.restart_coordinator().unwrap();
    let job = setup
        .sandbox
        .wait_until(Duration::from_secs(60), "the job to end after the restart", || {
            let job = setup.sandbox.bkctl_json(&["job", &job_id]).ok()?;
            ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str()?).then_some(job)
        })
        .unwrap();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(!setup.peer().in_checkpoint(), "the checkpoint survived the coordinator restart");
}
