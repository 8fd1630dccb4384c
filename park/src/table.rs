//! The park table: parkboot's description of every CPU it parked, shared with kernels.
//!
//! It lives in firmware-reserved memory (e820 type 2, so Linux can read it through
//! `/dev/mem`); its address reaches kernels in the multiboot2 parkboot tag and in the
//! boot log. Every field another CPU reads is atomic: writers publish with release,
//! readers observe with acquire.

use crate::mailbox::WakeupMailbox;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `ParkTable::signature`: lets a reader check it found a park table.
pub const PARK_TABLE_SIGNATURE: [u8; 8] = *b"PARKTABL";
/// Bumped on any incompatible layout change; fields are only ever added at the end of
/// the header's reserved space in compatible versions. Version 2 made the slot array
/// self-describing (`slots_offset`, `slot_size`, `slot_count`): a reader finds slot `i`
/// at `table + slots_offset + i * slot_size`, so tables with more slots (or longer
/// slots) need no recompiled kernel.
pub const PARK_TABLE_VERSION: u32 = 2;
/// The most slots this build of parkboot gives a park table. Not part of the ABI
/// (readers use `slot_count`): CPUs beyond it are not started, are counted in
/// `cpus_beyond_table` and are withheld from the kernels' MADT.
pub const MAX_PARKED_CPUS: usize = 256;
/// Bytes of the header: the slots start here in tables parkboot builds.
pub const PARK_TABLE_HEADER_SIZE: usize = core::mem::size_of::<ParkTable>();

/// What a CPU is doing, as recorded in its slot's `state`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuState {
    /// The slot describes no CPU.
    Empty = 0,
    /// The boot processor: it runs parkboot and the kernels, and is never parked.
    BootProcessor = 1,
    /// INIT-SIPI-SIPI was sent; the CPU has not reached the park loop yet.
    Starting = 2,
    /// Waiting in the park loop: wakeable through the mailbox or the wake-all doorbell.
    Parked = 3,
    /// Left the park loop for a wakeup vector; a kernel owns it until it hands it back
    /// through the ResetVector.
    Running = 4,
    /// Took an unexpected exception while in parkboot's code (vector and RIP are in
    /// the slot) and stopped for good: it will not answer the mailbox.
    Faulted = 5,
    /// Never reached the park loop after INIT-SIPI-SIPI within the timeout.
    NotResponding = 6,
    /// The MADT lists it as neither enabled nor online-capable; not started.
    Disabled = 7,
}

impl CpuState {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => CpuState::Empty,
            1 => CpuState::BootProcessor,
            2 => CpuState::Starting,
            3 => CpuState::Parked,
            4 => CpuState::Running,
            5 => CpuState::Faulted,
            6 => CpuState::NotResponding,
            7 => CpuState::Disabled,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuState::Empty => "empty",
            CpuState::BootProcessor => "boot processor",
            CpuState::Starting => "starting",
            CpuState::Parked => "parked",
            CpuState::Running => "running",
            CpuState::Faulted => "faulted",
            CpuState::NotResponding => "not responding",
            CpuState::Disabled => "disabled",
        }
    }
}

/// The vector of the park timer, the local-APIC timer interrupt that ends each HLT of
/// the `WAIT_HLT` wait. A CPU leaving the park loop masks and stops the timer and has
/// nothing of this vector pending or in service.
pub const PARK_TIMER_VECTOR: u8 = 0xEE;

/// The vector of the wake interrupt of the `WAIT_HLT` wait: the watcher (see
/// [`ParkTable::watcher`]) sends it to a sleeping CPU whose doorbell
/// ([`CpuSlot::doorbell`]) is [`doorbell::ARMED`]. In the same 32-vector block as the
/// park timer's, so one ISR/IRR word shows both. A CPU leaving the park loop has
/// nothing of this vector pending or in service either.
pub const PARK_WAKE_VECTOR: u8 = 0xED;

/// Values of [`CpuSlot::doorbell`], the handshake between a CPU sleeping in the
/// `WAIT_HLT` wait and the watcher that wakes it with [`PARK_WAKE_VECTOR`].
pub mod doorbell {
    /// Not asleep (or not in the HLT wait): nobody sends it a wake interrupt.
    pub const IDLE: u32 = 0;
    /// Asleep in HLT (or about to be): the watcher may ring it.
    pub const ARMED: u32 = 1;
    /// The watcher took the doorbell (ARMED -> RUNG, locked) and sends exactly one
    /// wake interrupt.
    pub const RUNG: u32 = 2;
    /// The wake interrupt arrived (its handler set RUNG -> DELIVERED). Only from IDLE,
    /// ARMED or DELIVERED does the CPU leave the park loop, so no wake interrupt is
    /// ever left in flight to a kernel.
    pub const DELIVERED: u32 = 3;
}

