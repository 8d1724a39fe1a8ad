//! The retry schedule: the wait after `n` failures grows as `initial · 2ⁿ`
//! up to `max` (the ceiling), and a random share of it is taken off so that
//! many clients that failed together do not come back in step. Pure: the
//! caller passes the random number, keeps the count (or a [`Backoff`]) and
//! sleeps.

use std::time::Duration;

/// How much of the ceiling a wait may take off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform between `initial` and the ceiling: the first retry after a
    /// success is always `initial` (the agent's reconnects: come back fast,
    /// spread out once the hub stays away).
    FromInitial,
    /// Uniform between half the ceiling and the ceiling ("equal jitter"):
    /// never at once, so a receiver that is down is not hammered, still
    /// spread (the hub's notification retries).
    Equal,
    /// Uniform between the ceiling less `percent` of it (at most 100) and
    /// the ceiling: every wait close to the doubling, so a person reading
    /// "trying again in 4.0 s" sees the schedule, still spread enough that
    /// the clients of a restarted hub do not come back in step (the laptop
    /// client's reconnects, with 20).
    UpTo {
        /// The most taken off the ceiling, in percent.
        percent: u8,
    },
}

/// A backoff schedule: what to wait after a number of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The ceiling after no failure yet: the first wait's.
    pub initial: Duration,
    /// The highest ceiling. Below `initial`, every ceiling is `max`.
    pub max: Duration,
    /// How the wait is drawn under the ceiling.
    pub jitter: Jitter,
}

impl Schedule {
    /// A schedule from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration, jitter: Jitter) -> Schedule {
        Schedule {
            initial,
            max,
            jitter,
        }
    }

    /// The ceiling of the wait after `failures` earlier failures:
    /// `initial · 2^failures`, at most `max` (no overflow, however many).
    pub fn ceiling(&self, failures: u32) -> Duration {
        self.initial
            .checked_mul(1u32 << failures.min(31))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The wait after `failures` earlier failures; `random` is a number in
    /// `0..=1` from the caller (clamped; NaN counts as 0): 0 gives the
    /// shortest wait the jitter allows, 1 the ceiling.
    pub fn wait(&self, failures: u32, random: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let floor = match self.jitter {
            Jitter::FromInitial => self.initial.min(ceiling),
            Jitter::Equal => ceiling / 2,
            Jitter::UpTo { percent } => {
                ceiling - ceiling.mul_f64(f64::from(percent.min(100)) / 100.0)
            }
        };
        floor + (ceiling - floor).mul_f64(random)
    }
}

