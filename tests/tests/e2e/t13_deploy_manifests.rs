//! `deploy/`: every systemd unit and Kubernetes manifest parses, and the parts bk reads (the
//! embedded configs, the `BK_*` variables, referenced Secrets and ConfigMaps) are what the
//! binaries accept.

use std::collections::HashMap;
use std::path::PathBuf;

use bk_coordinator::CoordinatorConfig;
use bk_worker::WorkerConfig;
use serde::Deserialize;
use yaml_serde::Value;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|document| document["kind"] == kind).collect()
}

fn env_of(container: &Value) -> HashMap<String, String> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|variable| {
            Some((
                variable["name"].as_str()?.to_string(),
                variable["value"].as_str().unwrap_or("from-field").to_string(),
            ))
        })
        .collect()
}

#[test]
fn test_every_manifest_parses_with_api_version_and_kind() {
    for file in [
        "kubernetes/coordinator.yaml",
        "kubernetes/worker-sidecar-influxdb3.yaml",
        "kubernetes/worker-daemonset.yaml",
    ] {
        let documents = documents(file);
        assert!(!documents.is_empty(), "{file} is empty");
        for document in &documents {
            assert!(
                document["apiVersion"].is_string() && document["kind"].is_string(),
                "{file}: {document:?}"
            );
        }
    }
}

#[test]
fn test_coordinator_statefulset_runs_three_replicas_with_storage_and_a_valid_config() {
    let documents = documents("kubernetes/coordinator.yaml");
    let service = of_kind(&documents, "Service")[0];
    assert_eq!(service["spec"]["clusterIP"], "None", "replicas need a headless service");
    let set = of_kind(&documents, "StatefulSet")[0];
    assert_eq!(set["spec"]["replicas"], 3);
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    assert!(set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        .is_string());
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let script = container["args"][0].as_str().unwrap();
    assert!(script.contains("BK_REPLICA_ID") && script.contains("--join"), "{script}");
    let config_map = of_kind(&documents, "ConfigMap")[0];
    let text = config_map["data"]["coordinator.toml"].as_str().unwrap();
    let mut env = env_of(container);
    env.insert("BK_REPLICA_ID".into(), "2".into());
    let config =
        CoordinatorConfig::parse(text).unwrap().apply_env(&env).unwrap().validate().unwrap();
    assert_eq!(config.listen_addr, "0.0.0.0:7400");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/bk/coordinator"));
    assert_eq!(config.replica_id, 2);
    let tls = config.tls.server_files();
    assert!(tls.is_enabled() && tls.requires_client_certificates());
    let pod = &set["spec"]["template"]["spec"];
    let tls_files = [&config.tls.cert_file, &config.tls.key_file, &config.tls.ca_file];
    assert_secret_mounted(pod, container, tls_files.into_iter().flatten());
    let monitor = of_kind(&documents, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(monitor["spec"]["endpoints"][0]["scheme"], "https", "the replicas serve TLS only");
}

/// Asserts every path in `files` lies under a mount of `container` whose volume is a Secret.
fn assert_secret_mounted<'a>(
    pod: &Value,
    container: &Value,
    files: impl IntoIterator<Item = &'a PathBuf>,
) {
    let secret_volumes: Vec<&str> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|volume| volume["secret"].is_mapping())
        .filter_map(|volume| volume["name"].as_str())
        .collect();
    let secret_mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|mount| mount["name"].as_str().is_some_and(|name| secret_volumes.contains(&name)))
        .filter_map(|mount| mount["mountPath"].as_str())
        .collect();
    for file in files {
        assert!(
            secret_mounts.iter().any(|mount| file.starts_with(mount)),
            "{} is not under a mounted secret ({secret_mounts:?})",
            file.display()
        );
    }
}

/// The files holding repository passphrases: a worker without one cannot write a repository.
fn worker_passphrase_files(config: &WorkerConfig) -> Vec<&PathBuf> {
    let files: Vec<&PathBuf> = config
        .repository_password_file
        .iter()
        .chain(
            config.repositories.values().filter_map(|repository| repository.password_file.as_ref()),
        )
        .collect();
    assert!(!files.is_empty(), "the worker has no repository passphrase");
    files
}

