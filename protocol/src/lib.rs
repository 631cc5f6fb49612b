//! The protocol between the case binary (`cases`), the fuzz targets (`fuzz/`) and the runner
//! (`runner`): one definition of each word they exchange.
//!
//! - [`Status`]: the closed vocabulary of case outcomes;
//! - [`record`]: the JSON lines the case binary appends to `$WAITCONF_REPORT` (and prints with
//!   `--probe`), written by the cases and read, tolerantly, by the runner;
//! - [`env`]: the names of the environment variables that configure a run;
//! - [`bit`]: the `CLONE_WAIT_PID_FLAG` grammar (`0x...`, decimal, `bit:N`);
//! - [`flags`]: the clone flag bits, their names, and the clone3-only bits mainline gave a
//!   meaning.
//!
//! Nothing here touches the kernel: it is plain data, shared so that a reader and a writer can
//! never disagree about a spelling.

pub mod bit;
pub mod env;
pub mod flags;
pub mod record;

mod status;

pub use record::{CaseRecord, EnvRecord, Line, Record};
pub use status::Status;
