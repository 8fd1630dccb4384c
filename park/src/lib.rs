//! The park ABI: what parkboot and the kernels it boots agree on.
//!
//! * [`mailbox`]: the ACPI Multiprocessor Wakeup mailbox (ACPI 6.6 §5.2.12.19), the
//!   standard door unmodified Linux uses.
//! * [`integrity`]: the checksum over the park table fields only parkboot writes, and
//!   parkboot's verification and repair of them.
//! * [`table`]: the park table, parkboot's documented superset: one slot per CPU with
//!   its state and counters, the parked count, and the wake-all doorbell.
//! * [`reentry`]: how a park-aware kernel gives control back to parkboot, and the
//!   multiboot2 tag that carries the park table.
//! * [`code`] (feature `ap-code`): the code parked CPUs run, as position-independent
//!   blobs that parkboot copies into its reserved park region.
//!
//! The layout of every shared structure is fixed by compile-time assertions; the
//! meaning of every field is documented in `park/README.md`.
#![no_std]
// Unit tests may unwrap, index and panic: a failed expectation is a panic.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)
)]

pub mod integrity;
pub mod mailbox;
pub mod reentry;
pub mod table;

#[cfg(feature = "ap-code")]
pub mod code;

pub use mailbox::{MailboxCommand, WakeupMailbox};
pub use table::{CpuSlot, CpuState, ParkTable};
