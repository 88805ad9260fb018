//! The register file gdb gets, as gdbserver gives it for x86-64 GNU/Linux: the core and x87
//! registers, SSE, `orig_rax`, the FS and GS bases and the AVX upper halves, described by a
//! target description of trapbox's own (the stock x86-64 set of `gdbstub_arch` has no
//! `orig_rax`, segment bases or AVX, and no `<osabi>`, without which gdb does not treat the
//! target as Linux: no auxv, no shared-library list).

use gdbstub::arch::{Arch, RegId, Registers};

/// x86-64 GNU/Linux.
pub enum X86_64Linux {}

impl Arch for X86_64Linux {
    type Usize = u64;
    type Registers = GdbRegs;
    type BreakpointKind = usize;
    type RegId = NoRegId;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// Registers are read and written as a whole (`g`/`G` packets).
#[derive(Debug)]
pub enum NoRegId {}

impl RegId for NoRegId {
    fn from_raw_id(_id: usize) -> Option<(Self, Option<std::num::NonZeroUsize>)> {
        None
    }
}

/// Every register of [`TARGET_XML`], in its order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GdbRegs {
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8–R15 (gdb's order).
    pub gpr: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// EFLAGS.
    pub eflags: u32,
    /// CS, SS, DS, ES, FS, GS.
    pub seg: [u32; 6],
    /// ST0–ST7, 10 bytes each.
    pub st: [[u8; 10]; 8],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub fpu: [u32; 8],
    /// XMM0–XMM15.
    pub xmm: [[u8; 16]; 16],
    /// MXCSR.
    pub mxcsr: u32,
    /// The syscall number at a syscall stop (-1 elsewhere).
    pub orig_rax: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// YMM0–YMM15 upper halves.
    pub ymmh: [[u8; 16]; 16],
}

impl Registers for GdbRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write: impl FnMut(Option<u8>)) {
        let mut put = |b: &[u8]| b.iter().for_each(|x| write(Some(*x)));
        for g in self.gpr {
            put(&g.to_le_bytes());
        }
        put(&self.rip.to_le_bytes());
        put(&self.eflags.to_le_bytes());
        for s in self.seg {
            put(&s.to_le_bytes());
        }
        for st in &self.st {
            put(st);
        }
        for f in self.fpu {
            put(&f.to_le_bytes());
        }
        for x in &self.xmm {
            put(x);
        }
        put(&self.mxcsr.to_le_bytes());
        put(&self.orig_rax.to_le_bytes());
        put(&self.fs_base.to_le_bytes());
        put(&self.gs_base.to_le_bytes());
        for y in &self.ymmh {
            put(y);
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ()> {
            let b = bytes.get(at..at + n).ok_or(())?;
            at += n;
            Ok(b)
        };
        let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
        let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        for g in self.gpr.iter_mut() {
            *g = u64_(take(8)?);
        }
        self.rip = u64_(take(8)?);
        self.eflags = u32_(take(4)?);
        for s in self.seg.iter_mut() {
            *s = u32_(take(4)?);
        }
        for st in self.st.iter_mut() {
            st.copy_from_slice(take(10)?);
        }
        for f in self.fpu.iter_mut() {
            *f = u32_(take(4)?);
        }
        for x in self.xmm.iter_mut() {
            x.copy_from_slice(take(16)?);
        }
        self.mxcsr = u32_(take(4)?);
        self.orig_rax = u64_(take(8)?);
        self.fs_base = u64_(take(8)?);
        self.gs_base = u64_(take(8)?);
        for y in self.ymmh.iter_mut() {
            y.copy_from_slice(take(16)?);
        }
        Ok(())
    }
}

