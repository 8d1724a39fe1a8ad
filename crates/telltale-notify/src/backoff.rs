//! The retry schedule of notifications, pure: the hub supplies the attempt
//! count, the clock and the randomness, and stores when the next attempt is
//! due. The schedule itself is the workspace's one backoff
//! (`telltale_limits::Schedule`); this module fixes its jitter and counts
//! attempts from 1, as the outbox does.

use std::time::Duration;
use telltale_limits::{Jitter, Schedule};

/// How long to wait after failed attempt number `attempt` (1 for the first
/// attempt) before the next one: exponential backoff with "equal jitter".
///
/// The base is `initial * 2^(attempt - 1)`, capped at `max`; the delay is
/// half the base plus `jitter` times the other half, so it lies in
/// `[base / 2, base]`. Equal rather than full jitter: full jitter
/// (`jitter * base`) can retry at once, which hammers a receiver that is down;
/// equal jitter always waits at least half the base and still spreads the
/// retries of many notifications that failed together.
///
/// `jitter` is a random number in `0..=1` from the caller (clamped; NaN
/// counts as 0). When the receiver sent `Retry-After`, wait the longer of
/// the two.
pub fn next_attempt(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    Schedule::new(initial, max, Jitter::Equal).wait(attempt.saturating_sub(1), jitter)
}

/// Whether a notification first attempted at `first_attempt_ms` should be
/// dropped at `now_ms` (both ms since the Unix epoch, hub time): true once
/// `give_up_after` has passed. A clock that went back never gives up.
pub fn gives_up(first_attempt_ms: i64, now_ms: i64, give_up_after: Duration) -> bool {
    let elapsed = now_ms.saturating_sub(first_attempt_ms);
    elapsed >= 0 && u128::from(elapsed.unsigned_abs()) >= give_up_after.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_attempt_table() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (attempt, initial, max, jitter, expected)
        let table = [
            (1, s(5), s(600), 0.0, ms(2_500)),
            (1, s(5), s(600), 1.0, s(5)),
            (1, s(5), s(600), 0.5, ms(3_750)),
            (0, s(5), s(600), 1.0, s(5)),
            (2, s(5), s(600), 1.0, s(10)),
            (3, s(5), s(600), 0.0, s(10)),
            (8, s(5), s(600), 1.0, s(600)),
            (8, s(5), s(600), 0.0, s(300)),
            (u32::MAX, s(5), s(600), 1.0, s(600)),
            (40, s(u64::MAX / 4), s(600), 1.0, s(600)),
            (1, s(5), s(600), -3.0, ms(2_500)),
            (1, s(5), s(600), 7.0, s(5)),
            (1, s(5), s(600), f64::NAN, ms(2_500)),
            (1, s(5), s(2), 1.0, s(2)),
            (1, Duration::ZERO, s(600), 1.0, Duration::ZERO),
        ];
        for (attempt, initial, max, jitter, want) in table {
            let got = next_attempt(attempt, initial, max, jitter);
            assert_eq!(
                got, want,
                "attempt {attempt}, initial {initial:?}, max {max:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn next_attempt_grows_and_stays_in_bounds() {
        let (initial, max) = (Duration::from_secs(5), Duration::from_secs(600));
        let mut last = Duration::ZERO;
        for attempt in 1..50 {
            let low = next_attempt(attempt, initial, max, 0.0);
            let high = next_attempt(attempt, initial, max, 1.0);
            assert!(
                low >= last / 2 && low <= high && high <= max,
                "attempt {attempt}"
            );
            last = high;
        }
    }

    #[test]
    fn gives_up_table() {
        let day = Duration::from_secs(86_400);
        // (first, now, after, expected)
        let table = [
            (0, 0, day, false),
            (0, 86_399_999, day, false),
            (0, 86_400_000, day, true),
            (1_000, 86_401_000, day, true),
            (5_000, 1_000, day, false),
            (i64::MIN, i64::MAX, day, true),
            (i64::MAX, i64::MIN, day, false),
            (0, 0, Duration::ZERO, true),
            (0, i64::MAX, Duration::MAX, false),
        ];
        for (first, now, after, want) in table {
            assert_eq!(
                gives_up(first, now, after),
                want,
                "first {first}, now {now}, after {after:?}"
            );
        }
    }
}
