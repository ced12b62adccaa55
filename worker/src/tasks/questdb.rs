//! The QuestDB prepare and release tasks.
//!
//! The checkpoint state is global to the server and has no owner: any connection can release
//! anyone's checkpoint. So every attempt of prepare records in the repository's staging area
//! whether it may hold the checkpoint ([`checkpoint_marker`]), and the job releases only its
//! own. Before sending `CHECKPOINT CREATE` (`SNAPSHOT PREPARE` before 8.1.1), an attempt writes
//! its marker (`creating`, with the time); once the server accepted, it records `held` and,
//! where the server has `checkpoint_status()` (8.1.1+), its `started_at`. From the moment an
//! attempt's marker says `creating`, the job may hold the checkpoint, and its release sends
//! `CHECKPOINT RELEASE` / `SNAPSHOT COMPLETE` (both idempotent) unless it can *prove* the
//! checkpoint is someone else's: only a `checkpoint_status()` that answers, with a `started_at`
//! that is no attempt's, is proof. A status that fails is not proof (release, and say why); on
//! servers before 8.1.1 there is no status, so ownership rests on the markers.
//! A release that cannot reach the server, or that the server refuses, retries until it works:
//! a server left in checkpoint mode fills its disk.

use bk_proto::model::TaskReport;
use chrono::NaiveDateTime;

use crate::error::TaskError;
use crate::questdb::client::{
    CheckpointSyntax, QuestDbError, QuestDbFailure, Session, StatusFunction,
};
use crate::questdb::disk;
use crate::snapshot::config::SnapshotConfig;
use crate::snapshot::{self, Taken};
use crate::tasks::checkpoint_marker::{
    self as markers, CheckpointMarker, MarkerState, ReleaseState,
};
use crate::tasks::context::TaskContext;

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
    report.warnings.extend(check_free_disk(context)?);
    let session = Session::connect(pg_addr, &context.worker.config.questdb).await?;
    let mut marker = CheckpointMarker {
        state: MarkerState::Creating,
        syntax: session.syntax().unwrap_or(CheckpointSyntax::Checkpoint),
        intent_at_micros: chrono::Utc::now().timestamp_micros(),
        started_at: None,
    };
    markers::write_own(context, &marker).await?;
    let create_sent = std::time::Instant::now();
    let entering = Entering { context, session: &session, pg_addr, adopt };
    entering.enter(&mut marker, &mut report).await?;
    // The job may have ended (cancelled, or this attempt outlived its lease) while CREATE was
    // in flight, and its release may already have run (or its staging area, this attempt's
    // marker with it, be gone): then this attempt releases what it made.
    let job_ended = markers::read_own(context).await?.is_none();
    if job_ended || markers::read_release(context).await?.is_some() {
        session
            .execute(marker.syntax.release())
            .await
            .map_err(|error| error.into_retryable(marker.syntax.release()))?;
        return Err(TaskError::Abandoned(
            "the job was releasing when this attempt entered checkpoint mode: released it again"
                .to_string(),
        ));
    }
    marker.state = MarkerState::Held;
    if session.status_function() != StatusFunction::Absent {
        match session.checkpoint_status().await {
            Ok((_, started_at)) => marker.started_at = started_at,
            Err(error) => report.events.push(format!(
                "checkpoint_status() failed ({}): the release will rely on this job's marker",
                error.message()
            )),
        }
    }
    markers::write_own(context, &marker).await?;
    if let Some(config) = context.worker.config.snapshot.as_ref().filter(|config| config.enabled())
    {
        snapshot_then_release(context, config, &session, &mut marker, &mut report, create_sent)
            .await?;
    }
    Ok(report)
}

/// Refuses to start when the root's disk is too full to hold a checkpoint; a warning when it
/// is getting there.
fn check_free_disk(context: &TaskContext) -> Result<Option<String>, TaskError> {
    let root = local_root(&context.worker.config.store.url)?;
    let free = disk::free_percent(&root).map_err(|error| {
        TaskError::Invalid(format!("cannot read free space of `{}`: {error}", root.display()))
    })?;
    disk::judge(free, context.worker.config.questdb.min_free_disk_percent, &root)
        .map_err(TaskError::Invalid)
}

/// Entering checkpoint mode on one server.
struct Entering<'a> {
    context: &'a TaskContext,
    session: &'a Session,
    pg_addr: &'a str,
    adopt: bool,
}

