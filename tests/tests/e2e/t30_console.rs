//! The web console in a real headless Chromium against a running coordinator and worker: the
//! token is required, the overview lists the sources, a running backup's progress advances on
//! its own (the page refreshes itself), a failed drill shows as failed on the overview and the
//! backup's page; the metrics the alert rules and the dashboard use are exported; the rules
//! pass `promtool`. Screenshots are saved under the target dir for the README.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `BK_CHROMIUM` / `BK_CHROMEDRIVER`) and
//! `promtool` (Debian's `prometheus`, or `BK_PROMTOOL`); without them the tests say so and
//! pass, unless `BK_REQUIRE_TOOLS=1` (CI sets it), which makes a missing tool a failure.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bk_tests::sandbox::Sandbox;
use bk_tests::webdriver::Browser;

use crate::support::{metric_value, register_core_source_of, scrape_metrics};

const TOKEN: &str = "console-token-4e1d93";

/// Whether the test can run: `false` (saying why) when a tool is missing and the run does not
/// require it; a panic when it does (`BK_REQUIRE_TOOLS`).
fn tool_or_skip(found: anyhow::Result<()>) -> bool {
    match found {
        Ok(()) => true,
        Err(error) if std::env::var_os("BK_REQUIRE_TOOLS").is_some() => {
            panic!("BK_REQUIRE_TOOLS is set and a tool is missing: {error}")
        }
        Err(error) => {
            eprintln!("skipped: {error}");
            false
        }
    }
}

/// `GET path` over HTTP/1.1 with an optional bearer token: (status, headers and body).
fn http_get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let authorization =
        token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// Sum of `data-bytes-done` over the progress bars of job `job_id` on the page.
fn bytes_done(browser: &Browser, job_id: &str) -> u64 {
    let script = format!(
        "return Array.from(document.querySelectorAll('.job[data-job-id=\"{job_id}\"] .bar'))\
         .reduce((sum, bar) => sum + Number(bar.dataset.bytesDone), 0);"
    );
    browser.eval(&script).unwrap().as_u64().unwrap_or(0)
}

/// The text of the overview's row of source `core`.
fn core_row(browser: &Browser) -> String {
    browser.text("#sources tr[data-source=\"core\"]").unwrap().unwrap_or_default()
}

