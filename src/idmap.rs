//! Hash maps keyed by row ids (services, servers), with a cheap hash.

use std::collections::HashMap;
#[cfg(feature = "server")]
use std::collections::HashSet;
use std::hash::BuildHasherDefault;

/// Hashes the integer ids of SQLite rows with one multiplication. SipHash
/// (the default) guards against keys chosen to collide; these ids are
/// handed out by SQLite, not by clients, and this map is updated for every
/// service of every report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, n: i64) {
        // An odd multiplier spreads consecutive ids over the low bits
        // (hashbrown's bucket index) and the top bits (its tag) alike.
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by row id.
pub(crate) type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// A set of row ids.
#[cfg(feature = "server")]
pub(crate) type IdSet = HashSet<i64, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<IdHasher>::default();
        let tops: HashSet<u64> = (0..1024i64).map(|i| b.hash_one(i) >> 54).collect();
        assert!(tops.len() > 500, "{}", tops.len());
    }
}
