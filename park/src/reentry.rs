//! Giving control back to parkboot: how a park-aware kernel ends one iteration of a
//! kexec loop driven by parkboot.
//!
//! The kernel jumps to [`crate::ParkTable::reentry_vector`] on the boot processor in
//! 64-bit mode, CPL0, interrupts off, with page tables that identity-map (virtual =
//! physical) the vector's page (parkboot's image; it loads its own CR3, CR4, GDT, IDT
//! and stack first), and:
//!
//! * `rdi` = a [`ReentryRequest`] value,
//! * `rsi` = physical address of a [`KernelReport`] (or 0 for none); parkboot copies
//!   it before touching any memory the kernel owned.
//!
//! Every AP must be parked again (handed back through the ResetVector) before the
//! kernel re-enters: parkboot waits up to 1 s for `parked_count` to be back to what it
//! was when the kernel was booted, and fails the iteration, naming each AP that is not
//! parked, if it is not. park/README.md has the whole re-entry ABI.

/// What the kernel asks parkboot to do next (`rdi` at the re-entry vector).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReentryRequest {
    /// Boot the same entry again (the next iteration of its loop; once the entry's
    /// iterations are done, parkboot goes on to the next entry).
    SameEntry = 1,
    /// Stop this entry's loop and boot the next entry.
    NextEntry = 2,
    /// Stop booting: parkboot prints its loop report and finishes.
    Stop = 3,
}

impl ReentryRequest {
    pub fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            1 => Some(ReentryRequest::SameEntry),
            2 => Some(ReentryRequest::NextEntry),
            3 => Some(ReentryRequest::Stop),
            _ => None,
        }
    }
}

/// `KernelReport::signature`.
pub const KERNEL_REPORT_SIGNATURE: [u8; 8] = *b"PARKRPRT";
pub const KERNEL_REPORT_VERSION: u32 = 1;

/// What a kernel measured during its iteration, for parkboot's loop report.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelReport {
    /// [`KERNEL_REPORT_SIGNATURE`].
    pub signature: [u8; 8],
    /// [`KERNEL_REPORT_VERSION`].
    pub version: u32,
    /// 0 when every check of the kernel passed; otherwise the number of the first
    /// check that failed (kernel-defined), with `message` saying what.
    pub status: u32,
    /// APs the kernel woke and saw run (mailbox and wake-all together count once per AP).
    pub aps_woken: u32,
    /// APs the kernel expected to wake (parked when it started).
    pub aps_expected: u32,
    /// Mailbox wake latency over the APs: Wakeup command written to the AP running
    /// its vector, in nanoseconds.
    pub wake_ns_min: u64,
    pub wake_ns_median: u64,
    pub wake_ns_max: u64,
    /// Wake-all: doorbell rung to the last AP running, in nanoseconds.
    pub wake_all_ns: u64,
    /// NUL-terminated text, for failures.
    pub message: [u8; MESSAGE_BYTES],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(KernelReport, signature) == 0);
    assert!(offset_of!(KernelReport, version) == 8);
    assert!(offset_of!(KernelReport, status) == 12);
    assert!(offset_of!(KernelReport, aps_woken) == 16);
    assert!(offset_of!(KernelReport, aps_expected) == 20);
    assert!(offset_of!(KernelReport, wake_ns_min) == 24);
    assert!(offset_of!(KernelReport, wake_ns_median) == 32);
    assert!(offset_of!(KernelReport, wake_ns_max) == 40);
    assert!(offset_of!(KernelReport, wake_all_ns) == 48);
    assert!(offset_of!(KernelReport, message) == 56);
    assert!(size_of::<KernelReport>() == 120);
};

impl KernelReport {
    pub const EMPTY: KernelReport = KernelReport {
        signature: KERNEL_REPORT_SIGNATURE,
        version: KERNEL_REPORT_VERSION,
        status: 0,
        aps_woken: 0,
        aps_expected: 0,
        wake_ns_min: 0,
        wake_ns_median: 0,
        wake_ns_max: 0,
        wake_all_ns: 0,
        message: [0; MESSAGE_BYTES],
    };

