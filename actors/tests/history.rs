//! Live messages join the server's history through the same gate as fetched and imported
//! ones (`history::admit`): allowlist, opt-outs and seed 003's filters; reactions on kept
//! messages are counted, and `!forgetme` takes a person's history too.

mod support;

use sidekick_actors::feedback::{FeedbackMsg, Reaction};
use sidekick_actors::{ChannelKey, RootMsg};
use support::{channel, Message, Setup, Tree};

fn react(tree: &Tree, message: &str, user: &str, added: bool) {
    let reaction = Reaction { channel: channel(1), message_id: message.into(), emoji: "😂".into(), user: user.into(), added };
    tree.root.send_message(RootMsg::Feedback(FeedbackMsg::Reaction(reaction))).unwrap();
}

fn kept(tree: &Tree) -> Vec<(u64, String)> {
    tree.store.history().iter().map(|m| (m.id, m.content.clone())).collect()
}

#[tokio::test(start_paused = true)]
async fn live_messages_pass_the_same_gate_into_the_history() {
    let tree = Setup::default().start().await;
    tree.say(channel(1), Message::chatter("anyone up for a game tonight?").id("5001")).await;
    tree.say(channel(1), Message::chatter("https://example.com/just-a-link").id("5002")).await;
    tree.say(channel(1), Message::chatter("look at this https://example.com").id("5003").by("bob", "200")).await;
    let dm = ChannelKey::Dm { user: Some(100), channel: 77 };
    tree.say(dm, Message::addressed("a private word").id("5004")).await;
    tree.say(ChannelKey::Console, Message::addressed("on the console")).await;
    assert_eq!(
        kept(&tree),
        [(5001, "anyone up for a game tonight?".to_string()), (5003, "look at this https://example.com".to_string())],
        "a bare link, a DM and the console are not the server's history"
    );

    // Someone who opted out is not kept, and their reactions are not counted.
    tree.say(channel(1), Message::addressed("!forgetme").by("cat", "300")).await;
    tree.say(channel(1), Message::chatter("cat's words").id("5005").by("cat", "300")).await;
    react(&tree, "5001", "300", true);
    react(&tree, "5001", "200", true);
    react(&tree, "5001", "400", true);
    react(&tree, "5001", "400", false);
    react(&tree, "5001", "400", true);
    tree.until("reactions counted", || tree.store.history().first().is_some_and(|m| m.reactions.get("😂") == Some(&2))).await;
    assert!(!kept(&tree).iter().any(|(id, _)| *id == 5005));

    // Off the allowlist: not kept.
    tree.say(channel(1), Message::from_admin("!allow <#1>")).await;
    tree.say(channel(2), Message::chatter("in a channel that is not allowed").id("5006")).await;
    assert_eq!(kept(&tree).len(), 2);
    let data = tree.say(channel(1), Message::addressed("!botdata")).await;
    assert!(data.answer().unwrap().contains("This server's history, for learning how it talks: 2 messages (1 of them yours)."), "{data:?}");

    // `!forgetme` takes ann's history too.
    tree.say(channel(1), Message::addressed("!forgetme")).await;
    assert_eq!(kept(&tree), [(5003, "look at this https://example.com".to_string())]);
}
