//! The `switchyard` command line. The stock binary calls [`main`]; a user's own binary calls
//! [`main_with`] with its registry and gets the same commands plus `worker`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_core::{JobFilter, JobState, ListOrder, NewJob};

use crate::config::Config;
use crate::registry::Registry;
use crate::{EnqueueOptions, Switchyard};

/// Background jobs with pluggable backends.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// Configuration file (default: ./switchyard.toml if present).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Storage URL, overriding the configuration.
    #[arg(long, global = true)]
    pub storage: Option<String>,
    /// Queue (`storage`, `sqs://…`, `amqp://…`, `redis://…`), overriding the configuration.
    #[arg(long, global = true)]
    pub queue: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the schema (and broker queues).
    Migrate,
    /// Enqueue a job: `switchyard enqueue send_email '{"to":"a@b.c"}'`.
    Enqueue {
        /// Job kind.
        kind: String,
        /// JSON payload, or `@path` to read it from a file (`@-`: standard input).
        #[arg(default_value = "{}")]
        payload: String,
        /// Queue.
        #[arg(long, default_value = "default")]
        on: String,
        /// Priority (higher first).
        #[arg(long, default_value_t = 0)]
        priority: i16,
        /// Delay in seconds.
        #[arg(long)]
        delay: Option<f64>,
        /// Maximum attempts.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Unique key.
        #[arg(long)]
        unique_key: Option<String>,
        /// Per-attempt timeout in seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Show one job.
    Status {
        /// Job id.
        id: String,
    },
    /// List jobs, newest first.
    List {
        /// Only these states (comma-separated).
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        /// Only this queue.
        #[arg(long)]
        on: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after this id (the last of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Oldest first.
        #[arg(long)]
        asc: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Run a finished job again.
    Retry {
        /// Job id.
        id: String,
    },
    /// Delete finished jobs older than a retention.
    Prune {
        /// Retention in seconds.
        #[arg(long, default_value_t = 7.0 * 24.0 * 3600.0)]
        older_than: f64,
    },
    /// Job counts per queue and state.
    Queues,
    /// Run the benchmark workload (W1 enqueue, W2 drain, W3 latency).
    Bench(crate::bench::BenchArgs),
    /// Check configuration and connectivity.
    Doctor,
    /// Run workers for the registered job kinds (only in a binary built with `main_with`).
    Worker,
}

/// Entry point of the stock binary: every command but `worker`.
pub async fn main() -> ExitCode {
    main_with(None).await
}

/// Entry point of a user's binary: the same commands, plus `worker` running `registry`.
pub async fn main_with(registry: Option<Registry>) -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli, registry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn load_config(cli: &Cli) -> switchyard_core::Result<Config> {
    let mut config = match &cli.config {
        Some(p) => {
            if !p.exists() {
                return Err(switchyard_core::Error::config(format!(
                    "configuration file `{}` does not exist",
                    p.display()
                )));
            }
            Config::load_from(p)?
        }
        None => Config::load()?,
    };
    if let Some(s) = &cli.storage {
        config.storage = s.clone();
    }
    if let Some(q) = &cli.queue {
        config.queue = q.clone();
    }
    config.validate()?;
    Ok(config)
}

fn parse_id(id: &str) -> switchyard_core::Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        switchyard_core::Error::invalid(format!(
            "`{id}` is not a job id; accepted: a UUID such as 0192f0c1-7b1e-7c3a-9f00-3c2b1a0d9e8f"
        ))
    })
}

/// The payload argument: inline JSON, `@path`, or `@-` for standard input.
fn read_payload(arg: &str) -> switchyard_core::Result<String> {
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    let read = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| {
        switchyard_core::Error::invalid(format!("cannot read the payload from `{path}`: {e}"))
    })
}