/// Bits of [`ParkTable::flags`].
pub mod flags {
    /// Parked CPUs wait with MONITOR/MWAIT on the mailbox's first cache line (else a
    /// PAUSE loop). A wake-all publisher rings that line too; see the README.
    pub const WAIT_MWAIT: u32 = 1 << 0;
    /// `--no-park` baseline: the mailbox entry was not added to the MADT and the APs
    /// were left for the kernel to start with INIT/SIPI; the slots are all empty.
    pub const BASELINE_NO_PARK: u32 = 1 << 1;
    /// `ParkTable::checksum` holds [`super::ParkTable::compute_checksum`] of the fields
    /// only parkboot writes (see the README); parkboot recomputes it whenever it
    /// changes one of them.
    pub const CHECKSUM: u32 = 1 << 2;
    /// Parked CPUs wait with HLT, woken by a periodic local-APIC timer interrupt to
    /// look at the mailbox and the doorbell again (chosen where MWAIT is missing or
    /// cannot sleep, e.g. under a hypervisor). A wakeup waits up to one period.
    pub const WAIT_HLT: u32 = 1 << 3;
}

/// One CPU. 128 bytes, so two CPUs never share a cache line pair.
#[repr(C, align(128))]
pub struct CpuSlot {
    /// Its APIC ID (x2APIC ID when above 255).
    pub apic_id: u32,
    /// A [`CpuState`].
    pub state: AtomicU32,
    /// Times this CPU arrived in the park loop from INIT-SIPI-SIPI. parkboot starts each
    /// AP once, so this stays 1.
    pub start_count: AtomicU32,
    /// NMIs taken while in parkboot's code (each returns to where it hit).
    pub nmi_count: AtomicU32,
    /// Times it left the park loop for a wakeup vector (mailbox or wake-all).
    pub wake_count: AtomicU64,
    /// Times it came back through the ResetVector.
    pub return_count: AtomicU64,
    /// TSC when it last left the park loop.
    pub last_wake_tsc: AtomicU64,
    /// TSC when it last entered the park loop.
    pub last_park_tsc: AtomicU64,
    /// The last `ParkTable::wake_all_generation` this CPU answered.
    pub wake_all_seen: AtomicU64,
    /// Machine checks taken while parked (recorded, then it keeps parking).
    pub machine_check_count: AtomicU32,
    /// For `Faulted`: the exception vector.
    pub fault_vector: AtomicU32,
    /// For `Faulted`: the RIP of the faulting instruction.
    pub fault_rip: AtomicU64,
    /// Top of this CPU's park stack (in the park region).
    pub stack_top: u64,
    /// TSC when the boot processor sent this CPU its first SIPI.
    pub sipi_tsc: AtomicU64,
    /// TSC when it first reached the park loop (start latency = this - `sipi_tsc`).
    pub first_park_tsc: AtomicU64,
    /// Free for the code a CPU was woken into: parkboot only writes it in its own
    /// self-check, before the first kernel (a round's sequence number, then
    /// `(sequence << 32) | APIC ID` and the TSC as proof the CPU ran).
    pub kernel_scratch: [AtomicU64; 2],
    /// The last wakeup vector this CPU refused (mailbox or wake-all): 0, non-canonical,
    /// or at or above the end of parkboot's identity map. It stayed parked instead.
    pub refused_vector: AtomicU64,
    /// How many vectors it refused since it was first parked.
    pub refused_count: AtomicU32,
    /// A [`doorbell`] value: how this CPU waits in the `WAIT_HLT` wait (written by the
    /// CPU and the watcher only; kernels leave it alone).
    pub doorbell: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<CpuSlot>() == 128);
    assert!(offset_of!(CpuSlot, apic_id) == 0);
    assert!(offset_of!(CpuSlot, state) == 4);
    assert!(offset_of!(CpuSlot, start_count) == 8);
    assert!(offset_of!(CpuSlot, nmi_count) == 12);
    assert!(offset_of!(CpuSlot, wake_count) == 16);
    assert!(offset_of!(CpuSlot, return_count) == 24);
    assert!(offset_of!(CpuSlot, last_wake_tsc) == 32);
    assert!(offset_of!(CpuSlot, last_park_tsc) == 40);
    assert!(offset_of!(CpuSlot, wake_all_seen) == 48);
    assert!(offset_of!(CpuSlot, machine_check_count) == 56);
    assert!(offset_of!(CpuSlot, fault_vector) == 60);
    assert!(offset_of!(CpuSlot, fault_rip) == 64);
    assert!(offset_of!(CpuSlot, stack_top) == 72);
    assert!(offset_of!(CpuSlot, sipi_tsc) == 80);
    assert!(offset_of!(CpuSlot, first_park_tsc) == 88);
    assert!(offset_of!(CpuSlot, kernel_scratch) == 96);
    assert!(offset_of!(CpuSlot, refused_vector) == 112);
    assert!(offset_of!(CpuSlot, refused_count) == 120);
    assert!(offset_of!(CpuSlot, doorbell) == 124);
};

