//! Shared steps of the end-to-end tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bk_tests::layout::{generate, Generated, LayoutParams};
use bk_tests::sandbox::{Sandbox, REPOSITORY_PASSPHRASE};
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
    register_core_source_of(sandbox, 1 << 20)
}

/// As [`register_core_source`], with a tree of about `bytes`.
pub(crate) fn register_core_source_of(sandbox: &Sandbox, bytes: u64) -> PathBuf {
    let store = sandbox.path().join("store");
    generate(&store, &LayoutParams::core(bytes)).unwrap();
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

/// A repository opened with the sandbox workers' passphrase, read as bk's own worker reads it:
/// everything in it is sealed, so tests look inside through bk's repository code.
pub(crate) struct OpenedRepository {
    runtime: tokio::runtime::Runtime,
    repository: bk_worker::repository::opened::Repository,
    index: bk_worker::repository::index_cache::IndexView,
}

impl OpenedRepository {
    /// Opens the file repository at `path`.
    pub(crate) fn open(path: &Path) -> OpenedRepository {
        use bk_worker::repository::cache::RepositoryCache;
        use bk_worker::repository::config::InitSettings;
        use bk_worker::repository::keys::{KdfSettings, Passphrase};
        use bk_worker::repository::open::{open, OpenRequest};
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let url = format!("file://{}", path.display());
        let retry = bk_worker::store::RetrySettings::default();
        let store =
            bk_worker::store::open_store(&url, &Default::default(), &[], &retry, false).unwrap();
        let request = OpenRequest {
            name: "repo",
            url: &url,
            pinned_config: None,
            passphrase: Some(Passphrase(REPOSITORY_PASSPHRASE.as_bytes().to_vec())),
            init: InitSettings {
                chunk_size: 1 << 20,
                pack_size: 1 << 24,
                compression_level: 3,
                unencrypted_blobs: false,
            },
            kdf: KdfSettings::default(),
            host: "test",
            allow_unencrypted: false,
        };
        let cache = RepositoryCache::default();
        let (repository, index) = runtime.block_on(async {
            let repository = open(store, &request, &cache).await.unwrap();
            let partitions =
                bk_worker::repository::index::list_partitions(repository.store.as_ref())
                    .await
                    .unwrap();
            let index = cache.index(&repository, &partitions).await.unwrap();
            (repository, index)
        });
        OpenedRepository { runtime, repository, index }
    }

    /// A backup's manifest and its entries by key, as JSON (each key listed once): `key`,
    /// `size`, `blobs` (hex ids), `etag`, `modified_ns`, and the `phase` and `node` of the
    /// scope listing it.
    pub(crate) fn backup(&self, backup_id: &str) -> (Value, BTreeMap<String, Value>) {
        use bk_worker::repository::list::MergedView;
        use bk_worker::repository::reader::read_manifest;
        let backup_id = backup_id.parse().unwrap();
        self.runtime.block_on(async {
            let manifest = read_manifest(&self.repository, backup_id).await.unwrap();
            let mut entries = BTreeMap::new();
            for list in &manifest.scopes {
                let mut view = MergedView::new(&self.repository, &list.runs, &list.scope.prefix)
                    .in_scope(&list.scope);
                while let Some(entry) = view.next().await.unwrap() {
                    let key = entry.key.clone();
                    let blobs: Vec<String> = entry.blobs.iter().map(|id| id.to_hex()).collect();
                    let value = serde_json::json!({
                        "key": entry.key, "size": entry.size, "blobs": blobs, "etag": entry.etag,
                        "modified_ns": entry.modified_ns, "phase": list.phase, "node": list.node,
                    });
                    assert!(entries.insert(key.clone(), value).is_none(), "`{key}` listed twice");
                }
            }
            (serde_json::to_value(&manifest).unwrap(), entries)
        })
    }

    /// An object's bytes, from its blobs.
    pub(crate) fn object(&self, entry: &Value) -> Vec<u8> {
        let blobs: Vec<bk_worker::repository::crypto::BlobId> = entry["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| {
                bk_worker::repository::crypto::BlobId::from_hex(id.as_str().unwrap()).unwrap()
            })
            .collect();
        self.runtime.block_on(async {
            let mut bytes = Vec::new();
            for id in &blobs {
                let blob =
                    bk_worker::repository::reader::read_blob(&self.repository, &self.index, id)
                        .await
                        .unwrap_or_else(|error| panic!("{}: {error}", entry["key"]));
                bytes.extend_from_slice(&blob.plaintext);
            }
            bytes
        })
    }

    /// The pack file holding a blob (hex id), and where in it the blob's sealed bytes are.
    pub(crate) fn blob_location(&self, blob: &str) -> (PathBuf, std::ops::Range<usize>) {
        let id = bk_worker::repository::crypto::BlobId::from_hex(blob).unwrap();
        let (pack, entry) = self.index.get(&id).unwrap();
        let path = PathBuf::from(bk_worker::repository::layout::pack_path(pack).to_string());
        let start = entry.offset as usize;
        (path, start..start + entry.length as usize)
    }

    /// The files (relative to the repository root) of the object list chunks a backup's
    /// manifest names.
    pub(crate) fn list_files(&self, backup_id: &str) -> BTreeSet<String> {
        use bk_worker::repository::reader::read_manifest;
        let backup_id = backup_id.parse().unwrap();
        self.runtime.block_on(async {
            let manifest = read_manifest(&self.repository, backup_id).await.unwrap();
            manifest.runs().flat_map(|run| run.files()).map(|path| path.to_string()).collect()
        })
    }
}

/// The object entries of a committed backup, read from the repository as a worker would:
/// manifest, then its segments.
pub(crate) fn read_backup_entries(
    repository: &Path,
    backup_id: &str,
) -> (Value, BTreeMap<String, Value>) {
    OpenedRepository::open(repository).backup(backup_id)
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
