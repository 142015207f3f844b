//! The real daemon and the real serenity client against the fake Discord.

use crate::fake_discord::{FakeDiscord, FakeUser, SentMessage};
use crate::support::test_config;
use sidekick::config::Config;
use sidekick::daemon::{engine_config, Daemon};
use sidekick::store::FjallStore;
use sidekick_actors::clock::{Clock, ManualClock, SystemClock};
#[allow(unused_imports)]
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore, StatsStore};
use sidekick_actors::prompt::Role;
use sidekick_actors::ChannelKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const BOT: u64 = 100_000_000_000_000_001;
pub(crate) const OWNER: u64 = 200_000_000_000_000_002;
pub(crate) const GUILD: u64 = 300_000_000_000_000_003;
pub(crate) const CH1: u64 = 400_000_000_000_000_004;
pub(crate) const CH2: u64 = 400_000_000_000_000_005;
pub(crate) const ADMIN: u64 = 600_000_000_000_000_006;
pub(crate) const ALICE: u64 = 500_000_000_000_000_005;
pub(crate) const WAIT: Duration = Duration::from_secs(90);

pub(crate) fn owner() -> FakeUser {
    FakeUser::new(OWNER, "owner")
}
pub(crate) fn admin() -> FakeUser {
    FakeUser::new(ADMIN, "admin")
}
pub(crate) fn alice() -> FakeUser {
    FakeUser::new(ALICE, "alice")
}

/// A daemon connected to `fake` as `sidekick run` connects it (the connection a child of the
/// tree), with the owner learned from Discord and one admin.
pub(crate) struct Bot {
    pub(crate) daemon: Daemon,
}

pub(crate) fn bot_config(dir: &Path, fake: &FakeDiscord) -> Config {
    let mut config = test_config(dir);
    config.discord.api_base = fake.api_base();
    config.secrets.discord_token = Some("fake-token".into());
    config.secrets.admin_users = vec![ADMIN];
    config.generation.max_tokens = 16;
    // These tests read each reply whole from its first post; streaming has its own tests.
    config.discord.stream = false;
    config
}

pub(crate) async fn start(config: &Config, fake: &FakeDiscord, clock: Arc<dyn Clock>) -> Bot {
    let daemon = Daemon::start_with(config, engine_config(config), clock).await.unwrap();
    let before = fake.connections();
    sidekick::discord::supervised(config, daemon.root.clone(), daemon.gateway_health.clone(), daemon.service.clone()).await.unwrap();
    assert!(fake.wait_ready_after(before, Duration::from_secs(10)).await, "the bot did not connect");
    Bot { daemon }
}

impl Bot {
    /// As at SIGTERM: the drain closes the connection first, then replies finish.
    pub(crate) async fn stop(self) {
        self.daemon.shutdown().await.unwrap();
    }
}

/// The bot's message answering message `id`.
pub(crate) async fn reply_to(fake: &FakeDiscord, id: u64) -> SentMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = fake.sent().into_iter().find(|m| m.reference() == Some(id)) {
            return m;
        }
        if Instant::now() >= deadline {
            let sent: Vec<_> = fake.sent().iter().map(|m| format!("{:?} → {:?}", m.reference(), m.content())).collect();
            let requests = fake.requests();
            let recent = &requests[requests.len().saturating_sub(20)..];
            panic!("no reply to {id}; sent: {sent:#?}\n{} gateway connections; last requests: {recent:#?}", fake.connections());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Says something and returns the bot's answer to it.
pub(crate) async fn ask(fake: &FakeDiscord, channel: u64, who: &FakeUser, text: &str) -> String {
    let id = fake.user_says(channel, who, text, false, None).await;
    reply_to(fake, id).await.content().to_string()
}

pub(crate) async fn mention(fake: &FakeDiscord, channel: u64, who: &FakeUser, text: &str) -> u64 {
    fake.user_says(channel, who, &format!("<@{BOT}> {text}"), true, None).await
}

/// Whether message `id` (saying `text`) got an answer. Once the channel has stored it, a `!ping`
/// is answered only after the channel has finished with it (a channel handles its messages in
/// order); by then the store says whether a reply followed, and a reply that did must reach
/// Discord.
async fn answered(fake: &FakeDiscord, bot: &Bot, channel: u64, id: u64, text: &str) -> bool {
    let key = ChannelKey::guild(GUILD, channel);
    let deadline = Instant::now() + WAIT;
    while !bot.daemon.store.recent_history(&key, 200).unwrap().iter().any(|m| m.content == text) {
        assert!(Instant::now() < deadline, "{text:?} never reached the store");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ask(fake, channel, &alice(), "!ping").await, "Pong!");
    let history = bot.daemon.store.recent_history(&key, 200).unwrap();
    let at = history.iter().rposition(|m| m.content == text).expect("the message is stored");
    let replied = history.get(at + 1).is_some_and(|m| m.role == Role::Assistant);
    if replied {
        reply_to(fake, id).await;
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!fake.sent().iter().any(|m| m.reference() == Some(id)), "a reply reached Discord but not the store");
    }
    replied
}