impl CpuSlot {
    pub fn state(&self) -> Option<CpuState> {
        CpuState::from_raw(self.state.load(Ordering::Acquire))
    }
}

/// The park table header. `slot_count` slots follow it in the same memory (at
/// `slots_offset`, `slot_size` apart), so a `ParkTable` is only ever used by reference
/// to where parkboot placed it (or to a buffer of `table_size` bytes), never by value:
/// [`ParkTable::cpus`] reads the slots behind the header.
#[repr(C, align(128))]
pub struct ParkTable {
    /// [`PARK_TABLE_SIGNATURE`].
    pub signature: [u8; 8],
    /// [`PARK_TABLE_VERSION`].
    pub version: u32,
    /// Bytes of the whole table, header and slots: readers check that the slots
    /// (`slots_offset + slot_count * slot_size`) end within it before trusting them.
    pub table_size: u32,
    /// Slots in use (the boot processor's included); equal to `slot_count` in tables
    /// parkboot builds. CPUs the MADT lists beyond the slots are `cpus_beyond_table`.
    pub cpu_count: u32,
    /// CPUs in the park loop right now. A kernel that wakes CPUs knows it has woken
    /// them all when this reaches 0, and that all are back when it is back to the
    /// number it started with.
    pub parked_count: AtomicU32,
    /// APIC ID of the boot processor.
    pub boot_apic_id: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Physical address of the ACPI wakeup mailbox (also in the MADT entry).
    pub mailbox_address: u64,
    /// Physical address of the ResetVector (also in the MADT entry): jump there in
    /// 64-bit mode, interrupts off, to hand a CPU back.
    pub reset_vector: u64,
    /// Where CPUs jump when woken by the doorbell below; identity-mapped, long mode.
    /// 0 = stay parked; parkboot clears it before it boots each kernel.
    pub wake_all_vector: AtomicU64,
    /// The wake-all doorbell: write `wake_all_vector`, then increment this, then write
    /// the mailbox's `wake_all_signal` (what [`ParkTable::wake_all`] does). Every parked
    /// CPU whose `wake_all_seen` differs jumps to `wake_all_vector` once.
    pub wake_all_generation: AtomicU64,
    /// TSC ticks per second, as parkboot measured them.
    pub tsc_hz: u64,
    /// Where a park-aware kernel gives control back to parkboot (0 = not offered).
    pub reentry_vector: u64,
    /// Physical base and size of the park region (mailbox, table, code, stacks).
    pub park_region_base: u64,
    pub park_region_size: u64,
    /// Kernels parkboot has booted (multiboot2 and Linux) since the CPUs were parked;
    /// Linux's own kexecs do not count.
    pub boots: AtomicU64,
    /// Byte offset of slot 0 from the start of the table (128 in version 2).
    pub slots_offset: u32,
    /// Bytes from one slot to the next (at least `size_of::<CpuSlot>()`; a later
    /// version may append fields to a slot, and readers step by this).
    pub slot_size: u32,
    /// Slots that follow the header; `cpu_count` of them are in use.
    pub slot_count: u32,
    /// CPUs the platform's MADT lists as usable that did not fit in the table: never
    /// started, not in any slot, and left out of (not enabled in) the kernels' MADT.
    pub cpus_beyond_table: u32,
    /// With flag [`flags::CHECKSUM`]: [`ParkTable::compute_checksum`] over the fields
    /// only parkboot writes (header fields and each slot's `apic_id` and `stack_top`).
    pub checksum: u32,
    /// `WAIT_HLT`: the APIC ID + 1 of the one parked CPU that looks at the mailbox and
    /// the doorbell every park-timer period and rings ([`CpuSlot::doorbell`]) the CPUs
    /// they concern; 0 when none has claimed the role yet. The others sleep in HLT
    /// without a timer tick until rung (with a backstop of their own: see the README).
    /// Written by parked CPUs only.
    pub watcher: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(ParkTable, signature) == 0);
    assert!(offset_of!(ParkTable, version) == 8);
    assert!(offset_of!(ParkTable, table_size) == 12);
    assert!(offset_of!(ParkTable, cpu_count) == 16);
    assert!(offset_of!(ParkTable, parked_count) == 20);
    assert!(offset_of!(ParkTable, boot_apic_id) == 24);
    assert!(offset_of!(ParkTable, flags) == 28);
    assert!(offset_of!(ParkTable, mailbox_address) == 32);
    assert!(offset_of!(ParkTable, reset_vector) == 40);
    assert!(offset_of!(ParkTable, wake_all_vector) == 48);
    assert!(offset_of!(ParkTable, wake_all_generation) == 56);
    assert!(offset_of!(ParkTable, tsc_hz) == 64);
    assert!(offset_of!(ParkTable, reentry_vector) == 72);
    assert!(offset_of!(ParkTable, park_region_base) == 80);
    assert!(offset_of!(ParkTable, park_region_size) == 88);
    assert!(offset_of!(ParkTable, boots) == 96);
    assert!(offset_of!(ParkTable, slots_offset) == 104);
    assert!(offset_of!(ParkTable, slot_size) == 108);
    assert!(offset_of!(ParkTable, slot_count) == 112);
    assert!(offset_of!(ParkTable, cpus_beyond_table) == 116);
    assert!(offset_of!(ParkTable, checksum) == 120);
    assert!(offset_of!(ParkTable, watcher) == 124);
    assert!(size_of::<ParkTable>() == 128);
};

