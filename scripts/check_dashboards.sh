#!/usr/bin/env bash
# Static checks of chainrl's monitoring files (dashboards/): Prometheus config and alert rules
# with promtool, the alert rules' unit tests, and that the Grafana JSON is what its generator
# writes, and that Grafana's provisioning files parse.
# Usage: scripts/check_dashboards.sh [config|rules|alert-tests|generated|provisioning|all]
# Exit 0 when fine, 1 on a problem, 77 when the tool a check needs is missing (ctest: skipped).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-all}"
promtool="${PROMTOOL:-promtool}"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "SKIP: '$1' not found (Debian package '$2')"
    exit 77
  fi
}

check_config() {
  need "$promtool" prometheus
  # The file_sd glob matches nothing until a run has started; that warning is expected.
  "$promtool" check config "$root/dashboards/prometheus/prometheus.yml"
}

check_rules() {
  need "$promtool" prometheus
  "$promtool" check rules "$root/dashboards/prometheus/alerts.yml"
}

check_alert_tests() {
  need "$promtool" prometheus
  "$promtool" test rules "$root/tests/dashboards/alerts_test.yml"
}

check_generated() {
  need python3 python3
  local want="$root/dashboards/grafana/dashboards/chainrl.json"
  if ! diff -u "$want" <(python3 "$root/dashboards/generate_dashboards.py" --stdout); then
    echo "FAIL: $want differs from dashboards/generate_dashboards.py's output; run the script"
    exit 1
  fi
  echo "OK: $want is up to date"
}

check_provisioning() {
  need python3 python3
  if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "SKIP: python3 yaml module not found (Debian package 'python3-yaml')"
    exit 77
  fi
  python3 - "$root/dashboards" <<'PY'
import json, os, sys, yaml
root = sys.argv[1]
prov = os.path.join(root, "grafana", "provisioning")
ds = yaml.safe_load(open(os.path.join(prov, "datasources", "chainrl.yaml")))
assert ds["apiVersion"] == 1, "datasources: apiVersion"
[d] = ds["datasources"]
assert d["type"] == "prometheus" and d["url"].startswith("http"), "datasource type/url"
dp = yaml.safe_load(open(os.path.join(prov, "dashboards", "chainrl.yaml")))
assert dp["apiVersion"] == 1, "dashboards: apiVersion"
[p] = dp["providers"]
assert p["type"] == "file", "provider type"
assert p["options"]["path"] == "$CHAINRL_DASHBOARDS_DIR", "provider path"
dash = json.load(open(os.path.join(root, "grafana", "dashboards", "chainrl.json")))
assert dash["uid"] and dash["schemaVersion"] >= 39, "dashboard uid/schemaVersion"
print("OK: provisioning files parse and point at the dashboard folder and a Prometheus")
PY
}

case "$what" in
  config) check_config ;;
  rules) check_rules ;;
  alert-tests) check_alert_tests ;;
  generated) check_generated ;;
  provisioning) check_provisioning ;;
  all) check_config; check_rules; check_alert_tests; check_generated; check_provisioning ;;
  *) echo "usage: $0 [config|rules|alert-tests|generated|provisioning|all]" >&2; exit 2 ;;
esac
