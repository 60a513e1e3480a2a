//! The `switchyard` command line. The stock binary calls [`main`]; a user's own binary calls
//! [`main_with`] with its registry and gets the same commands plus `worker`. Compiled with the
//! `cli` feature (`switchyard = { features = ["cli"] }`), so an app that only embeds
//! Switchyard does not build clap.
//!
//! This file holds the arguments ([`Cli`], [`Command`]), the entry points and the loading of the
//! configuration; `jobs.rs` runs the commands on single jobs (enqueue, status, list, cancel,
//! retry), `admin.rs` the others (migrate, destroy, prune, queues, doctor, worker, bench) and
//! how each command connects, `output.rs`
//! prints (text or `--json`, quiet on a closed pipe) and maps errors to the exit codes of
//! [`exit`], and `parse.rs` reads durations and job ids.

mod admin;
mod flow;
mod jobs;
pub(crate) mod output;
mod parse;
mod schedules;
mod workflows;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use switchyard_core::NewJob;

pub use output::exit;
pub use workflows::WorkflowsCommand;

use crate::config::Config;
use crate::registry::Registry;

/// The heading of the flags every command takes, so `--help` lists them apart.
const GLOBAL: &str = "Global options";

/// Background jobs with pluggable backends.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// Configuration file (default: ./switchyard.toml if present).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Storage URL, overriding the configuration.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub storage: Option<String>,
    /// How jobs are delivered (the `queue` key: `storage`, `sqs://…`, `amqp://…`, `redis://…`),
    /// overriding the configuration; a job's own queue is `--on`.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub queue: Option<String>,
    /// Table/key prefix (the `prefix` key), overriding the configuration.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub prefix: Option<String>,
    /// Print JSON instead of text: one JSON value on standard output, and errors as one JSON
    /// line on standard error.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
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
    /// List the schedules (cron), or pause, resume, trigger or remove one.
    Schedules {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<SchedulesAction>,
    },
    /// Enqueue a job: `switchyard enqueue send_email '{"to":"a@b.c"}'`.
    Enqueue {
        /// Job kind.
        kind: String,
        /// JSON payload, or `@path` to read it from a file (`@-`: standard input).
        #[arg(default_value = "{}")]
        payload: String,
        /// The job's queue (the name workers serve).
        #[arg(long, default_value = "default")]
        on: String,
        /// Priority (higher first).
        #[arg(long, default_value_t = 0)]
        priority: i16,
        /// Delay before the job may run: `90s`, `15m`, `1h30m`, `7d`, or seconds.
        #[arg(long, allow_hyphen_values = true)]
        delay: Option<String>,
        /// Maximum attempts.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Unique key.
        #[arg(long)]
        unique_key: Option<String>,
        /// Per-attempt timeout: `30s`, `5m`, or seconds, above 0 (leave it out for none).
        #[arg(long, allow_hyphen_values = true)]
        timeout: Option<String>,
        /// Enqueue a kind that this binary has no handler for (for producers whose jobs run
        /// in another binary). Without it, a binary built with `main_with` refuses such a kind.
        #[arg(long)]
        allow_unknown_kind: bool,
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
        /// Only jobs of this queue.
        #[arg(long)]
        on: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Page size, 1 to 1000.
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i64,
        /// Continue after this id (the last of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Oldest first.
        #[arg(long)]
        asc: bool,
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
        /// Retention: `7d`, `12h`, `90m`, or seconds.
        #[arg(long, default_value = "7d", allow_hyphen_values = true)]
        older_than: String,
    },
    /// Job counts per queue and state, and each queue's stored pause; `pause` / `resume` a
    /// queue.
    Queues {
        /// Change a queue's stored settings.
        #[command(subcommand)]
        action: Option<flow::QueuesCommand>,
    },
    /// Cancel or retry every job a filter matches, up to a bound (`--dry-run` to look first).
    #[command(subcommand)]
    Bulk(flow::BulkCommand),
    /// Workflows: `list`, `show <id>` (the graph with each step's state), `cancel <id>`,
    /// `retry <id>`.
    Workflows {
        /// What to do.
        #[command(subcommand)]
        action: workflows::WorkflowsCommand,
    },
    /// Run the benchmark workload (W1 enqueue, W2 drain, W3 latency).
    Bench(crate::bench::BenchArgs),
    /// Check the configuration, the backends and the schema; a checklist (creates nothing).
    Doctor,
    /// Run workers for the registered job kinds (only in a binary built with `main_with`).
    Worker,
    /// Print a shell completion script: `switchyard completions bash > /etc/bash_completion.d/switchyard`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What a command that did not fail did; [`main_with`] turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked (exit 0).
    Done,
    /// It changed nothing: `cancel` of a finished job, `retry` of one that is not finished
    /// ([`exit::NOTHING_CHANGED`]).
    NothingChanged,
}

/// `switchyard schedules …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SchedulesAction {
    /// Every schedule with its next and last instant and its last job's state.
    List,
    /// Stop firing a schedule (exit 1 if it is paused already).
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Fire a paused schedule again; missed instants follow its catch-up policy.
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Fire the schedule's next instant now (the regular firing then skips that instant).
    Trigger {
        /// Schedule id.
        id: String,
    },
    /// Delete a schedule (its jobs stay).
    Remove {
        /// Schedule id.
        id: String,
    },
}

/// Entry point of the stock binary: every command but `worker`.
pub async fn main() -> ExitCode {
    main_with(None).await
}

/// Entry point of a user's binary: the same commands, plus `worker` running `registry`, and
/// `enqueue` refusing kinds that `registry` has no handler for. The exit code says which class
/// of failure happened ([`exit`]); a closed standard output (`| head`) ends the command with 0.
pub async fn main_with(registry: Option<Registry>) -> ExitCode {
    main_from(std::env::args_os(), registry).await
}

