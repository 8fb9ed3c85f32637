//! The selftest's verdict, from PID 1 in the guest to the host: kselftest
//! codes written to QEMU's isa-debug-exit, which makes QEMU exit with
//! `(value << 1) | 1`.

#[allow(unused_imports)]
use crate::prelude::*;

/// kselftest exit codes (tools/testing/selftests/kselftest.h).
pub const KSFT_PASS: i32 = 0;
pub const KSFT_FAIL: i32 = 1;
pub const KSFT_SKIP: i32 = 4;

/// I/O port of the `isa-debug-exit` device the host attaches.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Set in the value written to isa-debug-exit, so a reporting guest's exit
/// status (`((0x20 | code) << 1) | 1`: 65 pass, 67 fail, 73 skip) never
/// equals QEMU's own error status 1.
pub const DEBUG_EXIT_MARK: u8 = 0x20;

/// The byte PID 1 writes to the port for kselftest `code`.
pub fn encode(code: i32) -> u8 {
    DEBUG_EXIT_MARK | (code as u8 & 0x1f)
}

/// QEMU's exit status back to the selftest's code; `Err` says what the
/// status means instead.
pub fn decode(status: Option<i32>) -> core::result::Result<i32, String> {
    let mark = i32::from(DEBUG_EXIT_MARK);
    match status {
        Some(s) if s % 2 == 1 && (s >> 1) & mark != 0 => Ok((s >> 1) & 0x1f),
        Some(0) => Err(
            "the guest powered off without reporting a result (did /init die? see the console log)"
                .into(),
        ),
        Some(s) => Err(format!(
            "QEMU exited with status {s} before the guest reported (see QEMU stderr)"
        )),
        None => Err("QEMU was killed by a signal".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_agree() {
        for code in [KSFT_PASS, KSFT_FAIL, KSFT_SKIP] {
            let status = (i32::from(encode(code)) << 1) | 1;
            assert_eq!(decode(Some(status)), Ok(code));
        }
        assert_eq!(decode(Some(65)), Ok(0));
        assert_eq!(decode(Some(67)), Ok(1));
        assert_eq!(decode(Some(73)), Ok(4));
    }

    #[test]
    fn qemu_own_statuses_are_never_a_result() {
        assert!(decode(Some(1))
            .unwrap_err()
            .contains("QEMU exited with status 1"));
        assert!(decode(Some(0)).unwrap_err().contains("without reporting"));
        assert!(decode(Some(3)).is_err());
        assert!(decode(None).is_err());
    }
}
