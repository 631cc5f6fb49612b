//! KCOV: the kernel PCs a case's processes execute (`/sys/kernel/debug/kcov`,
//! Documentation/dev-tools/kcov.rst), for `runner coverage`.
//!
//! KCOV is per task: a task records only after it enabled a kcov fd itself,
//! and a child starts without coverage. So when `WAITCONF_KCOV_DIR` is set the
//! case process makes a pool of kcov buffers before its body runs (open,
//! `KCOV_INIT_TRACE`, a `MAP_SHARED` mapping each), enables slot 0 for itself,
//! and every child the syscall layer makes ([`super::clone`]'s child entry,
//! at any depth: the pool and its fds are inherited) claims the next free
//! slot and enables it for itself ([`enable_in_child`]). The buffers stay
//! mapped in the case process, so a child's PCs are there even after it was
//! killed; at the end the case process reads every claimed slot and writes
//! the case's unique PCs to `<dir>/<case>.json` ([`finish_case`]).
//!
//! What is not recorded: threads made with std::thread (not through the
//! syscall layer), children beyond the pool (counted in the file as
//! `unrecorded`), and PCs past a full buffer (counted as `overflowed`).
//!
//! Calls: the ioctls through rustix's `ioctl` (raw syscalls, no errno, so a
//! `CLONE_VM` child may make them), open through rustix, the mappings through
//! nix's `mmap` (this crate's nix already has `mman`; rustix's `mm` feature
//! would rebuild the runner's rustix too).
//!
//! With the variable unset nothing here runs but one atomic load per child.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use rustix::ioctl::{ioctl, opcode, IntegerSetter};

/// The KCOV device.
pub const DEVICE: &str = "/sys/kernel/debug/kcov";
/// Buffer words (one PC each, the first word is the count) of the case process's slot and of
/// the first children's: an exec, a pid namespace's teardown or a task's whole exit
/// (exit_notify() included, on the KCOV profile) fill 1 MiB.
const BIG_WORDS: usize = 1 << 20;
/// Slots with [`BIG_WORDS`]: the case process's and its first four children's.
const BIG_SLOTS: usize = 5;
/// Buffer words of every later child's slot.
const CHILD_WORDS: usize = 1 << 17;
/// The kcov fds are moved to this number and up.
const HIGH_FD: i32 = 512;
/// Slots: the case process's and its descendants'.
pub const SLOTS: usize = 24;

/// `KCOV_INIT_TRACE`: `_IOR('c', 1, unsigned long)`, the size passed by value.
const INIT_TRACE: rustix::ioctl::Opcode = opcode::read::<u64>(b'c', 1);
/// `KCOV_ENABLE`: `_IO('c', 100)`, the mode by value.
const ENABLE: rustix::ioctl::Opcode = opcode::none(b'c', 100);
/// `KCOV_DISABLE`: `_IO('c', 101)`.
const DISABLE: rustix::ioctl::Opcode = opcode::none(b'c', 101);
/// `KCOV_TRACE_PC`: record the PC of every basic block.
const TRACE_PC: usize = 0;

/// The pool, in a shared anonymous mapping so the claim counter is one
/// counter for the whole process tree.
#[repr(C)]
struct Pool {
    /// The next slot to claim (may run past SLOTS: those children are unrecorded).
    next: AtomicU32,
    /// Children whose `KCOV_ENABLE` failed.
    failed: AtomicU32,
    fds: [i32; SLOTS],
    areas: [usize; SLOTS],
    words: [usize; SLOTS],
}

static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

/// Whether this kernel can record coverage, else why not.
pub fn available() -> Result<(), String> {
    match std::fs::metadata(DEVICE) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{DEVICE}: {e} (a kernel without CONFIG_KCOV, or debugfs not mounted)"
        )),
    }
}

