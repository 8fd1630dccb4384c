//! A parked CPU's memory is never writable by a kernel: for each hand-off path (the
//! Linux e820 table, the multiboot2 memory map) no range a kernel is given as usable
//! overlaps what parkboot keeps for itself: the park region, the ACPI wakeup mailbox,
//! parkboot's image and page tables, the AP start trampoline, the ACPI copies, the
//! pristine copies of images, a kernel's areas kept because a CPU did not come back.
//! Each of those ranges is reported with the type parkboot asked for (the mailbox and
//! the kernels' ACPI tables as ACPI NVS, the rest reserved).
//!
//! The memory maps are built as `startup.rs`, `parking.rs` and `kernel_tables.rs` (in `src/bare_metal/`) build
//! them (same order, names, sizes, limits and report types), on a QEMU-like (SeaBIOS /
//! PVH) and a coreboot-like platform map, and then on random maps and random
//! reservation sequences.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot::kernels::linux::e820_from_kernel_view;
use parkboot::kernels::multiboot2::InfoBuilder;
use parkboot::memory::paging::{pages_needed, MapOptions};
use parkboot::memory::{
    AllocationRequest, Lifetime, MemoryMap, ReportAs, Reservation, FOUR_GIB, GIB, MIB, ONE_MIB,
    PAGE_SIZE,
};
use parkboot::memory::{MemoryKind, MemoryRegion};
use parkboot::parking::layout::ParkLayout;

/// e820 and multiboot2 "available RAM".
const TYPE_USABLE: u32 = 1;
/// The most entries boot_params holds.
const E820_MAX_ENTRIES: usize = 128;
/// Room for the multiboot2 boot information, as the kexec loop allocates it.
const MBI_BYTES: usize = 16 * 1024;
/// As in `parking.rs` and `kernel_tables.rs`.
const TRAMPOLINE_MIN: u64 = 0x1000;
const KERNEL_TABLES_BYTES: u64 = 64 * 1024;
/// The park code blob is a few pages; its exact size does not matter here.
const PARK_CODE_BYTES: u64 = 3 * PAGE_SIZE;

fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, size, kind }
}

/// QEMU q35 with 2 GiB under SeaBIOS (PVH entry): low RAM, the EBDA and BIOS
/// reserved, RAM from 1 MiB with the BIOS's ACPI tables at its top, RAM above 4 GiB.
fn qemu_map() -> Vec<MemoryRegion> {
    vec![
        region(0, 0x9_fc00, MemoryKind::Usable),
        region(0x9_fc00, 0x400, MemoryKind::Reserved),
        region(0xf_0000, 0x1_0000, MemoryKind::Reserved),
        region(ONE_MIB, 0x7ffd_f000 - ONE_MIB, MemoryKind::Usable),
        region(0x7ffd_f000, 0x2_1000, MemoryKind::Reserved),
        region(0xb000_0000, 0x1000_0000, MemoryKind::Reserved),
        region(FOUR_GIB, GIB, MemoryKind::Usable),
    ]
}

/// QEMU q35 under coreboot: page 0 holds coreboot's table, CBMEM at the top of low
/// RAM (type 16), ACPI reclaimable tables.
fn coreboot_map() -> Vec<MemoryRegion> {
    vec![
        region(0, 0x1000, MemoryKind::CorebootTables),
        region(0x1000, 0x9_f000, MemoryKind::Usable),
        region(0xc_0000, 0x4_0000, MemoryKind::Reserved),
        region(ONE_MIB, 0x3fb0_0000, MemoryKind::Usable),
        region(0x3fc0_0000, 0x30_0000, MemoryKind::CorebootTables),
        region(0x3ff0_0000, 0x8_0000, MemoryKind::AcpiReclaim),
        region(0x3ff8_0000, 0x8_0000, MemoryKind::AcpiNvs),
        region(0xe000_0000, 0x1000_0000, MemoryKind::Reserved),
    ]
}

