//! Flow control through the `switchyard` binary: `queues pause | resume` store the pause and
//! `queues --json` shows it; `bulk cancel | retry` act by filter with a dry run and a bound;
//! bad input is refused with its exit code.

use std::process::Command;

use switchyard::cli::exit;

/// One run of the binary on `db`: exit code, stdout, stderr.
fn run(db: &str, args: &[&str]) -> (u8, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--storage")
        .arg(db)
        .current_dir(dir.path())
        .env_remove("SWITCHYARD_STORAGE")
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_PREFIX")
        .output()
        .expect("run switchyard");
    (
        out.status.code().expect("exit code") as u8,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json(db: &str, args: &[&str], code: u8) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (c, out, err) = run(db, &all);
    assert_eq!(c, code, "{args:?}: {out} {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out} {err}"))
}

#[test]
fn pause_resume_and_bulk_actions() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/flow.db", dir.path().display());
    json(&db, &["migrate"], exit::OK);
    for _ in 0..3 {
        json(&db, &["enqueue", "k", "{}", "--on", "mail"], exit::OK);
    }

    let p = json(&db, &["queues", "pause", "mail"], exit::OK);
    assert_eq!(
        (p["paused"].as_bool(), p["changed"].as_bool()),
        (Some(true), Some(true))
    );
    let again = json(&db, &["queues", "pause", "mail"], exit::NOTHING_CHANGED);
    assert_eq!(again["changed"], false);
    // A paused queue without jobs is listed too.
    json(&db, &["queues", "pause", "empty"], exit::OK);
    let q = json(&db, &["queues"], exit::OK);
    let rows = q.as_array().unwrap();
    let mail = rows
        .iter()
        .find(|r| r["queue"] == "mail")
        .expect("mail listed");
    assert_eq!(
        (
            mail["paused"].as_bool(),
            mail["counts"]["available"].as_u64()
        ),
        (Some(true), Some(3))
    );
    let empty = rows
        .iter()
        .find(|r| r["queue"] == "empty")
        .expect("empty listed");
    assert_eq!(empty["paused"], true);
    let (c, out, _) = run(&db, &["queues"]);
    assert_eq!(c, exit::OK);
    assert!(
        out.lines()
            .any(|l| l.starts_with("mail") && l.ends_with("paused")),
        "{out}"
    );
    json(&db, &["queues", "resume", "mail"], exit::OK);
    let q = json(&db, &["queues"], exit::OK);
    let mail = q
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["queue"] == "mail")
        .cloned()
        .unwrap();
    assert_eq!(mail["paused"], false);

    let dry = json(
        &db,
        &[
            "bulk",
            "cancel",
            "--on",
            "mail",
            "--bound",
            "2",
            "--dry-run",
        ],
        exit::OK,
    );
    assert_eq!(dry["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        (dry["truncated"].as_bool(), dry["changed"].as_u64()),
        (Some(true), Some(0))
    );
    let done = json(&db, &["bulk", "cancel", "--on", "mail"], exit::OK);
    assert_eq!(done["changed"], 3);
    let none = json(
        &db,
        &["bulk", "cancel", "--on", "mail"],
        exit::NOTHING_CHANGED,
    );
    assert_eq!(none["ids"].as_array().unwrap().len(), 0);
    let back = json(
        &db,
        &["bulk", "retry", "--on", "mail", "--kind", "k"],
        exit::OK,
    );
    assert_eq!(back["changed"], 3);

    let l = json(
        &db,
        &[
            "queues",
            "limit",
            "mail",
            "--concurrency",
            "4",
            "--rate",
            "100/1s",
            "--partition",
            "kind",
        ],
        exit::OK,
    );
    assert_eq!(l["concurrency"], 4);
    assert_eq!(l["rate"]["limit"], 100);
    assert_eq!(l["rate"]["period_ms"], 1000);
    assert_eq!(l["partition"], "kind");
    json(
        &db,
        &["queues", "limit", "mail", "--concurrency", "4"],
        exit::NOTHING_CHANGED,
    );
    let q = json(&db, &["queues"], exit::OK);
    let mail = q
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["queue"] == "mail")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            mail["concurrency"].as_u64(),
            mail["rate"]["period_ms"].as_u64()
        ),
        (Some(4), Some(1000))
    );
    let (_, out, _) = run(&db, &["queues"]);
    assert!(out.contains("conc=4 rate=100/1000ms by kind"), "{out}");
    let l = json(
        &db,
        &[
            "queues",
            "limit",
            "mail",
            "--concurrency",
            "none",
            "--rate",
            "5/250ms",
        ],
        exit::OK,
    );
    assert_eq!(
        (l["concurrency"].is_null(), l["rate"]["period_ms"].as_u64()),
        (true, Some(250))
    );
    for (flag, value, says) in [
        ("--concurrency", "0", "give 1 or more"),
        ("--rate", "fast", "N/PERIOD"),
        ("--rate", "0/1s", "out of range"),
        ("--partition", "tenant", "accepted: none, kind"),
    ] {
        let (c, _, err) = run(&db, &["queues", "limit", "mail", flag, value]);
        assert_eq!(c, exit::INVALID_INPUT, "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }

    let (c, _, err) = run(&db, &["bulk", "cancel", "--bound", "0"]);
    assert_eq!(c, exit::INVALID_INPUT, "{err}");
    assert!(
        err.contains("--bound") && err.contains("1 to 100000"),
        "{err}"
    );
    let (c, _, err) = run(&db, &["bulk", "cancel", "--state", "completed"]);
    assert_eq!(c, exit::INVALID_INPUT, "{err}");
    assert!(err.contains("accepted states"), "{err}");
}
