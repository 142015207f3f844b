//! The server's history outside the daemon: `sidekick fetch` (Discord's REST API),
//! `sidekick import` (DiscordChatExporter files) and `sidekick dataset` (the training set).
//!
//! fjall lets one process open a store, and the daemon keeps it open. So these commands reach
//! the history through [`HistoryAccess`]: through the daemon's control socket when it runs
//! (the daemon writes, with the same rules), or by opening the store when it does not. Either
//! way every message passes the one gate, [`sidekick_actors::history::admit`], at the moment it
//! is written, with the governance (allowlist, opt-outs) of that moment.

pub mod commands;
pub mod dataset;
pub mod dpo;
pub mod fetch;
pub mod import;
pub mod jobs;
mod rest;

use crate::config::Config;
use crate::control::{self, Request, Response};
use crate::store::FjallStore;
use serde::{Deserialize, Serialize};
use sidekick_actors::feedback::pairs::PreferencePair;
use sidekick_actors::history::{self, Admitted, HistoryMessage, Offered};
use sidekick_actors::ports::{GlobalSettings, HistoryLog, SettingsStore, StatsStore, StoreError};
use sidekick_actors::ChannelKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a history command asks of the daemon (`control.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryRequest {
    Governance,
    Cursor {
        channel: ChannelKey,
    },
    Keep {
        offered: Vec<Offered>,
        cursor: Option<(ChannelKey, u64)>,
    },
    /// Writes the whole history, one JSON message a line, to `path` (a snapshot).
    Export {
        path: PathBuf,
    },
    /// The preference pairs of the reply journal (🔁 and the votes after it).
    Pairs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryResponse {
    Governance(GlobalSettings),
    Cursor(Option<u64>),
    Kept(Admitted),
    Exported(usize),
    Pairs(Vec<PreferencePair>),
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the running daemon: {0}")]
    Daemon(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The history, through the daemon or directly.
pub enum HistoryAccess {
    Direct(Arc<FjallStore>),
    Daemon(PathBuf),
}

impl HistoryAccess {
    /// Through the daemon if one runs on this store, otherwise the store itself.
    pub async fn open(config: &Config) -> Result<HistoryAccess, AccessError> {
        let socket = control::socket_path(config);
        match control::ask(&socket, &Request::History(HistoryRequest::Governance)).await {
            Ok(_) => Ok(HistoryAccess::Daemon(socket)),
            Err(control::AskError::NotRunning(_)) => Ok(HistoryAccess::Direct(Arc::new(FjallStore::open(&config.storage.path)?))),
            Err(e) => Err(AccessError::Daemon(e.to_string())),
        }
    }

    pub fn through_daemon(&self) -> bool {
        matches!(self, HistoryAccess::Daemon(_))
    }

    async fn ask(&self, request: HistoryRequest) -> Result<HistoryResponse, AccessError> {
        let HistoryAccess::Daemon(socket) = self else { unreachable!("only asked of a daemon") };
        match control::ask(socket, &Request::History(request)).await {
            Ok(Response::History(answer)) => Ok(answer),
            Ok(Response::Error(e)) => Err(AccessError::Daemon(e)),
            Ok(_) => Err(AccessError::Daemon("an unexpected answer".into())),
            Err(e) => Err(AccessError::Daemon(e.to_string())),
        }
    }

    pub async fn governance(&self) -> Result<GlobalSettings, AccessError> {
        match self {
            HistoryAccess::Direct(store) => Ok(store.global_settings()?),
            HistoryAccess::Daemon(_) => match self.ask(HistoryRequest::Governance).await? {
                HistoryResponse::Governance(g) => Ok(g),
                _ => Err(AccessError::Daemon("an unexpected answer".into())),
            },
        }
    }

    pub async fn cursor(&self, channel: ChannelKey) -> Result<Option<u64>, AccessError> {
        match self {
            HistoryAccess::Direct(store) => Ok(store.history_cursor(&channel)?),
            HistoryAccess::Daemon(_) => match self.ask(HistoryRequest::Cursor { channel }).await? {
                HistoryResponse::Cursor(c) => Ok(c),
                _ => Err(AccessError::Daemon("an unexpected answer".into())),
            },
        }
    }

    /// Offers messages to the history (and moves a channel's cursor in the same write).
    pub async fn keep(&self, offered: Vec<Offered>, cursor: Option<(ChannelKey, u64)>) -> Result<Admitted, AccessError> {
        match self {
            HistoryAccess::Direct(store) => {
                let store = store.clone();
                Ok(tokio::task::spawn_blocking(move || keep(&store, offered, cursor)).await.map_err(std::io::Error::other)??)
            }
            HistoryAccess::Daemon(_) => match self.ask(HistoryRequest::Keep { offered, cursor }).await? {
                HistoryResponse::Kept(a) => Ok(a),
                _ => Err(AccessError::Daemon("an unexpected answer".into())),
            },
        }
    }

    /// The preference pairs the reply journal holds, as the governance of now allows.
    pub async fn preference_pairs(&self) -> Result<Vec<PreferencePair>, AccessError> {
        match self {
            HistoryAccess::Direct(store) => Ok(store.preference_pairs(&store.global_settings()?)?),
            HistoryAccess::Daemon(_) => match self.ask(HistoryRequest::Pairs).await? {
                HistoryResponse::Pairs(pairs) => Ok(pairs),
                _ => Err(AccessError::Daemon("an unexpected answer".into())),
            },
        }
    }

    /// The whole history as it is now, channel by channel, oldest first.
    pub async fn snapshot(&self, scratch: &Path) -> Result<Vec<HistoryMessage>, AccessError> {
        match self {
            HistoryAccess::Direct(store) => Ok(store.history_messages().collect::<Result<_, _>>()?),
            HistoryAccess::Daemon(_) => {
                let path = std::path::absolute(scratch.join("history-snapshot.jsonl"))?;
                self.ask(HistoryRequest::Export { path: path.clone() }).await?;
                let text = std::fs::read_to_string(&path)?;
                let _ = std::fs::remove_file(&path);
                text.lines()
                    .map(|line| serde_json::from_str(line).map_err(|e| AccessError::Daemon(format!("an unreadable snapshot line: {e}"))))
                    .collect()
            }
        }
    }
}

/// The gate and the write, as the daemon and a direct run both do it: the governance read now,
/// the rules applied, what passes kept with the cursor in one synced write.
pub fn keep(store: &FjallStore, offered: Vec<Offered>, cursor: Option<(ChannelKey, u64)>) -> Result<Admitted, StoreError> {
    let global = store.global_settings()?;
    let (kept, counts) = history::sort(&global, offered);
    let moved = cursor.is_some();
    store.keep_history(&kept, cursor)?;
    if !moved {
        store.flush()?; // an import's batch: durable before it is counted
    }
    Ok(counts)
}

/// The daemon's side of a [`HistoryRequest`].
pub fn serve(store: &FjallStore, request: HistoryRequest) -> Result<HistoryResponse, String> {
    let e = |e: StoreError| e.to_string();
    Ok(match request {
        HistoryRequest::Governance => HistoryResponse::Governance(store.global_settings().map_err(e)?),
        HistoryRequest::Cursor { channel } => HistoryResponse::Cursor(store.history_cursor(&channel).map_err(e)?),
        HistoryRequest::Keep { offered, cursor } => HistoryResponse::Kept(keep(store, offered, cursor).map_err(e)?),
        HistoryRequest::Export { path } => HistoryResponse::Exported(export(store, &path).map_err(|e| e.to_string())?),
        HistoryRequest::Pairs => HistoryResponse::Pairs(store.preference_pairs(&store.global_settings().map_err(e)?).map_err(e)?),
    })
}

fn export(store: &FjallStore, path: &Path) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut n = 0;
    for message in store.history_messages() {
        serde_json::to_writer(&mut out, &message?)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
