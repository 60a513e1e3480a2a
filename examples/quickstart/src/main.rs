//! Run with: `cargo run -p example-quickstart`
//!
//! Switchyard with no configuration and no services: jobs live in `./switchyard.db` (SQLite).
//! It enqueues a job that fails once and then succeeds, a delayed job, a job that is cancelled
//! before it runs, and a few plain ones; runs a worker; waits for each job to finish; prints
//! every job's final state and one typed result, and exits. The jobs live in `src/lib.rs` and
//! are tested with `switchyard::testing` in `tests/jobs.rs`.

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
    let flaky = client.enqueue(Flaky { order: 42 }).await?;
    ids.push(("flaky", flaky));
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

    // Wait for each job to finish (30 s in all), printing as each does: `wait` returns the
    // job's record once it is completed, failed, cancelled or dropped.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    for (label, id) in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.wait(*id, left).await {
            Ok(job) => println!(
                "[{:>4.1}s] {label} finished: {}",
                started.elapsed().as_secs_f64(),
                job.state
            ),
            Err(e) => {
                println!("{e}");
                break;
            }
        }
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
    // The typed output of one job, decoded into its `Job::Output`.
    let charged: String = client.result::<Flaky>(flaky).await?;
    println!("\nthe flaky job's result, typed: {charged:?}");
    println!("\nall jobs reached their expected state; run `switchyard list` to see them again");
    Ok(())
}
