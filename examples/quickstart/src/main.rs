//! Run with: `cargo run -p example-quickstart`
//!
//! Switchyard with no configuration and no services: jobs live in `./switchyard.db` (SQLite).
//! It enqueues a job that fails once and then succeeds, a delayed job, a job that is cancelled
//! before it runs, and a few plain ones; runs a worker; shows progress as jobs finish; prints
//! every job's final state and exits. The jobs live in `src/lib.rs` and are tested with
//! `switchyard::testing` in `tests/jobs.rs`.

use std::time::{Duration, Instant};

use example_quickstart::{registry, Flaky, Greet, Greeter};
use switchyard::{CancelOutcome, EnqueueOptions, JobId, JobState, Switchyard};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No config file, no env: the embedded default, ./switchyard.db, migrated on first use.
    let mut config = switchyard::Config::load()?;
    // Keep retries quick for the demo (the default first backoff is 1 s, then 2 s, 4 s, …).
    config.worker.backoff_base_ms = 500;
    config.worker.poll_interval_ms = 200;
    let sy = Switchyard::connect(config).await?;
    let client = sy.client();
    println!("storage: {}", sy.config().storage);

    let mut ids: Vec<(&str, JobId)> = Vec::new();
    for name in ["Ada", "Grace", "Linus"] {
        ids.push(("greet", client.enqueue(Greet { name: name.into() }).await?));
    }
    ids.push(("flaky", client.enqueue(Flaky { order: 42 }).await?));
    let delayed = client
        .enqueue_with(
            Greet {
                name: "later".into(),
            },
            EnqueueOptions::new().delay(Duration::from_secs(3)),
        )
        .await?;
    ids.push(("delayed 3 s", delayed));
    let doomed = client
        .enqueue_with(
            Greet {
                name: "never".into(),
            },
            EnqueueOptions::new().delay(Duration::from_secs(1)),
        )
        .await?;
    ids.push(("cancelled", doomed));
    match client.cancel(doomed).await? {
        CancelOutcome::Cancelled => println!("cancelled {doomed} before it ran"),
        other => println!("cancel said {other:?}"),
    }
    println!("enqueued {} jobs; starting a worker", ids.len());

    // The jobs read a `Greeter` from the registry's state; starting without it is an error.
    let running = sy.start(registry(Greeter {
        salutation: "hello".into(),
    }))?;

    // Show progress until every job is finished (or 30 s pass).
    let started = Instant::now();
    let mut last_done = usize::MAX;
    loop {
        let mut done = 0;
        for (_, id) in &ids {
            if let Some(job) = client.get(*id).await? {
                if job.state.is_finished() {
                    done += 1;
                }
            }
        }
        if done != last_done {
            println!(
                "[{:>4.1}s] {done}/{} jobs finished",
                started.elapsed().as_secs_f64(),
                ids.len()
            );
            last_done = done;
        }
        if done == ids.len() || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;

    println!(
        "\n{:<12} {:<36} {:<10} {:>7}  result / errors",
        "job", "id", "state", "attempts"
    );
    let mut all_as_expected = true;
    for (label, id) in &ids {
        let job = client.get(*id).await?.expect("job exists");
        let detail = match (&job.result, job.errors.last()) {
            (Some(r), Some(e)) => format!("{r} (after: {})", e.message),
            (Some(r), None) => r.to_string(),
            (None, Some(e)) => e.message.clone(),
            (None, None) => String::new(),
        };
        println!(
            "{label:<12} {id} {:<10} {:>7}  {detail}",
            job.state.as_str(),
            job.attempt
        );
        let expected = if *id == doomed {
            JobState::Cancelled
        } else {
            JobState::Completed
        };
        all_as_expected &= job.state == expected;
    }
    if !all_as_expected {
        eprintln!("some job did not reach its expected state");
        std::process::exit(1);
    }
    println!("\nall jobs reached their expected state; run `switchyard list` to see them again");
    Ok(())
}
