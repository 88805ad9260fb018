//! Stop conditions: `NAME[:COND[,COND...]]` where COND is `ARG OP VALUE`. ARG is an argument
//! name from the ABI table (`len`, `pathname` or its alias `path`, `flags`, ...) or `ret`; OP
//! is one of `== != >= <= > <` (numbers, decimal or 0x hex) or `=~` (the string argument
//! contains VALUE; `^` and `$` anchor it). The condition is checked when the syscall returns.
//!
//! `mmap:len>=0x80000` stops at the first mmap of at least 512 KiB;
//! `openat:path=~/etc/` at the first openat of a path containing `/etc/`.

use trapbox_abi::{self as abi, ArgKind, SyscallDesc};
use trapbox_trap::{Guest, GuestAddr, Syscall};

/// One comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cond {
    Num { arg: ArgRef, op: Op, value: i128 },
    Matches { arg: usize, pattern: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgRef {
    Arg(usize),
    Ret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A parsed stop condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopCondition {
    nr: u64,
    conds: Vec<Cond>,
    text: String,
}

/// Why a stop expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StopError {
    /// Unknown syscall.
    #[error("unknown syscall '{0}'")]
    Syscall(String),
    /// Unknown argument.
    #[error("{call} has no argument '{arg}' (it has: {have})")]
    Arg {
        /// The syscall.
        call: String,
        /// The name given.
        arg: String,
        /// The names it has.
        have: String,
    },
    /// Bad comparison.
    #[error("cannot parse condition '{0}' (want ARG OP VALUE with OP one of == != >= <= > < =~)")]
    Cond(String),
}

fn parse_num(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => i128::from_str_radix(h, 16).ok()?,
        None => s.parse::<i128>().ok()?,
    };
    Some(if neg { -v } else { v })
}

impl StopCondition {
    /// Parses an expression.
    pub fn parse(expr: &str) -> Result<StopCondition, StopError> {
        let (name, rest) = expr.split_once(':').unwrap_or((expr, ""));
        let desc = abi::lookup_name(name.trim()).ok_or_else(|| StopError::Syscall(name.trim().into()))?;
        let mut conds = Vec::new();
        for c in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            conds.push(Self::parse_cond(desc, c)?);
        }
        Ok(StopCondition { nr: desc.nr, conds, text: expr.to_string() })
    }

    fn arg_index(desc: &SyscallDesc, name: &str) -> Result<ArgRef, StopError> {
        if name == "ret" {
            return Ok(ArgRef::Ret);
        }
        let found = desc.args.iter().position(|a| {
            a.name == name
                || (name == "path" && matches!(a.kind, ArgKind::Path))
                || (name == "len" && (a.name == "length" || a.name == "count" || a.name == "size"))
        });
        found.map(ArgRef::Arg).ok_or_else(|| StopError::Arg {
            call: desc.name.into(),
            arg: name.into(),
            have: desc.args.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        })
    }

    fn parse_cond(desc: &SyscallDesc, c: &str) -> Result<Cond, StopError> {
        if let Some((a, pat)) = c.split_once("=~") {
            return match Self::arg_index(desc, a.trim())? {
                ArgRef::Arg(i) => Ok(Cond::Matches { arg: i, pattern: pat.to_string() }),
                ArgRef::Ret => Err(StopError::Cond(c.into())),
            };
        }
        for (tok, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some((a, v)) = c.split_once(tok) {
                let arg = Self::arg_index(desc, a.trim())?;
                let value = parse_num(v).ok_or_else(|| StopError::Cond(c.into()))?;
                return Ok(Cond::Num { arg, op, value });
            }
        }
        Err(StopError::Cond(c.into()))
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `call`, which returned `ret`, matches. String arguments are read from `guest`.
    pub fn matches(&self, guest: &dyn Guest, call: &Syscall, ret: i64) -> bool {
        if call.nr != self.nr {
            return false;
        }
        self.conds.iter().all(|c| match c {
            Cond::Num { arg, op, value } => {
                let v = match arg {
                    ArgRef::Arg(i) => call.args[*i] as i128,
                    ArgRef::Ret => ret as i128,
                };
                match op {
                    Op::Eq => v == *value,
                    Op::Ne => v != *value,
                    Op::Ge => v >= *value,
                    Op::Le => v <= *value,
                    Op::Gt => v > *value,
                    Op::Lt => v < *value,
                }
            }
            Cond::Matches { arg, pattern } => match guest.read_cstr(GuestAddr(call.args[*arg]), 4096) {
                Ok(s) => matches_pattern(&String::from_utf8_lossy(&s), pattern),
                Err(_) => false,
            },
        })
    }
}

/// Substring match with optional `^`/`$` anchors.
fn matches_pattern(s: &str, pat: &str) -> bool {
    let (start, p) = match pat.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pat),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (start, end) {
        (true, true) => s == p,
        (true, false) => s.starts_with(p),
        (false, true) => s.ends_with(p),
        (false, false) => s.contains(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_examples_from_the_docs() {
        let m = StopCondition::parse("mmap:len>=0x80000").unwrap();
        assert_eq!(m.conds, vec![Cond::Num { arg: ArgRef::Arg(1), op: Op::Ge, value: 0x80000 }]);
        let o = StopCondition::parse("openat:path=~/etc/").unwrap();
        assert_eq!(o.conds, vec![Cond::Matches { arg: 1, pattern: "/etc/".into() }]);
        assert!(StopCondition::parse("close").unwrap().conds.is_empty());
        assert!(StopCondition::parse("read:ret<0").is_ok());
    }

    #[test]
    fn parse_errors_are_specific() {
        assert_eq!(StopCondition::parse("nope:x=1").unwrap_err(), StopError::Syscall("nope".into()));
        assert!(matches!(StopCondition::parse("mmap:bogus>1"), Err(StopError::Arg { .. })));
        assert!(matches!(StopCondition::parse("mmap:len>>"), Err(StopError::Cond(_))));
    }

    #[test]
    fn matches_pattern_anchors() {
        assert!(matches_pattern("/etc/passwd", "/etc/"));
        assert!(matches_pattern("/etc/passwd", "^/etc"));
        assert!(!matches_pattern("/usr/etc/x", "^/etc"));
        assert!(matches_pattern("a.txt", "txt$"));
    }
}
