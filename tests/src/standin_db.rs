//! A stand-in database for restore drills, since no real InfluxDB 3 or QuestDB runs in CI.
//!
//! Started with the arguments a drill gives the real servers, it refuses any other, and answers
//! what the drill asks from the restored files it can read:
//! - `serve --object-store file --data-dir DIR --node-id N --http-bind ADDR --without-auth
//!   [--cluster-id C]` (InfluxDB 3): `GET /health`, `GET /api/v3/configure/database`, and over
//!   `GET /api/v3/query_sql` the tables of a database and per table `count(*)`, `min(time)`,
//!   `max(time)`, all from the snapshot manifests and parquet footers under DIR (databases and
//!   tables are named `db<id>` and `t<id>`: the stand-in does not decode the catalog).
//! - `questdb [flags] -d ROOT` with `QDB_PG_NET_BIND_TO`: recovers from the checkpoint as the
//!   version it plays does ([`crate::questdb_recovery`]; `--stand-in-version=X`, default
//!   9.0.0), then serves PostgreSQL wire ([`crate::questdb_peer`])
//!   with `tables()`, `wal_tables()` and per-table counts from the column files (`ts.d`, 8 bytes
//!   a row).
//!
//! Flags (after the documented arguments): `--stand-in-fail-at-start` exits 1 with an error
//! (after printing the names of its environment variables),
//! `--stand-in-crash-mid-query` exits on the first count query, `--stand-in-break-mid-answer`
//! (InfluxDB 3) answers count queries `200 OK`, sends an error text, and closes the connection
//! before the length it announced (as a server failing mid-stream does).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::questdb_peer::{PeerConfig, PeerTable, QuestDbPeer};
use crate::questdb_recovery::recover_on_start;

/// Runs the stand-in; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let fail_at_start = args.iter().any(|arg| arg == "--stand-in-fail-at-start");
    let crash = args.iter().any(|arg| arg == "--stand-in-crash-mid-query");
    let break_answer = args.iter().any(|arg| arg == "--stand-in-break-mid-answer");
    let version = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--stand-in-version="))
        .unwrap_or("9.0.0")
        .to_string();
    let args: Vec<&str> =
        args.iter().map(String::as_str).filter(|arg| !arg.starts_with("--stand-in-")).collect();
    if fail_at_start {
        // Names only: what the drill let the database inherit from the worker.
        let mut names: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
        names.sort();
        eprintln!("environment: {}", names.join(","));
        eprintln!("Serve command failed: the stand-in was told to fail at start");
        return 1;
    }
    let result = match args.first() {
        Some(&"serve") => serve_influxdb3(&args[1..], Faults { crash, break_answer }),
        Some(&"questdb") => serve_questdb(&args[1..], &version, crash),
        _ => {
            Err(format!("unknown command line {args:?}: expected `serve …` or `questdb … -d ROOT`"))
        }
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("stand-in: {error}");
            2
        }
    }
}

/// How the InfluxDB 3 stand-in misbehaves on count queries.
#[derive(Clone, Copy)]
struct Faults {
    /// Exit.
    crash: bool,
    /// Answer 200, an error text, and close early.
    break_answer: bool,
}

/// What a server failing mid-answer managed to send.
const BROKEN_ANSWER_TEXT: &str = "{\"error\":\"query failed: the stand-in broke off this answer\"";

