//! The parsers against tables real firmware left in a real guest's memory, not tables
//! written by builders from parkboot's own structures: QEMU 10 q35's ACPI tables as
//! SeaBIOS installs them, and the coreboot table coreboot 4.15 (Debian's source, QEMU
//! q35 board) hands parkboot. `payload/testdata/make-dumps` made them (see
//! payload/testdata/README.md); each file is `<physical address>-<name>.bin`.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;

use parkboot::kernels::gzip;
use parkboot::kernels::multiboot2::{self, ImageKind, RelocPreference, Relocatable, Segment};
use parkboot::memory::{MemoryKind, MemoryRegion};
use parkboot::platform::acpi::{
    self, madt_entries, parse_madt, parse_rsdp, rewrite_tables, Signature, Tables,
    MADT_TYPE_MULTIPROCESSOR_WAKEUP, RSDP_SCAN_END, RSDP_SCAN_START,
};
use parkboot::platform::coreboot;
use parkboot::platform::{
    BootSource, CbfsLocation, PhysicalMemory, Platform, SerialAccess, SerialConsole,
};

/// Guest memory as the dump left it: each file at the address its name gives; nothing
/// else is readable.
struct Dump {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Dump {
    fn load(name: &str) -> Dump {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        let mut chunks = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap();
            let Some((address, _)) = file.split_once('-') else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(address, 16) else {
                continue;
            };
            chunks.push((address, std::fs::read(&path).unwrap()));
        }
        chunks.sort();
        assert!(!chunks.is_empty(), "no dump files in {}", dir.display());
        Dump { chunks }
    }

    fn place(&mut self, address: u64, bytes: &[u8]) {
        self.chunks.push((address, bytes.to_vec()));
    }
}

impl PhysicalMemory for Dump {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.chunks.iter().find_map(|(base, data)| {
            let offset = usize::try_from(addr.checked_sub(*base)?).ok()?;
            data.get(offset..offset.checked_add(len)?)
        })
    }
}

// ---- QEMU q35 ACPI (SeaBIOS, QEMU 10.0, -smp 4 -m 256M) --------------------------------

const Q35_RSDP: u64 = 0xf_5250;
const Q35_RSDT: u64 = 0x0ffe_23c3;
const Q35_ROOT: [(&[u8; 4], u64); 5] = [
    (b"FACP", 0x0ffe_21a3),
    (b"APIC", 0x0ffe_2297),
    (b"HPET", 0x0ffe_2327),
    (b"MCFG", 0x0ffe_235f),
    (b"WAET", 0x0ffe_239b),
];

#[test]
fn q35_rsdp_is_found_in_the_bios_area_revision_0_with_only_an_rsdt() {
    let mem = Dump::load("q35-acpi");
    assert_eq!(
        acpi::find_rsdp(&mem, RSDP_SCAN_START, RSDP_SCAN_END),
        Some(Q35_RSDP)
    );
    let rsdp = parse_rsdp(&mem, Q35_RSDP).unwrap();
    assert_eq!(rsdp.revision, 0);
    assert_eq!(&rsdp.oem_id, b"BOCHS ");
    assert_eq!({ rsdp.rsdt_address }, Q35_RSDT as u32);
    assert!(!rsdp.has_xsdt());
}

#[test]
fn q35_root_lists_five_valid_tables() {
    let mem = Dump::load("q35-acpi");
    let tables = Tables::new(&mem, Q35_RSDP).unwrap();
    assert_eq!(tables.root_signature, Signature::RSDT);
    assert_eq!(tables.root_address, Q35_RSDT);
    let listed: Vec<(Signature, u64)> = tables
        .iter()
        .map(|table| (table.signature.unwrap(), table.address))
        .collect();
    let expected: Vec<(Signature, u64)> = Q35_ROOT
        .iter()
        .map(|&(signature, address)| (Signature(*signature), address))
        .collect();
    assert_eq!(listed, expected);
    assert!(tables.iter().all(|table| table.problem.is_none()));
    assert_eq!(tables.warnings().count(), 0);
}

