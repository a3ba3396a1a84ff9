"""Tests of reports/make_report.py on the hand-written JSON in fixtures/.

The expected numbers are computed here from the fixture JSON (or written down by hand), never
taken from the report code. The report is produced through the command line, as a user runs it.
"""
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SCRIPT = HERE.parent / "make_report.py"
# "Fixture(R) CPU Model 9000 @ 2.40GHz": (R) dropped, other runs of odd characters -> '-'.
DEVICE_DIR = "Fixture-CPU-Model-9000-2.40GHz"
DEVICE = "Fixture(R) CPU Model 9000 @ 2.40GHz"
BENCH_SHA, COLL_SHA = "0123456789ab-dirty", "fedcba987654"
FIGURES = {"bench_gbps_compress.png", "bench_gbps_decompress.png", "bench_roofline.png",
           "coll_perf.png", "train_accuracy.png"}


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def png_chunks(path):
    """[(type, data)] of a PNG file; asserts the signature and every chunk's CRC."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    chunks, pos = [], 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        ctype, data = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(ctype + data) == crc, f"{path}: bad CRC in {ctype!r}"
        chunks.append((ctype.decode("ascii"), data))
        pos += 12 + length
    assert chunks[0][0] == "IHDR" and chunks[-1][0] == "IEND"
    return chunks


def png_text(path):
    out = {}
    for ctype, data in png_chunks(path):
        if ctype == "tEXt":
            k, v = data.split(b"\0", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
        elif ctype == "iTXt":
            k, rest = data.split(b"\0", 1)
            comp, rest = rest[0], rest[2:]
            _lang, _tk, v = rest.split(b"\0", 2)
            out[k.decode("latin-1")] = (zlib.decompress(v) if comp else v).decode("utf-8")
    return out


def table_row(md, first_cell):
    """Cells of the Markdown table row whose first cell is first_cell."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def table_rows(md, first_cell):
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            out.append(cells)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    r = run("--in", FIXTURES, "--out", out)
    assert r.returncode == 0, r.stderr
    index = out / DEVICE_DIR / "index.md"
    assert f"report: {index}" in r.stdout
    return index, index.read_text(encoding="utf-8")


def test_index_and_figures_exist(report):
    index, md = report
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert pngs == FIGURES  # no decompress_accumulate in the bench fixture: no figure for it
    for name in FIGURES:
        chunks = png_chunks(index.parent / name)
        width, height = struct.unpack(">II", chunks[0][1][:8])
        assert width > 100 and height > 100
        assert f"]({name})" in md, f"{name} is not linked from index.md"


def test_every_figure_names_device_sha_and_date(report):
    index, _ = report
    dates = {"bench": ["2025-01-15T10:00:00+00:00"], "coll": ["2025-01-16T11:00:00Z"],
             "train": ["2025-01-17T09:00:00Z", "2025-01-17T11:00:00Z"]}
    shas = {"bench": BENCH_SHA, "coll": COLL_SHA, "train": COLL_SHA}
    for name in FIGURES:
        tool = name.split("_")[0]
        stamp = png_text(index.parent / name)["Description"]
        assert DEVICE in stamp and shas[tool] in stamp, stamp
        for d in dates[tool]:
            assert d in stamp, stamp


def test_header_names_device_sha_date(report):
    _, md = report
    assert md.startswith(f"# gradcomp report: {DEVICE}")
    for s in (BENCH_SHA, COLL_SHA, "2025-01-15T10:00:00+00:00", "2025-01-16T11:00:00Z",
              "2025-01-17T10:00:00Z"):
        assert s in md


def load(name):
    return json.loads((FIXTURES / name).read_text())


def expected_train(name):
    ep = load(name)["epochs"]
    final = 100 * ep[-1]["test_accuracy"]
    walls = [e["wall_s"] for e in ep if e["wall_s"] is not None]
    up = [(e["compression_ratio"], e["bytes_up_per_worker"]) for e in ep
          if e["compression_ratio"] is not None and e["bytes_up_per_worker"]]
    ratio = sum(r * b for r, b in up) / sum(b for _, b in up)
    per_epoch = [(e["bytes_up_per_worker"] or 0) + (e["bytes_down_per_worker"] or 0) for e in ep]
    return final, ratio, sum(walls) / len(walls), sum(per_epoch) / len(per_epoch), len(ep)


@pytest.mark.parametrize("preset,name", [("sgdm", "train_sgdm.json"), ("dgc", "train_dgc.json"),
                                         ("signum-mv", "train_signum.json")])
