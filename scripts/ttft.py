#!/usr/bin/env python3
"""Time to first token from a cold start: load a model file that is not in the page cache and
evaluate a first prompt, owl against llama-bench, taking turns on the same file.

    scripts/ttft.py [--owl build/owl] [--ref /work/ref/llama.cpp/build/bin/llama-bench]...
                    [--file /tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf] [-p 512] [-t 2] [-r 3] [--json]

Before every cold run the file's pages are dropped from the page cache (posix_fadvise
DONTNEED; `fincore` then says how much stayed resident: pages another process maps stay).
Timed is the whole process, exec to exit, of
  owl bench F -p P -n 0 -r 1 --no-warmup          (load + one P-token prefill; no probe)
  llama-bench -m F -p P -n 0 -r 1 --no-warmup     (the same; ik_llama.cpp's llama-bench has no
                                                   --no-warmup and fails: leave it out)
both of which load, evaluate one P-token prompt of random tokens and exit: the time a user
waits for the first token of a P-token prompt, plus the process teardown. A warm run (file
cached) follows each cold one, for what the disk cost.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench import git_commit, loadavg, repo_name


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_bytes(path):
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", path], capture_output=True,
                       text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 and r.stdout.split() else -1


def command(name, binary, a):
    if name == "owl":
        return [binary, "bench", a.file, "-p", str(a.prompt), "-n", "0", "-t", str(a.threads), "-r", "1",
                "--no-warmup", "--json"]
    return [binary, "-m", a.file, "-p", str(a.prompt), "-n", "0", "-t", str(a.threads), "-r", "1", "--no-warmup",
            "-o", "json"] + (["-rtr", "1"] if "ik_llama" in binary else [])


def timed(cmd):
    """Seconds from exec to exit, or None when the command fails (its last error line is printed)."""
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"ttft: {cmd[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return None
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--ref", action="append", default=[], help="a llama-bench binary (repeatable)")
    ap.add_argument("--file", default="/tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf")
    ap.add_argument("-p", "--prompt", type=int, default=512)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3, help="alternations")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    engines = [("owl", a.owl, git_commit(a.owl))] + [(repo_name(r), r, git_commit(r)) for r in a.ref]
    size = os.path.getsize(a.file)
    runs = {n: {"cold": [], "warm": [], "resident_after_evict": []} for n, _, _ in engines}
    load_before = loadavg()
    for i in range(a.reps):
        for name, binary, _ in engines:
            cmd = command(name, binary, a)
            evict(a.file)
            runs[name]["resident_after_evict"].append(resident_bytes(a.file))
            runs[name]["cold"].append(timed(cmd))
            runs[name]["warm"].append(timed(cmd))
            print(f"ttft: {i + 1}/{a.reps} {name}: cold {runs[name]['cold'][-1]} s, warm {runs[name]['warm'][-1]} s,"
                  f" {runs[name]['resident_after_evict'][-1] / 2**20:.0f} MiB resident after eviction", file=sys.stderr)
    result = {"file": a.file, "file_bytes": size, "prompt": a.prompt, "threads": a.threads, "alternations": a.reps,
              "load_before": load_before, "load_after": loadavg(),
              "engines": {n: {"binary": b, "commit": c, **runs[n]} for n, b, c in engines}}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{os.path.basename(a.file)} ({size / 1e9:.2f} GB), {a.threads} threads, load + {a.prompt}-token prefill,"
          f" exec to exit, {a.reps} alternations: best (worst) s; load avg {result['load_before']} → {result['load_after']}")
    print("\n| engine | commit | cold s | warm s | resident after eviction | cold ÷ owl's cold |")
    print("|---|---|---|---|---|---|")
    def spread(v):
        v = [x for x in v if x is not None]
        return f"{min(v):.2f} ({max(v):.2f})" if v else "fails"

    owl_cold = min([x for x in runs["owl"]["cold"] if x is not None], default=None)
    for name, _, commit in engines:
        r = runs[name]
        cold = min([x for x in r["cold"] if x is not None], default=None)
        ratio = f"{cold / owl_cold:.2f}" if cold and owl_cold else "–"
        print(f"| {name} | {commit} | {spread(r['cold'])} | {spread(r['warm'])} | "
              f"{max(r['resident_after_evict']) / 2**20:.0f} MiB | {ratio} |")


if __name__ == "__main__":
    main()
