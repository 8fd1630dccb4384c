//! Physical memory bookkeeping.
//!
//! parkboot places several things in RAM that must not collide: its own image, its
//! stacks and page tables, the park region where the application processors wait (which
//! has to survive every kernel parkboot boots), rewritten ACPI tables, and the load areas
//! of the kernel being booted. [`MemoryMap`] keeps the platform's memory map together
//! with every such [`Reservation`], hands out free memory without overlap, and produces
//! the map a kernel is shown ([`MemoryMap::kernel_view`]), from which the e820 table for
//! Linux and the multiboot2 memory map are written.
//!
//! Everything here is `no_std` and allocation-free: capacities are fixed and exceeding
//! them is an error, never a panic. Addresses come from the platform and are never
//! trusted: all range arithmetic is checked.
//!
//! `paging` builds the identity-mapped page tables; `bulk` copies and fills the
//! reserved ranges a kernel is reloaded into.

pub mod bulk;
pub mod paging;

use core::fmt;

use heapless::Vec;

use crate::platform::{MemoryKind, MemoryRegion, MAX_MEMORY_REGIONS};

/// Granule of allocations: the x86 base page size, so that every allocated area can be
/// given its own page attributes and is reported to kernels on page boundaries.
pub const PAGE_SIZE: u64 = 4096;

/// How many platform ranges the normalised map keeps (the same bound the platform
/// parsers use for the map they collect).
pub const MAX_PLATFORM_RANGES: usize = MAX_MEMORY_REGIONS;

/// How many reservations parkboot tracks at once. parkboot's own areas plus one kernel's
/// load areas stay far below this.
pub const MAX_RESERVATIONS: usize = 64;

/// Binary size units, the one place parkboot defines them.
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;
/// The 1 MiB line: below it sit the real-mode areas and the AP start trampoline.
pub const ONE_MIB: u64 = MIB;
/// The 4 GiB line: what 32-bit code (hand-offs, the AP trampoline) can address, and
/// where the memory-mapped boot flash ends.
pub const FOUR_GIB: u64 = 4 * GIB;

/// How a range is shown to the kernel parkboot boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportAs {
    /// Free for the kernel. Used for areas parkboot loaded *for* the kernel (its image,
    /// boot information, modules): the kernel owns them once it runs.
    Usable,
    /// Never touched by the kernel: parkboot's own memory and the park region.
    Reserved,
    /// ACPI tables the kernel may reuse the memory of after reading them. parkboot
    /// reports no range of its own this way (its ACPI tables are emitted again for
    /// every boot, so they are [`ReportAs::AcpiNvs`]); platform ranges of this kind
    /// keep it.
    AcpiReclaim,
    /// ACPI non-volatile storage, e.g. the ACPI wakeup mailbox page the parked
    /// processors poll: preserved by the kernel, also across sleep states.
    AcpiNvs,
}

impl ReportAs {
    /// Type number of an e820 entry (Linux boot protocol).
    pub fn e820_type(self) -> u32 {
        match self {
            ReportAs::Usable => 1,
            ReportAs::Reserved => 2,
            ReportAs::AcpiReclaim => 3,
            ReportAs::AcpiNvs => 4,
        }
    }

    /// Type number of a multiboot2 memory map entry.
    pub fn multiboot2_type(self) -> u32 {
        match self {
            ReportAs::Usable => 1,
            ReportAs::Reserved => 2,
            ReportAs::AcpiReclaim => 3,
            ReportAs::AcpiNvs => 4,
        }
    }

    /// How a platform range of `kind` is shown to a kernel when parkboot has not
    /// reserved any of it. Kinds without a kernel-visible equivalent are shown as
    /// reserved so the kernel leaves them alone.
    pub fn for_platform_kind(kind: MemoryKind) -> ReportAs {
        match kind {
            MemoryKind::Usable => ReportAs::Usable,
            MemoryKind::AcpiReclaim => ReportAs::AcpiReclaim,
            MemoryKind::AcpiNvs => ReportAs::AcpiNvs,
            MemoryKind::Reserved
            | MemoryKind::Unusable
            | MemoryKind::CorebootTables
            | MemoryKind::Other(_) => ReportAs::Reserved,
        }
    }
}

/// How long a reservation lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Kept for as long as parkboot runs, across every kernel: the park region, the
    /// payload image, the wakeup mailbox.
    Permanent,
    /// Kept for one boot only and freed by [`MemoryMap::release_boot`] before the next
    /// kernel is loaded: the load areas of one kernel.
    Boot,
}

/// A range of RAM parkboot has taken for a purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub start: u64,
    pub size: u64,
    /// What the range holds, for error messages and logs.
    pub name: &'static str,
    pub report_as: ReportAs,
    pub lifetime: Lifetime,
}

impl Reservation {
    /// Exclusive end. A stored reservation never wraps ([`MemoryMap::reserve`] refuses
    /// such ranges), the saturation only keeps a hand-built value from panicking.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// Why a memory map operation failed. Every variant names the request, so the message
/// alone tells what parkboot was trying to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The platform map still needs more than [`MAX_PLATFORM_RANGES`] ranges after
    /// merging.
    TooManyPlatformRanges,
    /// All [`MAX_RESERVATIONS`] slots are taken.
    TooManyReservations { name: &'static str },
    /// A reservation or allocation of zero bytes: always a caller bug, never useful.
    ZeroSize { name: &'static str },
    /// `start + size` does not fit in 64 bits.
    AddressOverflow {
        name: &'static str,
        start: u64,
        size: u64,
    },
    /// The alignment is zero or not a power of two.
    BadAlignment { name: &'static str, align: u64 },
    /// The range overlaps an existing reservation (the lowest such one is named).
    OverlapsReservation {
        name: &'static str,
        start: u64,
        end: u64,
        other: &'static str,
        other_start: u64,
        other_end: u64,
    },
    /// The range overlaps a platform range that is not usable RAM.
    NotUsableRam {
        name: &'static str,
        start: u64,
        end: u64,
        kind: MemoryKind,
        region_start: u64,
        region_end: u64,
    },
    /// Part of the range (`hole_start..hole_end`) is not in the platform map at all.
    OutsideRam {
        name: &'static str,
        start: u64,
        end: u64,
        hole_start: u64,
        hole_end: u64,
    },
    /// No free, suitably aligned range of `size` bytes lies in `[min, max)`.
    NoSpace {
        name: &'static str,
        size: u64,
        align: u64,
        min: u64,
        max: u64,
    },
}

/// Shows a byte count in the largest binary unit that divides it exactly, otherwise in
/// hex, so sizes in messages read like "16 MiB" rather than "0x1000000".
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (unit, suffix) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if v != 0 && v.is_multiple_of(unit) {
                return write!(f, "{} {}", v / unit, suffix);
            }
        }
        write!(f, "{v:#x} bytes")
    }
}

