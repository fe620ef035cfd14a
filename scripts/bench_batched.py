#!/usr/bin/env python3
"""Batched decode, owl against llama-batched-bench on the same files in one run: N sequences,
each with its own random prompt, decoding together.

    scripts/bench_batched.py [--owl build/owl] [--ref /work/ref/llama.cpp/build/bin/llama-batched-bench]...
                             [--file F]... [--npl 1,4,8,16] [-p 512] [-n 64] [-t 2] [-r 2] [--json]

owl: `owl bench F --parallel NPL -p P -n N -r 1 --json`, the engine's continuous batching (the
path of `owl serve`); its decode figure is the generated tokens per second while all N
sequences decode together. llama.cpp: `llama-batched-bench -npp P -ntg N -npl NPL`, whose
S_TG is the same regime (its prompts are all evaluated first, then N rows per step). Both also
give all tokens (prompt + generated) over the whole run (llama-batched-bench's S). Engines take
turns -r times; best (and worst) per sequence count; ratios owl / ref of the best.
Files without a vocabulary (owl synth's) get a tokenizer from ../shared/tokenizers for owl's
engine, which detokenizes what it generates.
"""
import argparse
import json
import os
import subprocess
import sys

from bench import git_commit, loadavg, repo_name

FILES = ["/tmp/m/qwen3-0.6b-q4_k_m.gguf", "/tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf"]
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tokenizers")


def owl_run(a, path, npl):
    tok = os.path.join(SHARED, "deepseek-v3" if "deepseek" in os.path.basename(path) else "qwen3")
    out = subprocess.run([a.owl, "bench", path, "--parallel", ",".join(map(str, npl)), "-p", str(a.prompt), "-n",
                          str(a.gen), "-t", str(a.threads), "-r", "1", "--tokenizer", tok, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return {p["sequences"]: {"decode": p["decode_tps_best"], "total": p["total_tps"]} for p in json.loads(out)["parallel"]}


def ref_run(a, binary, path, npl):
    ctx = max(npl) * (a.prompt + a.gen) + 64
    cmd = [binary, "-m", path, "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", str(a.prompt), "-ntg", str(a.gen),
           "-npl", ",".join(map(str, npl)), "-t", str(a.threads), "--output-format", "jsonl"]
    if "ik_llama" in binary:
        cmd += ["-rtr", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return {r["pl"]: {"decode": r["speed_tg"], "total": r["speed"]} for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--ref", action="append", default=[], help="a llama-batched-bench binary (repeatable)")
    ap.add_argument("--file", action="append", default=[], help=f"model file (repeatable; default {FILES})")
    ap.add_argument("--npl", default="1,4,8,16", help="sequence counts")
    ap.add_argument("-p", "--prompt", type=int, default=512)
    ap.add_argument("-n", "--gen", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=2, help="alternations")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    npl = [int(x) for x in a.npl.split(",")]
    engines = [("owl", a.owl, git_commit(a.owl))] + [(repo_name(r), r, git_commit(r)) for r in a.ref]
    result = {"threads": a.threads, "prompt": a.prompt, "gen": a.gen, "alternations": a.reps,
              "engines": {n: {"binary": b, "commit": c} for n, b, c in engines}, "files": []}
    for path in a.file or FILES:
        row = {"file": path, "load_before": loadavg(), "runs": {n: [] for n, _, _ in engines}}
        for i in range(a.reps):
            for name, binary, _ in engines:
                r = owl_run(a, path, npl) if name == "owl" else ref_run(a, binary, path, npl)
                row["runs"][name].append(r)
                print(f"bench_batched: {os.path.basename(path)} {i + 1}/{a.reps} {name}: "
                      + ", ".join(f"{n}: {r[n]['decode']:.1f}" for n in npl), file=sys.stderr)
        row["load_after"] = loadavg()
        row["best"] = {name: {n: {k: max(r[n][k] for r in runs) for k in ("decode", "total")} for n in npl}
                       for name, runs in row["runs"].items()}
        row["worst"] = {name: {n: min(r[n]["decode"] for r in runs) for n in npl} for name, runs in row["runs"].items()}
        result["files"].append(row)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{a.threads} threads, each sequence {a.prompt} prompt + {a.gen} generated tokens, {a.reps} alternations; "
          "aggregate decode t/s best (worst), all tokens t/s best")
    for name, binary, commit in engines:
        print(f"- {name}: {binary} @ {commit}")
    refs = [n for n, _, _ in engines[1:]]
    print("\n| model | sequences | " + " | ".join(f"{n} decode (worst) | {n} all" for n, _, _ in engines)
          + "".join(f" | owl ÷ {n} decode" for n in refs) + " | load avg |")
    print("|---|---|" + "---|---|" * len(engines) + "---|" * len(refs) + "---|")
    for row in result["files"]:
        for n in npl:
            cells = [f"{row['best'][e][n]['decode']:.1f} ({row['worst'][e][n]:.1f}) | {row['best'][e][n]['total']:.1f}"
                     for e, _, _ in engines]
            ratios = [f"{row['best']['owl'][n]['decode'] / row['best'][r][n]['decode']:.2f}" for r in refs]
            print(f"| {os.path.basename(row['file'])} | {n} | " + " | ".join(cells + ratios)
                  + f" | {row['load_before']} → {row['load_after']} |")


if __name__ == "__main__":
    main()
