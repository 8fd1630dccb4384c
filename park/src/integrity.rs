//! The park table's integrity: a checksum over the fields only parkboot writes, and
//! the verification (and repair) parkboot runs when a kernel gives control back.
//!
//! A kernel can write anything into the park table. The fields the park code and
//! parkboot trust (where the slots are, how many, each slot's APIC ID and stack, the
//! mailbox and ResetVector addresses) are written only by parkboot: it keeps a private
//! copy of them ([`OwnedFields`]), and the table carries a checksum of them
//! ([`ParkTable::checksum`], flag [`flags::CHECKSUM`]) that a kernel can check and
//! parkboot recomputes whenever it changes one. The checksum is 32-bit FNV-1a over the
//! fields' little-endian bytes in the order of [`HEADER_FIELDS`], then each slot's
//! `apic_id` (4 bytes) and `stack_top` (8 bytes), slot 0 to `slot_count - 1`.

use crate::table::{flags, CpuSlot, ParkTable};

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a, fed in pieces.
#[derive(Clone, Copy)]
struct Fnv1a(u32);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(FNV_OFFSET_BASIS)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            self.0 = (self.0 ^ u32::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self
    }
}

/// The header fields only parkboot writes, by name, in checksum order, with their
/// width in bytes (the signature counts as one 8-byte field).
pub const HEADER_FIELDS: [(&str, usize); 16] = [
    ("signature", 8),
    ("version", 4),
    ("table_size", 4),
    ("cpu_count", 4),
    ("boot_apic_id", 4),
    ("flags", 4),
    ("mailbox_address", 8),
    ("reset_vector", 8),
    ("tsc_hz", 8),
    ("reentry_vector", 8),
    ("park_region_base", 8),
    ("park_region_size", 8),
    ("slots_offset", 4),
    ("slot_size", 4),
    ("slot_count", 4),
    ("cpus_beyond_table", 4),
];

/// What parkboot wrote into one slot and only it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotOwned {
    pub apic_id: u32,
    pub stack_top: u64,
}

/// parkboot's private copy of the fields only it writes (the header's, in
/// [`HEADER_FIELDS`] order; the slots' are kept by the caller, one [`SlotOwned`] per
/// slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedFields {
    pub values: [u64; HEADER_FIELDS.len()],
}

/// Pointers to the owned header fields of the table at `table`, in [`HEADER_FIELDS`]
/// order, with their width.
fn field_pointers(table: *mut ParkTable) -> [(*mut u8, usize); HEADER_FIELDS.len()] {
    use core::ptr::addr_of_mut;
    // SAFETY: only field addresses are computed (no reference, no read).
    unsafe {
        [
            (addr_of_mut!((*table).signature).cast(), 8),
            (addr_of_mut!((*table).version).cast(), 4),
            (addr_of_mut!((*table).table_size).cast(), 4),
            (addr_of_mut!((*table).cpu_count).cast(), 4),
            (addr_of_mut!((*table).boot_apic_id).cast(), 4),
            (addr_of_mut!((*table).flags).cast(), 4),
            (addr_of_mut!((*table).mailbox_address).cast(), 8),
            (addr_of_mut!((*table).reset_vector).cast(), 8),
            (addr_of_mut!((*table).tsc_hz).cast(), 8),
            (addr_of_mut!((*table).reentry_vector).cast(), 8),
            (addr_of_mut!((*table).park_region_base).cast(), 8),
            (addr_of_mut!((*table).park_region_size).cast(), 8),
            (addr_of_mut!((*table).slots_offset).cast(), 4),
            (addr_of_mut!((*table).slot_size).cast(), 4),
            (addr_of_mut!((*table).slot_count).cast(), 4),
            (addr_of_mut!((*table).cpus_beyond_table).cast(), 4),
        ]
    }
}

/// # Safety: `field` points at `width` (4 or 8) readable bytes.
unsafe fn read_field(field: *const u8, width: usize) -> u64 {
    // SAFETY: the caller guarantees `width` readable bytes at `field`.
    unsafe {
        if width == 8 {
            core::ptr::read_volatile(field.cast::<u64>())
        } else {
            u64::from(core::ptr::read_volatile(field.cast::<u32>()))
        }
    }
}

/// # Safety: `field` points at `width` (4 or 8) writable bytes.
unsafe fn write_field(field: *mut u8, width: usize, value: u64) {
    // SAFETY: the caller guarantees `width` writable bytes at `field`.
    unsafe {
        if width == 8 {
            core::ptr::write_volatile(field.cast::<u64>(), value)
        } else {
            core::ptr::write_volatile(field.cast::<u32>(), value as u32)
        }
    }
}

