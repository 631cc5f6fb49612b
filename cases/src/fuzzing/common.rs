//! Small pieces both fuzz oracles share: a serialisable mirror of the wait
//! outcome and wait-call names; the wait rules themselves (effective
//! options, how a reported event changes a child) are `model::tree`'s.

use serde::{Deserialize, Serialize};

use crate::model::{ChildView, Prediction};
use crate::sys::wait::{Event, WaitCall, WaitOpts, WaitOutcome};
use crate::sys::Errno;

/// [`WaitOutcome`], serialisable. Kept as its own type (the event is
/// [`Event`] itself): `Failed` carries the raw errno, so its `Debug` text
/// (`Failed(10)`, shown in wcfuzz output and harness messages) differs from
/// `WaitOutcome`'s (`Failed(ECHILD)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Out {
    Reported { pid: i32, event: Event },
    NothingReady,
    Failed(i32),
}

impl From<WaitOutcome> for Out {
    fn from(o: WaitOutcome) -> Out {
        match o {
            WaitOutcome::Reported { pid, event } => Out::Reported { pid, event },
            WaitOutcome::NothingReady => Out::NothingReady,
            WaitOutcome::Failed(e) => Out::Failed(e.0),
        }
    }
}

impl From<Out> for WaitOutcome {
    fn from(o: Out) -> WaitOutcome {
        match o {
            Out::Reported { pid, event } => WaitOutcome::Reported { pid, event },
            Out::NothingReady => WaitOutcome::NothingReady,
            Out::Failed(e) => WaitOutcome::Failed(Errno(e)),
        }
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&WaitOutcome::from(*self), f)
    }
}

/// Every wait call, generic ones first (index order is part of the input
/// encoding: do not reorder).
pub fn all_calls() -> [WaitCall; 13] {
    let mut v = [WaitCall::Wait; 13];
    for (i, c) in WaitCall::GENERIC
        .iter()
        .chain(WaitCall::FOCUSED.iter())
        .enumerate()
    {
        v[i] = *c;
    }
    v
}

/// A call from its stable id (`WaitCall::id`).
pub fn call_from_id(id: &str) -> Option<WaitCall> {
    all_calls().into_iter().find(|c| c.id() == id)
}

/// serde helper: a WaitCall travels as its id.
pub mod call_id {
    use super::*;
    pub fn serialize<S: serde::Serializer>(c: &WaitCall, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.id())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WaitCall, D::Error> {
        let s = String::deserialize(d)?;
        call_from_id(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown wait call {s:?}")))
    }
}

/// The options a call really passes: `wait()` takes none.
pub use crate::model::tree::effective_opts;

/// Whether `observed` is one of the predicted outcomes
/// (`model::tree::admits`).
pub fn matches(pred: &Prediction, observed: Out) -> bool {
    crate::model::tree::admits(pred, WaitOutcome::from(observed))
}

pub fn describe_prediction(p: &Prediction) -> String {
    match p {
        Prediction::Blocks => "blocks".into(),
        Prediction::OneOf(v) => v
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// How a wait that reported `observed` changes the caller's children
/// (`model::tree::wait_changes`).
pub fn apply_outcome(children: &mut Vec<ChildView>, opts: WaitOpts, observed: Out) {
    crate::model::tree::wait_changes(children, opts, WaitOutcome::from(observed))
}

/// One wait step against the model: its prediction (`model::tree::predict`).
pub use crate::model::tree::predict;

#[cfg(test)]
mod tests {
    use super::*;

    /// The observations travel as JSON between the executor and its worker:
    /// `Out` (with `Event` inside) keeps the form it had with its own event
    /// mirror.
    #[test]
    fn out_wire_form() {
        let cases = [
            (
                Out::Reported {
                    pid: 5,
                    event: Event::Exited(1),
                },
                r#"{"Reported":{"pid":5,"event":{"Exited":1}}}"#,
            ),
            (
                Out::Reported {
                    pid: 5,
                    event: Event::Continued,
                },
                r#"{"Reported":{"pid":5,"event":"Continued"}}"#,
            ),
            (Out::NothingReady, r#""NothingReady""#),
            (Out::Failed(10), r#"{"Failed":10}"#),
        ];
        for (o, json) in cases {
            assert_eq!(serde_json::to_string(&o).unwrap(), json);
            assert_eq!(serde_json::from_str::<Out>(json).unwrap(), o);
        }
        assert_eq!(
            format!(
                "{:?}",
                Out::Reported {
                    pid: 5,
                    event: Event::Killed(9)
                }
            ),
            "Reported { pid: 5, event: Killed(9) }"
        );
        assert_eq!(format!("{:?}", Out::Failed(10)), "Failed(10)");
    }
}
