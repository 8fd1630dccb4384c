//! The zero page (boot_params) and the e820 map the kernel is given.

use super::*;

#[test]
fn boot_params_fields_at_their_offsets() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let e820 = [
        (0, 0x9fc00, 1),
        (0xf0000, 0x10000, 2),
        (0x10_0000, 0x7ff0_0000, 1),
    ];
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();

    assert_eq!(r64(&page, 0x070), 0xf_5250);
    assert_eq!(r32(&page, 0x0c0), 0x2);
    assert_eq!(r32(&page, 0x0c4), 0x1);
    assert_eq!(r32(&page, 0x0c8), 0x1);
    assert_eq!(r8(&page, 0x1e8), 3);
    assert_eq!(r8(&page, 0x1ef), 0, "sentinel");
    // The header, copied.
    assert_eq!(r8(&page, 0x1f1), 4);
    assert_eq!(r16(&page, 0x1fe), 0xaa55);
    assert_eq!(&page[0x202..0x206], b"HdrS");
    assert_eq!(r16(&page, 0x206), 0x020F);
    assert_eq!(r16(&page, 0x1fa), 0xffff, "vid_mode");
    assert_eq!(r32(&page, 0x230), 0x20_0000);
    assert_eq!(r64(&page, 0x258), 0x100_0000);
    assert_eq!(r32(&page, 0x260), 0x240_0000);
    assert_eq!(r32(&page, 0x268), 0x12_3400);
    // What parkboot fills in.
    assert_eq!(r8(&page, 0x210), 0xff, "type_of_loader");
    assert_eq!(
        r8(&page, 0x211),
        0x01,
        "loadflags: LOADED_HIGH, no CAN_USE_HEAP"
    );
    assert_eq!(r32(&page, 0x214), 0x10_0000, "code32_start untouched");
    assert_eq!(r32(&page, 0x218), 0x1000);
    assert_eq!(r32(&page, 0x21c), 0x123);
    assert_eq!(r32(&page, 0x228), 0x2345_6000);
    assert_eq!(r64(&page, 0x250), 0, "setup_data");
    // The e820 table, 20 bytes an entry.
    for (i, &(addr, size, kind)) in e820.iter().enumerate() {
        let at = 0x2d0 + 20 * i;
        assert_eq!(r64(&page, at), addr);
        assert_eq!(r64(&page, at + 8), size);
        assert_eq!(r32(&page, at + 16), kind);
    }
    // Nothing else: zero outside the header and the fields written.
    let written = [
        0x070..0x078,
        0x0c0..0x0cc,
        0x1e8..0x1e9,
        0x1f1..0x26c,
        0x2d0..0x2d0 + 60,
    ];
    for (at, &b) in page.iter().enumerate() {
        if !written.iter().any(|r| r.contains(&at)) {
            assert_eq!(b, 0, "byte {at:#x}");
        }
    }
}

#[test]
fn boot_params_low_addresses_and_no_initrd() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        loadflags: 0x20,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    let mut page = [0u8; BOOT_PARAMS_SIZE];
    let a = BootArgs {
        cmdline_addr: 0x9_e000,
        cmdline_len: 0,
        initrd: None,
        rsdp: 0,
        e820: &[],
    };
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x228), 0x9_e000);
    assert_eq!(r32(&page, 0x0c8), 0);
    assert_eq!(r32(&page, 0x218), 0);
    assert_eq!(r32(&page, 0x21c), 0);
    assert_eq!(r32(&page, 0x0c0), 0);
    assert_eq!(r64(&page, 0x070), 0);
    assert_eq!(r8(&page, 0x1e8), 0);
    // QUIET_FLAG from the image is kept, LOADED_HIGH added.
    assert_eq!(r8(&page, 0x211), 0x21);
    // The initrd right up to initrd_addr_max.
    let a = BootArgs {
        initrd: Some((0x7000_0000, 0x1000_0000)),
        ..a
    };
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x218), 0x7000_0000);
    assert_eq!(r32(&page, 0x21c), 0x1000_0000);
    // A 2.12 header: only its bytes are copied.
    let t = TestImage {
        version: 0x020C,
        jump_offset: 0x66,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x264), 0x190);
    assert_eq!(r32(&page, 0x268), 0);
}

