//! Physical memory through parkboot's identity map.

use core::sync::atomic::{AtomicU64, Ordering};
use parkboot::memory::FOUR_GIB;
use parkboot::platform::PhysicalMemory;

/// End of what the current page tables identity-map: the first 4 GiB until the
/// firmware map of all RAM is loaded.
static MAPPED_END: AtomicU64 = AtomicU64::new(FOUR_GIB);

/// Records the end of the identity map once the firmware map of all RAM is loaded.
pub fn set_mapped_end(end: u64) {
    MAPPED_END.store(end, Ordering::Relaxed);
}

/// Physical memory through the identity map.
pub struct Identity;

/// The one [`Identity`], for views of firmware memory that outlive a function (CBFS).
pub static IDENTITY: Identity = Identity;

impl PhysicalMemory for Identity {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if addr == 0 || end > MAPPED_END.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: identity-mapped; parkboot only reads firmware tables this way.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

/// Writes into regions of parkboot's memory map through the identity map: how the
/// library's hand-off preparation (`parkboot::kernels::*::prepare`) reaches RAM.
pub struct IdentityRegions;

// SAFETY: every region comes from parkboot's `MemoryMap` (reserved, hence usable RAM
// the firmware map identity-maps), and the slice lives only as long as the `&mut self`
// borrow: the preparation code writes one region at a time, into memory reserved for
// the boot it prepares, which nothing else (no other CPU) touches meanwhile.
unsafe impl parkboot::memory::region::RegionMemory for IdentityRegions {
    fn bytes(&mut self, region: parkboot::memory::region::Region) -> &mut [u8] {
        // SAFETY: as argued for the impl.
        unsafe { region.bytes_mut() }
    }
}
