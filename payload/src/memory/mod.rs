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
//! reserved ranges a kernel is reloaded into; `region` is the one way from a reserved
//! range to its bytes.

pub mod bulk;
mod kind;
pub mod paging;
pub mod region;

use core::fmt;

use heapless::Vec;

pub use kind::{KindName, MemoryKind, MemoryRegion, MAX_MEMORY_REGIONS};

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

/// What [`MemoryMap::allocate`] is asked to find and reserve. Every field is named at
/// the call site, so a request reads as what it places and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationRequest {
    /// Bytes wanted; rounded up to whole pages.
    pub size: u64,
    /// Alignment of the start, a power of two; raised to [`PAGE_SIZE`] when smaller.
    pub align: u64,
    /// Lowest address the range may start at.
    pub min: u64,
    /// Exclusive upper bound of the range's end.
    pub max: u64,
    /// What the range holds, for error messages and logs.
    pub name: &'static str,
    pub report_as: ReportAs,
    pub lifetime: Lifetime,
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
    /// A region was asked for a range no reservation holds.
    NotReserved { start: u64, end: u64 },
    /// A region was asked for a range that starts in a reservation and runs past it.
    PastReservation {
        start: u64,
        end: u64,
        reservation: &'static str,
        reservation_start: u64,
        reservation_end: u64,
    },
    /// A part `offset..offset + len` of a region of `size` bytes lies outside it.
    OutsideRegion {
        name: &'static str,
        start: u64,
        size: u64,
        offset: u64,
        len: u64,
    },
    /// A range that is not (entirely) usable RAM in the platform map.
    NotRam { start: u64, end: u64 },
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
                    kind.name(KindName::Phrase)
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
            MemoryError::NotReserved { start, end } => {
                write!(f, "{start:#x}-{end:#x} is not memory parkboot reserved")
            }
            MemoryError::PastReservation {
                start,
                end,
                reservation,
                reservation_start,
                reservation_end,
            } => write!(
                f,
                "{start:#x}-{end:#x} runs past the end of {reservation} {reservation_start:#x}-{reservation_end:#x}"
            ),
            MemoryError::OutsideRegion {
                name,
                start,
                size,
                offset,
                len,
            } => write!(
                f,
                "{len:#x} bytes at offset {offset:#x} lie outside {name} at {start:#x} ({size:#x} bytes)"
            ),
            MemoryError::NotRam { start, end } => {
                write!(f, "{start:#x}-{end:#x} is not usable RAM")
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
    pub fn allocate(&mut self, request: AllocationRequest) -> Result<u64, MemoryError> {
        let AllocationRequest {
            size,
            align,
            min,
            max,
            name,
            report_as,
            lifetime,
        } = request;
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
mod tests;
