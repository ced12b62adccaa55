//! The prepare and release tasks.
//!
//! Ownership marker: before sending `CHECKPOINT CREATE`, prepare writes
//! `staging/<job>/questdb-checkpoint.json` (`creating`, with the time); after, it records the
//! server's `started_at` (`created`). Release acts only when the marker says this job holds the
//! checkpoint and the server's `started_at` is this job's, then marks it `released`. So a
//! release retried after a crash, sent as cleanup after a failure, or run twice is safe, and a
//! checkpoint someone else holds is never released by bk.

use bk_proto::model::TaskReport;
use chrono::NaiveDateTime;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::client::{CheckpointSyntax, QuestDbError, QuestDbFailure, Session};
use super::disk;
use crate::error::{RepositoryError, TaskError};
use crate::repository::reader::read_all;
use crate::tasks::TaskContext;

/// What the job knows about the checkpoint it may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMarker {
    /// Where the job stands with the checkpoint.
    pub state: MarkerState,
    /// The statements the server understands.
    pub syntax: CheckpointSyntax,
    /// When prepare was about to send CREATE (worker clock, µs since the epoch, UTC).
    pub intent_at_micros: i64,
    /// The server's `started_at` of the checkpoint this job holds.
    pub started_at: Option<String>,
}

/// Where a job stands with the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerState {
    /// CREATE may have been sent; the server's answer is unknown.
    Creating,
    /// The job holds the checkpoint.
    Held,
    /// Someone else held it; this job never did.
    Refused,
    /// Released.
    Released,
}

fn marker_key(context: &TaskContext) -> Path {
    Path::from(format!("staging/{}/questdb-checkpoint.json", context.spec.task_id.job_id))
}

async fn read_marker(context: &TaskContext) -> Result<Option<CheckpointMarker>, TaskError> {
    let key = marker_key(context);
    match read_all(context.repository.as_ref(), &key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            RepositoryError::Corrupt { key: key.to_string(), reason: error.to_string() }.into()
        }),
        Err(RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. }) => {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

async fn write_marker(context: &TaskContext, marker: &CheckpointMarker) -> Result<(), TaskError> {
    let key = marker_key(context);
    let bytes =
        serde_json::to_vec(marker).map_err(|error| TaskError::Invalid(error.to_string()))?;
    context
        .repository
        .put(&key, PutPayload::from(bytes))
        .await
        .map_err(RepositoryError::store(key.to_string()))?;
    Ok(())
}

/// Checks free disk, then enters checkpoint mode.
///
/// # Errors
/// [`TaskError::Invalid`] when the disk is too full, the login is refused, or someone else holds
/// the checkpoint (without `adopt`); retryable errors when the server cannot be reached.
pub async fn prepare(
    context: &TaskContext,
    pg_addr: &str,
    adopt: bool,
) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    let root = local_root(&context.store_url)?;
    let free = disk::free_percent(&root).map_err(|error| {
        TaskError::Invalid(format!("cannot read free space of `{}`: {error}", root.display()))
    })?;
    if let Some(warning) = disk::judge(free, context.questdb.min_free_disk_percent, &root)
        .map_err(TaskError::Invalid)?
    {
        report.warnings.push(warning);
    }
    let session = Session::connect(pg_addr, &context.questdb).await?;
    let syntax = session
        .version
        .as_deref()
        .and_then(CheckpointSyntax::for_version)
        .unwrap_or(CheckpointSyntax::Checkpoint);
    let earlier = read_marker(context).await?;
    let intent_at_micros = chrono::Utc::now().timestamp_micros();
    let intent = CheckpointMarker {
        state: MarkerState::Creating,
        syntax,
        intent_at_micros,
        started_at: None,
    };
    let mut marker = match &earlier {
        Some(marker) if marker.state != MarkerState::Refused => marker.clone(),
        _ => intent,
    };
    write_marker(context, &marker).await?;
    let created = session.execute(syntax.create()).await;
    let created = match (created, syntax, &session.version) {
        // No version announced and the server does not know CHECKPOINT: an older server.
        (
            Err(QuestDbError::Server(QuestDbFailure::Other(_), _)),
            CheckpointSyntax::Checkpoint,
            None,
        ) => {
            marker.syntax = CheckpointSyntax::Legacy;
            write_marker(context, &marker).await?;
            session.execute(CheckpointSyntax::Legacy.create()).await
        }
        (created, _, _) => created,
    };
    match created {
        Ok(_) => report.events.push(format!(
            "`{}` accepted by QuestDB {}",
            marker.syntax.create(),
            session.version.as_deref().unwrap_or("(version not announced)")
        )),
        Err(QuestDbError::Server(QuestDbFailure::AlreadyInCheckpoint, message)) => {
            let (_, started_at) = session
                .checkpoint_status()
                .await
                .map_err(|error| error.into_task_error("checkpoint_status()"))?;
            let ours =
                earlier.is_some() && started_after(started_at.as_deref(), marker.intent_at_micros);
            if ours {
                report.events.push(
                    "resumed the checkpoint an earlier attempt of this job created".to_string(),
                );
            } else if adopt {
                report.warnings.push(format!(
                    "adopted a checkpoint someone else created (started at {}): this job will release it",
                    started_at.as_deref().unwrap_or("unknown")
                ));
            } else {
                marker.state = MarkerState::Refused;
                write_marker(context, &marker).await?;
                return Err(TaskError::Invalid(format!(
                    "QuestDB at {pg_addr} is already in checkpoint mode (started at {}; it answered `{message}`): someone \
                     else holds the checkpoint, another backup or a crashed one. bk will not release it for them: wait for \
                     it, release it with `{}`, or pass --adopt-checkpoint to take it over",
                    started_at.as_deref().unwrap_or("unknown"),
                    marker.syntax.release()
                )));
            }
        }
        Err(error) => {
            return Err(error.into_task_error(&format!("`{}` on {pg_addr}", marker.syntax.create())))
        }
    }
    // The job may have been cancelled while CREATE was in flight, and its cleanup may already
    // have released (finding nothing to release yet): then this attempt releases what it made.
    if read_marker(context).await?.is_some_and(|current| current.state == MarkerState::Released) {
        session
            .execute(marker.syntax.release())
            .await
            .map_err(|error| error.into_task_error(marker.syntax.release()))?;
        return Err(TaskError::Abandoned(
            "the job ended while entering checkpoint mode: released it again".to_string(),
        ));
    }
    let (_, started_at) = session
        .checkpoint_status()
        .await
        .map_err(|error| error.into_task_error("checkpoint_status()"))?;
    marker.state = MarkerState::Held;
    marker.started_at = started_at;
    write_marker(context, &marker).await?;
    Ok(report)
}

