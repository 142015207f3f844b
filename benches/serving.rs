//! Serving benchmark: `./run.sh bench` (or `cargo bench --bench serving`). Prints each
//! performance goal's figure against a baseline measured in the same run (llama.cpp driven
//! directly, `direct/`); asserts nothing.

use sidekick::config::{Config, ModelThreads, DEFAULT_MODEL};
use sidekick::daemon::{engine_config, Daemon};
use sidekick_actors::ChannelKey;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
mod direct;
use common::{child_figures, corpus_messages, decode_rate, memory_mb, percentile, root};
use direct::Direct;

const SEED: u32 = 42;

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The default configuration (retrieval on, `model.threads = auto`) with a fixed seed.
fn config(store: &Path) -> Config {
    let mut c = Config::default();
    c.model.path = root().join(DEFAULT_MODEL);
    c.retrieval.enabled = std::env::var("BENCH_NO_RETRIEVAL").is_err();
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

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
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

/// What one round of `channels` channels asking at once gave.
#[derive(Default)]
struct Round {
    tokens: usize,
    wall: Duration,
    ttft: Vec<f64>,
    latency: Vec<f64>,
    prompts: Vec<String>,
}

/// `channels` new channels ask at once (fresh ones, so every prompt is read whole).
async fn round(daemon: &Daemon, channels: usize, first_line: usize, lines: &[String]) -> Round {
    let started = Instant::now();
    let asks = (0..channels).map(|c| {
        let text = lines[(first_line + c) % lines.len()].clone();
        let channel = ChannelKey::guild(1, (first_line * 100 + c) as u64);
        async move { daemon.ask(channel, "bench", &text).await.unwrap() }
    });
    let answers = futures::future::join_all(asks).await;
    let mut out = Round { wall: started.elapsed(), ..Round::default() };
    for a in answers {
        assert!(a.failed.is_none(), "{a:?}");
        out.tokens += a.tokens;
        out.ttft.push(a.first_token_after.unwrap_or(a.total).as_secs_f64());
        out.latency.push(a.total.as_secs_f64());
        out.prompts.push(a.prompt.unwrap_or_default());
    }
    out
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

/// Goal 1: one reply through the whole bot against llama.cpp alone, 5 alternating runs.
async fn one_reply(dir: &Path) {
    println!("\n1. One reply, 1 generation thread, retrieval on: the bot vs llama.cpp driven directly");
    println!("   (same prompt, sampler, seed and context; 5 alternating runs; tokens/s after the first token)");
    let mut cfg = config(&dir.join("one"));
    cfg.model.threads = ModelThreads::Fixed(1);
    cfg.generation.max_tokens = 128;
    let daemon = Daemon::start(&cfg).await.unwrap();
    let direct = Direct::load(&cfg);
    let question = "Tell me a long story about a dragon who learns to sing.";
    // One of each first, untimed: the first touches the model's pages and the allocator.
    let warm = daemon.ask(ChannelKey::guild(9, 99), "bench", question).await.unwrap();
    direct.reply(warm.prompt.as_deref().unwrap(), &cfg.generation, SEED, 1);
    let mut ratios = Vec::new();
    for run in 0..5u64 {
        let bot = daemon.ask(ChannelKey::guild(9, run), "bench", question).await.unwrap();
        // The bot stores and embeds the exchange after replying: let it settle first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let alone = direct.reply(bot.prompt.as_deref().unwrap(), &cfg.generation, SEED, 1);
        let ratio = decode_rate(&bot) / alone.rate();
        println!(
            "   run {}: bot {:5.1} tokens/s ({} tokens) | llama.cpp {:5.1} tokens/s ({} tokens) | ratio {ratio:.3}",
            run + 1,
            decode_rate(&bot),
            bot.tokens,
            alone.rate(),
            alone.tokens
        );
        ratios.push(ratio);
    }
    let spread = ratios.iter().cloned().fold(f64::INFINITY, f64::min)..=ratios.iter().cloned().fold(0.0, f64::max);
    println!("   ratio bot/llama.cpp: median {:.3}, spread {:.3}-{:.3} (goal >= 0.95)", median(&ratios), spread.start(), spread.end());
    daemon.shutdown().await.unwrap();
}

/// Goals 2 and 3: channels asking at once against llama.cpp with as many sequences in one
/// batch; and the first tokens of 8 channels against the floor the hardware sets.
async fn batched(dir: &Path, lines: &[String]) {
    println!("\n2. Channels at once (64-token replies, default threads = auto) vs llama.cpp with as many sequences in one batch");
    println!("   (the same prompts, system prompt decoded beforehand as the bot does; llama.cpp: the faster of 1 thread and every core)");
    let mut cfg = config(&dir.join("batched"));
    cfg.generation.max_tokens = 64;
    let daemon = Daemon::start(&cfg).await.unwrap();
    let direct = Direct::load(&cfg);
    let reference = daemon.ask(ChannelKey::guild(7, 0), "bench", "hello there").await.unwrap().prompt.unwrap();
    let mut next_line = 0;
    for channels in [1usize, 4, 8] {
        let (mut bot, mut alone) = ((0usize, Duration::ZERO), (0usize, Duration::ZERO));
        let (mut ttft, mut latency, mut floors) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let r = round(&daemon, channels, next_line, lines).await;
            next_line += channels;
            bot = (bot.0 + r.tokens, bot.1 + r.wall);
            ttft.extend(&r.ttft);
            latency.extend(&r.latency);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let best = [1, cores()]
                .into_iter()
                .map(|threads| direct.batch(&r.prompts, Some(&reference), &cfg.generation, SEED, threads))
                .min_by(|a, b| (a.wall.as_secs_f64() / a.tokens() as f64).total_cmp(&(b.wall.as_secs_f64() / b.tokens() as f64)))
                .unwrap();
            alone = (alone.0 + best.tokens(), alone.1 + best.wall);
            // The floor: the round's new prompt tokens read by llama.cpp alone, plus one
            // decoding step of all of them.
            floors.push((best.new_tokens, best.new_tokens as f64 / best.read.as_secs_f64(), (best.read + best.step).as_secs_f64()));
        }
        let (bot_rate, alone_rate) = (bot.0 as f64 / bot.1.as_secs_f64(), alone.0 as f64 / alone.1.as_secs_f64());
        println!(
            "   {channels} channel(s): bot {bot_rate:6.1} tokens/s | llama.cpp {alone_rate:6.1} tokens/s | ratio {:.3}{} | first token p50 {:.3} s p95 {:.3} s | reply p95 {:.2} s",
            bot_rate / alone_rate,
            if channels > 1 { " (goal >= 0.9)" } else { "" },
            percentile(&ttft, 0.5),
            percentile(&ttft, 0.95),
            percentile(&latency, 0.95)
        );
        if channels == 8 {
            let n = floors.len() as f64;
            let floor = floors.iter().map(|f| f.2).sum::<f64>() / n;
            let tokens = floors.iter().map(|f| f.0 as f64).sum::<f64>() / n;
            let prefill = floors.iter().map(|f| f.1).sum::<f64>() / n;
            println!("\n3. First tokens, 8 channels asking at once");
            println!(
                "   floor {floor:.3} s ({tokens:.0} new prompt tokens a round, read by llama.cpp alone at {prefill:.0} tokens/s, plus one decoding step)"
            );
            println!(
                "   p50 {:.3} s ({:.2}x the floor) | p95 {:.3} s ({:.2}x the floor; goal <= 1.25)",
                percentile(&ttft, 0.5),
                percentile(&ttft, 0.5) / floor,
                percentile(&ttft, 0.95),
                percentile(&ttft, 0.95) / floor
            );
        }
    }
    daemon.shutdown().await.unwrap();
}

/// Goal 4: `threads = auto` on an idle box and with a core kept busy, against each fixed
/// count driven directly in the same conditions.
async fn threads(dir: &Path) {
    println!("\n4. Threads: llama.cpp with a fixed count vs the bot with threads = auto (96-token replies, tokens/s)");
    let mut cfg = config(&dir.join("threads"));
    cfg.generation.max_tokens = 96;
    let daemon = Daemon::start(&cfg).await.unwrap();
    let direct = Direct::load(&cfg);
    let question = "Write a long poem about the sea and the ships that sail on it.";
    let prompt = daemon.ask(ChannelKey::guild(8, 0), "bench", question).await.unwrap().prompt.unwrap();
    let fixed = |threads: u32| direct.reply(&prompt, &cfg.generation, SEED, threads).rate();
    let mut asked = 1u64;
    let mut auto = || {
        asked += 1;
        let daemon = &daemon;
        let channel = ChannelKey::guild(8, asked);
        async move { decode_rate(&daemon.ask(channel, "bench", question).await.unwrap()) }
    };
    let idle = (fixed(1), fixed(cores()));
    let mut auto_idle = Vec::new();
    for _ in 0..3 {
        auto_idle.push(auto().await);
    }
    let hog = Hog::start();
    let busy = (fixed(1), fixed(cores()));
    let settling = auto().await;
    let mut auto_busy = Vec::new();
    for _ in 0..3 {
        auto_busy.push(auto().await);
    }
    drop(hog);
    daemon.shutdown().await.unwrap();
    // The bot on one fixed thread with the same busy core: what the bot's own work (messages,
    // retrieval, storing) costs when it shares the decoding core, apart from the tuning.
    cfg.model.threads = ModelThreads::Fixed(1);
    cfg.storage.path = dir.join("threads-fixed");
    let daemon = Daemon::start(&cfg).await.unwrap();
    let hog = Hog::start();
    let mut fixed_busy = Vec::new();
    for i in 0..4u64 {
        let rate = decode_rate(&daemon.ask(ChannelKey::guild(8, 100 + i), "bench", question).await.unwrap());
        if i > 0 {
            fixed_busy.push(rate);
        }
    }
    drop(hog);
    println!("   idle box:       1 thread {:6.1} | {} threads {:6.1} | auto {:6.1}", idle.0, cores(), idle.1, median(&auto_idle));
    println!(
        "   a core kept busy: 1 thread {:6.1} | {} threads {:6.1} | auto {:6.1} (the reply it changed in: {settling:.1})",
        busy.0,
        cores(),
        busy.1,
        median(&auto_busy)
    );
    println!(
        "   auto / all cores, idle: {:.3} (goal >= 0.9) | auto / 1 thread, busy core: {:.3} (goal >= 0.9)",
        median(&auto_idle) / idle.1,
        median(&auto_busy) / busy.0
    );
    println!(
        "   the bot on 1 fixed thread, busy core: {:6.1} ({:.3} of llama.cpp alone; auto reaches {:.3} of it)",
        median(&fixed_busy),
        median(&fixed_busy) / busy.0,
        median(&auto_busy) / median(&fixed_busy)
    );
    daemon.shutdown().await.unwrap();
}

/// Child mode: the daemon alone with default settings under 8 channels, then its peak RSS.
async fn rss_probe() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let daemon = Daemon::start(&config).await.unwrap();
    let lines = corpus_lines(16);
    round(&daemon, 8, 0, &lines).await;
    round(&daemon, 8, 8, &lines).await;
    daemon.shutdown().await.unwrap();
    println!("RSS {:.1}", memory_mb("VmHWM"));
}

