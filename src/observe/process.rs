//! The engine's own process metrics under the standard names every Prometheus client library
//! uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_virtual_memory_bytes`, `process_start_time_seconds`, and
//! `process_threads`), read from /proc at scrape time (Linux; absent elsewhere). CPU ticks and
//! page size come from `sysconf`, so they are right on 64 KiB-page arm64 kernels too.

/// Collects the process metrics at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::registry::Unit;
        let Some(p) = read_process() else { return Ok(()) };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor("process_cpu", "Total user and system CPU time spent in seconds", Some(&Unit::Seconds), cpu.metric_type())?)?;
        let mut gauges = vec![
            ("process_resident_memory", "Resident memory size in bytes", Some(Unit::Bytes), p.rss_bytes),
            ("process_virtual_memory", "Virtual memory size in bytes", Some(Unit::Bytes), p.vsize_bytes),
            ("process_open_fds", "Number of open file descriptors", None, p.open_fds),
            ("process_threads", "Number of OS threads in the process", None, p.threads),
            ("process_start_time", "Start time of the process since unix epoch in seconds", Some(Unit::Seconds), p.start_time_seconds),
        ];
        if let Some(max) = p.max_fds {
            gauges.push(("process_max_fds", "Maximum number of open file descriptors", None, max));
        }
        for (name, help, unit, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        Ok(())
    }
}

/// One reading of /proc/self.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: f64,
    /// Virtual memory size, bytes.
    pub vsize_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on open files (`None`: unlimited).
    pub max_fds: Option<f64>,
    /// OS threads.
    pub threads: f64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Clock ticks per second and page size in bytes, from `sysconf`.
fn ticks_and_page() -> (f64, f64) {
    // SAFETY: sysconf reads process-wide constants and has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    (if ticks > 0 { ticks as f64 } else { 100.0 }, if page > 0 { page as f64 } else { 4096.0 })
}

/// Reads this process's statistics.
pub fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
    let (ticks, page) = ticks_and_page();
    parse(&stat, &limits, now - uptime, open_fds, ticks, page)
}

/// Parses /proc/self/stat and /proc/self/limits (`boot`: boot time, epoch seconds).
fn parse(stat: &str, limits: &str, boot: f64, open_fds: f64, ticks: f64, page: f64) -> Option<ProcessStats> {
    // Fields after the parenthesised command name (which may contain spaces); field 3 is first.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let max_fds = limits.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok());
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        threads: field(20)?,
        start_time_seconds: boot + field(22)? / ticks,
        vsize_bytes: field(23)?,
        rss_bytes: field(24)? * page,
        open_fds,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_limits_parse_with_the_given_ticks_and_page_size() {
        let stat = "4242 (drift watch) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 300 18446744073709551615";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";
        let p = parse(stat, limits, 1_700_000_000.0, 12.0, 100.0, 65_536.0).unwrap();
        assert_eq!(p.cpu_seconds, 3.0, "(250 + 50) ticks at 100 Hz");
        assert_eq!(p.threads, 7.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.vsize_bytes, 123_456_789.0);
        assert_eq!(p.rss_bytes, 300.0 * 65_536.0, "pages of the real size (64 KiB here)");
        assert_eq!(p.max_fds, Some(1_048_576.0));
        let unlimited = parse(stat, "Max open files            unlimited            unlimited            files\n", 0.0, 1.0, 250.0, 4096.0).unwrap();
        assert_eq!(unlimited.max_fds, None);
        assert_eq!(unlimited.cpu_seconds, 300.0 / 250.0);
    }

    #[test]
    fn this_process_reads_with_the_system_page_size() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let p = read_process().expect("Linux has /proc/self");
        let (_, page) = ticks_and_page();
        assert_eq!(p.rss_bytes % page, 0.0);
        assert!(p.rss_bytes > 1e6 && p.threads >= 1.0 && p.open_fds >= 3.0);
        assert!(p.max_fds.is_some_and(|m| m >= p.open_fds));
    }
}
