//! Where the kernel and the initrd go in memory.

use super::*;

#[test]
fn kernel_goes_to_pref_address_when_free() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let map = pc_map();
    assert_eq!(place_kernel(&k, &map), Ok(0x100_0000));
    // Not relocatable, same result.
    let t = TestImage {
        relocatable: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert_eq!(place_kernel(&parse(&bytes).unwrap(), &map), Ok(0x100_0000));
}

#[test]
fn relocatable_kernel_moves_when_pref_address_is_taken() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let mut map = pc_map();
    reserve(&mut map, 0x180_0000, 0x10_0001, "park region");
    // Lowest 2 MiB-aligned address above the reservation (which ends at
    // 0x1900001).
    let at = place_kernel(&k, &map).unwrap();
    assert_eq!(at, 0x1a0_0000);
    assert!(at.is_multiple_of(k.kernel_alignment));
    assert!(map.is_free(at, k.memory_size()));
    map.reserve(
        at,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();

    // A 16 MiB alignment.
    let t = TestImage {
        kernel_alignment: 0x100_0000,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k16 = parse(&bytes).unwrap();
    // The kernel above ends at 0x3e00000.
    assert_eq!(place_kernel(&k16, &map), Ok(0x400_0000));

    // An unaligned pref_address is not used for a relocatable kernel.
    let t = TestImage {
        pref_address: 0x4000_1000,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert_eq!(
        place_kernel(&parse(&bytes).unwrap(), &pc_map()),
        Ok(0x100_0000)
    );
}

#[test]
fn relocated_kernel_falls_back_below_16_mib() {
    // RAM up to 32 MiB, the upper half taken: only 1-16 MiB is left.
    let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 31 * MIB)]).unwrap();
    reserve(&mut map, 16 * MIB, 16 * MIB, "payload");
    let t = TestImage {
        init_size: 0x40_0000,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_kernel(&k, &map), Ok(2 * MIB));
    // A kernel bigger than what is left.
    let err = place_kernel(&parse(&image()).unwrap(), &map).unwrap_err();
    assert_eq!(
        err,
        LinuxError::NoSpaceForKernel {
            size: 0x240_0000,
            alignment: 0x20_0000
        }
    );
    assert_eq!(
            err.to_string(),
            "no free 0x2400000 bytes aligned to 0x200000 for the kernel between 0x100000 and 0x100000000"
        );
}

#[test]
fn relocated_kernel_stays_below_4_gib() {
    let mut map = pc_map();
    reserve(&mut map, MIB, 2 * GIB - MIB, "everything low");
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert!(matches!(
        place_kernel(&k, &map),
        Err(LinuxError::NoSpaceForKernel { .. })
    ));
}

#[test]
fn non_relocatable_kernel_names_the_conflict() {
    let t = TestImage {
        relocatable: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();

    let mut map = pc_map();
    reserve(&mut map, 0x200_0000, 0x10_0000, "park region");
    reserve(&mut map, 0x300_0000, 0x10_0000, "ACPI copy");
    let err = place_kernel(&k, &map).unwrap_err();
    assert_eq!(
            err.to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap park region 0x2000000-0x2100000 and it is not relocatable"
        );

    // Firmware memory in the way.
    let map = MemoryMap::new(&[
        ram(MIB, 31 * MIB),
        region(32 * MIB, MIB, MemoryKind::AcpiNvs),
        ram(33 * MIB, GIB),
    ])
    .unwrap();
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap ACPI NVS memory 0x2000000-0x2100000 and it is not relocatable"
        );

    // A hole in the map.
    let map = MemoryMap::new(&[ram(MIB, 31 * MIB), ram(40 * MIB, GIB)]).unwrap();
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap a hole in the memory map 0x2000000-0x2800000 and it is not relocatable"
        );

    // No pref_address: the traditional bzImage address.
    let t = TestImage {
        relocatable: 0,
        pref_address: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_kernel(&k, &pc_map()), Ok(0x10_0000));
    let mut map = pc_map();
    reserve(&mut map, 0x10_0000, 0x4_0000, "payload image");
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x100000 (the default bzImage load address), which overlap payload image 0x100000-0x140000 and it is not relocatable"
        );

    // A range running off the end of the address space.
    let t = TestImage {
        relocatable: 0,
        pref_address: u64::MAX - 0xfff,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert!(matches!(
        place_kernel(&parse(&bytes).unwrap(), &pc_map()),
        Err(LinuxError::NotRelocatable {
            conflict: Conflict {
                what: "the end of the address space",
                ..
            },
            ..
        })
    ));
}

