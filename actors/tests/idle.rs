//! Conversations that sit idle are let go and come back from the store; at most
//! `chat.max_open_channels` are open, and the least recently used idle one goes first.

mod support;

use sidekick_actors::prompt::Role;
use sidekick_actors::testing::Script;
use std::time::Duration;
use support::{channel, Message, Setup};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn an_idle_conversation_is_let_go_and_comes_back_with_its_history_and_settings() {
    let mut setup = Setup::default();
    setup.defaults.chat.idle_minutes = 30.0;
    let tree = setup.start().await;
    let here = channel(1);
    assert!(tree.say(here, Message::addressed("my cat is called Miso")).await.replied());
    assert_eq!(
        tree.say(here, Message::from_admin("!system You are a pirate.")).await.answer(),
        Some("System prompt set for this channel.")
    );
    assert_eq!(tree.status().await.channels, 1);

    tokio::time::sleep(29 * MINUTE).await;
    assert_eq!(tree.status().await.open, [here], "29 minutes is not idle enough");
    tokio::time::sleep(2 * MINUTE).await;
    assert_eq!(tree.status().await.channels, 0, "let go after 30 idle minutes");

    assert!(tree.say(here, Message::addressed("what is my cat called?")).await.replied());
    let prompt = tree.loader.model.prompts().last().cloned().unwrap();
    assert_eq!((prompt[0].role, prompt[0].content.as_str()), (Role::System, "You are a pirate."), "its settings came back");
    assert!(prompt.iter().any(|t| t.content.contains("my cat is called Miso")), "its history came back: {prompt:?}");
    assert_eq!(tree.status().await.open, [here]);
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_idle_conversation_makes_room_for_a_new_one() {
    let mut setup = Setup::default();
    setup.defaults.chat.max_open_channels = 3;
    let tree = setup.start().await;
    let second = Duration::from_secs(1);
    // Channel 2 is the least recently used, but it is still answering.
    tree.loader.model.script(Script::hold(&["still", " thinking"]));
    let busy = tree.send(channel(2), Message::addressed("a long question"));
    tokio::time::sleep(second).await;
    for id in [3, 1] {
        assert!(tree.say(channel(id), Message::addressed("hi")).await.replied());
        tokio::time::sleep(second).await;
    }
    assert_eq!(tree.status().await.open, [channel(2), channel(3), channel(1)]);

    assert!(tree.say(channel(4), Message::addressed("hello")).await.replied());
    assert_eq!(tree.status().await.open, [channel(2), channel(1), channel(4)], "channel 3 went, not the busy one");
    tree.loader.model.release();
    assert!(busy.heard(5 * second).await.replied(), "the busy conversation finished its reply");

    assert!(tree.say(channel(5), Message::addressed("and me")).await.replied());
    assert_eq!(tree.status().await.open, [channel(1), channel(4), channel(5)], "now idle, channel 2 went");
}
