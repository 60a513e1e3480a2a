//! The `switchyard` binary end to end: enqueue → a worker → status shows `completed`, list
//! finds the job; bad input is refused with a clear message.

use std::process::Command;
use std::time::Duration;

use switchyard::cli::exit;
use switchyard::{Config, JobState, Registry, Switchyard};

/// One run of the binary: its exit code, stdout and stderr.
#[derive(Debug)]
struct Run {
    code: u8,
    out: String,
    err: String,
}

/// Runs the `switchyard` binary with `args` and `--storage db`, no configuration file or
/// `SWITCHYARD_*` settings of the caller's.
fn run(db: &str, args: &[&str]) -> Run {
    run_env(db, args, &[])
}

fn run_env(db: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .arg("--storage")
        .arg(db)
        .current_dir(dir.path())
        .env_remove("SWITCHYARD_STORAGE")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_PREFIX");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run switchyard");
    Run {
        code: out
            .status
            .code()
            .map(|c| c as u8)
            .unwrap_or_else(|| panic!("killed by a signal: {out:?}")),
        out: String::from_utf8_lossy(&out.stdout).to_string(),
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

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
    assert!(ok && out.contains("state:        available"), "{out}");

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
        ok && out.contains("state:        completed") && out.contains("hi cli"),
        "{out}"
    );
    let (ok, out, _) = switchyard(&db, &["list", "--state", "completed"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out, _) = switchyard(&db, &["list", "--state", "failed"]);
    assert!(ok && !out.contains(&id), "{out}");
    let (ok, out, _) = switchyard(&db, &["queues"]);
    assert!(ok && out.contains("default"), "{out}");
    // "Nothing changed" has its own exit code.
    let r = run(&db, &["cancel", &id]);
    assert_eq!(r.code, exit::NOTHING_CHANGED, "{r:?}");
    assert!(r.out.contains("already finished"), "{r:?}");
    let (ok, out, _) = switchyard(&db, &["retry", &id]);
    assert!(ok && out.contains("available again"), "{out}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bad.db", dir.path().display());
    let (ok, _, err) = switchyard(&db, &["migrate"]);
    assert!(ok, "{err}");
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
        assert!(err.contains("15m"), "{args:?}: {err}");
    }
    let (ok, out, _) = switchyard(&db, &["list"]);
    assert!(ok && !out.contains(" k "), "no job was stored: {out}");
}

fn sqlite(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}/{name}.db", dir.path().display())
}

