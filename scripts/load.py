#!/usr/bin/env python3
"""Load and abuse test for `owl serve` (issue #19), on loopback only, bounded in time.

Starts `owl serve MODEL` on a free loopback port and, for --minutes (at most 30), runs:
  * --streams clients, each streaming completions back to back; --disconnect of them
    (a fraction) leave after the first event, as clients that give up do;
  * one client sending malformed requests (bad framing, smuggling attempts, oversized
    heads, bad JSON...), each of which must get a 4xx/5xx answer promptly;
  * one client repeating a greedy request whose text must never change.
Every 10 s it prints requests/s, p50/p95 latency of whole streams, errors, disconnects and
the server's RSS; at the end a summary line. Exit status 1 when there was any error.

  scripts/load.py --owl build/owl --model ../shared/models/stories260K/stories260K-f32.gguf --minutes 5
"""
import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"  # loopback only, by design


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []  # seconds per whole stream, this period
        self.requests = 0  # this period: streams, greedy checks and malformed requests answered
        self.total_requests = 0
        self.errors = []
        self.disconnects = 0
        self.malformed = 0

    def add(self, latency=None, error=None, disconnect=False, malformed=False):
        with self.lock:
            if error:
                self.errors.append(error)
                return
            self.requests += 1
            self.total_requests += 1
            if latency is not None:
                self.latencies.append(latency)
            self.disconnects += disconnect
            self.malformed += malformed

    def take_period(self):
        with self.lock:
            lat, n = sorted(self.latencies), self.requests
            self.latencies, self.requests = [], 0
            return lat, n


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def recv_until_close(sock, limit_s):
    sock.settimeout(limit_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return data


def completion(prompt, max_tokens, stream, temperature=0.0):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
    if stream:
        body["stream"] = True
    data = json.dumps(body).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben", "One day, a bird", "Tom had a red ball"]


def streamer(port, stats, stop_at, disconnect_rate, rng):
    while time.time() < stop_at:
        leave_early = rng.random() < disconnect_rate
        t0 = time.time()
        try:
            s = socket.create_connection((HOST, port), timeout=60)
            s.sendall(completion(rng.choice(PROMPTS), rng.randint(16, 96), stream=True,
                                 temperature=rng.choice([0.0, 0.8])))
            if leave_early:
                s.settimeout(60)
                first = s.recv(4096)
                s.close()
                if not first.startswith(b"HTTP/1.1 200"):
                    stats.add(error="early-leaving stream got: %r" % first[:60])
                else:
                    stats.add(disconnect=True)
                continue
            data = recv_until_close(s, 120)
            s.close()
            if not data.startswith(b"HTTP/1.1 200"):
                stats.add(error="stream got: %r" % data[:80])
            elif b"data: [DONE]" not in data:
                stats.add(error="stream without [DONE] (%d bytes)" % len(data))
            else:
                stats.add(latency=time.time() - t0)
        except OSError as e:
            stats.add(error="stream: %s" % e)


# (name, raw request, acceptable statuses)
def malformed_requests():
    body = b'{"prompt": "x"}'
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        ("bare LF", b"GET /health HTTP/1.1\nHost: x\n\n", {400}),
        ("conflicting Content-Length",
         b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}" + smuggled,
         {400}),
        ("Content-Length and Transfer-Encoding",
         b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
         {400}),
        ("signed Content-Length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
         {400}),
        ("space before colon", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}", {400}),
        ("obs-fold", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n", {400}),
        ("80 KB head", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (80 << 10) + b"\r\n\r\n", {431}),
        ("bad JSON", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope", {400}),
        ("wrong types", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{\"prompt\": 42}",
         {400}),
        ("no route", b"GET /v1/engines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {404}),
        ("HTTP/2.0 line", b"GET /health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n", {505, 400}),
        ("garbage", b"\x00\x01\x02 not http at all\r\n\r\n", {400}),
        ("gzip coding", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + body, {400}),
    ]
    return cases


def abuser(port, stats, stop_at):
    cases = malformed_requests()
    i = 0
    while time.time() < stop_at:
        name, raw, ok = cases[i % len(cases)]
        i += 1
        t0 = time.time()
        try:
            s = socket.create_connection((HOST, port), timeout=30)
            s.sendall(raw)
            if name == "bad JSON" or name == "wrong types":
                s.shutdown(socket.SHUT_WR)
            answer = recv_until_close(s, 15)
            s.close()
        except OSError as e:
            stats.add(error="%s: %s" % (name, e))
            continue
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
        took = time.time() - t0
        if not m:
            stats.add(error="%s: no answer after %.1f s" % (name, took))
        elif int(m.group(1)) not in ok:
            stats.add(error="%s: status %s" % (name, m.group(1).decode()))
        elif took > 5:
            stats.add(error="%s: answered after %.1f s" % (name, took))
        else:
            stats.add(malformed=True)
        time.sleep(0.05)


def greedy_checker(port, stats, stop_at):
    expected = None
    while time.time() < stop_at:
        try:
            s = socket.create_connection((HOST, port), timeout=60)
            s.sendall(completion("Once upon a time", 48, stream=False))
            data = recv_until_close(s, 120)
            s.close()
            text = json.loads(data.split(b"\r\n\r\n", 1)[1])["choices"][0]["text"]
        except (OSError, ValueError, KeyError, IndexError) as e:
            stats.add(error="greedy: %s" % e)
            continue
        if expected is None:
            expected = text
        if text != expected:
            stats.add(error="greedy output changed: %r != %r" % (text, expected))
        else:
            stats.add()
        time.sleep(0.5)


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--owl", default="build/owl")
    ap.add_argument("--model", default="../shared/models/stories260K/stories260K-f32.gguf")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--disconnect", type=float, default=0.1, help="fraction of streams that leave early")
    ap.add_argument("--serve-args", default="--parallel 8 --threads 1", help="extra `owl serve` arguments")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 0 < args.minutes <= 30:
        sys.exit("load: --minutes must be within (0, 30]")
    if not 1 <= args.streams <= 256:
        sys.exit("load: --streams must be within [1, 256]")

    server = subprocess.Popen([args.owl, "serve", args.model, "--host", HOST, "--port", "0"] + args.serve_args.split(),
                              stderr=subprocess.PIPE, text=True)
    port = None
    for line in server.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("load: owl serve did not start")
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # drain its log

    stats = Stats()
    start = time.time()
    stop_at = start + args.minutes * 60
    rng = random.Random(args.seed)
    threads = [threading.Thread(target=streamer, args=(port, stats, stop_at, args.disconnect,
                                                       random.Random(rng.random())), daemon=True)
               for _ in range(args.streams)]
    threads += [threading.Thread(target=abuser, args=(port, stats, stop_at), daemon=True),
                threading.Thread(target=greedy_checker, args=(port, stats, stop_at), daemon=True)]
    for t in threads:
        t.start()
    rss = []
    print("%6s %8s %8s %8s %7s %11s %10s %8s" % ("t(s)", "req/s", "p50(s)", "p95(s)", "errors", "disconnects",
                                                  "malformed", "RSS(MB)"), flush=True)
    last = start
    while time.time() < stop_at:
        time.sleep(min(10, max(0.0, stop_at - time.time())))
        now = time.time()
        lat, n = stats.take_period()
        rss.append(rss_mb(server.pid))
        print("%6.0f %8.1f %8.3f %8.3f %7d %11d %10d %8.1f" % (
            now - start, n / (now - last), percentile(lat, 0.5), percentile(lat, 0.95), len(stats.errors),
            stats.disconnects, stats.malformed, rss[-1]), flush=True)
        last = now
    for t in threads:
        t.join(timeout=130)
    server.terminate()
    server.wait(timeout=30)
    for e in stats.errors[:20]:
        print("error:", e)
    print("summary: %d requests in %.0f s, %d errors, %d disconnects, %d malformed answered, RSS %.1f -> %.1f MB" % (
        stats.total_requests, time.time() - start, len(stats.errors), stats.disconnects, stats.malformed,
        rss[0] if rss else float("nan"), rss[-1] if rss else float("nan")))
    sys.exit(1 if stats.errors else 0)


if __name__ == "__main__":
    main()
