use super::*;
extern crate std;
use std::string::ToString;
use std::vec::Vec as StdVec;

fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, size, kind }
}

fn ram(start: u64, size: u64) -> MemoryRegion {
    region(start, size, MemoryKind::Usable)
}

/// A small PC-like map: low RAM, a reserved BIOS area, RAM from 1 MiB to 2 GiB,
/// ACPI tables, CBMEM, and RAM above 4 GiB.
fn pc_map() -> MemoryMap {
    MemoryMap::new(&[
        region(0x100000, 2 * GIB - MIB, MemoryKind::Usable),
        region(0, 0xa0000, MemoryKind::Usable),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        region(2 * GIB, MIB, MemoryKind::AcpiReclaim),
        region(2 * GIB + MIB, MIB, MemoryKind::CorebootTables),
        region(4 * GIB, 4 * GIB, MemoryKind::Usable),
    ])
    .unwrap()
}

fn view(map: &MemoryMap) -> StdVec<(u64, u64, ReportAs)> {
    map.kernel_view().collect()
}

#[test]
fn release_frees_one_named_reservation_and_parkboot_bytes_counts_what_kernels_lose() {
    let mut map = pc_map();
    map.reserve(
        16 * MIB,
        MIB,
        "image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        18 * MIB,
        2 * MIB,
        "copy",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        24 * MIB,
        PAGE_SIZE,
        "mailbox",
        ReportAs::AcpiNvs,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        32 * MIB,
        8 * MIB,
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    assert_eq!(map.parkboot_bytes(), 3 * MIB + PAGE_SIZE);
    // Wrong name or wrong start: nothing is freed.
    assert_eq!(map.release(18 * MIB, "image"), None);
    assert_eq!(map.release(18 * MIB + 1, "copy"), None);
    assert_eq!(map.parkboot_bytes(), 3 * MIB + PAGE_SIZE);
    let freed = map.release(18 * MIB, "copy").unwrap();
    assert_eq!((freed.start, freed.size), (18 * MIB, 2 * MIB));
    assert_eq!(map.parkboot_bytes(), MIB + PAGE_SIZE);
    assert!(map.is_free(18 * MIB, 2 * MIB));
    assert_eq!(map.release(18 * MIB, "copy"), None);
    // A kernel kept for good (a CPU did not come back) becomes parkboot's to keep.
    map.keep_boot_reservations();
    assert_eq!(map.parkboot_bytes(), 9 * MIB + PAGE_SIZE);
}

#[test]
fn kept_boot_reservations_survive_release_and_are_reserved_for_kernels() {
    let mut map = pc_map();
    map.reserve(16 * MIB, MIB, "kernel", ReportAs::Usable, Lifetime::Boot)
        .unwrap();
    map.reserve(
        32 * MIB,
        MIB,
        "park",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    assert_eq!(map.keep_boot_reservations(), 1);
    map.release_boot();
    assert!(!map.is_free(16 * MIB, PAGE_SIZE));
    let kept = map.reservations().find(|r| r.name == "kernel").unwrap();
    assert_eq!(kept.lifetime, Lifetime::Permanent);
    assert!(view(&map).contains(&(16 * MIB, MIB, ReportAs::Reserved)));
    // Nothing left to keep the second time.
    assert_eq!(map.keep_boot_reservations(), 0);
}

#[test]
fn ram_is_only_usable_platform_memory() {
    let map = pc_map();
    assert!(map.is_ram(16 * MIB, 120));
    assert!(map.is_ram(0x1000, 0x1000));
    assert!(!map.is_ram(0, 0), "empty");
    assert!(!map.is_ram(0xa0000 - 8, 16), "runs past low RAM");
    assert!(!map.is_ram(0xf0000, 8), "reserved");
    assert!(!map.is_ram(2 * GIB, 8), "ACPI");
    assert!(!map.is_ram(3 * GIB, 8), "hole");
    assert!(!map.is_ram(1 << 45, 120), "beyond RAM");
    assert!(!map.is_ram(u64::MAX - 8, 120), "wraps");
    assert!(map.is_ram(5 * GIB, 120));
}

#[test]
fn type_numbers() {
    assert_eq!(ReportAs::Usable.e820_type(), 1);
    assert_eq!(ReportAs::Reserved.e820_type(), 2);
    assert_eq!(ReportAs::AcpiReclaim.e820_type(), 3);
    assert_eq!(ReportAs::AcpiNvs.e820_type(), 4);
    assert_eq!(ReportAs::Usable.multiboot2_type(), 1);
    assert_eq!(ReportAs::Reserved.multiboot2_type(), 2);
    assert_eq!(ReportAs::AcpiReclaim.multiboot2_type(), 3);
    assert_eq!(ReportAs::AcpiNvs.multiboot2_type(), 4);
}

#[test]
fn sorts_and_merges_adjacent_same_kind() {
    let map = MemoryMap::new(&[
        ram(0x200000, 0x100000),
        ram(0, 0x100000),
        ram(0x100000, 0x100000),
        region(0x300000, 0x1000, MemoryKind::Reserved),
        region(0x301000, 0x1000, MemoryKind::Reserved),
        ram(0x400000, 0),
    ])
    .unwrap();
    assert_eq!(
        map.platform_regions(),
        &[
            ram(0, 0x300000),
            region(0x300000, 0x2000, MemoryKind::Reserved),
        ]
    );
}

#[test]
fn different_kinds_do_not_merge() {
    let map = MemoryMap::new(&[
        region(0x1000, 0x1000, MemoryKind::Reserved),
        region(0x2000, 0x1000, MemoryKind::AcpiNvs),
    ])
    .unwrap();
    assert_eq!(map.platform_regions().len(), 2);
}

#[test]
fn reserved_wins_over_usable_in_overlaps() {
    // Reserved range in the middle of RAM, given before and after the RAM.
    for order in [false, true] {
        let ram_range = ram(0, 0x10_0000);
        let hole = region(0x8_0000, 0x1_0000, MemoryKind::Reserved);
        let input = if order {
            [ram_range, hole]
        } else {
            [hole, ram_range]
        };
        let map = MemoryMap::new(&input).unwrap();
        assert_eq!(
            map.platform_regions(),
            &[
                ram(0, 0x8_0000),
                region(0x8_0000, 0x1_0000, MemoryKind::Reserved),
                ram(0x9_0000, 0x7_0000),
            ]
        );
    }
}

#[test]
fn partial_overlaps_and_precedence() {
    let map = MemoryMap::new(&[
        ram(0, 0x4000),
        region(0x3000, 0x2000, MemoryKind::AcpiReclaim),
        region(0x4000, 0x2000, MemoryKind::AcpiNvs),
        ram(0x5000, 0x3000),
    ])
    .unwrap();
    assert_eq!(
        map.platform_regions(),
        &[
            ram(0, 0x3000),
            region(0x3000, 0x1000, MemoryKind::AcpiReclaim),
            region(0x4000, 0x2000, MemoryKind::AcpiNvs),
            ram(0x6000, 0x2000),
        ]
    );
    // Unusable beats everything, reclaimable loses to reserved.
    let map = MemoryMap::new(&[
        region(0, 0x2000, MemoryKind::Reserved),
        region(0, 0x1000, MemoryKind::AcpiReclaim),
        region(0x1000, 0x1000, MemoryKind::Unusable),
    ])
    .unwrap();
    assert_eq!(
        map.platform_regions(),
        &[
            region(0, 0x1000, MemoryKind::Reserved),
            region(0x1000, 0x1000, MemoryKind::Unusable),
        ]
    );
}

#[test]
fn range_running_past_top_is_clipped() {
    let map = MemoryMap::new(&[ram(u64::MAX - 0xfff, 0x2000)]).unwrap();
    assert_eq!(map.platform_regions(), &[ram(u64::MAX - 0xfff, 0xfff)]);
}

#[test]
fn too_many_platform_ranges() {
    let input: StdVec<_> = (0..=MAX_PLATFORM_RANGES as u64)
        .map(|i| {
            let kind = if i % 2 == 0 {
                MemoryKind::Usable
            } else {
                MemoryKind::Reserved
            };
            region(i * 0x1000, 0x1000, kind)
        })
        .collect();
    assert_eq!(
        MemoryMap::new(&input).unwrap_err(),
        MemoryError::TooManyPlatformRanges
    );
    // The same count of ranges that merge is fine.
    let input: StdVec<_> = (0..=MAX_PLATFORM_RANGES as u64 * 2)
        .map(|i| ram(i * 0x1000, 0x1000))
        .collect();
    assert_eq!(MemoryMap::new(&input).unwrap().platform_regions().len(), 1);
}

#[test]
fn reserve_and_conflict_with_reservation() {
    let mut map = pc_map();
    map.reserve(
        0x100000,
        0x40000,
        "payload image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    let err = map
        .reserve(
            0x100000,
            0x4000,
            "park region",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot reserve park region 0x100000-0x104000: overlaps payload image 0x100000-0x140000"
    );
    // Touching is not overlapping.
    map.reserve(
        0x140000,
        0x4000,
        "park region",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(0x9f000, 0x1000, "below", ReportAs::Reserved, Lifetime::Boot)
        .unwrap();
    let starts: StdVec<u64> = map.reservations().map(|r| r.start).collect();
    assert_eq!(starts, [0x9f000, 0x100000, 0x140000]);
}

#[test]
fn reserve_conflict_with_platform_reserved() {
    let mut map = pc_map();
    let err = map
        .reserve(
            0xef000,
            0x2000,
            "mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryError::OutsideRam {
            hole_start: 0xef000,
            hole_end: 0xf0000,
            ..
        }
    ));
    let err = map
        .reserve(
            0xf8000,
            0x10000,
            "mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .unwrap_err();
    assert_eq!(
        err,
        MemoryError::NotUsableRam {
            name: "mailbox",
            start: 0xf8000,
            end: 0x108000,
            kind: MemoryKind::Reserved,
            region_start: 0xf0000,
            region_end: 0x100000,
        }
    );
    assert_eq!(
            err.to_string(),
            "cannot reserve mailbox 0xf8000-0x108000: overlaps firmware-reserved memory 0xf0000-0x100000"
        );
    // Running from RAM into ACPI tables.
    let err = map
        .reserve(
            2 * GIB - 0x1000,
            0x2000,
            "x",
            ReportAs::Reserved,
            Lifetime::Boot,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryError::NotUsableRam {
            kind: MemoryKind::AcpiReclaim,
            ..
        }
    ));
    assert!(map.reservations().next().is_none());
}

#[test]
fn reserve_outside_ram() {
    let mut map = pc_map();
    // Entirely in the hole between 2 GiB + 2 MiB and 4 GiB.
    let err = map
        .reserve(3 * GIB, MIB, "kernel", ReportAs::Usable, Lifetime::Boot)
        .unwrap_err();
    assert_eq!(
        err,
        MemoryError::OutsideRam {
            name: "kernel",
            start: 3 * GIB,
            end: 3 * GIB + MIB,
            hole_start: 3 * GIB,
            hole_end: 3 * GIB + MIB,
        }
    );
    // Past the end of RAM.
    let err = map
        .reserve(
            8 * GIB - 0x1000,
            0x2000,
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryError::OutsideRam {
            hole_start,
            hole_end,
            ..
        } if hole_start == 8 * GIB && hole_end == 8 * GIB + 0x1000
    ));
    // Straddling the hole from the top of a usable range.
    let err = map
        .reserve(0x9f000, 0x2000, "kernel", ReportAs::Usable, Lifetime::Boot)
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemoryError::OutsideRam {
                hole_start: 0xa0000,
                hole_end: 0xa1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("is not RAM"));
}

#[test]
fn zero_size_refused() {
    let mut map = pc_map();
    assert_eq!(
        map.reserve(0x1000, 0, "x", ReportAs::Reserved, Lifetime::Boot),
        Err(MemoryError::ZeroSize { name: "x" })
    );
    assert_eq!(
        map.allocate(AllocationRequest {
            size: 0,
            align: PAGE_SIZE,
            min: 0,
            max: u64::MAX,
            name: "y",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::ZeroSize { name: "y" })
    );
    assert!(!map.is_free(0x1000, 0));
}

#[test]
fn top_of_address_space_does_not_panic() {
    // The last page's end is 2^64, which does not fit: the map keeps [.., u64::MAX).
    let base = u64::MAX - 0xffff;
    let mut map = MemoryMap::new(&[ram(base, 0x1_0000)]).unwrap();
    assert_eq!(map.platform_regions(), &[ram(base, 0xffff)]);
    assert!(matches!(
        map.reserve(
            u64::MAX - 0xfff,
            0x2000,
            "x",
            ReportAs::Reserved,
            Lifetime::Boot
        ),
        Err(MemoryError::AddressOverflow { .. })
    ));
    assert!(!map.is_free(u64::MAX, u64::MAX));
    // Sizes that overflow when rounded up to a page.
    assert!(matches!(
        map.allocate(AllocationRequest {
            size: u64::MAX,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "x",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    assert!(matches!(
        map.allocate(AllocationRequest {
            size: u64::MAX - 0x10,
            align: PAGE_SIZE,
            min: 0,
            max: u64::MAX,
            name: "x",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    // Huge alignment: only address 0 qualifies, which is not RAM here.
    assert!(matches!(
        map.allocate(AllocationRequest {
            size: 1,
            align: 1 << 63,
            min: 0,
            max: u64::MAX,
            name: "x",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    assert_eq!(map.largest_free_below(u64::MAX), Some((base, 0xf000)));
    // The highest whole page lies below the cut-off last page.
    let at = map
        .allocate(AllocationRequest {
            size: 1,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "top",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(at, u64::MAX - 0x1fff);
    assert_eq!(
        view(&map),
        [
            (base, 0xe000, ReportAs::Usable),
            (at, PAGE_SIZE, ReportAs::Reserved),
            (at + PAGE_SIZE, 0xfff, ReportAs::Usable),
        ]
    );
}

#[test]
fn allocate_highest_fit_with_alignment() {
    let mut map = pc_map();
    // Highest overall: top of RAM above 4 GiB.
    let a = map
        .allocate(AllocationRequest {
            size: MIB,
            align: 2 * MIB,
            min: 0,
            max: u64::MAX,
            name: "a",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(a, 8 * GIB - 2 * MIB);
    // Below 4 GiB: top of the RAM ending at 2 GiB.
    let b = map
        .allocate(AllocationRequest {
            size: 16 * MIB,
            align: 2 * MIB,
            min: 0,
            max: 4 * GIB,
            name: "kernel",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(b, 2 * GIB - 16 * MIB);
    // Size rounded up to a page, alignment raised to a page.
    let c = map
        .allocate(AllocationRequest {
            size: 10,
            align: 1,
            min: 0,
            max: 4 * GIB,
            name: "c",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(c, 2 * GIB - 16 * MIB - PAGE_SIZE);
    let res = map.reservations().find(|r| r.name == "c").unwrap();
    assert_eq!(res.size, PAGE_SIZE);
    // Alignment skips down past the odd page.
    let d = map
        .allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: MIB,
            min: 0,
            max: 4 * GIB,
            name: "d",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(d, 2 * GIB - 17 * MIB);
    // A maximum that cuts a range: the result ends at or below it.
    let e = map
        .allocate(AllocationRequest {
            size: 0x3000,
            align: PAGE_SIZE,
            min: 0,
            max: 0x90800,
            name: "e",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(e, 0x8d000);
    // A minimum: nothing fits in [1 GiB, 1 GiB + 1 MiB) once it is taken.
    let f = map
        .allocate(AllocationRequest {
            size: MIB,
            align: PAGE_SIZE,
            min: GIB,
            max: GIB + MIB,
            name: "f",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(f, GIB);
    assert!(map
        .allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: PAGE_SIZE,
            min: GIB,
            max: GIB + MIB,
            name: "g",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        })
        .is_err());
    // Never lands in the reserved BIOS area, the ACPI tables or the hole.
    for r in map.reservations() {
        assert!(map
            .platform_regions()
            .iter()
            .any(|p| p.kind.is_usable() && p.start <= r.start && r.end() <= p.end()));
    }
}

#[test]
fn allocate_fills_gaps_between_reservations() {
    let mut map = MemoryMap::new(&[ram(0, 0x10_0000)]).unwrap();
    map.reserve(
        0xf_0000,
        0x1_0000,
        "top",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        0xe_0000,
        0xf000,
        "mid",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    // The one free page between the two.
    let a = map
        .allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: PAGE_SIZE,
            min: 0,
            max: u64::MAX,
            name: "a",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(a, 0xe_f000);
    // Two pages do not fit there; the next gap is below "mid".
    let b = map
        .allocate(AllocationRequest {
            size: 2 * PAGE_SIZE,
            align: PAGE_SIZE,
            min: 0,
            max: u64::MAX,
            name: "b",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(b, 0xd_e000);
}

#[test]
fn allocate_exhaustion_error() {
    let mut map = pc_map();
    let err = map
        .allocate(AllocationRequest {
            size: 16 * MIB,
            align: 2 * MIB,
            min: 0,
            max: 4 * MIB,
            name: "kernel",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free 16 MiB below 4 MiB, aligned to 2 MiB, for kernel"
    );
    let err = map
        .allocate(AllocationRequest {
            size: 16 * GIB,
            align: 2 * MIB,
            min: 0,
            max: 4 * GIB,
            name: "kernel",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free 16 GiB below 4 GiB, aligned to 2 MiB, for kernel"
    );
    // Only the BIOS area and a hole lie between 640 KiB and 1 MiB.
    let err = map
        .allocate(AllocationRequest {
            size: 0x1801,
            align: 1,
            min: 0xa0000,
            max: MIB,
            name: "x",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free 0x1801 bytes between 640 KiB and 1 MiB, aligned to 4 KiB, for x"
    );
    let err = map
        .allocate(AllocationRequest {
            size: 5 * GIB,
            align: 1,
            min: MIB,
            max: u64::MAX,
            name: "initrd",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free 5 GiB above 1 MiB, aligned to 4 KiB, for initrd"
    );
    // Empty and inverted windows.
    assert!(matches!(
        map.allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: 1,
            min: 4 * GIB,
            max: 4 * GIB,
            name: "x",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    assert!(matches!(
        map.allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: 1,
            min: 5 * GIB,
            max: 4 * GIB,
            name: "x",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    // Exhaust a small map page by page.
    let mut small = MemoryMap::new(&[ram(0x1000, 0x3000)]).unwrap();
    for _ in 0..3 {
        small
            .allocate(AllocationRequest {
                size: 1,
                align: 1,
                min: 0,
                max: u64::MAX,
                name: "p",
                report_as: ReportAs::Reserved,
                lifetime: Lifetime::Boot,
            })
            .unwrap();
    }
    assert!(matches!(
        small.allocate(AllocationRequest {
            size: 1,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "p",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::NoSpace { .. })
    ));
    assert_eq!(small.total_free(), 0);
}

#[test]
fn bad_alignment_refused() {
    let mut map = pc_map();
    for align in [0, 3, 0x1800] {
        assert_eq!(
            map.allocate(AllocationRequest {
                size: PAGE_SIZE,
                align,
                min: 0,
                max: u64::MAX,
                name: "x",
                report_as: ReportAs::Usable,
                lifetime: Lifetime::Boot
            }),
            Err(MemoryError::BadAlignment { name: "x", align })
        );
    }
}

#[test]
fn reservation_slots_run_out() {
    let mut map = MemoryMap::new(&[ram(0, GIB)]).unwrap();
    for _ in 0..MAX_RESERVATIONS {
        map.allocate(AllocationRequest {
            size: 1,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "p",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    }
    assert_eq!(
        map.allocate(AllocationRequest {
            size: 1,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "q",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Boot
        }),
        Err(MemoryError::TooManyReservations { name: "q" })
    );
    assert_eq!(
        map.reserve(0, 1, "r", ReportAs::Reserved, Lifetime::Boot),
        Err(MemoryError::TooManyReservations { name: "r" })
    );
}

#[test]
fn release_boot_frees_only_boot_lifetime() {
    let mut map = pc_map();
    map.reserve(
        0x100000,
        0x40000,
        "payload image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        0x9f000,
        0x1000,
        "mailbox",
        ReportAs::AcpiNvs,
        Lifetime::Permanent,
    )
    .unwrap();
    let k = map
        .allocate(AllocationRequest {
            size: 16 * MIB,
            align: 2 * MIB,
            min: 0,
            max: 4 * GIB,
            name: "kernel",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    map.reserve(
        0x200000,
        0x1000,
        "boot params",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    assert!(!map.is_free(k, 16 * MIB));
    assert_eq!(map.reservations().count(), 4);
    map.release_boot();
    let names: StdVec<&str> = map.reservations().map(|r| r.name).collect();
    assert_eq!(names, ["mailbox", "payload image"]);
    assert!(map.is_free(k, 16 * MIB));
    assert!(map.is_free(0x200000, 0x1000));
    assert!(!map.is_free(0x100000, 1));
    // The next kernel gets the same place.
    let k2 = map
        .allocate(AllocationRequest {
            size: 16 * MIB,
            align: 2 * MIB,
            min: 0,
            max: 4 * GIB,
            name: "kernel",
            report_as: ReportAs::Usable,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
    assert_eq!(k, k2);
}

#[test]
fn kernel_view_cuts_reservations_out() {
    let mut map = pc_map();
    map.reserve(
        0x9f000,
        0x1000,
        "mailbox",
        ReportAs::AcpiNvs,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        0x100000,
        0x40000,
        "payload image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    // Touches the payload image: merges with it in the view.
    map.reserve(
        0x140000,
        0x4000,
        "park region",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    map.reserve(
        0x1000000,
        0x800000,
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    // At the very top of the RAM below 2 GiB, right under the ACPI tables.
    map.reserve(
        2 * GIB - 0x10000,
        0x10000,
        "acpi copy",
        ReportAs::AcpiReclaim,
        Lifetime::Permanent,
    )
    .unwrap();
    // At the very start of the RAM above 4 GiB.
    map.reserve(
        4 * GIB,
        0x2000,
        "page tables",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    assert_eq!(
        view(&map),
        [
            (0, 0x9f000, ReportAs::Usable),
            (0x9f000, 0x1000, ReportAs::AcpiNvs),
            // The BIOS area (platform Reserved), payload image and park region touch
            // and are all shown as Reserved: one range.
            (0xf0000, 0x54000, ReportAs::Reserved),
            // The kernel's load area is Usable to the kernel: merged with its
            // surroundings.
            (0x144000, 2 * GIB - 0x10000 - 0x144000, ReportAs::Usable),
            // The ACPI copy touches the platform's ACPI tables.
            (2 * GIB - 0x10000, 0x10000 + MIB, ReportAs::AcpiReclaim),
            (2 * GIB + MIB, MIB, ReportAs::Reserved),
            (4 * GIB, 0x2000, ReportAs::Reserved),
            (4 * GIB + 0x2000, 4 * GIB - 0x2000, ReportAs::Usable),
        ]
    );
}

#[test]
fn kernel_view_maps_platform_kinds() {
    let map = MemoryMap::new(&[
        ram(0, 0x1000),
        region(0x1000, 0x1000, MemoryKind::Unusable),
        region(0x3000, 0x1000, MemoryKind::Other(20)),
        region(0x5000, 0x1000, MemoryKind::AcpiNvs),
        region(0x6000, 0x1000, MemoryKind::CorebootTables),
    ])
    .unwrap();
    assert_eq!(
        view(&map),
        [
            (0, 0x1000, ReportAs::Usable),
            (0x1000, 0x1000, ReportAs::Reserved),
            (0x3000, 0x1000, ReportAs::Reserved),
            (0x5000, 0x1000, ReportAs::AcpiNvs),
            (0x6000, 0x1000, ReportAs::Reserved),
        ]
    );
}

#[test]
fn kernel_view_is_sorted_disjoint_and_covers_the_platform_map() {
    let mut map = pc_map();
    let mut reserved_total = 0;
    for (i, size) in [0x3000u64, MIB, 5 * MIB, 0x1000, 3 * GIB]
        .iter()
        .enumerate()
    {
        let report = if i % 2 == 0 {
            ReportAs::Reserved
        } else {
            ReportAs::AcpiReclaim
        };
        map.allocate(AllocationRequest {
            size: *size,
            align: 1,
            min: 0,
            max: u64::MAX,
            name: "x",
            report_as: report,
            lifetime: Lifetime::Boot,
        })
        .unwrap();
        reserved_total += size;
    }
    let v = view(&map);
    for pair in v.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.0 + a.1 <= b.0, "{v:x?}");
        assert!(!(a.0 + a.1 == b.0 && a.2 == b.2), "unmerged {v:x?}");
    }
    let covered: u64 = v.iter().map(|x| x.1).sum();
    let platform: u64 = map.platform_regions().iter().map(|r| r.size).sum();
    assert_eq!(covered, platform);
    let usable: u64 = v
        .iter()
        .filter(|x| x.2 == ReportAs::Usable)
        .map(|x| x.1)
        .sum();
    assert_eq!(usable, map.total_usable() - reserved_total);
    assert_eq!(map.total_free(), usable);
}

#[test]
fn largest_free_below_limit() {
    let mut map = pc_map();
    assert_eq!(map.largest_free_below(4 * GIB), Some((MIB, 2 * GIB - MIB)));
    assert_eq!(map.largest_free_below(MIB), Some((0, 0xa0000)));
    assert_eq!(map.largest_free_below(0x800), None);
    map.reserve(GIB, 0x800, "split", ReportAs::Reserved, Lifetime::Boot)
        .unwrap();
    // The free part after the unaligned reservation starts on the next page.
    assert_eq!(
        map.largest_free_below(4 * GIB),
        Some((GIB + PAGE_SIZE, GIB - PAGE_SIZE))
    );
    assert_eq!(map.largest_free_below(u64::MAX), Some((4 * GIB, 4 * GIB)));
}

#[test]
fn is_free_checks() {
    let mut map = pc_map();
    assert!(map.is_free(0, 0xa0000));
    assert!(!map.is_free(0, 0xa0001));
    assert!(!map.is_free(0xf0000, 1));
    map.reserve(0x1000, 0x1000, "x", ReportAs::Reserved, Lifetime::Boot)
        .unwrap();
    assert!(!map.is_free(0x1fff, 1));
    assert!(map.is_free(0x2000, 1));
}
