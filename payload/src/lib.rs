//! parkboot's host-tested library: every parser, builder and bookkeeper the bare-metal
//! binary (`main.rs`) uses. Nothing here touches hardware directly except through
//! traits, so `cargo test` runs it all on the host.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod boot_loop;
pub mod bulk;
pub mod cbfs;
pub mod cbmem_console;
pub mod config;
pub mod coreboot;
pub mod fw_cfg;
pub mod handoff;
pub mod linux;
pub mod memory;
pub mod multiboot2;
pub mod paging;
pub mod park_layout;
pub mod platform;
pub mod pvh;
pub mod sources;
pub mod wire;
