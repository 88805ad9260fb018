//! The `boot` layer: booting a Linux kernel image directly (shares `vm`). For now it holds the
//! bzImage setup-header parser and the boot-protocol checks that `trapbox inspect` reports and
//! that the boot path will refuse kernels with; the boot itself is not built yet.

#![forbid(unsafe_code)]

pub mod bzimage;

pub use bzimage::{BootError, BzImage};
