//! Exponential backoff with jitter and a cap, for delivery retries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Delay before retry `n`: `initial * 2^(n-1)`, capped at `max`, then a random
/// share of up to half of it taken off so that many retries do not line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry `attempt` (1 = first retry) without jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let grown = self.initial.saturating_mul(1u32 << exp.min(31));
        // The cap wins: `min`, not `max`.
        grown.min(self.max)
    }

    /// The delay before retry `attempt`, with jitter in `[ceiling/2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let c = self.ceiling(attempt);
        let half = c / 2;
        let spread = c.saturating_sub(half).as_micros() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        };
        half + Duration::from_micros(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(300),
    };

    #[test_case(1 => 2; "first retry")]
    #[test_case(2 => 4; "doubles")]
    #[test_case(5 => 32; "fifth")]
    #[test_case(8 => 256; "below the cap")]
    #[test_case(9 => 300; "capped")]
    #[test_case(40 => 300; "no overflow far out")]
    #[test_case(u32::MAX => 300; "no overflow at the end")]
    fn ceiling_secs(attempt: u32) -> u64 {
        B.ceiling(attempt).as_secs()
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        for attempt in 1..12 {
            let c = B.ceiling(attempt);
            for _ in 0..50 {
                let d = B.delay(attempt);
                assert!(d >= c / 2 && d <= c, "attempt {attempt}: {d:?} vs {c:?}");
            }
        }
    }
}
