//! The syscall layer: small typed wrappers, nothing above it touches raw
//! numbers. Each call goes through rustix where rustix has it, through nix
//! where rustix lacks it, and through libc only where neither has it; each
//! module says which and why. clone3 has no wrapper in rustix or nix.

pub mod announce;
pub mod clone;
pub mod errno;
pub mod io;
pub mod kcov;
pub mod pidfd;
pub mod pidfd_info;
pub mod proc;
pub mod process;
pub mod signal;
pub mod thread;
pub mod wait;

pub use errno::Errno;
