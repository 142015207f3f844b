//! Privacy on the real stack: the embedding model, the vector index and fjall, checked on the
//! prompt the engine receives.

use crate::retrieval::{retrieval_config, wait_for_vectors};
use sidekick::daemon::{Answer, Daemon};
use sidekick_actors::ChannelKey;
use std::time::Duration;

async fn say(daemon: &Daemon, channel: ChannelKey, who: (&str, &str), text: &str) -> Answer {
    let asked = daemon.ask_as(channel, who.0, Some(who.1), text);
    tokio::time::timeout(Duration::from_secs(120), asked).await.expect("an answer").expect("the tree is running")
}

const ALICE: (&str, &str) = ("alice", "11");
const BOB: (&str, &str) = ("bob", "12");
const CAROL: (&str, &str) = ("carol", "13");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_told_in_a_dm_never_reaches_anyone_elses_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&retrieval_config(dir.path())).await.unwrap();
    let (alice_dm, bob_dm) = (ChannelKey::Dm { user: Some(11), channel: 1011 }, ChannelKey::Dm { user: Some(12), channel: 1012 });
    say(&daemon, alice_dm, ALICE, "my locker code is 4812").await;
    wait_for_vectors(&daemon, 1).await;
    let bob = say(&daemon, bob_dm, BOB, "what's the locker code?").await;
    assert!(!bob.prompt.as_deref().unwrap().contains("4812"), "{:?}", bob.prompt);
    // The same words said in a server come back there: retrieval itself works here.
    say(&daemon, ChannelKey::guild(7, 1), ALICE, "the locker code at the office is 4812").await;
    wait_for_vectors(&daemon, 3).await;
    let asked = say(&daemon, ChannelKey::guild(7, 2), BOB, "what's the locker code at the office?").await;
    assert!(asked.prompt.as_deref().unwrap().contains("4812"), "{:?}", asked.prompt);
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetme_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = retrieval_config(dir.path());
    let daemon = Daemon::start(&config).await.unwrap();
    let (here, there) = (ChannelKey::guild(7, 1), ChannelKey::guild(7, 2));
    say(&daemon, here, CAROL, "my parrot is called Captain Fluffbeard").await;
    wait_for_vectors(&daemon, 1).await;
    let forgot = say(&daemon, here, CAROL, "!forgetme").await.notice.unwrap();
    assert!(forgot.starts_with("Done: I deleted 1 of your messages") && forgot.contains("1 vectors"), "{forgot}");
    daemon.shutdown().await.unwrap();

    let daemon = Daemon::start(&config).await.unwrap();
    say(&daemon, there, CAROL, "my parrot also likes crackers").await;
    let asked = say(&daemon, there, BOB, "what is the parrot called?").await;
    let prompt = asked.prompt.unwrap();
    assert!(!prompt.contains("Fluffbeard") && !prompt.contains("crackers"), "{prompt}");
    let store = &daemon.store;
    assert_eq!(sidekick_actors::ports::MessageLog::user_message_count(store.as_ref(), "13").unwrap(), 0, "nothing of hers is kept");
    assert!(store.vector_entries().all(|(_, m)| m.user_id.as_deref() != Some("13")), "nor embedded");
    daemon.shutdown().await.unwrap();
}
