#!/usr/bin/python3
"""Per-device performance report from the JSON of gradcomp's tools.

usage: /usr/bin/python3 reports/make_report.py --in DIR_OR_FILE... [--out reports/out]
                                                [--device NAME]

Reads JSON only (never stdout logs) written by gradcomp-bench (Google Benchmark JSON),
gradcomp-validate (--json), gradcomp-coll-perf, gradcomp-train and gradcomp-cuda-bench (--json,
GPU kernel rows, present only where a GPU ran), and writes
OUT/<device>/index.md plus PNG figures next to it. A directory given to --in is searched
recursively for *.json; JSON there that no gradcomp tool wrote is skipped with a warning, while
a file named explicitly must be one of the five. Invalid JSON or a record missing a required
field stops the run with an error that names the file (exit status 2).
"""
import argparse
import datetime
import json
import math
import re
import sys
from pathlib import Path

BENCH, VALIDATE, COLL, TRAIN = "gradcomp-bench", "gradcomp-validate", "gradcomp-coll-perf", \
    "gradcomp-train"
CUDA = "gradcomp-cuda-bench"
TOOLS = (BENCH, VALIDATE, COLL, TRAIN, CUDA)
# Issue #7's target for the streaming compressors on a GPU: fraction of the device copy bandwidth.
CUDA_TARGET = 0.80
OPS = ("compress", "decompress", "decompress_accumulate", "fused_ef")
# Statuses gradcomp-validate counts as failures (docs/validate.md, "Exit status").
FAIL_STATUSES = ("FAILED", "MISTRUSTED")
STATUSES = ("PASSED", "FAILED", "MISTRUSTED", "UNIMPLEMENTED", "SKIPPED", "LISTED")


class InputError(Exception):
    """Bad input; the message starts with the offending file."""


class SetupError(Exception):
    """A missing dependency."""


# ---------------------------------------------------------------- loading and classification


def load_json(path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not valid JSON: the file is not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column "
                         f"{e.colno}") from None


def classify(data):
    """Which tool wrote this JSON, or None."""
    if not isinstance(data, dict):
        return None
    if data.get("tool") == VALIDATE:
        return VALIDATE
    ctx = data.get("context")
    if isinstance(ctx, dict):
        if ctx.get("tool") in (COLL, TRAIN, CUDA):
            return ctx["tool"]
        # Google Benchmark writes no tool name; gradcomp-bench's context has these keys.
        if "benchmarks" in data and ("library_build_type" in ctx or "git_sha" in ctx
                                     or "executable" in ctx):
            return BENCH
    return None


def collect_files(inputs):
    """[(path, explicit)] in a stable order; explicit = named on the command line."""
    out = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            out += [(f, False) for f in sorted(p.rglob("*.json")) if f.is_file()]
        elif p.is_file():
            out.append((p, True))
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


def number(rec, key, where, required=True, nullable=True):
    """rec[key] as a float; None for null (the tools write non-finite values as null)."""
    if key not in rec:
        if required:
            raise InputError(f"{where}: missing '{key}'")
        return None
    v = rec[key]
    if v is None:
        if not nullable:
            raise InputError(f"{where}: '{key}' is null")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{where}: '{key}' is not a number: {v!r}")
    return float(v)


def text(rec, key, where):
    v = rec.get(key)
    if not isinstance(v, str) or not v:
        raise InputError(f"{where}: missing or empty string '{key}'")
    return v


def need_list(d, key, where):
    v = d.get(key)
    if not isinstance(v, list):
        raise InputError(f"{where}: '{key}' must be a list")
    return v


def need_dict(v, where):
    if not isinstance(v, dict):
        raise InputError(f"{where}: expected a JSON object")
    return v


# ---------------------------------------------------------------- parsers, one per tool


def strip_n(case):
    """The case string without its n= parameter: the key of one curve over n."""
    head, sep, params = case.partition(":")
    kept = [p for p in params.split(",") if p and not p.startswith("n=")]
    return head + (":" + ",".join(kept) if kept else "")


def short_key(key):
    """Drops the parameters every case carries by default, for figure labels."""
    head, _, params = key.partition(":")
    kept = [p for p in params.split(",") if p and p not in ("seed=0", "nonfinite=error")]
    return head + (":" + ",".join(kept) if kept else "")


