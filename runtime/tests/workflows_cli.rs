//! `switchyard workflows list|show|cancel|retry` through the binary, on a SQLite file: text
//! and `--json` output, exit codes for a missing workflow, a bad id and a change that changed
//! nothing.

use std::process::Command;

use serde_json::{json, Value};
use switchyard::cli::exit;
use switchyard::{Config, NewJob, Switchyard, WorkflowDef, WorkflowStep};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_list_show_cancel_retry() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/wf.db", dir.path().display());
    let (code, _, err) = run(&db, &["migrate"]);
    assert_eq!(code, exit::OK, "{err}");
    let sy = Switchyard::connect_existing(Config {
        storage: db.clone(),
        ..Config::default()
    })
    .await
    .unwrap();
    let job = |k: &str| NewJob::new(k, json!({}));
    let def = WorkflowDef::new("nightly")
        .step(WorkflowStep::new("fetch", job("fetch")))
        .step(WorkflowStep::new("load", job("load")).after(["fetch"]));
    let id = sy.client().enqueue_workflow(def).await.unwrap().to_string();

    let (code, out, err) = run(&db, &["workflows", "list"]);
    assert_eq!(code, exit::OK, "{err}");
    assert!(
        out.contains(&id) && out.contains("nightly") && out.contains("running"),
        "{out}"
    );

    let (code, out, _) = run(&db, &["workflows", "show", &id]);
    assert_eq!(code, exit::OK);
    assert!(out.contains("[available] fetch"), "{out}");
    assert!(out.contains("[blocked] load (load, job"), "{out}");
    assert!(out.contains("<- fetch"), "{out}");

    let (code, out, _) = run(&db, &["--json", "workflows", "show", &id]);
    assert_eq!(code, exit::OK);
    let v: Value = serde_json::from_str(&out).expect("one JSON value");
    assert_eq!(v["name"], "nightly");
    assert_eq!(v["steps"][1]["state"], "blocked");

    let (code, out, _) = run(&db, &["--json", "workflows", "cancel", &id]);
    assert_eq!(code, exit::OK, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cancelled"], 2);
    let (code, _, _) = run(&db, &["workflows", "cancel", &id]);
    assert_eq!(
        code,
        exit::NOTHING_CHANGED,
        "a second cancel changes nothing"
    );
    let (code, out, _) = run(&db, &["--json", "workflows", "list"]);
    assert_eq!(code, exit::OK);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "cancelled");

    let (code, out, _) = run(&db, &["workflows", "retry", &id]);
    assert_eq!(code, exit::OK);
    assert!(out.contains("2 step(s) run again"), "{out}");
    let (_, out, _) = run(&db, &["workflows", "show", &id]);
    assert!(
        out.contains("[available] fetch") && out.contains("[blocked] load"),
        "{out}"
    );
    // `list --state blocked` of the jobs finds the blocked step.
    let (code, out, err) = run(&db, &["list", "--state", "blocked"]);
    assert_eq!(code, exit::OK, "{err}");
    assert!(out.contains("load"), "{out}");

    let missing = uuid::Uuid::now_v7().to_string();
    let (code, _, err) = run(&db, &["workflows", "show", &missing]);
    assert_eq!(code, exit::code(switchyard::ErrorKind::NotFound), "{err}");
    assert!(err.contains("no workflow with id"), "{err}");
    let (code, _, err) = run(&db, &["workflows", "cancel", "nope"]);
    assert_eq!(
        code,
        exit::code(switchyard::ErrorKind::InvalidInput),
        "{err}"
    );
    assert!(err.contains("not a workflow id"), "{err}");
    let (code, _, err) = run(&db, &["workflows", "list", "--limit", "0"]);
    assert_eq!(
        code,
        exit::code(switchyard::ErrorKind::InvalidInput),
        "{err}"
    );
}
