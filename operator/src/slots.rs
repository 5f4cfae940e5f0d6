//! The operator-wide limit on concurrent builds (`maxConcurrentBuilds`): which ImageBuilds hold
//! a build slot, which wait for one, and in what order they get one.
//!
//! Waiting ImageBuilds form a queue ordered by when they asked (the `BuildPending` time in
//! their status, so the order survives a restart), then by `namespace/name`. A slot goes to an
//! ImageBuild only while fewer ImageBuilds wait ahead of it than slots are free, and
//! [`BuildSlots::finish`] names the waiting ImageBuilds that a freed slot lets start, so that
//! the controller reconciles them at once. A waiter that stops asking (its ImageBuild was
//! deleted while nobody watched) is forgotten after [`STALE_WAITER_SECONDS`].
//!
//! A backend that queues builds itself, in order, behind its own limit (the `local` backend)
//! lets the controller start up to `run_ahead` builds more than the limit: those wait inside
//! the backend, and a finished build's slot goes to the next at once, without waiting for the
//! controller's reconciles in between (see [`BuildSlots::with_run_ahead`]).
//!
//! Pure bookkeeping, kept in memory, with the clock passed in: after a restart the running set
//! is rebuilt as each ImageBuild with an active build is reconciled (every object is reconciled
//! at startup). It starts nothing by itself.

use std::collections::{BTreeMap, BTreeSet};

/// How long (seconds) a waiting ImageBuild keeps its place without asking again; queued
/// ImageBuilds ask at least every `REQUEUE_QUEUED`, well within this.
pub const STALE_WAITER_SECONDS: i64 = 900;

/// One waiting ImageBuild.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Waiter {
    /// When it asked first (seconds since the epoch).
    since: i64,
    /// When it asked last.
    seen: i64,
}

/// Build slots, keyed by `namespace/name` of the ImageBuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSlots {
    limit: usize,
    run_ahead: usize,
    running: BTreeSet<String>,
    waiting: BTreeMap<String, Waiter>,
}

impl BuildSlots {
    /// Slots for at most `limit` concurrent builds.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            run_ahead: 0,
            running: BTreeSet::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// Lets `run_ahead` builds more than the limit start: the backend holds them back until
    /// one of its own slots is free.
    pub fn with_run_ahead(mut self, run_ahead: usize) -> Self {
        self.run_ahead = run_ahead;
        self
    }

    /// Takes a slot for `key` (which asked first at `since`, seconds) if `key` already holds
    /// one, or a slot is free and fewer waiters than free slots are ahead of it; otherwise
    /// records `key` as waiting and returns `false`.
    pub fn try_start(&mut self, key: &str, since: i64, now: i64) -> bool {
        if self.running.contains(key) {
            return true;
        }
        self.waiting
            .retain(|other, w| other == key || now - w.seen <= STALE_WAITER_SECONDS);
        let waiter = self
            .waiting
            .entry(key.to_string())
            .or_insert(Waiter { since, seen: now });
        waiter.since = waiter.since.min(since);
        waiter.seen = now;
        let mine = (waiter.since, key);
        let ahead = self
            .waiting
            .iter()
            .filter(|(other, w)| (w.since, other.as_str()) < mine)
            .count();
        if ahead < self.free() {
            self.waiting.remove(key);
            self.running.insert(key.to_string());
            true
        } else {
            false
        }
    }

    /// Records that `key` has an active build, even beyond the limit (a build found running
    /// after a restart or a configuration change).
    pub fn mark_running(&mut self, key: &str) {
        self.running.insert(key.to_string());
        self.waiting.remove(key);
    }

    /// Releases the slot of `key` and forgets it as waiting; returns the waiting ImageBuilds,
    /// oldest first, that may now take the free slots.
    pub fn finish(&mut self, key: &str) -> Vec<String> {
        self.running.remove(key);
        self.waiting.remove(key);
        self.next_up()
    }

