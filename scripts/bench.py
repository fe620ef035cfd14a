#!/usr/bin/env python3
"""The speed issue's table in one run: owl bench on the four reference shapes, next to
llama.cpp's figures (commit d32676d77, 2 threads, this machine kind; from the issue, since
llama.cpp is not installed here) and the targets, as ratios.

    scripts/bench.py [--owl build/owl] [--dir /tmp/m] [-t 2] [-r 3] [-n 64] [--only NAME]

Missing model files are made with `owl synth` first (random weights; the 30B-A3B and
DeepSeek shapes take ~8 minutes each). Run it on an idle machine: the figures are
bandwidth- and core-bound and parallel builds halve them.
"""
import argparse
import json
import os
import subprocess
import sys

# name, synth arch, synth shape, type, llama.cpp pp512, llama.cpp tg, ik_llama pp/tg ratio to llama.cpp
SHAPES = [
    ("qwen3-0.6b q4_k_m", "qwen3", "qwen3-0.6b", "q4_k_m", 87.0, 29.0, (1.54, 1.08)),
    ("qwen3-0.6b q8_0", "qwen3", "qwen3-0.6b", "q8_0", 74.0, 19.6, (1.28, 1.10)),
    ("deepseek-v2-lite-8l q4_k_m", "deepseek2", "deepseek-v2-lite-8l", "q4_k_m", 57.0, 19.3, None),
    ("qwen3-30b-a3b-8l q4_k_m", "qwen3moe", "qwen3-30b-a3b-8l", "q4_k_m", 83.0, 23.4, (2.0, 1.0)),
]


def file_for(d, shape, typ):
    return os.path.join(d, f"{shape}-{typ}.gguf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--dir", default="/tmp/m")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("-p", "--prompt", type=int, default=512)
    ap.add_argument("-n", "--gen", type=int, default=64)
    ap.add_argument("--only", default="", help="run the shapes whose name contains this")
    ap.add_argument("--baseline", default="", help="another owl binary (an older build) run right after "
                    "each file, for same-minute ratios on a noisy machine")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rows = []
    for name, arch, shape, typ, ref_pp, ref_tg, ik in SHAPES:
        if a.only and a.only not in name:
            continue
        path = file_for(a.dir, shape, typ)
        if not os.path.exists(path):
            print(f"bench: making {path} with owl synth", file=sys.stderr)
            subprocess.run([a.owl, "synth", "--arch", arch, "--shape", shape, "--type", typ, "-o", path], check=True)
        def bench(owl):
            out = subprocess.run([owl, "bench", path, "-p", str(a.prompt), "-n", str(a.gen), "-t", str(a.threads),
                                  "-r", str(a.reps), "--json"], check=True, capture_output=True, text=True).stdout
            return json.loads(out)
        b = bench(a.owl)
        base = bench(a.baseline) if a.baseline else None
        rows.append((name, b, ref_pp, ref_tg, ik, os.path.getsize(path), base))
        print(f"bench: {name}: pp {b['pp']['tps_median']:.1f} tg {b['tg']['tps_median']:.1f}"
              + (f" (baseline pp {base['pp']['tps_median']:.1f} tg {base['tg']['tps_median']:.1f})" if base else ""),
              file=sys.stderr)

    print(f"| model | pp{a.prompt} t/s | × llama.cpp (target 1.5, ik_llama) | tg t/s | × llama.cpp (target 1.15) "
          f"| probe GB/s | roofline t/s | share (target 0.9) | peak RSS / budget |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, b, ref_pp, ref_tg, ik, size, _ in rows:
        pp, tg = b["pp"]["tps_median"], b["tg"]["tps_median"]
        ik_txt = f", ik {ik[0]:.2f}" if ik else ""
        mem = b.get("memory", {})
        rss = mem.get("peak_rss_bytes")
        budget = mem.get("bound_bytes")
        rss_txt = f"{rss / 2**20:.0f} / {budget / 2**20:.0f} MiB" if rss and budget else "–"
        print(f"| {name} | {pp:.1f} | {pp / ref_pp:.2f} (ref ~{ref_pp:g}{ik_txt}) | {tg:.1f} | {tg / ref_tg:.2f} "
              f"(ref ~{ref_tg:g}) | {b['bandwidth_gbs']:.1f} | {b['roofline_tps']:.1f} | {b['roofline_share']:.2f} | {rss_txt} |")
    if a.baseline and rows:
        print(f"\n| model | baseline pp | pp × baseline | baseline tg | tg × baseline |\n|---|---|---|---|---|")
        for name, b, _, _, _, _, base in rows:
            pp, tg, bpp, btg = b["pp"]["tps_median"], b["tg"]["tps_median"], base["pp"]["tps_median"], base["tg"]["tps_median"]
            print(f"| {name} | {bpp:.1f} | {pp / bpp:.2f} | {btg:.1f} | {tg / btg:.2f} |")
    if rows:
        print(f"\n{rows[0][1]['threads']} threads, {a.reps} reps (median), {rows[0][1].get('kernels', '?')} kernels; "
              f"the roofline of each row uses the read bandwidth owl's probe measured in that run")


if __name__ == "__main__":
    main()
