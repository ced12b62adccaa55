//! `bkctl` as a user runs it: the demo end to end, and clear errors.

use std::process::Command;

#[test]
fn test_demo_backs_up_the_sample_cluster_and_reports_it_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bkctl"))
        .args(["demo", "--size", "2MiB", "-o", "json", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["job"]["state"], "succeeded");
    let backup = &report["backup"];
    assert!(backup["num_objects"].as_u64().unwrap() > 100, "{backup}");
    let phases: Vec<&str> = backup["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["compactor", "nodes", "catalog", "licence"]);
    let manifest =
        dir.path().join("demo/repository").join(backup["manifest_key"].as_str().unwrap());
    assert!(manifest.is_file(), "manifest not at {}", manifest.display());
    let restore = &report["restore"];
    assert_eq!(restore["job"]["state"], "succeeded");
    assert_eq!(restore["comparison"]["identical"], true, "{restore}");
    assert_eq!(restore["comparison"]["num_objects"], backup["num_objects"]);
}

#[test]
fn test_unreachable_coordinator_is_a_one_line_error_and_nonzero_exit() {
    let output = Command::new(env!("CARGO_BIN_EXE_bkctl"))
        .args(["--endpoint", "127.0.0.1:1", "jobs"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn test_enterprise_source_without_cluster_id_names_the_missing_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_bkctl"))
        .args([
            "--endpoint",
            "127.0.0.1:1",
            "source",
            "add",
            "s",
            "--kind",
            "influxdb3-enterprise",
            "--nodes",
            "a",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--cluster-id"));
}

#[test]
fn test_completion_scripts_are_printed_for_each_shell() {
    for (shell, marker) in
        [("bash", "_bkctl()"), ("zsh", "#compdef bkctl"), ("fish", "complete -c bkctl")]
    {
        let output =
            Command::new(env!("CARGO_BIN_EXE_bkctl")).args(["completion", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains(marker) && script.contains("submit"),
            "{shell}: {}",
            &script[..script.len().min(200)]
        );
    }
}

#[test]
fn test_a_reader_that_stops_early_ends_bkctl_quietly_as_sigpipe_would() {
    // `bkctl … | head`: the reading end is gone before bkctl writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bkctl"))
        .args(["completion", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
