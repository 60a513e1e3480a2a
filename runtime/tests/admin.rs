//! The instance commands of the `switchyard` binary, end to end on the real servers: read-only
//! commands never create anything (checked in the database and in Redis directly) and say
//! that a prefix has no schema; `migrate --dry-run` prints the SQL and creates nothing;
//! `migrate` says what it applied; `destroy` asks (or takes `--yes`) and removes tables, keys
//! and broker queues; `doctor` is a checklist that never prints a password and reports a
//! refused connection as refused.

use std::process::{Command, Stdio};

use sqlx::Connection;

/// Runs the binary with `args`, the instance prefix `prefix` and standard input closed.
/// Returns (success, stdout, stderr).
fn run(storage: &str, prefix: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--storage")
        .arg(storage)
        .env_remove("SWITCHYARD_STORAGE")
        .env_remove("SWITCHYARD_QUEUE")
        .env("SWITCHYARD_PREFIX", prefix)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn prefix() -> String {
    format!("adm{}_", &uuid::Uuid::now_v7().simple().to_string()[24..])
}

const SOME_ID: &str = "01a20222-14d7-769e-9d45-675474079df2";

/// Every command that only reads or changes existing jobs.
fn read_only_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["list"],
        vec!["status", SOME_ID],
        vec!["queues"],
        vec!["cancel", SOME_ID],
        vec!["retry", SOME_ID],
        vec!["prune"],
        vec!["enqueue", "greet", "{}"],
    ]
}

