//! A PostgreSQL wire client for QuestDB's checkpoint statements.

use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::config::QuestDbConfig;
use crate::error::TaskError;

/// Which statements the server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointSyntax {
    /// `CHECKPOINT CREATE` / `CHECKPOINT RELEASE` (8.1.1 and later); files in `.checkpoint/`.
    Checkpoint,
    /// `SNAPSHOT PREPARE` / `SNAPSHOT COMPLETE` (before 8.1.1); files in `snapshot/`.
    Legacy,
}

impl CheckpointSyntax {
    /// The statement entering checkpoint mode.
    pub fn create(self) -> &'static str {
        match self {
            CheckpointSyntax::Checkpoint => "CHECKPOINT CREATE",
            CheckpointSyntax::Legacy => "SNAPSHOT PREPARE",
        }
    }

    /// The statement leaving it.
    pub fn release(self) -> &'static str {
        match self {
            CheckpointSyntax::Checkpoint => "CHECKPOINT RELEASE",
            CheckpointSyntax::Legacy => "SNAPSHOT COMPLETE",
        }
    }

    /// The syntax for a server version (`x.y.z`); `None` when the version does not parse.
    pub fn for_version(version: &str) -> Option<Self> {
        let current = ServerVersion::parse(version)?.is_at_least(CHECKPOINT_SINCE);
        Some(if current { CheckpointSyntax::Checkpoint } else { CheckpointSyntax::Legacy })
    }
}

/// `CHECKPOINT CREATE/RELEASE` and `checkpoint_status()` arrived with 8.1.1 (PRs #4821, #4869).
pub const CHECKPOINT_SINCE: (u64, u64, u64) = (8, 1, 1);

/// A QuestDB version as `(major, minor, patch)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u64, pub u64, pub u64);

