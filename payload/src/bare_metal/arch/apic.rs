//! The boot processor's local APIC, used for two things: sending INIT and STARTUP IPIs
//! to start each AP once, and measuring the local-APIC timer's rate for the parked
//! CPUs' HLT wait. xAPIC (MMIO) or x2APIC (MSR), whichever mode the CPU is in.

use super::cpu;
use x86_64::registers::model_specific::Msr;

/// Reads one of the local APIC's MSRs.
///
/// # Safety
///
/// `msr` must exist on this CPU: `IA32_APIC_BASE`, or an x2APIC register while the
/// APIC is in x2APIC mode.
unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller vouches for the MSR.
    unsafe { Msr::new(msr).read() }
}

/// Writes one of the local APIC's MSRs.
///
/// # Safety
///
/// As for [`rdmsr`], and `value` must leave the APIC in a state parkboot expects.
unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe { Msr::new(msr).write(value) }
}

const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const APIC_BASE_X2APIC_ENABLE: u64 = 1 << 10;
const APIC_BASE_GLOBAL_ENABLE: u64 = 1 << 11;

const XAPIC_SPURIOUS: u64 = 0xF0;
const XAPIC_ICR_LOW: u64 = 0x300;
const XAPIC_ICR_HIGH: u64 = 0x310;
const XAPIC_DESTINATION_SHIFT: u32 = 24;
const X2APIC_MSR_SPURIOUS: u32 = 0x80F;
const X2APIC_MSR_ICR: u32 = 0x830;

const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;
const SPURIOUS_VECTOR: u32 = 0xFF;
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// How long an xAPIC may keep an IPI pending before parkboot reports it.
const SEND_TIMEOUT_US: u64 = 100_000;
const XAPIC_LVT_TIMER: u64 = 0x320;
const XAPIC_TIMER_INITIAL: u64 = 0x380;
const XAPIC_TIMER_CURRENT: u64 = 0x390;
const XAPIC_TIMER_DIVIDE: u64 = 0x3E0;
/// x2APIC MSR of an xAPIC register: 0x800 + offset / 16.
const X2APIC_MSR_BASE: u32 = 0x800;
const X2APIC_REGISTER_SHIFT: u32 = 4;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_DIVIDE_BY_1: u32 = 0xB;
/// How long the boot processor lets its timer count to measure its rate.
const TIMER_MEASURE_US: u64 = 2_000;
/// APIC IDs an xAPIC can address.
pub const XAPIC_MAX_ID: u32 = 0xFE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    XApic { base: u64 },
    X2Apic,
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mode::XApic { base } => write!(f, "xAPIC mode (registers at {base:#x})"),
            Mode::X2Apic => write!(f, "x2APIC mode"),
        }
    }
}

pub struct LocalApic {
    mode: Mode,
}

#[derive(Debug)]
pub struct IpiNotSent {
    pub apic_id: u32,
}

impl LocalApic {
    /// The APIC in the mode it is in now, software-enabled (an APIC that firmware left
    /// software-disabled may not send IPIs on every implementation).
    pub fn current() -> Self {
        // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
        let base = unsafe { rdmsr(MSR_APIC_BASE) };
        let mode = if base & APIC_BASE_X2APIC_ENABLE != 0 {
            Mode::X2Apic
        } else {
            if base & APIC_BASE_GLOBAL_ENABLE == 0 {
                // SAFETY: enables the APIC at the base it has, in the mode it is in.
                unsafe { wrmsr(MSR_APIC_BASE, base | APIC_BASE_GLOBAL_ENABLE) };
            }
            Mode::XApic {
                base: base & APIC_BASE_ADDRESS_MASK,
            }
        };
        let apic = LocalApic { mode };
        let spurious = apic.read_spurious();
        apic.write_spurious(spurious | SPURIOUS_APIC_ENABLE | SPURIOUS_VECTOR);
        apic
    }

