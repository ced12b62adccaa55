//! A worker-wide bytes-per-second cap (`max_bytes_per_second`), so a backup can run next to a
//! production node without saturating its disk or network.
//!
//! A reservation clock: each read of `n` bytes reserves the next `n / rate` seconds of the
//! budget and waits until its reservation starts. Concurrent copies share the budget fairly in
//! arrival order; no background task is needed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Limits throughput to a rate, or does nothing when unlimited.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: Option<u64>,
    /// When the budget is next free. A std mutex: held for one arithmetic step.
    next_free: Mutex<Instant>,
}

impl Throttle {
    /// A throttle at `bytes_per_second` (`None` or 0: unlimited).
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        Self {
            bytes_per_second: bytes_per_second.filter(|rate| *rate > 0),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be moved.
    pub async fn acquire(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else { return };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let start = {
            let mut next_free = self.next_free.lock().unwrap_or_else(|poison| poison.into_inner());
            let start = (*next_free).max(Instant::now());
            *next_free = start + cost;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn test_throttle_spreads_bytes_over_time_at_the_rate() {
        let throttle = Throttle::new(Some(1000));
        let started = Instant::now();
        for _ in 0..5 {
            throttle.acquire(1000).await;
        }
        // Five reservations of one second each: the fifth starts after four seconds.
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        let unlimited = Throttle::new(None);
        let started = Instant::now();
        unlimited.acquire(u64::MAX).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
