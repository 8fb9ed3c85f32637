//! ATA (ATA8-ACS) as both the AHCI and the IDE driver speak it: command
//! opcodes, status bits, and what IDENTIFY DEVICE data says.

pub const ATA_CMD_READ_DMA_EXT: u8 = 0x25;
pub const ATA_CMD_WRITE_DMA_EXT: u8 = 0x35;
pub const ATA_CMD_READ_FPDMA_QUEUED: u8 = 0x60;
pub const ATA_CMD_FLUSH_CACHE_EXT: u8 = 0xEA;
pub const ATA_CMD_IDENTIFY_DEVICE: u8 = 0xEC;

/// Device register: LBA addressing (bit 4 selects device 1).
pub const ATA_DEVICE_LBA: u8 = 1 << 6;
pub const ATA_DEVICE_DEV1: u8 = 1 << 4;

// Status register bits.
pub const ATA_STATUS_ERR: u8 = 1 << 0;
pub const ATA_STATUS_DRQ: u8 = 1 << 3;
pub const ATA_STATUS_DF: u8 = 1 << 5;
pub const ATA_STATUS_DRDY: u8 = 1 << 6;
pub const ATA_STATUS_BSY: u8 = 1 << 7;

/// Sectors a 48-bit command moves at most (a count of 0 means this many).
pub const LBA48_MAX_SECTORS: u64 = 65536;

fn word(id: &[u8], i: usize) -> u64 {
    u64::from(u16::from_le_bytes([id[2 * i], id[2 * i + 1]]))
}

/// Whether IDENTIFY DEVICE data offers the 48-bit feature set (word 83
/// bit 10): the EXT commands.
pub fn identify_lba48(id: &[u8]) -> bool {
    word(id, 83) & (1 << 10) != 0
}

/// Sectors from IDENTIFY DEVICE data: words 100-103 with 48-bit LBA,
/// else words 60-61.
pub fn identify_sectors(id: &[u8]) -> u64 {
    if identify_lba48(id) {
        word(id, 100) | (word(id, 101) << 16) | (word(id, 102) << 32) | (word(id, 103) << 48)
    } else {
        word(id, 60) | (word(id, 61) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_words() {
        let mut id = [0u8; 512];
        id[120] = 0x00; // words 60-61: 0x0002_0000
        id[122] = 0x02;
        assert_eq!(identify_sectors(&id), 0x2_0000);
        assert!(!identify_lba48(&id));
        id[166] = 0x00;
        id[167] = 0x04; // word 83 bit 10
        id[200..208].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        assert_eq!(identify_sectors(&id), 0x1_0000_0000);
        assert!(identify_lba48(&id));
    }
}
