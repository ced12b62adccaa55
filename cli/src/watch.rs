//! Live progress of a job: on a terminal, one bar per phase and node, with objects, bytes and
//! rate, and under them each node's worker with its limits and object-store retries; elsewhere
//! (a log file, a CI job, cron), a plain progress line every few seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bk_proto::pb;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::client::Client;
use crate::render::{human_bytes, job_ended, task_state, worker_limits};

/// How often the workers' limits and retry counts are refreshed while watching.
const WORKER_REFRESH: Duration = Duration::from_secs(2);

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// Follows the job until it ends and returns its last state. With `show_progress`, draws bars on
/// stderr when it is a terminal and prints a progress line every 10 s (and at every stage
/// change) when it is not; re-opens the stream if it breaks (leader change).
///
/// # Errors
/// When the job cannot be watched at all.
pub(crate) async fn watch_job(
    client: &Client,
    job_id: &str,
    show_progress: bool,
) -> anyhow::Result<pb::Job> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut bars = Bars::new(show_progress && terminal);
    let mut lines = ProgressLines::new(show_progress && !terminal);
    let mut failures = 0;
    loop {
        let mut stream = match client.watch_job(job_id).await {
            Ok(stream) => stream,
            Err(status) if failures < 5 && status.code() == tonic::Code::Unavailable => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(status) => anyhow::bail!("cannot watch job `{job_id}`: {}", status.message()),
        };
        while let Ok(Some(job)) = stream.message().await {
            bars.update(&job);
            lines.update(&job);
            if bars.workers_due() {
                if let Ok(response) = client.list_workers(pb::ListWorkersRequest {}).await {
                    bars.update_workers(&job, &response.workers);
                }
            }
            if job_ended(&job) {
                bars.finish();
                return Ok(job);
            }
        }
        failures += 1;
        if failures > 10 {
            anyhow::bail!("lost the progress stream of job `{job_id}` too many times");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

struct Bars {
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
    /// One line per node of the job: its worker's limits and retries.
    worker_lines: BTreeMap<String, ProgressBar>,
    workers_refreshed: Option<Instant>,
}

impl Bars {
    fn new(show: bool) -> Self {
        Self {
            multi: show.then(MultiProgress::new),
            bars: BTreeMap::new(),
            worker_lines: BTreeMap::new(),
            workers_refreshed: None,
        }
    }

    /// Whether the worker lines are shown and due for a refresh.
    fn workers_due(&self) -> bool {
        self.multi.is_some()
            && self.workers_refreshed.is_none_or(|refreshed| refreshed.elapsed() >= WORKER_REFRESH)
    }

    /// Shows, for each node the job has tasks on, its worker's limits and object-store retries.
    fn update_workers(&mut self, job: &pb::Job, workers: &[pb::Worker]) {
        self.workers_refreshed = Some(Instant::now());
        let Some(multi) = &self.multi else { return };
        let nodes: std::collections::BTreeSet<&str> = job
            .phases
            .iter()
            .flat_map(|phase| phase.tasks.iter().map(|task| task.node.as_str()))
            .filter(|node| !node.is_empty())
            .collect();
        for worker in workers
            .iter()
            .filter(|worker| worker.source == job.source && nodes.contains(worker.node.as_str()))
        {
            let line = self.worker_lines.entry(worker.node.clone()).or_insert_with(|| {
                let line = multi.add(ProgressBar::new(1));
                line.set_style(
                    ProgressStyle::with_template("{prefix:>24} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                line.set_prefix(format!("worker {}", worker.node));
                line
            });
            line.set_message(worker_limits(worker));
        }
    }

    fn update(&mut self, job: &pb::Job) {
        let Some(multi) = &self.multi else { return };
        for (phase_index, phase) in job.phases.iter().enumerate() {
            let mut groups: BTreeMap<String, Vec<&pb::Task>> = BTreeMap::new();
            for task in &phase.tasks {
                let node =
                    if task.node.is_empty() { "cluster".to_string() } else { task.node.clone() };
                groups.entry(node).or_default().push(task);
            }
            for (node, tasks) in groups {
                let key = format!("{phase_index:02} {}/{node}", phase.name);
                let bar = self.bars.entry(key.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>24} [{bar:28}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(key[3..].to_string());
                    bar
                });
                let (mut done, mut total, mut objects, mut objects_total) = (0, 0, 0, 0);
                for task in &tasks {
                    let progress = task.progress.unwrap_or_default();
                    done += progress.bytes_done;
                    total += progress.bytes_total.max(progress.bytes_done);
                    objects += progress.objects_done;
                    objects_total += progress.objects_total.max(progress.objects_done);
                }
                bar.set_length(total.max(1));
                bar.set_position(done);
                let states: Vec<&str> = tasks.iter().map(|task| task_state(task.state)).collect();
                let state = summarize(&states);
                let waiting = tasks
                    .iter()
                    .find(|task| !task.waiting_reason.is_empty())
                    .map(|task| task.waiting_reason.as_str());
                bar.set_message(match waiting {
                    Some(reason) => format!("{objects}/{objects_total} objects  {state}: {reason}"),
                    None => format!("{objects}/{objects_total} objects  {state}"),
                });
                if state == "done" && !bar.is_finished() {
                    bar.finish();
                }
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values().chain(self.worker_lines.values()) {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// Plain progress lines on stderr, for when nobody watches a terminal.
struct ProgressLines {
    enabled: bool,
    started: Instant,
    last: Option<(Instant, String)>,
}

impl ProgressLines {
    fn new(enabled: bool) -> Self {
        Self { enabled, started: Instant::now(), last: None }
    }

    /// Prints a line when the stage changed or `LINE_INTERVAL` passed since the last one.
    fn update(&mut self, job: &pb::Job) {
        if !self.enabled {
            return;
        }
        let due = match &self.last {
            None => true,
            Some((printed, stage)) => *stage != job.stage || printed.elapsed() >= LINE_INTERVAL,
        };
        if due {
            eprintln!("{:>6.0}s  {}", self.started.elapsed().as_secs_f64(), progress_line(job));
            self.last = Some((Instant::now(), job.stage.clone()));
        }
    }
}

/// `stage nodes: 12/40 tasks done, 1,204 objects, 1.2 GiB of 3.4 GiB`.
fn progress_line(job: &pb::Job) -> String {
    let tasks = job.phases.iter().flat_map(|phase| phase.tasks.iter());
    let (mut done, mut total, mut objects, mut bytes, mut bytes_total) = (0, 0, 0, 0, 0);
    for task in tasks {
        total += 1;
        if task_state(task.state) == "succeeded" {
            done += 1;
        }
        if !task.moves_objects {
            continue; // Checks and commits read the copied objects again: count them once.
        }
        let progress = task.progress.unwrap_or_default();
        objects += progress.objects_done;
        bytes += progress.bytes_done;
        bytes_total += progress.bytes_total.max(progress.bytes_done);
    }
    format!(
        "stage {}: {done}/{total} tasks done, {objects} objects, {} of {}",
        job.stage,
        human_bytes(bytes),
        human_bytes(bytes_total)
    )
}

fn summarize(states: &[&str]) -> &'static str {
    if states.iter().all(|state| *state == "succeeded") {
        "done"
    } else if states.contains(&"failed") {
        "failed"
    } else if states.contains(&"running") {
        "running"
    } else if states.contains(&"pending") {
        "waiting"
    } else if states.contains(&"skipped") {
        "skipped"
    } else {
        "blocked"
    }
}
