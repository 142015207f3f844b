//! Helpers shared by the integration tests: the bundled model, a daemon on a temp store,
//! and a way to say something in a channel and collect the whole answer.

use sidekick::config::Config;
use sidekick::daemon::{Answer, Daemon};
use sidekick_actors::RootMsg;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled model; the tests need it, so its absence is a failure with the fix in it.
pub fn model_path() -> PathBuf {
    let path = repo_root().join(sidekick::config::DEFAULT_MODEL);
    assert!(path.is_file(), "{} is missing: run `./run.sh setup` first", path.display());
    path
}

/// A small configuration for tests: the real model, a temp store, no metrics endpoint.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.model.path = model_path();
    config.model.context_tokens = 2048;
    config.model.parallel = 4;
    config.model.threads = 1;
    config.model.threads_batch = 2;
    config.storage.path = dir.join("store");
    config.metrics.listen = String::new();
    config.shutdown.grace_seconds = 2.0;
    // Retrieval brings other channels of the same server into prompts; the tests that want it
    // turn it on.
    config.retrieval.enabled = false;
    // Training loads a second copy of the model; the learning tests turn it on.
    config.rl.enabled = false;
    config.rl.adapters_dir = dir.join("adapters");
    config
}

pub async fn say(daemon: &Daemon, channel: &str, text: &str) -> Answer {
    tokio::time::timeout(Duration::from_secs(120), daemon.ask(channel, "tester", text))
        .await
        .expect("an answer within 2 minutes")
        .expect("the tree is running")
}

pub async fn status(daemon: &Daemon) -> sidekick_actors::TreeStatus {
    ractor::call_t!(daemon.root, RootMsg::Status, 5000).expect("status")
}
