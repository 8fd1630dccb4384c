//! Host tests: a multiboot2 hand-off prepared on fake memory, read back byte by byte
//! and with the `multiboot2` crate.

use super::*;
use crate::memory::region::FakeMemory;
use crate::memory::{Lifetime, MemoryError, MemoryKind, MemoryRegion, MIB};
use std::string::ToString;
use std::vec::Vec;

const LOAD: u32 = 0x10_0000;
const LOAD_END: u32 = 0x10_1000;
const BSS_END: u32 = 0x10_2000;
const ENTRY: u32 = 0x10_0080;
/// The fake machine: low RAM, the BIOS area, RAM from 1 MiB to 64 MiB.
const RAM_END: u64 = 64 * MIB;

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A raw ("a.out kludge") kernel of `len` patterned bytes whose header at 0x40 loads
/// its first 4 KiB at 1 MiB, with 4 KiB of bss after them.
fn kernel(len: usize) -> Vec<u8> {
    let mut tags = words(&[
        HEADER_TAG_ADDRESS as u32,
        24,
        LOAD + 0x40,
        LOAD,
        LOAD_END,
        BSS_END,
    ]);
    tags.extend(words(&[HEADER_TAG_ENTRY_ADDRESS as u32, 12, ENTRY, 0]));
    tags.extend(words(&[HEADER_TAG_END as u32, 8]));
    let length = 16 + tags.len() as u32;
    let checksum = 0u32
        .wrapping_sub(HEADER_MAGIC)
        .wrapping_sub(ARCHITECTURE_I386)
        .wrapping_sub(length);
    let mut header = words(&[HEADER_MAGIC, ARCHITECTURE_I386, length, checksum]);
    header.extend(tags);
    let mut image: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    image[0x40..0x40 + header.len()].copy_from_slice(&header);
    image
}

fn machine() -> (MemoryMap, FakeMemory) {
    let map = MemoryMap::new(&[
        MemoryRegion {
            start: 0,
            size: 0x9fc00,
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            start: 0xf0000,
            size: 0x10000,
            kind: MemoryKind::Reserved,
        },
        MemoryRegion {
            start: MIB,
            size: RAM_END - MIB,
            kind: MemoryKind::Usable,
        },
    ])
    .unwrap();
    (map, FakeMemory::new(0, RAM_END as usize))
}

/// An ACPI 2.0 RSDP with valid checksums.
fn rsdp() -> [u8; RSDP_V2_BYTES] {
    let mut r = [0u8; RSDP_V2_BYTES];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"PARKBT");
    r[15] = 2;
    r[20..24].copy_from_slice(&(RSDP_V2_BYTES as u32).to_le_bytes());
    r[24..32].copy_from_slice(&0x3f_e000u64.to_le_bytes());
    r[8] = 0u8.wrapping_sub(r[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b)));
    r[32] = 0u8.wrapping_sub(r.iter().fold(0u8, |a, &b| a.wrapping_add(b)));
    r
}

fn park_tag() -> Multiboot2ParkbootTag {
    Multiboot2ParkbootTag {
        tag_type: MULTIBOOT2_TAG_TYPE_PARKBOOT,
        size: size_of::<Multiboot2ParkbootTag>() as u32,
        park_table: 0x3f0_0000,
        park_table_version: 1,
        iteration: 3,
        iterations: 7,
        reserved: 0,
    }
}

