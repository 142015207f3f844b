//! A conversation at the actor level: what it answers, what it only stores, and what it does
//! when the model is slow or silent.

mod support;

use sidekick_actors::testing::Script;
use sidekick_actors::{ChannelKey, ReplyEvent};
use std::time::Duration;
use support::{channel, Message, Pending, Setup, Tree, GUILD};

const BUSY: &str = "I'm getting a lot of messages at once here; I'll answer the first few and catch up after.";

/// Sends "m0" and returns once the model is writing its reply (held until `release`).
async fn hold_the_first_reply(tree: &Tree, here: ChannelKey) -> Pending {
    tree.loader.model.script(Script::hold(&["first"]));
    let first = tree.send(here, Message::addressed("m0"));
    tree.until("the first reply is being written", || tree.loader.model.held() == 1).await;
    first
}

#[tokio::test(start_paused = true)]
async fn a_flood_beyond_the_queue_bound_gets_one_busy_notice_and_is_all_stored() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    let first = hold_the_first_reply(&tree, here).await;
    let texts: Vec<String> = (1..8).map(|i| format!("m{i}")).collect();
    let rest: Vec<_> = texts.iter().map(|t| tree.send(here, Message::addressed(t))).collect();
    tree.loader.model.release();
    assert!(first.heard(Duration::from_secs(60)).await.replied());
    let mut heard = Vec::new();
    for pending in rest {
        heard.push(pending.heard(Duration::from_secs(60)).await);
    }
    // queue_limit is 4: with m0 being answered, m1-m3 wait their turn and m4-m7 are backlog.
    for (i, h) in heard.iter().enumerate().take(3) {
        assert!(h.replied(), "m{} is answered: {h:?}", i + 1);
    }
    assert_eq!(heard[3].notices(), [BUSY], "one notice, on the first message beyond the bound");
    for h in &heard[4..] {
        assert!(h.events.is_empty(), "no second notice and no reply: {h:?}");
    }
    let stored: Vec<String> = tree.store.messages(&here).into_iter().filter(|m| m.content.starts_with('m')).map(|m| m.content).collect();
    assert_eq!(stored, (0..8).map(|i| format!("m{i}")).collect::<Vec<_>>(), "every message stored, in order");
}

#[tokio::test(start_paused = true)]
async fn chatter_beyond_the_queue_bound_is_stored_silently_and_the_notice_waits_for_someone_who_asked() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    let first = hold_the_first_reply(&tree, here).await;
    let texts: Vec<String> = (1..8).map(|i| format!("m{i}")).collect();
    let rest: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| tree.send(here, if (3..5).contains(&i) { Message::chatter(t) } else { Message::addressed(t) }))
        .collect();
    tree.loader.model.release();
    assert!(first.heard(Duration::from_secs(60)).await.replied());
    let mut heard = Vec::new();
    for pending in rest {
        heard.push(pending.heard(Duration::from_secs(60)).await);
    }
    // m4 and m5 are chatter beyond the bound: nothing; m6 asked: the one notice; m7: nothing.
    assert!(heard[3].events.is_empty() && heard[4].events.is_empty(), "{:?} {:?}", heard[3], heard[4]);
    assert_eq!(heard[5].notices(), [BUSY]);
    assert!(heard[6].events.is_empty(), "{:?}", heard[6]);
    assert_eq!(tree.store.messages(&here).into_iter().filter(|m| m.content.starts_with('m')).count(), 8, "all stored");
}

#[tokio::test(start_paused = true)]
async fn only_allowlisted_channels_get_answers_once_there_is_an_allowlist() {
    let tree = Setup::default().start().await;
    let (allowed, other) = (channel(1), channel(2));
    assert!(tree.say(other, Message::from_admin("!allow <#1>")).await.answer().unwrap().contains("allowlist"));
    assert!(tree.say(allowed, Message::addressed("hello?")).await.replied());
    let ignored = tree.say(other, Message::addressed("hello?")).await;
    assert!(!ignored.replied() && ignored.events.is_empty(), "not answered: {ignored:?}");
    assert!(tree.store.messages(&other).is_empty(), "nor stored: nothing is kept off the allowlist");
    let dm = ChannelKey::Dm { user: Some(9), channel: 99 };
    assert!(tree.say(dm, Message::addressed("psst")).await.replied(), "DMs are always allowed");
    let thread = |parent| ChannelKey::Thread { guild: Some(GUILD), parent: Some(parent), thread: 100 + parent };
    assert!(tree.say(thread(1), Message::addressed("in a thread")).await.replied(), "a thread follows its parent");
    assert!(!tree.say(thread(2), Message::addressed("in a thread")).await.replied());
}

