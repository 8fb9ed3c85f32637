//! QEMU's fw_cfg over its I/O ports: the probe's parameters arrive as the
//! file `opt/uring-idle/params` (`-fw_cfg name=...,string=...`).

use alloc::string::String;
use alloc::vec::Vec;

use crate::hw::Ports;

pub const FW_CFG_PORT_SEL: u16 = 0x510;
pub const FW_CFG_PORT_DATA: u16 = 0x511;
pub const FW_CFG_SIGNATURE: u16 = 0x0000;
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
pub const FW_CFG_FILE_DIR: u16 = 0x0019;
/// Bytes per directory entry: size (BE u32), select (BE u16), reserved, name[56].
pub const FILE_ENTRY_LEN: usize = 64;

/// Where the host writes the parameters.
pub use contract::params::FW_CFG_FILE as PARAMS_FILE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub size: u32,
    pub select: u16,
    pub name: String,
}

/// Parses the file directory (item 0x19): a big-endian count, then entries.
pub fn parse_dir(bytes: &[u8]) -> Vec<File> {
    if bytes.len() < 4 {
        return Vec::new();
    }
    let count = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    bytes[4..]
        .chunks_exact(FILE_ENTRY_LEN)
        .take(count)
        .map(|e| {
            let name = &e[8..];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            File {
                size: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                select: u16::from_be_bytes([e[4], e[5]]),
                name: String::from_utf8_lossy(&name[..end]).into(),
            }
        })
        .collect()
}

pub struct FwCfg<'a> {
    pub ports: &'a mut dyn Ports,
}

impl FwCfg<'_> {
    pub fn read(&mut self, select: u16, len: usize) -> Vec<u8> {
        self.ports.outw(FW_CFG_PORT_SEL, select);
        (0..len).map(|_| self.ports.inb(FW_CFG_PORT_DATA)).collect()
    }

    /// Reads item `select` into `out` without allocating (the heap's size
    /// comes from here).
    pub fn read_into(&mut self, select: u16, out: &mut [u8]) {
        self.ports.outw(FW_CFG_PORT_SEL, select);
        for b in out {
            *b = self.ports.inb(FW_CFG_PORT_DATA);
        }
    }

    pub fn present(&mut self) -> bool {
        let mut sig = [0u8; 4];
        self.read_into(FW_CFG_SIGNATURE, &mut sig);
        &sig == b"QEMU"
    }

    /// Guest RAM in bytes.
    pub fn ram_size(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.read_into(FW_CFG_RAM_SIZE, &mut b);
        u64::from_le_bytes(b)
    }

    pub fn files(&mut self) -> Vec<File> {
        let n = self.read(FW_CFG_FILE_DIR, 4);
        let count = u32::from_be_bytes(n.try_into().unwrap_or([0; 4])) as usize;
        let bytes = self.read(FW_CFG_FILE_DIR, 4 + count.min(4096) * FILE_ENTRY_LEN);
        parse_dir(&bytes)
    }

    /// The content of file `name`, if the host passed one.
    pub fn file(&mut self, name: &str) -> Option<Vec<u8>> {
        let f = self.files().into_iter().find(|f| f.name == name)?;
        Some(self.read(f.select, f.size as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn entry(size: u32, select: u16, name: &str) -> Vec<u8> {
        let mut e = vec![0u8; FILE_ENTRY_LEN];
        e[0..4].copy_from_slice(&size.to_be_bytes());
        e[4..6].copy_from_slice(&select.to_be_bytes());
        e[8..8 + name.len()].copy_from_slice(name.as_bytes());
        e
    }

    fn dir(files: &[(u32, u16, &str)]) -> Vec<u8> {
        let mut d = (files.len() as u32).to_be_bytes().to_vec();
        for (s, k, n) in files {
            d.extend(entry(*s, *k, n));
        }
        d
    }

    #[test]
    fn directory_entries_are_big_endian() {
        let d = dir(&[(0x1234, 0x20, "etc/e820"), (57, 0x2a, PARAMS_FILE)]);
        let f = parse_dir(&d);
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[1],
            File {
                size: 57,
                select: 0x2a,
                name: PARAMS_FILE.into()
            }
        );
        assert_eq!(f[0].size, 0x1234);
        // A count larger than the entries present stops at the data.
        let mut short = d.clone();
        short[3] = 9;
        assert_eq!(parse_dir(&short).len(), 2);
        assert!(parse_dir(&[0, 0]).is_empty());
    }

    /// fw_cfg as QEMU answers it: selector writes, data reads.
    struct FakeFwCfg {
        items: Vec<(u16, Vec<u8>)>,
        cur: Vec<u8>,
        pos: usize,
    }

    impl Ports for FakeFwCfg {
        fn inb(&mut self, port: u16) -> u8 {
            assert_eq!(port, FW_CFG_PORT_DATA);
            let b = self.cur.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            b
        }
        fn outb(&mut self, _: u16, _: u8) {
            unreachable!()
        }
        fn inw(&mut self, _: u16) -> u16 {
            unreachable!()
        }
        fn outw(&mut self, port: u16, v: u16) {
            assert_eq!(port, FW_CFG_PORT_SEL);
            self.cur = self
                .items
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            self.pos = 0;
        }
        fn inl(&mut self, _: u16) -> u32 {
            unreachable!()
        }
        fn outl(&mut self, _: u16, _: u32) {
            unreachable!()
        }
    }

    #[test]
    fn reads_a_named_file_and_the_ram_size() {
        let words = b"uring_idle.iterations=7 uring_idle.warmup=1".to_vec();
        let mut fake = FakeFwCfg {
            items: vec![
                (FW_CFG_SIGNATURE, b"QEMU".to_vec()),
                (FW_CFG_RAM_SIZE, (256u64 << 20).to_le_bytes().to_vec()),
                (
                    FW_CFG_FILE_DIR,
                    dir(&[(4, 0x21, "etc/x"), (words.len() as u32, 0x22, PARAMS_FILE)]),
                ),
                (0x22, words.clone()),
            ],
            cur: vec![],
            pos: 0,
        };
        let mut fw = FwCfg { ports: &mut fake };
        assert!(fw.present());
        assert_eq!(fw.ram_size(), 256 << 20);
        assert_eq!(fw.file(PARAMS_FILE), Some(words));
        assert_eq!(fw.file("opt/none"), None);
    }
}