    /// Switches to x2APIC mode, needed to address APIC IDs above 254.
    pub fn enable_x2apic(&mut self) -> bool {
        if self.mode == Mode::X2Apic {
            return true;
        }
        if !cpu::has_x2apic() {
            return false;
        }
        // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; CPUID says this one
        // has x2APIC mode, which xAPIC mode may switch to directly.
        unsafe {
            let base = rdmsr(MSR_APIC_BASE);
            wrmsr(
                MSR_APIC_BASE,
                base | APIC_BASE_GLOBAL_ENABLE | APIC_BASE_X2APIC_ENABLE,
            );
        }
        self.mode = Mode::X2Apic;
        true
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn read_register(&self, offset: u64) -> u32 {
        match self.mode {
            // SAFETY: the APIC's registers, identity-mapped.
            Mode::XApic { base } => unsafe {
                core::ptr::read_volatile((base + offset) as *const u32)
            },
            // SAFETY: an x2APIC register, in x2APIC mode.
            Mode::X2Apic => unsafe {
                rdmsr(X2APIC_MSR_BASE + (offset as u32 >> X2APIC_REGISTER_SHIFT)) as u32
            },
        }
    }

    fn write_register(&self, offset: u64, value: u32) {
        match self.mode {
            // SAFETY: as above.
            Mode::XApic { base } => unsafe {
                core::ptr::write_volatile((base + offset) as *mut u32, value)
            },
            // SAFETY: an x2APIC register, in x2APIC mode; callers write timer
            // registers only.
            Mode::X2Apic => unsafe {
                wrmsr(
                    X2APIC_MSR_BASE + (offset as u32 >> X2APIC_REGISTER_SHIFT),
                    value as u64,
                )
            },
        }
    }

    /// The local-APIC timer's rate at divide by 1, in ticks per second, measured
    /// against the TSC with the timer masked and one-shot; the timer is stopped again
    /// afterwards. `None` when it did not count (no usable timer). Parked CPUs' timers
    /// run at the same rate (one clock drives them all).
    pub fn measure_timer_hz(&self) -> Option<u64> {
        let lvt = self.read_register(XAPIC_LVT_TIMER);
        self.write_register(XAPIC_LVT_TIMER, LVT_MASKED | (lvt & 0xFF));
        self.write_register(XAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
        let start_tsc = cpu::rdtsc();
        self.write_register(XAPIC_TIMER_INITIAL, u32::MAX);
        cpu::delay_us(TIMER_MEASURE_US);
        let remaining = self.read_register(XAPIC_TIMER_CURRENT);
        let elapsed_ns = cpu::ticks_to_ns(cpu::rdtsc() - start_tsc);
        self.write_register(XAPIC_TIMER_INITIAL, 0);
        let ticks = (u32::MAX - remaining) as u64;
        if ticks == 0 || remaining == 0 || elapsed_ns == 0 {
            return None;
        }
        Some((ticks as u128 * 1_000_000_000 / elapsed_ns as u128) as u64)
    }

    fn read_spurious(&self) -> u32 {
        match self.mode {
            // SAFETY: the APIC's registers, identity-mapped.
            Mode::XApic { base } => unsafe {
                core::ptr::read_volatile((base + XAPIC_SPURIOUS) as *const u32)
            },
            // SAFETY: an x2APIC register, in x2APIC mode.
            Mode::X2Apic => unsafe { rdmsr(X2APIC_MSR_SPURIOUS) as u32 },
        }
    }

    fn write_spurious(&self, value: u32) {
        match self.mode {
            // SAFETY: as above.
            Mode::XApic { base } => unsafe {
                core::ptr::write_volatile((base + XAPIC_SPURIOUS) as *mut u32, value)
            },
            // SAFETY: an x2APIC register, in x2APIC mode; the value keeps the APIC
            // enabled.
            Mode::X2Apic => unsafe { wrmsr(X2APIC_MSR_SPURIOUS, value as u64) },
        }
    }

    fn send(&self, apic_id: u32, command: u32) -> Result<(), IpiNotSent> {
        match self.mode {
            Mode::X2Apic => {
                // SAFETY: the ICR, in x2APIC mode; the IPIs parkboot sends (INIT,
                // STARTUP) go only to APs it is starting.
                unsafe { wrmsr(X2APIC_MSR_ICR, (apic_id as u64) << 32 | command as u64) };
                Ok(())
            }
            Mode::XApic { base } => {
                let low = (base + XAPIC_ICR_LOW) as *mut u32;
                let high = (base + XAPIC_ICR_HIGH) as *mut u32;
                // SAFETY: the APIC's registers, identity-mapped.
                unsafe {
                    core::ptr::write_volatile(high, apic_id << XAPIC_DESTINATION_SHIFT);
                    core::ptr::write_volatile(low, command);
                }
                let deadline = cpu::rdtsc() + cpu::ns_to_ticks(SEND_TIMEOUT_US * 1000);
                // SAFETY: as above.
                while unsafe { core::ptr::read_volatile(low) } & ICR_DELIVERY_PENDING != 0 {
                    if cpu::rdtsc() > deadline {
                        return Err(IpiNotSent { apic_id });
                    }
                    core::hint::spin_loop();
                }
                Ok(())
            }
        }
    }

    pub fn send_init(&self, apic_id: u32) -> Result<(), IpiNotSent> {
        self.send(apic_id, ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT)
    }

    /// STARTUP IPI: the AP starts in real mode at `vector` << 12.
    pub fn send_startup(&self, apic_id: u32, vector: u8) -> Result<(), IpiNotSent> {
        self.send(
            apic_id,
            ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | vector as u32,
        )
    }
}
