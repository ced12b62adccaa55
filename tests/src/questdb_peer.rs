//! A protocol-level QuestDB peer: a PostgreSQL wire server that reproduces QuestDB's checkpoint
//! contract (`shared/reference/questdb-checkpoint.md` §0), since no QuestDB server can be
//! installed here.
//!
//! - One global checkpoint state per server, shared by every connection, not released when a
//!   connection drops.
//! - `CHECKPOINT CREATE|RELEASE` (8.1.1+) and `SNAPSHOT PREPARE|COMPLETE`, `OK` command tags, the
//!   exact error strings, every error with `C=00000`, `S=ERROR` and a position.
//! - Statements execute at Parse time in the extended protocol (the later Execute is a no-op).
//! - Cleartext password authentication, `N` to SSLRequest/GSSENCRequest, the `questdb_version`
//!   parameter (when configured), `checkpoint_status()` and `build()`.
//! - CREATE writes `<root>/.checkpoint/db/<table>/{_meta,_txn,_cv,_name}` plus
//!   `txn_seq/{_meta,_txn}` for WAL tables and `db/tables.d.0` (legacy: `<root>/snapshot/db/…`,
//!   without `_name` before 8.1.0), and the meta file with the root's
//!   `cairo.snapshot.instance.id` (`_snapshot` for the legacy syntax); RELEASE deletes them.
//! - It answers like the version it announces (the matrix in §0 of the reference and what real
//!   servers answered, §5b): before 8.1.1 only `SNAPSHOT PREPARE/COMPLETE`, `Waiting for
//!   SNAPSHOT COMPLETE to be called`, `CHECKPOINT CREATE` refused as a keyword used as a name,
//!   and no `checkpoint_status()` (`unknown function name: checkpoint_status()`); from 8.1.1 both
//!   syntaxes, sharing one state and the `CHECKPOINT RELEASE` message, and in 8.1.1–8.1.3 the
//!   legacy syntax also writes into `.checkpoint/` (fixed by PR #5091). A mode makes
//!   `checkpoint_status()` fail on any version.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::questdb_recovery::{configured_instance_id, questdb_string, version_numbers};

/// How the peer behaves.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The server root (where `.checkpoint/` or `snapshot/` is written).
    pub root: PathBuf,
    /// Announced as `questdb_version`; also decides the syntax: before 8.1.1 only `SNAPSHOT`.
    pub version: String,
    /// Whether to announce `questdb_version` at all (older builds did not).
    pub announce_version: bool,
    /// `pg.user` / `pg.password`.
    pub user: String,
    /// The password.
    pub password: String,
    /// How long CREATE takes after the state changed and before the answer (the window in
    /// which a client can die holding a checkpoint).
    pub create_delay: Duration,
    /// `checkpoint_status()` answers with an error (whatever the version).
    pub status_fails: bool,
    /// Where to listen (`127.0.0.1:0`: any free port).
    pub bind: String,
    /// What `tables()`, `wal_tables()` and per-table `count(*)`/`min`/`max` answer.
    pub tables: Vec<PeerTable>,
    /// Exit the process on the first `count(*)` (a server crashing mid-query; stand-in only).
    pub crash_on_count: bool,
}

/// A table as the peer reports it.
#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    /// Its name.
    pub name: String,
    /// The designated timestamp column (empty: none).
    pub timestamp_column: String,
    /// Rows.
    pub rows: u64,
    /// The first and last timestamp, micros since the epoch.
    pub min_micros: u64,
    /// See `min_micros`.
    pub max_micros: u64,
    /// `wal_tables()` shows it suspended.
    pub suspended: bool,
}

