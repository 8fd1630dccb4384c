//! What the fuzz targets share: the parser calls, each on one input, with the fakes
//! that parsers reading through [`PhysicalMemory`] or fw_cfg ports need.

use parkboot::platform::acpi;
use parkboot::platform::{BootSource, PhysicalMemory, Platform};
use parkboot::config;
use parkboot::kernels::{gzip, linux, multiboot2};
use parkboot::platform::{coreboot, fw_cfg, pvh};

/// Where the input sits in the fake physical memory.
pub const BASE: u64 = 0x10_0000;

/// `data` at [`BASE`], nothing anywhere else.
pub struct Memory<'a>(pub &'a [u8]);

impl PhysicalMemory for Memory<'_> {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(BASE)?).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }
}

pub fn coreboot_table(data: &[u8]) {
    let mut platform = Platform::new(BootSource::Coreboot, BASE);
    let _ = coreboot::parse(&Memory(data), BASE, &mut platform);
}

pub fn pvh_start_info(data: &[u8]) {
    let mut platform = Platform::new(BootSource::Pvh, BASE);
    let _ = pvh::parse(&Memory(data), BASE, &mut platform);
}

/// A port-I/O fw_cfg device whose file directory is the input.
struct Device<'a> {
    directory: &'a [u8],
    selected: u16,
    offset: usize,
}

impl fw_cfg::FwCfgPorts for Device<'_> {
    fn select(&mut self, key: u16) {
        self.selected = key;
        self.offset = 0;
    }
    fn read_data(&mut self, buf: &mut [u8]) {
        let item: &[u8] = match self.selected {
            fw_cfg::FW_CFG_SIGNATURE => b"QEMU",
            fw_cfg::FW_CFG_ID => &[1, 0, 0, 0],
            fw_cfg::FW_CFG_FILE_DIR => self.directory,
            _ => b"park = on\n",
        };
        for b in buf.iter_mut() {
            *b = item.get(self.offset).copied().unwrap_or(0);
            self.offset += 1;
        }
    }
    fn dma_signature(&mut self) -> u64 {
        0
    }
    unsafe fn dma(&mut self, _access_phys: u64) {
        unreachable!("the device offers no DMA")
    }
}

pub fn fw_cfg_directory(data: &[u8]) {
    let device = Device {
        directory: data,
        selected: 0,
        offset: 0,
    };
    let Ok(mut cfg) = fw_cfg::FwCfg::probe(device) else {
        return;
    };
    if let Ok(Some(entry)) = cfg.find("opt/parkboot/config") {
        let mut buf = [0u8; 64];
        let _ = cfg.read_entry(&entry, &mut buf);
    }
}

/// RSDP at [`BASE`], and whatever tables it points to inside the input.
pub fn acpi_tables(data: &[u8]) {
    let mem = Memory(data);
    if let Ok(tables) = acpi::Tables::new(&mem, BASE) {
        if let Some(madt) = tables.table_bytes(&mem, acpi::Signature::MADT) {
            let _ = acpi::parse_madt(madt);
        }
        let mut out = vec![0u8; 8192];
        let _ = acpi::rewrite_tables(&mem, BASE, &mut out, 0x4000_0000, 0x3ffd_7000, 0x3ffc_c000);
    }
}

pub fn madt(data: &[u8]) {
    let _ = acpi::parse_madt(data);
    let mut out = vec![0u8; data.len() + 64];
    let _ = acpi::madt_with_wakeup(data, &mut out, 0x3ffd_7000, 0x3ffc_c000, &[1, 7]);
}

pub fn bzimage(data: &[u8]) {
    if let Ok(kernel) = linux::parse(data) {
        assert!(kernel.protected_mode.end <= data.len());
        let _ = kernel.kernel_version.mailbox_handback();
        let mut page = [0u8; linux::BOOT_PARAMS_SIZE];
        let args = linux::BootArgs {
            cmdline_addr: 0x2_0000,
            cmdline_len: 16,
            initrd: Some((0x800_0000, 0x1000)),
            rsdp: 0xf_5250,
            e820: &[(0, 0x9_fc00, 1), (BASE, 0x3ff0_0000, 1)],
        };
        let _ = linux::build_boot_params(&kernel, data, &mut page, &args);
    }
}

pub fn multiboot2_plan(data: &[u8]) {
    if let Ok(plan) = multiboot2::plan(data) {
        for segment in plan.segments.iter() {
            assert!(segment.file_offset + segment.file_size <= data.len());
        }
    }
}

pub fn gzip(data: &[u8]) {
    match gzip::inflated_size(data) {
        Ok(size) => {
            let mut out = vec![0u8; size];
            assert_eq!(gzip::inflate(data, &mut out), Ok(size));
        }
        Err(_) => {
            let mut out = vec![0u8; 1 << 16];
            assert!(gzip::inflate(data, &mut out).is_err());
        }
    }
}

pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut config) = config::parse(&text) {
        let _ = config.apply_cmdline(&text);
    }
}

/// Walks a CBFS image and reads every file (hash check, LZMA, LZ4).
pub fn cbfs(data: &[u8]) {
    const MAX_OUTPUT: u64 = 1 << 20;
    let cbfs = parkboot::platform::cbfs::Cbfs::from_bytes(data, 0);
    for file in cbfs.files().map_while(Result::ok) {
        if let Ok(size) = file.size() {
            let mut out = vec![0u8; size.min(MAX_OUTPUT) as usize];
            let _ = file.read_into(&mut out);
        }
    }
}
