//! The ACPI walk the test kernel does: the RSDP copy in the boot information → XSDT →
//! MADT ("APIC") → the Multiprocessor Wakeup entry (type 0x10), whose mailbox and
//! ResetVector must be the park table's.
//!
//! Tables are read through [`PhysicalMemory`], so the walk is host-tested on a fake
//! memory; every read is bounds-checked and every checksum verified.

use core::fmt;

/// Reads physical memory: the kernel's identity map on bare metal, a buffer in tests.
pub trait PhysicalMemory {
    /// `len` bytes at physical `address`, or `None` if they are not readable.
    fn bytes(&self, address: u64, len: usize) -> Option<&[u8]>;
}

/// RSDP: "RSD PTR " signature, checksum over the first 20 bytes (ACPI 1.0 part),
/// revision, then (revision 2+) length, XSDT address and an extended checksum.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
const RSDP_REVISION_OFFSET: usize = 15;
const RSDP_V1_LENGTH: usize = 20;
const RSDP_LENGTH_OFFSET: usize = 20;
const RSDP_XSDT_ADDRESS_OFFSET: usize = 24;
/// Size of the ACPI 2.0+ RSDP.
pub const RSDP_V2_LENGTH: usize = 36;
/// The first revision with an XSDT.
const RSDP_REVISION_XSDT: u8 = 2;

/// Every system description table starts with this 36-byte header.
pub const TABLE_HEADER_LENGTH: usize = 36;
const TABLE_LENGTH_OFFSET: usize = 4;
const XSDT_ENTRY_SIZE: usize = 8;
pub const XSDT_SIGNATURE: [u8; 4] = *b"XSDT";
pub const MADT_SIGNATURE: [u8; 4] = *b"APIC";
/// MADT: header, local APIC address u32, flags u32, then the entries.
const MADT_ENTRIES: usize = TABLE_HEADER_LENGTH + 8;
/// Each MADT entry starts with type u8, length u8.
const MADT_ENTRY_HEADER_LENGTH: usize = 2;

/// MADT entry types of a CPU: Processor Local APIC (APIC ID u8 at 3, flags u32 at 4)
/// and Processor Local x2APIC (APIC ID u32 at 4, flags u32 at 8).
const MADT_TYPE_LOCAL_APIC: u8 = 0;
const MADT_TYPE_LOCAL_X2APIC: u8 = 9;
const LOCAL_APIC_ID: usize = 3;
const LOCAL_APIC_FLAGS: usize = 4;
const LOCAL_X2APIC_ID: usize = 4;
const LOCAL_X2APIC_FLAGS: usize = 8;
/// Flags bit 0 Enabled, bit 1 Online Capable: an OS may start the CPU.
const CPU_FLAGS_USABLE: u32 = 0b11;
/// CPUs [`Found::advertised`] holds; a MADT advertising more is an error here.
pub const MAX_ADVERTISED: usize = 256;

/// MADT entry type of the Multiprocessor Wakeup structure (ACPI 6.6 §5.2.12.19).
pub const MADT_TYPE_MULTIPROCESSOR_WAKEUP: u8 = 0x10;
/// Layout of that entry: type, length, MailBoxVersion u16, reserved u32,
/// MailBoxAddress u64, then (version 1) ResetVector u64.
const WAKEUP_MAILBOX_VERSION: usize = 2;
const WAKEUP_MAILBOX_ADDRESS: usize = 8;
const WAKEUP_RESET_VECTOR: usize = 16;
/// Length of a version 1 entry (with ResetVector).
pub const WAKEUP_ENTRY_LENGTH_V1: usize = 24;
/// The mailbox version that adds the ResetVector.
pub const WAKEUP_MAILBOX_VERSION_RESET_VECTOR: u16 = 1;

/// Where the walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The RSDP copy is shorter than 36 bytes, has the wrong signature, revision < 2,
    /// or a bad checksum.
    Rsdp(&'static str),
    /// A table at this address could not be read or is too short.
    Unreadable([u8; 4], u64),
    /// A table has the wrong signature.
    Signature([u8; 4], u64),
    /// A table's bytes do not sum to zero.
    Checksum([u8; 4], u64),
    /// The XSDT lists no MADT.
    NoMadt,
    /// A MADT entry has a length below 2 or runs past the table.
    BadMadtEntry(usize),
}

