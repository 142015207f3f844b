//! No single person steers what the bot learns. Pure rules, used by the feedback actor:
//!
//! - **One standing vote per user per reply.** A second `!feedback` replaces the first; a
//!   reaction added, removed and added again is one reaction. Only the net change of a vote is
//!   trained: what training already took from it is subtracted.
//! - **A share cap.** In any window of 100 trained samples no user supplies more than the larger
//!   of `rl.max_user_share` (seed 003's 12 %) and 1/n, n being the users with feedback in the
//!   window. A sample that would break it waits for others' feedback; when the queue is full,
//!   the user furthest over their share loses their own oldest sample first.

use crate::ports::{FeedbackEvent, FeedbackSource};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Who voted on which reply.
pub type VoteKey = (u64, String);

/// The voter of an event: their Discord id, or the name old records carry.
pub fn voter(event: &FeedbackEvent) -> String {
    event.user_id.clone().unwrap_or_else(|| event.user.clone())
}

/// One user's standing opinion of one reply.
#[derive(Debug, Clone, Default, PartialEq)]
struct Vote {
    /// The latest `!feedback`'s reward.
    rating: Option<f32>,
    /// Live reactions and their rewards.
    reactions: BTreeMap<String, f32>,
}

impl Vote {
    /// A rating when there is one, else the mean of the live reactions.
    fn value(&self) -> f32 {
        match self.rating {
            Some(r) => r,
            None if self.reactions.is_empty() => 0.0,
            None => self.reactions.values().sum::<f32>() / self.reactions.len() as f32,
        }
    }
}

/// Every standing vote, and how much of each training has taken.
#[derive(Debug, Clone, Default)]
pub struct Votes {
    votes: HashMap<VoteKey, Vote>,
    trained: HashMap<VoteKey, f32>,
}

impl Votes {
    /// Applies a journaled event to its voter's vote; returns the vote and what is left to
    /// train of it (the standing value less what was trained), if the event was about a reply.
    pub fn record(&mut self, event: &FeedbackEvent) -> Option<(VoteKey, f32)> {
        let key = (event.reply_id?, voter(event));
        let vote = self.votes.entry(key.clone()).or_default();
        match event.source {
            FeedbackSource::Command => vote.rating = Some(event.reward),
            FeedbackSource::Reaction => {
                vote.reactions.insert(event.emoji.clone().unwrap_or_default(), event.reward);
            }
            FeedbackSource::ReactionRemoved => {
                vote.reactions.remove(event.emoji.as_deref().unwrap_or_default());
            }
        }
        let left = vote.value() - self.trained.get(&key).copied().unwrap_or(0.0);
        Some((key, if left.abs() < 1e-6 { 0.0 } else { left }))
    }

    /// The standing votes on `reply`: their sum, and how many are good.
    pub fn standing_of(&self, reply: u64) -> (f32, usize) {
        let standing: Vec<f32> = self.votes.iter().filter(|(k, _)| k.0 == reply).map(|(_, v)| v.value()).collect();
        (standing.iter().sum(), standing.iter().filter(|v| **v > 0.0).count())
    }

    /// What is left to train of a vote: its standing value less what was trained.
    pub fn left(&self, key: &VoteKey) -> f32 {
        self.votes.get(key).map_or(0.0, Vote::value) - self.trained.get(key).copied().unwrap_or(0.0)
    }

    /// Training took `reward` of this vote.
    pub fn trained(&mut self, key: &VoteKey, reward: f32) {
        *self.trained.entry(key.clone()).or_default() += reward;
    }

    /// Forgets the votes `drop` matches (a forgotten user, a purged reply).
    pub fn forget(&mut self, drop: impl Fn(&VoteKey) -> bool) {
        self.votes.retain(|k, _| !drop(k));
        self.trained.retain(|k, _| !drop(k));
    }
}

