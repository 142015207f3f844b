//! `model.threads = auto`: how many threads a decoding step uses, chosen by timing steps.
//!
//! On an idle box every core makes a step faster; when other work holds a core, a step split
//! over all cores waits for the slowest thread at each of llama.cpp's barriers and gets
//! slower than one thread alone. The tuner serves the best count it has measured and, every
//! so often or as soon as steps get clearly slower, tries a neighbouring count for a few
//! steps right after a few steps of the current one (so both see the same load and batch
//! sizes), keeping whichever was faster. Two trial steps in a row more than twice as slow as
//! the current count end the trial at once: on a box with a busy core a two-thread step can take five
//! times as long, and six of them every probe would cost more than the probing finds. It
//! only sees durations, so tests are exact.

use std::time::Duration;

/// Steps served between probes while nothing changes.
pub const PROBE_EVERY: u32 = 200;
/// Steps timed on each side of a probe.
pub const TRIAL_STEPS: usize = 6;
/// A candidate must be this much faster to be taken (timing noise must not flip-flop).
const SWITCH_MARGIN: f64 = 0.95;
/// Steps this much slower than the count's last measure start a probe at once.
const SLOWDOWN: f64 = 1.5;
/// Two trial steps in a row this much slower than the baseline end the trial: the candidate
/// lost (two, so one step that only had fewer replies in its batch does not decide).
const CLEARLY_SLOWER: f64 = 2.0;

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Serving `best`; `left` steps until the next probe.
    Serve { left: u32 },
    /// Timing `best` right before the candidate.
    Baseline { candidate: u32, times: Vec<f64> },
    /// Timing the candidate.
    Trial { candidate: u32, baseline: f64, times: Vec<f64> },
}

#[derive(Debug, Clone)]
pub struct ThreadTuner {
    max: u32,
    best: u32,
    /// Seconds per token of `best` when it was last measured.
    reference: Option<f64>,
    /// The last few steps' seconds per token while serving, for noticing a slowdown.
    recent: Vec<f64>,
    phase: Phase,
    /// Which side of `best` the next probe tries, alternating when both exist.
    try_lower: bool,
}

impl ThreadTuner {
    /// Tunes between 1 and `max` threads, starting at `max` (an idle box's best).
    pub fn new(max: u32) -> Self {
        let max = max.max(1);
        let mut tuner = Self { max, best: max, reference: None, recent: Vec::new(), phase: Phase::Serve { left: 0 }, try_lower: true };
        tuner.probe();
        tuner
    }

    /// The thread count the next step should use.
    pub fn threads(&self) -> u32 {
        match &self.phase {
            Phase::Trial { candidate, .. } => *candidate,
            _ => self.best,
        }
    }

    /// The count measured best so far.
    pub fn best(&self) -> u32 {
        self.best
    }

    /// Records a step of `tokens` tokens that took `took` with [`ThreadTuner::threads`] threads.
    pub fn observe(&mut self, tokens: usize, took: Duration) {
        if self.max == 1 || tokens == 0 {
            return;
        }
        let per_token = took.as_secs_f64() / tokens as f64;
        match &mut self.phase {
            Phase::Serve { left } => {
                *left = left.saturating_sub(1);
                self.recent.push(per_token);
                if self.recent.len() > TRIAL_STEPS {
                    self.recent.remove(0);
                }
                let slowed = self.recent.len() == TRIAL_STEPS && self.reference.is_some_and(|r| median(&self.recent) > r * SLOWDOWN);
                if slowed {
                    // The recent steps already time the current count under the new load.
                    let baseline = median(&self.recent);
                    self.probe();
                    if let Phase::Baseline { candidate, .. } = self.phase {
                        self.phase = Phase::Trial { candidate, baseline, times: Vec::new() };
                    }
                } else if *left == 0 {
                    self.probe();
                }
            }
            Phase::Baseline { candidate, times } => {
                times.push(per_token);
                if times.len() == TRIAL_STEPS {
                    self.phase = Phase::Trial { candidate: *candidate, baseline: median(times), times: Vec::new() };
                }
            }
            Phase::Trial { candidate, baseline, times } => {
                times.push(per_token);
                let clearly_slower = |t: &f64| *t > *baseline * CLEARLY_SLOWER;
                if times.len() >= 2 && times[times.len() - 2..].iter().all(clearly_slower) {
                    self.reference = Some(*baseline);
                    self.recent.clear();
                    self.phase = Phase::Serve { left: PROBE_EVERY };
                } else if times.len() == TRIAL_STEPS {
                    let (candidate, baseline, trial) = (*candidate, *baseline, median(times));
                    if trial < baseline * SWITCH_MARGIN {
                        self.best = candidate;
                        self.reference = Some(trial);
                    } else {
                        self.reference = Some(baseline);
                    }
                    self.recent.clear();
                    self.phase = Phase::Serve { left: PROBE_EVERY };
                }
            }
        }
    }