def wrap(label, width=40):
    """Breaks a case string after commas so that no line is much longer than width."""
    lines, cur = [], ""
    for part in re.split(r"(?<=,)", label):
        if cur and len(cur) + len(part) > width:
            lines.append(cur)
            cur = ""
        cur += part
    return "\n".join(lines + [cur])


def case_n(case):
    m = re.search(r"(?:^|[:,])n=(\d+)", case)
    return int(m.group(1)) if m else None


TIME_UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def parse_bench(path, d):
    ctx = d["context"]
    runs, medians, errors = {}, {}, []
    for i, b in enumerate(need_list(d, "benchmarks", str(path))):
        where = f"{path}: benchmarks[{i}]"
        need_dict(b, where)
        name = b.get("run_name", b.get("name"))
        if not isinstance(name, str):
            raise InputError(f"{where}: missing 'name'")
        name = re.sub(r"/manual_time$", "", name)
        if b.get("error_occurred"):
            errors.append((name, str(b.get("error_message", ""))))
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = b
            continue
        runs.setdefault(name, []).append(b)

    def value(name, key):
        # The median aggregate when the run had repetitions, otherwise the mean over the runs.
        if name in medians:
            return number(medians[name], key, f"{path}: {name}", required=False)
        vals = [number(b, key, f"{path}: {name}", required=False) for b in runs[name]]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    streams, kernels = {}, []
    for name in list(dict.fromkeys(list(runs) + list(medians))):
        m = re.fullmatch(r"stream/(\w+)/n=(\d+)", name)
        if m:
            streams[(m.group(1), int(m.group(2)))] = value(name, "GBps")
            continue
        parts = name.rsplit("/", 2)
        if len(parts) != 3 or parts[2] not in OPS:
            continue  # not a gradcomp-bench kernel benchmark: ignore, do not guess
        case, impl, op = parts
        src = medians.get(name) or runs[name][0]
        unit = TIME_UNIT_US.get(src.get("time_unit", "ns"), 1e-3)
        t = value(name, "real_time")
        kernels.append({
            "case": case, "key": strip_n(case), "compressor": case.split(":", 1)[0],
            "impl": impl, "op": op, "n": case_n(case),
            "time_us": None if t is None else t * unit,
            "touched_GBps": value(name, "touched_GBps"),
            "input_GBps": value(name, "input_GBps"),
            "frac_copy_bw": value(name, "frac_copy_bw"),
            "copy_GBps": value(name, "copy_GBps"),
            "ratio": value(name, "ratio"),
        })
    return {"path": path, "context": ctx, "streams": streams, "kernels": kernels,
            "errors": errors}


def parse_validate(path, d):
    cases = []
    for i, c in enumerate(need_list(d, "cases", str(path))):
        where = f"{path}: cases[{i}]"
        need_dict(c, where)
        status = text(c, "status", where)
        cases.append({"impl": text(c, "impl", where), "status": status,
                      "case": c.get("case", "?"), "reason": c.get("reason", ""),
                      "repro": c.get("repro", ""), "mode": c.get("mode", "")})
    summary = d.get("summary") if isinstance(d.get("summary"), dict) else {}
    return {"path": path, "cases": cases, "summary": summary, "context": {}}


def parse_coll(path, d):
    ctx = need_dict(d["context"], f"{path}: context")
    ranks = number(ctx, "ranks", f"{path}: context", nullable=False)
    rows = []
    for i, r in enumerate(need_list(d, "results", str(path))):
        where = f"{path}: results[{i}]"
        need_dict(r, where)
        row = {"compressor": text(r, "compressor", where), "algorithm": text(r, "algorithm", where),
               "ranks": ranks}
        for k in ("count", "bytes", "time_us", "busbw_GBps"):
            row[k] = number(r, k, where, nullable=k in ("time_us", "busbw_GBps"))
        for k in ("algbw_GBps", "wire_bytes", "ratio", "wrong"):
            row[k] = number(r, k, where, required=False)
        rows.append(row)
    return {"path": path, "context": ctx, "rows": rows}


