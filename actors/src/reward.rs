//! How feedback becomes a reward in [-1, 1] (the numbers the README documents), and the
//! running figures `!rl_metrics` reports.

use crate::ports::{FeedbackEvent, FeedbackSource};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Weights turning one piece of feedback into a reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardRules {
    /// Share of a `!feedback` reward that comes from the rating (the rest is the comment's tone).
    pub rating_weight: f32,
    /// Share that comes from the comment's sentiment, when there is a comment.
    pub sentiment_weight: f32,
    /// A reaction is a lighter signal than a rating: its table value is scaled by this.
    pub reaction_weight: f32,
    /// Emoji → reward; emoji not listed are ignored.
    pub reactions: BTreeMap<String, f32>,
}

impl Default for RewardRules {
    fn default() -> Self {
        let reactions = [
            ("👍", 1.0),
            ("❤️", 1.0),
            ("😂", 0.5),
            ("🎉", 1.0),
            ("🔥", 0.8),
            ("💯", 1.0),
            ("👎", -1.0),
            ("😡", -1.0),
            ("🙄", -0.5),
            ("😕", -0.5),
        ];
        Self {
            rating_weight: 0.7,
            sentiment_weight: 0.3,
            reaction_weight: 0.5,
            reactions: reactions.iter().map(|(e, r)| (e.to_string(), *r)).collect(),
        }
    }
}

/// A rating of 1-5 mapped onto [-1, 1]: 1 → -1, 3 → 0, 5 → 1.
pub fn rating_reward(rating: u8) -> f32 {
    (f32::from(rating.clamp(1, 5)) - 3.0) / 2.0
}

/// VADER's compound score of `text` in [-1, 1] (0 for no text).
pub fn sentiment(text: &str) -> f32 {
    static ANALYZER: OnceLock<vader_sentiment::SentimentIntensityAnalyzer<'static>> = OnceLock::new();
    if text.trim().is_empty() {
        return 0.0;
    }
    let analyzer = ANALYZER.get_or_init(vader_sentiment::SentimentIntensityAnalyzer::new);
    analyzer.polarity_scores(text).get("compound").copied().unwrap_or(0.0) as f32
}

impl RewardRules {
    /// `!feedback <rating> [comment]`: the rating, blended with the comment's tone if any.
    pub fn command(&self, rating: u8, comment: &str) -> f32 {
        let rated = rating_reward(rating);
        if comment.trim().is_empty() {
            return rated;
        }
        let total = self.rating_weight + self.sentiment_weight;
        ((self.rating_weight * rated + self.sentiment_weight * sentiment(comment)) / total).clamp(-1.0, 1.0)
    }

    /// A reply someone asked to have written again (🔁): rejected as a 👎 would be.
    pub fn rejected(&self) -> f32 {
        self.reaction("👎").unwrap_or(-self.reaction_weight)
    }

    /// A reaction's reward, or `None` for emoji that carry no signal.
    pub fn reaction(&self, emoji: &str) -> Option<f32> {
        // Discord may send hearts and thumbs with or without the variation selector.
        let bare = emoji.trim_end_matches('\u{fe0f}');
        let value = self
            .reactions
            .get(emoji)
            .or_else(|| self.reactions.iter().find(|(k, _)| k.trim_end_matches('\u{fe0f}') == bare).map(|(_, v)| v))?;
        Some((self.reaction_weight * value).clamp(-1.0, 1.0))
    }
}

/// Running figures over the feedback journal. A removed reaction cancels the reaction it
/// undoes: both leave the averages.
#[derive(Debug, Default)]
pub struct RewardLedger {
    by_source: HashMap<FeedbackSource, u64>,
    /// The standing rewards by their place in the journal (an undone reaction leaves), so
    /// the last 100 are read without walking all of them.
    standing: BTreeMap<usize, f32>,
    /// Places handed out so far.
    recorded: usize,
    /// The sum of `standing`, kept as rewards come and go.
    sum: f64,
    /// Live reactions: (message, user, emoji) → place in `standing`.
    reactions: HashMap<(String, String, String), usize>,
}

/// What a reaction is on: the reply it rated (a message written again with 🔁 is another
/// reply, and the reactions on its old words stay the old reply's), or, in records from
/// before replies had ids, the message.
fn rated(event: &FeedbackEvent) -> String {
    match event.reply_id {
        Some(id) => reply_key(id),
        None => event.reply_message_id.clone().unwrap_or_default(),
    }
}

fn reply_key(reply_id: u64) -> String {
    format!("reply {reply_id}")
}

impl RewardLedger {
    pub fn record(&mut self, event: &FeedbackEvent) {
        *self.by_source.entry(event.source).or_default() += 1;
        let key = || (rated(event), event.user.clone(), event.emoji.clone().unwrap_or_default());
        match event.source {
            FeedbackSource::Command => {
                self.stand(event.reward);
            }
            FeedbackSource::Reaction => {
                let place = self.stand(event.reward);
                if let Some(replaced) = self.reactions.insert(key(), place) {
                    // The same reaction seen twice counts once.
                    self.withdraw(replaced);
                }
            }
            FeedbackSource::ReactionRemoved => {
                if let Some(place) = self.reactions.remove(&key()) {
                    self.withdraw(place);
                }
            }
        }
    }