/// Every failure class has its own exit code (the table in README.md and docs/cli.md), so a
/// script can tell them apart by the code alone.
#[test]
fn exit_codes_tell_failure_classes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "codes");
    assert_eq!(run(&db, &["migrate"]).code, exit::OK);

    // Usage: clap's errors, and `worker` in the stock binary.
    for args in [
        &["frobnicate"][..],
        &["list", "--sate", "failed"],
        &["enqueue"],
        &["worker"],
    ] {
        let r = run(&db, args);
        assert_eq!(r.code, exit::USAGE, "{args:?}: {r:?}");
    }
    // `--help` is not a failure.
    assert_eq!(run(&db, &["--help"]).code, exit::OK);

    // Configuration: an unknown key in the file, a bad storage URL, a missing file.
    let toml = dir.path().join("switchyard.toml");
    std::fs::write(&toml, "[worker]\nconcurency = 4\n").unwrap();
    let r = run(&db, &["list", "--config", toml.to_str().unwrap()]);
    assert_eq!(r.code, exit::CONFIG, "{r:?}");
    assert!(
        r.err.contains("did you mean `worker.concurrency`?"),
        "{r:?}"
    );
    assert_eq!(run("mysql://x", &["list"]).code, exit::CONFIG);
    assert_eq!(
        run(&db, &["list", "--config", "nope.toml"]).code,
        exit::CONFIG
    );
    let r = run_env(&db, &["list"], &[("SWITCHYARD_WORKER__CONCURENCY", "3")]);
    assert_eq!(r.code, exit::CONFIG, "{r:?}");
    assert!(r.err.contains("SWITCHYARD_WORKER__CONCURRENCY"), "{r:?}");

    // Invalid input: a bad id, payload, state, duration, limit.
    for args in [
        &["status", "not-a-uuid"][..],
        &["enqueue", "k", "{not json"],
        &["list", "--state", "sleeping"],
        &["enqueue", "k", "{}", "--delay", "soon"],
        &["list", "--limit", "5000"],
        &["enqueue", "k", "{}", "--max-attempts", "0"],
        &["enqueue", "", "{}"],
    ] {
        let r = run(&db, args);
        assert_eq!(r.code, exit::INVALID_INPUT, "{args:?}: {r:?}");
    }

    // Not found.
    let missing = "01a232df-0000-7000-8000-000000000000";
    for cmd in ["status", "cancel", "retry"] {
        let r = run(&db, &[cmd, missing]);
        assert_eq!(r.code, exit::NOT_FOUND, "{cmd}: {r:?}");
        assert!(r.err.contains("no job with id"), "{r:?}");
    }

    // Not found: a SQLite file that does not exist (commands other than `migrate` create
    // nothing), and a prefix without a schema.
    let nowhere = format!("sqlite://{}/no/such/dir/x.db", dir.path().display());
    let r = run(&nowhere, &["list"]);
    assert_eq!(r.code, exit::NOT_FOUND, "{r:?}");
    let r = run(&db, &["list", "--prefix", "typo_"]);
    assert_eq!(r.code, exit::NOT_FOUND, "{r:?}");
    assert!(
        r.err.contains("no Switchyard schema under prefix `typo_`"),
        "{r:?}"
    );

    // Unavailable: `migrate` of a SQLite file in a directory that does not exist (at once).
    let r = run(&nowhere, &["migrate"]);
    assert_eq!(r.code, exit::UNAVAILABLE, "{r:?}");

    // Nothing changed: cancel of a finished job, retry of a live one.
    let id = run(&db, &["enqueue", "k", "{}"]).out.trim().to_string();
    let r = run(&db, &["retry", &id]);
    assert_eq!(r.code, exit::NOTHING_CHANGED, "{r:?}");
    assert_eq!(run(&db, &["cancel", &id]).code, exit::OK);
    let r = run(&db, &["cancel", &id]);
    assert_eq!(r.code, exit::NOTHING_CHANGED, "{r:?}");
    assert_eq!(run(&db, &["retry", &id]).code, exit::OK);

    // The codes are distinct.
    let mut codes = vec![
        exit::OK,
        exit::NOTHING_CHANGED,
        exit::USAGE,
        exit::INVALID_INPUT,
        exit::NOT_FOUND,
        exit::UNAVAILABLE,
        exit::INTERNAL,
        exit::UNSUPPORTED,
        exit::CONFIG,
    ];
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 9);
}

/// A broker that refuses connections is "unavailable" (exit 69), at once. (PostgreSQL and
/// Redis on a closed port give the same code, but only after their connect retries, 10 s
/// and more, so they are not run here.)
#[cfg(feature = "rabbitmq")]
#[test]
fn refused_connections_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "refused");
    assert_eq!(run(&db, &["migrate"]).code, exit::OK);
    let r = run(
        &db,
        &["list", "--queue", "amqp://guest:guest@127.0.0.1:1/%2f"],
    );
    assert_eq!(r.code, exit::UNAVAILABLE, "{r:?}");
    assert!(r.err.contains("backend unavailable"), "{r:?}");
}

