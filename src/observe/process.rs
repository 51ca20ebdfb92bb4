//! The engine's own process metrics (CPU, memory, file descriptors, threads, start time), read
//! from /proc at scrape time (Linux; absent elsewhere).

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
        cpu.encode(encoder.encode_descriptor("process_cpu", "User and system CPU time of the engine process", Some(&Unit::Seconds), cpu.metric_type())?)?;
        for (name, help, unit, value) in [
            ("process_resident_memory", "Resident memory of the engine process", Some(Unit::Bytes), p.rss_bytes),
            ("process_virtual_memory", "Virtual memory of the engine process", Some(Unit::Bytes), p.vsize_bytes),
            ("process_open_fds", "Open file descriptors of the engine process", None, p.open_fds),
            ("process_threads", "Threads of the engine process", None, p.threads),
            ("process_start_time", "Start time of the engine process since the Unix epoch", Some(Unit::Seconds), p.start_time_seconds),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    open_fds: f64,
    threads: f64,
    start_time_seconds: f64,
}

fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    // Linux reports CPU time in clock ticks (USER_HZ, 100 on every mainstream
    // distribution) and RSS in pages (4 KiB on x86-64 and most arm64 kernels).
    let (ticks, page) = (100.0, 4096.0);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    let boot = now - uptime;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        threads: field(20)?,
        start_time_seconds: boot + field(22)? / ticks,
        vsize_bytes: field(23)?,
        rss_bytes: field(24)? * page,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0),
    })
}

