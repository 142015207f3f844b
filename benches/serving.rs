//! Serving benchmark: `./run.sh bench` (or `cargo bench --bench serving`). Prints figures,
//! each against a baseline measured in the same run; asserts nothing.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use sidekick::config::{Config, DEFAULT_MODEL};
use sidekick::daemon::{engine_config, Answer, Daemon};
use sidekick_actors::params::GenerationParams;
use sidekick_actors::ChannelKey;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{corpus_messages, memory_mb, percentile, root};

const SEED: u32 = 42;

fn config(store: &Path, threads: u32) -> Config {
    let mut c = Config::default();
    c.model.path = root().join(DEFAULT_MODEL);
    c.model.threads = threads;
    c.retrieval.enabled = std::env::var("BENCH_NO_RETRIEVAL").is_err();
    if let Some(n) = std::env::var("BENCH_THREADS_BATCH").ok().and_then(|v| v.parse().ok()) {
        c.model.threads_batch = n;
    }
    c.model.seed = Some(SEED);
    c.storage.path = store.to_path_buf();
    c.metrics.listen = String::new();
    c
}

/// Real chat lines from the shared corpus (falls back to a few fixed lines without it).
fn corpus_lines(n: usize) -> Vec<String> {
    let mut out = corpus_messages(40..200);
    out.truncate(n);
    if out.is_empty() {
        println!("(corpus not found beside the checkout; using fixed lines)");
    }
    let fixed = [
        "how do I mount a usb drive from the terminal?",
        "anyone know why my wifi drops after suspend?",
        "what's the best way to upgrade to the new release?",
    ];
    while out.len() < n {
        out.push(fixed[out.len() % fixed.len()].to_string());
    }
    out
}

/// Generation rate of one reply: tokens after the first, over the time after the first.
fn decode_rate(answer: &Answer) -> f64 {
    let first = answer.first_token_after.unwrap_or_default();
    (answer.tokens.saturating_sub(1)) as f64 / (answer.total - first).as_secs_f64()
}

/// llama.cpp driven directly: the same prompt, sampler chain, seed and threads, one sequence.
fn direct_reply(prompt: &str, params: &GenerationParams, threads: u32) -> (usize, Duration, Duration) {
    let backend = sidekick::llama::backend().unwrap();
    let model = LlamaModel::load_from_file(backend, root().join(DEFAULT_MODEL), &LlamaModelParams::default()).unwrap();
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(512)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let mut ctx = model.new_context(backend, ctx_params).unwrap();
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let started = Instant::now();
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in tokens.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == tokens.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let mut sampler = sidekick::llama::sampler(&model, params, SEED);
    let mut pos = tokens.len() as i32;
    let mut generated = 0;
    let mut first = None;
    let mut last_logits = batch.n_tokens() - 1;
    while generated < params.max_tokens as usize {
        let token = sampler.sample(&ctx, last_logits);
        if model.vocab().is_eog(token) {
            break;
        }
        first.get_or_insert(started.elapsed());
        generated += 1;
        if generated == params.max_tokens as usize {
            break;
        }
        batch.clear();
        batch.add(token, pos, &[0], true).unwrap();
        pos += 1;
        ctx.decode(&mut batch).unwrap();
        last_logits = 0;
    }
    (generated, first.unwrap_or_default(), started.elapsed())
}

/// A thread that keeps one core busy, as other work on a small shared box would.
struct Hog(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Hog {
    fn start() -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Hog(stop, Some(handle))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        let _ = self.1.take().map(|h| h.join());
    }
}

async fn concurrency(daemon: &Daemon, channels: usize, rounds: usize, lines: &[String]) {
    let (mut ttft, mut latency) = (Vec::new(), Vec::new());
    let (mut tokens, mut wall) = (0usize, Duration::ZERO);
    for round in 0..rounds {
        let started = Instant::now();
        let asks = (0..channels).map(|c| {
            let text = lines[(round * channels + c) % lines.len()].clone();
            async move { daemon.ask(ChannelKey::guild(1, (channels * 100 + c) as u64), "bench", &text).await.unwrap() }
        });
        let answers = futures::future::join_all(asks).await;
        wall += started.elapsed();
        for a in answers {
            assert!(a.failed.is_none(), "{a:?}");
            tokens += a.tokens;
            ttft.push(a.first_token_after.unwrap_or(a.total).as_secs_f64());
            latency.push(a.total.as_secs_f64());
        }
    }
    println!(
        "  {channels} channel(s): {:6.1} tokens/s aggregate | time to first token p50 {:.3} s p95 {:.3} s | reply latency p50 {:.2} s p95 {:.2} s",
        tokens as f64 / wall.as_secs_f64(),
        percentile(&ttft, 0.5),
        percentile(&ttft, 0.95),
        percentile(&latency, 0.5),
        percentile(&latency, 0.95)
    );
}

/// Time to first token of a follow-up turn after ~300 tokens of history.
async fn follow_up_ttft(config: &Config, reuse: bool, lines: &[String]) -> (f64, usize) {
    let mut engine = engine_config(config);
    engine.prefix_reuse = reuse;
    let daemon = Daemon::start_with(config, engine, std::sync::Arc::new(sidekick_actors::clock::SystemClock)).await.unwrap();
    let mut samples = Vec::new();
    let mut history_tokens = 0;
    for trial in 0..3 {
        let channel = ChannelKey::guild(2, trial as u64);
        for turn in 0..4 {
            daemon.ask(channel, "bench", &lines[trial * 5 + turn]).await.unwrap();
        }
        let a = daemon.ask(channel, "bench", &lines[trial * 5 + 4]).await.unwrap();
        history_tokens = a.prompt.as_deref().map_or(0, |p| p.len() / 4);
        samples.push(a.first_token_after.unwrap_or(a.total).as_secs_f64());
    }
    daemon.shutdown().await.unwrap();
    (percentile(&samples, 0.5), history_tokens)
}

