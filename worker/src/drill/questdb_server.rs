//! Starting QuestDB on a restored root and asking it questions over PostgreSQL wire
//! (`questdb-checkpoint.md`): the configured command with `-d ROOT`, its PG endpoint moved to a
//! free loopback port and its other listeners off (`QDB_*` environment overrides of
//! `server.conf`), then `tables()`, per table `count(*)` and the designated timestamp's range,
//! and `wal_tables()` to see that no table came back suspended.

use std::path::Path;
use std::time::Duration;

use bk_proto::model::TableFacts;
use tokio_postgres::SimpleQueryMessage;

use super::config::DrillConfig;
use super::server::{free_loopback_port, Server};
use crate::config::QuestDbConfig;
use crate::questdb::client::Session;
use crate::questdb::recovery::Armed;

/// A started QuestDB.
pub struct QuestDb {
    /// The process.
    pub server: Server,
    pg_addr: String,
    credentials: QuestDbConfig,
    session: Option<Session>,
}

impl QuestDb {
    /// Starts the configured command on `root`, logging to `log`.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn start(
        config: &DrillConfig,
        credentials: &QuestDbConfig,
        root: &Path,
        log: &Path,
    ) -> Result<Self, String> {
        let port = free_loopback_port()?;
        let mut argv = config.questdb_command.clone();
        argv.extend(["-d".to_string(), root.display().to_string()]);
        let pg_addr = format!("127.0.0.1:{port}");
        let env: Vec<(String, String)> = [
            ("QDB_PG_NET_BIND_TO", pg_addr.as_str()),
            ("QDB_HTTP_ENABLED", "false"),
            ("QDB_HTTP_MIN_ENABLED", "false"),
            ("QDB_LINE_TCP_ENABLED", "false"),
            ("QDB_LINE_UDP_ENABLED", "false"),
            // Enterprise: a restored root may name the production replication store; a drill
            // must never write there.
            ("QDB_REPLICATION_ROLE", "none"),
        ]
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let server = Server::start(&argv, &env, log)?;
        let mut credentials = credentials.clone();
        credentials.statement_timeout = config.query_timeout;
        Ok(Self { server, pg_addr, credentials, session: None })
    }

    /// Waits until it accepts a PostgreSQL wire session.
    ///
    /// # Errors
    /// When it exits first or the timeout passes.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration, String> {
        let (pg_addr, credentials) = (self.pg_addr.clone(), self.credentials.clone());
        let took = self
            .server
            .wait_healthy(timeout, || {
                let attempt = Session::connect(&pg_addr, &credentials);
                async move { attempt.await.is_ok() }
            })
            .await?;
        let session = Session::connect(&self.pg_addr, &self.credentials)
            .await
            .map_err(|error| format!("QuestDB answered once, then refused a session: {error}"))?;
        self.session = Some(session);
        Ok(took)
    }

    /// Whether the started server recovered: it deletes `_restore` (8.1.0+), or for a legacy
    /// snapshot armed by instance id, `snapshot/db/`, once it recovered; left in place, it did
    /// not. Returns the check that passed.
    ///
    /// # Errors
    /// When the trigger or the snapshot is still there.
    pub fn check_recovered(&self, root: &Path, armed: &Armed) -> Result<String, String> {
        match armed {
            Armed::RestoreFile if root.join("_restore").exists() => Err(
                "QuestDB started but left `_restore` in place: it did not recover from the checkpoint (is \
                 `cairo.checkpoint.recovery.enabled` off?)"
                    .to_string(),
            ),
            Armed::RestoreFile => {
                Ok("`_restore` consumed: QuestDB recovered from the checkpoint".to_string())
            }
            Armed::InstanceId { .. } if root.join("snapshot/db").exists() => Err(
                "QuestDB started but left `snapshot/db/` in place: it did not recover from the legacy snapshot (does \
                 its environment set QDB_CAIRO_SNAPSHOT_INSTANCE_ID, or is `cairo.snapshot.recovery.enabled` off?)"
                    .to_string(),
            ),
            Armed::InstanceId { current, .. } => Ok(format!(
                "`snapshot/db/` consumed: the new instance id `{current}` made QuestDB recover from the snapshot"
            )),
        }
    }

    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let session = self.session.as_ref().ok_or("no session")?;
        match session.execute(sql).await {
            Ok(messages) => Ok(messages
                .into_iter()
                .filter_map(|message| match message {
                    SimpleQueryMessage::Row(row) => Some(
                        (0..row.len()).map(|index| row.get(index).map(str::to_string)).collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(error) => {
                let what = format!("query `{sql}`");
                Err(self.server.explain_failure(&what, error.message()).await)
            }
        }
    }

    /// Per table: `count(*)` and the designated timestamp's range; fails when `wal_tables()`
    /// shows a suspended table.
    ///
    /// # Errors
    /// The first failed query, or the suspended tables.
    pub async fn table_facts(&mut self) -> Result<Vec<TableFacts>, String> {
        let tables = self.rows("SELECT table_name, designatedTimestamp FROM tables()").await?;
        let mut facts = Vec::new();
        for row in tables {
            let Some(Some(table)) = row.first().cloned() else { continue };
            let quoted = table.replace('"', "\"\"");
            let timestamp = row.get(1).cloned().flatten().filter(|column| !column.is_empty());
            let sql = match &timestamp {
                Some(column) => {
                    let column = column.replace('"', "\"\"");
                    format!(
                        "SELECT count(*), min(\"{column}\"), max(\"{column}\") FROM \"{quoted}\""
                    )
                }
                None => format!("SELECT count(*) FROM \"{quoted}\""),
            };
            let answer = self.rows(&sql).await?;
            let first = answer.first().cloned().unwrap_or_default();
            let cell = |index: usize| first.get(index).cloned().flatten().unwrap_or_default();
            facts.push(TableFacts {
                table: table.clone(),
                rows: cell(0).parse().unwrap_or(0),
                min_time: cell(1),
                max_time: cell(2),
                from: "server".to_string(),
            });
        }
        let suspended: Vec<String> = self
            .rows("SELECT name, suspended FROM wal_tables()")
            .await?
            .into_iter()
            .filter(|row| matches!(row.get(1).cloned().flatten().as_deref(), Some("t" | "true")))
            .filter_map(|row| row.first().cloned().flatten())
            .collect();
        if !suspended.is_empty() {
            return Err(format!(
                "QuestDB reports suspended WAL tables after the restore: {} (see questdb#5406; `ALTER TABLE … RESUME WAL` \
                 would be needed on a real restore)",
                suspended.join(", ")
            ));
        }
        facts.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(facts)
    }
}
