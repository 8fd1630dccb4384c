use super::*;
use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

/// A software fw_cfg device: items by key, a directory built from named files, and
/// both access methods.
struct FakeDevice {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    /// Whether the DMA register exists (feature bit and signature).
    dma: bool,
    /// Whether the DMA register reads the right signature (when `dma`).
    dma_signature_ok: bool,
    /// No device at all: every port read returns 0xff, like an empty I/O port.
    absent: bool,
    selected: u16,
    offset: usize,
    /// DMA transfers on this key report an error.
    fail_key: Option<u16>,
    /// DMA transfers never complete.
    stuck: bool,
    /// Bytes read through the data port.
    port_bytes: usize,
    /// DMA transfers carried out, and how many of them were skips.
    dma_transfers: usize,
    dma_skips: usize,
}

impl FakeDevice {
    fn new(dma: bool) -> Self {
        let mut dev = FakeDevice {
            items: BTreeMap::new(),
            files: Vec::new(),
            dma,
            dma_signature_ok: true,
            absent: false,
            selected: 0,
            offset: 0,
            fail_key: None,
            stuck: false,
            port_bytes: 0,
            dma_transfers: 0,
            dma_skips: 0,
        };
        let features = FW_CFG_VERSION | if dma { FW_CFG_VERSION_DMA } else { 0 };
        dev.items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        dev.items.insert(FW_CFG_ID, features.to_le_bytes().to_vec());
        dev.rebuild_dir();
        dev
    }

    fn item(mut self, key: u16, data: &[u8]) -> Self {
        self.items.insert(key, data.to_vec());
        self
    }

    fn item_u32(self, key: u16, value: u32) -> Self {
        self.item(key, &value.to_le_bytes())
    }

    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let key = FW_CFG_FILE_FIRST + self.files.len() as u16;
        self.items.insert(key, data.to_vec());
        self.files.push((name.to_string(), key));
        self.rebuild_dir();
        self
    }

    fn rebuild_dir(&mut self) {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (name, key) in &self.files {
            let size = self.items[key].len() as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FW_CFG_MAX_FILE_PATH];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        self.items.insert(FW_CFG_FILE_DIR, dir);
    }

    fn byte(&self, at: usize) -> u8 {
        self.items
            .get(&self.selected)
            .and_then(|d| d.get(at).copied())
            .unwrap_or(0)
    }
}

impl FwCfgPorts for FakeDevice {
    fn select(&mut self, key: u16) {
        self.selected = key;
        self.offset = 0;
    }

