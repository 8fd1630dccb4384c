//! parkboot's host-tested library: every parser, builder and bookkeeper the bare-metal
//! binary (`main.rs`, `bare_metal/`) uses. Nothing here touches hardware directly except
//! through traits, so `cargo test` runs it all on the host.
//!
//! The folders follow the boot flow:
//! - `platform/`: what parkboot reads about the machine it runs on (coreboot table, PVH
//!   start info, fw_cfg, ACPI, CBFS, the CBMEM console, where configuration and kernels
//!   come from);
//! - `memory/`: the memory map, page tables and bulk copies;
//! - `parking/`: the park region's layout for the APs;
//! - `kernels/`: the kernels it loads (multiboot2, Linux) and the 32-bit hand-off;
//! - `flow/`: the kexec loop's schedule and report;
//! - `config.rs` (the configuration language), `wire.rs` (byte-layout helpers) and
//!   `racy_cell.rs` (the bare-metal binary's statics).
#![cfg_attr(not(test), no_std)]
// Unit tests may unwrap, index and panic: a failed expectation is a panic.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)
)]

pub mod config;
pub mod flow;
pub mod kernels;
pub mod memory;
pub mod parking;
pub mod platform;
pub mod racy_cell;
pub mod wire;
