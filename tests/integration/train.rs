//! `sidekick train` and `sidekick eval` on the real model and a day of the shared corpus, with
//! settings small enough for seconds a run (rank 4, two examples of 48 tokens a step): the
//! gate, a killed run resumed, DPO on reactions seeded into a copy of the corpus, bad input.

use crate::history::{corpus_files, text};
use crate::support::{model_path, sidekick, sigkill};
use serde_json::{json, Value};
use sidekick_actors::ports::ReplyJournal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A day of the shared corpus (the same one again where only the repository's day is there).
fn corpus_day(i: usize) -> PathBuf {
    let files = corpus_files();
    files[i % files.len()].clone()
}

/// `sidekick <args>` with small training settings and `steps` SFT steps.
fn small(dir: &Path, steps: u32, args: &[&str]) -> Command {
    let mut cmd = sidekick(dir);
    cmd.args(args)
        .env("SIDEKICK_RL_ADAPTERS_DIR", dir.join("adapters"))
        .env("SIDEKICK_TRAIN_RANK", "4")
        .env("SIDEKICK_TRAIN_ALPHA", "8")
        .env("SIDEKICK_TRAIN_STEPS", steps.to_string())
        .env("SIDEKICK_TRAIN_WARMUP_STEPS", "1")
        .env("SIDEKICK_TRAIN_BATCH_SIZE", "2")
        .env("SIDEKICK_TRAIN_MAX_TOKENS", "48")
        .env("SIDEKICK_TRAIN_CHECKPOINT_EVERY", "1")
        .env("SIDEKICK_TRAIN_EVAL_EXAMPLES", "12")
        .env("SIDEKICK_DATASET_REJECTED_MAX_TOKENS", "24")
        .env("SIDEKICK_GENERATION_MAX_TOKENS", "16");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("the sidekick binary runs")
}

/// A folder whose history is `export` imported, and its dataset built.
fn prepared(export: &Path, pairs: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(small(dir.path(), 1, &["import", export.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(small(dir.path(), 1, if pairs { &["dataset"] } else { &["dataset", "--no-pairs"] }));
    assert!(out.status.success(), "{}", text(&out));
    dir
}

fn personality(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("adapters/personality.json")).unwrap()).unwrap()
}

fn version(dir: &Path, n: usize) -> Value {
    personality(dir)["versions"][n].clone()
}

#[test]
fn an_adapter_trained_to_be_worse_is_refused_and_the_served_one_stays() {
    let dir = prepared(&corpus_day(0), false);
    let out = run(small(dir.path(), 4, &["train"]));
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("passed the gate"), "{shown}");
    let v1 = version(dir.path(), 0);
    println!("v1: held-out perplexity {} against the base model's {}", v1["heldout_ppl"], v1["compared_ppl"]);
    assert!(v1["heldout_ppl"].as_f64().unwrap() < v1["compared_ppl"].as_f64().unwrap(), "{v1}");
    // A log line per evaluation, with the figures the manifest keeps.
    for (name, ppl) in [("the base model", &v1["compared_ppl"]), ("personality-v1.gguf", &v1["heldout_ppl"])] {
        let line = format!("eval: {name}, held-out perplexity {:.2} (", ppl.as_f64().unwrap());
        assert!(shown.contains(&line), "no {line:?} in {shown}");
    }
    assert_eq!(personality(dir.path())["serving"], "personality-v1.gguf");

    // Gibberish: every training reply replaced by random letters, learned hard.
    let train = dir.path().join("store/dataset/train.jsonl");
    let mut seed = 7u64;
    let garbled: Vec<String> = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .map(|line| {
            let mut example: Value = serde_json::from_str(line).unwrap();
            let gibberish: String = (0..40)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (b'a' + (seed >> 59) as u8 % 26) as char
                })
                .collect();
            *example["messages"].as_array_mut().unwrap().last_mut().unwrap() = json!({ "role": "assistant", "content": gibberish });
            example.to_string()
        })
        .collect();
    std::fs::write(&train, garbled.join("\n") + "\n").unwrap();
    let mut worse = small(dir.path(), 6, &["train"]);
    worse.env("SIDEKICK_TRAIN_LEARNING_RATE", "0.01");
    let out = run(worse);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Not served: its held-out perplexity"), "{shown}");
    let v2 = version(dir.path(), 1);
    println!("v2 (gibberish): held-out perplexity {} against v1's {}; {}", v2["heldout_ppl"], v2["compared_ppl"], v2["refused"]);
    assert_eq!(v2["served"], false);
    assert_eq!(v2["compared_with"], "personality-v1.gguf");
    assert!(v2["heldout_ppl"].as_f64().unwrap() > 1.05 * v1["heldout_ppl"].as_f64().unwrap());
    assert_eq!(personality(dir.path())["serving"], "personality-v1.gguf", "the served one stays");
    assert!(dir.path().join("adapters/personality-v2.gguf").is_file(), "kept, not served");
}

