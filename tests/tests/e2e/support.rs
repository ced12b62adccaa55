//! Shared steps of the end-to-end tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bk_tests::layout::{generate, Generated, LayoutParams};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

/// `bkctl` arguments that register the generated enterprise cluster (`LayoutParams::enterprise`)
/// as source `src`.
pub(crate) const REGISTER_ENTERPRISE_SOURCE: [&str; 11] = [
    "source",
    "add",
    "src",
    "--kind",
    "influxdb3-enterprise",
    "--cluster-id",
    "cluster1",
    "--compactor",
    "compactor",
    "--nodes",
    "node1,node2,node3",
];

/// A generated cluster, a running coordinator, and a registered source and repository.
pub(crate) struct Cluster {
    pub(crate) sandbox: Sandbox,
    pub(crate) params: LayoutParams,
    pub(crate) generated: Generated,
    pub(crate) store: PathBuf,
    pub(crate) repository: PathBuf,
}

impl Cluster {
    /// Generates `params` and registers it as source `src` with repository `repo`; starts no
    /// worker.
    pub(crate) fn new(params: LayoutParams) -> Cluster {
        let sandbox = Sandbox::start().expect("coordinator starts");
        let store = sandbox.path().join("store");
        let repository = sandbox.path().join("repository");
        std::fs::create_dir_all(&store).unwrap();
        let generated = generate(&store, &params).unwrap();
        let cluster = Cluster { sandbox, params, generated, store, repository };
        cluster.register();
        cluster
    }

    fn register(&self) {
        self.sandbox.register_source("src", &self.params).unwrap();
        let url = format!("file://{}", self.repository.display());
        self.sandbox.bkctl_json(&["repo", "add", "repo", &url, "--chunk-size", "65536"]).unwrap();
    }

    /// Every node id, compactor last.
    pub(crate) fn nodes(&self) -> Vec<String> {
        let mut nodes = self.params.data_nodes.clone();
        nodes.extend(self.params.compactor_node.clone());
        nodes
    }

    /// Starts one worker per node.
    pub(crate) fn start_all_workers(&mut self) {
        for node in self.nodes() {
            self.sandbox.start_worker("src", &node, &self.store).unwrap();
        }
    }

    /// Submits a backup, waits for it, and returns (exit success, the job as JSON).
    pub(crate) fn backup(&self) -> (bool, Value) {
        let output = self
            .sandbox
            .bkctl(&[
                "-o", "json", "submit", "backup", "--source", "src", "--repo", "repo", "--wait",
            ])
            .unwrap();
        let job: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!("no job JSON; stderr: {}", String::from_utf8_lossy(&output.stderr))
        });
        (output.status.success(), job)
    }
}

/// Generates a one-node InfluxDB 3 Core tree (1 MiB) in the sandbox, registers it as source
/// `core` (node `node0`) with a file repository `repo`, and returns the tree's path.
pub(crate) fn register_core_source(sandbox: &Sandbox) -> PathBuf {
    let store = sandbox.path().join("store");
    generate(&store, &LayoutParams::core(1 << 20)).unwrap();
    sandbox
        .bkctl_json(&["source", "add", "core", "--kind", "influxdb3-core", "--nodes", "node0"])
        .unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
    store
}

/// The prefixes a backup (as `bkctl show` prints it) recorded as excluded, e.g.
/// `node1/table-snapshots/`: a restore gives back everything but these.
pub(crate) fn exclusion_prefixes(backup: &Value) -> Vec<String> {
    backup["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap().to_string())
        .collect()
}

/// The object entries of a committed backup, read from the repository as a user would:
/// manifest, then its segments (each checked against the hash the manifest records).
pub(crate) fn read_backup_entries(
    repository: &Path,
    backup_id: &str,
) -> (Value, BTreeMap<String, Value>) {
    let manifest_path = repository.join(format!("backups/{backup_id}/manifest"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut entries = BTreeMap::new();
    for segment in manifest["segments"].as_array().unwrap() {
        let bytes = std::fs::read(repository.join(segment["key"].as_str().unwrap())).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), segment["blake3"].as_str().unwrap());
        for line in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
            let entry: Value = serde_json::from_slice(line).unwrap();
            let key = entry["key"].as_str().unwrap().to_string();
            assert!(
                entries.insert(key.clone(), entry).is_none(),
                "`{key}` listed twice in the manifest"
            );
        }
    }
    (manifest, entries)
}

/// Reassembles an object from its chunks in the repository.
pub(crate) fn reassemble(repository: &Path, entry: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    for chunk in entry["chunks"].as_array().unwrap() {
        let hash = chunk.as_str().unwrap();
        bytes.extend(
            std::fs::read(repository.join(format!("chunks/{}/{hash}", &hash[..2]))).unwrap(),
        );
    }
    bytes
}

/// Task start/finish times per phase, from the job JSON.
pub(crate) fn phase_windows(job: &Value) -> Vec<(String, u64, u64)> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| {
            let tasks = phase["tasks"].as_array().unwrap();
            let first_start =
                tasks.iter().map(|task| task["started_at_ms"].as_u64().unwrap()).min().unwrap();
            let last_finish =
                tasks.iter().map(|task| task["finished_at_ms"].as_u64().unwrap()).max().unwrap();
            (phase["name"].as_str().unwrap().to_string(), first_start, last_finish)
        })
        .collect()
}

/// `GET /metrics` over HTTP/1.1 from `address`, as Prometheus scrapes it; the body.
pub(crate) fn scrape_metrics(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The value of `series` (name with labels, exactly as exposed) in a metrics body.
pub(crate) fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `bkctl -o json ARGS --wait` and returns the job, failing the test unless it succeeded.
pub(crate) fn run_job(sandbox: &Sandbox, args: &[&str]) -> Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    full.push("--wait");
    let output = sandbox.bkctl(&full).unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
