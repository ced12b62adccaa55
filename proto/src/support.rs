//! Small pieces every bk binary shares: versioned TOML config files, tracing set-up, and mapping
//! SIGINT/SIGTERM to a cancellation token.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Returned when a config file cannot be used; names the file's problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("invalid config: {0}")]
    Parse(String),
    /// The `version` key is missing or not one this binary reads.
    #[error("unsupported config version {found:?}: this binary reads `version = {supported}`")]
    Version {
        /// The version found, if any.
        found: Option<i64>,
        /// The version this binary reads.
        supported: i64,
    },
    /// An environment variable that overrides a key holds an unusable value.
    #[error("invalid value in environment variable `{name}`: {reason}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is well-formed but unusable.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Parses a config file that starts with `version = N`. Unknown keys are rejected by the target
/// type (`#[serde(deny_unknown_fields)]`), with the key named in the error.
///
/// # Errors
/// [`ConfigError::Version`] for a missing or other version, [`ConfigError::Parse`] otherwise.
pub fn parse_versioned<T: DeserializeOwned>(text: &str, supported: i64) -> Result<T, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|error| ConfigError::Parse(error.to_string()))?;
    let version = table.remove("version");
    let found = version.as_ref().and_then(toml::Value::as_integer);
    if found != Some(supported) {
        return Err(ConfigError::Version { found, supported });
    }
    T::deserialize(table).map_err(|error| ConfigError::Parse(error.to_string()))
}

/// Reads `name` from an injected environment map and parses it (so tests never touch the real
/// process environment).
///
/// # Errors
/// [`ConfigError::Env`] when the variable is set but does not parse.
pub fn env_override<T: std::str::FromStr>(
    env: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.get(name) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|error: T::Err| ConfigError::Env {
            name: name.to_string(),
            reason: error.to_string(),
        }),
    }
}

/// Bytes as people read them, `12.3 MiB` (binary units, one decimal), the inverse of
/// [`parse_byte_size`]'s units: bkctl and the web console print sizes the same way.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a size as operators write it: `16MiB`, `2GiB`, `1.5KiB`, `1000` (bytes). Units are
/// binary (`K`, `KB` and `KiB` all mean 1024). Shared by `bkctl demo --size`, the worker's
/// `--max-bandwidth` and the benchmark.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|character: char| !character.is_ascii_digit() && character != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("invalid size `{text}`: use e.g. 16MiB, 2GiB"))?;
    let multiplier = match unit.trim() {
        "" | "B" => 1u64,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("invalid size unit `{other}`: use B, KiB, MiB or GiB")),
    };
    Ok((number * multiplier as f64) as u64)
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}`: use `text` or `json`")),
        }
    }
}

/// Installs the global tracing subscriber, writing to stderr. Filter from `RUST_LOG`
/// (default `info`). Safe to call twice: the second call does nothing.
pub fn init_tracing(format: LogFormat) {
    init_tracing_with(format, tracing_subscriber::layer::Identity::new());
}

/// As [`init_tracing`], with `extra` beside the log output: a layer that must see events
/// whatever `RUST_LOG` says (give it its own per-layer filter).
pub fn init_tracing_with<L>(format: LogFormat, extra: L)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,hyper=warn")
    });
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    let _ = tracing_subscriber::registry().with(extra).with(output.with_filter(filter)).try_init();
}

/// Returns a token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// glibc's malloc tuning, read from the environment once when the process starts: two arenas
/// (not eight per core), buffers up to 32 MiB from the arenas (so chunk buffers are reused
/// with their pages instead of mapped and zeroed afresh each time), and free memory above
/// 16 MiB at an arena's top given back to the kernel. Measured on a worker, 2 GiB cluster
/// (`bench --size 2GiB --reps 1 --no-s3`, same machine and day): glibc's defaults: restore
/// 2.27 s, peak RSS 295 MiB; buffers of 1 MiB and more mapped on their own: 5.47 s, 104 MiB
/// (every range read faulted in fresh pages); these settings: 2.58 s, 230 MiB. bk's daemons
/// run next to database nodes and must not take their memory. (The worker allocates with
/// mimalloc; glibc's malloc still serves the C libraries it links, zstd and aws-lc.)
const MALLOC_TUNING: [(&str, &str); 3] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "33554432"),
    ("MALLOC_TRIM_THRESHOLD_", "16777216"),
];

/// Starts the process again with [`MALLOC_TUNING`] and `more` (settings of the program's own
/// allocator) in its environment where a setting is not there already (an operator's own value
/// wins), unless `BK_KEEP_MALLOC` is set (to measure without them): the only way to tune an
/// allocator that reads its settings when the process starts without unsafe code. Call it
/// first in `main`, before any thread starts. `exec` keeps the process id, open files and
/// arguments; it returns only when it fails, and then the process runs untuned, saying so on
/// stderr under `program`'s name.
pub fn tune_malloc(program: &str, more: &[(&'static str, &'static str)]) {
    let missing: Vec<(&str, &str)> = MALLOC_TUNING
        .iter()
        .chain(more)
        .copied()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if missing.is_empty()
        || !cfg!(target_env = "gnu")
        || std::env::var_os("BK_KEEP_MALLOC").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let error = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(exe).args(std::env::args_os().skip(1)).envs(missing),
    );
    eprintln!("{program}: could not restart with malloc tuning ({error}); running without it");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn test_versioned_parse_rejects_wrong_version_and_unknown_keys() {
        assert!(parse_versioned::<Sample>("version = 1\nname = 'a'", 1).is_ok());
        let error = parse_versioned::<Sample>("name = 'a'", 1).unwrap_err().to_string();
        assert!(error.contains("`version = 1`"), "{error}");
        let error = parse_versioned::<Sample>("version = 1\nname = 'a'\nnmae = 'b'", 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("nmae"), "{error}");
    }
}
