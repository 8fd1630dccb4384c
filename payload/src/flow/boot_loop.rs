//! The kexec loop parkboot drives: which entry and iteration to boot next, given what
//! the returning kernel asked for, and the per-iteration records for the loop report.
//! Pure bookkeeping, host-tested; `main.rs`'s boot flow does the booting.

use core::fmt::{self, Write};

use crate::parking::layout::Duration;

/// Iterations whose details are kept for the report (all are counted).
pub const MAX_RECORDED_ITERATIONS: usize = 1024;

/// What a kernel asked for when it gave control back (mirrors
/// `park::reentry::ReentryRequest`, which this crate does not depend on for host
/// tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    SameEntry,
    NextEntry,
    Stop,
}

/// What to boot next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Boot entry `entry` (index into the configuration), iteration `iteration` of
    /// `iterations` (1-based).
    Boot {
        entry: usize,
        iteration: u32,
        iterations: u32,
    },
    /// Nothing left: report and finish.
    Finish,
}

/// Walks the configured entries and their iteration counts.
#[derive(Clone, Debug)]
pub struct Schedule {
    iterations: heapless::Vec<u32, 8>,
    entry: usize,
    iteration: u32,
}

impl Schedule {
    /// `iterations[i]` = how often entry i is booted.
    pub fn new(iterations: &[u32]) -> Self {
        Schedule {
            iterations: iterations.iter().copied().take(8).collect(),
            entry: 0,
            iteration: 0,
        }
    }

    fn current(&self) -> Next {
        match self.iterations.get(self.entry) {
            Some(&n) if self.iteration <= n && n > 0 => Next::Boot {
                entry: self.entry,
                iteration: self.iteration,
                iterations: n,
            },
            _ => Next::Finish,
        }
    }

    /// The first boot.
    pub fn first(&mut self) -> Next {
        self.entry = 0;
        self.iteration = 1;
        self.skip_empty();
        self.current()
    }

    fn skip_empty(&mut self) {
        while matches!(self.iterations.get(self.entry), Some(&0)) {
            self.entry += 1;
        }
    }

    /// The entry being booted failed to load or run: go on with the next entry.
    pub fn entry_failed(&mut self) -> Next {
        self.next_entry()
    }

    fn next_entry(&mut self) -> Next {
        self.entry += 1;
        self.iteration = 1;
        self.skip_empty();
        self.current()
    }

    /// The kernel came back with `request`.
    pub fn after(&mut self, request: Request) -> Next {
        match request {
            Request::Stop => {
                self.entry = self.iterations.len();
                Next::Finish
            }
            Request::NextEntry => self.next_entry(),
            Request::SameEntry => {
                let n = self.iterations.get(self.entry).copied().unwrap_or(0);
                if self.iteration < n {
                    self.iteration += 1;
                    self.current()
                } else {
                    self.next_entry()
                }
            }
        }
    }
}

/// parkboot's own work in one iteration, phase by phase, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadPhases {
    /// From the kernel's jump to the re-entry vector to the end of parkboot's
    /// bookkeeping for it: APs back in the park loop, counters, the report line.
    pub reentry_ns: u64,
    /// The kernel's segments (and any module) copied from the pristine image, with the
    /// memory reservations for them.
    pub copy_ns: u64,
    /// The boot information: command line, loader name, memory map, parkboot's tag.
    pub boot_info_ns: u64,
    /// The ACPI part of the boot information (the RSDP tag).
    pub acpi_ns: u64,
    /// From the finished boot information to the jump into the kernel.
    pub handoff_ns: u64,
}

/// Reads one phase (or the total) out of a [`LoadPhases`].
pub type PhaseOf = fn(&LoadPhases) -> u64;

