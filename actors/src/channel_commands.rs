//! The answers to `!commands`, run by a channel's conversation actor. Access was checked
//! before we get here; every change is persisted before it is acknowledged.

use crate::commands::{self, Command, SystemArg};
use crate::conversation::{last_24h, ConversationState, Inbound};
use crate::feedback::{FeedbackMsg, RlSummary};
use crate::params::ParamKey;
use crate::ports::{FeedbackEvent, FeedbackSource, GlobalSettings};
use crate::retrieval::RetrievalMsg;
use crate::supervisor::RootMsg;
use ractor::ActorProcessingErr;
use std::time::Duration;

impl ConversationState {
    pub(crate) async fn run_command(&mut self, command: Command, inbound: &Inbound) -> Result<String, ActorProcessingErr> {
        let prefix = self.args.defaults.prefix.clone();
        Ok(match command {
            Command::Ping => "Pong!".into(),
            Command::Help => commands::help_text(&prefix, inbound.access),
            Command::Chat(_) => unreachable!("chat is handled by the caller"),
            Command::Clear => {
                self.args.store.clear_history(&self.args.channel)?;
                self.history.clear();
                "Conversation cleared: I've forgotten what we talked about here.".into()
            }
            Command::System(SystemArg::Show) => {
                let which = if self.settings.system_prompt.is_some() { "custom" } else { "default" };
                format!("System prompt ({which}):\n{}", self.system_prompt())
            }
            Command::System(SystemArg::Reset) => {
                let mut next = self.settings.clone();
                next.system_prompt = None;
                self.save_settings(next)?;
                "System prompt reset to the default.".into()
            }
            Command::System(SystemArg::Set(prompt)) => {
                const MAX: usize = 2000;
                if prompt.chars().count() > MAX {
                    return Ok(format!("That system prompt is too long (max {MAX} characters)."));
                }
                let mut next = self.settings.clone();
                next.system_prompt = Some(prompt);
                self.save_settings(next)?;
                "System prompt set for this channel.".into()
            }
            Command::ConfigShow => {
                let params = self.params();
                let mut out = String::from("Generation settings for this channel:\n");
                for key in ParamKey::ALL {
                    let (min, max) = key.range();
                    out.push_str(&format!("{} = {} ({min}–{max})\n", key.name(), params.show(key)));
                }
                out.push_str(&format!("Change one with `{prefix}config <key> <value>`."));
                out
            }
            Command::ConfigSet { key, value } => match self.params().with(&key, &value) {
                Ok(next) => {
                    let key = ParamKey::parse(&key).expect("validated by with()");
                    let mut settings = self.settings.clone();
                    settings.params.set_from(key, &next);
                    self.save_settings(settings)?;
                    format!("{} set to {}.", key.name(), next.show(key))
                }
                Err(refusal) => refusal.to_string(),
            },
            Command::Feedback { rating, comment } => self.feedback(rating, comment, inbound)?,
            Command::BotData => self.bot_data(),
            Command::RlMetrics => self.rl_metrics().await,
            Command::Adapter(what) => match self.args.feedback.get() {
                Some(feedback) => match feedback.call(|reply| FeedbackMsg::Adapter(what, reply), Some(Duration::from_secs(330))).await? {
                    ractor::rpc::CallResult::Success(answer) => answer,
                    _ => "The learning actor did not answer in time; try again.".into(),
                },
                None => "The learning actor is restarting; try again in a moment.".into(),
            },
            Command::Engagement => {
                let now = self.now_ms();
                let rules = self.args.defaults.engagement;
                let e = &self.settings.engagement;
                let global = self.global();
                let ago = match e.last_activity_ms {
                    0 => "never".to_string(),
                    t => format!("{} ago", crate::human::duration(Duration::from_millis(now.saturating_sub(t)))),
                };
                format!(
                    "Engagement here: level {:.2}, chance of joining in {:.0}% (base rate {:.0}%{}). Last activity {ago}.",
                    e.level_at(now, &rules),
                    100.0 * e.probability(global.reply_rate, now, &rules),
                    100.0 * global.reply_rate,
                    if global.mentions_only { "; mentions only is on" } else { "" },
                )
            }
            Command::SetRate(rate) => {
                self.change_global(|g| g.reply_rate = rate)?;
                format!("I'll join in unasked about {:.0}% of the time (more when the chat is lively).", rate * 100.0)
            }
            Command::SetTemp(t) => {
                self.change_global(|g| g.params.temperature = Some(t))?;
                format!("Default temperature set to {t}.")
            }
            Command::SetMaxLen(n) => {
                self.change_global(|g| g.params.max_tokens = Some(n))?;
                format!("Default reply length set to {n} tokens.")
            }
            Command::MentionsOnly(on) => {
                self.change_global(|g| g.mentions_only = on)?;
                if on { "OK: I'll only answer when mentioned." } else { "OK: I may join conversations again." }.into()
            }
            Command::Allow(id) => {
                self.change_global(|g| {
                    g.allowlist.insert(id.clone());
                })?;
                format!("<#{id}> is on the allowlist; I talk only in allowlisted channels now.")
            }
            Command::Deny { channel: id, purge } => {
                let mut emptied = false;
                self.change_global(|g| {
                    g.allowlist.remove(&id);
                    emptied = g.allowlist.is_empty();
                })?;
                let mut answer = if emptied {
                    format!("<#{id}> removed; the allowlist is empty, so I talk in every channel again.")
                } else {
                    format!("<#{id}> removed from the allowlist.")
                };
                if purge {
                    answer.push(' ');
                    answer.push_str(&self.purge(&format!("discord:{id}")).await?);
                }
                answer
            }
            Command::Status => self.status().await?,
            Command::Restart => {
                self.args.root.send_message(RootMsg::RestartTree)?;
                "Restarting: reloading the model. Back in a moment.".into()
            }
        })
    }