#[test]
fn q35_madt_lists_four_enabled_local_apics_0_to_3_and_the_io_apic() {
    let mem = Dump::load("q35-acpi");
    let tables = Tables::new(&mem, Q35_RSDP).unwrap();
    let (address, bytes) = tables.madt(&mem).unwrap();
    assert_eq!(address, 0x0ffe_2297);
    assert_eq!(bytes.len(), 144);
    let madt = parse_madt(bytes).unwrap();
    assert_eq!(madt.local_apic_address, 0xfee0_0000);
    assert_eq!(madt.flags, 1, "PCAT_COMPAT");
    let cpus: Vec<(u32, u32, bool, bool)> = madt
        .cpus
        .iter()
        .map(|cpu| {
            (
                cpu.apic_id,
                cpu.processor_uid,
                cpu.enabled,
                cpu.from_x2apic_entry,
            )
        })
        .collect();
    assert_eq!(
        cpus,
        [
            (0, 0, true, false),
            (1, 1, true, false),
            (2, 2, true, false),
            (3, 3, true, false)
        ]
    );
    assert_eq!(madt.wakeup, None);
    // Four local APICs, one I/O APIC, five interrupt source overrides, one local APIC
    // NMI for every processor.
    let types: Vec<u8> = madt_entries(bytes)
        .unwrap()
        .map(|entry| entry.unwrap().entry_type)
        .collect();
    assert_eq!(types, [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 4]);
    let io_apic = madt_entries(bytes)
        .unwrap()
        .map(Result::unwrap)
        .find(|entry| entry.entry_type == 1)
        .unwrap();
    assert_eq!(&io_apic.bytes[4..8], &0xfec0_0000u32.to_le_bytes());
}

#[test]
fn q35_tables_rewritten_with_the_wakeup_entry_keep_every_table_and_entry() {
    const OUT_PHYS: u64 = 0x0e00_0000;
    const MAILBOX: u64 = 0x0e10_0000;
    const RESET_VECTOR: u64 = 0x0e10_1000;
    let mut mem = Dump::load("q35-acpi");
    let mut out = vec![0u8; 4096];
    let rewritten =
        rewrite_tables(&mem, Q35_RSDP, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    out.truncate(rewritten.bytes_used);
    mem.place(OUT_PHYS, &out);

    let tables = Tables::new(&mem, rewritten.rsdp).unwrap();
    assert_eq!(tables.root_signature, Signature::XSDT);
    assert_eq!(tables.root_address, rewritten.xsdt);
    // The same tables in the same order, the platform's where parkboot changed nothing.
    let listed: Vec<(Signature, u64)> = tables
        .iter()
        .map(|table| (table.signature.unwrap(), table.address))
        .collect();
    let expected: Vec<(Signature, u64)> = Q35_ROOT
        .iter()
        .map(|&(signature, address)| {
            let signature = Signature(*signature);
            let address = if signature == Signature::MADT {
                rewritten.madt
            } else {
                address
            };
            (signature, address)
        })
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(tables.warnings().count(), 0);

    let (_, original) = Tables::new(&mem, Q35_RSDP).unwrap().madt(&mem).unwrap();
    let (_, bytes) = tables.madt(&mem).unwrap();
    let madt = parse_madt(bytes).unwrap();
    assert_eq!(madt.cpus.len(), 4);
    let wakeup = madt.wakeup.unwrap();
    assert_eq!(wakeup.mailbox_address, MAILBOX);
    assert_eq!(wakeup.reset_vector, Some(RESET_VECTOR));
    // Every entry QEMU wrote, byte for byte, then the wakeup entry.
    let entries = |table: &[u8]| -> Vec<(u8, Vec<u8>)> {
        madt_entries(table)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.entry_type, entry.bytes.to_vec())
            })
            .collect()
    };
    let (last, kept) = entries(bytes)
        .split_last()
        .map(|(l, k)| (l.clone(), k.to_vec()))
        .unwrap();
    assert_eq!(kept, entries(original));
    assert_eq!(last.0, MADT_TYPE_MULTIPROCESSOR_WAKEUP);
}

// ---- coreboot 4.15 table (QEMU q35 board, -smp 4 -m 256M) ------------------------------

const COREBOOT_TABLE: u64 = 0x0fe8_f000;

#[test]
fn coreboot_table_is_found_through_the_low_forwarding_table() {
    let mem = Dump::load("coreboot-table");
    assert_eq!(coreboot::find_table(&mem, None), Ok(COREBOOT_TABLE));
    assert_eq!(
        coreboot::find_table(&mem, Some(COREBOOT_TABLE)),
        Ok(COREBOOT_TABLE)
    );
}