def test_summary_table_numbers(report, preset, name):
    _, md = report
    final, ratio, wall, per_epoch, nep = expected_train(name)
    sgdm_final = 100 * load("train_sgdm.json")["epochs"][-1]["test_accuracy"]
    cells = table_row(md, f"`{preset}`")
    # preset | model | split | P | epochs | final acc | gap | ratio | time/epoch | bytes/epoch
    assert cells[1:4] == ["resnet8", "iid", "2"]
    assert int(cells[4]) == nep
    assert float(cells[5]) == pytest.approx(final, abs=0.005)
    assert float(cells[6]) == pytest.approx(final - sgdm_final, abs=0.005)
    assert float(cells[7]) == pytest.approx(ratio, abs=0.05)
    assert float(cells[8]) == pytest.approx(wall, abs=0.005)
    assert float(cells[9]) == pytest.approx(per_epoch, rel=1e-3)


def test_summary_hand_values(report):
    # Worked by hand from train_dgc.json: last epoch 0.8025; sgdm's 0.8150;
    # ratio (10*1e5 + 100*1e4 + 100*1e4) / (1e5 + 1e4 + 1e4) = 25; wall (9+8+7)/3 = 8.
    cells = table_row(report[1], "`dgc`")
    assert cells[5:9] == ["80.25", "-1.25", "25.0", "8.00"]


def test_validation_verdicts(report):
    _, md = report
    cases = load("validate_kk.json")["cases"]
    for impl in ("kk:serial", "ref:any"):
        mine = [c for c in cases if c["impl"] == impl]
        cells = table_row(md, impl)
        assert int(cells[1]) == len(mine)
        # columns: PASSED FAILED MISTRUSTED UNIMPLEMENTED SKIPPED LISTED
        for i, st in enumerate(["PASSED", "FAILED", "MISTRUSTED", "UNIMPLEMENTED", "SKIPPED",
                                "LISTED"]):
            assert int(cells[2 + i]) == sum(c["status"] == st for c in mine), st
    assert "**Verdict: FAIL**" in md
    failures = [c for c in cases if c["status"] in ("FAILED", "MISTRUSTED")]
    assert len(failures) == 2
    for c in failures:
        assert f"`{c['repro']}`" in md
        assert c["reason"] in md
    for c in cases:
        if c["status"] == "PASSED":
            assert f"`{c['repro']}`" not in md


def test_bench_roofline_table_uses_median_and_lists_errors(report):
    _, md = report
    rows = {(r[1], r[2]): r for r in table_rows(md, "`identity:seed=0`")}
    assert float(rows[("kk:serial", "compress")][6]) == pytest.approx(0.9)
    assert float(rows[("ref:any", "compress")][6]) == pytest.approx(0.5)
    # Two repetitions (0.42, 0.28) plus their median aggregate 0.34: the median is reported.
    topk = table_row(md, "`topk:seed=0,density=0.01`")
    assert float(topk[6]) == pytest.approx(0.34)
    assert float(topk[3]) == pytest.approx(5.0)  # the median's 5 us, time_unit "us"
    # n = 1024 rows are not in the largest-n table; real_time 2000 ns = 2 us would be there.
    assert "### Fraction of roofline at n = 4096" in md
    assert "payload differs from ref:any" in md and "sign:n=4096,seed=0/kk:serial/compress" in md


def test_copy_bandwidth_table(report):
    _, md = report
    assert float(table_row(md, "1024")[1]) == pytest.approx(8.0)
    assert float(table_row(md, "4096")[1]) == pytest.approx(10.0)


def test_collective_table(report):
    _, md = report
    res = load("coll.json")["results"]
    big = max(r["bytes"] for r in res)
    dense = next(r for r in res if r["compressor"] == "dense" and r["bytes"] == big)
    for r in res:
        if r["bytes"] != big:
            continue
        cells = table_row(md, f"`{r['compressor']}`")
        assert cells[1] == r["algorithm"]
        assert float(cells[4]) == pytest.approx(r["time_us"], abs=0.05)
        assert float(cells[5]) == pytest.approx(r["busbw_GBps"], abs=5e-4)
        assert float(cells[8]) == pytest.approx(dense["time_us"] / r["time_us"], abs=0.005)
    assert "**1 result(s) report wrong values**" in md


def test_missing_inputs_give_sections_not_crashes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("--in", empty, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "out" / "unknown-device" / "index.md").read_text()
    for tool in ("gradcomp-bench", "gradcomp-coll-perf", "gradcomp-train", "gradcomp-validate"):
        assert f"no {tool} JSON found" in md
    assert not list((tmp_path / "out").rglob("*.png"))


def test_only_train_input(tmp_path):
    d = tmp_path / DEVICE_DIR
    d.mkdir()
    (d / "bench_roofline.png").write_bytes(b"stale")  # from an earlier report: must go
    r = run("--in", FIXTURES / "train_dgc.json", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    md = (d / "index.md").read_text()
    assert "no gradcomp-bench JSON found" in md and "no gradcomp-validate JSON found" in md
    assert "no gradcomp-coll-perf JSON found" in md
    assert "no gradcomp-train JSON found" not in md
    assert {p.name for p in d.glob("*.png")} == {"train_accuracy.png"}
    assert table_row(md, "`dgc`")[6] == "–"  # no sgdm run: no gap


def test_device_override(tmp_path):
    r = run("--in", FIXTURES / "validate_kk.json", "--out", tmp_path, "--device", "My GPU (x) #1")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "My-GPU-x-1" / "index.md").read_text()
    assert md.startswith("# gradcomp report: My GPU (x) #1")