/// Child mode: the resident memory each part adds as it is opened in turn, and how long
/// llama.cpp takes to load the model file and make the context.
fn rss_split() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut last = memory_mb("VmRSS");
    let started = Instant::now();
    let direct = Direct::load(&config);
    let (model_seconds, model_mb) = (started.elapsed().as_secs_f64(), delta(&mut last));
    let started = Instant::now();
    let ctx = direct.context(cores());
    let (context_seconds, context_mb) = (started.elapsed().as_secs_f64(), delta(&mut last));
    let embedder = sidekick::retrieval::Embedder::open(&config.retrieval).unwrap();
    let lines = corpus_lines(64);
    for batch in lines.chunks(16) {
        embedder.embed(&batch.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    }
    let onnx_mb = delta(&mut last);
    let index = sidekick::retrieval::new_index().unwrap();
    let index_mb = delta(&mut last);
    println!("SPLIT {model_mb:.1} {context_mb:.1} {onnx_mb:.1} {index_mb:.1} {model_seconds:.3} {context_seconds:.3}");
    drop((index, embedder, ctx));
}

/// VmRSS growth since `last`, which moves on to now.
fn delta(last: &mut f64) -> f64 {
    let now = memory_mb("VmRSS");
    now - std::mem::replace(last, now)
}

