//! No crash loop from training. A step that kills the process (out of memory, an abort in
//! native code) would kill it again at every start, since the same feedback is replayed. So
//! the replies of a step are marked durably before it runs and unmarked when it ends; marks
//! still there at start belong to a step that never ended: those replies are skipped from then
//! on, and `!rl_metrics` says so.

use super::{FeedbackState, Queued};
use crate::metric_names as m;
use crate::ports::{StoreError, TrainingMarks};

impl FeedbackState {
    /// At start: the replies of a step that never ended join the skipped ones.
    pub(super) fn load_training_marks(&mut self) {
        let mut marks = match self.args.journal.training_marks() {
            Ok(marks) => marks,
            Err(e) => return tracing::warn!(error = %e, "could not read the training crash marks"),
        };
        if !marks.in_step.is_empty() {
            tracing::error!(
                replies = ?marks.in_step,
                "a training step did not finish last time (the process ended during it); its replies are not trained on again"
            );
            m::count_error("training_crash");
            marks.skipped.append(&mut marks.in_step);
            marks.skipped.sort_unstable();
            marks.skipped.dedup();
            if let Err(e) = self.args.journal.save_training_marks(&marks) {
                tracing::warn!(error = %e, "could not save the training crash marks");
            }
        }
        self.crashed = marks.skipped.into_iter().collect();
    }

    /// Whether a step on this reply once took the process down.
    pub(super) fn crashed_on(&self, reply: u64) -> bool {
        self.crashed.contains(&reply)
    }

    /// Before a step: its replies are marked, durably. A step that cannot be marked does not run.
    pub(super) fn mark_step(&self, batch: &[Queued]) -> Result<(), StoreError> {
        self.save_marks(batch.iter().map(|q| q.key.0).collect())
    }

    /// After a step, whatever its result: it ended.
    pub(super) fn unmark_step(&self) {
        if let Err(e) = self.save_marks(Vec::new()) {
            tracing::warn!(error = %e, "could not clear the training crash mark");
        }
    }

    fn save_marks(&self, in_step: Vec<u64>) -> Result<(), StoreError> {
        let mut skipped: Vec<u64> = self.crashed.iter().copied().collect();
        skipped.sort_unstable();
        self.args.journal.save_training_marks(&TrainingMarks { in_step, skipped })
    }
}
