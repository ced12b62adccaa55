//! Medians, ratios against the baseline measured in the same run, the printed table and its JSON.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

/// What a row is compared with: local copies with `cp -r` (the disk's physical limit, near
/// enough), copies into S3 with `rclone copy` into the same server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Baseline {
    /// `cp -r` of the same tree.
    Cp,
    /// `rclone copy --transfers 16` of the same tree into the same S3 server.
    RcloneS3,
}

impl Baseline {
    fn row_name(self) -> &'static str {
        match self {
            Baseline::Cp => "cp -r",
            Baseline::RcloneS3 => "rclone copy --transfers 16 (→S3)",
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
}

impl Table {
    /// A table for a tree of `objects` / `bytes`.
    pub(crate) fn new(objects: u64, bytes: u64, reps: usize) -> Self {
        Self { objects, bytes, reps, series: Vec::new() }
    }

    /// Adds one repetition's `seconds` to the series `name`.
    pub(crate) fn record(&mut self, name: &'static str, baseline: Baseline, seconds: f64) {
        println!("  {name}: {seconds:.2} s");
        match self.series.iter_mut().find(|series| series.name == name) {
            Some(series) => series.seconds.push(seconds),
            None => self.series.push(Series { name, baseline, seconds: vec![seconds] }),
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
        for note in notes {
            println!("({note})");
        }
        let document = json!({
            "size": size, "reps": self.reps, "objects": self.objects, "bytes": self.bytes,
            "results": rows, "notes": notes,
        });
        std::fs::write(out, serde_json::to_string_pretty(&document)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("written to {}", out.display());
        Ok(())
    }
}
