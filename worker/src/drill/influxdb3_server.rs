//! Starting InfluxDB 3 on a restored tree and asking it questions over its HTTP API
//! (`influxdb3-layout.md`: `serve --object-store file --data-dir DIR --node-id N --http-bind
//! ADDR --without-auth`; `GET /health`; `GET /api/v3/configure/database?format=json`;
//! `GET /api/v3/query_sql?db=DB&q=SQL&format=json`).

use std::path::Path;
use std::time::Duration;

use bk_proto::model::TableFacts;
use serde_json::Value;

use super::config::DrillConfig;
use super::server::{free_loopback_port, Server};

/// What bk passes to `influxdb3` before the configured extra arguments.
pub fn serve_args(data_dir: &Path, node: &str, cluster_id: Option<&str>, port: u16) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--object-store",
        "file",
        "--data-dir",
        &data_dir.display().to_string(),
        "--node-id",
        node,
        "--http-bind",
        &format!("127.0.0.1:{port}"),
        "--without-auth",
        // A drill makes no call outside the machine.
        "--disable-telemetry-upload",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    if let Some(cluster_id) = cluster_id {
        args.extend(["--cluster-id".to_string(), cluster_id.to_string()]);
    }
    args
}

/// A started InfluxDB 3 and how to reach it.
pub struct Influxdb3 {
    /// The process.
    pub server: Server,
    base: String,
    client: reqwest::Client,
}

impl Influxdb3 {
    /// Starts `binary` on `data_dir` as `node`, logging to `log`.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn start(
        binary: &Path,
        config: &DrillConfig,
        data_dir: &Path,
        node: &str,
        cluster_id: Option<&str>,
        log: &Path,
    ) -> Result<Self, String> {
        let port = free_loopback_port()?;
        let mut argv = vec![binary.display().to_string()];
        argv.extend(serve_args(data_dir, node, cluster_id, port));
        argv.extend(config.influxdb3_args.iter().cloned());
        let server = Server::start(&argv, &[], log)?;
        let client = reqwest::Client::builder()
            .timeout(config.query_timeout)
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
        Ok(Self { server, base: format!("http://127.0.0.1:{port}"), client })
    }

    /// Waits for `GET /health` to answer 200.
    ///
    /// # Errors
    /// When it exits first or the timeout passes.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration, String> {
        let url = format!("{}/health", self.base);
        let client = self.client.clone();
        self.server
            .wait_healthy(timeout, || {
                let request = client.get(&url).timeout(Duration::from_secs(2)).send();
                async move { request.await.is_ok_and(|response| response.status().is_success()) }
            })
            .await
    }

    async fn get_json(&mut self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), params)
            .map_err(|error| format!("bad URL: {error}"))?;
        let response = self.client.get(url.clone()).send().await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let what = format!("`GET {path}`");
                return Err(self.server.explain_failure(&what, &error.to_string()).await);
            }
        };
        let status = response.status();
        let body = match read_body(response).await {
            Ok(body) => body,
            Err((partial, error)) => {
                // What the server said before its answer broke off is its own error text; the
                // client's "error decoding response body" alone is not.
                let what = format!(
                    "`GET {path}` answered {status}, then its body broke off ({error}) after: {}",
                    shorten(partial.trim())
                );
                return Err(self.server.explain_failure(&what, "the answer was cut short").await);
            }
        };
        if !status.is_success() {
            return Err(format!("`GET {path}` answered {status}: {}", shorten(body.trim())));
        }
        serde_json::from_str(&body)
            .map_err(|error| format!("`GET {path}` did not answer JSON: {error}"))
    }

    async fn query(&mut self, database: &str, sql: &str) -> Result<Vec<Value>, String> {
        let answer = self
            .get_json("/api/v3/query_sql", &[("db", database), ("q", sql), ("format", "json")])
            .await
            .map_err(|error| format!("query `{sql}` on database `{database}`: {error}"))?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }

    /// Per user database and table: `count(*)`, `min(time)`, `max(time)`.
    ///
    /// # Errors
    /// The first query that failed.
    pub async fn table_facts(&mut self) -> Result<Vec<TableFacts>, String> {
        let databases = self.get_json("/api/v3/configure/database", &[("format", "json")]).await?;
        let mut names: Vec<String> = databases
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|database| database["iox::database"].as_str())
            .filter(|name| !name.starts_with('_'))
            .map(str::to_string)
            .collect();
        names.sort();
        let mut facts = Vec::new();
        for database in names {
            let listed = self
                .query(
                    &database,
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'iox'",
                )
                .await?;
            let mut tables: Vec<String> = listed
                .iter()
                .filter_map(|row| row["table_name"].as_str().map(str::to_string))
                .collect();
            tables.sort();
            for table in tables {
                let sql = format!(
                    "SELECT count(*) AS n, min(time) AS min_time, max(time) AS max_time FROM \"{}\"",
                    table.replace('"', "\"\"")
                );
                let rows = self.query(&database, &sql).await?;
                let row = rows.first().cloned().unwrap_or(Value::Null);
                facts.push(TableFacts {
                    table: format!("{database}.{table}"),
                    rows: row["n"].as_u64().unwrap_or(0),
                    min_time: row["min_time"].as_str().unwrap_or_default().to_string(),
                    max_time: row["max_time"].as_str().unwrap_or_default().to_string(),
                    from: "server".to_string(),
                });
            }
        }
        Ok(facts)
    }
}

/// Reads a response's body chunk by chunk, keeping what arrived when the stream fails (a server
/// that hits an error mid-answer often says why in the part it sent).
async fn read_body(mut response: reqwest::Response) -> Result<String, (String, String)> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(error) => {
                let cause = std::error::Error::source(&error)
                    .map(|cause| format!("{error}: {cause}"))
                    .unwrap_or_else(|| error.to_string());
                return Err((String::from_utf8_lossy(&bytes).into_owned(), cause));
            }
        }
    }
}

/// At most the first 2,000 characters of a server's answer, for an error message.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 2_000;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
        None if text.is_empty() => "(nothing)".to_string(),
        None => text.to_string(),
    }
}