/// With `--json`, every command prints JSON on stdout, and an error is one JSON line on
/// stderr with its kind and exit code.
#[test]
fn json_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "json");
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = run(&db, &all);
        assert!(
            r.code == exit::OK || r.code == exit::NOTHING_CHANGED,
            "{args:?}: {r:?}"
        );
        serde_json::from_str(r.out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {r:?}"))
    };
    assert_eq!(json(&["migrate"])["migrated"], "sqlite");

    let first = json(&["enqueue", "k", "{\"n\":1}", "--unique-key", "u1"]);
    assert_eq!(first["duplicate"], false);
    let id = first["id"].as_str().unwrap().to_string();
    let again = json(&["enqueue", "k", "{\"n\":1}", "--unique-key", "u1"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], id.as_str());
    let second = json(&["enqueue", "k", "{}"])["id"]
        .as_str()
        .unwrap()
        .to_string();

    let status = json(&["status", &id]);
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "available");
    assert_eq!(status["payload"]["n"], 1);

    // `list --json`: one object with the jobs and the next page's cursor.
    let page = json(&["list", "--limit", "1"]);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], second.as_str());
    assert_eq!(page["next_after"], second.as_str());
    let rest = json(&["list", "--limit", "1", "--after", &second]);
    assert_eq!(rest["jobs"][0]["id"], id.as_str());
    assert!(rest["next_after"].is_null(), "{rest}");
    let all = json(&["list", "--limit", "2"]);
    assert!(all["next_after"].is_null(), "exactly one full page: {all}");

    let c = json(&["cancel", &id]);
    assert_eq!(
        (c["outcome"].as_str(), c["changed"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    let c = json(&["cancel", &id]);
    assert_eq!(c["outcome"], "already_finished");
    assert_eq!(
        (c["changed"].as_bool(), c["state"].as_str()),
        (Some(false), Some("cancelled"))
    );
    assert_eq!(json(&["retry", &id])["outcome"], "requeued");
    let r = json(&["retry", &id]);
    assert_eq!(
        (r["outcome"].as_str(), r["state"].as_str()),
        (Some("not_finished"), Some("available"))
    );

    assert_eq!(json(&["prune", "--older-than", "7d"])["deleted"], 0);
    let queues = json(&["queues"]);
    assert_eq!(queues[0]["queue"], "default");
    assert_eq!(queues[0]["counts"]["available"], 2);
    assert_eq!(queues[0]["counts"]["failed"], 0);
    let doctor = json(&["doctor"]);
    assert_eq!(doctor["ok"], true, "{doctor}");
    let checks = doctor["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "schema" && c["status"] == "ok"),
        "{doctor}"
    );

    let r = run(
        &db,
        &["status", "01a232df-0000-7000-8000-000000000000", "--json"],
    );
    assert_eq!(r.code, exit::NOT_FOUND);
    let e: serde_json::Value = serde_json::from_str(r.err.trim()).expect("one JSON line");
    assert_eq!(e["error"]["kind"], "not_found");
    let u = run(&db, &["list", "--sate", "failed", "--json"]);
    assert_eq!(u.code, exit::USAGE, "{u:?}");
    let u: serde_json::Value = serde_json::from_str(u.err.trim()).expect("one JSON line");
    assert_eq!(u["error"]["kind"], "usage");
    assert!(
        u["error"]["message"].as_str().unwrap().contains("--sate"),
        "{u}"
    );
    assert_eq!(e["error"]["exit_code"], exit::NOT_FOUND);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no job with id"));
}

/// `status` without `--json` is for a person: labelled lines. `list`'s columns line up
/// whatever the state's length.
#[test]
fn human_status_and_aligned_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "human");
    assert_eq!(run(&db, &["migrate"]).code, exit::OK);
    let a = run(&db, &["enqueue", "greet", "{\"x\":1}"])
        .out
        .trim()
        .to_string();
    let b = run(&db, &["enqueue", "greet", "{}", "--delay", "1h"])
        .out
        .trim()
        .to_string();
    assert_eq!(run(&db, &["cancel", &a]).code, exit::OK);
    let r = run(&db, &["status", &a]);
    assert_eq!(r.code, exit::OK, "{r:?}");
    for want in [
        format!("id:           {a}"),
        "state:        cancelled".to_string(),
        "kind:         greet".to_string(),
        "payload:      {\"x\":1}".to_string(),
    ] {
        assert!(r.out.lines().any(|l| l == want), "no `{want}` in {r:?}");
    }
    let r = run(&db, &["list"]);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(
        lines[1].contains(&b) && lines[1].contains("scheduled"),
        "{r:?}"
    );
    assert!(
        lines[2].contains(&a) && lines[2].contains("cancelled"),
        "{r:?}"
    );
    let col = |l: &str, w: &str| l.find(w).unwrap_or_else(|| panic!("{w} in {l}"));
    assert_eq!(col(lines[1], "default"), col(lines[2], "default"), "{r:?}");
    assert_eq!(col(lines[0], "queue"), col(lines[1], "default"), "{r:?}");
}

