//! The boot flow: find the machine, park the APs, check them, report.

use crate::arch::finish::{set_finish, stop, Finish};
use crate::arch::identity::{self, Identity, IDENTITY};
use crate::arch::{self, console, cpu, exceptions};
use crate::kernel_tables::KernelTables;
use crate::kexec_loop::{self, BootState, PER_AP_JSON_BYTES};
use crate::parking::{self, Parked, WakeSample};
use core::arch::global_asm;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;
use park::table::{CpuState, MAX_PARKED_CPUS};
use parkboot::config::{self, Config, FaultTest, OnFinish};
use parkboot::kernels::handoff::{FLAT_GDT_POINTER, SEL_CODE32, SEL_CODE64, SEL_DATA};
use parkboot::memory::{
    AllocationRequest, KindName, Lifetime, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB,
};
use parkboot::parking::layout::{Duration, Spread};
use parkboot::platform::acpi::{self, Madt};
use parkboot::platform::cbfs::{Cbfs, CompressionNote};
use parkboot::platform::fw_cfg::{FwCfg, IoPorts};
use parkboot::platform::sources::{self, ConfigSource};
use parkboot::platform::{coreboot, pvh};
use parkboot::platform::{BootSource, PhysicalMemory, Platform, SerialConsole};

// The entry points (coreboot's ELF entry and the PVH note), 32-bit protected mode to
// long mode, then `rust_entry`.
global_asm!(
    concat!(include_str!("../../../park/src/asm/long_mode.inc"), include_str!("entry.S")),
    rust_entry = sym rust_entry,
    BOOT_SOURCE_COREBOOT = const BootSource::Coreboot as u32,
    BOOT_SOURCE_PVH = const BootSource::Pvh as u32,
    SEL_CODE32 = const SEL_CODE32,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    options(att_syntax)
);

/// Called by `entry.S` in long mode on the boot stack.
extern "C" fn rust_entry(source: u32, boot_info: u32) -> ! {
    main(source, boot_info)
}

const BIOS_AREA: (u64, u64) = (0xE_0000, 0x10_0000);
const CONFIG_BYTES: usize = 8192;
fn find_platform(source: BootSource, boot_info: u32) -> Platform {
    let mut platform = Platform::new(source, boot_info as u64);
    match source {
        BootSource::Coreboot => {
            let hint = (boot_info != 0).then_some(boot_info as u64);
            let table = match coreboot::find_table(&Identity, hint) {
                Ok(table) => table,
                Err(e) => stop(format_args!("no coreboot table: {e}")),
            };
            platform.source_table = table;
            if let Err(e) = coreboot::parse(&Identity, table, &mut platform) {
                stop(format_args!("{e}"));
            }
        }
        BootSource::Pvh => {
            if let Err(e) = pvh::parse(&Identity, boot_info as u64, &mut platform) {
                stop(format_args!("{e}"));
            }
        }
    }
    platform
}

/// The configuration text from fw_cfg `opt/parkboot/config` (which wins) or CBFS
/// `parkboot/config`, and where it came from; `None` when neither has one.
fn config_text<'b>(
    fw_cfg: Option<&mut FwCfg<IoPorts>>,
    cbfs: Option<&Cbfs<'static>>,
    platform: &Platform,
    buf: &'b mut [u8],
) -> Option<(&'b [u8], ConfigSource)> {
    if let Some(fw_cfg) = fw_cfg {
        match fw_cfg.find(config::CONFIG_FW_CFG_FILE) {
            Ok(Some(entry)) => {
                if entry.size as usize > buf.len() {
                    config_error(
                        None,
                        platform,
                        format_args!(
                        "configuration fw_cfg {} is {} bytes, more than parkboot reads ({} bytes)",
                        config::CONFIG_FW_CFG_FILE,
                        entry.size,
                        buf.len()
                    ),
                    );
                }
                return match fw_cfg.read_entry(&entry, buf) {
                    Ok(n) => buf.get(..n).map(|bytes| (bytes, ConfigSource::FwCfg)),
                    Err(e) => config_error(
                        None,
                        platform,
                        format_args!("reading {}: {e}", config::CONFIG_FW_CFG_FILE),
                    ),
                };
            }
            Ok(None) => {}
            Err(e) => log::warn!("fw_cfg directory unreadable: {e}"),
        }
    }
    let cbfs = cbfs?;
    let file = match cbfs.find(sources::CONFIG_CBFS_FILE) {
        Ok(Some(file)) => file,
        Ok(None) => return None,
        Err(e) => {
            log::warn!(
                "CBFS: looking for {}: {e}; using the defaults",
                sources::CONFIG_CBFS_FILE
            );
            return None;
        }
    };
    match file.read_into(buf) {
        Ok(n) => buf.get(..n).map(|bytes| (bytes, ConfigSource::Cbfs)),
        Err(e) => config_error(
            None,
            platform,
            format_args!("configuration cbfs:{}: {e}", sources::CONFIG_CBFS_FILE),
        ),
    }
}