impl ServerVersion {
    /// Parses `9.0.0`, `8.1`, `9.4.2-rc1`; `None` when there is no leading number.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(['.', '-']).map(|part| part.parse::<u64>().ok());
        let major = parts.next()??;
        Some(Self(major, parts.next().flatten().unwrap_or(0), parts.next().flatten().unwrap_or(0)))
    }

    /// The version in `SELECT build()`'s answer: `Build Information: QuestDB 9.0.0, JDK …`.
    pub fn from_build_information(text: &str) -> Option<Self> {
        let after = text.split("QuestDB").nth(1)?;
        Self::parse(after.trim_start().split([',', ' ']).next()?)
    }

    /// Whether this version is `version` or later.
    pub fn is_at_least(self, version: (u64, u64, u64)) -> bool {
        (self.0, self.1, self.2) >= version
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Whether the server has `checkpoint_status()`, as far as its version tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFunction {
    /// 8.1.1 or later: it has the function (which may still fail).
    Available,
    /// Before 8.1.1: it answers `unknown function name: checkpoint_status()`; ownership of a
    /// checkpoint cannot be read from the server, only from bk's own marker.
    Absent,
    /// The version is unknown: try it, and take a failure as "cannot tell".
    Unknown,
}

/// A connected session.
pub struct Session {
    client: Client,
    statement_timeout: Duration,
    pg_addr: String,
    /// The `questdb_version` the server announced, or the version `SELECT build()` names; `None`
    /// when neither answered.
    pub version: Option<ServerVersion>,
}

/// What kind of failure a QuestDB error message is.
#[derive(Debug, PartialEq, Eq)]
pub enum QuestDbFailure {
    /// `Waiting for CHECKPOINT RELEASE to be called` (or the legacy text): already in checkpoint mode.
    AlreadyInCheckpoint,
    /// Another checkpoint statement is running right now: retry.
    Busy,
    /// Wrong user or password.
    Authentication,
    /// Anything else, with the server's message.
    Other(String),
}

/// Classifies a server error by its message (SQLSTATE is always `00000`).
pub fn classify(message: &str) -> QuestDbFailure {
    if message.contains("Waiting for CHECKPOINT RELEASE")
        || message.contains("Waiting for SNAPSHOT COMPLETE")
    {
        QuestDbFailure::AlreadyInCheckpoint
    } else if message.contains("Another checkpoint command")
        || message.contains("Another snapshot command")
    {
        QuestDbFailure::Busy
    } else if message.contains("invalid username/password") {
        QuestDbFailure::Authentication
    } else {
        QuestDbFailure::Other(message.to_string())
    }
}

impl Session {
    /// Connects with the worker's credentials. The password is read now (from its file when
    /// configured), so a rotated secret is used by the next task.
    ///
    /// # Errors
    /// [`TaskError::Invalid`] for refused credentials (not retryable), a retryable
    /// [`TaskError::Abandoned`]-free transient error when the server cannot be reached.
    pub async fn connect(pg_addr: &str, config: &QuestDbConfig) -> Result<Session, TaskError> {
        let (host, port) = pg_addr
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                TaskError::Invalid(format!("`{pg_addr}` is not a `host:port` address"))
            })?;
        let password = match (&config.password_file, &config.password) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map(|password| password.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|error| {
                    TaskError::Invalid(format!(
                        "cannot read questdb.password_file `{}`: {error}",
                        path.display()
                    ))
                })?,
            (None, Some(password)) => password.clone(),
            (None, None) => "quest".to_string(), // QuestDB's default `pg.password`.
        };
        let mut pg_config = tokio_postgres::Config::new();
        pg_config
            .host(&host)
            .port(port)
            .user(&config.user)
            .password(password)
            .dbname("qdb")
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = pg_config
            .connect(NoTls)
            .await
            .map_err(|error| connect_error(pg_addr, &config.user, &error))?;
        let announced = connection.parameter("questdb_version").and_then(ServerVersion::parse);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "questdb connection closed");
            }
        });
        let mut session = Session {
            client,
            statement_timeout: config.statement_timeout,
            pg_addr: pg_addr.to_string(),
            version: announced,
        };
        if session.version.is_none() {
            // Older builds announce no `questdb_version`; `build()` names it.
            session.version = session.build_version().await;
        }
        Ok(session)
    }

    /// The version `SELECT build()` names, if the server answers it.
    async fn build_version(&self) -> Option<ServerVersion> {
        let messages = self.execute("SELECT build()").await.ok()?;
        messages.into_iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                row.get(0).and_then(ServerVersion::from_build_information)
            }
            _ => None,
        })
    }

    /// The statements this server understands; `None` when its version is unknown.
    pub fn syntax(&self) -> Option<CheckpointSyntax> {
        self.version.map(|version| {
            if version.is_at_least(CHECKPOINT_SINCE) {
                CheckpointSyntax::Checkpoint
            } else {
                CheckpointSyntax::Legacy
            }
        })
    }

    /// Whether `checkpoint_status()` exists on this server.
    pub fn status_function(&self) -> StatusFunction {
        match self.version {
            Some(version) if version.is_at_least(CHECKPOINT_SINCE) => StatusFunction::Available,
            Some(_) => StatusFunction::Absent,
            None => StatusFunction::Unknown,
        }
    }

    /// The version for messages.
    pub fn version_text(&self) -> String {
        self.version.map_or_else(|| "(version unknown)".to_string(), |version| version.to_string())
    }

    /// Runs one statement with the simple protocol (no prepared statement is left behind).
    ///
    /// # Errors
    /// The server's message, classified; a timeout is retryable.
    pub async fn execute(&self, statement: &str) -> Result<Vec<SimpleQueryMessage>, QuestDbError> {
        match tokio::time::timeout(self.statement_timeout, self.client.simple_query(statement))
            .await
        {
            Err(_) => Err(QuestDbError::Transient(format!(
                "`{statement}` did not answer within {:?}",
                self.statement_timeout
            ))),
            Ok(Ok(messages)) => Ok(messages),
            Ok(Err(error)) => match error.as_db_error() {
                Some(db_error) => Err(QuestDbError::Server(
                    classify(db_error.message()),
                    db_error.message().to_string(),
                )),
                None => Err(QuestDbError::Transient(format!(
                    "`{statement}` on {}: {error}",
                    self.pg_addr
                ))),
            },
        }
    }

    /// `checkpoint_status()`: `(in_progress, started_at)`.
    ///
    /// # Errors
    /// As [`Session::execute`].
    pub async fn checkpoint_status(&self) -> Result<(bool, Option<String>), QuestDbError> {
        for message in self.execute("SELECT * FROM checkpoint_status()").await? {
            if let SimpleQueryMessage::Row(row) = message {
                let in_progress = row.get(0).is_some_and(|value| value == "t" || value == "true");
                return Ok((in_progress, row.get(1).map(str::to_string)));
            }
        }
        Ok((false, None))
    }
}

