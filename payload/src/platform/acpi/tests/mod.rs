//! Host tests over synthetic tables placed in a [`FakeMemory`].

extern crate std;

use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::platform::fake::FakeMemory;

mod acpi_crate;
mod madt_parsing;
mod rewriting;
mod rsdp;
mod table_walk;
mod withholding;

// ---------------------------------------------------------------------------------------
// Table assembly helpers. Each returns bytes with a correct checksum.

const OEM_ID: [u8; 6] = *b"PARKBT";
const OEM_TABLE_ID: [u8; 8] = *b"PARKTEST";
const CHECKSUM_OFFSET: usize = offset_of!(SdtHeader, checksum);
const LOCAL_APIC_ADDRESS: u32 = 0xFEE0_0000;
const MADT_FLAG_PCAT_COMPAT: u32 = 1;

const BIOS_AREA: u64 = RSDP_SCAN_START;
const BIOS_AREA_SIZE: usize = (RSDP_SCAN_END - RSDP_SCAN_START) as usize;
const RSDP_AT: u64 = 0xF_0000;
const RSDT_AT: u64 = 0x7FFE_0000;
const XSDT_AT: u64 = 0x7FFE_1000;
const FACP_AT: u64 = 0x7FFE_2000;
const MADT_AT: u64 = 0x7FFE_3000;
const HPET_AT: u64 = 0x7FFE_4000;
const MCFG_AT: u64 = 0x7FFE_5000;
const OUT_PHYS: u64 = 0x7F00_0000;
const MAILBOX: u64 = 0x7F10_0000;
const RESET_VECTOR: u64 = 0x7F10_1080;

fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut table = vec![0u8; SDT_HEADER_LENGTH];
    let header = SdtHeader {
        signature: *signature,
        length: (SDT_HEADER_LENGTH + body.len()) as u32,
        revision,
        checksum: 0,
        oem_id: OEM_ID,
        oem_table_id: OEM_TABLE_ID,
        oem_revision: 1,
        creator_id: *b"TEST",
        creator_revision: 0x2024_0101,
    };
    header.write(&mut table).unwrap();
    table.extend_from_slice(body);
    fix_checksum(&mut table, CHECKSUM_OFFSET);
    table
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut out = vec![0u8; RSDP_V2_LENGTH];
    build_rsdp(OEM_ID, rsdt, xsdt, &mut out).unwrap();
    out
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut out = vec![0u8; RSDP_V1_LENGTH];
    out[..8].copy_from_slice(&RSDP_SIGNATURE);
    out[offset_of!(Rsdp, oem_id)..][..6].copy_from_slice(&OEM_ID);
    out[offset_of!(Rsdp, rsdt_address)..][..4].copy_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut out, offset_of!(Rsdp, checksum));
    out
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    sdt(b"RSDT", 1, &body)
}

fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LOCAL_APIC_ADDRESS.to_le_bytes());
    body.extend_from_slice(&MADT_FLAG_PCAT_COMPAT.to_le_bytes());
    for entry in entries {
        body.extend_from_slice(entry);
    }
    sdt(b"APIC", 5, &body)
}

fn local_apic(uid: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_LOCAL_APIC, 8, uid, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(apic_id: u32, flags: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_LOCAL_X2APIC, 16, 0, 0];
    e.extend_from_slice(&apic_id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

/// I/O APIC (type 1): id, reserved, address, GSI base.
fn io_apic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&address.to_le_bytes());
    e.extend_from_slice(&gsi_base.to_le_bytes());
    e
}

/// Interrupt Source Override (type 2): bus, source, GSI, flags.
fn source_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, source];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

/// Local APIC NMI (type 4): processor uid (0xFF = all), flags, LINT#.
fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![4, 6, uid];
    e.extend_from_slice(&flags.to_le_bytes());
    e.push(lint);
    e
}

/// Local x2APIC NMI (type 0xA): flags, uid, LINT#, reserved.
fn x2apic_nmi(uid: u32, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![0xA, 12];
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e.extend_from_slice(&[lint, 0, 0, 0]);
    e
}

fn wakeup_v0(mailbox: u64) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_MULTIPROCESSOR_WAKEUP, 16, 0, 0, 0, 0, 0, 0];
    e.extend_from_slice(&mailbox.to_le_bytes());
    e
}

fn wakeup_v1(mailbox: u64, reset_vector: u64) -> Vec<u8> {
    let mut e = vec![0u8; WAKEUP_ENTRY_LENGTH_V1];
    MultiprocessorWakeupEntry::version_1(mailbox, reset_vector)
        .write(&mut e)
        .unwrap();
    e
}

const ENABLED: u32 = LOCAL_APIC_FLAG_ENABLED;
const ONLINE_CAPABLE: u32 = LOCAL_APIC_FLAG_ONLINE_CAPABLE;

/// A MADT like QEMU's plus x2APIC CPUs: every entry kind a rewrite must keep.
fn sample_madt_entries() -> Vec<Vec<u8>> {
    vec![
        local_apic(0, 0, ENABLED),
        local_apic(1, 1, ENABLED),
        io_apic(0, 0xFEC0_0000, 0),
        source_override(0, 2, 0),
        source_override(9, 9, 0xD),
        local_apic_nmi(0xFF, 0, 1),
        x2apic(0x100, ENABLED, 2),
        x2apic(0x101, ONLINE_CAPABLE, 3),
        x2apic_nmi(0xFFFF_FFFF, 0, 1),
    ]
}

fn bios_area_with(rsdp: &[u8], at: u64) -> Vec<u8> {
    let mut area = vec![0u8; BIOS_AREA_SIZE];
    let offset = (at - BIOS_AREA) as usize;
    area[offset..offset + rsdp.len()].copy_from_slice(rsdp);
    area
}

