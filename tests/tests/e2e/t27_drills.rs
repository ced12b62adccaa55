//! Restore drills: a backup restored into a worker's scratch space, checked offline, the
//! database started on it (the test kit's stand-in, started exactly as `influxdb3` or QuestDB
//! would be) and asked per table for rows and time range; the outcome recorded on the backup,
//! in `bkctl backups` and in the coordinator's metrics. t26 runs a drill against a real
//! `influxdb3` when `BK_INFLUXDB3_BIN` names one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bk_tests::layout::{generate, LayoutParams};
use bk_tests::questdb_layout::generate_root;
use bk_tests::questdb_peer::{worker_section, PeerConfig, QuestDbPeer};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::{metric_value, register_core_source, run_job, scrape_metrics};

fn stand_in() -> String {
    env!("CARGO_BIN_EXE_standin_db").to_string()
}

/// A `[drill]` section with scratch under the sandbox, starting the stand-in with `args`
/// appended (`None`: no start command, offline checks only).
fn drill_section(scratch: &Path, args: Option<&[&str]>) -> String {
    let mut section =
        format!("[drill]\nscratch_dir = \"{}\"\nstart_timeout = \"60s\"\n", scratch.display());
    if let Some(args) = args {
        let args: Vec<String> = args.iter().map(|arg| format!("\"{arg}\"")).collect();
        section.push_str(&format!(
            "influxdb3_binary = \"{}\"\ninfluxdb3_args = [{}]\nquestdb_command = [\"{}\", \"questdb\", {}]\n",
            stand_in(),
            args.join(", "),
            stand_in(),
            args.join(", ")
        ));
    }
    section
}

/// A Core source `core` (node `node0`), a repository, a worker with `[drill]`, and one backup.
struct Drilled {
    sandbox: Sandbox,
    store: PathBuf,
    scratch: PathBuf,
    backup_id: String,
}

impl Drilled {
    fn new(args: Option<&[&str]>, before_backup: impl FnOnce(&Path)) -> Drilled {
        let mut sandbox = Sandbox::start().unwrap();
        let store = register_core_source(&sandbox);
        before_backup(&store);
        let scratch = sandbox.path().join("scratch");
        sandbox.start_worker_with("core", "node0", &store, &drill_section(&scratch, args)).unwrap();
        let job = run_job(&sandbox, &["submit", "backup", "--source", "core", "--repo", "repo"]);
        let backup_id = job["backup_id"].as_str().unwrap().to_string();
        Drilled { sandbox, store, scratch, backup_id }
    }

    /// Runs a drill of the backup; returns whether bkctl exited 0 and the backup's drills.
    fn drill(&self) -> (bool, Vec<Value>) {
        let output = self
            .sandbox
            .bkctl(&["-o", "json", "submit", "drill", "--backup", &self.backup_id, "--wait"])
            .unwrap();
        let backup = self.sandbox.bkctl_json(&["show", &self.backup_id]).unwrap();
        (output.status.success(), backup["drills"].as_array().cloned().unwrap_or_default())
    }
}

/// Rows per table id (`dbs/<db>/<table>`) as the source's snapshot manifests record them.
fn rows_in_manifests(store: &Path, node: &str) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    for entry in std::fs::read_dir(store.join(node).join("snapshots")).unwrap().flatten() {
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        for database in manifest["databases"].as_array().unwrap() {
            for table in database[1]["tables"].as_array().unwrap() {
                let count: u64 = table[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["row_count"].as_u64().unwrap())
                    .sum();
                *rows.entry(format!("{}/{}", database[0], table[0])).or_default() += count;
            }
        }
    }
    rows
}

