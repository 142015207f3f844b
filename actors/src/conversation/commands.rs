//! The answers to `!commands`, one function each. Access was checked before we get here;
//! every change is persisted before it is acknowledged. A command sees the channel only
//! through [`CommandContext`].

use super::{effective_params, ConversationArgs, Inbound, ReplyEvent, Turn};
use crate::channel_key::ChannelKey;
use crate::commands::{help_text, AdapterCommand, Command, SystemArg};
use crate::feedback::{FeedbackMsg, RlSummary};
use crate::model::ModelMsg;
use crate::params::{GenerationParams, ParamKey};
use crate::ports::{ChannelSettings, FeedbackEvent, FeedbackSource, GlobalSettings};
use crate::stats::last_24h;
use crate::sync::RwLockExt;
use crate::timeouts;
use crate::tree::{self, TreeRequest};
use ractor::ActorProcessingErr;
use std::collections::VecDeque;
use std::time::Duration;

type Answer = Result<String, ActorProcessingErr>;

/// What a command may read and change of its channel.
pub(super) struct CommandContext<'a> {
    pub args: &'a ConversationArgs,
    pub settings: &'a mut ChannelSettings,
    pub history: &'a mut VecDeque<Turn>,
    pub inbound: &'a Inbound,
}

impl CommandContext<'_> {
    pub(super) fn prefix(&self) -> &str {
        &self.args.defaults.chat.prefix
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.args.defaults.clock.now_ms()
    }

    pub(super) fn global(&self) -> GlobalSettings {
        self.args.global.read_or_recover().clone()
    }

    fn params(&self) -> GenerationParams {
        effective_params(&self.args.defaults, &self.global(), self.settings)
    }

    pub(super) fn save_settings(&mut self, next: ChannelSettings) -> Result<(), ActorProcessingErr> {
        self.args.store.save_channel_settings(&self.args.channel, &next)?;
        *self.settings = next;
        Ok(())
    }

    /// Changes the admin settings, durably, then for every channel.
    pub(super) fn change_global(&self, change: impl FnOnce(&mut GlobalSettings)) -> Result<(), ActorProcessingErr> {
        let mut global = self.args.global.write_or_recover();
        let mut next = global.clone();
        change(&mut next);
        self.args.store.save_global_settings(&next)?;
        *global = next;
        Ok(())
    }
}

pub(super) async fn run(ctx: &mut CommandContext<'_>, command: Command) -> Answer {
    match command {
        Command::Ping => Ok("Pong!".into()),
        Command::Help => Ok(help_text(ctx.prefix(), ctx.inbound.access)),
        Command::Chat(_) | Command::Retry => unreachable!("chat and retry are handled by the conversation"),
        Command::Clear => clear(ctx),
        Command::System(arg) => system(ctx, arg).await,
        Command::ConfigShow => Ok(config_show(ctx)),
        Command::ConfigSet { key, value } => config_set(ctx, &key, &value),
        Command::Feedback { rating, comment } => feedback(ctx, rating, comment),
        Command::BotData => super::privacy::bot_data(ctx),
        Command::RlMetrics => Ok(rl_metrics(ctx).await),
        Command::Adapter(what) => adapter(ctx, what).await,
        Command::Engagement => Ok(engagement(ctx)),
        Command::SetRate(rate) => set_rate(ctx, rate),
        Command::SetTemp(t) => set_temp(ctx, t),
        Command::SetMaxLen(n) => set_max_len(ctx, n),
        Command::MentionsOnly(on) => mentions_only(ctx, on),
        Command::Allow(id) => allow(ctx, &id),
        Command::Deny { channel, purge } => deny(ctx, &channel, purge).await,
        Command::Status => status(ctx).await,
        Command::Restart => restart(ctx),
        Command::Forget { user, undo } => super::privacy::forget(ctx, user, undo).await,
        Command::Purge => super::privacy::purge_here(ctx).await,
        Command::Lock { command, on } => lock(ctx, &command, on),
        Command::Fetch => Ok(fetch(ctx)),
        Command::Train { status } => Ok(train(ctx, status)),
    }
}

/// Posts a background job's last line in this channel when it ends.
fn post_when_done(ctx: &CommandContext<'_>, done: tokio::sync::oneshot::Receiver<String>) {
    let reply = ctx.inbound.reply.clone();
    tokio::spawn(async move {
        if let Ok(line) = done.await {
            let _ = reply.send(ReplyEvent::Notice(line));
        }
    });
}