fn finish_for(on_finish: OnFinish) -> Finish {
    match on_finish {
        OnFinish::Halt => Finish::Halt,
        OnFinish::Reset => Finish::Reset,
        OnFinish::QemuExit => Finish::QemuExit,
    }
}

/// Stops on a configuration that cannot be used, after taking `on_finish` from the
/// command line or the broken text, so an unattended run ends as it asked to.
fn config_error(text: Option<&str>, platform: &Platform, reason: fmt::Arguments) -> ! {
    if let Some(on_finish) = config::on_finish_despite_errors(text, &platform.cmdline) {
        set_finish(finish_for(on_finish));
    }
    stop(reason)
}

fn read_config(
    fw_cfg: Option<&mut FwCfg<IoPorts>>,
    cbfs: Option<&Cbfs<'static>>,
    platform: &Platform,
) -> (Config, ConfigSource) {
    let mut config = Config::default();
    let mut buf = [0u8; CONFIG_BYTES];
    let source = match config_text(fw_cfg, cbfs, platform, &mut buf) {
        Some((bytes, source)) => {
            let text = match core::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let bad = e.valid_up_to();
                    let valid = bytes.get(..bad).unwrap_or(bytes);
                    let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
                    config_error(
                        None,
                        platform,
                        format_args!(
                            "configuration {source}: not UTF-8 text: line {line} has byte {:#04x} (offset {bad})",
                            bytes.get(bad).copied().unwrap_or(0)
                        ),
                    )
                }
            };
            match config::parse(text) {
                Ok(parsed) => config = parsed,
                Err(e) => config_error(
                    Some(text),
                    platform,
                    format_args!("configuration {source}: {e}"),
                ),
            }
            log::info!("configuration: {} ({} bytes)", source, bytes.len());
            source
        }
        None => {
            log::info!(
                "configuration: built-in defaults (no fw_cfg {} and no CBFS {})",
                config::CONFIG_FW_CFG_FILE,
                sources::CONFIG_CBFS_FILE
            );
            ConfigSource::Default
        }
    };
    if let Err(e) = config.apply_cmdline(&platform.cmdline) {
        config_error(None, platform, format_args!("command line: {e}"));
    }
    set_finish(finish_for(config.on_finish));
    (config, source)
}

/// CBFS on the boot media, for the coreboot entry only (under PVH the flash at the top
/// of 4 GiB is a BIOS, not coreboot's). Its files go in the log.
fn find_cbfs(platform: &Platform) -> Option<Cbfs<'static>> {
    if platform.source != BootSource::Coreboot {
        return None;
    }
    let cbfs = match Cbfs::locate(&IDENTITY, platform.cbfs) {
        Ok(cbfs) => cbfs,
        Err(e) => {
            log::warn!("{e}; nothing can be loaded from flash");
            return None;
        }
    };
    log::info!(
        "CBFS: {:#x}-{:#x} ({} KiB, {})",
        cbfs.base(),
        cbfs.base() + cbfs.size() as u64,
        cbfs.size() / 1024,
        if platform.cbfs.is_some() {
            "from the boot-media record"
        } else {
            "from the master header"
        }
    );
    for file in cbfs.files() {
        match file {
            Ok(file) => log::info!(
                "  {:32} {:10} {:8} bytes{}",
                file.name,
                file.type_name(),
                file.data.len(),
                CompressionNote(file.compression)
            ),
            Err(e) => {
                log::warn!("CBFS: {e}; files after it are not seen");
                break;
            }
        }
    }
    Some(cbfs)
}