/// `ioctl(fd, op, value)` on a kcov fd, raw.
fn kcov_ioctl<const OP: rustix::ioctl::Opcode>(fd: i32, value: usize) -> bool {
    // SAFETY: fd is a kcov fd of the pool (open in this process, or closed,
    // which gives EBADF); the three kcov ioctls take an integer by value, in
    // range: a word count, a mode, or nothing.
    unsafe {
        let fd = BorrowedFd::borrow_raw(fd);
        ioctl(fd, IntegerSetter::<OP>::new_usize(value)).is_ok()
    }
}

/// One kcov fd with a buffer of `words` words mapped: (fd, address).
fn make_slot(words: usize) -> Result<(i32, usize), String> {
    let fd = rustix::fs::open(
        DEVICE,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open {DEVICE}: {e}"))?;
    // Far above the fds a case uses, so that rows which look at fd numbers see what they see
    // without coverage.
    let fd = rustix::io::fcntl_dupfd_cloexec(&fd, HIGH_FD).map_err(|e| format!("F_DUPFD: {e}"))?;
    if !kcov_ioctl::<INIT_TRACE>(fd.as_raw_fd(), words) {
        return Err("KCOV_INIT_TRACE failed".into());
    }
    let len = NonZeroUsize::new(words * 8).expect("non-zero");
    // SAFETY: a fresh shared mapping of the kcov buffer (what kcov.rst
    // does); nothing else is at the address the kernel picks. It is never
    // unmapped: the case process exits after reading it.
    let area = unsafe {
        nix::sys::mman::mmap(
            None,
            len,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
            &fd,
            0,
        )
    }
    .map_err(|e| format!("mmap kcov: {e}"))?;
    // Children need the fd (to enable it) but not the mapping (the kernel writes the buffer
    // through its own address): without MADV_DONTFORK every fork of a recording task copies
    // the buffers' page table entries and every exit or failed fork zaps them, recorded PCs
    // both (about 500,000 per fork with 59 MiB of buffers), which filled the buffers.
    // SAFETY: the mapping just made, whole.
    unsafe { nix::sys::mman::madvise(area, words * 8, nix::sys::mman::MmapAdvise::MADV_DONTFORK) }
        .map_err(|e| format!("madvise(MADV_DONTFORK) kcov: {e}"))?;
    Ok((fd.into_raw_fd(), area.as_ptr() as usize))
}

/// In the case process, before its body: when `WAITCONF_KCOV_DIR` is set
/// and the device is there, make the pool and start recording this process.
/// Returns whether coverage is on.
pub fn begin_case() -> bool {
    if std::env::var_os(protocol::env::WAITCONF_KCOV_DIR).is_none() || available().is_err() {
        return false;
    }
    match make_pool() {
        Ok(pool) => {
            POOL.store(pool, Ordering::SeqCst);
            // SAFETY: the pool was just made and is never unmapped.
            let p = unsafe { &*pool };
            p.next.store(1, Ordering::SeqCst);
            kcov_ioctl::<ENABLE>(p.fds[0], TRACE_PC)
        }
        Err(e) => {
            eprintln!("kcov: off for this case: {e}");
            false
        }
    }
}

fn make_pool() -> Result<*mut Pool, String> {
    let len = NonZeroUsize::new(std::mem::size_of::<Pool>()).expect("non-zero");
    // SAFETY: a fresh anonymous shared mapping, zero-filled (a valid Pool:
    // counters 0, fds and addresses filled below before anyone reads them).
    let mem = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            len,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
        )
    }
    .map_err(|e| format!("mmap pool: {e}"))?;
    let pool = mem.as_ptr() as *mut Pool;
    // SAFETY: this process's own fresh mapping; no child exists yet.
    let p = unsafe { &mut *pool };
    for i in 0..SLOTS {
        let words = if i < BIG_SLOTS {
            BIG_WORDS
        } else {
            CHILD_WORDS
        };
        let (fd, area) = make_slot(words)?;
        p.fds[i] = fd;
        p.areas[i] = area;
        p.words[i] = words;
    }
    Ok(pool)
}

