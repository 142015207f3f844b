//! Retrieval on the real embedding model, index and store.

use crate::support::{repo_root, say, status, test_config};
use sidekick::config::Config;
use sidekick::daemon::Daemon;
use sidekick_actors::commands::Access;
#[allow(unused_imports)]
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore, StatsStore};
use sidekick_actors::ChannelKey;
use sidekick_actors::{Inbound, RootMsg};
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: [&str; 10] = [
    "my raspberry pi will not boot from the sd card",
    "the raspberry pi shows a rainbow screen and never boots",
    "flashed a new sd card for the pi and it still won't start",
    "raspberry pi 4 stuck at boot, green led blinking four times",
    "is the sd card image corrupt if the pi does not boot?",
    "pi boots only when I reseat the sd card",
    "my raspberry pi freezes during boot after the update",
    "which sd card works best for booting a raspberry pi",
    "the pi's bootloader needs an eeprom update to boot from usb",
    "raspberry pi boot problems again, power supply is 5V 3A",
];

/// 190 real chat lines from the shared corpus, none about the topic.
fn unrelated_lines() -> Vec<String> {
    let dir = repo_root().join("../shared/corpus/ubuntu-irc");
    let text = std::fs::read_to_string(dir.join("ubuntu-2009-05-08.json")).expect("the shared corpus");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .filter(|c| (30..160).contains(&c.len()))
        .filter(|c| !["pi", "boot", "sd", "card", "raspberry", "usb", "eeprom"].iter().any(|w| c.to_lowercase().contains(w)))
        .take(190)
        .map(String::from)
        .collect()
}

pub(crate) fn retrieval_config(dir: &Path) -> Config {
    let mut config = test_config(dir);
    config.retrieval.enabled = true;
    config.retrieval.model_dir = repo_root().join("models/embed/all-MiniLM-L6-v2-int8");
    config.retrieval.onnxruntime = repo_root().join("models/onnxruntime/libonnxruntime.so.1.31.1");
    config.generation.max_tokens = 8;
    config
}

/// Stores messages the bot does not answer (reply rate 0), as a quiet server would.
pub(crate) async fn store_quietly(daemon: &Daemon, channel: &str, lines: &[String]) {
    say(daemon, channel, "!setrate 0").await;
    for line in lines {
        let (reply, _) = tokio::sync::mpsc::unbounded_channel();
        let channel = crate::support::ch(channel);
        let inbound = Inbound {
            addressed: false,
            guild: channel.guild_id().map(|g| g.to_string()),
            ..Inbound::addressed("someone", line, Access::Everyone, reply)
        };
        daemon.root.send_message(RootMsg::Route { channel, inbound }).unwrap();
    }
}

