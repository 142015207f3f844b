//! 🔁 and `!retry`: the channel's latest reply written again from the same conversation. The
//! new words take the old ones' place (on Discord, in the log and in the history). The old
//! reply stays journaled, rejected by the one who asked (a 👎's reward), and the new one names
//! it (`ReplyRecord::replaces`): with a good vote on the new one, the two are a preference pair.

use super::{ConversationState, Inbound, ReplyEvent, Turn};
use crate::feedback::FeedbackMsg;
use crate::ports::{FeedbackEvent, FeedbackSource, ReplyRecord};
use crate::prompt::{build_turns, ChatTurn, Role};
use ractor::ActorProcessingErr;
use std::time::Instant;

const NOTHING_TO_RETRY: &str = "There's no reply of mine in this conversation to write again.";
const ONLY_THE_LATEST: &str = "Only my latest reply here can be written again.";

/// The emoji a retry's rejection is journaled with (it is not a reaction anyone can remove).
pub const RETRY_EMOJI: &str = "🔁";

impl ConversationState {
    pub(super) async fn retry(&mut self, inbound: Inbound) -> Result<(), ActorProcessingErr> {
        if !self.global().allows(&self.args.channel) {
            return Ok(()); // as with chat: not answered off the allowlist
        }
        let reply = inbound.reply.clone();
        let say = |text: &str| {
            let _ = reply.send(ReplyEvent::Notice(text.into()));
        };
        let Some(old_id) = self.settings.last_reply_id else {
            say(NOTHING_TO_RETRY);
            return Ok(());
        };
        // The button (or a `!retry` sent as a reply) names a reply: it must be the latest.
        if let Some(named) = inbound.reply_to.as_deref() {
            if self.args.store.reply_for_message(named)? != Some(old_id) {
                say(ONLY_THE_LATEST);
                return Ok(());
            }
        }
        let old = self.args.store.reply(old_id)?;
        // The reply must still be the conversation's last word from the bot (not cleared).
        let at = self.history.iter().rposition(|t| t.chat.role == Role::Assistant);
        let (Some(old), Some(at)) = (old, at) else {
            say(NOTHING_TO_RETRY);
            return Ok(());
        };
        if self.history[at].chat.content != old.text {
            say(NOTHING_TO_RETRY);
            return Ok(());
        }
        let received = Instant::now();
        let before: Vec<ChatTurn> = self.history.iter().take(at).map(|t| t.chat.clone()).collect();
        let turns = build_turns(self.system_prompt(), &before);
        let seed = rand::Rng::random(&mut self.seeds);
        let Some(streamed) = self.ask(turns, Some(seed), &reply, received).await else { return Ok(()) };
        let text = streamed.text.trim().to_string();
        let tokens = streamed.tokens;
        let channel = self.args.channel;
        self.args.store.replace_message(&channel, old.reply_seq, &text)?;
        let record = ReplyRecord {
            prompt: streamed.prompt,
            prompt_tokens: streamed.prompt_ids,
            reply_tokens: streamed.reply_ids,
            text: text.clone(),
            adapter: streamed.adapter,
            at_ms: self.now_ms(),
            replaces: Some(old_id),
            ..old
        };
        let new_id = match self.args.store.append_reply(&record) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "could not journal a reply written again");
                None
            }
        };
        self.history[at] = Turn { chat: ChatTurn::new(Role::Assistant, text.clone()), ..self.history[at].clone() };
        let mut settings = self.settings.clone();
        settings.last_reply_id = new_id;
        self.save_settings(settings)?;
        self.reject(&inbound, old_id)?;
        self.count_reply(received);
        let _ = reply.send(ReplyEvent::Done { text, tokens, reply_id: new_id });
        Ok(())
    }

    /// Journals the replaced reply as rejected by whoever asked for another, unless they are
    /// not learned from (forgotten) or the channel is not.
    fn reject(&self, inbound: &Inbound, reply_id: u64) -> Result<(), ActorProcessingErr> {
        let global = self.global();
        if global.opted_out(inbound.user_id.as_deref()) || !global.allows(&self.args.channel) {
            return Ok(());
        }
        let event = FeedbackEvent {
            channel: self.args.channel,
            reply_seq: None,
            reply_id: Some(reply_id),
            // The button's message, or the `!retry` itself: one rejection per asking.
            reply_message_id: inbound.reply_to.clone().or_else(|| inbound.message_id.clone()),
            source: FeedbackSource::Reaction,
            rating: None,
            emoji: Some(RETRY_EMOJI.into()),
            comment: String::new(),
            user: inbound.author.clone(),
            user_id: inbound.user_id.clone(),
            at_ms: self.now_ms(),
            reward: self.args.defaults.rewards.rejected(),
        };
        let seq = self.args.store.append_feedback(&event)?;
        if let Some(feedback) = self.args.feedback.get() {
            let _ = feedback.send_message(FeedbackMsg::Journaled { seq, event });
        }
        Ok(())
    }
}