/// Child mode: the daemon alone with default settings under 8 channels, then its peak RSS.
async fn rss_probe() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1);
    let daemon = Daemon::start(&config).await.unwrap();
    let lines = corpus_lines(16);
    concurrency(&daemon, 8, 2, &lines).await;
    daemon.shutdown().await.unwrap();
    println!("RSS {:.1}", memory_mb("VmHWM"));
}

fn main() {
    if let Ok(filter) = std::env::var("SIDEKICK_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if std::env::args().any(|a| a == "--load-only") {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut c = config(dir.path(), 1);
            c.generation.max_tokens = 64;
            let daemon = Daemon::start(&c).await.unwrap();
            concurrency(&daemon, 8, 2, &corpus_lines(16)).await;
        });
        return;
    }
    if std::env::args().any(|a| a == "--rss-probe") {
        runtime.block_on(rss_probe());
        return;
    }
    if !root().join(DEFAULT_MODEL).is_file() {
        eprintln!("the bundled model is missing: run `./run.sh setup` first");
        std::process::exit(2);
    }
    let lines = corpus_lines(64);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "Sidekick serving benchmark ({} cores, SmolLM2-135M Q4_1, seed {SEED})",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    runtime.block_on(async {
        let mut cfg = config(&dir.path().join("a"), 1);
        cfg.generation.max_tokens = 128;
        let started = Instant::now();
        let daemon = Daemon::start(&cfg).await.unwrap();
        let info = sidekick_actors::tree::status(&daemon.root.get_derived(), Duration::from_secs(5)).await.unwrap().model.unwrap();
        println!(
            "\nModel load: {:.2} s inside llama.cpp, {:.2} s to a running actor tree",
            info.load_seconds,
            started.elapsed().as_secs_f64()
        );

        println!("\nOne reply, 1 thread: actor path vs llama.cpp driven directly (same prompt, sampler, seed)");
        let question = "Tell me a long story about a dragon who learns to sing.";
        let actor = daemon.ask(ChannelKey::Console, "bench", question).await.unwrap();
        let prompt = actor.prompt.clone().unwrap();
        daemon.shutdown().await.unwrap();
        let (direct_tokens, direct_first, direct_total) = direct_reply(&prompt, &cfg.generation, 1);
        let direct_rate = (direct_tokens.saturating_sub(1)) as f64 / (direct_total - direct_first).as_secs_f64();
        let actor_rate = decode_rate(&actor);
        println!("  llama.cpp direct: {direct_tokens} tokens, {direct_rate:.1} tokens/s, first token {:.3} s", direct_first.as_secs_f64());
        println!(
            "  actor path:       {} tokens, {actor_rate:.1} tokens/s, first token {:.3} s",
            actor.tokens,
            actor.first_token_after.unwrap_or_default().as_secs_f64()
        );
        println!("  ratio actor/direct: {:.3} (goal >= 0.95)", actor_rate / direct_rate);

        println!("\nThreads (llama.cpp direct, tokens/s), idle box vs one core kept busy by other work");
        let mut p = cfg.generation;
        p.max_tokens = 96;
        for threads in [1u32, 2] {
            let (n, f, t) = direct_reply(&prompt, &p, threads);
            let idle = (n.saturating_sub(1)) as f64 / (t - f).as_secs_f64();
            let hog = Hog::start();
            let (n, f, t) = direct_reply(&prompt, &p, threads);
            drop(hog);
            let busy = (n.saturating_sub(1)) as f64 / (t - f).as_secs_f64();
            println!("  {threads} thread(s): {idle:6.1} idle | {busy:6.1} with a busy core | ratio to idle {:.2}", busy / idle);
        }

        println!("\nConcurrent channels (64 tokens a reply, 1 generation thread)");
        let mut load_cfg = config(&dir.path().join("b"), 1);
        load_cfg.generation.max_tokens = 64;
        let daemon = Daemon::start(&load_cfg).await.unwrap();
        for channels in [1, 4, 8] {
            concurrency(&daemon, channels, 3, &lines).await;
        }
        daemon.shutdown().await.unwrap();

        println!("\nFollow-up turn time to first token (median of 3)");
        let mut f_cfg = config(&dir.path().join("c"), 1);
        f_cfg.generation.max_tokens = 48;
        let (with, approx) = follow_up_ttft(&f_cfg, true, &lines).await;
        f_cfg.storage.path = dir.path().join("d");
        let (without, _) = follow_up_ttft(&f_cfg, false, &lines).await;
        println!("  ~{approx}-token prompt: {without:.3} s without prefix reuse, {with:.3} s with it ({:.1}x faster)", without / with);
    });

    for (label, without_retrieval) in [("with retrieval (default)", false), ("model only, retrieval off", true)] {
        let mut probe = std::process::Command::new(std::env::current_exe().unwrap());
        probe.arg("--rss-probe");
        if without_retrieval {
            probe.env("BENCH_NO_RETRIEVAL", "1");
        }
        let out = probe.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let rss = stdout.lines().find_map(|l| l.strip_prefix("RSS ")).unwrap_or("?");
        println!("Peak RSS of a daemon serving 8 channels, {label}: {rss} MB (goal <= 400 MB for the model)");
    }
}