/// Human name of a platform memory kind, for error messages.
fn kind_name(kind: MemoryKind) -> &'static str {
    match kind {
        MemoryKind::Usable => "usable RAM",
        MemoryKind::Reserved => "firmware-reserved memory",
        MemoryKind::AcpiReclaim => "ACPI tables",
        MemoryKind::AcpiNvs => "ACPI NVS memory",
        MemoryKind::Unusable => "unusable (defective) RAM",
        MemoryKind::CorebootTables => "coreboot tables",
        MemoryKind::Other(_) => "memory of unknown type",
    }
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryError::TooManyPlatformRanges => write!(
                f,
                "platform memory map needs more than {MAX_PLATFORM_RANGES} ranges after merging"
            ),
            MemoryError::TooManyReservations { name } => write!(
                f,
                "cannot track {name}: all {MAX_RESERVATIONS} reservation slots are in use"
            ),
            MemoryError::ZeroSize { name } => {
                write!(f, "refusing zero-size memory request for {name}")
            }
            MemoryError::AddressOverflow { name, start, size } => write!(
                f,
                "{name} at {start:#x} with size {size:#x} runs past the top of the address space"
            ),
            MemoryError::BadAlignment { name, align } => {
                write!(f, "alignment {align:#x} for {name} is not a power of two")
            }
            MemoryError::OverlapsReservation {
                name,
                start,
                end,
                other,
                other_start,
                other_end,
            } => write!(
                f,
                "cannot reserve {name} {start:#x}-{end:#x}: overlaps {other} {other_start:#x}-{other_end:#x}"
            ),
            MemoryError::NotUsableRam {
                name,
                start,
                end,
                kind,
                region_start,
                region_end,
            } => {
                write!(
                    f,
                    "cannot reserve {name} {start:#x}-{end:#x}: overlaps {} {region_start:#x}-{region_end:#x}",
                    kind_name(kind)
                )?;
                if let MemoryKind::Other(t) = kind {
                    write!(f, " (type {t})")?;
                }
                Ok(())
            }
            MemoryError::OutsideRam {
                name,
                start,
                end,
                hole_start,
                hole_end,
            } => write!(
                f,
                "cannot reserve {name} {start:#x}-{end:#x}: {hole_start:#x}-{hole_end:#x} is not RAM (absent from the memory map)"
            ),
            MemoryError::NoSpace {
                name,
                size,
                align,
                min,
                max,
            } => {
                write!(f, "no free {}", Bytes(size))?;
                match (min, max) {
                    (0, u64::MAX) => {}
                    (0, max) => write!(f, " below {}", Bytes(max))?,
                    (min, u64::MAX) => write!(f, " above {}", Bytes(min))?,
                    (min, max) => write!(f, " between {} and {}", Bytes(min), Bytes(max))?,
                }
                write!(f, ", aligned to {}, for {name}", Bytes(align))
            }
        }
    }
}

/// A half-open range `[start, end)` with its platform kind, the internal form of a
/// platform range (the end is stored so that no later code has to add).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    kind: MemoryKind,
}

/// Precedence of platform kinds where ranges overlap: the kind that restricts the kernel
/// most wins, so firmware-owned memory is never handed out as free. ACPI reclaimable
/// memory is the weakest restriction (the kernel may reuse it after parsing), then
/// reserved kinds, then NVS (also preserved across sleep states), then defective RAM.
/// Distinct `Other` types are ordered by number only to make the result deterministic.
fn precedence(kind: MemoryKind) -> (u8, u32) {
    match kind {
        MemoryKind::Usable => (0, 0),
        MemoryKind::AcpiReclaim => (1, 0),
        MemoryKind::Reserved => (2, 0),
        MemoryKind::CorebootTables => (3, 0),
        MemoryKind::Other(t) => (4, t),
        MemoryKind::AcpiNvs => (5, 0),
        MemoryKind::Unusable => (6, 0),
    }
}

fn stronger(a: MemoryKind, b: MemoryKind) -> MemoryKind {
    if precedence(b) > precedence(a) {
        b
    } else {
        a
    }
}

type SpanList = Vec<Span, MAX_PLATFORM_RANGES>;

/// Appends `span` to a list built in ascending order, merging it into the last entry
/// when the two touch and have the same kind.
fn push_merged(list: &mut SpanList, span: Span) -> Result<(), MemoryError> {
    if span.start >= span.end {
        return Ok(());
    }
    if let Some(last) = list.last_mut() {
        if last.end == span.start && last.kind == span.kind {
            last.end = span.end;
            return Ok(());
        }
    }
    list.push(span)
        .map_err(|_| MemoryError::TooManyPlatformRanges)
}

/// Lays `new` over the sorted, disjoint, merged list `cur`, writing the result to `out`.
/// Where `new` overlaps an existing span the [`stronger`] kind is kept; parts of `new`
/// over gaps take its kind.
fn paint(cur: &SpanList, new: Span, out: &mut SpanList) -> Result<(), MemoryError> {
    out.clear();
    // Lowest address of `new` not yet written to `out`.
    let mut cursor = new.start;
    for p in cur {
        if p.end <= new.start {
            push_merged(out, *p)?;
            continue;
        }
        if p.start >= new.end {
            if cursor < new.end {
                push_merged(
                    out,
                    Span {
                        start: cursor,
                        ..new
                    },
                )?;
                cursor = new.end;
            }
            push_merged(out, *p)?;
            continue;
        }
        // `p` overlaps `new`.
        if p.start > cursor {
            push_merged(
                out,
                Span {
                    start: cursor,
                    end: p.start,
                    kind: new.kind,
                },
            )?;
        }
        if p.start < new.start {
            push_merged(
                out,
                Span {
                    end: new.start,
                    ..*p
                },
            )?;
        }
        let overlap_start = p.start.max(new.start);
        let overlap_end = p.end.min(new.end);
        push_merged(
            out,
            Span {
                start: overlap_start,
                end: overlap_end,
                kind: stronger(p.kind, new.kind),
            },
        )?;
        if p.end > new.end {
            push_merged(
                out,
                Span {
                    start: new.end,
                    ..*p
                },
            )?;
        }
        cursor = cursor.max(overlap_end);
    }
    if cursor < new.end {
        push_merged(
            out,
            Span {
                start: cursor,
                ..new
            },
        )?;
    }
    Ok(())
}

/// `value` rounded up to a multiple of `align` (a power of two), `None` on overflow or
/// for an `align` of 0. The one rounding helper for addresses and sizes.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// The platform memory map plus everything parkboot has reserved in it.
#[derive(Clone, Debug)]
pub struct MemoryMap {
    /// Sorted, disjoint, adjacent same-kind ranges merged, no empty ranges.
    platform: Vec<MemoryRegion, MAX_PLATFORM_RANGES>,
    /// Sorted by start, disjoint, each entirely inside one usable platform range.
    reservations: Vec<Reservation, MAX_RESERVATIONS>,
}

