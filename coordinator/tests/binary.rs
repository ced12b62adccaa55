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

/// Starts the binary on a port-0 listener and returns it with its address.
fn start_coordinator(data_dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bk-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().strip_prefix("listening on ").unwrap().to_string();
    (child, address)
}

#[tokio::test]
async fn test_health_checking_and_reflection_work_out_of_the_box() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = start_coordinator(dir.path());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "bk.v1.Control"] {
        let request = tonic_health::pb::HealthCheckRequest { service: service.to_string() };
        let status = health.check(request).await.unwrap().into_inner().status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for expected in ["bk.v1.Control", "bk.v1.WorkerHub", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|name| name == expected), "{expected} not listed: {names:?}");
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn test_json_log_format_writes_one_json_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bk-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BK_LOG_FORMAT", "json")
        .env("BK_CLIENT_TOKENS", "planted-client-token")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen_serving = false;
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(record["level"].is_string() && record["fields"].is_object(), "{line}");
        assert!(!line.contains("planted-client-token"), "a token reached the log");
        if record["fields"]["message"] == "coordinator serving" {
            seen_serving = true;
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(seen_serving, "the start-up line was not logged");
}