fn tables_from(drill: &Value, from: &str) -> BTreeMap<String, u64> {
    drill["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|table| table["from"] == from)
        .map(|table| {
            (table["table"].as_str().unwrap().to_string(), table["rows"].as_u64().unwrap())
        })
        .collect()
}

/// Every file key under `root`.
fn keys(root: &Path) -> Vec<String> {
    bk_tests::tree::hash_tree(root).unwrap().into_keys().collect()
}

/// Whether every worker's drill data under `scratch` is wiped (`<scratch>/<worker>/data/`).
fn scratch_data_is_gone(scratch: &Path) -> bool {
    std::fs::read_dir(scratch).into_iter().flatten().flatten().all(|worker| {
        std::fs::read_dir(worker.path().join("data")).map_or(true, |mut data| data.next().is_none())
    })
}

#[test]
fn test_a_drill_restores_checks_starts_the_database_and_records_what_it_answered() {
    let drilled = Drilled::new(Some(&[]), |_| {});
    let sandbox = &drilled.sandbox;

    // Nothing to drill in another repository, or an unknown one: the error says what to do.
    let empty = format!("file://{}", sandbox.path().join("empty").display());
    sandbox.bkctl_json(&["repo", "add", "empty", &empty]).unwrap();
    for (repository, expected) in [
        (
            "empty",
            "no committed backup in repository `empty` to drill: run `bkctl submit backup` first",
        ),
        ("elsewhere", "unknown repository `elsewhere`: register it with `bkctl repo add`"),
    ] {
        let refused = sandbox
            .bkctl(&["submit", "drill", "--source", "core", "--repo", repository, "--wait"])
            .unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }

    // `--source` drills the newest backup: this one.
    let job = run_job(sandbox, &["submit", "drill", "--source", "core"]);
    assert_eq!(job["kind"], "drill");
    let backup = sandbox.bkctl_json(&["show", &drilled.backup_id]).unwrap();
    let drills = backup["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{backup}");
    let drill = &drills[0];
    assert_eq!(drill["passed"], true, "{drill}");
    assert_eq!(drill["worker_id"], "core/node0");
    assert!(drill["start_ms"].as_u64().is_some(), "{drill}");
    assert!(drill["scratch_bytes"].as_u64().unwrap() > 0);
    let checks: Vec<&str> =
        drill["checks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for expected in [
        "offline: catalog v3",
        "offline: node0: ",
        "snapshot manifests parse",
        "online: the database started",
    ] {
        assert!(
            checks.iter().any(|check| check.contains(expected)),
            "{expected} not in {checks:?}"
        );
    }

    // What the files say and what the server answered both match the source's manifests.
    let expected = rows_in_manifests(&drilled.store, "node0");
    assert!(!expected.is_empty());
    let from_files: BTreeMap<String, u64> = tables_from(drill, "files")
        .into_iter()
        .map(|(table, rows)| (table.replace("dbs/", ""), rows))
        .collect();
    assert_eq!(from_files, expected);
    let from_server: BTreeMap<String, u64> = tables_from(drill, "server")
        .into_iter()
        .map(|(table, rows)| (table.replace("db", "").replace(".t", "/"), rows))
        .collect();
    assert_eq!(from_server, expected);
    let first = &drill["tables"][0];
    assert!(first["min_time"].as_str().unwrap().starts_with("2026-11-21T"), "{first}");

    // The scratch is wiped and no log is kept after a pass.
    assert!(scratch_data_is_gone(&drilled.scratch));
    let logs =
        std::fs::read_dir(drilled.scratch.join("core-node0/logs")).map_or(0, |dir| dir.count());
    assert_eq!(logs, 0);

    // `bkctl backups` marks the drilled backup; the metric says when it last passed.
    let listing = sandbox.bkctl(&["backups"]).unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = listing.lines().find(|line| line.contains(&drilled.backup_id)).unwrap();
    assert!(line.contains("drilled: passed"), "{listing}");
    let metrics = scrape_metrics(&sandbox.endpoint());
    let at =
        metric_value(&metrics, "bk_backup_last_drill_success_timestamp_seconds{source=\"core\"}")
            .unwrap_or_else(|| panic!("no drill metric in:\n{metrics}"));
    assert_eq!((at * 1000.0).round() as u64, drill["at_ms"].as_u64().unwrap());
    let shown = sandbox.bkctl(&["show", &drilled.backup_id]).unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("PASSED on core/node0"), "{shown}");
}