impl MemoryMap {
    /// Normalises the platform's memory map: sorts it, resolves overlaps (the more
    /// restrictive kind wins: usable < ACPI reclaimable < reserved, coreboot tables and
    /// unknown types < ACPI NVS < unusable), merges adjacent ranges of one kind, drops
    /// empty ranges. A range that runs
    /// past the top of the address space is cut at `u64::MAX`.
    pub fn new(platform_regions: &[MemoryRegion]) -> Result<Self, MemoryError> {
        let mut cur = SpanList::new();
        let mut next = SpanList::new();
        for region in platform_regions {
            let span = Span {
                start: region.start,
                end: region.end(),
                kind: region.kind,
            };
            if span.start >= span.end {
                continue;
            }
            paint(&cur, span, &mut next)?;
            core::mem::swap(&mut cur, &mut next);
        }
        let mut platform = Vec::new();
        for span in &cur {
            // Both lists have the same capacity, so this cannot fail; the error keeps
            // that reasoning out of the panic path.
            platform
                .push(MemoryRegion {
                    start: span.start,
                    size: span.end - span.start,
                    kind: span.kind,
                })
                .map_err(|_| MemoryError::TooManyPlatformRanges)?;
        }
        Ok(MemoryMap {
            platform,
            reservations: Vec::new(),
        })
    }

    /// The normalised platform ranges, sorted and disjoint.
    pub fn platform_regions(&self) -> &[MemoryRegion] {
        &self.platform
    }

    /// Whether `[start, start + len)` is non-empty and lies entirely in one usable RAM
    /// range of the platform map (reserved by parkboot or not): memory parkboot's
    /// identity map covers and reading has no side effect, unlike a hole or MMIO.
    pub fn is_ram(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        len > 0
            && self
                .platform
                .iter()
                .any(|r| r.kind.is_usable() && r.start <= start && end <= r.end())
    }

