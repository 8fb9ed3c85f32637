//! CPU exceptions (vectors 0-31), reported instead of a silent triple
//! fault: a KTAP `Bail out!` line with the vector, error code, RIP and CR2,
//! then isa-debug-exit with a failure. The probe takes no interrupts, so
//! only exceptions ever arrive here.
//!
//! The entry stubs are assembly in src/main.rs (stable Rust has no
//! x86-interrupt ABI): each pushes a dummy error code where the CPU pushes
//! none, then its vector, then the common path saves every register and
//! calls the image's handler with a `TrapFrame`. Here: the frame's layout,
//! the IDT gates the stubs go into, the GDT with a TSS whose IST1 gives the
//! double fault a stack of its own (a fault whose delivery faulted may
//! have had no usable stack), the report, and the faults the `fault`
//! parameter raises on purpose.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use contract::params::Fault;

/// Vectors the CPU reserves for exceptions: one stub and one gate each.
pub const EXCEPTIONS: usize = 32;

/// Vectors whose exception pushes an error code (Intel SDM vol. 3, 6.13):
/// #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX. The entry stubs read
/// this mask, so it is the one list.
pub const ERROR_CODE_VECTORS: u32 =
    (1 << 8) | (0x1f << 10) | (1 << 17) | (1 << 21) | (1 << 29) | (1 << 30);

pub const DOUBLE_FAULT: u8 = 8;
/// The TSS interrupt-stack-table slot (1-7; 0 in a gate means none) of the
/// double fault's stack.
pub const DOUBLE_FAULT_IST: u8 = 1;
pub const DOUBLE_FAULT_STACK: usize = 16 << 10;

/// Present, DPL 0, type 0xE: a 64-bit interrupt gate (IF cleared on entry).
pub const GATE_INTERRUPT: u8 = 0x8E;

/// An address outside the 4 GiB the entry code maps: 256 GiB, canonical
/// but not present, so touching it is a page fault.
pub const UNMAPPED: u64 = 0x40_0000_0000;

pub fn has_error_code(vector: u64) -> bool {
    vector < EXCEPTIONS as u64 && ERROR_CODE_VECTORS & (1 << vector) != 0
}

/// The SDM's mnemonic of an exception vector.
pub fn mnemonic(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        9 => "coprocessor segment overrun",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        28 => "#HV",
        29 => "#VC",
        30 => "#SX",
        15 | 22..=27 | 31 => "reserved",
        _ => "not an exception",
    }
}

/// A 64-bit IDT gate descriptor (SDM vol. 3, 6.14.1), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    pub offset_low: u16,
    pub selector: u16,
    /// Bits 0-2: the IST slot, 0 for the current stack.
    pub ist: u8,
    pub type_attr: u8,
    pub offset_mid: u16,
    pub offset_high: u32,
    pub reserved: u32,
}

impl Gate {
    pub const fn new(handler: u64, selector: u16, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist & 7,
            type_attr: GATE_INTERRUPT,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }

    pub fn handler(&self) -> u64 {
        u64::from(self.offset_low)
            | (u64::from(self.offset_mid) << 16)
            | (u64::from(self.offset_high) << 32)
    }

    /// The descriptor as the CPU reads it.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&self.offset_low.to_le_bytes());
        b[2..4].copy_from_slice(&self.selector.to_le_bytes());
        b[4] = self.ist;
        b[5] = self.type_attr;
        b[6..8].copy_from_slice(&self.offset_mid.to_le_bytes());
        b[8..12].copy_from_slice(&self.offset_high.to_le_bytes());
        b[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
}

/// The exception gates: stub `v` for vector `v` on code segment
/// `selector`, the double fault on its own stack.
pub fn idt(stubs: &[u64; EXCEPTIONS], selector: u16) -> [Gate; EXCEPTIONS] {
    core::array::from_fn(|v| {
        let ist = if v == usize::from(DOUBLE_FAULT) {
            DOUBLE_FAULT_IST
        } else {
            0
        };
        Gate::new(stubs[v], selector, ist)
    })
}

/// What the entry stubs leave on the stack, lowest address first: the
/// registers the common path pushed (r15 last), the vector and error code
/// the stub pushed, and the CPU's frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    /// 0 where the CPU pushes none.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The `Bail out!` line of an exception. Displayed without allocating: the
/// fault may have come from inside the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cr2: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bail out! cpu exception {} ({}) error {:#x} at rip {:#x} cr2 {:#x}",
            self.vector,
            mnemonic(self.vector),
            self.error_code,
            self.rip,
            self.cr2
        )
    }
}