#[test]
fn test_a_drill_with_fewer_rows_than_the_previous_passing_drill_warns() {
    let drilled = Drilled::new(Some(&[]), |_| {});
    let (passed, _) = drilled.drill();
    assert!(passed);

    // Retention: a newer snapshot removes a parquet file of the newest one, the node deletes it.
    let snapshots = drilled.store.join("node0/snapshots");
    let mut names = keys(&snapshots);
    names.sort(); // Inverted sequence numbers: the newest sorts first.
    let newest: Value =
        serde_json::from_slice(&std::fs::read(snapshots.join(&names[0])).unwrap()).unwrap();
    let database = &newest["databases"][0];
    let table = &database[1]["tables"][0];
    let victim = table[1][0].clone();
    let sequence = newest["snapshot_sequence_number"].as_u64().unwrap() + 1;
    let removal = serde_json::json!({
        "version": "1", "node_id": "node0", "next_file_id": newest["next_file_id"],
        "snapshot_sequence_number": sequence, "wal_file_sequence_number": newest["wal_file_sequence_number"],
        "catalog_sequence_number": newest["catalog_sequence_number"], "parquet_size_bytes": 0, "row_count": 0,
        "min_time": 0, "max_time": 0, "databases": [],
        "removed_files": [[database[0], {"tables": [[table[0], [victim]]]}]],
    });
    let name = format!("{:020}.info.json", u64::MAX - sequence);
    std::fs::write(snapshots.join(name), serde_json::to_vec_pretty(&removal).unwrap()).unwrap();
    std::fs::remove_file(drilled.store.join(victim["path"].as_str().unwrap())).unwrap();

    let job =
        run_job(&drilled.sandbox, &["submit", "backup", "--source", "core", "--repo", "repo"]);
    let second = job["backup_id"].as_str().unwrap();
    run_job(&drilled.sandbox, &["submit", "drill", "--backup", second]);
    let backup = drilled.sandbox.bkctl_json(&["show", second]).unwrap();
    let drill = &backup["drills"][0];
    assert_eq!(drill["passed"], true, "fewer rows is a warning, not a failure: {drill}");
    let dropped = victim["row_count"].as_u64().unwrap();
    let warnings = drill["warnings"].to_string();
    assert!(
        warnings.contains(&format!("{dropped} fewer than the previous passing drill")),
        "{warnings}"
    );
    let shown = drilled.sandbox.bkctl(&["show", second]).unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("WARNING: table"));
}

