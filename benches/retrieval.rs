//! Retrieval benchmark: `./run.sh bench-retrieval` (or `cargo bench --bench retrieval`).
//! Prints embedding throughput, query latency at 10K and 100K vectors, recall@5 against exact
//! search on real chat messages, and index memory; asserts nothing.

use sidekick::config::{Config, ModelThreads, RetrievalConfig, DEFAULT_MODEL};
use sidekick::daemon::Daemon;
use sidekick::retrieval::{new_index, Embedder, DIMENSIONS};
use sidekick_actors::ChannelKey;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::{corpus_messages, decode_rate, percentile, root};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A small deterministic generator for the synthetic vectors (no RNG crate needed here).
fn noise(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state as f64 / u64::MAX as f64 - 0.5) as f32
}

fn build(vectors: &[Vec<f32>]) -> (usearch::Index, f64) {
    let index = new_index().unwrap();
    index.reserve_capacity_and_threads(vectors.len(), 16).unwrap();
    let started = Instant::now();
    for (i, v) in vectors.iter().enumerate() {
        index.add(i as u64, v).unwrap();
    }
    (index, started.elapsed().as_secs_f64())
}

fn query_latency(index: &usearch::Index, queries: &[Vec<f32>]) -> (f64, f64) {
    let micros: Vec<f64> = queries
        .iter()
        .map(|q| {
            let started = Instant::now();
            std::hint::black_box(index.search(q, 5).unwrap());
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    (percentile(&micros, 0.5), percentile(&micros, 0.95))
}

fn main() {
    let mut config = RetrievalConfig::default();
    config.model_dir = root().join(&config.model_dir);
    config.onnxruntime = root().join(&config.onnxruntime);
    let embedder = Embedder::open(&config).expect("the embedding model (run ./run.sh setup)");
    let n = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut texts = corpus_messages(1..usize::MAX);
    texts.truncate(n);
    println!("Sidekick retrieval benchmark: all-MiniLM-L6-v2 int8, usearch cosine bf16, {} real chat messages", texts.len());

    // Similar lengths together, as the index rebuild does: batches pad to their longest text.
    texts.sort_by_key(|t| t.len());
    let one_thread: Vec<&str> = texts.iter().step_by(4).map(String::as_str).collect();
    let started = Instant::now();
    for chunk in one_thread.chunks(16) {
        embedder.embed(chunk).unwrap();
    }
    let one_rate = one_thread.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        vectors.extend(embedder.embed(&refs).unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "\nEmbedding: {:.0} messages/s in bulk batches of 64 while no reply is generated (goal >= 300; {} messages in {seconds:.1} s) | {one_rate:.0} messages/s on one thread (batches of 16, a quarter of them) | {:.2}x",
        vectors.len() as f64 / seconds,
        vectors.len(),
        vectors.len() as f64 / seconds / one_rate
    );
    reply_while_embedding(&embedder, &texts);
    let started = Instant::now();
    for text in texts.iter().take(200) {
        embedder.embed(&[text.as_str()]).unwrap();
    }
    println!("One query embedding: {:.1} ms on average", started.elapsed().as_secs_f64() * 1000.0 / 200.0);

    // Recall@5 of the index against exact cosine search, queries taken from the messages.
    let (index, build_s) = build(&vectors);
    let queries: Vec<Vec<f32>> = vectors.iter().step_by((vectors.len() / 500).max(1)).cloned().collect();
    let mut found = 0;
    for q in &queries {
        let mut exact: Vec<(f32, u64)> = vectors.iter().enumerate().map(|(i, v)| (dot(q, v), i as u64)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<u64> = exact[..5].iter().map(|e| e.1).collect();
        found += index.search(q, 5).unwrap().keys.iter().filter(|k| truth.contains(k)).count();
    }
    let (p50, p95) = query_latency(&index, &queries);
    println!("\n{} vectors (real): built in {build_s:.2} s, recall@5 vs exact {:.3} (goal >= 0.95), query p50 {p50:.0} us p95 {p95:.0} us, memory {:.1} MB",
        vectors.len(), found as f64 / (queries.len() * 5) as f64, index.memory_usage() as f64 / 1e6);

    // 100K: the real vectors plus perturbed copies of them, unit length again.
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut big = vectors.clone();
    while big.len() < 100_000 {
        let base = &vectors[big.len() % vectors.len()];
        let mut v: Vec<f32> = base.iter().map(|x| x + 0.08 * noise(&mut state)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        big.push(v);
    }
    let (index, build_s) = build(&big);
    let (p50, p95) = query_latency(&index, &queries);
    let mb = index.memory_usage() as f64 / 1e6;
    println!("100000 vectors: built in {build_s:.1} s, query p50 {p50:.0} us p95 {p95:.0} us (goal p95 <= 1000 us), memory {mb:.1} MB per 100K messages ({:.0} bytes each; {DIMENSIONS} dims)", mb * 1e6 / 100_000.0);
}

/// A 128-token reply's speed (one generation thread) alone and while history is embedded in
/// bulk beside it: the bulk batches drop to one thread while a reply is being generated.
fn reply_while_embedding(embedder: &Embedder, texts: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.model.path = root().join(DEFAULT_MODEL);
    config.model.threads = ModelThreads::Fixed(1);
    config.model.seed = Some(7);
    config.retrieval.enabled = false;
    config.generation.max_tokens = 128;
    config.storage.path = dir.path().to_path_buf();
    config.metrics.listen = String::new();
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        runtime.block_on(async {
            let daemon = Daemon::start(&config).await.unwrap();
            let question = "Tell me a long story about a dragon who learns to sing.";
            for run in 0..6u64 {
                let embedding = run % 2 == 1;
                let stop = Arc::new(AtomicBool::new(false));
                if embedding {
                    let stop = stop.clone();
                    scope.spawn(move || {
                        for chunk in texts.chunks(64).cycle() {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                            embedder.embed(&refs).unwrap();
                        }
                    });
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                let a = daemon.ask(ChannelKey::guild(5, run), "bench", question).await.unwrap();
                stop.store(true, Ordering::Relaxed);
                let rate = decode_rate(&a);
                if embedding {
                    beside.push(rate)
                } else {
                    alone.push(rate)
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            daemon.shutdown().await.unwrap();
        });
    });
    let (alone, beside) = (percentile(&alone, 0.5), percentile(&beside, 0.5));
    println!(
        "A reply (1 generation thread): {alone:.1} tokens/s alone | {beside:.1} tokens/s while history is embedded in bulk | ratio {:.3} (goal >= 0.9)",
        beside / alone
    );
}
