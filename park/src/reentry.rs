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
    pub message: [u8; 64],
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
        message: [0; 64],
    };

    pub fn is_valid(&self) -> bool {
        self.signature == KERNEL_REPORT_SIGNATURE && self.version == KERNEL_REPORT_VERSION
    }

    /// The message up to its NUL, if it is text.
    pub fn message(&self) -> &str {
        let end = self
            .message
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.message.len());
        core::str::from_utf8(&self.message[..end]).unwrap_or("(not text)")
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
