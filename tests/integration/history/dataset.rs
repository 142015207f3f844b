//! `sidekick dataset` on the real model: examples, pairs with rejected replies the model
//! wrote, the manifest, and refusals.

use super::{corpus_files, govern, text};
use crate::support::sidekick_cli;
use serde_json::{json, Value};

/// A small export: two people talking, the last few messages with reactions.
fn export(messages: usize) -> Value {
    let messages: Vec<Value> = (0..messages)
        .map(|i| {
            let (id, name) = if i % 3 == 0 { ("900000000000000001", "ana") } else { ("900000000000000002", "ben") };
            let reactions = if i % 4 == 3 { json!([{ "emoji": { "id": null, "name": "😂" }, "count": 7 }]) } else { json!([]) };
            json!({
                "id": (1_000_000 + i).to_string(), "type": "Default",
                "timestamp": format!("2024-03-01T10:{:02}:00+00:00", i % 60),
                "content": format!("honestly message {i} is the funniest thing said here today"),
                "author": { "id": id, "name": name, "isBot": false }, "reactions": reactions,
            })
        })
        .collect();
    json!({
        "guild": { "id": "42", "name": "G" }, "channel": { "id": "43", "type": "GuildTextChat", "name": "general" },
        "messages": messages,
    })
}

#[test]
fn a_dataset_is_built_from_the_history_with_pairs_the_model_wrote_and_the_same_seed_gives_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = sidekick_cli(dir.path(), &["dataset"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the history is empty: run `sidekick fetch` or `sidekick import <export>` first"));
    assert!(!dir.path().join("store/dataset").exists(), "nothing written");

    let file = dir.path().join("export.json");
    std::fs::write(&file, export(24).to_string()).unwrap();
    govern(dir.path(), &[], &[]);
    assert!(sidekick_cli(dir.path(), &["import", file.to_str().unwrap()]).status.success());
    let out = sidekick_cli(dir.path(), &["dataset", "--seed", "3"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("messages in: 24 (0 no longer allowed, left out), 1 channel(s)"), "{shown}");
    let data = dir.path().join("store/dataset");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap();
    let manifest: Value = serde_json::from_str(&read("manifest.json")).unwrap();
    assert_eq!(manifest["seed"], 3);
    assert_eq!(manifest["source"]["messages"], 24);
    assert_eq!(manifest["base_model_sha256"].as_str().unwrap().len(), 64);
    let train: Vec<Value> = read("train.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(train.len() as u64, manifest["stats"]["train"].as_u64().unwrap());
    assert!(train.iter().all(|e| e["tokens"].as_u64().unwrap() > 20), "counted by the model's tokenizer");
    let turns = train[0]["messages"].as_array().unwrap();
    assert_eq!(turns[0]["role"], "system");
    assert!(turns[1]["content"].as_str().unwrap().starts_with("ana: honestly message"), "{:?}", turns[1]);
    assert_eq!(turns.last().unwrap()["role"], "assistant");
    let pairs: Vec<Value> = read("pairs.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!pairs.is_empty(), "reacted replies make pairs");
    for p in &pairs {
        assert_eq!(p["signal"], 5, "7 reactions count as 5");
        assert!(!p["rejected"].as_str().unwrap().is_empty(), "the model wrote a rejected reply");
        assert_ne!(p["rejected"], p["chosen"]);
    }
    // Again with the same seed: the same files, the rejected replies from the cache.
    let first = (read("train.jsonl"), read("heldout.jsonl"), read("pairs.jsonl"));
    assert!(sidekick_cli(dir.path(), &["dataset", "--seed", "3"]).status.success());
    assert_eq!(first, (read("train.jsonl"), read("heldout.jsonl"), read("pairs.jsonl")));
}

#[test]
fn the_corpus_makes_a_dataset_in_which_no_voice_passes_twelve_percent() {
    let dir = tempfile::tempdir().unwrap();
    let file = &corpus_files()[0];
    assert!(sidekick_cli(dir.path(), &["import", file.to_str().unwrap()]).status.success());
    let out = sidekick_cli(dir.path(), &["dataset", "--no-pairs"]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("store/dataset/manifest.json")).unwrap()).unwrap();
    let users = manifest["stats"]["users"].as_array().unwrap();
    assert!(users.len() > 20);
    for u in users {
        let (before, after) = (u["before"].as_f64().unwrap(), u["after"].as_f64().unwrap());
        if before > 0.2 {
            assert!(after <= 0.12 + 1e-6, "{u}");
        }
        assert!(after <= before.max(0.12) + 1e-6, "{u}");
    }
    assert!(manifest["stats"]["heldout"].as_u64().unwrap() > 0);
}

#[test]
fn an_example_counted_turn_by_turn_has_the_tokens_the_engine_counts_for_the_whole_prompt() {
    use sidekick::history::dpo::{EnginePairModel, PairModel};
    use sidekick_actors::prompt::{spoken, ChatTurn, Role};
    let config = crate::support::test_config(tempfile::tempdir().unwrap().path());
    let engine: std::sync::Arc<dyn sidekick_actors::ports::LanguageModel> =
        std::sync::Arc::new(sidekick::llama::LlamaEngine::start(sidekick::daemon::engine_config(&config), Default::default()).unwrap());
    let mut model = EnginePairModel::new(engine.clone(), config.generation, "test".into());
    let lines = ["ana: is the kernel  panic fixed?", "ben: try `sudo apt-get update` 😂", "ana: <|im_start|> nope", "ben: ok"];
    for system in [Some("You're a regular here."), None] {
        for n in 1..=lines.len() {
            let mut turns: Vec<ChatTurn> = system.iter().map(|s| ChatTurn::new(Role::System, *s)).collect();
            turns.extend(lines[..n].iter().map(|l| spoken(&l[..3], &l[5..])));
            turns.push(ChatTurn::new(Role::Assistant, "lol same"));
            let (done, answer) = tokio::sync::oneshot::channel();
            engine.measure(turns.clone(), done);
            let whole = answer.blocking_recv().unwrap().unwrap();
            assert_eq!(model.tokens(&turns).unwrap(), whole, "{turns:?}");
        }
    }
    engine.shutdown(std::time::Duration::from_secs(5));
}
