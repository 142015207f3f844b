//! Hourly counters in the store, behind "replies/errors in the last 24 h".

use crate::ports::StatsStore;

/// The hour (since the Unix epoch) holding `at_ms`.
pub fn hour(at_ms: u64) -> u64 {
    at_ms / 3_600_000
}

/// The counter of `what` for the hour holding `now_ms`.
pub fn hour_key(what: &str, now_ms: u64) -> String {
    format!("{what}@{}", hour(now_ms))
}

/// The hour an hourly counter's name counts (`None` for other counters).
pub fn hour_of(name: &str) -> Option<u64> {
    let (what, hour) = name.rsplit_once('@')?;
    if what.is_empty() {
        return None; // the store's own `@…` records
    }
    hour.parse().ok()
}

/// Hourly counters are kept this long (then `StatsStore::prune_hourly` drops them).
pub const KEEP_HOURLY_DAYS: u64 = 400;

/// Adds one to this hour's counter of `what`; a failure is logged, never fatal.
pub fn count_hourly(store: &dyn StatsStore, what: &str, now_ms: u64) {
    if let Err(e) = store.add_stat(&hour_key(what, now_ms), 1) {
        tracing::warn!(error = %e, "could not count {what}");
    }
}

/// Sum of the hourly counters of `what` over the last 24 hours.
pub fn last_24h(store: &dyn StatsStore, what: &str, now_ms: u64) -> u64 {
    hourly(store, what, now_ms, 24).iter().sum()
}

/// The hourly counters of `what` for the last `hours` hours, oldest first (this hour last).
pub fn hourly(store: &dyn StatsStore, what: &str, now_ms: u64, hours: u64) -> Vec<u64> {
    (0..hours).rev().map(|h| store.stat(&hour_key(what, now_ms.saturating_sub(h * 3_600_000))).unwrap_or(0)).collect()
}

/// Counts a delivered reply that took `took_ms` from the message to its end: the reply, its
/// time (for the mean), and the hour's fastest and slowest.
pub fn count_reply_time(store: &dyn StatsStore, took_ms: u64, now_ms: u64) {
    // 0 stands for "no reply this hour" in the fastest counter.
    let took_ms = took_ms.max(1);
    let counted = store
        .add_stat(&hour_key("replies", now_ms), 1)
        .and_then(|()| store.add_stat(&hour_key("reply_ms", now_ms), took_ms))
        .and_then(|()| store.keep_extreme(&hour_key("reply_ms_fastest", now_ms), took_ms, Extreme::Lowest))
        .and_then(|()| store.keep_extreme(&hour_key("reply_ms_slowest", now_ms), took_ms, Extreme::Highest));
    if let Err(e) = counted {
        tracing::warn!(error = %e, "could not count a reply");
    }
}

/// Which value [`StatsStore::keep_extreme`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extreme {
    Lowest,
    Highest,
}

impl Extreme {
    /// The counter after `value` was seen; `current` 0 means none yet.
    pub fn keep(self, current: u64, value: u64) -> u64 {
        match self {
            _ if current == 0 => value,
            Extreme::Lowest => current.min(value),
            Extreme::Highest => current.max(value),
        }
    }
}

/// What the bot did over a window of hours (the console's "last 24 hours" and "7 days").
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub hours: u64,
    /// Messages seen where the bot may talk.
    pub messages: u64,
    pub replies: u64,
    pub errors: u64,
    pub mean_reply_ms: Option<u64>,
    pub fastest_reply_ms: Option<u64>,
    pub slowest_reply_ms: Option<u64>,
}

impl Window {
    /// Replies per message seen, when any was seen.
    pub fn reply_rate(&self) -> Option<f64> {
        (self.messages > 0).then(|| self.replies as f64 / self.messages as f64)
    }
}

/// The last `hours` hours up to the one holding `now_ms`.
pub fn window(store: &dyn StatsStore, now_ms: u64, hours: u64) -> Window {
    let series = |what: &str| hourly(store, what, now_ms, hours);
    let nonzero = |what: &str| series(what).into_iter().filter(|&v| v > 0);
    // Each series is read once: a week is 168 store reads a series.
    let (replies, reply_ms) = (series("replies"), series("reply_ms"));
    // Replies counted before reply times were kept have no time: the mean is over timed ones.
    let timed = reply_ms.iter().zip(&replies).filter(|(ms, _)| **ms > 0).map(|(_, n)| n).sum::<u64>();
    Window {
        hours,
        messages: series("messages").iter().sum(),
        replies: replies.iter().sum(),
        errors: series("errors").iter().sum(),
        mean_reply_ms: (timed > 0).then(|| reply_ms.iter().sum::<u64>() / timed),
        fastest_reply_ms: nonzero("reply_ms_fastest").min(),
        slowest_reply_ms: nonzero("reply_ms_slowest").max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryStore;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_window_sums_its_hours_and_keeps_the_fastest_and_slowest_reply() {
        let store = MemoryStore::default();
        let now = 1_000 * HOUR + 5;
        count_reply_time(&store, 1_200, now - 30 * HOUR); // outside a day, inside a week
        count_reply_time(&store, 800, now - 2 * HOUR);
        count_reply_time(&store, 2_000, now);
        for _ in 0..8 {
            count_hourly(&store, "messages", now);
        }
        count_hourly(&store, "errors", now - HOUR);
        let day = window(&store, now, 24);
        assert_eq!((day.messages, day.replies, day.errors), (8, 2, 1));
        assert_eq!((day.mean_reply_ms, day.fastest_reply_ms, day.slowest_reply_ms), (Some(1_400), Some(800), Some(2_000)));
        assert_eq!(day.reply_rate(), Some(0.25));
        let week = window(&store, now, 168);
        assert_eq!((week.replies, week.fastest_reply_ms, week.mean_reply_ms), (3, Some(800), Some(1_333)));
        assert_eq!(hourly(&store, "replies", now, 3), vec![1, 0, 1]);
    }

    #[test]
    fn an_empty_window_has_no_times_and_no_rate() {
        let day = window(&MemoryStore::default(), 50 * HOUR, 24);
        assert_eq!(day, Window { hours: 24, ..Window::default() });
        assert_eq!(day.reply_rate(), None);
    }

    #[test]
    fn the_extremes_keep_the_first_value_then_the_lowest_or_highest() {
        assert_eq!(Extreme::Lowest.keep(0, 9), 9);
        assert_eq!(Extreme::Lowest.keep(5, 9), 5);
        assert_eq!(Extreme::Highest.keep(5, 9), 9);
        assert_eq!(Extreme::Highest.keep(0, 3), 3);
    }

    #[test]
    fn an_hourly_counter_names_its_hour_and_other_counters_none() {
        assert_eq!(hour_of(&hour_key("replies", 7_200_000)), Some(2));
        assert_eq!(hour_of("@high-water @replies"), None);
        assert_eq!(hour_of("messages_total"), None);
        assert_eq!(hour_of("odd@name"), None);
    }
}
