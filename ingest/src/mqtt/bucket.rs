//! Token bucket for the per-device message rate. A message always takes a token, possibly
//! driving the balance negative; the caller then pauses reading until the balance is back to
//! zero, which slows the device to the configured rate without dropping anything.

use std::time::{Duration, Instant};

use super::config::RateLimit;

/// One device's bucket.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. A non-positive or non-finite rate or burst is treated as 1.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        let sane = |x: f64| if x.is_finite() && x > 0.0 { x } else { 1.0 };
        let burst = sane(limit.burst).max(1.0);
        TokenBucket {
            rate: sane(limit.messages_per_sec),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// Takes one token; returns how long to pause reading when the bucket is in debt.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64((-self.tokens / self.rate).min(3600.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                messages_per_sec: 10.0,
                burst: 3.0,
            },
            t0,
        );
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t0), None);
        let wait = b.take(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.take(t0 + Duration::from_millis(300)), None);
        let mut odd = TokenBucket::new(
            RateLimit {
                messages_per_sec: f64::NAN,
                burst: -1.0,
            },
            t0,
        );
        assert_eq!(odd.take(t0), None);
        assert!(odd.take(t0).is_some());
    }
}