/// First thing in every child the syscall layer makes: claim a slot and
/// record this task into it. Raw syscalls and atomics only (a `CLONE_VM`
/// child runs this too).
pub fn enable_in_child() {
    let pool = POOL.load(Ordering::Relaxed);
    if pool.is_null() {
        return;
    }
    // SAFETY: a non-null POOL points at the pool mapping, inherited (fork) or
    // shared (CLONE_VM), never unmapped.
    let p = unsafe { &*pool };
    let i = p.next.fetch_add(1, Ordering::SeqCst) as usize;
    if i < SLOTS && !kcov_ioctl::<ENABLE>(p.fds[i], TRACE_PC) {
        p.failed.fetch_add(1, Ordering::SeqCst);
    }
}

/// The PC count (repeats included) each of the first `claimed` slots holds.
fn counts(p: &Pool, claimed: usize) -> Vec<u64> {
    (0..claimed.min(SLOTS))
        // SAFETY: word 0 of slot i's mapped buffer (see for_each_pc).
        .map(|i| unsafe { std::ptr::read_volatile(p.areas[i] as *const u64) })
        .collect()
}

/// Calls `f` with every PC (repeats included) of the first `claimed` slots;
/// returns how many of those buffers are full.
fn for_each_pc(p: &Pool, claimed: usize, f: &mut dyn FnMut(u64)) -> usize {
    let mut overflowed = 0;
    for i in 0..claimed.min(SLOTS) {
        let area = p.areas[i] as *const u64;
        // SAFETY: slot i's buffer, mapped with p.words[i] words; the kernel
        // writes it concurrently while a recording task still runs, so every
        // word is read volatile and the count is clamped to the buffer.
        let n = unsafe { std::ptr::read_volatile(area) } as usize;
        if n >= p.words[i] - 1 {
            overflowed += 1;
        }
        for k in 1..=n.min(p.words[i] - 1) {
            // SAFETY: k is inside the mapping (see above).
            f(unsafe { std::ptr::read_volatile(area.add(k)) });
        }
    }
    overflowed
}

/// Slots claimed before the first fuzz input (the fuzzing process's own and
/// the long-lived worker's): kept across inputs.
static PERSISTENT: AtomicU32 = AtomicU32::new(0);

/// A fuzz campaign's process, before the worker is made: with
/// `WAITCONF_KCOV_FUZZ` set and the device there, make the pool and record
/// the calling thread. Returns whether coverage is on, or why not.
pub fn fuzz_begin() -> Result<bool, String> {
    if std::env::var_os(protocol::env::WAITCONF_KCOV_FUZZ).is_none() {
        return Ok(false);
    }
    available()?;
    let pool = make_pool()?;
    POOL.store(pool, Ordering::SeqCst);
    // SAFETY: the pool was just made and is never unmapped.
    let p = unsafe { &*pool };
    p.next.store(1, Ordering::SeqCst);
    if kcov_ioctl::<ENABLE>(p.fds[0], TRACE_PC) {
        Ok(true)
    } else {
        Err("KCOV_ENABLE failed".into())
    }
}