/// Runs one parsed command.
pub async fn run(cli: Cli, registry: Option<Registry>) -> switchyard_core::Result<()> {
    let config = load_config(&cli)?;
    if let Command::Bench(args) = &cli.command {
        return crate::bench::run(&config, args).await;
    }
    let sy = Switchyard::connect(config).await?;
    let client = sy.client();
    match cli.command {
        Command::Migrate => {
            sy.migrate().await?;
            println!("migrated {}", sy.storage().name());
        }
        Command::Enqueue {
            kind,
            payload,
            on,
            priority,
            delay,
            max_attempts,
            unique_key,
            timeout,
        } => {
            let payload = read_payload(&payload)?;
            let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| {
                switchyard_core::Error::invalid(format!(
                    "the payload is not valid JSON ({e}); accepted: a JSON value such as '{{\"to\":\"a@b.c\"}}'"
                ))
            })?;
            let mut opts = EnqueueOptions::new().queue(on).priority(priority);
            if let Some(d) = delay {
                opts = opts.delay(crate::config::secs("--delay", d)?);
            }
            if let Some(m) = max_attempts {
                opts = opts.max_attempts(m);
            }
            if let Some(k) = unique_key {
                opts = opts.unique_key(k);
            }
            if let Some(t) = timeout {
                opts = opts.timeout(crate::config::secs("--timeout", t)?);
            }
            let out = client
                .enqueue_raw(vec![opts.apply(NewJob::new(kind, payload))])
                .await?;
            match out[0] {
                switchyard_core::EnqueueOutcome::Inserted(id) => println!("{id}"),
                switchyard_core::EnqueueOutcome::Duplicate(id) => {
                    println!("{id}");
                    eprintln!("a live job with this unique key exists; its id is printed");
                }
            }
        }
        Command::Status { id } => {
            let id = parse_id(&id)?;
            match client.get(id).await? {
                Some(job) => println!("{}", serde_json::to_string_pretty(&job)?),
                None => {
                    return Err(switchyard_core::Error::not_found(format!(
                        "no job with id {id}"
                    )))
                }
            }
        }
        Command::List {
            state,
            on,
            kind,
            limit,
            after,
            asc,
            json,
        } => {
            let states = state
                .iter()
                .map(|s| s.parse::<JobState>())
                .collect::<switchyard_core::Result<Vec<_>>>()?;
            let filter = JobFilter {
                states,
                queue: on,
                kind,
                after: after.as_deref().map(parse_id).transpose()?,
                limit,
                order: if asc { ListOrder::Asc } else { ListOrder::Desc },
                ..JobFilter::default()
            };
            let jobs = client.list(&filter).await?;
            if json {
                for j in &jobs {
                    println!("{}", serde_json::to_string(j)?);
                }
            } else {
                println!(
                    "{:<36}  {:<10}  {:<12}  {:<20}  {:>7}  created",
                    "id", "state", "queue", "kind", "attempt"
                );
                for j in &jobs {
                    println!(
                        "{:<36}  {:<10}  {:<12}  {:<20}  {:>3}/{:<3}  {}",
                        j.id,
                        j.state,
                        j.queue,
                        j.kind,
                        j.attempt,
                        j.max_attempts,
                        j.created_at.format("%Y-%m-%d %H:%M:%S")
                    );
                }
                if jobs.len() == filter.page_size() {
                    if let Some(last) = jobs.last() {
                        eprintln!("more: --after {}", last.id);
                    }
                }
            }
        }
        Command::Cancel { id } => {
            let id = parse_id(&id)?;
            match client.cancel(id).await? {
                crate::CancelOutcome::Cancelled => println!("cancelled {id}"),
                crate::CancelOutcome::Requested => {
                    println!(
                        "cancel requested for running job {id}; it stops at its next heartbeat"
                    )
                }
                crate::CancelOutcome::AlreadyFinished(s) => {
                    println!("job {id} already finished as `{s}`; nothing changed")
                }
                crate::CancelOutcome::NotFound => {
                    return Err(switchyard_core::Error::not_found(format!(
                        "no job with id {id}"
                    )))
                }
            }
        }
        Command::Retry { id } => {
            let id = parse_id(&id)?;
            match client.retry(id).await? {
                crate::RetryOutcome::Requeued => println!("job {id} is available again"),
                crate::RetryOutcome::NotFinished(s) => {
                    println!("job {id} is `{s}`, not finished; nothing changed")
                }
                crate::RetryOutcome::NotFound => {
                    return Err(switchyard_core::Error::not_found(format!(
                        "no job with id {id}"
                    )))
                }
            }
        }
        Command::Prune { older_than } => {
            let age = crate::config::secs("--older-than", older_than)?;
            // At most MAX_SECS, so always a date.
            let before = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
            let n = client.prune(before).await?;
            println!("deleted {n} finished jobs");
        }
        Command::Queues => {
            let counts = client.counts().await?;
            print!("{:<20}", "queue");
            for s in JobState::ALL {
                print!("  {:>9}", s.as_str());
            }
            println!();
            for c in counts {
                print!("{:<20}", c.queue);
                for s in JobState::ALL {
                    print!("  {:>9}", c.counts.get(&s).copied().unwrap_or(0));
                }
                println!();
            }
        }
        Command::Doctor => {
            println!("storage: {} ({})", sy.config().storage, sy.storage().name());
            println!("capabilities: {:?}", sy.storage().capabilities());
            match sy.queue() {
                Some(q) => println!("queue: {} {:?}", q.name(), q.capabilities()),
                None => println!("queue: the storage's own"),
            }
            let counts = client.counts().await?;
            println!("reachable: yes ({} queues with jobs)", counts.len());
        }
        Command::Worker => {
            let Some(registry) = registry else {
                return Err(switchyard_core::Error::config(
                    "`worker` needs your job types: build your own binary that calls \
                     `switchyard::cli::main_with(Some(registry))`",
                ));
            };
            tracing::info!(kinds = ?registry.kinds(), "worker starting");
            sy.run_with_signals(registry).await;
        }
        Command::Bench(_) => unreachable!("handled above"),
    }
    Ok(())
}