fn slot_pointer(
    table: *mut ParkTable,
    slots_offset: u64,
    slot_size: u64,
    index: usize,
) -> *mut CpuSlot {
    table
        .cast::<u8>()
        .wrapping_add((slots_offset + index as u64 * slot_size) as usize)
        .cast()
}

impl OwnedFields {
    /// The owned header fields of `table` as they are now.
    pub fn of(table: &ParkTable) -> Self {
        let mut values = [0; HEADER_FIELDS.len()];
        let pointers = field_pointers(table as *const ParkTable as *mut ParkTable);
        for (value, (field, width)) in values.iter_mut().zip(pointers) {
            // SAFETY: fields of the referenced header.
            *value = unsafe { read_field(field, width) };
        }
        OwnedFields { values }
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        HEADER_FIELDS
            .iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| self.values.get(i).copied())
    }

    /// The checksum of these header fields and `slots` (one per slot, `slot_count`).
    pub fn checksum(&self, slots: impl Iterator<Item = SlotOwned>) -> u32 {
        let mut hash = Fnv1a::new();
        for (value, (_, width)) in self.values.iter().zip(HEADER_FIELDS) {
            let bytes = value.to_le_bytes();
            // Every width in HEADER_FIELDS is 4 or 8.
            hash = hash.bytes(bytes.get(..width).unwrap_or(&bytes));
        }
        for slot in slots {
            hash = hash
                .bytes(&slot.apic_id.to_le_bytes())
                .bytes(&slot.stack_top.to_le_bytes());
        }
        hash.0
    }
}

impl ParkTable {
    /// The checksum of this table's owned fields as they are now (header and every
    /// slot up to `slot_count`), or `None` when the header does not pass
    /// [`ParkTable::check`] (then the slots cannot be found safely). A kernel compares
    /// it with `checksum` when `flags` has [`flags::CHECKSUM`].
    pub fn compute_checksum(&self) -> Option<u32> {
        self.check().ok()?;
        let owned = OwnedFields::of(self);
        let base = self as *const ParkTable as *mut ParkTable;
        let (offset, size) = (u64::from(self.slots_offset), u64::from(self.slot_size));
        let slots = (0..self.slot_count as usize).map(|index| {
            // SAFETY: the checked header keeps every slot up to slot_count within
            // table_size, and a ParkTable is only referenced where its slots follow.
            let slot = unsafe { &*slot_pointer(base, offset, size, index) };
            SlotOwned {
                apic_id: slot.apic_id,
                stack_top: slot.stack_top,
            }
        });
        Some(owned.checksum(slots))
    }

    /// Whether the table carries a checksum and it matches.
    pub fn checksum_matches(&self) -> bool {
        self.flags & flags::CHECKSUM != 0 && self.compute_checksum() == Some(self.checksum)
    }
}

/// One thing a kernel changed that only parkboot writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The stored checksum does not match the fields (`computed` is `None` when the
    /// header is too broken to find the slots).
    Checksum { stored: u32, computed: Option<u32> },
    /// A header field (name from [`HEADER_FIELDS`]).
    Header {
        field: &'static str,
        found: u64,
        expected: u64,
    },
    /// A slot field (`apic_id` or `stack_top`) of slot `index`, whose CPU has APIC ID
    /// `apic_id` (parkboot's copy).
    Slot {
        index: usize,
        apic_id: u32,
        field: &'static str,
        found: u64,
        expected: u64,
    },
}

impl core::fmt::Display for Damage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Damage::Checksum { stored, computed: Some(computed) } => write!(
                f,
                "checksum {stored:#010x}, but the fields sum to {computed:#010x}"
            ),
            Damage::Checksum { stored, computed: None } => write!(
                f,
                "checksum {stored:#010x}, and the header is too broken to find the slots"
            ),
            Damage::Header { field, found, expected } => {
                write!(f, "header field {field} is {found:#x}, parkboot wrote {expected:#x}")
            }
            Damage::Slot { index, apic_id, field, found, expected } => write!(
                f,
                "slot {index} (APIC ID {apic_id}): {field} is {found:#x}, parkboot wrote {expected:#x}"
            ),
        }
    }
}