/// Bytes of a table with `slot_count` slots, as parkboot lays it out.
pub const fn table_bytes(slot_count: usize) -> usize {
    PARK_TABLE_HEADER_SIZE + slot_count * core::mem::size_of::<CpuSlot>()
}

/// Byte offsets the park code (assembly) uses, derived from the structs above.
pub mod offsets {
    use super::{CpuSlot, ParkTable};
    use core::mem::{offset_of, size_of};
    pub const TABLE_CPU_COUNT: usize = offset_of!(ParkTable, cpu_count);
    pub const TABLE_PARKED_COUNT: usize = offset_of!(ParkTable, parked_count);
    pub const TABLE_RESET_VECTOR: usize = offset_of!(ParkTable, reset_vector);
    pub const TABLE_WAKE_ALL_VECTOR: usize = offset_of!(ParkTable, wake_all_vector);
    pub const TABLE_WAKE_ALL_GENERATION: usize = offset_of!(ParkTable, wake_all_generation);
    pub const TABLE_SLOTS_OFFSET: usize = offset_of!(ParkTable, slots_offset);
    pub const TABLE_SLOT_SIZE: usize = offset_of!(ParkTable, slot_size);
    /// Where parkboot puts slot 0 (the header's size; `slots_offset` says so to readers).
    pub const TABLE_SLOTS: usize = size_of::<ParkTable>();
    pub const SLOT_SIZE: usize = size_of::<CpuSlot>();
    pub const SLOT_APIC_ID: usize = offset_of!(CpuSlot, apic_id);
    pub const SLOT_STATE: usize = offset_of!(CpuSlot, state);
    pub const SLOT_START_COUNT: usize = offset_of!(CpuSlot, start_count);
    pub const SLOT_NMI_COUNT: usize = offset_of!(CpuSlot, nmi_count);
    pub const SLOT_WAKE_COUNT: usize = offset_of!(CpuSlot, wake_count);
    pub const SLOT_RETURN_COUNT: usize = offset_of!(CpuSlot, return_count);
    pub const SLOT_LAST_WAKE_TSC: usize = offset_of!(CpuSlot, last_wake_tsc);
    pub const SLOT_LAST_PARK_TSC: usize = offset_of!(CpuSlot, last_park_tsc);
    pub const SLOT_WAKE_ALL_SEEN: usize = offset_of!(CpuSlot, wake_all_seen);
    pub const SLOT_MACHINE_CHECK_COUNT: usize = offset_of!(CpuSlot, machine_check_count);
    pub const SLOT_FAULT_VECTOR: usize = offset_of!(CpuSlot, fault_vector);
    pub const SLOT_FAULT_RIP: usize = offset_of!(CpuSlot, fault_rip);
    pub const SLOT_STACK_TOP: usize = offset_of!(CpuSlot, stack_top);
    pub const SLOT_FIRST_PARK_TSC: usize = offset_of!(CpuSlot, first_park_tsc);
    pub const SLOT_KERNEL_SCRATCH: usize = offset_of!(CpuSlot, kernel_scratch);
    pub const SLOT_REFUSED_VECTOR: usize = offset_of!(CpuSlot, refused_vector);
    pub const SLOT_REFUSED_COUNT: usize = offset_of!(CpuSlot, refused_count);
    pub const SLOT_DOORBELL: usize = offset_of!(CpuSlot, doorbell);
    pub const TABLE_WATCHER: usize = offset_of!(ParkTable, watcher);
}

