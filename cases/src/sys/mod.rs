//! The syscall layer: small typed wrappers, nothing above it touches raw
//! numbers. clone3 has no wrapper in rustix or nix; the wait family and
//! pidfds use them where they cover the call.

pub mod announce;
pub mod clone;
pub mod errno;
pub mod pidfd;
pub mod pidfd_info;
pub mod proc;
pub mod wait;

pub use errno::Errno;
