//! `models/adapters/manifest.json` and its rules: which adapter is served, which are kept,
//! where training resumes, and what `!adapter rollback|off|on` and a save change. Pure: the
//! feedback actor applies the result (swaps the model, writes the file, deletes old files).

use serde::{Deserialize, Serialize};

/// One saved adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterVersion {
    pub version: u64,
    /// File name under the adapters folder.
    pub file: String,
    pub step: u64,
    pub rewards_seen: u64,
    /// The last feedback journal entry it learned from.
    pub trained_through: Option<u64>,
    pub baseline: f32,
    pub saved_at_ms: u64,
}

/// The saved adapters, which one is served, for which base model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdapterManifest {
    pub base_model_sha256: String,
    pub versions: Vec<AdapterVersion>,
    /// The served version; `None` serves the base model.
    pub active: Option<u64>,
    /// Versions served before the active one, most recent last (`!adapter rollback` pops).
    pub previous: Vec<u64>,
    /// The next version number (numbers are never reused, even after the base model changed).
    pub next_version: u64,
    /// The version training continues from (`None`: a fresh adapter on the base model).
    pub train_from: Option<u64>,
    /// The personality adapter these were trained on top of (informative; the identity that
    /// counts is in `base_model_sha256`).
    pub personality: Option<String>,
}

/// Why an `!adapter` change cannot be made; the text is the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Nothing to roll back: the base model is being served.")]
    NothingToRollBack,
    #[error("The base model is already being served.")]
    AlreadyOff,
    #[error("There is no trained adapter yet.")]
    NoneTrained,
}

/// An `!adapter` change worked out: the manifest once the model serves `serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub next: AdapterManifest,
    pub serve: Option<u64>,
}

impl AdapterManifest {
    pub fn version(&self, v: u64) -> Option<&AdapterVersion> {
        self.versions.iter().find(|a| a.version == v)
    }

    pub fn latest(&self) -> Option<&AdapterVersion> {
        self.versions.iter().max_by_key(|a| a.version)
    }

    /// The version being served, if any.
    pub fn served(&self) -> Option<&AdapterVersion> {
        self.active.and_then(|v| self.version(v))
    }

    /// The adapter training continues from: the last one saved, or what a rollback went back
    /// to (`None`: a fresh adapter).
    pub fn resume_point(&self) -> Option<&AdapterVersion> {
        self.train_from.and_then(|v| self.version(v))
    }

    /// The number the next saved version gets.
    pub fn next_number(&self) -> u64 {
        self.latest().map_or(1, |v| v.version + 1).max(self.next_version)
    }

    /// Serving follows training (each new save is served) unless an admin turned the adapter
    /// off or rolled it back.
    pub fn follows_training(&self) -> bool {
        self.active.is_some() || self.previous.is_empty()
    }

    /// This manifest for the model file with `sha256`: kept as it is for the same model;
    /// for another one, a fresh start that keeps counting versions (the old files stay where
    /// they are, and their numbers are not reused).
    pub fn for_model(self, sha256: &str) -> (AdapterManifest, bool) {
        if self.base_model_sha256.is_empty() || self.base_model_sha256 == sha256 {
            return (AdapterManifest { base_model_sha256: sha256.to_string(), ..self }, false);
        }
        let fresh = AdapterManifest { base_model_sha256: sha256.to_string(), next_version: self.next_number(), ..Default::default() };
        (fresh, true)
    }

    /// Records a version training just saved (training continues from it) and forgets the
    /// oldest beyond `keep` (at least 2), never the served one. Returns the files to delete.
    pub fn record_save(&mut self, saved: AdapterVersion, keep: usize) -> Vec<String> {
        self.next_version = saved.version + 1;
        self.train_from = Some(saved.version);
        self.versions.push(saved);
        let keep = keep.max(2);
        let mut gone = Vec::new();
        while self.versions.len() > keep {
            let Some(oldest) = self.versions.iter().map(|v| v.version).filter(|v| Some(*v) != self.active).min() else { break };
            if let Some(at) = self.versions.iter().position(|v| v.version == oldest) {
                gone.push(self.versions.remove(at).file);
            }
            self.previous.retain(|v| *v != oldest);
        }
        gone
    }

    /// Serves `version` from now on, remembering what was served before.
    pub fn serve(&mut self, version: Option<u64>) {
        if let Some(old) = self.active.filter(|old| Some(*old) != version) {
            self.previous.push(old);
        }
        self.previous.retain(|v| Some(*v) != version);
        self.active = version;
    }

    /// The model could not load `version`: serve what was served before it. Returns whether
    /// anything changed.
    pub fn swap_failed(&mut self, version: Option<u64>) -> bool {
        if self.active != version {
            return false;
        }
        self.active = self.previous.pop();
        true
    }

    /// `!adapter rollback`: the version served before the active one (never the active one;
    /// with none on record, the newest older one, or the base model). Training goes on from
    /// the version rolled back to.
    pub fn rollback(&self) -> Result<Change, Refusal> {
        let active = self.active.ok_or(Refusal::NothingToRollBack)?;
        let mut next = self.clone();
        next.previous.retain(|v| *v != active);
        let target = next.previous.last().copied().or_else(|| self.versions.iter().map(|v| v.version).filter(|v| *v < active).max());
        next.train_from = target;
        next.previous.retain(|v| Some(*v) != target);
        next.active = target;
        Ok(Change { next, serve: target })
    }

