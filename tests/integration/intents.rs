//! Without the privileged Message Content intent: with `auto` (the default) the bot connects
//! again without it and answers what Discord still sends the text of; with `on` it stops with
//! exit 2 and names the intent.

use crate::discord::{admin, alice, bot_config, mention, owner, reply_to, BOT, CH1, CH2, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use sidekick::config::MessageContent;
use sidekick::daemon::{engine_config, Daemon};
use sidekick_actors::clock::SystemClock;
use sidekick_actors::ports::MessageLog;
use sidekick_actors::ChannelKey;
use std::sync::Arc;
use std::time::Duration;

const MESSAGE_CONTENT: u64 = 1 << 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_the_intent_the_bot_runs_on_mentions_and_says_so() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    fake.refuse_message_content();
    let dir = tempfile::tempdir().unwrap();
    let config = bot_config(dir.path(), &fake);
    let daemon = Daemon::start_with(&config, engine_config(&config), Arc::new(SystemClock)).await.unwrap();
    let mut gateway =
        sidekick::discord::connect(&config, daemon.root.clone(), daemon.gateway_health.clone(), daemon.service.clone()).await.unwrap();

    let scenario = async {
        assert!(fake.wait_ready(WAIT).await, "no session without the intent");
        let chatter = fake.user_says(CH1, &alice(), "just chatting among ourselves", false, None).await;
        let asked = mention(&fake, CH1, &alice(), "hello, are you there?").await;
        assert!(!reply_to(&fake, asked).await.content().is_empty());
        let status = mention(&fake, CH1, &admin(), "!status").await;
        let status = reply_to(&fake, status).await.content().to_string();
        assert!(status.contains("Running without the Message Content intent"), "{status}");
        let dm = fake.dm(&alice(), "and in a DM?").await;
        assert!(!reply_to(&fake, dm).await.content().is_empty(), "DMs keep their text");
        chatter
    };
    let chatter = tokio::select! {
        request = gateway.ended() => panic!("the gateway ended: {}", request.why),
        chatter = scenario => chatter,
    };
    let intents = fake.identified_intents();
    assert!(!intents.is_empty() && intents.iter().all(|i| i & MESSAGE_CONTENT == 0), "{intents:?}");
    let history = daemon.store.recent_history(&ChannelKey::guild(GUILD, CH1), 50).unwrap();
    assert!(history.iter().all(|m| !m.content.is_empty()), "textless chatter is not stored: {history:?}");
    assert!(history.iter().any(|m| m.content == "hello, are you there?"));
    assert!(fake.message(chatter).is_some());
    gateway.shutdown().await;
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_intent_required_a_refusal_exits_2_naming_it() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    fake.refuse_message_content();
    let dir = tempfile::tempdir().unwrap();
    let mut config = bot_config(dir.path(), &fake);
    config.discord.message_content = MessageContent::On;
    let daemon = Daemon::start_with(&config, engine_config(&config), Arc::new(SystemClock)).await.unwrap();
    let mut gateway =
        sidekick::discord::connect(&config, daemon.root.clone(), daemon.gateway_health.clone(), daemon.service.clone()).await.unwrap();
    let request = tokio::time::timeout(Duration::from_secs(60), gateway.ended()).await.expect("the refusal ends the gateway");
    assert_eq!(request.code, 2, "{}", request.why);
    assert!(request.why.contains("4014") && request.why.contains("Message Content"), "{}", request.why);
    assert!(fake.identified_intents().is_empty(), "no session was opened");
    gateway.shutdown().await;
    daemon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_intent_fetch_and_train_say_there_is_no_history_to_read() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    fake.refuse_message_content();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = crate::support::spawn_connected_daemon(dir.path(), &fake, &[]).await;
    for command in ["!fetch", "!train"] {
        let asked = mention(&fake, CH1, &admin(), command).await;
        let answer = reply_to(&fake, asked).await.content().to_string();
        assert!(answer.contains("without the Message Content intent") && answer.contains("developer portal"), "{command}: {answer}");
    }
    crate::support::sigkill(&mut daemon);
}