/// What is wrong with a park table header ([`ParkTable::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableProblem {
    Signature([u8; 8]),
    Version {
        found: u32,
        expected: u32,
    },
    /// `slots_offset` before the end of the header, or not a multiple of the slot
    /// alignment.
    SlotsOffset(u32),
    /// `slot_size` shorter than a slot, or not a multiple of its alignment.
    SlotSize(u32),
    /// `cpu_count` above `slot_count`.
    CpuCount {
        cpu_count: u32,
        slot_count: u32,
    },
    /// The slots end beyond `table_size`.
    TableSize {
        table_size: u32,
        slots_end: u64,
    },
}

impl core::fmt::Display for TableProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TableProblem::Signature(found) => {
                write!(f, "signature {found:02x?}, expected \"PARKTABL\"")
            }
            TableProblem::Version { found, expected } => {
                write!(f, "version {found}, expected {expected}")
            }
            TableProblem::SlotsOffset(offset) => write!(
                f,
                "slots_offset {offset}: must be at least {PARK_TABLE_HEADER_SIZE} and a multiple of {}",
                core::mem::align_of::<CpuSlot>()
            ),
            TableProblem::SlotSize(size) => write!(
                f,
                "slot_size {size}: must be at least {} and a multiple of {}",
                core::mem::size_of::<CpuSlot>(),
                core::mem::align_of::<CpuSlot>()
            ),
            TableProblem::CpuCount {
                cpu_count,
                slot_count,
            } => write!(f, "cpu_count {cpu_count} is above slot_count {slot_count}"),
            TableProblem::TableSize {
                table_size,
                slots_end,
            } => write!(
                f,
                "table_size {table_size}, but the slots end at byte {slots_end}"
            ),
        }
    }
}

/// The slots in use of a [`ParkTable`], `stride` bytes apart behind its header.
#[derive(Clone, Copy)]
pub struct Slots<'a> {
    first: *const u8,
    stride: usize,
    count: usize,
    table: core::marker::PhantomData<&'a ParkTable>,
}

impl<'a> Slots<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, index: usize) -> Option<&'a CpuSlot> {
        if index >= self.count {
            return None;
        }
        // SAFETY: `ParkTable::cpus` built this from a checked header: index < count
        // slots of `stride` bytes (aligned, at least a CpuSlot) follow `first` within
        // the table's memory, which lives as long as the table reference.
        Some(unsafe { &*(self.first.add(index * self.stride) as *const CpuSlot) })
    }

    pub fn iter(&self) -> SlotIter<'a> {
        SlotIter {
            slots: *self,
            next: 0,
        }
    }
}

impl<'a> IntoIterator for Slots<'a> {
    type Item = &'a CpuSlot;
    type IntoIter = SlotIter<'a>;
    fn into_iter(self) -> SlotIter<'a> {
        self.iter()
    }
}

#[derive(Clone)]
pub struct SlotIter<'a> {
    slots: Slots<'a>,
    next: usize,
}

impl<'a> Iterator for SlotIter<'a> {
    type Item = &'a CpuSlot;
    fn next(&mut self) -> Option<&'a CpuSlot> {
        let slot = self.slots.get(self.next)?;
        self.next += 1;
        Some(slot)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.slots.count - self.next.min(self.slots.count);
        (left, Some(left))
    }
}