/// The fw_cfg directory, so a user sees which `opt/` items reached parkboot.
fn log_fw_cfg(fw_cfg: &mut FwCfg<IoPorts>) {
    let dma = fw_cfg.has_dma();
    let Ok(files) = fw_cfg.files() else {
        log::warn!("fw_cfg: directory unreadable");
        return;
    };
    let mut count = 0;
    for entry in files.flatten() {
        count += 1;
        if entry.name().starts_with("opt/") {
            log::info!("fw_cfg: {} ({} bytes)", entry.name(), entry.size);
        }
    }
    log::info!(
        "fw_cfg: QEMU firmware configuration, {} files, {}",
        count,
        if dma { "DMA" } else { "port I/O" }
    );
}

fn log_platform(platform: &Platform) {
    log::info!(
        "memory map ({} ranges, {} MiB usable):",
        platform.memory.len(),
        platform.usable_bytes() / ONE_MIB
    );
    for r in platform.memory.iter() {
        log::info!(
            "  {:#014x}-{:#014x} {}",
            r.start,
            r.end(),
            r.kind.name(KindName::Label)
        );
    }
    let console = console::current();
    match console.access {
        _ if !console::serial_present() => {}
        parkboot::platform::SerialAccess::Io { base } => {
            log::info!("console: 16550 at I/O {:#x}, {} baud", base, console.baud)
        }
        parkboot::platform::SerialAccess::Mmio { base, reg_width } => {
            log::info!(
                "console: 16550 at MMIO {:#x} (registers {} bytes apart), {} baud",
                base,
                reg_width,
                console.baud
            )
        }
    }
    if !platform.cmdline.is_empty() {
        log::info!("command line: {}", platform.cmdline.as_str());
    }
    if let Some(cbfs) = platform.cbfs {
        log::info!(
            "CBFS: offset {:#x}, size {:#x} in {:#x} bytes of boot media",
            cbfs.cbfs_offset,
            cbfs.cbfs_size,
            cbfs.boot_media_size
        );
    }
}

/// Finds the platform's ACPI tables and reads the CPUs from the MADT.
///
/// A broken RSDP or root table (XSDT/RSDT) stops parkboot: there is no table list to
/// trust. A broken table parkboot does not need is logged as a warning and kept as it
/// is. A missing or broken MADT is logged as an error and gives `None`: parkboot cannot
/// know the CPUs, so it boots without parking and kernels get the platform's RSDP.
fn find_madt(platform: &Platform) -> (u64, Option<Madt>) {
    let rsdp = platform
        .rsdp
        .or_else(|| acpi::find_rsdp(&Identity, BIOS_AREA.0, BIOS_AREA.1))
        .unwrap_or_else(|| {
            stop(format_args!(
                "no ACPI RSDP: the boot source gave none and 0xE0000-0xFFFFF has none"
            ))
        });
    let tables =
        acpi::Tables::new(&Identity, rsdp).unwrap_or_else(|e| stop(format_args!("ACPI: {e}")));
    for warning in tables.warnings() {
        log::warn!("ACPI: {warning}; not a table parkboot reads: kept as it is for the kernels");
    }
    let (address, bytes) = match tables.madt(&Identity) {
        Ok(madt) => madt,
        Err(e) => {
            madt_unusable(rsdp, format_args!("{e}"));
            return (rsdp, None);
        }
    };
    let madt = match acpi::parse_madt(bytes) {
        Ok(madt) => madt,
        Err(e) => {
            madt_unusable(rsdp, format_args!("MADT at {address:#x}: {e}"));
            return (rsdp, None);
        }
    };
    log::info!(
        "ACPI: RSDP at {:#x}, MADT at {:#x} ({} bytes)",
        rsdp,
        address,
        bytes.len()
    );
    (rsdp, Some(madt))
}

