//! Where a Linux kernel and its initrd go in parkboot's memory map, and the e820 table
//! a kernel is shown. Read-only over the map: the caller reserves what it picks.

use super::*;
use crate::memory::{align_down, KindName};

/// Calls `visit(lo, hi)` for each free extent of `memory` (usable RAM outside every
/// reservation), in ascending order. Read-only, so placing a kernel does not commit
/// parkboot to anything until the caller reserves.
fn for_each_free(memory: &MemoryMap, mut visit: impl FnMut(u64, u64)) {
    for region in memory.platform_regions() {
        if !region.kind.is_usable() {
            continue;
        }
        let end = region.end();
        let mut lo = region.start;
        // Reservations are sorted by start and disjoint.
        for r in memory.reservations() {
            if r.end() <= lo || r.start >= end {
                continue;
            }
            if r.start > lo {
                visit(lo, r.start);
            }
            lo = lo.max(r.end());
        }
        if lo < end {
            visit(lo, end);
        }
    }
}

/// The lowest `align`-aligned start of a free `size`-byte range inside `[min, max)`.
fn lowest_fit(memory: &MemoryMap, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
    let mut found = None;
    for_each_free(memory, |lo, hi| {
        if found.is_some() {
            return;
        }
        let (lo, hi) = (lo.max(min), hi.min(max));
        let Some(start) = align_up(lo, align) else {
            return;
        };
        if start.checked_add(size).is_some_and(|end| end <= hi) && memory.is_free(start, size) {
            found = Some(start);
        }
    });
    found
}

/// The highest `align`-aligned start of a free `size`-byte range inside `[min, max)`.
fn highest_fit(memory: &MemoryMap, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
    let mut found: Option<u64> = None;
    for_each_free(memory, |lo, hi| {
        let (lo, hi) = (lo.max(min), hi.min(max));
        let Some(top) = hi.checked_sub(size) else {
            return;
        };
        let start = align_down(top, align);
        if start >= lo && memory.is_free(start, size) && found.is_none_or(|f| start > f) {
            found = Some(start);
        }
    });
    found
}

/// The size of the largest free page-aligned extent inside `[min, max)`.
fn largest_free(memory: &MemoryMap, min: u64, max: u64) -> u64 {
    let mut largest = 0;
    for_each_free(memory, |lo, hi| {
        let Some(lo) = align_up(lo.max(min), PAGE_SIZE) else {
            return;
        };
        let hi = align_down(hi.min(max), PAGE_SIZE);
        if hi > lo {
            largest = largest.max(hi - lo);
        }
    });
    largest
}

/// The lowest thing in `[start, start + size)` that keeps the range from being free: a
/// reservation, a platform range that is not usable RAM, or a hole in the map.
fn find_conflict(memory: &MemoryMap, start: u64, size: u64) -> Conflict {
    let Some(end) = start.checked_add(size) else {
        return Conflict {
            what: "the end of the address space",
            start,
            end: u64::MAX,
        };
    };
    let mut lowest: Option<Conflict> = None;
    let mut consider = |c: Conflict| {
        if lowest.is_none_or(|l| c.start.max(start) < l.start.max(start)) {
            lowest = Some(c);
        }
    };
    for r in memory.reservations() {
        if r.start < end && start < r.end() {
            consider(Conflict {
                what: r.name,
                start: r.start,
                end: r.end(),
            });
        }
    }
    let mut cursor = start;
    for region in memory.platform_regions() {
        if region.end() <= cursor {
            continue;
        }
        if region.start >= end {
            break;
        }
        if region.start > cursor {
            consider(Conflict {
                what: "a hole in the memory map",
                start: cursor,
                end: region.start,
            });
        }
        if !region.kind.is_usable() {
            consider(Conflict {
                what: region.kind.name(KindName::Phrase),
                start: region.start,
                end: region.end(),
            });
        }
        cursor = region.end();
    }
    if cursor < end {
        consider(Conflict {
            what: "a hole in the memory map",
            start: cursor,
            end,
        });
    }
    lowest.unwrap_or(Conflict {
        what: "memory parkboot cannot use",
        start,
        end,
    })
}