    fn read_data(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = if self.absent {
                0xff
            } else {
                self.byte(self.offset)
            };
            self.offset += 1;
        }
        self.port_bytes += buf.len();
    }

    fn dma_signature(&mut self) -> u64 {
        if self.dma && self.dma_signature_ok {
            FW_CFG_DMA_SIGNATURE
        } else {
            u64::MAX
        }
    }

    unsafe fn dma(&mut self, access_phys: u64) {
        assert!(self.dma, "DMA used on a device without DMA");
        // In host tests the "physical address" is the pointer.
        let access = core::ptr::with_exposed_provenance_mut::<FwCfgDmaAccess>(access_phys as usize);
        // SAFETY: the driver passes the address of its live access structure.
        let request = unsafe { access.read() };
        let control = u32::from_be(request.control);
        let length = u32::from_be(request.length) as usize;
        let address = u64::from_be(request.address);
        self.dma_transfers += 1;
        if self.stuck {
            return;
        }
        if control & FW_CFG_DMA_CTL_SELECT != 0 {
            self.select((control >> FW_CFG_DMA_CTL_SELECT_SHIFT) as u16);
        }
        let status = if self.fail_key == Some(self.selected) {
            FW_CFG_DMA_CTL_ERROR
        } else if control & FW_CFG_DMA_CTL_READ != 0 {
            let dest = core::ptr::with_exposed_provenance_mut::<u8>(address as usize);
            for i in 0..length {
                let b = self.byte(self.offset + i);
                // SAFETY: the driver asked for `length` bytes into its own buffer.
                unsafe { dest.add(i).write(b) };
            }
            self.offset += length;
            0
        } else if control & FW_CFG_DMA_CTL_SKIP != 0 {
            self.dma_skips += 1;
            self.offset += length;
            0
        } else {
            0
        };
        // SAFETY: as for the read above.
        unsafe { (*access).control = status.to_be() };
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn both_modes() -> [bool; 2] {
    [true, false]
}

#[test]
fn probe_finds_device_with_and_without_dma() {
    let fw = FwCfg::probe(FakeDevice::new(true)).unwrap();
    assert!(fw.has_dma());
    assert_eq!(fw.features(), FW_CFG_VERSION | FW_CFG_VERSION_DMA);
    let fw = FwCfg::probe(FakeDevice::new(false)).unwrap();
    assert!(!fw.has_dma());
    assert_eq!(fw.features(), FW_CFG_VERSION);
}

#[test]
fn probe_without_dma_signature_uses_ports() {
    let mut dev = FakeDevice::new(true).file("opt/x", b"hello");
    dev.dma_signature_ok = false;
    let mut fw = FwCfg::probe(dev).unwrap();
    assert!(!fw.has_dma());
    let mut buf = [0u8; 5];
    assert_eq!(fw.read_file("opt/x", &mut buf).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    assert_eq!(fw.into_ports().dma_transfers, 0);
}

#[test]
fn probe_reports_missing_device() {
    let mut dev = FakeDevice::new(false);
    dev.absent = true;
    let err = FwCfg::probe(dev).err().unwrap();
    assert_eq!(
        err,
        FwCfgError::NoDevice {
            signature: [0xff; 4]
        }
    );
    assert_eq!(
        err.to_string(),
        "no QEMU fw_cfg device: the signature item reads ff ff ff ff, expected \"QEMU\""
    );
    let dev = FakeDevice::new(false).item(FW_CFG_SIGNATURE, b"BOCH");
    assert!(matches!(
        FwCfg::probe(dev),
        Err(FwCfgError::NoDevice { signature }) if &signature == b"BOCH"
    ));
}

#[test]
fn lists_directory() {
    for dma in both_modes() {
        let mut fw = FwCfg::probe(
            FakeDevice::new(dma)
                .file("etc/e820", &[0; 40])
                .file("opt/parkboot/config", b"park = on\n")
                .file("opt/parkboot/kernel", &pattern(3000, 1)),
        )
        .unwrap();
        let files: Vec<_> = fw.files().unwrap().map(|f| f.unwrap()).collect();
        let summary: Vec<_> = files
            .iter()
            .map(|f| (f.name().to_string(), f.size, f.select))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("etc/e820".to_string(), 40, FW_CFG_FILE_FIRST),
                ("opt/parkboot/config".to_string(), 10, FW_CFG_FILE_FIRST + 1),
                (
                    "opt/parkboot/kernel".to_string(),
                    3000,
                    FW_CFG_FILE_FIRST + 2
                ),
            ],
            "dma={dma}"
        );
        assert_eq!(files[1].name_bytes(), b"opt/parkboot/config");
    }
}

#[test]
fn empty_directory_and_absurd_count() {
    let mut fw = FwCfg::probe(FakeDevice::new(true)).unwrap();
    assert_eq!(fw.files().unwrap().count(), 0);
    // A count beyond the key space is clamped rather than trusted.
    let dev = FakeDevice::new(true).item(FW_CFG_FILE_DIR, &u32::MAX.to_be_bytes());
    let mut fw = FwCfg::probe(dev).unwrap();
    assert_eq!(fw.files().unwrap().count(), FW_CFG_MAX_FILES as usize);
}

#[test]
fn finds_by_name() {
    for dma in both_modes() {
        let mut fw = FwCfg::probe(
            FakeDevice::new(dma)
                .file("opt/a", b"1")
                .file("opt/ab", b"22")
                .file("opt/abc", b"333"),
        )
        .unwrap();
        let entry = fw.find("opt/ab").unwrap().unwrap();
        assert_eq!((entry.size, entry.select), (2, FW_CFG_FILE_FIRST + 1));
        assert_eq!(fw.find("opt/abcd").unwrap(), None);
        assert_eq!(fw.find("opt").unwrap(), None);
        assert_eq!(
            fw.find_required("opt/nope").unwrap_err().to_string(),
            "fw_cfg has no file 'opt/nope'"
        );
    }
}