    /// `!adapter off`: the base model; training goes on, new versions are not served.
    pub fn off(&self) -> Result<Change, Refusal> {
        let active = self.active.ok_or(Refusal::AlreadyOff)?;
        let mut next = self.clone();
        next.previous.push(active);
        next.active = None;
        Ok(Change { next, serve: None })
    }

    /// `!adapter on`: the newest version, and serving follows training again.
    pub fn on(&self) -> Result<Change, Refusal> {
        let latest = self.latest().ok_or(Refusal::NoneTrained)?.version;
        let mut next = self.clone();
        next.previous.retain(|v| *v != latest);
        next.active = Some(latest);
        Ok(Change { next, serve: Some(latest) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: u64) -> AdapterVersion {
        crate::testing::adapter_version(v)
    }

    /// Three saves, each served as training publishes it.
    fn trained(n: u64) -> AdapterManifest {
        let mut m = AdapterManifest::default();
        for v in 1..=n {
            assert_eq!(m.next_number(), v);
            assert!(m.record_save(version(v), 5).is_empty());
            if m.follows_training() {
                m.serve(Some(v));
            }
        }
        m
    }

    #[test]
    fn saves_are_served_and_numbered_in_order() {
        let m = trained(3);
        assert_eq!(m.active, Some(3));
        assert_eq!(m.previous, [1, 2]);
        assert_eq!(m.train_from, Some(3));
        assert_eq!(m.next_number(), 4);
    }

    #[test]
    fn rollback_goes_to_what_was_served_before_and_training_follows() {
        let m = trained(3);
        let change = m.rollback().unwrap();
        assert_eq!(change.serve, Some(2));
        assert_eq!(change.next.active, Some(2));
        assert_eq!(change.next.previous, [1]);
        assert_eq!(change.next.train_from, Some(2), "training resumes from what is served");
        let twice = change.next.rollback().unwrap();
        assert_eq!(twice.serve, Some(1));
        let thrice = twice.next.rollback().unwrap();
        assert_eq!(thrice.serve, None, "then the base model");
        assert_eq!(thrice.next.train_from, None, "a fresh adapter from the base");
        assert_eq!(thrice.next.rollback(), Err(Refusal::NothingToRollBack));
    }

    #[test]
    fn rollback_without_history_takes_the_newest_older_version() {
        let mut m = trained(3);
        m.previous.clear();
        assert_eq!(m.rollback().unwrap().serve, Some(2));
    }

    #[test]
    fn off_stops_following_training_and_on_serves_the_newest() {
        let m = trained(2);
        let off = m.off().unwrap();
        assert_eq!(off.serve, None);
        assert!(!off.next.follows_training(), "new saves are not served while off");
        assert_eq!(off.next.off(), Err(Refusal::AlreadyOff));
        let mut after = off.next.clone();
        after.record_save(version(3), 5);
        assert_eq!(after.active, None);
        let on = after.on().unwrap();
        assert_eq!(on.serve, Some(3));
        assert!(on.next.follows_training());
        assert_eq!(AdapterManifest::default().on(), Err(Refusal::NoneTrained));
    }

    #[test]
    fn off_then_rollback_never_rolls_back_to_the_served_adapter() {
        let m = trained(2);
        let on = m.off().unwrap().next.on().unwrap().next;
        let back = on.rollback().unwrap();
        assert_ne!(back.serve, on.active);
        assert_eq!(back.serve, Some(1));
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_the_served_one() {
        let mut m = trained(2);
        m.serve(Some(1)); // an admin went back to v1
        let mut deleted = Vec::new();
        for v in 3..=6 {
            deleted.extend(m.record_save(version(v), 3));
        }
        let kept: Vec<u64> = m.versions.iter().map(|v| v.version).collect();
        assert_eq!(kept, [1, 5, 6], "the served v1 and the newest, three in all");
        assert_eq!(deleted, ["adapter-v2.gguf", "adapter-v3.gguf", "adapter-v4.gguf"]);
        assert!(m.previous.iter().all(|v| m.version(*v).is_some()), "the rollback list names only kept versions");
    }

    #[test]
    fn a_failed_swap_serves_what_was_served_before() {
        let mut m = trained(2);
        assert!(m.swap_failed(Some(2)));
        assert_eq!(m.active, Some(1));
        assert!(!m.swap_failed(Some(7)), "a swap that is no longer wanted changes nothing");
    }

    #[test]
    fn another_model_starts_afresh_but_keeps_counting() {
        let mut m = trained(3);
        m.base_model_sha256 = "old".into();
        let (same, reset) = m.clone().for_model("old");
        assert!(!reset);
        assert_eq!(same, m);
        let (fresh, reset) = m.for_model("new");
        assert!(reset);
        assert_eq!((fresh.active, fresh.versions.len(), fresh.next_number()), (None, 0, 4));
        assert_eq!(fresh.base_model_sha256, "new");
    }
}
