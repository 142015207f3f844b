//! No single voice dominates what the bot learns (seed 003). A user's share `s` of the
//! messages becomes their share of the weight: kept if `s` ≤ 5 %, `(s + 5 %) / 2` if it is at
//! most 20 %, 12 % above. Reactions boost a message, `× (1 + 0.05 · reactions)`, at most
//! 1.5 ×, and the 12 % clamp still holds after the boost. No time-of-day buckets.
//!
//! A share of the weight is a user's total weight over the number of messages (weights are
//! not normalized: the voices above 5 % give up weight, nobody else gains it).

use std::collections::HashMap;

pub const SMALL: f64 = 0.05;
pub const MIDDLE: f64 = 0.20;
pub const CLAMP: f64 = 0.12;
pub const BOOST_PER_REACTION: f64 = 0.05;
pub const MAX_BOOST: f64 = 1.5;

/// A user's share of the weight for their share `s` of the messages.
pub fn target_share(s: f64) -> f64 {
    if s <= SMALL {
        s
    } else if s <= MIDDLE {
        (s + SMALL) / 2.0
    } else {
        CLAMP
    }
}

/// A message's boost for its reactions.
pub fn boost(reactions: u32) -> f64 {
    (1.0 + BOOST_PER_REACTION * f64::from(reactions)).min(MAX_BOOST)
}

/// One weight per message, given each message's author and reaction count.
pub fn weights<U: std::hash::Hash + Eq + Clone>(messages: &[(U, u32)]) -> Vec<f64> {
    let n = messages.len() as f64;
    let mut counts: HashMap<U, usize> = HashMap::new();
    for (user, _) in messages {
        *counts.entry(user.clone()).or_default() += 1;
    }
    // Each user's messages share their target weight equally, then reactions boost them.
    let base: HashMap<U, f64> = counts.iter().map(|(u, c)| (u.clone(), target_share(*c as f64 / n) * n / *c as f64)).collect();
    let mut weights: Vec<f64> = messages.iter().map(|(u, r)| base[u] * boost(*r)).collect();
    // The boost may lift a clamped voice above the clamp: bring it back down.
    let mut totals: HashMap<U, f64> = HashMap::new();
    for ((u, _), w) in messages.iter().zip(&weights) {
        *totals.entry(u.clone()).or_default() += w;
    }
    for ((u, _), w) in messages.iter().zip(weights.iter_mut()) {
        let share = counts[u] as f64 / n;
        let total = totals[u];
        if share > MIDDLE && total > CLAMP * n {
            *w *= CLAMP * n / total;
        }
    }
    weights
}

/// Each user's share of `weights` (over the number of messages).
pub fn shares<U: std::hash::Hash + Eq + Clone>(users: &[U], weights: &[f64]) -> HashMap<U, f64> {
    let n = users.len() as f64;
    let mut out: HashMap<U, f64> = HashMap::new();
    for (u, w) in users.iter().zip(weights) {
        *out.entry(u.clone()).or_default() += w / n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seed_formula() {
        assert_eq!(target_share(0.03), 0.03);
        assert!((target_share(0.15) - 0.10).abs() < 1e-12);
        assert_eq!(target_share(0.6), 0.12);
        assert_eq!(boost(0), 1.0);
        assert!((boost(4) - 1.2).abs() < 1e-12);
        assert_eq!(boost(30), 1.5);
    }

    proptest! {
        /// For random user distributions and reaction counts: nobody who had more than 20 %
        /// of the messages has more than 12 % of the weight, no boost is above 1.5 ×, and the
        /// same input gives the same weights.
        #[test]
        fn no_loud_voice_passes_the_clamp(messages in prop::collection::vec((0u8..12, 0u32..40), 1..400)) {
            let weights = weights(&messages);
            let users: Vec<u8> = messages.iter().map(|(u, _)| *u).collect();
            let n = users.len() as f64;
            for (user, share) in shares(&users, &weights) {
                let started = users.iter().filter(|u| **u == user).count() as f64 / n;
                if started > MIDDLE {
                    prop_assert!(share <= CLAMP + 1e-9, "user {} started at {:.3} and has {:.3}", user, started, share);
                }
            }
            for ((user, reactions), w) in messages.iter().zip(&weights) {
                let unboosted = weights_without_boost(&messages)[messages.iter().position(|m| m == &(*user, *reactions)).unwrap()];
                prop_assert!(*w <= unboosted * MAX_BOOST + 1e-9);
            }
            prop_assert_eq!(weights.clone(), super::weights(&messages));
        }
    }

    fn weights_without_boost(messages: &[(u8, u32)]) -> Vec<f64> {
        weights(&messages.iter().map(|(u, _)| (*u, 0)).collect::<Vec<_>>())
    }
}
