//! bk against a real InfluxDB 3 Core server, when one is available: `BK_INFLUXDB3_BIN` names an
//! `influxdb3` binary (3.10.x; `../shared/reference/influxdb3-build.md` builds one in about 30
//! minutes). Without it the test says so and checks nothing: CI has no such binary.
//!
//! Rows are written over the HTTP API, the server is backed up while it runs (they are still in
//! its WAL), then stopped; the backup is restored into an empty directory, a new server started
//! on it answers the same row count and time range.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::run_job;

/// A server of the real binary on `data_dir`, listening on a free loopback port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &str, data_dir: &Path, log: &Path, extra: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .args(["serve", "--object-store", "file", "--data-dir"])
            .arg(data_dir)
            .args(["--node-id", "node0", "--http-bind", &format!("127.0.0.1:{port}")])
            .args(["--without-auth", "--datafusion-config"])
            // Needed by builds against crates.io DataFusion 51 (see influxdb3-build.md).
            .arg("datafusion.execution.skip_physical_aggregate_schema_check:true")
            .args(extra)
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Server { child, port }
    }

    fn wait_healthy(&self, sandbox: &Sandbox) {
        sandbox
            .wait_until(Duration::from_secs(60), "influxdb3 to answer /health", || {
                http(self.port, "GET", "/health", "").ok().filter(|(status, _)| *status == 200)
            })
            .unwrap();
    }

    fn query(&self, sql: &str) -> Value {
        let body = serde_json::json!({"db": "drill", "q": sql, "format": "json"}).to_string();
        let (status, text) = http(self.port, "POST", "/api/v3/query_sql", &body).unwrap();
        assert_eq!(status, 200, "{sql}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the (de-chunked) body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        chunked |= line.to_ascii_lowercase().starts_with("transfer-encoding: chunked");
    }
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw)?;
    if !chunked {
        return Ok((status, String::from_utf8_lossy(&raw).to_string()));
    }
    let (mut body, mut rest) = (Vec::new(), raw.as_slice());
    while let Some(end) = rest.windows(2).position(|pair| pair == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < end + 2 + size {
            break;
        }
        body.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[(end + 4 + size).min(rest.len())..];
    }
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

#[test]
fn test_a_live_real_influxdb3_backs_up_restores_and_starts_with_the_same_rows() {
    let Some(binary) = std::env::var("BK_INFLUXDB3_BIN").ok().filter(|path| !path.is_empty())
    else {
        eprintln!(
            "not run: set BK_INFLUXDB3_BIN to an influxdb3 3.10 binary (../shared/reference/influxdb3-build.md) to test bk against a real server"
        );
        return;
    };
    let mut sandbox = Sandbox::start().unwrap();
    let data = sandbox.path().join("influxdb3-data");
    std::fs::create_dir_all(&data).unwrap();
    // Snapshots as soon as a minute of data is buffered: the backup holds parquet files (with
    // their snapshot manifests) and WAL files not snapshotted yet.
    let eager = ["--wal-snapshot-size", "1", "--gen1-duration", "1m"];
    let server = Server::start(&binary, &data, &sandbox.path().join("influxdb3.log"), &eager);
    server.wait_healthy(&sandbox);
    let endpoint = format!("node0=http://127.0.0.1:{}", server.port);
    sandbox
        .bkctl_json(&[
            "source",
            "add",
            "live",
            "--kind",
            "influxdb3-core",
            "--nodes",
            "node0",
            "--http",
            &endpoint,
        ])
        .unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
    sandbox.start_worker("live", "node0", &data).unwrap();

    let base_ns: u64 = 1_790_000_000_000_000_000;
    for batch in 0..10u64 {
        let lines: Vec<String> = (0..500u64)
            .map(|i| {
                format!(
                    "cpu,host=h{} usage={i}.5 {}",
                    i % 7,
                    base_ns + batch * 70_000_000_000 + i * 1_000_000
                )
            })
            .collect();
        let (status, text) =
            http(server.port, "POST", "/api/v3/write_lp?db=drill", &lines.join("\n")).unwrap();
        assert!(status == 200 || status == 204, "write failed: {status} {text}");
    }
    sandbox
        .wait_until(Duration::from_secs(60), "a parquet file persisted", || {
            let files = bk_tests::tree::hash_tree(&data.join("node0/dbs")).ok()?;
            (!files.is_empty()).then_some(())
        })
        .unwrap();
    let summary = "SELECT count(*) AS n, min(time) AS lo, max(time) AS hi FROM cpu";
    let before = server.query(summary);
    assert_eq!(before[0]["n"], 5000, "{before}");

    let job = run_job(&sandbox, &["submit", "backup", "--source", "live", "--repo", "repo"]);
    let backup_id = job["backup_id"].as_str().unwrap().to_string();
    server.stop();
    let target = sandbox.path().join("restored");
    let url = format!("file://{}", target.display());
    run_job(
        &sandbox,
        &["submit", "restore", "--backup", &backup_id, "--target", &url, "--nodes-stopped"],
    );
    sandbox.kill_worker("node0");

    let restored =
        Server::start(&binary, &target, &sandbox.path().join("influxdb3-restored.log"), &[]);
    restored.wait_healthy(&sandbox);
    assert_eq!(restored.query(summary), before, "the restored server answers differently");
    restored.stop();

    // A drill does the same by itself, on a worker with scratch space and the binary.
    let drill = format!(
        "[drill]\nscratch_dir = \"{}\"\ninfluxdb3_binary = \"{binary}\"\n\
         influxdb3_args = [\"--datafusion-config\", \"datafusion.execution.skip_physical_aggregate_schema_check:true\"]\n",
        sandbox.path().join("scratch").display()
    );
    sandbox.start_worker_with("live", "node0", &data, &drill).unwrap();
    run_job(&sandbox, &["submit", "drill", "--backup", &backup_id]);
    let shown = sandbox.bkctl(&["show", &backup_id]).unwrap();
    eprintln!("{}", String::from_utf8_lossy(&shown.stdout));
    let backup = sandbox.bkctl_json(&["show", &backup_id]).unwrap();
    let drill = &backup["drills"][0];
    assert_eq!(drill["passed"], true, "{drill}");
    let cpu =
        drill["tables"].as_array().unwrap().iter().find(|table| table["table"] == "drill.cpu");
    let cpu = cpu.unwrap_or_else(|| panic!("no drill.cpu in {drill}"));
    assert_eq!(cpu["rows"], 5000);
    assert_eq!(cpu["min_time"], before[0]["lo"]);
    assert_eq!(cpu["max_time"], before[0]["hi"]);
    // The offline check read the real parquet footers: some rows are in parquet.
    let files: Vec<&Value> = drill["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|table| table["from"] == "files")
        .collect();
    let persisted: u64 = files.iter().map(|table| table["rows"].as_u64().unwrap()).sum();
    assert!(persisted > 0 && persisted <= 5000, "{drill}");
}
