//! A short process-tree program against the stateful tree model (see
//! cases/src/fuzzing/tree.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(init: wait_conformance_fuzz::init(), |data: &[u8]| {
    wait_conformance_fuzz::wait_sequence_one(data);
});
