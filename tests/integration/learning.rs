//! Learning from feedback: the reply journal, rewards from commands and reactions over the
//! fake Discord, durability under SIGKILL, and an adapter trained from scripted feedback that
//! the running model hot-loads, measured through llama.cpp.

use crate::discord::{alice, ask, bot_config, mention, owner, reply_to, start, BOT, CH1, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use crate::support::{model_path, say, sigkill, spawn_connected_daemon, test_config};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use sidekick::daemon::{engine_config, Daemon};
use sidekick::store::FjallStore;
use sidekick_actors::clock::SystemClock;
use sidekick_actors::ports::{FeedbackEvent, FeedbackSource, GenEvent, GenerationJob, LanguageModel, ModelError, ReplyJournal};
use sidekick_actors::prompt::{ChatTurn, Role};
use sidekick_actors::reward::RewardRules;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `check` until it gives a value or `WAIT` passes.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events(store: &FjallStore) -> Vec<FeedbackEvent> {
    store.feedback_events().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_by_command_reaction_and_removal_is_journaled_with_its_reward() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let config = bot_config(dir.path(), &fake);
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    let store = bot.daemon.store.clone();

    // Every reply is journaled with the exact prompt and the sampled tokens.
    let asked = mention(&fake, CH1, &alice(), "tell me about rivers").await;
    let answer = reply_to(&fake, asked).await;
    let reply_id =
        eventually("the reply's Discord id to be linked", || store.reply_for_message(&answer.message_id.to_string()).unwrap()).await;
    let record = store.reply(reply_id).unwrap().expect("journaled");
    assert_eq!(record.channel, sidekick_actors::ChannelKey::guild(GUILD, CH1));
    assert_eq!(record.text, answer.content());
    assert!(record.prompt.contains("tell me about rivers") && record.prompt.contains("<|im_start|>assistant"), "{}", record.prompt);
    assert!(record.prompt_tokens.len() > 10 && !record.reply_tokens.is_empty(), "{record:?}");
    assert_eq!(record.adapter, None);

    // A rating with a comment, given as a Discord reply to the bot's message.
    let comment = "great answer, thanks!";
    let expected = RewardRules::default().command(5, comment);
    let id = fake.user_says(CH1, &alice(), &format!("!feedback 5 {comment}"), false, Some(answer.message_id)).await;
    assert_eq!(reply_to(&fake, id).await.content(), format!("Thanks! Feedback recorded (5/5, reward {expected:+.2})."));
    assert!(expected > 0.7 && expected < 1.0, "the glad comment and the top rating: {expected}");

    // Feedback as a reply to someone else's message rates nothing.
    let id = fake.user_says(CH1, &alice(), "!feedback 4", false, Some(asked)).await;
    assert!(reply_to(&fake, id).await.content().starts_with("That isn't one of my replies."));

    // Reactions: a listed emoji on our reply counts; others, and reactions elsewhere, do not.
    fake.react(CH1, answer.message_id, &alice(), "👍").await;
    eventually("the reaction to be journaled", || (events(store.as_ref()).len() == 2).then_some(())).await;
    fake.react(CH1, answer.message_id, &owner(), "🦀").await;
    fake.react(CH1, asked, &owner(), "👍").await;
    fake.unreact(CH1, answer.message_id, &alice(), "👍").await;
    eventually("the removal to be journaled", || (events(store.as_ref()).len() == 3).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let journal = events(store.as_ref());
    assert_eq!(journal.len(), 3, "{journal:?}");
    let (rated, added, removed) = (&journal[0], &journal[1], &journal[2]);
    assert_eq!((rated.source, rated.rating, rated.reply_id, rated.reward), (FeedbackSource::Command, Some(5), Some(reply_id), expected));
    assert_eq!(rated.comment, comment);
    assert_eq!(
        (added.source, added.emoji.as_deref(), added.reply_id, added.reward),
        (FeedbackSource::Reaction, Some("👍"), Some(reply_id), 0.5)
    );
    assert_eq!(added.user, alice().id.to_string());
    assert_eq!((removed.source, removed.reply_id, removed.reward), (FeedbackSource::ReactionRemoved, Some(reply_id), -0.5));

    // The owner's summary: the removed reaction no longer weighs on the mean.
    let rl = ask(&fake, CH1, &owner(), "!rl_metrics").await;
    assert!(rl.contains("feedback: 1 commands, 1 reactions, 1 removed"), "{rl}");
    assert!(rl.contains(&format!("mean reward {expected:+.2} (last 100), {expected:+.2} (all)")), "{rl}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_acknowledged_before_a_sigkill_is_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[]).await;
    let asked = mention(&fake, CH1, &alice(), "say something").await;
    let answer = reply_to(&fake, asked).await;
    // Killed the moment the thanks reaches Discord.
    let id = fake.user_says(CH1, &alice(), "!feedback 2 meh", false, None).await;
    assert!(reply_to(&fake, id).await.content().starts_with("Thanks! Feedback recorded (2/5"));
    sigkill(&mut daemon);

    // Reactions are acknowledged by nothing but `!rl_metrics`; killed as soon as it counts one.
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[]).await;
    fake.react(CH1, answer.message_id, &alice(), "❤️").await;
    let deadline = Instant::now() + WAIT;
    while !ask(&fake, CH1, &owner(), "!rl_metrics").await.contains("1 reactions") {
        assert!(Instant::now() < deadline, "the reaction was never counted");
    }
    sigkill(&mut daemon);

    let store = FjallStore::open(&dir.path().join("store")).expect("the store opens after SIGKILL");
    let journal = events(&store);
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(
        (journal[0].source, journal[0].rating, journal[0].reward),
        (FeedbackSource::Command, Some(2), RewardRules::default().command(2, "meh"))
    );
    assert!(journal[0].reply_id.is_some(), "the rating found the reply it rates");
    assert_eq!((journal[1].source, journal[1].emoji.as_deref(), journal[1].reward), (FeedbackSource::Reaction, Some("❤️"), 0.5));
    assert_eq!(journal[1].reply_id, journal[0].reply_id);
}

/// log p(reply | prompt) under llama.cpp, with `adapter` applied when given: measured outside
/// the daemon and its trainer.
fn llama_logprob(adapter: Option<&Path>, prompt: &[u32], reply: &[u32]) -> f64 {
    let backend = sidekick::llama::backend().unwrap();
    let mut model = LlamaModel::load_from_file(backend, model_path(), &LlamaModelParams::default()).unwrap();
    let mut lora = adapter.map(|p| model.lora_adapter_init(p).expect("llama.cpp loads the adapter"));
    let n = prompt.len() + reply.len();
    let params = LlamaContextParams::default().with_n_ctx(NonZeroU32::new(2048)).with_n_batch(n as u32).with_n_ubatch(n as u32);
    let mut ctx = model.new_context(backend, params).unwrap();
    if let Some(lora) = lora.as_mut() {
        ctx.lora_adapter_set(lora, 1.0).unwrap();
    }
    let mut batch = LlamaBatch::new(n, 1);
    for (i, t) in prompt.iter().chain(reply).enumerate() {
        batch.add(LlamaToken(*t as i32), i as i32, &[0], i + 1 >= prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    reply
        .iter()
        .enumerate()
        .map(|(j, t)| {
            let logits = ctx.get_logits_ith((prompt.len() - 1 + j) as i32);
            let max = logits.iter().copied().fold(f32::MIN, f32::max) as f64;
            let z: f64 = logits.iter().map(|l| (*l as f64 - max).exp()).sum();
            logits[*t as usize] as f64 - max - z.ln()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_feedback_trains_an_adapter_the_running_model_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.rl.enabled = true;
    config.rl.save_every_steps = 6;
    config.rl.learning_rate = 1e-3;
    config.generation.max_tokens = 12;
    config.generation.temperature = 1.0;
    let daemon = Daemon::start_with(&config, engine_config(&config), Arc::new(SystemClock)).await.unwrap();

    // Two different replies to the same prompt, in two channels.
    let question = "Name one thing you like.";
    let a = say(&daemon, "console-a", question).await;
    let mut b = say(&daemon, "console-b", question).await;
    for _ in 0..8 {
        if b.text != a.text {
            break;
        }
        say(&daemon, "console-b", "!clear").await;
        b = say(&daemon, "console-b", question).await;
    }
    assert_ne!(a.text, b.text, "the model gave the same reply nine times");
    let record_a = daemon.store.reply(a.reply_id.unwrap()).unwrap().unwrap();
    let record_b = daemon.store.reply(b.reply_id.unwrap()).unwrap().unwrap();
    assert_eq!(record_a.prompt_tokens, record_b.prompt_tokens, "both answer the same prompt");

    // Three people reward one and punish the other (one standing vote each per reply): six
    // steps, then the adapter is saved and swapped in.
    for rater in ["301", "302", "303"] {
        for (channel, rating) in [("console-a", "!feedback 5"), ("console-b", "!feedback 1")] {
            let answer = daemon.ask_as(crate::support::ch(channel), rater, Some(rater), rating).await.unwrap();
            assert!(answer.notice.unwrap().starts_with("Thanks!"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let shown = say(&daemon, "console-a", "!adapter").await.notice.unwrap();
        if shown.starts_with("Serving adapter v1") {
            assert!(shown.contains("6 training steps, 6 rewards"), "{shown}");
            break;
        }
        if Instant::now() > deadline {
            panic!("no adapter was served: {shown}; {}", say(&daemon, "console-a", "!rl_metrics").await.notice.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // New replies come from the adapter the running model loaded.
    let served = say(&daemon, "console-c", question).await;
    let record = daemon.store.reply(served.reply_id.unwrap()).unwrap().unwrap();
    assert_eq!(record.adapter.as_deref(), Some("adapter-v1.gguf"));
    let rl = say(&daemon, "console-a", "!rl_metrics").await.notice.unwrap();
    assert!(rl.contains("6 training steps") && rl.contains("adapter v1 (step 6)"), "{rl}");

    // Measured through llama.cpp with the file the daemon serves, against the base model.
    let adapter = dir.path().join("adapters/adapter-v1.gguf");
    let (prompt, reply_a, reply_b) = (&record_a.prompt_tokens, &record_a.reply_tokens, &record_b.reply_tokens);
    let base = (llama_logprob(None, prompt, reply_a), llama_logprob(None, prompt, reply_b));
    let tuned = (llama_logprob(Some(&adapter), prompt, reply_a), llama_logprob(Some(&adapter), prompt, reply_b));
    eprintln!("log p(rewarded): base {:.3} → adapter {:.3}; log p(punished): base {:.3} → adapter {:.3}", base.0, tuned.0, base.1, tuned.1);
    assert!(tuned.0 > base.0, "the rewarded reply became more likely: {base:?} → {tuned:?}");
    assert!(tuned.1 < base.1, "the punished reply became less likely: {base:?} → {tuned:?}");

    // Rollback serves the base model again; `on` brings the adapter back.
    assert_eq!(say(&daemon, "console-a", "!adapter rollback").await.notice.unwrap(), "Rolled back from adapter v1 to the base model.");
    let plain = say(&daemon, "console-d", question).await;
    assert_eq!(daemon.store.reply(plain.reply_id.unwrap()).unwrap().unwrap().adapter, None);
    assert_eq!(say(&daemon, "console-a", "!adapter on").await.notice.unwrap(), "Serving adapter v1.");
    assert!(say(&daemon, "console-a", "!adapter off").await.notice.unwrap().starts_with("Adapter v1 off: serving the base model."));
    assert_eq!(say(&daemon, "console-a", "!adapter on").await.notice.unwrap(), "Serving adapter v1.");
    assert_eq!(
        say(&daemon, "console-a", "!adapter rollback").await.notice.unwrap(),
        "Rolled back from adapter v1 to the base model.",
        "off and on leave nothing to roll back to but the base"
    );
    assert_eq!(say(&daemon, "console-a", "!adapter on").await.notice.unwrap(), "Serving adapter v1.");
    daemon.shutdown().await.unwrap();

    // The manifest names the base model and the served version for the next start.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("adapters/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["active"], 1);
    assert_eq!(manifest["previous"], serde_json::json!([]));
    assert_eq!(manifest["base_model_sha256"].as_str().unwrap(), sidekick::learning::sha256_file(&model_path()).unwrap());

    // The next start serves it from the first reply.
    let daemon = Daemon::start_with(&config, engine_config(&config), Arc::new(SystemClock)).await.unwrap();
    let again = say(&daemon, "console-e", question).await;
    assert_eq!(daemon.store.reply(again.reply_id.unwrap()).unwrap().unwrap().adapter.as_deref(), Some("adapter-v1.gguf"));
    assert!(say(&daemon, "console-e", "!adapter").await.notice.unwrap().starts_with("Serving adapter v1"));
    daemon.shutdown().await.unwrap();
}

/// One short reply from `engine`; returns the adapter it reported and whether it finished.
async fn one_reply(engine: &dyn LanguageModel) -> (Option<String>, bool) {
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let params = sidekick_actors::params::GenerationParams { max_tokens: 4, ..Default::default() };
    let turns = vec![ChatTurn::new(Role::User, "Say hi.")];
    engine.submit(GenerationJob { slot: "t".into(), turns, params, seed: 1, events, cancel: Default::default() }).unwrap();
    let (mut adapter, mut finished) = (None, false);
    while let Some(event) = rx.recv().await {
        match event {
            GenEvent::Started { adapter: a, .. } => adapter = a,
            GenEvent::Finished { .. } => finished = true,
            _ => {}
        }
    }
    (adapter, finished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_adapter_swaps_reload_the_model_and_it_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    // Fresh adapters (B = 0) serve exactly the base model; ten distinct files pass the point
    // where the engine reloads the model to free loaded adapters.
    let base = Arc::new(sidekick_trainer::BaseModel::load(model_path()).unwrap());
    let files: Vec<_> = (0..10u64)
        .map(|i| {
            let path = dir.path().join(format!("adapter-{i}.gguf"));
            sidekick_trainer::Trainer::new(base.clone(), Default::default(), i).unwrap().write_adapter(&path).unwrap();
            path
        })
        .collect();
    drop(base);
    let mut config = engine_config(&test_config(dir.path()));
    config.parallel = 2;
    let engine = sidekick::llama::LlamaEngine::start(config, Default::default()).unwrap();
    for file in &files {
        let (done, swapped) = tokio::sync::oneshot::channel();
        engine.set_adapter(Some(file.clone()), done);
        swapped.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (served, finished) = one_reply(&engine).await;
        assert!(finished, "a reply after swapping to {}", file.display());
        assert_eq!(served.as_deref(), file.file_name().and_then(|n| n.to_str()));
    }
    // A file that is not an adapter is refused, and the last good one is still served.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf").unwrap();
    let (done, swapped) = tokio::sync::oneshot::channel();
    engine.set_adapter(Some(junk), done);
    assert!(matches!(swapped.await.unwrap(), Err(ModelError::Adapter(_))));
    assert_eq!(one_reply(&engine).await, (Some("adapter-9.gguf".into()), true));
    engine.shutdown(Duration::ZERO);
}
