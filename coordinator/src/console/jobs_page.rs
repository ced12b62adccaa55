//! The jobs list, and one job: its phases and tasks with attempts, workers, progress, errors
//! and waiting reasons.

use std::fmt::Write as _;

use bk_proto::pb;

use super::html::{backup_link, bytes, duration_ms, escape, job_link, table, time, Row};
use super::job_view::{is_active, job_state, kind, progress_bars, task_state};

/// Jobs on the list page.
pub(crate) const LISTED_JOBS: usize = 200;

/// The list of the newest jobs: `(live, body)`; always live, so new jobs appear.
pub(crate) fn jobs_list(jobs: &[pb::Job], now_ms: u64) -> (bool, String) {
    let rows: Vec<Row> = jobs
        .iter()
        .map(|job| {
            let cells = vec![
                job_link(&job.id),
                escape(&kind(job)),
                escape(&job.source),
                escape(&job.repository),
                job_state(job),
                time(job.created_at_ms, now_ms),
                time(job.finished_at_ms, now_ms),
                escape(&job.error),
            ];
            Row::keyed("job-id", &job.id, cells)
        })
        .collect();
    let caption = format!("The newest {LISTED_JOBS} jobs, newest first");
    let headers = ["Job", "Kind", "Source", "Repository", "State", "Submitted", "Ended", "Error"];
    (true, table("jobs", &caption, &headers, &rows))
}

/// One job: `(title, live, body)`.
pub(crate) fn job_page(job: &pb::Job, now_ms: u64) -> (String, bool, String) {
    let title = format!("{} job {}", kind(job), job.id);
    let mut body = String::from("<dl class=\"facts\">");
    let mut fact = |term: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", escape(term));
    };
    fact("State", job_state(job));
    fact("Source", escape(&job.source));
    fact("Repository", escape(&job.repository));
    if !job.stage.is_empty() {
        fact("Stage", escape(&job.stage));
    }
    fact("Submitted", time(job.created_at_ms, now_ms));
    if job.finished_at_ms > 0 {
        fact("Ended", time(job.finished_at_ms, now_ms));
        fact("Took", duration_ms(job.finished_at_ms.saturating_sub(job.created_at_ms)));
    }
    if !job.backup_id.is_empty() {
        fact("Backup", backup_link(&job.backup_id));
    }
    if !job.schedule.is_empty() {
        fact("Schedule", format!("<code>{}</code>", escape(&job.schedule)));
    }
    if !job.error.is_empty() {
        fact("Error", format!("<span class=\"failure\">{}</span>", escape(&job.error)));
    }
    body.push_str("</dl>");
    let live = is_active(job);
    if live {
        let _ = write!(body, "<section aria-labelledby=\"progress-title\"><h2 id=\"progress-title\">Progress</h2>{}</section>", progress_bars(job, now_ms));
    }
    for (index, phase) in job.phases.iter().enumerate() {
        let heading = format!("Phase {}: {}", index + 1, phase.name);
        body.push_str(&phase_section(
            &heading,
            &format!("phase-{index}"),
            phase.summary.as_ref(),
            &phase.tasks,
            now_ms,
        ));
    }
    if !job.cleanup.is_empty() {
        body.push_str(&phase_section(
            "Cleanup (always runs)",
            "cleanup",
            None,
            &job.cleanup,
            now_ms,
        ));
    }
    (title, live, body)
}

fn phase_section(
    heading: &str,
    id: &str,
    summary: Option<&pb::PhaseSummary>,
    tasks: &[pb::Task],
    now_ms: u64,
) -> String {
    let mut html = format!(
        "<section aria-labelledby=\"{id}-title\"><h2 id=\"{id}-title\">{}</h2>",
        escape(heading)
    );
    if let Some(summary) = summary {
        let _ = write!(
            html,
            "<p>{} tasks: {} succeeded, {} failed · {} objects, {} · ran {} (task details of older \
             jobs are dropped; failed and warning tasks are kept)</p>",
            summary.num_tasks,
            summary.num_succeeded,
            summary.num_failed,
            summary.num_objects,
            bytes(summary.num_bytes),
            duration_ms(summary.finished_at_ms.saturating_sub(summary.started_at_ms)),
        );
    }
    let rows: Vec<Row> = tasks.iter().map(|task| task_row(task, now_ms)).collect();
    let headers =
        ["Task", "Node", "State", "Attempt", "Worker", "Started", "Took", "Moved", "Details"];
    html.push_str(&table(&format!("{id}-tasks"), heading, &headers, &rows));
    html.push_str("</section>");
    html
}

fn task_row(task: &pb::Task, now_ms: u64) -> Row {
    let took = match (task.started_at_ms, task.finished_at_ms) {
        (0, _) => "–".to_string(),
        (started, 0) => format!("{} so far", duration_ms(now_ms.saturating_sub(started))),
        (started, finished) => duration_ms(finished.saturating_sub(started)),
    };
    let moved = match (&task.progress, task.moves_objects) {
        (Some(progress), true) => format!(
            "{} of {} objects, {} of {}",
            progress.objects_done,
            progress.objects_total,
            bytes(progress.bytes_done),
            bytes(progress.bytes_total)
        ),
        _ => String::new(),
    };
    let mut details = String::new();
    let mut line = |class: &str, text: &str| {
        let _ = write!(details, "<p class=\"{class}\">{}</p>", escape(text));
    };
    if !task.error.is_empty() {
        line("failure", &format!("error: {}", task.error));
    }
    if !task.waiting_reason.is_empty() {
        line("waiting", &format!("waiting: {}", task.waiting_reason));
    }
    for problem in &task.problems {
        line("failure", &format!("problem: {problem}"));
    }
    for warning in &task.warnings {
        line("warning", &format!("warning: {warning}"));
    }
    for event in &task.events {
        line("event", event);
    }
    let cells = vec![
        escape(&task.label),
        escape(&task.node),
        task_state(task),
        task.attempt.to_string(),
        escape(&task.worker_id),
        time(task.started_at_ms, now_ms),
        took,
        escape(&moved),
        details,
    ];
    Row::keyed("task-id", &task.id, cells)
}