/// Before one fuzz input: empty every buffer and free the slots of the
/// previous input's tasks (all gone by now: the executors reap them).
pub fn input_begin() {
    let pool = POOL.load(Ordering::SeqCst);
    if pool.is_null() {
        return;
    }
    // SAFETY: as in enable_in_child.
    let p = unsafe { &*pool };
    if PERSISTENT.load(Ordering::SeqCst) == 0 {
        PERSISTENT.store(p.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    for i in 0..SLOTS {
        // SAFETY: word 0 of slot i's buffer (the count), which kcov.rst
        // resets the same way while recording.
        unsafe { std::ptr::write_volatile(p.areas[i] as *mut u64, 0) };
    }
    p.next
        .store(PERSISTENT.load(Ordering::SeqCst), Ordering::SeqCst);
    p.failed.store(0, Ordering::SeqCst);
}

/// After one fuzz input: every PC its tasks recorded (repeats included), and
/// (tasks not recorded, full buffers).
pub fn input_pcs(f: &mut dyn FnMut(u64)) -> (usize, usize) {
    let pool = POOL.load(Ordering::SeqCst);
    if pool.is_null() {
        return (0, 0);
    }
    // SAFETY: as in enable_in_child.
    let p = unsafe { &*pool };
    let claimed = p.next.load(Ordering::SeqCst) as usize;
    let full = for_each_pc(p, claimed, f);
    let lost = claimed.saturating_sub(SLOTS) + p.failed.load(Ordering::SeqCst) as usize;
    (lost, full)
}

/// What one case recorded.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
pub struct CaseCoverage {
    pub case: String,
    /// Tasks that recorded (the case process and its children).
    pub tasks: usize,
    /// Children beyond the pool or whose enable failed: not recorded.
    pub unrecorded: usize,
    /// Tasks whose buffer filled up (PCs after that are lost).
    pub overflowed: usize,
    /// PCs recorded per task, repeats included (slot order: the case process first).
    #[serde(default)]
    pub recorded: Vec<u64>,
    /// Unique PCs, ascending.
    pub pcs: Vec<u64>,
}

/// In the case process, after the body and the leak check: stop recording
/// and write the case's PCs. A no-op when coverage is off.
pub fn finish_case(case: &str) {
    let pool = POOL.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if pool.is_null() {
        return;
    }
    // SAFETY: as in enable_in_child.
    let p = unsafe { &*pool };
    kcov_ioctl::<DISABLE>(p.fds[0], 0);
    let claimed = p.next.load(Ordering::SeqCst) as usize;
    let failed = p.failed.load(Ordering::SeqCst) as usize;
    let recorded = counts(p, claimed);
    let mut pcs = BTreeSet::new();
    let overflowed = for_each_pc(p, claimed, &mut |pc| {
        pcs.insert(pc);
    });
    let rec = CaseCoverage {
        case: case.to_owned(),
        tasks: claimed.min(SLOTS) - failed.min(claimed.min(SLOTS)),
        unrecorded: claimed.saturating_sub(SLOTS) + failed,
        overflowed,
        recorded,
        pcs: pcs.into_iter().collect(),
    };
    let Some(dir) = std::env::var_os(protocol::env::WAITCONF_KCOV_DIR) else {
        return;
    };
    if let Err(e) = write_record(Path::new(&dir), &rec) {
        eprintln!("kcov: cannot write the coverage of {case}: {e}");
    }
}

/// The file a case's coverage goes to: its name with every character but
/// `[A-Za-z0-9_.-]` made `_`, and a hash of the name (two names that differ
/// only in those characters get two files).
pub fn file_name(case: &str) -> String {
    // FNV-1a, 32 bits.
    let hash = case.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let safe: String = case
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{hash:08x}.json")
}

fn write_record(dir: &Path, rec: &CaseCoverage) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(rec)?)?;
    std::fs::rename(tmp, dir.join(file_name(&rec.case)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_uapi_ones() {
        // include/uapi/linux/kcov.h on x86_64.
        assert_eq!(INIT_TRACE, 0x8008_6301);
        assert_eq!(ENABLE, 0x6364);
        assert_eq!(DISABLE, 0x6365);
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        let a = file_name("generic::wait4(-1) hides");
        assert!(
            a.starts_with("generic__wait4_-1__hides-") && a.ends_with(".json"),
            "{a}"
        );
        assert_ne!(a, file_name("generic::wait4[-1] hides"));
        assert_eq!(a, file_name("generic::wait4(-1) hides"));
    }

    #[test]
    fn nothing_happens_without_a_pool() {
        // No WAITCONF_KCOV_DIR in the test environment: a child's hook and
        // the end of a case are no-ops.
        assert!(POOL.load(Ordering::SeqCst).is_null());
        enable_in_child();
        finish_case("x");
        assert!(POOL.load(Ordering::SeqCst).is_null());
    }
}
