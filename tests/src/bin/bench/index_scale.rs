//! `bench --index-blobs 10000000`: a worker's memory when its node's index holds ten million
//! blobs. A small cluster is backed up once; then ten million synthetic entries (random blob
//! ids) are written into node1's index partition, as years of backups of a large node would
//! leave them; then a change on node1 is backed up. The worker imports the new index files into
//! its local cache (a redb file on disk) and looks up every new chunk: its peak RSS is what is
//! measured, with the import's and the backup's time.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::REPOSITORY_PASSPHRASE;
use bk_worker::repository::crypto::BlobId;
use bk_worker::repository::index::{write_index_files, IndexEntry, INDEX_FILE_ENTRIES};
use bk_worker::repository::pack::{PackEntry, PackId};
use rand::RngCore;
use serde_json::json;

use crate::args::Args;
use crate::deployment::Deployment;

/// Runs the measurement.
///
/// # Errors
/// When a job fails or the repository cannot be written.
pub(crate) fn run(args: &Args, root: &Path, blobs: u64) -> anyhow::Result<()> {
    let total = bk_proto::support::parse_byte_size(&args.size).map_err(anyhow::Error::msg)?;
    let params = LayoutParams::benchmark_mix(total);
    let cluster = root.join("cluster");
    generate(&cluster, &params).context("cannot generate the cluster")?;
    let deployment = Deployment::start(&cluster, &params, "")?;
    let repository = root.join("repo");
    deployment.add_repository("local", &format!("file://{}", repository.display()), &[])?;
    let backup = ["backup", "--source", "src", "--repo", "local"];
    deployment.measured_job(&backup)?;
    println!("writing {blobs} synthetic index entries into node1's partition");
    let written = Instant::now();
    write_synthetic_index(&repository, blobs)?;
    println!("  {:.1} s", written.elapsed().as_secs_f64());
    // A change on node1: its next backup must look up new chunks in its partition.
    for number in 0..200 {
        let path = cluster.join(format!("node1/extra/{number:04}.bin"));
        std::fs::create_dir_all(path.parent().context("a parent")?)?;
        let mut body = vec![0u8; 64 << 10];
        rand::rng().fill_bytes(&mut body);
        std::fs::write(path, body)?;
    }
    let run = deployment.measured_job(&backup)?;
    let node1 = deployment.sandbox.worker_peak_rss_bytes("node1").unwrap_or(0);
    println!(
        "backup after {blobs} blobs were indexed: {:.1} s (the import included); node1's worker peak RSS {} MiB, \
         largest worker {} MiB",
        run.seconds,
        node1 >> 20,
        run.peak_worker_rss >> 20
    );
    let cache = deployment.sandbox.path().join("cache-node1");
    let cache_bytes = crate::scale::directory_bytes(&cache).unwrap_or(0);
    let document = json!({
        "index_blobs": blobs, "backup_seconds": run.seconds, "node1_peak_rss_bytes": node1,
        "largest_worker_peak_rss_bytes": run.peak_worker_rss, "local_cache_bytes": cache_bytes,
    });
    println!("node1's local index cache: {} MiB on disk", cache_bytes >> 20);
    std::fs::write(&args.out, serde_json::to_string_pretty(&document)?)?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// Writes `blobs` random entries into index partition `node-node1` of the file repository at
/// `path`, opened with the sandbox workers' passphrase, as index files of the usual size.
fn write_synthetic_index(path: &Path, blobs: u64) -> anyhow::Result<()> {
    use bk_worker::repository::cache::RepositoryCache;
    use bk_worker::repository::config::InitSettings;
    use bk_worker::repository::keys::{KdfSettings, Passphrase};
    use bk_worker::repository::open::{open, OpenRequest};
    let runtime = tokio::runtime::Runtime::new()?;
    let url = format!("file://{}", path.display());
    let store =
        bk_worker::store::open_store(&url, &Default::default(), &[], &Default::default(), false)?;
    let request = OpenRequest {
        name: "local",
        url: &url,
        pinned_config: None,
        passphrase: Some(Passphrase(REPOSITORY_PASSPHRASE.as_bytes().to_vec())),
        init: InitSettings {
            chunk_size: 8 << 20,
            pack_size: 16 << 20,
            compression_level: 3,
            unencrypted_blobs: false,
        },
        kdf: KdfSettings::default(),
        host: "bench",
        allow_unencrypted: false,
    };
    runtime.block_on(async {
        let repository = open(store, &request, &RepositoryCache::default()).await?;
        let mut rng = rand::rng();
        let mut left = blobs;
        let mut file = 0u64;
        while left > 0 {
            let count = left.min(INDEX_FILE_ENTRIES as u64);
            let entries: Vec<IndexEntry> = (0..count)
                .map(|offset| {
                    let mut id = [0u8; 32];
                    rng.fill_bytes(&mut id);
                    let entry = PackEntry {
                        id: BlobId(id),
                        offset,
                        length: 4096,
                        raw_length: 4096,
                        flags: 0,
                    };
                    IndexEntry { pack: PackId([7; 16]), entry }
                })
                .collect();
            let base = format!("synthetic-{file:06}");
            write_index_files(
                repository.store.as_ref(),
                &repository.key,
                "node-node1",
                &base,
                &entries,
            )
            .await?;
            left -= count;
            file += 1;
        }
        anyhow::Ok(())
    })
}
