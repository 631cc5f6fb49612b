//! The case binary: the same entry as `cargo test -p cases --test conformance`,
//! as a standalone program a runner can copy into a VM.
fn main() {
    cases::harness::engine::main(cases::spec::all)
}