#[test]
fn reads_file_with_dma() {
    let data = pattern(5000, 7);
    let mut fw = FwCfg::probe(FakeDevice::new(true).file("opt/parkboot/kernel", &data)).unwrap();
    let mut buf = vec![0u8; 8192];
    let before = fw.ports.port_bytes;
    assert_eq!(fw.read_file("opt/parkboot/kernel", &mut buf).unwrap(), 5000);
    assert_eq!(&buf[..5000], &data[..]);
    assert!(
        buf[5000..].iter().all(|&b| b == 0),
        "read past the file's end"
    );
    let dev = fw.into_ports();
    assert_eq!(
        dev.port_bytes, before,
        "DMA mode must not use the data port"
    );
    assert!(dev.dma_transfers > 0);
}

#[test]
fn reads_file_without_dma() {
    let data = pattern(777, 3);
    let mut fw = FwCfg::probe(FakeDevice::new(false).file("opt/f", &data)).unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(fw.read_file("opt/f", &mut buf).unwrap(), 777);
    assert_eq!(&buf[..777], &data[..]);
    assert_eq!(fw.into_ports().dma_transfers, 0);
}

#[test]
fn reads_at_offset_in_pieces() {
    let data = pattern(10_000, 9);
    for dma in both_modes() {
        let mut fw = FwCfg::probe(FakeDevice::new(dma).file("opt/big", &data)).unwrap();
        let entry = fw.find("opt/big").unwrap().unwrap();
        let mut out = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = fw
                .read_entry_at(&entry, out.len() as u64, &mut piece)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
        }
        assert_eq!(out, data, "dma={dma}");
        let mut small = [0u8; 3];
        assert_eq!(fw.read_entry_at(&entry, 1234, &mut small).unwrap(), 3);
        assert_eq!(&small, &data[1234..1237]);
        assert_eq!(fw.read_entry_at(&entry, 9_999, &mut small).unwrap(), 1);
        assert_eq!(fw.read_entry_at(&entry, 20_000, &mut small).unwrap(), 0);
        let dev = fw.into_ports();
        if dma {
            assert!(dev.dma_skips > 0, "offset reads must skip by DMA");
        }
    }
}

#[test]
fn read_by_key_at_offset() {
    for dma in both_modes() {
        let mut fw = FwCfg::probe(FakeDevice::new(dma).item(0x30, b"abcdefgh")).unwrap();
        let mut buf = [0u8; 3];
        fw.read_at_offset(0x30, 5, &mut buf).unwrap();
        assert_eq!(&buf, b"fgh");
        fw.read(0x30, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
    }
}

#[test]
fn buffer_too_small_names_item_and_sizes() {
    for dma in both_modes() {
        let mut fw =
            FwCfg::probe(FakeDevice::new(dma).file("opt/parkboot/kernel", &[1; 100])).unwrap();
        let mut buf = [0u8; 99];
        let err = fw.read_file("opt/parkboot/kernel", &mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fw_cfg item 'opt/parkboot/kernel' is 100 bytes but the buffer holds only 99"
        );
        assert!(
            buf.iter().all(|&b| b == 0),
            "nothing read into a short buffer"
        );
    }
}

#[test]
fn dma_error_bit_is_reported() {
    let mut dev = FakeDevice::new(true)
        .file("opt/a", b"x")
        .file("opt/bad", b"yy");
    dev.fail_key = Some(FW_CFG_FILE_FIRST + 1);
    let mut fw = FwCfg::probe(dev).unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(fw.read_file("opt/a", &mut buf).unwrap(), 1);
    let err = fw.read_file("opt/bad", &mut buf).unwrap_err();
    assert_eq!(err, FwCfgError::DmaFailed { select: 0x21 });
    assert_eq!(
        err.to_string(),
        "fw_cfg DMA transfer on item 0x0021 failed (device reported an error)"
    );
    // An error while walking the directory ends the walk with that error.
    let mut dev = FakeDevice::new(true).file("opt/a", b"x");
    dev.fail_key = Some(FW_CFG_FILE_DIR);
    let mut fw = FwCfg::probe(dev).unwrap();
    assert!(matches!(
        fw.find("opt/a"),
        Err(FwCfgError::DmaFailed { .. })
    ));
}

#[test]
fn stuck_dma_times_out() {
    let mut dev = FakeDevice::new(true).file("opt/a", b"x");
    dev.stuck = true;
    let mut fw = FwCfg::probe(dev).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        fw.read(FW_CFG_FILE_FIRST, &mut buf),
        Err(FwCfgError::DmaTimeout { select: 0x20 })
    );
}

