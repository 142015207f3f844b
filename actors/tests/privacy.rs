//! What the bot keeps, shows and learns from, at the actor level, checked on the prompts the
//! model receives: DMs stay private, denied channels are neither kept nor shown, `!forgetme`
//! removes a person everywhere, and a purge leaves nothing to write back.

mod support;

use sidekick_actors::testing::{FakeLearning, FakeRetrieverLoader, Script};
use sidekick_actors::ChannelKey;
use std::sync::Arc;
use std::time::Duration;
use support::{channel, Message, Setup, Tree};

fn with_retrieval() -> Setup {
    Setup { retriever: Arc::new(FakeRetrieverLoader::default()), ..Setup::default() }
}

fn dm(user: u64) -> ChannelKey {
    ChannelKey::Dm { user: Some(user), channel: 1000 + user }
}

/// Everything the model was shown in its last prompt.
fn last_prompt(tree: &Tree) -> String {
    tree.loader.model.prompts().last().unwrap().iter().map(|t| t.content.clone()).collect::<Vec<_>>().join("\n")
}

/// Lets the retrieval actor embed what it was given (it waits for a flush).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn one_persons_dm_never_reaches_anothers_prompt() {
    let tree = with_retrieval().start().await;
    assert!(tree.say(dm(1), Message::addressed("my locker code is 4812").by("alice", "1")).await.replied());
    settle().await;
    assert!(tree.say(dm(2), Message::addressed("what's the locker code?").by("bob", "2")).await.replied());
    assert!(!last_prompt(&tree).contains("4812"), "Bob's prompt: {}", last_prompt(&tree));
    // The same retrieval does bring a server's own words back in that server.
    assert!(tree.say(channel(1), Message::addressed("the wifi password is hunter2").by("alice", "1")).await.replied());
    settle().await;
    assert!(tree.say(channel(2), Message::addressed("what is the wifi password?").by("bob", "2")).await.replied());
    assert!(last_prompt(&tree).contains("hunter2"), "background within a server works: {}", last_prompt(&tree));
    assert!(tree.say(ChannelKey::Console, Message::addressed("what is the wifi password?")).await.replied());
    assert!(!last_prompt(&tree).contains("hunter2"), "the console sees only itself");
}

#[tokio::test(start_paused = true)]
async fn a_denied_channel_is_neither_kept_nor_shown() {
    let tree = with_retrieval().start().await;
    tree.say(channel(1), Message::from_admin("!allow <#1>")).await;
    let denied = tree.say(channel(2), Message::addressed("the secret word is giraffe")).await;
    assert!(denied.events.is_empty(), "not answered: {denied:?}");
    settle().await;
    assert!(tree.say(channel(1), Message::addressed("what is the secret word?")).await.replied());
    assert!(!last_prompt(&tree).contains("giraffe"));
    assert!(tree.store.messages(&channel(2)).is_empty(), "not stored");
    assert!(tree.retriever.retriever.indexed().iter().all(|i| !i.text.contains("giraffe")), "not embedded");
}