impl Entering<'_> {
    /// Sends CREATE (falling back to the legacy syntax on a server that does not know
    /// CHECKPOINT), and settles a checkpoint that is already held: resumed when this job made
    /// it, adopted with `adopt`, refused otherwise.
    async fn enter(
        &self,
        marker: &mut CheckpointMarker,
        report: &mut TaskReport,
    ) -> Result<(), TaskError> {
        let (context, session, pg_addr) = (self.context, self.session, self.pg_addr);
        let mut created = session.execute(marker.syntax.create()).await;
        if session.syntax().is_none()
            && marker.syntax == CheckpointSyntax::Checkpoint
            && matches!(created, Err(QuestDbError::Server(QuestDbFailure::Other(_), _)))
        {
            // The version is unknown and the server does not know CHECKPOINT: an older server.
            marker.syntax = CheckpointSyntax::Legacy;
            markers::write_own(context, marker).await?;
            created = session.execute(CheckpointSyntax::Legacy.create()).await;
        }
        let message = match created {
            Ok(_) => {
                report.events.push(format!(
                    "`{}` accepted by QuestDB {}",
                    marker.syntax.create(),
                    session.version_text()
                ));
                return Ok(());
            }
            Err(QuestDbError::Server(QuestDbFailure::AlreadyInCheckpoint, message)) => message,
            Err(error) => {
                let what = format!("`{}` on {pg_addr}", marker.syntax.create());
                return Err(error.into_task_error(&what));
            }
        };
        // Read now, after CREATE was refused: an attempt running beside this one wrote its
        // marker before its own CREATE, which is what took the checkpoint.
        let others = markers::read_others(context).await?;
        match checkpoint_owner(session, &others).await {
            Owner::ThisJob => report
                .events
                .push("resumed the checkpoint an earlier attempt of this job created".to_string()),
            Owner::Someone { started_at } if self.adopt => report.warnings.push(format!(
                "adopted a checkpoint someone else created (started at {}): this job will release it",
                started_at.as_deref().unwrap_or("unknown")
            )),
            Owner::Someone { started_at } => {
                marker.state = MarkerState::Refused;
                markers::write_own(context, marker).await?;
                return Err(TaskError::Invalid(format!(
                    "QuestDB at {pg_addr} is already in checkpoint mode (started at {}; it answered `{message}`): someone \
                     else holds the checkpoint, another backup or a crashed one. bk will not release it for them: wait for \
                     it, release it with `{}`, or pass --adopt-checkpoint to take it over",
                    started_at.as_deref().unwrap_or("unknown"),
                    marker.syntax.release()
                )));
            }
        }
        Ok(())
    }
}

/// Takes the snapshot while the server is held, then releases at once: the copy reads the
/// snapshot, and the server is held for the snapshot's time, not the copy's. When `auto` finds
/// no method that works, the copy reads the live files under the checkpoint, as without one.
async fn snapshot_then_release(
    context: &TaskContext,
    config: &SnapshotConfig,
    session: &Session,
    marker: &mut CheckpointMarker,
    report: &mut TaskReport,
    create_sent: std::time::Instant,
) -> Result<(), TaskError> {
    let root = local_root(&context.worker.config.store.url)?;
    let record = match snapshot::take_for_job(context, config, &root, false).await? {
        Taken::Snapshot(record) => record,
        Taken::NoneUsable(why) => {
            report.warnings.push(format!(
                "[snapshot] auto: no method works on `{}` ({why}): copying the live files, QuestDB stays in \
                 checkpoint mode until the copy ends",
                root.display()
            ));
            return Ok(());
        }
    };
    session
        .execute(marker.syntax.release())
        .await
        .map_err(|error| error.into_retryable(marker.syntax.release()))?;
    let held = create_sent.elapsed();
    markers::write_release(context, ReleaseState::Released).await?;
    let taken = format!(
        "{} snapshot `{}` taken in {:.3} s{}",
        record.method.as_str(),
        record.name,
        record.took_ms as f64 / 1000.0,
        if record.method.is_atomic() {
            ""
        } else {
            " (file by file; the checkpoint makes it consistent)"
        }
    );
    report.events.push(format!(
        "checkpoint held {:.3} s: `{}` → {taken} → `{}`; the copy reads the snapshot",
        held.as_secs_f64(),
        marker.syntax.create(),
        marker.syntax.release()
    ));
    report.checkpoint_held_ms = Some(held.as_millis() as u64);
    report.snapshot = Some(taken);
    Ok(())
}