/// Checks the owned fields of the table at `table` against parkboot's copy (`header`,
/// `slots`), reports each difference (and a checksum that does not match) to `report`,
/// writes parkboot's values back, and stores a fresh checksum. Returns how many
/// differences it found (the checksum included). Only parkboot's copy decides where the
/// slots are, so a broken header never leads to a write outside the table.
///
/// # Safety
/// `table` is the park table parkboot built from `header` and `slots` (so its memory
/// holds `header`'s `slot_count` slots), writable, and no other CPU writes the owned
/// fields meanwhile (parked CPUs only read them).
pub unsafe fn verify_and_repair(
    table: *mut ParkTable,
    header: &OwnedFields,
    slots: &[SlotOwned],
    mut report: impl FnMut(Damage),
) -> usize {
    // SAFETY: the caller guarantees `table` is the writable park table built from
    // `header` and `slots`; every access below is to one of its header fields
    // (`field_pointers`) or to a field of one of `slots.len()` slots placed by
    // parkboot's own `slots_offset` and `slot_size`, and no other CPU writes them.
    unsafe {
        let mut found = 0;
        let stored = core::ptr::read_volatile(core::ptr::addr_of!((*table).checksum));
        let computed = (*table).compute_checksum();
        if computed != Some(stored) {
            found += 1;
            report(Damage::Checksum { stored, computed });
        }
        for ((field, width), ((name, _), &expected)) in field_pointers(table)
            .into_iter()
            .zip(HEADER_FIELDS.iter().zip(header.values.iter()))
        {
            let value = read_field(field, width);
            if value != expected {
                found += 1;
                report(Damage::Header {
                    field: name,
                    found: value,
                    expected,
                });
                write_field(field, width, expected);
            }
        }
        let offset = header.get("slots_offset").unwrap_or(0);
        let size = header.get("slot_size").unwrap_or(0);
        for (index, owned) in slots.iter().enumerate() {
            let slot = slot_pointer(table, offset, size, index);
            let apic_id = core::ptr::addr_of_mut!((*slot).apic_id);
            let stack_top = core::ptr::addr_of_mut!((*slot).stack_top);
            let found_id = core::ptr::read_volatile(apic_id);
            if found_id != owned.apic_id {
                found += 1;
                report(Damage::Slot {
                    index,
                    apic_id: owned.apic_id,
                    field: "apic_id",
                    found: u64::from(found_id),
                    expected: u64::from(owned.apic_id),
                });
                core::ptr::write_volatile(apic_id, owned.apic_id);
            }
            let found_stack = core::ptr::read_volatile(stack_top);
            if found_stack != owned.stack_top {
                found += 1;
                report(Damage::Slot {
                    index,
                    apic_id: owned.apic_id,
                    field: "stack_top",
                    found: found_stack,
                    expected: owned.stack_top,
                });
                core::ptr::write_volatile(stack_top, owned.stack_top);
            }
        }
        let checksum = header.checksum(slots.iter().copied());
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*table).checksum), checksum);
        found
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::table::{PARK_TABLE_HEADER_SIZE, PARK_TABLE_SIGNATURE, PARK_TABLE_VERSION};
    use std::string::ToString;
    use std::vec::Vec;

    const SLOTS: usize = 4;
    const BYTES: usize = PARK_TABLE_HEADER_SIZE + SLOTS * 128;

    #[repr(C, align(128))]
    struct Memory([u8; BYTES]);

    /// A table as parkboot builds it, with its private copy and checksum.
    fn built() -> (std::boxed::Box<Memory>, OwnedFields, Vec<SlotOwned>) {
        let mut memory = std::boxed::Box::new(Memory([0; BYTES]));
        let table = memory.0.as_mut_ptr() as *mut ParkTable;
        let slots: Vec<SlotOwned> = (0..SLOTS)
            .map(|i| SlotOwned {
                apic_id: i as u32 * 2,
                stack_top: 0x20_0000 + i as u64 * 0x2000,
            })
            .collect();
        // SAFETY: the buffer is a zeroed, aligned table of SLOTS slots.
        unsafe {
            (*table).signature = PARK_TABLE_SIGNATURE;
            (*table).version = PARK_TABLE_VERSION;
            (*table).table_size = BYTES as u32;
            (*table).cpu_count = SLOTS as u32;
            (*table).slot_count = SLOTS as u32;
            (*table).slots_offset = PARK_TABLE_HEADER_SIZE as u32;
            (*table).slot_size = 128;
            (*table).flags = flags::CHECKSUM;
            (*table).mailbox_address = 0x7000_0000;
            for (i, owned) in slots.iter().enumerate() {
                let slot = slot_pointer(table, PARK_TABLE_HEADER_SIZE as u64, 128, i);
                (*slot).apic_id = owned.apic_id;
                (*slot).stack_top = owned.stack_top;
            }
            let header = OwnedFields::of(&*table);
            (*table).checksum = header.checksum(slots.iter().copied());
            (memory, header, slots)
        }
    }

    fn table(memory: &mut Memory) -> *mut ParkTable {
        memory.0.as_mut_ptr() as *mut ParkTable
    }

    #[test]
    fn an_untouched_table_matches_and_needs_no_repair() {
        let (mut memory, header, slots) = built();
        let t = table(&mut memory);
        // SAFETY: the built table.
        unsafe {
            assert!((*t).checksum_matches());
            let mut reports = Vec::new();
            assert_eq!(
                verify_and_repair(t, &header, &slots, |d| reports.push(d)),
                0
            );
            assert!(reports.is_empty(), "{reports:?}");
        }
    }

    #[test]
    fn counters_and_states_are_not_in_the_checksum() {
        let (mut memory, _, _) = built();
        let t = table(&mut memory);
        // SAFETY: the built table.
        unsafe {
            (*t).parked_count
                .store(7, core::sync::atomic::Ordering::Relaxed);
            (*t).wake_all_generation
                .store(3, core::sync::atomic::Ordering::Relaxed);
            let slot = slot_pointer(t, PARK_TABLE_HEADER_SIZE as u64, 128, 1);
            (*slot)
                .state
                .store(4, core::sync::atomic::Ordering::Relaxed);
            (*slot).kernel_scratch[0].store(9, core::sync::atomic::Ordering::Relaxed);
            assert!((*t).checksum_matches());
        }
    }

    #[test]
    fn each_owned_field_is_named_and_repaired() {
        type Breaker = unsafe fn(*mut ParkTable);
        let cases: [(Breaker, &str); 5] = [
            (
                |t| {
                    // SAFETY: `t` is the built table (the caller below).
                    unsafe { (*t).cpu_count = 99 }
                },
                "header field cpu_count is 0x63, parkboot wrote 0x4",
            ),
            (
                |t| {
                    // SAFETY: `t` is the built table (the caller below).
                    unsafe { (*t).boot_apic_id = 5 }
                },
                "header field boot_apic_id is 0x5",
            ),
            (
                |t| {
                    // SAFETY: `t` is the built table (the caller below).
                    unsafe { (*t).signature = *b"BROKEN!!" }
                },
                "header field signature",
            ),
            (
                |t| {
                    // SAFETY: `t` is the built table (the caller below).
                    unsafe { (*slot_pointer(t, 128, 128, 2)).apic_id = 77 }
                },
                "slot 2 (APIC ID 4): apic_id is 0x4d, parkboot wrote 0x4",
            ),
            (
                |t| {
                    // SAFETY: `t` is the built table (the caller below).
                    unsafe { (*slot_pointer(t, 128, 128, 3)).stack_top = 0 }
                },
                "slot 3 (APIC ID 6): stack_top is 0x0",
            ),
        ];
        for (break_it, expected) in cases {
            let (mut memory, header, slots) = built();
            let t = table(&mut memory);
            let before = memory.0;
            let t2 = t;
            // SAFETY: the built table.
            unsafe {
                break_it(t2);
                assert!(!(*t).checksum_matches(), "{expected}");
                let mut reports = Vec::new();
                let found = verify_and_repair(t, &header, &slots, |d| reports.push(d.to_string()));
                assert_eq!(found, 2, "{reports:?}");
                assert!(reports[0].starts_with("checksum"), "{reports:?}");
                assert!(reports[1].starts_with(expected), "{reports:?}");
                assert!((*t).checksum_matches());
            }
            assert_eq!(memory.0, before, "repaired byte for byte: {expected}");
        }
    }

    #[test]
    fn a_broken_checksum_alone_is_reported_and_restored() {
        let (mut memory, header, slots) = built();
        let t = table(&mut memory);
        // SAFETY: the built table.
        unsafe {
            let good = (*t).checksum;
            (*t).checksum = good ^ 1;
            let mut reports = Vec::new();
            assert_eq!(
                verify_and_repair(t, &header, &slots, |d| reports.push(d)),
                1
            );
            assert_eq!(
                reports,
                [Damage::Checksum {
                    stored: good ^ 1,
                    computed: Some(good)
                }]
            );
            assert_eq!((*t).checksum, good);
        }
    }

    #[test]
    fn a_header_too_broken_to_find_slots_has_no_checksum() {
        let (mut memory, _, _) = built();
        let t = table(&mut memory);
        // SAFETY: the built table.
        unsafe {
            (*t).slot_count = 1000;
            assert_eq!((*t).compute_checksum(), None);
            assert!(!(*t).checksum_matches());
        }
    }
}
