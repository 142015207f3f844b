//! `sidekick import <file or folder>`: DiscordChatExporter JSON exports (`--format Json`), the
//! format server owners already have. A file is read and checked whole before anything of it
//! is written, so a bad file writes nothing; a message already kept (by id) is the same record
//! again, so importing twice, or importing what a fetch read, changes nothing.

use super::{AccessError, HistoryAccess};
use serde::{Deserialize, Serialize};
use sidekick_actors::history::filters::Kind;
use sidekick_actors::history::{Admitted, HistoryMessage, Offered};
use sidekick_actors::ChannelKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Messages per write (through the daemon, one request).
const BATCH: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: cannot read it: {1}")]
    Unreadable(PathBuf, std::io::Error),
    #[error("{0}: the file ends early (a truncated export?); nothing from it was kept")]
    Truncated(PathBuf),
    #[error("{0}: not a DiscordChatExporter JSON export ({1}); export with `--format Json`")]
    NotAnExport(PathBuf, String),
    #[error("{0}: a DM export; DMs are never imported")]
    DirectMessages(PathBuf),
    #[error("{0}: no .json files in it")]
    EmptyFolder(PathBuf),
    #[error("{0}")]
    Access(#[from] AccessError),
}

/// DiscordChatExporter's JSON, the parts the history needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Export {
    guild: ExportGuild,
    channel: ExportChannel,
    messages: Vec<ExportMessage>,
}

#[derive(Deserialize)]
struct ExportGuild {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportChannel {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    /// For a thread, its parent channel.
    category_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportMessage {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    content: String,
    author: ExportAuthor,
    #[serde(default)]
    reactions: Vec<ExportReaction>,
    reference: Option<ExportReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportAuthor {
    id: String,
    name: String,
    nickname: Option<String>,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Deserialize)]
struct ExportReaction {
    emoji: ExportEmoji,
    count: u32,
}

#[derive(Deserialize)]
struct ExportEmoji {
    id: Option<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportReference {
    message_id: Option<String>,
}

/// One file's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub channel: String,
    pub messages: usize,
    pub admitted: Admitted,
}

/// The export files `path` names: itself, or the `.json` files in it (sorted).
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ImportError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| ImportError::Unreadable(path.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    if files.is_empty() {
        return Err(ImportError::EmptyFolder(path.to_path_buf()));
    }
    Ok(files)
}

/// Reads and checks one export; nothing is written.
pub fn read(file: &Path) -> Result<(ChannelKey, Vec<Offered>), ImportError> {
    let bytes = std::fs::read(file).map_err(|e| ImportError::Unreadable(file.to_path_buf(), e))?;
    let export: Export = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => ImportError::Truncated(file.to_path_buf()),
        _ => ImportError::NotAnExport(file.to_path_buf(), e.to_string()),
    })?;
    let bad = |why: &str| ImportError::NotAnExport(file.to_path_buf(), why.to_string());
    if export.channel.kind.starts_with("Direct") {
        return Err(ImportError::DirectMessages(file.to_path_buf()));
    }
    let guild: u64 = export.guild.id.parse().map_err(|_| bad("the guild id is not a number"))?;
    let id: u64 = export.channel.id.parse().map_err(|_| bad("the channel id is not a number"))?;
    let channel = if export.channel.kind.contains("Thread") {
        let parent = export.channel.category_id.as_deref().and_then(|p| p.parse().ok());
        ChannelKey::Thread { guild: Some(guild), parent, thread: id }
    } else {
        ChannelKey::guild(guild, id)
    };
    let offered = export.messages.into_iter().map(|m| offered(&channel, m)).collect::<Result<Vec<_>, String>>().map_err(|e| bad(&e))?;
    Ok((channel, offered))
}

fn offered(channel: &ChannelKey, m: ExportMessage) -> Result<Offered, String> {
    let id = m.id.parse().map_err(|_| format!("message id {:?} is not a number", m.id))?;
    let author_id = m.author.id.parse().map_err(|_| format!("author id {:?} is not a number", m.author.id))?;
    let at = serenity::model::Timestamp::parse(&m.timestamp).map_err(|_| format!("message {id} has no readable timestamp"))?;
    let mut reactions: BTreeMap<String, u32> = BTreeMap::new();
    for r in m.reactions {
        let emoji = if r.emoji.name.is_empty() { r.emoji.id.unwrap_or_default() } else { r.emoji.name };
        *reactions.entry(emoji).or_default() += r.count;
    }
    Ok(Offered {
        kind: Kind::of_export_type(&m.kind),
        from_bot: m.author.is_bot,
        message: HistoryMessage {
            id,
            channel: *channel,
            guild: channel.guild_id(),
            author_id,
            // The name shown on the server, as the gateway gives it.
            author: m.author.nickname.filter(|n| !n.is_empty()).unwrap_or(m.author.name),
            content: m.content,
            at_ms: at.timestamp_millis().max(0) as u64,
            reply_to: m.reference.and_then(|r| r.message_id).and_then(|id| id.parse().ok()),
            reactions,
        },
    })
}

/// Imports one file (already checked by [`read`]).
pub async fn import(access: &HistoryAccess, file: &Path, channel: ChannelKey, offered: Vec<Offered>) -> Result<FileReport, ImportError> {
    let messages = offered.len();
    let mut admitted = Admitted::default();
    let mut offered = offered;
    while !offered.is_empty() {
        let rest = offered.split_off(offered.len().min(BATCH));
        admitted += access.keep(offered, None).await?;
        offered = rest;
    }
    Ok(FileReport { file: file.to_path_buf(), channel: channel.to_string(), messages, admitted })
}