/// A fake bzImage: `setup_sectors` 512-byte setup sectors after the boot sector,
/// "HdrS" where the boot protocol puts it, then the protected-mode code.
fn fake_bzimage(kernel_len: usize) -> (Vec<u8>, usize) {
    let setup_len = 5 * 512;
    let mut image = pattern(setup_len + kernel_len, 42);
    image[LINUX_SETUP_HEADER_MAGIC_OFFSET..LINUX_SETUP_HEADER_MAGIC_OFFSET + 4]
        .copy_from_slice(b"HdrS");
    (image, setup_len)
}

/// The items QEMU creates for a Linux `-kernel` (before QEMU 10).
fn split_kernel(dev: FakeDevice, image: &[u8], setup_len: usize) -> FakeDevice {
    let (setup, kernel) = image.split_at(setup_len);
    dev.item_u32(FW_CFG_SETUP_SIZE, setup.len() as u32)
        .item(FW_CFG_SETUP_DATA, setup)
        .item_u32(FW_CFG_KERNEL_SIZE, kernel.len() as u32)
        .item(FW_CFG_KERNEL_DATA, kernel)
}

#[test]
fn reassembles_kernel_image() {
    let (image, setup_len) = fake_bzimage(6000);
    for dma in both_modes() {
        let mut fw = FwCfg::probe(split_kernel(FakeDevice::new(dma), &image, setup_len)).unwrap();
        assert_eq!(fw.kernel_size().unwrap(), 6000);
        assert_eq!(fw.setup_size().unwrap() as usize, setup_len);
        assert_eq!(fw.kernel_image_size().unwrap(), image.len() as u64);
        let mut buf = vec![0u8; image.len()];
        assert_eq!(fw.read_kernel_image(&mut buf).unwrap(), image.len());
        assert_eq!(buf, image, "dma={dma}");
        let mut part = vec![0u8; 6000];
        assert_eq!(fw.read_kernel(&mut part).unwrap(), 6000);
        assert_eq!(&part[..], &image[setup_len..]);
        let mut short = vec![0u8; image.len() - 1];
        assert_eq!(
            fw.read_kernel_image(&mut short).unwrap_err().to_string(),
            format!(
                "fw_cfg item 'kernel' is {} bytes but the buffer holds only {}",
                image.len(),
                image.len() - 1
            )
        );
    }
}

#[test]
fn prefers_unmodified_kernel_file() {
    let (image, setup_len) = fake_bzimage(3000);
    let mut patched = image.clone();
    patched[0x210] = 0xb0; // what QEMU writes as the boot loader type
    let dev =
        split_kernel(FakeDevice::new(true), &patched, setup_len).file(BOOT_KERNEL_FILE, &image);
    let mut fw = FwCfg::probe(dev).unwrap();
    let mut buf = vec![0u8; image.len()];
    assert_eq!(fw.read_kernel_image(&mut buf).unwrap(), image.len());
    assert_eq!(buf, image);
}

#[test]
fn kernel_that_qemu_loaded_itself_is_refused() {
    // A PVH ELF -kernel: QEMU sets the size and the first header bytes as "setup"
    // but no kernel data.
    let elf = pattern(8192, 1);
    let dev = FakeDevice::new(true)
        .item_u32(FW_CFG_KERNEL_SIZE, 50_000)
        .item_u32(FW_CFG_SETUP_SIZE, 8192)
        .item(FW_CFG_SETUP_DATA, &elf);
    let mut fw = FwCfg::probe(dev).unwrap();
    let mut buf = vec![0u8; 60_000];
    assert_eq!(
        fw.read_kernel_image(&mut buf),
        Err(FwCfgError::KernelNotSplit)
    );
}