/// The state a running `sidekick train` checkpointed last: SFT steps done.
fn checkpointed(dir: &Path) -> u64 {
    std::fs::read(dir.join("adapters/personality-run/state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|s| s["sft_done"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_run_killed_at_a_random_step_resumes_to_the_adapter_an_uninterrupted_run_makes() {
    let export = &corpus_day(1);
    let straight = prepared(export, false);
    let out = run(small(straight.path(), 6, &["train"]));
    assert!(out.status.success(), "{}", text(&out));
    let expected = version(straight.path(), 0)["heldout_ppl"].as_f64().unwrap();

    let killed = prepared(export, false);
    let at = 1 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 % 5;
    let mut child = small(killed.path(), 6, &["train"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while checkpointed(killed.path()) < at {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before step {at}");
        assert!(Instant::now() < deadline, "no checkpoint at step {at}");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigkill(&mut child);
    let saved = checkpointed(killed.path());
    assert!(!killed.path().join("adapters/personality.json").exists(), "nothing is served by a killed run");

    let out = run(small(killed.path(), 6, &["train"]));
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains(&format!("Resumed a killed run at SFT step {saved}")), "{shown}");
    let resumed = version(killed.path(), 0)["heldout_ppl"].as_f64().unwrap();
    println!("killed after step {saved} (aimed at {at}): held-out perplexity {resumed:.6}, uninterrupted {expected:.6}");
    assert!((resumed - expected).abs() < 1e-3, "resumed {resumed} vs uninterrupted {expected}");
    assert!(!killed.path().join("adapters/personality-run").exists(), "the run's checkpoint is gone once it ends");
}

/// A copy of a corpus day with reactions seeded (the shared corpus has none): laughs on
/// every 60th message, and on every 15th of the newest tenth so held-out pairs exist.
fn with_seeded_reactions(export: &Path, to: &Path) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(export).unwrap()).unwrap();
    let messages = doc["messages"].as_array_mut().unwrap();
    let newest = messages.len() * 9 / 10;
    for (i, m) in messages.iter_mut().enumerate() {
        let every = if i >= newest { 15 } else { 60 };
        if i % every == 7 && m["content"].as_str().is_some_and(|c| c.split_whitespace().count() >= 3) {
            m["reactions"] = json!([{ "emoji": { "id": null, "name": "😂" }, "count": 3 + i % 3 }]);
        }
    }
    std::fs::write(to, doc.to_string()).unwrap();
}

#[test]
fn dpo_on_seeded_reactions_widens_the_held_out_margin_over_sft_alone() {
    let source = tempfile::tempdir().unwrap();
    let export = source.path().join("reacted.json");
    with_seeded_reactions(&corpus_day(2), &export);
    let dir = prepared(&export, true);
    let pairs = std::fs::read_to_string(dir.path().join("store/dataset/pairs.jsonl")).unwrap();
    let heldout_pairs = pairs.lines().filter(|l| l.contains("\"split\":\"heldout\"")).count();
    assert!(heldout_pairs >= 2, "{heldout_pairs} held-out pairs");

    let mut sft = small(dir.path(), 4, &["train"]);
    sft.env("SIDEKICK_TRAIN_DPO_EPOCHS", "0");
    let out = run(sft);
    assert!(out.status.success(), "{}", text(&out));
    let mut dpo = small(dir.path(), 4, &["train"]);
    dpo.env("SIDEKICK_TRAIN_DPO_EPOCHS", "3").env("SIDEKICK_TRAIN_DPO_LEARNING_RATE", "0.002");
    let out = run(dpo);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(version(dir.path(), 1)["dpo_steps"].as_u64().unwrap() > 0, "{shown}");

    let adapters: Vec<PathBuf> =
        ["personality-v1.gguf", "personality-v2.gguf"].iter().map(|f| dir.path().join("adapters").join(f)).collect();
    let mut eval = small(dir.path(), 4, &["eval", "--adapter", adapters[0].to_str().unwrap(), "--adapter", adapters[1].to_str().unwrap()]);
    // The retrieval model scores style; the test runs outside the checkout, so absolute paths.
    let models = crate::support::repo_root().join("models");
    eval.env("SIDEKICK_TRAIN_EVAL_EXAMPLES", "4")
        .env("SIDEKICK_RETRIEVAL_MODEL_DIR", models.join("embed/all-MiniLM-L6-v2-int8"))
        .env("SIDEKICK_RETRIEVAL_ONNXRUNTIME", models.join("onnxruntime/libonnxruntime.so.1.31.1"));
    let out = run(eval);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("store/eval/report.json")).unwrap()).unwrap();
    let margin = |i: usize| report["variants"][i]["preference_margin"].as_f64().unwrap();
    println!(
        "{heldout_pairs} held-out pairs; margin of the reacted-to reply: base {:.3}, SFT {:.3}, SFT + DPO {:.3}",
        margin(0),
        margin(1),
        margin(2)
    );
    assert!(margin(2) > margin(1), "DPO should widen the margin: SFT {} vs DPO {}", margin(1), margin(2));
    assert!(dir.path().join("store/eval/lengths.png").is_file() && dir.path().join("store/eval/report.md").is_file());
}