/// The error line for a MADT parkboot cannot use, and what it does instead.
fn madt_unusable(rsdp: u64, problem: core::fmt::Arguments) {
    log::error!(
        "ACPI: {problem}: parkboot cannot know the CPUs, so it parks none and boots on as with \
         park = off (kernels get the platform's RSDP {rsdp:#x} untouched)"
    );
}

fn log_cpus(madt: &Madt, boot_apic_id: u32) {
    log::info!("CPUs in the MADT: {}", madt.cpus.len());
    for cpu in madt.cpus.iter() {
        log::info!(
            "  APIC ID {:4}  ACPI UID {:4}  {}{}{}",
            cpu.apic_id,
            cpu.processor_uid,
            if cpu.enabled {
                "enabled"
            } else if cpu.online_capable {
                "online-capable"
            } else {
                "disabled"
            },
            if cpu.from_x2apic_entry {
                ", x2APIC entry"
            } else {
                ""
            },
            if cpu.apic_id == boot_apic_id {
                ", boot processor"
            } else {
                ""
            },
        );
    }
}

/// Each AP's wake latency over the rounds, then the spread of the APs' medians.
fn log_wake_latency(
    parked: &Parked,
    rounds: usize,
    samples: &[WakeSample],
    per_ap: &mut heapless::String<{ PER_AP_JSON_BYTES * MAX_PARKED_CPUS }>,
) -> Option<Spread> {
    let mut medians: heapless::Vec<u64, MAX_PARKED_CPUS> = heapless::Vec::new();
    let aps = parked
        .table
        .cpus()
        .iter()
        .filter(|s| s.state() == Some(CpuState::Parked));
    for (slot, mine) in aps.zip(samples.chunks(rounds)) {
        let (Some(ack), Some(run), Some(back)) = (
            parking::spread_ns(mine.iter().map(|s| s.ack)),
            parking::spread_ns(mine.iter().map(|s| s.run)),
            parking::spread_ns(mine.iter().map(|s| s.back)),
        ) else {
            continue;
        };
        log::info!(
            "  APIC ID {:4}: mailbox wake {} (min {}, max {}), running after {}, parked again after {}, {} wakeups",
            slot.apic_id,
            Duration(ack.median),
            Duration(ack.min),
            Duration(ack.max),
            Duration(run.median),
            Duration(back.median),
            ack.count
        );
        let _ = medians.push(ack.median);
        let first_park = slot.first_park_tsc.load(Ordering::Acquire);
        let start_ns = cpu::ticks_to_ns(first_park.saturating_sub(parked.init_tsc));
        // Each entry whole or not at all, so the summary stays JSON whatever the count.
        let mut entry: heapless::String<PER_AP_JSON_BYTES> = heapless::String::new();
        let _ = write!(
            entry,
            "{}{{\"apic_id\":{},\"init_sipi_start_ns\":{},\"sipi_start_ns\":{},\"mailbox_wake_ns\":{}}}",
            if medians.len() > 1 { "," } else { "" },
            slot.apic_id,
            start_ns,
            cpu::ticks_to_ns(first_park.saturating_sub(slot.sipi_tsc.load(Ordering::Relaxed))),
            ack.median
        );
        let _ = per_ap.push_str(&entry);
    }
    Spread::of(&mut medians)
}

fn log_park_table(parked: &Parked) {
    log::info!(
        "park table at {:#x}: {} CPUs, {} parked",
        parked.layout.table,
        parked.table.cpu_count,
        parked.table.parked_count()
    );
    for slot in parked.table.cpus() {
        log::info!(
            "  APIC ID {:4}  {:15} starts {}  wakes {}  returns {}  NMIs {}  machine checks {}",
            slot.apic_id,
            slot.state().map(CpuState::name).unwrap_or("?"),
            slot.start_count.load(Ordering::Acquire),
            slot.wake_count.load(Ordering::Acquire),
            slot.return_count.load(Ordering::Acquire),
            slot.nmi_count.load(Ordering::Acquire),
            slot.machine_check_count.load(Ordering::Acquire),
        );
        if slot.state() == Some(CpuState::Faulted) {
            log::error!(
                "  APIC ID {} faulted while parked: vector {} at RIP {:#x}",
                slot.apic_id,
                slot.fault_vector.load(Ordering::Acquire),
                slot.fault_rip.load(Ordering::Acquire)
            );
        }
    }
}

