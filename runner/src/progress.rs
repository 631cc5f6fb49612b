//! Progress lines on stderr (stdout carries the summary table), stamped with the seconds since
//! the runner started.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

thread_local! {
    /// What this thread works on (a profile, when `runner matrix` runs several VMs at once),
    /// printed after the time stamp.
    static LABEL: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Name this thread's progress lines (empty: no label).
pub fn set_label(label: &str) {
    LABEL.with(|l| *l.borrow_mut() = label.to_owned());
}

/// `" NAME"` for a labelled thread, else empty.
pub fn label() -> String {
    LABEL.with(|l| {
        let l = l.borrow();
        if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        }
    })
}

pub fn start() {
    START.get_or_init(Instant::now);
}

pub fn elapsed() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!(
            "[runner {:>7.1}s{}] {}",
            $crate::progress::elapsed(),
            $crate::progress::label(),
            format_args!($($arg)*)
        )
    };
}
