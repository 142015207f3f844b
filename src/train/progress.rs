//! What a training run shows: a bar on a terminal (step, loss, tokens/s, time left), log lines
//! otherwise.

use std::time::{Duration, Instant};

pub trait Progress {
    /// `total` steps, `done` of them already (a resumed run).
    fn start(&mut self, total: u64, done: u64);
    fn step(&mut self, loss: f32, tokens: usize, seconds: f64);
    fn done(&mut self);
    /// A line of its own: what an evaluation scored.
    fn note(&mut self, line: &str);
}

pub struct TrainBar {
    bar: indicatif::ProgressBar,
    tokens: usize,
    seconds: f64,
}

impl TrainBar {
    pub fn new() -> TrainBar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len} · {msg} · {eta} left").expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(500));
        TrainBar { bar, tokens: 0, seconds: 0.0 }
    }
}

impl Default for TrainBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TrainBar {
    fn start(&mut self, total: u64, done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
    }
    fn step(&mut self, loss: f32, tokens: usize, seconds: f64) {
        self.tokens += tokens;
        self.seconds += seconds;
        self.bar.set_message(format!("loss {loss:.3} · {:.0} tokens/s", self.tokens as f64 / self.seconds.max(1e-9)));
        self.bar.inc(1);
    }
    fn done(&mut self) {
        self.bar.finish_and_clear();
    }
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// A line every tenth of the run, on stderr.
pub struct TrainLog {
    total: u64,
    done: u64,
    tokens: usize,
    started: Option<Instant>,
    from: u64,
}

impl TrainLog {
    pub fn new() -> TrainLog {
        TrainLog { total: 0, done: 0, tokens: 0, started: None, from: 0 }
    }
}

impl Default for TrainLog {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TrainLog {
    fn start(&mut self, total: u64, done: u64) {
        (self.total, self.done, self.from) = (total, done, done);
        self.started = Some(Instant::now());
        if done > 0 {
            eprintln!("resuming at step {done}/{total}");
        }
    }
    fn step(&mut self, loss: f32, tokens: usize, _: f64) {
        self.done += 1;
        self.tokens += tokens;
        let every = (self.total / 10).max(1);
        if self.done.is_multiple_of(every) || self.done == self.total {
            let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            let per_step = elapsed / (self.done - self.from).max(1) as f64;
            let left = per_step * (self.total - self.done) as f64;
            eprintln!(
                "step {}/{}: loss {loss:.3}, {:.0} tokens/s, {:.0} s left",
                self.done,
                self.total,
                self.tokens as f64 / elapsed.max(1e-9),
                left
            );
        }
    }
    fn done(&mut self) {}
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}