#[tokio::test(start_paused = true)]
async fn a_reply_the_model_never_writes_ends_at_the_deadline_and_frees_its_sequence() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    tree.loader.model.script(Script::Silent);
    let started = tokio::time::Instant::now();
    let heard = tree.say(here, Message::addressed("are you there?")).await;
    assert_eq!(heard.events, [ReplyEvent::Failed("I got stuck writing that reply; please try again.".into())]);
    assert_eq!(started.elapsed().as_secs(), 30, "model.stall_seconds");
    assert_eq!(tree.loader.model.cancelled(), 1, "the job was cancelled, which frees its sequence");
    assert!(tree.say(here, Message::addressed("try again")).await.replied(), "the channel answers the next message");
}

#[tokio::test(start_paused = true)]
async fn a_slow_model_that_keeps_streaming_is_not_cut_off() {
    let tree = Setup::default().start().await;
    tree.loader.model.script(Script::hold(&["slow ", "but ", "sure"]));
    let pending = tree.send(channel(1), Message::addressed("take your time"));
    tokio::time::sleep(Duration::from_secs(29)).await;
    tree.loader.model.release();
    let heard = pending.heard(Duration::from_secs(60)).await;
    assert_eq!(heard.answer(), Some("slow but sure"));
}

#[tokio::test(start_paused = true)]
async fn commands_check_access_and_settings_persist() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    assert_eq!(tree.say(here, Message::addressed("!settemp 0.5")).await.answer(), Some("Only admins can do that."));
    assert_eq!(tree.say(here, Message::from_admin("!settemp 0.5")).await.answer(), Some("Default temperature set to 0.5."));
    assert_eq!(tree.say(here, Message::addressed("!config top_k 12")).await.answer(), Some("top_k set to 12."));
    let config = tree.say(here, Message::addressed("!config")).await;
    assert!(config.answer().unwrap().contains("temperature = 0.5") && config.answer().unwrap().contains("top_k = 12"), "{config:?}");
    assert_eq!(tree.say(here, Message::addressed("!dance")).await.answer(), Some("I don't know `!dance`. Try `!help`."));
}

#[tokio::test(start_paused = true)]
async fn a_system_prompt_is_measured_in_tokens_and_admins_set_the_limits() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    // The scripted model: 512 cells a reply, a word a token; replies of 120 tokens and 64 for
    // the message leave 328 for the system prompt (and its 2 tokens of markup).
    let long = vec!["word"; 327].join(" ");
    let refused = tree.say(here, Message::addressed(&format!("!system {long}"))).await;
    assert_eq!(
        refused.answer(),
        Some("That system prompt is 329 tokens; here it can be at most 328 (each reply has 512 tokens of context: 120 for the answer and 64 for the message).")
    );
    let fits = vec!["word"; 326].join(" ");
    assert_eq!(tree.say(here, Message::addressed(&format!("!system {fits}"))).await.answer(), Some("System prompt set for this channel."));
    tree.say(here, Message::from_admin("!setmaxlen 150")).await;
    assert_eq!(
        tree.say(here, Message::addressed("!config max_tokens 400")).await.answer(),
        Some("`max_tokens` can be at most 150 here (the admins' `!setmaxlen`), got 400")
    );
    assert_eq!(tree.say(here, Message::addressed("!config max_tokens 100")).await.answer(), Some("max_tokens set to 100."));
    assert_eq!(tree.say(here, Message::from_admin("!lock config on")).await.answer(), Some("`!config` is for admins now."));
    assert_eq!(tree.say(here, Message::addressed("!config")).await.answer(), Some("Only admins can do that."));
    assert!(tree.say(here, Message::from_admin("!config")).await.answer().unwrap().starts_with("Generation settings"));
    tree.say(here, Message::from_admin("!lock config off")).await;
    assert!(tree.say(here, Message::addressed("!config")).await.answer().unwrap().starts_with("Generation settings"));
}

#[tokio::test(start_paused = true)]
async fn unasked_replies_do_not_feed_themselves_and_a_rate_of_0_means_none() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    tree.say(here, Message::from_admin("!setrate 0")).await;
    assert!(tree.say(here, Message::addressed("hello bot")).await.replied(), "a mention is answered");
    for i in 0..30 {
        let chatter = format!("chatter {i}");
        assert!(!tree.say(here, Message::chatter(&chatter)).await.replied(), "no unasked reply at rate 0 ({i})");
    }

    // At 10 %, unasked replies stay near the base rate instead of each raising the next.
    tree.say(here, Message::from_admin("!setrate 0.1")).await;
    let mut answered = 0;
    for i in 0..100 {
        tree.clock.advance(60_000);
        let chatter = format!("more chatter {i}");
        answered += usize::from(tree.say(here, Message::chatter(&chatter)).await.replied());
    }
    assert!((2..40).contains(&answered), "{answered} of 100 unasked messages answered");
}