#[test]
fn boot_params_errors_leave_the_page_alone() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    let untouched = page;

    let a = BootArgs {
        cmdline_len: 3000,
        ..args(&[])
    };
    let err = build_boot_params(&k, &bytes, &mut page, &a).unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line is 3000 bytes; this kernel accepts at most 2047"
    );
    assert_eq!(page, untouched);

    let many = [(0u64, 0x1000u64, 1u32); E820_MAX_ENTRIES + 1];
    let err = build_boot_params(&k, &bytes, &mut page, &args(&many)).unwrap_err();
    assert_eq!(err, LinuxError::TooManyE820Entries { count: 129 });
    assert_eq!(
        err.to_string(),
        "memory map has 129 ranges; boot_params holds at most 128"
    );
    assert_eq!(page, untouched);
    // Exactly 128 fit, the last ending at the end of the table.
    let full = [(0x1234u64, 0x1000u64, 2u32); E820_MAX_ENTRIES];
    build_boot_params(&k, &bytes, &mut page, &args(&full)).unwrap();
    assert_eq!(r8(&page, 0x1e8), 128);
    assert_eq!(r32(&page, 0x2d0 + 127 * 20 + 16), 2);
    assert_eq!(0x2d0 + 128 * 20, 0xcd0);

    // Above 4 GiB without XLF_CAN_BE_LOADED_ABOVE_4G.
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let low_bytes = t.build();
    let low = parse(&low_bytes).unwrap();
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    let err = build_boot_params(&low, &low_bytes, &mut page, &args(&[])).unwrap_err();
    assert_eq!(
        err,
        LinuxError::CmdlineOutOfReach {
            addr: 0x1_2345_6000,
            len: 2047
        }
    );
    // The NUL must be below 4 GiB too.
    let a = BootArgs {
        cmdline_addr: FOUR_GIB - 10,
        cmdline_len: 10,
        initrd: None,
        ..args(&[])
    };
    assert!(matches!(
        build_boot_params(&low, &low_bytes, &mut page, &a),
        Err(LinuxError::CmdlineOutOfReach { .. })
    ));
    let a = BootArgs {
        cmdline_addr: 0x9_e000,
        initrd: Some((0x7000_0000, 0x1000_0001)),
        ..args(&[])
    };
    let err = build_boot_params(&low, &low_bytes, &mut page, &a).unwrap_err();
    assert_eq!(
            err.to_string(),
            "initrd at 0x70000000 (0x10000001 bytes) reaches beyond 0x80000000, the end of what this kernel accepts"
        );
    let a = BootArgs {
        initrd: Some((u64::MAX, 2)),
        ..a
    };
    assert!(build_boot_params(&k, &bytes, &mut page, &a).is_err());
    assert_eq!(page, untouched);

    // An image shorter than the header the kernel was parsed with.
    assert!(matches!(
        build_boot_params(&k, &bytes[..0x200], &mut page, &args(&[])),
        Err(LinuxError::TooShort { .. })
    ));
    assert_eq!(page, untouched);
}

#[test]
fn e820_from_the_kernel_view() {
    let mut map = MemoryMap::new(&[
        ram(0, 0x9fc00),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        ram(MIB, 255 * MIB),
        region(256 * MIB, 0x1000, MemoryKind::AcpiNvs),
        region(256 * MIB + 0x1000, 0x1000, MemoryKind::AcpiReclaim),
    ])
    .unwrap();
    reserve(&mut map, 2 * MIB, MIB, "park region");
    map.reserve(
        16 * MIB,
        36 * MIB,
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    let mut out = [(0, 0, 0); E820_MAX_ENTRIES];
    let n = e820_from_kernel_view(map.kernel_view(), &mut out).unwrap();
    assert_eq!(
        &out[..n],
        &[
            (0, 0x9fc00, 1),
            (0xf0000, 0x10000, 2),
            (MIB, MIB, 1),
            (2 * MIB, MIB, 2),
            // The kernel's load area is the kernel's: usable, merged.
            (3 * MIB, 253 * MIB, 1),
            (256 * MIB, 0x1000, 4),
            (256 * MIB + 0x1000, 0x1000, 3),
        ]
    );
    let mut small = [(0, 0, 0); 3];
    assert_eq!(
        e820_from_kernel_view(map.kernel_view(), &mut small),
        Err(LinuxError::TooManyE820Entries { count: 7 })
    );
    assert_eq!(
        e820_from_kernel_view(core::iter::empty(), &mut small),
        Ok(0)
    );
}
