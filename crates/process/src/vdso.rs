//! Installing trapbox's time vDSO ([`trapbox_vdso`]) in a guest's address space.

pub use trapbox_vdso::*;

use crate::host;
use crate::mem::AddressSpace;
use trapbox_vm::{MemoryError, MemoryMirror};

/// Errors installing trapbox's vDSO.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The image or its buffer could not be made.
    #[error(transparent)]
    Vdso(#[from] VdsoError),
    /// The guest's page tables could not take it.
    #[error("cannot map trapbox's vDSO into the guest: {0}")]
    Guest(#[from] MemoryError),
}

/// Maps trapbox's own vDSO (at `at`, or anywhere) into trapbox and the guest: image read and
/// execute, buffer read and write. Returns its base.
pub fn install(
    mem: &mut dyn MemoryMirror,
    aspace: &mut AddressSpace,
    at: Option<u64>,
    mode: TimeMode,
    alias: &TimeAlias,
) -> Result<u64, InstallError> {
    let base = match at {
        Some(a) if a.checked_add(SIZE).is_some_and(|e| aspace.is_free(a, e)) => a,
        Some(a) => return Err(VdsoError::AddressInUse(a).into()),
        None => aspace.find_free(SIZE, 4096, 0, u64::MAX).ok_or(InstallError::Vdso(VdsoError::AddressInUse(0)))?,
    };
    // SAFETY: `base` was found free in the guest's address space, which owns the arena.
    let base = unsafe { map(base, mode, alias) }?;
    let rx = libc::PROT_READ | libc::PROT_EXEC;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let inserted = aspace
        .insert(mem, base, IMAGE_SIZE, rx)
        .and_then(|_| aspace.insert(mem, base + IMAGE_SIZE, SIZE - IMAGE_SIZE, rw));
    if let Err(e) = inserted {
        let _ = aspace.remove(mem, base, SIZE);
        // SAFETY: the mapping `map` just made, no longer guest memory.
        unsafe { crate::arena::park(base, SIZE) };
        return Err(e.into());
    }
    // SAFETY: the image page was just filled; the host's view now matches the guest's.
    let _ = unsafe { host::mprotect(base, IMAGE_SIZE, rx) };
    Ok(base)
}
