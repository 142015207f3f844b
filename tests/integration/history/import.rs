//! `sidekick import`: the shared corpus, bad files, and writing through the running daemon.

use super::{corpus_files, fetch, govern, kept, text};
use crate::discord::{admin, alice, ask, mention, owner, reply_to, BOT, CH1, GUILD, WAIT};
use crate::fake_discord::{FakeDiscord, FakeUser, Historic};
use crate::support::{exit_code, sidekick_cli, spawn_connected_daemon};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn import(dir: &Path, path: &Path) -> std::process::Output {
    sidekick_cli(dir, &["import", path.to_str().unwrap()])
}

/// Serves an export's messages from the fake Discord, as Discord would list them.
fn serve_export(fake: &FakeDiscord, export: &Value) {
    let channel: u64 = export["channel"]["id"].as_str().unwrap().parse().unwrap();
    for m in export["messages"].as_array().unwrap() {
        let author = &m["author"];
        let user = FakeUser {
            id: author["id"].as_str().unwrap().parse().unwrap(),
            name: author["name"].as_str().unwrap().to_string(),
            bot: author["isBot"].as_bool().unwrap_or(false),
        };
        let at = sidekick_at_ms(m["timestamp"].as_str().unwrap());
        let reply_to = m["reference"]["messageId"].as_str().and_then(|id| id.parse().ok());
        fake.add_history(
            channel,
            Historic {
                id: Some(m["id"].as_str().unwrap().parse().unwrap()),
                at_ms: Some(at),
                reply_to,
                ..Historic::says(&user, m["content"].as_str().unwrap())
            },
        );
    }
}

