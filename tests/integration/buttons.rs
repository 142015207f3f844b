//! The buttons under a reply, clicked on the fake Discord with the real serenity client and
//! the real model: 👍/👎 leave one standing vote, 🔁 writes the reply again in place and
//! journals the pair, ⏹ stops a streaming reply, and the buttons leave older replies.

use crate::discord::{alice, bot_config, mention, owner, reply_to, start, BOT, CH1, CH2, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use sidekick_actors::clock::SystemClock;
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore};
use sidekick_actors::prompt::Role;
use sidekick_actors::ChannelKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

const UP: &str = "sidekick:up";
const DOWN: &str = "sidekick:down";
const AGAIN: &str = "sidekick:again";
const STOP: &str = "sidekick:stop";

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_stand_once_a_retry_rewrites_in_place_and_older_replies_lose_their_buttons() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = bot_config(dir.path(), &fake);
    config.generation.temperature = 1.0;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    let store = bot.daemon.store.clone();

    let asked = mention(&fake, CH1, &alice(), "tell me something surprising about octopuses").await;
    let first = reply_to(&fake, asked).await.message_id;
    until("the reply carries its buttons", || fake.buttons(first) == [UP, DOWN, AGAIN]).await;
    until("the reply is linked", || store.reply_for_message(&first.to_string()).unwrap().is_some()).await;
    let old = store.reply_for_message(&first.to_string()).unwrap().unwrap();

    // 👍 then 👎 by the same person: one vote, down.
    let up = fake.click(CH1, first, &alice(), UP);
    let answer = fake.wait_answer(&up, WAIT).await;
    assert!(answer[0].ephemeral() && answer[0].body["data"]["content"].as_str().unwrap().contains('👍'), "{answer:?}");
    fake.click(CH1, first, &alice(), DOWN);
    until("the vote changed", || store.feedback_since(0).unwrap().len() == 3).await;
    let journal = store.feedback_since(0).unwrap();
    assert!(journal.iter().all(|(_, e)| e.reply_id == Some(old)));
    let standing: f32 = journal.iter().map(|(_, e)| e.reward).sum();
    assert!(standing < 0.0 && (standing + 0.5).abs() < 1e-6, "one standing vote, 👎: {standing}");

    // 🔁: a new reply in the same message; the old one is journaled as rejected.
    let before = fake.message(first).unwrap()["content"].as_str().unwrap().to_string();
    fake.click(CH1, first, &alice(), AGAIN);
    until("the message is linked to a new reply", || store.reply_for_message(&first.to_string()).unwrap() != Some(old)).await;
    let new = store.reply_for_message(&first.to_string()).unwrap().unwrap();
    let record = store.reply(new).unwrap().unwrap();
    assert_eq!(record.replaces, Some(old), "the pair: the new reply names the one it replaced");
    let shown = fake.message(first).unwrap()["content"].as_str().unwrap().to_string();
    assert_eq!(shown, record.text, "Discord shows the new reply in the same message");
    assert_ne!(shown, before, "written differently");
    let key = ChannelKey::guild(GUILD, CH1);
    let said: Vec<String> =
        store.recent_history(&key, 10).unwrap().into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.content).collect();
    assert_eq!(said, std::slice::from_ref(&record.text), "the log holds the new words in the old ones' place");
    until("the rejection is journaled", || store.feedback_since(0).unwrap().len() == 4).await;
    let rejected = store.feedback_since(0).unwrap().pop().unwrap().1;
    assert!(rejected.reply_id == Some(old) && rejected.reward < 0.0 && rejected.emoji.as_deref() == Some("🔁"));
    assert_eq!(fake.buttons(first), [UP, DOWN, AGAIN], "the rewritten reply keeps its buttons");
    let global = store.global_settings().unwrap();
    assert!(store.preference_pairs(&global).unwrap().is_empty(), "no pair before a good vote on the new reply");
    // 👍 on the new words: the two replies are a preference pair (alice's 👎 stays the old one's).
    fake.click(CH1, first, &alice(), UP);
    until("the vote on the new reply", || store.feedback_since(0).unwrap().len() == 5).await;
    let pairs = store.preference_pairs(&global).unwrap();
    let old_record = store.reply(old).unwrap().unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!((pairs[0].reply_id, &pairs[0].chosen, &pairs[0].rejected), (new, &record.reply_tokens, &old_record.reply_tokens));
    assert_eq!(pairs[0].prompt, record.prompt_tokens);

    // A newer reply takes the buttons; the older one's 🔁 is refused, privately.
    let next = mention(&fake, CH1, &alice(), "and squids?").await;
    let second = reply_to(&fake, next).await.message_id;
    until("the newer reply has the buttons", || fake.buttons(second) == [UP, DOWN, AGAIN]).await;
    until("the older one lost them", || fake.buttons(first).is_empty()).await;
    let stale = fake.click(CH1, first, &alice(), AGAIN);
    until("a private answer to the stale click", || fake.answers(&stale).iter().any(|a| a.kind == "followup")).await;
    let followup = fake.answers(&stale).into_iter().find(|a| a.kind == "followup").unwrap();
    assert!(followup.ephemeral() && followup.content().contains("Only my latest reply"), "{followup:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_streaming_reply_within_one_edit_interval_and_buttons_expire() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = bot_config(dir.path(), &fake);
    config.discord.stream = true;
    config.discord.edit_interval_ms = 1000;
    config.discord.buttons_minutes = 0.1;
    config.generation.max_tokens = 400;
    config.generation.temperature = 0.0;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;

    let asked = mention(&fake, CH1, &alice(), "tell me a very long story about a dragon who learns to bake bread").await;
    let reply = reply_to(&fake, asked).await.message_id;
    until("⏹ shows while the reply is written", || fake.buttons(reply) == [STOP]).await;
    let clicked = Instant::now();
    let token = fake.click(CH1, reply, &alice(), STOP);
    until("the reply ends with the vote buttons", || fake.buttons(reply) == [UP, DOWN, AGAIN]).await;
    let ended = fake
        .edits()
        .iter()
        .rev()
        .find(|e| e.message_id == reply && e.body["components"][0]["components"][0]["custom_id"] == UP)
        .unwrap()
        .received;
    let took = ended.saturating_duration_since(clicked);
    assert!(took <= Duration::from_millis(config.discord.edit_interval_ms), "stopped {took:?} after the click");
    assert_eq!(fake.answers(&token)[0].body["type"], 6, "the click is acknowledged without a message");

    let key = ChannelKey::guild(GUILD, CH1);
    let store = bot.daemon.store.clone();
    until("the reply is linked", || store.reply_for_message(&reply.to_string()).unwrap().is_some()).await;
    let record = store.reply(store.reply_for_message(&reply.to_string()).unwrap().unwrap()).unwrap().unwrap();
    assert!(record.reply_tokens.len() < 400, "it stopped early: {} tokens", record.reply_tokens.len());
    assert_eq!(fake.message(reply).unwrap()["content"].as_str().unwrap(), record.text, "what was said stays, as journaled");
    let said = store.recent_history(&key, 10).unwrap().into_iter().filter(|m| m.role == Role::Assistant).count();
    assert_eq!(said, 1);

    // After `discord.buttons_minutes` (6 s here) the buttons leave.
    until("the buttons expired", || fake.buttons(reply).is_empty()).await;
    let late = fake.click(CH1, reply, &alice(), STOP);
    let answer = fake.wait_answer(&late, WAIT).await;
    assert!(answer[0].ephemeral(), "a late ⏹ is answered privately: {answer:?}");
    bot.stop().await;
}
