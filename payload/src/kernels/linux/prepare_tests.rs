//! Host tests: a Linux hand-off prepared on fake memory, read back at the boot
//! protocol's offsets.

use super::*;
use crate::kernels::linux::prepare::*;
use crate::memory::region::FakeMemory;

/// The fake machine's RAM ends here (low RAM, the BIOS area, RAM from 1 MiB).
const RAM_END: u64 = 128 * MIB;

fn machine() -> (MemoryMap, FakeMemory) {
    let map = MemoryMap::new(&[
        ram(0, 0x9fc00),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        ram(MIB, RAM_END - MIB),
    ])
    .unwrap();
    (map, FakeMemory::new(0, RAM_END as usize))
}

#[test]
fn kernel_initrd_cmdline_and_boot_params_land_where_the_plan_says() {
    let (mut map, mut memory) = machine();
    let bytes = image();
    let kernel = parse(&bytes).unwrap();
    let initrd: Vec<u8> = (0..10_000u32).map(|i| (i * 13) as u8).collect();
    let cmdline = command_line("console=ttyS0", Some(0x7f0_0000), 5, 4);
    let prepared = prepare(
        &mut map,
        &mut memory,
        &kernel,
        &bytes,
        Some(&initrd),
        &cmdline,
        0xf_5250,
    )
    .unwrap();

    // The kernel at its preferred address, entered 0x200 in.
    assert_eq!(prepared.load, 0x100_0000);
    assert_eq!(prepared.entry_point, 0x100_0200);
    let protected_mode = &bytes[kernel.protected_mode.clone()];
    assert_eq!(
        memory.at(prepared.load, protected_mode.len()),
        protected_mode
    );
    // The initrd as high as the kernel allows, page-aligned.
    let (initrd_addr, initrd_size) = prepared.initrd.unwrap();
    assert_eq!(initrd_size, 10_000);
    assert_eq!(initrd_addr, (RAM_END - 10_000) & !0xfff);
    assert_eq!(memory.at(initrd_addr, 10_000), &initrd[..]);
    // The command line, NUL-terminated, in a page of its own below it.
    assert_eq!(
        cmdline.as_str(),
        "console=ttyS0 parkboot.park_table=0x7f00000 parkboot.iteration=1 parkboot.loops=5 parkboot.cpus=4"
    );
    assert_eq!(
        memory.at(prepared.cmdline, cmdline.len()),
        cmdline.as_bytes()
    );
    assert_eq!(memory.at(prepared.cmdline + cmdline.len() as u64, 1), [0]);

    // boot_params, at the protocol's offsets.
    let page = memory.at(prepared.boot_params, BOOT_PARAMS_SIZE).to_vec();
    assert_eq!(&page[0x202..0x206], b"HdrS", "setup header copied");
    assert_eq!(r8(&page, 0x210), 0xff, "type_of_loader");
    assert_eq!(r32(&page, 0x228) as u64, prepared.cmdline, "cmd_line_ptr");
    assert_eq!(r32(&page, 0x0c8), 0, "ext_cmd_line_ptr");
    assert_eq!(r32(&page, 0x218) as u64, initrd_addr, "ramdisk_image");
    assert_eq!(r32(&page, 0x21c), 10_000, "ramdisk_size");
    assert_eq!(r64(&page, 0x070), 0xf_5250, "acpi_rsdp_addr");
    // The e820 map is the map the kernel is shown, parkboot's pages for it included.
    let mut expected = [(0, 0, 0); E820_MAX_ENTRIES];
    let count = e820_from_kernel_view(map.kernel_view(), &mut expected).unwrap();
    assert_eq!(prepared.e820_entries, count);
    assert_eq!(r8(&page, 0x1e8) as usize, count);
    for (i, &(addr, size, kind)) in expected[..count].iter().enumerate() {
        let at = 0x2d0 + 20 * i;
        assert_eq!(
            (r64(&page, at), r64(&page, at + 8), r32(&page, at + 16)),
            (addr, size, kind)
        );
    }
    // Exactly the page build_boot_params makes from these arguments.
    let mut direct = [0u8; BOOT_PARAMS_SIZE];
    build_boot_params(
        &kernel,
        &bytes,
        &mut direct,
        &BootArgs {
            cmdline_addr: prepared.cmdline,
            cmdline_len: cmdline.len(),
            initrd: prepared.initrd,
            rsdp: 0xf_5250,
            e820: &expected[..count],
        },
    )
    .unwrap();
    assert_eq!(page, direct);

    let names: Vec<_> = map.reservations().map(|r| (r.start, r.name)).collect();
    assert_eq!(
        names,
        [
            (prepared.load, KERNEL_NAME),
            (prepared.boot_params, BOOT_PARAMS_NAME),
            (prepared.cmdline, CMDLINE_NAME),
            (initrd_addr, INITRD_NAME),
        ]
    );
    assert!(map
        .reservations()
        .all(|r| r.lifetime == Lifetime::Boot && r.report_as == ReportAs::Usable));
    assert_eq!(
        map.reservations().next().unwrap().size,
        0x240_0000,
        "init_size"
    );
}

#[test]
fn without_an_initrd_boot_params_names_none() {
    let (mut map, mut memory) = machine();
    let bytes = image();
    let kernel = parse(&bytes).unwrap();
    let cmdline = command_line("", None, 1, 0);
    assert_eq!(cmdline.as_str(), " parkboot.iteration=1 parkboot.loops=1");
    let prepared = prepare(&mut map, &mut memory, &kernel, &bytes, None, &cmdline, 0).unwrap();
    assert_eq!(prepared.initrd, None);
    let page = memory.at(prepared.boot_params, BOOT_PARAMS_SIZE);
    assert_eq!((r32(page, 0x218), r32(page, 0x21c)), (0, 0));
    assert_eq!(r32(page, 0x228) as u64, prepared.cmdline);
    assert_eq!(
        memory.at(prepared.cmdline, cmdline.len() + 1).last(),
        Some(&0)
    );
}

#[test]
fn a_kernel_that_does_not_fit_or_a_line_too_long_is_an_error() {
    let (mut map, mut memory) = machine();
    let bytes = image();
    let kernel = parse(&bytes).unwrap();
    let long = "x".repeat(kernel.cmdline_size as usize + 1);
    let error = prepare(&mut map, &mut memory, &kernel, &bytes, None, &long, 0).unwrap_err();
    assert_eq!(
        error,
        PrepareError::Linux(LinuxError::CmdlineTooLong {
            len: long.len(),
            max: kernel.cmdline_size
        })
    );

    // A machine too small for init_size: nothing is reserved or written.
    let mut small = MemoryMap::new(&[ram(MIB, 31 * MIB)]).unwrap();
    let mut memory = FakeMemory::new(0, 32 * MIB as usize);
    let error = prepare(&mut small, &mut memory, &kernel, &bytes, None, "", 0).unwrap_err();
    assert!(matches!(error, PrepareError::Linux(_)), "{error:?}");
    assert_eq!(small.reservations().count(), 0);
    assert!(memory.bytes.iter().all(|&b| b == 0));

    // An initrd over the kernel's reach: the kernel is in, the initrd refused.
    let (mut map, mut memory) = machine();
    map.reserve(
        MIB * 64,
        RAM_END - MIB * 64,
        "park region",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    let huge = vec![1u8; 0x100_0000];
    let error = prepare(&mut map, &mut memory, &kernel, &bytes, Some(&huge), "", 0).unwrap_err();
    assert!(matches!(error, PrepareError::Linux(_)), "{error:?}");
}
