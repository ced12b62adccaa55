//! Medians, ratios against the baseline measured in the same run, the printed table and its JSON.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

/// What a row is compared with: local copies with `cp -r` + `sync` (the disk's physical limit,
/// near enough), copies into S3 with `rclone copy` into the same server, restores from S3 with
/// rclone's reverse copy, bk's variants with bk's full backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Baseline {
    /// `cp -r` of the same tree, then `sync`.
    Cp,
    /// `rclone copy --transfers 16` of the same tree into the same S3 server.
    RcloneS3,
    /// `rclone copy --transfers 16` of that copy back to disk.
    RcloneFromS3,
    /// bk's full local backup with everything on.
    BkFull,
    /// restic's full backup of the same tree (`bench --objects`).
    ResticFull,
    /// restic's backup of the unchanged tree.
    ResticUnchanged,
    /// restic's backup after the change.
    ResticChanged,
    /// restic's restore of its last backup.
    ResticRestore,
    /// `find -printf '%s %T@\n'` over the tree: a bare stat walk.
    StatWalk,
}

impl Baseline {
    fn row_name(self) -> &'static str {
        match self {
            Baseline::Cp => "cp -r + sync",
            Baseline::RcloneS3 => "rclone copy --transfers 16 (→S3)",
            Baseline::RcloneFromS3 => "rclone copy --transfers 16 (S3→local)",
            Baseline::BkFull => "bk backup (local→local)",
            Baseline::ResticFull => "restic backup (full)",
            Baseline::ResticUnchanged => "restic backup, unchanged",
            Baseline::ResticChanged => "restic backup, changed",
            Baseline::ResticRestore => "restic restore",
            Baseline::StatWalk => "find -printf (stat walk)",
        }
    }
}

/// One measured tool: its name, baseline and the seconds of each repetition.
pub(crate) struct Series {
    name: &'static str,
    baseline: Baseline,
    seconds: Vec<f64>,
}