#[test]
fn coreboot_table_gives_the_memory_map_com1_cbfs_and_the_cbmem_console() {
    let mem = Dump::load("coreboot-table");
    let mut platform = Platform::new(BootSource::Coreboot, COREBOOT_TABLE);
    coreboot::parse(&mem, COREBOOT_TABLE, &mut platform).unwrap();
    let region = |start, size, kind| MemoryRegion { start, size, kind };
    assert_eq!(
        platform.memory[..],
        [
            region(0, 0x1000, MemoryKind::CorebootTables),
            region(0x1000, 0x9_f000, MemoryKind::Usable),
            region(0xa_0000, 0x6_0000, MemoryKind::Reserved),
            region(0x10_0000, 0xfd5_6000, MemoryKind::Usable),
            region(0xfe5_6000, 0xa_a000, MemoryKind::CorebootTables),
            region(0xff0_0000, 0x10_0000, MemoryKind::Reserved),
            region(0xb000_0000, 0x1000_0000, MemoryKind::Reserved),
        ]
    );
    assert_eq!(
        platform.serial,
        Some(SerialConsole {
            access: SerialAccess::Io { base: 0x3f8 },
            baud: 115_200,
            input_hz: 1_843_200,
        })
    );
    assert_eq!(
        platform.cbfs,
        Some(CbfsLocation {
            fmap_offset: 0,
            cbfs_offset: 0x200,
            cbfs_size: 0xff_fe00,
            boot_media_size: 0x100_0000,
        })
    );
    assert_eq!(platform.cbmem_console, Some(0x0fed_e000));
    // coreboot 4.15 gives no RSDP record: parkboot scans the BIOS area for it.
    assert_eq!(platform.rsdp, None);
}

// ---- multiboot2 kernels not built from parkboot's structures ---------------------------

#[test]
fn a_kernel_assembled_from_the_multiboot2_specification_plans_as_an_aout_kludge() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/multiboot2/aout-kludge.bin");
    let image = std::fs::read(&path).unwrap();
    assert_eq!(multiboot2::find_header(&image), Some(0));
    let plan = multiboot2::plan(&image).unwrap();
    assert_eq!(plan.kind, ImageKind::AoutKludge);
    assert_eq!(plan.header_offset, 0);
    // `start` follows the 0x58-byte header.
    assert_eq!(plan.entry, 0x20_0058);
    assert_eq!(
        plan.segments[..],
        [Segment {
            dest: 0x20_0000,
            file_offset: 0,
            file_size: image.len(),
            mem_size: image.len() as u64 + 0x1000,
        }]
    );
    assert!(plan.module_alignment);
    let requested: Vec<u32> = plan.requested.iter().collect();
    assert_eq!(requested, [6, 14], "memory map, ACPI old RSDP");
    assert_eq!(plan.relocatable, None);
    assert_eq!(plan.console_flags, None);
}

/// Debian's Xen 4.17 hypervisor (GPL: read where scripts/lib/xen.sh unpacks it under
/// target/, never committed). `scripts/test` fetches it and names it in $PARKBOOT_XEN,
/// which makes it required: the test then fails if it cannot read it. Without the
/// variable (a bare `cargo test`) the test runs only where the default path exists.
fn debian_xen() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("PARKBOOT_XEN") {
        return Some(std::path::PathBuf::from(path));
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/xen/pkg/boot/xen-4.17-amd64.gz");
    path.is_file().then_some(path)
}

#[test]
fn xen_4_17_is_a_relocatable_elf32_kernel_with_its_header_at_0x98() {
    let Some(path) = debian_xen() else {
        eprintln!(
            "no Xen under target/xen and no $PARKBOOT_XEN (scripts/test fetches it): skipped"
        );
        return;
    };
    let compressed = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("Xen at {} ($PARKBOOT_XEN): {e}", path.display()));
    let mut image = vec![0u8; gzip::inflated_size(&compressed).unwrap()];
    let size = gzip::inflate(&compressed, &mut image).unwrap();
    image.truncate(size);
    assert_eq!(multiboot2::find_header(&image), Some(0x98));
    let plan = multiboot2::plan(&image).unwrap();
    assert_eq!(plan.kind, ImageKind::Elf32);
    assert_eq!(plan.entry, 0x20_0000);
    assert_eq!(
        plan.relocatable,
        Some(Relocatable {
            min_addr: 0x20_0000,
            max_addr: 0xffff_ffff,
            align: 0x20_0000,
            preference: RelocPreference::Highest,
        })
    );
    assert!(plan.module_alignment);
    let requested: Vec<u32> = plan.requested.iter().collect();
    assert_eq!(requested, [4, 6], "basic memory information, memory map");
    // EGA text console supported (flag bit 1), optional.
    assert_eq!(plan.console_flags, Some(2));
}