#[test]
fn test_the_console_needs_the_token_shows_live_progress_and_a_failed_drill() {
    if !tool_or_skip(bk_tests::webdriver::binaries().map(drop)) {
        return;
    }
    let mut sandbox = Sandbox::start_cluster(1, &[("BK_CLIENT_TOKENS", TOKEN)]).unwrap();
    sandbox.set_token(Some(TOKEN));
    let store = register_core_source_of(&sandbox, 2 << 20);
    let worker_metrics = {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        format!("127.0.0.1:{port}")
    };
    // 2 MiB at 128 KiB/s, one object at a time: a backup of over 10 s whose progress (counted
    // as objects finish) steps forward every fraction of a second, instead of every object
    // finishing together at the end when they share the bandwidth.
    let extra = format!(
        "max_bytes_per_second = 131072\nmax_concurrent_objects = 1\nmetrics_listen = \"{worker_metrics}\"\n\
         [drill]\nscratch_dir = \"{}\"\nstart_timeout = \"60s\"\ninfluxdb3_binary = \"{}\"\n\
         influxdb3_args = [\"--stand-in-fail-at-start\"]\n",
        sandbox.path().join("scratch").display(),
        env!("CARGO_BIN_EXE_standin_db"),
    );
    sandbox.start_worker_with("core", "node0", &store, &extra).unwrap();
    let address = sandbox.replica_endpoint(1).to_string();
    let base = format!("http://{address}");

    // The token is required; the static files are not secret.
    let (status, page) = http_get(&address, "/ui", None);
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("Sign in with a client token"), "{page}");
    assert_eq!(http_get(&address, "/ui", Some("not-the-token")).0, 401);
    let (status, page) = http_get(&address, "/ui", Some(TOKEN));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("data-source=\"core\"") && page.contains("content-security-policy"),
        "{page}"
    );
    assert_eq!(http_get(&address, "/ui/assets/console.js", None).0, 200);

    // A browser signs in with the token.
    let browser = Browser::start().unwrap();
    browser.goto(&format!("{base}/ui")).unwrap();
    assert!(browser.text("#login-message").unwrap().is_some(), "no sign-in form");
    browser.type_into("#token", TOKEN).unwrap();
    browser.click("form button[type=submit]").unwrap();
    let row = browser
        .wait_for(Duration::from_secs(10), "the overview's row of `core`", |b| {
            b.text("#sources tr[data-source=\"core\"]")
        })
        .unwrap();
    assert!(row.contains("never drilled") && row.contains("no backup yet"), "{row}");
    // Keyboard first: the first Tab reaches the skip link.
    browser.press("\u{E004}").unwrap();
    let focused = browser.eval("return document.activeElement.textContent;").unwrap();
    assert_eq!(focused, "Skip to content");
    browser.eval("document.activeElement.blur();").unwrap();

    // A backup starts; the open overview shows it and its bytes advance without a reload.
    let job =
        sandbox.bkctl_json(&["submit", "backup", "--source", "core", "--repo", "repo"]).unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    // Watch the open page (it refreshes itself) for as long as it shows the job running:
    // the bytes must advance at least once while it does.
    let mut seen: Vec<u64> = Vec::new();
    browser
        .wait_for(Duration::from_secs(90), "the running backup to leave the page", |b| {
            let done = bytes_done(b, &job_id);
            if done > 0 && seen.last() != Some(&done) {
                seen.push(done);
                if seen.len() == 2 {
                    let bar = b.text(&format!(".job[data-job-id=\"{job_id}\"] .bar"))?;
                    assert!(
                        bar.unwrap_or_default().contains("B/s"),
                        "a running bar shows its rate"
                    );
                    b.screenshot(&screenshots().join("overview-running.png"))?;
                }
            }
            Ok((done == 0 && !seen.is_empty()).then_some(()))
        })
        .unwrap();
    assert!(seen.len() >= 2, "the bytes never advanced on the open page: {seen:?}");
    let watched = sandbox.bkctl(&["-o", "json", "watch", &job_id]).unwrap();
    assert!(watched.status.success(), "{}", String::from_utf8_lossy(&watched.stderr));
    let row = browser
        .wait_for(Duration::from_secs(10), "the backup within the RPO", |b| {
            Ok(Some(core_row(b)).filter(|row| row.contains("within RPO")))
        })
        .unwrap();
    assert!(row.contains("within RPO (1d 1h)"), "{row}");

    // A drill fails (the stand-in is told to fail at start): the overview says so.
    let backup_id =
        sandbox.bkctl_json(&["backups"]).unwrap()[0]["id"].as_str().unwrap().to_string();
    let drill = sandbox.bkctl(&["submit", "drill", "--backup", &backup_id, "--wait"]).unwrap();
    assert!(!drill.status.success(), "the drill was told to fail");
    let row = browser
        .wait_for(Duration::from_secs(10), "the failed drill on the overview", |b| {
            Ok(Some(core_row(b)).filter(|row| row.contains("drill failed")))
        })
        .unwrap();
    assert!(row.contains("told to fail at start"), "the failure is shown: {row}");
    browser.screenshot(&screenshots().join("overview-drill-failed.png")).unwrap();

    // The backup's page puts the failed drill first, with its failure.
    browser
        .click(&format!("#sources tr[data-source=\"core\"] a[href=\"/ui/backups/{backup_id}\"]"))
        .unwrap();
    let drill = browser
        .wait_for(Duration::from_secs(10), "the backup's failed drill", |b| {
            b.text(".drill[data-passed=\"false\"]")
        })
        .unwrap();
    assert!(drill.contains("failed") && drill.contains("told to fail at start"), "{drill}");
    let phases = browser.text("#phases").unwrap().unwrap_or_default();
    assert!(phases.contains("Took"), "{phases}");
    browser.screenshot(&screenshots().join("backup-page.png")).unwrap();

    // The job's page lists its phases and tasks; the cluster page its worker.
    browser.goto(&format!("{base}/ui/jobs/{job_id}")).unwrap();
    let tasks = browser.text("#phase-0-tasks").unwrap().unwrap_or_default();
    assert!(tasks.contains("succeeded") && !tasks.contains("failed"), "{tasks}");
    browser.goto(&format!("{base}/ui/cluster")).unwrap();
    let worker =
        browser.text("#workers tr[data-worker=\"core/node0\"]").unwrap().unwrap_or_default();
    assert!(worker.contains("heard") && worker.contains("128.0 KiB/s"), "{worker}");
    // Status never rests on colour alone: every status carries a word.
    let wordless = browser
        .eval("return Array.from(document.querySelectorAll('.status')).filter(s => !/[a-z]/i.test(s.textContent)).length;")
        .unwrap();
    assert_eq!(wordless, 0);

    // Signing out forgets the token.
    browser.click("header form button").unwrap();
    browser
        .wait_for(Duration::from_secs(10), "the sign-in form after signing out", |b| {
            b.text("#login-message")
        })
        .unwrap();
    browser.goto(&format!("{base}/ui")).unwrap();
    assert!(browser.text("#login-message").unwrap().is_some(), "still signed in after signing out");

    // The series the alert rules and dashboard read are there, with what happened.
    let body = scrape_metrics(&address);
    assert_eq!(
        metric_value(&body, "bk_source_last_drill_passed{source=\"core\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(metric_value(&body, "bk_source_rpo_seconds{source=\"core\"}"), Some(90_000.0));
    assert_eq!(metric_value(&body, "bk_source_last_backup_job_failed{source=\"core\"}"), Some(0.0));
    assert!(
        metric_value(&body, "bk_source_last_backup_timestamp_seconds{source=\"core\"}").unwrap()
            > 1.7e9
    );
    assert!(
        metric_value(&body, "bk_source_last_drill_timestamp_seconds{source=\"core\"}").unwrap()
            > 1.7e9
    );
    let mut exported = exported_names(&body);
    exported.extend(exported_names(&scrape_metrics(&worker_metrics)));
    for file in ["grafana/bk-overview.json", "prometheus/bk-alerts.yml"] {
        let text = std::fs::read_to_string(deploy(file)).unwrap();
        let used = referenced_names(&text);
        assert!(used.len() >= 10, "{file} references only {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} references metrics bk does not export: {unknown:?}");
    }
}

