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
/// the header's reserved space in compatible versions.
pub const PARK_TABLE_VERSION: u32 = 1;
/// Slots in the table. CPUs beyond this are reported and not parked.
pub const MAX_PARKED_CPUS: usize = 256;

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

/// Bits of [`ParkTable::flags`].
pub mod flags {
    /// Parked CPUs wait with MONITOR/MWAIT on the mailbox's first cache line (else a
    /// PAUSE loop). A wake-all publisher rings that line too; see the README.
    pub const WAIT_MWAIT: u32 = 1 << 0;
    /// `--no-park` baseline: the mailbox entry was not added to the MADT and the APs
    /// were left for the kernel to start with INIT/SIPI; the slots are all empty.
    pub const BASELINE_NO_PARK: u32 = 1 << 1;
    /// Parked CPUs wait with HLT, woken by a periodic local-APIC timer interrupt to
    /// look at the mailbox and the doorbell again (chosen where MWAIT is missing or
    /// cannot sleep, e.g. under a hypervisor). A wakeup waits up to one period.
    pub const WAIT_HLT: u32 = 1 << 2;
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
    /// Free for the code a CPU was woken into: parkboot only writes it from its own
    /// self-check vector (APIC ID and TSC as proof the CPU ran).
    pub kernel_scratch: [AtomicU64; 2],
    pub reserved: [u64; 2],
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
    assert!(offset_of!(CpuSlot, reserved) == 112);
};

impl CpuSlot {
    pub fn state(&self) -> Option<CpuState> {
        CpuState::from_raw(self.state.load(Ordering::Acquire))
    }
}

/// The park table header followed by one slot per CPU.
#[repr(C, align(128))]
pub struct ParkTable {
    /// [`PARK_TABLE_SIGNATURE`].
    pub signature: [u8; 8],
    /// [`PARK_TABLE_VERSION`].
    pub version: u32,
    /// `size_of::<ParkTable>()`: readers check it before trusting the slots.
    pub table_size: u32,
    /// Slots in use (every CPU the MADT lists, the boot processor included).
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
    pub wake_all_vector: AtomicU64,
    /// The wake-all doorbell: write `wake_all_vector`, then increment this (release).
    /// Every parked CPU whose `wake_all_seen` differs jumps to `wake_all_vector` once.
    pub wake_all_generation: AtomicU64,
    /// TSC ticks per second, as parkboot measured them.
    pub tsc_hz: u64,
    /// Where a park-aware kernel gives control back to parkboot (0 = not offered).
    pub reentry_vector: u64,
    /// Physical base and size of the park region (mailbox, table, code, stacks).
    pub park_region_base: u64,
    pub park_region_size: u64,
    /// Kernels parkboot has booted since the CPUs were parked.
    pub boots: AtomicU64,
    pub reserved: [u64; 3],
    pub slots: [CpuSlot; MAX_PARKED_CPUS],
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
    assert!(offset_of!(ParkTable, slots) == 128);
    assert!(size_of::<ParkTable>() == 128 + 128 * MAX_PARKED_CPUS);
};

/// Byte offsets the park code (assembly) uses, derived from the structs above.
pub mod offsets {
    use super::{CpuSlot, ParkTable};
    use core::mem::{offset_of, size_of};
    pub const TABLE_CPU_COUNT: usize = offset_of!(ParkTable, cpu_count);
    pub const TABLE_PARKED_COUNT: usize = offset_of!(ParkTable, parked_count);
    pub const TABLE_RESET_VECTOR: usize = offset_of!(ParkTable, reset_vector);
    pub const TABLE_WAKE_ALL_VECTOR: usize = offset_of!(ParkTable, wake_all_vector);
    pub const TABLE_WAKE_ALL_GENERATION: usize = offset_of!(ParkTable, wake_all_generation);
    pub const TABLE_SLOTS: usize = offset_of!(ParkTable, slots);
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
}

impl ParkTable {
    /// Checks the header a kernel found at an address it was given.
    pub fn is_valid(&self) -> bool {
        self.signature == PARK_TABLE_SIGNATURE
            && self.version == PARK_TABLE_VERSION
            && self.table_size as usize == core::mem::size_of::<ParkTable>()
            && self.cpu_count as usize <= MAX_PARKED_CPUS
    }

    /// The slots in use.
    pub fn cpus(&self) -> &[CpuSlot] {
        &self.slots[..(self.cpu_count as usize).min(MAX_PARKED_CPUS)]
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn table_is_one_cache_line_header_then_slots() {
        assert_eq!(core::mem::align_of::<ParkTable>(), 128);
        assert_eq!(offsets::TABLE_SLOTS % offsets::SLOT_SIZE, 0);
    }
}
