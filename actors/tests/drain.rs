//! The drain on shutdown: intake stops, replies in flight finish within the grace period, and
//! what learning holds is saved first.

mod support;

use sidekick_actors::testing::Script;
use sidekick_actors::{ReplyEvent, RootMsg};
use std::time::Duration;
use support::{channel, Message, Setup};

#[tokio::test]
async fn a_reply_in_flight_finishes_and_new_messages_are_turned_away() {
    let tree = Setup::default().start().await;
    tree.loader.model.script(Script::hold(&["almost ", "done"]));
    let first = tree.send(channel(1), Message::addressed("tell me something"));
    tree.until("the model holds the reply", || tree.loader.model.held() == 1).await;
    let root = tree.root.clone();
    let drain =
        tokio::spawn(async move { root.call(|port| RootMsg::Drain(Duration::from_secs(5), port), Some(Duration::from_secs(10))).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Sent while the root drains: it is answered once the drain is over, and turned away.
    let late = tree.send(channel(2), Message::addressed("anyone?"));
    tree.loader.model.release();
    let heard = first.heard(Duration::from_secs(5)).await;
    assert!(heard.events.iter().any(|e| matches!(e, ReplyEvent::Done { text, .. } if text == "almost done")), "{heard:?}");
    drain.await.unwrap().expect("the drain answered");
    assert_eq!(late.heard(Duration::from_secs(5)).await.answer(), Some("I'm shutting down; back soon."));
}

#[tokio::test]
async fn a_reply_that_outlasts_the_grace_period_is_cut() {
    let tree = Setup::default().start().await;
    tree.loader.model.script(Script::Silent);
    let stuck = tree.send(channel(1), Message::addressed("write me a novel"));
    tree.until("the model holds the reply", || tree.loader.model.held() == 1).await;
    let started = std::time::Instant::now();
    tree.root.call(|port| RootMsg::Drain(Duration::from_millis(300), port), Some(Duration::from_secs(10))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the drain waits for the grace period, not for the reply");
    let heard = stuck.heard(Duration::from_secs(5)).await;
    assert!(matches!(heard.events.last(), Some(ReplyEvent::Failed(_))), "the cut reply says so: {heard:?}");
}
