//! Months of uptime on the real store and index: a message stored just before a crash is
//! still embedded, and retention drops old messages from the store and the vector index.

use crate::retrieval::{background, retrieval_config, store_quietly, wait_for_vectors};
use crate::support::{ch, status};
use sidekick::daemon::{engine_config, Daemon};
use sidekick::store::FjallStore;
use sidekick_actors::clock::ManualClock;
use sidekick_actors::ports::{MessageLog, StoredMessage};
use sidekick_actors::prompt::Role;
use std::sync::Arc;

const DAY_MS: u64 = 86_400_000;

/// Starts the daemon, has one message stored and embedded, and stops it.
async fn one_message_embedded(config: &sidekick::config::Config) {
    let daemon = Daemon::start(config).await.unwrap();
    store_quietly(&daemon, "general", &["the office printer jams on every duplex job".to_string()]).await;
    wait_for_vectors(&daemon, 1).await;
    daemon.shutdown().await.unwrap();
}

/// A user's message as the store keeps it, by user 42.
fn raspberry_pi_question(author: &str) -> StoredMessage {
    StoredMessage {
        role: Role::User,
        author: author.into(),
        content: "my raspberry pi will not boot from the sd card".into(),
        at_ms: 1,
        message_id: None,
        guild: Some("1".into()),
        user_id: Some("42".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_but_never_embedded_is_caught_up_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = retrieval_config(dir.path());
    one_message_embedded(&config).await;

    // The process died after the synced append and before the embedding batch.
    {
        let store = FjallStore::open(&config.storage.path).unwrap();
        let message = raspberry_pi_question("someone");
        store.append_message(&ch("general"), &message).unwrap();
    }

    let daemon = Daemon::start(&config).await.unwrap();
    let retrieval = status(&daemon).await.retrieval.unwrap();
    assert_eq!((retrieval.vectors, retrieval.rebuilds), (2, 0), "caught up from the saved index, not rebuilt");
    let found = background(&daemon, "asker", "why does my raspberry pi not boot?").await;
    assert!(found.iter().any(|l| l.contains("raspberry pi will not boot")), "{found:?}");
    daemon.shutdown().await.unwrap();

    // Caught up once: the next start has nothing to add.
    let daemon = Daemon::start(&config).await.unwrap();
    assert_eq!(status(&daemon).await.retrieval.unwrap().vectors, 3, "the two messages and the question");
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_embedded_whose_author_asked_to_be_forgotten_stays_out_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = retrieval_config(dir.path());
    one_message_embedded(&config).await;

    // Stored, not embedded (the process died), and then its author was forgotten.
    {
        let store = FjallStore::open(&config.storage.path).unwrap();
        let message = raspberry_pi_question("leaver");
        store.append_message(&ch("general"), &message).unwrap();
        assert_eq!(store.forget_user("42").unwrap().messages, 1);
    }

    let daemon = Daemon::start(&config).await.unwrap();
    assert_eq!(status(&daemon).await.retrieval.unwrap().vectors, 1, "the forgotten message was not caught up");
    let found = background(&daemon, "asker", "why does my raspberry pi not boot?").await;
    assert!(!found.iter().any(|l| l.contains("raspberry pi")), "{found:?}");
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_later_old_messages_leave_the_store_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = retrieval_config(dir.path());
    config.storage.keep_messages_days = Some(7);
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::at(start));
    let daemon = Daemon::start_with(&config, engine_config(&config), clock.clone()).await.unwrap();
    let old: Vec<String> =
        ["my raspberry pi will not boot from the sd card", "the pi shows a rainbow screen and never boots"].map(String::from).to_vec();
    store_quietly(&daemon, "general", &old).await;
    wait_for_vectors(&daemon, 2).await;
    assert_eq!(background(&daemon, "asker", "why does my raspberry pi not boot?").await.len(), 2);
    daemon.shutdown().await.unwrap();

    // Eight days on, the start's retention pass drops them (the question was asked in
    // another channel, also eight days ago).
    clock.advance(8 * DAY_MS);
    let daemon = Daemon::start_with(&config, engine_config(&config), clock.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while status(&daemon).await.retrieval.unwrap().vectors > 0 {
        assert!(std::time::Instant::now() < deadline, "old vectors were not dropped");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(daemon.store.message_count(&ch("general")), 0, "old messages left the log");
    assert!(background(&daemon, "asker-2", "why does my raspberry pi not boot?").await.is_empty());
    assert_eq!(daemon.store.message_count(&ch("asker-2")), 2, "today's question and answer stay");
    daemon.shutdown().await.unwrap();
}
