//! Where the kernels' parallel passes run, and how they stop early.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

/// Set when a caller cancels; kernels poll it at [`checkpoint`]s.
static CANCELLED: AtomicBool = AtomicBool::new(false);
/// Calls in flight; the flag is cleared when the last one ends.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The payload a cancelled kernel unwinds with (`std::panic::resume_unwind`,
/// so no panic message is printed). Catch it with `catch_unwind` around the
/// kernel call.
#[derive(Debug)]
pub struct Cancelled;

/// One cancellable kernel call, held for its duration. Cancelling is
/// process-wide: [`Cancellation::cancel`] stops every call in flight (each
/// unwinds with [`Cancelled`]); the flag clears when the last call ends.
pub struct Cancellation(());

impl Cancellation {
    /// Registers a call in flight.
    pub fn enter() -> Self {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Cancellation(())
    }

    /// Asks every kernel in flight to stop at its next checkpoint.
    pub fn cancel(&self) {
        CANCELLED.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cancellation {
    fn drop(&mut self) {
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            CANCELLED.store(false, Ordering::SeqCst);
        }
    }
}

/// Unwinds with [`Cancelled`] when a cancel was requested. Kernels call it
/// once per tile, block or row (a relaxed load: free next to the work),
/// in parallel loops marked `panic_fuse()`, so that after the first
/// unwind the other workers skip their remaining items instead of each
/// unwinding in turn (hundreds of unwinds took seconds on a loaded machine).
#[inline]
pub(crate) fn checkpoint() {
    if CANCELLED.load(Ordering::Relaxed) {
        std::panic::resume_unwind(Box::new(Cancelled));
    }
}

/// Kernels of at most this many multiply-adds run on the calling thread:
/// below it, waking the pool's workers (and their spinning afterwards on a
/// 2-core machine) costs more than the second core gains.
const SERIAL_WORK: usize = 1 << 24;

/// Whether a kernel of `work` multiply-adds runs in parallel.
pub(crate) fn worth_parallel(work: usize) -> bool {
    work > SERIAL_WORK
}

/// Runs `f` on a worker of rayon's global pool when `parallel`, else here.
/// A kernel makes several parallel passes; started from a thread outside
/// the pool, each would hand its work over and block the caller (two
/// wake-ups per pass). From inside, the caller hands over once.
pub(crate) fn on_pool<R: Send>(parallel: bool, f: impl FnOnce() -> R + Send) -> R {
    if parallel {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// `(0..n).map(f)` collected, in parallel when `parallel`.
pub(crate) fn map_range<R: Send>(
    parallel: bool,
    n: usize,
    f: impl Fn(usize) -> R + Sync + Send,
) -> Vec<R> {
    let f = |i| {
        checkpoint();
        f(i)
    };
    if parallel {
        (0..n).into_par_iter().panic_fuse().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// A stride for visiting `0..n` in a fixed scattered order (`k * stride %
/// n`): the largest at most `3n / 5` that is coprime with `n` (1 if none).
pub(crate) fn scattered_stride(n: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    (1..=n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s * 5 <= n * 3)
        .unwrap_or(1)
}
