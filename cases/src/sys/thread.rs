//! Calls about the calling thread or process's credentials the rows make:
//! its thread id, root or not, no_new_privs, dropping capabilities, a
//! futex wait.
//!
//! All through rustix (it has each of them; nix lacks gettid's typed form
//! and the futex call).

use std::sync::atomic::AtomicU32;

use super::errno::Errno;

/// gettid(2).
pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether the effective uid is 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// prctl(PR_GET_NO_NEW_PRIVS).
pub fn no_new_privs() -> Result<bool, Errno> {
    rustix::thread::no_new_privs().map_err(Errno::from)
}

/// prctl(PR_SET_NO_NEW_PRIVS, `on`).
pub fn set_no_new_privs(on: bool) -> Result<(), Errno> {
    rustix::thread::set_no_new_privs(on).map_err(Errno::from)
}

/// capset(2) for this thread with empty effective, permitted and
/// inheritable sets.
pub fn drop_all_capabilities() -> Result<(), Errno> {
    use rustix::thread::{set_capabilities, CapabilitySet, CapabilitySets};
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    set_capabilities(None, none).map_err(Errno::from)
}

/// FUTEX_WAIT (shared, not FUTEX_PRIVATE: a wake from the kernel, such as
/// CLONE_CHILD_CLEARTID's, is a shared one) on `word` while it holds
/// `expected`, without a timeout.
pub fn futex_wait_shared(word: &AtomicU32, expected: u32) -> Result<(), Errno> {
    use rustix::thread::futex;
    futex::wait(word, futex::Flags::empty(), expected, None).map_err(Errno::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_id_is_the_pid_in_the_main_thread_only() {
        let main = std::thread::current().name() == Some("main");
        let other = std::thread::spawn(gettid).join().unwrap();
        assert_ne!(other, gettid());
        assert!(!main || gettid() == std::process::id() as i32);
    }

    #[test]
    fn a_futex_wait_on_a_changed_word_returns_at_once() {
        let w = AtomicU32::new(1);
        assert_eq!(futex_wait_shared(&w, 0), Err(Errno::EAGAIN));
    }
}