/// `switchyard list | head -1`: when the reader closes the pipe, the command ends with 0 and
/// prints no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "pipe");
    // More output than a pipe buffers (64 KiB), so writing must fail once the reader is gone.
    let sy = Switchyard::connect(Config {
        storage: db.clone(),
        ..Config::default()
    })
    .await
    .unwrap();
    let jobs = (0..1000)
        .map(|i| switchyard::NewJob::new("k", serde_json::json!({ "i": i })))
        .collect();
    sy.client().enqueue_raw(jobs).await.unwrap();
    for args in [
        &["list", "--limit", "1000"][..],
        &["list", "--limit", "1000", "--json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--storage")
            .arg(&db)
            .env_remove("SWITCHYARD_STORAGE")
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
}

/// Logs on a stderr that is not a terminal carry no ANSI colour codes.
#[test]
fn no_colour_codes_in_piped_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "ansi");
    assert_eq!(run(&db, &["migrate"]).code, exit::OK);
    let r = run_env(&db, &["list"], &[("RUST_LOG", "trace")]);
    assert_eq!(r.code, exit::OK, "{r:?}");
    assert!(
        r.err.contains("TRACE") || r.err.contains("DEBUG"),
        "logs were written: {r:?}"
    );
    assert!(!r.err.contains('\x1b'), "{r:?}");
}

/// Durations take humantime forms (`90s`, `15m`, `7d`) or seconds; `--delay -5` (a separate
/// argument) is an error about the negative value, not a flag; `--timeout 0` is refused.
#[test]
fn human_durations_and_negative_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "durations");
    assert_eq!(run(&db, &["migrate"]).code, exit::OK);
    let get = |id: &str| -> serde_json::Value {
        serde_json::from_str(&run(&db, &["status", id, "--json"]).out).unwrap()
    };
    let secs_between = |job: &serde_json::Value| {
        let t = |k: &str| {
            chrono::DateTime::parse_from_rfc3339(job[k].as_str().unwrap())
                .unwrap()
                .timestamp()
        };
        t("run_at") - t("created_at")
    };
    for (delay, secs) in [
        ("90s", 90),
        ("15m", 900),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("120", 120),
    ] {
        let r = run(
            &db,
            &["enqueue", "k", "{}", "--delay", delay, "--timeout", "2m"],
        );
        assert_eq!(r.code, exit::OK, "{delay}: {r:?}");
        let job = get(r.out.trim());
        assert!((secs_between(&job) - secs).abs() <= 1, "{delay}: {job}");
        assert_eq!(job["timeout_ms"], 120_000);
    }
    let r = run(&db, &["prune", "--older-than", "7d"]);
    assert_eq!(r.code, exit::OK, "{r:?}");
    for (flag, args) in [
        ("--delay", &["enqueue", "k", "{}", "--delay", "-5"][..]),
        ("--delay", &["enqueue", "k", "{}", "--delay", "-5m"]),
        ("--older-than", &["prune", "--older-than", "-1"]),
    ] {
        let r = run(&db, args);
        assert_eq!(r.code, exit::INVALID_INPUT, "{args:?}: {r:?}");
        assert!(
            r.err.contains(&format!("flag `{flag}`"))
                && r.err.contains("negative durations are not accepted"),
            "{args:?}: {r:?}"
        );
    }
    let r = run(&db, &["enqueue", "k", "{}", "--timeout", "0"]);
    assert_eq!(r.code, exit::INVALID_INPUT, "{r:?}");
    assert!(
        r.err.contains("flag `--timeout`") && r.err.contains("no per-attempt timeout"),
        "{r:?}"
    );
    let r = run(&db, &["list", "--limit", "-5"]);
    assert_eq!(r.code, exit::INVALID_INPUT, "{r:?}");
    assert!(
        r.err.contains("flag `--limit`") && r.err.contains("1 to 1000"),
        "{r:?}"
    );
}