#[test]
fn absent_kernel_and_initrd() {
    let mut fw = FwCfg::probe(FakeDevice::new(true)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(fw.kernel_size().unwrap(), 0);
    assert_eq!(
        fw.read_kernel_image(&mut buf).unwrap_err().to_string(),
        "fw_cfg has no kernel: QEMU was started without -kernel"
    );
    assert!(matches!(
        fw.read_kernel(&mut buf),
        Err(FwCfgError::Absent { .. })
    ));
    assert_eq!(
        fw.read_initrd(&mut buf).unwrap_err().to_string(),
        "fw_cfg has no initrd: QEMU was started without -initrd"
    );
    assert_eq!(fw.read_cmdline(&mut buf).unwrap(), "");
}

#[test]
fn reads_initrd_cmdline_and_cpus() {
    let initrd = pattern(1500, 5);
    for dma in both_modes() {
        let dev = FakeDevice::new(dma)
            .item_u32(FW_CFG_INITRD_SIZE, initrd.len() as u32)
            .item(FW_CFG_INITRD_DATA, &initrd)
            .item_u32(FW_CFG_CMDLINE_SIZE, 14)
            .item(FW_CFG_CMDLINE_DATA, b"console=ttyS0\0")
            .item(FW_CFG_NB_CPUS, &4u16.to_le_bytes())
            .item(FW_CFG_MAX_CPUS, &8u16.to_le_bytes());
        let mut fw = FwCfg::probe(dev).unwrap();
        let mut buf = vec![0u8; 2000];
        assert_eq!(fw.read_initrd(&mut buf).unwrap(), 1500);
        assert_eq!(&buf[..1500], &initrd[..]);
        assert_eq!(fw.read_cmdline(&mut buf).unwrap(), "console=ttyS0");
        assert_eq!(fw.nb_cpus().unwrap(), 4);
        assert_eq!(fw.max_cpus().unwrap(), 8);
    }
}

fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(address, length, kind) in entries {
        out.extend_from_slice(&address.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
    }
    out
}

#[test]
fn parses_e820() {
    let map = [
        (0, 0x9fc00, E820_RAM),
        (0x9fc00, 0x400, E820_RESERVED),
        (0x100000, 0x7ff00000, E820_RAM),
        (0xfeffc000, 0x4000, E820_RESERVED),
        (0x1_0000_0000, 0x4000_0000, E820_RAM),
    ];
    for dma in both_modes() {
        let dev = FakeDevice::new(dma)
            .file("opt/other", b"zz")
            .file(E820_FILE, &e820_bytes(&map));
        let mut fw = FwCfg::probe(dev).unwrap();
        let mut out = [E820Entry::default(); 8];
        let n = fw.e820(&mut out).unwrap();
        assert_eq!(n, map.len());
        for (got, want) in out.iter().zip(map.iter()) {
            assert_eq!((got.address, got.length, got.kind), *want, "dma={dma}");
        }
        assert_eq!(
            out[2].region(),
            MemoryRegion {
                start: 0x100000,
                size: 0x7ff00000,
                kind: MemoryKind::Usable
            }
        );
        assert_eq!(out[1].region().kind, MemoryKind::Reserved);
        let mut small = [E820Entry::default(); 4];
        assert_eq!(
            fw.e820(&mut small).unwrap_err().to_string(),
            "fw_cfg item 'etc/e820' has 5 entries but the table holds only 4"
        );
    }
}

#[test]
fn e820_errors() {
    let mut fw = FwCfg::probe(FakeDevice::new(true)).unwrap();
    let mut out = [E820Entry::default(); 4];
    assert_eq!(
        fw.e820(&mut out).unwrap_err().to_string(),
        "fw_cfg has no file 'etc/e820'"
    );
    let mut fw = FwCfg::probe(FakeDevice::new(true).file(E820_FILE, &[0; 30])).unwrap();
    assert!(matches!(
        fw.e820(&mut out),
        Err(FwCfgError::Malformed { .. })
    ));
}

#[test]
fn odd_file_names() {
    // A name filling all 56 bytes without a NUL, and one with invalid UTF-8.
    let long = "x".repeat(FW_CFG_MAX_FILE_PATH);
    let mut dev = FakeDevice::new(false)
        .file(&long, b"1")
        .file("opt/ok", b"2");
    let dir = dev.items.get_mut(&FW_CFG_FILE_DIR).unwrap();
    dir[4 + FW_CFG_FILE_SIZE + 8 + 3] = 0xff; // "opt" + 0xff in the second name
    let mut fw = FwCfg::probe(dev).unwrap();
    let files: Vec<_> = fw.files().unwrap().map(|f| f.unwrap()).collect();
    assert_eq!(files[0].name(), long);
    assert_eq!(files[1].name(), "opt");
    assert_eq!(files[1].name_bytes(), b"opt\xffok");
    assert_eq!(fw.find("opt/ok").unwrap(), None);
}