#[test]
fn segments_module_and_boot_information_land_where_the_plan_says() {
    let (mut map, mut memory) = machine();
    // What a previous kernel left in the bss must be zeroed.
    memory.bytes[LOAD_END as usize..BSS_END as usize].fill(0xEE);
    let image = kernel(0x1800);
    let plan = plan(&image).unwrap();
    let module: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let rsdp = rsdp();
    let handoff = Handoff {
        cmdline: "console=com1 dom0_mem=512M",
        loader_name: "parkboot test",
        module: Some(&module),
        parkboot: Some(park_tag()),
        rsdp: &rsdp,
    };
    let mut phases = Vec::new();
    let prepared = prepare(&mut map, &mut memory, &image, &plan, &handoff, &mut |p| {
        phases.push(p)
    })
    .unwrap();
    assert_eq!(phases, [Phase::Copied, Phase::BootInfo, Phase::Acpi]);

    assert_eq!(memory.at(LOAD as u64, 0x1000), &image[..0x1000]);
    assert!(memory.at(LOAD_END as u64, 0x1000).iter().all(|&b| b == 0));
    let (module_start, module_len) = prepared.module.unwrap();
    assert_eq!(module_len, 5000);
    assert_eq!(memory.at(module_start, 5000), &module[..]);
    // Highest free pages, below 4 GiB (and so below this machine's RAM end).
    assert_eq!(module_start, RAM_END - 0x2000);
    assert_eq!(prepared.boot_info, RAM_END - 0x2000 - BOOT_INFO_BYTES);
    let names: Vec<_> = map
        .reservations()
        .map(|r| (r.start, r.name, r.report_as, r.lifetime))
        .collect();
    assert_eq!(
        names,
        [
            (LOAD as u64, SEGMENT_NAME, ReportAs::Usable, Lifetime::Boot),
            (
                prepared.boot_info,
                BOOT_INFO_NAME,
                ReportAs::Usable,
                Lifetime::Boot
            ),
            (module_start, MODULE_NAME, ReportAs::Usable, Lifetime::Boot),
        ]
    );

    // The boot information, as a kernel reads it.
    let mut aligned = vec![0u64; BOOT_INFO_BYTES as usize / 8];
    let info = memory.at(prepared.boot_info, BOOT_INFO_BYTES as usize);
    for (word, bytes) in aligned.iter_mut().zip(info.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().unwrap());
    }
    // SAFETY: `aligned` is 8-aligned, holds the whole boot information and is not
    // changed while `mbi` lives.
    let mbi = unsafe { multiboot2::BootInformation::load(aligned.as_ptr().cast()) }.unwrap();
    assert_eq!(mbi.total_size(), prepared.boot_info_len);
    assert_eq!(
        mbi.command_line_tag().unwrap().cmdline(),
        Ok("console=com1 dom0_mem=512M")
    );
    assert_eq!(
        mbi.boot_loader_name_tag().unwrap().name(),
        Ok("parkboot test")
    );
    let modules: Vec<_> = mbi
        .module_tags()
        .map(|m| {
            (
                m.start_address() as u64,
                m.end_address() as u64,
                m.cmdline().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        modules,
        [(module_start, module_start + 5000, "initrd".to_string())]
    );
    let meminfo = mbi.basic_memory_info_tag().unwrap();
    assert_eq!(
        (meminfo.memory_lower(), meminfo.memory_upper()),
        (0x9fc00 / 1024, (RAM_END - MIB) as u32 / 1024)
    );
    let areas: Vec<_> = mbi
        .memory_map_tag()
        .unwrap()
        .memory_areas()
        .iter()
        .map(|a| (a.start_address(), a.size(), a.typ().val()))
        .collect();
    let expected: Vec<_> = map
        .kernel_view()
        .map(|(start, size, report)| (start, size, report.multiboot2_type()))
        .collect();
    assert_eq!(areas, expected);
    assert!(areas.contains(&(MIB, RAM_END - MIB, MEMORY_AVAILABLE)));
    let park = mbi
        .tags()
        .find(|t| t.header().typ.get() == MULTIBOOT2_TAG_TYPE_PARKBOOT)
        .unwrap();
    let payload = park.payload();
    assert_eq!(
        u64::from_le_bytes(payload[..8].try_into().unwrap()),
        0x3f0_0000
    );
    assert_eq!(
        words(&[1, 3, 7, 0]),
        payload[8..24].to_vec(),
        "version, iteration, iterations, reserved"
    );
    let v2 = mbi.rsdp_v2_tag().unwrap();
    assert_eq!(v2.oem_id(), Ok("PARKBT"));
    assert_eq!(v2.xsdt_address(), 0x3f_e000);
    assert!(v2.checksum_is_valid());

    // Everything was for this boot only.
    map.release_boot();
    assert_eq!(map.reservations().count(), 0);
}

#[test]
fn without_module_or_parked_cpus_the_boot_information_has_neither() {
    let (mut map, mut memory) = machine();
    let image = kernel(0x1000);
    let plan = plan(&image).unwrap();
    let rsdp = rsdp();
    let handoff = Handoff {
        cmdline: "",
        loader_name: "parkboot",
        module: None,
        parkboot: None,
        rsdp: &rsdp,
    };
    let prepared = prepare(&mut map, &mut memory, &image, &plan, &handoff, &mut |_| {}).unwrap();
    assert_eq!(prepared.module, None);
    let info = memory.at(prepared.boot_info, prepared.boot_info_len);
    let mut aligned = vec![0u64; info.len() / 8];
    for (word, bytes) in aligned.iter_mut().zip(info.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().unwrap());
    }
    // SAFETY: as above.
    let mbi = unsafe { multiboot2::BootInformation::load(aligned.as_ptr().cast()) }.unwrap();
    assert_eq!(mbi.module_tags().count(), 0);
    assert!(mbi
        .tags()
        .all(|t| t.header().typ.get() != MULTIBOOT2_TAG_TYPE_PARKBOOT));
}