/// The target description: gdb's feature names and register names, so that gdb's amd64
/// Linux support recognises each set; written for trapbox.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>i386:x86-64</architecture>
  <osabi>GNU/Linux</osabi>
  <feature name="org.gnu.gdb.i386.core">
    <flags id="i386_eflags" size="4">
      <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
      <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
      <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
      <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
      <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
      <field name="RF" start="16" end="16"/><field name="AC" start="18" end="18"/>
      <field name="ID" start="21" end="21"/>
    </flags>
    <reg name="rax" bitsize="64" type="int64" regnum="0"/>
    <reg name="rbx" bitsize="64" type="int64"/>
    <reg name="rcx" bitsize="64" type="int64"/>
    <reg name="rdx" bitsize="64" type="int64"/>
    <reg name="rsi" bitsize="64" type="int64"/>
    <reg name="rdi" bitsize="64" type="int64"/>
    <reg name="rbp" bitsize="64" type="data_ptr"/>
    <reg name="rsp" bitsize="64" type="data_ptr"/>
    <reg name="r8" bitsize="64" type="int64"/>
    <reg name="r9" bitsize="64" type="int64"/>
    <reg name="r10" bitsize="64" type="int64"/>
    <reg name="r11" bitsize="64" type="int64"/>
    <reg name="r12" bitsize="64" type="int64"/>
    <reg name="r13" bitsize="64" type="int64"/>
    <reg name="r14" bitsize="64" type="int64"/>
    <reg name="r15" bitsize="64" type="int64"/>
    <reg name="rip" bitsize="64" type="code_ptr"/>
    <reg name="eflags" bitsize="32" type="i386_eflags"/>
    <reg name="cs" bitsize="32" type="int32"/>
    <reg name="ss" bitsize="32" type="int32"/>
    <reg name="ds" bitsize="32" type="int32"/>
    <reg name="es" bitsize="32" type="int32"/>
    <reg name="fs" bitsize="32" type="int32"/>
    <reg name="gs" bitsize="32" type="int32"/>
    <reg name="st0" bitsize="80" type="i387_ext"/>
    <reg name="st1" bitsize="80" type="i387_ext"/>
    <reg name="st2" bitsize="80" type="i387_ext"/>
    <reg name="st3" bitsize="80" type="i387_ext"/>
    <reg name="st4" bitsize="80" type="i387_ext"/>
    <reg name="st5" bitsize="80" type="i387_ext"/>
    <reg name="st6" bitsize="80" type="i387_ext"/>
    <reg name="st7" bitsize="80" type="i387_ext"/>
    <reg name="fctrl" bitsize="32" type="int" group="float"/>
    <reg name="fstat" bitsize="32" type="int" group="float"/>
    <reg name="ftag" bitsize="32" type="int" group="float"/>
    <reg name="fiseg" bitsize="32" type="int" group="float"/>
    <reg name="fioff" bitsize="32" type="int" group="float"/>
    <reg name="foseg" bitsize="32" type="int" group="float"/>
    <reg name="fooff" bitsize="32" type="int" group="float"/>
    <reg name="fop" bitsize="32" type="int" group="float"/>
  </feature>
  <feature name="org.gnu.gdb.i386.sse">
    <vector id="v8bf16" type="bfloat16" count="8"/>
    <vector id="v8h" type="ieee_half" count="8"/>
    <vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v2d" type="ieee_double" count="2"/>
    <vector id="v16i8" type="int8" count="16"/>
    <vector id="v8i16" type="int16" count="8"/>
    <vector id="v4i32" type="int32" count="4"/>
    <vector id="v2i64" type="int64" count="2"/>
    <union id="vec128">
      <field name="v8_bfloat16" type="v8bf16"/><field name="v8_half" type="v8h"/>
      <field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/>
    </union>
    <flags id="i386_mxcsr" size="4">
      <field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
      <field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
      <field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
      <field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
      <field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
      <field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
      <field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
    </flags>
    <reg name="xmm0" bitsize="128" type="vec128" regnum="40"/>
    <reg name="xmm1" bitsize="128" type="vec128"/>
    <reg name="xmm2" bitsize="128" type="vec128"/>
    <reg name="xmm3" bitsize="128" type="vec128"/>
    <reg name="xmm4" bitsize="128" type="vec128"/>
    <reg name="xmm5" bitsize="128" type="vec128"/>
    <reg name="xmm6" bitsize="128" type="vec128"/>
    <reg name="xmm7" bitsize="128" type="vec128"/>
    <reg name="xmm8" bitsize="128" type="vec128"/>
    <reg name="xmm9" bitsize="128" type="vec128"/>
    <reg name="xmm10" bitsize="128" type="vec128"/>
    <reg name="xmm11" bitsize="128" type="vec128"/>
    <reg name="xmm12" bitsize="128" type="vec128"/>
    <reg name="xmm13" bitsize="128" type="vec128"/>
    <reg name="xmm14" bitsize="128" type="vec128"/>
    <reg name="xmm15" bitsize="128" type="vec128"/>
    <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
  </feature>
  <feature name="org.gnu.gdb.i386.linux">
    <reg name="orig_rax" bitsize="64" type="int" regnum="57"/>
  </feature>
  <feature name="org.gnu.gdb.i386.segments">
    <reg name="fs_base" bitsize="64" type="int"/>
    <reg name="gs_base" bitsize="64" type="int"/>
  </feature>
  <feature name="org.gnu.gdb.i386.avx">
    <reg name="ymm0h" bitsize="128" type="uint128" regnum="60"/>
    <reg name="ymm1h" bitsize="128" type="uint128"/>
    <reg name="ymm2h" bitsize="128" type="uint128"/>
    <reg name="ymm3h" bitsize="128" type="uint128"/>
    <reg name="ymm4h" bitsize="128" type="uint128"/>
    <reg name="ymm5h" bitsize="128" type="uint128"/>
    <reg name="ymm6h" bitsize="128" type="uint128"/>
    <reg name="ymm7h" bitsize="128" type="uint128"/>
    <reg name="ymm8h" bitsize="128" type="uint128"/>
    <reg name="ymm9h" bitsize="128" type="uint128"/>
    <reg name="ymm10h" bitsize="128" type="uint128"/>
    <reg name="ymm11h" bitsize="128" type="uint128"/>
    <reg name="ymm12h" bitsize="128" type="uint128"/>
    <reg name="ymm13h" bitsize="128" type="uint128"/>
    <reg name="ymm14h" bitsize="128" type="uint128"/>
    <reg name="ymm15h" bitsize="128" type="uint128"/>
  </feature>
</target>
"#;