/// Who holds the checkpoint a CREATE found already taken.
enum Owner {
    /// An earlier attempt of this job.
    ThisJob,
    /// Someone else (or bk cannot tell it is this job's).
    Someone { started_at: Option<String> },
}

/// Decides whether the checkpoint a CREATE found is this job's: by its `started_at` where the
/// server can say (at or after the intent of another attempt that may hold it), by the other
/// attempts' markers where it cannot.
async fn checkpoint_owner(session: &Session, others: &[CheckpointMarker]) -> Owner {
    let since =
        others.iter().filter(|other| other.may_hold()).map(|other| other.intent_at_micros).min();
    let Some(since) = since else { return Owner::Someone { started_at: None } };
    if session.status_function() == StatusFunction::Absent {
        return Owner::ThisJob;
    }
    match session.checkpoint_status().await {
        Ok((_, started_at)) if started_after(started_at.as_deref(), since) => Owner::ThisJob,
        Ok((_, started_at)) => Owner::Someone { started_at },
        Err(_) => Owner::ThisJob,
    }
}

/// Releases the checkpoint unless it is provably someone else's. Idempotent.
///
/// # Errors
/// Retryable errors while the server cannot be reached or refuses the release (the job stays
/// `releasing` until it works); store errors reading the marker.
pub async fn release(context: &TaskContext, pg_addr: &str) -> Result<TaskReport, TaskError> {
    let mut report = release_checkpoint(context, pg_addr).await?;
    // The snapshot too, whatever became of the checkpoint (one left behind holds disk space),
    // by the cleanup's release: after the commit, so the backup does not wait for it.
    if matches!(context.spec.task_id.slot, bk_proto::ids::TaskSlot::Cleanup { .. }) {
        if let Some(deleted) = snapshot::delete_for_job(context).await? {
            report.events.push(deleted);
        }
    }
    Ok(report)
}

async fn release_checkpoint(context: &TaskContext, pg_addr: &str) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    let attempts = markers::read_all(context).await?;
    if attempts.is_empty() {
        // A marker is written before CREATE is sent: without one, none was sent.
        report.events.push("no checkpoint was created by this job: nothing to release".to_string());
        return Ok(report);
    }
    let released = markers::read_release(context).await? == Some(ReleaseState::Released);
    if released || !attempts.iter().any(CheckpointMarker::may_hold) {
        return Ok(report);
    }
    // Recorded before RELEASE: an attempt that enters checkpoint mode after this releases it.
    markers::write_release(context, ReleaseState::Releasing).await?;
    let session = Session::connect(pg_addr, &context.worker.config.questdb).await.map_err(
        |error| match error {
            TaskError::Invalid(message) => TaskError::Retryable(message), // Keep trying: the checkpoint must be released.
            other => other,
        },
    )?;
    match release_decision(&session, &attempts).await {
        ReleaseDecision::LeaveAlone { started_at } => {
            report.warnings.push(format!(
                "QuestDB is in checkpoint mode, but not this job's (started at {started_at}): left alone"
            ));
        }
        ReleaseDecision::NotInCheckpoint => report
            .events
            .push("QuestDB was not in checkpoint mode any more: nothing to release".to_string()),
        ReleaseDecision::Release { why } => {
            let holding = attempts.iter().filter(|attempt| attempt.may_hold());
            let found = holding
                .map(|attempt| attempt.syntax)
                .max_by_key(|syntax| *syntax == CheckpointSyntax::Legacy);
            let syntax = session.syntax().or(found).unwrap_or(CheckpointSyntax::Checkpoint);
            session
                .execute(syntax.release())
                .await
                .map_err(|error| error.into_retryable(syntax.release()))?;
            report
                .events
                .push(format!("`{}` sent: QuestDB left checkpoint mode{why}", syntax.release()));
            let intent = attempts.iter().map(|attempt| attempt.intent_at_micros).min();
            let held_micros = chrono::Utc::now().timestamp_micros() - intent.unwrap_or_default();
            report.checkpoint_held_ms = Some((held_micros.max(0) / 1000) as u64);
        }
    }
    markers::write_release(context, ReleaseState::Released).await?;
    Ok(report)
}

/// What release does with the server's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReleaseDecision {
    /// Send the release; `why` explains a release sent without proof of ownership.
    Release { why: String },
    /// The server answered that it is not in checkpoint mode.
    NotInCheckpoint,
    /// The server proved the checkpoint is someone else's.
    LeaveAlone { started_at: String },
}