#[test]
fn initrd_goes_high_below_initrd_addr_max() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    let mut map = pc_map();
    map.reserve(
        0x100_0000,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    // The top of the RAM below 2 GiB, not above 4 GiB.
    let size = 30 * MIB + 123;
    let at = place_initrd(&k, size, &map).unwrap();
    // Rounded up to whole pages.
    assert_eq!(at, 2 * GIB - 30 * MIB - PAGE_SIZE);
    assert!(at.is_multiple_of(PAGE_SIZE));
    assert!(map.is_free(at, size));

    // A lower initrd_addr_max: the initrd's last byte may be exactly at it.
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        initrd_addr_max: 0x37ff_ffff,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_initrd(&k, 0x2_0000, &map), Ok(0x37fe_0000));
    // Sizes that are not whole pages end below the limit too.
    assert_eq!(place_initrd(&k, 0x2_0001, &map), Ok(0x37fd_f000));
}

#[test]
fn initrd_goes_above_4_gib_only_with_the_flag() {
    let map = pc_map();
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert!(k.can_load_initrd_above_4g);
    assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(8 * GIB - 64 * MIB));
    // Bigger than anything below 4 GiB.
    assert_eq!(place_initrd(&k, 3 * GIB, &map), Ok(5 * GIB));

    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(2 * GIB - 64 * MIB));
    let err = place_initrd(&k, 3 * GIB, &map).unwrap_err();
    assert_eq!(
        err,
        LinuxError::InitrdTooBig {
            size: 3 * GIB,
            limit: 0x8000_0000,
            largest: 2 * GIB - MIB
        }
    );
    assert_eq!(
        err.to_string(),
        "initrd of 3072 MiB does not fit below 0x80000000 (largest free range 2047 MiB)"
    );
}

#[test]
fn initrd_errors() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    // 64 MiB of RAM; the kernel takes 16-52 MiB, leaving 15 MiB below it and 12 MiB
    // above, less a reservation that cuts the lower part to 14.5 MiB.
    let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 63 * MIB)]).unwrap();
    map.reserve(
        0x100_0000,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    reserve(&mut map, MIB, MIB / 2, "payload");
    let err = place_initrd(&k, 20 * MIB + 1, &map).unwrap_err();
    assert_eq!(
        err.to_string(),
        "initrd of 20.1 MiB does not fit below 0x80000000 (largest free range 14.5 MiB)"
    );
    assert_eq!(place_initrd(&k, 0, &map), Err(LinuxError::EmptyInitrd));
    // With the flag the message has no limit.
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert_eq!(
        place_initrd(&k, 20 * MIB, &map).unwrap_err().to_string(),
        "initrd of 20 MiB does not fit in free memory (largest free range 14.5 MiB)"
    );
    // The low 640 KiB never takes an initrd.
    let map = MemoryMap::new(&[ram(0, 0x9fc00)]).unwrap();
    assert!(place_initrd(&k, PAGE_SIZE, &map).is_err());
}

#[test]
fn mib_rounding() {
    let show = |bytes, round_up| Mib { bytes, round_up }.to_string();
    assert_eq!(show(0, true), "0 MiB");
    assert_eq!(show(20 * MIB, true), "20 MiB");
    assert_eq!(show(20 * MIB + 1, true), "20.1 MiB");
    assert_eq!(show(20 * MIB + 1, false), "20 MiB");
    assert_eq!(show(20 * MIB - 1, true), "20 MiB");
    assert_eq!(show(20 * MIB - 1, false), "19.9 MiB");
    assert_eq!(show(MIB / 2, false), "0.5 MiB");
    assert_eq!(show(u64::MAX, true), "17592186044416 MiB");
}