fn worker_tls_files(config: &WorkerConfig) -> Vec<&PathBuf> {
    assert!(config.tls.is_enabled(), "the worker does not use TLS");
    [&config.tls.ca_file, &config.tls.cert_file, &config.tls.key_file]
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn test_worker_manifests_carry_configs_the_worker_accepts_and_the_secrets_they_mount() {
    let sidecar = documents("kubernetes/worker-sidecar-influxdb3.yaml");
    let text = of_kind(&sidecar, "ConfigMap")[0]["data"]["worker.toml"].as_str().unwrap();
    let config = WorkerConfig::parse(text).unwrap().validate().unwrap();
    assert_eq!(config.worker_id(), "prod/node1");
    assert_eq!(config.coordinator_endpoints.len(), 3);
    let pod = of_kind(&sidecar, "Pod")[0];
    let worker = pod["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "bk-worker")
        .unwrap();
    assert_secret_mounted(&pod["spec"], worker, worker_tls_files(&config));
    assert_secret_mounted(&pod["spec"], worker, worker_passphrase_files(&config));
    let secret_name = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|volume| volume["secret"]["secretName"].as_str())
        .unwrap();
    assert_eq!(of_kind(&sidecar, "Secret")[0]["metadata"]["name"], secret_name);
    for file in config.store.options.keys().filter(|key| key.ends_with("_file")) {
        let path = &config.store.options[file];
        assert!(
            path.starts_with("/run/secrets/bk/"),
            "{file} = {path} is not under the mounted secret"
        );
    }

    let daemonset = documents("kubernetes/worker-daemonset.yaml");
    let text = of_kind(&daemonset, "ConfigMap")[0]["data"]["worker.toml"].as_str().unwrap();
    let container =
        &of_kind(&daemonset, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0];
    let mut env = env_of(container);
    env.insert("BK_NODE".into(), "node7".into());
    let config = WorkerConfig::parse(text).unwrap().apply_env(&env).unwrap().validate().unwrap();
    assert_eq!(config.worker_id(), "prod/node7");
    let pod = &of_kind(&daemonset, "DaemonSet")[0]["spec"]["template"]["spec"];
    assert_secret_mounted(pod, container, worker_tls_files(&config));
    assert_secret_mounted(pod, container, worker_passphrase_files(&config));
    assert_eq!(config.store.url, "file:///var/lib/influxdb3");
}

#[test]
fn test_systemd_units_are_hardened_and_start_the_binaries_with_their_configs() {
    for (unit, binary, config) in [
        (
            "systemd/bk-coordinator.service",
            "/usr/local/bin/bk-coordinator",
            "/etc/bk/coordinator.toml",
        ),
        ("systemd/bk-worker@.service", "/usr/local/bin/bk-worker", "/etc/bk/worker-%i.toml"),
    ] {
        let text = std::fs::read_to_string(deploy(unit)).unwrap();
        let service: HashMap<&str, &str> = text
            .split("[Service]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        assert_eq!(service["ExecStart"], format!("{binary} --config {config}"), "{unit}");
        for (key, value) in [
            ("User", "bk"),
            ("ProtectSystem", "strict"),
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "true"),
        ] {
            assert_eq!(service.get(key), Some(&value), "{unit}: {key}");
        }
    }
    // The worker's local index cache is in a directory systemd makes writable.
    let worker = std::fs::read_to_string(deploy("systemd/bk-worker@.service")).unwrap();
    assert!(worker.lines().any(|line| line == "CacheDirectory=bk"), "{worker}");
    assert!(worker.lines().any(|line| line == "Environment=BK_CACHE_DIR=/var/cache/bk/%i"));
}

/// The instructions of `deploy/Containerfile`'s final stage, as (instruction, arguments).
fn final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("Containerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .map(|(instruction, arguments)| (instruction.to_uppercase(), arguments.trim().to_string()))
        .collect();
    let last_from =
        instructions.iter().rposition(|(instruction, _)| instruction == "FROM").unwrap();
    instructions[last_from..].to_vec()
}

#[test]
fn test_the_containerfile_builds_the_image_the_manifests_run() {
    let stage = final_stage();
    let arguments = |wanted: &str| -> Vec<&str> {
        stage
            .iter()
            .filter(|(instruction, _)| instruction == wanted)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let installed: Vec<&str> = arguments("COPY")
        .iter()
        .flat_map(|copy| copy.split_whitespace())
        .filter_map(|path| path.strip_prefix("/out/"))
        .collect();
    let user = arguments("USER")[0].split(':').next().unwrap().parse::<i64>().unwrap();
    assert!(user != 0, "the image runs as root");
    let exposed: Vec<i64> = arguments("EXPOSE").iter().map(|port| port.parse().unwrap()).collect();
    let manifests = [
        "kubernetes/coordinator.yaml",
        "kubernetes/worker-daemonset.yaml",
        "kubernetes/worker-sidecar-influxdb3.yaml",
    ];
    let mut checked = 0;
    for path in manifests {
        for document in documents(path) {
            let pod = if document["kind"] == "Pod" {
                &document["spec"]
            } else {
                &document["spec"]["template"]["spec"]
            };
            let containers = pod["containers"].as_sequence().into_iter().flatten();
            for container in containers.filter(|container| {
                container["image"].as_str().is_some_and(|image| image.starts_with("bk:"))
            }) {
                checked += 1;
                let command: Vec<&str> = container["command"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                // `/bin/sh -c SCRIPT` (the coordinator) runs the binary the script names.
                let binary = match command.as_slice() {
                    ["/bin/sh", "-c"] => container["args"][0]
                        .as_str()
                        .unwrap()
                        .split_whitespace()
                        .find(|word| word.starts_with("bk-") || *word == "bkctl")
                        .unwrap(),
                    [binary, ..] => binary,
                    [] => panic!("{path}: a bk container without a command"),
                };
                assert!(
                    installed.contains(&binary),
                    "{path} runs `{binary}`, the image has {installed:?}"
                );
                let context = &container["securityContext"];
                let run_as =
                    context["runAsUser"].as_i64().or(pod["securityContext"]["runAsUser"].as_i64());
                assert_eq!(run_as, Some(user), "{path}: runAsUser is not the image's user");
                for port in container["ports"].as_sequence().into_iter().flatten() {
                    let port = port["containerPort"].as_i64().unwrap();
                    assert!(
                        exposed.contains(&port),
                        "{path}: port {port} is not exposed by the image"
                    );
                }
            }
        }
    }
    assert_eq!(checked, 3, "expected the coordinator, the daemonset and the sidecar worker");
}