async fn release_decision(session: &Session, attempts: &[CheckpointMarker]) -> ReleaseDecision {
    if session.status_function() == StatusFunction::Absent {
        return ReleaseDecision::Release {
            why: format!(
                " (QuestDB {} has no checkpoint_status(): ownership rests on this job's markers)",
                session.version_text()
            ),
        };
    }
    match session.checkpoint_status().await {
        Ok((in_progress, started_at)) => decide_release(attempts, in_progress, started_at),
        Err(error) => ReleaseDecision::Release {
            why: format!(
                " (checkpoint_status() failed: {}; without proof the checkpoint is someone else's, it is released)",
                error.message()
            ),
        },
    }
}

/// The release rule given what `checkpoint_status()` answered: the checkpoint is this job's when
/// any attempt that may hold it holds that `started_at`, or may have created it. Pure.
fn decide_release(
    attempts: &[CheckpointMarker],
    in_progress: bool,
    started_at: Option<String>,
) -> ReleaseDecision {
    if !in_progress {
        return ReleaseDecision::NotInCheckpoint;
    }
    let ours =
        attempts.iter().filter(|attempt| attempt.may_hold()).any(|attempt| match attempt.state {
            MarkerState::Held => attempt.started_at.is_none() || attempt.started_at == started_at,
            _ => {
                started_at.is_none()
                    || started_after(started_at.as_deref(), attempt.intent_at_micros)
            }
        });
    if ours {
        ReleaseDecision::Release { why: String::new() }
    } else {
        ReleaseDecision::LeaveAlone { started_at: started_at.unwrap_or_else(|| "unknown".into()) }
    }
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

    fn marker(state: MarkerState, started_at: Option<&str>) -> CheckpointMarker {
        CheckpointMarker {
            state,
            syntax: CheckpointSyntax::Checkpoint,
            intent_at_micros: NaiveDateTime::parse_from_str(
                "2026-11-22 10:00:00.000000",
                "%Y-%m-%d %H:%M:%S%.f",
            )
            .unwrap()
            .and_utc()
            .timestamp_micros(),
            started_at: started_at.map(str::to_string),
        }
    }

    #[test]
    fn test_an_attempt_refused_beside_one_that_holds_does_not_stop_the_release() {
        // Two attempts raced to CREATE (one outlived its lease): the loser found the winner's
        // checkpoint and recorded `refused` for itself; the winner's `held` still counts.
        let ours = "2026-11-22 10:00:01.000000".to_string();
        let attempts = [marker(MarkerState::Refused, None), marker(MarkerState::Held, Some(&ours))];
        assert_eq!(
            decide_release(&attempts, true, Some(ours.clone())),
            ReleaseDecision::Release { why: String::new() }
        );
        let refused_only = [marker(MarkerState::Refused, None)];
        assert_eq!(
            decide_release(&refused_only, true, Some(ours.clone())),
            ReleaseDecision::LeaveAlone { started_at: ours }
        );
    }

    #[test]
    fn test_release_leaves_only_a_checkpoint_proven_to_be_someone_elses() {
        let ours = "2026-11-22 10:00:01.000000".to_string();
        let theirs = "2026-11-22 09:00:00.000000".to_string();
        let release = ReleaseDecision::Release { why: String::new() };
        let cases = [
            (marker(MarkerState::Held, Some(&ours)), true, Some(ours.clone()), release.clone()),
            // Held, but the started_at could not be read at prepare: released.
            (marker(MarkerState::Held, None), true, Some(theirs.clone()), release.clone()),
            // Held with a started_at, and the server's is another: someone else's (ours was
            // released and another client created a new one).
            (
                marker(MarkerState::Held, Some(&ours)),
                true,
                Some(theirs.clone()),
                ReleaseDecision::LeaveAlone { started_at: theirs.clone() },
            ),
            // CREATE may have been sent: a checkpoint started after the intent is this job's.
            (marker(MarkerState::Creating, None), true, Some(ours.clone()), release.clone()),
            (
                marker(MarkerState::Creating, None),
                true,
                Some(theirs.clone()),
                ReleaseDecision::LeaveAlone { started_at: theirs },
            ),
            (marker(MarkerState::Creating, None), true, None, release),
            (marker(MarkerState::Held, None), false, None, ReleaseDecision::NotInCheckpoint),
        ];
        for (marker, in_progress, started_at, expected) in cases {
            assert_eq!(
                decide_release(std::slice::from_ref(&marker), in_progress, started_at.clone()),
                expected,
                "{marker:?} with in_progress={in_progress}, started_at={started_at:?}"
            );
        }
    }
}
