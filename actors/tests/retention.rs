//! Retention: with `storage.keep_messages_days`, what was said before it leaves the message
//! log, the server's history and the vector index; hourly counters go after 400 days.

mod support;

use sidekick_actors::clock::Clock;
use sidekick_actors::ports::{MessageLog, StatsStore};
use sidekick_actors::stats::hour_key;
use sidekick_actors::testing::FakeRetrieverLoader;
use sidekick_actors::{Pruned, RootMsg};
use std::sync::Arc;
use std::time::Duration;
use support::{channel, Message, Setup, Tree};

const DAY_MS: u64 = 86_400_000;

async fn prune(tree: &Tree) -> Pruned {
    match tree.root.call(|reply| RootMsg::Prune(Some(reply)), Some(Duration::from_secs(5))).await {
        Ok(ractor::rpc::CallResult::Success(pruned)) => pruned,
        other => panic!("no retention pass: {other:?}"),
    }
}

fn with_retrieval(mut setup: Setup) -> Setup {
    setup.retriever = Arc::new(FakeRetrieverLoader::default());
    setup
}

#[tokio::test(start_paused = true)]
async fn messages_older_than_the_retention_leave_the_log_the_history_and_the_index() {
    let mut setup = with_retrieval(Setup::default());
    setup.keep_messages = Some(Duration::from_millis(7 * DAY_MS));
    let tree = setup.start().await;
    let here = channel(1);
    tree.say(here, Message::chatter("my cat is called Miso").id("1001")).await;
    tree.say(here, Message::chatter("Miso likes tuna").id("1002")).await;
    tree.clock.advance(8 * DAY_MS);
    tree.say(here, Message::chatter("the weather is nice").id("1003")).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the retrieval actor's next batch

    assert_eq!(prune(&tree).await, Pruned { messages: 2 + 2, vectors: 2, hourly_stats: 0 }, "two messages from the log and the history");
    let kept: Vec<String> = tree.store.messages(&here).into_iter().map(|m| m.content).collect();
    assert_eq!(kept, ["the weather is nice"]);
    assert_eq!(tree.store.history().iter().map(|m| m.id).collect::<Vec<_>>(), [1003]);
    let indexed: Vec<String> = tree.retriever.retriever.indexed().into_iter().map(|i| i.text).collect();
    assert_eq!(indexed, ["the weather is nice"]);

    // The conversation no longer shows the model what was dropped.
    assert!(tree.say(here, Message::addressed("what is my cat called?")).await.replied());
    let prompt = tree.loader.model.prompts().last().cloned().unwrap();
    assert!(prompt.iter().all(|t| !t.content.contains("Miso")), "{prompt:?}");
    assert!(prompt.iter().any(|t| t.content.contains("the weather is nice")), "{prompt:?}");
    assert_eq!(prune(&tree).await, Pruned::default(), "nothing more to drop");
}

#[tokio::test(start_paused = true)]
async fn without_a_retention_messages_stay_and_hourly_counters_go_after_400_days() {
    let tree = with_retrieval(Setup::default()).start().await;
    let here = channel(1);
    tree.say(here, Message::chatter("an old message").id("1001")).await;
    let now = tree.clock.now_ms();
    tree.store.add_stat(&hour_key("replies", now), 3).unwrap();
    tree.clock.advance(401 * DAY_MS);
    tree.store.add_stat(&hour_key("replies", now + 401 * DAY_MS), 1).unwrap();
    tree.store.add_stat("a counter of no hour", 5).unwrap();

    let pruned = prune(&tree).await;
    assert_eq!((pruned.messages, pruned.vectors), (0, 0));
    assert!(pruned.hourly_stats >= 1, "{pruned:?}");
    assert_eq!(tree.store.stat(&hour_key("replies", now)).unwrap(), 0, "401 days old");
    assert_eq!(tree.store.stat(&hour_key("replies", now + 401 * DAY_MS)).unwrap(), 1);
    assert_eq!(tree.store.stat("a counter of no hour").unwrap(), 5);
    assert_eq!(tree.store.channel_summaries().unwrap()[0].messages, 1);
}