/// Like [`main_with`] with the command line `args` (the program name first) instead of the
/// process's own, for tests and wrappers.
pub async fn main_from<I, T>(args: I, registry: Option<Registry>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    init_tracing();
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // `--help` and `--version` are "errors" printed on stdout with exit 0.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            if args.iter().skip(1).any(|a| a == "--json") {
                output::set_json(true);
                let text = e.render().to_string();
                output::usage_error(text.trim_start_matches("error: ").trim_end());
            } else {
                let _ = e.print();
            }
            return ExitCode::from(exit::USAGE);
        }
    };
    output::set_json(cli.json);
    if matches!(cli.command, Command::Worker) && registry.is_none() {
        output::usage_error(
            "`worker` needs your job types, and this binary has none: build your own binary \
             that calls `switchyard::cli::main_with(Some(registry))`",
        );
        return ExitCode::from(exit::USAGE);
    }
    match run(cli, registry).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NothingChanged) => ExitCode::from(exit::NOTHING_CHANGED),
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit::code(e.kind());
            output::error(&e, code);
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), in colour only when stderr is a
/// terminal and `NO_COLOR` is unset.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
    if let Some(p) = &cli.prefix {
        config.prefix = p.clone();
    }
    config.validate()?;
    Ok(config)
}

/// `switchyard completions <shell>`: the script for the binary's own name.
fn completions(shell: clap_complete::Shell) -> switchyard_core::Result<()> {
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "switchyard".to_string());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), name, &mut script);
    output::raw(&script)
}

/// Runs one parsed command (its output on stdout, as text or with `cli.json` as JSON). The
/// caller turns an error into a message and [`exit::code`] as [`main_with`] does.
pub async fn run(cli: Cli, registry: Option<Registry>) -> switchyard_core::Result<Outcome> {
    output::set_json(cli.json);
    if let Command::Completions { shell } = cli.command {
        completions(shell)?;
        return Ok(Outcome::Done);
    }
    let config = load_config(&cli)?;
    if let Command::Bench(args) = &cli.command {
        let mut args = args.clone();
        args.json = cli.json;
        admin::bench(&config, &args).await?;
        return Ok(Outcome::Done);
    }
    match &cli.command {
        Command::Migrate { dry_run } => return admin::migrate(config, *dry_run).await,
        Command::Destroy { yes } => return admin::destroy(config, *yes).await,
        Command::Doctor => return admin::doctor(config).await,
        _ => {}
    }
    // Checked before connecting, so a refused enqueue touches no backend.
    let enqueue = match &cli.command {
        Command::Enqueue {
            kind,
            payload,
            on,
            priority,
            delay,
            max_attempts,
            unique_key,
            timeout,
            allow_unknown_kind,
        } => {
            jobs::check_kind(kind, registry.as_ref(), *allow_unknown_kind)?;
            let payload = jobs::payload(payload)?;
            let opts = jobs::enqueue_options(
                on.clone(),
                *priority,
                delay.as_deref(),
                *max_attempts,
                unique_key.clone(),
                timeout.as_deref(),
            )?;
            Some((NewJob::new(kind.clone(), payload), opts))
        }
        _ => None,
    };
    let older_than = match &cli.command {
        Command::Prune { older_than } => Some(parse::duration("--older-than", older_than)?),
        _ => None,
    };
    let filter = match &cli.command {
        Command::List {
            state,
            on,
            kind,
            limit,
            after,
            asc,
        } => Some(jobs::filter(
            state,
            on.clone(),
            kind.clone(),
            *limit,
            after.as_deref(),
            *asc,
        )?),
        _ => None,
    };
    // Only `migrate` and `worker` (with `auto_migrate`) create anything.
    let sy = admin::connect(&cli.command, config).await?;
    let client = sy.client();
    let done = |r: switchyard_core::Result<()>| r.map(|()| Outcome::Done);
    match cli.command {
        Command::Schedules { action } => {
            let st = sy.storage().as_ref();
            match action.unwrap_or(SchedulesAction::List) {
                SchedulesAction::List => schedules::list(st).await,
                SchedulesAction::Pause { id } => schedules::set_paused(st, &id, true).await,
                SchedulesAction::Resume { id } => schedules::set_paused(st, &id, false).await,
                SchedulesAction::Trigger { id } => schedules::trigger(st, &id).await,
                SchedulesAction::Remove { id } => schedules::remove(st, &id).await,
            }
        }
        Command::Enqueue { .. } => {
            let (job, opts) = enqueue.expect("parsed above");
            jobs::enqueue(&client, job, opts).await
        }
        Command::Status { id } => jobs::status(&client, &id).await,
        Command::List { .. } => jobs::list(&client, &filter.expect("parsed above")).await,
        Command::Cancel { id } => jobs::cancel(&client, &id).await,
        Command::Retry { id } => jobs::retry(&client, &id).await,
        Command::Prune { .. } => {
            done(admin::prune(&client, older_than.expect("parsed above")).await)
        }
        Command::Queues { action: None } => done(flow::queues(&client).await),
        Command::Queues { action: Some(a) } => flow::set_paused(&client, a).await,
        Command::Bulk(cmd) => flow::bulk(&client, cmd).await,
        Command::Workflows { action } => workflows::run(&client, &action).await,
        Command::Worker => done(admin::worker(&sy, registry).await),
        Command::Bench(_)
        | Command::Completions { .. }
        | Command::Migrate { .. }
        | Command::Destroy { .. }
        | Command::Doctor => unreachable!("handled above"),
    }
}
