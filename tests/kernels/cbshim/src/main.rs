//! cbshim: a test loader that enters parkboot the way coreboot does.
//!
//! QEMU starts cbshim through PVH (`-kernel cbshim`) with parkboot's ELF as module 0
//! (`-initrd parkboot`). cbshim loads parkboot's PT_LOAD segments, builds a coreboot
//! table from what PVH told it (memory map, COM1, ACPI RSDP), and jumps to parkboot's
//! ELF entry in 32-bit protected mode with paging off, `[esp+4]` = the table, as
//! coreboot's selfboot does. So every test run exercises parkboot's coreboot path.
//!
//! The table also names a CBMEM console (in cbshim's own memory, which the table marks
//! as coreboot's), holding one line of cbshim's own as coreboot's log would, so every
//! run exercises parkboot's CBMEM console too.
//!
//! Command-line options (PVH command line, `-append`) make the platform worse on
//! purpose: `cbshim.corrupt=table-checksum` (coreboot table checksum),
//! `cbshim.pointer=forward` (forwarding table at 0x500 instead of `[esp+4]`),
//! `cbshim.serial=none` (no LB_TAG_SERIAL: a board without a serial port),
//! `cbshim.ghost-cpu` (the MADT lists a CPU that does not exist) and
//! `cbshim.bad-checksum=SIG` (the ACPI table with signature SIG, e.g. HPET or APIC,
//! gets a wrong checksum). The two ACPI options put a changed copy of one table behind
//! a new XSDT and RSDP in cbshim's memory and cannot be combined.
#![cfg_attr(target_os = "none", no_std, no_main)]
// A test loader: its inputs are the test's own; an index out of range or a failed
// unwrap is a failed test (the panic handler reports it), not a boot risk.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("cbshim runs on bare metal: build it with --target x86_64-unknown-none");
}

#[cfg(target_os = "none")]
mod shim {
    use core::fmt::Write;
    use elf::abi::PT_LOAD;
    use elf::endian::LittleEndian;
    use elf::ElfBytes;
    use parkboot::kernels::handoff::{enter_protected_mode32, SEL_CODE32, SEL_CODE64, SEL_DATA};
    use parkboot::memory::{MemoryKind, MemoryRegion};
    use parkboot::platform::cbmem_console::CbmemConsole;
    use parkboot::platform::coreboot::builder::TableBuilder;
    use parkboot::platform::{BootSource, PhysicalMemory, Platform, SerialConsole};

    // parkboot's own entry code serves here too: PVH note, long mode, boot stack.
    core::arch::global_asm!(
        concat!(include_str!("../../../../park/src/asm/long_mode.inc"), include_str!("../../../../payload/src/bare_metal/entry.S")),
        rust_entry = sym shim_main,
        BOOT_SOURCE_COREBOOT = const BootSource::Coreboot as u32,
        BOOT_SOURCE_PVH = const BootSource::Pvh as u32,
        SEL_CODE32 = const SEL_CODE32,
        SEL_CODE64 = const SEL_CODE64,
        SEL_DATA = const SEL_DATA,
        gdt_pointer = sym parkboot::kernels::handoff::FLAT_GDT_POINTER,
        options(att_syntax)
    );

    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    const COM1: u16 = 0x3f8;
    const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
    const QEMU_EXIT_FAIL: u32 = 0x11;
    const TABLE_BYTES: usize = 8192;
    /// Size of coreboot's lb_header: records start after it.
    const LB_HEADER_BYTES: usize = 24;
    /// Where coreboot puts its small forwarding table.
    const FORWARDING_TABLE: u64 = 0x500;
    const STACK_WORDS: usize = 1024;
    /// What `[esp]` holds: coreboot's return address. parkboot never returns.
    const NO_RETURN_ADDRESS: u32 = 0;

