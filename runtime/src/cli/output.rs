//! What the `switchyard` command prints, shared by every command: lines on standard output that
//! end quietly when the reader goes away (`switchyard list | head -1`), JSON or text chosen once
//! by the global `--json` flag, and the exit code of each failure class ([`exit`]).

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use switchyard_core::{Error, ErrorKind, Result};

static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses JSON (`--json`) or text for the rest of the process.
pub(crate) fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether `--json` was given.
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes `text` and a newline to standard output. A closed pipe becomes an error that
/// [`is_broken_pipe`] recognises, so the command stops and exits 0 without printing anything.
pub(crate) fn line(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// Writes `bytes` as they are to standard output (a completion script), like [`line`].
pub(crate) fn raw(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// Writes `value` as one line of compact JSON on standard output.
pub(crate) fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    line(serde_json::to_string(value)?)
}

fn write_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, "cannot write to standard output").with_source(e)
}

/// Whether `e` says that standard output was closed by its reader (a pipe into `head`), which
/// ends a command quietly and successfully.
pub(crate) fn is_broken_pipe(e: &Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Prints `e` on standard error: `error: …`, or with `--json` one line
/// `{"error":{"kind":"not_found","exit_code":66,"message":"…"}}`.
pub(crate) fn error(e: &Error, code: u8) {
    let mut err = std::io::stderr().lock();
    let _ = if json() {
        let v = serde_json::json!({
            "error": {
                "kind": exit::kind_name(e.kind()),
                "exit_code": code,
                "message": e.to_string(),
            }
        });
        writeln!(err, "{v}")
    } else {
        writeln!(err, "error: {e}")
    };
}

/// Prints a usage error that clap cannot see (`worker` in the stock binary), like [`error`]
/// with the kind `usage`.
pub(crate) fn usage_error(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if json() {
        let v = serde_json::json!({
            "error": { "kind": "usage", "exit_code": exit::USAGE, "message": message }
        });
        writeln!(err, "{v}")
    } else {
        writeln!(err, "error: {message}")
    };
}

/// Pads `text` to `width` characters (on the right), for table columns: the `Display` of some
/// types (`JobState`) ignores format widths, so columns are padded here from the string.
pub(crate) fn pad(text: impl Display, width: usize) -> String {
    format!("{:<width$}", text.to_string())
}

/// The exit codes of the `switchyard` command, one per failure class, so a script can tell the
/// classes apart by the code alone. The numbers follow BSD's `sysexits.h` where it has a class.
///
/// | code | class |
/// |---|---|
/// | 0 | success |
/// | 1 | nothing changed: `cancel` of a finished job, `retry` of a job that is not finished, or a conflicting concurrent change |
/// | 64 | usage: unknown command or flag, missing argument, a value of the wrong type |
/// | 65 | invalid input: bad job id, payload, state, duration or limit; payload over the limit; unknown job kind |
/// | 66 | not found: no job with that id |
/// | 69 | backend unavailable: the storage or queue cannot be reached (retrying may help) |
/// | 70 | internal error, or stored data that cannot be decoded |
/// | 76 | unsupported: the configured backend cannot do this |
/// | 78 | configuration: unknown key, bad value or URL, missing file |
pub mod exit {
    use switchyard_core::ErrorKind;

    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// Nothing changed (`cancel` of a finished job, `retry` of a live one), or a conflict.
    pub const NOTHING_CHANGED: u8 = 1;
    /// The command line is wrong (clap's usage errors, and `worker` in the stock binary).
    pub const USAGE: u8 = 64;
    /// An argument or payload is not acceptable.
    pub const INVALID_INPUT: u8 = 65;
    /// The job does not exist.
    pub const NOT_FOUND: u8 = 66;
    /// A backend cannot be reached; the same command may succeed later.
    pub const UNAVAILABLE: u8 = 69;
    /// A bug, or stored data that cannot be decoded.
    pub const INTERNAL: u8 = 70;
    /// The configured backend cannot do this.
    pub const UNSUPPORTED: u8 = 76;
    /// The configuration is wrong.
    pub const CONFIG: u8 = 78;

    /// The exit code of an error of `kind`: the one place that maps error kinds to codes.
    pub fn code(kind: ErrorKind) -> u8 {
        match kind {
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::InvalidInput | ErrorKind::PayloadTooLarge => INVALID_INPUT,
            ErrorKind::Config => CONFIG,
            ErrorKind::Unsupported => UNSUPPORTED,
            ErrorKind::Unavailable => UNAVAILABLE,
            ErrorKind::Conflict => NOTHING_CHANGED,
            ErrorKind::Corrupt | ErrorKind::Internal => INTERNAL,
            // `ErrorKind` may grow; a new kind is an internal error until it is mapped.
            #[allow(unreachable_patterns)]
            _ => INTERNAL,
        }
    }

    /// The snake-case name of `kind` that `--json` error lines carry.
    pub fn kind_name(kind: ErrorKind) -> &'static str {
        match kind {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Config => "config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
            #[allow(unreachable_patterns)]
            _ => "internal",
        }
    }
}