    pub fn is_valid(&self) -> bool {
        self.signature == KERNEL_REPORT_SIGNATURE && self.version == KERNEL_REPORT_VERSION
    }

    /// Everything parkboot checks before it believes a report: signature, version,
    /// the counts and latencies consistent with each other and with `cpu_count` (the
    /// CPUs in the park table), and, for a failure (`status` not 0), a message that is
    /// NUL-terminated UTF-8 text. Only the report's own 120 bytes are read.
    pub fn check(&self, cpu_count: u32) -> Result<(), ReportProblem> {
        if self.signature != KERNEL_REPORT_SIGNATURE {
            return Err(ReportProblem::Signature(self.signature));
        }
        if self.version != KERNEL_REPORT_VERSION {
            return Err(ReportProblem::Version(self.version));
        }
        if self.aps_expected > cpu_count || self.aps_woken > self.aps_expected {
            return Err(ReportProblem::Counts {
                aps_woken: self.aps_woken,
                aps_expected: self.aps_expected,
                cpu_count,
            });
        }
        if self.wake_ns_min > self.wake_ns_median || self.wake_ns_median > self.wake_ns_max {
            return Err(ReportProblem::Latencies {
                min: self.wake_ns_min,
                median: self.wake_ns_median,
                max: self.wake_ns_max,
            });
        }
        if self.status != 0 {
            self.checked_message()?;
        }
        Ok(())
    }

    /// The message up to its NUL, or what is wrong with it.
    pub fn checked_message(&self) -> Result<&str, ReportProblem> {
        let end = self
            .message
            .iter()
            .position(|&b| b == 0)
            .ok_or(ReportProblem::MessageNotTerminated)?;
        let text = self
            .message
            .get(..end)
            .ok_or(ReportProblem::MessageNotTerminated)?;
        core::str::from_utf8(text).map_err(|e| ReportProblem::MessageNotText {
            offset: e.valid_up_to(),
        })
    }
}

/// What is wrong with a [`KernelReport`] ([`KernelReport::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportProblem {
    Signature([u8; 8]),
    Version(u32),
    /// `aps_woken` above `aps_expected`, or `aps_expected` above the table's CPUs.
    Counts {
        aps_woken: u32,
        aps_expected: u32,
        cpu_count: u32,
    },
    /// Not min <= median <= max.
    Latencies {
        min: u64,
        median: u64,
        max: u64,
    },
    /// No NUL in the 64 bytes of `message`.
    MessageNotTerminated,
    /// The message is not UTF-8 from byte `offset` on.
    MessageNotText {
        offset: usize,
    },
}

impl core::fmt::Display for ReportProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ReportProblem::Signature(found) => {
                write!(f, "signature {found:02x?}, expected \"PARKRPRT\"")
            }
            ReportProblem::Version(found) => {
                write!(f, "version {found}, expected {KERNEL_REPORT_VERSION}")
            }
            ReportProblem::Counts {
                aps_woken,
                aps_expected,
                cpu_count,
            } => write!(
                f,
                "aps_woken {aps_woken}, aps_expected {aps_expected}: more than expected or than the {cpu_count} CPUs in the park table"
            ),
            ReportProblem::Latencies { min, median, max } => write!(
                f,
                "wake latencies min {min} / median {median} / max {max} ns are not in order"
            ),
            ReportProblem::MessageNotTerminated => write!(
                f,
                "message has no NUL in its {} bytes",
                MESSAGE_BYTES
            ),
            ReportProblem::MessageNotText { offset } => {
                write!(f, "message is not UTF-8 text from byte {offset} on")
            }
        }
    }
}

/// Bytes of [`KernelReport::message`].
pub const MESSAGE_BYTES: usize = 64;