#[tokio::test(start_paused = true)]
async fn forgetme_removes_a_person_from_prompts_the_index_and_training_and_keeps_them_out() {
    let mut rl = Setup::default().rl;
    rl.tick = Duration::from_secs(86_400); // nothing trains while the test looks at the queue
    let learning = Arc::new(FakeLearning::default());
    let tree = Setup { learning: Some(learning.clone()), rl, ..with_retrieval() }.start().await;
    let carol = |text| Message::addressed(text).by("carol", "5");
    assert!(tree.say(channel(1), carol("my cat is called Biscuit")).await.replied());
    assert!(tree.say(channel(1), carol("!feedback 5 lovely")).await.answer().unwrap().starts_with("Thanks!"));
    assert!(tree.say(channel(2), carol("Biscuit likes tuna")).await.replied());
    settle().await;
    let owner = |text| Message { access: sidekick_actors::commands::Access::Owner, ..Message::addressed(text).by("dan", "6") };
    assert!(tree.say(channel(3), owner("!rl_metrics")).await.answer().unwrap().contains("1 waiting to train"));

    let answer = tree.say(channel(1), carol("!forgetme")).await.answer().unwrap().to_string();
    assert!(
        answer.starts_with("Done: I deleted 2 of your messages, 2 of my replies whose prompts quoted you, 1 of your ratings"),
        "{answer}"
    );
    assert!(tree.store.replies().iter().all(|r| !r.speakers.contains(&"5".to_string())));
    assert!(tree.retriever.retriever.indexed().iter().all(|i| i.user_id.as_deref() != Some("5")), "out of the index");
    assert!(tree.say(channel(3), owner("!rl_metrics")).await.answer().unwrap().contains("0 waiting to train"), "out of the training queue");
    for key in [channel(1), channel(2)] {
        assert!(tree.store.messages(&key).iter().all(|m| !m.content.contains("Biscuit")));
    }
    assert!(tree.say(channel(1), Message::addressed("what is the cat called?").by("erin", "7")).await.replied());
    assert!(!last_prompt(&tree).contains("Biscuit"), "not in the history nor the background: {}", last_prompt(&tree));

    // From now on nothing of theirs is kept; they are still answered.
    assert!(tree.say(channel(1), carol("my dog is called Rex")).await.replied());
    assert!(tree.store.messages(&channel(1)).iter().all(|m| !m.content.contains("Rex")));
    assert_eq!(
        tree.say(channel(1), carol("!feedback 4")).await.answer(),
        Some("You asked me to forget you, so I keep no feedback from you (`!forgetme undo` to change that).")
    );
    let botdata = tree.say(channel(1), carol("!botdata")).await.answer().unwrap().to_string();
    assert!(botdata.contains("From you: 0 messages. You asked me to forget you"), "{botdata}");
    assert_eq!(
        tree.say(channel(1), carol("!forgetme undo")).await.answer(),
        Some("OK: I keep and learn from your messages again from now on.")
    );
    assert!(tree.say(channel(1), carol("my dog is called Rex")).await.replied());
    assert!(tree.store.messages(&channel(1)).iter().any(|m| m.content.contains("Rex")));
}