/// The registers at the fault, as one KTAP diagnostic line.
pub struct Registers<'a>(pub &'a TrapFrame);

impl fmt::Display for Registers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(
            f,
            "# registers: rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x} rsp {:#x} \
             r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x} \
             rflags {:#x} cs {:#x} ss {:#x}",
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15, r.rflags, r.cs, r.ss
        )
    }
}

/// Writes the report and the registers.
pub fn report(out: &mut dyn Write, frame: &TrapFrame, cr2: u64) {
    let r = Report {
        vector: frame.vector,
        error_code: frame.error_code,
        rip: frame.rip,
        cr2,
    };
    // A line of its own, whatever was being printed.
    let _ = writeln!(out, "\n{r}");
    let _ = writeln!(out, "{}", Registers(frame));
}

/// Set on the first exception: one taken while reporting it exits at once.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// The image's exception handler: reports and exits (only in the guest).
pub fn fatal(frame: &TrapFrame) -> ! {
    if !REPORTING.swap(true, Ordering::SeqCst) {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        report(&mut crate::serial::console(), frame, cr2);
    }
    crate::hw::exit(contract::exit::KSFT_FAIL)
}

/// Loads a GDT (64-bit code, data, a TSS with the double fault's stack)
/// and an IDT of the stubs' addresses (only in the guest). Needs the heap:
/// the tables live as long as the probe.
pub fn install(stubs: &[u64; EXCEPTIONS]) {
    use alloc::boxed::Box;
    use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
    use x86_64::instructions::tables::{lidt, load_tss};
    use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
    use x86_64::structures::tss::TaskStateSegment;
    use x86_64::structures::DescriptorTablePointer;
    use x86_64::VirtAddr;

    let stack = Box::leak(alloc::vec![0u8; DOUBLE_FAULT_STACK].into_boxed_slice());
    let top = (stack.as_ptr() as u64 + DOUBLE_FAULT_STACK as u64) & !0xf;
    let tss = Box::leak(Box::new(TaskStateSegment::new()));
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST) - 1] = VirtAddr::new(top);
    let gdt = Box::leak(Box::new(GlobalDescriptorTable::<8>::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable<8> = gdt;
    gdt.load();
    let idt = Box::leak(Box::new(idt(stubs, code.0)));
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of_val(idt) - 1) as u16,
        base: VirtAddr::new(idt.as_ptr() as u64),
    };
    // SAFETY: the selectors are this GDT's, loaded above; the TSS and the
    // IDT are leaked, so they outlive every use; each gate points at a stub
    // that never returns.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
        lidt(&pointer);
    }
}

