//! Exponential back-off between attempts to reach something that went away (a meter's source,
//! the MQTT broker).

use std::time::Duration;

/// Waits that double from `min` up to `max`, and start at `min` again after a success.
///
/// ```text
/// let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// backoff.next_wait(); // 500 ms, then 1 s, 2 s, 4 s, … 30 s, 30 s, …
/// backoff.reset();     // after a success: 500 ms again
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Back-off from `min` to `max` (`max` is raised to `min` if smaller).
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < min.as_nanos() {
            min
        } else {
            max
        };
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// After a success: the next wait is the shortest again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_start_over_after_a_reset() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(250), ms(1_500));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits, [ms(250), ms(500), ms(1_000), ms(1_500), ms(1_500)]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), ms(250));
        let mut odd = Backoff::new(ms(10), ms(1));
        assert_eq!((odd.next_wait(), odd.next_wait()), (ms(10), ms(10)));
    }
}