impl PeerConfig {
    /// A current server (9.0.0) with QuestDB's default credentials.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            version: "9.0.0".to_string(),
            announce_version: true,
            user: "admin".to_string(),
            password: "quest".to_string(),
            create_delay: Duration::ZERO,
            status_fails: false,
            bind: "127.0.0.1:0".to_string(),
            tables: Vec::new(),
            crash_on_count: false,
        }
    }

    /// A server of `version`; versions before 8.1.1 announce none (older builds did not send
    /// `questdb_version`: clients learn it from `build()`).
    pub fn version(root: &Path, version: &str) -> Self {
        let mut config = Self::new(root);
        config.version = version.to_string();
        config.announce_version = !config.is_before((8, 1, 1));
        config
    }

    fn is_before(&self, version: (u64, u64, u64)) -> bool {
        version_numbers(&self.version) < version
    }

    /// Before 8.1.1: only `SNAPSHOT` statements, no `checkpoint_status()`.
    fn is_legacy(&self) -> bool {
        self.is_before((8, 1, 1))
    }

    /// Where `SNAPSHOT PREPARE` writes: `snapshot/`, except in 8.1.1–8.1.3 (`.checkpoint/`).
    fn legacy_dir(&self) -> &'static str {
        if !self.is_legacy() && self.is_before((8, 1, 4)) {
            ".checkpoint"
        } else {
            "snapshot"
        }
    }
}

#[derive(Debug, Default)]
struct PeerState {
    /// Micros since the epoch when checkpoint mode started.
    started_at: Option<u64>,
    statements: Vec<String>,
    /// When each statement arrived (ms since the epoch).
    received_at_ms: Vec<u64>,
    checkpoint_files: Vec<(String, Vec<u8>)>,
    /// The files of the last CREATE, kept after RELEASE deleted them.
    last_created: Vec<(String, Vec<u8>)>,
}

/// A running peer; stops (and refuses connections) when dropped.
pub struct QuestDbPeer {
    address: String,
    state: Arc<Mutex<PeerState>>,
    stop: Arc<AtomicBool>,
    config: PeerConfig,
}

impl QuestDbPeer {
    /// Starts the peer on a loopback port.
    ///
    /// # Errors
    /// When it cannot bind.
    pub fn start(config: PeerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(&config.bind)?;
        let address = listener.local_addr()?.to_string();
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(PeerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_state, accept_stop, accept_config) =
            (state.clone(), stop.clone(), config.clone());
        std::thread::spawn(move || {
            while !accept_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, config, stop) =
                            (accept_state.clone(), accept_config.clone(), accept_stop.clone());
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = Connection { stream, state, config, stop }.serve();
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self { address, state, stop, config })
    }

    /// `host:port` of its PostgreSQL wire endpoint.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the server is in checkpoint mode.
    pub fn in_checkpoint(&self) -> bool {
        self.lock().started_at.is_some()
    }

    /// Every statement received, in order, as sent.
    pub fn statements(&self) -> Vec<String> {
        self.lock().statements.clone()
    }

    /// Every statement received with when it arrived (ms since the epoch), in order.
    pub fn statement_times(&self) -> Vec<(String, u64)> {
        let state = self.lock();
        state.statements.iter().cloned().zip(state.received_at_ms.iter().copied()).collect()
    }

    /// The files the current checkpoint holds (path relative to the root, bytes); empty when
    /// the server is not in checkpoint mode.
    pub fn checkpoint_files(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().checkpoint_files.clone()
    }

    /// The files the last CREATE wrote, even after a RELEASE deleted them: what a backup taken
    /// during that checkpoint holds besides the root.
    pub fn last_checkpoint_files(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().last_created.clone()
    }

    /// Enters checkpoint mode as another client would.
    ///
    /// # Errors
    /// IO errors writing the checkpoint files.
    pub fn force_checkpoint(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        let dir = if self.config.is_legacy() { "snapshot" } else { ".checkpoint" };
        create_checkpoint(&self.config, &mut state, dir)
    }

