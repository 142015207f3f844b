//! Every `!adapter` transition, and training that saves and serves a new version, with
//! scripted ports: what the model is asked to serve and what the manifest records.

mod support;

use sidekick_actors::commands::Access;
use sidekick_actors::feedback::FeedbackMsg;
use sidekick_actors::ports::{AdapterManifest, Learning, Personality};
use sidekick_actors::testing::{adapter_version, FakeLearning};
use sidekick_actors::RootMsg;
use std::path::PathBuf;
use std::sync::Arc;
use support::{channel, Message, Setup, Tree};

fn path(v: u64) -> Option<PathBuf> {
    Some(PathBuf::from(format!("/adapters/adapter-v{v}.gguf")))
}

/// Three versions saved and served in turn; v3 is served.
async fn trained_tree() -> Tree {
    let learning = FakeLearning::default();
    let manifest = AdapterManifest {
        base_model_sha256: "base".into(),
        versions: (1..=3).map(adapter_version).collect(),
        active: Some(3),
        previous: vec![1, 2],
        next_version: 4,
        train_from: Some(3),
        personality: None,
    };
    learning.write_manifest(&manifest).unwrap();
    Setup { learning: Some(Arc::new(learning)), ..Setup::default() }.start().await
}

async fn admin(tree: &Tree, text: &str) -> String {
    tree.say(channel(1), Message::from_admin(text)).await.answer().unwrap_or_default().to_string()
}

fn active(tree: &Tree) -> Option<u64> {
    tree.learning.as_ref().unwrap().manifest().unwrap().active
}

#[tokio::test(start_paused = true)]
async fn rollback_off_and_on_serve_what_they_say_and_record_it() {
    let tree = trained_tree().await;
    let model = &tree.loader.model;
    assert!(admin(&tree, "!adapter").await.starts_with("Serving adapter v3 (adapter-v3.gguf): 30 training steps"));
    assert_eq!(admin(&tree, "!adapter rollback").await, "Rolled back from adapter v3 to v2.");
    assert_eq!((model.adapters().last().cloned().flatten(), active(&tree)), (path(2).clone(), Some(2)));
    assert_eq!(tree.learning.as_ref().unwrap().log().opened_from, Vec::<Option<u64>>::new(), "no trainer opened yet");
    assert_eq!(
        admin(&tree, "!adapter off").await,
        "Adapter v2 off: serving the base model. Training goes on; `!adapter on` serves the newest again."
    );
    assert_eq!((model.adapters().last().cloned().flatten(), active(&tree)), (None, None));
    assert_eq!(admin(&tree, "!adapter off").await, "The base model is already being served.");
    assert!(admin(&tree, "!adapter").await.starts_with("Serving the base model (adapter off). 3 saved version(s)"));
    assert_eq!(admin(&tree, "!adapter on").await, "Serving adapter v3.");
    assert_eq!((model.adapters().last().cloned().flatten(), active(&tree)), (path(3), Some(3)));
    let back = admin(&tree, "!adapter rollback").await;
    assert!(back.starts_with("Rolled back from adapter v3 to v"), "{back}");
    assert_ne!(active(&tree), Some(3), "never rolls back to the adapter being served");
    for _ in 0..3 {
        admin(&tree, "!adapter rollback").await;
    }
    assert_eq!(admin(&tree, "!adapter rollback").await, "Nothing to roll back: the base model is being served.");
    assert_eq!(active(&tree), None);
}

#[tokio::test(start_paused = true)]
async fn a_swap_the_model_refuses_changes_nothing() {
    let tree = trained_tree().await;
    tree.loader.model.refuse_adapter(path(2).unwrap());
    let answer = admin(&tree, "!adapter rollback").await;
    assert_eq!(answer, "Could not roll back: the adapter cannot be served: refused by the test.");
    assert_eq!(active(&tree), Some(3), "the manifest still serves v3");
    assert_eq!(tree.learning.as_ref().unwrap().manifest().unwrap().train_from, Some(3), "and training still continues from it");
}

#[tokio::test(start_paused = true)]
async fn only_admins_may_and_learning_off_says_so() {
    let tree = trained_tree().await;
    let plain = tree.say(channel(1), Message { access: Access::Everyone, ..Message::addressed("!adapter off") }).await;
    assert_eq!(plain.answer(), Some("Only admins can do that."));
    assert_eq!(active(&tree), Some(3));
    let off = Setup::default().start().await;
    assert_eq!(admin(&off, "!adapter").await, "Learning is off in this bot's configuration (rl.enabled = false).");
}

