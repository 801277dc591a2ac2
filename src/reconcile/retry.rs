//! Retries with exponential backoff and full jitter (the AWS architecture
//! blog's "full jitter": sleep a random time up to the exponential cap), so
//! many gateways failing together do not retry in lockstep.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry), given a
    /// uniform random `unit` in [0, 1) and an optional server hint
    /// (`Retry-After`), which is honoured but capped at `max`.
    pub fn delay(&self, retry: u32, unit: f64, hint: Option<Duration>) -> Duration {
        if let Some(hint) = hint {
            return hint.min(self.max);
        }
        let exponent = retry.saturating_sub(1).min(16);
        let cap = self.base.saturating_mul(1 << exponent).min(self.max);
        cap.mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_to_a_cap_with_jitter() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 0.999_999, None).as_millis(), 199);
        assert_eq!(backoff.delay(3, 0.5, None), Duration::from_millis(400));
        assert_eq!(backoff.delay(30, 1.0, None), Duration::from_secs(5));
        assert_eq!(backoff.delay(2, 0.0, None), Duration::ZERO);
        let hint = Some(Duration::from_secs(60));
        assert_eq!(backoff.delay(1, 0.5, hint), Duration::from_secs(5));
    }
}