impl KernelReport {
    /// The message up to its NUL, if it is text.
    pub fn message(&self) -> &str {
        // Up to the first NUL, or all of it when there is none.
        let text = self.message.split(|&b| b == 0).next().unwrap_or(&[]);
        core::str::from_utf8(text).unwrap_or("(not text)")
    }
}

/// The multiboot2 boot information tag that carries the park table to park-aware
/// kernels (a type number outside the range the multiboot2 specification uses).
pub const MULTIBOOT2_TAG_TYPE_PARKBOOT: u32 = 0x5041_524B; // "PARK" read as a big-endian u32

/// Layout of that tag.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiboot2ParkbootTag {
    /// [`MULTIBOOT2_TAG_TYPE_PARKBOOT`].
    pub tag_type: u32,
    /// `size_of::<Multiboot2ParkbootTag>()`.
    pub size: u32,
    /// Physical address of the [`crate::ParkTable`].
    pub park_table: u64,
    /// [`crate::table::PARK_TABLE_VERSION`] of that table.
    pub park_table_version: u32,
    /// Which iteration of this entry's loop this boot is (1 = the first).
    pub iteration: u32,
    /// How many iterations parkboot will run of this entry.
    pub iterations: u32,
    pub reserved: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(Multiboot2ParkbootTag, park_table) == 8);
    assert!(offset_of!(Multiboot2ParkbootTag, park_table_version) == 16);
    assert!(offset_of!(Multiboot2ParkbootTag, iteration) == 20);
    assert!(offset_of!(Multiboot2ParkbootTag, iterations) == 24);
    assert!(size_of::<Multiboot2ParkbootTag>() == 32);
};

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    fn good() -> KernelReport {
        KernelReport {
            aps_woken: 3,
            aps_expected: 3,
            wake_ns_min: 10,
            wake_ns_median: 20,
            wake_ns_max: 30,
            ..KernelReport::EMPTY
        }
    }

    #[test]
    fn a_good_report_passes() {
        assert_eq!(good().check(4), Ok(()));
        let mut failed = good();
        failed.status = 5;
        failed.message[..4].copy_from_slice(b"oops");
        assert_eq!(failed.check(4), Ok(()));
        assert_eq!(failed.checked_message(), Ok("oops"));
    }

    #[test]
    fn each_garbage_report_is_named() {
        type Breaker = fn(&mut KernelReport);
        let cases: [(Breaker, ReportProblem); 7] = [
            (
                |r| r.signature = *b"GARBAGE!",
                ReportProblem::Signature(*b"GARBAGE!"),
            ),
            (|r| r.version = 9, ReportProblem::Version(9)),
            (
                |r| r.aps_woken = 4,
                ReportProblem::Counts {
                    aps_woken: 4,
                    aps_expected: 3,
                    cpu_count: 4,
                },
            ),
            (
                |r| {
                    r.aps_expected = 9;
                    r.aps_woken = 1
                },
                ReportProblem::Counts {
                    aps_woken: 1,
                    aps_expected: 9,
                    cpu_count: 4,
                },
            ),
            (
                |r| r.wake_ns_min = 99,
                ReportProblem::Latencies {
                    min: 99,
                    median: 20,
                    max: 30,
                },
            ),
            (
                |r| {
                    r.status = 1;
                    r.message = [b'x'; MESSAGE_BYTES]
                },
                ReportProblem::MessageNotTerminated,
            ),
            (
                |r| {
                    r.status = 1;
                    r.message[..3].copy_from_slice(b"ab\xff")
                },
                ReportProblem::MessageNotText { offset: 2 },
            ),
        ];
        for (break_it, problem) in cases {
            let mut report = good();
            break_it(&mut report);
            assert_eq!(report.check(4), Err(problem));
            assert!(!problem.to_string().is_empty());
        }
    }

    #[test]
    fn a_message_is_only_checked_for_a_failure() {
        let mut report = good();
        report.message = [0xff; MESSAGE_BYTES];
        assert_eq!(report.check(4), Ok(()));
    }
}