fn signature_text(signature: &[u8; 4]) -> &str {
    core::str::from_utf8(signature).unwrap_or("????")
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::Rsdp(what) => write!(f, "RSDP: {what}"),
            AcpiError::Unreadable(sig, addr) => {
                write!(f, "{} at {addr:#x} is not readable", signature_text(sig))
            }
            AcpiError::Signature(sig, addr) => write!(
                f,
                "the table at {addr:#x} is not the {} it should be",
                signature_text(sig)
            ),
            AcpiError::Checksum(sig, addr) => {
                write!(f, "{} at {addr:#x}: bad checksum", signature_text(sig))
            }
            AcpiError::NoMadt => write!(f, "the XSDT lists no MADT (\"APIC\")"),
            AcpiError::BadMadtEntry(offset) => {
                write!(f, "MADT entry at offset {offset:#x} has a bad length")
            }
        }
    }
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

/// A whole system description table with signature `signature` at `address`, its
/// length and checksum checked.
fn table(
    memory: &impl PhysicalMemory,
    address: u64,
    signature: [u8; 4],
) -> Result<&[u8], AcpiError> {
    let header = memory
        .bytes(address, TABLE_HEADER_LENGTH)
        .ok_or(AcpiError::Unreadable(signature, address))?;
    if header[..4] != signature {
        return Err(AcpiError::Signature(signature, address));
    }
    let length = read_u32(header, TABLE_LENGTH_OFFSET).unwrap_or(0) as usize;
    if length < TABLE_HEADER_LENGTH {
        return Err(AcpiError::Unreadable(signature, address));
    }
    let bytes = memory
        .bytes(address, length)
        .ok_or(AcpiError::Unreadable(signature, address))?;
    if !sums_to_zero(bytes) {
        return Err(AcpiError::Checksum(signature, address));
    }
    Ok(bytes)
}

/// The Multiprocessor Wakeup entry as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeupEntry {
    /// Physical address of the entry's MailBoxAddress field, inside the MADT.
    pub mailbox_address_field: u64,
    pub length: u8,
    pub mailbox_version: u16,
    pub mailbox_address: u64,
    /// Present when the entry is long enough to hold it.
    pub reset_vector: Option<u64>,
}

/// What the walk found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub xsdt: u64,
    pub madt: u64,
    /// The first Multiprocessor Wakeup entry (the one an OS uses), if any.
    pub wakeup: Option<WakeupEntry>,
    /// APIC IDs of the CPU entries with Enabled or Online Capable set: the CPUs an OS
    /// would start.
    pub advertised: heapless::Vec<u32, MAX_ADVERTISED>,
}

