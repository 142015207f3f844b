//! Messages become training examples: conversations of 5-10 consecutive messages of one
//! channel (a silence longer than the session gap starts a new one), whose last message is what
//! the bot learns to say and the rest what it reads, written as the daemon writes a prompt. The
//! last tenth of each channel, by time, is held out for evaluation and never trained on.
//! Deterministic for a seed.

use super::HistoryMessage;
use crate::prompt::{build_turns, spoken, ChatTurn, Role};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowRules {
    /// Fewest and most messages in an example (the last is the answer).
    pub min_messages: usize,
    pub max_messages: usize,
    /// A silence longer than this starts a new conversation.
    pub session_gap_minutes: u64,
    /// The newest share of each channel's messages held out for evaluation.
    pub heldout_fraction: f64,
}

impl Default for WindowRules {
    fn default() -> Self {
        Self { min_messages: 5, max_messages: 10, session_gap_minutes: 120, heldout_fraction: 0.1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Heldout,
}

/// One example: the positions of its messages in the channel's list (oldest first; the last
/// one is the answer), its split, and its weight (its answer's).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub messages: std::ops::RangeInclusive<usize>,
    pub split: Split,
    pub weight: f64,
}

/// Where each channel's held-out part starts: the newest `fraction` of its messages (at least
/// one once a channel has ten).
pub fn heldout_start(n: usize, fraction: f64) -> usize {
    n - ((n as f64 * fraction).floor() as usize)
}

/// The examples of one channel. `messages` are oldest first; `weights` one per message.
pub fn windows(messages: &[HistoryMessage], weights: &[f64], rules: &WindowRules, seed: u64) -> Vec<Window> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let gap = rules.session_gap_minutes * 60_000;
    let heldout = heldout_start(messages.len(), rules.heldout_fraction);
    let mut session_start = 0;
    let mut out = Vec::new();
    for i in 0..messages.len() {
        if i > 0 && messages[i].at_ms.saturating_sub(messages[i - 1].at_ms) > gap {
            session_start = i;
        }
        let wanted = rng.random_range(rules.min_messages..=rules.max_messages.max(rules.min_messages));
        let available = i - session_start + 1;
        if available < rules.min_messages {
            continue;
        }
        let k = wanted.min(available);
        let split = if i >= heldout { Split::Heldout } else { Split::Train };
        out.push(Window { messages: i + 1 - k..=i, split, weight: weights[i] });
    }
    out
}

/// An example's conversation: the system prompt, the messages before the answer as the daemon
/// writes them when serving (`name: text`), and the answer as the assistant's turn.
pub fn example_turns(system_prompt: &str, messages: &[HistoryMessage]) -> Vec<ChatTurn> {
    let Some((answer, context)) = messages.split_last() else { return Vec::new() };
    let mut turns: Vec<ChatTurn> = context.iter().map(|m| spoken(&m.author, &m.content)).collect();
    turns.push(ChatTurn::new(Role::Assistant, answer.content.clone()));
    build_turns(system_prompt, &turns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelKey;

    fn chat(times_min: &[u64]) -> Vec<HistoryMessage> {
        times_min
            .iter()
            .enumerate()
            .map(|(i, t)| HistoryMessage {
                id: i as u64 + 1,
                channel: ChannelKey::guild(1, 1),
                guild: Some(1),
                author_id: (i % 3) as u64,
                author: format!("u{}", i % 3),
                content: format!("m{i}"),
                at_ms: t * 60_000,
                reply_to: None,
                reactions: Default::default(),
            })
            .collect()
    }

    #[test]
    fn examples_stay_inside_a_conversation_and_hold_5_to_10_messages() {
        // Two conversations three hours apart: 12 messages, then 6.
        let times: Vec<u64> = (0..12).chain(300..306).collect();
        let messages = chat(&times);
        let weights = vec![1.0; messages.len()];
        let windows = windows(&messages, &weights, &WindowRules::default(), 7);
        for w in &windows {
            let len = w.messages.end() - w.messages.start() + 1;
            assert!((5..=10).contains(&len), "{w:?}");
            let crosses = w.messages.start() < &12 && w.messages.end() >= &12;
            assert!(!crosses, "no example spans the silence: {w:?}");
        }
        let answers: Vec<usize> = windows.iter().map(|w| *w.messages.end()).collect();
        assert_eq!(answers, [4, 5, 6, 7, 8, 9, 10, 11, 16, 17], "every message with four before it in its conversation");
        assert_eq!(windows.iter().filter(|w| w.split == Split::Heldout).count(), 1, "the newest tenth: message 17");
        assert_eq!(windows, super::windows(&messages, &weights, &WindowRules::default(), 7), "the same seed, the same examples");
    }

    #[test]
    fn an_example_reads_like_a_served_prompt_and_ends_with_the_answer() {
        let messages = chat(&[0, 1, 2]);
        let turns = example_turns("be chill", &messages);
        let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::User, Role::Assistant]);
        assert_eq!(turns[1].content, "u0: m0", "as the daemon writes a speaker in a server channel");
        assert_eq!(turns[3].content, "m2", "the answer is the words alone");
    }

    #[test]
    fn the_held_out_tenth_is_the_newest() {
        assert_eq!(heldout_start(100, 0.1), 90);
        assert_eq!(heldout_start(9, 0.1), 9, "under ten messages nothing is held out");
        assert_eq!(heldout_start(0, 0.1), 0);
    }
}
