//! The park's wake interrupt, sent by this kernel: after writing a mailbox command
//! (or ringing the wake-all doorbell) it takes the doorbell of each CPU it woke
//! (`CpuSlot::take_doorbell`) and, for a CPU asleep in parkboot's HLT wait, sends it
//! one fixed interrupt with `PARK_WAKE_VECTOR`, so the CPU answers at once instead of
//! at the watcher's next tick. `testkernel.ring=off` leaves every wakeup to the
//! watcher, as Linux (which knows nothing of doorbells) does.

use core::arch::asm;
use park::table::{CpuSlot, PARK_WAKE_VECTOR};

const MSR_IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const X2APIC_MSR_ICR: u32 = 0x830;
const XAPIC_ICR_LOW: u64 = 0x300;
const XAPIC_ICR_HIGH: u64 = 0x310;
const XAPIC_ICR_DEST_SHIFT: u32 = 24;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// A busy xAPIC ICR is waited for this many polls at most.
const ICR_IDLE_POLLS: u32 = 1 << 20;

fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC, which parkboot
    // needs to have parked anything; reading it changes nothing.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Takes `slot`'s doorbell and, if it was armed, sends the CPU its wake interrupt.
/// Whether an interrupt was sent.
pub fn ring(slot: &CpuSlot) -> bool {
    let Some(apic_id) = slot.take_doorbell() else {
        return false;
    };
    let base = rdmsr(MSR_IA32_APIC_BASE);
    let vector = u32::from(PARK_WAKE_VECTOR);
    if base & APIC_BASE_X2APIC != 0 {
        // SAFETY: a fixed interrupt to one CPU, physical destination; the CPU owes
        // nothing else to it (take_doorbell made this kernel the one sender).
        unsafe {
            asm!("wrmsr", in("ecx") X2APIC_MSR_ICR, in("eax") vector, in("edx") apic_id,
                 options(nostack))
        };
    } else {
        let registers = base & APIC_BASE_ADDRESS_MASK;
        let low = (registers + XAPIC_ICR_LOW) as *mut u32;
        let high = (registers + XAPIC_ICR_HIGH) as *mut u32;
        // SAFETY: the local APIC's registers, identity-mapped by parkboot's page
        // tables; the ICR is written high word first, the send is the low word.
        unsafe {
            let mut polls = ICR_IDLE_POLLS;
            while low.read_volatile() & ICR_DELIVERY_PENDING != 0 && polls > 0 {
                core::hint::spin_loop();
                polls -= 1;
            }
            high.write_volatile(apic_id << XAPIC_ICR_DEST_SHIFT);
            low.write_volatile(vector);
        }
    }
    true
}