/// A platform with RSDP (in the BIOS area), XSDT and RSDT, FACP, the given MADT, HPET
/// and MCFG.
fn platform(madt_bytes: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(
        BIOS_AREA,
        &bios_area_with(&rsdp_v2(RSDT_AT as u32, XSDT_AT), RSDP_AT),
    );
    mem.place(XSDT_AT, &xsdt(&[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]));
    mem.place(
        RSDT_AT,
        &rsdt(&[
            FACP_AT as u32,
            MADT_AT as u32,
            HPET_AT as u32,
            MCFG_AT as u32,
        ]),
    );
    mem.place(FACP_AT, &sdt(b"FACP", 6, &[0x5A; 240]));
    mem.place(MADT_AT, madt_bytes);
    mem.place(HPET_AT, &sdt(b"HPET", 1, &[0x11; 20]));
    mem.place(MCFG_AT, &sdt(b"MCFG", 1, &[0x22; 28]));
    mem
}

/// A platform of ACPI 1.0 kind: revision 0 RSDP and an RSDT only.
fn rsdt_only_platform(madt_bytes: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(
        BIOS_AREA,
        &bios_area_with(&rsdp_v1(RSDT_AT as u32), RSDP_AT),
    );
    mem.place(
        RSDT_AT,
        &rsdt(&[FACP_AT as u32, MADT_AT as u32, HPET_AT as u32]),
    );
    mem.place(FACP_AT, &sdt(b"FACP", 1, &[0x5A; 80]));
    mem.place(MADT_AT, madt_bytes);
    mem.place(HPET_AT, &sdt(b"HPET", 1, &[0x11; 20]));
    mem
}

fn snapshot(mem: &FakeMemory) -> Vec<(u64, Vec<u8>)> {
    mem.chunks.clone()
}

fn mem_with_output(mem: &FakeMemory, out: &[u8]) -> FakeMemory {
    let mut combined = FakeMemory {
        chunks: mem.chunks.clone(),
    };
    combined.place(OUT_PHYS, out);
    combined
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

fn xsdt_list(table: &[u8]) -> Vec<u64> {
    table[SDT_HEADER_LENGTH..]
        .chunks_exact(XSDT_ENTRY_SIZE)
        .map(|raw| u64::from_le_bytes(raw.try_into().unwrap()))
        .collect()
}

fn entries_of(table: &[u8]) -> Vec<Vec<u8>> {
    madt_entries(table)
        .unwrap()
        .map(|entry| entry.unwrap().bytes.to_vec())
        .collect()
}

/// Checks everything a kernel would check on the result of [`rewrite_tables`], reading
/// it back through the same parsers from a memory holding the platform and the output.
fn check_rewritten(mem: &FakeMemory, out: &[u8], result: &Rewritten, original_roots: &[u64]) {
    let at = |address: u64| (address - OUT_PHYS) as usize;
    assert_eq!(result.rsdp % RSDP_ALIGNMENT, 0);
    assert!(result.bytes_used <= out.len());

    let rsdp = &out[at(result.rsdp)..][..RSDP_V2_LENGTH];
    assert_eq!(checksum(&rsdp[..RSDP_V1_LENGTH]), 0);
    assert_eq!(checksum(rsdp), 0);
    assert_eq!(rsdp[offset_of!(Rsdp, revision)], RSDP_REVISION_2);
    assert_eq!(
        le_u32(rsdp, offset_of!(Rsdp, length)),
        RSDP_V2_LENGTH as u32
    );
    assert_eq!(le_u32(rsdp, offset_of!(Rsdp, rsdt_address)), 0);
    assert_eq!(le_u64(rsdp, offset_of!(Rsdp, xsdt_address)), result.xsdt);

    let xsdt_length = le_u32(&out[at(result.xsdt)..], offset_of!(SdtHeader, length)) as usize;
    let new_xsdt = &out[at(result.xsdt)..][..xsdt_length];
    assert_eq!(&new_xsdt[..4], b"XSDT");
    assert_eq!(checksum(new_xsdt), 0);
    let expected: Vec<u64> = original_roots
        .iter()
        .map(|&a| if a == MADT_AT { result.madt } else { a })
        .collect();
    assert_eq!(xsdt_list(new_xsdt), expected);

    let madt_length = le_u32(&out[at(result.madt)..], offset_of!(SdtHeader, length)) as usize;
    assert_eq!(at(result.madt) + madt_length, result.bytes_used);
    let new_madt = &out[at(result.madt)..][..madt_length];
    assert_eq!(checksum(new_madt), 0);

    // The whole tree re-reads from the new RSDP, and the MADT has the wakeup entry.
    let combined = mem_with_output(mem, out);
    let tables = Tables::new(&combined, result.rsdp).unwrap();
    assert_eq!(tables.root_signature, Signature::XSDT);
    assert_eq!(tables.find(Signature::MADT).unwrap().0, result.madt);
    let parsed = parse_madt(tables.table_bytes(&combined, Signature::MADT).unwrap()).unwrap();
    assert_eq!(
        parsed.wakeup,
        Some(WakeupEntry {
            mailbox_version: MAILBOX_VERSION_RESET_VECTOR,
            mailbox_address: MAILBOX,
            reset_vector: Some(RESET_VECTOR)
        })
    );
    // Tables other than the MADT are the platform's, in place.
    for table in tables
        .iter()
        .filter(|t| t.signature != Some(Signature::MADT))
    {
        assert!(original_roots.contains(&table.address));
    }
}