def test_malformed_json_names_the_file(tmp_path):
    d = tmp_path / "in"
    shutil.copytree(FIXTURES, d)
    bad = d / "train_dgc.json"
    bad.write_text(bad.read_text()[:200])  # truncated
    r = run("--in", d, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert str(bad) in r.stderr and "not valid JSON" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("index.md"))


def test_missing_field_names_file_and_field(tmp_path):
    d = json.loads((FIXTURES / "train_sgdm.json").read_text())
    del d["epochs"][1]["test_accuracy"]
    f = tmp_path / "t.json"
    f.write_text(json.dumps(d))
    r = run("--in", f, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert f"{f}: epochs[1]: missing 'test_accuracy'" in r.stderr
    assert "Traceback" not in r.stderr

    d = json.loads((FIXTURES / "coll.json").read_text())
    d["results"][0]["time_us"] = "fast"
    f.write_text(json.dumps(d))
    r = run("--in", f, "--out", tmp_path / "out")
    assert r.returncode == 2 and f"{f}: results[0]: 'time_us' is not a number" in r.stderr


def test_unknown_json(tmp_path):
    other = tmp_path / "in" / "other.json"
    other.parent.mkdir()
    other.write_text('{"hello": 1}')
    shutil.copy(FIXTURES / "validate_kk.json", tmp_path / "in")
    r = run("--in", tmp_path / "in", "--out", tmp_path / "out")  # in a folder: skipped
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and str(other) in r.stderr
    r = run("--in", other, "--out", tmp_path / "out")  # named explicitly: an error
    assert r.returncode == 2 and str(other) in r.stderr
    r = run("--in", tmp_path / "nope.json", "--out", tmp_path / "out")
    assert r.returncode == 2 and "nope.json: no such file or directory" in r.stderr


def record_lists(d):
    """The lists of records in a fixture (plus its context) that a tool's JSON holds."""
    lists = [d[k] for k in ("benchmarks", "results", "epochs", "cases") if k in d]
    return lists + ([[d["context"]]] if "context" in d else [])


@pytest.mark.parametrize("name", ["bench.json", "coll.json", "train_dgc.json",
                                  "validate_kk.json"])
def test_null_or_missing_fields_never_crash(tmp_path, name, monkeypatch):
    # Every key of every record, set to null in all records at once: the report is
    # written or refused with InputError naming the file, never an unhandled exception.
    sys.path.insert(0, str(SCRIPT.parent))
    import io
    import make_report

    def quick_save(fig, outdir, fname, footer):
        # Still draws (ticks, log axes, layout are computed at draw time), at a tenth the cost.
        fig.text(0.5, 0.005, footer)
        fig.savefig(io.BytesIO(), dpi=10)
        make_report.pyplot().close(fig)
        return fname
    monkeypatch.setattr(make_report, "save", quick_save)
    base = load(name)
    keys = sorted({k for lst in record_lists(base) for rec in lst for k in rec})
    refused = 0
    for key in keys:
        # null only: a missing optional key reads the same; missing required keys are tested
        # above with their messages, and in the fixtures (train_signum.json lacks some keys).
        for how in ("null",):
            d = json.loads(json.dumps(base))
            for lst in record_lists(d):
                for rec in lst:
                    if key in rec:
                        if how == "null":
                            rec[key] = None
                        else:
                            del rec[key]
            f = tmp_path / name
            f.write_text(json.dumps(d))
            try:
                make_report.make_report([str(f)], tmp_path / "out", warn=lambda m: None)
            except make_report.InputError as e:
                assert str(e).startswith(str(f)), e
                refused += 1
    assert refused > 0  # the required keys are refused


def test_gap_is_to_the_best_sgdm_run_with_options(tmp_path):
    # Two dense baselines with options (as the convergence benchmark has: with and without
    # momentum): the gap is to the more accurate one, found by the preset's name before ':'.
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(FIXTURES / "train_dgc.json", d / "dgc.json")
    for preset, acc in (("sgdm:momentum=0", 0.70), ("sgdm:momentum=0.9", 0.85)):
        run_json = json.loads((FIXTURES / "train_sgdm.json").read_text())
        run_json["context"]["preset"] = preset
        run_json["epochs"][-1]["test_accuracy"] = acc
        (d / f"{preset.replace(':', '_')}.json").write_text(json.dumps(run_json))
    r = run("--in", d, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    md = next((tmp_path / "out").rglob("index.md")).read_text()
    dgc_final = 100 * load("train_dgc.json")["epochs"][-1]["test_accuracy"]
    assert float(table_row(md, "`dgc`")[6]) == pytest.approx(dgc_final - 85.0, abs=0.005)
    assert float(table_row(md, "`sgdm:momentum=0`")[6]) == pytest.approx(-15.0, abs=0.005)


def test_bench_fused_ef_rows_are_reported(tmp_path):
    """gradcomp-bench's fused_ef op (the fused EF step) gets its figure and roofline rows."""
    d = load("bench.json")
    for impl, frac in (("ref:any", 0.1), ("kk:serial", 0.75)):
        d["benchmarks"].append({
            "name": f"blocksign:n=4096,seed=0/{impl}/fused_ef/manual_time",
            "run_name": f"blocksign:n=4096,seed=0/{impl}/fused_ef/manual_time",
            "run_type": "iteration", "iterations": 10, "real_time": 3000.0,
            "cpu_time": 3000.0, "time_unit": "ns", "input_GBps": 5.46, "touched_GBps": 7.5,
            "frac_copy_bw": frac, "copy_GBps": 10.0, "payload_B": 516, "ratio": 31.75,
            "momentum": 0.9, "lr": 0.1, "error_feedback": 1.0,
            "label": f"{impl} heavy_ball mu=0.9, lr inside=0.1, ef on"})
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "bench.json").write_text(json.dumps(d))
    r = run("--in", inp, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "out" / DEVICE_DIR / "index.md").read_text(encoding="utf-8")
    assert "](bench_gbps_fused_ef.png)" in md
    rows = {(c[1], c[2]): c for c in table_rows(md, "`blocksign:seed=0`")}
    assert float(rows[("kk:serial", "fused_ef")][6]) == pytest.approx(0.75)
    assert float(rows[("ref:any", "fused_ef")][6]) == pytest.approx(0.1)


CUDA_FIXTURE = {
    "context": {"tool": "gradcomp-cuda-bench", "device": "Fixture GPU H999", "hostname": "gpu-box",
                "git_sha": "abcdef0123456789", "date": "2026-12-05T10:00:00Z", "n": 67108864,
                "reps": 20, "copy_GBps": 3000.0},
    "results": [
        {"bench": "sign:n=67108864,seed=0,nonfinite=error", "impl": "cuda:native", "n": 67108864,
         "payload_bytes": 8388640, "compress_ms": 0.1, "compress_GBps": 2768.2,
         "compress_frac_copy_bw": 0.923, "accumulate_ms": 0.2, "accumulate_GBps": 2726.3,
         "accumulate_frac_copy_bw": 0.909},
        {"bench": "topk:n=67108864,seed=0,density=0.001,nonfinite=error", "impl": "cuda:native",
         "n": 67108864, "payload_bytes": 536896, "compress_ms": 3.0, "compress_GBps": 89.6,
         "compress_frac_copy_bw": 0.03, "accumulate_ms": 0.18, "accumulate_GBps": 2985.5,
         "accumulate_frac_copy_bw": 0.995}]}


def test_gpu_rows_when_cuda_bench_json_is_present(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "in")
    (tmp_path / "in" / "cuda.json").write_text(json.dumps(CUDA_FIXTURE))
    r = run("--in", tmp_path / "in", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    index = tmp_path / "out" / DEVICE_DIR / "index.md"  # still named after the CPU runs
    md = index.read_text(encoding="utf-8")
    assert "## GPU kernels (gradcomp-cuda-bench)" in md
    assert "Fixture GPU H999, device copy 3000.0 GB/s" in md
    assert table_row(md, "`sign:seed=0,nonfinite=error`") == [
        "`sign:seed=0,nonfinite=error`", "67108864", "8388640", "2768.2", "0.923", "2726.3",
        "0.909"]
    assert table_row(md, "`topk:seed=0,density=0.001,nonfinite=error`")[3:5] == ["89.6", "0.030"]
    png = index.parent / "cuda_roofline_0.png"
    assert "](cuda_roofline_0.png)" in md
    stamp = png_text(png)["Description"]
    assert "Fixture GPU H999" in stamp and "abcdef012345" in stamp and "2026-12-05" in stamp


def test_no_gpu_section_without_cuda_json(report):
    _, md = report
    assert "GPU kernels" not in md


def test_cuda_json_missing_field_names_file(tmp_path):
    d = json.loads(json.dumps(CUDA_FIXTURE))
    del d["results"][1]["compress_GBps"]
    f = tmp_path / "cuda.json"
    f.write_text(json.dumps(d))
    r = run("--in", f, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert f"{f}: results[1]: missing 'compress_GBps'" in r.stderr
    assert "Traceback" not in r.stderr