/// The model file with its architecture renamed: a GGUF the trainer does not support.
fn other_architecture(to: &Path) {
    let mut bytes = std::fs::read(model_path()).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the key") + key.len();
    // Then the value's type (u32) and length (u64), and the string itself.
    let value = at + 4 + 8;
    assert_eq!(&bytes[value..value + 5], b"llama");
    bytes[value..value + 5].copy_from_slice(b"gpt2x");
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn bad_input_gets_one_line_and_exit_2_and_what_is_served_stays() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("adapters/personality.json");
    let refused = |cmd: Command, expected: &str| {
        let before = std::fs::read(&served).ok();
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        println!("{}", err.trim());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(err.contains(expected), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(std::fs::read(&served).ok(), before, "what is served does not change");
        let made = std::fs::read_dir(dir.path().join("adapters"))
            .map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".gguf")).count());
        assert_eq!(made, 0, "no adapter written");
    };
    refused(small(dir.path(), 2, &["train"]), "no dataset in");

    let export = &corpus_day(0);
    assert!(run(small(dir.path(), 1, &["import", export.to_str().unwrap()])).status.success());
    assert!(run(small(dir.path(), 1, &["dataset", "--no-pairs"])).status.success());
    std::fs::create_dir_all(dir.path().join("adapters")).unwrap();
    std::fs::write(&served, r#"{"base_model_sha256":"","serving":"personality-v9.gguf","versions":[]}"#).unwrap();

    let mut memory = small(dir.path(), 2, &["train"]);
    memory.env("SIDEKICK_MEMORY_AVAILABLE_MB", "64");
    refused(memory, "too little memory: training at train.max_tokens = 48 needs about");

    let gguf = dir.path().join("gpt2x.gguf");
    other_architecture(&gguf);
    let mut arch = small(dir.path(), 2, &["train"]);
    arch.env("SIDEKICK_MODEL_PATH", &gguf);
    refused(arch, "the model cannot be trained here");

    let manifest = dir.path().join("store/dataset/manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["base_model_sha256"] = json!("0".repeat(64));
    std::fs::write(&manifest, m.to_string()).unwrap();
    refused(small(dir.path(), 2, &["train"]), "the dataset was built for another base model");
}

/// The daemon serves the trained personality under the feedback adapter: `!adapter` shows both,
/// replies name both, feedback learns on top of the personality, and a new personality sets
/// the old feedback adapters aside.
#[test]
fn the_daemon_serves_the_personality_under_the_feedback_adapter() {
    let dir = prepared(&corpus_day(0), false);
    for steps in [3, 4] {
        // v1, then v2 (kept whether or not the gate served it).
        let out = run(small(dir.path(), steps, &["train"]));
        assert!(out.status.success(), "{}", text(&out));
    }
    let manifest = dir.path().join("adapters/personality.json");
    let mut served = personality(dir.path());
    served["serving"] = json!("personality-v1.gguf");
    std::fs::write(&manifest, served.to_string()).unwrap();

    let mut config = crate::support::test_config(dir.path());
    config.rl.enabled = true;
    config.rl.save_every_steps = 2;
    // Short training samples: a step takes seconds on one core instead of minutes.
    config.rl.max_train_tokens = 128;
    config.generation.max_tokens = 12;
    // The gate scores each new feedback adapter on this many held-out examples, on one core.
    config.train.eval_examples = 8;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        use crate::support::say;
        use sidekick::daemon::{engine_config, Daemon};
        let start = || async {
            Daemon::start_with(&config, engine_config(&config), std::sync::Arc::new(sidekick_actors::clock::SystemClock)).await.unwrap()
        };
        let daemon = start().await;
        let shown = say(&daemon, "console-a", "!adapter").await.notice.unwrap();
        assert!(shown.contains("Under it, the server's voice: personality-v1.gguf, held-out perplexity"), "{shown}");
        let first = say(&daemon, "console-a", "what's up").await;
        assert_eq!(daemon.store.reply(first.reply_id.unwrap()).unwrap().unwrap().adapter.as_deref(), Some("personality-v1.gguf"));

        // Two votes: two steps, then the feedback adapter is saved and served over the voice.
        let second = say(&daemon, "console-b", "what's up").await;
        for (channel, rating) in [("console-a", "!feedback 5"), ("console-b", "!feedback 1")] {
            let answer = daemon.ask_as(crate::support::ch(channel), "301", Some("301"), rating).await.unwrap();
            assert!(answer.notice.unwrap().starts_with("Thanks!"));
        }
        let _ = second;
        let deadline = Instant::now() + Duration::from_secs(300);
        while !say(&daemon, "console-a", "!adapter").await.notice.unwrap().starts_with("Serving adapter v1") {
            assert!(Instant::now() < deadline, "no feedback adapter was served");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let third = say(&daemon, "console-c", "what's up").await;
        let label = daemon.store.reply(third.reply_id.unwrap()).unwrap().unwrap().adapter;
        assert_eq!(label.as_deref(), Some("adapter-v1.gguf over personality-v1.gguf"));
        assert!(dir.path().join("adapters/combined/adapter-v1+personality-v1.gguf").is_file());
        daemon.shutdown().await.unwrap();
        let feedback: Value = serde_json::from_slice(&std::fs::read(dir.path().join("adapters/manifest.json")).unwrap()).unwrap();
        assert_eq!(feedback["personality"], "personality-v1.gguf");
        assert!(feedback["base_model_sha256"].as_str().unwrap().contains('+'), "{feedback}");

        // A new personality while the bot runs: it is served within seconds, the feedback
        // adapter trained on the old voice is set aside, and a fresh one learns the same votes.
        let daemon = start().await;
        served["serving"] = json!("personality-v2.gguf");
        std::fs::write(&manifest, served.to_string()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let shown = loop {
            let shown = say(&daemon, "console-a", "!adapter").await.notice.unwrap();
            if shown.contains("personality-v2.gguf") {
                break shown;
            }
            assert!(Instant::now() < deadline, "the new personality was not served: {shown}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(shown.starts_with("Serving the base model: no adapter has been trained yet."), "{shown}");
        let fourth = say(&daemon, "console-d", "what's up").await;
        assert_eq!(daemon.store.reply(fourth.reply_id.unwrap()).unwrap().unwrap().adapter.as_deref(), Some("personality-v2.gguf"));
        let deadline = Instant::now() + Duration::from_secs(300);
        while !say(&daemon, "console-a", "!adapter").await.notice.unwrap().starts_with("Serving adapter v2") {
            assert!(Instant::now() < deadline, "no feedback adapter was trained on the new voice");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let fifth = say(&daemon, "console-e", "what's up").await;
        let label = daemon.store.reply(fifth.reply_id.unwrap()).unwrap().unwrap().adapter;
        assert_eq!(label.as_deref(), Some("adapter-v2.gguf over personality-v2.gguf"));
        daemon.shutdown().await.unwrap();
        let feedback: Value = serde_json::from_slice(&std::fs::read(dir.path().join("adapters/manifest.json")).unwrap()).unwrap();
        assert_eq!(feedback["personality"], "personality-v2.gguf");
        assert_eq!(feedback["versions"].as_array().unwrap().len(), 1, "the old voice's adapter is not in the new manifest: {feedback}");

        // The next start serves both again.
        let daemon = start().await;
        let shown = say(&daemon, "console-a", "!adapter").await.notice.unwrap();
        assert!(shown.starts_with("Serving adapter v2") && shown.contains("personality-v2.gguf"), "{shown}");
        daemon.shutdown().await.unwrap();
        assert!(dir.path().join("adapters/adapter-v1.gguf").is_file(), "set aside, not deleted");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_train_runs_beside_the_daemon_says_how_far_it_got_and_posts_the_figures() {
    use crate::discord::{admin, ask, owner, BOT, CH1, GUILD};
    use crate::fake_discord::FakeDiscord;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let adapters = dir.path().join("adapters").display().to_string();
    let env = [
        ("SIDEKICK_RL_ADAPTERS_DIR", adapters.as_str()),
        ("SIDEKICK_TRAIN_RANK", "4"),
        ("SIDEKICK_TRAIN_ALPHA", "8"),
        ("SIDEKICK_TRAIN_STEPS", "2"),
        ("SIDEKICK_TRAIN_BATCH_SIZE", "2"),
        ("SIDEKICK_TRAIN_MAX_TOKENS", "48"),
        ("SIDEKICK_TRAIN_EVAL_EXAMPLES", "8"),
    ];
    let mut daemon = crate::support::spawn_connected_daemon(dir.path(), &fake, &env).await;
    // The history: a corpus day, imported through the running daemon.
    let out = run(small(dir.path(), 1, &["import", corpus_day(0).to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));

    assert_eq!(ask(&fake, CH1, &admin(), "!train status").await, "Not training now, and not since I started. `!train` starts it.");
    let started = ask(&fake, CH1, &admin(), "!train").await;
    assert!(started.starts_with("Learning this server's voice in the background"), "{started}");
    let during = ask(&fake, CH1, &admin(), "!train status").await;
    assert!(during.starts_with("Training is running: "), "{during}");
    let again = ask(&fake, CH1, &admin(), "!train").await;
    assert!(again.starts_with("Training is already running"), "{again}");
    let deadline = Instant::now() + Duration::from_secs(400);
    let figures = loop {
        if let Some(m) = fake.sent().iter().find(|m| m.content().contains("Trained ")) {
            break m.content().to_string();
        }
        let failed = fake
            .sent()
            .iter()
            .any(|m| ["Training stopped", "Training failed", "Training could not"].iter().any(|f| m.content().starts_with(f)));
        assert!(
            !failed && Instant::now() < deadline,
            "no figures: {:?}",
            fake.sent().iter().map(|m| m.content().to_string()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("{figures}");
    assert!(figures.contains("held-out perplexity") && figures.contains("passed the gate"), "{figures}");
    let after = ask(&fake, CH1, &admin(), "!train status").await;
    assert!(after.starts_with("Not training now. The last run: Trained "), "{after}");
    let term = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert_eq!(crate::support::exit_code(&mut daemon, Duration::from_secs(60)).await, Some(0));
    assert_eq!(personality(dir.path())["serving"], "personality-v1.gguf");
}