/// Walks RSDP (`rsdp`: the copy in the boot information) → XSDT → MADT and looks for
/// the Multiprocessor Wakeup entry.
pub fn find_wakeup(memory: &impl PhysicalMemory, rsdp: &[u8]) -> Result<Found, AcpiError> {
    let rsdp = rsdp
        .get(..RSDP_V2_LENGTH)
        .ok_or(AcpiError::Rsdp("shorter than 36 bytes"))?;
    if rsdp[..RSDP_SIGNATURE.len()] != RSDP_SIGNATURE {
        return Err(AcpiError::Rsdp("bad signature"));
    }
    if rsdp[RSDP_REVISION_OFFSET] < RSDP_REVISION_XSDT {
        return Err(AcpiError::Rsdp("revision below 2: no XSDT"));
    }
    if !sums_to_zero(&rsdp[..RSDP_V1_LENGTH]) {
        return Err(AcpiError::Rsdp("bad checksum"));
    }
    let length = read_u32(rsdp, RSDP_LENGTH_OFFSET).unwrap_or(0) as usize;
    if length != RSDP_V2_LENGTH || !sums_to_zero(rsdp) {
        return Err(AcpiError::Rsdp("bad length or extended checksum"));
    }
    let xsdt_address = read_u64(rsdp, RSDP_XSDT_ADDRESS_OFFSET).unwrap_or(0);
    let xsdt = table(memory, xsdt_address, XSDT_SIGNATURE)?;

    let mut madt_address = None;
    for entry in xsdt[TABLE_HEADER_LENGTH..].chunks_exact(XSDT_ENTRY_SIZE) {
        let address = read_u64(entry, 0).unwrap_or(0);
        let signature = memory.bytes(address, MADT_SIGNATURE.len());
        if signature == Some(&MADT_SIGNATURE[..]) {
            madt_address = Some(address);
            break;
        }
    }
    let madt_address = madt_address.ok_or(AcpiError::NoMadt)?;
    let madt = table(memory, madt_address, MADT_SIGNATURE)?;

    let mut wakeup = None;
    let mut advertised = heapless::Vec::new();
    let mut offset = MADT_ENTRIES;
    while offset < madt.len() {
        let header = madt
            .get(offset..offset + MADT_ENTRY_HEADER_LENGTH)
            .ok_or(AcpiError::BadMadtEntry(offset))?;
        let (entry_type, length) = (header[0], header[1] as usize);
        let entry = madt
            .get(offset..offset + length)
            .filter(|_| length >= MADT_ENTRY_HEADER_LENGTH)
            .ok_or(AcpiError::BadMadtEntry(offset))?;
        let cpu = match entry_type {
            MADT_TYPE_LOCAL_APIC => entry
                .get(LOCAL_APIC_ID)
                .copied()
                .map(u32::from)
                .zip(read_u32(entry, LOCAL_APIC_FLAGS)),
            MADT_TYPE_LOCAL_X2APIC => {
                read_u32(entry, LOCAL_X2APIC_ID).zip(read_u32(entry, LOCAL_X2APIC_FLAGS))
            }
            _ => None,
        };
        if let Some((apic_id, flags)) = cpu {
            if flags & CPU_FLAGS_USABLE != 0 && !advertised.contains(&apic_id) {
                advertised
                    .push(apic_id)
                    .map_err(|_| AcpiError::BadMadtEntry(offset))?;
            }
        }
        if entry_type == MADT_TYPE_MULTIPROCESSOR_WAKEUP && wakeup.is_none() {
            wakeup = Some(WakeupEntry {
                mailbox_address_field: madt_address + (offset + WAKEUP_MAILBOX_ADDRESS) as u64,
                length: length as u8,
                mailbox_version: read_u16(entry, WAKEUP_MAILBOX_VERSION)
                    .ok_or(AcpiError::BadMadtEntry(offset))?,
                mailbox_address: read_u64(entry, WAKEUP_MAILBOX_ADDRESS)
                    .ok_or(AcpiError::BadMadtEntry(offset))?,
                reset_vector: read_u64(entry, WAKEUP_RESET_VECTOR),
            });
        }
        offset += length;
    }
    Ok(Found {
        xsdt: xsdt_address,
        madt: madt_address,
        wakeup,
        advertised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x10_0000;
    const XSDT_AT: u64 = BASE + 0x100;
    const MADT_AT: u64 = BASE + 0x200;
    const FACP_AT: u64 = BASE + 0x300;
    const MAILBOX: u64 = 0x1ffd_e000;
    const RESET_VECTOR: u64 = 0x1fbc_f000;

    struct Fake(Vec<u8>);
    impl PhysicalMemory for Fake {
        fn bytes(&self, address: u64, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(address.checked_sub(BASE)?).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[at] = sum.wrapping_neg();
    }

    fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        const CHECKSUM: usize = 9;
        let mut t = vec![0u8; TABLE_HEADER_LENGTH];
        t[..4].copy_from_slice(signature);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, CHECKSUM);
        t
    }

    fn rsdp(xsdt: u64) -> Vec<u8> {
        const CHECKSUM: usize = 8;
        const EXTENDED_CHECKSUM: usize = 32;
        let mut r = vec![0u8; RSDP_V2_LENGTH];
        r[..8].copy_from_slice(&RSDP_SIGNATURE);
        r[RSDP_REVISION_OFFSET] = RSDP_REVISION_XSDT;
        r[RSDP_LENGTH_OFFSET..RSDP_LENGTH_OFFSET + 4]
            .copy_from_slice(&(RSDP_V2_LENGTH as u32).to_le_bytes());
        r[RSDP_XSDT_ADDRESS_OFFSET..RSDP_XSDT_ADDRESS_OFFSET + 8]
            .copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r[..RSDP_V1_LENGTH], CHECKSUM);
        fix_checksum(&mut r, EXTENDED_CHECKSUM);
        r
    }

    const LOCAL_APIC_ENTRY_LENGTH: usize = 8;

    fn memory(with_wakeup: bool) -> Fake {
        let mut xsdt_body = Vec::new();
        xsdt_body.extend_from_slice(&FACP_AT.to_le_bytes());
        xsdt_body.extend_from_slice(&MADT_AT.to_le_bytes());
        // MADT: local APIC address, flags, one local APIC entry, the wakeup entry.
        let mut madt_body = vec![0u8; 8];
        madt_body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        if with_wakeup {
            madt_body.extend_from_slice(&[MADT_TYPE_MULTIPROCESSOR_WAKEUP, 24]);
            madt_body.extend_from_slice(&WAKEUP_MAILBOX_VERSION_RESET_VECTOR.to_le_bytes());
            madt_body.extend_from_slice(&[0; 4]);
            madt_body.extend_from_slice(&MAILBOX.to_le_bytes());
            madt_body.extend_from_slice(&RESET_VECTOR.to_le_bytes());
        }
        let mut mem = vec![0u8; 0x400];
        for (at, table) in [
            (XSDT_AT, sdt(&XSDT_SIGNATURE, &xsdt_body)),
            (MADT_AT, sdt(&MADT_SIGNATURE, &madt_body)),
            (FACP_AT, sdt(b"FACP", &[0; 8])),
        ] {
            let start = (at - BASE) as usize;
            mem[start..start + table.len()].copy_from_slice(&table);
        }
        Fake(mem)
    }

    #[test]
    fn finds_the_wakeup_entry() {
        let found = find_wakeup(&memory(true), &rsdp(XSDT_AT)).unwrap();
        assert_eq!(found.xsdt, XSDT_AT);
        assert_eq!(found.madt, MADT_AT);
        assert_eq!(
            found.wakeup,
            Some(WakeupEntry {
                // After the one 8-byte Local APIC entry.
                mailbox_address_field: found.madt
                    + (MADT_ENTRIES + LOCAL_APIC_ENTRY_LENGTH + WAKEUP_MAILBOX_ADDRESS) as u64,
                length: WAKEUP_ENTRY_LENGTH_V1 as u8,
                mailbox_version: WAKEUP_MAILBOX_VERSION_RESET_VECTOR,
                mailbox_address: MAILBOX,
                reset_vector: Some(RESET_VECTOR),
            })
        );
        // The one Local APIC entry: APIC ID 0, Enabled.
        assert_eq!(found.advertised[..], [0]);
        let found = find_wakeup(&memory(false), &rsdp(XSDT_AT)).unwrap();
        assert_eq!(found.wakeup, None);
    }

    #[test]
    fn reports_broken_tables() {
        let mem = memory(true);
        let mut bad = rsdp(XSDT_AT);
        bad[0] = b'X';
        assert!(matches!(find_wakeup(&mem, &bad), Err(AcpiError::Rsdp(_))));
        assert!(matches!(
            find_wakeup(&mem, &rsdp(XSDT_AT)[..20]),
            Err(AcpiError::Rsdp(_))
        ));
        assert_eq!(
            find_wakeup(&mem, &rsdp(MADT_AT)),
            Err(AcpiError::Signature(XSDT_SIGNATURE, MADT_AT))
        );
        assert_eq!(
            find_wakeup(&mem, &rsdp(0x4000_0000)),
            Err(AcpiError::Unreadable(XSDT_SIGNATURE, 0x4000_0000))
        );
        let mut corrupt = memory(true);
        corrupt.0[(MADT_AT - BASE) as usize + TABLE_HEADER_LENGTH] ^= 1;
        assert_eq!(
            find_wakeup(&corrupt, &rsdp(XSDT_AT)),
            Err(AcpiError::Checksum(MADT_SIGNATURE, MADT_AT))
        );
        for error in [
            AcpiError::NoMadt,
            AcpiError::BadMadtEntry(0x2c),
            AcpiError::Checksum(MADT_SIGNATURE, MADT_AT),
        ] {
            assert!(!format!("{error}").is_empty());
        }
    }
}
