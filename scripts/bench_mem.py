#!/usr/bin/env python3
"""Bigger than memory: owl bench on a MoE file in memory cgroups of 100%, 60%, 40% and 25% of
its size, the file dropped from the page cache (posix_fadvise DONTNEED) before each run, with
the expert cache's decode hit rate and read GB/s, next to the disk's O_DIRECT bandwidth (dd
iflag=direct over the same file) and, when LLAMA_BATCHED_BENCH names llama.cpp's
llama-batched-bench binary, llama.cpp in the same cgroups right after owl (mmap, its default, and
-nr: no weight repacking, which would copy every weight into anonymous memory; llama-bench has
no such switch). Prints the load average and the owl commit with the table.

    LLAMA_BATCHED_BENCH=/path/llama-batched-bench scripts/bench_mem.py [--owl build/owl]
        [--model /tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf] [-t 2] [-p 64] [-n 32] [--budgets 100,60,40,25]

The model is made with `owl synth --arch qwen3moe --shape qwen3-30b-a3b-8l --type q4_k_m`
when missing (~8 minutes). Needs root (it creates cgroups below its own, v2 or v1). owl runs
with its default budget, which it reads from the cgroup.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time


def own_cgroup(v2):
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if (v2 and controllers == "") or (not v2 and "memory" in controllers.split(",")):
            return path
    return ""


class Cgroup:
    def __init__(self, limit):
        name = f"/owl-bench-mem-{os.getpid()}"
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.dir = "/sys/fs/cgroup" + own_cgroup(True) + name
            os.mkdir(self.dir)
            open(self.dir + "/memory.max", "w").write(str(limit))
            open(self.dir + "/memory.swap.max", "w").write("0")
        else:
            self.dir = "/sys/fs/cgroup/memory" + own_cgroup(False) + name
            os.mkdir(self.dir)
            open(self.dir + "/memory.limit_in_bytes", "w").write(str(limit))
            if os.path.exists(self.dir + "/memory.memsw.limit_in_bytes"):
                open(self.dir + "/memory.memsw.limit_in_bytes", "w").write(str(limit))

    def run(self, argv):
        cmd = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', self.dir + "/cgroup.procs"] + argv
        return subprocess.run(cmd, capture_output=True, text=True)

    def close(self):
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def disk_direct_gbs(path):
    evict(path)
    t0 = time.time()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M", "iflag=direct", "count=256"],
                   check=True, capture_output=True)
    return min(os.path.getsize(path), 256 << 22) / (time.time() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--model", default="/tmp/m/qwen3-30b-a3b-8l-q4_k_m.gguf")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--prompt", type=int, default=64)
    ap.add_argument("-n", "--gen", type=int, default=32)
    ap.add_argument("--budgets", default="100,60,40,25")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        subprocess.run([a.owl, "synth", "--arch", "qwen3moe", "--shape", "qwen3-30b-a3b-8l", "--type", "q4_k_m",
                        "-o", a.model], check=True)
    size = os.path.getsize(a.model)
    disk = disk_direct_gbs(a.model)
    print(f"model {a.model}: {size / 2**30:.2f} GiB; disk O_DIRECT read {disk:.2f} GB/s (dd, 1 GiB)")
    llama = os.environ.get("LLAMA_BATCHED_BENCH", "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"owl {a.owl} at {commit}; llama.cpp {llama or 'not given'}; -t {a.threads} -p {a.prompt} -n {a.gen}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| budget (cgroup) | owl pp t/s | owl tg t/s | expert cache | decode hit rate | decode read GB/s "
          "| share of O_DIRECT | llama.cpp pp / tg t/s | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pct in [int(x) for x in a.budgets.split(",")]:
        limit = size * pct // 100
        cg = Cgroup(limit)
        try:
            evict(a.model)
            r = cg.run([a.owl, "bench", a.model, "-p", str(a.prompt), "-n", str(a.gen), "-t", str(a.threads),
                        "-r", "1", "--json"])
            if r.returncode != 0:
                row = f"owl failed ({r.returncode}): {r.stderr.strip()[-200:]}"
                print(f"| {pct}% ({limit / 2**30:.2f} GiB) | {row} |")
                continue
            j = json.loads(r.stdout)
            ec = j.get("expert_cache")
            cache = (f"{ec['cache_bytes'] / 2**30:.2f} GiB" if ec else "all resident")
            hit = f"{100 * ec['tg_hit_rate']:.1f}%" if ec else "-"
            gbs = f"{ec['tg_read_gbs']:.2f}" if ec else "-"
            share = f"{100 * ec['tg_read_gbs'] / disk:.0f}%" if ec else "-"
            ll = "not installed"
            if llama and shutil.which(llama):
                evict(a.model)
                lr = cg.run([llama, "-m", a.model, "-c", str(a.prompt + a.gen + 16), "-b", "2048", "-ub", "512",
                             "-npp", str(a.prompt), "-ntg", str(a.gen), "-npl", "1", "-nr", "-t", str(a.threads),
                             "--output-format", "jsonl"])
                rows = [json.loads(x) for x in lr.stdout.splitlines() if x.startswith("{") and "speed_pp" in x]
                if lr.returncode == 0 and rows:
                    ll = f"{rows[0]['speed_pp']:.2f} / {rows[0]['speed_tg']:.2f}"
                    if ec:
                        ll += f" (owl tg {j['tg']['tps_median'] / rows[0]['speed_tg']:.1f}x)"
                else:
                    ll = f"failed ({lr.returncode}): {lr.stderr.strip()[-120:]}"
            print(f"| {pct}% ({limit / 2**30:.2f} GiB) | {j['pp']['tps_median']:.2f} | {j['tg']['tps_median']:.2f} "
                  f"| {cache} | {hit} | {gbs} | {share} | {ll} | {os.getloadavg()[0]:.1f} |")
            sys.stdout.flush()
        finally:
            cg.close()


if __name__ == "__main__":
    main()