    /// Starts a probe of a neighbouring count.
    fn probe(&mut self) {
        let lower = self.best.checked_sub(1).filter(|&n| n >= 1);
        let higher = Some(self.best + 1).filter(|&n| n <= self.max);
        let candidate = match (lower, higher) {
            (Some(l), Some(h)) => {
                self.try_lower = !self.try_lower;
                if self.try_lower {
                    l
                } else {
                    h
                }
            }
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => self.best,
        };
        self.phase = Phase::Baseline { candidate, times: Vec::new() };
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `steps` steps of one token whose time depends on the thread count used.
    fn run(tuner: &mut ThreadTuner, steps: usize, cost: impl Fn(u32) -> f64) {
        for _ in 0..steps {
            let threads = tuner.threads();
            tuner.observe(1, Duration::from_secs_f64(cost(threads)));
        }
    }

    #[test]
    fn an_idle_box_keeps_every_core() {
        let mut tuner = ThreadTuner::new(2);
        run(&mut tuner, 1000, |t| if t == 2 { 0.011 } else { 0.018 });
        assert_eq!(tuner.best(), 2);
    }

    #[test]
    fn a_busy_core_moves_to_one_thread_and_back_when_it_is_free() {
        let mut tuner = ThreadTuner::new(2);
        run(&mut tuner, 100, |t| if t == 2 { 0.011 } else { 0.018 });
        assert_eq!(tuner.best(), 2);
        // Another process takes a core: two threads now wait at every barrier.
        run(&mut tuner, 2 * TRIAL_STEPS + TRIAL_STEPS, |t| if t == 2 { 0.090 } else { 0.019 });
        assert_eq!(tuner.best(), 1, "a slowdown probes at once, not after {PROBE_EVERY} steps");
        // The core is free again: the next periodic probe finds two threads faster.
        run(&mut tuner, PROBE_EVERY as usize + 2 * TRIAL_STEPS, |t| if t == 2 { 0.011 } else { 0.018 });
        assert_eq!(tuner.best(), 2);
    }

    #[test]
    fn a_losing_probe_on_a_busy_core_costs_two_steps() {
        let mut tuner = ThreadTuner::new(2);
        let busy = |t: u32| if t == 2 { 0.100 } else { 0.020 };
        run(&mut tuner, 2 * TRIAL_STEPS, busy);
        assert_eq!(tuner.best(), 1);
        let mut on_two = 0;
        for _ in 0..10 * PROBE_EVERY {
            let threads = tuner.threads();
            on_two += usize::from(threads == 2);
            tuner.observe(1, Duration::from_secs_f64(busy(threads)));
        }
        // A probe every PROBE_EVERY steps, after TRIAL_STEPS of baseline, and two steps of trial.
        let probes = 10 * PROBE_EVERY as usize / (PROBE_EVERY as usize + TRIAL_STEPS + 2);
        assert_eq!(on_two, 2 * probes, "two steps on two threads per probe, not {TRIAL_STEPS}");
        assert_eq!(tuner.best(), 1);
    }

    #[test]
    fn a_slowdown_tries_the_other_count_at_once() {
        let mut tuner = ThreadTuner::new(2);
        run(&mut tuner, 100, |t| if t == 2 { 0.011 } else { 0.018 });
        let mut slow_steps = 0;
        while tuner.best() == 2 {
            let threads = tuner.threads();
            slow_steps += usize::from(threads == 2);
            tuner.observe(1, Duration::from_secs_f64(if threads == 2 { 0.090 } else { 0.019 }));
            assert!(slow_steps < 100, "never switched");
        }
        // Half the recent steps slow show it; no baseline of more slow steps follows.
        assert_eq!(slow_steps, TRIAL_STEPS / 2, "the slow steps that showed the slowdown, and no more");
    }

    #[test]
    fn one_slow_trial_step_does_not_decide() {
        let mut tuner = ThreadTuner::new(2);
        // One thread is faster, but its first trial step had a smaller batch (3x per token).
        let mut trial_steps = 0;
        for _ in 0..2 * TRIAL_STEPS {
            let threads = tuner.threads();
            let cost = if threads == 1 {
                trial_steps += 1;
                if trial_steps == 1 {
                    0.060
                } else {
                    0.010
                }
            } else {
                0.018
            };
            tuner.observe(1, Duration::from_secs_f64(cost));
        }
        assert_eq!(tuner.best(), 1);
    }

    #[test]
    fn a_small_difference_does_not_switch() {
        let mut tuner = ThreadTuner::new(2);
        run(&mut tuner, 1000, |t| if t == 2 { 0.0100 } else { 0.0098 });
        assert_eq!(tuner.best(), 2, "1 thread is only 2 % faster, inside the margin");
    }

    #[test]
    fn many_cores_climb_down_one_at_a_time() {
        let mut tuner = ThreadTuner::new(8);
        // Fastest at 5 threads (say three cores are busy).
        run(&mut tuner, 5000, |t| 0.010 + 0.002 * (t as f64 - 5.0).abs());
        assert_eq!(tuner.best(), 5);
    }

    #[test]
    fn one_core_never_probes() {
        let mut tuner = ThreadTuner::new(1);
        run(&mut tuner, 50, |_| 0.01);
        assert_eq!((tuner.threads(), tuner.best()), (1, 1));
    }

    #[test]
    fn steps_are_compared_per_token() {
        let mut tuner = ThreadTuner::new(2);
        // Two threads take 1.5x as long for a step of twice the tokens: faster per token.
        for _ in 0..2 * TRIAL_STEPS {
            let (tokens, secs) = if tuner.threads() == 2 { (8, 0.015) } else { (4, 0.010) };
            tuner.observe(tokens, Duration::from_secs_f64(secs));
        }
        assert_eq!(tuner.best(), 2);
    }
}
