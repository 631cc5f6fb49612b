//! Progress lines on stderr (stdout carries the summary table), stamped with the seconds since
//! the runner started.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

pub fn start() {
    START.get_or_init(Instant::now);
}

pub fn elapsed() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[runner {:>7.1}s] {}", $crate::progress::elapsed(), format_args!($($arg)*))
    };
}