#[tokio::test(start_paused = true)]
async fn purged_from_inside_the_channel_it_starts_from_the_defaults() {
    let tree = Setup::default().start().await;
    let here = channel(1);
    assert_eq!(tree.say(here, Message::addressed("!config temperature 1.5")).await.answer(), Some("temperature set to 1.5."));
    tree.say(here, Message::addressed("!system You are a pirate.")).await;
    assert!(tree.say(here, Message::addressed("remember the word pineapple")).await.replied());
    let purged = tree.say(here, Message::from_admin("!purge")).await.answer().unwrap().to_string();
    assert!(purged.starts_with("Deleted 2 stored messages"), "{purged}");
    assert!(tree.say(here, Message::addressed("!config")).await.answer().unwrap().contains("temperature = 0.7"));
    assert!(tree.say(here, Message::addressed("!system")).await.answer().unwrap().starts_with("System prompt (default)"));
    assert!(tree.say(here, Message::addressed("hello again")).await.replied());
    assert!(!last_prompt(&tree).contains("pineapple") && !last_prompt(&tree).contains("pirate"), "{}", last_prompt(&tree));
    assert_eq!(
        tree.say(here, Message::addressed("!purge")).await.answer(),
        Some("Only admins can do that."),
        "a server channel is the admins'"
    );
    let mine = dm(3);
    tree.say(mine, Message::addressed("a secret").by("fay", "3")).await;
    assert!(
        tree.say(mine, Message::addressed("!purge").by("fay", "3")).await.answer().unwrap().starts_with("Deleted 2 stored messages"),
        "a DM is its user's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_purge_waits_for_a_reply_in_flight_there_and_nothing_is_written_back() {
    let tree = Setup::default().start().await;
    let (here, there) = (channel(1), channel(2));
    assert!(tree.say(there, Message::addressed("first")).await.replied());
    tree.loader.model.script(Script::hold(&["just ", "in time"]));
    let in_flight = tree.send(there, Message::addressed("second"));
    tree.until("the reply there is being written", || tree.loader.model.held() == 1).await;
    let purge = tree.send(here, Message::from_admin("!deny <#2> purge"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let turned_away = tree.say(there, Message::addressed("third")).await;
    assert_eq!(turned_away.answer(), Some("I'm deleting what I kept from this channel; say it again in a moment."));
    tree.loader.model.release();
    assert!(in_flight.heard(Duration::from_secs(5)).await.replied(), "asked before the purge, it is answered");
    let purged = purge.heard(Duration::from_secs(120)).await.answer().unwrap().to_string();
    assert!(purged.ends_with("Deleted 4 stored messages and 0 vectors from it."), "{purged}");
    assert!(tree.store.messages(&there).is_empty(), "nothing came back: {:?}", tree.store.messages(&there));
    assert_eq!(tree.store.replies().iter().filter(|r| r.channel == there).count(), 0);
    assert!(tree.say(there, Message::addressed("fourth")).await.replied(), "after the purge the channel talks again");
}

#[tokio::test(start_paused = true)]
async fn commands_stay_quiet_where_the_bot_may_not_talk() {
    let tree = Setup::default().start().await;
    tree.say(channel(1), Message::from_admin("!allow <#1>")).await;
    assert!(tree.say(channel(2), Message::chatter("!ping")).await.events.is_empty(), "off the allowlist, not addressed");
    assert_eq!(tree.say(channel(2), Message::addressed("!ping")).await.answer(), Some("Pong!"), "addressed, it answers");
    assert!(tree.say(channel(1), Message::chatter("!play despacito")).await.events.is_empty(), "another bot's command");
    assert_eq!(tree.say(channel(1), Message::addressed("!play")).await.answer(), Some("I don't know `!play`. Try `!help`."));
}

#[tokio::test(start_paused = true)]
async fn a_purged_channel_leaves_the_background_other_conversations_were_shown() {
    let tree = with_retrieval().start().await;
    assert!(tree.say(channel(1), Message::addressed("the meeting is in room 404").by("alice", "1")).await.replied());
    settle().await;
    assert!(tree.say(channel(2), Message::addressed("where is the meeting room?").by("bob", "2")).await.replied());
    assert!(last_prompt(&tree).contains("room 404"), "shown as background first: {}", last_prompt(&tree));
    let purged = tree.say(channel(3), Message::from_admin("!deny <#1> purge")).await.answer().unwrap().to_string();
    assert!(purged.ends_with("Deleted 2 stored messages and 1 vectors from it."), "{purged}");
    assert!(tree.store.replies().iter().all(|r| !r.prompt.contains("room 404")), "replies that quoted it are gone too");
    assert!(tree.say(channel(2), Message::addressed("and when is it?").by("bob", "2")).await.replied());
    assert!(!last_prompt(&tree).contains("room 404"), "nor in the conversation that was shown it: {}", last_prompt(&tree));
}

#[tokio::test(start_paused = true)]
async fn threads_follow_their_parent_channel() {
    let tree = Setup::default().start().await;
    let thread = |parent| ChannelKey::Thread { guild: Some(support::GUILD), parent: Some(parent), thread: 500 + parent };
    tree.say(channel(1), Message::from_admin("!allow <#1>")).await;
    assert!(tree.say(thread(1), Message::addressed("in a thread of an allowed channel")).await.replied());
    assert!(!tree.say(thread(2), Message::addressed("in a thread of another")).await.replied());
    assert!(tree.store.messages(&thread(2)).is_empty());
    let purged = tree.say(channel(3), Message::from_admin("!deny <#1> purge")).await.answer().unwrap().to_string();
    assert!(purged.ends_with("Deleted 2 stored messages and 0 vectors from it."), "the thread's two went with it: {purged}");
    assert!(tree.store.messages(&thread(1)).is_empty());
}