/// Raises `fault` on purpose (only in the guest); returns only for
/// `Fault::None`.
pub fn raise(fault: Fault) {
    // SAFETY: each instruction faults, and the handler never returns here.
    unsafe {
        match fault {
            Fault::None => {}
            Fault::InvalidOpcode => core::arch::asm!("ud2", options(nostack)),
            Fault::PageFault => core::arch::asm!(
                "mov qword ptr [{0}], 0",
                in(reg) UNMAPPED,
                options(nostack)
            ),
            Fault::DivideError => core::arch::asm!(
                "div {0}",
                in(reg) 0u64,
                inout("rax") 1u64 => _,
                inout("rdx") 0u64 => _,
                options(nostack)
            ),
            // #UD's frame cannot be pushed (#PF), nor can the #PF's: a
            // double fault, which has a stack of its own.
            Fault::DoubleFault => core::arch::asm!(
                "mov rsp, {0}",
                "ud2",
                in(reg) UNMAPPED,
                options(noreturn)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use core::mem::{offset_of, size_of};

    #[test]
    fn a_gate_splits_the_handler_and_names_selector_stack_and_type() {
        let g = Gate::new(0x1122_3344_5566_7788, 0x08, DOUBLE_FAULT_IST);
        assert_eq!(
            g.to_bytes(),
            [
                0x88, 0x77, // offset 15:0
                0x08, 0x00, // code segment selector
                0x01, // IST 1
                0x8e, // present, DPL 0, 64-bit interrupt gate
                0x66, 0x55, // offset 31:16
                0x44, 0x33, 0x22, 0x11, // offset 63:32
                0, 0, 0, 0
            ]
        );
        assert_eq!(g.handler(), 0x1122_3344_5566_7788);
        assert_eq!(size_of::<Gate>(), 16);
        // The IST field is 3 bits.
        assert_eq!(Gate::new(0, 8, 9).ist, 1);
    }

    #[test]
    fn only_the_double_fault_gets_its_own_stack() {
        let stubs: [u64; EXCEPTIONS] = core::array::from_fn(|v| 0x10_0000 + 16 * v as u64);
        let idt = idt(&stubs, 0x08);
        for (v, g) in idt.iter().enumerate() {
            assert_eq!(g.handler(), stubs[v]);
            assert_eq!((g.selector, g.type_attr), (0x08, GATE_INTERRUPT));
            assert_eq!(g.ist, if v == 8 { 1 } else { 0 }, "vector {v}");
        }
        assert_eq!(size_of::<[Gate; EXCEPTIONS]>() - 1, 511, "the IDT limit");
    }

    #[test]
    fn error_codes_and_names_follow_the_sdm() {
        let with: alloc::vec::Vec<u64> = (0..40).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
        assert_eq!(
            [0, 6, 8, 13, 14, 15, 31, 32].map(mnemonic),
            [
                "#DE",
                "#UD",
                "#DF",
                "#GP",
                "#PF",
                "reserved",
                "reserved",
                "not an exception"
            ]
        );
    }

    #[test]
    fn the_frame_matches_the_stubs_push_order() {
        // 15 registers, then vector and error code, then the CPU's 5 words.
        assert_eq!(size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(offset_of!(TrapFrame, r15), 0);
        assert_eq!(offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(offset_of!(TrapFrame, error_code), 16 * 8);
        assert_eq!(offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(offset_of!(TrapFrame, ss), 21 * 8);
    }

    #[test]
    fn the_report_is_a_ktap_bail_out_line_and_a_diagnostic() {
        let frame = TrapFrame {
            vector: 14,
            error_code: 2,
            rip: 0x10_2a3c,
            rsp: 0x7f_fff0,
            rax: 0xdead,
            rflags: 0x46,
            cs: 8,
            ss: 0x10,
            ..TrapFrame::default()
        };
        let mut out = String::new();
        report(&mut out, &frame, UNMAPPED);
        let lines: alloc::vec::Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "Bail out! cpu exception 14 (#PF) error 0x2 at rip 0x102a3c cr2 0x4000000000"
        );
        assert!(
            lines[2].starts_with("# registers: rax 0xdead rbx 0x0")
                && lines[2].contains(" rsp 0x7ffff0 ")
                && lines[2].ends_with("rflags 0x46 cs 0x8 ss 0x10"),
            "{}",
            lines[2]
        );
        assert_eq!(lines.len(), 3);
        let ud = Report {
            vector: 6,
            error_code: 0,
            rip: 0x1000,
            cr2: 0,
        };
        assert_eq!(
            ud.to_string(),
            "Bail out! cpu exception 6 (#UD) error 0x0 at rip 0x1000 cr2 0x0"
        );
    }
}
