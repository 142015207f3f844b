//! The server's history: `sidekick fetch` against the fake Discord, `sidekick import` of
//! DiscordChatExporter files, and `sidekick dataset` on the real model.

mod dataset;
mod fetch;
mod import;

use crate::fake_discord::FakeDiscord;
use crate::support::{repo_root, sidekick};
use sidekick::store::FjallStore;
use sidekick_actors::history::HistoryMessage;
use sidekick_actors::ports::{GlobalSettings, SettingsStore};
use std::path::{Path, PathBuf};

pub(crate) fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Sets who may be learned from, in the store of `dir` (no daemon running).
pub(super) fn govern(dir: &Path, allow: &[u64], opted_out: &[u64]) {
    let store = FjallStore::open(&dir.join("store")).unwrap();
    let global = GlobalSettings {
        allowlist: allow.iter().map(u64::to_string).collect(),
        opted_out: opted_out.iter().map(u64::to_string).collect(),
        ..GlobalSettings::default()
    };
    store.save_global_settings(&global).unwrap();
}

/// The history kept in the store of `dir` (no daemon running).
pub(super) fn kept(dir: &Path) -> Vec<HistoryMessage> {
    let store = FjallStore::open(&dir.join("store")).unwrap();
    store.history_messages().collect::<Result<_, _>>().unwrap()
}

/// `sidekick fetch` against `fake`, as a command to run.
pub(super) fn fetch(dir: &Path, fake: &FakeDiscord) -> std::process::Command {
    let mut cmd = sidekick(dir);
    cmd.arg("fetch").env("DISCORD_TOKEN", "fake-token").env("DISCORD_API_BASE", fake.api_base());
    cmd
}

/// The shared corpus's exports, or the one day kept in the repository when it is absent.
pub(crate) fn corpus_files() -> Vec<PathBuf> {
    let shared = repo_root().join("../shared/corpus/ubuntu-irc");
    let dir = if shared.is_dir() { shared } else { repo_root().join("tests/fixtures/corpus") };
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}
