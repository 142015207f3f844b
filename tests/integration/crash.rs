//! Crash safety: 50 cycles of start, scripted traffic (feedback, admin and channel settings,
//! chat), SIGKILL (every other time right after the last acknowledgement, otherwise at a random
//! moment while the traffic is handled), and a look at the store: every write the bot
//! acknowledged is there, and the store always opens.

use crate::discord::{admin, alice, mention, owner, BOT, CH1, GUILD};
use crate::fake_discord::{FakeDiscord, SentMessage};
use crate::support::{sigkill, spawn_connected_daemon};
use rand::{Rng, SeedableRng};
use sidekick::store::FjallStore;
#[allow(unused_imports)]
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore, StatsStore};
use sidekick_actors::prompt::Role;
use sidekick_actors::ChannelKey;
use std::time::{Duration, Instant};

const CYCLES: usize = 50;

/// The bot's answer to message `id`, if it reached Discord.
fn answer(sent: &[SentMessage], id: u64) -> Option<&str> {
    sent.iter().find(|m| m.reference() == Some(id)).map(|m| m.content())
}

/// What has been acknowledged so far, and what was asked after the last acknowledgement (a
/// write may land without its acknowledgement reaching Discord).
#[derive(Default)]
struct Expect {
    feedback: Vec<String>,
    temperature: Option<f32>,
    temperature_after: Vec<f32>,
    system: Option<String>,
    system_after: Vec<String>,
    chats: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sigkills_at_random_moments_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2026);
    let mut expect = Expect::default();
    let channel = ChannelKey::guild(GUILD, CH1);
    let mut kills_mid_traffic = 0;
    let mut all_answered_in = Duration::ZERO;
    for cycle in 0..CYCLES {
        // Replies are posted whole: a posted reply is then one that was journaled first (a
        // streamed one shows its words before it is journaled, see the README).
        let env = [("SIDEKICK_GENERATION_MAX_TOKENS", "8"), ("SIDEKICK_DISCORD_STREAM", "false")];
        let mut daemon = spawn_connected_daemon(dir.path(), &fake, &env).await;

        // The traffic, all at once, as a busy server sends it; the kill comes at a random
        // moment while it is handled.
        let temperature = (5 + cycle) as f32 / 100.0;
        let system = format!("Be brief, number {cycle}.");
        let feedback = fake.user_says(CH1, &alice(), &format!("!feedback 3 crash-{cycle}"), false, None).await;
        let settemp = fake.user_says(CH1, &admin(), &format!("!settemp {temperature}"), false, None).await;
        let set_system = fake.user_says(CH1, &alice(), &format!("!system {system}"), false, None).await;
        let chat_text = format!("chat-{cycle}");
        let chat = mention(&fake, CH1, &alice(), &chat_text).await;
        expect.temperature_after.push(temperature);
        expect.system_after.push(system.clone());
        let asked = Instant::now();
        if cycle % 2 == 0 {
            // Right after the last acknowledgement: what was just confirmed must be on disk.
            let deadline = asked + Duration::from_secs(60);
            while ![feedback, settemp, set_system, chat].iter().all(|id| answer(&fake.sent(), *id).is_some()) {
                assert!(Instant::now() < deadline, "cycle {cycle}: the traffic was not all answered");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            all_answered_in = asked.elapsed();
        } else {
            // A random moment while the traffic is handled, scaled to how long it took last
            // time, so the kills land mid-traffic on a fast machine and a slow one alike.
            let ms = all_answered_in.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..ms.max(1)))).await;
        }
        sigkill(&mut daemon);

        let sent = fake.sent();
        let acked = [feedback, settemp, set_system, chat].iter().filter(|id| answer(&sent, **id).is_some()).count();
        if acked < 4 {
            kills_mid_traffic += 1;
        }
        if answer(&sent, feedback).is_some_and(|a| a.starts_with("Thanks!")) {
            expect.feedback.push(format!("crash-{cycle}"));
        }
        if answer(&sent, settemp).is_some() {
            expect.temperature = Some(temperature);
            expect.temperature_after.clear();
        }
        if answer(&sent, set_system).is_some() {
            expect.system = Some(system);
            expect.system_after.clear();
        }
        if answer(&sent, chat).is_some_and(|a| !a.starts_with("⚠️")) {
            expect.chats.push(chat_text);
        }

        let store = FjallStore::open(&dir.path().join("store")).unwrap_or_else(|e| panic!("cycle {cycle}: the store does not open: {e}"));
        let journal: Vec<String> = store.feedback_events().unwrap().into_iter().map(|e| e.comment).collect();
        for comment in &expect.feedback {
            assert!(journal.contains(comment), "cycle {cycle}: acknowledged feedback {comment} is missing");
        }
        if let Some(t) = expect.temperature {
            let stored = store.global_settings().unwrap().params.temperature.expect("an acknowledged temperature");
            assert!(stored == t || expect.temperature_after.contains(&stored), "cycle {cycle}: temperature {stored}, acknowledged {t}");
        }
        if let Some(s) = &expect.system {
            let stored = store.channel_settings(&channel).unwrap().system_prompt.expect("an acknowledged system prompt");
            assert!(&stored == s || expect.system_after.contains(&stored), "cycle {cycle}: system prompt {stored:?}, acknowledged {s:?}");
        }
        let history = store.recent_history(&channel, 10_000).unwrap();
        for text in &expect.chats {
            let at = history
                .iter()
                .position(|m| &m.content == text)
                .unwrap_or_else(|| panic!("cycle {cycle}: answered message {text} is missing"));
            assert!(history[at + 1..].iter().any(|m| m.role == Role::Assistant), "cycle {cycle}: the delivered reply to {text} is missing");
        }
    }
    eprintln!(
        "{CYCLES} kills, {kills_mid_traffic} before all four answers; acknowledged and found: {} feedback, {} chats",
        expect.feedback.len(),
        expect.chats.len()
    );
    assert!(kills_mid_traffic >= 5, "the kills should land mid-traffic often: {kills_mid_traffic}");
    assert!(expect.feedback.len() >= 10 && expect.chats.len() >= 10, "enough acknowledged writes to mean something");
}
