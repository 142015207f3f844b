//! What the buttons under a reply do, without Discord: 👍/👎 leave one standing vote per
//! person, and 🔁 (`!retry`) writes the latest reply again, rejecting the old one.

mod support;

use sidekick_actors::clock::Clock;
use sidekick_actors::feedback::{FeedbackMsg, Vote};
use sidekick_actors::ports::{FeedbackJournal, ReplyJournal, StatsStore};
use sidekick_actors::stats::hour_key;
use sidekick_actors::testing::Script;
use sidekick_actors::{ReplyEvent, RootMsg};
use std::time::Duration;
use support::{channel, Message, Setup, Tree};

fn reply_id(events: &[ReplyEvent]) -> u64 {
    events.iter().find_map(|e| if let ReplyEvent::Done { reply_id, .. } = e { *reply_id } else { None }).expect("a journaled reply")
}

fn vote(tree: &Tree, message: &str, user: &str, up: bool) {
    let vote = Vote { channel: channel(1), message_id: message.into(), user: user.into(), up };
    tree.root.send_message(RootMsg::Feedback(FeedbackMsg::Vote(vote))).unwrap();
}

/// The journal's (emoji, reward) entries, in order.
fn journal(tree: &Tree) -> Vec<(String, f32)> {
    tree.store.feedback_since(0).unwrap().into_iter().map(|(_, e)| (e.emoji.unwrap_or_default(), e.reward)).collect()
}

#[tokio::test(start_paused = true)]
async fn thumbs_up_then_down_by_one_person_leaves_one_negative_vote() {
    let tree = Setup::default().start().await;
    let heard = tree.say(channel(1), Message::addressed("hello")).await;
    let reply = reply_id(&heard.events);
    tree.root.send_message(RootMsg::Delivered { reply_id: reply, message_ids: vec!["m1".into()] }).unwrap();
    vote(&tree, "m1", "300", true);
    vote(&tree, "m1", "300", false);
    vote(&tree, "m1", "300", false); // the same button again changes nothing
    tree.until("three journal entries", || journal(&tree).len() == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let entries = journal(&tree);
    assert_eq!(entries.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["👍", "👍", "👎"], "up, its removal, down");
    let standing: f32 = entries.iter().map(|(_, r)| r).sum();
    assert!((standing - -0.5).abs() < 1e-6, "one vote, down: {standing}");
    vote(&tree, "m1", "301", true);
    tree.until("another person's vote is their own", || journal(&tree).len() == 4).await;
}

#[tokio::test(start_paused = true)]
async fn retry_writes_the_latest_reply_again_and_rejects_the_old_one() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    let no_reply = tree.say(here, Message::addressed("!retry")).await;
    assert_eq!(no_reply.answer(), Some("There's no reply of mine in this conversation to write again."));
    tree.loader.model.script(Script::reply(&["first ", "try"]));
    let first = tree.say(here, Message::addressed("hello").id("u1")).await;
    let old = reply_id(&first.events);
    tree.root.send_message(RootMsg::Delivered { reply_id: old, message_ids: vec!["m1".into()] }).unwrap();
    tree.loader.model.script(Script::reply(&["second ", "try"]));
    let again = tree.say(here, Message { reply_to: Some("m1"), ..Message::addressed("!retry").by("bob", "300") }).await;
    assert_eq!(again.answer(), Some("second try"));
    let new = reply_id(&again.events);
    let record = tree.store.reply(new).unwrap().unwrap();
    assert_eq!(record.replaces, Some(old), "the new reply names the one it replaces");
    assert_eq!(record.text, "second try");
    let prompts = tree.loader.model.prompts();
    assert_eq!(prompts[0], prompts[1], "written again from the same conversation");
    let log: Vec<String> = tree.store.messages(&here).into_iter().map(|m| m.content).collect();
    assert_eq!(log, ["hello", "second try"], "the new words take the old ones' place");
    let rejected = tree.store.feedback_since(0).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].1.reply_id, rejected[0].1.emoji.as_deref()), (Some(old), Some("🔁")));
    assert!(rejected[0].1.reward < 0.0, "asking for another rejects the old reply");
    let replies = tree.store.stat(&hour_key("replies", tree.clock.now_ms())).unwrap();
    assert_eq!(replies, 2, "!stats counts the reply written again as a reply");
    // The conversation goes on from the new words.
    tree.say(here, Message::addressed("and then?")).await;
    let third = &tree.loader.model.prompts()[2];
    assert!(third.iter().any(|t| t.content == "second try") && !third.iter().any(|t| t.content == "first try"));
    // An older reply's button: only the latest can be written again.
    let stale = tree.say(here, Message { reply_to: Some("m1"), ..Message::addressed("!retry") }).await;
    assert_eq!(stale.answer(), Some("Only my latest reply here can be written again."));
}