/// The voters of the last trained samples, and the cap on any one's share.
#[derive(Debug, Clone)]
pub struct ShareCap {
    recent: VecDeque<String>,
    /// The smallest share anyone may always have (seed 003's 12 %); more when fewer people
    /// give feedback (1/n).
    pub max_share: f64,
    pub window: usize,
}

impl ShareCap {
    pub fn new(max_share: f64) -> Self {
        Self { recent: VecDeque::new(), max_share, window: 100 }
    }

    /// Whether one more sample from `voter` may be trained now, with `waiting` the voters
    /// who have samples queued: it keeps them within their share of the window, or leaves them
    /// no further ahead of anyone else in it than one sample that person is about to get (so
    /// equal voices take turns instead of blocking each other).
    pub fn allows(&self, voter: &str, waiting: &HashSet<&str>) -> bool {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in &self.recent {
            *counts.entry(v.as_str()).or_default() += 1;
        }
        let theirs = counts.get(voter).copied().unwrap_or(0) + 1;
        let voters = counts.len() + usize::from(!counts.contains_key(voter));
        if within(theirs, self.recent.len() + 1, voters, self.max_share) {
            return true;
        }
        let behind_someone = counts.iter().filter(|(v, _)| **v != voter).map(|(v, c)| c + usize::from(waiting.contains(v))).min();
        behind_someone.is_none_or(|least| theirs <= least)
    }

    /// A sample from `voter` was trained.
    pub fn record(&mut self, voter: &str) {
        self.recent.push_back(voter.to_string());
        while self.recent.len() >= self.window {
            self.recent.pop_front();
        }
    }

    /// The first of `queued` (oldest first) that may be trained now.
    pub fn next<'a>(&self, queued: impl IntoIterator<Item = &'a str>) -> Option<usize> {
        let queued: Vec<&str> = queued.into_iter().collect();
        let waiting: HashSet<&str> = queued.iter().copied().collect();
        queued.iter().position(|v| self.allows(v, &waiting))
    }

    /// The queue is full and `incoming` wants in: which queued sample goes. The user furthest
    /// over their share of the queue (counting the newcomer) loses their own oldest; with
    /// nobody over, the oldest of all.
    pub fn evict<'a>(&self, queued: &[&'a str], incoming: &'a str) -> usize {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in queued.iter().copied().chain(std::iter::once(incoming)) {
            *counts.entry(v).or_default() += 1;
        }
        let (size, n) = (queued.len() + 1, counts.len());
        let worst = counts
            .iter()
            .filter(|(_, c)| !within(**c, size, n, self.max_share))
            .max_by_key(|(v, c)| (**c, **v == incoming))
            .map(|(v, _)| *v);
        worst.and_then(|w| queued.iter().position(|v| *v == w)).unwrap_or(0)
    }
}