    #[repr(C, align(16))]
    struct Table([u8; TABLE_BYTES]);
    static mut TABLE: Table = Table([0; TABLE_BYTES]);
    static mut STACK: [u32; STACK_WORDS] = [0; STACK_WORDS];
    /// The CBMEM console's header and body: coreboot's default size (128 KiB).
    const CBMEM_CONSOLE_BYTES: usize = 128 * 1024;
    #[repr(C, align(16))]
    struct CbmemConsoleBuffer([u8; CBMEM_CONSOLE_BYTES]);
    static mut CBMEM_CONSOLE: CbmemConsoleBuffer = CbmemConsoleBuffer([0; CBMEM_CONSOLE_BYTES]);

    struct Serial;
    impl Write for Serial {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for byte in s.bytes() {
                // SAFETY: COM1, which QEMU always has.
                unsafe { core::arch::asm!("out dx, al", in("dx") COM1, in("al") byte) };
            }
            Ok(())
        }
    }

    /// APIC ID of the CPU `cbshim.ghost-cpu` adds to the MADT: listed, enabled, absent.
    const GHOST_APIC_ID: u8 = 7;
    const MADT_LOCAL_APIC: u8 = 0;
    const LOCAL_APIC_ENTRY_LENGTH: u8 = 8;
    const LOCAL_APIC_ENABLED: u32 = 1;
    const SDT_LENGTH_OFFSET: usize = 4;
    const SDT_CHECKSUM_OFFSET: usize = 9;
    const ACPI_BYTES: usize = 8192;
    const RSDP_OFFSET: usize = 0;
    const XSDT_OFFSET: usize = 64;
    /// Where the one changed table goes; it may use the rest of the buffer.
    const COPY_OFFSET: usize = 4096;
    /// `cbshim.bad-checksum=SIG`: which table gets a wrong checksum.
    const BAD_CHECKSUM_OPTION: &str = "cbshim.bad-checksum=";
    /// What `cbshim.bad-checksum` adds to the correct checksum byte.
    const BAD_CHECKSUM_DELTA: u8 = 0x5A;

    #[repr(C, align(16))]
    struct AcpiCopy([u8; ACPI_BYTES]);
    static mut ACPI: AcpiCopy = AcpiCopy([0; ACPI_BYTES]);

    /// Why cbshim could not change the ACPI tables.
    enum TableEditError {
        Acpi(parkboot::platform::acpi::AcpiError),
        NoSuchTable(parkboot::platform::acpi::Signature),
        TooLarge {
            signature: parkboot::platform::acpi::Signature,
            length: usize,
        },
    }

    impl From<parkboot::platform::acpi::AcpiError> for TableEditError {
        fn from(e: parkboot::platform::acpi::AcpiError) -> Self {
            TableEditError::Acpi(e)
        }
    }

    impl core::fmt::Display for TableEditError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                TableEditError::Acpi(e) => write!(f, "{e}"),
                TableEditError::NoSuchTable(signature) => {
                    write!(f, "the platform's root lists no valid {signature} table")
                }
                TableEditError::TooLarge { signature, length } => write!(
                    f,
                    "{signature} with {length} bytes does not fit cbshim's {} bytes",
                    ACPI_BYTES - COPY_OFFSET
                ),
            }
        }
    }

    /// Copies the platform's `signature` table into cbshim's own memory (which the
    /// coreboot table marks as coreboot's), `extra` bytes longer, lets `edit` change the
    /// copy, and puts a new XSDT and RSDP in front that list the copy in the original's
    /// place. Returns the new RSDP and the copy's address.
    fn replace_table(
        rsdp: u64,
        signature: parkboot::platform::acpi::Signature,
        extra: usize,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<(u64, u64), TableEditError> {
        use parkboot::platform::acpi::{build_rsdp, build_xsdt, parse_rsdp, Tables};
        let tables = Tables::new(&Identity, rsdp)?;
        let original = parse_rsdp(&Identity, rsdp)?;
        let (address, _) = tables
            .find(signature)
            .ok_or(TableEditError::NoSuchTable(signature))?;
        let table = tables
            .table_bytes(&Identity, signature)
            .ok_or(TableEditError::NoSuchTable(signature))?;
        // SAFETY: single-threaded; cbshim's own buffer.
        let out = unsafe { &mut (*core::ptr::addr_of_mut!(ACPI)).0 };
        let base = out.as_ptr() as u64;
        let new_len = table.len() + extra;
        let copy =
            out.get_mut(COPY_OFFSET..COPY_OFFSET + new_len)
                .ok_or(TableEditError::TooLarge {
                    signature,
                    length: new_len,
                })?;
        copy[..table.len()].copy_from_slice(table);
        edit(copy);
        let copy_address = base + COPY_OFFSET as u64;
        let mut entries: heapless::Vec<u64, 64> = heapless::Vec::new();
        for table in tables.iter() {
            let _ = entries.push(if table.address == address {
                copy_address
            } else {
                table.address
            });
        }
        build_xsdt(
            &tables.root_header,
            &entries,
            &mut out[XSDT_OFFSET..COPY_OFFSET],
        )?;
        build_rsdp(
            original.oem_id,
            0,
            base + XSDT_OFFSET as u64,
            &mut out[RSDP_OFFSET..XSDT_OFFSET],
        )?;
        Ok((base + RSDP_OFFSET as u64, copy_address))
    }

    /// The correct checksum byte for `table` (the byte that makes it sum to zero).
    fn correct_checksum(table: &[u8]) -> u8 {
        let stored = table[SDT_CHECKSUM_OFFSET];
        stored.wrapping_sub(parkboot::platform::acpi::checksum(table))
    }

    /// A copy of the platform's MADT with one more Local APIC entry: parkboot must
    /// report the CPU that never answers and boot on without it.
    fn add_ghost_cpu(rsdp: u64) -> Result<u64, TableEditError> {
        let extra = LOCAL_APIC_ENTRY_LENGTH as usize;
        let (new_rsdp, _) = replace_table(
            rsdp,
            parkboot::platform::acpi::Signature::MADT,
            extra,
            |madt| {
                let end = madt.len();
                let entry = &mut madt[end - extra..];
                entry[..4].copy_from_slice(&[
                    MADT_LOCAL_APIC,
                    LOCAL_APIC_ENTRY_LENGTH,
                    GHOST_APIC_ID,
                    GHOST_APIC_ID,
                ]);
                entry[4..].copy_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
                madt[SDT_LENGTH_OFFSET..SDT_LENGTH_OFFSET + 4]
                    .copy_from_slice(&(end as u32).to_le_bytes());
                madt[SDT_CHECKSUM_OFFSET] = correct_checksum(madt);
            },
        )?;
        Ok(new_rsdp)
    }

    /// The signature `cbshim.bad-checksum=SIG` names, if the command line has it.
    fn bad_checksum_option(
        cmdline: &str,
    ) -> Option<Result<parkboot::platform::acpi::Signature, &str>> {
        let value = cmdline
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix(BAD_CHECKSUM_OPTION))?;
        Some(
            <[u8; 4]>::try_from(value.as_bytes())
                .map(parkboot::platform::acpi::Signature)
                .map_err(|_| value),
        )
    }

    /// A copy of the platform's `signature` table whose checksum byte is off by
    /// [`BAD_CHECKSUM_DELTA`], everything else as it was: parkboot must warn and keep it
    /// (or, for the MADT, refuse to park and boot on).
    fn corrupt_checksum(
        rsdp: u64,
        signature: parkboot::platform::acpi::Signature,
    ) -> Result<(u64, u64, u8, u8), TableEditError> {
        let mut checksums = (0, 0);
        let (new_rsdp, copy) = replace_table(rsdp, signature, 0, |table| {
            let correct = correct_checksum(table);
            let bad = correct.wrapping_add(BAD_CHECKSUM_DELTA);
            table[SDT_CHECKSUM_OFFSET] = bad;
            checksums = (bad, correct);
        })?;
        Ok((new_rsdp, copy, checksums.0, checksums.1))
    }

    struct Identity;
    impl PhysicalMemory for Identity {
        fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
            const MAPPED: u64 = 4 << 30;
            if addr == 0 || addr.checked_add(len as u64)? > MAPPED {
                return None;
            }
            // SAFETY: the boot map identity-maps the first 4 GiB.
            Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
        }
    }

    fn fail(what: core::fmt::Arguments) -> ! {
        let _ = writeln!(Serial, "cbshim: error: {what}");
        // SAFETY: isa-debug-exit: QEMU exits with a failure status.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") QEMU_DEBUG_EXIT_PORT, in("eax") QEMU_EXIT_FAIL)
        };
        loop {
            // SAFETY: stop here.
            unsafe { core::arch::asm!("cli; hlt") };
        }
    }

    extern "C" fn shim_main(_source: u32, start_info: u32) -> ! {
        let mut platform = Platform::new(BootSource::Pvh, start_info as u64);
        if let Err(e) = parkboot::platform::pvh::parse(&Identity, start_info as u64, &mut platform)
        {
            fail(format_args!("PVH start info: {e}"));
        }
        let Some(module) = platform.modules.first().copied() else {
            fail(format_args!("no module: pass parkboot's ELF with -initrd"));
        };
        let Some(image) = Identity.bytes(module.start, module.size as usize) else {
            fail(format_args!(
                "module 0 at {:#x} is not readable",
                module.start
            ));
        };
        let (shim_start, shim_end) = (
            core::ptr::addr_of!(__image_start) as u64,
            core::ptr::addr_of!(__image_end) as u64,
        );
        let elf = match ElfBytes::<LittleEndian>::minimal_parse(image) {
            Ok(elf) => elf,
            Err(e) => fail(format_args!("module 0 is not an ELF file: {e}")),
        };
        let Some(segments) = elf.segments() else {
            fail(format_args!("ELF has no program headers"));
        };
        for phdr in segments.iter().filter(|p| p.p_type == PT_LOAD) {
            let end = phdr.p_paddr + phdr.p_memsz;
            if phdr.p_paddr < shim_end && end > shim_start {
                fail(format_args!(
                    "segment {:#x}-{:#x} overlaps cbshim",
                    phdr.p_paddr, end
                ));
            }
            let Some(data) =
                image.get(phdr.p_offset as usize..(phdr.p_offset + phdr.p_filesz) as usize)
            else {
                fail(format_args!(
                    "segment at {:#x} runs past the file",
                    phdr.p_paddr
                ));
            };
            // SAFETY: the segment's range is RAM that nothing here uses (checked above).
            unsafe {
                let dst = phdr.p_paddr as *mut u8;
                core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len());
                core::ptr::write_bytes(
                    dst.add(data.len()),
                    0,
                    (phdr.p_memsz - phdr.p_filesz) as usize,
                );
            }
        }
        let entry = elf.ehdr.e_entry;

        // The table advertises cbshim's own memory as coreboot's (type 16), as CBMEM is.
        let mut regions: heapless::Vec<MemoryRegion, 130> = heapless::Vec::new();
        for region in platform.memory.iter() {
            let _ = regions.push(*region);
        }
        let _ = regions.push(MemoryRegion {
            start: shim_start,
            size: shim_end - shim_start,
            kind: MemoryKind::CorebootTables,
        });
        // SAFETY: single-threaded; the buffers live in cbshim's reserved image.
        let table = unsafe { &mut *core::ptr::addr_of_mut!(TABLE) };
        let table_addr = table.0.as_ptr() as u64;
        let mut rsdp = platform.rsdp;
        let bad_checksum = bad_checksum_option(platform.cmdline.as_str());
        if bad_checksum.is_some() && platform.cmdline.as_str().contains("cbshim.ghost-cpu") {
            fail(format_args!(
                "cbshim.ghost-cpu and {BAD_CHECKSUM_OPTION}SIG cannot be combined"
            ));
        }
        match bad_checksum {
            None => {}
            Some(Err(value)) => fail(format_args!(
                "{BAD_CHECKSUM_OPTION}{value}: a table signature is four characters"
            )),
            Some(Ok(signature)) => match rsdp.map(|rsdp| corrupt_checksum(rsdp, signature)) {
                Some(Ok((new_rsdp, copy, bad, correct))) => {
                    let _ = writeln!(
                        Serial,
                        "cbshim: {signature} copied to {copy:#x} with checksum {bad:#04x} (correct: {correct:#04x}), behind a new XSDT and RSDP {new_rsdp:#x}"
                    );
                    rsdp = Some(new_rsdp);
                }
                Some(Err(e)) => fail(format_args!("giving {signature} a bad checksum: {e}")),
                None => fail(format_args!("no RSDP to corrupt {signature} under")),
            },
        }
        if platform.cmdline.as_str().contains("cbshim.ghost-cpu") {
            match rsdp.map(add_ghost_cpu) {
                Some(Ok(new_rsdp)) => {
                    let _ = writeln!(
                        Serial,
                        "cbshim: the MADT now also lists APIC ID {GHOST_APIC_ID}, a CPU that does not exist (RSDP {new_rsdp:#x})"
                    );
                    rsdp = Some(new_rsdp);
                }
                Some(Err(e)) => fail(format_args!("adding the ghost CPU: {e}")),
                None => fail(format_args!("no RSDP to add a ghost CPU to")),
            }
        }
        // SAFETY: as above.
        let cbmem = unsafe { &mut (*core::ptr::addr_of_mut!(CBMEM_CONSOLE)).0 };
        let cbmem_addr = cbmem.as_ptr() as u64;
        let mut console = match CbmemConsole::create(cbmem, cbmem_addr) {
            Ok(console) => console,
            Err(e) => fail(format_args!("CBMEM console: {e}")),
        };
        // What the test looks for first: written at run time, so the address in it
        // tells a reader of guest memory where the header is.
        let _ = writeln!(
            console,
            "cbshim: CBMEM console at {cbmem_addr:#x}, {} bytes, standing in for coreboot's log",
            console.size()
        );
        let _ = writeln!(
            Serial,
            "cbshim: CBMEM console at {cbmem_addr:#x}, {} bytes",
            console.size()
        );
        let with_serial = !platform.cmdline.as_str().contains("cbshim.serial=none");
        let mut builder = TableBuilder::new(&mut table.0);
        builder.memory(&regions).cbmem_console(cbmem_addr);
        if with_serial {
            builder.serial(&SerialConsole::COM1);
        }
        if let Some(rsdp) = rsdp {
            builder.acpi_rsdp(rsdp);
        }
        if let Err(e) = builder.finish() {
            fail(format_args!("building the coreboot table: {e}"));
        }
        let cmdline = platform.cmdline.as_str();
        if cmdline.contains("cbshim.corrupt=table-checksum") {
            // A record byte changes after the checksum was computed.
            table.0[LB_HEADER_BYTES + 8] ^= 0xff;
            let _ = writeln!(
                Serial,
                "cbshim: corrupted the coreboot table's record checksum"
            );
        }
        let mut pointer = table_addr as u32;
        if cmdline.contains("cbshim.pointer=forward") {
            // No pointer on the stack; a forwarding table at 0x500 leads to the real one.
            // SAFETY: 0x500 is free conventional memory (after the BIOS data area).
            let forward =
                unsafe { core::slice::from_raw_parts_mut(FORWARDING_TABLE as *mut u8, 64) };
            if let Err(e) = TableBuilder::new(forward).forward(table_addr).finish() {
                fail(format_args!("building the forwarding table: {e}"));
            }
            pointer = 0;
            let _ = writeln!(
                Serial,
                "cbshim: [esp+4] = 0, forwarding table at {FORWARDING_TABLE:#x}"
            );
        }
        // SAFETY: as above.
        let stack = unsafe { &mut *core::ptr::addr_of_mut!(STACK) };
        stack[STACK_WORDS - 2] = NO_RETURN_ADDRESS;
        stack[STACK_WORDS - 1] = pointer;
        let esp = &stack[STACK_WORDS - 2] as *const u32 as u32;
        let _ = writeln!(
            Serial,
            "cbshim: entering parkboot's coreboot entry {entry:#x} with the coreboot table at {table_addr:#x} ([esp+4], esp {esp:#x})"
        );
        // SAFETY: entry is the ELF entry of the image just loaded.
        unsafe { enter_protected_mode32(entry as u32, 0, 0, esp) }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        fail(format_args!("panic: {info}"))
    }
}
