#!/usr/bin/env python3
"""What a speculative verify costs: `owl bench --verify-rows` on each file, the forward time over
R rows of one sequence against one row (c(R)), the weight bytes those rows read (routed experts
and the rest), the memory-bound floor of c(R) (bytes(R) / bytes(1)), and the decode speedup of
NextN drafting projected from both (docs/BENCHMARKS.md, "Speculative decoding (issue 24)").

    scripts/bench_verify.py [--owl build/owl] [--baseline OTHER/owl] [--dir /tmp/m | --file F.gguf...]
                            [-t 2] [-r 2] [--rows 1,2,3,4,5] [--reps 4] [--json]

Each of the -r rounds runs every binary once per file (owl, baseline, owl, ...), so a noisy
neighbour slows them alike; c(R) is the mean over the rounds of each run's median ratio. The
projection: K drafts feed K + 1 rows and yield 1 + a + ... + a^K tokens (each draft accepted
with probability a, the chain stopping at the first miss), for c(K + 1) + K * m of one row's
time (m = 0.04: one NextN layer and its head against DeepSeek-V3's 61 layers).
"""
import argparse
import json
import os
import subprocess

FILES = ["qwen3-0.6b-q4_k_m.gguf", "qwen3-0.6b-q8_0.gguf", "deepseek-v2-lite-8l-q4_k_m.gguf",
         "qwen3-30b-a3b-8l-q4_k_m.gguf"]
HEAD_COST = 0.04


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def commit(binary):
    where = os.path.dirname(os.path.realpath(binary))
    r = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip()[:12] if r.returncode == 0 else "?"


def bench(binary, path, a):
    out = subprocess.run([binary, "bench", path, "-p", "0", "-n", "8", "-t", str(a.threads), "-r", str(a.reps),
                          "--verify-rows", a.rows, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def speedup(c, k, alpha):
    tokens = sum(alpha ** i for i in range(k + 1))
    return tokens / (c[k + 1] + k * HEAD_COST)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--owl", default="build/owl")
    p.add_argument("--baseline", help="another owl binary, run in turns with --owl")
    p.add_argument("--dir", default="/tmp/m")
    p.add_argument("--file", action="append", help="files instead of the four of --dir")
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("-r", "--rounds", type=int, default=2)
    p.add_argument("--rows", default="1,2,3,4,5", help="row counts (the first is the reference, give 1 first)")
    p.add_argument("--reps", type=int, default=4, help="owl bench -r: 8 x REPS timed calls per row count")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    files = a.file or [os.path.join(a.dir, f) for f in FILES]
    binaries = [("owl", a.owl)] + ([("baseline", a.baseline)] if a.baseline else [])
    rows = [int(r) for r in a.rows.split(",")]
    print("owl %s%s, %d threads, %d rounds; load %s" % (
        commit(a.owl), ", baseline %s" % commit(a.baseline) if a.baseline else "", a.threads, a.rounds, loadavg()))
    report = []
    for path in files:
        runs = {name: [] for name, _ in binaries}
        for _ in range(a.rounds):
            for name, binary in binaries:
                runs[name].append(bench(binary, path, a))
        print("\n%s (load %s)" % (os.path.basename(path), loadavg()))
        for name, _ in binaries:
            js = runs[name]
            v = [j["verify_rows"] for j in js]
            c = {rows[i]: sum(x[i]["vs_one_row"] for x in v) / len(v) for i in range(len(rows))}
            one_ms = [x[0]["ms_median"] for x in v]
            bw = [j["bandwidth_gbs"] for j in js]
            print("  %s: 1 row %s ms; probe %s GB/s" % (name, " / ".join("%.1f" % m for m in one_ms),
                                                       " / ".join("%.1f" % b for b in bw)))
            counted = "weight_bytes" in v[0][0]  # binaries before the byte counts report times only
            floor, mb, over = {}, [], []
            if counted:
                floor = {rows[i]: sum(x[i]["bytes_vs_one_row"] for x in v) / len(v) for i in range(len(rows))}
                mb = [(v[0][i]["weight_bytes"] / 1e6, v[0][i]["routed_bytes"] / 1e6) for i in range(len(rows))]
                over = [sum(x[i]["ms_median"] / x[i]["floor_ms"] for x in v) / len(v) for i in range(len(rows))]
            for i, r in enumerate(rows):
                line = "    R=%d  c %.2f" % (r, c[r])
                if counted:
                    line += "  floor %.2f  weights %.0f MB (routed %.0f)  time / floor-time %.2f" % (
                        floor[r], mb[i][0], mb[i][1], over[i])
                print(line)
            for label, cc in (("measured", c), ("floor", floor)) if counted else (("measured", c),):
                cells = []
                for k in (1, 2, 3):
                    if k + 1 in cc:
                        cells.append("K=%d %.2f / %.2f" % (k, speedup(cc, k, 0.85), speedup(cc, k, 0.70)))
                print("    projected (85%% / 70%%) from the %s c: %s" % (label, ", ".join(cells)))
            report.append({"file": path, "binary": name, "c": c, "floor": floor, "one_row_ms": one_ms,
                           "weights_mb": mb, "time_over_floor": over, "bandwidth_gbs": bw})
    print("\nload %s" % loadavg())
    if a.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