def parse_cuda(path, d):
    ctx = need_dict(d["context"], f"{path}: context")
    text(ctx, "device", f"{path}: context")
    number(ctx, "copy_GBps", f"{path}: context", nullable=False)
    rows = []
    for i, r in enumerate(need_list(d, "results", str(path))):
        where = f"{path}: results[{i}]"
        need_dict(r, where)
        row = {"case": text(r, "bench", where)}
        for k in ("n", "payload_bytes", "compress_GBps", "compress_frac_copy_bw",
                  "accumulate_GBps", "accumulate_frac_copy_bw"):
            row[k] = number(r, k, where, nullable=False)
        rows.append(row)
    return {"path": path, "context": ctx, "rows": rows}


def parse_train(path, d):
    ctx = need_dict(d["context"], f"{path}: context")
    text(ctx, "preset", f"{path}: context")
    epochs = []
    for i, e in enumerate(need_list(d, "epochs", str(path))):
        where = f"{path}: epochs[{i}]"
        need_dict(e, where)
        rec = {"epoch": number(e, "epoch", where, nullable=False),
               "test_accuracy": number(e, "test_accuracy", where)}
        for k in ("train_loss", "images_per_s", "wall_s", "compute_s", "compress_s",
                  "communicate_s", "update_s", "bytes_up_per_worker", "bytes_down_per_worker",
                  "compression_ratio"):
            rec[k] = number(e, k, where, required=False)
        epochs.append(rec)
    return {"path": path, "context": ctx, "epochs": epochs}


PARSERS = {BENCH: parse_bench, VALIDATE: parse_validate, COLL: parse_coll, TRAIN: parse_train,
           CUDA: parse_cuda}


def load_inputs(inputs, warn):
    found = {t: [] for t in TOOLS}
    for path, explicit in collect_files(inputs):
        data = load_json(path)
        tool = classify(data)
        if tool is None:
            msg = (f"{path}: not JSON of {', '.join(TOOLS)} (no 'tool' key, or a Google "
                   "Benchmark file without 'context'/'benchmarks')")
            if explicit:
                raise InputError(msg)
            warn(msg + "; skipped")
            continue
        found[tool].append(PARSERS[tool](path, data))
    return found


# ---------------------------------------------------------------- device, sha, date


def sanitize(name):
    name = re.sub(r"\((R|TM|r|tm)\)", "", name)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-.")
    return name or "unknown-device"


def device_of(ctx):
    for k in ("cpu_model", "device", "gpu_name"):
        v = ctx.get(k)
        if isinstance(v, str) and v and v != "unknown":
            return re.sub(r"^host:\s*", "", v)
    return None


def short_sha(ctx):
    sha = ctx.get("git_sha")
    if not isinstance(sha, str) or not sha:
        return "unknown"
    s = sha[:12]
    if str(ctx.get("git_dirty")) == "1":
        s += "-dirty"
    return s


def stamp(device, contexts):
    """'device · git sha · date' for a figure made from these contexts."""
    shas = sorted({short_sha(c) for c in contexts}) or ["unknown"]
    dates = sorted({str(c.get("date")) for c in contexts if c.get("date")})
    if not dates:
        date = "date unknown"
    elif len(dates) == 1:
        date = dates[0]
    else:
        date = f"{dates[0]} .. {dates[-1]}"
    return f"{device} · git {', '.join(shas)} · {date}"


# ---------------------------------------------------------------- plotting helpers


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SetupError(f"{sys.executable} cannot import matplotlib: install Debian's "
                         "python3-matplotlib (scripts/setup-deps.sh does) and run this script "
                         "with /usr/bin/python3") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, outdir, name, footer):
    fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    # The stamp also goes into the PNG's text chunks, where a test (or a person) can read it.
    fig.savefig(outdir / name, dpi=100, metadata={"Description": footer})
    pyplot().close(fig)
    return name


def logscale(ax, axis, base=10):
    """Log scale on axis 'x' or 'y' only when some plotted value is positive: matplotlib
    cannot draw a log axis without one (e.g. every time null in the input)."""
    vals = [v for line in ax.get_lines()
            for v in (line.get_xdata() if axis == "x" else line.get_ydata())]
    if any(v is not None and math.isfinite(v) and v > 0 for v in vals):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)


