//! How a job reads on the console: its state in words, and for a running job one progress bar
//! per phase and node with rate, ETA and why anything waits.

use std::fmt::Write as _;

use bk_proto::pb;

use super::html::{bytes, duration_ms, escape, flagged, status, Status};
use super::progress::job_progress;

/// The job's kind in lower case (`backup`, `drill`, …).
pub(crate) fn kind(job: &pb::Job) -> String {
    let kind = pb::JobKind::try_from(job.kind).unwrap_or(pb::JobKind::Unspecified);
    kind.as_str_name().trim_start_matches("JOB_KIND_").to_lowercase().replace('_', " ")
}

/// Whether the job has not ended.
pub(crate) fn is_active(job: &pb::Job) -> bool {
    matches!(
        pb::JobState::try_from(job.state),
        Ok(pb::JobState::Queued | pb::JobState::Running | pb::JobState::Failing)
    )
}

/// The job's state as a status word.
pub(crate) fn job_state(job: &pb::Job) -> String {
    let state = pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified);
    let (tone, word) = match state {
        pb::JobState::Succeeded => (Status::Good, "succeeded"),
        pb::JobState::Failed => (Status::Bad, "failed"),
        pb::JobState::Failing => (Status::Bad, "failing (cleaning up)"),
        pb::JobState::Cancelled => (Status::Warn, "cancelled"),
        pb::JobState::Running => (Status::Busy, "running"),
        pb::JobState::Queued => (Status::Busy, "queued"),
        pb::JobState::Unspecified => (Status::Unknown, "unknown"),
    };
    status(tone, word)
}

/// A task's state as a status word.
pub(crate) fn task_state(task: &pb::Task) -> String {
    let state = pb::TaskState::try_from(task.state).unwrap_or(pb::TaskState::Unspecified);
    let (tone, word) = match state {
        pb::TaskState::Succeeded => (Status::Good, "succeeded"),
        pb::TaskState::Failed => (Status::Bad, "failed"),
        pb::TaskState::Running => (Status::Busy, "running"),
        pb::TaskState::Pending if !task.waiting_reason.is_empty() => (Status::Warn, "waiting"),
        pb::TaskState::Pending => (Status::Busy, "pending"),
        pb::TaskState::Blocked => (Status::Unknown, "after the phase before"),
        pb::TaskState::Skipped => (Status::Unknown, "skipped (the job failed first)"),
        pb::TaskState::Unspecified => (Status::Unknown, "unknown"),
    };
    status(tone, word)
}

/// One `<li>` per phase and node: a labelled `<progress>`, numbers, rate, ETA and waiting
/// reasons. The bars carry `data-phase`, `data-node` and `data-bytes-done` for scripts.
pub(crate) fn progress_bars(job: &pb::Job, now_ms: u64) -> String {
    let mut html = String::from("<ul class=\"bars\">");
    for group in job_progress(job, now_ms) {
        let node = if group.node.is_empty() { "any worker" } else { &group.node };
        let label = format!("{} · {}", group.phase, node);
        let percent = (group.fraction() * 100.0).round();
        let mut detail = format!("{} of {} tasks", group.tasks_done, group.tasks);
        if group.bytes_total > 0 || group.bytes_done > 0 {
            let _ = write!(
                detail,
                " · {} of {} objects · {} of {}",
                group.objects_done,
                group.objects_total,
                bytes(group.bytes_done),
                bytes(group.bytes_total)
            );
        }
        if let Some(rate) = group.bytes_per_second {
            let _ = write!(detail, " · {}/s", bytes(rate as u64));
        }
        if let Some(eta) = group.eta_ms {
            let _ = write!(detail, " · about {} left", duration_ms(eta));
        }
        let _ = write!(
            html,
            "<li class=\"bar\" data-phase=\"{phase}\" data-node=\"{node_attr}\" \
             data-bytes-done=\"{done}\"><span class=\"bar-label\">{label}</span>\
             <progress max=\"100\" value=\"{percent}\" aria-label=\"{label}: {percent}%\">\
             {percent}%</progress><span class=\"bar-detail\">{detail}</span>",
            phase = escape(&group.phase),
            node_attr = escape(&group.node),
            done = group.bytes_done,
            label = escape(&label),
            detail = escape(&detail),
        );
        for reason in &group.waiting {
            html.push_str(&flagged("waiting", Status::Warn, "waiting:", reason));
        }
        html.push_str("</li>");
    }
    html.push_str("</ul>");
    html
}
