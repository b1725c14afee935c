//! What the benchmarks share: CPU time from /proc and numbers written for people.

/// CPU seconds (user + system, all threads) of process `pid` (`"self"` for this one), from /proc/PID/stat (clock
/// ticks of 10 ms); with `children`, also of its children that have ended and been waited for.
pub fn cpu_seconds(pid: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let own = ticks(11) + ticks(12);
    (if children { own + ticks(13) + ticks(14) } else { own }) / 100.0
}

/// A non-negative whole number with thousands separators (`164,183`).
pub fn thousands(x: f64) -> String {
    let s = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