    /// Every current reservation, sorted by start address.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter()
    }

    /// Takes `[start, start + size)` for `name`. The range is byte-exact (no rounding),
    /// must lie entirely in usable RAM and must not overlap any existing reservation.
    pub fn reserve(
        &mut self,
        start: u64,
        size: u64,
        name: &'static str,
        report_as: ReportAs,
        lifetime: Lifetime,
    ) -> Result<(), MemoryError> {
        self.check_free(start, size, name)?;
        self.insert(Reservation {
            start,
            size,
            name,
            report_as,
            lifetime,
        })
    }

    /// Finds and reserves `size` bytes (rounded up to whole pages) at the highest
    /// address aligned to `align` (at least [`PAGE_SIZE`]) that lies entirely in
    /// `[min, max)`, in usable RAM and outside every reservation. Taking the highest fit
    /// keeps low memory, which some kernels need at fixed addresses, free for them.
    #[allow(clippy::too_many_arguments)]
    pub fn allocate(
        &mut self,
        size: u64,
        align: u64,
        min: u64,
        max: u64,
        name: &'static str,
        report_as: ReportAs,
        lifetime: Lifetime,
    ) -> Result<u64, MemoryError> {
        if size == 0 {
            return Err(MemoryError::ZeroSize { name });
        }
        if !align.is_power_of_two() {
            return Err(MemoryError::BadAlignment { name, align });
        }
        let align = align.max(PAGE_SIZE);
        let no_space = MemoryError::NoSpace {
            name,
            size,
            align,
            min,
            max,
        };
        if self.reservations.is_full() {
            return Err(MemoryError::TooManyReservations { name });
        }
        let rounded = align_up(size, PAGE_SIZE).ok_or(no_space)?;
        let start = self.highest_fit(rounded, align, min, max).ok_or(no_space)?;
        self.insert(Reservation {
            start,
            size: rounded,
            name,
            report_as,
            lifetime,
        })?;
        Ok(start)
    }

    /// Frees every [`Lifetime::Boot`] reservation, so the next kernel's load areas can be
    /// placed anywhere the previous kernel's were.
    pub fn release_boot(&mut self) {
        self.reservations
            .retain(|r| r.lifetime == Lifetime::Permanent);
    }

    /// Frees the one reservation that starts at `start` and is called `name` (the
    /// pristine copy of an image parkboot refused, say), returning it; `None`, and
    /// nothing freed, when there is no such reservation.
    pub fn release(&mut self, start: u64, name: &str) -> Option<Reservation> {
        let index = self
            .reservations
            .iter()
            .position(|r| r.start == start && r.name == name)?;
        Some(self.reservations.remove(index))
    }

    /// Bytes parkboot keeps for itself, of either [`Lifetime`]: every reservation a
    /// kernel is not given as usable (parkboot's image, page tables, the park region,
    /// the mailbox, ACPI tables, pristine copies of images). A kernel's own load areas
    /// ([`ReportAs::Usable`]) are the kernel's and do not count. The loop report shows
    /// it per iteration: it must not grow from one iteration to the next.
    pub fn parkboot_bytes(&self) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.report_as != ReportAs::Usable)
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }

    /// Keeps every [`Lifetime::Boot`] reservation for good, reported to later kernels
    /// as reserved: when a CPU may still be running in what the previous kernel was
    /// loaded into (it did not come back through the ResetVector), that memory must
    /// never be loaded over. Returns how many reservations were kept.
    pub fn keep_boot_reservations(&mut self) -> usize {
        let mut kept = 0;
        for reservation in self
            .reservations
            .iter_mut()
            .filter(|r| r.lifetime == Lifetime::Boot)
        {
            reservation.lifetime = Lifetime::Permanent;
            reservation.report_as = ReportAs::Reserved;
            kept += 1;
        }
        kept
    }

    /// Whether `[start, start + size)` is non-empty, lies entirely in usable RAM and
    /// overlaps no reservation, i.e. whether [`MemoryMap::reserve`] would accept it.
    pub fn is_free(&self, start: u64, size: u64) -> bool {
        self.check_free(start, size, "").is_ok()
    }

    /// Bytes of usable RAM in the platform map, reserved or not.
    pub fn total_usable(&self) -> u64 {
        self.platform
            .iter()
            .filter(|r| r.kind.is_usable())
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }

    /// Bytes of usable RAM not covered by any reservation.
    pub fn total_free(&self) -> u64 {
        let reserved = self
            .reservations
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.size));
        self.total_usable().saturating_sub(reserved)
    }

    /// The largest free page-aligned extent that ends at or below `limit`, as
    /// `(start, size)`: what a caller could still [`MemoryMap::allocate`] below `limit`
    /// in one piece. `None` when not a single free page is left there.
    pub fn largest_free_below(&self, limit: u64) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
        self.for_each_free_descending(0, limit, |lo, hi| {
            let (Some(lo), hi) = (align_up(lo, PAGE_SIZE), align_down(hi, PAGE_SIZE)) else {
                return false;
            };
            if lo < hi && best.is_none_or(|(_, size)| hi - lo > size) {
                best = Some((lo, hi - lo));
            }
            false
        });
        best
    }

    /// The memory map a kernel should be given: every platform range with the
    /// reservations cut out of it and shown as their [`ReportAs`], non-usable platform
    /// kinds mapped by [`ReportAs::for_platform_kind`], sorted, non-overlapping, with
    /// touching ranges of one type merged. Items are `(start, size, report_as)`.
    pub fn kernel_view(&self) -> KernelView<'_> {
        KernelView {
            pieces: Pieces {
                platform: &self.platform,
                reservations: &self.reservations,
                pos: 0,
                platform_index: 0,
                reservation_index: 0,
            },
            pending: None,
        }
    }

    /// Checks that `[start, start + size)` could be reserved, naming what it hits if not.
    fn check_free(&self, start: u64, size: u64, name: &'static str) -> Result<(), MemoryError> {
        if size == 0 {
            return Err(MemoryError::ZeroSize { name });
        }
        let end = start
            .checked_add(size)
            .ok_or(MemoryError::AddressOverflow { name, start, size })?;
        if let Some(other) = self
            .reservations
            .iter()
            .find(|r| r.start < end && start < r.end())
        {
            return Err(MemoryError::OverlapsReservation {
                name,
                start,
                end,
                other: other.name,
                other_start: other.start,
                other_end: other.end(),
            });
        }
        // Walk the platform ranges across [start, end): each must be usable and each
        // must begin where the previous one ended.
        let mut cursor = start;
        for region in &self.platform {
            if cursor >= end {
                break;
            }
            if region.end() <= cursor {
                continue;
            }
            if region.start >= end {
                break;
            }
            if region.start > cursor {
                return Err(MemoryError::OutsideRam {
                    name,
                    start,
                    end,
                    hole_start: cursor,
                    hole_end: region.start,
                });
            }
            if !region.kind.is_usable() {
                return Err(MemoryError::NotUsableRam {
                    name,
                    start,
                    end,
                    kind: region.kind,
                    region_start: region.start,
                    region_end: region.end(),
                });
            }
            cursor = region.end();
        }
        if cursor < end {
            let hole_end = self
                .platform
                .iter()
                .map(|r| r.start)
                .find(|&s| s > cursor)
                .map_or(end, |s| s.min(end));
            return Err(MemoryError::OutsideRam {
                name,
                start,
                end,
                hole_start: cursor,
                hole_end,
            });
        }
        Ok(())
    }

    /// Stores a checked reservation in address order.
    fn insert(&mut self, reservation: Reservation) -> Result<(), MemoryError> {
        let index = self
            .reservations
            .iter()
            .position(|r| r.start > reservation.start)
            .unwrap_or(self.reservations.len());
        self.reservations
            .insert(index, reservation)
            .map_err(|r| MemoryError::TooManyReservations { name: r.name })
    }

    /// Calls `visit(lo, hi)` for every free extent (usable RAM outside reservations)
    /// inside `[min, max)`, highest first, until `visit` returns true.
    fn for_each_free_descending(
        &self,
        min: u64,
        max: u64,
        mut visit: impl FnMut(u64, u64) -> bool,
    ) {
        for region in self.platform.iter().rev() {
            if !region.kind.is_usable() {
                continue;
            }
            let lo = region.start.max(min);
            let mut top = region.end().min(max);
            if lo >= top {
                continue;
            }
            // Reservations are disjoint and sorted by start, hence also by end.
            for r in self.reservations.iter().rev() {
                if r.start >= top {
                    continue;
                }
                let gap_lo = r.end().max(lo);
                if gap_lo < top && visit(gap_lo, top) {
                    return;
                }
                top = top.min(r.start);
                if top <= lo {
                    break;
                }
            }
            if lo < top && visit(lo, top) {
                return;
            }
        }
    }

    /// Highest `align`-aligned start of a free `size`-byte range in `[min, max)`.
    fn highest_fit(&self, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
        let mut found = None;
        self.for_each_free_descending(min, max, |lo, hi| {
            let Some(top_start) = hi.checked_sub(size) else {
                return false;
            };
            let start = align_down(top_start, align);
            if start >= lo {
                found = Some(start);
                true
            } else {
                false
            }
        });
        found
    }
}

/// The ranges of [`MemoryMap::kernel_view`] before merging: platform ranges split at
/// reservation boundaries, in address order.
#[derive(Clone, Debug)]
struct Pieces<'a> {
    platform: &'a [MemoryRegion],
    reservations: &'a [Reservation],
    /// Everything below has been produced.
    pos: u64,
    platform_index: usize,
    reservation_index: usize,
}

impl Iterator for Pieces<'_> {
    type Item = (u64, u64, ReportAs);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let region = self.platform.get(self.platform_index)?;
            let region_end = region.end();
            let start = self.pos.max(region.start);
            if start >= region_end {
                self.platform_index += 1;
                continue;
            }
            if region.kind.is_usable() {
                while self
                    .reservations
                    .get(self.reservation_index)
                    .is_some_and(|r| r.end() <= start)
                {
                    self.reservation_index += 1;
                }
                if let Some(r) = self.reservations.get(self.reservation_index) {
                    if r.start <= start {
                        let end = r.end().min(region_end);
                        self.pos = end;
                        return Some((start, end - start, r.report_as));
                    }
                    if r.start < region_end {
                        self.pos = r.start;
                        return Some((start, r.start - start, ReportAs::Usable));
                    }
                }
            }
            self.pos = region_end;
            self.platform_index += 1;
            return Some((
                start,
                region_end - start,
                ReportAs::for_platform_kind(region.kind),
            ));
        }
    }
}

/// Iterator returned by [`MemoryMap::kernel_view`].
#[derive(Clone, Debug)]
pub struct KernelView<'a> {
    pieces: Pieces<'a>,
    /// A piece read ahead that did not merge with the previous item.
    pending: Option<(u64, u64, ReportAs)>,
}