def fmt(v, spec=".3g", none="–"):
    return none if v is None else format(v, spec)


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------- sections


def bench_section(runs, device, outdir):
    md = ["## Kernel throughput (gradcomp-bench)", ""]
    if not runs:
        return md + [f"no {BENCH} JSON found", ""], []
    plt = pyplot()
    contexts = [r["context"] for r in runs]
    footer = stamp(device, contexts)
    kernels, copy, errors = {}, {}, []
    for r in runs:
        for k in r["kernels"]:
            kernels[(k["key"], k["impl"], k["op"], k["n"])] = k  # a later file wins
        for (kind, n), g in r["streams"].items():
            if kind == "copy" and g is not None:
                copy[n] = max(copy.get(n, 0.0), g)
        errors += [(str(r["path"]), name, msg) for name, msg in r["errors"]]
    # The copy bandwidth the kernels' frac_copy_bw was computed against (their copy_GBps
    # counter); it is also the line when the stream benchmarks were filtered out.
    used = {}
    for k in kernels.values():
        if k["n"] is not None and k["copy_GBps"] is not None:
            used[k["n"]] = max(used.get(k["n"], 0.0), k["copy_GBps"])
    for n, g in used.items():
        copy.setdefault(n, g)
    md.append("Inputs: " + ", ".join(f"`{r['path']}`" for r in runs))
    md.append("")
    figs = []
    if copy:
        md += md_table(["n", "copy GB/s (line in the figures)", "copy GB/s behind frac_copy_bw"],
                       [(n, f"{copy[n]:.2f}", fmt(used.get(n), ".2f")) for n in sorted(copy)])
        md.append("")
    if not kernels:
        md += ["No kernel benchmarks in the input (stream benchmarks only).", ""]
    for op in OPS:
        ks = [k for k in kernels.values() if k["op"] == op and k["n"] is not None]
        if not ks:
            continue
        keys = sorted({k["key"] for k in ks})
        ncol = min(4, len(keys))
        nrow = math.ceil(len(keys) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow + 0.6), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            for impl in sorted({k["impl"] for k in ks if k["key"] == key}):
                pts = sorted((k["n"], k["touched_GBps"]) for k in ks
                             if k["key"] == key and k["impl"] == impl
                             and k["touched_GBps"] is not None)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=impl)
            cn = sorted(copy)
            if cn:
                ax.plot(cn, [copy[n] for n in cn], "k--", label="copy (measured)")
            logscale(ax, "x", 2)
            logscale(ax, "y")
            ax.set_title(wrap(short_key(key), 48), fontsize=8)
            ax.set_xlabel("n (elements)", fontsize=8)
            ax.set_ylabel("touched GB/s", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        fig.suptitle(f"Kernel bandwidth, {op}, against n — {device}", fontsize=11)
        name = save(fig, outdir, f"bench_gbps_{op}.png", footer)
        figs.append(name)
        md += [f"![kernel GB/s, {op}]({name})", ""]

    # Fraction of the copy roof per compressor at the largest n.
    if kernels:
        nmax = max(k["n"] for k in kernels.values() if k["n"] is not None)
        at = [k for k in kernels.values() if k["n"] == nmax]
        ops = [op for op in OPS if any(k["op"] == op for k in at)]
        keys = sorted({k["key"] for k in at})
        impls = sorted({k["impl"] for k in at})
        fig, axes = plt.subplots(1, len(ops), figsize=(5 * len(ops) + 2, 0.35 * len(keys) *
                                                       max(1, len(impls)) + 1.8),
                                 squeeze=False, sharey=True)
        h = 0.8 / max(1, len(impls))
        colors = {impl: f"C{j % 10}" for j, impl in enumerate(impls)}  # same colour per impl
        for ax, op in zip(axes[0], ops):
            for j, impl in enumerate(impls):
                ys, ws = [], []
                for i, key in enumerate(keys):
                    k = kernels.get((key, impl, op, nmax))
                    if k and k["frac_copy_bw"] is not None:
                        ys.append(i + j * h)
                        ws.append(k["frac_copy_bw"])
                if ys:
                    ax.barh(ys, ws, height=h, label=impl, color=colors[impl])
            ax.axvline(1.0, color="k", ls="--", lw=1)
            ax.set_title(op, fontsize=9)
            ax.set_xlabel("fraction of copy bandwidth", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_yticks([i + h * (len(impls) - 1) / 2 for i in range(len(keys))])
        axes[0][0].set_yticklabels([wrap(short_key(k)) for k in keys], fontsize=7)
        axes[0][0].invert_yaxis()
        fig.suptitle(f"Fraction of roofline (touched bytes / copy bandwidth) at n = {nmax} — "
                     f"{device}", fontsize=11)
        name = save(fig, outdir, "bench_roofline.png", footer)
        figs.append(name)
        md += [f"### Fraction of roofline at n = {nmax}", "", f"![fraction of roofline]({name})",
               ""]
        rows = []
        for key in keys:
            for impl in impls:
                for op in ops:
                    k = kernels.get((key, impl, op, nmax))
                    if k:
                        rows.append((f"`{key}`", impl, op, fmt(k["time_us"], ".1f"),
                                     fmt(k["input_GBps"], ".2f"), fmt(k["touched_GBps"], ".2f"),
                                     fmt(k["frac_copy_bw"], ".3f"), fmt(k["ratio"], ".2f")))
        md += md_table(["case", "impl", "op", "time (µs)", "input GB/s", "touched GB/s",
                        "frac copy bw", "ratio"], rows)
        md.append("")
    if errors:
        md += ["Benchmarks skipped with an error (no speed reported):", ""]
        md += [f"- `{name}`: {msg} ({p})" for p, name, msg in errors]
        md.append("")
    return md, figs


def coll_section(runs, device, outdir):
    md = ["## Collectives (gradcomp-coll-perf)", ""]
    if not runs:
        return md + [f"no {COLL} JSON found", ""], []
    plt = pyplot()
    footer = stamp(device, [r["context"] for r in runs])
    rows = [row for r in runs for row in r["rows"]]
    multi_p = len({row["ranks"] for row in rows}) > 1

    def label(row):
        s = "dense allreduce" if row["compressor"] == "dense" else \
            f"{row['compressor']} [{row['algorithm']}]"
        return s + (f" P={row['ranks']:g}" if multi_p else "")

    series = {}
    for row in rows:
        series.setdefault(label(row), []).append(row)
    fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(14, 5.5))
    for lab in sorted(series, key=lambda s: (not s.startswith("dense"), s)):
        pts = sorted(series[lab], key=lambda r: r["bytes"])
        dense = lab.startswith("dense")
        style = dict(color="k", lw=2.5, ls="--") if dense else {}
        x = [r["bytes"] for r in pts]
        ax_t.plot(x, [r["time_us"] for r in pts], marker="o", label=lab, **style)
        ax_b.plot(x, [r["busbw_GBps"] for r in pts], marker="o", label=lab, **style)
    for ax, yl in ((ax_t, "time (µs)"), (ax_b, "busbw (GB/s)")):
        logscale(ax, "x", 2)
        ax.set_xlabel("message size (bytes of fp32 gradient)")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    logscale(ax_t, "y")
    ax_b.legend(fontsize=7, loc="best")
    ranks = sorted({row["ranks"] for row in rows})
    fig.suptitle(f"Collective time and bus bandwidth against size, P = "
                 f"{', '.join(f'{p:g}' for p in ranks)} — {device}", fontsize=11)
    name = save(fig, outdir, "coll_perf.png", footer)
    md += ["Inputs: " + ", ".join(f"`{r['path']}`" for r in runs), "", f"![collectives]({name})",
           ""]
    # Table at the largest size per P, with the speedup over dense allreduce of that size.
    trows = []
    for p in ranks:
        at_p = [r for r in rows if r["ranks"] == p]
        bmax = max(r["bytes"] for r in at_p)
        dense = [r for r in at_p if r["bytes"] == bmax and r["compressor"] == "dense"]
        dt = dense[0]["time_us"] if dense else None
        for r in sorted((r for r in at_p if r["bytes"] == bmax),
                        key=lambda r: (r["compressor"] != "dense", r["compressor"],
                                       r["algorithm"])):
            sp = dt / r["time_us"] if dt and r["time_us"] else None
            trows.append((f"`{r['compressor']}`", r["algorithm"], f"{p:g}", f"{bmax:.0f}",
                          fmt(r["time_us"], ".1f"), fmt(r["busbw_GBps"], ".3f"),
                          fmt(r["algbw_GBps"], ".3f"), fmt(r["ratio"], ".2f"),
                          fmt(sp, ".2f"), fmt(r["wrong"], "g")))
    md += ["At the largest size per rank count:", ""]
    md += md_table(["compressor", "algorithm", "P", "bytes", "time (µs)", "busbw GB/s",
                    "algbw GB/s", "ratio", "speedup vs dense", "wrong"], trows)
    bad = [r for r in rows if r["wrong"]]
    if bad:
        md += ["", f"**{len(bad)} result(s) report wrong values** "
               "(the decoded sum differs from the expected one):", ""]
        md += [f"- `{r['compressor']}` [{r['algorithm']}] bytes={r['bytes']:.0f}: "
               f"wrong={r['wrong']:g}" for r in bad]
    md.append("")
    return md, [name]


def cuda_section(runs, outdir):
    """GPU kernel rows (gradcomp-cuda-bench --json); nothing at all without them, since most
    runs have no GPU."""
    if not runs:
        return [], []
    plt = pyplot()
    md = ["## GPU kernels (gradcomp-cuda-bench)", ""]
    names = []
    for k, run in enumerate(runs):
        ctx, rows = run["context"], run["rows"]
        gpu = str(ctx["device"])
        footer = stamp(gpu, [ctx])
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
        x = list(range(len(rows)))
        ax.bar([i - 0.2 for i in x], [r["compress_frac_copy_bw"] for r in rows], width=0.4,
               label="compress")
        ax.bar([i + 0.2 for i in x], [r["accumulate_frac_copy_bw"] for r in rows], width=0.4,
               label="decompress-accumulate")
        ax.axhline(CUDA_TARGET, color="k", ls="--", lw=1,
                   label=f"target {CUDA_TARGET:.0%} (streaming)")
        ax.set_xticks(x)
        ax.set_xticklabels([wrap(strip_n(r["case"]), 18) for r in rows], fontsize=7)
        ax.set_ylabel("fraction of device copy bandwidth")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
        ax.set_title(f"cuda:native at n = {int(ctx.get('n', rows[0]['n'] if rows else 0))}, copy "
                     f"{ctx['copy_GBps']:.0f} GB/s — {gpu}", fontsize=10)
        name = save(fig, outdir, f"cuda_roofline_{k}.png", footer)
        names.append(name)
        md += [f"Input: `{run['path']}` — {gpu}, device copy {ctx['copy_GBps']:.1f} GB/s", "",
               f"![GPU kernels]({name})", ""]
        md += md_table(["compressor", "n", "payload B", "compress GB/s", "compress frac",
                        "accumulate GB/s", "accumulate frac"],
                       [(f"`{strip_n(r['case'])}`", f"{r['n']:.0f}", f"{r['payload_bytes']:.0f}",
                         fmt(r["compress_GBps"], ".1f"), fmt(r["compress_frac_copy_bw"], ".3f"),
                         fmt(r["accumulate_GBps"], ".1f"),
                         fmt(r["accumulate_frac_copy_bw"], ".3f")) for r in rows])
        md.append("")
    return md, names


def train_summary(run):
    """Summary numbers of one training run (final accuracy = the last epoch's)."""
    ep = run["epochs"]
    last = ep[-1] if ep else {}
    walls = [e["wall_s"] for e in ep if e["wall_s"] is not None]
    bytes_ep = [(e["bytes_up_per_worker"] or 0) + (e["bytes_down_per_worker"] or 0) for e in ep]
    # Overall ratio: dense bytes over bytes sent up, summed over the epochs (dense bytes of an
    # epoch = its ratio x its bytes up), so a warm-up epoch weighs what it sent.
    dense = sent = 0.0
    for e in ep:
        if e["compression_ratio"] is not None and e["bytes_up_per_worker"]:
            dense += e["compression_ratio"] * e["bytes_up_per_worker"]
            sent += e["bytes_up_per_worker"]
    return {
        "final_accuracy": last.get("test_accuracy"),
        "epochs": len(ep),
        "time_per_epoch": sum(walls) / len(walls) if walls else None,
        "ratio": dense / sent if sent else None,
        "bytes_per_epoch": sum(bytes_ep) / len(bytes_ep) if ep else None,
        "final_loss": last.get("train_loss"),
    }


def train_section(runs, device, outdir):
    md = ["## Training convergence (gradcomp-train)", ""]
    if not runs:
        return md + [f"no {TRAIN} JSON found", ""], []
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator
    footer = stamp(device, [r["context"] for r in runs])

    def setup(r):
        c = r["context"]
        return (str(c.get("model", "?")), str(c.get("split", "?")), c.get("ranks"))
    several = len({setup(r) for r in runs}) > 1
    labels, seen = [], {}
    for r in runs:
        m, s, p = setup(r)
        lab = r["context"]["preset"] + (f" ({m}, {s}, P={p})" if several else "")
        seen[lab] = seen.get(lab, 0) + 1
        labels.append(lab)
    labels = [lab + (f" [{r['path'].stem}]" if seen[lab] > 1 else "")
              for lab, r in zip(labels, runs)]

    fig, (ax_e, ax_b) = plt.subplots(1, 2, figsize=(14, 5.5))
    for lab, r in zip(labels, runs):
        ep = [e for e in r["epochs"] if e["test_accuracy"] is not None]
        if not ep:
            continue
        acc = [100 * e["test_accuracy"] for e in ep]
        ax_e.plot([e["epoch"] for e in ep], acc, marker="o", label=lab)
        total, cum = 0.0, {}
        for e in r["epochs"]:
            total += (e["bytes_up_per_worker"] or 0) + (e["bytes_down_per_worker"] or 0)
            cum[id(e)] = total
        xs = [cum[id(e)] for e in ep]
        if all(x > 0 for x in xs):
            ax_b.plot(xs, acc, marker="o", label=lab)
    ax_e.set_xlabel("epoch")
    ax_e.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_b.set_xlabel("bytes communicated per worker (up + down, cumulative)")
    logscale(ax_b, "x")
    for ax in (ax_e, ax_b):
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize=7)
    models = sorted({setup(r)[0] for r in runs})
    fig.suptitle(f"Test accuracy per preset ({', '.join(models)}) — {device}", fontsize=11)
    name = save(fig, outdir, "train_accuracy.png", footer)
    md += ["Inputs: " + ", ".join(f"`{r['path']}`" for r in runs), "", f"![accuracy]({name})",
           ""]

    # Summary table; the gap is to the dense sgdm run (preset "sgdm" or "sgdm:<options>") of the
    # same model, split and rank count; with several (e.g. with and without momentum), the most
    # accurate one, so a gap is never flattered by a weak baseline.
    sums = [train_summary(r) for r in runs]
    base = {}
    for r, s in zip(runs, sums):
        if r["context"]["preset"].split(":", 1)[0] != "sgdm" or s["final_accuracy"] is None:
            continue
        key = setup(r)
        base[key] = max(base.get(key, s["final_accuracy"]), s["final_accuracy"])
    rows = []
    for lab, r, s in zip(labels, runs, sums):
        c = r["context"]
        b = base.get(setup(r))
        gap = None if b is None or s["final_accuracy"] is None else \
            100 * (s["final_accuracy"] - b)
        rows.append((f"`{lab}`", c.get("model", "?"), c.get("split", "?"), c.get("ranks", "?"),
                     s["epochs"], fmt(None if s["final_accuracy"] is None
                                      else 100 * s["final_accuracy"], ".2f"),
                     fmt(gap, "+.2f"), fmt(s["ratio"], ".1f"),
                     fmt(s["time_per_epoch"], ".2f"), fmt(s["bytes_per_epoch"], ".4g")))
    md += ["### Summary", ""]
    md += md_table(["preset", "model", "split", "P", "epochs", "final test acc (%)",
                    "gap to sgdm (pp)", "compression ratio", "time / epoch (s)",
                    "bytes / worker / epoch"], rows)
    md += ["", "Final accuracy is the last epoch's; the compression ratio is dense fp32 bytes "
           "over bytes sent up, summed over all epochs; time and bytes per epoch are means over "
           "the epochs (bytes up + down). The gap is to the most accurate sgdm run of the same "
           "model, split and P.", ""]
    return md, [name]


