#!/usr/bin/env bash
# The run report in a real browser: the shortest real `chainrl train` run (configs/quickstart.toml
# with TrainProcessTest.QuickstartConfigRunsShortened's overrides) must end by writing
# RUN_DIR/report.html and printing its path; `chainrl report RUN_DIR --out FILE` writes the page
# again and refuses a missing run directory and a malformed summary.json (exit 2, naming them).
# Headless Chromium then loads the page: its DOM (--dump-dom) must have no script element and hold
# every chart, one polyline per recorded series with exactly one point per step event that has the
# figure (counted from RUN_DIR/events.jsonl), the held-out evaluations of summary.json and the
# sample generations of each evaluation; and a screenshot (--screenshot) must be a PNG of the
# window's size and of more than a trivial size.
#
# Usage: tests/apps/report_render_test.sh CHAINRL_BIN SOURCE_DIR
#   CHAINRL_REPORT_TEST_KEEP=1 keeps the temporary directory (the run, page, DOM and PNG).
# Exit 0: passed; 1: failed; 77: skipped (no headless Chromium or python3; under CI=true that is a
# failure instead, since scripts/setup.sh installs chromium-headless-shell and python3).
set -euo pipefail

chainrl="${1:?usage: report_render_test.sh CHAINRL_BIN SOURCE_DIR}"
root="${2:?usage: report_render_test.sh CHAINRL_BIN SOURCE_DIR}"
t_start=$SECONDS

say() { echo "report render test [$((SECONDS - t_start)) s]: $*"; }
fail() {
  echo "FAIL: $*"
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77
}
missing() {
  if [ "${CI:-}" = "true" ]; then fail "$1 (CI=true: scripts/setup.sh installs it)"; fi
  skip "$1"
}

# ---- prerequisites -----------------------------------------------------------------------------
browser=""
for b in chromium-headless-shell chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then
    browser="$(command -v "$b")"
    break
  fi
done
[ -n "$browser" ] || missing "headless Chromium is not installed (Debian package chromium-headless-shell)"
command -v python3 >/dev/null 2>&1 || missing "python3 is not installed"
[ -x "$chainrl" ] || fail "$chainrl: no such executable"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/chainrl_report_render.XXXXXX")"
cleanup() {
  if [ "${CHAINRL_REPORT_TEST_KEEP:-}" = "1" ]; then
    echo "kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# Chromium as a test runs it: as root (no sandbox), no GPU, its own profile, a deadline. Script
# stays on (--dump-dom and --screenshot need it); the page must have no script element, so what
# renders is what a browser with JavaScript off renders.
chrome() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/profile" \
    --no-first-run --hide-scrollbars "$@"
}

# ---- a real run ----------------------------------------------------------------------------------
run="$tmp/run"
say "chainrl train (shortened quickstart) into $run"
rc=0
timeout 300 "$chainrl" train "$root/configs/quickstart.toml" --run-dir "$run" \
  --set "model.path=\"$tmp/model\"" --set sft.steps=3 --set sft.batch_size=8 \
  --set run.total_steps=3 --set data.num_eval_examples=8 --set data.num_train_examples=500 \
  --set rollout.prompts_per_step=4 --set rollout.max_new_tokens=32 \
  --set curriculum.budget_start=32 --set curriculum.budget_end=16 \
  --set metrics.progress_interval_seconds=0 >"$tmp/train.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || {
  tail -n 30 "$tmp/train.out"
  fail "chainrl train exited $rc"
}
grep -qxF "report: $run/report.html" "$tmp/train.out" || {
  tail -n 15 "$tmp/train.out"
  fail "chainrl train did not print the report's path"
}
[ -s "$run/report.html" ] || fail "$run/report.html was not written"

# ---- chainrl report ------------------------------------------------------------------------------
page="$tmp/page.html"
out="$("$chainrl" report "$run" --out "$page" 2>&1)" || fail "chainrl report exited $?: $out"
[ "$out" = "report: $page" ] || fail "chainrl report printed: $out"
rc=0
out="$("$chainrl" report "$tmp/no-such-run" 2>&1)" || rc=$?
[ "$rc" -eq 2 ] || fail "a missing run directory: exit $rc, not 2 ($out)"
[[ "$out" == *"$tmp/no-such-run: no such run directory"* ]] || fail "a missing run directory: $out"
mkdir "$tmp/bad"
cp "$run/events.jsonl" "$tmp/bad/"
echo '{"steps": ' >"$tmp/bad/summary.json"
rc=0
out="$("$chainrl" report "$tmp/bad" 2>&1)" || rc=$?
[ "$rc" -eq 2 ] || fail "a malformed summary.json: exit $rc, not 2 ($out)"
[[ "$out" == *"$tmp/bad/summary.json: not valid JSON"* ]] || fail "a malformed summary.json: $out"
[ ! -e "$tmp/bad/report.html" ] || fail "a report was written for a malformed run"

