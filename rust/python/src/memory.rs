//! Output sizes checked before any work: a result that cannot fit in the
//! memory available raises `MemoryError` at once instead of the process
//! being killed (or aborting on a failed allocation) minutes later.

use pyo3::exceptions::PyMemoryError;
use pyo3::PyResult;

/// Bytes the system can still give (`MemAvailable` of /proc/meminfo);
/// None where that is unknown (not Linux), and then nothing is checked.
fn available_bytes() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes the address-space limit (`ulimit -v`, the soft `Max address space`
/// of /proc/self/limits) still allows, after the process's current size;
/// None where there is no limit or it is unknown.
fn address_space_left() -> Option<u128> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft: u128 = line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?; // "unlimited" does not parse: no limit
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let size = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u128 = size.split_whitespace().nth(1)?.parse().ok()?;
    Some(soft.saturating_sub(kib * 1024))
}

/// Raises `MemoryError` when `count` items of `item_bytes` bytes each (the
/// output of `what`, plus its working copy) exceed the memory available.
pub(crate) fn check_output(what: &str, count: u128, item_bytes: u128) -> PyResult<()> {
    let need = count.saturating_mul(item_bytes);
    // A request beyond the address space fails whatever the system has.
    let limit = available_bytes()
        .unwrap_or(u128::MAX)
        .min(address_space_left().unwrap_or(u128::MAX))
        .min(isize::MAX as u128);
    if need > limit {
        return Err(PyMemoryError::new_err(format!(
            "{what} needs about {:.1} GiB but only {:.1} GiB of memory is available",
            need as f64 / 1024f64.powi(3),
            limit as f64 / 1024f64.powi(3),
        )));
    }
    Ok(())
}
