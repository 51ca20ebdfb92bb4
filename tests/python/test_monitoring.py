"""Monitoring stack: dashboard structure, every dashboard query in a real Prometheus scraping a
running engine (and node-exporter), the alert rules loaded and the drift alert firing, and the
docker-compose file checked against the repository.

Needs the broker `scripts/test` starts (DRIFTWATCH_TEST_BROKERS), Debian's `prometheus` and
`prometheus-node-exporter` packages; fails, saying why, without them.
"""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def provisioned_uid():
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    return ds["datasources"][0]["uid"]


def exprs():
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                yield path.name, panel["title"], t["expr"]


def test_dashboards_are_well_formed():
    assert {p.name for p in DASHBOARDS} == {"driftwatch-drift.json", "driftwatch-fraud.json", "driftwatch-system.json"}
    uids = set()
    for path in DASHBOARDS:
        text = path.read_text()
        assert provisioned_uid() not in text, f"{path.name}: a hard-coded datasource uid does not import into another Grafana"
        d = json.loads(text)
        assert d["uid"] not in uids
        uids.add(d["uid"])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus", f"{path.name}: no $datasource"
        assert "driftwatch_model_info" in variables["model"]["query"]["query"]
        assert '$model' in variables["instance"]["query"]["query"], "engines are narrowed by model"
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in d["panels"]:
            assert p["datasource"]["uid"] == "${datasource}", f"{path.name}/{p['title']}: not on $datasource"
            assert p["targets"], f"{path.name}/{p['title']}: no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip()
                for metric in re.findall(r"\b(?:driftwatch|process)_[a-z0-9_]+(?:\{[^}]*\})?", t["expr"]):
                    assert 'instance=~"$instance"' in metric, f"{path.name}/{p['title']}: {metric} ignores $instance"
    drift = json.loads((ROOT / "grafana/dashboards/driftwatch-drift.json").read_text())
    status = next(p for p in drift["panels"] if p["type"] == "stat")
    mapping = status["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["color"] for k, v in mapping.items()} == {"0": "green", "1": "orange", "2": "red"}
    assert any(p["type"] == "state-timeline" for p in drift["panels"])
    psi = next(p for p in drift["panels"] if p["title"].startswith("PSI"))
    steps = [s["value"] for s in psi["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 0.1, 0.25] and psi["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def need(binary):
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"`{binary}` not found: install Debian's package (scripts/test does)")
    return path


def test_every_dashboard_query_returns_series_and_the_drift_alert_fires(driftwatch):
    brokers = os.environ.get("DRIFTWATCH_TEST_BROKERS") or pytest.fail("DRIFTWATCH_TEST_BROKERS is not set: run scripts/test, which starts Kafka")
    prometheus, node_exporter = need("prometheus"), need("prometheus-node-exporter")
    binary = os.environ.get("DRIFTWATCH_BIN") or str(ROOT / "target/release/driftwatch")
    node_port, prom_port = free_port(), free_port()
    tmp = pathlib.Path(tempfile.mkdtemp())
    procs = []
    try:
        procs.append(subprocess.Popen([node_exporter, f"--web.listen-address=127.0.0.1:{node_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # The engine binds port 0 and logs the address it got (a port picked here and released
        # could be taken before it binds). It runs far longer than the test needs and is
        # stopped at the end, so nothing races its --duration.
        demo = subprocess.Popen([binary, "demo", "--brokers", brokers, "--duration", "900", "--drift-after", "50", "--rate", "1000", "--scenario", "new_country",
                                 "--metrics-listen", "127.0.0.1:0"], stdout=open(tmp / "demo.log", "w"), stderr=subprocess.STDOUT,
                                env={**os.environ, "RUST_LOG": "warn,driftwatch=info"})
        procs.append(demo)
        engine_addr, deadline = None, time.time() + 60
        while engine_addr is None:
            found = re.search(r"Serving /metrics.*address=(\S+)", (tmp / "demo.log").read_text())
            engine_addr = found.group(1) if found else None
            assert engine_addr or (time.time() < deadline and demo.poll() is None), f"the demo never served /metrics:\n{(tmp / 'demo.log').read_text()[-3000:]}"
            time.sleep(0.1)
        (tmp / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "config/prometheus/rules/driftwatch.yml")],
            "scrape_configs": [
                {"job_name": "driftwatch", "static_configs": [{"targets": [engine_addr]}]},
                {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]},
            ]}))
        prom = subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
        procs.append(prom)
        # The drift alert needs the demo's scenario (from 50 s) and two red windows.
        deadline, firing = time.time() + 120, []
        while time.time() < deadline and not firing:
            assert prom.poll() is None, f"Prometheus exited:\n{(tmp / 'prometheus.log').read_text()[-3000:]}"
            assert demo.poll() is None, f"the demo exited:\n{(tmp / 'demo.log').read_text()[-3000:]}"
            time.sleep(2)
            try:
                firing = query(prom_port, 'ALERTS{alertname="DriftwatchFeatureDriftRed", alertstate="firing"}')["data"]["result"]
            except OSError:
                pass
        log = (tmp / "demo.log").read_text()
        assert firing, f"DriftwatchFeatureDriftRed never fired; demo output:\n{log[-3000:]}"
        time.sleep(5)  # a few more scrapes (the demo keeps running), so every range query has samples after the change
        assert {a["metric"]["feature"] for a in firing} >= {"country"}, firing
        rules = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=10))
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert len(loaded) == 13 and {"DriftwatchConsumerLagGrowing", "DriftwatchOutputUnacknowledged", "DriftwatchCommitsStalled"} <= loaded, loaded
        failures = []
        for board, title, expr in exprs():
            # What Grafana sends with every engine and model selected.
            expr = expr.replace("$instance", ".*").replace("$model", ".*")
            r = query(prom_port, expr)
            if r["status"] != "success":
                failures.append(f"{board} / {title}: {r.get('error')}: {expr}")
            elif not r["data"]["result"]:
                failures.append(f"{board} / {title}: no series: {expr}")
        assert not failures, "\n".join(failures)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_alert_rules_pass_promtool_and_their_unit_tests_are_current(tmp_path):
    promtool = need("promtool")
    rules = ROOT / "config/prometheus/rules/driftwatch.yml"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = ROOT / "tests/prometheus/driftwatch_test.yml"
    committed = tests.read_text()
    gen = subprocess.run([sys.executable, str(ROOT / "tests/prometheus/gen_rule_tests.py")], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    assert tests.read_text() == committed, "tests/prometheus/driftwatch_test.yml is stale: run gen_rule_tests.py and commit"
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_docker_compose_refers_only_to_what_the_repository_has(driftwatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "engine", "producer", "prometheus", "grafana", "jaeger", "node-exporter"}
    for name, svc in services.items():
        assert ("image" in svc) != ("build" in svc), f"{name}: exactly one of image/build"
        if "build" in svc:
            context = ROOT / (svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"])
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
        for port in svc.get("ports", []):
            host, _, container = str(port).partition(":")
            assert host.isdigit() and container.isdigit(), f"{name}: port {port}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: mounts {source}, which is not in the repository"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name}: depends on unknown {dep}"
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    # The broker image is the Kafka version the tests run (scripts/kafka).
    tested = re.search(r"<kafka.version>([0-9.]+)</kafka.version>", (ROOT / "scripts/kafka-deps/pom.xml").read_text()).group(1)
    assert services["kafka"]["image"] == f"apache/kafka:{tested}", services["kafka"]["image"]
    assert "all-in-one" not in services["jaeger"]["image"], "Jaeger v1 is end of life; v2 is jaegertracing/jaeger"
    # Every COPY source of the Dockerfile exists.
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    # Prometheus: the mounted config exists, its rules load, its targets are compose services.
    prom = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    for job in prom["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in services, f"Prometheus scrapes {target}, not a compose service"
    assert all(r.startswith("/etc/prometheus/") for r in prom["rule_files"])
    assert (ROOT / "config/prometheus/rules").is_dir()
    # Grafana: provisioning points at the mounted dashboards folder.
    dash = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/driftwatch.yml").read_text())
    assert dash["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana/dashboards" / pathlib.Path(home).name).is_file()
    # The engine's environment is a valid driftwatch configuration.
    env = {**os.environ, **{k: str(v) for k, v in services["engine"]["environment"].items()}}
    check = subprocess.run([os.environ.get("DRIFTWATCH_BIN") or str(ROOT / "target/release/driftwatch"), "run", "--check"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert '"brokers": "kafka:9092"' in check.stdout
    # The producer's command parses (an unknown flag would exit 2 at once; a real run needs the broker).
    producer = services["producer"]["command"]
    assert producer[0] == "produce"
    help_text = subprocess.run([os.environ.get("DRIFTWATCH_BIN") or str(ROOT / "target/release/driftwatch"), "produce", "--help"],
                               capture_output=True, text=True).stdout
    for flag in (a for a in producer if a.startswith("--")):
        assert flag in help_text, f"producer uses unknown flag {flag}"


def test_compilers_cover_what_the_lock_file_needs():
    """Cargo.toml's rust-version and the Dockerfile's compiler are at least the highest
    rust_version of every locked crate (else `docker build` fails before compiling a line)."""
    def version(v):
        return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    needed = max(((version(p["rust_version"]), p["name"]) for p in meta["packages"] if p.get("rust_version") and p["name"] != "driftwatch"))
    declared = re.search(r'^rust-version = "([0-9.]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    image = re.search(r"^FROM rust:([0-9.]+)-", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert version(declared) >= needed[0], f"Cargo.toml rust-version {declared} < {needed[1]}'s {needed[0]}"
    assert version(image) >= needed[0], f"Dockerfile compiler {image} < {needed[1]}'s {needed[0]}"
    assert version(image) >= version(declared), f"Dockerfile compiler {image} < rust-version {declared}"
    # The dependency-cache layer stubs every bench target Cargo.toml declares.
    benches = re.findall(r'\[\[bench\]\]\nname = "([a-z_]+)"', (ROOT / "Cargo.toml").read_text())
    docker = (ROOT / "Dockerfile").read_text()
    assert benches and all(b in docker for b in benches), f"Dockerfile stubs {benches}?"
