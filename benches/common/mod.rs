//! What the benchmarks share: where the checkout is, the shared chat corpus, percentiles
//! and this process's memory. Each benchmark uses a part of it.
#![allow(dead_code)]

use std::ops::Range;
use std::path::PathBuf;

/// The checkout's root (models, the shared corpus beside it).
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The people's messages of the shared corpus (ubuntu-irc), in file order, whose length in
/// bytes is in `lengths`. Empty when the corpus is not beside the checkout.
pub fn corpus_messages(lengths: Range<usize>) -> Vec<String> {
    let dir = root().join("../shared/corpus/ubuntu-irc");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        for m in json["messages"].as_array().into_iter().flatten() {
            let text = m["content"].as_str().unwrap_or_default().trim();
            if lengths.contains(&text.len()) && !m["author"]["isBot"].as_bool().unwrap_or(false) {
                out.push(text.to_string());
            }
        }
    }
    out
}

/// The `p` quantile (0..=1) by the nearest-rank method; NaN for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`, `VmHWM`), in MB.
pub fn memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.map_or(f64::NAN, |kb| kb / 1024.0)
}

/// glibc's heap in MB: (in use, held from the system).
/// In use growing is a leak; held growing with in use flat is fragmentation.
pub fn heap_mb() -> (f64, f64) {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    let mb = |b: usize| b as f64 / 1e6;
    (mb(info.uordblks + info.hblkhd), mb(info.arena + info.hblkhd))
}

/// Runs this benchmark again as a child with `args` and `envs` (for what must be set once per
/// process: peak memory, candle's thread count) and returns the numbers on its line starting
/// with `tag`.
pub fn child_figures(args: &[&str], envs: &[(&str, &str)], tag: &str) -> Vec<f64> {
    let out = std::process::Command::new(std::env::current_exe().unwrap()).args(args).envs(envs.iter().copied()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(tag)).unwrap_or_default();
    line.split_whitespace().filter_map(|v| v.parse().ok()).collect()
}

/// Generation rate of one reply: tokens after the first, over the time after the first.
pub fn decode_rate(answer: &sidekick::daemon::Answer) -> f64 {
    let first = answer.first_token_after.unwrap_or_default();
    answer.tokens.saturating_sub(1) as f64 / (answer.total - first).as_secs_f64()
}