#[test]
fn test_a_database_failing_crashing_or_breaking_off_an_answer_fails_the_drill_with_its_log() {
    let mut drilled = Drilled::new(Some(&["--stand-in-fail-at-start"]), |_| {});
    let (succeeded, drills) = drilled.drill();
    assert!(!succeeded);
    let failed = &drills[0];
    assert_eq!(failed["passed"], false);
    let failure = failed["failure"].as_str().unwrap();
    assert!(failure.contains("exited") && failure.contains("told to fail at start"), "{failure}");
    let log = std::fs::read_to_string(failed["log_file"].as_str().unwrap()).unwrap();
    assert!(log.contains("told to fail at start"), "{log}");
    // The database inherits no secret of the worker (its passphrase is in the environment).
    let environment = log.lines().find_map(|line| line.strip_prefix("environment: ")).unwrap();
    let names: Vec<&str> = environment.split(',').collect();
    assert!(
        names.contains(&"PATH") && !names.iter().any(|name| name.starts_with("BK_")),
        "{names:?}"
    );
    assert!(scratch_data_is_gone(&drilled.scratch));

    drilled.sandbox.kill_worker("node0");
    let section = drill_section(&drilled.scratch, Some(&["--stand-in-crash-mid-query"]));
    let store = drilled.store.clone();
    drilled.sandbox.start_worker_with("core", "node0", &store, &section).unwrap();
    let (succeeded, drills) = drilled.drill();
    assert!(!succeeded);
    let crashed = &drills[1];
    assert_eq!(crashed["passed"], false);
    let failure = crashed["failure"].as_str().unwrap();
    assert!(
        failure.contains("SELECT count(*)") && failure.contains("the server exited"),
        "{failure}"
    );
    assert!(crashed["start_ms"].as_u64().is_some(), "it did start: {crashed}");
    assert!(Path::new(crashed["log_file"].as_str().unwrap()).is_file());
    assert!(scratch_data_is_gone(&drilled.scratch));

    // A server whose answer breaks off: the drill keeps its status and what it said.
    drilled.sandbox.kill_worker("node0");
    let section = drill_section(&drilled.scratch, Some(&["--stand-in-break-mid-answer"]));
    drilled.sandbox.start_worker_with("core", "node0", &store, &section).unwrap();
    let (succeeded, drills) = drilled.drill();
    assert!(!succeeded);
    let broken = &drills[2];
    assert_eq!(broken["passed"], false);
    let failure = broken["failure"].as_str().unwrap();
    assert!(
        failure.contains("answered 200 OK")
            && failure.contains("the stand-in broke off this answer")
            && failure.contains("its log ends"),
        "{failure}"
    );
    assert!(Path::new(broken["log_file"].as_str().unwrap()).is_file());
    assert!(scratch_data_is_gone(&drilled.scratch));
    // A failed drill is no baseline and sets no success metric.
    let metrics = scrape_metrics(&drilled.sandbox.endpoint());
    assert_eq!(
        metric_value(&metrics, "bk_backup_last_drill_success_timestamp_seconds{source=\"core\"}"),
        None
    );
}