# ---- the page in headless Chromium ---------------------------------------------------------------
say "rendering with $browser"
chrome --dump-dom "file://$page" >"$tmp/dom.html" 2>"$tmp/chromium-dom.err" || {
  tail -n 5 "$tmp/chromium-dom.err"
  fail "chromium --dump-dom failed"
}
python3 - "$tmp/dom.html" "$run" <<'EOF'
import json, math, sys
from html.parser import HTMLParser

dom_path, run = sys.argv[1], sys.argv[2]

class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.polylines, self.figures, self.samples, self.details, self.scripts = {}, [], 0, 0, 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "polyline":
            key = a.get("data-series")
            if key in self.polylines: sys.exit(f"FAIL: two polylines of {key}")
            self.polylines[key] = [tuple(float(v) for v in p.split(",")) for p in a["points"].split()]
        elif tag == "figure":
            self.figures.append(a.get("id"))
        elif tag == "div" and "sample" in a.get("class", "").split():
            self.samples += 1
        elif tag == "details":
            self.details += 1
        elif tag == "script":
            self.scripts += 1

dom = Dom()
dom.feed(open(dom_path, encoding="utf-8").read())

steps, samples = {}, {}
for line in open(f"{run}/events.jsonl", encoding="utf-8"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "step" and isinstance(e.get("step"), int):
        steps[e["step"]] = e
    elif e.get("event") == "eval_samples":
        samples[(e["label"], e["step"])] = e["samples"]
summary = json.load(open(f"{run}/summary.json", encoding="utf-8"))

def has(e, k):
    v = e.get(k)
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

expected = {k: sum(has(e, k) for e in steps.values()) for k in [
    "reward", "mean_length", "budget", "approx_kl", "entropy_mean", "rollout_tokens_per_s",
    "token_staleness_mean", "token_staleness_max", "max_staleness", "loss"]}
expected["train_tokens_per_s"] = sum(
    has(e, "tokens") and has(e, "train_seconds") and e["train_seconds"] > 0 for e in steps.values())
expected["eval_accuracy"] = sum(has(e, "accuracy") for e in summary["evals"])

errors = []
if len(steps) != summary["steps"]:
    errors.append(f"{len(steps)} step events for {summary['steps']} steps")
for chart in ["reward", "eval", "length", "kl", "entropy", "throughput", "staleness", "loss"]:
    if f"chart-{chart}" not in dom.figures:
        errors.append(f"no chart {chart}")
for key, n in expected.items():
    points = dom.polylines.get(key)
    if n == 0:
        if points is not None: errors.append(f"{key}: not recorded, yet drawn")
        continue
    if points is None:
        errors.append(f"{key}: {n} steps have it, no polyline")
    elif len(points) != n:
        errors.append(f"{key}: {len(points)} points for {n} steps")
    elif not all(64 <= x <= 700 and 16 <= y <= 208 for x, y in points):
        errors.append(f"{key}: a point outside the plot area: {points}")
    elif any(b[0] <= a[0] for a, b in zip(points, points[1:])) and key != "eval_accuracy":
        errors.append(f"{key}: x does not increase with the step: {points}")
extra = set(dom.polylines) - set(expected)
if extra: errors.append(f"unexpected polylines {sorted(extra)}")
if expected["reward"] == 0 or expected["eval_accuracy"] < 2:
    errors.append(f"the run recorded too little to check: {expected}")
n_samples = sum(len(s) for s in samples.values())
if not samples or dom.details != len(samples) or dom.samples != n_samples:
    errors.append(f"samples: {dom.details} sections and {dom.samples} samples in the page, "
                  f"{len(samples)} and {n_samples} in events.jsonl")
if dom.scripts: errors.append(f"{dom.scripts} script elements")
if errors:
    sys.exit("FAIL: the rendered page:\n  " + "\n  ".join(errors))
print("report render test: DOM has " + ", ".join(f"{k} {len(v)}" for k, v in sorted(dom.polylines.items()))
      + f"; {dom.samples} samples in {dom.details} evaluations")
EOF

width=1280
height=2400
png="$tmp/report.png"
chrome --window-size="$width,$height" --screenshot="$png" "file://$page" \
  >"$tmp/chromium-shot.out" 2>&1 || {
  tail -n 5 "$tmp/chromium-shot.out"
  fail "chromium --screenshot failed"
}
[ -f "$png" ] || fail "no screenshot at $png"
python3 - "$png" "$width" "$height" <<'EOF'
import os, struct, sys
path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
    sys.exit(f"FAIL: {path} is not a PNG")
w, h = struct.unpack(">II", data[16:24])
if (w, h) != (width, height):
    sys.exit(f"FAIL: the screenshot is {w}x{h}, not {width}x{height}")
# A blank page of this size is about 14 kB; the report's charts and text make far more.
if len(data) < 40000:
    sys.exit(f"FAIL: the screenshot is only {len(data)} bytes")
print(f"report render test: screenshot {path}: {w}x{h}, {len(data)} bytes")
EOF
say "PASS"
