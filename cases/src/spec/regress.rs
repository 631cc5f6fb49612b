//! Fuzzing findings, replayed: each file under `cases/regressions/` (made
//! by `wcfuzz regress`, embedded at build time) is one row, run in its own
//! case process like every other row and checked against the model.

use std::sync::Arc;

use crate::fuzzing::regression_cases;
use crate::harness::*;

pub fn cases() -> Vec<Case> {
    regression_cases()
        .into_iter()
        .map(|r| {
            let run = Arc::new(r.run);
            let c = Case::new(r.name, Source::Regression(r.source), move |ctx| {
                match run(&ctx.features) {
                    Ok(()) => Ok(()),
                    Err(d) if d.starts_with("TCONF:") => Err(Stop::Skip(
                        d.trim_start_matches("TCONF:").trim().to_string(),
                    )),
                    Err(d) => fail(d),
                }
            });
            if r.needs_feature {
                c.need(Need::Feature)
            } else {
                c
            }
        })
        .collect()
}