/// What InfluxDB's retention handler does to an expired file (`purge_expired`): deletes it,
/// then rewrites its table's index without it. Its snapshot manifests keep naming it.
fn purge_like_influxdb(store: &Path, parquet: &str) {
    std::fs::remove_file(store.join(parquet)).unwrap();
    let key = bk_worker::tasks::purged::index_key(parquet).unwrap();
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(store.join(&key)).unwrap()).unwrap();
    let files = index["files"].as_array_mut().unwrap();
    let before = files.len();
    files.retain(|file| file["path"] != parquet);
    assert_eq!(files.len(), before - 1, "{key} listed {parquet}");
    std::fs::write(store.join(&key), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn first_parquet(store: &Path) -> String {
    keys(store)
        .into_iter()
        .find(|key| key.ends_with(".parquet") && key.starts_with("node0/dbs/"))
        .unwrap()
}

#[test]
fn test_a_parquet_file_retention_deleted_before_the_backup_is_expected_missing_not_a_failure() {
    let mut removed = String::new();
    // A database with a retention period: InfluxDB purged an expired file a snapshot still names
    // (it never rewrites manifests for that, only its table index): the backup commits,
    // recording it; the drill expects it missing, and the database starts without it.
    let drilled = Drilled::new(Some(&[]), |store| {
        removed = first_parquet(store);
        purge_like_influxdb(store, &removed);
    });
    let backup = drilled.sandbox.bkctl_json(&["show", &drilled.backup_id]).unwrap();
    assert!(backup["events"].to_string().contains(&removed), "{backup}");
    assert!(backup["corrupt_objects"].as_array().is_none_or(Vec::is_empty), "{backup}");
    let (succeeded, drills) = drilled.drill();
    assert!(succeeded, "{drills:?}");
    let checks = drills[0]["checks"].to_string();
    assert!(
        checks.contains("1 parquet file(s) the manifests still name were deleted by retention")
            && checks.contains(&removed),
        "{checks}"
    );
    let mut expected = rows_in_manifests(&drilled.store, "node0");
    let files: BTreeMap<String, u64> = tables_from(&drills[0], "files")
        .into_iter()
        .map(|(table, rows)| (table.replace("dbs/", ""), rows))
        .collect();
    // The manifests still count the deleted file's rows; the restored files do not.
    let table = files.keys().next().unwrap().clone();
    assert!(files[&table] < expected.remove(&table).unwrap());
    assert!(scratch_data_is_gone(&drilled.scratch));
}

#[test]
fn test_a_parquet_file_deleted_outside_influxdb_fails_the_backup_and_the_drill_naming_it() {
    // A database without a retention period: nothing in InfluxDB deleted the file (its table
    // index still lists it), so the source is damaged, as with a corrupt file.
    let mut sandbox = Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let removed = first_parquet(&store);
    std::fs::remove_file(store.join(&removed)).unwrap();
    let scratch = sandbox.path().join("scratch");
    sandbox.start_worker_with("core", "node0", &store, &drill_section(&scratch, None)).unwrap();
    let output = sandbox
        .bkctl(&["-o", "json", "submit", "backup", "--source", "core", "--repo", "repo", "--wait"])
        .unwrap();
    assert!(!output.status.success(), "a backup missing a parquet file committed");
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(&removed)
            && error.contains("table index")
            && error.contains("still lists it"),
        "{error}"
    );
    assert!(error.contains("--allow-corrupt"), "{error}");
    assert_eq!(sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
    // Committed anyway on request: recorded as damaged, not as retention; the drill fails
    // offline naming the file.
    let job = run_job(
        &sandbox,
        &["submit", "backup", "--source", "core", "--repo", "repo", "--allow-corrupt"],
    );
    let backup_id = job["backup_id"].as_str().unwrap();
    let backup = sandbox.bkctl_json(&["show", backup_id]).unwrap();
    assert!(backup["corrupt_objects"].to_string().contains(&removed), "{backup}");
    let output =
        sandbox.bkctl(&["-o", "json", "submit", "drill", "--backup", backup_id, "--wait"]).unwrap();
    assert!(!output.status.success(), "the drill of a backup missing a parquet file passed");
    let backup = sandbox.bkctl_json(&["show", backup_id]).unwrap();
    let failure = backup["drills"][0]["failure"].as_str().unwrap();
    assert!(
        failure.contains(&removed) && failure.contains("missing from the restored tree"),
        "{failure}"
    );
}

/// The offline checks on a restored tree, directly: a clean tree passes with the manifests'
/// row counts; a WAL gap, a damaged WAL file, a missing catalog log and a missing parquet file
/// are each named. (A
/// backup cannot hold these: its own consistency check refuses them; a drill also guards
/// backups taken before a bug was fixed, or damaged at rest.)
#[test]
fn test_offline_checks_name_a_wal_gap_a_damaged_wal_and_a_catalog_gap() {
    use bk_worker::drill::influxdb3_files::check_tree;
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let root = dir.path().join(name);
        generate(&root, &LayoutParams::core(1 << 20)).unwrap();
        root
    };
    let nodes = vec!["node0".to_string()];
    let clean = fresh("clean");
    let none = std::collections::BTreeSet::new();
    let facts = check_tree(&clean, &nodes, "node0", &none).unwrap();
    let rows: BTreeMap<String, u64> =
        facts.tables.iter().map(|table| (table.table.replace("dbs/", ""), table.rows)).collect();
    assert_eq!(rows, rows_in_manifests(&clean, "node0"));

    let wal_after_snapshot = |root: &Path| {
        let mut wal: Vec<String> =
            keys(root).into_iter().filter(|key| key.starts_with("node0/wal/")).collect();
        wal.sort();
        wal[wal.len() - 2].clone() // Un-snapshotted: the generator leaves several after the last snapshot.
    };
    let gap = fresh("gap");
    std::fs::remove_file(gap.join(wal_after_snapshot(&gap))).unwrap();
    let error = check_tree(&gap, &nodes, "node0", &none).unwrap_err();
    assert!(
        error.contains("node0: WAL") && error.contains("missing after the snapshot"),
        "{error}"
    );

    let damaged = fresh("damaged");
    let key = wal_after_snapshot(&damaged);
    let mut bytes = std::fs::read(damaged.join(&key)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(damaged.join(&key), bytes).unwrap();
    let error = check_tree(&damaged, &nodes, "node0", &none).unwrap_err();
    assert!(error.contains(&key) && error.contains("CRC"), "{error}");

    let catalog = fresh("catalog");
    let mut logs: Vec<String> = keys(&catalog)
        .into_iter()
        .filter(|key| key.starts_with("node0/catalog/v3/logs/"))
        .collect();
    logs.sort();
    std::fs::remove_file(catalog.join(&logs[logs.len() - 2])).unwrap();
    let error = check_tree(&catalog, &nodes, "node0", &none).unwrap_err();
    assert!(error.contains("catalog logs") && error.contains("have a gap"), "{error}");

    // A parquet file missing without the backup having seen retention delete it: named.
    let missing = fresh("missing");
    let parquet = keys(&missing).into_iter().find(|key| key.ends_with(".parquet")).unwrap();
    std::fs::remove_file(missing.join(&parquet)).unwrap();
    let error = check_tree(&missing, &nodes, "node0", &none).unwrap_err();
    assert!(
        error.contains(&parquet) && error.contains("missing from the restored tree"),
        "{error}"
    );
    let recorded = std::collections::BTreeSet::from([parquet.clone()]);
    let facts = check_tree(&missing, &nodes, "node0", &recorded).unwrap();
    assert!(
        facts.checks.iter().any(|check| check.contains("deleted by retention")),
        "{:?}",
        facts.checks
    );
}

#[test]
fn test_a_scratch_dir_overlapping_the_store_or_the_repository_is_refused() {
    let mut sandbox = Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    // At config load: the worker does not start.
    let inside_store = drill_section(&store.join("scratch"), None);
    let refused = sandbox.start_worker_with("core", "node0", &store, &inside_store);
    assert!(refused.is_err());
    let log = std::fs::read_to_string(sandbox.path().join("worker-node0.log")).unwrap();
    assert!(log.contains("overlaps the node's store"), "{log}");

    // At drill time: a repository inside the scratch.
    let scratch = sandbox.path().join("scratch");
    let url = format!("file://{}", scratch.join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "inside", &url]).unwrap();
    sandbox.start_worker_with("core", "node0", &store, &drill_section(&scratch, None)).unwrap();
    let job = run_job(&sandbox, &["submit", "backup", "--source", "core", "--repo", "inside"]);
    let backup_id = job["backup_id"].as_str().unwrap();
    let output =
        sandbox.bkctl(&["-o", "json", "submit", "drill", "--backup", backup_id, "--wait"]).unwrap();
    assert!(!output.status.success());
    let backup = sandbox.bkctl_json(&["show", backup_id]).unwrap();
    let failure = backup["drills"][0]["failure"].as_str().unwrap();
    assert!(failure.contains("overlaps the repository"), "{failure}");
    assert!(scratch.join("repository").is_dir(), "the repository must survive the refused drill");
}