/// Goals 5 and 6: peak memory of the default configuration serving 8 channels, split by
/// part; and the time to start.
fn memory(start_seconds: f64, load_seconds: f64) {
    let with = child_figures(&["--rss-probe"], &[], "RSS ").first().copied().unwrap_or(f64::NAN);
    let without = child_figures(&["--rss-probe"], &[("BENCH_NO_RETRIEVAL", "1")], "RSS ").first().copied().unwrap_or(f64::NAN);
    let split = child_figures(&["--rss-split"], &[], "SPLIT ");
    let part = |i: usize| split.get(i).copied().unwrap_or(f64::NAN);
    println!(
        "\n5. Peak RSS of the daemon serving 8 channels: {with:.1} MB with retrieval (default; goal <= 400 MB) | {without:.1} MB without"
    );
    let known = part(0) + part(1) + part(2) + part(3);
    println!(
        "   split (resident memory each part adds when opened): model {:.1} MB | KV cache and compute buffers {:.1} MB | ONNX Runtime and the embedding model {:.1} MB | empty index {:.1} MB | rest (runtime, store, actors, peaks) {:.1} MB",
        part(0),
        part(1),
        part(2),
        part(3),
        with - known
    );
    println!("\n6. Start: {start_seconds:.2} s to a running actor tree with retrieval on (goal <= 1 s)");
    println!(
        "   inside llama.cpp {load_seconds:.2} s: model file {:.2} s, context (KV cache, buffers) {:.2} s, the rest the shared prefix and adapters",
        part(4),
        part(5)
    );
}

