//! `certinel run` as a library: the scheduler, the state it fills and the HTTP server that
//! reads it, tied together with reloads and graceful shutdown.

pub mod scheduler;
pub mod state;
