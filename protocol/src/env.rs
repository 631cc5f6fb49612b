//! The environment variables that configure the case binary, the fuzz targets and the
//! campaign script, by name. Everyone spells them through these constants.

/// The CLONE_WAIT_PID bit of the kernel under test, in the [`crate::bit`] grammar.
pub const CLONE_WAIT_PID_FLAG: &str = "CLONE_WAIT_PID_FLAG";
/// Where the case binary appends its JSON-lines report ([`crate::record`]).
pub const WAITCONF_REPORT: &str = "WAITCONF_REPORT";
/// The probe's result, handed from the test process to each case process (JSON).
pub const WAITCONF_PROBE: &str = "WAITCONF_PROBE";
/// `fork` (the default: case processes come from the fork server) or `exec` (a re-exec of
/// the case binary per case).
pub const WAITCONF_SPAWN: &str = "WAITCONF_SPAWN";
/// A multiplier (a number >= 1, default 1) for every case's timeout, as LTP's LTP_TIMEOUT_MUL:
/// for slow machines (a loaded TCG guest re-executing a test binary over 9p).
pub const WAITCONF_TIMEOUT_MUL: &str = "WAITCONF_TIMEOUT_MUL";
/// `empty`: every case process is made and watched as in a run (the fork server, its isolation,
/// the announce channel, the leak check, the result line) but runs no body, and reports its case
/// skipped: the harness's own cost per case, measured by `runner bench` in one VM of its own.
/// Unset (or anything else): the bodies run.
pub const WAITCONF_BODIES: &str = "WAITCONF_BODIES";
/// The detail of every case a run with `WAITCONF_BODIES=empty` made (and ran no body in).
pub const NO_BODY_DETAIL: &str =
    "body not run (WAITCONF_BODIES=empty: the harness's own cost per case)";
/// `present` or `absent`: what `probe::feature::as_expected` holds the probe to.
pub const WAITCONF_EXPECT_FEATURE: &str = "WAITCONF_EXPECT_FEATURE";
/// `1` turns the switchable self-test rows' wrong expectation on.
pub const WAITCONF_SELFTEST_WRONG: &str = "WAITCONF_SELFTEST_WRONG";
/// `1` makes the switchable self-test row hang.
pub const WAITCONF_SELFTEST_HANG: &str = "WAITCONF_SELFTEST_HANG";
/// A directory: each case process records the kernel PCs it and its children execute (KCOV,
/// `/sys/kernel/debug/kcov`) and writes them to `<dir>/<case>.json` (`cases/src/sys/kcov.rs`).
pub const WAITCONF_KCOV_DIR: &str = "WAITCONF_KCOV_DIR";
/// A directory: the fuzz targets record the kernel PCs of every input (KCOV) and write the
/// campaign's unique PCs to `<dir>/<target>.json`.
pub const WAITCONF_KCOV_FUZZ: &str = "WAITCONF_KCOV_FUZZ";
/// `0`: record the kernel PCs (`WAITCONF_KCOV_FUZZ`) without feeding them to libFuzzer, for the
/// campaign without kernel feedback; anything else or unset: feed them as extra counters.
pub const WAITCONF_KCOV_FEEDBACK: &str = "WAITCONF_KCOV_FEEDBACK";
/// `1`: the fuzz targets may create namespaces and CLONE_VM children.
pub const WAIT_FUZZ_RISKY: &str = "WAIT_FUZZ_RISKY";
/// `seed` or `design`: the tree model's semantics where the seed is silent.
pub const WAIT_FUZZ_SEMANTICS: &str = "WAIT_FUZZ_SEMANTICS";
/// `0`: a fuzz target runs every input in its worker process instead of in process.
pub const WAIT_FUZZ_INPROCESS: &str = "WAIT_FUZZ_INPROCESS";
/// Where campaign.sh finds the fuzz binaries.
pub const FUZZ_BIN_DIR: &str = "FUZZ_BIN_DIR";
