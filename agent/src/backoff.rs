//! Exponential backoff with jitter and a cap, for reconnecting to the collector.
//!
//! The cap is a hard upper bound on every delay, jitter included: delays are
//! clamped with `min(cap, ..)` (not `max`, a mistake easy to make and hard
//! to notice until a fleet of agents waits for hours).

use std::time::Duration;

use rand::Rng;

/// How randomness spreads the delays of many agents reconnecting at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: `min(cap, base * 2^n)`. For tests and reasoning.
    None,
    /// "Full jitter": uniform in `[0, min(cap, base * 2^n)]`.
    Full,
    /// "Decorrelated jitter": uniform in `[base, min(cap, 3 * previous)]`.
    Decorrelated,
}

/// Delay before the next reconnect attempt; [`Backoff::reset`] after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    attempt: u32,
    previous: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap` (a `cap` below
    /// `base` is raised to `base`).
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        let base = base.max(Duration::from_millis(1));
        Backoff {
            base,
            cap: cap.max(base),
            jitter,
            attempt: 0,
            previous: base,
        }
    }

    /// The agent's reconnect policy: 500 ms growing to 15 s, decorrelated.
    /// The cap keeps the gap after a collector restart short while a
    /// province's agents still spread their reconnects over 15 s.
    pub fn reconnect() -> Self {
        Self::new(
            Duration::from_millis(500),
            Duration::from_secs(15),
            Jitter::Decorrelated,
        )
    }

    /// Least delay (the first one after a reset, without jitter).
    pub fn base(&self) -> Duration {
        self.base
    }

    /// How the delays are spread.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Upper bound of any delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Number of delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets the failures: the next delay is short again.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.base;
    }

    /// The next delay, using the thread's random generator.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// The next delay, drawing randomness from `rng`.
    pub fn next_delay_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        // 2^n saturates long before u32 attempts could overflow anything.
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let delay = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => uniform(rng, Duration::ZERO, ceiling),
            Jitter::Decorrelated => {
                let upper = self.previous.saturating_mul(3).min(self.cap);
                uniform(rng, self.base.min(upper), upper)
            }
        };
        let delay = delay.min(self.cap);
        self.previous = delay.max(self.base);
        delay
    }
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
    let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(lo_ns..=hi_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use test_case::test_case;

    const MS: Duration = Duration::from_millis(1);

    #[test_case(Jitter::None; "no jitter")]
    #[test_case(Jitter::Full; "full jitter")]
    #[test_case(Jitter::Decorrelated; "decorrelated jitter")]
    fn cap_holds_over_many_attempts(jitter: Jitter) {
        for (base, cap) in [
            (MS * 100, MS * 1000),
            (MS, Duration::from_secs(30)),
            (MS * 500, MS * 500),
            (MS * 700, MS * 300), // cap below base: base wins
            (Duration::from_secs(3600), Duration::from_secs(7200)),
        ] {
            let mut rng = StdRng::seed_from_u64(7);
            let mut b = Backoff::new(base, cap, jitter);
            let bound = cap.max(base);
            for n in 0..200 {
                let d = b.next_delay_with(&mut rng);
                assert!(d <= bound, "attempt {n}: {d:?} above cap {bound:?}");
            }
        }
    }

    #[test]
    fn without_jitter_doubles_up_to_the_cap() {
        let mut b = Backoff::new(MS * 100, MS * 1000, Jitter::None);
        let got: Vec<_> = (0..7).map(|_| b.next_delay()).collect();
        let want = [100, 200, 400, 800, 1000, 1000, 1000].map(|m| MS * m);
        assert_eq!(got, want);
    }

    #[test]
    fn decorrelated_reaches_the_cap_and_stays_above_base() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(MS * 100, Duration::from_secs(10), Jitter::Decorrelated);
        let delays: Vec<_> = (0..100).map(|_| b.next_delay_with(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= MS * 100));
        // Grows: after many failures some delay is well above the base.
        assert!(
            delays.iter().any(|d| *d > Duration::from_secs(3)),
            "{delays:?}"
        );
    }

    #[test]
    fn reset_starts_short_again() {
        let mut b = Backoff::new(MS * 100, Duration::from_secs(60), Jitter::None);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 10);
        b.reset();
        assert_eq!(b.next_delay(), MS * 100);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), Jitter::Full);
        b.attempt = u32::MAX - 1;
        for _ in 0..5 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }
}
