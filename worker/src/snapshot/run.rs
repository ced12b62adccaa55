//! Running the tools a snapshot method drives (`btrfs`, `cp`, `lvcreate`, `mount`, the
//! operator's commands): bounded by a timeout, killed when it passes, output logged and kept for
//! the error. The environment is the worker's minus bk's own secrets, so an operator's script
//! still finds its cloud credentials but never the repository password or a token.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// What a finished command printed.
pub struct Output {
    /// Its standard output.
    pub stdout: String,
}

/// Environment variables a snapshot command never sees: bk's own secrets.
fn is_bk_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    name.starts_with("BK_")
        && ["PASSWORD", "PASSPHRASE", "TOKEN", "SECRET", "KEY"]
            .iter()
            .any(|word| name.contains(word))
}

/// Runs `program args…` with `env` added, up to `timeout`.
///
/// # Errors
/// It could not start, timed out (then it is killed), or exited non-zero: the message names
/// the command line, the exit status and what it wrote to stderr.
pub async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, String> {
    run_shown(&shown(program, args), program, args, env, timeout).await
}

/// [`run`], naming the command `shown` in logs and errors.
async fn run_shown(
    shown: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if is_bk_secret(&name) {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let child = command.spawn().map_err(|error| format!("cannot run `{shown}`: {error}"))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "`{shown}` did not finish within {}: killed",
                humantime::format_duration(timeout)
            )
        })?
        .map_err(|error| format!("`{shown}` failed to run: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for line in stdout.lines().chain(stderr.lines()).filter(|line| !line.trim().is_empty()) {
        tracing::info!(command = %shown, "{line}");
    }
    if !output.status.success() {
        let said = stderr.trim();
        let said = if said.is_empty() { stdout.trim() } else { said };
        return Err(format!("`{shown}` failed ({}): {said}", output.status));
    }
    Ok(Output { stdout })
}

/// Runs an operator's shell command line (`sh -c`), named `name` in logs and errors: the line
/// itself is never shown, since an operator may write a credential into it.
///
/// # Errors
/// As [`run`].
pub async fn run_shell(
    name: &str,
    line: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, String> {
    run_shown(name, "sh", &["-c", line], env, timeout).await
}

/// A path as a command argument.
pub fn arg(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("`{}` is not UTF-8: cannot pass it to a command", path.display()))
}

fn shown(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_bk_secrets_are_withheld_from_commands() {
        for (name, withheld) in [
            ("BK_REPOSITORY_PASSWORD", true),
            ("BK_JOIN_TOKEN", true),
            ("bk_questdb_password", true),
            ("BK_CACHE_DIR", false),
            ("AWS_SECRET_ACCESS_KEY", false),
            ("PATH", false),
        ] {
            assert_eq!(is_bk_secret(name), withheld, "{name}");
        }
    }

    #[tokio::test]
    async fn test_a_failing_command_names_itself_and_what_it_said_but_not_its_line() {
        let line = "SECRET=hunter2; echo nope >&2; exit 3";
        let error =
            run_shell("[snapshot] create", line, &[], Duration::from_secs(5)).await.err().unwrap();
        assert!(
            error.contains("`[snapshot] create` failed")
                && error.contains("nope")
                && error.contains('3'),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "the command line leaked: {error}");
        let error =
            run_shell("sleep", "sleep 5", &[], Duration::from_millis(100)).await.err().unwrap();
        assert!(error.contains("did not finish within 100ms"), "{error}");
        let printed = run_shell(
            "echo",
            "echo \"$BK_SNAPSHOT_NAME\"",
            &[("BK_SNAPSHOT_NAME", "s1")],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(printed.unwrap().stdout, "s1\n");
    }
}