/// A [`Schedule`] with its failure count, for a loop that retries until a
/// success.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// What to wait.
    schedule: Schedule,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    /// Starts with no failure.
    pub fn new(schedule: Schedule) -> Backoff {
        Backoff {
            schedule,
            failures: 0,
        }
    }

    /// The ceiling of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        self.schedule.ceiling(self.failures)
    }

    /// Counts a failure and says how long to wait before the next try
    /// (`random` as for [`Schedule::wait`]).
    pub fn next_wait(&mut self, random: f64) -> Duration {
        let wait = self.schedule.wait(self.failures, random);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn equal_jitter_table() {
        // (failures, initial, max, random, expected)
        let table = [
            (0, S(5), S(600), 0.0, MS(2_500)),
            (0, S(5), S(600), 1.0, S(5)),
            (0, S(5), S(600), 0.5, MS(3_750)),
            (1, S(5), S(600), 1.0, S(10)),
            (2, S(5), S(600), 0.0, S(10)),
            (7, S(5), S(600), 1.0, S(600)),
            (7, S(5), S(600), 0.0, S(300)),
            (u32::MAX, S(5), S(600), 1.0, S(600)),
            (39, S(u64::MAX / 4), S(600), 1.0, S(600)),
            (0, S(5), S(600), -3.0, MS(2_500)),
            (0, S(5), S(600), 7.0, S(5)),
            (0, S(5), S(600), f64::NAN, MS(2_500)),
            (0, S(5), S(2), 1.0, S(2)),
            (0, Duration::ZERO, S(600), 1.0, Duration::ZERO),
        ];
        for (failures, initial, max, random, want) in table {
            let got = Schedule::new(initial, max, Jitter::Equal).wait(failures, random);
            assert_eq!(
                got, want,
                "failures {failures}, initial {initial:?}, max {max:?}, random {random}"
            );
        }
    }

    #[test]
    fn from_initial_stays_in_bounds_and_grows() {
        let (min, max) = (MS(500), MS(30_000));
        let mut b = Backoff::new(Schedule::new(min, max, Jitter::FromInitial));
        let mut rng = StdRng::seed_from_u64(7);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling();
                let w = b.next_wait(rng.random());
                assert!(w >= min && w <= c && c <= max, "{w:?} {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]
        );
        // Many draws at the ceiling spread over the window.
        let draws: Vec<Duration> = (0..200).map(|_| b.next_wait(rng.random())).collect();
        assert!(draws.iter().all(|w| *w >= min && *w <= max));
        assert!(draws.iter().any(|w| *w < MS(10_000)));
        assert!(draws.iter().any(|w| *w > MS(20_000)));
        b.reset();
        assert_eq!(b.attempts(), 0);
        // The first wait after a success is the shortest, whatever the draw.
        assert_eq!(b.next_wait(rng.random()), min);
    }

    #[test]
    fn up_to_table() {
        // (failures, percent, random, expected), from 500 ms to 30 s.
        let table = [
            (0, 20, 0.0, MS(400)),
            (0, 20, 1.0, MS(500)),
            (0, 20, 0.5, MS(450)),
            (3, 20, 0.0, MS(3_200)),
            (3, 20, 1.0, MS(4_000)),
            (6, 20, 0.0, S(24)),
            (6, 20, 1.0, S(30)),
            (u32::MAX, 20, 0.0, S(24)),
            (0, 0, 0.0, MS(500)),
            (0, 100, 0.0, Duration::ZERO),
            (0, 255, 0.0, Duration::ZERO),
            (0, 20, f64::NAN, MS(400)),
            (0, 20, 9.0, MS(500)),
        ];
        for (failures, percent, random, want) in table {
            let s = Schedule::new(MS(500), S(30), Jitter::UpTo { percent });
            assert_eq!(
                s.wait(failures, random),
                want,
                "failures {failures}, percent {percent}, random {random}"
            );
        }
        // Drawn at random, every wait is within a fifth below its ceiling.
        let mut b = Backoff::new(Schedule::new(MS(500), S(30), Jitter::UpTo { percent: 20 }));
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let c = b.ceiling();
            let w = b.next_wait(rng.random());
            assert!(w <= c && w >= c.mul_f64(0.8), "{w:?} {c:?}");
        }
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Schedule::new(MS(1), S(3600), Jitter::FromInitial));
        for i in 0..1000 {
            assert!(b.next_wait(f64::from(i % 7) / 6.0) <= S(3600));
        }
        assert_eq!(b.ceiling(), S(3600));
        let mut same = Backoff::new(Schedule::new(MS(5), MS(5), Jitter::FromInitial));
        assert_eq!(same.next_wait(0.3), MS(5));
        assert_eq!(same.next_wait(0.9), MS(5));
    }

    #[test]
    fn equal_jitter_grows_and_stays_in_bounds() {
        let s = Schedule::new(S(5), S(600), Jitter::Equal);
        let mut last = Duration::ZERO;
        for failures in 0..49 {
            let (low, high) = (s.wait(failures, 0.0), s.wait(failures, 1.0));
            assert!(
                low >= last / 2 && low <= high && high <= S(600),
                "failures {failures}"
            );
            last = high;
        }
    }
}