    /// Deletes a channel's messages, settings and vectors, and makes its conversation forget.
    async fn purge(&self, channel: &str) -> Result<String, ActorProcessingErr> {
        let messages = self.args.store.purge_channel(channel)?;
        let vectors = match self.args.retrieval.get() {
            Some(r) => {
                match r.call(|reply| RetrievalMsg::Purge { channel: channel.to_string(), reply }, Some(Duration::from_secs(60))).await? {
                    ractor::rpc::CallResult::Success(n) => n,
                    _ => {
                        return Ok(format!(
                            "Deleted {messages} stored messages; removing its vectors timed out (they go at the next index rebuild)."
                        ))
                    }
                }
            }
            None => 0,
        };
        if channel != self.args.channel {
            self.args.root.send_message(RootMsg::Forget(channel.to_string()))?;
        }
        Ok(format!("Deleted {messages} stored messages and {vectors} vectors from it."))
    }

    fn change_global(&self, change: impl FnOnce(&mut GlobalSettings)) -> Result<(), ActorProcessingErr> {
        let mut global = self.args.global.write().unwrap_or_else(|e| e.into_inner());
        let mut next = global.clone();
        change(&mut next);
        self.args.store.save_global_settings(&next)?;
        *global = next;
        Ok(())
    }

    fn feedback(&mut self, rating: u8, comment: String, inbound: &Inbound) -> Result<String, ActorProcessingErr> {
        // Feedback sent as a Discord reply is about the message it answers; otherwise it is
        // about the bot's last reply here.
        let (reply_seq, reply_id) = match &inbound.reply_to {
            Some(message) => (None, self.args.store.reply_for_message(message)?),
            None => (self.settings.last_reply_seq, self.settings.last_reply_id),
        };
        if inbound.reply_to.is_none() && reply_seq.is_none() {
            return Ok("There's no reply of mine here to rate yet.".into());
        }
        if inbound.reply_to.is_some() && reply_id.is_none() {
            return Ok(format!("That isn't one of my replies. Reply to one of my messages with `{}feedback`, or send it on its own to rate my last reply here.", self.args.defaults.prefix));
        }
        let reward = self.args.defaults.rewards.command(rating, &comment);
        let event = FeedbackEvent {
            channel: self.args.channel.clone(),
            reply_seq,
            reply_id,
            reply_message_id: inbound.reply_to.clone(),
            source: FeedbackSource::Command,
            rating: Some(rating),
            emoji: None,
            comment,
            user: inbound.author.clone(),
            at_ms: self.now_ms(),
            reward,
        };
        let seq = self.args.store.append_feedback(&event)?;
        if let Some(feedback) = self.args.feedback.get() {
            let _ = feedback.send_message(FeedbackMsg::Journaled { seq, event });
        }
        Ok(format!("Thanks! Feedback recorded ({rating}/5, reward {reward:+.2})."))
    }

