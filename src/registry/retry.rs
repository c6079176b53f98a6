//! Bounded exponential backoff for transient failures: connection errors,
//! timeouts, 5xx and 429, honouring `Retry-After` (delta-seconds or HTTP-date),
//! capped so that a registry cannot park a push for long.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often and how long to retry one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time.
    pub initial_delay: Duration,
    /// Upper bound of any one delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// What to do about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retrying will not help.
    Fatal,
    /// Retrying may help; the server may have said when.
    Retry { after: Option<Duration> },
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt + 1` (attempts count from 1), with
    /// +-20% jitter, or the server's `Retry-After`, both capped.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self.initial_delay.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let base = exp.min(self.max_delay);
        // Cheap jitter without a RNG dependency: the clock's sub-second nanos.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let factor = 0.8 + f64::from(nanos % 400) / 1000.0;
        base.mul_f64(factor).min(self.max_delay)
    }

    /// Run `op` until it succeeds, `classify` calls its error fatal, or the
    /// attempts run out. `op` gets the attempt number, from 1.
    pub fn run<T, E>(
        &self,
        mut op: impl FnMut(u32) -> Result<T, E>,
        classify: impl Fn(&E) -> Verdict,
    ) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) => match classify(&e) {
                    Verdict::Retry { after } if attempt < self.max_attempts => {
                        std::thread::sleep(self.delay(attempt, after));
                        attempt += 1;
                    }
                    _ => return Err(e),
                },
            }
        }
    }
}

/// Parse a `Retry-After` value: delta-seconds or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`). A date in the past gives zero.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(v)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// Seconds since the epoch of an HTTP-date: IMF-fixdate, and the obsolete RFC 850
/// and asctime forms that RFC 9110 section 5.6.7 says recipients must accept.
fn parse_http_date(v: &str) -> Option<u64> {
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse_http_date(obsolete), Some(784_111_777), "{obsolete}");
        }
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = p.delay(1, None);
        assert!(
            d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120),
            "{d1:?}"
        );
        assert!(p.delay(30, None) <= Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn runs_until_fatal_or_exhausted() {
        let p = RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let classify = |e: &&str| {
            if *e == "x" {
                Verdict::Retry { after: None }
            } else {
                Verdict::Fatal
            }
        };
        let mut n = 0;
        let r: Result<(), &str> = p.run(
            |_| {
                n += 1;
                Err("x")
            },
            classify,
        );
        assert_eq!((r, n), (Err("x"), 3));
        let mut n = 0;
        let r: Result<(), &str> = p.run(
            |_| {
                n += 1;
                Err("f")
            },
            classify,
        );
        assert_eq!((r, n), (Err("f"), 1));
        let r: Result<u32, &str> = p.run(|a| if a < 2 { Err("x") } else { Ok(a) }, classify);
        assert_eq!(r, Ok(2));
    }
}
