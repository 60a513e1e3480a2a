//! Values of command-line flags that clap leaves as text, so that a bad one is an
//! `invalid input` error (exit 65) naming the flag and what it accepts: durations and job ids.

use std::time::Duration;

use switchyard_core::{Error, Result};

use crate::config::MAX_SECS;

/// What a duration flag accepts, for error messages.
const ACCEPTED: &str = "accepted: a duration such as 90s, 15m, 1h30m or 7d, or a number of \
                        seconds from 0 to 1e12";

/// A duration flag's value: a number of seconds (`90`, `1.5`) or a humantime duration (`90s`,
/// `15m`, `1h30m`, `7d`), from 0 to [`MAX_SECS`] seconds. `flag` (e.g. `--delay`) names it in
/// errors; a negative value gets its own message.
pub(crate) fn duration(flag: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let refused = |why: &str| Error::invalid(format!("flag `{flag}`: `{text}` {why}; {ACCEPTED}"));
    if t.starts_with('-') {
        return Err(refused(
            "is negative, and negative durations are not accepted",
        ));
    }
    let d = match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v <= MAX_SECS => Duration::try_from_secs_f64(v)
            .map_err(|_| refused("is not a valid number of seconds"))?,
        Ok(_) => return Err(refused("is not a valid number of seconds")),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| refused(&format!("is not a duration ({e})")))?,
    };
    if d.as_secs_f64() > MAX_SECS {
        return Err(refused("is too long"));
    }
    Ok(d)
}

/// A job id argument.
pub(crate) fn job_id(id: &str) -> Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        Error::invalid(format!(
            "`{id}` is not a job id; accepted: a UUID such as 0192f0c1-7b1e-7c3a-9f00-3c2b1a0d9e8f"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("--d", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("--d", "1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("--d", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("--d", "15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            duration("--d", "7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            duration("--d", "1h 30m").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["-5", "-5m", "inf", "NaN", "1e13", "soon", "", "100000000y"] {
            let e = duration("--delay", bad).unwrap_err();
            assert_eq!(e.kind(), switchyard_core::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("flag `--delay`"), "{e}");
            assert!(e.to_string().contains("90s, 15m"), "{e}");
        }
        assert!(duration("--delay", "-5")
            .unwrap_err()
            .to_string()
            .contains("negative durations are not accepted"));
    }
}
