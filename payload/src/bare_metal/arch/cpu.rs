//! Small CPU helpers: TSC time and CPUID queries. Port and MSR access goes through
//! `x86_64`'s `Port` and `Msr`, whose accesses are `unsafe`: each caller says why its
//! access is harmless.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// TSC ticks per second, measured at boot against the PIT (0 until then).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds for a TSC delta (0 before calibration).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000_000) / hz as u128) as u64
}

pub fn ns_to_ticks(ns: u64) -> u64 {
    ((ns as u128 * tsc_hz().max(1) as u128) / 1_000_000_000) as u64
}

/// Busy-waits `us` microseconds on the TSC. Used only for the delays the hardware
/// itself requires (INIT-SIPI-SIPI timing), never to wait for another CPU.
pub fn delay_us(us: u64) {
    let end = deadline_in_ns(us * 1000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// The TSC value `ns` nanoseconds from now.
pub fn deadline_in_ns(ns: u64) -> u64 {
    rdtsc() + ns_to_ticks(ns)
}

/// Waits for another CPU (or a device): spins until `done` holds (returning the TSC then) or the TSC passes `deadline`.
pub fn wait_until(deadline: u64, mut done: impl FnMut() -> bool) -> Option<u64> {
    loop {
        if done() {
            return Some(rdtsc());
        }
        if rdtsc() > deadline {
            return None;
        }
        core::hint::spin_loop();
    }
}

pub fn cpuid(leaf: u32, subleaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, subleaf)
}

/// This CPU's APIC ID: the 32-bit x2APIC ID from leaf 0xB when the CPU has it (it
/// does not depend on the APIC mode), else the 8-bit initial APIC ID of leaf 1.
pub fn apic_id() -> u32 {
    const LEAF_TOPOLOGY: u32 = 0xB;
    if cpuid(0, 0).eax >= LEAF_TOPOLOGY {
        let topo = cpuid(LEAF_TOPOLOGY, 0);
        if topo.ebx != 0 {
            return topo.edx;
        }
    }
    cpuid(1, 0).ebx >> 24
}

pub fn has_gigabyte_pages() -> bool {
    const EXTENDED_FEATURES: u32 = 0x8000_0001;
    const PDPE1GB: u32 = 1 << 26;
    cpuid(0x8000_0000, 0).eax >= EXTENDED_FEATURES && cpuid(EXTENDED_FEATURES, 0).edx & PDPE1GB != 0
}

pub fn has_monitor_mwait() -> bool {
    const MONITOR: u32 = 1 << 3;
    cpuid(1, 0).ecx & MONITOR != 0
}

pub fn has_x2apic() -> bool {
    const X2APIC: u32 = 1 << 21;
    cpuid(1, 0).ecx & X2APIC != 0
}

/// TSC ticks per second: the median of three 10 ms measurements against PIT channel 2
/// (one measurement is off when the host deschedules the CPU inside it, which happens
/// under emulation on a busy machine). Boards without a PIT fall back to CPUID leaf
/// 0x15, then to a guess that is logged as such.
pub fn calibrate_tsc() -> (u64, &'static str) {
    const MEASUREMENTS: usize = 3;
    let mut measured = [0u64; MEASUREMENTS];
    for m in measured.iter_mut() {
        *m = measure_tsc_against_pit().unwrap_or(0);
    }
    measured.sort_unstable();
    let mut hz = measured[MEASUREMENTS / 2];
    let mut source = "PIT";
    if hz == 0 {
        let leaf15 = cpuid(0x15, 0);
        if leaf15.eax != 0 && leaf15.ecx != 0 {
            hz = leaf15.ecx as u64 * leaf15.ebx as u64 / leaf15.eax as u64;
            source = "CPUID 0x15";
        } else {
            hz = 1_000_000_000;
            source = "a guess (no PIT, no CPUID 0x15)";
        }
    }
    TSC_HZ.store(hz, Ordering::Relaxed);
    (hz, source)
}

/// TSC ticks per second over one 10 ms PIT channel 2 countdown; `None` without a PIT.
fn measure_tsc_against_pit() -> Option<u64> {
    const PIT_HZ: u64 = 1_193_182;
    const CALIBRATION_MS: u64 = 10;
    const PIT_COMMAND: u16 = 0x43;
    const PIT_CHANNEL2: u16 = 0x42;
    const PIT_GATE: u16 = 0x61;
    const GATE_ENABLE: u8 = 1 << 0;
    const SPEAKER_ENABLE: u8 = 1 << 1;
    const OUT2_HIGH: u8 = 1 << 5;
    const CHANNEL2_MODE0_LOHI: u8 = 0b1011_0000;
    const GIVE_UP_TICKS: u64 = 10_000_000_000;

    let count = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    let mut gate_port = Port::<u8>::new(PIT_GATE);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut channel2 = Port::<u8>::new(PIT_CHANNEL2);
    // SAFETY: PIT channel 2 and its gate drive only the PC speaker (kept off here);
    // nothing else in parkboot uses them, and the gate is restored below.
    let gate = unsafe { gate_port.read() };
    // SAFETY: as above.
    unsafe {
        gate_port.write((gate & !SPEAKER_ENABLE) & !GATE_ENABLE);
        command.write(CHANNEL2_MODE0_LOHI);
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        gate_port.write((gate & !SPEAKER_ENABLE) | GATE_ENABLE);
    }
    let start = rdtsc();
    let mut hz = None;
    loop {
        let now = rdtsc();
        // SAFETY: reading the gate register has no side effects.
        if unsafe { gate_port.read() } & OUT2_HIGH != 0 {
            hz = Some((now - start) * 1000 / CALIBRATION_MS);
            break;
        }
        if now - start > GIVE_UP_TICKS {
            break;
        }
    }
    // SAFETY: puts back the gate value read above.
    unsafe { gate_port.write(gate) };
    hz
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU is the intent.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}
