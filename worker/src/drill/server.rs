//! A database process a drill starts on its scratch copy: a free loopback port, its output in
//! a log file, a health wait that notices an early exit, and a graceful stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::{Child, Command};

/// How long a stopping database gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How often health is polled.
const POLL: Duration = Duration::from_millis(200);
/// What the database inherits from the worker's environment: what a JVM or a Rust binary needs
/// to run, nothing else (the worker's environment holds object-store keys and passphrases, and
/// `INFLUXDB3_*` / `QDB_*` settings meant for production that must not steer a drill).
const INHERITED_ENV: [&str; 9] =
    ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "JAVA_HOME", "JAVA_OPTS"];

/// A free TCP port on 127.0.0.1 (bound and released: the database binds it next).
///
/// # Errors
/// When no port can be bound.
pub fn free_loopback_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port on 127.0.0.1: {error}"))
}

/// A running database.
pub struct Server {
    child: Child,
    log: PathBuf,
    program: String,
}

impl Server {
    /// Starts `argv` with `env` added, its stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// When the log cannot be created or the program cannot be started, naming it.
    pub fn start(argv: &[String], env: &[(String, String)], log: &Path) -> Result<Self, String> {
        let (program, args) =
            argv.split_first().ok_or_else(|| "the start command is empty".to_string())?;
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
        }
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|error| format!("cannot open the log `{}`: {error}", log.display()))
        };
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(std::env::vars().filter(|(key, _)| INHERITED_ENV.contains(&key.as_str())))
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start `{program}`: {error}"))?;
        Ok(Self { child, log: log.to_path_buf(), program: program.clone() })
    }

    /// Polls `healthy` until it says yes, the process exits, or `timeout` passes. Returns how
    /// long it took.
    ///
    /// # Errors
    /// When the process exited or stayed unhealthy, with the end of its log.
    pub async fn wait_healthy<F, Fut>(
        &mut self,
        timeout: Duration,
        mut healthy: F,
    ) -> Result<Duration, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let hint = if status.success() {
                    " (a start command must stay in the foreground: a launcher that daemonizes, such as \
                     `questdb.sh start`, returns at once; configure the command it runs instead)"
                } else {
                    ""
                };
                return Err(format!(
                    "`{}` exited ({status}) before it answered its health check{hint}; its log ends:\n{}",
                    self.program,
                    self.log_tail()
                ));
            }
            if healthy().await {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "`{}` did not answer its health check within {}s ([drill] start_timeout); its log ends:\n{}",
                    self.program,
                    timeout.as_secs(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the process exits within `grace` (a query that failed because the server died
    /// sees the connection drop a moment before the exit is reaped), and how.
    pub async fn exited(&mut self, grace: Duration) -> Option<String> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// A failed request explained: whether the server died meanwhile, and the end of its log.
    pub async fn explain_failure(&mut self, what: &str, error: &str) -> String {
        let exited = self
            .exited(Duration::from_secs(2))
            .await
            .map(|status| format!(" (the server exited: {status})"))
            .unwrap_or_default();
        format!(
            "{what} failed{exited}: {error}; its log ends:
{}",
            self.log_tail()
        )
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after a grace period. Returns whether it stopped on SIGTERM.
    pub async fn stop(mut self) -> bool {
        let Some(pid) = self.child.id().and_then(|id| Pid::from_raw(id as i32)) else {
            return true; // Already gone.
        };
        if kill_process(pid, Signal::TERM).is_err() {
            return self.child.wait().await.is_ok();
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = self.child.kill().await;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_a_start_command_that_returns_at_once_is_told_to_stay_in_the_foreground() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/db.log");
        let mut daemonizing = Server::start(&["true".to_string()], &[], &log).unwrap();
        let error = daemonizing.wait_healthy(Duration::from_secs(30), || async { false }).await;
        let error = error.unwrap_err();
        assert!(error.contains("exited") && error.contains("stay in the foreground"), "{error}");
        let mut failing = Server::start(&["false".to_string()], &[], &log).unwrap();
        let error = failing.wait_healthy(Duration::from_secs(30), || async { false }).await;
        assert!(!error.unwrap_err().contains("foreground"));
        let missing = Server::start(&["/nonexistent/db".to_string()], &[], &log);
        assert!(missing.err().unwrap_or_default().contains("cannot start `/nonexistent/db`"));
    }
}