    /// Whether the last statement received was a release (`CHECKPOINT RELEASE` or `SNAPSHOT
    /// COMPLETE`) and the server is idle: what every job that may have held a checkpoint must
    /// leave behind.
    pub fn ended_released(&self) -> bool {
        let state = self.lock();
        let last_is_release = state.statements.last().is_some_and(|last| {
            let last = last.to_ascii_uppercase();
            last == "CHECKPOINT RELEASE" || last == "SNAPSHOT COMPLETE"
        });
        last_is_release && state.started_at.is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for QuestDbPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Connection {
    stream: TcpStream,
    state: Arc<Mutex<PeerState>>,
    config: PeerConfig,
    stop: Arc<AtomicBool>,
}

/// The outcome of one statement.
enum Outcome {
    Ok,
    Rows(Vec<(&'static str, u32)>, Vec<Vec<Option<String>>>),
    Error(String, usize),
}

impl Connection {
    fn serve(mut self) -> std::io::Result<()> {
        let mut reader = BufReader::new(self.stream.try_clone()?);
        if !self.startup(&mut reader)? {
            return Ok(());
        }
        let mut pending: Option<Outcome> = None;
        let mut failed_until_sync = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut kind = [0u8; 1];
            if reader.read_exact(&mut kind).is_err() {
                return Ok(());
            }
            let body = read_body(&mut reader)?;
            match kind[0] {
                b'Q' => {
                    for statement in cstr(&body)
                        .split(';')
                        .map(str::trim)
                        .filter(|statement| !statement.is_empty())
                    {
                        let outcome = self.execute(statement);
                        let failed = matches!(outcome, Outcome::Error(..));
                        self.send_outcome(outcome, true)?;
                        if failed {
                            break;
                        }
                    }
                    self.send(b'Z', b"I")?;
                }
                b'P' if !failed_until_sync => {
                    let mut parts = body.split(|byte| *byte == 0);
                    let _name = parts.next();
                    let query =
                        String::from_utf8_lossy(parts.next().unwrap_or_default()).to_string();
                    let outcome = self.execute(query.trim().trim_end_matches(';'));
                    if let Outcome::Error(..) = outcome {
                        failed_until_sync = true;
                        self.send_outcome(outcome, false)?;
                    } else {
                        self.send(b'1', b"")?;
                        pending = Some(outcome);
                    }
                }
                b'B' if !failed_until_sync => self.send(b'2', b"")?,
                b'D' if !failed_until_sync => {
                    if body.first() == Some(&b'S') {
                        self.send(b't', &0i16.to_be_bytes())?;
                    }
                    match &pending {
                        Some(Outcome::Rows(columns, _)) => self.send_row_description(columns)?,
                        _ => self.send(b'n', b"")?,
                    }
                }
                // Executed at Parse time: Execute only returns what Parse produced.
                b'E' if !failed_until_sync => {
                    let outcome = pending.take().unwrap_or(Outcome::Ok);
                    self.send_outcome(outcome, false)?;
                }
                b'C' => self.send(b'3', b"")?,
                b'S' => {
                    failed_until_sync = false;
                    self.send(b'Z', b"I")?;
                }
                b'X' => return Ok(()),
                _ => {}
            }
        }
    }

    /// Handles SSL/GSS requests, the startup message and cleartext authentication.
    fn startup(&mut self, reader: &mut BufReader<TcpStream>) -> std::io::Result<bool> {
        loop {
            let body = read_body(reader)?;
            let code = u32::from_be_bytes(body[..4].try_into().map_err(std::io::Error::other)?);
            if code == 80_877_103 || code == 80_877_104 {
                self.stream.write_all(b"N")?;
                continue;
            }
            let mut fields = body[4..]
                .split(|byte| *byte == 0)
                .map(|field| String::from_utf8_lossy(field).to_string());
            let mut user = String::new();
            while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
                if key == "user" {
                    user = value;
                }
            }
            self.send(b'R', &3i32.to_be_bytes())?;
            let mut kind = [0u8; 1];
            reader.read_exact(&mut kind)?;
            let password = read_body(reader)?;
            if kind[0] != b'p'
                || user != self.config.user
                || cstr(&password) != self.config.password
            {
                self.send_error("invalid username/password", None)?;
                return Ok(false);
            }
            self.send(b'R', &0i32.to_be_bytes())?;
            let mut parameters = vec![
                ("TimeZone", "GMT".to_string()),
                ("application_name", "QuestDB".to_string()),
                ("server_version", "11.3".to_string()),
                ("integer_datetimes", "on".to_string()),
                ("client_encoding", "UTF8".to_string()),
            ];
            if self.config.announce_version {
                parameters.push(("questdb_version", self.config.version.clone()));
            }
            for (name, value) in parameters {
                self.send(b'S', &[name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat())?;
            }
            self.send(b'K', &[1u32.to_be_bytes(), 2u32.to_be_bytes()].concat())?;
            self.send(b'Z', b"I")?;
            return Ok(true);
        }
    }

    fn execute(&mut self, statement: &str) -> Outcome {
        let legacy_server = self.config.is_legacy();
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        state.statements.push(statement.to_string());
        state.received_at_ms.push(now_micros() / 1000);
        let words: Vec<String> = statement.split_whitespace().map(str::to_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let position = |word: usize| {
            statement.split_whitespace().take(word).map(|w| w.len() + 1).sum::<usize>() + 1
        };
        let waiting = if legacy_server {
            "Waiting for SNAPSHOT COMPLETE to be called"
        } else {
            "Waiting for CHECKPOINT RELEASE to be called"
        };
        match words.as_slice() {
            // What 8.0.3 answered (§5b); RELEASE is no keyword, so it reads as a table name.
            ["checkpoint", "create"] if legacy_server => Outcome::Error(
                "table and column names that are SQL keywords have to be enclosed in double quotes, such as \"CREATE\""
                    .to_string(),
                position(1),
            ),
            ["checkpoint", ..] if legacy_server => {
                Outcome::Error("table does not exist [table=checkpoint]".to_string(), 1)
            }
            ["checkpoint", "create"] | ["snapshot", "prepare"] => {
                if state.started_at.is_some() {
                    return Outcome::Error(waiting.to_string(), 1);
                }
                let dir = if words[0] == "snapshot" { self.config.legacy_dir() } else { ".checkpoint" };
                if let Err(error) = create_checkpoint(&self.config, &mut state, dir) {
                    return Outcome::Error(
                        format!(
                            "Could not create [dir={}, error={error}]",
                            self.config.root.display()
                        ),
                        1,
                    );
                }
                drop(state);
                std::thread::sleep(self.config.create_delay);
                Outcome::Ok
            }
            ["checkpoint", "release"] | ["snapshot", "complete"] => {
                state.started_at = None;
                state.checkpoint_files.clear();
                let _ = std::fs::remove_dir_all(self.config.root.join(".checkpoint/db"));
                let _ = std::fs::remove_dir_all(self.config.root.join("snapshot/db"));
                Outcome::Ok
            }
            ["checkpoint"] => {
                Outcome::Error("'create' or 'release' expected".to_string(), statement.len() + 1)
            }
            ["checkpoint", ..] => {
                Outcome::Error("'create' or 'release' expected".to_string(), position(1))
            }
            ["snapshot", ..] => {
                Outcome::Error("'prepare' or 'complete' expected".to_string(), position(1))
            }
            ["select", "*", "from", "checkpoint_status()"] if legacy_server => Outcome::Error(
                "unknown function name: checkpoint_status()".to_string(),
                position(3),
            ),
            ["select", "*", "from", "checkpoint_status()"] if self.config.status_fails => {
                Outcome::Error(
                    "could not read checkpoint status [errno=5, path=.checkpoint/_checkpoint_meta.d]"
                        .to_string(),
                    position(3),
                )
            }
            ["select", "*", "from", "checkpoint_status()"] => {
                let started = state.started_at.map(format_timestamp);
                let in_progress = if started.is_some() { "t" } else { "f" };
                Outcome::Rows(
                    vec![("in_progress", 16), ("started_at", 1114)],
                    vec![vec![Some(in_progress.to_string()), started]],
                )
            }
            ["select", "table_name,", "designatedtimestamp", "from", "tables()"] => Outcome::Rows(
                vec![("table_name", 1043), ("designatedTimestamp", 1043)],
                self.config
                    .tables
                    .iter()
                    .map(|table| vec![Some(table.name.clone()), Some(table.timestamp_column.clone())])
                    .collect(),
            ),
            ["select", "name,", "suspended", "from", "wal_tables()"] => Outcome::Rows(
                vec![("name", 1043), ("suspended", 16)],
                self.config
                    .tables
                    .iter()
                    .map(|table| {
                        let suspended = if table.suspended { "t" } else { "f" };
                        vec![Some(table.name.clone()), Some(suspended.to_string())]
                    })
                    .collect(),
            ),
            ["select", count, ..] if count.starts_with("count(*)") => {
                if self.config.crash_on_count {
                    std::process::exit(134);
                }
                let name = words.last().copied().unwrap_or("").trim_matches('"');
                match self.config.tables.iter().find(|table| table.name.to_lowercase() == name) {
                    Some(table) => Outcome::Rows(
                        vec![("count", 20), ("min", 1114), ("max", 1114)],
                        vec![vec![
                            Some(table.rows.to_string()),
                            Some(format_timestamp(table.min_micros)),
                            Some(format_timestamp(table.max_micros)),
                        ]],
                    ),
                    None => Outcome::Error(format!("table does not exist [table={name}]"), 1),
                }
            }
            ["select", "build()"] => {
                let build = format!(
                    "Build Information: QuestDB {}, JDK 17.0.9, Commit Hash 0123456789abcdef",
                    self.config.version
                );
                Outcome::Rows(vec![("build", 1043)], vec![vec![Some(build)]])
            }
            _ => Outcome::Error(
                format!("table does not exist [table={}]", words.first().copied().unwrap_or("")),
                1,
            ),
        }
    }

    fn send_outcome(&mut self, outcome: Outcome, with_description: bool) -> std::io::Result<()> {
        match outcome {
            Outcome::Ok => self.send(b'C', b"OK\0"),
            Outcome::Rows(columns, rows) => {
                if with_description {
                    self.send_row_description(&columns)?;
                }
                for row in &rows {
                    let mut data = (row.len() as i16).to_be_bytes().to_vec();
                    for value in row {
                        match value {
                            Some(text) => {
                                data.extend_from_slice(&(text.len() as i32).to_be_bytes());
                                data.extend_from_slice(text.as_bytes());
                            }
                            None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                        }
                    }
                    self.send(b'D', &data)?;
                }
                self.send(b'C', format!("SELECT {}\0", rows.len()).as_bytes())
            }
            Outcome::Error(message, position) => self.send_error(&message, Some(position)),
        }
    }

    fn send_row_description(&mut self, columns: &[(&str, u32)]) -> std::io::Result<()> {
        let mut data = (columns.len() as i16).to_be_bytes().to_vec();
        for (name, type_oid) in columns {
            data.extend_from_slice(name.as_bytes());
            data.push(0);
            data.extend_from_slice(&0i32.to_be_bytes());
            data.extend_from_slice(&0i16.to_be_bytes());
            data.extend_from_slice(&type_oid.to_be_bytes());
            data.extend_from_slice(&(-1i16).to_be_bytes());
            data.extend_from_slice(&(-1i32).to_be_bytes());
            data.extend_from_slice(&0i16.to_be_bytes());
        }
        self.send(b'T', &data)
    }

    /// QuestDB's error fields, in its order: C (always 00000), M, S, optional P.
    fn send_error(&mut self, message: &str, position: Option<usize>) -> std::io::Result<()> {
        let mut data = b"C00000\0M".to_vec();
        data.extend_from_slice(message.as_bytes());
        data.extend_from_slice(b"\0SERROR\0");
        if let Some(position) = position {
            data.extend_from_slice(format!("P{position}\0").as_bytes());
        }
        data.push(0);
        self.send(b'E', &data)
    }

    fn send(&mut self, kind: u8, body: &[u8]) -> std::io::Result<()> {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.stream.write_all(&message)
    }
}

/// Writes the checkpoint's metadata copies like `CHECKPOINT CREATE` (data files are not copied).
fn create_checkpoint(config: &PeerConfig, state: &mut PeerState, dir: &str) -> std::io::Result<()> {
    let legacy = dir == "snapshot";
    let checkpoint_root = config.root.join(dir);
    let db = config.root.join("db");
    let mut files = Vec::new();
    if db.is_dir() {
        let mut tables: Vec<_> = std::fs::read_dir(&db)?.collect::<Result<_, _>>()?;
        tables.sort_by_key(|entry| entry.file_name());
        for table in tables.into_iter().filter(|entry| entry.path().is_dir()) {
            let name = table.file_name().to_string_lossy().to_string();
            for file in ["_meta", "_txn", "_cv", "txn_seq/_meta"] {
                if let Ok(bytes) = std::fs::read(table.path().join(file)) {
                    files.push((format!("db/{name}/{file}"), bytes));
                }
            }
            if table.path().join("txn_seq").is_dir() {
                // The sequencer's last transaction, a long.
                files.push((format!("db/{name}/txn_seq/_txn"), 7u64.to_le_bytes().to_vec()));
            }
            if !config.is_before((8, 1, 0)) {
                // 8.0.x snapshots hold no `_name` files (§5b).
                files.push((
                    format!("db/{name}/_name"),
                    name.split('~').next().unwrap_or_default().as_bytes().to_vec(),
                ));
            }
        }
        if let Ok(bytes) = std::fs::read(db.join("tables.d.0")) {
            files.push(("db/tables.d.0".to_string(), bytes));
        }
    }
    let instance_id = configured_instance_id(&config.root, None);
    if legacy {
        files.push(("db/_snapshot".to_string(), questdb_string(&instance_id)));
    } else {
        files.push(("db/_checkpoint_meta.d".to_string(), questdb_string(&instance_id)));
    }
    let mut written = Vec::new();
    for (relative, bytes) in files {
        let path = checkpoint_root.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &bytes)?;
        written.push((format!("{dir}/{relative}"), bytes));
    }
    state.last_created = written.clone();
    state.checkpoint_files = written;
    state.started_at = Some(now_micros());
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_micros() as u64).unwrap_or(0)
}

/// `yyyy-MM-dd HH:mm:ss.SSSUUU` (UTC), QuestDB's text format for TIMESTAMP.
fn format_timestamp(micros: u64) -> String {
    let seconds = micros / 1_000_000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60,
        micros % 1_000_000
    )
}

fn read_body(reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let length = (i32::from_be_bytes(length) as usize).saturating_sub(4);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|byte| *byte == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).to_string()
}

/// The worker's `[questdb]` section for a peer with `password`, then `extra` keys.
///
/// The free-disk floor is off (`min_free_disk_percent = 0`) unless `extra` sets it: the
/// sandbox's root lies on the test machine's shared disk, whose free share is not the test's
/// to choose (CI once ran with 9 % free, under the 10 % default), and only the test of the
/// floor itself should depend on it.
pub fn worker_section(password: &str, extra: &str) -> String {
    let floor =
        if extra.contains("min_free_disk_percent") { "" } else { "min_free_disk_percent = 0.0\n" };
    format!("[questdb]\nuser = \"admin\"\npassword = \"{password}\"\n{floor}{extra}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_timestamps_use_questdb_text_format() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000000");
        assert_eq!(format_timestamp(1_795_309_403_920_123), "2026-11-22 01:03:23.920123");
    }
}
