//! No single person steers what the bot learns: one standing vote per user per reply, and a
//! cap on any one voice's share of what is trained.

mod support;

use sidekick_actors::commands::Access;
use sidekick_actors::feedback::{FeedbackMsg, Reaction};
use sidekick_actors::testing::FakeLearning;
use sidekick_actors::{ReplyEvent, RootMsg};
use std::sync::Arc;
use std::time::Duration;
use support::{channel, Message, Setup, Tree};

/// A tree that learns, but only when the test lets it (the training tick is a day away).
async fn learning_tree(train: bool) -> (Tree, Arc<FakeLearning>) {
    let learning = Arc::new(FakeLearning::default());
    let mut rl = Setup::default().rl;
    if !train {
        rl.tick = Duration::from_secs(86_400);
    }
    rl.save_every = 1_000_000;
    let tree = Setup { learning: Some(learning.clone()), rl, ..Setup::default() }.start().await;
    (tree, learning)
}

async fn waiting_to_train(tree: &Tree) -> String {
    let metrics = tree.say(channel(9), Message { access: Access::Owner, ..Message::addressed("!rl_metrics") }).await;
    let answer = metrics.answer().unwrap().to_string();
    answer.split(" · ").find(|part| part.ends_with("waiting to train")).unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_hundred_identical_ratings_queue_one_sample() {
    let (tree, _) = learning_tree(false).await;
    assert!(tree.say(channel(1), Message::addressed("hello")).await.replied());
    for _ in 0..100 {
        assert!(tree.say(channel(1), Message::addressed("!feedback 5")).await.answer().unwrap().starts_with("Thanks!"));
    }
    assert_eq!(waiting_to_train(&tree).await, "1 waiting to train");
    assert!(tree.say(channel(1), Message::addressed("!feedback 1").by("bob", "200")).await.answer().unwrap().starts_with("Thanks!"));
    assert_eq!(waiting_to_train(&tree).await, "2 waiting to train", "another user's vote is their own");
}

#[tokio::test(start_paused = true)]
async fn twenty_reaction_toggles_queue_at_most_one_sample() {
    let (tree, _) = learning_tree(false).await;
    let heard = tree.say(channel(1), Message::addressed("hello")).await;
    let reply_id = heard.events.iter().find_map(|e| if let ReplyEvent::Done { reply_id, .. } = e { *reply_id } else { None }).unwrap();
    tree.root.send_message(RootMsg::Delivered { reply_id, message_ids: vec!["m1".into()] }).unwrap();
    for i in 0..20 {
        let reaction =
            Reaction { channel: channel(1), message_id: "m1".into(), emoji: "👍".into(), user: "300".into(), added: i % 2 == 0 };
        tree.root.send_message(RootMsg::Feedback(FeedbackMsg::Reaction(reaction))).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(waiting_to_train(&tree).await, "0 waiting to train", "ended removed: nothing to learn");
    let again = Reaction { channel: channel(1), message_id: "m1".into(), emoji: "👍".into(), user: "300".into(), added: true };
    tree.root.send_message(RootMsg::Feedback(FeedbackMsg::Reaction(again))).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(waiting_to_train(&tree).await, "1 waiting to train");
}

#[tokio::test(start_paused = true)]
async fn one_user_sending_most_feedback_trains_at_most_a_third() {
    let (tree, learning) = learning_tree(true).await;
    // Each voter rates their own replies, with a rating that tells them apart in what is
    // trained: A +1 (5/5), B +0.5 (4/5), C -0.5 (2/5). A sends 90 %.
    let voters = [("a", "401", "5"), ("b", "402", "4"), ("c", "403", "2")];
    for i in 0..200 {
        let (name, id, rating) = match i % 20 {
            0 => voters[1],
            10 => voters[2],
            _ => voters[0],
        };
        let here = channel(100 + i);
        assert!(tree.say(here, Message::addressed("hello").by(name, id)).await.replied());
        let feedback = format!("!feedback {rating}");
        assert!(tree.say(here, Message::addressed(&feedback).by(name, id)).await.answer().unwrap().starts_with("Thanks!"));
    }
    // Training runs on a thread of its own: wait (in small steps of the test's clock) until
    // everyone else's feedback is in.
    let from = |trained: &[f32], r: f32| trained.iter().filter(|x| (**x - r).abs() < 1e-6).count();
    tree.until("everyone else's feedback is trained", || {
        let trained = learning.log().rewards;
        from(&trained, 0.5) == 10 && from(&trained, -0.5) == 10
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let trained = learning.log().rewards;
    let a = from(&trained, 1.0);
    assert!(a * 3 <= trained.len(), "A trained {a} of {}", trained.len());
    assert!(a >= 9, "A is heard as much as the others ({a})");
}
