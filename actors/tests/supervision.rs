//! Supervision at the actor level, in the style of ractor's own tests: real actors, scripted
//! ports, and tokio's paused clock, so restarts happen at exactly the times the policy says.

mod support;

use sidekick_actors::supervisor::Child;
use sidekick_actors::RootMsg;
use std::time::Duration;
use support::{channel, Message, Setup};
use tokio::time::Instant;

const BACKOFFS_MS: [u64; 5] = [100, 200, 400, 800, 1600];

#[tokio::test(start_paused = true)]
async fn a_failing_model_comes_back_after_doubling_backoffs_then_the_tree_stops() {
    let tree = Setup::default().start().await;
    assert_eq!(tree.loader.loads(), 1);
    for (i, backoff) in BACKOFFS_MS.iter().enumerate() {
        let failed = Instant::now();
        tree.root.send_message(RootMsg::InjectPanic(Child::Model)).unwrap();
        tree.until("the model is loaded again", || tree.loader.loads() == i + 2).await;
        let waited = failed.elapsed();
        assert!(waited >= Duration::from_millis(*backoff) && waited < Duration::from_millis(backoff + 5), "restart {i} after {waited:?}");
        tree.until_restarts(i as u64 + 1).await;
    }
    tree.until_restarts(5).await;
    assert_eq!(tree.status().await.restarts, 5);
    // A sixth failure within the minute: without a model the bot is useless, so the tree
    // stops (and the process with it; see `sidekick run`).
    tree.root.send_message(RootMsg::InjectPanic(Child::Model)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), tree.join).await.expect("the root stopped").unwrap();
    let asked = tree.exit.borrow().clone().expect("the process is asked to end");
    assert_eq!(asked.code, 1, "a failure the service manager should restart");
    assert_eq!(asked.why, "the model actor failed 6 times within 1m 00s; exiting so the service manager starts a fresh process");
}

