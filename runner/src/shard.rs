//! Shards: `runner run --shard I/N` runs the part of the selected cases whose name falls in
//! shard I of N, so N machines (or N CI jobs) share one kernel's suite; `runner merge`
//! ([`crate::merge`]) puts the N reports back together.
//!
//! A case's shard is `SHA-256(case name)` read as a big-endian integer (its first eight bytes)
//! modulo N, plus one. It depends on the name and N only: not on the filter, the skips, their
//! order, the order the case binary lists its cases in, or the other cases of the binary. A
//! case added to the table lands in one shard and moves no other case; the price is balance
//! by chance rather than by construction (the 1211 cases of wait-pid-6.12 fall 413, 407 and
//! 391 into 3 shards).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gate::{self, SnapshotOutcome};
use crate::report::RunResults;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The scheme results.json names, so a merge can refuse shards cut another way.
pub const SCHEME: &str = "sha256(name) mod N";

impl Shard {
    /// The shard a case name falls in (1-based) when the cases are cut into `count` shards.
    pub fn of(name: &str, count: u32) -> u32 {
        let d = Sha256::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(first) % u64::from(count)) as u32 + 1
    }

    pub fn contains(&self, name: &str) -> bool {
        Shard::of(name, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// clap's value parser for `--shard I/N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 1/3 (shard I of N, 1-based)"))?;
    let num = |what: &str, v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?}: {what} {v:?} is not a whole number"))
    };
    let (index, count) = (num("shard", i)?, num("shard count", n)?);
    if count == 0 {
        return Err(format!("{s:?}: the shard count must be at least 1"));
    }
    if index == 0 || index > count {
        return Err(format!(
            "{s:?}: shards are numbered 1 to {count} (1-based), not {index}"
        ));
    }
    Ok(Shard { index, count })
}

/// What a shard's results.json records about its part of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    pub count: u32,
    pub scheme: String,
    /// Cases selected (filter and skips) before the cut, over all shards.
    pub selected: usize,
    /// SHA-256 of the selected names, sorted, one a line: shards of one selection agree on it.
    pub selection_sha256: String,
    /// This shard's cases.
    pub cases: usize,
}

impl ShardRecord {
    /// The record of `shard` for the selection `selected` (any order).
    pub fn new(shard: Shard, selected: &[String]) -> ShardRecord {
        let mut sorted: Vec<&str> = selected.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut h = Sha256::new();
        for n in &sorted {
            h.update(n.as_bytes());
            h.update(b"\n");
        }
        ShardRecord {
            index: shard.index,
            count: shard.count,
            scheme: SCHEME.into(),
            selected: selected.len(),
            selection_sha256: format!("{:x}", h.finalize()),
            cases: selected.iter().filter(|n| shard.contains(n)).count(),
        }
    }

    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }
}

/// The snapshot gate of a run. A shard's matrix is compared with its part of the reviewed
/// snapshot: the rows of its own cases, the `environment::` rows, and the `console::` rows it
/// found itself (a kernel warning another shard provoked is not this shard's to miss; a new
/// one it provoked is a difference). Anything else (an unsharded or a merged run) is compared
/// whole, and may be accepted.
pub fn gate_snapshot(snapshots: &Path, results: &RunResults, accept: bool) -> SnapshotOutcome {
    let matrix = results.matrix();
    let profile = &results.environment.profile;
    let shard = match &results.shard {
        Some(rec) if results.merged_from.is_empty() => rec.shard(),
        _ => return gate::check_snapshot(snapshots, profile, &matrix, accept),
    };
    let row_name = |line: &str| line.rsplit_once(": ").map_or(line, |(n, _)| n).to_owned();
    let found: BTreeSet<String> = matrix
        .lines()
        .map(row_name)
        .filter(|n| n.starts_with("console::"))
        .collect();
    gate::check_snapshot_part(snapshots, profile, &matrix, |line| {
        let name = row_name(line);
        if name.starts_with("environment::") {
            true
        } else if name.starts_with("console::") {
            found.contains(&name)
        } else {
            shard.contains(&name)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_takes_i_of_n_and_explains_the_rest() {
        assert_eq!(parse_shard("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(parse_shard("1/1"), Ok(Shard { index: 1, count: 1 }));
        for (bad, says) in [
            ("0/3", "numbered 1 to 3"),
            ("4/3", "numbered 1 to 3"),
            ("1/0", "at least 1"),
            ("3", "expected I/N"),
            ("a/3", "not a whole number"),
            ("1/-2", "not a whole number"),
            ("", "expected I/N"),
        ] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn every_name_is_in_exactly_one_shard_whatever_the_order() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("g{}::case{i}::hidden", i % 7))
            .collect();
        for count in [1, 2, 3, 5] {
            let mut seen = vec![0usize; names.len()];
            for index in 1..=count {
                let s = Shard { index, count };
                for (k, n) in names.iter().enumerate() {
                    if s.contains(n) {
                        seen[k] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "count {count}");
        }
        let mut reversed = names.clone();
        reversed.reverse();
        let a = ShardRecord::new(Shard { index: 2, count: 3 }, &names);
        let b = ShardRecord::new(Shard { index: 2, count: 3 }, &reversed);
        assert_eq!(a, b, "the record does not depend on the listing order");
        assert!(a.cases > 60 && a.cases < 140, "{a:?}");
    }

    #[test]
    fn the_cut_is_pinned() {
        // The scheme is part of the report format: shards run by different runner builds
        // must agree, so these values may not change.
        assert_eq!(Shard::of("generic::wait4::exited::hidden", 3), 3);
        assert_eq!(Shard::of("focused::waitid_pidfd::exited::plain", 3), 1);
        assert_eq!(Shard::of("anything", 1), 1);
    }
}
