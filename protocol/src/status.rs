//! LTP's closed vocabulary of case outcomes.

use serde::{Deserialize, Serialize};

/// The outcome of one case, as the case binary reports it (`"status"` of a case record).
/// Ordered pass < fail < skip < broken, the order tables list them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    Broken,
}

impl Status {
    /// Every status, in table order.
    pub const ALL: [Status; 4] = [Status::Pass, Status::Fail, Status::Skip, Status::Broken];

    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Broken => "broken",
        }
    }

    /// Position in [`Status::ALL`] (a column of a per-status count).
    pub fn index(self) -> usize {
        self as usize
    }

    /// A failure of the kernel (fail) or of the test (broken): what fails a strict run.
    pub fn is_bad(self) -> bool {
        matches!(self, Status::Fail | Status::Broken)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json() {
        for (i, s) in Status::ALL.into_iter().enumerate() {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
            assert_eq!(s.index(), i);
        }
        assert!(serde_json::from_str::<Status>("\"xfail\"").is_err());
    }

    #[test]
    fn bad_means_fail_or_broken() {
        let bad: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_bad()).collect();
        assert_eq!(bad, [Status::Fail, Status::Broken]);
    }
}