/// Chooses the kernel's load address: its preferred address if that range is free,
/// else (relocatable kernels only) the lowest free `kernel_alignment`-aligned address
/// at or above [`KERNEL_SEARCH_START`], else at or above
/// [`KERNEL_SEARCH_FALLBACK_START`], always below [`KERNEL_SEARCH_LIMIT`]. The lowest
/// fit leaves high memory to the initrd, which [`place_initrd`] puts as high as it can.
/// The map is not changed: the caller reserves [`Kernel::memory_size`] bytes there.
pub fn place_kernel(kernel: &Kernel, memory: &MemoryMap) -> Result<u64, LinuxError> {
    let size = kernel.memory_size();
    let (preferred, source) = kernel.preferred_address();
    // A relocatable kernel realigns itself upwards from an unaligned load address, so
    // its preferred address only counts if aligned; and relocated or not, it is kept
    // below the search limit.
    let preferred_usable = !kernel.relocatable
        || (preferred.is_multiple_of(kernel.kernel_alignment)
            && preferred
                .checked_add(size)
                .is_some_and(|end| end <= KERNEL_SEARCH_LIMIT));
    if preferred_usable && memory.is_free(preferred, size) {
        return Ok(preferred);
    }
    if !kernel.relocatable {
        return Err(LinuxError::NotRelocatable {
            size,
            address: preferred,
            source,
            conflict: find_conflict(memory, preferred, size),
        });
    }
    let alignment = kernel.kernel_alignment.max(PAGE_SIZE);
    lowest_fit(
        memory,
        size,
        alignment,
        KERNEL_SEARCH_START,
        KERNEL_SEARCH_LIMIT,
    )
    .or_else(|| {
        lowest_fit(
            memory,
            size,
            alignment,
            KERNEL_SEARCH_FALLBACK_START,
            KERNEL_SEARCH_LIMIT,
        )
    })
    .ok_or(LinuxError::NoSpaceForKernel { size, alignment })
}

/// The end (exclusive) of the memory an initrd may occupy for `kernel`.
pub(super) fn initrd_limit(kernel: &Kernel) -> u64 {
    if kernel.can_load_initrd_above_4g {
        u64::MAX
    } else {
        kernel.initrd_addr_max.saturating_add(1)
    }
}

/// Chooses the initrd's address: the highest page-aligned free range of `size` bytes
/// at or above [`INITRD_SEARCH_START`] that ends at or below `initrd_addr_max + 1`, or
/// anywhere in memory if the kernel has [`XLF_CAN_BE_LOADED_ABOVE_4G`]. High, so that
/// it stays out of the way of the kernel, which decompresses and relocates itself
/// upwards from its load address. Reserve the kernel first: the map is read, not
/// changed, and the caller reserves `size` bytes (rounded up to pages) at the result.
pub fn place_initrd(kernel: &Kernel, size: u64, memory: &MemoryMap) -> Result<u64, LinuxError> {
    if size == 0 {
        return Err(LinuxError::EmptyInitrd);
    }
    let limit = initrd_limit(kernel);
    let too_big = || LinuxError::InitrdTooBig {
        size,
        limit,
        largest: largest_free(memory, INITRD_SEARCH_START, limit),
    };
    let rounded = align_up(size, PAGE_SIZE).ok_or_else(too_big)?;
    highest_fit(memory, rounded, PAGE_SIZE, INITRD_SEARCH_START, limit).ok_or_else(too_big)
}

/// Converts the map a kernel is shown ([`MemoryMap::kernel_view`]) into e820 entries
/// `(addr, size, type)` in `out`, returning how many there are.
pub fn e820_from_kernel_view(
    view: impl Iterator<Item = (u64, u64, ReportAs)>,
    out: &mut [(u64, u64, u32)],
) -> Result<usize, LinuxError> {
    let capacity = out.len();
    let mut view = view;
    let mut count = 0;
    for (start, size, report_as) in view.by_ref() {
        let Some(slot) = out.get_mut(count) else {
            // Count the rest so the message tells how far over the map is.
            let count = capacity.saturating_add(1).saturating_add(view.count());
            return Err(LinuxError::TooManyE820Entries { count });
        };
        *slot = (start, size, report_as.e820_type());
        count += 1;
    }
    Ok(count)
}