#[test]
fn test_a_console_turned_off_answers_404_saying_how_to_turn_it_on() {
    let sandbox = Sandbox::start_cluster(1, &[("BK_CONSOLE", "false")]).unwrap();
    let (status, page) = http_get(sandbox.replica_endpoint(1), "/ui", None);
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("[console] enabled = true"), "{page}");
}

#[test]
fn test_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool =
        std::env::var_os("BK_PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let found = std::process::Command::new(&promtool).arg("--version").output();
    let found = found.map(drop).map_err(|error| {
        anyhow::anyhow!(
            "{} cannot run ({error}): install Debian's `prometheus` or set BK_PROMTOOL",
            promtool.display()
        )
    });
    if !tool_or_skip(found) {
        return;
    }
    let rules = deploy("prometheus");
    for args in [["check", "rules", "bk-alerts.yml"], ["test", "rules", "bk-alerts.test.yml"]] {
        let output =
            std::process::Command::new(&promtool).args(args).current_dir(&rules).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert of the rules file has a unit test that fires it.
    let rules_text = std::fs::read_to_string(rules.join("bk-alerts.yml")).unwrap();
    let tests_text = std::fs::read_to_string(rules.join("bk-alerts.test.yml")).unwrap();
    for alert in rules_text.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")) {
        let fired = tests_text
            .contains(&format!("alertname: {alert}\n        exp_alerts:\n          - exp_labels"));
        assert!(fired, "no promtool test fires {alert}");
    }
}

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

/// Every series name a metrics body can hold: `# TYPE` families with the suffixes their type
/// adds (`_total` for counters; `_bucket`, `_sum`, `_count` for histograms).
fn exported_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => names.insert(name.to_string()),
        };
    }
    names
}

/// Every `bk_…` metric name in a dashboard or rules file.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(found) = text[index..].find("bk_") {
        let start = index + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
            .map_or(text.len(), |offset| start + offset);
        if boundary {
            names.insert(text[start..end].to_string());
        }
        index = end;
    }
    names
}
