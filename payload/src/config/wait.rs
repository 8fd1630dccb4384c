//! How parked CPUs wait: the `park_wait` setting, what it resolves to on the machine
//! found, and the park timer's count.

/// How parked CPUs wait (`park_wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkWait {
    /// MONITOR/MWAIT where CPUID offers it; HLT with the park timer where MONITOR is
    /// missing (most virtual machines); PAUSE when no local-APIC timer is usable either.
    /// A hypervisor that offers MONITOR does so on purpose (KVM's `cpu-pm=on`), so its
    /// MWAIT is used; QEMU's TCG with `-cpu max` offers a MWAIT that does not sleep,
    /// where `park_wait = hlt` costs the emulator less.
    Auto,
    /// Always a PAUSE loop (for hypervisors whose MWAIT does not wake on a write).
    Pause,
    /// HLT; one watcher CPU looks every `park_timer_us` on its local-APIC timer and
    /// wakes the others (park/README.md, "The watcher and the doorbells").
    Hlt,
    /// MONITOR/MWAIT where CPUID offers it, else the PAUSE loop: never a timer
    /// interrupt while parked.
    Mwait,
}

impl ParkWait {
    pub(super) const ALL: [ParkWait; 4] = [
        ParkWait::Auto,
        ParkWait::Pause,
        ParkWait::Hlt,
        ParkWait::Mwait,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ParkWait::Auto => "auto",
            ParkWait::Pause => "pause",
            ParkWait::Hlt => "hlt",
            ParkWait::Mwait => "mwait",
        }
    }

    /// The wait parked CPUs use, from this setting and what the boot processor found:
    /// CPUID's MONITOR flag, and whether its local-APIC timer could be measured (the
    /// HLT wait needs it).
    pub fn resolve(self, has_monitor: bool, timer_usable: bool) -> WaitMode {
        match self {
            ParkWait::Pause => WaitMode::Pause,
            ParkWait::Hlt if timer_usable => WaitMode::Hlt,
            ParkWait::Hlt => WaitMode::Pause,
            ParkWait::Mwait | ParkWait::Auto if has_monitor => WaitMode::Mwait,
            ParkWait::Mwait => WaitMode::Pause,
            ParkWait::Auto if timer_usable => WaitMode::Hlt,
            ParkWait::Auto => WaitMode::Pause,
        }
    }
}

/// How parked CPUs actually wait (see [`ParkWait::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    Mwait,
    Hlt,
    Pause,
}

impl WaitMode {
    /// As the log and the summary JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitMode::Mwait => "mwait",
            WaitMode::Hlt => "hlt",
            WaitMode::Pause => "pause",
        }
    }
}

/// The park timer's initial count (local-APIC timer, divide by 1) for a period of
/// `period_us` at `timer_hz` ticks per second: at least 1, at most `u32::MAX`.
pub fn park_timer_initial_count(timer_hz: u64, period_us: u32) -> u32 {
    let ticks = timer_hz as u128 * period_us as u128 / 1_000_000;
    ticks.clamp(1, u32::MAX as u128) as u32
}
