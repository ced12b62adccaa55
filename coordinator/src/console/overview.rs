//! The overview: first whether each source can be restored (its newest drill), then whether
//! its newest backup is within the RPO, what runs now with live progress, and what ran last.

use std::fmt::Write as _;

use bk_proto::pb;

use super::html::{backup_link, duration_ms, escape, job_link, status, table, time, Row, Status};
use super::job_view::{is_active, job_state, kind, progress_bars};
use crate::core::source_health::SourceHealth;

/// Finished jobs listed under "Recent jobs".
pub(crate) const RECENT_JOBS: usize = 10;

/// What the overview shows.
pub(crate) struct Overview {
    /// Every source, judged.
    pub(crate) health: Vec<SourceHealth>,
    /// The running jobs in full, then the newest finished ones (headers only), newest first.
    pub(crate) jobs: Vec<pb::Job>,
    /// The replica's view of the coordinator cluster.
    pub(crate) cluster: pb::ClusterStatusResponse,
    /// Registered workers.
    pub(crate) workers: usize,
    /// The time the page is drawn at.
    pub(crate) now_ms: u64,
}

impl Overview {
    /// `(live, body)`: always live: the overview is what an operator leaves open, and a job
    /// that starts or a drill that fails must appear on it.
    pub(crate) fn render(&self) -> (bool, String) {
        let mut body = self.cluster_line();
        body.push_str(&self.sources());
        let running: Vec<&pb::Job> = self.jobs.iter().filter(|job| is_active(job)).collect();
        body.push_str("<section aria-labelledby=\"running-title\"><h2 id=\"running-title\">Running jobs</h2><div id=\"running\">");
        if running.is_empty() {
            body.push_str("<p>Nothing is running.</p>");
        }
        for job in &running {
            let _ = write!(
                body,
                "<article class=\"job\" data-job-id=\"{id}\"><h3>{kind} of <strong>{source}</strong> {state}</h3>\
                 <p>{link} · submitted {submitted}{stage}</p>{bars}</article>",
                id = escape(&job.id),
                kind = escape(&kind(job)),
                source = escape(&job.source),
                state = job_state(job),
                link = job_link(&job.id),
                submitted = time(job.created_at_ms, self.now_ms),
                stage = if job.stage.is_empty() { String::new() } else { format!(" · {}", escape(&job.stage)) },
                bars = progress_bars(job, self.now_ms),
            );
        }
        body.push_str("</div></section>");
        body.push_str(&self.recent());
        (true, body)
    }

    fn cluster_line(&self) -> String {
        let leader = match self.cluster.leader_id {
            0 => status(Status::Bad, "no leader: an election is running or a majority is down"),
            id => status(Status::Good, &format!("replica {id} leads")),
        };
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "<p class=\"summary\">Coordinator: {leader} · {} · this page from replica {} · \
             <a href=\"/ui/cluster\">{}</a></p>",
            count(self.cluster.replicas.len(), "replica", "replicas"),
            self.cluster.replica_id,
            count(self.workers, "worker", "workers"),
        )
    }

    fn sources(&self) -> String {
        let rows: Vec<Row> = self
            .health
            .iter()
            .map(|source| {
                let cells = vec![
                    format!(
                        "<strong>{}</strong><br><small>{}</small>",
                        escape(&source.source),
                        source.kind
                    ),
                    self.drill_cell(source),
                    self.backup_cell(source),
                    self.next_run_cell(source),
                ];
                Row::keyed("source", &source.source, cells)
            })
            .collect();
        let table = table(
            "sources",
            "Per source: proved restorable by a drill, newest backup against the RPO, next run",
            &["Source", "Restorable (last drill)", "Last backup", "Next run"],
            &rows,
        );
        format!("<section aria-labelledby=\"sources-title\"><h2 id=\"sources-title\">Sources</h2>{table}</section>")
    }

    fn drill_cell(&self, source: &SourceHealth) -> String {
        let Some(drill) = &source.last_drill else {
            return format!(
                "{}<br><small>run <code>bkctl submit drill --source {}</code></small>",
                status(Status::Warn, "never drilled"),
                escape(&source.source)
            );
        };
        let age = self.now_ms.saturating_sub(drill.at_ms);
        let verdict = match (drill.passed, age <= source.drill_max_age_ms) {
            (false, _) => status(Status::Bad, "drill failed"),
            (true, true) => status(Status::Good, "drill passed"),
            (true, false) => status(
                Status::Warn,
                &format!("passed, overdue (older than {})", duration_ms(source.drill_max_age_ms)),
            ),
        };
        let failure = drill
            .failure
            .as_ref()
            .map(|failure| format!("<br><span class=\"failure\">{}</span>", escape(failure)))
            .unwrap_or_default();
        format!(
            "{verdict} {}<br><small>of {}</small>{failure}",
            time(drill.at_ms, self.now_ms),
            backup_link(&drill.backup_id.to_string())
        )
    }

    fn backup_cell(&self, source: &SourceHealth) -> String {
        let rpo = duration_ms(source.rpo_ms);
        let mut cell = match &source.last_backup {
            None => status(Status::Bad, "no backup yet"),
            Some(last) => {
                let verdict = if source.within_rpo(self.now_ms) {
                    status(Status::Good, &format!("within RPO ({rpo})"))
                } else {
                    status(Status::Bad, &format!("older than the RPO ({rpo})"))
                };
                format!(
                    "{verdict} {}<br><small>{}</small>",
                    time(last.created_at_ms, self.now_ms),
                    backup_link(&last.backup_id.to_string())
                )
            }
        };
        if let Some((job_id, error)) = &source.last_backup_failure {
            let _ = write!(
                cell,
                "<br>{} {}: <span class=\"failure\">{}</span>",
                status(Status::Bad, "last backup job failed"),
                job_link(&job_id.to_string()),
                escape(error)
            );
        }
        cell
    }

    fn next_run_cell(&self, source: &SourceHealth) -> String {
        match &source.next_run {
            None => "no schedule".to_string(),
            Some(next) => format!(
                "{} {}<br><small>schedule <code>{}</code></small>",
                if next.drill { "drill" } else { "backup" },
                time(next.at_ms, self.now_ms),
                escape(&next.schedule)
            ),
        }
    }

    fn recent(&self) -> String {
        let rows: Vec<Row> = self
            .jobs
            .iter()
            .filter(|job| !is_active(job))
            .take(RECENT_JOBS)
            .map(|job| {
                let cells = vec![
                    job_link(&job.id),
                    escape(&kind(job)),
                    escape(&job.source),
                    job_state(job),
                    time(job.finished_at_ms, self.now_ms),
                    escape(&job.error),
                ];
                Row::keyed("job-id", &job.id, cells)
            })
            .collect();
        let table = table(
            "recent",
            "The newest finished jobs",
            &["Job", "Kind", "Source", "State", "Ended", "Error"],
            &rows,
        );
        format!("<section aria-labelledby=\"recent-title\"><h2 id=\"recent-title\">Recent jobs</h2>{table}\
                 <p><a href=\"/ui/jobs\">All jobs</a></p></section>")
    }
}
