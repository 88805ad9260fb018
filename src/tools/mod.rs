//! Tools built on the trap API: each is a handler (or a driver around one). They use only
//! the public trap API and the ABI table; nothing here reaches into `vm`.

#![forbid(unsafe_code)]

pub mod record;
pub mod trace;