impl Series {
    fn median(&self) -> f64 {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

/// Every series of a run, in the order first recorded.
pub(crate) struct Table {
    objects: u64,
    bytes: u64,
    reps: usize,
    series: Vec<Series>,
    /// Facts of individual backups (PUTs, stored bytes), by what they were.
    facts: Vec<(String, serde_json::Value)>,
    /// Peak memory figures, the largest of the repetitions.
    memory: Vec<(String, u64)>,
}

impl Table {
    /// A table for a tree of `objects` / `bytes`.
    pub(crate) fn new(objects: u64, bytes: u64, reps: usize) -> Self {
        Self { objects, bytes, reps, series: Vec::new(), facts: Vec::new(), memory: Vec::new() }
    }

    /// Adds one repetition's job to the series `name`: its time, and its workers' peak RSS.
    pub(crate) fn record_job(
        &mut self,
        name: &'static str,
        baseline: Baseline,
        run: &crate::deployment::JobRun,
    ) {
        self.record(name, baseline, run.seconds);
        self.note_peak_rss(&format!("bk worker peak RSS, {name}"), run.peak_worker_rss);
    }

    /// Notes a fact of one repetition (printed now, kept in the JSON).
    pub(crate) fn record_fact(&mut self, what: &str, facts: serde_json::Value) {
        println!("    {what}: {facts}");
        self.facts.push((what.to_string(), facts));
    }

    /// Adds one repetition's `seconds` to the series `name`.
    pub(crate) fn record(&mut self, name: &'static str, baseline: Baseline, seconds: f64) {
        println!("  {name}: {seconds:.2} s");
        match self.series.iter_mut().find(|series| series.name == name) {
            Some(series) => series.seconds.push(seconds),
            None => self.series.push(Series { name, baseline, seconds: vec![seconds] }),
        }
    }

    /// Records what `bkctl show` says of the job's backup: source and stored bytes, PUTs
    /// against their target (stored bytes / pack size + 2 per task), bytes written.
    ///
    /// # Errors
    /// When the backup cannot be shown.
    pub(crate) fn record_backup_facts(
        &mut self,
        deployment: &crate::deployment::Deployment,
        job: &serde_json::Value,
        what: &str,
    ) -> anyhow::Result<()> {
        let backup_id = job["backup_id"].as_str().context("no backup id")?;
        let backup = deployment.show(backup_id)?;
        let tasks: u64 = job["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|phase| phase["tasks"].as_array().map_or(0, Vec::len) as u64)
            .sum::<u64>()
            + job["cleanup"].as_array().map_or(0, Vec::len) as u64;
        let stored = backup["bytes_stored"].as_u64().unwrap_or(0);
        let puts = backup["repository_puts"].as_u64().unwrap_or(0);
        let pack_size = 16u64 << 20;
        let put_target = stored.div_ceil(pack_size) + 2 * tasks;
        let facts = json!({
            "source_bytes": backup["num_bytes"], "bytes_read": backup["bytes_read"],
            "bytes_written": backup["bytes_written"], "bytes_stored": stored,
            "repository_puts": puts, "put_target": put_target, "tasks": tasks,
        });
        self.record_fact(&format!("{what} backup"), facts);
        Ok(())
    }

    /// Records a ratio of one repetition (printed now; the JSON keeps every repetition's).
    pub(crate) fn record_ratio(&mut self, what: &str, ratio: f64) {
        println!("    {what}: {ratio:.2}");
        let key = format!("ratio: {what}");
        match self.facts.iter_mut().find(|(name, _)| *name == key) {
            Some((_, serde_json::Value::Array(values))) => values.push(json!(ratio)),
            _ => self.facts.push((key, json!([ratio]))),
        }
    }

    /// Records a peak-memory figure: the table keeps the largest over the repetitions, and each
    /// repetition's is printed as it comes (a peak that grows from one repetition to the next,
    /// in the same worker processes, is something kept between jobs).
    pub(crate) fn note_peak_rss(&mut self, what: &str, bytes: u64) {
        println!("    {what}: {} MiB", bytes >> 20);
        match self.memory.iter_mut().find(|(name, _)| name == what) {
            Some((_, peak)) => *peak = (*peak).max(bytes),
            None => self.memory.push((what.to_string(), bytes)),
        }
    }

    fn baseline_median(&self, baseline: Baseline) -> Option<f64> {
        self.series.iter().find(|series| series.name == baseline.row_name()).map(Series::median)
    }

    /// Prints the table and writes it as JSON to `out`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub(crate) fn print_and_write(
        &self,
        out: &Path,
        size: &str,
        notes: &[String],
    ) -> anyhow::Result<()> {
        let mib = self.bytes as f64 / f64::from(1 << 20);
        println!(
            "\n{} objects, {mib:.1} MiB, {} repetitions (medians; ratio = time / baseline time)",
            self.objects, self.reps
        );
        println!("{:<42} {:>8} {:>9} {:>7}  baseline", "", "seconds", "MiB/s", "ratio");
        let mut rows = Vec::new();
        for series in &self.series {
            let median = series.median();
            let ratio = self.baseline_median(series.baseline).map(|baseline| median / baseline);
            println!(
                "{:<42} {:>8.2} {:>9.1} {:>7}  {}",
                series.name,
                median,
                mib / median,
                ratio.map_or("-".to_string(), |ratio| format!("{ratio:.2}")),
                series.baseline.row_name()
            );
            rows.push(json!({
                "name": series.name, "median_seconds": median, "seconds": series.seconds,
                "mib_per_second": mib / median, "baseline": series.baseline.row_name(),
                "ratio_to_baseline": ratio,
            }));
        }
        let mut facts = serde_json::Map::new();
        for (what, value) in &self.facts {
            facts.insert(what.clone(), value.clone()); // The last repetition's.
        }
        for (what, value) in &facts {
            println!("{what}: {value}");
        }
        for (what, bytes) in &self.memory {
            println!("{what}: {} MiB", bytes >> 20);
        }
        for note in notes {
            println!("({note})");
        }
        let memory: serde_json::Map<String, serde_json::Value> =
            self.memory.iter().map(|(what, bytes)| (what.clone(), json!(bytes))).collect();
        let document = json!({
            "size": size, "reps": self.reps, "objects": self.objects, "bytes": self.bytes,
            "results": rows, "backups": facts, "memory": memory, "notes": notes,
        });
        std::fs::write(out, serde_json::to_string_pretty(&document)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("written to {}", out.display());
        Ok(())
    }
}