#[test]
fn test_a_drill_schedule_drills_the_newest_backup_of_its_source() {
    let drilled = Drilled::new(Some(&[]), |_| {});
    let sandbox = &drilled.sandbox;
    let refused = sandbox
        .bkctl(&[
            "schedule",
            "add",
            "weekly",
            "--source",
            "core",
            "--repo",
            "repo",
            "--cron",
            "0 3 * * 0",
            "--drill",
            "--prune-keep-last",
            "1",
        ])
        .unwrap();
    assert!(!refused.status.success(), "a drill schedule cannot prune");
    sandbox
        .bkctl_json(&[
            "schedule",
            "add",
            "drills",
            "--source",
            "core",
            "--repo",
            "repo",
            "--cron",
            "*/2 * * * * *",
            "--drill",
        ])
        .unwrap();
    let schedules = sandbox.bkctl_json(&["schedule", "list"]).unwrap();
    assert_eq!(schedules[0]["drill"], true, "{schedules}");
    sandbox
        .wait_until(Duration::from_secs(60), "a scheduled drill that passed", || {
            let backup = sandbox.bkctl_json(&["show", &drilled.backup_id]).ok()?;
            backup["drills"].as_array()?.iter().any(|drill| drill["passed"] == true).then_some(())
        })
        .unwrap();
    sandbox.bkctl_json(&["schedule", "remove", "drills"]).unwrap();
    let jobs = sandbox.bkctl_json(&["jobs", "--limit", "100"]).unwrap();
    let scheduled: Vec<&Value> =
        jobs.as_array().unwrap().iter().filter(|job| job["schedule"] == "drills").collect();
    assert!(scheduled.iter().all(|job| job["kind"] == "drill"), "{scheduled:?}");
}