/// Starts `sidekick fetch` and posts its counts here when it ends.
fn fetch(ctx: &CommandContext<'_>) -> String {
    let Some(jobs) = &ctx.args.defaults.history_jobs else {
        return "I can't start a fetch from here; run `sidekick fetch` on the machine I run on.".into();
    };
    match jobs.start_fetch() {
        Ok(done) => {
            post_when_done(ctx, done);
            "Reading the allowlisted channels' history in the background; I'll post the counts here when it's done.".into()
        }
        Err(why) => why,
    }
}

/// Starts learning the server's voice and posts how it ended here; or says how far it got.
fn train(ctx: &CommandContext<'_>, status: bool) -> String {
    let Some(jobs) = &ctx.args.defaults.history_jobs else {
        return "I can't start training from here; run `sidekick dataset` and `sidekick train` on the machine I run on.".into();
    };
    if status {
        return jobs.train_status();
    }
    match jobs.start_train() {
        Ok(done) => {
            post_when_done(ctx, done);
            "Learning this server's voice in the background (history, dataset, then training on one core; it can take an hour). `!train status` says how far it got; I'll post the figures here when it's done.".into()
        }
        Err(why) => why,
    }
}

fn clear(ctx: &mut CommandContext<'_>) -> Answer {
    ctx.args.store.clear_history(&ctx.args.channel)?;
    ctx.history.clear();
    Ok("Conversation cleared: I've forgotten what we talked about here.".into())
}

/// The longest system prompt a channel may set, in characters.
const MAX_SYSTEM_PROMPT: usize = 2000;

/// Room a prompt keeps for the message being answered, besides the system prompt and the reply.
const ROOM_FOR_A_MESSAGE: usize = 64;

/// Why `prompt` leaves no room for a reply in this channel's context, if it does not.
async fn system_prompt_too_long(ctx: &CommandContext<'_>, prompt: &str) -> Option<String> {
    let model = ctx.args.model.get()?;
    let wait = timeouts::CHILD_STATUS.as_millis() as u64;
    let stats = ractor::call_t!(model, ModelMsg::Stats, wait).ok()?;
    let turns = vec![crate::prompt::ChatTurn::new(crate::prompt::Role::System, prompt)];
    let tokens = ractor::call_t!(model, |port| ModelMsg::Measure(turns, port), wait).ok()?.ok()?;
    // As the model reads a prompt: the reply gets at most half of the sequence.
    let room_for_reply = (ctx.params().max_tokens as usize).min(stats.sequence_tokens / 2);
    let limit = stats.sequence_tokens.saturating_sub(room_for_reply + ROOM_FOR_A_MESSAGE);
    (tokens > limit).then(|| {
        format!(
            "That system prompt is {tokens} tokens; here it can be at most {limit} (each reply has {} tokens of context: {room_for_reply} for the answer and {ROOM_FOR_A_MESSAGE} for the message).",
            stats.sequence_tokens
        )
    })
}

async fn system(ctx: &mut CommandContext<'_>, arg: SystemArg) -> Answer {
    let mut next = ctx.settings.clone();
    match arg {
        SystemArg::Show => {
            let which = if ctx.settings.system_prompt.is_some() { "custom" } else { "default" };
            let prompt = ctx.settings.system_prompt.as_deref().unwrap_or(&ctx.args.defaults.chat.system_prompt);
            return Ok(format!("System prompt ({which}):\n{prompt}"));
        }
        SystemArg::Reset => next.system_prompt = None,
        SystemArg::Set(prompt) if prompt.chars().count() > MAX_SYSTEM_PROMPT => {
            return Ok(format!("That system prompt is too long (max {MAX_SYSTEM_PROMPT} characters)."));
        }
        SystemArg::Set(prompt) => {
            if let Some(refusal) = system_prompt_too_long(ctx, &prompt).await {
                return Ok(refusal);
            }
            next.system_prompt = Some(prompt)
        }
    }
    let answer = if next.system_prompt.is_some() { "System prompt set for this channel." } else { "System prompt reset to the default." };
    ctx.save_settings(next)?;
    Ok(answer.into())
}

fn config_show(ctx: &CommandContext<'_>) -> String {
    let params = ctx.params();
    let mut out = String::from("Generation settings for this channel:\n");
    for key in ParamKey::ALL {
        let (min, max) = key.range();
        out.push_str(&format!("{} = {} ({min}–{max})\n", key.name(), params.show(key)));
    }
    out.push_str(&format!("Change one with `{}config <key> <value>`.", ctx.prefix()));
    out
}

