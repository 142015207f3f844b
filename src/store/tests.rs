//! The fjall store on temp folders.

use super::*;
use sidekick_actors::prompt::Role;

fn key(id: u64) -> ChannelKey {
    ChannelKey::guild(1, id)
}

fn message(text: &str) -> StoredMessage {
    StoredMessage { role: Role::User, author: "ann".into(), content: text.into(), at_ms: 1, message_id: None, guild: None, user_id: None }
}

#[test]
fn history_survives_reopening_and_clear_starts_a_new_conversation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        for i in 0..5 {
            store.append_message(&key(1), &message(&format!("m{i}"))).unwrap();
        }
        store.append_message(&key(2), &message("other")).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let texts = |v: Vec<StoredMessage>| v.into_iter().map(|m| m.content).collect::<Vec<_>>();
    assert_eq!(texts(store.recent_history(&key(1), 3).unwrap()), ["m2", "m3", "m4"]);
    assert_eq!(store.append_message(&key(1), &message("m5")).unwrap(), 5);
    store.clear_history(&key(1)).unwrap();
    assert!(store.recent_history(&key(1), 10).unwrap().is_empty());
    store.append_message(&key(1), &message("after")).unwrap();
    assert_eq!(texts(store.recent_history(&key(1), 10).unwrap()), ["after"]);
    assert_eq!(texts(store.recent_history(&key(2), 10).unwrap()), ["other"]);
    assert_eq!(store.message_count(&key(1)), 7, "clearing keeps the log");
}

#[test]
fn settings_and_stats_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.channel_settings(&key(3)).unwrap(), ChannelSettings::default());
    let mut s = ChannelSettings { system_prompt: Some("be brief".into()), ..Default::default() };
    s.params.temperature = Some(0.9);
    store.save_channel_settings(&key(3), &s).unwrap();
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.channel_settings(&key(3)).unwrap(), s);
    let event = |rating| FeedbackEvent {
        channel: key(3),
        reply_seq: Some(3),
        reply_message_id: None,
        source: sidekick_actors::ports::FeedbackSource::Command,
        rating: Some(rating),
        emoji: None,
        comment: String::new(),
        user: "ann".into(),
        user_id: None,
        at_ms: 5,
        reply_id: Some(7),
        reward: 0.5,
    };
    store.append_feedback(&event(4)).unwrap();
    let mut global = store.global_settings().unwrap();
    global.reply_rate = 0.5;
    global.allowlist.insert("42".into());
    store.save_global_settings(&global).unwrap();
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.append_feedback(&event(2)).unwrap(), 1, "the journal continues after a restart");
    let ratings: Vec<_> = store.feedback_events().unwrap().iter().map(|e| e.rating).collect();
    assert_eq!(ratings, [Some(4), Some(2)]);
    assert_eq!(store.global_settings().unwrap(), global);
    store.add_stat("replies", 2).unwrap();
    store.add_stat("replies", 3).unwrap();
    assert_eq!(store.stat("replies").unwrap(), 5);
    assert_eq!(store.feedback_since(1).unwrap().len(), 1);
}

#[test]
fn replies_are_journaled_and_found_by_their_discord_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let reply = ReplyRecord {
        channel: key(3),
        reply_seq: 1,
        prompt: "p".into(),
        prompt_tokens: vec![1, 2],
        reply_tokens: vec![3],
        text: "hi".into(),
        adapter: None,
        at_ms: 9,
        speakers: Vec::new(),
        sources: Vec::new(),
        replaces: None,
    };
    let id = store.append_reply(&reply).unwrap();
    store.link_reply(id, &["111".into(), "112".into()]).unwrap();
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.reply(id).unwrap(), Some(reply.clone()));
    assert_eq!(store.reply_for_message("112").unwrap(), Some(id));
    assert_eq!(store.reply_for_message("999").unwrap(), None);
    assert_eq!(store.append_reply(&reply).unwrap(), id + 1, "ids continue after a restart");
    let newer = store.append_reply(&ReplyRecord { at_ms: 20, ..reply.clone() }).unwrap();
    assert_eq!(store.prune_replies(10).unwrap(), 2, "the two replies at 9 ms go");
    assert_eq!(store.reply(id).unwrap(), None);
    assert_eq!(store.reply_for_message("112").unwrap(), None);
    assert!(store.reply(newer).unwrap().is_some());
}

