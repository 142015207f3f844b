//! No crash loop from training: a step that ended the process is not tried again at the next
//! start, and a trainer that panics while opening says so instead of hanging learning.

mod support;

use sidekick_actors::commands::Access;
use sidekick_actors::ports::{FeedbackJournal, TrainingMarks};
use sidekick_actors::testing::FakeLearning;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{channel, Message, Setup, Tree};

async fn rate_a_reply(tree: &Tree, text: &str) {
    assert!(tree.say(channel(1), Message::addressed(text)).await.replied());
    let thanks = tree.say(channel(1), Message::addressed("!feedback 5 great")).await;
    assert!(thanks.answer().unwrap().starts_with("Thanks!"), "{thanks:?}");
}

async fn rl_metrics(tree: &Tree) -> String {
    let ask = Message { access: Access::Owner, ..Message::addressed("!rl_metrics") };
    tree.say(channel(1), ask).await.answer().unwrap_or_default().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_training_step_that_ended_the_process_is_skipped_at_the_next_start() {
    let learning = Arc::new(FakeLearning::default());
    let setup = Setup { learning: Some(learning.clone()), ..Setup::default() };
    let store = setup.store.clone();
    let seen_in_step = Arc::new(Mutex::new(Vec::new()));
    let (seen, marks) = (seen_in_step.clone(), store.clone());
    learning.on_step(move || seen.lock().unwrap().push(marks.training_marks().unwrap()));
    let tree = setup.start().await;
    rate_a_reply(&tree, "hello").await;
    tree.until("one step", || learning.log().steps == 1).await;
    let during = seen_in_step.lock().unwrap()[0].clone();
    assert_eq!(during.in_step.len(), 1, "the step's reply is marked before it runs: {during:?}");
    tree.until("and unmarked after", || store.training_marks().unwrap().in_step.is_empty()).await;

    // The process dies during that step: the mark is still there at the next start.
    tree.root.stop(None);
    tree.join.await.unwrap();
    store.save_training_marks(&during).unwrap();
    let fresh = Arc::new(FakeLearning::default());
    let tree = Setup { learning: Some(fresh.clone()), store: store.clone(), ..Setup::default() }.start().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fresh.log().steps, 0, "the feedback is replayed, but the reply that ended the process is not trained on");
    assert_eq!(store.training_marks().unwrap(), TrainingMarks { in_step: vec![], skipped: during.in_step.clone() });
    let metrics = rl_metrics(&tree).await;
    assert!(metrics.contains("1 replies skipped: a training step on them ended the process"), "{metrics}");

    // Learning goes on with everything else.
    rate_a_reply(&tree, "hello again").await;
    tree.until("the new feedback is trained on", || fresh.log().steps == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_trainer_that_panics_while_opening_turns_learning_off_and_says_why() {
    let learning = Arc::new(FakeLearning::default());
    learning.panic_on_open.store(true, Ordering::SeqCst);
    let tree = Setup { learning: Some(learning.clone()), ..Setup::default() }.start().await;
    rate_a_reply(&tree, "hello").await;
    let mut metrics = String::new();
    for _ in 0..1000 {
        metrics = rl_metrics(&tree).await;
        if metrics.contains("not training") {
            break;
        }
        // The trainer runs on a thread of its own, on the wall clock.
        std::thread::sleep(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("not training: the trainer panicked: the test broke the trainer"), "{metrics}");
    assert!(tree.say(channel(1), Message::addressed("still there?")).await.replied(), "replies go on");
}
