//! The URL schemes this build accepts for `storage` and `queue`, each behind its cargo feature,
//! and the checks that name the accepted ones. A leaf: the configuration checks its URLs here,
//! and `connect.rs` picks the backend by the scheme found here.

use switchyard_core::{Error, Result};

/// Storage URL schemes: (scheme, cargo feature, compiled in).
const STORAGE_SCHEMES: &[(&str, &str, bool)] = &[
    ("sqlite", "sqlite", cfg!(feature = "sqlite")),
    ("postgres", "postgres", cfg!(feature = "postgres")),
    ("postgresql", "postgres", cfg!(feature = "postgres")),
    ("redis", "redis", cfg!(feature = "redis")),
    ("rediss", "redis", cfg!(feature = "redis")),
];

/// Queue URL schemes besides `storage`.
const QUEUE_SCHEMES: &[(&str, &str, bool)] = &[
    ("sqs", "sqs", cfg!(feature = "sqs")),
    ("amqp", "rabbitmq", cfg!(feature = "rabbitmq")),
    ("amqps", "rabbitmq", cfg!(feature = "rabbitmq")),
    ("redis", "redis", cfg!(feature = "redis")),
    ("rediss", "redis", cfg!(feature = "redis")),
];

fn accepted(schemes: &[(&str, &str, bool)], extra: &str) -> String {
    let mut parts: Vec<String> = extra
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for (scheme, feature, on) in schemes {
        parts.push(if *on {
            format!("{scheme}://…")
        } else {
            format!("{scheme}://… (needs cargo feature `{feature}`)")
        });
    }
    parts.join(", ")
}

fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    (!scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+'))
    .then_some(scheme)
}

/// Checks the `storage` URL and returns its scheme.
pub fn storage_scheme(url: &str) -> Result<&str> {
    let bad = || {
        Error::config(format!(
            "key `storage`: `{url}` is not a supported storage URL; accepted: {}",
            accepted(STORAGE_SCHEMES, "")
        ))
    };
    let scheme = scheme_of(url).ok_or_else(bad)?;
    match STORAGE_SCHEMES.iter().find(|(s, _, _)| *s == scheme) {
        Some((_, _, true)) => Ok(scheme),
        _ => Err(bad()),
    }
}

/// Checks the `queue` setting and returns its scheme (`storage` for the storage's own).
pub fn queue_scheme(url: &str) -> Result<&str> {
    if url == "storage" {
        return Ok("storage");
    }
    let bad = || {
        Error::config(format!(
            "key `queue`: `{url}` is not a supported queue; accepted: {}",
            accepted(QUEUE_SCHEMES, "storage")
        ))
    };
    let scheme = scheme_of(url).ok_or_else(bad)?;
    match QUEUE_SCHEMES.iter().find(|(s, _, _)| *s == scheme) {
        Some((_, _, true)) => Ok(scheme),
        _ => Err(bad()),
    }
}