/// The NMI test: the harness injects NMIs while every AP is parked, then sends a byte
/// on the console; parkboot then checks each AP counted NMIs and is still parked.
/// Faults (or panics) on purpose, as `fault_test` asks: the exception or panic report
/// ends the run.
fn fault_test(test: FaultTest) -> ! {
    const UNMAPPED: u64 = 1 << 46;
    /// Reads `UNMAPPED` when shown: the fault arrives while the console lock is held.
    struct ReadUnmapped;
    impl fmt::Display for ReadUnmapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // SAFETY: deliberately faults; the exception handler reports it and stops.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            write!(f, "{value:#x}")
        }
    }
    /// Panics when shown: the panic comes while the console lock is held.
    struct PanicWhenShown;
    impl fmt::Display for PanicWhenShown {
        // The panic is the point: `fault_test = panic-while-logging` tests the panic path.
        #[allow(clippy::panic)]
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("fault_test: a panic while a log line is written")
        }
    }
    match test {
        FaultTest::Off => {}
        FaultTest::Unmapped => {
            log::info!(
                "fault_test: reading {:#x}, which no page table maps",
                UNMAPPED
            );
            // SAFETY: deliberately faults; the exception handler reports it and stops.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            stop(format_args!(
                "fault_test: reading {UNMAPPED:#x} did not fault (read {value:#x})"
            ));
        }
        FaultTest::WhileLogging => log::info!(
            "fault_test: reading {:#x}, which no page table maps, while this line is written: {}",
            UNMAPPED,
            ReadUnmapped
        ),
        FaultTest::PanicWhileLogging => {
            log::info!("fault_test: panicking while this line is written: {PanicWhenShown}")
        }
    }
    stop(format_args!(
        "fault_test: {} did not stop parkboot",
        test.as_str()
    ))
}

fn nmi_test(parked: &Parked) {
    const GO_AHEAD_TIMEOUT_S: u64 = 60;
    log::info!("parkboot: NMI test: waiting for NMIs; send any byte on the console when done");
    let deadline = cpu::deadline_in_ns(GO_AHEAD_TIMEOUT_S * 1_000_000_000);
    if cpu::wait_until(deadline, || console::try_read_byte().is_some()).is_none() {
        stop(format_args!(
            "NMI test: no go-ahead on the console within {GO_AHEAD_TIMEOUT_S} s"
        ));
    }
    log::info!(
        "NMI test: boot processor took {} NMIs",
        exceptions::nmi_count()
    );
    // An NMI is taken when its CPU next runs: give every AP a bounded moment to have
    // counted at least one before judging.
    const NMI_DELIVERY_TIMEOUT_NS: u64 = 1_000_000_000;
    let aps = || {
        parked
            .table
            .cpus()
            .iter()
            .filter(|s| s.apic_id != parked.table.boot_apic_id)
    };
    cpu::wait_until(cpu::deadline_in_ns(NMI_DELIVERY_TIMEOUT_NS), || {
        aps().all(|s| s.nmi_count.load(Ordering::Acquire) > 0)
    });
    for slot in aps() {
        let nmis = slot.nmi_count.load(Ordering::Acquire);
        let state = slot.state();
        if state != Some(CpuState::Parked) || nmis == 0 {
            stop(format_args!(
                "NMI test: APIC ID {} is {} after {} NMIs",
                slot.apic_id,
                state.map(CpuState::name).unwrap_or("?"),
                nmis
            ));
        }
        log::info!(
            "NMI test: APIC ID {} took {} NMIs and is still parked",
            slot.apic_id,
            nmis
        );
    }
}