def validate_section(runs):
    md = ["## Validation verdicts (gradcomp-validate)", ""]
    if not runs:
        return md + [f"no {VALIDATE} JSON found", ""]
    counts = {}
    failures = []
    for r in runs:
        for c in r["cases"]:
            per = counts.setdefault(c["impl"], dict.fromkeys(STATUSES, 0))
            per[c["status"]] = per.get(c["status"], 0) + 1
            if c["status"] in FAIL_STATUSES:
                failures.append((r["path"], c))
    md.append("Inputs: " + ", ".join(f"`{r['path']}`" for r in runs))
    md.append("")
    extra = sorted({s for per in counts.values() for s in per} - set(STATUSES))
    cols = list(STATUSES) + extra
    md += md_table(["implementation", "cases"] + cols,
                   [(impl, sum(per.values()), *[per.get(s, 0) for s in cols])
                    for impl, per in sorted(counts.items())])
    md.append("")
    total = sum(sum(p.values()) for p in counts.values())
    verdict = "PASS" if not failures else "FAIL"
    md += [f"**Verdict: {verdict}** — {len(failures)} failed or mistrusted case(s) of {total}.",
           ""]
    if failures:
        md += ["Failures:", ""]
        for path, c in failures:
            reason = f" ({c['reason']})" if c["reason"] else ""
            md.append(f"- {c['status']}{reason} `{c['case']}` impl={c['impl']} — repro: "
                      f"`{c['repro']}` ({path})")
        md.append("")
    return md


