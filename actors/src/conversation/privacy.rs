//! The commands that delete: `!forgetme`, `!forget`, `!purge` and `!deny … purge`, and
//! `!botdata`, which says what is kept. The deleting itself is the tree's (it stops the
//! conversations that hold the words in memory first); this file asks and answers.

use super::commands::CommandContext;
use crate::channel_key::ChannelKey;
use crate::commands::Access;
use crate::timeouts;
use crate::tree::{self, TreeRequest};
use ractor::ActorProcessingErr;

type Answer = Result<String, ActorProcessingErr>;

fn vectors(n: Option<usize>) -> String {
    n.map_or("its vectors (they go at the next index rebuild)".to_string(), |n| format!("{n} vectors"))
}

/// `!deny #channel purge` and `!purge`: everything kept from `channel`.
pub(super) async fn purge(ctx: &mut CommandContext<'_>, channel: ChannelKey) -> Answer {
    let requester = ctx.args.channel;
    if channel == requester {
        // What this conversation holds in memory goes first, so nothing writes it back.
        *ctx.settings = Default::default();
        ctx.history.clear();
    }
    let report = match tree::ask(&ctx.args.tree, timeouts::PURGE, |reply| TreeRequest::Purge { channel, requester, reply }).await {
        Ok(report) => report,
        Err(e) => return Ok(format!("The purge did not answer in time ({e}); it goes on in the background.")),
    };
    Ok(format!("Deleted {} stored messages and {} from it.", report.messages, vectors(report.vectors)))
}

/// `!purge` here: admins anywhere, anyone in their own DM.
pub(super) async fn purge_here(ctx: &mut CommandContext<'_>) -> Answer {
    if !ctx.args.channel.is_dm() && ctx.inbound.access < Access::Admin {
        return Ok(crate::commands::refusal(Access::Admin).into());
    }
    let channel = ctx.args.channel;
    purge(ctx, channel).await
}

/// `!forgetme [undo]` (`user` is `None`: the asker) and `!forget <user> [undo]`.
pub(super) async fn forget(ctx: &mut CommandContext<'_>, user: Option<String>, undo: bool) -> Answer {
    let myself = user.is_none();
    let Some(user) = user.or_else(|| ctx.inbound.user_id.clone()) else {
        return Ok("That works on Discord, where I know who is asking; the console is yours alone.".into());
    };
    let prefix = ctx.prefix().to_string();
    let (you, your) = if myself { ("you".to_string(), "your".to_string()) } else { (format!("<@{user}>"), format!("<@{user}>'s")) };
    if undo {
        ctx.change_global(|g| {
            g.opted_out.remove(&user);
        })?;
        return Ok(format!("OK: I keep and learn from {your} messages again from now on."));
    }
    // Opted out first (durably), so nothing they say from now on is kept while the rest goes.
    ctx.change_global(|g| {
        g.opted_out.insert(user.clone());
    })?;
    let requester = ctx.args.channel;
    let dropped = crate::feedback::Dropped::User { user: user.clone(), replies: Vec::new() };
    ctx.history.retain(|t| !t.holds(&dropped));
    let asked = tree::ask(&ctx.args.tree, timeouts::PURGE, |reply| TreeRequest::ForgetUser { user: user.clone(), requester, reply }).await;
    let report = match asked {
        Ok(report) => report,
        Err(e) => {
            return Ok(format!("{you} are opted out; deleting what was kept did not answer in time ({e}) and goes on in the background."))
        }
    };
    Ok(format!(
        "Done: I deleted {} of {your} messages, {} of my replies whose prompts quoted {you}, {} of {your} ratings and reactions, and {}. \
         I keep nothing {you} write from now on, and {you} are left out of what I show and learn from (`{prefix}forgetme undo` to change that). \
         What an adapter already learned stays until it is retrained.",
        report.messages,
        report.replies,
        report.feedback,
        vectors(report.vectors),
    ))
}

/// `!botdata`: exactly what is kept, where, since when, and how to have it removed.
pub(super) fn bot_data(ctx: &CommandContext<'_>) -> Answer {
    let global = ctx.global();
    let prefix = ctx.prefix();
    let mut out = String::from(if global.allowlist.is_empty() {
        "I read and keep messages in every channel I can see (an admin can limit that with `!allow`)."
    } else {
        "I read and keep messages only in the allowlisted channels; nothing from other channels is stored."
    });
    let summaries = ctx.args.store.channel_summaries()?;
    // Only what this conversation may see: its server's channels, or a DM itself (the console
    // is the owner's and sees everything).
    let here = ctx.args.channel;
    let visible = |s: &&crate::ports::ChannelSummary| match here {
        ChannelKey::Console => true,
        ChannelKey::Dm { .. } => s.channel == here,
        _ => s.channel == here || (!s.channel.is_dm() && s.guild.is_some() && s.guild == here.guild_id()),
    };
    let kept: Vec<String> = summaries
        .iter()
        .filter(visible)
        .map(|s| {
            let place = match s.channel {
                ChannelKey::Console => "the console".to_string(),
                ChannelKey::Dm { .. } => "this DM".to_string(),
                other => format!("<#{}>", other.discord_id().unwrap_or_default()),
            };
            format!("{place}: {} messages since {}", s.messages, day(s.since_ms))
        })
        .collect();
    if !kept.is_empty() {
        out.push_str(&format!("\nKept: {}.", kept.join("; ")));
    }
    let dms = summaries.iter().filter(|s| s.channel.is_dm() && s.channel != here).count();
    if dms > 0 && here.is_console() {
        out.push_str(&format!(" Plus {dms} private conversation(s), each shown back only to itself."));
    }
    if let Some(guild) = here.guild_id() {
        let (kept, theirs) = ctx.args.store.history_count(guild, ctx.inbound.user_id.as_deref())?;
        if kept > 0 {
            out.push_str(&format!("\nThis server's history, for learning how it talks: {kept} messages ({theirs} of them yours)."));
        }
    }
    if let Some(user) = &ctx.inbound.user_id {
        out.push_str(&format!("\nFrom you: {} messages.", ctx.args.store.user_message_count(user)?));
        if global.opted_out.contains(user) {
            out.push_str(" You asked me to forget you: I keep nothing more.");
        }
    }
    out.push_str(&format!(
        "\nI use them as background for my replies in the same server (a DM only in that DM), and my replies with their \
         prompts and your ratings and reactions to learn. To have it removed: `{prefix}forgetme` deletes everything from you; \
         an admin can `{prefix}deny #channel purge` a channel; in a DM, `{prefix}purge` deletes that conversation."
    ));
    Ok(out)
}

/// `2026-12-01` from Unix milliseconds.
fn day(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_read_as_dates() {
        assert_eq!(super::day(0), "1970-01-01");
        assert_eq!(super::day(1_709_210_096_789), "2024-02-29");
    }
}
