//! Preference pairs from 🔁: a reply written again and the reply it replaced make a pair for
//! DPO (`sidekick dataset`, then `sidekick train`) once the new one stands with more good
//! votes than bad. The same governance as everything else: a channel off the allowlist gives
//! none, nor a reply whose prompt quoted someone who asked to be forgotten.

use super::fairness::Votes;
use crate::channel_key::ChannelKey;
use crate::ports::{FeedbackEvent, GlobalSettings, ReplyRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One pair, in the tokens the model read and wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The chosen (newer) reply's journal id.
    pub reply_id: u64,
    pub channel: ChannelKey,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// People whose standing vote on the chosen reply is good.
    pub voters: u32,
}

/// The pairs the journal holds now, oldest first.
pub fn preference_pairs(
    replies: &HashMap<u64, ReplyRecord>,
    journal: impl IntoIterator<Item = FeedbackEvent>,
    global: &GlobalSettings,
) -> Vec<PreferencePair> {
    let mut votes = Votes::default();
    for event in journal {
        votes.record(&event);
    }
    let mut pairs: Vec<PreferencePair> = replies
        .iter()
        .filter_map(|(&id, chosen)| {
            let rejected = replies.get(&chosen.replaces?)?;
            let quoted_someone_gone = chosen.speakers.iter().any(|s| global.opted_out(Some(s)));
            if !global.allows(&chosen.channel) || quoted_someone_gone {
                return None;
            }
            let (net, good) = votes.standing_of(id);
            (net > 0.0).then(|| PreferencePair {
                reply_id: id,
                channel: chosen.channel,
                prompt: chosen.prompt_tokens.clone(),
                chosen: chosen.reply_tokens.clone(),
                rejected: rejected.reply_tokens.clone(),
                voters: good as u32,
            })
        })
        .collect();
    pairs.sort_by_key(|p| p.reply_id);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::FeedbackSource;

    fn reply(channel: u64, text: u32, replaces: Option<u64>, speakers: &[&str]) -> ReplyRecord {
        ReplyRecord {
            channel: ChannelKey::guild(1, channel),
            reply_seq: 1,
            prompt: "p".into(),
            prompt_tokens: vec![1, 2],
            reply_tokens: vec![text],
            text: text.to_string(),
            adapter: None,
            at_ms: 0,
            speakers: speakers.iter().map(|s| s.to_string()).collect(),
            sources: Vec::new(),
            replaces,
        }
    }

    fn vote(reply_id: u64, user: &str, emoji: &str, reward: f32) -> FeedbackEvent {
        FeedbackEvent {
            channel: ChannelKey::guild(1, 5),
            reply_seq: None,
            reply_id: Some(reply_id),
            reply_message_id: Some(format!("m{reply_id}")),
            source: FeedbackSource::Reaction,
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
    fn a_retry_with_a_good_standing_vote_pairs_with_the_reply_it_replaced() {
        let replies = HashMap::from([(1, reply(5, 10, None, &[])), (2, reply(5, 20, Some(1), &["ann"])), (3, reply(5, 30, None, &[]))]);
        let pairs = |journal: Vec<FeedbackEvent>, global: &GlobalSettings| preference_pairs(&replies, journal, global);
        let open = GlobalSettings::default();
        assert!(pairs(vec![], &open).is_empty(), "no vote yet: no pair");
        let good = pairs(vec![vote(2, "bob", "👍", 0.5), vote(3, "bob", "👍", 0.5)], &open);
        assert_eq!(good.len(), 1, "only the retry pairs");
        assert_eq!((good[0].chosen.as_slice(), good[0].rejected.as_slice(), good[0].voters), (&[20u32][..], &[10u32][..], 1));
        assert!(
            pairs(vec![vote(2, "bob", "👍", 0.5), vote(2, "cat", "👎", -0.5), vote(2, "dan", "👎", -0.5)], &open).is_empty(),
            "more bad than good"
        );
        let taken_back = vec![
            vote(2, "bob", "👍", 0.5),
            FeedbackEvent { source: FeedbackSource::ReactionRemoved, reward: -0.5, ..vote(2, "bob", "👍", -0.5) },
        ];
        assert!(pairs(taken_back, &open).is_empty(), "a vote taken back stands no more");
        let mut forgot = GlobalSettings::default();
        forgot.opted_out.insert("ann".into());
        assert!(pairs(vec![vote(2, "bob", "👍", 0.5)], &forgot).is_empty(), "its prompt quoted someone forgotten");
        let mut denied = GlobalSettings::default();
        denied.allowlist.insert("6".into());
        assert!(pairs(vec![vote(2, "bob", "👍", 0.5)], &denied).is_empty(), "a channel not learned from");
    }
}
