//! History benchmark: `./run.sh bench-history` (or `cargo bench --bench history`). Prints the
//! import rate on the shared corpus (embedding excluded: the retrieval actor does that later)
//! against reading and checking the same files alone, measured in the same run, and the time
//! to build the dataset from it, with the model's tokenizer and with a word count; asserts
//! nothing.

use sidekick::history::dataset::{self, DatasetOptions};
use sidekick::history::dpo::{EnginePairModel, PairModel, RejectedCache};
use sidekick::history::{import, HistoryAccess};
use sidekick::store::FjallStore;
use sidekick_actors::ports::GlobalSettings;
use sidekick_actors::prompt::ChatTurn;
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::root;

/// Tokens as words: what the dataset's own rules cost without the tokenizer.
struct Words;

impl PairModel for Words {
    fn tokens(&mut self, turns: &[ChatTurn]) -> Result<usize, String> {
        Ok(turns.iter().map(|t| t.content.split_whitespace().count()).sum())
    }
    fn reply(&mut self, _: &[ChatTurn], _: u32, _: u32) -> Result<String, String> {
        Ok(String::new())
    }
    fn identity(&self) -> String {
        "words".into()
    }
}

fn main() {
    let folder = root().join("../shared/corpus/ubuntu-irc");
    let files = import::files(&folder).expect("the shared corpus in ../shared/corpus/ubuntu-irc");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // Baseline: reading and checking every file, nothing written.
    let started = Instant::now();
    let read: Vec<_> = files.iter().map(|f| import::read(f).expect("a readable export")).collect();
    let parse_seconds = started.elapsed().as_secs_f64();
    let messages: usize = read.iter().map(|(_, m)| m.len()).sum();
    println!("Sidekick history benchmark: {messages} messages in {} DiscordChatExporter files", files.len());
    println!("Read and check alone: {:.0} messages/s ({parse_seconds:.3} s)", messages as f64 / parse_seconds);

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FjallStore::open(&dir.path().join("store")).unwrap());
    let access = HistoryAccess::Direct(store.clone());
    for (label, runs) in [("Import, new messages", 1), ("Import again (all known)", 1)] {
        for _ in 0..runs {
            let started = Instant::now();
            runtime.block_on(async {
                for file in &files {
                    let (channel, offered) = import::read(file).unwrap();
                    import::import(&access, file, channel, offered).await.unwrap();
                }
            });
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{label}: {:.0} messages/s ({seconds:.3} s; {:.2}x the time of reading alone; goal >= 5,000 messages/s)",
                messages as f64 / seconds,
                seconds / parse_seconds
            );
        }
    }

    let history: Vec<_> = store.history_messages().collect::<Result<_, _>>().unwrap();
    let options = DatasetOptions {
        seed: 0,
        rules: Default::default(),
        system_prompt: sidekick_actors::prompt::DEFAULT_SYSTEM_PROMPT.into(),
        pairs: false,
        rejected_tokens: 64,
    };
    let global = GlobalSettings::default();
    let mut cache = RejectedCache::open(&dir.path().join("cache.jsonl"));
    let started = Instant::now();
    let built = dataset::build(history.clone(), &global, &options, &mut Words, &mut cache).unwrap();
    let words_seconds = started.elapsed().as_secs_f64();

    let config = sidekick::config::Config {
        model: sidekick::config::ModelConfig { path: root().join(sidekick::config::DEFAULT_MODEL), ..Default::default() },
        ..Default::default()
    };
    let engine = sidekick::llama::LlamaEngine::start(sidekick::daemon::engine_config(&config), Default::default())
        .expect("the model (run ./run.sh setup)");
    let mut model = EnginePairModel::new(Arc::new(engine), config.generation, "bench".into());
    let started = Instant::now();
    let with_tokens = dataset::build(history, &global, &options, &mut model, &mut cache).unwrap();
    let model_seconds = started.elapsed().as_secs_f64();
    let stats = &with_tokens.manifest.stats;
    println!(
        "Dataset from {} kept messages: {} train + {} held-out examples, {} tokens",
        built.manifest.source.messages, stats.train, stats.heldout, stats.train_tokens
    );
    println!(
        "Dataset build: {model_seconds:.2} s with the model's tokenizer (llama.cpp), {words_seconds:.3} s counting words ({:.0}x)",
        model_seconds / words_seconds.max(1e-9)
    );
    print!("{}", dataset::show(stats));
}