/// A failed statement.
#[derive(Debug)]
pub enum QuestDbError {
    /// The server answered with an error: its class and message.
    Server(QuestDbFailure, String),
    /// The server did not answer (connection lost, timeout): retry.
    Transient(String),
}

impl QuestDbError {
    /// The server's message, or what went wrong reaching it.
    pub fn message(&self) -> &str {
        match self {
            QuestDbError::Server(_, message) | QuestDbError::Transient(message) => message,
        }
    }

    /// As a retryable task error, whatever it is: for a release, which must happen eventually.
    pub fn into_retryable(self, context: &str) -> TaskError {
        TaskError::Retryable(format!("{context}: {}", self.message()))
    }

    /// As a task error: transient and busy ones are retryable.
    pub fn into_task_error(self, context: &str) -> TaskError {
        match self {
            QuestDbError::Transient(message)
            | QuestDbError::Server(QuestDbFailure::Busy, message) => {
                TaskError::Retryable(format!("{context}: {message}"))
            }
            QuestDbError::Server(_, message) => {
                TaskError::Invalid(format!("{context}: QuestDB answered `{message}`"))
            }
        }
    }
}

fn connect_error(pg_addr: &str, user: &str, error: &tokio_postgres::Error) -> TaskError {
    match error.as_db_error().map(|db_error| classify(db_error.message())) {
        Some(QuestDbFailure::Authentication) => TaskError::Invalid(format!(
            "QuestDB at {pg_addr} refused the login of user `{user}` (invalid username/password): check questdb.user and \
             questdb.password_file (or BK_QUESTDB_PASSWORD) in this worker's config"
        )),
        Some(_) => TaskError::Invalid(format!("QuestDB at {pg_addr} refused the connection: {error}")),
        None => TaskError::Retryable(format!("cannot connect to QuestDB at {pg_addr}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_syntax_follows_the_version_with_8_1_1_as_the_boundary() {
        let cases = [
            ("9.0.0", Some(CheckpointSyntax::Checkpoint)),
            ("8.1.1", Some(CheckpointSyntax::Checkpoint)),
            ("8.2.0", Some(CheckpointSyntax::Checkpoint)),
            ("8.1.0", Some(CheckpointSyntax::Legacy)),
            ("7.3.10", Some(CheckpointSyntax::Legacy)),
            ("9.4.2-rc1", Some(CheckpointSyntax::Checkpoint)),
            ("unknown", None),
        ];
        for (version, syntax) in cases {
            assert_eq!(CheckpointSyntax::for_version(version), syntax, "{version}");
        }
    }

    #[test]
    fn test_build_information_names_the_version() {
        let answer = "Build Information: QuestDB 7.3.10, JDK 17.0.9, Commit Hash 0123456789abcdef";
        assert_eq!(ServerVersion::from_build_information(answer), Some(ServerVersion(7, 3, 10)));
        assert_eq!(ServerVersion::from_build_information("QuestDB"), None);
        assert_eq!(ServerVersion::from_build_information("something else"), None);
    }

    #[test]
    fn test_errors_are_classified_by_message_text() {
        assert_eq!(
            classify("Waiting for CHECKPOINT RELEASE to be called"),
            QuestDbFailure::AlreadyInCheckpoint
        );
        assert_eq!(
            classify("Waiting for SNAPSHOT COMPLETE to be called"),
            QuestDbFailure::AlreadyInCheckpoint
        );
        assert_eq!(classify("Another checkpoint command is in progress"), QuestDbFailure::Busy);
        assert_eq!(classify("invalid username/password"), QuestDbFailure::Authentication);
        assert!(matches!(classify("'create' or 'release' expected"), QuestDbFailure::Other(_)));
    }
}
