//! When to refresh, when to retry and whether a host may take one more request: the engine's
//! scheduling decisions, which live in the I/O-free `lanyard-schedule` crate so that the fleet
//! simulation (`make bench-fleet`) runs the very same functions with a virtual clock and seeded
//! draws. The engine feeds them the wall clock and real randomness; this module adds nothing.

pub use lanyard_schedule::*;
