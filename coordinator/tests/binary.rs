//! The `bk-coordinator` binary reads the example config and reports bad configs clearly.

use std::process::Command;

#[test]
fn test_print_config_reads_the_example_config() {
    let output = Command::new(env!("CARGO_BIN_EXE_bk-coordinator"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/coordinator.toml"),
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("lease_timeout = \"30s\""), "{printed}");
}

#[test]
fn test_unknown_config_key_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "version = 1\nlisten_adr = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bk-coordinator"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen_adr"));
}
