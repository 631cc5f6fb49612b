//! Kernel coverage as fuzzing feedback (syzkaller's tools/kcovfuzzer.c, for these targets).
//!
//! With `WAITCONF_KCOV_FUZZ=DIR` on a KCOV kernel, the tasks of every input record their
//! kernel PCs (`cases::sys::kcov`: this process, the worker and every child either makes, each
//! into its own buffer). After the input each PC bumps one byte of
//! `__libfuzzer_extra_counters`, which libFuzzer treats as coverage next to its own (it clears
//! them before every input), so inputs reaching new kernel code are kept.
//! `WAITCONF_KCOV_FEEDBACK=0` records without feeding (the comparison campaign). Either way
//! the campaign's unique PCs go to `DIR/<target>.json` (every 30 s and at exit) for
//! `runner fuzz`'s kernel lines.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Extra counters: one byte per PC hash bucket.
const COUNTERS: usize = 1 << 16;

// libFuzzer finds this section through the linker's __start_/__stop_ symbols
// (FuzzerExtraCounters.cpp) and clears it before every input.
#[used]
#[link_section = "__libfuzzer_extra_counters"]
static mut EXTRA: [u8; COUNTERS] = [0; COUNTERS];

struct State {
    feedback: bool,
    dir: std::path::PathBuf,
    target: String,
    pcs: BTreeSet<u64>,
    inputs: u64,
    lost_tasks: u64,
    full_buffers: u64,
    written: Instant,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Start recording (before the worker exists, so it records too). Says once whether it is on.
pub fn start() {
    let Some(dir) = std::env::var_os(protocol::env::WAITCONF_KCOV_FUZZ) else {
        return;
    };
    match cases::sys::kcov::fuzz_begin() {
        Ok(true) => {}
        Ok(false) => return,
        Err(why) => {
            eprintln!("wait-conformance-fuzz: kernel coverage off: {why}");
            return;
        }
    }
    let feedback = std::env::var(protocol::env::WAITCONF_KCOV_FEEDBACK).as_deref() != Ok("0");
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "fuzz".into());
    eprintln!(
        "wait-conformance-fuzz: kernel coverage on (KCOV), {}; campaign PCs to {}",
        if feedback {
            "fed to libFuzzer as extra counters"
        } else {
            "recorded only (no feedback)"
        },
        std::path::Path::new(&dir).display()
    );
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        feedback,
        dir: dir.into(),
        target,
        pcs: BTreeSet::new(),
        inputs: 0,
        lost_tasks: 0,
        full_buffers: 0,
        written: Instant::now(),
    });
}

/// The bucket of a PC (a multiplicative hash: nearby PCs spread out).
pub fn bucket(pc: u64) -> usize {
    (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - COUNTERS.trailing_zeros())) as usize
}

/// One input's recording: begun when made, harvested when dropped (a finding's panic too).
pub struct Input(());

impl Input {
    pub fn begin() -> Input {
        cases::sys::kcov::input_begin();
        Input(())
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(st) = g.as_mut() else { return };
        let feedback = st.feedback;
        let pcs = &mut st.pcs;
        let (lost, full) = cases::sys::kcov::input_pcs(&mut |pc| {
            if feedback {
                let b = bucket(pc);
                // SAFETY: libFuzzer reads and clears EXTRA only between inputs, on this
                // thread (the one running the target); b < COUNTERS.
                unsafe {
                    let c = std::ptr::addr_of_mut!(EXTRA[b]);
                    *c = (*c).saturating_add(1);
                }
            }
            pcs.insert(pc);
        });
        st.inputs += 1;
        st.lost_tasks += lost as u64;
        st.full_buffers += full as u64;
        if st.written.elapsed() > Duration::from_secs(30) {
            write(st);
        }
    }
}

/// Write the campaign's PCs now (at exit).
pub fn flush() {
    if let Some(st) = STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        write(st);
    }
}

fn write(st: &mut State) {
    st.written = Instant::now();
    let rec = serde_json::json!({
        "case": st.target,
        "feedback": st.feedback,
        "inputs": st.inputs,
        "unrecorded": st.lost_tasks,
        "overflowed": st.full_buffers,
        "pcs": st.pcs,
    });
    let _ = std::fs::create_dir_all(&st.dir);
    let tmp = st.dir.join(format!(".{}.tmp", std::process::id()));
    if std::fs::write(&tmp, rec.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, st.dir.join(format!("{}.json", st.target)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_range_and_spread_neighbours() {
        let a = bucket(0xffff_ffff_8100_1006);
        let b = bucket(0xffff_ffff_8100_100b);
        assert!(a < COUNTERS && b < COUNTERS);
        assert_ne!(a, b);
    }
}
