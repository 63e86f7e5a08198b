//! The random source the renewer draws from (the jitter of a renewal window, the moment
//! inside a suggested window): the thread's generator in production, a fixed or scripted
//! source in tests.

/// A source of random values.
pub trait RandomSource: Send + Sync {
    /// A value in [0, 1).
    fn draw(&self) -> f64;
}

/// The thread-local generator of the `rand` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn draw(&self) -> f64 {
        rand::random::<f64>()
    }
}
