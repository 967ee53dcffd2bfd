#!/usr/bin/env python3
"""Prints criterion results (target/criterion/**/new/estimates.json) as markdown tables.
   bench/summarize.py scan|dispatch"""
import json, pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"

def mean_ns(path):
    return json.loads(path.read_text())["mean"]["point_estimate"]

def results(prefix):
    out = {}
    for est in root.glob(f"{prefix}*/**/new/estimates.json"):
        rel = est.parent.parent.relative_to(root)
        out[str(rel)] = mean_ns(est)
    return out

what = sys.argv[1] if len(sys.argv) > 1 else "scan"
if what == "scan":
    r = results("scan_")
    w = results("rewrite_")
    print("| message | bytes | sipdispatch scan (ns) | rsip parse (ns) | rsip ÷ sipdispatch | rewrite (ns) | scan MB/s |")
    print("|---|---|---|---|---|---|---|")
    sizes = {}
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    for key in sorted(k for k in r if k.endswith("/sipdispatch")):
        name = key.split("/")[0].removeprefix("scan_")
        ours = r[key]
        theirs = r.get(key.replace("sipdispatch", "rsip"), float("nan"))
        rw = next((v for k, v in w.items() if k.startswith(f"rewrite_{name}/")), float("nan"))
        size = json.loads((root / key / "new" / "benchmark.json").read_text()).get("throughput", {}) or {}
        nbytes = size.get("Bytes", 0)
        mbs = nbytes / ours * 1e3 if ours else 0
        print(f"| {name} | {nbytes} | {ours:.0f} | {theirs:.0f} | {theirs / ours:.1f}× | {rw:.0f} | {mbs:.0f} |")
else:
    r = results("select_")
    algs = sorted({k.split("/")[1] for k in r}, key=lambda a: (int(a.split("-")[0]), a))
    print("| algorithm | 2 destinations (ns) | 10 (ns) | 100 (ns) |")
    print("|---|---|---|---|")
    for a in algs:
        row = [r.get(f"select_{n}/{a}", float("nan")) for n in (2, 10, 100)]
        print(f"| {a} | " + " | ".join(f"{x:.0f}" for x in row) + " |")
    t = results("tracker_")
    print()
    print("| tracker operation (1 M calls resident) | ns |")
    print("|---|---|")
    for k, v in sorted(t.items()):
        print(f"| {k.split('/', 1)[1]} | {v:.0f} |")