#[tokio::test(start_paused = true)]
async fn rated_replies_are_trained_on_saved_and_served() {
    let mut setup = Setup { learning: Some(Arc::new(FakeLearning::default())), ..Setup::default() };
    setup.rl.save_every = 2;
    let tree = setup.start().await;
    let here = channel(1);
    for _ in 0..2 {
        assert!(tree.say(here, Message::addressed("hello")).await.replied());
        let thanks = tree.say(here, Message::addressed("!feedback 5 great")).await;
        assert!(thanks.answer().unwrap().starts_with("Thanks! Feedback recorded (5/5"), "{thanks:?}");
    }
    let learning = tree.learning.clone().unwrap();
    tree.until("two steps and a save", || learning.log().saved == ["adapter-v1.gguf"]).await;
    tree.until("v1 is served", || tree.loader.model.adapters() == [path(1)]).await;
    assert_eq!(learning.log().steps, 2);
    let manifest = learning.manifest().unwrap();
    assert_eq!((manifest.active, manifest.train_from, manifest.versions[0].step), (Some(1), Some(1), 2));
}

#[tokio::test(start_paused = true)]
async fn a_version_the_gate_refuses_is_kept_not_served_and_rl_metrics_says_why() {
    let learning = Arc::new(FakeLearning::default());
    *learning.refuse.lock().unwrap() =
        Some("its held-out perplexity is 41.20, 37.0 % above the served one's 30.07 (the limit is 5 %)".into());
    let mut setup = Setup { learning: Some(learning.clone()), ..Setup::default() };
    setup.rl.save_every = 2;
    let tree = setup.start().await;
    let here = channel(1);
    let owner = |text| Message { access: Access::Owner, ..Message::from_admin(text) };
    let rate_twice = || async {
        for _ in 0..2 {
            assert!(tree.say(here, Message::addressed("hello")).await.replied());
            assert!(tree.say(here, Message::addressed("!feedback 1")).await.answer().unwrap().starts_with("Thanks!"));
        }
    };
    rate_twice().await;
    tree.until("two steps and a save", || learning.log().saved == ["adapter-v1.gguf"]).await;
    let mut shown = String::new();
    for _ in 0..1000 {
        shown = tree.say(here, owner("!rl_metrics")).await.answer().unwrap_or_default().to_string();
        if shown.contains("kept, not served") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(shown.contains("adapter v1 was kept, not served: its held-out perplexity is 41.20, 37.0 % above"), "{shown}");
    assert_eq!(tree.loader.model.adapters(), Vec::<Option<PathBuf>>::new(), "the model was never asked to serve it");
    assert_eq!(learning.manifest().unwrap().active, None);
    assert!(admin(&tree, "!adapter").await.starts_with("Serving the base model"));

    // Training goes on; the next version passes and is served.
    *learning.refuse.lock().unwrap() = None;
    rate_twice().await;
    tree.until("v2 is served", || tree.loader.model.adapters() == [path(2)]).await;
    let shown = tree.say(here, owner("!rl_metrics")).await.answer().unwrap_or_default().to_string();
    assert!(!shown.contains("kept, not served"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn a_new_personality_is_served_alone_and_a_fresh_adapter_learns_the_votes_again() {
    let mut setup = Setup { learning: Some(Arc::new(FakeLearning::default())), ..Setup::default() };
    setup.rl.save_every = 2;
    let tree = setup.start().await;
    let (here, model, learning) = (channel(1), &tree.loader.model, tree.learning.clone().unwrap());
    for _ in 0..2 {
        assert!(tree.say(here, Message::addressed("hello")).await.replied());
        assert!(tree.say(here, Message::addressed("!feedback 5")).await.answer().unwrap().starts_with("Thanks!"));
    }
    tree.until("v1 is served", || model.adapters() == [path(1)]).await;

    let voice = Personality { path: "/adapters/personality-v2.gguf".into(), summary: "personality-v2.gguf, perplexity 40.00".into() };
    let asked = tree.root.call(|reply| RootMsg::Feedback(FeedbackMsg::NewPersonality(Some(voice.clone()), reply)), None).await;
    assert_eq!(asked.unwrap().unwrap(), Ok(()));
    assert_eq!(model.personalities(), [Some(voice.path.clone())]);
    assert_eq!(model.adapters(), [path(1), None], "no feedback adapter over the new voice");
    let manifest = learning.manifest().unwrap();
    assert_eq!(manifest.base_model_sha256, "base+personality-v2.gguf");
    assert_eq!((manifest.versions.len(), manifest.active, manifest.next_version), (0, None, 2), "v1 is set aside");
    let shown = admin(&tree, "!adapter").await;
    assert!(shown.starts_with("Serving the base model: no adapter has been trained yet."), "{shown}");
    assert!(shown.contains("Under it, the server's voice: personality-v2.gguf, perplexity 40.00."), "{shown}");

    // The two votes are learned again, from a fresh adapter, on the new voice.
    tree.until("v2 is served", || model.adapters().last() == Some(&path(2))).await;
    let log = learning.log();
    assert_eq!((log.steps, log.saved.clone()), (4, vec!["adapter-v1.gguf".to_string(), "adapter-v2.gguf".to_string()]));
    assert_eq!(log.opened_from, [None, None], "each adapter started from nothing");
    assert_eq!(learning.manifest().unwrap().versions[0].step, 2);
}