pub(crate) async fn wait_for_vectors(daemon: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let vectors = status(daemon).await.retrieval.map_or(0, |r| r.vectors);
        if vectors >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {vectors} of {n} messages were indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The background lines of the prompt for `question`, asked in a fresh channel.
pub(crate) async fn background(daemon: &Daemon, channel: &str, question: &str) -> Vec<String> {
    let prompt = say(daemon, channel, question).await.prompt.expect("a chat prompt");
    prompt.lines().filter_map(|l| l.strip_prefix("- someone: ").map(|t| t.trim_end_matches("<|im_end|>").to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_brings_back_the_messages_about_its_topic_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = retrieval_config(dir.path());
    let daemon = Daemon::start(&config).await.unwrap();
    let mut lines = unrelated_lines();
    assert_eq!(lines.len(), 190);
    for (i, topic) in TOPIC.iter().enumerate() {
        lines.insert(i * 19, topic.to_string());
    }
    store_quietly(&daemon, "general", &lines).await;
    wait_for_vectors(&daemon, 200).await;

    let question = "how do I get my raspberry pi to boot from the sd card?";
    let found = background(&daemon, "asker-1", question).await;
    assert!(found.len() >= 3, "too little context: {found:?}");
    for line in &found {
        assert!(TOPIC.contains(&line.as_str()), "unrelated message in the prompt: {line}");
    }
    let unrelated = background(&daemon, "asker-2", "what should I cook for dinner tonight with pasta and tomatoes?").await;
    assert!(unrelated.iter().all(|l| !TOPIC.contains(&l.as_str())), "{unrelated:?}");
    daemon.shutdown().await.unwrap();

    // Restart: the saved index answers the same.
    let daemon = Daemon::start(&config).await.unwrap();
    let retrieval = status(&daemon).await.retrieval.unwrap();
    assert_eq!((retrieval.vectors, retrieval.rebuilds), (200 + 2, 0), "loaded (with the two questions), not rebuilt");
    assert_eq!(background(&daemon, "asker-3", question).await, found);
    daemon.shutdown().await.unwrap();

    // A truncated index file is rebuilt from the store, with the same answers.
    let index = config.storage.path.join("vectors.usearch");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 3]).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    let retrieval = status(&daemon).await.retrieval.unwrap();
    assert_eq!((retrieval.vectors, retrieval.rebuilds), (200 + 3, 1), "rebuilt from every stored message");
    assert_eq!(background(&daemon, "asker-4", question).await, found);
    daemon.shutdown().await.unwrap();

    // So is an index of another dimension (a plain usearch file, as another tool would write).
    let other = usearch::Index::new(&usearch::IndexOptions { dimensions: 128, ..Default::default() }).unwrap();
    other.reserve(1).unwrap();
    other.add(1, &[0.5f32; 128]).unwrap();
    other.save(index.to_str().unwrap()).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    assert_eq!(status(&daemon).await.retrieval.unwrap().rebuilds, 1);
    assert_eq!(background(&daemon, "asker-5", question).await, found);
    daemon.shutdown().await.unwrap();

    // And one whose graph was damaged in place (usearch would load it and crash searching).
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].iter_mut().for_each(|b| *b = !*b);
    std::fs::write(&index, &bytes).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    assert_eq!(status(&daemon).await.retrieval.unwrap().rebuilds, 1);
    assert_eq!(background(&daemon, "asker-6", question).await, found);
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_onnx_runtime_the_bot_answers_without_retrieval() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = retrieval_config(dir.path());
    config.retrieval.onnxruntime = "/nowhere/libonnxruntime.so".into();
    let daemon = Daemon::start(&config).await.unwrap();
    let degraded = status(&daemon).await.retrieval.unwrap().degraded.expect("degraded mode");
    assert!(degraded.contains("/nowhere/libonnxruntime.so") && degraded.contains("./run.sh setup"), "{degraded}");
    let answer = say(&daemon, "c", "hello there").await;
    assert!(answer.failed.is_none() && !answer.text.is_empty(), "{answer:?}");
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_with_purge_deletes_a_channels_messages_and_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let config = retrieval_config(dir.path());
    let daemon = Daemon::start(&config).await.unwrap();
    let topic: Vec<String> = TOPIC.iter().map(|s| s.to_string()).collect();
    store_quietly(&daemon, "discord:77", &topic).await;
    store_quietly(&daemon, "discord:88", &unrelated_lines()[..5]).await;
    wait_for_vectors(&daemon, 15).await;
    let question = "how do I get my raspberry pi to boot from the sd card?";
    assert!(!background(&daemon, "asker", question).await.is_empty());

    let answer = say(&daemon, "discord:88", "!deny <#77> purge").await.notice.unwrap();
    assert!(answer.ends_with("Deleted 10 stored messages and 10 vectors from it."), "{answer}");
    assert_eq!(status(&daemon).await.retrieval.unwrap().vectors, 5 + 1, "the other channel and the question remain");
    assert!(background(&daemon, "asker-2", question).await.is_empty(), "purged messages no longer come back");
    assert!(daemon.store.recent_history(&ChannelKey::guild(1, 77), 50).unwrap().is_empty());
    daemon.shutdown().await.unwrap();
}