    fn stand(&mut self, reward: f32) -> usize {
        let place = self.recorded;
        self.recorded += 1;
        self.standing.insert(place, reward);
        self.sum += f64::from(reward);
        place
    }

    fn withdraw(&mut self, place: usize) {
        if let Some(reward) = self.standing.remove(&place) {
            self.sum -= f64::from(reward);
        }
    }

    /// The reward a live reaction on reply `reply_id` gave, if this user's reaction is on record.
    pub fn live_reaction(&self, reply_id: u64, user: &str, emoji: &str) -> Option<f32> {
        let place = self.reactions.get(&(reply_key(reply_id), user.to_string(), emoji.to_string()))?;
        self.standing.get(place).copied()
    }

    pub fn count(&self, source: FeedbackSource) -> u64 {
        self.by_source.get(&source).copied().unwrap_or(0)
    }

    pub fn total_events(&self) -> u64 {
        self.by_source.values().sum()
    }

    /// Mean reward of the last `n` standing rewards (all of them for `None`): reads `n`
    /// rewards, or none for all of them.
    pub fn mean(&self, n: Option<usize>) -> Option<f32> {
        let count = self.standing.len();
        match n.map(|n| n.min(count)) {
            _ if count == 0 => None,
            Some(0) => None,
            Some(take) if take < count => Some(self.standing.values().rev().take(take).sum::<f32>() / take as f32),
            _ => Some((self.sum / count as f64) as f32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaction(source: FeedbackSource, user: &str, emoji: &str, reward: f32) -> FeedbackEvent {
        FeedbackEvent {
            channel: crate::ChannelKey::guild(1, 1),
            reply_seq: None,
            reply_id: Some(1),
            reply_message_id: Some("m1".into()),
            source,
            rating: None,
            emoji: Some(emoji.into()),
            comment: String::new(),
            user: user.into(),
            user_id: Some(user.into()),
            at_ms: 0,
            reward,
        }
    }

    #[test]
    fn ratings_span_minus_one_to_one() {
        assert_eq!(rating_reward(1), -1.0);
        assert_eq!(rating_reward(3), 0.0);
        assert_eq!(rating_reward(5), 1.0);
    }

    #[test]
    fn comment_tone_moves_a_rating() {
        let rules = RewardRules::default();
        assert_eq!(rules.command(4, ""), 0.5);
        let glad = rules.command(4, "this was great, thank you, I love it!");
        let cross = rules.command(4, "this is awful and wrong, I hate it");
        assert!(glad > 0.5 && cross < 0.5, "glad {glad} cross {cross}");
        assert!(sentiment("terrible, useless answer") < -0.3);
        assert!(sentiment("wonderful, really helpful") > 0.3);
    }

    #[test]
    fn reactions_follow_the_table_and_unknown_emoji_carry_nothing() {
        let rules = RewardRules::default();
        assert_eq!(rules.reaction("👍"), Some(0.5));
        assert_eq!(rules.reaction("👎"), Some(-0.5));
        assert_eq!(rules.reaction("❤"), Some(0.5), "heart without the variation selector");
        assert_eq!(rules.reaction("🦀"), None);
    }

    #[test]
    fn a_removed_reaction_leaves_the_averages() {
        let mut ledger = RewardLedger::default();
        ledger.record(&reaction(FeedbackSource::Reaction, "ann", "👍", 0.5));
        ledger.record(&reaction(FeedbackSource::Reaction, "bob", "👎", -0.5));
        assert_eq!(ledger.mean(None), Some(0.0));
        ledger.record(&reaction(FeedbackSource::ReactionRemoved, "bob", "👎", 0.5));
        assert_eq!(ledger.mean(None), Some(0.5));
        assert_eq!(ledger.live_reaction(1, "bob", "👎"), None);
        assert_eq!(ledger.live_reaction(1, "ann", "👍"), Some(0.5));
        assert_eq!(ledger.count(FeedbackSource::ReactionRemoved), 1);
        assert_eq!(ledger.total_events(), 3);
    }

    #[test]
    fn the_recent_mean_looks_at_the_last_n() {
        let mut ledger = RewardLedger::default();
        for r in [1.0, 1.0, -1.0, -1.0] {
            ledger.record(&FeedbackEvent { source: FeedbackSource::Command, reward: r, ..reaction(FeedbackSource::Command, "ann", "", r) });
        }
        assert_eq!(ledger.mean(Some(2)), Some(-1.0));
        assert_eq!(ledger.mean(None), Some(0.0));
        assert_eq!(RewardLedger::default().mean(None), None);
    }
}
