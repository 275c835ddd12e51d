//! Every kernel call goes through [`run`]: the kernel runs without the GIL,
//! a panic anywhere in it (rayon re-raises a worker's panic at the join)
//! becomes a `RuntimeError`, and Ctrl-C stops it within about 50 ms.
//!
//! Long calls run on a scoped thread while the calling thread checks
//! Python's signals every [`POLL`]; on a signal it asks the core to cancel
//! (`tripletcore_core::Cancellation`), waits for the workers to stop at
//! their next checkpoint and raises the signal's exception
//! (`KeyboardInterrupt`). Short calls run inline: a thread would cost more
//! than they take.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use rayon::prelude::*;
use tripletcore_core::{Cancellation, Cancelled};

/// Calls of at most this many multiply-adds (a few milliseconds) run inline.
const INLINE_WORK: usize = 1 << 22;
/// How often a long call checks Python's signals.
const POLL: Duration = Duration::from_millis(50);

type Payload = Box<dyn Any + Send + 'static>;

/// Runs the kernel `f` of about `work` multiply-adds for the entry point
/// `name`, without the GIL, mapping panics and signals to Python errors.
pub(crate) fn run<R: Send>(
    py: Python<'_>,
    name: &str,
    work: usize,
    f: impl FnOnce() -> R + Send,
) -> PyResult<R> {
    let forced = forced_panic(name);
    let call = Cancellation::enter();
    let body = move || {
        if forced {
            panic_in_worker();
        }
        f()
    };
    let (outcome, interrupted) = if work <= INLINE_WORK {
        (py.detach(|| catch_unwind(AssertUnwindSafe(body))), None)
    } else {
        py.detach(|| watched(body, &call))
    };
    if let Some(err) = interrupted {
        return Err(err);
    }
    outcome.map_err(|payload| internal_error(name, payload))
}

/// Runs `f` on a scoped thread; meanwhile checks Python's signals and, on
/// one, cancels the kernel and keeps the signal's error.
fn watched<R: Send>(
    f: impl FnOnce() -> R + Send,
    call: &Cancellation,
) -> (Result<R, Payload>, Option<PyErr>) {
    std::thread::scope(|s| {
        let (done, finished) = channel::<()>();
        let worker = s.spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let _ = done.send(());
            r
        });
        let mut interrupted = None;
        while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(POLL) {
            if interrupted.is_none() {
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    call.cancel();
                    interrupted = Some(e);
                }
            }
        }
        // The worker caught its own panic, so joining cannot fail.
        let outcome = worker.join().unwrap_or_else(Err);
        (outcome, interrupted)
    })
}

/// The `RuntimeError` for a panic, or `KeyboardInterrupt` for a kernel
/// stopped because another call was cancelled.
fn internal_error(name: &str, payload: Payload) -> PyErr {
    if payload.downcast_ref::<Cancelled>().is_some() {
        return PyKeyboardInterrupt::new_err("tripletcore: the computation was cancelled");
    }
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    PyRuntimeError::new_err(format!(
        "tripletcore: an internal error occurred in {name}: {message} (please report it)"
    ))
}

/// TEST ONLY: the entry point whose next calls panic ("*": every one).
static FORCED_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn forced_panic(name: &str) -> bool {
    let forced = FORCED_PANIC.lock().unwrap_or_else(|e| e.into_inner());
    forced.as_deref().is_some_and(|f| f == "*" || f == name)
}

/// A panic raised on a rayon worker and re-raised at the join, the way a
/// kernel's own would be.
fn panic_in_worker() {
    (0..4usize).into_par_iter().for_each(|i| {
        if i == 3 {
            panic!("forced panic (test hook _force_panic)");
        }
    });
}

/// TEST ONLY (tests/test_robustness.py): makes the entry point `name` of
/// `_core` (or every one, "*") panic inside a rayon worker until called
/// with None. Not part of the public API.
#[pyfunction]
#[pyo3(signature = (name))]
pub(crate) fn _force_panic(name: Option<String>) {
    *FORCED_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = name;
}
