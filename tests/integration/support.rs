//! Helpers shared by the integration tests: the bundled model, a daemon on a temp store,
//! and a way to say something in a channel and collect the whole answer.

use sidekick::config::Config;
use sidekick::daemon::Daemon;
use sidekick_actors::{ChannelMsg, Inbound, ReplyEvent, RootMsg};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

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
    config
}

/// Everything the bot answered to one message.
#[derive(Debug, Default)]
pub struct Answer {
    pub prompt: Option<String>,
    pub text: String,
    pub notice: Option<String>,
    pub failed: Option<String>,
}

pub async fn say(daemon: &Daemon, channel: &str, text: &str) -> Answer {
    let (reply, mut events) = mpsc::unbounded_channel();
    let inbound = Inbound { author: "tester".into(), text: text.into(), message_id: None, reply };
    daemon
        .root
        .send_message(RootMsg::Route { channel: channel.into(), msg: ChannelMsg::Inbound(inbound) })
        .expect("root is running");
    let mut answer = Answer::default();
    let collect = async {
        while let Some(event) = events.recv().await {
            match event {
                ReplyEvent::Notice(t) => {
                    answer.notice = Some(t);
                    break;
                }
                ReplyEvent::Started { prompt } => answer.prompt = Some(prompt),
                ReplyEvent::Token(_) => {}
                ReplyEvent::Done { text, .. } => {
                    answer.text = text;
                    break;
                }
                ReplyEvent::Failed(why) => {
                    answer.failed = Some(why);
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), collect).await.expect("an answer within 2 minutes");
    answer
}

pub async fn status(daemon: &Daemon) -> sidekick_actors::TreeStatus {
    ractor::call_t!(daemon.root, RootMsg::Status, 5000).expect("status")
}
