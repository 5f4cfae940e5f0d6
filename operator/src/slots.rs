//! The operator-wide limit on concurrent builds (`maxConcurrentBuilds`): which ImageBuilds hold
//! a build slot and which wait for one.
//!
//! Pure bookkeeping, kept in memory: after a restart the set is rebuilt as each ImageBuild with
//! an active Job is reconciled (every object is reconciled at startup). Waiting ImageBuilds
//! retry on their requeue timer; there is no queue order. It starts nothing by itself.

use std::collections::BTreeSet;

/// Build slots, keyed by `namespace/name` of the ImageBuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSlots {
    limit: usize,
    running: BTreeSet<String>,
    waiting: BTreeSet<String>,
}

impl BuildSlots {
    /// Slots for at most `limit` concurrent builds.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            running: BTreeSet::new(),
            waiting: BTreeSet::new(),
        }
    }

    /// Takes a slot for `key` if one is free (or `key` already holds one); otherwise records
    /// `key` as waiting and returns `false`.
    pub fn try_start(&mut self, key: &str) -> bool {
        if self.running.contains(key) || self.running.len() < self.limit {
            self.running.insert(key.to_string());
            self.waiting.remove(key);
            true
        } else {
            self.waiting.insert(key.to_string());
            false
        }
    }

    /// Records that `key` has an active build, even beyond the limit (a build found running
    /// after a restart or a configuration change).
    pub fn mark_running(&mut self, key: &str) {
        self.running.insert(key.to_string());
        self.waiting.remove(key);
    }

    /// Releases the slot of `key` and forgets it as waiting.
    pub fn finish(&mut self, key: &str) {
        self.running.remove(key);
        self.waiting.remove(key);
    }

    /// How many builds hold a slot.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// How many ImageBuilds wait for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_wait_and_free() {
        let mut slots = BuildSlots::new(2);
        assert!(slots.try_start("ns/a"));
        assert!(slots.try_start("ns/a"), "a holder may ask again");
        assert!(slots.try_start("ns/b"));
        assert!(!slots.try_start("ns/c"));
        assert!(!slots.try_start("ns/c"));
        assert_eq!((slots.running(), slots.waiting(), slots.limit()), (2, 1, 2));
        slots.finish("ns/a");
        assert!(slots.try_start("ns/c"));
        assert_eq!((slots.running(), slots.waiting()), (2, 0));
        slots.mark_running("ns/d");
        assert_eq!(slots.running(), 3, "found running beyond the limit");
        assert!(!slots.try_start("ns/e"));
        slots.finish("ns/e");
        assert_eq!(slots.waiting(), 0);
    }
}
