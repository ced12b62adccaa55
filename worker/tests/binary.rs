//! The `bk-worker` binary reads the example config and refuses an incomplete one clearly.

use std::process::Command;

#[test]
fn test_print_config_reads_the_example_config() {
    let output = Command::new(env!("CARGO_BIN_EXE_bk-worker"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/worker.toml"),
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("node = \"node1\""));
}

#[test]
fn test_config_without_store_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.toml");
    std::fs::write(
        &path,
        "version = 1\nsource = \"s\"\nnode = \"n\"\ncoordinator_endpoints = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_bk-worker")).arg("--config").arg(&path).output().unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("store"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn test_print_config_never_shows_secrets_given_by_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_bk-worker"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/worker.toml"),
            "--print-config",
        ])
        .env("BK_QUESTDB_PASSWORD", "planted-pg-secret")
        .env("BK_JOIN_TOKEN", "planted-join-token")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        !printed.contains("planted-pg-secret") && !printed.contains("planted-join-token"),
        "{printed}"
    );
    assert!(printed.contains("join_token_file"), "file paths are shown: {printed}");
}
