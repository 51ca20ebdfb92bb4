"""Per-stage CPU of the engine from two perf recordings (scripts/profile-engine runs it):
inclusive samples of each stage's function × the process's CPU per event.
Usage: profile_stages.py BEFORE_US AFTER_US DIR (with DIR/before.data and DIR/after.data)."""
import subprocess, sys, re
def report(data, *args):
    out = subprocess.run(["perf", "report", "-i", data, "--children", "-g", "none", "--percent-limit", "0", *args], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.strip() and not l.startswith("#")]
def children(data):
    d = {}
    for l in report(data, "--sort", "sym"):
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(.*)", l)
        if m:
            sym = m.group(3).strip()
            d[sym] = max(d.get(sym, 0.0), float(m.group(1)))
    return d
def comms(data):
    d = {}
    for l in report(data, "--no-children", "--sort", "comm"):
        m = re.match(r"\s*([\d.]+)%\s+(.*)", l)
        if m:
            d[m.group(2).strip()] = d.get(m.group(2).strip(), 0) + float(m.group(1))
    return d
def find(d, pat):
    v = [p for s, p in d.items() if re.search(pat, s)]
    return max(v) if v else 0.0
cpu = {"before": float(sys.argv[1]), "after": float(sys.argv[2])}
folder = sys.argv[3]
rows = {}
for name in ["before", "after"]:
    data = f"{folder}/{name}.data"
    c, t = children(data), comms(data)
    us = cpu[name]
    run_member = find(c, r"Engine>::run_member$")
    handle = find(c, r"Member::handle$")
    poll = find(c, r"BaseConsumer<C>::poll_queue$")
    drop_msg = find(c, r"drop_in_place<rdkafka::message::BorrowedMessage>")
    decode = find(c, r"Pipeline>::decode_into$")
    score = find(c, r"pipeline::Pipeline::score$")
    drift = find(c, r"Member::observe_drift")
    alert = find(c, r"Member::emit_alert")
    broker = sum(v for k, v in t.items() if k.startswith("rdk:broker"))
    worker = sum(v for k, v in t.items() if k.startswith("driftwatch-work"))
    rows[name] = {
        "read (librdkafka: fetch threads + poll and free per message)": broker + poll + drop_msg,
        "decode JSON": decode,
        "score": score,
        "alert (serialise + produce)": alert,
        "drift (sample, profile, close windows)": drift,
        "rest of handling (routing, bookkeeping)": handle - find(c, r"Member::score$") - drift - alert,
        "loop (offset tracking, metrics, redelivery)": run_member - handle - poll - drop_msg,
        "other threads (producer, metrics server, start-up)": 100 - broker - worker,
    }
    rows[name] = {k: v * us / 100 for k, v in rows[name].items()}
print(f"| stage | before µs/event | after µs/event |")
print("|---|---|---|")
for k in rows["before"]:
    print(f"| {k} | {rows['before'][k]:.2f} | {rows['after'][k]:.2f} |")
print(f"| whole process | {cpu['before']:.2f} | {cpu['after']:.2f} |")
