//! Reactions on the bot's replies become feedback with the rewards of `rl.rewards`; removing
//! one takes back exactly what it gave.

use super::{FeedbackState, Reaction, Vote};
use crate::ports::{FeedbackEvent, FeedbackSource};
use crate::sync::RwLockExt;
use ractor::ActorProcessingErr;

impl FeedbackState {
    /// Journals a reaction on one of our replies (emoji that carry nothing are ignored); a
    /// reaction on someone's message is counted in the history, if that message is kept there.
    pub(super) fn reaction(&mut self, r: Reaction) -> Result<(), ActorProcessingErr> {
        {
            let global = self.args.global.read_or_recover();
            if global.opted_out(Some(&r.user)) || !global.allows(&r.channel) {
                return Ok(()); // they asked to be forgotten, or the channel is not learned from
            }
        }
        let Some(reply_id) = self.args.replies.reply_for_message(&r.message_id)? else {
            if let Ok(id) = r.message_id.parse() {
                self.args.history.react(&r.channel, id, &r.emoji, r.added)?;
            }
            return Ok(());
        };
        let reward = if r.added {
            match self.args.rules.rewards.reaction(&r.emoji) {
                Some(reward) => reward,
                None => return Ok(()),
            }
        } else {
            // Undo exactly what the reaction gave; a reaction we never saw undoes nothing.
            match self.ledger.live_reaction(reply_id, &r.user, &r.emoji) {
                Some(reward) => -reward,
                None => return Ok(()),
            }
        };
        let event = FeedbackEvent {
            channel: r.channel,
            reply_seq: None,
            reply_id: Some(reply_id),
            reply_message_id: Some(r.message_id),
            source: if r.added { FeedbackSource::Reaction } else { FeedbackSource::ReactionRemoved },
            rating: None,
            emoji: Some(r.emoji),
            comment: String::new(),
            user: r.user.clone(),
            user_id: Some(r.user),
            at_ms: self.now_ms(),
            reward,
        };
        let seq = self.args.journal.append_feedback(&event)?;
        self.learn_from(seq, &event);
        Ok(())
    }

    /// A 👍 or 👎 button: the same reward as the reaction, and one standing vote per person
    /// per reply, so it takes the place of the other one (button or reaction). The same
    /// button again changes nothing.
    pub(super) fn vote(&mut self, v: Vote) -> Result<(), ActorProcessingErr> {
        let (mine, other) = if v.up { (UP, DOWN) } else { (DOWN, UP) };
        let Some(reply_id) = self.args.replies.reply_for_message(&v.message_id)? else { return Ok(()) };
        let reaction = |emoji: &str, added| Reaction {
            channel: v.channel,
            message_id: v.message_id.clone(),
            emoji: emoji.into(),
            user: v.user.clone(),
            added,
        };
        if self.ledger.live_reaction(reply_id, &v.user, other).is_some() {
            self.reaction(reaction(other, false))?;
        }
        if self.ledger.live_reaction(reply_id, &v.user, mine).is_none() {
            self.reaction(reaction(mine, true))?;
        }
        Ok(())
    }
}

pub const UP: &str = "👍";
pub const DOWN: &str = "👎";