fn config_set(ctx: &mut CommandContext<'_>, key: &str, value: &str) -> Answer {
    // The admins' reply length is a ceiling no channel goes above.
    if let (Some(ParamKey::MaxTokens), Some(ceiling)) = (ParamKey::parse(key), ctx.global().params.max_tokens) {
        if value.trim().parse::<f64>().is_ok_and(|v| v > f64::from(ceiling)) {
            return Ok(format!("`max_tokens` can be at most {ceiling} here (the admins' `{}setmaxlen`), got {value}", ctx.prefix()));
        }
    }
    match ctx.params().with(key, value) {
        Ok(next) => {
            let key = ParamKey::parse(key).expect("validated by with()");
            let mut settings = ctx.settings.clone();
            settings.params.set_from(key, &next);
            ctx.save_settings(settings)?;
            Ok(format!("{} set to {}.", key.name(), next.show(key)))
        }
        Err(refusal) => Ok(refusal.to_string()),
    }
}

fn feedback(ctx: &mut CommandContext<'_>, rating: u8, comment: String) -> Answer {
    let (store, inbound) = (&ctx.args.store, ctx.inbound);
    if !ctx.global().allows(&ctx.args.channel) {
        return Ok("I don't learn from this channel (it is not on the allowlist).".into());
    }
    if ctx.global().opted_out(inbound.user_id.as_deref()) {
        return Ok(format!("You asked me to forget you, so I keep no feedback from you (`{}forgetme undo` to change that).", ctx.prefix()));
    }
    // Feedback sent as a Discord reply is about the message it answers; otherwise it is
    // about the bot's last reply here.
    let (reply_seq, reply_id) = match &inbound.reply_to {
        Some(message) => (None, store.reply_for_message(message)?),
        None => (ctx.settings.last_reply_seq, ctx.settings.last_reply_id),
    };
    if inbound.reply_to.is_none() && reply_seq.is_none() {
        return Ok("There's no reply of mine here to rate yet.".into());
    }
    if inbound.reply_to.is_some() && reply_id.is_none() {
        return Ok(format!(
            "That isn't one of my replies. Reply to one of my messages with `{p}feedback`, or send it on its own to rate my last reply here.",
            p = ctx.prefix()
        ));
    }
    let reward = ctx.args.defaults.rewards.command(rating, &comment);
    let event = FeedbackEvent {
        channel: ctx.args.channel,
        reply_seq,
        reply_id,
        reply_message_id: inbound.reply_to.clone(),
        source: FeedbackSource::Command,
        rating: Some(rating),
        emoji: None,
        comment,
        user: inbound.author.clone(),
        user_id: inbound.user_id.clone(),
        at_ms: ctx.now_ms(),
        reward,
    };
    let seq = store.append_feedback(&event)?;
    if let Some(feedback) = ctx.args.feedback.get() {
        let _ = feedback.send_message(FeedbackMsg::Journaled { seq, event });
    }
    Ok(format!("Thanks! Feedback recorded ({rating}/5, reward {reward:+.2})."))
}

async fn rl_metrics(ctx: &CommandContext<'_>) -> String {
    let Some(feedback) = ctx.args.feedback.get() else { return "The learning actor is restarting; try again in a moment.".into() };
    match feedback.call(FeedbackMsg::Summary, Some(timeouts::RL_SUMMARY)).await {
        Ok(ractor::rpc::CallResult::Success(summary)) => show_rl(&summary, ctx.now_ms()),
        _ => "The learning actor is busy (saving or swapping an adapter); try again in a moment.".into(),
    }
}

async fn adapter(ctx: &CommandContext<'_>, what: AdapterCommand) -> Answer {
    let Some(feedback) = ctx.args.feedback.get() else { return Ok("The learning actor is restarting; try again in a moment.".into()) };
    Ok(match feedback.call(|reply| FeedbackMsg::Adapter(what, reply), Some(timeouts::ADAPTER_COMMAND)).await? {
        ractor::rpc::CallResult::Success(answer) => answer,
        _ => "The learning actor did not answer in time; try again.".into(),
    })
}

