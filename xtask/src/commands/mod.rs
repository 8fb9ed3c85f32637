//! The subcommands: `patch-and-test` (`pipeline`, which wires the stages),
//! `matrix`, `check`, `build-qemu`, `bench`, `ci` (with `actionlint` and
//! `layers`, the layering check), `deps`, `kselftest-install` and
//! `qemu-debs` (the suite trees of `--qemu-deb`).

pub mod actionlint;
pub mod bench;
pub mod build_qemu;
pub mod check;
pub mod ci;
pub mod deps;
pub mod kselftest_install;
pub mod layers;
pub mod matrix;
pub mod pipeline;
pub mod qemu_debs;
pub mod scan;