# ---------------------------------------------------------------- main


def make_report(inputs, out, device=None, warn=lambda m: print(f"make_report: warning: {m}",
                                                              file=sys.stderr)):
    """Writes OUT/<device>/index.md and the figures; returns the index path."""
    found = load_inputs(inputs, warn)
    contexts = [r["context"] for t in (BENCH, COLL, TRAIN) for r in found[t]]
    if not contexts:  # a GPU-only report is named after the GPU
        contexts = [r["context"] for r in found[CUDA]]
    devices = list(dict.fromkeys(d for d in map(device_of, contexts) if d))
    if device is None:
        device = devices[0] if devices else "unknown-device"
        if len(devices) > 1:
            warn(f"inputs come from several devices ({'; '.join(devices)}); the report is "
                 f"named after the first (--device overrides)")
    outdir = Path(out) / sanitize(device)
    outdir.mkdir(parents=True, exist_ok=True)
    # Figures of an earlier report in this folder would outlive their inputs: remove ours.
    for old in [*outdir.glob("bench_*.png"), *outdir.glob("cuda_roofline_*.png"),
                outdir / "coll_perf.png",
                outdir / "train_accuracy.png"]:
        old.unlink(missing_ok=True)
    shas = sorted({short_sha(c) for c in contexts}) or ["unknown"]
    dates = sorted({str(c["date"]) for c in contexts if c.get("date")})
    md = [f"# gradcomp report: {device}", "",
          f"- device: {device}" + (f" (inputs name: {'; '.join(devices)})"
                                   if devices and devices != [device] else ""),
          f"- git sha: {', '.join(shas)}",
          f"- date of the runs: {', '.join(dates) if dates else 'unknown'}",
          f"- report written: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
          ""]
    sec, _ = bench_section(found[BENCH], device, outdir)
    md += sec
    sec, _ = coll_section(found[COLL], device, outdir)
    md += sec
    sec, _ = train_section(found[TRAIN], device, outdir)
    md += sec
    sec, _ = cuda_section(found[CUDA], outdir)
    md += sec
    md += validate_section(found[VALIDATE])
    index = outdir / "index.md"
    index.write_text("\n".join(md) + "\n", encoding="utf-8")
    return index


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="DIR_OR_FILE",
                    help="JSON files, or folders searched recursively for *.json")
    ap.add_argument("--out", default="reports/out", help="output root (default reports/out)")
    ap.add_argument("--device", help="device name for the report folder and the figures "
                    "(default: from the JSON contexts)")
    args = ap.parse_args(argv)
    try:
        index = make_report(args.inputs, args.out, args.device)
    except (InputError, SetupError) as e:
        print(f"make_report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