impl ExactSizeIterator for SlotIter<'_> {}

impl ParkTable {
    /// Checks the header a kernel found at an address it was given: signature,
    /// version, and that the slots it describes lie within `table_size`.
    pub fn check(&self) -> Result<(), TableProblem> {
        if self.signature != PARK_TABLE_SIGNATURE {
            return Err(TableProblem::Signature(self.signature));
        }
        if self.version != PARK_TABLE_VERSION {
            return Err(TableProblem::Version {
                found: self.version,
                expected: PARK_TABLE_VERSION,
            });
        }
        let align = core::mem::align_of::<CpuSlot>();
        let offset = self.slots_offset as usize;
        if offset < PARK_TABLE_HEADER_SIZE || !offset.is_multiple_of(align) {
            return Err(TableProblem::SlotsOffset(self.slots_offset));
        }
        let size = self.slot_size as usize;
        if size < core::mem::size_of::<CpuSlot>() || !size.is_multiple_of(align) {
            return Err(TableProblem::SlotSize(self.slot_size));
        }
        if self.cpu_count > self.slot_count {
            return Err(TableProblem::CpuCount {
                cpu_count: self.cpu_count,
                slot_count: self.slot_count,
            });
        }
        let slots_end =
            u64::from(self.slots_offset) + u64::from(self.slot_count) * u64::from(self.slot_size);
        if slots_end > u64::from(self.table_size) {
            return Err(TableProblem::TableSize {
                table_size: self.table_size,
                slots_end,
            });
        }
        Ok(())
    }

    pub fn is_valid(&self) -> bool {
        self.check().is_ok()
    }

    /// The slots in use (`cpu_count` of them); none when the header does not pass
    /// [`ParkTable::check`], so a broken header never leads to a read outside the table.
    pub fn cpus(&self) -> Slots<'_> {
        let count = if self.is_valid() {
            self.cpu_count as usize
        } else {
            0
        };
        Slots {
            // SAFETY (of the reads through it, in `Slots::get`): a ParkTable is only
            // referenced where its slots follow it (see the type's documentation), and
            // the checked header keeps every slot within `table_size`.
            first: (self as *const ParkTable as *const u8).wrapping_add(self.slots_offset as usize),
            stride: self.slot_size as usize,
            count,
            table: core::marker::PhantomData,
        }
    }

    pub fn slot_for_apic_id(&self, apic_id: u32) -> Option<&CpuSlot> {
        self.cpus().iter().find(|slot| slot.apic_id == apic_id)
    }

    pub fn parked_count(&self) -> u32 {
        self.parked_count.load(Ordering::Acquire)
    }

    /// Forgets the last kernel's wake-all vector: parkboot calls it before it boots each
    /// kernel, so a doorbell generation some CPU has not answered yet can never send it
    /// into the previous kernel's memory (a CPU that finds vector 0 records the
    /// generation and stays parked).
    pub fn clear_wake_all_vector(&self) {
        self.wake_all_vector.store(0, Ordering::Release);
    }

    /// Wakes every parked CPU into `vector` through the doorbell, and returns the new
    /// doorbell generation. `mailbox` is the table's ACPI mailbox (at
    /// `mailbox_address`): after the increment the new generation is also written to
    /// its `wake_all_signal`, in the cache line parked CPUs MONITOR, because a CPU
    /// waiting in MWAIT with interrupts off wakes only on a write to that line. The
    /// mailbox `command` is not touched, so a mailbox wakeup in flight is not disturbed.
    pub fn wake_all(&self, mailbox: &WakeupMailbox, vector: u64) -> u64 {
        self.wake_all_vector.store(vector, Ordering::Release);
        let generation = self.wake_all_generation.fetch_add(1, Ordering::AcqRel) + 1;
        mailbox.wake_all_signal.store(generation, Ordering::Release);
        generation
    }
}

