#!/usr/bin/python3
"""Markdown tables for docs/performance.md from one gradcomp-bench JSON file.

usage: /usr/bin/python3 bench/kernels/perf_table.py RESULT.json [N]

Reads the JSON only (style.md B7). With repetitions it uses the median aggregate of each
benchmark, otherwise the single run. N (default 16777216) selects the size for the tables.
Targets are issue #4's, applied to the kk kernels (docs/metrics.md has the bytes model).
"""
import json
import re
import sys

STREAMING = {"identity", "fp16", "bf16", "sign", "blocksign", "qsgd", "terngrad", "randk",
             "grbs", "rbgs", "qsgd_randk"}
TOPK = {"topk", "signtopk", "qsgd_topk"}


def target(case, op=""):
    c = case.split(":", 1)[0]
    if op == "fused_ef":
        # The fused EF step streams g, m, e densely for every compressor it supports.
        return 0.70, "fused EF >= 70%"
    if c in STREAMING:
        return 0.70, "streaming >= 70%"
    if c == "dgc":
        if "selection=exact" in case:
            return 0.20, "exact top-k >= 20%"
        return 0.50, "DGC >= 50%"
    if c in TOPK:
        return 0.20, "top-k >= 20%"
    return None, "none in issue"


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 24
    d = json.load(open(path))
    rows = {}
    errors = {}
    have_median = any(b.get("aggregate_name") == "median" for b in d["benchmarks"])
    for b in d["benchmarks"]:
        name = b.get("run_name", b["name"]).replace("/manual_time", "")
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "")
            continue
        if have_median and b.get("aggregate_name") != "median":
            continue
        rows[name] = b
    ctx = d["context"]
    print(f"<!-- {path}: git {ctx.get('git_sha')} dirty={ctx.get('git_dirty')}, "
          f"{ctx.get('cpu_model')}, Kokkos {ctx.get('kokkos_version')} "
          f"{ctx.get('kokkos_backend')}, {ctx.get('build_type')}, {ctx.get('date')} -->\n")
    print("| stream (n = %d) | GB/s (mean) | best iteration GB/s |" % n)
    print("|---|---|---|")
    for k in ("copy", "triad", "memcpy"):
        b = rows.get(f"stream/{k}/n={n}")
        if b:
            print(f"| {k} | {b['GBps']:.2f} | {b['best_GBps']:.2f} |")
    print()
    print("| case | impl | op | time (µs) | input GB/s | touched GB/s | frac copy bw | "
          "speedup vs ref | payload B | target | met? |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, b in rows.items():
        if name.startswith("stream/"):
            continue
        case, impl, op = name.rsplit("/", 2)
        if f"n={n}," not in case and not case.endswith(f"n={n}"):
            continue
        frac = b.get("frac_copy_bw", 0.0)
        sp = b.get("speedup_vs_ref")
        t, tname = target(case, op)
        met = ""
        if not impl.startswith("ref"):
            parts = []
            if t is not None:
                parts.append(("bw ok" if frac >= t else f"bw MISSED ({frac / t:.0%} of target)"))
            if sp is not None:
                parts.append("5x ok" if sp >= 5 else f"5x MISSED ({sp:.1f}x)")
            met = "; ".join(parts)
        short = re.sub(r"(?<=[:,])(n=\d+|seed=0|nonfinite=error)(,|$)", "", case).rstrip(",:")
        sps = f"{sp:.1f}x" if sp is not None else "-"
        print(f"| `{short}` | {impl} | {op} | {b['real_time']:.0f} | {b['input_GBps']:.2f} | "
              f"{b['touched_GBps']:.2f} | {frac:.3f} | {sps} | {b['payload_B']:.0f} | "
              f"{tname if not impl.startswith('ref') else ''} | {met} |")
    if errors:
        print("\nSkipped with an error (no speed reported):\n")
        for k, v in errors.items():
            print(f"- `{k}`: {v}")


if __name__ == "__main__":
    main()