fn sidekick_at_ms(rfc3339: &str) -> u64 {
    serenity::model::Timestamp::parse(rfc3339).unwrap().timestamp_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_the_corpus_keeps_what_fetching_the_same_messages_keeps() {
    let files = corpus_files();
    let exports: Vec<Value> = files.iter().map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()).collect();
    let guild: u64 = exports[0]["guild"]["id"].as_str().unwrap().parse().unwrap();
    let channels: Vec<u64> = exports.iter().map(|e| e["channel"]["id"].as_str().unwrap().parse().unwrap()).collect();
    let total: usize = exports.iter().map(|e| e["messages"].as_array().unwrap().len()).sum();

    // The same messages, imported into one store and fetched into another.
    let imported = tempfile::tempdir().unwrap();
    govern(imported.path(), &channels, &[]);
    let folder = files[0].parent().unwrap();
    let out = import(imported.path(), folder);
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.starts_with(&format!("Imported {total} messages from {} file(s)", files.len())), "{summary}");

    let fetched = tempfile::tempdir().unwrap();
    govern(fetched.path(), &channels, &[]);
    let fake = FakeDiscord::start(BOT, owner(), guild, &channels).await;
    for export in &exports {
        serve_export(&fake, export);
    }
    let out = fetch(fetched.path(), &fake).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let (a, b) = (kept(imported.path()), kept(fetched.path()));
    let bots = exports.iter().flat_map(|e| e["messages"].as_array().unwrap()).filter(|m| m["author"]["isBot"] == json!(true)).count();
    assert!(bots > 0 && a.len() < total - bots + 1, "the corpus's bot ({bots} messages) is filtered");
    assert!(a.len() > total * 9 / 10, "{} of {total} kept", a.len());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "an import and a fetch of the same message keep the same record");
    }
    assert!(a.iter().any(|m| m.reply_to.is_some()), "reply links survive");

    // Importing again changes nothing.
    let out = import(imported.path(), folder);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(kept(imported.path()), a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exports_get_one_clear_line_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = std::fs::read(&corpus_files()[0]).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.json", corpus[..corpus.len() / 2].to_vec(), "the file ends early (a truncated export?); nothing from it was kept"),
        ("slack.json", br#"[{"type":"message","user":"U1","text":"hi","ts":"1.0"}]"#.to_vec(), "not a DiscordChatExporter JSON export"),
        ("notes.json", b"this is not json".to_vec(), "not a DiscordChatExporter JSON export"),
        (
            "dm.json",
            br#"{"guild":{"id":"0","name":"Direct Messages"},"channel":{"id":"5","type":"DirectTextChat"},"messages":[]}"#.to_vec(),
            "a DM export; DMs are never imported",
        ),
    ];
    for (name, bytes, said) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = import(dir.path(), &file);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        assert!(err.contains(said), "{name}: {err}");
        assert!(kept(dir.path()).is_empty(), "{name}: nothing half-written");
    }
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = import(dir.path(), &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .json files in it"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_running_import_and_live_messages_meet_in_one_history_under_one_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[]).await;
    // Live: alice's message joins the history, and a reaction on it is counted.
    let live = mention(&fake, CH1, &alice(), "the lighthouse keeper waved").await;
    reply_to(&fake, live).await;
    let dave = FakeUser::new(42, "dave");
    fake.react(CH1, live, &dave, "🔥").await;
    let bob = FakeUser::new(700_000_000_000_000_007, "bob");
    let bobs = fake.user_says(CH1, &bob, "bob was here, live", false, None).await;
    // A channel handles its messages in order: once the ping is answered, bob's message is
    // kept, and a reaction (handled by another actor) finds it, as a person's would seconds later.
    assert_eq!(ask(&fake, CH1, &dave, "!ping").await, "Pong!");
    fake.react(CH1, bobs, &dave, "🔥").await;
    // An export with alice and eve, imported while the daemon holds the store.
    let eve = FakeUser::new(800_000_000_000_000_008, "eve");
    let export = json!({
        "guild": { "id": GUILD.to_string(), "name": "Fake Guild" },
        "channel": { "id": CH1.to_string(), "type": "GuildTextChat", "name": "general" },
        "messages": [
            { "id": "1000", "type": "Default", "timestamp": "2024-01-01T10:00:00+00:00", "content": "alice from the export",
              "author": { "id": alice().id.to_string(), "name": "alice", "isBot": false }, "reactions": [] },
            { "id": "1001", "type": "Default", "timestamp": "2024-01-01T10:01:00+00:00", "content": "eve from the export",
              "author": { "id": eve.id.to_string(), "name": "eve", "isBot": false },
              "reactions": [{ "emoji": { "id": null, "name": "👍" }, "count": 3 }] },
        ],
    });
    let file = dir.path().join("export.json");
    std::fs::write(&file, export.to_string()).unwrap();
    let out = import(dir.path(), &file);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept 2"), "{}", text(&out));
    // alice opts out: what she wrote leaves the history, and a second import keeps her out.
    let forgotten = ask(&fake, CH1, &alice(), "!forgetme").await;
    assert!(forgotten.starts_with("Done: I deleted"), "{forgotten}");
    fake.react(CH1, bobs, &alice(), "💯").await;
    // An admin's `!fetch` runs `sidekick fetch` beside the daemon, which posts its counts.
    let frank = FakeUser::new(800_000_000_000_000_009, "frank");
    fake.add_history(CH1, Historic::says(&frank, "said before the bot arrived"));
    let before = fake.sent().len();
    let started = ask(&fake, CH1, &admin(), "!fetch").await;
    assert!(started.starts_with("Reading the allowlisted channels' history in the background"), "{started}");
    let sent = fake.wait_sent(before + 2, WAIT).await;
    let counts = sent.last().map(|m| m.content().to_string()).unwrap_or_default();
    assert!(counts.starts_with("Fetched ") && counts.contains("from 1 channel(s)"), "{counts}");
    let out = import(dir.path(), &file);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept 1, filtered 0 (bots, system messages, bare links), refused 1"),
        "{}",
        text(&out)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert_eq!(exit_code(&mut daemon, Duration::from_secs(60)).await, Some(0));

    let history = kept(dir.path());
    assert!(!history.iter().any(|m| m.author_id == alice().id), "alice is gone from the history, live, imported and fetched: {history:?}");
    assert!(!history.iter().any(|m| m.author_id == BOT), "the bot's own replies are not the server's voice");
    let by = |name: &str| history.iter().find(|m| m.author == name).unwrap_or_else(|| panic!("{name} kept: {history:?}"));
    assert_eq!(by("eve").reactions.get("👍"), Some(&3));
    assert_eq!(by("bob").content, "bob was here, live");
    assert_eq!(by("bob").reactions, [("🔥".to_string(), 1)].into(), "dave's reaction counts; alice's, after she opted out, does not");
    assert_eq!(by("frank").content, "said before the bot arrived", "fetched by !fetch");
}
