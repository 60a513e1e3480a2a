//! The cron plugin through the runtime: `[schedules.*]` and `Switchyard::schedule` upserted at
//! start and fired by the process's scheduler, the opt-out, instances that declare nothing,
//! the refused definitions, and `switchyard schedules` on the command line.

use std::process::Command;
use std::time::{Duration, Instant};

use switchyard::{
    Config, JobContext, JobFilter, JobState, JobTemplate, Registry, ScheduleDef, Switchyard,
};

fn config_file(dir: &tempfile::TempDir, body: &str) -> Config {
    let path = dir.path().join("switchyard.toml");
    let db = dir.path().join("cron.db");
    std::fs::write(
        &path,
        format!("storage = \"sqlite://{}\"\n{body}", db.display()),
    )
    .unwrap();
    Config::load_from(&path).expect("config")
}

fn registry() -> Registry {
    Registry::new().register_fn("tick", |_p, _ctx: JobContext| async { Ok(None) })
}

async fn completed(sy: &Switchyard, kind: &str) -> usize {
    sy.storage()
        .list(&JobFilter {
            kind: Some(kind.into()),
            states: vec![JobState::Completed],
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .len()
}

/// A schedule from `switchyard.toml` and one from code are stored at start and fire every
/// second on the process's worker; an instance that declares none leaves them in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_schedules_are_stored_and_fired() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        "[schedules.from_file]\nexpr = \"* * * * * *\"\nkind = \"tick\"\npayload = { a = 1 }\n\
         overlap = \"allow\"\ncatch_up = \"all\"\ncatch_up_window = \"10m\"\ncatch_up_max = 5\n",
    );
    let sy = Switchyard::connect(config.clone())
        .await
        .unwrap()
        .schedule(ScheduleDef::new(
            "from_code",
            "@every 1s",
            JobTemplate::new("tick", serde_json::json!({})),
        ))
        .unwrap();
    let running = sy.start(registry()).unwrap();
    let start = Instant::now();
    while completed(&sy, "tick").await < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the schedules did not fire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
    let ids: Vec<String> = sy
        .storage()
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.def.id)
        .collect();
    assert_eq!(ids, ["from_code", "from_file"]);
    // Another instance without schedules (and with the plugin off) removes nothing.
    let mut bare = config;
    bare.schedules.clear();
    bare.cron.enabled = false;
    let other = Switchyard::connect(bare).await.unwrap();
    other.start(registry()).unwrap().stop().await;
    assert_eq!(other.storage().list_schedules().await.unwrap().len(), 2);
}

/// `cron.enabled = false`: the schedules are registered (others fire them) but this process
/// inserts no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        "[cron]\nenabled = false\n[schedules.off]\nexpr = \"* * * * * *\"\nkind = \"tick\"\n",
    );
    let sy = Switchyard::connect(config).await.unwrap();
    let running = sy.start(registry()).unwrap();
    let start = Instant::now();
    while sy.storage().list_schedules().await.unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    running.stop().await;
    let jobs = sy.storage().list(&JobFilter::default()).await.unwrap();
    assert!(jobs.is_empty(), "no scheduler ran: {jobs:?}");
}

