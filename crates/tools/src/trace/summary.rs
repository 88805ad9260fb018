//! `-c`: strace's summary table.

use std::collections::HashMap;
use std::time::Duration;

/// Per-syscall counts and time.
#[derive(Default, Debug)]
pub struct Summary {
    rows: HashMap<String, (u64, u64, Duration)>,
}

impl Summary {
    /// Counts one call.
    pub fn add(&mut self, name: &str, failed: bool, took: Duration) {
        // The name is allocated once per syscall seen, not once per call.
        if !self.rows.contains_key(name) {
            self.rows.insert(name.to_string(), Default::default());
        }
        let r = self.rows.get_mut(name).expect("inserted above");
        r.0 += 1;
        r.1 += u64::from(failed);
        r.2 += took;
    }

    /// The table, in strace's layout, sorted by time.
    pub fn render(&self) -> String {
        let mut rows: Vec<(&String, &(u64, u64, Duration))> = self.rows.iter().collect();
        rows.sort_by(|a, b| b.1 .2.cmp(&a.1 .2).then(b.1 .0.cmp(&a.1 .0)).then(a.0.cmp(b.0)));
        let total: Duration = rows.iter().map(|r| r.1 .2).sum();
        let (calls, errors): (u64, u64) = rows.iter().fold((0, 0), |(c, e), r| (c + r.1 .0, e + r.1 .1));
        let dash = "-".repeat(rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(16));
        let sep = format!("------ ----------- ----------- --------- --------- {dash}\n");
        let mut s = String::from("% time     seconds  usecs/call     calls    errors syscall\n");
        s.push_str(&sep);
        let pct = |d: Duration| if total.is_zero() { 0.0 } else { 100.0 * d.as_secs_f64() / total.as_secs_f64() };
        let line = |name: &str, c: u64, e: u64, d: Duration| {
            let per = (d.as_micros() as u64).checked_div(c).unwrap_or(0);
            let err = if e == 0 { String::new() } else { e.to_string() };
            format!("{:>6.2} {:>11.6} {:>11} {:>9} {:>9} {}\n", pct(d), d.as_secs_f64(), per, c, err, name)
        };
        for (name, (c, e, d)) in &rows {
            s.push_str(&line(name, *c, *e, *d));
        }
        s.push_str(&sep);
        let mut t = line("total", calls, errors, total);
        if total.is_zero() {
            t = t.replacen("  0.00", "100.00", 1);
        } else {
            t = format!("{:>6.2}{}", 100.0, &t[6..]);
        }
        s.push_str(&t);
        s
    }

    /// Calls counted so far.
    pub fn calls(&self) -> u64 {
        self.rows.values().map(|r| r.0).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sorts_by_time_and_totals() {
        let mut s = Summary::default();
        s.add("read", false, Duration::from_micros(30));
        s.add("read", true, Duration::from_micros(10));
        s.add("write", false, Duration::from_micros(60));
        let t = s.render();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "% time     seconds  usecs/call     calls    errors syscall");
        assert!(lines[2].ends_with(" write") && lines[2].starts_with(" 60.00"), "{}", lines[2]);
        assert!(lines[3].contains("        2         1 read"), "{}", lines[3]);
        assert!(
            lines[5].starts_with("100.00    0.000100") && lines[5].ends_with("        3         1 total"),
            "{}",
            lines[5]
        );
    }
}
