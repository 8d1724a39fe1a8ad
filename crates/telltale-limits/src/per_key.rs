//! A cap on what one key holds at once: connections per client address,
//! watches and sockets per API token. Taking a count returns a guard that
//! gives it back when dropped, so a count cannot leak on an early return.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Counts held per key, each at most `max` at once.
#[derive(Debug)]
pub struct PerKey<K: Hash + Eq + Clone> {
    /// The most one key may hold.
    max: usize,
    /// What each key holds now; a key that holds nothing is not in it, so
    /// the map stays as small as the set of keys holding something.
    counts: Mutex<HashMap<K, usize>>,
}

/// One count of a [`PerKey`], given back on drop.
#[derive(Debug)]
pub struct KeyGuard<K: Hash + Eq + Clone> {
    /// The cap it was taken from.
    of: Arc<PerKey<K>>,
    /// The key it counts for.
    key: K,
}

impl<K: Hash + Eq + Clone> PerKey<K> {
    /// A cap of `max` per key.
    pub fn new(max: usize) -> Arc<PerKey<K>> {
        Arc::new(PerKey {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one count of `key`, unless it holds `max` already.
    pub fn try_take(self: &Arc<Self>, key: &K) -> Option<KeyGuard<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            if *n == 0 {
                counts.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(KeyGuard {
            of: self.clone(),
            key: key.clone(),
        })
    }

    /// Counts held now by `key`.
    pub fn held(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }

    /// Keys holding a count now.
    pub fn keys(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        let mut counts = self.of.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn per_key_counts_are_given_back() {
        let p = PerKey::new(2);
        let a = p.try_take(&"t".to_owned()).expect("first");
        let _b = p.try_take(&"t".to_owned()).expect("second");
        assert!(p.try_take(&"t".to_owned()).is_none());
        assert!(p.try_take(&"u".to_owned()).is_some());
        drop(a);
        assert_eq!(p.held(&"t".to_owned()), 1);
        assert!(p.try_take(&"t".to_owned()).is_some());
    }

    #[test]
    fn slots_are_counted_per_address_and_given_back() {
        let counts = PerKey::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let s1 = counts.try_take(&a).expect("first");
        let s2 = counts.try_take(&a).expect("second");
        assert!(counts.try_take(&a).is_none(), "over the cap");
        let s3 = counts.try_take(&b).expect("another address");
        drop(s1);
        let s4 = counts.try_take(&a).expect("a slot came back");
        drop((s2, s3, s4));
        assert_eq!(counts.keys(), 0, "no address is left holding nothing");
        // A cap of 0 refuses and keeps nothing.
        let none = PerKey::new(0);
        assert!(none.try_take(&a).is_none());
        assert_eq!(none.keys(), 0);
    }
}