/// `--prefix` is the `prefix` key, above the environment.
#[test]
fn prefix_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "prefix");
    for p in ["one_", "two_"] {
        assert_eq!(run(&db, &["migrate", "--prefix", p]).code, exit::OK);
    }
    let id = run(&db, &["enqueue", "k", "{}", "--prefix", "one_"])
        .out
        .trim()
        .to_string();
    let r = run(&db, &["list", "--prefix", "one_"]);
    assert!(r.out.contains(&id), "{r:?}");
    let r = run_env(
        &db,
        &["list", "--prefix", "two_"],
        &[("SWITCHYARD_PREFIX", "one_")],
    );
    assert_eq!(r.code, exit::OK, "{r:?}");
    assert!(
        !r.out.contains(&id),
        "the flag wins over the environment: {r:?}"
    );
    let r = run_env(&db, &["list"], &[("SWITCHYARD_PREFIX", "one_")]);
    assert!(r.out.contains(&id), "{r:?}");
    let r = run(&db, &["list", "--prefix", "my-app"]);
    assert_eq!(r.code, exit::CONFIG, "{r:?}");
    assert!(r.err.contains("key `prefix`"), "{r:?}");
}

/// `switchyard completions <shell>` prints a script without touching any backend.
#[test]
fn shell_completions() {
    let nowhere = "sqlite:///no/such/dir/x.db";
    for (shell, marker) in [
        ("bash", "_switchyard()"),
        ("zsh", "#compdef switchyard"),
        ("fish", "complete -c switchyard"),
    ] {
        let r = run(nowhere, &["completions", shell]);
        assert_eq!(r.code, exit::OK, "{shell}: {r:?}");
        assert!(
            r.out.contains(marker) && r.out.contains("enqueue"),
            "{shell}: {}",
            r.out
        );
    }
    assert_eq!(run(nowhere, &["completions", "cmd"]).code, exit::USAGE);
}

/// A binary built with `main_with(Some(registry))` refuses to enqueue a kind it has no
/// handler for (its workers would fail the job as `unknown_kind`), naming the registered
/// kinds, unless `--allow-unknown-kind` is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_refuses_unknown_kinds_at_enqueue() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir, "kinds");
    let registry = || {
        Registry::new()
            .register_fn("greet", |_, _| async { Ok(None) })
            .register_fn("send_email", |_, _| async { Ok(None) })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["my-app", "--storage", db.as_str(), "enqueue"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    let cli = switchyard::cli::Cli::try_parse_from(args(&["no_such_kind", "{}"])).unwrap();
    let err = switchyard::cli::run(cli, Some(registry()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), switchyard::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(
        msg.contains("`no_such_kind`")
            && msg.contains("registered: `greet`, `send_email`")
            && msg.contains("--allow-unknown-kind"),
        "{msg}"
    );
    let code = switchyard::cli::main_from(args(&["no_such_kind", "{}"]), Some(registry())).await;
    assert_eq!(code, std::process::ExitCode::from(exit::INVALID_INPUT));

    let sy = Switchyard::connect(Config {
        storage: db.clone(),
        ..Config::default()
    })
    .await
    .unwrap();
    let stored = sy.client().list(&Default::default()).await.unwrap();
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");

    let code = switchyard::cli::main_from(args(&["greet", "{}"]), Some(registry())).await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let code = switchyard::cli::main_from(
        args(&["no_such_kind", "{}", "--allow-unknown-kind"]),
        Some(registry()),
    )
    .await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let mut kinds: Vec<String> = sy
        .client()
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.kind)
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["greet", "no_such_kind"]);

    // The stock binary (no registry) enqueues any kind.
    let r = run(&db, &["enqueue", "anything", "{}"]);
    assert_eq!(r.code, exit::OK, "{r:?}");
}