impl Iterator for KernelView<'_> {
    type Item = (u64, u64, ReportAs);

    fn next(&mut self) -> Option<Self::Item> {
        let (start, mut size, kind) = self.pending.take().or_else(|| self.pieces.next())?;
        for (next_start, next_size, next_kind) in self.pieces.by_ref() {
            if next_kind == kind && start.checked_add(size) == Some(next_start) {
                size += next_size;
            } else {
                self.pending = Some((next_start, next_size, next_kind));
                break;
            }
        }
        Some((start, size, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { start, size, kind }
    }

    fn ram(start: u64, size: u64) -> MemoryRegion {
        region(start, size, MemoryKind::Usable)
    }

    /// A small PC-like map: low RAM, a reserved BIOS area, RAM from 1 MiB to 2 GiB,
    /// ACPI tables, CBMEM, and RAM above 4 GiB.
    fn pc_map() -> MemoryMap {
        MemoryMap::new(&[
            region(0x100000, 2 * GIB - MIB, MemoryKind::Usable),
            region(0, 0xa0000, MemoryKind::Usable),
            region(0xf0000, 0x10000, MemoryKind::Reserved),
            region(2 * GIB, MIB, MemoryKind::AcpiReclaim),
            region(2 * GIB + MIB, MIB, MemoryKind::CorebootTables),
            region(4 * GIB, 4 * GIB, MemoryKind::Usable),
        ])
        .unwrap()
    }

    fn view(map: &MemoryMap) -> StdVec<(u64, u64, ReportAs)> {
        map.kernel_view().collect()
    }

    #[test]
    fn release_frees_one_named_reservation_and_parkboot_bytes_counts_what_kernels_lose() {
        let mut map = pc_map();
        map.reserve(
            16 * MIB,
            MIB,
            "image",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            18 * MIB,
            2 * MIB,
            "copy",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            24 * MIB,
            PAGE_SIZE,
            "mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            32 * MIB,
            8 * MIB,
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        assert_eq!(map.parkboot_bytes(), 3 * MIB + PAGE_SIZE);
        // Wrong name or wrong start: nothing is freed.
        assert_eq!(map.release(18 * MIB, "image"), None);
        assert_eq!(map.release(18 * MIB + 1, "copy"), None);
        assert_eq!(map.parkboot_bytes(), 3 * MIB + PAGE_SIZE);
        let freed = map.release(18 * MIB, "copy").unwrap();
        assert_eq!((freed.start, freed.size), (18 * MIB, 2 * MIB));
        assert_eq!(map.parkboot_bytes(), MIB + PAGE_SIZE);
        assert!(map.is_free(18 * MIB, 2 * MIB));
        assert_eq!(map.release(18 * MIB, "copy"), None);
        // A kernel kept for good (a CPU did not come back) becomes parkboot's to keep.
        map.keep_boot_reservations();
        assert_eq!(map.parkboot_bytes(), 9 * MIB + PAGE_SIZE);
    }

    #[test]
    fn kept_boot_reservations_survive_release_and_are_reserved_for_kernels() {
        let mut map = pc_map();
        map.reserve(16 * MIB, MIB, "kernel", ReportAs::Usable, Lifetime::Boot)
            .unwrap();
        map.reserve(
            32 * MIB,
            MIB,
            "park",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        assert_eq!(map.keep_boot_reservations(), 1);
        map.release_boot();
        assert!(!map.is_free(16 * MIB, PAGE_SIZE));
        let kept = map.reservations().find(|r| r.name == "kernel").unwrap();
        assert_eq!(kept.lifetime, Lifetime::Permanent);
        assert!(view(&map).contains(&(16 * MIB, MIB, ReportAs::Reserved)));
        // Nothing left to keep the second time.
        assert_eq!(map.keep_boot_reservations(), 0);
    }

    #[test]
    fn ram_is_only_usable_platform_memory() {
        let map = pc_map();
        assert!(map.is_ram(16 * MIB, 120));
        assert!(map.is_ram(0x1000, 0x1000));
        assert!(!map.is_ram(0, 0), "empty");
        assert!(!map.is_ram(0xa0000 - 8, 16), "runs past low RAM");
        assert!(!map.is_ram(0xf0000, 8), "reserved");
        assert!(!map.is_ram(2 * GIB, 8), "ACPI");
        assert!(!map.is_ram(3 * GIB, 8), "hole");
        assert!(!map.is_ram(1 << 45, 120), "beyond RAM");
        assert!(!map.is_ram(u64::MAX - 8, 120), "wraps");
        assert!(map.is_ram(5 * GIB, 120));
    }

    #[test]
    fn type_numbers() {
        assert_eq!(ReportAs::Usable.e820_type(), 1);
        assert_eq!(ReportAs::Reserved.e820_type(), 2);
        assert_eq!(ReportAs::AcpiReclaim.e820_type(), 3);
        assert_eq!(ReportAs::AcpiNvs.e820_type(), 4);
        assert_eq!(ReportAs::Usable.multiboot2_type(), 1);
        assert_eq!(ReportAs::Reserved.multiboot2_type(), 2);
        assert_eq!(ReportAs::AcpiReclaim.multiboot2_type(), 3);
        assert_eq!(ReportAs::AcpiNvs.multiboot2_type(), 4);
    }

    #[test]
    fn sorts_and_merges_adjacent_same_kind() {
        let map = MemoryMap::new(&[
            ram(0x200000, 0x100000),
            ram(0, 0x100000),
            ram(0x100000, 0x100000),
            region(0x300000, 0x1000, MemoryKind::Reserved),
            region(0x301000, 0x1000, MemoryKind::Reserved),
            ram(0x400000, 0),
        ])
        .unwrap();
        assert_eq!(
            map.platform_regions(),
            &[
                ram(0, 0x300000),
                region(0x300000, 0x2000, MemoryKind::Reserved),
            ]
        );
    }

    #[test]
    fn different_kinds_do_not_merge() {
        let map = MemoryMap::new(&[
            region(0x1000, 0x1000, MemoryKind::Reserved),
            region(0x2000, 0x1000, MemoryKind::AcpiNvs),
        ])
        .unwrap();
        assert_eq!(map.platform_regions().len(), 2);
    }

    #[test]
    fn reserved_wins_over_usable_in_overlaps() {
        // Reserved range in the middle of RAM, given before and after the RAM.
        for order in [false, true] {
            let ram_range = ram(0, 0x10_0000);
            let hole = region(0x8_0000, 0x1_0000, MemoryKind::Reserved);
            let input = if order {
                [ram_range, hole]
            } else {
                [hole, ram_range]
            };
            let map = MemoryMap::new(&input).unwrap();
            assert_eq!(
                map.platform_regions(),
                &[
                    ram(0, 0x8_0000),
                    region(0x8_0000, 0x1_0000, MemoryKind::Reserved),
                    ram(0x9_0000, 0x7_0000),
                ]
            );
        }
    }

    #[test]
    fn partial_overlaps_and_precedence() {
        let map = MemoryMap::new(&[
            ram(0, 0x4000),
            region(0x3000, 0x2000, MemoryKind::AcpiReclaim),
            region(0x4000, 0x2000, MemoryKind::AcpiNvs),
            ram(0x5000, 0x3000),
        ])
        .unwrap();
        assert_eq!(
            map.platform_regions(),
            &[
                ram(0, 0x3000),
                region(0x3000, 0x1000, MemoryKind::AcpiReclaim),
                region(0x4000, 0x2000, MemoryKind::AcpiNvs),
                ram(0x6000, 0x2000),
            ]
        );
        // Unusable beats everything, reclaimable loses to reserved.
        let map = MemoryMap::new(&[
            region(0, 0x2000, MemoryKind::Reserved),
            region(0, 0x1000, MemoryKind::AcpiReclaim),
            region(0x1000, 0x1000, MemoryKind::Unusable),
        ])
        .unwrap();
        assert_eq!(
            map.platform_regions(),
            &[
                region(0, 0x1000, MemoryKind::Reserved),
                region(0x1000, 0x1000, MemoryKind::Unusable),
            ]
        );
    }

    #[test]
    fn range_running_past_top_is_clipped() {
        let map = MemoryMap::new(&[ram(u64::MAX - 0xfff, 0x2000)]).unwrap();
        assert_eq!(map.platform_regions(), &[ram(u64::MAX - 0xfff, 0xfff)]);
    }

    #[test]
    fn too_many_platform_ranges() {
        let input: StdVec<_> = (0..=MAX_PLATFORM_RANGES as u64)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    MemoryKind::Usable
                } else {
                    MemoryKind::Reserved
                };
                region(i * 0x1000, 0x1000, kind)
            })
            .collect();
        assert_eq!(
            MemoryMap::new(&input).unwrap_err(),
            MemoryError::TooManyPlatformRanges
        );
        // The same count of ranges that merge is fine.
        let input: StdVec<_> = (0..=MAX_PLATFORM_RANGES as u64 * 2)
            .map(|i| ram(i * 0x1000, 0x1000))
            .collect();
        assert_eq!(MemoryMap::new(&input).unwrap().platform_regions().len(), 1);
    }

    #[test]
    fn reserve_and_conflict_with_reservation() {
        let mut map = pc_map();
        map.reserve(
            0x100000,
            0x40000,
            "payload image",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        let err = map
            .reserve(
                0x100000,
                0x4000,
                "park region",
                ReportAs::Reserved,
                Lifetime::Permanent,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reserve park region 0x100000-0x104000: overlaps payload image 0x100000-0x140000"
        );
        // Touching is not overlapping.
        map.reserve(
            0x140000,
            0x4000,
            "park region",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(0x9f000, 0x1000, "below", ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
        let starts: StdVec<u64> = map.reservations().map(|r| r.start).collect();
        assert_eq!(starts, [0x9f000, 0x100000, 0x140000]);
    }

    #[test]
    fn reserve_conflict_with_platform_reserved() {
        let mut map = pc_map();
        let err = map
            .reserve(
                0xef000,
                0x2000,
                "mailbox",
                ReportAs::AcpiNvs,
                Lifetime::Permanent,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            MemoryError::OutsideRam {
                hole_start: 0xef000,
                hole_end: 0xf0000,
                ..
            }
        ));
        let err = map
            .reserve(
                0xf8000,
                0x10000,
                "mailbox",
                ReportAs::AcpiNvs,
                Lifetime::Permanent,
            )
            .unwrap_err();
        assert_eq!(
            err,
            MemoryError::NotUsableRam {
                name: "mailbox",
                start: 0xf8000,
                end: 0x108000,
                kind: MemoryKind::Reserved,
                region_start: 0xf0000,
                region_end: 0x100000,
            }
        );
        assert_eq!(
            err.to_string(),
            "cannot reserve mailbox 0xf8000-0x108000: overlaps firmware-reserved memory 0xf0000-0x100000"
        );
        // Running from RAM into ACPI tables.
        let err = map
            .reserve(
                2 * GIB - 0x1000,
                0x2000,
                "x",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            MemoryError::NotUsableRam {
                kind: MemoryKind::AcpiReclaim,
                ..
            }
        ));
        assert!(map.reservations().next().is_none());
    }

    #[test]
    fn reserve_outside_ram() {
        let mut map = pc_map();
        // Entirely in the hole between 2 GiB + 2 MiB and 4 GiB.
        let err = map
            .reserve(3 * GIB, MIB, "kernel", ReportAs::Usable, Lifetime::Boot)
            .unwrap_err();
        assert_eq!(
            err,
            MemoryError::OutsideRam {
                name: "kernel",
                start: 3 * GIB,
                end: 3 * GIB + MIB,
                hole_start: 3 * GIB,
                hole_end: 3 * GIB + MIB,
            }
        );
        // Past the end of RAM.
        let err = map
            .reserve(
                8 * GIB - 0x1000,
                0x2000,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            MemoryError::OutsideRam {
                hole_start,
                hole_end,
                ..
            } if hole_start == 8 * GIB && hole_end == 8 * GIB + 0x1000
        ));
        // Straddling the hole from the top of a usable range.
        let err = map
            .reserve(0x9f000, 0x2000, "kernel", ReportAs::Usable, Lifetime::Boot)
            .unwrap_err();
        assert!(
            matches!(
                err,
                MemoryError::OutsideRam {
                    hole_start: 0xa0000,
                    hole_end: 0xa1000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("is not RAM"));
    }

    #[test]
    fn zero_size_refused() {
        let mut map = pc_map();
        assert_eq!(
            map.reserve(0x1000, 0, "x", ReportAs::Reserved, Lifetime::Boot),
            Err(MemoryError::ZeroSize { name: "x" })
        );
        assert_eq!(
            map.allocate(
                0,
                PAGE_SIZE,
                0,
                u64::MAX,
                "y",
                ReportAs::Reserved,
                Lifetime::Boot
            ),
            Err(MemoryError::ZeroSize { name: "y" })
        );
        assert!(!map.is_free(0x1000, 0));
    }

    #[test]
    fn top_of_address_space_does_not_panic() {
        // The last page's end is 2^64, which does not fit: the map keeps [.., u64::MAX).
        let base = u64::MAX - 0xffff;
        let mut map = MemoryMap::new(&[ram(base, 0x1_0000)]).unwrap();
        assert_eq!(map.platform_regions(), &[ram(base, 0xffff)]);
        assert!(matches!(
            map.reserve(
                u64::MAX - 0xfff,
                0x2000,
                "x",
                ReportAs::Reserved,
                Lifetime::Boot
            ),
            Err(MemoryError::AddressOverflow { .. })
        ));
        assert!(!map.is_free(u64::MAX, u64::MAX));
        // Sizes that overflow when rounded up to a page.
        assert!(matches!(
            map.allocate(
                u64::MAX,
                1,
                0,
                u64::MAX,
                "x",
                ReportAs::Reserved,
                Lifetime::Boot
            ),
            Err(MemoryError::NoSpace { .. })
        ));
        assert!(matches!(
            map.allocate(
                u64::MAX - 0x10,
                PAGE_SIZE,
                0,
                u64::MAX,
                "x",
                ReportAs::Reserved,
                Lifetime::Boot
            ),
            Err(MemoryError::NoSpace { .. })
        ));
        // Huge alignment: only address 0 qualifies, which is not RAM here.
        assert!(matches!(
            map.allocate(
                1,
                1 << 63,
                0,
                u64::MAX,
                "x",
                ReportAs::Reserved,
                Lifetime::Boot
            ),
            Err(MemoryError::NoSpace { .. })
        ));
        assert_eq!(map.largest_free_below(u64::MAX), Some((base, 0xf000)));
        // The highest whole page lies below the cut-off last page.
        let at = map
            .allocate(1, 1, 0, u64::MAX, "top", ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
        assert_eq!(at, u64::MAX - 0x1fff);
        assert_eq!(
            view(&map),
            [
                (base, 0xe000, ReportAs::Usable),
                (at, PAGE_SIZE, ReportAs::Reserved),
                (at + PAGE_SIZE, 0xfff, ReportAs::Usable),
            ]
        );
    }

    #[test]
    fn allocate_highest_fit_with_alignment() {
        let mut map = pc_map();
        // Highest overall: top of RAM above 4 GiB.
        let a = map
            .allocate(
                MIB,
                2 * MIB,
                0,
                u64::MAX,
                "a",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(a, 8 * GIB - 2 * MIB);
        // Below 4 GiB: top of the RAM ending at 2 GiB.
        let b = map
            .allocate(
                16 * MIB,
                2 * MIB,
                0,
                4 * GIB,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(b, 2 * GIB - 16 * MIB);
        // Size rounded up to a page, alignment raised to a page.
        let c = map
            .allocate(10, 1, 0, 4 * GIB, "c", ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
        assert_eq!(c, 2 * GIB - 16 * MIB - PAGE_SIZE);
        let res = map.reservations().find(|r| r.name == "c").unwrap();
        assert_eq!(res.size, PAGE_SIZE);
        // Alignment skips down past the odd page.
        let d = map
            .allocate(
                PAGE_SIZE,
                MIB,
                0,
                4 * GIB,
                "d",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(d, 2 * GIB - 17 * MIB);
        // A maximum that cuts a range: the result ends at or below it.
        let e = map
            .allocate(
                0x3000,
                PAGE_SIZE,
                0,
                0x90800,
                "e",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(e, 0x8d000);
        // A minimum: nothing fits in [1 GiB, 1 GiB + 1 MiB) once it is taken.
        let f = map
            .allocate(
                MIB,
                PAGE_SIZE,
                GIB,
                GIB + MIB,
                "f",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(f, GIB);
        assert!(map
            .allocate(
                PAGE_SIZE,
                PAGE_SIZE,
                GIB,
                GIB + MIB,
                "g",
                ReportAs::Reserved,
                Lifetime::Boot
            )
            .is_err());
        // Never lands in the reserved BIOS area, the ACPI tables or the hole.
        for r in map.reservations() {
            assert!(map
                .platform_regions()
                .iter()
                .any(|p| p.kind.is_usable() && p.start <= r.start && r.end() <= p.end()));
        }
    }

    #[test]
    fn allocate_fills_gaps_between_reservations() {
        let mut map = MemoryMap::new(&[ram(0, 0x10_0000)]).unwrap();
        map.reserve(
            0xf_0000,
            0x1_0000,
            "top",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            0xe_0000,
            0xf000,
            "mid",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        // The one free page between the two.
        let a = map
            .allocate(
                PAGE_SIZE,
                PAGE_SIZE,
                0,
                u64::MAX,
                "a",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(a, 0xe_f000);
        // Two pages do not fit there; the next gap is below "mid".
        let b = map
            .allocate(
                2 * PAGE_SIZE,
                PAGE_SIZE,
                0,
                u64::MAX,
                "b",
                ReportAs::Reserved,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(b, 0xd_e000);
    }

    #[test]
    fn allocate_exhaustion_error() {
        let mut map = pc_map();
        let err = map
            .allocate(
                16 * MIB,
                2 * MIB,
                0,
                4 * MIB,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free 16 MiB below 4 MiB, aligned to 2 MiB, for kernel"
        );
        let err = map
            .allocate(
                16 * GIB,
                2 * MIB,
                0,
                4 * GIB,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free 16 GiB below 4 GiB, aligned to 2 MiB, for kernel"
        );
        // Only the BIOS area and a hole lie between 640 KiB and 1 MiB.
        let err = map
            .allocate(
                0x1801,
                1,
                0xa0000,
                MIB,
                "x",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free 0x1801 bytes between 640 KiB and 1 MiB, aligned to 4 KiB, for x"
        );
        let err = map
            .allocate(
                5 * GIB,
                1,
                MIB,
                u64::MAX,
                "initrd",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free 5 GiB above 1 MiB, aligned to 4 KiB, for initrd"
        );
        // Empty and inverted windows.
        assert!(matches!(
            map.allocate(
                PAGE_SIZE,
                1,
                4 * GIB,
                4 * GIB,
                "x",
                ReportAs::Usable,
                Lifetime::Boot
            ),
            Err(MemoryError::NoSpace { .. })
        ));
        assert!(matches!(
            map.allocate(
                PAGE_SIZE,
                1,
                5 * GIB,
                4 * GIB,
                "x",
                ReportAs::Usable,
                Lifetime::Boot
            ),
            Err(MemoryError::NoSpace { .. })
        ));
        // Exhaust a small map page by page.
        let mut small = MemoryMap::new(&[ram(0x1000, 0x3000)]).unwrap();
        for _ in 0..3 {
            small
                .allocate(1, 1, 0, u64::MAX, "p", ReportAs::Reserved, Lifetime::Boot)
                .unwrap();
        }
        assert!(matches!(
            small.allocate(1, 1, 0, u64::MAX, "p", ReportAs::Reserved, Lifetime::Boot),
            Err(MemoryError::NoSpace { .. })
        ));
        assert_eq!(small.total_free(), 0);
    }

    #[test]
    fn bad_alignment_refused() {
        let mut map = pc_map();
        for align in [0, 3, 0x1800] {
            assert_eq!(
                map.allocate(
                    PAGE_SIZE,
                    align,
                    0,
                    u64::MAX,
                    "x",
                    ReportAs::Usable,
                    Lifetime::Boot
                ),
                Err(MemoryError::BadAlignment { name: "x", align })
            );
        }
    }

    #[test]
    fn reservation_slots_run_out() {
        let mut map = MemoryMap::new(&[ram(0, GIB)]).unwrap();
        for _ in 0..MAX_RESERVATIONS {
            map.allocate(1, 1, 0, u64::MAX, "p", ReportAs::Reserved, Lifetime::Boot)
                .unwrap();
        }
        assert_eq!(
            map.allocate(1, 1, 0, u64::MAX, "q", ReportAs::Reserved, Lifetime::Boot),
            Err(MemoryError::TooManyReservations { name: "q" })
        );
        assert_eq!(
            map.reserve(0, 1, "r", ReportAs::Reserved, Lifetime::Boot),
            Err(MemoryError::TooManyReservations { name: "r" })
        );
    }

    #[test]
    fn release_boot_frees_only_boot_lifetime() {
        let mut map = pc_map();
        map.reserve(
            0x100000,
            0x40000,
            "payload image",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            0x9f000,
            0x1000,
            "mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .unwrap();
        let k = map
            .allocate(
                16 * MIB,
                2 * MIB,
                0,
                4 * GIB,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap();
        map.reserve(
            0x200000,
            0x1000,
            "boot params",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        assert!(!map.is_free(k, 16 * MIB));
        assert_eq!(map.reservations().count(), 4);
        map.release_boot();
        let names: StdVec<&str> = map.reservations().map(|r| r.name).collect();
        assert_eq!(names, ["mailbox", "payload image"]);
        assert!(map.is_free(k, 16 * MIB));
        assert!(map.is_free(0x200000, 0x1000));
        assert!(!map.is_free(0x100000, 1));
        // The next kernel gets the same place.
        let k2 = map
            .allocate(
                16 * MIB,
                2 * MIB,
                0,
                4 * GIB,
                "kernel",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(k, k2);
    }

    #[test]
    fn kernel_view_cuts_reservations_out() {
        let mut map = pc_map();
        map.reserve(
            0x9f000,
            0x1000,
            "mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            0x100000,
            0x40000,
            "payload image",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        // Touches the payload image: merges with it in the view.
        map.reserve(
            0x140000,
            0x4000,
            "park region",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        map.reserve(
            0x1000000,
            0x800000,
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        // At the very top of the RAM below 2 GiB, right under the ACPI tables.
        map.reserve(
            2 * GIB - 0x10000,
            0x10000,
            "acpi copy",
            ReportAs::AcpiReclaim,
            Lifetime::Permanent,
        )
        .unwrap();
        // At the very start of the RAM above 4 GiB.
        map.reserve(
            4 * GIB,
            0x2000,
            "page tables",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap();
        assert_eq!(
            view(&map),
            [
                (0, 0x9f000, ReportAs::Usable),
                (0x9f000, 0x1000, ReportAs::AcpiNvs),
                // The BIOS area (platform Reserved), payload image and park region touch
                // and are all shown as Reserved: one range.
                (0xf0000, 0x54000, ReportAs::Reserved),
                // The kernel's load area is Usable to the kernel: merged with its
                // surroundings.
                (0x144000, 2 * GIB - 0x10000 - 0x144000, ReportAs::Usable),
                // The ACPI copy touches the platform's ACPI tables.
                (2 * GIB - 0x10000, 0x10000 + MIB, ReportAs::AcpiReclaim),
                (2 * GIB + MIB, MIB, ReportAs::Reserved),
                (4 * GIB, 0x2000, ReportAs::Reserved),
                (4 * GIB + 0x2000, 4 * GIB - 0x2000, ReportAs::Usable),
            ]
        );
    }

    #[test]
    fn kernel_view_maps_platform_kinds() {
        let map = MemoryMap::new(&[
            ram(0, 0x1000),
            region(0x1000, 0x1000, MemoryKind::Unusable),
            region(0x3000, 0x1000, MemoryKind::Other(20)),
            region(0x5000, 0x1000, MemoryKind::AcpiNvs),
            region(0x6000, 0x1000, MemoryKind::CorebootTables),
        ])
        .unwrap();
        assert_eq!(
            view(&map),
            [
                (0, 0x1000, ReportAs::Usable),
                (0x1000, 0x1000, ReportAs::Reserved),
                (0x3000, 0x1000, ReportAs::Reserved),
                (0x5000, 0x1000, ReportAs::AcpiNvs),
                (0x6000, 0x1000, ReportAs::Reserved),
            ]
        );
    }

    #[test]
    fn kernel_view_is_sorted_disjoint_and_covers_the_platform_map() {
        let mut map = pc_map();
        let mut reserved_total = 0;
        for (i, size) in [0x3000u64, MIB, 5 * MIB, 0x1000, 3 * GIB]
            .iter()
            .enumerate()
        {
            let report = if i % 2 == 0 {
                ReportAs::Reserved
            } else {
                ReportAs::AcpiReclaim
            };
            map.allocate(*size, 1, 0, u64::MAX, "x", report, Lifetime::Boot)
                .unwrap();
            reserved_total += size;
        }
        let v = view(&map);
        for pair in v.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(a.0 + a.1 <= b.0, "{v:x?}");
            assert!(!(a.0 + a.1 == b.0 && a.2 == b.2), "unmerged {v:x?}");
        }
        let covered: u64 = v.iter().map(|x| x.1).sum();
        let platform: u64 = map.platform_regions().iter().map(|r| r.size).sum();
        assert_eq!(covered, platform);
        let usable: u64 = v
            .iter()
            .filter(|x| x.2 == ReportAs::Usable)
            .map(|x| x.1)
            .sum();
        assert_eq!(usable, map.total_usable() - reserved_total);
        assert_eq!(map.total_free(), usable);
    }

    #[test]
    fn largest_free_below_limit() {
        let mut map = pc_map();
        assert_eq!(map.largest_free_below(4 * GIB), Some((MIB, 2 * GIB - MIB)));
        assert_eq!(map.largest_free_below(MIB), Some((0, 0xa0000)));
        assert_eq!(map.largest_free_below(0x800), None);
        map.reserve(GIB, 0x800, "split", ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
        // The free part after the unaligned reservation starts on the next page.
        assert_eq!(
            map.largest_free_below(4 * GIB),
            Some((GIB + PAGE_SIZE, GIB - PAGE_SIZE))
        );
        assert_eq!(map.largest_free_below(u64::MAX), Some((4 * GIB, 4 * GIB)));
    }

    #[test]
    fn is_free_checks() {
        let mut map = pc_map();
        assert!(map.is_free(0, 0xa0000));
        assert!(!map.is_free(0, 0xa0001));
        assert!(!map.is_free(0xf0000, 1));
        map.reserve(0x1000, 0x1000, "x", ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
        assert!(!map.is_free(0x1fff, 1));
        assert!(map.is_free(0x2000, 1));
    }
}
