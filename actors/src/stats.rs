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
    (0..24u64).map(|h| store.stat(&hour_key(what, now_ms.saturating_sub(h * 3_600_000))).unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hourly_counter_names_its_hour_and_other_counters_none() {
        assert_eq!(hour_of(&hour_key("replies", 7_200_000)), Some(2));
        assert_eq!(hour_of("@high-water @replies"), None);
        assert_eq!(hour_of("messages_total"), None);
        assert_eq!(hour_of("odd@name"), None);
    }
}
