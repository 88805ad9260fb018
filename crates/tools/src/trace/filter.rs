//! `-e trace=EXPR`: which syscalls to show.

use trapbox_abi::{self as abi, Class};

/// A set of syscalls, by number.
#[derive(Clone, Debug)]
pub struct Filter {
    traced: Vec<bool>,
    unknown: bool,
}

/// Why a filter expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// A name that is neither a syscall nor a class.
    #[error("invalid system call '{0}'")]
    Unknown(String),
}

fn class(name: &str) -> Option<Class> {
    Some(match name {
        "file" => Class::FILE,
        "process" => Class::PROCESS,
        "network" | "net" => Class::NETWORK,
        "signal" => Class::SIGNAL,
        "ipc" => Class::IPC,
        "desc" => Class::DESC,
        "memory" => Class::MEMORY,
        "creds" => Class::CREDS,
        "stat" => Class::STAT,
        "clock" => Class::CLOCK,
        _ => return None,
    })
}

impl Filter {
    /// Everything.
    pub fn all() -> Filter {
        Filter { traced: vec![true; 1024], unknown: true }
    }

    /// Parses strace's `trace=` value: names and `%class`es separated by commas, `all`,
    /// `none`, a leading `!` negating the whole set.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let (neg, body) = match expr.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, expr),
        };
        let mut f = Filter { traced: vec![false; 1024], unknown: false };
        for item in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "all" => {
                    return Ok(if neg { Filter { traced: vec![false; 1024], unknown: false } } else { Filter::all() })
                }
                "none" => continue,
                _ => {}
            }
            let cls = item
                .strip_prefix('%')
                .and_then(class)
                .or_else(|| class(item).filter(|_| abi::lookup_name(item).is_none()));
            match cls {
                Some(c) => {
                    for d in abi::TABLE.iter().filter(|d| d.class.intersects(c)) {
                        f.traced[d.nr as usize] = true;
                    }
                }
                None => match abi::lookup_name(item) {
                    Some(d) => f.traced[d.nr as usize] = true,
                    None => return Err(FilterError::Unknown(item.to_string())),
                },
            }
        }
        if neg {
            for t in &mut f.traced {
                *t = !*t;
            }
            f.unknown = true;
        }
        Ok(f)
    }

    /// Whether syscall `nr` is shown.
    pub fn traces(&self, nr: u64) -> bool {
        match abi::lookup(nr) {
            Some(_) => self.traced.get(nr as usize).copied().unwrap_or(false),
            None => self.unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_classes_and_negation() {
        let f = Filter::parse("openat,close").unwrap();
        assert!(f.traces(257) && f.traces(3) && !f.traces(0));
        let m = Filter::parse("%memory").unwrap();
        assert!(m.traces(9) && m.traces(12) && !m.traces(1));
        let n = Filter::parse("!write").unwrap();
        assert!(!n.traces(1) && n.traces(0));
        let file = Filter::parse("%file").unwrap();
        assert!(file.traces(257) && !file.traces(0));
        assert_eq!(Filter::parse("nosuchcall").unwrap_err(), FilterError::Unknown("nosuchcall".into()));
        assert!(Filter::parse("all").unwrap().traces(1));
    }
}
