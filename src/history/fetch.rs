//! `sidekick fetch`: reads the allowlisted channels' history (and their threads) over Discord's
//! REST API, oldest first, a page of 100 at a time from each channel's cursor. Each page is
//! kept together with the cursor that follows it, in one synced write, so a fetch killed at any
//! moment resumes where the last kept page ended: no gap, no duplicate. Never a DM.

use super::rest::{Rest, RestError};
use super::{AccessError, HistoryAccess};
use serde::Serialize;
use serenity::all::{Channel, ChannelType, GuildChannel, GuildInfo, Message, ReactionType, ThreadsData};
use sidekick_actors::history::filters::Kind;
use sidekick_actors::history::{Admitted, HistoryMessage, Offered};
use sidekick_actors::ports::GlobalSettings;
use sidekick_actors::ChannelKey;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Discord's largest page.
const PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error("{0}")]
    Rest(#[from] RestError),
    #[error("no DISCORD_TOKEN: put `DISCORD_TOKEN=...` in .env (fetch reads Discord as the bot)")]
    NoToken,
}

/// One channel's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    pub channel: u64,
    pub name: String,
    pub fetched: usize,
    pub admitted: Admitted,
    /// Why it was skipped (no access, no such channel, a DM), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchReport {
    pub channels: Vec<ChannelReport>,
    pub fetched: usize,
    pub admitted: Admitted,
    pub rate_limited: u32,
    pub waited_seconds: f64,
    pub seconds: f64,
}

impl FetchReport {
    /// The one line a person reads at the end (and `!fetch` posts).
    pub fn summary(&self) -> String {
        let read = self.channels.iter().filter(|c| c.skipped.is_none()).count();
        let mut out = format!(
            "Fetched {} messages from {read} channel(s) in {:.0} s: kept {}, filtered {} (bots, system messages, bare links), refused {} (opted out).",
            self.fetched, self.seconds, self.admitted.kept, self.admitted.filtered, self.admitted.refused
        );
        if self.rate_limited > 0 {
            out.push_str(&format!(" Rate limited {} time(s), waited {:.1} s.", self.rate_limited, self.waited_seconds));
        }
        for c in self.channels.iter().filter(|c| c.skipped.is_some()) {
            out.push_str(&format!(" Skipped <#{}>: {}.", c.channel, c.skipped.as_deref().unwrap_or_default()));
        }
        out
    }
}

/// What a fetch shows while it runs.
pub trait Progress {
    fn channel(&mut self, name: &str, index: usize, of: usize);
    fn page(&mut self, messages: usize);
    fn done(&mut self);
}

/// No progress shown (not a terminal, or `--quiet`).
pub struct Silent;
impl Progress for Silent {
    fn channel(&mut self, _: &str, _: usize, _: usize) {}
    fn page(&mut self, _: usize) {}
    fn done(&mut self) {}
}

