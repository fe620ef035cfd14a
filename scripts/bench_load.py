#!/usr/bin/env python3
"""Load time: how long a resident MoE file takes from `owl` starting to its first token, next to
the time to read the file once from the page cache (one thread, 16 MiB reads: what `cat F >
/dev/null` does), alternating the runs so that a noisy neighbour slows them alike.

    scripts/bench_load.py [--owl build/owl] [--baseline OLD_OWL] [--model F] [-t 2] [-p 16] [-r 5]

Per round: the page-cache read; `owl logits` over a P-token prompt (process start to the
logits of every position written: the first token of a P-token prompt), for each binary; and
`owl bench -p P -n 1 -r 1 --json` for its split into load and first forward. The file is read
once first so that every run finds it in the page cache. Prints best and spread per figure.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time


def read_once(path):
    t0 = time.time()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(16 << 20)
        while f.readinto(buf):
            pass
    return time.time() - t0


def timed(argv):
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return time.time() - t0, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--baseline", default="")
    ap.add_argument("--model", default="/tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--prompt", type=int, default=16)
    ap.add_argument("-r", "--rounds", type=int, default=5)
    a = ap.parse_args()
    binaries = {"owl": a.owl}
    if a.baseline:
        binaries["baseline"] = a.baseline
    tokens = ",".join(str(100 + 7 * i) for i in range(a.prompt))
    out = os.path.join(tempfile.mkdtemp(), "logits.f32")
    read_once(a.model)  # into the page cache
    times = {"read": []}
    for name in binaries:
        times[name + " first token"] = []
        times[name + " bench load"] = []
        times[name + " bench first forward"] = []
    loads = []
    for _ in range(a.rounds):
        loads.append(os.getloadavg()[0])
        times["read"].append(read_once(a.model))
        for name, owl in binaries.items():
            s, _ = timed([owl, "logits", a.model, "--tokens", tokens, "--out", out, "-t", str(a.threads),
                          "--ctx", "256"])
            times[name + " first token"].append(s)
            _, js = timed([owl, "bench", a.model, "-p", str(a.prompt), "-n", "1", "-r", "1", "-t", str(a.threads),
                           "--json"])
            j = json.loads(js)
            times[name + " bench load"].append(j["load_s"])
            times[name + " bench first forward"].append(j["first_forward_s"])
    os.remove(out)
    size = os.path.getsize(a.model)
    print(f"model {a.model} ({size / 1e9:.2f} GB), {a.prompt}-token prompt, -t {a.threads}, {a.rounds} rounds, "
          f"load average {min(loads):.1f}-{max(loads):.1f}")
    read = min(times["read"])
    for k, v in times.items():
        print(f"{k:32s} best {min(v):6.2f} s  spread {min(v):.2f}-{max(v):.2f} s  best / read {min(v) / read:5.2f}")


if __name__ == "__main__":
    main()
