//! What a job records in its staging area about the QuestDB checkpoint it may hold.
//!
//! QuestDB's checkpoint has no owner: any connection can release anyone's. So every attempt of
//! a job's prepare task writes a marker of its own, `staging/<job>/questdb-checkpoint/attempt-N.json`,
//! before it sends `CREATE`, and the release reads every attempt's marker. One record per
//! attempt matters because two attempts can run at once (a worker paused past its lease and
//! resumed, a write a dead worker left in flight landing late): with one shared record, the
//! attempt that lost the race to `CREATE` overwrote the winner's "held" with "refused", and the
//! job's release then left the checkpoint held (the chaos campaign's QuestDB seeds 51 and 65).
//! The job's release writes `release.json` before it sends `RELEASE` and again after, so an
//! attempt that entered checkpoint mode after the release sees it and releases what it made;
//! one that finds its own marker gone knows the job ended (its staging area was removed) and
//! releases too.

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::questdb::client::CheckpointSyntax;
use crate::repository::{list_paths, staging};
use crate::tasks::context::TaskContext;

/// What one attempt knows about the checkpoint it may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMarker {
    /// Where the attempt stands with the checkpoint.
    pub state: MarkerState,
    /// The statements the server understands.
    pub syntax: CheckpointSyntax,
    /// When prepare was about to send CREATE (worker clock, µs since the epoch, UTC).
    pub intent_at_micros: i64,
    /// The server's `started_at` of the checkpoint this attempt holds.
    pub started_at: Option<String>,
}

impl CheckpointMarker {
    /// Whether the attempt may have entered checkpoint mode (and its job must release).
    pub fn may_hold(&self) -> bool {
        matches!(self.state, MarkerState::Creating | MarkerState::Held)
    }
}

/// Where an attempt stands with the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerState {
    /// CREATE may have been sent; the server's answer is unknown.
    Creating,
    /// The attempt holds the checkpoint.
    Held,
    /// Someone else held it; this attempt never did.
    Refused,
}

/// How far the job's release has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// About to send RELEASE (or sending it): a checkpoint entered from now on is released by
    /// the attempt that entered it.
    Releasing,
    /// Released: later releases of the job have nothing to do.
    Released,
}

#[derive(Serialize, Deserialize)]
struct ReleaseRecord {
    state: ReleaseState,
}

const MARKER_DIR: &str = "questdb-checkpoint";

fn job_dir(context: &TaskContext) -> String {
    format!("staging/{}/{MARKER_DIR}", context.spec.task_id.job_id)
}

fn attempt_key(context: &TaskContext) -> Path {
    Path::from(format!("{}/attempt-{}.json", job_dir(context), context.attempt))
}

fn release_key(context: &TaskContext) -> Path {
    Path::from(format!("{}/release.json", job_dir(context)))
}

/// Writes this attempt's marker.
///
/// # Errors
/// When the repository cannot be written.
pub async fn write_own(context: &TaskContext, marker: &CheckpointMarker) -> Result<(), TaskError> {
    Ok(staging::write_marker(&context.repository, &attempt_key(context), marker).await?)
}

/// Every attempt's marker but this attempt's own, in the order of their keys.
///
/// # Errors
/// When the repository cannot be listed or read, or a marker does not parse.
pub async fn read_others(context: &TaskContext) -> Result<Vec<CheckpointMarker>, TaskError> {
    let own = attempt_key(context);
    let mut markers = Vec::new();
    for key in list_paths(context.repository.store.as_ref(), &job_dir(context)).await? {
        let is_attempt = key.filename().is_some_and(|name| name.starts_with("attempt-"));
        if !is_attempt || key == own {
            continue;
        }
        if let Some(marker) = staging::read_marker(&context.repository, &key).await? {
            markers.push(marker);
        }
    }
    Ok(markers)
}

/// This attempt's own marker; `None` once the job's staging area is gone (the job ended).
///
/// # Errors
/// When the repository cannot be read or the marker does not parse.
pub async fn read_own(context: &TaskContext) -> Result<Option<CheckpointMarker>, TaskError> {
    Ok(staging::read_marker(&context.repository, &attempt_key(context)).await?)
}

/// Every attempt's marker, this attempt's included.
///
/// # Errors
/// As [`read_others`].
pub async fn read_all(context: &TaskContext) -> Result<Vec<CheckpointMarker>, TaskError> {
    let mut markers = read_others(context).await?;
    markers.extend(read_own(context).await?);
    Ok(markers)
}

/// How far the job's release has got, if it began.
///
/// # Errors
/// When the repository cannot be read or the record does not parse.
pub async fn read_release(context: &TaskContext) -> Result<Option<ReleaseState>, TaskError> {
    let record: Option<ReleaseRecord> =
        staging::read_marker(&context.repository, &release_key(context)).await?;
    Ok(record.map(|record| record.state))
}

/// Records how far the job's release has got.
///
/// # Errors
/// When the repository cannot be written.
pub async fn write_release(context: &TaskContext, state: ReleaseState) -> Result<(), TaskError> {
    let record = ReleaseRecord { state };
    Ok(staging::write_marker(&context.repository, &release_key(context), &record).await?)
}
