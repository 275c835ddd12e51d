//! Where the kernels' parallel passes run.

/// Runs `f` on a worker of rayon's global pool. A kernel makes several
/// parallel passes; started from a thread outside the pool, each would
/// hand its work over and block the caller (two wake-ups per pass). From
/// inside, the caller hands over once and the passes start locally.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
