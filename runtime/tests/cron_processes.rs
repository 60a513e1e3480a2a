//! CR1/CR2 with real processes: several scheduler processes on one storage (each a child of
//! this test binary with its own connections and a host clock skewed by up to ±30 s), some
//! killed with SIGKILL at random moments — mid-tick or not — and restarted, over many
//! one-second ticks: exactly one job per instant, no instant lost, none fired early.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use switchyard::cron::Scheduler;
use switchyard::{Clock, Config, JobFilter, JobTemplate, ScheduleDef, Shutdown};
use switchyard_core::schedule;

const CHILD: &str = "SWITCHYARD_TEST_CRON_CHILD";

#[derive(Debug)]
struct Skewed(TimeDelta);

impl Clock for Skewed {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn config(storage: &str, prefix: &str) -> Config {
    Config {
        storage: storage.into(),
        prefix: prefix.into(),
        ..Config::default()
    }
}

/// The child: a scheduler over the storage named in `SWITCHYARD_TEST_CRON_CHILD`
/// (`url|prefix|skew seconds`), until it is killed (or after a minute). Skipped otherwise.
#[tokio::test]
#[ignore = "run by the parent tests as a child process"]
async fn scheduler_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let mut parts = spec.split('|');
    let (url, prefix, skew) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().parse::<i64>().unwrap(),
    );
    let storage = switchyard::connect::connect_storage(&config(&url, &prefix))
        .await
        .expect("child connects");
    let shutdown = Shutdown::new();
    let run = Scheduler::new(storage)
        .with_host_clock(Arc::new(Skewed(TimeDelta::seconds(skew))))
        .with_poll_interval(Duration::from_millis(100))
        .run(shutdown.clone());
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
}

fn spawn(url: &str, prefix: &str, skew: i64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "scheduler_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{url}|{prefix}|{skew}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a scheduler process")
}

async fn several_processes(url: &str) {
    let prefix = format!("cp{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let storage = switchyard::connect::connect_storage(&config(url, &prefix))
        .await
        .expect("connect");
    storage.migrate().await.unwrap();
    let kind = format!("tick_{prefix}");
    schedule::register(
        storage.as_ref(),
        &[ScheduleDef::new(
            "proc",
            "* * * * * *",
            JobTemplate::new(kind.clone(), serde_json::json!({})),
        )],
    )
    .await
    .unwrap();
    let skews = [-30, 30, 0, 5, -5];
    let mut children: Vec<Child> = skews.iter().map(|&s| spawn(url, &prefix, s)).collect();
    let start = Instant::now();
    let mut kills = 0;
    while start.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(150..600))).await;
        // SIGKILL one of the processes at a random moment, and start it again.
        let i = fastrand::usize(..children.len());
        children[i].kill().unwrap();
        children[i].wait().unwrap();
        kills += 1;
        children[i] = spawn(url, &prefix, skews[i]);
    }
    let end = storage.storage_now().await.unwrap();
    for mut c in children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let jobs = storage
        .list(&JobFilter {
            kind: Some(kind),
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut instants = BTreeSet::new();
    for j in &jobs {
        let (_, at) = schedule::instant_of_key(j.unique_key.as_deref().unwrap()).unwrap();
        assert!(instants.insert(at), "{url}: two jobs for {at}");
        assert!(
            j.created_at >= at - TimeDelta::milliseconds(5),
            "{url}: job for {at} inserted early at {}",
            j.created_at
        );
    }
    let instants: Vec<_> = instants.into_iter().collect();
    assert!(
        instants.len() >= 5,
        "{url}: only {} ticks ({kills} kills)",
        instants.len()
    );
    for w in instants.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            1,
            "{url}: the tick after {} was lost ({kills} kills)",
            w[0]
        );
    }
    assert!(
        end - *instants.last().unwrap() <= TimeDelta::seconds(3),
        "{url}: firing stopped early"
    );
    storage.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_killed_at_random_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    several_processes(&format!("sqlite://{}", dir.path().join("p.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_killed_at_random_postgres() {
    let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
    several_processes(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_killed_at_random_redis() {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    several_processes(&url).await;
}