#[tokio::test(start_paused = true)]
async fn failures_spread_over_more_than_the_window_never_exhaust_the_limit() {
    let tree = Setup::default().start().await;
    for i in 0..8 {
        tree.root.send_message(RootMsg::InjectPanic(Child::Model)).unwrap();
        tree.until("the model is loaded again", || tree.loader.loads() == i + 2).await;
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    assert_eq!(tree.status().await.restarts, 8, "each restart was the first in its minute");
    assert!(!tree.join.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_channel_that_keeps_failing_rests_for_a_minute_while_others_go_on() {
    let tree = Setup::default().start().await;
    let (fragile, other) = (channel(1), channel(2));
    assert!(tree.say(fragile, Message::addressed("hello")).await.replied());
    for restarts in 1..=5u64 {
        tree.root.send_message(RootMsg::InjectPanic(Child::Channel(fragile))).unwrap();
        for _ in 0..3000 {
            if tree.status().await.restarts == restarts {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(tree.status().await.restarts, restarts);
    }
    tree.root.send_message(RootMsg::InjectPanic(Child::Channel(fragile))).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let rested = tree.say(fragile, Message::addressed("still there?")).await;
    assert_eq!(rested.answer(), Some("This channel hit repeated errors; I'm giving it a short rest."));
    assert!(tree.say(other, Message::addressed("and here?")).await.replied(), "other channels go on");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(tree.say(fragile, Message::addressed("better now?")).await.replied(), "after the rest it answers again");
    let history: Vec<String> = tree.store.messages(&fragile).into_iter().map(|m| m.content).collect();
    assert!(history.contains(&"better now?".to_string()) && history.contains(&"hello".to_string()), "its history survived: {history:?}");
}

/// Retrieval and learning are extras: when they keep failing the bot goes on without them.
#[tokio::test(start_paused = true)]
async fn retrieval_and_learning_that_keep_failing_are_left_off_and_replies_go_on() {
    let retriever = std::sync::Arc::new(sidekick_actors::testing::FakeRetrieverLoader::default());
    let tree = Setup { retriever, ..Setup::default() }.start().await;
    for child in [Child::Retrieval, Child::Feedback] {
        for _ in 0..6 {
            tree.root.send_message(RootMsg::InjectPanic(child.clone())).unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let status = tree.status().await;
    assert_eq!(status.restarts, 10, "five restarts each, then no more");
    assert!(status.retrieval.is_none(), "retrieval is off");
    assert!(tree.say(channel(1), Message::addressed("hello")).await.replied());
    let metrics =
        tree.say(channel(1), Message { access: sidekick_actors::commands::Access::Owner, ..Message::addressed("!rl_metrics") }).await;
    assert_eq!(metrics.answer(), Some("The learning actor is restarting; try again in a moment."));
    assert!(!tree.join.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_watchdog_that_keeps_failing_stops_the_tree() {
    let tree = Setup::default().start().await;
    for _ in 0..6 {
        tree.root.send_message(RootMsg::InjectPanic(Child::Watchdog)).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), tree.join).await.expect("the root stopped").unwrap();
    assert!(tree.exit.borrow().as_ref().is_some_and(|r| r.code == 1 && r.why.starts_with("the watchdog actor failed 6 times")));
}

#[tokio::test(start_paused = true)]
async fn a_model_that_cannot_reload_stops_the_tree() {
    let tree = Setup::default().start().await;
    tree.loader.fail_next_loads(1);
    tree.root.send_message(RootMsg::InjectPanic(Child::Model)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), tree.join).await.expect("the root stopped").unwrap();
    let asked = tree.exit.borrow().clone().unwrap();
    assert!(asked.why.contains("the model could not be loaded again") && asked.why.contains("the test made this load fail"), "{asked:?}");
}

#[tokio::test(start_paused = true)]
async fn discord_down_for_longer_than_allowed_asks_the_process_to_end() {
    let gateway = sidekick_actors::liveness::GatewayHealth::default();
    let tree = Setup { liveness_gateway: Some(gateway.clone()), ..Setup::default() }.start().await;
    gateway.report(false, None, Instant::now());
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert!(tree.exit.borrow().is_none(), "five minutes are allowed");
    gateway.report(true, Some(Duration::from_millis(50)), Instant::now());
    tokio::time::sleep(Duration::from_secs(400)).await;
    assert!(tree.exit.borrow().is_none(), "it came back in time");
    gateway.report(false, None, Instant::now());
    tokio::time::sleep(Duration::from_secs(310)).await;
    let asked = tree.exit.borrow().clone().expect("the process is asked to end");
    assert_eq!(asked.code, 1);
    assert!(asked.why.starts_with("Discord has been unreachable for 5m"), "{asked:?}");
}

// On the wall clock: tokio's paused clock does not move while a blocking load waits.
#[tokio::test]
async fn while_the_model_loads_again_the_root_keeps_routing_and_answering_status() {
    let tree = Setup::default().start().await;
    tree.loader.hold_loads();
    tree.root.send_message(RootMsg::InjectPanic(Child::Model)).unwrap();
    tree.until("the reload has begun", || tree.loader.waiting() == 1).await;
    // A message that needs the model waits for it; a slow load (a large model, a busy disk)
    // holds up no one who does not need it.
    let waiting = tree.send(channel(4), Message::addressed("hello while you reload"));
    let pong = tree.send(channel(3), Message::addressed("!ping")).heard(Duration::from_secs(5)).await;
    assert_eq!(pong.answer(), Some("Pong!"));
    let status = sidekick_actors::tree::status(&tree.root.get_derived(), Duration::from_secs(5)).await.expect("status answers");
    assert!(status.model.is_none(), "the model is still loading");
    tree.loader.release_loads();
    tree.until("the model is loaded again", || tree.loader.loads() == 2).await;
    let heard = waiting.heard(Duration::from_secs(60)).await;
    assert!(heard.replied(), "answered once the model is back: {heard:?}");
    while tree.status().await.model.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard = tree.say(channel(3), Message::addressed("hello again")).await;
    assert!(heard.replied(), "{heard:?}");
    assert_eq!(tree.status().await.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_model_busy_and_silent_past_the_stall_deadline_is_loaded_again_once() {
    let mut setup = Setup::default();
    // The heartbeats run on the wall clock, which a paused test barely moves.
    setup.defaults.stall = Duration::ZERO;
    let tree = setup.start().await;
    tree.heartbeats.beat("model", true);
    tree.until("the watchdog has the model loaded again", || tree.loader.loads() == 2).await;
    tree.until_restarts(1).await;
    // Still silent (nothing beats here): reloaded once, not at every tick.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(tree.loader.loads(), 2);
    assert!(!tree.join.is_finished());
}
