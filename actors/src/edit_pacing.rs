//! Pacing the edits of streamed replies. Discord allows 5 message edits per 5 s in a channel,
//! shared by every reply streaming in it, so the budget is the channel's, not the reply's.
//! Times are milliseconds on any monotonic clock.

use std::collections::VecDeque;

/// Discord's edit limit in one channel: this many edits...
pub const EDITS_PER_WINDOW: usize = 5;
/// ...in any window of 5 s; a quarter second more here, for the requests' travel (Discord
/// counts them as they arrive).
pub const WINDOW_MS: u64 = 5_250;

/// The edits a channel made lately.
#[derive(Debug, Clone, Default)]
pub struct ChannelEdits {
    /// When each edit of the last window was (or is scheduled to be) made, oldest first.
    recent: VecDeque<u64>,
}

impl ChannelEdits {
    /// Takes a slot for an edit now, if the last window has one free: for the edits in
    /// between, which are simply skipped when the channel is busy.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.forget_before(now_ms);
        if self.recent.len() < EDITS_PER_WINDOW {
            self.recent.push_back(now_ms);
            return true;
        }
        false
    }

    /// Takes the first free slot at or after `now_ms` and says when it is: for a reply's final
    /// edit, which must be made and waits for its turn.
    pub fn take_next(&mut self, now_ms: u64) -> u64 {
        self.forget_before(now_ms);
        // With a full window, the slot frees when the edit `EDITS_PER_WINDOW` back leaves it;
        // slots already promised to others count too.
        let at = match self.recent.len().checked_sub(EDITS_PER_WINDOW) {
            Some(back) => (self.recent[back] + WINDOW_MS).max(now_ms),
            None => now_ms,
        };
        self.recent.push_back(at);
        at
    }

    /// No edit is remembered: the channel may be forgotten.
    pub fn is_idle(&mut self, now_ms: u64) -> bool {
        self.forget_before(now_ms);
        self.recent.is_empty()
    }

    fn forget_before(&mut self, now_ms: u64) {
        while self.recent.front().is_some_and(|&t| t + WINDOW_MS <= now_ms) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most edits in any window of `WINDOW_MS` among `times`.
    fn busiest_window(times: &[u64]) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        sorted.iter().enumerate().map(|(i, &t)| sorted[i..].iter().take_while(|&&u| u < t + WINDOW_MS).count()).max().unwrap_or(0)
    }

    #[test]
    fn three_replies_streaming_at_once_share_five_edits_per_five_seconds() {
        let mut channel = ChannelEdits::default();
        let mut made = Vec::new();
        // Three replies each want an edit every 100 ms for 12 s, then each a final edit.
        for now in (0..12_000).step_by(100) {
            for _ in 0..3 {
                if channel.try_take(now) {
                    made.push(now);
                }
            }
        }
        for _ in 0..3 {
            made.push(channel.take_next(12_000));
        }
        assert_eq!(busiest_window(&made), EDITS_PER_WINDOW);
        assert!(made.len() >= 12 + 3, "the budget is used, not wasted: {}", made.len());
        let finals = &made[made.len() - 3..];
        assert!(finals.iter().all(|&t| t < 12_000 + WINDOW_MS), "each final edit within one window: {finals:?}");
    }

    #[test]
    fn a_final_edit_waits_for_the_first_free_slot() {
        let mut channel = ChannelEdits::default();
        for t in [0, 10, 20, 30, 40] {
            assert!(channel.try_take(t));
        }
        assert!(!channel.try_take(50), "the window is full");
        assert_eq!(channel.take_next(50), WINDOW_MS, "when the first edit leaves the window");
        assert_eq!(channel.take_next(50), WINDOW_MS + 10, "the next one after that");
        assert!(!channel.is_idle(9_000));
        assert!(channel.is_idle(2 * WINDOW_MS + 10));
        assert!(channel.try_take(2 * WINDOW_MS + 10));
    }
}
