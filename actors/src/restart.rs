//! When to restart a failed actor: a bounded number of times in a window, with backoff.

use std::time::Duration;
// tokio's clock, so tests that pause time see restarts at the times they set.
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimits {
    /// At most this many restarts within `window`; one more and we give up.
    pub max_restarts: u32,
    pub window: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartLimits {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    RestartAfter(Duration),
    GiveUp,
}

/// The restart history of one child.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    recent: Vec<Instant>,
}

impl RestartTracker {
    /// Records a failure at `now` and decides what to do. Backoff doubles with each failure
    /// still inside the window, so a crash loop slows down instead of spinning.
    pub fn on_failure(&mut self, limits: &RestartLimits, now: Instant) -> RestartDecision {
        self.recent.retain(|t| now.duration_since(*t) < limits.window);
        if self.recent.len() as u32 >= limits.max_restarts {
            return RestartDecision::GiveUp;
        }
        let doublings = self.recent.len().min(16) as u32;
        self.recent.push(now);
        let backoff = limits.first_backoff.saturating_mul(1 << doublings).min(limits.max_backoff);
        RestartDecision::RestartAfter(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_gives_up_within_the_window() {
        let limits = RestartLimits { max_restarts: 3, ..Default::default() };
        let t0 = Instant::now();
        let mut tracker = RestartTracker::default();
        assert_eq!(tracker.on_failure(&limits, t0), RestartDecision::RestartAfter(Duration::from_millis(100)));
        assert_eq!(tracker.on_failure(&limits, t0 + Duration::from_secs(1)), RestartDecision::RestartAfter(Duration::from_millis(200)));
        assert_eq!(tracker.on_failure(&limits, t0 + Duration::from_secs(2)), RestartDecision::RestartAfter(Duration::from_millis(400)));
        assert_eq!(tracker.on_failure(&limits, t0 + Duration::from_secs(3)), RestartDecision::GiveUp);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let limits = RestartLimits { max_restarts: 2, ..Default::default() };
        let t0 = Instant::now();
        let mut tracker = RestartTracker::default();
        tracker.on_failure(&limits, t0);
        tracker.on_failure(&limits, t0 + Duration::from_secs(1));
        let later = t0 + Duration::from_secs(120);
        assert_eq!(tracker.on_failure(&limits, later), RestartDecision::RestartAfter(Duration::from_millis(100)));
    }

    #[test]
    fn backoff_is_capped() {
        let limits = RestartLimits { max_restarts: 100, max_backoff: Duration::from_secs(1), ..Default::default() };
        let t0 = Instant::now();
        let mut tracker = RestartTracker::default();
        let mut last = RestartDecision::GiveUp;
        for i in 0..20 {
            last = tracker.on_failure(&limits, t0 + Duration::from_millis(i));
        }
        assert_eq!(last, RestartDecision::RestartAfter(Duration::from_secs(1)));
    }
}
