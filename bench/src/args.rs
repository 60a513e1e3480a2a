//! Command-line arguments of the bench programs: `--name N` options with a default, bare
//! `--name` flags, and the strict form that refuses anything it does not know.

/// The number after `name` on the command line (`--jobs 500`), or `default` when `name` is
/// absent or not followed by a number.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The options of the Redis drains (`redis_raw_ceiling`, `redis_native_floor`).
#[derive(Debug, Clone, Copy)]
pub struct DrainArgs {
    /// `--jobs N`: jobs per run (10,000).
    pub jobs: usize,
    /// `--concurrency C`: drain tasks (16).
    pub concurrency: usize,
    /// `--batch B`: jobs per claim (16, at least 1).
    pub batch: usize,
    /// `--runs R`: runs, of which the median is printed (3, at least 1).
    pub runs: usize,
}

impl DrainArgs {
    /// Reads the options from the command line, each with its default.
    pub fn read() -> Self {
        DrainArgs {
            jobs: arg("--jobs", 10_000),
            concurrency: arg("--concurrency", 16),
            batch: arg("--batch", 16).max(1),
            runs: arg("--runs", 3).max(1),
        }
    }
}

/// Whether the bare flag `name` (`--lean`) is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The command line read as `--name N` pairs, each name one of `accepted`, in order. Anything
/// else (an unknown name, a missing or non-numeric value) prints what is accepted and ends the
/// process with status 2.
pub fn strict_pairs(accepted: &[&str]) -> Vec<(String, usize)> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut pairs = Vec::new();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<usize>().ok());
        match value {
            Some(v) if accepted.contains(&pair[0].as_str()) => pairs.push((pair[0].clone(), v)),
            _ => {
                let usage: Vec<String> = accepted.iter().map(|a| format!("{a} N")).collect();
                eprintln!(
                    "unknown or incomplete argument `{}`; accepted: {}",
                    pair[0],
                    usage.join(" ")
                );
                std::process::exit(2);
            }
        }
    }
    pairs
}