fn main(source: u32, boot_info: u32) -> ! {
    console::init(SerialConsole::COM1);
    exceptions::init();
    let (hz, how) = cpu::calibrate_tsc();
    let source = if source == BootSource::Coreboot as u32 {
        BootSource::Coreboot
    } else {
        BootSource::Pvh
    };
    let (image_start, image_end) = arch::image_range();
    log::info!(
        "parkboot {} started from its {} entry (boot info at {:#x}), image {:#x}-{:#x}",
        env!("CARGO_PKG_VERSION"),
        source.name(),
        boot_info,
        image_start,
        image_end
    );
    log::info!("TSC: {} MHz (measured with {})", hz / 1_000_000, how);

    let mut platform = find_platform(source, boot_info);
    // Every line from here on (and the ones before, replayed) also goes to CBMEM.
    console::attach_cbmem_console(&platform, &Identity);
    if let Some(serial) = platform.serial {
        if serial != SerialConsole::COM1 {
            log::info!(
                "switching the console to the one the {} table names",
                source.name()
            );
            console::init(serial);
        }
    }
    if platform.source == BootSource::Pvh {
        if let Some(&vector) = Identity
            .bytes(parkboot::platform::INT15_VECTOR_ADDRESS, 4)
            .and_then(|b| <&[u8; 4]>::try_from(b).ok())
        {
            if let Some((segment, offset)) = parkboot::platform::legacy_bios_int15(vector) {
                log::info!(
                    "a legacy BIOS ran before parkboot (INT 15h at {segment:04x}:{offset:04x}): its E820 map does not know parkboot's memory"
                );
                kexec_loop::LEGACY_BIOS_INT15
                    .store((segment as u32) << 16 | offset as u32, Ordering::Relaxed);
            }
        }
    }
    let mut fw_cfg = FwCfg::probe(IoPorts).ok();
    if let Some(fw_cfg) = fw_cfg.as_mut() {
        log_fw_cfg(fw_cfg);
    }
    if platform.memory.is_empty() {
        if let Some(fw_cfg) = fw_cfg.as_mut() {
            let mut entries = [parkboot::platform::fw_cfg::E820Entry::default();
                parkboot::memory::MAX_MEMORY_REGIONS];
            if let Ok(n) = fw_cfg.e820(&mut entries) {
                for e in entries.get(..n).unwrap_or_default() {
                    let _ = platform.memory.push(e.region());
                }
                log::info!("memory map: {} ranges from fw_cfg etc/e820", n);
            }
        }
    }
    if platform.memory.is_empty() {
        stop(format_args!(
            "no memory map: the {} boot information has none",
            source.name()
        ));
    }
    log_platform(&platform);
    let cbfs = find_cbfs(&platform);
    let (config, config_source) = read_config(fw_cfg.as_mut(), cbfs.as_ref(), &platform);

    let mut memory =
        MemoryMap::new(&platform.memory).unwrap_or_else(|e| stop(format_args!("memory map: {e}")));
    if let Err(e) = memory.reserve(
        image_start,
        image_end - image_start,
        "parkboot image",
        ReportAs::Reserved,
        Lifetime::Permanent,
    ) {
        stop(format_args!(
            "parkboot's own image is not in usable RAM: {e}"
        ));
    }

    // Boot modules (PVH) are kernels and initrds parkboot may boot from in place: keep
    // every allocation off them.
    for (index, module) in platform.modules.iter().enumerate() {
        match memory.reserve(
            module.start,
            module.size.max(1),
            "boot module",
            ReportAs::Reserved,
            Lifetime::Permanent,
        ) {
            Ok(()) => log::info!(
                "boot module {}: {:#x}-{:#x} ({} bytes)",
                index,
                module.start,
                module.start + module.size,
                module.size
            ),
            Err(e) => log::warn!("boot module {index} cannot be kept: {e}"),
        }
    }

    let map_end = platform.top_of_ram().max(FOUR_GIB);
    let map = parking::build_firmware_map(&mut memory, map_end)
        .unwrap_or_else(|e| stop(format_args!("{e}")));
    identity::set_mapped_end(map_end);
    log::info!(
        "page tables: identity map of 0-{:#x} with {} pages ({} KiB of tables)",
        map.end,
        if map.gigabyte_pages { "1 GiB" } else { "2 MiB" },
        map.pages * 4
    );

    if config.fault_test != FaultTest::Off {
        fault_test(config.fault_test);
    }

    let boot_apic_id = cpu::apic_id();
    let (rsdp, madt) = find_madt(&platform);
    let madt_usable = madt.is_some();
    // Without a usable MADT no CPU is known: nothing is started, nothing parked.
    let madt = madt.unwrap_or(Madt {
        local_apic_address: 0,
        flags: 0,
        cpus: heapless::Vec::new(),
        wakeup: None,
    });
    if madt_usable {
        log_cpus(&madt, boot_apic_id);
        if !madt.cpus.iter().any(|c| c.apic_id == boot_apic_id) {
            log::warn!(
                "the boot processor (APIC ID {}) is not in the MADT",
                boot_apic_id
            );
        }
    }

    // SAFETY: startup is the summary's first user; the kexec loop takes it only after
    // `kexec_loop::start`, which this reference does not outlive.
    let summary = unsafe { kexec_loop::summary() };
    let _ = write!(
        summary,
        "{{\"entry\":\"{}\",\"config_source\":\"{}\",\"cpus\":{},\"boot_apic_id\":{},\"memory_mib\":{},\"tsc_mhz\":{},\"madt_usable\":{}",
        source.name(),
        config_source.name(),
        madt.cpus.len(),
        boot_apic_id,
        platform.usable_bytes() / ONE_MIB,
        hz / 1_000_000,
        madt_usable
    );

    if !config.park || !madt_usable {
        if config.park {
            log::info!(
                "no usable MADT: booting as with park = off, the APs are left for the kernel \
                 to start with INIT/SIPI"
            );
        } else {
            log::info!(
                "park = off: baseline mode, the APs are left for the kernel to start with INIT/SIPI"
            );
        }
        let _ = write!(summary, ",\"park\":false,\"aps_parked\":0");
        let cpus = madt.cpus.len() as u32;
        kexec_loop::start(BootState::new(
            platform, config, memory, None, rsdp, fw_cfg, cbfs, cpus, &map,
        ));
    }

    let wait = parking::choose_park_wait(&config);
    let parked = parking::park_all(
        &mut memory,
        &map,
        &madt.cpus,
        boot_apic_id,
        config.ap_timeout_ms,
        wait,
        config.x2apic,
    )
    .unwrap_or_else(|e| stop(format_args!("parking: {e}")));
    log::info!(
        "parkboot: parked {} of {} APs in {} (park table {:#x}, mailbox {:#x}, ResetVector {:#x}, waiting with {})",
        parked.aps_parked,
        parked.aps_expected,
        Duration(parked.park_all_ns),
        parked.layout.table,
        parked.mailbox_address,
        parked.reset_vector,
        wait
    );

    // Hand kernels a MADT that has the wakeup mailbox, emitted afresh before every boot
    // from a private copy of the platform's, the CPUs that are not parked withheld.
    let mut kernel_tables = KernelTables::new(
        &mut memory,
        rsdp,
        parked.mailbox_address,
        parked.reset_vector,
    )
    .unwrap_or_else(|e| stop(format_args!("kernels' ACPI tables: {e}")));
    let kernel_rsdp = kernel_tables
        .emit(&parked)
        .unwrap_or_else(|e| stop(format_args!("kernels' ACPI tables: {e}")))
        .rsdp;

    // Start latency of each AP: from its INIT to its first arrival in the park loop.
    let mut start_ns: heapless::Vec<u64, MAX_PARKED_CPUS> = parked
        .table
        .cpus()
        .iter()
        .map(|s| s.first_park_tsc.load(Ordering::Acquire))
        .filter(|&first_park| first_park != 0)
        .map(|first_park| cpu::ticks_to_ns(first_park.saturating_sub(parked.init_tsc)))
        .collect();
    let start_spread = Spread::of(&mut start_ns);

    if config.nmi_test {
        nmi_test(&parked);
    }

    let mut wake_spread = None;
    let mut per_ap: heapless::String<{ PER_AP_JSON_BYTES * MAX_PARKED_CPUS }> =
        heapless::String::new();
    if config.self_check && parked.aps_parked > 0 {
        let rounds = config.self_check_rounds;
        log::info!(
            "self-check: {} rounds of mailbox wakeups, then one wake-all",
            rounds
        );
        let count = parked.aps_parked as u64 * rounds as u64;
        let bytes = count * core::mem::size_of::<WakeSample>() as u64;
        let buffer = memory
            .allocate(AllocationRequest {
                size: bytes.max(1),
                align: 4096,
                min: ONE_MIB,
                max: u64::MAX,
                name: "self-check samples",
                report_as: ReportAs::Usable,
                lifetime: Lifetime::Boot,
            })
            .unwrap_or_else(|e| stop(format_args!("self-check: {e}")));
        let region = memory
            .region(buffer, bytes)
            .unwrap_or_else(|e| stop(format_args!("self-check: {e}")));
        // SAFETY: reserved just above for the samples alone, RAM the identity map covers.
        let region = unsafe { region.bytes_mut() };
        // SAFETY: WakeSample is plain integers, valid for any bit pattern.
        let (_, samples, _) = unsafe { region.align_to_mut::<WakeSample>() };
        if samples.len() != count as usize {
            stop(format_args!(
                "self-check: the samples' {bytes} bytes at {buffer:#x} hold {} samples, not {count}",
                samples.len()
            ));
        }
        samples.fill(WakeSample::default());
        if let Err(e) = parking::self_check(&parked, rounds, samples) {
            log_park_table(&parked);
            stop(format_args!("self-check: {e}"));
        }
        wake_spread = log_wake_latency(&parked, rounds as usize, samples, &mut per_ap);
        log::info!("self-check: every parked AP woke through the mailbox {} times and came back through the ResetVector; wake-all woke them all", rounds);
    }
    log_park_table(&parked);

    let parked_now = parked.table.parked_count();
    let faults = parked
        .table
        .cpus()
        .iter()
        .filter(|s| s.state() == Some(CpuState::Faulted))
        .count();
    let restarts = parked
        .table
        .cpus()
        .iter()
        .filter(|s| s.start_count.load(Ordering::Acquire) > 1)
        .count();
    let _ = write!(
        summary,
        ",\"park\":true,\"aps\":{},\"aps_parked\":{},\"park_table\":\"{:#x}\",\"park_all_ns\":{},\"park_wait\":\"{}\"",
        parked.aps_expected,
        parked_now,
        parked.layout.table,
        parked.park_all_ns,
        wait.mode.as_str()
    );
    let _ = write!(
        summary,
        ",\"aps_beyond_table\":{},\"beyond_table\":\"{}\"",
        parked.beyond_table.len(),
        parkboot::parking::layout::IdRanges(&parked.beyond_table)
    );
    if let Some(s) = start_spread {
        let _ = write!(summary, ",\"init_sipi_start_ns\":{}", s.json());
    }
    if let Some(s) = wake_spread {
        let _ = write!(summary, ",\"mailbox_wake_ns\":{}", s.json());
    }
    let _ = write!(summary, ",\"per_ap\":[{}]", per_ap);
    let _ = write!(
        summary,
        ",\"self_check_rounds\":{}",
        if config.self_check {
            config.self_check_rounds
        } else {
            0
        }
    );

    // A CPU that never arrived (or faulted) is reported above and left out; the
    // kernels get every CPU that is parked.
    if parked_now != parked.aps_expected || faults > 0 {
        log::warn!(
            "{} of {} APs are parked ({} faulted); booting on without the others",
            parked_now,
            parked.aps_expected,
            faults
        );
    }
    if restarts > 0 {
        stop(format_args!(
            "{restarts} APs arrived from INIT-SIPI-SIPI more than once"
        ));
    }
    // CPUs beyond the park table were never started: kernels do not get them.
    let cpus = (madt.cpus.len() - parked.beyond_table.len()) as u32;
    let mut state = BootState::new(
        platform,
        config,
        memory,
        Some(parked),
        kernel_rsdp,
        fw_cfg,
        cbfs,
        cpus,
        &map,
    );
    state.kernel_tables = Some(kernel_tables);
    kexec_loop::start(state)
}
