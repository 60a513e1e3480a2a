//! The `switchyard` binary end to end: enqueue → a worker → status shows `completed`, list
//! finds the job; bad input is refused with a clear message.

use std::process::Command;
use std::time::Duration;

use switchyard::{Config, JobState, Registry, Switchyard};

fn switchyard(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--storage")
        .arg(db)
        .env_remove("SWITCHYARD_STORAGE")
        .output()
        .expect("run switchyard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_work_status_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cli.db", dir.path().display());

    let (ok, out, err) = switchyard(&db, &["migrate"]);
    assert!(ok, "migrate failed: {err}");
    let (ok, out2, err) = switchyard(&db, &["enqueue", "greet", r#"{"name":"cli"}"#]);
    assert!(ok, "enqueue failed: {err} {out}");
    let id = out2.trim().to_string();
    assert_eq!(id.len(), 36, "prints the job id: {out2}");

    let (ok, out, _) = switchyard(&db, &["status", &id]);
    assert!(ok && out.contains("\"available\""), "{out}");

    // A worker built from the library runs it.
    let mut config = Config {
        storage: db.clone(),
        ..Config::default()
    };
    config.worker.poll_interval_ms = 50;
    let sy = Switchyard::connect(config).await.unwrap();
    let registry = Registry::new().register_fn("greet", |payload, _| async move {
        Ok(Some(serde_json::json!(format!(
            "hi {}",
            payload["name"].as_str().unwrap_or("?")
        ))))
    });
    let running = sy.start(registry).unwrap();
    let job_id: uuid::Uuid = id.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let j = sy.client().get(job_id).await.unwrap().unwrap();
        if j.state == JobState::Completed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job stuck in {}",
            j.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;

    let (ok, out, _) = switchyard(&db, &["status", &id]);
    assert!(
        ok && out.contains("\"completed\"") && out.contains("hi cli"),
        "{out}"
    );
    let (ok, out, _) = switchyard(&db, &["list", "--state", "completed"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out, _) = switchyard(&db, &["list", "--state", "failed"]);
    assert!(ok && !out.contains(&id), "{out}");
    let (ok, out, _) = switchyard(&db, &["queues"]);
    assert!(ok && out.contains("default"), "{out}");
    let (ok, out, _) = switchyard(&db, &["cancel", &id]);
    assert!(ok && out.contains("already finished"), "{out}");
    let (ok, out, _) = switchyard(&db, &["retry", &id]);
    assert!(ok && out.contains("available again"), "{out}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bad.db", dir.path().display());
    let (ok, _, err) = switchyard(&db, &["enqueue", "greet", "{not json"]);
    assert!(!ok && err.contains("not valid JSON"), "{err}");
    let (ok, _, err) = switchyard(&db, &["status", "not-a-uuid"]);
    assert!(!ok && err.contains("not a job id"), "{err}");
    let (ok, _, err) = switchyard(&db, &["status", "01a20222-14d7-769e-9d45-675474079df2"]);
    assert!(!ok && err.contains("no job"), "{err}");
    let (ok, _, err) = switchyard(&db, &["list", "--state", "sleeping"]);
    assert!(
        !ok && err.contains("unknown job state") && err.contains("completed"),
        "{err}"
    );
    let (ok, _, err) = switchyard("mysql://x", &["list"]);
    assert!(
        !ok && err.contains("key `storage`") && err.contains("sqlite://"),
        "{err}"
    );
    let (ok, _, err) = switchyard(&db, &["worker"]);
    assert!(!ok && err.contains("main_with"), "{err}");
    let big = dir.path().join("big.json");
    std::fs::write(
        &big,
        format!("{{\"blob\":\"{}\"}}", "x".repeat(1024 * 1024 + 10)),
    )
    .unwrap();
    let arg = format!("@{}", big.display());
    let (ok, _, err) = switchyard(&db, &["enqueue", "greet", &arg]);
    assert!(
        !ok && err.contains("payload too large") && err.contains("1048576"),
        "{err}"
    );
    let (ok, out, _) = switchyard(&db, &["list"]);
    assert!(ok && out.lines().count() == 1, "nothing was stored: {out}");
}

/// Durations on the command line that are not numbers of seconds from 0 to 1e12 (negative,
/// infinite, not a number, or so large that the date overflows) are refused, naming the flag,
/// instead of enqueueing a job that runs at once, panicking, or pruning every finished job.
#[test]
fn bad_durations_on_the_command_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cli-durations.db", dir.path().display());
    let (ok, _, err) = switchyard(&db, &["migrate"]);
    assert!(ok, "{err}");
    for (flag, args) in [
        ("--delay", vec!["enqueue", "k", "{}", "--delay", "inf"]),
        ("--delay", vec!["enqueue", "k", "{}", "--delay", "1e16"]),
        ("--delay", vec!["enqueue", "k", "{}", "--delay=-5"]),
        ("--timeout", vec!["enqueue", "k", "{}", "--timeout", "NaN"]),
        ("--older-than", vec!["prune", "--older-than", "1e16"]),
    ] {
        let (ok, out, err) = switchyard(&db, &args);
        assert!(!ok, "{args:?} was accepted: {out}");
        assert!(
            err.contains(&format!("flag `{flag}`")) && err.contains("from 0 to 1e12"),
            "{args:?}: {err}"
        );
    }
    let (ok, out, _) = switchyard(&db, &["list"]);
    assert!(ok && !out.contains(" k "), "no job was stored: {out}");
}
