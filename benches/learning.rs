//! Learning benchmark: `./run.sh bench-learning` (or `cargo bench --bench learning`). Prints
//! seconds per training step at the sizes the daemon trains on, and what a training step
//! running at the same time does to reply latency, against replies measured in the same run
//! with no training. Asserts nothing.

use sidekick::config::{Config, ModelThreads, DEFAULT_MODEL};
use sidekick::daemon::{engine_config, Daemon};
use sidekick_trainer::{BaseModel, LoraConfig, Sample, Trainer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{child_figures, percentile, root};

fn sample(tokens: usize, reward: f32) -> Sample {
    // Real token ids from the vocabulary's ordinary range; the prompt is 3/4 of the sample.
    let ids = |n: usize, at: u32| (0..n as u32).map(|i| 1000 + (i * 37 + at) % 20_000).collect::<Vec<_>>();
    Sample { prompt: ids(tokens * 3 / 4, 0), reply: ids(tokens / 4, 11), reward }
}

async fn reply_latencies(daemon: &Daemon, n: usize, tag: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let channel = sidekick_actors::ChannelKey::guild(1, (tag.len() * 1000 + i) as u64);
        let answer = daemon.ask(channel, "bench", "What should I cook tonight? Give me one idea.").await.unwrap();
        out.push(answer.total.as_secs_f64());
    }
    out
}

/// Median seconds of 4 steps of `tokens` tokens, after one to warm up.
fn step_seconds(trainer: &mut Trainer, tokens: usize) -> f64 {
    trainer.step(&[sample(tokens, 1.0)]).unwrap();
    let times: Vec<f64> = (0..4).map(|i| trainer.step(&[sample(tokens, if i % 2 == 0 { 1.0 } else { -1.0 })]).unwrap().seconds).collect();
    percentile(&times, 0.5)
}

/// Child mode (`--batch-threads N`): steps over a batch of 256-token sequences (as many as
/// there are cores, the way `sidekick train` accumulates its batch) on N threads, in a process
/// of its own (candle's element-wise thread count is set once per process). Prints seconds per
/// step and training tokens/s, medians of 3 after one to warm up.
fn child_batch(threads: usize, batch: usize) {
    sidekick_trainer::threads::limit_candle_threads(1);
    let base = Arc::new(BaseModel::load(root().join(DEFAULT_MODEL)).unwrap());
    let mut trainer = Trainer::new(base, LoraConfig { threads, ..LoraConfig::default() }, 1).unwrap();
    let samples: Vec<Sample> = (0..batch).map(|i| sample(256, if i % 2 == 0 { 1.0 } else { -1.0 })).collect();
    trainer.step(&samples).unwrap();
    let reports: Vec<_> = (0..3).map(|_| trainer.step(&samples).unwrap()).collect();
    let seconds = percentile(&reports.iter().map(|r| r.seconds).collect::<Vec<_>>(), 0.5);
    println!("BATCH {seconds} {}", reports[0].tokens as f64 / seconds);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = args.iter().position(|a| a == "--batch-threads").and_then(|i| args.get(i + 1)?.parse().ok()) {
        child_batch(n, cores.max(2));
        return;
    }
    // As the daemon does: training never takes both cores.
    sidekick_trainer::threads::limit_candle_threads(1);
    let model = root().join(DEFAULT_MODEL);
    let base = Arc::new(BaseModel::load(&model).expect("the bundled model (run ./run.sh setup)"));
    let mut trainer = Trainer::new(base.clone(), LoraConfig { threads: 1, ..LoraConfig::default() }, 1).unwrap();

    println!("== training step, 1 thread, rank 8 on q+v ==");
    let mut one_256 = f64::NAN;
    for tokens in [64, 128, 256] {
        let seconds = step_seconds(&mut trainer, tokens);
        println!("{tokens:>4} tokens: {seconds:.2} s/step (median of 4), {:.0} training tokens/s", tokens as f64 / seconds);
        one_256 = seconds;
    }
    let batch = cores.max(2);
    println!("== training throughput, a batch of {batch} 256-token sequences per step (as `sidekick train` accumulates its batch) ==");
    let figures = |threads: usize| {
        let figures = child_figures(&["--batch-threads", &threads.to_string()], &[], "BATCH ");
        (figures.first().copied().unwrap_or(f64::NAN), figures.get(1).copied().unwrap_or(f64::NAN))
    };
    let (one_seconds, one_rate) = figures(1);
    println!("1 thread:  {one_seconds:.2} s/step, {one_rate:.0} training tokens/s");
    let (all_seconds, all_rate) = figures(cores);
    println!(
        "{cores} threads: {all_seconds:.2} s/step, {all_rate:.0} training tokens/s, {:.2}x one thread (goal >= 1.7x; one 256-token step on one thread goal <= 2 s: {one_256:.2} s)",
        all_rate / one_rate
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.model.path = model;
    config.model.seed = Some(7);
    config.model.threads = ModelThreads::Fixed(1);
    config.generation.max_tokens = 48;
    config.storage.path = dir.path().join("store");
    config.metrics.listen = String::new();
    config.retrieval.enabled = false;
    config.rl.enabled = false;
    let daemon =
        runtime.block_on(Daemon::start_with(&config, engine_config(&config), Arc::new(sidekick_actors::clock::SystemClock))).unwrap();
    let n = 12;
    runtime.block_on(reply_latencies(&daemon, 2, "warm"));
    let quiet = runtime.block_on(reply_latencies(&daemon, n, "quiet"));

    // The worst case: a 256-token step running the whole time (the daemon trains only while
    // the model is idle, so a reply meets at most the step already under way).
    let stop = Arc::new(AtomicBool::new(false));
    let steps = Arc::new(AtomicU64::new(0));
    let background = {
        let (stop, steps) = (stop.clone(), steps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                trainer.step(&[sample(256, 1.0)]).unwrap();
                steps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let busy = runtime.block_on(reply_latencies(&daemon, n, "busy"));
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    runtime.block_on(daemon.shutdown()).unwrap();

    println!("== reply latency, {n} replies of up to 48 tokens, model on 1 thread ==");
    let (q50, q95) = (percentile(&quiet, 0.5), percentile(&quiet, 0.95));
    let (b50, b95) = (percentile(&busy, 0.5), percentile(&busy, 0.95));
    println!("no training:            p50 {q50:.2} s  p95 {q95:.2} s");
    println!(
        "training all the while: p50 {b50:.2} s  p95 {b95:.2} s  ({:.1} steps/min meanwhile)",
        steps.load(Ordering::Relaxed) as f64 * 60.0 / elapsed
    );
    println!("ratio (training / none): p50 {:.2}x  p95 {:.2}x", b50 / q50, b95 / q95);
}
