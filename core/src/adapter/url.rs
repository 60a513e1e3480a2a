//! URL and prefix helpers that every backend's configuration shares: one redactor for the
//! URLs that error messages quote, and one rule for the instance prefix, so that moving from
//! one backend's URL to another's never turns a working prefix into an error.

use crate::error::{Error, Result};

/// The longest prefix [`check_prefix`] accepts. PostgreSQL keeps identifiers to 63 bytes, and
/// the prefix is followed by table and index names of up to 31.
pub const MAX_PREFIX_LEN: usize = 32;

/// What [`check_prefix`] accepts, as its errors state it.
pub const PREFIX_RULE: &str =
    "1 to 32 ASCII letters, digits or `_`, starting with a letter or `_` (such as `switchyard_`)";

/// Checks an instance prefix (the `prefix` setting) against the one rule every backend uses:
/// [`PREFIX_RULE`]. The prefix starts every table, index, key and broker-queue name an
/// instance owns, so it must be valid unquoted in SQL, in a Redis key and in an SQS queue
/// name. An empty prefix is refused: it would share every name with tables and keys that are
/// not Switchyard's.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let mut chars = prefix.chars();
    let ok = prefix.len() <= MAX_PREFIX_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::config(format!(
            "key `prefix`: `{prefix}` is not a valid prefix; accepted: {PREFIX_RULE}"
        )));
    }
    Ok(())
}

/// The URL with its password (in the user info, or a `password=` query value) replaced by
/// `***`, for error messages and logs. Anything that is not `scheme://…` comes back as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => pair.to_string(),
                })
                .collect();
            match fragment {
                Some(f) => format!("{path}?{}#{f}", query.join("&")),
                None => format!("{path}?{}", query.join("&")),
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn one_prefix_rule() {
        for ok in [
            "switchyard_",
            "switchyard",
            "t3kq9z_",
            "_x",
            "A1",
            &"x".repeat(32),
        ] {
            check_prefix(ok).unwrap();
        }
        for bad in [
            "",
            "my-app",
            "a.b",
            "a{b}",
            "a b",
            "1abc",
            "é",
            &"x".repeat(33),
        ] {
            let e = check_prefix(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(e.message().contains("key `prefix`"), "{e}");
            assert!(e.message().contains(PREFIX_RULE), "{e}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=app&password=hunter2&sslmode=disable"),
            "postgres://h/db?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://u:secret@h#insecure"),
            "rediss://u:***@h#insecure"
        );
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("sqs://eu-west-1/prod-"), "sqs://eu-west-1/prod-");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
