//! `sidekick fetch` against the fake Discord.

use super::{fetch, govern, kept, text};
use crate::discord::{alice, owner, BOT, CH1, CH2, GUILD};
use crate::fake_discord::{FakeDiscord, FakeUser, Historic};
use crate::support::sigkill;
use sidekick::store::FjallStore;
use sidekick_actors::ports::HistoryLog;
use sidekick_actors::ChannelKey;
use std::collections::BTreeSet;
use std::time::Duration;

fn bob() -> FakeUser {
    FakeUser::new(700_000_000_000_000_007, "bob")
}

fn carol() -> FakeUser {
    FakeUser::new(700_000_000_000_000_008, "carol")
}

fn other_bot() -> FakeUser {
    FakeUser { bot: true, ..FakeUser::new(700_000_000_000_000_009, "MEE6") }
}

/// `n` plain messages from alice and bob in `channel`; their ids.
fn chatter(fake: &FakeDiscord, channel: u64, n: usize, tag: &str) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let who = if i % 2 == 0 { alice() } else { bob() };
            fake.add_history(channel, Historic::says(&who, &format!("{tag} message {i}")))
        })
        .collect()
}

fn ids(messages: &[sidekick_actors::history::HistoryMessage]) -> BTreeSet<u64> {
    messages.iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_keeps_the_allowlisted_history_less_the_filtered_and_a_second_fetches_only_whats_new() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let mut expected = chatter(&fake, CH1, 230, "early");
    // What seed 003's filters drop, and someone who opted out.
    let bot_line = fake.add_history(CH1, Historic::says(&other_bot(), "Welcome to the server!"));
    let join = fake.add_history(CH1, Historic { kind: 7, ..Historic::says(&bob(), "") });
    let pin = fake.add_history(CH1, Historic { kind: 6, ..Historic::says(&bob(), "pinned a message") });
    let link = fake.add_history(CH1, Historic::says(&alice(), "https://example.com/x <https://b.io>"));
    let private = fake.add_history(CH1, Historic::says(&carol(), "carol asked to be forgotten"));
    // Kept as written, reactions and all.
    let loved = fake.add_history(CH1, Historic { reactions: vec![("😂", 5), ("lul:42", 2)], ..Historic::says(&bob(), "BRUH that's wild") });
    let linked = fake.add_history(CH1, Historic::says(&alice(), "look https://example.com"));
    expected.extend([loved, linked]);
    let thread = fake.thread(CH1);
    expected.extend(chatter(&fake, thread, 3, "thread"));
    let elsewhere = chatter(&fake, CH2, 20, "not allowlisted");
    govern(dir.path(), &[CH1], &[carol().id]);

    let out = fetch(dir.path(), &fake).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with(&format!("Fetched {} messages from 2 channel(s)", 230 + 7 + 3)), "{summary}");
    assert!(summary.contains(&format!("kept {}, filtered 4 (bots, system messages, bare links), refused 1", expected.len())), "{summary}");

    let history = kept(dir.path());
    assert_eq!(ids(&history), expected.iter().copied().collect(), "exactly the allowlisted channel and its thread, less the filtered");
    for gone in [bot_line, join, pin, link, private].iter().chain(&elsewhere) {
        assert!(!history.iter().any(|m| m.id == *gone), "{gone} must not be kept");
    }
    let bruh = history.iter().find(|m| m.id == loved).unwrap();
    assert_eq!(bruh.content, "BRUH that's wild");
    assert_eq!(bruh.reactions, [("lul".to_string(), 2), ("😂".to_string(), 5)].into(), "counts per emoji, custom ones by name");
    assert_eq!(bruh.author, "bob");
    let in_thread = history.iter().filter(|m| matches!(m.channel, ChannelKey::Thread { parent: Some(CH1), .. })).count();
    assert_eq!(in_thread, 3, "the thread's messages are kept as the thread's, under its parent");

    // New messages, then a second run: only those are fetched, from where the first ended.
    let pages_before = fake.pages_served();
    let new = chatter(&fake, CH1, 3, "later");
    let out = fetch(dir.path(), &fake).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Fetched 3 messages"), "{}", text(&out));
    assert_eq!(fake.pages_served() - pages_before, 2, "one page per channel, each from its cursor");
    let history = kept(dir.path());
    assert_eq!(history.len(), expected.len() + 3);
    assert!(new.iter().all(|id| history.iter().any(|m| m.id == *id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_killed_at_a_random_page_resumes_with_no_duplicate_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let all = chatter(&fake, CH1, 1000, "long");
    govern(dir.path(), &[CH1], &[]);
    fake.slow_pages(150);
    // A page between the second and the ninth of ten, from the clock (printed to rerun it).
    let kill_after = 2 + (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as usize % 8);
    eprintln!("killing the fetch once {kill_after} pages were served");
    let mut first = fetch(dir.path(), &fake).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    while fake.pages_served() < kill_after {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigkill(&mut first);
    let partial = kept(dir.path()).len();
    assert!(partial <= kill_after * 100, "{partial} kept after {kill_after} pages");
    assert_eq!(partial % 100, 0, "pages are kept whole or not at all");

    fake.slow_pages(0);
    let before = fake.pages_served();
    let out = fetch(dir.path(), &fake).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let resumed_pages = fake.pages_served() - before;
    assert!(resumed_pages <= 10 - partial / 100 + 1, "resumed from the cursor: {resumed_pages} pages after {partial} kept");
    let history = kept(dir.path());
    assert_eq!(history.len(), 1000, "no duplicate");
    assert_eq!(ids(&history), all.iter().copied().collect(), "no gap");
    let store = FjallStore::open(&dir.path().join("store")).unwrap();
    assert_eq!(store.history_cursor(&ChannelKey::guild(GUILD, CH1)).unwrap(), all.last().copied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_a_forbidden_or_unknown_channel_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let wanted = chatter(&fake, CH1, 150, "open");
    chatter(&fake, CH2, 10, "closed");
    fake.forbid(CH2);
    fake.rate_limit_listings(2, 0.4);
    let unknown = 400_000_000_000_000_999u64;
    govern(dir.path(), &[CH1, CH2, unknown], &[]);

    let out = fetch(dir.path(), &fake).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Rate limited 2 time(s), waited 0.8 s."), "{shown}");
    assert!(shown.contains(&format!("Skipped <#{CH2}>: no access (403)")), "{shown}");
    assert!(shown.contains(&format!("Skipped <#{unknown}>: no such channel (404)")), "{shown}");
    assert_eq!(ids(&kept(dir.path())), wanted.iter().copied().collect(), "the open channel, whole, despite the 429s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_without_a_token_or_with_a_refused_one_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let out = fetch(dir.path(), &fake).env_remove("DISCORD_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).trim().starts_with("sidekick: no DISCORD_TOKEN"), "{}", text(&out));
    fake.refuse_token();
    let out = fetch(dir.path(), &fake).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("Discord refused the token (401)"), "{err}");
}
