//! A size-bounded cache, least recently used entries dropped first, for
//! what never changes once written: bloom shards and data-file footers of
//! blocks. What it guarantees: the entries' declared sizes never sum past
//! the budget; an entry larger than the whole budget is not kept.

use std::collections::HashMap;

/// A cache bounded in bytes, least recently used entries dropped first
/// (blocks never change, so nothing in it goes stale).
pub(super) struct SizedLru<K, V> {
    budget: usize,
    bytes: usize,
    tick: u64,
    /// Key to (value, size in bytes, when last used).
    entries: HashMap<K, (V, usize, u64)>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> SizedLru<K, V> {
    pub(super) fn new(budget: usize) -> Self {
        SizedLru {
            budget,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    pub(super) fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(key)?;
        entry.2 = tick;
        Some(entry.0.clone())
    }

    /// Keeps `value` unless it alone is over the budget.
    pub(super) fn insert(&mut self, key: K, value: V, size: usize) {
        if size > self.budget {
            return;
        }
        self.tick += 1;
        if let Some((_, old, _)) = self.entries.insert(key, (value, size, self.tick)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, size, _)) = self.entries.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_the_budget_dropping_the_least_recently_used() {
        let mut lru = SizedLru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3, 4);
        assert_eq!(lru.get(&"b"), None, "least recently used");
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("huge", 4, 11);
        assert_eq!(lru.get(&"huge"), None);
    }
}