/// QuestDB versions a drill must prove restorable, each armed its own way: 9.x by `_restore`;
/// 8.0.x and 7.x (legacy snapshots, no `_restore` trigger) by a new instance id, whether or not
/// the server had one.
const DRILLED_QUESTDB: [(&str, Option<&str>); 3] =
    [("9.0.0", None), ("8.0.3", Some("original-instance")), ("7.3.10", None)];

#[test]
fn test_a_questdb_drill_recovers_from_the_checkpoint_and_counts_every_table() {
    let mut sandbox = Sandbox::start().unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
    let mut peers = Vec::new();
    for (version, instance_id) in DRILLED_QUESTDB {
        let root = sandbox.path().join(format!("questdb-root-{version}"));
        generate_root(&root, 3, 2, 4096, 5).unwrap();
        if let Some(id) = instance_id {
            let conf = root.join("conf/server.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!("cairo.snapshot.instance.id={id}\n"));
            std::fs::write(&conf, text).unwrap();
        }
        let peer = QuestDbPeer::start(PeerConfig::version(&root, version)).unwrap();
        let (source, node) = (format!("qdb-{version}"), format!("q-{version}"));
        let add = ["source", "add", &source, "--kind", "questdb", "--nodes", &node];
        sandbox.bkctl_json(&[&add[..], &["--pg", peer.address()]].concat()).unwrap();
        let scratch = sandbox.path().join(format!("scratch-{version}"));
        let plays = format!("--stand-in-version={version}");
        let section = worker_section("quest", &drill_section(&scratch, Some(&[&plays])));
        sandbox.start_worker_with(&source, &node, &root, &section).unwrap();
        peers.push((version, source, scratch, peer));
    }
    for (version, source, scratch, peer) in &peers {
        let job = run_job(&sandbox, &["submit", "backup", "--source", source, "--repo", "repo"]);
        let backup_id = job["backup_id"].as_str().unwrap();
        run_job(&sandbox, &["submit", "drill", "--backup", backup_id]);
        let backup = sandbox.bkctl_json(&["show", backup_id]).unwrap();
        let drill = &backup["drills"][0];
        assert_eq!(drill["passed"], true, "QuestDB {version}: {drill}");
        let checks = drill["checks"].to_string();
        let expected = if version.starts_with('9') {
            [
                "checkpoint `.checkpoint/db/` complete",
                "`_restore` trigger present",
                "`_restore` consumed",
            ]
        } else {
            [
                "checkpoint `snapshot/db/` complete",
                "legacy snapshot armed",
                "`snapshot/db/` consumed",
            ]
        };
        for expected in expected {
            assert!(checks.contains(expected), "QuestDB {version}: {expected} not in {checks}");
        }
        // 2 partitions × 4096 bytes of `ts.d` = 1024 rows per table, as the stand-in reads them.
        let tables = tables_from(drill, "server");
        assert_eq!(tables.len(), 3, "QuestDB {version}: {drill}");
        assert!(tables.values().all(|rows| *rows == 1024), "QuestDB {version}: {tables:?}");
        assert!(scratch_data_is_gone(scratch));
        // The live server was never touched by the drill: it only saw the backup's statements.
        assert!(peer.statements().iter().all(|statement| !statement.contains("count(*)")));
    }
}
