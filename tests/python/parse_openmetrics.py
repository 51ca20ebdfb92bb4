"""Parses an OpenMetrics exposition on stdin with prometheus_client's strict parser and prints
{"name{label=value,...}": value} as JSON. Used by the Rust integration tests; exits non-zero
(with the parser's message) on any syntax error."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        out[f"{sample.name}{{{labels}}}"] = sample.value
json.dump(out, sys.stdout)
