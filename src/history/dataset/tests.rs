use super::*;
use crate::history::dpo::{PairModel, RejectedCache};
use sidekick_actors::ChannelKey;

/// Tokens are words here; the rejected reply is the same bland line, counted.
#[derive(Default)]
struct Words {
    replies: usize,
}

impl PairModel for Words {
    fn tokens(&mut self, turns: &[ChatTurn]) -> Result<usize, String> {
        Ok(turns.iter().map(|t| t.content.split_whitespace().count() + 2).sum())
    }
    fn reply(&mut self, _: &[ChatTurn], _: u32, _: u32) -> Result<String, String> {
        self.replies += 1;
        Ok("That's quite interesting.".into())
    }
    fn identity(&self) -> String {
        "words".into()
    }
}

fn message(i: u64, channel: u64, author: u64, reactions: u32) -> HistoryMessage {
    HistoryMessage {
        id: 1000 + i,
        channel: ChannelKey::guild(1, channel),
        guild: Some(1),
        author_id: author,
        author: format!("user{author}"),
        content: format!("message number {i} from user{author}"),
        at_ms: i * 60_000,
        reply_to: None,
        reactions: if reactions > 0 { [("😂".to_string(), reactions)].into() } else { Default::default() },
    }
}

/// 200 messages in two channels; user 1 writes 60 % of them; every 7th has reactions.
fn history() -> Vec<HistoryMessage> {
    let mut out: Vec<HistoryMessage> = (0..200)
        .map(|i| message(i, 1 + i % 2, if i % 5 < 3 { 1 } else { 2 + i % 7 }, if i % 7 == 0 { (i % 9) as u32 } else { 0 }))
        .collect();
    out.sort_by_key(|m| (m.channel.to_string(), m.id));
    out
}

fn options() -> DatasetOptions {
    DatasetOptions { seed: 7, rules: WindowRules::default(), system_prompt: "be a regular".into(), pairs: true, rejected_tokens: 16 }
}

fn cache(dir: &tempfile::TempDir) -> RejectedCache {
    RejectedCache::open(&dir.path().join("rejected.jsonl"))
}

#[test]
fn the_same_seed_and_history_give_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let global = GlobalSettings::default();
    let a = build(history(), &global, &options(), &mut Words::default(), &mut cache(&dir)).unwrap();
    let b = build(history(), &global, &options(), &mut Words::default(), &mut cache(&dir)).unwrap();
    assert_eq!((a.train, a.heldout, a.pairs, a.manifest), (b.train.clone(), b.heldout, b.pairs, b.manifest.clone()));
    let other = build(history(), &global, &DatasetOptions { seed: 8, ..options() }, &mut Words::default(), &mut cache(&dir)).unwrap();
    assert_ne!(other.train, b.train, "another seed draws other window lengths");
}

#[test]
fn the_loud_voice_is_clamped_and_held_out_examples_are_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(history(), &GlobalSettings::default(), &options(), &mut Words::default(), &mut cache(&dir)).unwrap();
    let stats = &built.manifest.stats;
    let loud = stats.users.iter().find(|u| u.user == "user1").unwrap();
    assert!((loud.before - 0.6).abs() < 1e-9);
    assert!(loud.after <= 0.12 + 1e-9, "{loud:?}");
    assert_eq!(stats.messages_in, 200);
    assert_eq!(stats.channels, 2);
    // Each channel's newest tenth (10 of its 100 messages) is held out, and nothing older.
    assert_eq!(built.heldout.len(), 20);
    for channel in ["discord:1", "discord:2"] {
        let oldest_heldout = built.heldout.iter().filter(|e| e.channel == channel).map(|e| e.id).min().unwrap();
        let newest_train = built.train.iter().filter(|e| e.channel == channel).map(|e| e.id).max().unwrap();
        assert!(newest_train < oldest_heldout, "training never sees a held-out answer ({channel})");
    }
    for e in built.train.iter().chain(&built.heldout) {
        assert!((6..=11).contains(&e.messages.len()), "system + 5-10 messages: {}", e.messages.len());
        assert_eq!(e.messages[0].content, "be a regular");
        assert!(e.messages[1].content.starts_with("user"), "speakers are named as when serving");
    }
}

#[test]
fn pairs_take_reacted_replies_count_reactions_up_to_five_and_reuse_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Words::default();
    let built = build(history(), &GlobalSettings::default(), &options(), &mut model, &mut cache(&dir)).unwrap();
    assert!(!built.pairs.is_empty());
    for p in &built.pairs {
        assert!((1..=5).contains(&p.signal), "{p:?}");
        assert_eq!(p.rejected, "That's quite interesting.");
        assert!(p.chosen.starts_with("message number"));
    }
    assert!(built.pairs.iter().any(|p| p.signal == 5), "8 reactions count as 5");
    let written = model.replies;
    assert_eq!(written, built.pairs.len());
    let mut again = Words::default();
    let rebuilt = build(history(), &GlobalSettings::default(), &options(), &mut again, &mut cache(&dir)).unwrap();
    assert_eq!(again.replies, 0, "every rejected reply came from the cache");
    assert_eq!(rebuilt.pairs, built.pairs);
}

#[test]
fn someone_who_opted_out_or_a_denied_channel_appears_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut global = GlobalSettings::default();
    global.opted_out.insert("3".into());
    global.allowlist.insert("1".into());
    let built = build(history(), &global, &options(), &mut Words::default(), &mut cache(&dir)).unwrap();
    let all = serde_json::to_string(&(&built.train, &built.heldout, &built.pairs)).unwrap();
    assert!(!all.contains("user3"), "the opted-out user is in no example or pair");
    assert!(built.train.iter().all(|e| e.channel == "discord:1"), "channel 2 is off the allowlist");
    assert_eq!(built.manifest.stats.excluded, 200 - built.manifest.source.messages);
}

#[test]
fn an_empty_or_unusable_history_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let err = build(Vec::new(), &GlobalSettings::default(), &options(), &mut Words::default(), &mut cache(&dir)).err().unwrap();
    assert!(matches!(err, DatasetError::Empty), "{err}");
    let mut global = GlobalSettings::default();
    global.allowlist.insert("99".into());
    let err = build(history(), &global, &options(), &mut Words::default(), &mut cache(&dir)).err().unwrap();
    assert!(matches!(err, DatasetError::NothingAllowed(200)), "{err}");
    let err =
        build(history()[..3].to_vec(), &GlobalSettings::default(), &options(), &mut Words::default(), &mut cache(&dir)).err().unwrap();
    assert!(matches!(err, DatasetError::TooShort(5)), "{err}");
}

#[test]
fn a_written_dataset_replaces_the_old_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dataset");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.jsonl"), "old").unwrap();
    let built = build(history(), &GlobalSettings::default(), &options(), &mut Words::default(), &mut cache(&dir)).unwrap();
    write(&built, &out).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["feedback_pairs.jsonl", "heldout.jsonl", "manifest.json", "pairs.jsonl", "train.jsonl"]);
    let lines = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    let first: Example = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first, built.train[0]);
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, built.manifest);
}