impl LoadPhases {
    /// The total and each phase, with the names the loop report and the summary JSON
    /// use for them.
    pub const NAMED: [(&'static str, PhaseOf); 6] = [
        ("total", LoadPhases::total_ns),
        ("reentry", |p| p.reentry_ns),
        ("copy", |p| p.copy_ns),
        ("boot_info", |p| p.boot_info_ns),
        ("acpi", |p| p.acpi_ns),
        ("handoff", |p| p.handoff_ns),
    ];

    /// All of parkboot's own work in the iteration (saturating).
    pub fn total_ns(&self) -> u64 {
        self.reentry_ns
            .saturating_add(self.copy_ns)
            .saturating_add(self.boot_info_ns)
            .saturating_add(self.acpi_ns)
            .saturating_add(self.handoff_ns)
    }

    /// The phases from TSC stamps taken in order: load start, segments copied, boot
    /// information built, ACPI tag added, jump; a stamp that is 0 (not reached) or
    /// before the previous one gives 0 for its phase. `to_ns` converts TSC ticks.
    pub fn from_stamps(stamps: [u64; 5], reentry_ns: u64, to_ns: impl Fn(u64) -> u64) -> Self {
        let phase = |i: usize| match (stamps.get(i), stamps.get(i + 1)) {
            (Some(&start), Some(&end)) if start != 0 && end != 0 => {
                to_ns(end.saturating_sub(start))
            }
            _ => 0,
        };
        LoadPhases {
            reentry_ns,
            copy_ns: phase(0),
            boot_info_ns: phase(1),
            acpi_ns: phase(2),
            handoff_ns: phase(3),
        }
    }
}

/// One iteration as the loop report shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterationRecord {
    pub entry: u8,
    pub iteration: u32,
    /// Load start to the kernel's return, in nanoseconds.
    pub cycle_ns: u64,
    /// Of that, parkboot's own work before the kernel ran: reload the image, build
    /// boot info, hand off (`phases` without `reentry_ns`).
    pub load_ns: u64,
    /// parkboot's own work phase by phase, re-entry included.
    pub phases: LoadPhases,
    /// APs whose wake count rose during the iteration.
    pub cpus_woken: u32,
    /// The kernel's own figures (0 when it gave none).
    pub wake_ns_median: u64,
    pub wake_ns_min: u64,
    pub wake_ns_max: u64,
    /// Bytes parkboot kept for itself when the iteration ended (its image, page
    /// tables, park region, mailbox, ACPI tables, pristine copies: every reservation
    /// a kernel is not given as usable, of either lifetime).
    pub parkboot_memory_bytes: u64,
    /// The kernel's wake-all of every parked AP: doorbell to the last AP's arrival.
    pub wake_all_ns: u64,
    pub passed: bool,
    /// Whether the kernel was entered and came back, so that `cycle_ns`, `load_ns`
    /// and `cpus_woken` were measured. False for an entry refused before booting.
    pub ran: bool,
}

impl IterationRecord {
    /// The kernel's own wake figures, when it gave any.
    fn kernel_wake(&self) -> Option<(u64, u64, u64)> {
        (self.ran && self.wake_ns_median > 0).then_some((
            self.wake_ns_min,
            self.wake_ns_median,
            self.wake_ns_max,
        ))
    }
}

/// The loop report's column titles, aligned with [`ReportRow`].
pub const REPORT_HEADER: &str =
    "entry                iteration   cycle        parkboot (re-entry + copy + boot info + ACPI + hand-off)                APs woken  AP wake (kernel: min / median / max)  parkboot memory";

/// One line of the loop report: `-` where nothing was measured (an entry refused
/// before it ran, a kernel that gave no wake figures), never a zero that reads like a
/// measurement.
pub struct ReportRow<'a> {
    pub name: &'a str,
    pub record: &'a IterationRecord,
}

/// A report cell: the value, or `-` when it was not measured; honours width.
struct Cell<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Cell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text: heapless::String<32> = heapless::String::new();
        match &self.0 {
            // A longer value is cut rather than failing the whole line.
            Some(value) => {
                let _ = write!(text, "{value}");
            }
            None => {
                let _ = text.push('-');
            }
        }
        f.pad(&text)
    }
}

/// A memory figure in KiB.
struct Kib(u64);

impl fmt::Display for Kib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KiB", self.0 / 1024)
    }
}

/// Width of the header's wake column, so the memory column lines up after it.
const WAKE_COLUMN: usize = "AP wake (kernel: min / median / max)".len();
/// Width of the column of parkboot's own work: its header, padded to hold a total and
/// five phases of up to 9 characters each.
const LOAD_COLUMN: usize = 70;

impl fmt::Display for ReportRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.record;
        let ran = |value| r.ran.then_some(value);
        let wake = r.kernel_wake();
        let mut wake_text: heapless::String<64> = heapless::String::new();
        let _ = write!(
            wake_text,
            "{} / {} / {}",
            Cell(wake.map(|w| Duration(w.0))),
            Cell(wake.map(|w| Duration(w.1))),
            Cell(wake.map(|w| Duration(w.2))),
        );
        let mut load_text: heapless::String<96> = heapless::String::new();
        if r.ran {
            let p = &r.phases;
            let _ = write!(
                load_text,
                "{} ({} + {} + {} + {} + {})",
                Duration(p.total_ns()),
                Duration(p.reentry_ns),
                Duration(p.copy_ns),
                Duration(p.boot_info_ns),
                Duration(p.acpi_ns),
                Duration(p.handoff_ns)
            );
        } else {
            let _ = load_text.push('-');
        }
        write!(
            f,
            "{:20} {:9}   {:12} {:load$}  {:9}  {:wake$}  {}{}",
            self.name,
            r.iteration,
            Cell(ran(Duration(r.cycle_ns))),
            load_text,
            Cell(r.ran.then_some(r.cpus_woken)),
            wake_text,
            Cell(r.ran.then_some(Kib(r.parkboot_memory_bytes))),
            if r.passed { "" } else { "  FAILED" },
            load = LOAD_COLUMN,
            wake = WAKE_COLUMN
        )
    }
}