#[test]
fn a_segment_over_reserved_memory_is_refused_before_anything_is_written() {
    let (mut map, mut memory) = machine();
    map.reserve(
        LOAD_END as u64,
        0x1000,
        "park region",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    let image = kernel(0x1800);
    let plan = plan(&image).unwrap();
    let rsdp = rsdp();
    let handoff = Handoff {
        cmdline: "",
        loader_name: "parkboot",
        module: Some(b"initrd"),
        parkboot: None,
        rsdp: &rsdp,
    };
    let error = prepare(&mut map, &mut memory, &image, &plan, &handoff, &mut |_| {}).unwrap_err();
    assert_eq!(
        error,
        PrepareError::Memory(MemoryError::OverlapsReservation {
            name: SEGMENT_NAME,
            start: LOAD as u64,
            end: BSS_END as u64,
            other: "park region",
            other_start: LOAD_END as u64,
            other_end: BSS_END as u64,
        })
    );
    assert!(memory.bytes.iter().all(|&b| b == 0), "nothing written");
    assert_eq!(map.reservations().count(), 1);
}

#[test]
fn a_plan_for_a_longer_image_and_a_bad_rsdp_are_errors() {
    let (mut map, mut memory) = machine();
    let image = kernel(0x1800);
    let plan = plan(&image).unwrap();
    let rsdp = rsdp();
    let handoff = Handoff {
        cmdline: "",
        loader_name: "parkboot",
        module: None,
        parkboot: None,
        rsdp: &rsdp,
    };
    let error = prepare(
        &mut map,
        &mut memory,
        &image[..0x800],
        &plan,
        &handoff,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(
        error,
        PrepareError::Image(Mb2Error::SegmentPastFile {
            index: 0,
            dest: LOAD as u64,
            end: BSS_END as u64,
            file_offset: 0,
            file_end: 0x1000,
            file_size: 0x800
        })
    );
    map.release_boot();
    let short = Handoff {
        rsdp: &rsdp[..20],
        ..handoff
    };
    let error = prepare(&mut map, &mut memory, &image, &plan, &short, &mut |_| {}).unwrap_err();
    assert!(matches!(
        error,
        PrepareError::BootInfo(Mb2Error::InfoRsdpLength { len: 20, .. })
    ));
    assert!(error
        .to_string()
        .starts_with("building the boot information: "));
}
