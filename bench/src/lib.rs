//! What the benchmark and diagnostic programs in `src/bin/` share: reading their command-line
//! arguments, the service addresses they default to, the median they print, and CPU-time
//! readings.
//!
//! Each program is built with `cargo build --release -p switchyard-bench` and run from
//! `target/release/<name>`; `scripts/bench.sh` runs them all beside `switchyard bench`, and
//! `docs/benchmarks.md` explains what each measures.

pub mod args;
pub mod cpu;
pub mod figures;
pub mod jobs;
pub mod services;

pub use args::{arg, flag};
pub use figures::median;
