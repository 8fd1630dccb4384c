//! A coreboot table writer, the inverse of [`super::parse`]: host tests and the
//! bare-metal test loader (`cbshim`) use it to stand in for coreboot.

use super::*;

/// Writes a complete, checksummed coreboot table into a caller's buffer, laid out as
/// coreboot does, so tests and the bare-metal test loader can stand in for coreboot.
///
/// Methods chain; the first error is kept and returned by [`TableBuilder::finish`].
pub struct TableBuilder<'b> {
    buf: &'b mut [u8],
    /// Bytes the table takes so far, header included (may exceed `buf` after an
    /// overflow, so that the error says how much was needed).
    used: usize,
    entries: u32,
    error: Option<CorebootError>,
}

impl<'b> TableBuilder<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        TableBuilder {
            buf,
            used: LbHeader::SIZE,
            entries: 0,
            error: None,
        }
    }

    /// Space for the next record, zeroed; `None` when it does not fit.
    fn reserve(&mut self, size: usize) -> Option<&mut [u8]> {
        let start = self.used;
        self.used = self.used.saturating_add(size);
        self.entries = self.entries.saturating_add(1);
        let slot = self.buf.get_mut(start..self.used)?;
        slot.fill(0);
        Some(slot)
    }

    fn fail(&mut self, error: CorebootError) {
        self.error.get_or_insert(error);
    }

    /// An LB_TAG_MEMORY record with `regions`.
    pub fn memory(&mut self, regions: &[MemoryRegion]) -> &mut Self {
        let size = LbRecord::SIZE.saturating_add(regions.len().saturating_mul(LbMemoryRange::SIZE));
        let Ok(size32) = u32::try_from(size) else {
            self.fail(CorebootError::TableTooLarge { table_bytes: size });
            return self;
        };
        if let Some(slot) = self.reserve(size) {
            LbRecord {
                tag: LB_TAG_MEMORY,
                size: size32,
            }
            .write_to(slot);
            let entries = slot.get_mut(LbRecord::SIZE..).unwrap_or(&mut []);
            for (region, out) in regions
                .iter()
                .zip(entries.chunks_exact_mut(LbMemoryRange::SIZE))
            {
                LbMemoryRange {
                    start: LbUint64::new(region.start),
                    size: LbUint64::new(region.size),
                    r#type: lb_memory_type(region.kind),
                }
                .write_to(out);
            }
        }
        self
    }

    /// A full-size LB_TAG_SERIAL record.
    pub fn serial(&mut self, serial: &SerialConsole) -> &mut Self {
        let (kind, baseaddr, regwidth) = match serial.access {
            SerialAccess::Io { base } => (
                LB_SERIAL_TYPE_IO_MAPPED,
                u32::from(base),
                IO_UART_REGISTER_WIDTH,
            ),
            SerialAccess::Mmio { base, reg_width } => match u32::try_from(base) {
                Ok(base) => (LB_SERIAL_TYPE_MEMORY_MAPPED, base, reg_width),
                Err(_) => {
                    self.fail(CorebootError::SerialBaseTooHigh { base });
                    return self;
                }
            },
        };
        let record = LbSerial {
            tag: LB_TAG_SERIAL,
            size: LbSerial::SIZE as u32,
            r#type: kind,
            baseaddr,
            baud: serial.baud,
            regwidth,
            input_hertz: serial.input_hz,
            uart_pci_addr: 0,
        };
        if let Some(slot) = self.reserve(LbSerial::SIZE) {
            record.write_to(slot);
        }
        self
    }

    /// An LB_TAG_ACPI_RSDP record.
    pub fn acpi_rsdp(&mut self, rsdp: u64) -> &mut Self {
        if let Some(slot) = self.reserve(LbAcpiRsdp::SIZE) {
            LbAcpiRsdp {
                tag: LB_TAG_ACPI_RSDP,
                size: LbAcpiRsdp::SIZE as u32,
                rsdp_pointer: LbUint64::new(rsdp),
            }
            .write_to(slot);
        }
        self
    }

    /// An LB_TAG_CBMEM_CONSOLE record naming the console header at `console`.
    pub fn cbmem_console(&mut self, console: u64) -> &mut Self {
        if let Some(slot) = self.reserve(LbCbmemRef::SIZE) {
            LbCbmemRef {
                tag: LB_TAG_CBMEM_CONSOLE,
                size: LbCbmemRef::SIZE as u32,
                cbmem_addr: LbUint64::new(console),
            }
            .write_to(slot);
        }
        self
    }

    /// An LB_TAG_BOOT_MEDIA_PARAMS record.
    pub fn boot_media(&mut self, cbfs: &CbfsLocation) -> &mut Self {
        if let Some(slot) = self.reserve(LbBootMediaParams::SIZE) {
            LbBootMediaParams {
                tag: LB_TAG_BOOT_MEDIA_PARAMS,
                size: LbBootMediaParams::SIZE as u32,
                fmap_offset: LbUint64::new(cbfs.fmap_offset),
                cbfs_offset: LbUint64::new(cbfs.cbfs_offset),
                cbfs_size: LbUint64::new(cbfs.cbfs_size),
                boot_media_size: LbUint64::new(cbfs.boot_media_size),
            }
            .write_to(slot);
        }
        self
    }

    /// An LB_TAG_FORWARD record pointing at the table header at `table`.
    pub fn forward(&mut self, table: u64) -> &mut Self {
        if let Some(slot) = self.reserve(LbForward::SIZE) {
            LbForward {
                tag: LB_TAG_FORWARD,
                size: LbForward::SIZE as u32,
                forward: LbUint64::new(table),
            }
            .write_to(slot);
        }
        self
    }

    /// Writes the header and both checksums; returns the bytes the table takes.
    pub fn finish(&mut self) -> Result<usize, CorebootError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let available = self.buf.len();
        let too_small = CorebootError::BufferTooSmall {
            needed: self.used,
            available,
        };
        let table_bytes = self.used - LbHeader::SIZE;
        let table_bytes32 =
            u32::try_from(table_bytes).map_err(|_| CorebootError::TableTooLarge { table_bytes })?;
        let table = self.buf.get_mut(..self.used).ok_or(too_small)?;
        let (head, records) = table.split_at_mut(LbHeader::SIZE);
        let mut header = LbHeader {
            signature: LB_HEADER_SIGNATURE,
            header_bytes: LbHeader::SIZE as u32,
            header_checksum: 0,
            table_bytes: table_bytes32,
            table_checksum: u32::from(ip_checksum(records)),
            table_entries: self.entries,
        };
        header.write_to(head).ok_or(too_small)?;
        header.header_checksum = u32::from(ip_checksum(head));
        header.write_to(head).ok_or(too_small)?;
        Ok(self.used)
    }
}