impl CpuSlot {
    /// Takes this CPU's doorbell if it is armed, i.e. the CPU sleeps in the `WAIT_HLT`
    /// wait (a locked ARMED -> RUNG). `Some(apic_id)`: the caller now owes that CPU
    /// exactly one fixed interrupt with [`PARK_WAKE_VECTOR`] (physical destination),
    /// and must send it; the CPU will not leave the park loop before it arrives.
    /// `None`: the CPU is awake, or does not wait with HLT, and will see what was
    /// written for it on its own (the watcher within one of its periods).
    ///
    /// A kernel that wakes a CPU through the mailbox or the wake-all doorbell calls
    /// this after writing the command (or ringing the doorbell) and sends the interrupt,
    /// so the CPU answers in microseconds instead of at the watcher's next tick.
    pub fn take_doorbell(&self) -> Option<u32> {
        self.doorbell
            .compare_exchange(
                doorbell::ARMED,
                doorbell::RUNG,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
            .map(|_| self.apic_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_armed_doorbell_is_taken_and_only_once() {
        // SAFETY: CpuSlot is plain integers and atomics; all zeros is a valid (Empty) slot.
        let slot: CpuSlot = unsafe { core::mem::zeroed() };
        let slot = CpuSlot { apic_id: 7, ..slot };
        assert_eq!(slot.take_doorbell(), None, "idle: awake");
        slot.doorbell.store(doorbell::ARMED, Ordering::Relaxed);
        assert_eq!(slot.take_doorbell(), Some(7));
        assert_eq!(slot.doorbell.load(Ordering::Relaxed), doorbell::RUNG);
        assert_eq!(
            slot.take_doorbell(),
            None,
            "rung: one interrupt is owed already"
        );
        slot.doorbell.store(doorbell::DELIVERED, Ordering::Relaxed);
        assert_eq!(slot.take_doorbell(), None);
    }

    #[test]
    fn states_round_trip() {
        for raw in 0..8 {
            let state = CpuState::from_raw(raw).unwrap();
            assert_eq!(state as u32, raw);
            assert!(!state.name().is_empty());
        }
        assert_eq!(CpuState::from_raw(8), None);
    }

    extern crate std;
    use crate::mailbox::{MAILBOX_WAKE_ALL_SIGNAL_OFFSET, MONITORED_LINE_BYTES};
    use std::boxed::Box;
    use std::string::ToString;

    /// A zeroed value on the heap (the table is 32 KiB; all-zero is valid for these
    /// integer and atomic structs).
    fn zeroed<T>() -> Box<T> {
        let layout = std::alloc::Layout::new::<T>();
        // SAFETY: T is plain integers and atomics here, valid when zero.
        unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout) as *mut T) }
    }

    #[test]
    fn wake_all_rings_the_doorbell_and_writes_the_monitored_line() {
        let table = zeroed::<ParkTable>();
        let mailbox = zeroed::<WakeupMailbox>();
        let line = |mailbox: &WakeupMailbox| {
            // SAFETY: reads the first bytes of the mailbox as plain bytes.
            let bytes = unsafe {
                core::slice::from_raw_parts(
                    mailbox as *const WakeupMailbox as *const u8,
                    MONITORED_LINE_BYTES,
                )
            };
            bytes.to_vec()
        };
        let before = line(&mailbox);
        assert_eq!(table.wake_all(&mailbox, 0x1234_5000), 1);
        assert_eq!(table.wake_all_vector.load(Ordering::Acquire), 0x1234_5000);
        assert_eq!(table.wake_all_generation.load(Ordering::Acquire), 1);
        let after = line(&mailbox);
        assert_ne!(before, after, "the monitored line was not written");
        assert_eq!(
            after[MAILBOX_WAKE_ALL_SIGNAL_OFFSET..MAILBOX_WAKE_ALL_SIGNAL_OFFSET + 8],
            1u64.to_le_bytes()
        );
        // command, apic_id and wakeup_vector (the handshake) stay untouched.
        assert!(after[..MAILBOX_WAKE_ALL_SIGNAL_OFFSET]
            .iter()
            .all(|&b| b == 0));
        // Each ring writes a new value, so the line changes every time.
        assert_eq!(table.wake_all(&mailbox, 0x1234_5000), 2);
        assert_eq!(mailbox.wake_all_signal.load(Ordering::Acquire), 2);
    }

    /// A zeroed table of `slot_count` slots in 128-byte aligned heap memory, with a
    /// valid version 2 header, and slot i holding APIC ID 1000 + i.
    struct TableBuffer {
        memory: *mut u8,
        layout: std::alloc::Layout,
    }

