//! The `switchyard` command line. The stock binary calls [`main`]; a user's own binary calls
//! [`main_with`] with its registry and gets the same commands plus `worker`. Compiled with the
//! `cli` feature (`switchyard = { features = ["cli"] }`), so an app that only embeds
//! Switchyard does not build clap.
//!
//! This file holds the arguments ([`Cli`], [`Command`]), the entry points and the loading of the
//! configuration; `jobs.rs` runs the commands on single jobs (enqueue, status, list, cancel,
//! retry) and `admin.rs` the others (migrate, destroy, prune, queues, doctor, worker, bench)
//! and how each command connects.

mod admin;
mod jobs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_core::NewJob;

use crate::config::Config;
use crate::registry::Registry;

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
    /// Create or upgrade the schema (and broker queues); says what it applied.
    Migrate {
        /// Print what would be run (SQL for SQLite and PostgreSQL) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete this instance's tables or keys and its broker queues, with every job (asks to
    /// type the prefix on a terminal).
    Destroy {
        /// Do not ask (for scripts; without it, a non-terminal standard input is refused).
        #[arg(long)]
        yes: bool,
    },
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
    /// Check the configuration, the backends and the schema (creates nothing).
    Doctor {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
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

/// Runs one parsed command.
pub async fn run(cli: Cli, registry: Option<Registry>) -> switchyard_core::Result<()> {
    let config = load_config(&cli)?;
    match &cli.command {
        Command::Bench(args) => return admin::bench(&config, args).await,
        Command::Migrate { dry_run } => return admin::migrate(config, *dry_run).await,
        Command::Destroy { yes } => return admin::destroy(config, *yes).await,
        Command::Doctor { json } => return admin::doctor(config, *json).await,
        // Said before connecting: `worker` would migrate first.
        Command::Worker if registry.is_none() => return admin::worker(None).await,
        _ => {}
    }
    // Only `migrate` and `worker` (with `auto_migrate`) create anything.
    let sy = admin::connect(&cli.command, config).await?;
    let client = sy.client();
    match cli.command {
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
            let payload = jobs::payload(&payload)?;
            let opts =
                jobs::enqueue_options(on, priority, delay, max_attempts, unique_key, timeout)?;
            jobs::enqueue(&client, NewJob::new(kind, payload), opts).await
        }
        Command::Status { id } => jobs::status(&client, &id).await,
        Command::List {
            state,
            on,
            kind,
            limit,
            after,
            asc,
            json,
        } => {
            let filter = jobs::filter(&state, on, kind, limit, after.as_deref(), asc)?;
            jobs::list(&client, &filter, json).await
        }
        Command::Cancel { id } => jobs::cancel(&client, &id).await,
        Command::Retry { id } => jobs::retry(&client, &id).await,
        Command::Prune { older_than } => admin::prune(&client, older_than).await,
        Command::Queues => admin::queues(&client).await,
        Command::Worker => admin::worker_with(&sy, registry).await,
        Command::Bench(_)
        | Command::Migrate { .. }
        | Command::Destroy { .. }
        | Command::Doctor { .. } => unreachable!("handled above"),
    }
}