fn allocate(
    map: &mut MemoryMap,
    size: u64,
    min: u64,
    max: u64,
    name: &'static str,
    report_as: ReportAs,
    lifetime: Lifetime,
) -> u64 {
    map.allocate(AllocationRequest {
        size,
        align: PAGE_SIZE,
        min,
        max,
        name,
        report_as,
        lifetime,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// parkboot's permanent reservations, made as the boot flow makes them, for `cpus`
/// CPUs, a kernel of `kernel_bytes` and an initrd of `initrd_bytes` (pristine copies).
fn boot_like(
    platform: &[MemoryRegion],
    cpus: u64,
    kernel_bytes: u64,
    initrd_bytes: u64,
) -> MemoryMap {
    let mut map = MemoryMap::new(platform).unwrap();
    // startup.rs: the image where the ELF was loaded (1 MiB, ~400 KiB with .bss).
    map.reserve(
        ONE_MIB,
        0x6_3000,
        "parkboot image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    // parking.rs: firmware page tables, then the mailbox, the park region and the
    // trampoline.
    let top = platform
        .iter()
        .map(|r| r.end())
        .max()
        .unwrap()
        .max(FOUR_GIB);
    let pages = pages_needed(
        top,
        MapOptions {
            gigabyte_pages: false,
        },
    ) as u64;
    allocate(
        &mut map,
        (pages + 1) * PAGE_SIZE,
        ONE_MIB,
        FOUR_GIB,
        "firmware page tables",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    allocate(
        &mut map,
        PAGE_SIZE,
        ONE_MIB,
        FOUR_GIB,
        "ACPI wakeup mailbox",
        ReportAs::AcpiNvs,
        Lifetime::Permanent,
    );
    let table_bytes = park::table::table_bytes(cpus as usize) as u64;
    allocate(
        &mut map,
        ParkLayout::size_for(table_bytes, PARK_CODE_BYTES, cpus),
        ONE_MIB,
        FOUR_GIB,
        "park region",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    allocate(
        &mut map,
        PAGE_SIZE,
        TRAMPOLINE_MIN,
        ONE_MIB,
        "AP start trampoline",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    // kernel_tables.rs: the pristine MADT copy, then the kernels' tables (the real
    // function, so its report type is the one boot uses).
    allocate(
        &mut map,
        0x90 + 16 * cpus,
        ONE_MIB,
        FOUR_GIB,
        "pristine copy of the platform's MADT",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    parkboot::platform::acpi::reserve_kernel_tables(&mut map, KERNEL_TABLES_BYTES).unwrap();
    // startup.rs: the self-check's samples, freed before the first kernel.
    allocate(
        &mut map,
        cpus * 64,
        ONE_MIB,
        u64::MAX,
        "self-check samples",
        ReportAs::Usable,
        Lifetime::Boot,
    );
    map.release_boot();
    // kexec_loop: pristine copies of the entry's images.
    allocate(
        &mut map,
        kernel_bytes,
        ONE_MIB,
        u64::MAX,
        "kernel image (pristine copy)",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    allocate(
        &mut map,
        initrd_bytes,
        ONE_MIB,
        u64::MAX,
        "initrd (pristine copy)",
        ReportAs::Reserved,
        Lifetime::Permanent,
    );
    map
}

/// One kernel's load areas, as `kexec_loop/linux.rs` places them: the kernel at 16 MiB,
/// the initrd, command line and boot_params high below 4 GiB.
fn linux_load_areas(map: &mut MemoryMap, kernel_bytes: u64, initrd_bytes: u64) {
    map.reserve(
        16 * MIB,
        kernel_bytes * 3,
        "Linux kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    for (size, name) in [
        (initrd_bytes, "Linux initrd"),
        (4096, "Linux command line"),
        (4096, "Linux boot_params"),
    ] {
        allocate(
            map,
            size,
            ONE_MIB,
            FOUR_GIB,
            name,
            ReportAs::Usable,
            Lifetime::Boot,
        );
    }
}

/// One multiboot2 kernel's load areas, as the kexec loop places them.
fn multiboot2_load_areas(map: &mut MemoryMap, module_bytes: u64) {
    map.reserve(
        2 * MIB,
        2 * MIB,
        "multiboot2 kernel segment",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    allocate(
        map,
        module_bytes,
        ONE_MIB,
        FOUR_GIB,
        "multiboot2 module",
        ReportAs::Usable,
        Lifetime::Boot,
    );
    allocate(
        map,
        MBI_BYTES as u64,
        ONE_MIB,
        FOUR_GIB,
        "multiboot2 boot information",
        ReportAs::Usable,
        Lifetime::Boot,
    );
}

/// What parkboot keeps from kernels: every reservation not handed to the kernel.
fn protected(map: &MemoryMap) -> Vec<Reservation> {
    map.reservations()
        .filter(|r| r.report_as != ReportAs::Usable)
        .copied()
        .collect()
}

/// The e820 table a Linux kernel gets.
fn linux_e820(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
    let mut out = [(0, 0, 0); E820_MAX_ENTRIES];
    let n = e820_from_kernel_view(map.kernel_view(), &mut out).unwrap();
    out[..n].to_vec()
}

/// The memory map a multiboot2 kernel gets, read back with the `multiboot2` crate
/// (a kernel's parser, not parkboot's).
fn multiboot2_map(map: &MemoryMap) -> Vec<(u64, u64, u32)> {
    #[repr(C, align(8))]
    struct Buffer([u8; MBI_BYTES]);
    let mut buf = Buffer([0; MBI_BYTES]);
    let mut info = InfoBuilder::new(&mut buf.0);
    info.loader_name("parkboot test").memory_map(
        map.kernel_view()
            .map(|(start, size, report)| (start, size, report.multiboot2_type())),
    );
    info.finish().unwrap();
    // SAFETY: `buf` is 8-aligned and holds the finished boot information.
    let mbi = unsafe { multiboot2::BootInformation::load(buf.0.as_ptr().cast()) }.unwrap();
    mbi.memory_map_tag()
        .expect("a memory map tag")
        .memory_areas()
        .iter()
        .map(|a| (a.start_address(), a.size(), u32::from(a.typ())))
        .collect()
}

/// Checks what a kernel is given against what parkboot keeps: no usable range
/// overlaps a kept range, and every kept range is covered, byte for byte, by ranges of
/// the type it is reported as. `path` names the hand-off in failures.
fn assert_protected(
    path: &str,
    given: &[(u64, u64, u32)],
    kept: &[Reservation],
    type_of: fn(ReportAs) -> u32,
) {
    assert!(!kept.is_empty());
    for &(start, size, kind) in given {
        let end = start + size;
        if kind != TYPE_USABLE {
            continue;
        }
        for r in kept {
            assert!(
                end <= r.start || r.end() <= start,
                "{path}: usable {start:#x}-{end:#x} overlaps {} {:#x}-{:#x}",
                r.name,
                r.start,
                r.end()
            );
        }
    }
    for r in kept {
        let expected = type_of(r.report_as);
        let mut covered = 0;
        for &(start, size, kind) in given {
            let (lo, hi) = (start.max(r.start), (start + size).min(r.end()));
            if lo < hi {
                assert_eq!(
                    kind,
                    expected,
                    "{path}: {} {:#x}-{:#x} shown as type {kind} at {lo:#x}",
                    r.name,
                    r.start,
                    r.end()
                );
                covered += hi - lo;
            }
        }
        assert_eq!(covered, r.size, "{path}: {} not wholly in the map", r.name);
    }
}

fn assert_both_paths(map: &MemoryMap) {
    let kept = protected(map);
    assert_protected("e820", &linux_e820(map), &kept, ReportAs::e820_type);
    assert_protected(
        "multiboot2",
        &multiboot2_map(map),
        &kept,
        ReportAs::multiboot2_type,
    );
}

fn names(map: &MemoryMap) -> Vec<&'static str> {
    protected(map).iter().map(|r| r.name).collect()
}

#[test]
fn linux_e820_and_multiboot2_maps_keep_parkboot_memory_from_kernels() {
    for (platform, what) in [(qemu_map(), "qemu"), (coreboot_map(), "coreboot")] {
        let mut map = boot_like(&platform, 4, 12 * MIB, 40 * MIB);
        for name in [
            "parkboot image",
            "firmware page tables",
            "ACPI wakeup mailbox",
            "park region",
            "AP start trampoline",
            "pristine copy of the platform's MADT",
            "kernels' ACPI tables",
            "kernel image (pristine copy)",
            "initrd (pristine copy)",
        ] {
            assert!(
                names(&map).contains(&name),
                "{what}: no {name}: {:?}",
                names(&map)
            );
        }
        let e820 = linux_e820(&map);
        let mailbox = protected(&map)
            .into_iter()
            .find(|r| r.name == "ACPI wakeup mailbox")
            .unwrap();
        assert!(
            e820.iter()
                .any(|&(s, n, t)| s <= mailbox.start && mailbox.end() <= s + n && t == 4),
            "{what}: the mailbox must be ACPI NVS: {e820:x?}"
        );
        // Before any kernel, with a Linux kernel's areas, after it, with a multiboot2
        // kernel's: every map a kernel can be given.
        assert_both_paths(&map);
        linux_load_areas(&mut map, 12 * MIB, 40 * MIB);
        assert_both_paths(&map);
        map.release_boot();
        multiboot2_load_areas(&mut map, MIB);
        assert_both_paths(&map);
        // A CPU did not come back: that kernel's areas are parkboot's for good.
        let before = map.parkboot_bytes();
        map.keep_boot_reservations();
        assert!(map.parkboot_bytes() > before);
        assert!(names(&map).contains(&"multiboot2 module"));
        map.release_boot();
        linux_load_areas(&mut map, 12 * MIB, 40 * MIB);
        assert_both_paths(&map);
    }
}

#[test]
fn parkboot_memory_is_the_same_in_every_iteration() {
    let mut map = boot_like(&qemu_map(), 4, 12 * MIB, 40 * MIB);
    let mut figures = Vec::new();
    for _ in 0..1000 {
        map.release_boot();
        multiboot2_load_areas(&mut map, MIB);
        figures.push(map.parkboot_bytes());
    }
    assert!(
        figures.iter().all(|&f| f == figures[0]),
        "{:?}",
        &figures[..4]
    );
    assert!(
        figures[0] > 52 * MIB,
        "the pristine copies count: {}",
        figures[0]
    );
}

/// xorshift64*: a reproducible stream of test numbers.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KINDS: [MemoryKind; 7] = [
    MemoryKind::Usable,
    MemoryKind::Usable,
    MemoryKind::Reserved,
    MemoryKind::AcpiReclaim,
    MemoryKind::AcpiNvs,
    MemoryKind::CorebootTables,
    MemoryKind::Unusable,
];
const REPORTS: [ReportAs; 4] = [
    ReportAs::Usable,
    ReportAs::Reserved,
    ReportAs::AcpiNvs,
    ReportAs::Usable,
];

#[test]
fn random_maps_and_reservations_never_show_kept_memory_as_usable() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        // Overlapping, unsorted platform ranges of every kind, some unaligned.
        let regions: Vec<MemoryRegion> = (0..1 + random.below(12))
            .map(|_| {
                let start = random.below(64) * MIB + random.below(4) * 0x400;
                let size = (1 + random.below(32)) * MIB - random.below(2) * 0x400;
                region(
                    start,
                    size,
                    KINDS[random.below(KINDS.len() as u64) as usize],
                )
            })
            .collect();
        let mut map = MemoryMap::new(&regions).unwrap();
        for _ in 0..random.below(24) {
            let report = REPORTS[random.below(REPORTS.len() as u64) as usize];
            let lifetime = if random.below(2) == 0 {
                Lifetime::Boot
            } else {
                Lifetime::Permanent
            };
            let size = 1 + random.below(3 * MIB);
            if random.below(2) == 0 {
                let _ = map.allocate(AllocationRequest {
                    size,
                    align: PAGE_SIZE,
                    min: 0,
                    max: u64::MAX,
                    name: "random",
                    report_as: report,
                    lifetime,
                });
            } else {
                let _ = map.reserve(random.below(96 * MIB), size, "random", report, lifetime);
            }
            match random.below(8) {
                0 => map.release_boot(),
                1 => {
                    map.keep_boot_reservations();
                }
                _ => {}
            }
        }
        if protected(&map).is_empty() {
            continue;
        }
        assert_both_paths(&map);
    }
}