    impl TableBuffer {
        fn new(slot_count: usize, slot_size: usize) -> TableBuffer {
            let bytes = PARK_TABLE_HEADER_SIZE + slot_count * slot_size;
            let layout = std::alloc::Layout::from_size_align(bytes, 128).unwrap();
            // SAFETY: nonzero size; zero is a valid header and slot.
            let memory = unsafe { std::alloc::alloc_zeroed(layout) };
            let mut buffer = TableBuffer { memory, layout };
            let table = buffer.table_mut();
            table.signature = PARK_TABLE_SIGNATURE;
            table.version = PARK_TABLE_VERSION;
            table.table_size = bytes as u32;
            table.slots_offset = PARK_TABLE_HEADER_SIZE as u32;
            table.slot_size = slot_size as u32;
            table.slot_count = slot_count as u32;
            table.cpu_count = slot_count as u32;
            for index in 0..slot_count {
                // SAFETY: within the buffer, aligned (slot_size is a multiple of 128).
                unsafe {
                    let slot = memory.add(PARK_TABLE_HEADER_SIZE + index * slot_size);
                    (*(slot as *mut CpuSlot)).apic_id = 1000 + index as u32;
                }
            }
            buffer
        }

        fn table_mut(&mut self) -> &mut ParkTable {
            // SAFETY: the buffer starts with a header, aligned, and outlives the borrow.
            unsafe { &mut *(self.memory as *mut ParkTable) }
        }
    }

    impl Drop for TableBuffer {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.memory, self.layout) };
        }
    }

    #[test]
    fn slots_follow_the_header_for_any_count_and_stride() {
        for (count, stride) in [(0, 128), (1, 128), (300, 128), (1100, 128), (5, 256)] {
            let mut buffer = TableBuffer::new(count, stride);
            let table = buffer.table_mut();
            assert_eq!(table.check(), Ok(()));
            let ids: std::vec::Vec<u32> = table.cpus().iter().map(|s| s.apic_id).collect();
            let expected: std::vec::Vec<u32> = (0..count as u32).map(|i| 1000 + i).collect();
            assert_eq!(ids, expected, "{count} slots of {stride} bytes");
            assert_eq!(table.cpus().len(), count);
            assert_eq!(table.cpus().iter().len(), count);
            if count > 0 {
                let last = 1000 + count as u32 - 1;
                assert_eq!(table.slot_for_apic_id(last).unwrap().apic_id, last);
            }
            assert!(table.slot_for_apic_id(999).is_none());
        }
    }

    #[test]
    fn fewer_cpus_in_use_than_slots() {
        let mut buffer = TableBuffer::new(8, 128);
        let table = buffer.table_mut();
        table.cpu_count = 3;
        assert_eq!(table.cpus().len(), 3);
        assert!(table.cpus().get(3).is_none());
        assert!(table.slot_for_apic_id(1003).is_none());
    }

    #[test]
    fn a_broken_header_is_named_and_gives_no_slots() {
        let mut buffer = TableBuffer::new(4, 128);
        type Breaker = fn(&mut ParkTable);
        let cases: [(Breaker, TableProblem); 7] = [
            (
                |t| t.signature = *b"PARKTABX",
                TableProblem::Signature(*b"PARKTABX"),
            ),
            (
                |t| t.version = 1,
                TableProblem::Version {
                    found: 1,
                    expected: PARK_TABLE_VERSION,
                },
            ),
            (|t| t.slots_offset = 64, TableProblem::SlotsOffset(64)),
            (|t| t.slots_offset = 130, TableProblem::SlotsOffset(130)),
            (|t| t.slot_size = 64, TableProblem::SlotSize(64)),
            (
                |t| t.cpu_count = 5,
                TableProblem::CpuCount {
                    cpu_count: 5,
                    slot_count: 4,
                },
            ),
            (
                |t| t.slot_count = 5,
                TableProblem::TableSize {
                    table_size: 128 + 4 * 128,
                    slots_end: 128 + 5 * 128,
                },
            ),
        ];
        for (break_it, problem) in cases {
            let mut fresh = TableBuffer::new(4, 128);
            let table = fresh.table_mut();
            break_it(table);
            assert_eq!(table.check(), Err(problem));
            assert!(!problem.to_string().is_empty());
            assert_eq!(table.cpus().len(), 0, "{problem}");
            assert!(table.cpus().iter().next().is_none());
        }
        assert!(buffer.table_mut().is_valid());
    }

    #[test]
    fn table_is_one_cache_line_header_then_slots() {
        assert_eq!(core::mem::align_of::<ParkTable>(), 128);
        assert_eq!(offsets::TABLE_SLOTS % offsets::SLOT_SIZE, 0);
        assert_eq!(table_bytes(300), 128 + 300 * 128);
    }
}
