//! The JSON lines of the case binary's report (`$WAITCONF_REPORT`): one [`EnvRecord`] first,
//! then one [`CaseRecord`] per case, each an object tagged by `"kind"`. The case binary also
//! prints the env record alone with `--probe`.
//!
//! Writing is strict (every field, in this order); reading is tolerant: a line of an unknown
//! kind is skipped (a newer case binary may say more), missing fields other than a case's name
//! and status take their defaults (an older one said less), and a line that is not a record at
//! all (a torn last line after a crash) is [`Line::Malformed`], not an error.

use serde::{Deserialize, Serialize};

use crate::Status;

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub duration_ms: u64,
    /// Where the row's expectation comes from: seed, documented, design, regression or
    /// selftest (absent from older case binaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

/// What the case binary's feature probe found on the kernel it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    #[serde(default)]
    pub kernel_release: String,
    /// The bit probed, `0x...`.
    #[serde(default)]
    pub clone_wait_pid_flag: String,
    /// `present` or `absent`.
    #[serde(default)]
    pub feature: String,
    /// Why absent, or why present.
    #[serde(default)]
    pub feature_reason: String,
    /// What the probe saw (deviations from the seed marked `unexpected:`); never a reason for
    /// "absent".
    #[serde(default)]
    pub feature_observed: String,
}

/// `feature` of an [`EnvRecord`] when the probe found CLONE_WAIT_PID.
pub const PRESENT: &str = "present";
/// `feature` of an [`EnvRecord`] when it did not.
pub const ABSENT: &str = "absent";

impl EnvRecord {
    pub fn present(&self) -> bool {
        self.feature == PRESENT
    }
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Env(EnvRecord),
    Case(CaseRecord),
}

impl Record {
    /// The line as written (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record is always serialisable")
    }
}

/// What one line of a report held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Record(Record),
    /// A JSON object of a kind this reader does not know: skipped.
    Unknown,
    /// Not JSON, or a known kind with fields missing or of the wrong type.
    Malformed,
}

/// Reads one line tolerantly (see the module's documentation). Blank lines are
/// [`Line::Unknown`].
pub fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Unknown;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return Line::Malformed;
    };
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("env" | "case") => serde_json::from_value(value).map_or(Line::Malformed, Line::Record),
        _ => Line::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> CaseRecord {
        CaseRecord {
            name: "generic::wait4::exited::hidden".into(),
            status: Status::Pass,
            detail: "ECHILD".into(),
            duration_ms: 3,
            provenance: Some("seed".into()),
        }
    }

    #[test]
    fn lines_are_written_kind_first_in_field_order() {
        assert_eq!(
            Record::Case(case()).to_line(),
            r#"{"kind":"case","name":"generic::wait4::exited::hidden","status":"pass","detail":"ECHILD","duration_ms":3,"provenance":"seed"}"#
        );
        let env = EnvRecord {
            kernel_release: "6.12.0".into(),
            clone_wait_pid_flag: "0x10000000000".into(),
            feature: PRESENT.into(),
            feature_reason: "the kernel knows bit 0x10000000000".into(),
            feature_observed: String::new(),
        };
        assert_eq!(
            Record::Env(env.clone()).to_line(),
            r#"{"kind":"env","kernel_release":"6.12.0","clone_wait_pid_flag":"0x10000000000","feature":"present","feature_reason":"the kernel knows bit 0x10000000000","feature_observed":""}"#
        );
        assert!(env.present());
    }

    #[test]
    fn written_lines_read_back() {
        let r = Record::Case(case());
        assert_eq!(parse_line(&r.to_line()), Line::Record(r));
        let e = Record::Env(EnvRecord {
            feature: ABSENT.into(),
            ..EnvRecord::default()
        });
        assert_eq!(parse_line(&e.to_line()), Line::Record(e));
    }

    #[test]
    fn reading_is_tolerant() {
        // An older case binary: no provenance, no duration, no observations.
        match parse_line(r#"{"kind":"case","name":"a::b","status":"skip"}"#) {
            Line::Record(Record::Case(c)) => {
                assert_eq!(
                    (c.name.as_str(), c.status, c.duration_ms, c.provenance),
                    ("a::b", Status::Skip, 0, None)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_line(r#"{"kind":"env","feature":"absent","feature_reason":"EINVAL","extra":1}"#)
        {
            Line::Record(Record::Env(e)) => assert_eq!(
                (e.feature.as_str(), e.feature_observed.as_str()),
                ("absent", "")
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_line(r#"{"kind":"timing","ms":5}"#), Line::Unknown);
        assert_eq!(parse_line("   "), Line::Unknown);
        assert_eq!(
            parse_line(r#"{"kind":"case","name":"a::b","sta"#),
            Line::Malformed
        );
        assert_eq!(
            parse_line(r#"{"kind":"case","name":"a::b","status":"xfail"}"#),
            Line::Malformed
        );
        assert_eq!(
            parse_line(r#"{"kind":"case","status":"pass"}"#),
            Line::Malformed
        );
    }
}
