//! One arbitrary clone3 call against model::clone3_verdict and the wait
//! visibility of its child (see cases/src/fuzzing/clone3.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(init: wait_conformance_fuzz::init(), |data: &[u8]| {
    wait_conformance_fuzz::clone3_one(data);
});
