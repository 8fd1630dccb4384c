//! Region handles: the one audited way from a physical range to its bytes.
//!
//! parkboot writes into physical memory in many places (kernel segments, boot
//! information, the park region, ACPI tables, pristine copies of images). Each of them
//! starts from a [`Region`], which only the [`MemoryMap`] hands out, and only for a range
//! it has checked: [`MemoryMap::region`] for a range inside one reservation,
//! [`MemoryMap::ram_region`] for a range of usable RAM the platform map lists (what a
//! kernel left for parkboot to read, say). [`Region::bytes_mut`] is the single `unsafe`
//! step from a handle to a byte slice; its safety contract is what every caller argues.
//!
//! Library code that prepares what a kernel is handed (`kernels::*::prepare`) does not
//! call it: it writes through [`RegionMemory`], which the bare-metal binary implements
//! with [`Region::bytes_mut`] and host tests with a `Vec` ([`FakeMemory`]).

use super::{MemoryError, MemoryMap};

/// A checked physical range: inside one reservation of the [`MemoryMap`] that made it
/// (or, from [`MemoryMap::ram_region`], inside usable RAM). Deliberately neither `Clone`
/// nor `Copy`: turning a handle into bytes consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Region {
    start: u64,
    len: u64,
    /// What the range holds (the reservation's name), for messages.
    name: &'static str,
}

impl Region {
    /// Physical address of the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Exclusive end (never wraps: checked when the handle was made).
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// The name of the reservation (or "RAM") the range lies in.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The part `[offset, offset + len)` of this region, by offset from its start.
    pub fn sub(&self, offset: u64, len: u64) -> Result<Region, MemoryError> {
        let outside = MemoryError::OutsideRegion {
            name: self.name,
            start: self.start,
            size: self.len,
            offset,
            len,
        };
        let end = offset.checked_add(len).ok_or(outside)?;
        if end > self.len {
            return Err(outside);
        }
        Ok(Region {
            start: self.start + offset,
            len,
            name: self.name,
        })
    }

    /// The part at physical addresses `[start, start + len)`, which must lie in this
    /// region.
    pub fn sub_at(&self, start: u64, len: u64) -> Result<Region, MemoryError> {
        let offset = start
            .checked_sub(self.start)
            .ok_or(MemoryError::OutsideRegion {
                name: self.name,
                start: self.start,
                size: self.len,
                offset: 0,
                len,
            })?;
        self.sub(offset, len)
    }

    /// The region cut in two at `offset`: `[0, offset)` and `[offset, len)`.
    pub fn split_at(self, offset: u64) -> Result<(Region, Region), MemoryError> {
        let head = self.sub(0, offset)?;
        let tail = self.sub(offset, self.len - offset)?;
        Ok((head, tail))
    }

    /// The region's bytes, for reading and writing.
    ///
    /// # Safety
    /// The caller promises, for as long as the returned slice lives:
    /// - the current page tables map the range at its physical address (parkboot's
    ///   identity map covers all RAM the [`MemoryMap`] knows of, so this holds on bare
    ///   metal once the firmware map is loaded, and below 4 GiB before);
    /// - nothing else reads or writes the range: no other slice from an overlapping
    ///   region, no other CPU, no device (a pristine copy the loop only reads may be
    ///   shared read-only by reborrowing the slice as `&[u8]`);
    /// - the reservation it came from is not released (a [`super::Lifetime::Boot`]
    ///   region is dead after [`MemoryMap::release_boot`]).
    ///
    /// A zero-length region yields an empty slice and never touches its address.
    pub unsafe fn bytes_mut<'a>(self) -> &'a mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: the handle's range is non-empty, does not wrap and fits the address
        // space (checked by the map, and `len` fits `usize` on 64-bit targets); the
        // caller promises it is mapped, exclusively ours, and stays reserved.
        unsafe { core::slice::from_raw_parts_mut(self.start as *mut u8, self.len as usize) }
    }

    /// A handle for a range the map has not checked, for host tests of code that
    /// takes regions (no bytes can be reached from it without [`RegionMemory`], which
    /// the fake checks against its own buffer).
    #[cfg(test)]
    pub(crate) fn unchecked(start: u64, len: u64, name: &'static str) -> Region {
        Region { start, len, name }
    }
}

impl MemoryMap {
    /// A handle for `[start, start + len)`, which must lie inside one reservation (a
    /// range straddling two adjacent ones is refused: each has its own purpose). A
    /// zero-length range is accepted at any address inside or at the end of a
    /// reservation.
    pub fn region(&self, start: u64, len: u64) -> Result<Region, MemoryError> {
        let end = start.checked_add(len).ok_or(MemoryError::AddressOverflow {
            name: "region",
            start,
            size: len,
        })?;
        let holder = self
            .reservations()
            .find(|r| r.start <= start && start <= r.end() && (len == 0 || start < r.end()))
            .ok_or(MemoryError::NotReserved { start, end })?;
        if end > holder.end() {
            return Err(MemoryError::PastReservation {
                start,
                end,
                reservation: holder.name,
                reservation_start: holder.start,
                reservation_end: holder.end(),
            });
        }
        Ok(Region {
            start,
            len,
            name: holder.name,
        })
    }

    /// A handle for `[start, start + len)` in usable RAM of the platform map, reserved
    /// or not: memory that is safe to read without side effects (never a hole or
    /// MMIO), such as the report a kernel leaves before giving control back.
    pub fn ram_region(&self, start: u64, len: u64) -> Result<Region, MemoryError> {
        let end = start.saturating_add(len);
        if !self.is_ram(start, len) {
            return Err(MemoryError::NotRam { start, end });
        }
        Ok(Region {
            start,
            len,
            name: "RAM",
        })
    }
}

/// Where prepared bytes are written: physical memory through the identity map on bare
/// metal, a buffer in host tests.
///
/// # Safety
/// An implementation promises that the slice [`RegionMemory::bytes`] returns for a
/// region is that region's memory (or, for a fake, a buffer standing for it) and may be
/// written for as long as the borrow of `self` lasts.
pub unsafe trait RegionMemory {
    /// The bytes of `region`.
    fn bytes(&mut self, region: Region) -> &mut [u8];
}

/// Host-test memory: a buffer standing for physical `[base, base + bytes.len())`.
/// A region outside it panics the test, as a write outside RAM would be a bug.
#[cfg(test)]
pub struct FakeMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
impl FakeMemory {
    /// `size` zero bytes standing for `[base, base + size)`.
    pub fn new(base: u64, size: usize) -> FakeMemory {
        FakeMemory {
            base,
            bytes: vec![0; size],
        }
    }

    /// The bytes at physical `[addr, addr + len)`.
    pub fn at(&self, addr: u64, len: usize) -> &[u8] {
        let offset = (addr - self.base) as usize;
        &self.bytes[offset..offset + len]
    }
}

// SAFETY: the returned slice is part of the fake's own buffer.
#[cfg(test)]
unsafe impl RegionMemory for FakeMemory {
    fn bytes(&mut self, region: Region) -> &mut [u8] {
        let offset = region
            .start()
            .checked_sub(self.base)
            .expect("region below the fake memory") as usize;
        let end = offset + region.len() as usize;
        assert!(end <= self.bytes.len(), "region past the fake memory");
        &mut self.bytes[offset..end]
    }
}

#[cfg(test)]
mod tests;
