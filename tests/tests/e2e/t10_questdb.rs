//! QuestDB: checkpoint over PG wire, copy the root, release no matter what; restore with
//! `_restore`. The server is a protocol-level peer (no QuestDB can be installed here). Every
//! version and failure path (copy error, kill -9, leader loss, cancel) is in `t23`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
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
        let section = worker_section(password, extra);
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
    let checkpoint_files = setup.peer().last_checkpoint_files();
    assert!(!checkpoint_files.is_empty(), "the checkpoint wrote no files");
    for (key, bytes) in checkpoint_files {
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