fn engagement(ctx: &CommandContext<'_>) -> String {
    let now = ctx.now_ms();
    let rules = ctx.args.defaults.chat.engagement();
    let e = &ctx.settings.engagement;
    let global = ctx.global();
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

fn set_rate(ctx: &CommandContext<'_>, rate: f64) -> Answer {
    ctx.change_global(|g| g.reply_rate = rate)?;
    Ok(format!("I'll join in unasked about {:.0}% of the time (more when the chat is lively).", rate * 100.0))
}

fn set_temp(ctx: &CommandContext<'_>, t: f32) -> Answer {
    ctx.change_global(|g| g.params.temperature = Some(t))?;
    Ok(format!("Default temperature set to {t}."))
}

fn set_max_len(ctx: &CommandContext<'_>, n: u32) -> Answer {
    ctx.change_global(|g| g.params.max_tokens = Some(n))?;
    Ok(format!("Default reply length set to {n} tokens."))
}

fn mentions_only(ctx: &CommandContext<'_>, on: bool) -> Answer {
    ctx.change_global(|g| g.mentions_only = on)?;
    Ok(if on { "OK: I'll only answer when mentioned." } else { "OK: I may join conversations again." }.into())
}

fn allow(ctx: &CommandContext<'_>, id: &str) -> Answer {
    ctx.change_global(|g| {
        g.allowlist.insert(id.to_string());
    })?;
    Ok(format!("<#{id}> is on the allowlist; I talk only in allowlisted channels now."))
}

async fn deny(ctx: &mut CommandContext<'_>, id: &str, purge: bool) -> Answer {
    let mut emptied = false;
    ctx.change_global(|g| {
        g.allowlist.remove(id);
        emptied = g.allowlist.is_empty();
    })?;
    let mut answer = if emptied {
        format!("<#{id}> removed; the allowlist is empty, so I talk in every channel again.")
    } else {
        format!("<#{id}> removed from the allowlist.")
    };
    if purge {
        let Ok(channel) = id.parse() else { return Ok(format!("{answer} `{id}` is not a channel id, so nothing was purged.")) };
        let channel = ChannelKey::Guild { guild: ctx.args.channel.guild_id(), channel };
        answer.push(' ');
        answer.push_str(&super::privacy::purge(ctx, channel).await?);
    }
    Ok(answer)
}

fn lock(ctx: &CommandContext<'_>, command: &str, on: bool) -> Answer {
    ctx.change_global(|g| {
        match on {
            true => g.locked.insert(command.to_string()),
            false => g.locked.remove(command),
        };
    })?;
    Ok(match on {
        true => format!("`{p}{command}` is for admins now.", p = ctx.prefix()),
        false => format!("Everyone may use `{p}{command}` again.", p = ctx.prefix()),
    })
}

async fn status(ctx: &CommandContext<'_>) -> Answer {
    let tree = match tree::status(&ctx.args.tree, timeouts::TREE_STATUS).await {
        Ok(tree) => tree,
        Err(e @ tree::TreeError::Busy) => return Ok(format!("Status: {e}.")),
        Err(e) => return Err(e.into()),
    };
    let now = ctx.now_ms();
    let stats = ctx.args.store.as_ref();
    let engine = tree.engine.unwrap_or_default();
    let model = tree.model.as_ref().map_or("not loaded".to_string(), |m| {
        let threads = match m.threads_auto {
            true => format!("{} thread(s) now, auto", engine.threads),
            false => format!("{} thread(s)", m.threads),
        };
        format!("{} ({} parallel, {threads})", m.name, m.parallel_sequences)
    });
    let memory = resident_mb().map_or("unknown".into(), |mb| format!("{mb:.0} MB"));
    let mut out = format!(
        "Up {} · model {model}\nQueue: {} waiting, {} replying · last 24 h: {} replies, {} errors · memory {memory} · restarts {}",
        crate::human::duration(tree.uptime),
        engine.waiting,
        engine.in_flight,
        last_24h(stats, "replies", now),
        last_24h(stats, "errors", now),
        tree.restarts,
    );
    if tree.without_message_content {
        out.push('\n');
        out.push_str(crate::liveness::WITHOUT_MESSAGE_CONTENT);
    }
    Ok(out)
}

fn restart(ctx: &CommandContext<'_>) -> Answer {
    ctx.args.tree.send_message(TreeRequest::RestartTree)?;
    Ok("Restarting: reloading the model. Back in a moment.".into())
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
        "Learning: {} training steps · feedback: {} commands, {} reactions, {} removed · mean reward {} (last 100), {} (all) · \
         last loss {} · last save {saved} · adapter {adapter} · {} waiting to train",
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
    if let Some(why) = &s.refused {
        out.push_str(&format!(" · {why}"));
    }
    if s.skipped_after_crash > 0 {
        out.push_str(&format!(" · {} replies skipped: a training step on them ended the process", s.skipped_after_crash));
    }
    out
}

/// Resident memory of this process, from /proc on Linux.
fn resident_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / 1_048_576.0)
}