/// A progress bar on a terminal: messages, channels, rate.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} messages [{elapsed}] {per_sec} · {msg}").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bar {
    fn channel(&mut self, name: &str, index: usize, of: usize) {
        self.0.set_message(format!("channel {}/{of}: #{name}", index + 1));
    }
    fn page(&mut self, messages: usize) {
        self.0.inc(messages as u64);
    }
    fn done(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A channel to read, with the key its history is kept under.
struct Target {
    key: ChannelKey,
    id: u64,
    name: String,
}

pub async fn run(base: &str, token: Option<&str>, access: &HistoryAccess, progress: &mut dyn Progress) -> Result<FetchReport, FetchError> {
    let token = token.ok_or(FetchError::NoToken)?;
    let started = Instant::now();
    let mut rest = Rest::new(base, token);
    let global = access.governance().await?;
    let mut report = FetchReport::default();
    let targets = targets(&mut rest, &global, &mut report).await?;
    for (i, target) in targets.iter().enumerate() {
        progress.channel(&target.name, i, targets.len());
        let outcome = fetch_channel(&mut rest, access, target, progress).await;
        let (fetched, admitted, skipped) = match outcome {
            Ok((fetched, admitted)) => (fetched, admitted, None),
            // One channel's refusal is that channel's; the others go on.
            Err(FetchError::Rest(e @ (RestError::Forbidden | RestError::NotFound))) => (0, Admitted::default(), Some(e.to_string())),
            Err(e) => return Err(e),
        };
        report.fetched += fetched;
        report.admitted += admitted;
        report.channels.push(ChannelReport { channel: target.id, name: target.name.clone(), fetched, admitted, skipped });
    }
    progress.done();
    report.rate_limited = rest.rate_limited;
    report.waited_seconds = rest.waited.as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The allowlisted channels (every text channel of the bot's servers when nothing is
/// allowlisted, as the daemon then reads them all), and their threads.
async fn targets(rest: &mut Rest, global: &GlobalSettings, report: &mut FetchReport) -> Result<Vec<Target>, FetchError> {
    let mut channels: Vec<GuildChannel> = Vec::new();
    if global.allowlist.is_empty() {
        let guilds: Vec<GuildInfo> = rest.get("/users/@me/guilds").await?;
        for guild in guilds {
            let all: Vec<GuildChannel> = rest.get(&format!("/guilds/{}/channels", guild.id)).await?;
            channels.extend(all.into_iter().filter(|c| matches!(c.kind, ChannelType::Text | ChannelType::News)));
        }
    } else {
        let mut ids: Vec<u64> = global.allowlist.iter().filter_map(|id| id.parse().ok()).collect();
        ids.sort_unstable();
        for id in ids {
            let skip = |why: String| ChannelReport {
                channel: id,
                name: id.to_string(),
                fetched: 0,
                admitted: Admitted::default(),
                skipped: Some(why),
            };
            match rest.get::<Channel>(&format!("/channels/{id}")).await {
                Ok(Channel::Guild(c)) => channels.push(c),
                Ok(_) => report.channels.push(skip("a DM; DMs are never fetched".into())),
                Err(e @ (RestError::Forbidden | RestError::NotFound)) => report.channels.push(skip(e.to_string())),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut guilds: Vec<u64> = channels.iter().map(|c| c.guild_id.get()).collect();
    guilds.dedup();
    let parents: Vec<u64> = channels.iter().map(|c| c.id.get()).collect();
    for c in &channels {
        targets.push(Target { key: ChannelKey::guild(c.guild_id.get(), c.id.get()), id: c.id.get(), name: c.name.clone() });
    }
    let mut threads: Vec<GuildChannel> = Vec::new();
    for guild in guilds {
        let active: ThreadsData = rest.get(&format!("/guilds/{guild}/threads/active")).await?;
        threads.extend(active.threads);
    }
    for parent in &parents {
        // Archived threads need more than reading the channel; without that they are skipped.
        if let Ok(archived) = rest.get::<ThreadsData>(&format!("/channels/{parent}/threads/archived/public")).await {
            threads.extend(archived.threads);
        }
    }
    threads.sort_by_key(|t| t.id);
    threads.dedup_by_key(|t| t.id);
    for t in threads {
        let Some(parent) = t.parent_id.map(|p| p.get()).filter(|p| parents.contains(p)) else { continue };
        let key = ChannelKey::Thread { guild: Some(t.guild_id.get()), parent: Some(parent), thread: t.id.get() };
        targets.push(Target { key, id: t.id.get(), name: t.name.clone() });
    }
    Ok(targets)
}

/// Reads one channel from its cursor to its newest message.
async fn fetch_channel(
    rest: &mut Rest,
    access: &HistoryAccess,
    target: &Target,
    progress: &mut dyn Progress,
) -> Result<(usize, Admitted), FetchError> {
    let mut cursor = access.cursor(target.key).await?.unwrap_or(0);
    let (mut fetched, mut admitted) = (0, Admitted::default());
    loop {
        let mut page: Vec<Message> = rest.get(&format!("/channels/{}/messages?limit={PAGE}&after={cursor}", target.id)).await?;
        if page.is_empty() {
            break;
        }
        // Discord sends a page newest first.
        page.sort_by_key(|m| m.id);
        let newest = page.last().map(|m| m.id.get()).unwrap_or(cursor);
        let full = page.len() == PAGE;
        fetched += page.len();
        progress.page(page.len());
        let offered = page.into_iter().map(|m| offered(&target.key, m)).collect();
        admitted += access.keep(offered, Some((target.key, newest))).await?;
        cursor = newest;
        if !full {
            break;
        }
    }
    Ok((fetched, admitted))
}

/// A Discord message as the history's gate sees it.
pub fn offered(channel: &ChannelKey, m: Message) -> Offered {
    let reactions: BTreeMap<String, u32> = m
        .reactions
        .iter()
        .filter_map(|r| {
            let emoji = match &r.reaction_type {
                ReactionType::Unicode(e) => e.clone(),
                ReactionType::Custom { name, id, .. } => name.clone().unwrap_or_else(|| id.to_string()),
                _ => return None,
            };
            Some((emoji, r.count as u32))
        })
        .collect();
    Offered {
        kind: Kind::of_api_type(u8::from(m.kind).into()),
        from_bot: m.author.bot,
        message: HistoryMessage {
            id: m.id.get(),
            channel: *channel,
            guild: channel.guild_id(),
            author_id: m.author.id.get(),
            author: m.author.global_name.clone().unwrap_or_else(|| m.author.name.clone()),
            content: m.content,
            at_ms: m.timestamp.timestamp_millis().max(0) as u64,
            reply_to: m.message_reference.and_then(|r| r.message_id).map(|id| id.get()),
            reactions,
        },
    }
}