#[test]
fn purging_a_channel_takes_its_replies_links_and_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let reply = |channel: ChannelKey| ReplyRecord {
        channel,
        reply_seq: 0,
        prompt: "p".into(),
        prompt_tokens: vec![1],
        reply_tokens: vec![2],
        text: "t".into(),
        adapter: None,
        at_ms: 0,
        speakers: Vec::new(),
        sources: Vec::new(),
        replaces: None,
    };
    let (gone, kept) = (store.append_reply(&reply(key(4))).unwrap(), store.append_reply(&reply(key(5))).unwrap());
    store.link_reply(gone, &["1".into()]).unwrap();
    store.link_reply(kept, &["2".into()]).unwrap();
    for (channel, id) in [(key(4), gone), (key(5), kept)] {
        let event = FeedbackEvent {
            channel,
            reply_seq: None,
            reply_id: Some(id),
            reply_message_id: None,
            source: sidekick_actors::ports::FeedbackSource::Command,
            rating: Some(5),
            emoji: None,
            comment: String::new(),
            user: "u".into(),
            user_id: None,
            at_ms: 0,
            reward: 1.0,
        };
        store.append_feedback(&event).unwrap();
    }
    store.append_message(&key(4), &message("hi")).unwrap();
    assert_eq!(store.purge_channel(&key(4)).unwrap(), 1);
    assert_eq!(store.reply(gone).unwrap(), None);
    assert_eq!(store.reply_for_message("1").unwrap(), None);
    assert_eq!(store.reply_for_message("2").unwrap(), Some(kept));
    let left: Vec<_> = store.feedback_events().unwrap().into_iter().map(|e| e.channel).collect();
    assert_eq!(left, [key(5)]);
}

/// The records as the code before typed channel keys wrote them: the channel as a plain
/// string in keys and JSON, written straight into fjall.
#[test]
fn a_store_written_with_string_keys_reads_the_same_through_channel_keys() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
        let (settings, messages, replies, feedback) = (ks("settings"), ks("messages"), ks("replies"), ks("feedback"));
        settings.insert("discord:42", br#"{"system_prompt":"be brief","params":{"temperature":0.3}}"#).unwrap();
        for (seq, text) in [(0u64, "first"), (1, "second")] {
            let mut key = b"discord:42\0".to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            let json = format!(r#"{{"role":"user","author":"ann","content":"{text}","at_ms":{seq},"guild":"7"}}"#);
            messages.insert(key, json).unwrap();
        }
        let reply = r#"{"channel":"discord-dm:9","reply_seq":3,"prompt":"p","prompt_tokens":[1],"reply_tokens":[2],"text":"hi","adapter":null,"at_ms":5}"#;
        replies.insert(0u64.to_be_bytes(), reply).unwrap();
        let event = r#"{"channel":"console","reply_seq":1,"reply_message_id":null,"source":"command","rating":4,"emoji":null,"comment":"","user":"you","at_ms":6}"#;
        feedback.insert(0u64.to_be_bytes(), event).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let channel = ChannelKey::guild(7, 42);
    let settings = store.channel_settings(&channel).unwrap();
    assert_eq!((settings.system_prompt.as_deref(), settings.params.temperature), (Some("be brief"), Some(0.3)));
    let history: Vec<String> = store.recent_history(&channel, 10).unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(history, ["first", "second"]);
    assert_eq!(store.append_message(&channel, &message("third")).unwrap(), 2, "the log goes on where it was");
    assert_eq!(store.reply(0).unwrap().unwrap().channel, ChannelKey::Dm { user: None, channel: 9 });
    assert_eq!(store.feedback_events().unwrap()[0].channel, ChannelKey::Console);
    let rebuilt: Vec<ChannelKey> = store.user_messages().map(|(c, _)| c).collect();
    assert_eq!(rebuilt, [channel; 3]);
}

#[test]
fn forgetting_a_user_takes_their_messages_the_replies_quoting_them_and_their_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let said = |user: &str, text: &str| StoredMessage { user_id: Some(user.into()), ..message(text) };
    store.append_message(&key(1), &said("5", "my cat is called Biscuit")).unwrap();
    store.append_message(&key(1), &said("6", "nice cat")).unwrap();
    store.append_message(&key(2), &said("5", "Biscuit likes tuna")).unwrap();
    let reply = |speakers: Vec<String>, prompt: &str| ReplyRecord {
        channel: key(1),
        reply_seq: 0,
        prompt: prompt.into(),
        prompt_tokens: vec![1],
        reply_tokens: vec![2],
        text: "t".into(),
        adapter: None,
        at_ms: 0,
        speakers,
        sources: Vec::new(),
        replaces: None,
    };
    let quoting = store.append_reply(&reply(vec!["5".into(), "6".into()], "…")).unwrap();
    let other = store.append_reply(&reply(vec!["6".into()], "…")).unwrap();
    let legacy = store.append_reply(&reply(Vec::new(), "ann: my cat is called Biscuit")).unwrap();
    store.link_reply(quoting, &["m1".into()]).unwrap();
    let rating = |user: &str| FeedbackEvent {
        channel: key(1),
        reply_seq: None,
        reply_id: Some(other),
        reply_message_id: None,
        source: sidekick_actors::ports::FeedbackSource::Command,
        rating: Some(5),
        emoji: None,
        comment: String::new(),
        user: "someone".into(),
        user_id: Some(user.into()),
        at_ms: 0,
        reward: 1.0,
    };
    store.append_feedback(&rating("5")).unwrap();
    store.append_feedback(&rating("6")).unwrap();
    assert_eq!(store.user_message_count("5").unwrap(), 2);

    let forgotten = store.forget_user("5").unwrap();
    assert_eq!((forgotten.messages, forgotten.replies.clone(), forgotten.feedback), (2, vec![quoting, legacy], 1));
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    let left: Vec<String> = [key(1), key(2)].iter().flat_map(|k| store.recent_history(k, 10).unwrap()).map(|m| m.content).collect();
    assert_eq!(left, ["nice cat"]);
    assert!(store.reply(quoting).unwrap().is_none() && store.reply(legacy).unwrap().is_none() && store.reply(other).unwrap().is_some());
    assert_eq!(store.reply_for_message("m1").unwrap(), None);
    assert_eq!(store.feedback_events().unwrap().iter().map(|e| e.user_id.clone().unwrap()).collect::<Vec<_>>(), ["6"]);
    let summaries = store.channel_summaries().unwrap();
    assert_eq!(summaries.iter().map(|s| (s.channel, s.messages)).collect::<Vec<_>>(), [(key(1), 1)]);
    assert_eq!(store.user_message_count("5").unwrap(), 0);
}

