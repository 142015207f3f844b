//! Streamed replies with the real model and serenity against the fake Discord: posted after
//! the first words, edited as they are written within Discord's per-channel edit limit, and
//! ending with exactly the journaled text.

use crate::discord::{alice, bot_config, mention, owner, reply_to, start, BOT, CH1, CH2, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use sidekick_actors::clock::SystemClock;
use sidekick_actors::ports::MessageLog;
use sidekick_actors::prompt::Role;
use sidekick_actors::ChannelKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most of `times` within any 5 s, Discord's window.
fn busiest_five_seconds(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|t| t.duration_since(sorted[i]) < Duration::from_secs(5)).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replies_streaming_in_one_channel_keep_to_five_edits_in_five_seconds_and_end_as_journaled() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = bot_config(dir.path(), &fake);
    config.discord.stream = true;
    config.discord.edit_interval_ms = 200;
    config.generation.max_tokens = 160;
    config.generation.temperature = 0.0;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;

    let asks = [
        "tell me a long story about a dragon who learns to bake bread",
        "explain in detail how a steam engine works, step by step",
        "describe a long walk through a forest in autumn, with many details",
    ];
    let mut ids = Vec::new();
    for ask in asks {
        ids.push(mention(&fake, CH1, &alice(), ask).await);
    }
    let mut replies = Vec::new();
    for id in &ids {
        replies.push(reply_to(&fake, *id).await.message_id);
    }
    // Each reply is done when its channel journaled it: three assistant turns in the store.
    let key = ChannelKey::guild(GUILD, CH1);
    let deadline = Instant::now() + WAIT;
    let journaled = loop {
        let history = bot.daemon.store.recent_history(&key, 20).unwrap();
        let answers: Vec<String> = history.into_iter().filter(|m| m.role == Role::Assistant).map(|m| m.content).collect();
        if answers.len() == 3 {
            break answers;
        }
        assert!(Instant::now() < deadline, "three replies were not journaled: {answers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The final edits wait for the channel's budget: give them the time one window takes.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let edits = fake.edits();
    assert!(edits.iter().all(|e| e.channel_id == CH1));
    let most = replies.iter().map(|id| edits.iter().filter(|e| e.message_id == *id).count()).max().unwrap_or(0);
    assert!(most >= 2, "a reply was edited while it was written, not only at its end: {} edits in all", edits.len());
    let times: Vec<Instant> = edits.iter().map(|e| e.received).collect();
    assert!(
        busiest_five_seconds(&times) <= 5,
        "more than 5 edits in 5 s: {:?}",
        times.iter().map(|t| t.duration_since(times[0])).collect::<Vec<_>>()
    );
    for edit in &edits {
        assert_eq!(edit.body["allowed_mentions"]["parse"], serde_json::json!([]), "no edit pings anyone");
    }
    let mut shown: Vec<String> = replies.iter().map(|id| fake.message(*id).unwrap()["content"].as_str().unwrap().to_string()).collect();
    let mut journaled = journaled;
    shown.sort();
    journaled.sort();
    assert_eq!(shown, journaled, "what Discord shows in the end is what was journaled");
    assert!(fake.typing(CH1) >= 1, "typing shows until the first words");
    bot.stop().await;
}
