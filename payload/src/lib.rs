//! parkboot's host-tested library: every parser, builder and bookkeeper the bare-metal
//! binary (`main.rs`) uses. Nothing here touches hardware directly except through
//! traits, so `cargo test` runs it all on the host.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod coreboot;
pub mod fw_cfg;
pub mod memory;
pub mod paging;
pub mod platform;
pub mod pvh;
