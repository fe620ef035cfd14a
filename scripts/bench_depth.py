#!/usr/bin/env python3
"""Decode at context depth, owl against llama-bench on the same files in one run.

    scripts/bench_depth.py [--owl build/owl] [--ref /work/ref/llama.cpp/build/bin/llama-bench]...
                           [--file F]... [-d 4096,16384,32768] [-n 32] [--kv f16,q8_0,q4_0] [-t 2] [-r 1]
                           [--timeout 3600] [--log FILE] [--ref-first] [--json]

owl: `owl bench F -p 0 -n N -d D --kv-type KV -r 1 --json`; llama.cpp: `llama-bench -m F -p 0
-n N -d D -ctk KV -ctv KV -fa 1 -r 1 -o json` (flash attention on: llama.cpp needs it for a
quantised V cache and it is its faster long-context path). Each engine fills the context to D
with a prefill first (untimed), then times N single-token decode steps. The engines take turns
for every (file, KV type, depth) -r times; best (and worst) tg t/s and the ratio owl / ref of
the best. The defaults are issue 23 item 5's whole table: both files, depths 4k/16k/32k, KV
types f16/q8_0/q4_0. Each engine call may take --timeout seconds (the fill dominates: llama.cpp
filled 16k in more than 560 s on a loaded machine, 32k takes about 4x as long); one that runs
out counts as failed and the run goes on. --log appends every measurement as one JSON line as
soon as it is taken, so a run stopped early keeps what it measured.
"""
import argparse
import json
import os
import subprocess
import sys

from bench import git_commit, loadavg, repo_name

FILES = ["/tmp/m/qwen3-0.6b-q4_k_m.gguf", "/tmp/m/deepseek-v2-lite-8l-q4_k_m.gguf"]


def owl_run(a, path, depth, kv):
    out = subprocess.run([a.owl, "bench", path, "-p", "0", "-n", str(a.gen), "-d", str(depth), "--kv-type", kv,
                          "-t", str(a.threads), "-r", "1", "--json"], check=True, capture_output=True, text=True,
                         timeout=a.timeout).stdout
    return json.loads(out)["tg"]["tps_median"]


def ref_run(a, binary, path, depth, kv):
    cmd = [binary, "-m", path, "-p", "0", "-n", str(a.gen), "-d", str(depth), "-ctk", kv, "-ctv", kv, "-fa", "1",
           "-t", str(a.threads), "-r", "1", "-o", "json"]
    if "ik_llama" in binary:
        cmd += ["-rtr", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=a.timeout).stdout
    return json.loads(out[out.index("["):])[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--ref", action="append", default=[], help="a llama-bench binary (repeatable)")
    ap.add_argument("--file", action="append", default=[], help=f"model file (repeatable; default {FILES})")
    ap.add_argument("-d", "--depth", default="4096,16384,32768")
    ap.add_argument("-n", "--gen", type=int, default=32)
    ap.add_argument("--kv", default="f16,q8_0,q4_0", help="KV cache types (owl --kv-type, llama.cpp -ctk/-ctv)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=1, help="alternations")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per engine call (fill + decode)")
    ap.add_argument("--log", help="append each measurement to this file as a JSON line")
    ap.add_argument("--ref-first", action="store_true",
                    help="run the references before owl in each alternation (a long reference fill started at a "
                         "low priority beside other work then leaves owl's call for the quiet minutes after it)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    engines = [("owl", a.owl, git_commit(a.owl))] + [(repo_name(r), r, git_commit(r)) for r in a.ref]
    order = engines[1:] + engines[:1] if a.ref_first else engines
    rows = []
    for path in a.file or FILES:
        for kv in a.kv.split(","):
            for depth in map(int, a.depth.split(",")):
                row = {"file": path, "kv": kv, "depth": depth, "load_before": loadavg(), "tg": {}}
                for i in range(a.reps):
                    for name, binary, _ in order:
                        try:
                            tps = owl_run(a, path, depth, kv) if name == "owl" else ref_run(a, binary, path, depth, kv)
                        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError, IndexError,
                                KeyError) as err:
                            tps = None
                            print(f"bench_depth: {name} failed: {getattr(err, 'stderr', '') or err}"[-300:],
                                  file=sys.stderr)
                        row["tg"].setdefault(name, []).append(tps)
                        if a.log:
                            with open(a.log, "a") as f:
                                f.write(json.dumps({"file": path, "kv": kv, "depth": depth, "engine": name,
                                                    "tg": tps, "load": loadavg()}) + "\n")
                        print(f"bench_depth: {os.path.basename(path)} {kv} d{depth} {i + 1}/{a.reps} {name}: {tps}",
                              file=sys.stderr)
                row["load_after"] = loadavg()
                rows.append(row)
    if a.json:
        print(json.dumps({"threads": a.threads, "gen": a.gen, "alternations": a.reps,
                          "engines": {n: {"binary": b, "commit": c} for n, b, c in engines}, "rows": rows}, indent=2))
        return
    print(f"{a.threads} threads, tg{a.gen} t/s after the depth, {a.reps} alternations: best (worst)")
    for name, binary, commit in engines:
        print(f"- {name}: {binary} @ {commit}")
    refs = [n for n, _, _ in engines[1:]]
    print("\n| model | KV | depth | " + " | ".join(n for n, _, _ in engines) + "".join(f" | owl ÷ {n}" for n in refs)
          + " | load avg |")
    print("|---|---|---|" + "---|" * (len(engines) + len(refs)) + "---|")

    def best(v):
        v = [x for x in v if x is not None]
        return max(v) if v else None

    for row in rows:
        cells = []
        for n, _, _ in engines:
            v = [x for x in row["tg"][n] if x is not None]
            cells.append(f"{max(v):.2f} ({min(v):.2f})" if v else "fails")
        o = best(row["tg"]["owl"])
        for r in refs:
            b = best(row["tg"][r])
            cells.append(f"{o / b:.2f}" if o and b else "–")
        print(f"| {os.path.basename(row['file'])} | {row['kv']} | {row['depth']} | " + " | ".join(cells)
              + f" | {row['load_before']} → {row['load_after']} |")


if __name__ == "__main__":
    main()