/// The tables of `file` whose name starts with `prefix` (jobs, leaders, migrations, schedules).
async fn sqlite_tables(file: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?")
        .bind(format!("{prefix}%"))
        .fetch_all(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn read_only_commands_never_create_a_sqlite_file_or_tables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.db");
    let db = format!("sqlite://{}", file.display());
    let p = prefix();
    for args in read_only_commands().iter().chain([&vec!["doctor"]]) {
        let (ok, out, err) = run(&db, &p, args);
        assert!(!ok, "{args:?} succeeded on a missing file: {out}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        if args[0] != "doctor" {
            assert!(
                err.contains(&format!("no Switchyard schema under prefix `{p}`"))
                    && err.contains("switchyard migrate"),
                "{args:?}: {err}"
            );
        }
        assert!(!file.exists(), "{args:?} created the database file");
    }

    // A file that holds another instance: a mistyped prefix creates no tables in it.
    let (ok, _, err) = run(&db, "other_", &["migrate"]);
    assert!(ok, "{err}");
    for args in read_only_commands().iter().chain([&vec!["doctor"]]) {
        let (ok, out, err) = run(&db, &p, args);
        assert!(!ok, "{args:?} succeeded on a prefix without schema: {out}");
        assert!(
            format!("{out}{err}").contains(&format!("no Switchyard schema under prefix `{p}`")),
            "{args:?}: {out}{err}"
        );
    }
    assert_eq!(sqlite_tables(&file, &p).await, Vec::<String>::new());
    assert_eq!(
        sqlite_tables(&file, "other_").await.len(),
        8,
        "jobs, leaders, schedules, migrations, workflows, workflow_deps, queue_flow, queue_starts"
    );
    // A near miss names the prefix that has a schema.
    let (ok, _, err) = run(&db, "othr_", &["queues"]);
    assert!(!ok && err.contains("did you mean `other_`?"), "{err}");
}

/// A prefix one letter away from `p`.
fn typo(p: &str) -> String {
    let cut = p.len() - 2;
    let last = if p.as_bytes()[cut] == b'z' { 'y' } else { 'z' };
    format!("{}{last}_", &p[..cut])
}

#[tokio::test]
async fn dry_run_migrate_doctor_destroy_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cycle.db");
    let db = format!("sqlite://{}", file.display());
    let p = prefix();

    let (ok, out, err) = run(&db, &p, &["migrate", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("CREATE TABLE IF NOT EXISTS {p}jobs"))
            && out.contains(&format!("INSERT INTO {p}migrations"))
            && out.contains("-- version 1"),
        "{out}"
    );
    assert!(!file.exists(), "the dry run created the database file");

    let (ok, out, err) = run(&db, &p, &["migrate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("prefix `{p}`")) && out.contains("applied version(s) 1"),
        "{out}"
    );
    let (ok, out, _) = run(&db, &p, &["migrate"]);
    assert!(ok && out.contains("nothing applied"), "{out}");
    let (ok, out, _) = run(&db, &p, &["migrate", "--dry-run"]);
    assert!(ok && out.contains("nothing to apply"), "{out}");

    let (ok, out, err) = run(&db, &p, &["doctor"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("schema") && l.contains("current")),
        "{out}"
    );
    let (ok, out, err) = run(&db, &p, &["doctor", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("doctor --json");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "schema"));

    let (ok, out, _) = run(&db, &p, &["enqueue", "greet", "{}"]);
    assert!(ok, "{out}");

    // Without a terminal and without --yes, destroy refuses and deletes nothing.
    let (ok, _, err) = run(&db, &p, &["destroy"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert_eq!(sqlite_tables(&file, &p).await.len(), 8);

    let (ok, out, err) = run(&db, &p, &["destroy", "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("destroyed"), "{out}");
    assert_eq!(sqlite_tables(&file, &p).await, Vec::<String>::new());
    let (ok, _, err) = run(&db, &p, &["list"]);
    assert!(!ok && err.contains("no Switchyard schema"), "{err}");
    let (ok, _, err) = run(&db, &p, &["destroy", "--yes"]);
    assert!(!ok && err.contains("nothing to destroy"), "{err}");
}

/// On a terminal (a pseudo-terminal from util-linux `script`), `destroy` asks for the prefix:
/// a wrong answer deletes nothing, the prefix deletes the instance.
#[tokio::test]
async fn destroy_asks_for_the_prefix_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tty.db");
    let db = format!("sqlite://{}", file.display());
    let p = prefix();
    let (ok, _, err) = run(&db, &p, &["migrate"]);
    assert!(ok, "{err}");
    let on_a_terminal = |answer: &str| {
        use std::io::Write;
        let cmd = format!(
            "'{}' destroy --storage '{db}'",
            env!("CARGO_BIN_EXE_switchyard")
        );
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("SWITCHYARD_PREFIX", &p)
            .env_remove("SWITCHYARD_STORAGE")
            .env_remove("SWITCHYARD_QUEUE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, out) = on_a_terminal("nope");
    assert!(!ok, "a wrong answer destroyed: {out}");
    assert!(
        out.contains(&format!("Type the prefix `{p}`")) && out.contains("nothing was deleted"),
        "{out}"
    );
    assert_eq!(sqlite_tables(&file, &p).await.len(), 8);
    let (ok, out) = on_a_terminal(&p);
    assert!(ok, "{out}");
    assert!(out.contains("destroyed"), "{out}");
    assert_eq!(sqlite_tables(&file, &p).await, Vec::<String>::new());
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// The loopback server with a password in the URL (trust authentication ignores it), so
    /// the test can see whether it is ever printed.
    const WITH_PASSWORD: &str = "postgres://postgres:hunter2@127.0.0.1:5432/test?sslmode=disable";

    async fn tables(prefix: &str) -> Vec<String> {
        let mut c = sqlx::PgConnection::connect(WITH_PASSWORD).await.unwrap();
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE tablename LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_all(&mut c)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn read_only_commands_create_no_tables_and_doctor_hides_the_password() {
        let p = prefix();
        for args in read_only_commands().iter().chain([&vec!["doctor"]]) {
            let (ok, out, err) = run(WITH_PASSWORD, &p, args);
            assert!(!ok, "{args:?} succeeded without a schema: {out}");
            let all = format!("{out}{err}");
            assert!(
                all.contains(&format!("no Switchyard schema under prefix `{p}`")),
                "{args:?}: {all}"
            );
            assert!(
                !all.contains("hunter2"),
                "{args:?} printed the password: {all}"
            );
        }
        assert_eq!(tables(&p).await, Vec::<String>::new());

        let (ok, out, err) = run(WITH_PASSWORD, &p, &["migrate", "--dry-run"]);
        assert!(
            ok && out.contains(&format!("CREATE TABLE IF NOT EXISTS {p}jobs")),
            "{err}"
        );
        assert!(!out.contains("hunter2"), "{out}");
        assert_eq!(
            tables(&p).await,
            Vec::<String>::new(),
            "the dry run created tables"
        );

        let (ok, out, err) = run(WITH_PASSWORD, &p, &["migrate"]);
        assert!(ok && out.contains("applied version(s) 1, 2"), "{out}{err}");
        assert!(!out.contains("hunter2"), "{out}");
        let (ok, _, err) = run(WITH_PASSWORD, &typo(&p), &["list"]);
        assert!(
            !ok && err.contains(&format!("did you mean `{p}`?")),
            "{err}"
        );
        let (ok, out, err) = run(WITH_PASSWORD, &p, &["doctor"]);
        assert!(ok, "{out}{err}");
        for check in ["schema", "clock skew", "postgres listen"] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("ok") && l.contains(check)),
                "{check}: {out}"
            );
        }
        assert!(out.contains("postgres:***@"), "{out}");
        assert!(!format!("{out}{err}").contains("hunter2"), "{out}{err}");

        let (ok, _, err) = run(WITH_PASSWORD, &p, &["destroy", "--yes"]);
        assert!(ok, "{err}");
        assert_eq!(tables(&p).await, Vec::<String>::new());
    }

    /// A server that refuses connections is reported as refused (not "pool timed out"), by
    /// doctor and by every other command.
    #[test]
    fn a_refused_connection_says_refused() {
        let url = "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable";
        for args in [vec!["doctor"], vec!["list"]] {
            let (ok, out, err) = run(url, "x_", &args);
            let all = format!("{out}{err}");
            assert!(!ok, "{args:?}: {all}");
            assert!(all.to_lowercase().contains("refused"), "{args:?}: {all}");
            assert!(!all.contains("pool timed out"), "{args:?}: {all}");
            assert!(!all.contains("hunter2"), "{args:?}: {all}");
        }
    }
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;

    const URL: &str = "redis://127.0.0.1:6379";

    async fn keys(prefix: &str) -> Vec<String> {
        let client = redis::Client::open(URL).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut all = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{{{prefix}}}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            all.extend(batch);
            if next == 0 {
                return all;
            }
            cursor = next;
        }
    }

    #[tokio::test]
    async fn read_only_commands_write_no_key_and_doctor_checks_the_server() {
        let p = prefix();
        for args in read_only_commands().iter().chain([&vec!["doctor"]]) {
            let (ok, out, err) = run(URL, &p, args);
            assert!(!ok, "{args:?} succeeded without a schema: {out}");
            assert!(
                format!("{out}{err}").contains(&format!("no Switchyard schema under prefix `{p}`")),
                "{args:?}: {out}{err}"
            );
            // The persistence finding is doctor's, not a warning on every command.
            assert!(!err.contains("append-only file"), "{args:?}: {err}");
        }
        let (ok, _, err) = run(URL, &p, &["migrate", "--dry-run"]);
        assert!(ok, "{err}");
        assert_eq!(keys(&p).await, Vec::<String>::new(), "a read wrote keys");

        let (ok, out, err) = run(URL, &p, &["migrate"]);
        assert!(ok && out.contains("applied version(s) 3"), "{out}{err}");
        let (ok, _, err) = run(URL, &typo(&p), &["list"]);
        assert!(
            !ok && err.contains(&format!("did you mean `{p}`?")),
            "{err}"
        );
        let (_, out, err) = run(URL, &p, &["doctor"]);
        for check in [
            "schema",
            "redis persistence",
            "redis eviction",
            "clock skew",
        ] {
            assert!(out.contains(check), "{check}: {out}{err}");
        }
        let (ok, id, err) = run(URL, &p, &["enqueue", "greet", "{}"]);
        assert!(ok, "{err}");
        let (ok, out, _) = run(URL, &p, &["status", id.trim()]);
        assert!(ok && out.contains("available"), "{out}");
        assert!(!keys(&p).await.is_empty());
        let (ok, _, err) = run(URL, &p, &["destroy", "--yes"]);
        assert!(ok, "{err}");
        assert_eq!(keys(&p).await, Vec::<String>::new(), "destroy left keys");
    }

    #[test]
    fn a_refused_connection_says_refused() {
        let (ok, out, err) = run("redis://127.0.0.1:1", "x_", &["doctor"]);
        assert!(!ok && err.to_lowercase().contains("refused"), "{out}{err}");
        assert!(
            out.to_lowercase().contains("refused"),
            "the checklist says it: {out}"
        );
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use super::*;

    /// `migrate` creates the broker queue, `doctor` sees it, `destroy --yes` deletes it with
    /// the storage's tables.
    #[tokio::test]
    async fn destroy_removes_the_broker_queues() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rabbit.db");
        let db = format!("sqlite://{}", file.display());
        let p = prefix();
        let amqp = std::env::var("SWITCHYARD_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let with_queue = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--queue", amqp.as_str()]);
            run(&db, &p, &all)
        };
        let (ok, out, err) = with_queue(&["migrate"]);
        assert!(ok && out.contains("rabbitmq"), "{out}{err}");
        let (ok, out, err) = with_queue(&["doctor"]);
        assert!(ok, "{out}{err}");
        assert!(
            out.lines().any(|l| l.starts_with("ok")
                && l.contains("broker queue default")
                && l.contains(&format!("`{p}default` exists"))),
            "{out}"
        );
        assert!(
            !out.contains("guest:guest"),
            "doctor printed the password: {out}"
        );
        let (ok, _, err) = with_queue(&["destroy", "--yes"]);
        assert!(ok, "{err}");
        assert_eq!(sqlite_tables(&file, &p).await, Vec::<String>::new());
        let (_, out, _) = with_queue(&["doctor"]);
        assert!(
            out.lines().any(|l| l.contains("broker queue default")
                && l.contains(&format!("`{p}default` does not exist"))),
            "{out}"
        );
    }
}

#[cfg(feature = "sqs")]
mod sqs {
    use super::*;

    /// The same on the SQS emulator: `migrate` creates the SQS queue, `destroy --yes` deletes it.
    #[tokio::test]
    async fn destroy_removes_the_sqs_queues() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sqs.db");
        let db = format!("sqlite://{}", file.display());
        let p = prefix();
        let endpoint = std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT")
            .unwrap_or_else(|_| "http://127.0.0.1:4577".into());
        let queue = format!(
            "sqs://{}",
            endpoint.trim_start_matches("http://").trim_end_matches('/')
        );
        let with_queue = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--queue", queue.as_str()]);
            run(&db, &p, &all)
        };
        let (ok, out, err) = with_queue(&["doctor"]);
        assert!(!ok, "doctor passed without a schema: {out}");
        assert!(
            out.lines().any(|l| l.starts_with("warn")
                && l.contains("broker queue default")
                && l.contains("does not exist")),
            "{out}{err}"
        );
        let (ok, out, err) = with_queue(&["migrate"]);
        assert!(ok && out.contains("sqs"), "{out}{err}");
        let (ok, out, err) = with_queue(&["doctor"]);
        assert!(ok, "{out}{err}");
        assert!(
            out.lines().any(|l| l.starts_with("ok")
                && l.contains("broker queue default")
                && l.contains("exists")),
            "{out}"
        );
        let (ok, _, err) = with_queue(&["destroy", "--yes"]);
        assert!(ok, "{err}");
        let (_, out, _) = with_queue(&["doctor"]);
        assert!(
            out.lines()
                .any(|l| l.contains("broker queue default") && l.contains("does not exist")),
            "{out}"
        );
    }
}