fn main() {
    if let Ok(filter) = std::env::var("SIDEKICK_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if std::env::args().any(|a| a == "--rss-probe") {
        runtime.block_on(rss_probe());
        return;
    }
    if std::env::args().any(|a| a == "--rss-split") {
        rss_split();
        return;
    }
    if !root().join(DEFAULT_MODEL).is_file() {
        eprintln!("the bundled model is missing: run `./run.sh setup` first");
        std::process::exit(2);
    }
    let lines = corpus_lines(96);
    let dir = tempfile::tempdir().unwrap();
    println!("Sidekick serving benchmark ({} cores, SmolLM2-135M Q4_1, seed {SEED})", cores());
    let (start_seconds, load_seconds) = runtime.block_on(async {
        let started = Instant::now();
        let daemon = Daemon::start(&config(&dir.path().join("start"))).await.unwrap();
        let start_seconds = started.elapsed().as_secs_f64();
        let info = sidekick_actors::tree::status(&daemon.root.get_derived(), Duration::from_secs(5)).await.unwrap().model.unwrap();
        daemon.shutdown().await.unwrap();
        // BENCH_ONLY=threads (or one, batched, memory) runs one section.
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let run = |name: &str| only.is_empty() || only == name;
        if run("one") {
            one_reply(dir.path()).await;
        }
        if run("batched") {
            batched(dir.path(), &lines).await;
        }
        if run("threads") {
            threads(dir.path()).await;
        }
        if only == "memory" {
            return (start_seconds, info.load_seconds);
        }
        if !only.is_empty() {
            std::process::exit(0);
        }
        println!("\nFollow-up turn time to first token (median of 3)");
        let mut f_cfg = config(&dir.path().join("c"));
        f_cfg.generation.max_tokens = 48;
        let (with, approx) = follow_up_ttft(&f_cfg, true, &lines).await;
        f_cfg.storage.path = dir.path().join("d");
        let (without, _) = follow_up_ttft(&f_cfg, false, &lines).await;
        println!("   ~{approx}-token prompt: {without:.3} s without prefix reuse, {with:.3} s with it ({:.1}x faster)", without / with);
        (start_seconds, info.load_seconds)
    });
    memory(start_seconds, load_seconds);
}
