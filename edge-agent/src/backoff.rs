//! Reconnect backoff: exponential growth between a floor and a ceiling with
//! full jitter. Pure: the caller passes the random number generator.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with full jitter.
///
/// The n-th wait after a success is drawn uniformly from
/// `[min, min(max, min·2ⁿ)]`, so many agents that lost the same hub do not
/// come back in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Shortest wait.
    min: Duration,
    /// Longest wait.
    max: Duration,
    /// Failures since the last success.
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max` (swapped if given the wrong way round).
    pub fn new(min: Duration, max: Duration) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        Self {
            min,
            max,
            attempt: 0,
        }
    }

    /// The ceiling of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next wait; each call widens the window until it reaches `max`.
    pub fn next_wait(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if ceiling <= self.min {
            return self.min;
        }
        let min = self.min.as_millis() as u64;
        let ceil = ceiling.as_millis() as u64;
        Duration::from_millis(rng.random_range(min..=ceil))
    }

    /// Back to the shortest wait (after a successful connect).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn stays_in_bounds_and_grows() {
        let min = Duration::from_millis(500);
        let max = Duration::from_millis(30_000);
        let mut b = Backoff::new(min, max);
        let mut rng = StdRng::seed_from_u64(7);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling();
                let w = b.next_wait(&mut rng);
                assert!(w >= min && w <= c && c <= max, "{w:?} {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]
        );
        // Many draws at the ceiling spread over the window.
        let draws: Vec<Duration> = (0..200).map(|_| b.next_wait(&mut rng)).collect();
        assert!(draws.iter().all(|w| *w >= min && *w <= max));
        assert!(draws.iter().any(|w| *w < Duration::from_millis(10_000)));
        assert!(draws.iter().any(|w| *w > Duration::from_millis(20_000)));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_wait(&mut rng), min);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(3600));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert!(b.next_wait(&mut rng) <= Duration::from_secs(3600));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(3600));
        let mut same = Backoff::new(Duration::from_millis(5), Duration::from_millis(5));
        assert_eq!(same.next_wait(&mut rng), Duration::from_millis(5));
        assert_eq!(same.next_wait(&mut rng), Duration::from_millis(5));
    }
}
