//! The personality adapters under `rl.adapters_dir`: `personality-vN.gguf` files and
//! `personality.json`, which says what each was trained from, how it scored, and which one is
//! served (only one that passed the gate).

use ractor::rpc::CallResult;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use sidekick_actors::feedback::FeedbackMsg;
use sidekick_actors::RootMsg;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "personality.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonalityManifest {
    pub base_model_sha256: String,
    /// The file served, if any.
    pub serving: Option<String>,
    pub versions: Vec<PersonalityVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalityVersion {
    pub version: u64,
    pub file: String,
    pub created_unix: u64,
    /// The dataset's manifest digest and seed: what it learned from.
    pub dataset_digest: String,
    pub dataset_seed: u64,
    pub settings: serde_json::Value,
    pub sft_steps: u64,
    pub dpo_steps: u64,
    pub final_loss: f32,
    pub train_seconds: f64,
    /// Held-out perplexity through llama.cpp, and what it was compared with.
    pub heldout_ppl: f64,
    pub compared_with: String,
    pub compared_ppl: f64,
    pub served: bool,
    /// Why it is not served, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl PersonalityManifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    pub fn read(dir: &Path) -> PersonalityManifest {
        std::fs::read(Self::path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::files::write_atomically(&Self::path(dir), &serde_json::to_vec_pretty(self).expect("serializable"))
    }

    pub fn next_version(&self) -> u64 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// The served adapter's file, if it was trained for the model `sha256`.
    pub fn served(&self, dir: &Path, sha256: &str) -> Option<PathBuf> {
        (self.base_model_sha256 == sha256).then(|| self.serving.as_ref().map(|f| dir.join(f))).flatten()
    }
}

/// The personality adapter to serve: the manifest's, if it was made for this model file and
/// is still there.
pub fn served_personality(config: &crate::config::Config) -> Option<crate::learning::Personality> {
    let dir = &config.rl.adapters_dir;
    let manifest = PersonalityManifest::read(dir);
    let file = manifest.serving.clone()?;
    let sha256 = crate::history::dpo::file_sha256(&config.model.path).ok()?;
    let Some(path) = manifest.served(dir, &sha256).filter(|p| p.is_file()) else {
        tracing::warn!(file, "the personality adapter is missing or was trained for another model file; serving without it");
        return None;
    };
    let summary = match manifest.versions.iter().find(|v| v.file == file) {
        Some(v) => format!("{file}, held-out perplexity {:.2} ({} {:.2})", v.heldout_ppl, v.compared_with, v.compared_ppl),
        None => file,
    };
    Some(crate::learning::Personality { path, summary })
}

/// Serves a personality that `sidekick train` (or `!train`) made while the daemon runs: every
/// `every`, it reads which file `personality.json` names; when that changes, the feedback
/// actor has the model serve the new one and starts a fresh feedback adapter on top of it
/// (`FeedbackMsg::NewPersonality`). Ends with the actor tree.
pub async fn watch(config: crate::config::Config, root: ActorRef<RootMsg>, mut served: Option<PathBuf>, every: std::time::Duration) {
    let dir = config.rl.adapters_dir.clone();
    // From what is served, not from the file: it may change before this task first runs.
    let mut seen = served.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    loop {
        tokio::time::sleep(every).await;
        let named = PersonalityManifest::read(&dir).serving;
        if named == seen {
            continue;
        }
        // Hashes the model file: off the runtime's threads.
        let checked = config.clone();
        let Ok(next) = tokio::task::spawn_blocking(move || served_personality(&checked)).await else { continue };
        let path = next.as_ref().map(|p| p.path.clone());
        if path == served {
            seen = named;
            continue;
        }
        let asked = root.call(|reply| RootMsg::Feedback(FeedbackMsg::NewPersonality(next, reply)), Some(SWAP_WAIT)).await;
        match asked {
            Ok(CallResult::Success(Ok(()))) => {
                tracing::info!(personality = ?path, "serving the new personality; a fresh feedback adapter is trained on it");
                (served, seen) = (path, named);
            }
            Ok(CallResult::Success(Err(why))) => {
                // The same file would fail again: wait for the next one.
                tracing::error!(%why, personality = ?path, "the new personality cannot be served; the old one stays");
                seen = named;
            }
            // The feedback actor is restarting, or the swap waits on long replies: next time.
            Ok(_) => {}
            Err(_) => return, // the tree has stopped
        }
    }
}

/// How long a personality swap may wait for the replies in flight (and the swap before it).
const SWAP_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The gate every adapter passes before it is served: its held-out perplexity may rise at
/// most `max_rise` over the served one's. `Err` says why not.
pub fn gate(candidate_ppl: f64, served_ppl: f64, max_rise: f64) -> Result<(), String> {
    if !candidate_ppl.is_finite() {
        return Err("its held-out perplexity is not a number".into());
    }
    let limit = served_ppl * (1.0 + max_rise);
    if candidate_ppl <= limit {
        Ok(())
    } else {
        Err(format!(
            "its held-out perplexity {candidate_ppl:.2} is {:.1} % above the served one's {served_ppl:.2} (at most {:.0} % allowed)",
            (candidate_ppl / served_ppl - 1.0) * 100.0,
            max_rise * 100.0
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_through_at_most_the_allowed_rise() {
        assert!(gate(10.4, 10.0, 0.05).is_ok());
        assert!(gate(10.5, 10.0, 0.05).is_ok(), "exactly 5 % passes");
        let refused = gate(12.0, 10.0, 0.05).unwrap_err();
        assert!(refused.contains("20.0 % above the served one's 10.00"), "{refused}");
        assert!(gate(f64::NAN, 10.0, 0.05).is_err());
        assert!(gate(3.0, 10.0, 0.0).is_ok(), "better always passes");
    }

    #[test]
    fn only_an_adapter_for_this_model_is_served() {
        let m = PersonalityManifest { base_model_sha256: "abc".into(), serving: Some("personality-v2.gguf".into()), versions: vec![] };
        assert_eq!(m.served(Path::new("/a"), "abc"), Some(PathBuf::from("/a/personality-v2.gguf")));
        assert_eq!(m.served(Path::new("/a"), "other"), None);
    }
}
