//! A socket's message rate: governor's limiter (as the per-token request
//! rate in `auth.rs`), on tokio's clock so that paused test time holds it.

use std::num::NonZeroU32;
use std::time::Duration;

/// governor's clock read from tokio's, which tests can pause and advance.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TokioClock;

impl governor::clock::Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The client messages one socket may send: a burst, then a steady rate.
pub(super) struct MessageRate {
    /// The limiter; a message that parses takes one cell.
    limiter: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        TokioClock,
        governor::middleware::NoOpMiddleware<std::time::Instant>,
    >,
}

impl MessageRate {
    /// `per_sec` messages a second on average and `burst` at once (at
    /// least one; a fraction is rounded down). A rate that is not positive
    /// refills once a day, which for a socket is never.
    pub(super) fn new(per_sec: f64, burst: f64) -> MessageRate {
        const DAY: Duration = Duration::from_secs(86_400);
        let period = if per_sec > 0.0 {
            Duration::try_from_secs_f64(1.0 / per_sec).map_or(DAY, |p| p.min(DAY))
        } else {
            DAY
        };
        // NaN becomes 0 here, and then 1.
        let burst = NonZeroU32::new(burst.clamp(1.0, f64::from(u32::MAX)) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        MessageRate {
            limiter: governor::RateLimiter::direct_with_clock(quota, TokioClock),
        }
    }

    /// Takes a message's cell; false: over the rate, refuse the message.
    pub(super) fn take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `n` messages at once pass.
    fn passed(r: &MessageRate, n: usize) -> usize {
        (0..n).filter(|_| r.take()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let r = MessageRate::new(2.0, 4.0);
        assert_eq!(passed(&r, 10), 4, "the burst");
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(passed(&r, 10), 0, "not yet a cell back");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(passed(&r, 10), 1, "one cell every 500 ms");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(passed(&r, 10), 4, "refills up to the burst, no more");
    }

    #[tokio::test(start_paused = true)]
    async fn odd_limits_still_give_a_limiter() {
        // (rate, burst, passing at once, passing after another second)
        let table = [
            (0.0, 3.0, 3, 0),
            (-1.0, 0.0, 1, 0),
            (f64::NAN, f64::NAN, 1, 0),
            (1.0, 2.9, 2, 1),
            (0.5, 1.0, 1, 0),
            (f64::INFINITY, 2.0, 2, 2),
        ];
        for (rate, burst, now, later) in table {
            let r = MessageRate::new(rate, burst);
            assert_eq!(passed(&r, 10), now, "rate {rate}, burst {burst}");
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(passed(&r, 10), later, "rate {rate}, burst {burst}, later");
        }
    }
}