/// `count` of `size` is within the larger of `max_share` and 1/`voters`.
fn within(count: usize, size: usize, voters: usize, max_share: f64) -> bool {
    let cap = max_share.max(1.0 / voters.max(1) as f64);
    count as f64 <= cap * size as f64 + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, source: FeedbackSource, reward: f32, emoji: Option<&str>) -> FeedbackEvent {
        FeedbackEvent {
            channel: crate::ChannelKey::guild(1, 1),
            reply_seq: None,
            reply_id: Some(7),
            reply_message_id: None,
            source,
            rating: None,
            emoji: emoji.map(String::from),
            comment: String::new(),
            user: format!("name of {user}"),
            user_id: Some(user.to_string()),
            at_ms: 0,
            reward,
        }
    }

    #[test]
    fn a_second_rating_replaces_the_first_and_only_the_change_is_trained() {
        let mut votes = Votes::default();
        let (key, left) = votes.record(&event("a", FeedbackSource::Command, 1.0, None)).unwrap();
        assert_eq!(left, 1.0);
        votes.trained(&key, 1.0);
        for _ in 0..99 {
            assert_eq!(votes.record(&event("a", FeedbackSource::Command, 1.0, None)).unwrap().1, 0.0, "nothing new to learn");
        }
        assert_eq!(votes.record(&event("a", FeedbackSource::Command, -0.5, None)).unwrap().1, -1.5, "from +1 to -0.5");
        assert_eq!(votes.record(&event("b", FeedbackSource::Command, -0.5, None)).unwrap().1, -0.5, "another user votes on their own");
    }

    #[test]
    fn a_toggled_reaction_is_one_reaction() {
        let mut votes = Votes::default();
        let mut left = 0.0;
        for i in 0..20 {
            let source = if i % 2 == 0 { FeedbackSource::Reaction } else { FeedbackSource::ReactionRemoved };
            left = votes.record(&event("a", source, if i % 2 == 0 { 0.5 } else { -0.5 }, Some("👍"))).unwrap().1;
        }
        assert_eq!(left, 0.0, "ended removed: nothing to learn");
        assert_eq!(votes.record(&event("a", FeedbackSource::Reaction, 0.5, Some("👍"))).unwrap().1, 0.5);
        assert_eq!(votes.record(&event("a", FeedbackSource::Reaction, 0.5, Some("❤️"))).unwrap().1, 0.5, "two hearts are still one vote");
        assert_eq!(votes.record(&event("a", FeedbackSource::Command, -1.0, None)).unwrap().1, -1.0, "a rating speaks over reactions");
    }

    #[test]
    fn one_voice_stays_within_its_share() {
        let mut cap = ShareCap::new(0.12);
        // Three users, one of them sending 90 % of the feedback, all waiting in a queue.
        let mut queue: VecDeque<&str> = (0..300)
            .map(|i| {
                if i % 10 == 0 {
                    "b"
                } else if i % 10 == 5 {
                    "c"
                } else {
                    "a"
                }
            })
            .collect();
        let mut trained = Vec::new();
        while let Some(i) = cap.next(queue.iter().copied()) {
            let v = queue.remove(i).unwrap();
            cap.record(v);
            trained.push(v);
        }
        let share = |who: &str, of: &[&str]| of.iter().filter(|v| **v == who).count() as f64 / of.len() as f64;
        assert!(share("a", &trained) <= 1.0 / 3.0 + 1e-9, "a had {:.3}", share("a", &trained));
        for window in trained.windows(100) {
            assert!(share("a", window) <= 1.0 / 3.0 + 1e-9);
        }
        assert_eq!(trained.iter().filter(|v| **v != "a").count(), 60, "everyone else's feedback was trained");
    }

    #[test]
    fn a_lone_voice_is_its_whole_share() {
        let mut cap = ShareCap::new(0.12);
        for _ in 0..250 {
            assert_eq!(cap.next(["a"]), Some(0));
            cap.record("a");
        }
    }

    #[test]
    fn a_voice_ahead_of_the_others_waits_for_them() {
        let mut cap = ShareCap::new(0.12);
        for v in ["a", "b", "a", "b"] {
            cap.record(v);
        }
        assert_eq!(cap.next(["a", "a"]), None, "a would be ahead of b, who has nothing waiting");
        assert_eq!(cap.next(["a", "b"]), Some(0), "b is about to catch up: a may go first");
        let mut many = ShareCap::new(0.12);
        for i in 0..99 {
            many.record(&format!("u{}", i % 20));
        }
        assert_eq!(many.next(["u0"]), Some(0), "within 12 % with twenty voices");
    }

    #[test]
    fn a_full_queue_drops_the_loudest_users_own_oldest_first() {
        let cap = ShareCap::new(0.12);
        assert_eq!(cap.evict(&["b", "a", "a", "c", "a"], "a"), 1, "a is over: its own oldest goes");
        assert_eq!(cap.evict(&["a", "b", "c"], "d"), 0, "nobody over: the oldest goes");
    }
}