fn kept(id: u64, channel: ChannelKey, author: u64) -> sidekick_actors::history::HistoryMessage {
    sidekick_actors::history::HistoryMessage {
        id,
        channel,
        guild: channel.guild_id(),
        author_id: author,
        author: format!("user{author}"),
        content: format!("message {id}"),
        at_ms: id,
        reply_to: None,
        reactions: Default::default(),
    }
}

#[test]
fn the_history_is_one_record_per_message_and_purges_and_forgetme_take_it() {
    use sidekick_actors::ports::HistoryLog;
    let dir = tempfile::tempdir().unwrap();
    let thread = ChannelKey::Thread { guild: Some(1), parent: Some(1), thread: 9 };
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.keep_history(&[kept(10, key(1), 7), kept(11, key(1), 8)], Some((key(1), 11))).unwrap();
        store.keep_history(&[kept(20, thread, 7), kept(30, key(2), 7)], None).unwrap();
        store.react(&key(1), 11, "🔥", true).unwrap();
        store.react(&key(1), 11, "🔥", true).unwrap();
        store.react(&key(1), 11, "🔥", false).unwrap();
        store.react(&key(1), 99, "🔥", true).unwrap();
        // The same message again (a fetch after an import) is the same record, reactions kept.
        store.keep_history(&[kept(11, key(1), 8)], Some((key(1), 11))).unwrap();
        store.flush().unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.history_len(), 4);
    assert_eq!(store.history_cursor(&key(1)).unwrap(), Some(11));
    let all: Vec<_> = store.history_messages().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.iter().find(|m| m.id == 11).unwrap().reactions, [("🔥".to_string(), 1)].into());
    let t = all.iter().find(|m| m.id == 20).unwrap();
    assert!(matches!(t.channel, ChannelKey::Thread { parent: Some(1), .. }), "a thread is read back as one: {:?}", t.channel);
    assert_eq!(store.history_count(1, Some("7")).unwrap(), (4, 3));

    // Purging channel 1 takes its history, its cursor and its thread's history.
    store.purge_channel(&key(1)).unwrap();
    store.purge_channel(&store.threads_of(&key(1)).unwrap()[0]).unwrap();
    let left: Vec<u64> = store.history_messages().map(|m| m.unwrap().id).collect();
    assert_eq!(left, [30]);
    assert_eq!(store.history_cursor(&key(1)).unwrap(), None);
    // `!forgetme` takes the rest of user 7's.
    assert_eq!(store.forget_user("7").unwrap().messages, 1);
    assert_eq!(store.history_len(), 0);
}