/// Bad definitions are refused where they are declared, naming the key or field and what is
/// accepted.
#[tokio::test]
async fn bad_definitions_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (body, needle) in [
        (
            "[schedules.a]\nexpr = \"* * *\"\nkind = \"tick\"\n",
            "`expr`",
        ),
        (
            "[schedules.a]\nexpr = \"* * * * *\"\ntz = \"Nowhere/City\"\nkind = \"tick\"\n",
            "`tz`",
        ),
        (
            "[schedules.a]\nexpr = \"* * * * *\"\nkind = \"tick\"\noverlap = \"never\"\n",
            "schedules.a.overlap",
        ),
        (
            "[schedules.a]\nexpr = \"* * * * *\"\nkind = \"tick\"\ncatch_up = \"some\"\n",
            "schedules.a.catch_up",
        ),
        (
            "[schedules.a]\nexpr = \"* * * * *\"\nkind = \"tick\"\njitter = \"soon\"\n",
            "schedules.a.jitter",
        ),
        (
            "[schedules.a]\nexpr = \"* * * * *\"\nkind = \"tick\"\ncolour = \"red\"\n",
            "colour",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).unwrap();
        let e = Config::load_from(&path).unwrap_err().to_string();
        assert!(e.contains(needle), "{body}: {e}");
    }
    let sy = Switchyard::connect(Config {
        storage: "sqlite::memory:".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let e = sy
        .schedule(
            ScheduleDef::new(
                "x",
                "* * * * *",
                JobTemplate::new("tick", serde_json::json!({})),
            )
            .with_tz("Mars/Base"),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("`tz`") && e.contains("IANA"), "{e}");
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn cli(db: &str, args: &[&str]) -> Run {
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
    Run {
        code: out.status.code().expect("exit code"),
        out: String::from_utf8_lossy(&out.stdout).to_string(),
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `switchyard schedules`: list (text and JSON, with next and last instant and the last job's
/// state), pause (twice: nothing changed), resume, trigger, remove, and a missing id.
#[tokio::test]
async fn schedules_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let sy = Switchyard::connect(Config {
        storage: db.clone(),
        ..Config::default()
    })
    .await
    .unwrap();
    switchyard::cron::register(
        sy.storage().as_ref(),
        &[ScheduleDef::new(
            "nightly",
            "0 3 * * *",
            JobTemplate::new("tick", serde_json::json!({})),
        )
        .with_tz("Europe/Paris")],
    )
    .await
    .unwrap();
    let r = cli(&db, &["schedules"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.contains("nightly") && r.out.contains("Europe/Paris") && r.out.contains("active"),
        "{}",
        r.out
    );
    let r = cli(&db, &["--json", "schedules", "list"]);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    let v = &v[0];
    assert_eq!(v["id"], "nightly");
    assert_eq!(v["paused"], false);
    assert!(v["next"].is_string() && v["last_job"].is_null(), "{v}");
    let r = cli(&db, &["--json", "schedules", "pause", "nightly"]);
    assert_eq!(
        (r.code, r.out.trim()),
        (0, r#"{"id":"nightly","outcome":"paused"}"#)
    );
    let r = cli(&db, &["schedules", "pause", "nightly"]);
    assert_eq!(r.code, 1, "nothing changed: {}", r.out);
    let r = cli(&db, &["schedules", "resume", "nightly"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = cli(&db, &["--json", "schedules", "trigger", "nightly"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    assert_eq!(v["outcome"], "triggered");
    let r = cli(&db, &["--json", "schedules"]);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    let v = &v[0];
    assert_eq!(v["last_job_state"], "available", "{v}");
    assert!(v["last_fired"].is_string());
    let r = cli(&db, &["schedules", "remove", "nightly"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = cli(&db, &["schedules", "remove", "nightly"]);
    assert_eq!(
        r.code,
        i32::from(switchyard::cli::exit::NOT_FOUND),
        "{}",
        r.err
    );
    assert!(r.err.contains("nightly"), "{}", r.err);
}

/// A log writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// CR7: an instance whose definition differs from the stored one replaces it and logs the
/// named warning `schedule_definition_conflict` with both definitions; the same definition
/// logs nothing.
#[tokio::test]
async fn a_differing_definition_is_a_named_warning() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let sy = Switchyard::connect(Config {
        storage: "sqlite::memory:".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let a = ScheduleDef::new(
        "report",
        "0 9 * * *",
        JobTemplate::new("tick", serde_json::json!({})),
    );
    let b = a.clone().with_tz("Europe/Paris");
    let st = sy.storage().as_ref();
    switchyard::cron::register(st, std::slice::from_ref(&a))
        .await
        .unwrap();
    switchyard::cron::register(st, std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&log.0.lock().unwrap()).contains("schedule_definition_conflict"),
        "the same definition is no conflict"
    );
    switchyard::cron::register(st, std::slice::from_ref(&b))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    assert!(
        text.contains("WARN")
            && text.contains("schedule_definition_conflict")
            && text.contains("Europe/Paris"),
        "{text}"
    );
    let stored = st.get_schedule("report").await.unwrap().unwrap();
    assert_eq!(stored.def, b, "the declared definition wins");
}
