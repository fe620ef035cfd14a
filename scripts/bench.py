#!/usr/bin/env python3
"""owl against reference engines, measured in one run on the same files: prompt processing
(pp) and generation (tg) tokens/s of `owl bench` and of each `--ref` llama-bench binary,
taken in turns (owl, ref 1, ref 2, owl, ref 1, ...) so a noisy neighbour slows them alike.

    scripts/bench.py [--owl build/owl] [--ref /work/ref/llama.cpp/build/bin/llama-bench]...
                     [--dir /tmp/m | --file F.gguf...] [-t 2] [-r 3] [-p 512] [-n 64] [--only NAME] [--json]

Each of the -r alternations runs every engine once (one timed repetition after its own
warm-up); a row reports the best and the spread (min-max) over the alternations, and the
ratios owl / ref are of the best figures of this run only. A --ref whose path contains
"ik_llama" gets `-rtr 1` (its run-time weight repacking, as owl repacks at load). The
commit of each engine (git rev-parse HEAD where its binary lives) and the load average
before and after every file are printed with the table.

Missing model files are made with `owl synth` first (random weights; the 30B-A3B and
DeepSeek shapes take ~8 minutes each).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

# name, synth arch, synth shape, type: the issues' four files, /tmp/m/<shape>-<type>.gguf
SHAPES = [
    ("qwen3-0.6b q4_k_m", "qwen3", "qwen3-0.6b", "q4_k_m"),
    ("qwen3-0.6b q8_0", "qwen3", "qwen3-0.6b", "q8_0"),
    ("deepseek-v2-lite-8l q4_k_m", "deepseek2", "deepseek-v2-lite-8l", "q4_k_m"),
    ("qwen3-30b-a3b-8l q4_k_m", "qwen3moe", "qwen3-30b-a3b-8l", "q4_k_m"),
]


def git_commit(binary):
    """The commit checked out where `binary` lives (its source tree), or '?'."""
    where = os.path.dirname(os.path.realpath(binary))
    r = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip()[:12] if r.returncode == 0 else "?"


def repo_name(binary):
    where = os.path.dirname(os.path.realpath(binary))
    r = subprocess.run(["git", "-C", where, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return os.path.basename(r.stdout.strip()) if r.returncode == 0 else os.path.basename(binary)


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


class Owl:
    def __init__(self, binary, name="owl"):
        self.binary, self.name, self.commit = binary, name, git_commit(binary)

    def run(self, path, a):
        out = subprocess.run([self.binary, "bench", path, "-p", str(a.prompt), "-n", str(a.gen), "-t",
                              str(a.threads), "-r", "1", "--json"], check=True, capture_output=True, text=True).stdout
        j = json.loads(out)
        return {"pp": j["pp"]["tps_median"], "tg": j["tg"]["tps_median"], "bandwidth_gbs": j["bandwidth_gbs"],
                "roofline_tps": j["roofline_tps"]}


class LlamaBench:
    def __init__(self, binary):
        self.binary, self.commit = binary, git_commit(binary)
        self.extra = ["-rtr", "1"] if "ik_llama" in binary else []
        self.name = repo_name(binary) + (" -rtr 1" if self.extra else "")

    def run(self, path, a):
        out = subprocess.run([self.binary, "-m", path, "-p", str(a.prompt), "-n", str(a.gen), "-t", str(a.threads),
                              "-r", "1", "-o", "json"] + self.extra, check=True, capture_output=True, text=True).stdout
        tests = json.loads(out[out.index("["):])
        pp = [t["avg_ts"] for t in tests if t["n_prompt"] > 0]
        tg = [t["avg_ts"] for t in tests if t["n_gen"] > 0]
        return {"pp": pp[0], "tg": tg[0]}


def measure(engines, path, a):
    """Every engine once per alternation; per engine the list of runs, or the error that stopped it."""
    runs = {e.name: [] for e in engines}
    errors = {}
    for i in range(a.reps):
        for e in engines:
            if e.name in errors:
                continue
            try:
                runs[e.name].append(e.run(path, a))
            except (subprocess.CalledProcessError, ValueError, KeyError, IndexError) as err:
                msg = getattr(err, "stderr", "") or str(err)
                errors[e.name] = (msg.strip().splitlines() or ["failed"])[-1][:120]
            r = runs[e.name][-1] if runs[e.name] else None
            print(f"bench: {os.path.basename(path)} {i + 1}/{a.reps} {e.name}: "
                  + (f"pp {r['pp']:.1f} tg {r['tg']:.1f}" if r and e.name not in errors else errors[e.name]),
                  file=sys.stderr)
    return runs, errors


def summary(runs):
    """Best and spread of each figure over the alternations."""
    out = {}
    for k in ("pp", "tg"):
        v = [r[k] for r in runs]
        out[k] = {"best": max(v), "min": min(v), "all": v}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--ref", action="append", default=[], help="a llama-bench binary (repeatable)")
    ap.add_argument("--baseline", default="", help="another owl binary (an older build), alternated like a ref")
    ap.add_argument("--dir", default="/tmp/m")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3, help="alternations")
    ap.add_argument("-p", "--prompt", type=int, default=512)
    ap.add_argument("-n", "--gen", type=int, default=64)
    ap.add_argument("--only", default="", help="run the shapes whose name contains this")
    ap.add_argument("--file", action="append", default=[], help="bench this GGUF file instead of the four shapes (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    a = ap.parse_args()
    if a.reps < 1 or a.prompt < 1 or a.gen < 1:
        sys.exit("bench: -r, -p and -n must be >= 1")
    for b in [a.owl] + a.ref + ([a.baseline] if a.baseline else []):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b}: not an executable file")
    owl = Owl(a.owl)
    engines = [owl] + ([Owl(a.baseline, "owl baseline")] if a.baseline else []) + [LlamaBench(r) for r in a.ref]
    os.makedirs(a.dir, exist_ok=True)

    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "threads": a.threads, "alternations": a.reps, "prompt": a.prompt, "gen": a.gen,
              "engines": {e.name: {"binary": e.binary, "commit": e.commit} for e in engines}, "files": []}
    files = [(os.path.basename(f), None, None, None) for f in a.file] or SHAPES
    for name, arch, shape, typ in files:
        if a.only and a.only not in name:
            continue
        path = a.file[[f[0] for f in files].index(name)] if a.file else os.path.join(a.dir, f"{shape}-{typ}.gguf")
        if not os.path.exists(path) and a.file:
            sys.exit(f"bench: {path}: no such file")
        if not os.path.exists(path):
            print(f"bench: making {path} with owl synth", file=sys.stderr)
            subprocess.run([a.owl, "synth", "--arch", arch, "--shape", shape, "--type", typ, "-o", path], check=True)
        load_before = loadavg()
        runs, errors = measure(engines, path, a)
        row = {"name": name, "file": path, "load_before": load_before, "load_after": loadavg(), "engines": {}}
        for e in engines:
            if e.name in errors:
                row["engines"][e.name] = {"error": errors[e.name]}
                continue
            row["engines"][e.name] = summary(runs[e.name])
        o = row["engines"].get(owl.name, {})
        if "pp" in o:  # the decode roofline from owl's own bandwidth probe (best pass of the best run)
            best_bw = max(r["bandwidth_gbs"] for r in runs[owl.name])
            bpt = runs[owl.name][0]["bandwidth_gbs"] / runs[owl.name][0]["roofline_tps"]
            o["bandwidth_gbs"] = best_bw
            o["roofline_share"] = o["tg"]["best"] / (best_bw / bpt)
            for e in engines[1:]:
                ref = row["engines"][e.name]
                if "pp" in ref:
                    ref["owl_ratio"] = {k: o[k]["best"] / ref[k]["best"] for k in ("pp", "tg")}
        result["files"].append(row)

    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['date']}, {a.threads} threads, {a.reps} alternations (best, spread min-max), "
          f"pp{a.prompt} / tg{a.gen} t/s")
    for e in engines:
        print(f"- {e.name}: {e.binary} @ {e.commit}")
    print(f"\n| model | engine | pp{a.prompt} best (min) | tg{a.gen} best (min) | owl ÷ engine, pp | tg | load avg |")
    print("|---|---|---|---|---|---|---|")
    for row in result["files"]:
        for e in engines:
            r = row["engines"][e.name]
            load = f"{row['load_before']} → {row['load_after']}" if e is owl else ""
            if "error" in r:
                print(f"| {row['name']} | {e.name} | fails: {r['error']} | | | | {load} |")
                continue
            ratio = "%.2f | %.2f" % (r["owl_ratio"]["pp"], r["owl_ratio"]["tg"]) if "owl_ratio" in r else " | "
            print(f"| {row['name']} | {e.name} | {r['pp']['best']:.1f} ({r['pp']['min']:.1f}) "
                  f"| {r['tg']['best']:.1f} ({r['tg']['min']:.1f}) | {ratio} | {load} |")
    print(f"\nowl's decode against its roofline (best tg{a.gen} ÷ (best probe bandwidth ÷ weight bytes per token)):")
    for row in result["files"]:
        o = row["engines"][owl.name]
        if "roofline_share" in o:
            print(f"- {row['name']}: {o['roofline_share']:.2f} of {o['bandwidth_gbs']:.1f} GB/s")

if __name__ == "__main__":
    main()