    /// The waiting ImageBuilds that fit in the free slots, oldest first.
    pub fn next_up(&self) -> Vec<String> {
        let mut queue: Vec<(&i64, &String)> = self
            .waiting
            .iter()
            .map(|(key, w)| (&w.since, key))
            .collect();
        queue.sort();
        queue
            .into_iter()
            .take(self.free())
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn free(&self) -> usize {
        (self.limit + self.run_ahead).saturating_sub(self.running.len())
    }

    /// How many builds hold a slot or run ahead in the backend.
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
        assert!(slots.try_start("ns/a", 1, 10));
        assert!(slots.try_start("ns/a", 1, 10), "a holder may ask again");
        assert!(slots.try_start("ns/b", 2, 10));
        assert!(!slots.try_start("ns/c", 3, 10));
        assert!(!slots.try_start("ns/c", 3, 11));
        assert_eq!((slots.running(), slots.waiting(), slots.limit()), (2, 1, 2));
        assert_eq!(slots.finish("ns/a"), ["ns/c"]);
        assert!(slots.try_start("ns/c", 3, 12));
        assert_eq!((slots.running(), slots.waiting()), (2, 0));
        slots.mark_running("ns/d");
        assert_eq!(slots.running(), 3, "found running beyond the limit");
        assert!(!slots.try_start("ns/e", 4, 12));
        assert!(slots.finish("ns/e").is_empty(), "no slot is free");
        assert_eq!(slots.waiting(), 0);
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_request() {
        let mut slots = BuildSlots::new(1);
        assert!(slots.try_start("ns/running", 0, 100));
        // Asked in this order of time, but reconciled in another.
        assert!(!slots.try_start("ns/late", 30, 100));
        assert!(!slots.try_start("ns/early", 10, 100));
        assert!(!slots.try_start("ns/tie-b", 20, 100));
        assert!(!slots.try_start("ns/tie-a", 20, 100));
        assert_eq!(slots.finish("ns/running"), ["ns/early"]);
        // A younger waiter that asks first does not jump the queue.
        assert!(!slots.try_start("ns/late", 30, 101));
        assert!(slots.try_start("ns/early", 10, 101));
        assert_eq!(slots.finish("ns/early"), ["ns/tie-a"]);
        assert!(slots.try_start("ns/tie-a", 20, 102));
        assert_eq!(slots.finish("ns/tie-a"), ["ns/tie-b"]);
    }

    #[test]
    fn run_ahead_starts_builds_beyond_the_limit_in_order() {
        let mut slots = BuildSlots::new(2).with_run_ahead(2);
        for (i, key) in ["ns/a", "ns/b", "ns/c", "ns/d"].into_iter().enumerate() {
            assert!(
                slots.try_start(key, i as i64, 0),
                "{key} runs or waits in the backend"
            );
        }
        assert!(!slots.try_start("ns/e", 4, 0));
        assert!(!slots.try_start("ns/f", 5, 0));
        assert_eq!(
            (slots.running(), slots.waiting()),
            (4, 2),
            "two run, two wait in the backend"
        );
        assert_eq!(slots.finish("ns/a"), ["ns/e"]);
        assert!(slots.try_start("ns/e", 4, 1));
        assert!(!slots.try_start("ns/f", 5, 1));
    }

    #[test]
    fn waiters_that_stop_asking_lose_their_place() {
        let mut slots = BuildSlots::new(1);
        slots.mark_running("ns/busy");
        assert!(!slots.try_start("ns/gone", 0, 0));
        slots.finish("ns/busy");
        assert!(
            !slots.try_start("ns/next", 5, 10),
            "the older waiter keeps its place while it may still ask"
        );
        assert!(slots.try_start("ns/next", 5, 10 + STALE_WAITER_SECONDS + 1));
    }

    #[test]
    fn several_free_slots_go_to_as_many_waiters() {
        let mut slots = BuildSlots::new(3);
        for key in ["ns/a", "ns/b", "ns/c"] {
            slots.mark_running(key);
        }
        for (i, key) in ["ns/x", "ns/y", "ns/z"].into_iter().enumerate() {
            assert!(!slots.try_start(key, i as i64, 0));
        }
        slots.finish("ns/a");
        assert_eq!(slots.finish("ns/b"), ["ns/x", "ns/y"]);
        assert!(
            slots.try_start("ns/y", 1, 1),
            "second in line, two slots free"
        );
        assert!(slots.try_start("ns/x", 0, 1));
        assert!(!slots.try_start("ns/z", 2, 1));
    }
}