    fn bot_data(&self) -> String {
        let global = self.global();
        let sources = if global.allowlist.is_empty() {
            "every channel I can read".to_string()
        } else {
            global.allowlist.iter().map(|id| format!("<#{id}>")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "I learn from: {sources}. I keep messages there, my replies, and feedback (`{p}feedback`, reactions) to improve. \
             To take a channel out, ask an admin to run `{p}deny #channel`, or DM the bot's owner.",
            p = self.args.defaults.prefix
        )
    }

    async fn rl_metrics(&self) -> String {
        let Some(feedback) = self.args.feedback.get() else { return "The learning actor is restarting; try again in a moment.".into() };
        match feedback.call(FeedbackMsg::Summary, Some(Duration::from_secs(5))).await {
            Ok(ractor::rpc::CallResult::Success(summary)) => show_rl(&summary, self.now_ms()),
            _ => "The learning actor is busy (saving or swapping an adapter); try again in a moment.".into(),
        }
    }

    async fn status(&self) -> Result<String, ActorProcessingErr> {
        let tree = ractor::call_t!(self.args.root, RootMsg::Status, 5000)?;
        let now = self.now_ms();
        let store = self.args.store.as_ref();
        let model = tree
            .model
            .as_ref()
            .map_or("not loaded".to_string(), |m| format!("{} ({} parallel, {} thread)", m.name, m.parallel_sequences, m.threads));
        let engine = tree.engine.unwrap_or_default();
        let memory = resident_mb().map_or("unknown".into(), |mb| format!("{mb:.0} MB"));
        Ok(format!(
            "Up {} · model {model}\nQueue: {} waiting, {} replying · last 24 h: {} replies, {} errors · memory {memory} · restarts {}",
            crate::human::duration(tree.uptime),
            engine.waiting,
            engine.in_flight,
            last_24h(store, "replies", now),
            last_24h(store, "errors", now),
            tree.restarts,
        ))
    }
}

fn show_rl(s: &RlSummary, now_ms: u64) -> String {
    let mean = |m: Option<f32>| m.map_or("none yet".to_string(), |m| format!("{m:+.2}"));
    let adapter = match &s.active {
        Some(v) => format!("v{} (step {})", v.version, v.step),
        None => "none (base model)".into(),
    };
    let saved = s
        .last_save_ms
        .map_or("never".to_string(), |t| format!("{} ago", crate::human::duration(Duration::from_millis(now_ms.saturating_sub(t)))));
    let mut out = format!(
        "Learning: {} training steps · feedback: {} commands, {} reactions, {} removed · mean reward {} (last 100), {} (all) · last loss {} · last save {saved} · adapter {adapter} · {} waiting to train",
        s.steps,
        s.commands,
        s.reactions,
        s.reactions_removed,
        mean(s.mean_last_100),
        mean(s.mean_all),
        s.last_loss.map_or("none yet".to_string(), |l| format!("{l:.4}")),
        s.queued,
    );
    if let Some(why) = &s.idle_reason {
        out.push_str(&format!(" · not training: {why}"));
    }
    out
}

/// Resident memory of this process, from /proc on Linux.
fn resident_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / 1_048_576.0)
}