/// Counters over the whole loop plus the first `MAX_RECORDED_ITERATIONS` records.
pub struct LoopLog {
    pub records: heapless::Vec<IterationRecord, MAX_RECORDED_ITERATIONS>,
    pub iterations_done: u64,
    pub iterations_failed: u64,
    pub iterations_requested: u64,
    /// The smallest and largest [`IterationRecord::parkboot_memory_bytes`] over every
    /// iteration (recorded or not); `None` before the first.
    pub parkboot_memory_bytes: Option<(u64, u64)>,
}

impl Default for LoopLog {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopLog {
    pub const fn new() -> Self {
        LoopLog {
            records: heapless::Vec::new(),
            iterations_done: 0,
            iterations_failed: 0,
            iterations_requested: 0,
            parkboot_memory_bytes: None,
        }
    }

    pub fn push(&mut self, record: IterationRecord) {
        self.iterations_done += 1;
        if !record.passed {
            self.iterations_failed += 1;
        }
        let bytes = record.parkboot_memory_bytes;
        self.parkboot_memory_bytes = Some(match self.parkboot_memory_bytes {
            Some((min, max)) => (min.min(bytes), max.max(bytes)),
            None => (bytes, bytes),
        });
        let _ = self.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(entry: usize, iteration: u32, iterations: u32) -> Next {
        Next::Boot {
            entry,
            iteration,
            iterations,
        }
    }

    #[test]
    fn same_entry_runs_the_requested_iterations_then_moves_on() {
        let mut s = Schedule::new(&[3, 1]);
        assert_eq!(s.first(), boot(0, 1, 3));
        assert_eq!(s.after(Request::SameEntry), boot(0, 2, 3));
        assert_eq!(s.after(Request::SameEntry), boot(0, 3, 3));
        assert_eq!(s.after(Request::SameEntry), boot(1, 1, 1));
        assert_eq!(s.after(Request::SameEntry), Next::Finish);
    }

    #[test]
    fn next_entry_and_stop_cut_the_loop_short() {
        let mut s = Schedule::new(&[5, 2]);
        s.first();
        assert_eq!(s.after(Request::NextEntry), boot(1, 1, 2));
        assert_eq!(s.after(Request::Stop), Next::Finish);
        assert_eq!(s.after(Request::SameEntry), Next::Finish);
    }

    #[test]
    fn a_failed_entry_is_skipped() {
        let mut s = Schedule::new(&[4, 0, 1]);
        s.first();
        assert_eq!(s.entry_failed(), boot(2, 1, 1));
        assert_eq!(s.entry_failed(), Next::Finish);
        assert_eq!(Schedule::new(&[]).first(), Next::Finish);
    }

    extern crate std;
    use std::format;

    #[test]
    fn the_header_fits_its_columns() {
        let load = REPORT_HEADER.find("parkboot (").unwrap();
        assert_eq!(
            REPORT_HEADER.find("APs woken"),
            Some(load + LOAD_COLUMN + 2),
            "{REPORT_HEADER}"
        );
    }

    #[test]
    fn report_rows_show_dashes_where_nothing_was_measured() {
        let column = |name: &str| REPORT_HEADER.find(name).unwrap();
        let row = |name, record| format!("{}", ReportRow { name, record });
        let refused = IterationRecord {
            entry: 1,
            iteration: 1,
            passed: false,
            ..Default::default()
        };
        let line = row("bad", &refused);
        assert!(
            line.starts_with("bad                          1   -"),
            "{line}"
        );
        assert!(line.ends_with("-  FAILED"), "{line}");
        assert!(!line.contains("0 ns") && !line.contains("KiB"), "{line}");
        assert_eq!(line.find("- / - / -"), Some(column("AP wake")), "{line}");

        let phases = LoadPhases {
            reentry_ns: 7_000,
            copy_ns: 1_400_000,
            boot_info_ns: 80_000,
            acpi_ns: 10_000,
            handoff_ns: 3_000,
        };
        let ran = IterationRecord {
            entry: 0,
            iteration: 12,
            cycle_ns: 42_000_000,
            load_ns: 1_493_000,
            phases,
            cpus_woken: 3,
            wake_ns_min: 900,
            wake_ns_median: 1_200,
            wake_ns_max: 25_000,
            parkboot_memory_bytes: 1_097_728,
            wake_all_ns: 0,
            passed: true,
            ran: true,
        };
        let line = row("test-kernel", &ran);
        let load = format!(
            "{} ({} + {} + {} + {} + {})",
            Duration(phases.total_ns()),
            Duration(7_000),
            Duration(1_400_000),
            Duration(80_000),
            Duration(10_000),
            Duration(3_000)
        );
        assert_eq!(line.find("42.0 ms"), Some(column("cycle")), "{line}");
        assert_eq!(line.find(&load), Some(column("parkboot (")), "{line}");
        assert_eq!(
            line.find("900 ns / 1200 ns / 25.0 us"),
            Some(column("AP wake")),
            "{line}"
        );
        assert_eq!(
            line.find("1072 KiB"),
            Some(column("parkboot memory")),
            "{line}"
        );
        assert!(line.ends_with("1072 KiB"), "{line}");

        // A kernel that ran but gave no wake figures (Linux): measured zeros stay
        // zeros, the missing figures are dashes.
        let quiet = IterationRecord {
            cpus_woken: 0,
            wake_ns_min: 0,
            wake_ns_median: 0,
            wake_ns_max: 0,
            passed: false,
            ..ran
        };
        let line = row("linux", &quiet);
        assert_eq!(line.find("- / - / -"), Some(column("AP wake")), "{line}");
        assert!(line.contains("  0  "), "{line}");
        assert!(line.ends_with("1072 KiB  FAILED"), "{line}");
    }

    #[test]
    fn phases_come_from_consecutive_stamps() {
        let p = LoadPhases::from_stamps([100, 150, 170, 171, 200], 7, |t| t * 2);
        assert_eq!(
            p,
            LoadPhases {
                reentry_ns: 7,
                copy_ns: 100,
                boot_info_ns: 40,
                acpi_ns: 2,
                handoff_ns: 58,
            }
        );
        assert_eq!(p.total_ns(), 207);
    }

    #[test]
    fn phases_not_reached_or_out_of_order_are_zero() {
        let p = LoadPhases::from_stamps([100, 150, 0, 0, 0], 0, |t| t);
        assert_eq!(
            (p.copy_ns, p.boot_info_ns, p.acpi_ns, p.handoff_ns),
            (50, 0, 0, 0)
        );
        let q = LoadPhases::from_stamps([100, 90, 95, 96, 97], 0, |t| t);
        assert_eq!((q.copy_ns, q.boot_info_ns), (0, 5));
    }

    #[test]
    fn log_counts_and_spreads() {
        let mut log = LoopLog::new();
        for (i, ns) in [30u64, 10, 20, 40].iter().enumerate() {
            log.push(IterationRecord {
                iteration: i as u32 + 1,
                cycle_ns: *ns,
                passed: i != 3,
                ..Default::default()
            });
        }
        assert_eq!((log.iterations_done, log.iterations_failed), (4, 1));
        let mut scratch = [0u64; 8];
        let s = crate::parking::layout::Spread::of_values(
            log.records.iter().map(|r| r.cycle_ns),
            &mut scratch,
        )
        .unwrap();
        assert_eq!((s.min, s.median, s.max), (10, 25, 40));
    }

    #[test]
    fn parkboot_memory_range_covers_every_iteration_recorded_or_not() {
        let mut log = LoopLog::new();
        assert_eq!(log.parkboot_memory_bytes, None);
        let bytes = |i: usize| match i {
            7 => 4096,
            MAX_RECORDED_ITERATIONS => 1 << 30,
            _ => 1 << 20,
        };
        for i in 0..=MAX_RECORDED_ITERATIONS {
            log.push(IterationRecord {
                parkboot_memory_bytes: bytes(i),
                passed: true,
                ..Default::default()
            });
            if i == 0 {
                assert_eq!(log.parkboot_memory_bytes, Some((1 << 20, 1 << 20)));
            }
        }
        // The last one is past the recorded records and still counts.
        assert_eq!(log.records.len(), MAX_RECORDED_ITERATIONS);
        assert_eq!(log.parkboot_memory_bytes, Some((4096, 1 << 30)));
    }
}