/// Releases the checkpoint if this job holds it. Idempotent.
///
/// # Errors
/// Retryable errors while the server cannot be reached (the job stays releasing until it can).
pub async fn release(context: &TaskContext, pg_addr: &str) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    let Some(mut marker) = read_marker(context).await? else {
        report.events.push("no checkpoint was created by this job: nothing to release".to_string());
        return Ok(report);
    };
    if matches!(marker.state, MarkerState::Released | MarkerState::Refused) {
        return Ok(report);
    }
    let session =
        Session::connect(pg_addr, &context.questdb).await.map_err(|error| match error {
            TaskError::Invalid(message) => TaskError::Retryable(message), // Keep trying: the checkpoint must be released.
            other => other,
        })?;
    let (in_progress, started_at) = session
        .checkpoint_status()
        .await
        .map_err(|error| error.into_task_error("checkpoint_status()"))?;
    let ours = match marker.state {
        MarkerState::Held => marker.started_at.is_none() || marker.started_at == started_at,
        _ => started_after(started_at.as_deref(), marker.intent_at_micros),
    };
    if in_progress && !ours {
        report.warnings.push(format!(
            "QuestDB is in checkpoint mode, but not this job's (started at {}): left alone",
            started_at.as_deref().unwrap_or("unknown")
        ));
    } else if in_progress {
        session
            .execute(marker.syntax.release())
            .await
            .map_err(|error| error.into_task_error(marker.syntax.release()))?;
        report
            .events
            .push(format!("`{}` sent: QuestDB left checkpoint mode", marker.syntax.release()));
    }
    marker.state = MarkerState::Released;
    write_marker(context, &marker).await?;
    Ok(report)
}

/// Whether QuestDB's `started_at` (`yyyy-MM-dd HH:mm:ss.SSSUUU`, UTC) is at or after the intent
/// (with a second of slack for clocks read on two processes).
fn started_after(started_at: Option<&str>, intent_at_micros: i64) -> bool {
    let Some(text) = started_at else { return false };
    let parsed = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
        });
    parsed.is_ok_and(|time| time.and_utc().timestamp_micros() + 1_000_000 >= intent_at_micros)
}

/// The local directory of a `file://` store URL: QuestDB's root must be on this machine.
fn local_root(store_url: &str) -> Result<std::path::PathBuf, TaskError> {
    url::Url::parse(store_url)
        .ok()
        .filter(|url| url.scheme() == "file")
        .and_then(|url| url.to_file_path().ok())
        .ok_or_else(|| TaskError::Invalid(format!("a QuestDB worker's store must be the server root as file:///path, not `{store_url}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_started_at_is_compared_with_the_intent() {
        let intent =
            NaiveDateTime::parse_from_str("2026-11-22 10:00:00.000000", "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros();
        assert!(started_after(Some("2026-11-22 10:00:05.123456"), intent));
        assert!(started_after(Some("2026-11-22T10:00:00.500000Z"), intent), "within the slack");
        assert!(
            !started_after(Some("2026-11-22 09:59:00.000000"), intent),
            "someone else's, from before"
        );
        assert!(!started_after(None, intent));
    }
}