/// The reply Discord message `id` is linked to, waiting a little for the link (the supervisor
/// writes it just after the message is sent).
async fn linked(bot: &Bot, id: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = bot.daemon.store.reply_for_message(&id.to_string()).unwrap();
        if reply.is_some() || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn no_pings(m: &SentMessage) -> bool {
    let allowed = m.allowed_mentions().expect("allowed_mentions is always sent");
    ["parse", "users", "roles"].iter().all(|k| allowed[k].as_array().is_some_and(|a| a.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_answers_and_refuses_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let config = bot_config(dir.path(), &fake);
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    let (a, o, ad) = (alice(), owner(), admin());

    assert_eq!(ask(&fake, CH1, &a, "!ping").await, "Pong!");
    let help = ask(&fake, CH1, &a, "!help").await;
    assert!(help.contains("`!feedback <1-5> [comment]`") && !help.contains("!setrate"), "{help}");
    assert!(ask(&fake, CH1, &ad, "!help").await.contains("`!setrate <0-1>`"));
    assert!(ask(&fake, CH1, &o, "!help").await.contains("`!rl_metrics`"));

    // Refusals.
    for cmd in ["!setrate 0.5", "!settemp 0.5", "!setmaxlen 100", "!mentions_only on", "!allow <#1>", "!deny <#1>", "!status", "!restart"] {
        assert_eq!(ask(&fake, CH1, &a, cmd).await, "Only admins can do that.", "{cmd}");
    }
    for cmd in ["!rl_metrics", "!engagement"] {
        assert_eq!(ask(&fake, CH1, &a, cmd).await, "Only the bot's owner can do that.", "{cmd}");
        assert_eq!(ask(&fake, CH1, &ad, cmd).await, "Only the bot's owner can do that.", "{cmd}");
    }

    // Everyone's commands.
    assert_eq!(ask(&fake, CH1, &a, "!feedback 4 nice").await, "There's no reply of mine here to rate yet.");
    let chat = ask(&fake, CH1, &a, "!chat hello there").await;
    assert!(!chat.is_empty());
    let thanks = ask(&fake, CH1, &a, "!feedback 4 nice").await;
    assert!(thanks.starts_with("Thanks! Feedback recorded (4/5, reward +0."), "{thanks}");
    assert_eq!(ask(&fake, CH1, &a, "!feedback 7").await, "usage: `!feedback <1-5> [comment]`, e.g. `!feedback 4 nice one`");
    assert_eq!(ask(&fake, CH1, &a, "!config top_k 20").await, "top_k set to 20.");
    assert_eq!(ask(&fake, CH1, &a, "!config top_k 999").await, "`top_k` must be between 1 and 200, got 999");
    assert!(ask(&fake, CH1, &a, "!config").await.contains("top_k = 20 "));
    assert_eq!(ask(&fake, CH1, &a, "!system Talk like a pirate.").await, "System prompt set for this channel.");
    assert_eq!(ask(&fake, CH1, &a, "!system").await, "System prompt (custom):\nTalk like a pirate.");
    assert_eq!(ask(&fake, CH1, &a, "!system reset").await, "System prompt reset to the default.");
    assert!(ask(&fake, CH1, &a, "!botdata").await.starts_with("I read and keep messages in every channel I can see"));
    assert!(ask(&fake, CH1, &a, "!clear").await.starts_with("Conversation cleared"));
    // Another bot's command is left alone; a command we do not know, said to us, is explained.
    let other_bots = fake.user_says(CH1, &a, "!play despacito", false, None).await;
    assert_eq!(ask(&fake, CH1, &a, "!ping").await, "Pong!");
    assert!(fake.sent().iter().all(|m| m.reference() != Some(other_bots)), "no answer to another bot's command");
    let id = mention(&fake, CH1, &a, "!dance").await;
    assert_eq!(reply_to(&fake, id).await.content(), "I don't know `!dance`. Try `!help`.");

    // Admin commands.
    assert!(ask(&fake, CH1, &ad, "!setrate 0.5").await.contains("about 50%"));
    assert_eq!(ask(&fake, CH1, &ad, "!setrate 5").await, "usage: `!setrate <0-1>`, e.g. `!setrate 0.1`");
    assert_eq!(ask(&fake, CH1, &ad, "!settemp 0.8").await, "Default temperature set to 0.8.");
    assert_eq!(ask(&fake, CH1, &ad, "!setmaxlen 150").await, "Default reply length set to 150 tokens.");
    assert!(ask(&fake, CH1, &ad, "!config").await.contains("max_tokens = 150 "));
    assert_eq!(ask(&fake, CH1, &ad, "!mentions_only on").await, "OK: I'll only answer when mentioned.");
    assert_eq!(ask(&fake, CH1, &ad, "!mentions_only off").await, "OK: I may join conversations again.");
    assert!(ask(&fake, CH1, &ad, &format!("!allow <#{CH1}>")).await.contains("is on the allowlist"));
    let botdata = ask(&fake, CH1, &a, "!botdata").await;
    assert!(botdata.contains("only in the allowlisted channels") && botdata.contains(&format!("<#{CH1}>: ")), "{botdata}");
    assert!(ask(&fake, CH1, &ad, &format!("!deny <#{CH1}>")).await.contains("talk in every channel again"));
    let status = ask(&fake, CH1, &ad, "!status").await;
    assert!(status.starts_with("Up ") && status.contains("SmolLM2-135M-Instruct.Q4_1.gguf") && status.contains("1 replies"), "{status}");

    // Owner commands.
    assert!(ask(&fake, CH1, &o, "!engagement").await.starts_with("Engagement here: level "));
    let rl = ask(&fake, CH1, &o, "!rl_metrics").await;
    assert!(rl.contains("feedback: 1 commands, 0 reactions, 0 removed") && rl.contains("not training: learning is off"), "{rl}");
    assert_eq!(ask(&fake, CH1, &ad, "!adapter").await, "Learning is off in this bot's configuration (rl.enabled = false).");

    // !restart reloads the model without ending the process; the bot answers after it.
    assert!(ask(&fake, CH1, &ad, "!restart").await.starts_with("Restarting"));
    let id = mention(&fake, CH1, &a, "are you back?").await;
    assert!(!reply_to(&fake, id).await.content().is_empty());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_gets_a_reply_and_a_channel_off_the_allowlist_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let mut config = bot_config(dir.path(), &fake);
    config.chat.queue_limit = 4;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;

    let id = mention(&fake, CH1, &alice(), "what's up?").await;
    let reply = reply_to(&fake, id).await;
    assert_eq!(reply.channel_id, CH1);
    assert!(!reply.content().is_empty() && no_pings(&reply));
    assert!(fake.typing(CH1) >= 1, "typing was shown while generating");

    ask(&fake, CH1, &admin(), &format!("!allow <#{CH1}>")).await;
    let ignored = mention(&fake, CH2, &alice(), "hello?").await;
    // A channel handles its messages in order: once a later command there is answered (commands
    // that mention the bot are), "hello?" has been handled.
    let ping = mention(&fake, CH2, &alice(), "!ping").await;
    assert_eq!(reply_to(&fake, ping).await.content(), "Pong!");
    assert!(fake.sent().iter().all(|m| m.reference() != Some(ignored)), "CH2 is not on the allowlist");
    let id = mention(&fake, CH1, &alice(), "and here?").await;
    assert!(!reply_to(&fake, id).await.content().is_empty());

    // Nothing is kept from a channel off the allowlist.
    let store_dir = config.storage.path.clone();
    bot.stop().await;
    let store = FjallStore::open(&store_dir).unwrap();
    assert!(store.recent_history(&ChannelKey::guild(GUILD, CH2), 10).unwrap().is_empty());
}

/// The answered/unanswered pattern of twelve unaddressed messages a minute apart.
/// The message of [`engagement_run`] that mentions the bot; the others are chatter.
const MENTIONED: usize = 4;

async fn engagement_run(seed: u32) -> (Vec<bool>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut config = bot_config(dir.path(), &fake);
    config.model.seed = Some(seed);
    config.generation.max_tokens = 4;
    let clock = ManualClock::at(1_800_000_000_000);
    let bot = start(&config, &fake, Arc::new(clock.clone())).await;
    ask(&fake, CH1, &admin(), "!setrate 0.25").await;
    let mut pattern = Vec::new();
    let mut levels = Vec::new();
    for i in 0..12 {
        clock.advance(60_000);
        if i == MENTIONED {
            let id = mention(&fake, CH1, &alice(), "what do you think?").await;
            reply_to(&fake, id).await;
            pattern.push(true);
        } else {
            let text = format!("just chatting {i}");
            let id = fake.user_says(CH1, &alice(), &text, false, None).await;
            pattern.push(answered(&fake, &bot, CH1, id, &text).await);
        }
        levels.push(ask(&fake, CH1, &owner(), "!engagement").await);
    }
    // An hour of silence lets engagement fall back toward the base rate.
    clock.advance(3_600_000);
    levels.push(ask(&fake, CH1, &owner(), "!engagement").await);
    bot.stop().await;
    (pattern, levels)
}

fn level(engagement: &str) -> f64 {
    engagement.trim_start_matches("Engagement here: level ").split(',').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_decisions_are_reproducible_rise_when_someone_talks_to_the_bot_and_decay() {
    let (first, levels) = engagement_run(7).await;
    let (second, levels2) = engagement_run(7).await;
    assert_eq!(first, second, "same seed and clock, same decisions: {levels:#?} {levels2:#?}");
    let unasked: Vec<bool> = first.iter().enumerate().filter(|(i, _)| *i != MENTIONED).map(|(_, a)| *a).collect();
    assert!(unasked.contains(&true) && unasked.contains(&false), "{first:?}");
    let i = MENTIONED;
    assert!(level(&levels[i]) > level(&levels[i - 1]) + 0.2, "a mention and its answer raise engagement: {levels:?}");
    for i in (1..first.len()).filter(|i| *i != MENTIONED && first[*i]) {
        assert!(level(&levels[i]) <= level(&levels[i - 1]) + 1e-9, "an unasked reply ({i}) raised engagement: {levels:?}");
    }
    let last = level(levels.last().unwrap());
    assert!(last < level(&levels[levels.len() - 2]) / 4.0, "an hour later it has decayed: {levels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reply_is_split_under_2000_characters_and_nothing_pings() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut config = bot_config(dir.path(), &fake);
    config.model.context_tokens = 8192;
    config.model.parallel = 2;
    // With this seed (and the 8-bit KV cache) the model writes on past 4,500 characters; a
    // change to the numerics can end it sooner, and the assertion below then says so.
    config.model.seed = Some(7);
    config.generation.temperature = 1.0;
    config.generation.max_tokens = 1150;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;

    let question =
        mention(&fake, CH1, &alice(), "Write the longest story you can about a dragon, at least 5000 words, with many chapters.").await;
    let first = reply_to(&fake, question).await;
    // The rest of the reply follows as plain messages, sent one after another: wait until
    // what reached Discord is the whole reply the store has.
    let store_dir = config.storage.path.clone();
    let squeezed = |s: &str| s.split_whitespace().collect::<String>();
    let deadline = Instant::now() + WAIT;
    let (pieces, whole) = loop {
        let pieces: Vec<SentMessage> = fake.sent().into_iter().skip_while(|m| m.message_id != first.message_id).collect();
        let whole: String = pieces.iter().map(|m| m.content()).collect::<Vec<_>>().join("\n");
        let stored = bot.daemon.store.recent_history(&ChannelKey::guild(GUILD, CH1), 10).unwrap();
        if stored.get(1).is_some_and(|m| squeezed(&m.content) == squeezed(&whole)) {
            break (pieces, whole);
        }
        assert!(Instant::now() < deadline, "only {} characters reached Discord", whole.chars().count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(whole.chars().count() > 4500, "the model wrote {} characters", whole.chars().count());
    assert_eq!(pieces.len(), 3, "{} characters in {} pieces", whole.chars().count(), pieces.len());
    let reply = linked(&bot, first.message_id).await;
    assert!(reply.is_some(), "the reply is linked for reactions");
    for (i, piece) in pieces.iter().enumerate() {
        assert!(piece.content().chars().count() <= 2000);
        assert!(no_pings(piece));
        // Only the first part is a Discord reply: a long answer notifies once.
        assert_eq!(piece.reference().is_some(), i == 0, "part {i}");
        // A reaction on any part rates the reply.
        assert_eq!(linked(&bot, piece.message_id).await, reply, "part {i}");
    }

    // A reply that says @everyone pings no one.
    ask(&fake, CH1, &alice(), "!system @everyone wake up, it's party time").await;
    let id = fake.user_says(CH1, &alice(), "!system", false, None).await;
    let shown = reply_to(&fake, id).await;
    assert!(shown.content().contains("@everyone") && no_pings(&shown));
    bot.stop().await;
    let store = FjallStore::open(&store_dir).unwrap();
    let history = store.recent_history(&ChannelKey::guild(GUILD, CH1), 10).unwrap();
    assert_eq!(history[1].content.split_whitespace().collect::<String>(), whole.split_whitespace().collect::<String>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_message_deleted_meanwhile_is_still_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let bot = start(&bot_config(dir.path(), &fake), &fake, Arc::new(SystemClock)).await;

    // Deleted while the model is still writing the answer.
    let question = mention(&fake, CH1, &alice(), "What colour is the sky?").await;
    fake.delete(CH1, question);
    let sent = reply_to(&fake, question).await;
    assert!(!sent.content().is_empty());
    let delivered = fake.message(sent.message_id).expect("the answer reached the channel");
    assert_eq!(delivered["type"], 0, "delivered as a plain message, the question being gone");
    assert!(linked(&bot, sent.message_id).await.is_some(), "and linked for reactions");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_bounded_answers_one_busy_notice_and_is_all_stored_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut config = bot_config(dir.path(), &fake);
    config.chat.queue_limit = 4;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;

    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(mention(&fake, CH1, &alice(), &format!("flood {i}")).await);
    }
    assert!(started.elapsed() < Duration::from_secs(1), "the flood took {:?}", started.elapsed());
    assert!(answered(&fake, &bot, CH1, ids[0], "flood 0").await);
    let sent = fake.sent();
    let busy: Vec<_> = sent.iter().filter(|m| m.content().starts_with("I'm getting a lot of messages")).collect();
    let replies = sent.iter().filter(|m| ids.contains(&m.reference().unwrap_or(0))).count() - busy.len();
    assert_eq!(busy.len(), 1, "one busy notice");
    assert!((1..=5).contains(&replies), "{replies} replies within the queue bound");

    // Still up, and every message is in the store.
    let id = mention(&fake, CH1, &alice(), "still there?").await;
    assert!(!reply_to(&fake, id).await.content().is_empty());
    let store_dir = config.storage.path.clone();
    bot.stop().await;
    let store = FjallStore::open(&store_dir).unwrap();
    let history = store.recent_history(&ChannelKey::guild(GUILD, CH1), 200).unwrap();
    // In the order they were sent: serenity handles events concurrently, the bot must not.
    let floods: Vec<&str> = history.iter().map(|m| m.content.as_str()).filter(|c| c.starts_with("flood ")).collect();
    let sent: Vec<String> = (0..50).map(|i| format!("flood {i}")).collect();
    assert_eq!(floods, sent, "every flood message stored, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_reconnects_after_the_gateway_drops() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let config = bot_config(dir.path(), &fake);
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    let id = mention(&fake, CH1, &alice(), "hi").await;
    reply_to(&fake, id).await;

    fake.drop_gateway().await;
    assert!(fake.wait_ready(Duration::from_secs(20)).await, "the bot did not reconnect");
    assert!(fake.connections() >= 2);
    let id = mention(&fake, CH1, &alice(), "you there?").await;
    assert!(!reply_to(&fake, id).await.content().is_empty());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_settings_survive_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let config = bot_config(dir.path(), &fake);
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    assert_eq!(ask(&fake, CH1, &admin(), "!settemp 0.9").await, "Default temperature set to 0.9.");
    bot.stop().await;

    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    assert!(ask(&fake, CH1, &alice(), "!config").await.contains("temperature = 0.9 "));
    bot.stop().await;
}