fn serve_influxdb3(args: &[&str], faults: Faults) -> Result<(), String> {
    let mut options: BTreeMap<&str, &str> = BTreeMap::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        match *flag {
            "--without-auth" | "--disable-telemetry-upload" => {
                options.insert(flag, "");
            }
            "--object-store" | "--data-dir" | "--node-id" | "--http-bind" | "--cluster-id" => {
                let value = rest.next().ok_or(format!("{flag} needs a value"))?;
                options.insert(flag, value);
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    for required in ["--object-store", "--data-dir", "--node-id", "--http-bind", "--without-auth"] {
        if !options.contains_key(required) {
            return Err(format!("{required} is required"));
        }
    }
    if options["--object-store"] != "file" {
        return Err("only --object-store file".to_string());
    }
    let bind = options["--http-bind"];
    if !bind.starts_with("127.0.0.1:") {
        return Err(format!("refusing to listen on `{bind}`: drills listen on loopback"));
    }
    let tables = influxdb3_tables(Path::new(options["--data-dir"]), options["--node-id"])?;
    let listener = TcpListener::bind(bind).map_err(|error| format!("bind {bind}: {error}"))?;
    eprintln!("stand-in influxdb3 listening on {bind} with {} tables", tables.len());
    for stream in listener.incoming().flatten() {
        let _ = answer_http(stream, &tables, faults);
    }
    Ok(())
}

/// Per (database, table): rows and time range (ns), from the manifests and parquet footers.
type Tables = BTreeMap<(String, String), (u64, i64, i64)>;

fn influxdb3_tables(data_dir: &Path, node: &str) -> Result<Tables, String> {
    let snapshots = data_dir.join(node).join("snapshots");
    let Ok(entries) = std::fs::read_dir(&snapshots) else { return Ok(Tables::new()) };
    // The server's view: every file a manifest added, minus those a manifest removed.
    let mut added: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut removed = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let bytes = std::fs::read(entry.path()).map_err(|error| error.to_string())?;
        let manifest: Value = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
        for (field, adds) in [("databases", true), ("removed_files", false)] {
            for database in manifest[field].as_array().into_iter().flatten() {
                for table in database[1]["tables"].as_array().into_iter().flatten() {
                    let key = (format!("db{}", database[0]), format!("t{}", table[0]));
                    for file in table[1].as_array().into_iter().flatten() {
                        let Some(path) = file["path"].as_str() else { continue };
                        if adds {
                            added.insert(path.to_string(), key.clone());
                        } else {
                            removed.insert(path.to_string());
                        }
                    }
                }
            }
        }
    }
    let mut tables = Tables::new();
    for (path, key) in added.into_iter().filter(|(path, _)| !removed.contains(path)) {
        // As the server: a file the manifests name but retention deleted is not read.
        if !data_dir.join(&path).is_file() {
            continue;
        }
        let (rows, min, max) = parquet_facts(&data_dir.join(path))?;
        let entry = tables.entry(key).or_insert((0, i64::MAX, i64::MIN));
        *entry = (entry.0 + rows, entry.1.min(min), entry.2.max(max));
    }
    Ok(tables)
}

fn parquet_facts(path: &Path) -> Result<(u64, i64, i64), String> {
    use parquet::file::statistics::Statistics;
    let file = std::fs::File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let rows = metadata.file_metadata().num_rows() as u64;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for group in metadata.row_groups() {
        if let Some(Statistics::Int64(stats)) = group.column(0).statistics() {
            min = min.min(stats.min_opt().copied().unwrap_or(i64::MAX));
            max = max.max(stats.max_opt().copied().unwrap_or(i64::MIN));
        }
    }
    Ok((rows, min, max))
}

fn answer_http(stream: TcpStream, tables: &Tables, faults: Faults) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let url =
        url::Url::parse(&format!("http://stand-in{target}")).map_err(std::io::Error::other)?;
    let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let (status, body) = match url.path() {
        "/health" => (200, "OK".to_string()),
        "/api/v3/configure/database" => {
            let mut databases: Vec<&String> = tables.keys().map(|(database, _)| database).collect();
            databases.dedup();
            let mut list = vec![json!({"iox::database": "_internal"})];
            list.extend(databases.iter().map(|name| json!({"iox::database": name})));
            (200, Value::Array(list).to_string())
        }
        "/api/v3/query_sql" => {
            let database = params.get("db").cloned().unwrap_or_default();
            let sql = params.get("q").cloned().unwrap_or_default();
            if sql.contains("information_schema.tables") {
                let names: Vec<Value> = tables
                    .keys()
                    .filter(|(db, _)| *db == database)
                    .map(|(_, table)| json!({"table_name": table}))
                    .collect();
                (200, Value::Array(names).to_string())
            } else if sql.starts_with("SELECT count(*)") {
                if faults.crash {
                    std::process::exit(134);
                }
                if faults.break_answer {
                    let mut stream = stream;
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{BROKEN_ANSWER_TEXT}"
                    )?;
                    return stream.flush();
                }
                let table = sql.rsplit("FROM ").next().unwrap_or("").trim().trim_matches('"');
                match tables.get(&(database.clone(), table.to_string())) {
                    Some((rows, min, max)) => {
                        let row = json!({"n": rows, "min_time": influx_time(*min), "max_time": influx_time(*max)});
                        (200, json!([row]).to_string())
                    }
                    None => {
                        (404, format!("{{\"error\":\"table '{table}' not found in {database}\"}}"))
                    }
                }
            } else {
                (400, format!("{{\"error\":\"the stand-in does not answer `{sql}`\"}}"))
            }
        }
        _ => (404, "not found".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// As InfluxDB 3 prints times in JSON: UTC, no zone suffix.
fn influx_time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

fn serve_questdb(args: &[&str], version: &str, crash: bool) -> Result<(), String> {
    let root = match args {
        [.., "-d", root] => PathBuf::from(root),
        _ => return Err("expected `-d ROOT` last".to_string()),
    };
    let bind = std::env::var("QDB_PG_NET_BIND_TO").map_err(|_| {
        "QDB_PG_NET_BIND_TO is not set: a drill moves the PG endpoint to a free port".to_string()
    })?;
    let env_instance_id = std::env::var("QDB_CAIRO_SNAPSHOT_INSTANCE_ID").ok();
    match recover_on_start(&root, version, env_instance_id.as_deref())? {
        Some(line) => eprintln!("stand-in questdb {version}: {line} … recovered"),
        None => eprintln!("stand-in questdb {version}: no recovery on start"),
    }
    let mut config = PeerConfig::version(&root, version);
    config.bind = bind.clone();
    config.crash_on_count = crash;
    config.tables = questdb_tables(&root.join("db"));
    let _peer = QuestDbPeer::start(config).map_err(|error| format!("bind {bind}: {error}"))?;
    eprintln!("stand-in questdb listening on {bind}");
    loop {
        std::thread::park();
    }
}

fn questdb_tables(db: &Path) -> Vec<PeerTable> {
    let mut tables = Vec::new();
    let Ok(entries) = std::fs::read_dir(db) else { return tables };
    for entry in entries.flatten().filter(|entry| entry.path().is_dir()) {
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let name = dir_name.split('~').next().unwrap_or(&dir_name).to_string();
        let mut partitions: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|partition| partition.path().join("ts.d"))
            .filter(|column| column.is_file())
            .collect();
        partitions.sort();
        let rows = partitions
            .iter()
            .filter_map(|column| std::fs::metadata(column).ok())
            .map(|m| m.len() / 8)
            .sum();
        // Random column bytes stand for timestamps: folded into this century, ordered.
        let stamp =
            |bytes: &[u8]| bytes.try_into().map_or(0, u64::from_le_bytes) % 3_155_760_000_000_000;
        let first =
            partitions.first().and_then(|column| std::fs::read(column).ok()).unwrap_or_default();
        let last =
            partitions.last().and_then(|column| std::fs::read(column).ok()).unwrap_or_default();
        let a = stamp(first.get(..8).unwrap_or(&[]));
        let b = stamp(last.get(last.len().saturating_sub(8)..).unwrap_or(&[]));
        tables.push(PeerTable {
            name,
            timestamp_column: "ts".to_string(),
            rows,
            min_micros: a.min(b),
            max_micros: a.max(b),
            suspended: false,
        });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tables
}
