//! When the bot speaks up unasked. Always when addressed; otherwise by chance: a base rate
//! raised by the channel's engagement (up to ten times the base rate), which rises when
//! someone talks to the bot and when it answers them, and decays with a half-life. Its own
//! unasked replies raise nothing, so a channel where only the bot talks calms down, and a
//! base rate of 0 means no unasked replies at all. Time comes from a [`crate::clock::Clock`] and chance from a seeded RNG, so a
//! sequence of decisions is exactly reproducible.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngagementRules {
    /// Time for engagement to fall to half.
    pub half_life_ms: u64,
    /// Added when the bot answers someone who addressed it.
    pub on_reply: f64,
    /// Added when someone mentions or replies to the bot.
    pub on_addressed: f64,
}

impl Default for EngagementRules {
    fn default() -> Self {
        Self { half_life_ms: 10 * 60 * 1000, on_reply: 0.3, on_addressed: 0.2 }
    }
}

/// A channel's engagement: a level in [0, 1] as of `at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub level: f64,
    pub at_ms: u64,
    /// When someone last spoke in the channel.
    pub last_activity_ms: u64,
}

/// Full engagement makes unasked replies this many times likelier than the base rate.
const MAX_RAISE: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Addressed,
    Chance,
}

impl Engagement {
    /// The level at `now_ms` after decay.
    pub fn level_at(&self, now_ms: u64, rules: &EngagementRules) -> f64 {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.level * 0.5f64.powf(elapsed / rules.half_life_ms.max(1) as f64)
    }

    /// Chance of answering an unaddressed message at `now_ms`: the base rate, raised by
    /// engagement toward ten times the base rate (at most certainty); 0 stays 0.
    pub fn probability(&self, base_rate: f64, now_ms: u64, rules: &EngagementRules) -> f64 {
        let base = base_rate.clamp(0.0, 1.0);
        let ceiling = (base * MAX_RAISE).min(1.0);
        (base + (ceiling - base) * self.level_at(now_ms, rules)).clamp(0.0, 1.0)
    }

    pub fn bump(&mut self, amount: f64, now_ms: u64, rules: &EngagementRules) {
        self.level = (self.level_at(now_ms, rules) + amount).min(1.0);
        self.at_ms = now_ms;
    }

    /// Decides whether to answer a message and updates engagement for it.
    pub fn decide(
        &mut self,
        addressed: bool,
        base_rate: f64,
        mentions_only: bool,
        now_ms: u64,
        rules: &EngagementRules,
        rng: &mut impl Rng,
    ) -> Option<Why> {
        self.last_activity_ms = now_ms;
        if addressed {
            self.bump(rules.on_addressed, now_ms, rules);
            return Some(Why::Addressed);
        }
        if mentions_only {
            return None;
        }
        let p = self.probability(base_rate, now_ms, rules);
        rng.random_bool(p).then_some(Why::Chance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MIN: u64 = 60_000;

    #[test]
    fn engagement_halves_every_half_life() {
        let rules = EngagementRules::default();
        let mut e = Engagement::default();
        e.bump(0.8, 0, &rules);
        assert!((e.level_at(10 * MIN, &rules) - 0.4).abs() < 1e-9);
        assert!((e.level_at(20 * MIN, &rules) - 0.2).abs() < 1e-9);
        assert!((e.probability(0.05, 20 * MIN, &rules) - (0.05 + 0.45 * 0.2)).abs() < 1e-9);
        assert_eq!(e.probability(0.0, 20 * MIN, &rules), 0.0, "a base rate of 0 stays 0");
        assert_eq!(e.probability(0.5, 20 * MIN, &rules), 0.5 + 0.5 * 0.2, "at most certainty");
        e.bump(1.0, 20 * MIN, &rules);
        assert_eq!(e.level, 1.0, "capped at 1");
    }

    #[test]
    fn addressed_always_answers_and_mentions_only_silences_chance() {
        let rules = EngagementRules::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut e = Engagement::default();
        assert_eq!(e.decide(true, 0.0, true, 0, &rules, &mut rng), Some(Why::Addressed));
        assert!(e.level > 0.0);
        for _ in 0..100 {
            assert_eq!(e.decide(false, 1.0, true, 0, &rules, &mut rng), None);
        }
        assert_eq!(e.decide(false, 1.0, false, 0, &rules, &mut rng), Some(Why::Chance));
    }

    #[test]
    fn the_same_seed_and_clock_give_the_same_decisions() {
        let rules = EngagementRules::default();
        let run = || {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
            let mut e = Engagement::default();
            (0..200u64)
                .map(|i| {
                    let answered = e.decide(i % 50 == 0, 0.05, false, i * MIN / 2, &rules, &mut rng).is_some();
                    if answered {
                        e.bump(rules.on_reply, i * MIN / 2, &rules);
                    }
                    answered
                })
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().filter(|a| **a).count() > 4, "more than the four mentions were answered");
    }

    #[test]
    fn engagement_rises_after_a_reply_and_decays_back() {
        let rules = EngagementRules::default();
        let mut e = Engagement::default();
        let base = e.probability(0.05, 0, &rules);
        e.bump(rules.on_addressed + rules.on_reply, 0, &rules);
        let right_after = e.probability(0.05, MIN, &rules);
        let hour_later = e.probability(0.05, 60 * MIN, &rules);
        assert!((base - 0.05).abs() < 1e-12);
        assert!(right_after > 0.2, "{right_after}");
        assert!(hour_later < 0.06 && hour_later > base, "{hour_later}");
    }
}
