#!/usr/bin/env python3
"""Quantised KV cache accuracy, owl against llama.cpp: mean KL(F16 cache || Q8_0 / Q4_0 cache)
over every row of each golden model's prompts (docs/BENCHMARKS.md, "Quantised KV cache").

    scripts/kv_kl.py [--owl build/owl] [--llama /tmp/llama_kv_kl] [--prompts golden|N] [--models a,b]

--prompts golden: the 256-id `long` prompt of each golden f32.gguf (what CliKvType tests);
--prompts N: N prompts of 256 ids drawn with random.Random(1..N) (one prompt's KL is a draw:
a few rows whose MoE router flips to another expert carry most of it, so compare over many).
--llama: scripts/llama_kv_kl.cpp built as its header says (llama.cpp d32676d77); without it,
owl's figures only. Prints per model and type: mean KL, median row KL, argmax agreement.
No numpy: the logits are small (512-token vocabularies)."""
import argparse, json, math, os, random, struct, subprocess, tempfile

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'golden')
MODELS = ['llama', 'qwen3', 'deepseek-v3', 'qwen3moe', 'glm4moe']
TYPES = ['q8_0', 'q4_0']


def load(path, vocab):
    with open(path, 'rb') as f:
        b = f.read()
    a = struct.unpack('<%df' % (len(b) // 4), b)
    return [a[i:i + vocab] for i in range(0, len(a), vocab)]


def log_softmax(r):
    m = max(r)
    lz = math.log(sum(math.exp(x - m) for x in r)) + m
    return [x - lz for x in r]


def row_kls(base, other):
    out = []
    for p, q in zip(base, other):
        lp, lq = log_softmax(p), log_softmax(q)
        out.append(sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))
    return out


def argmax(r):
    return max(range(len(r)), key=lambda i: r[i])


def owl_logits(owl, model, ids, kv_type, out):
    subprocess.run([owl, 'logits', model, '--tokens', ','.join(map(str, ids)), '--out', out, '--kv-type', kv_type,
                    '--threads', '2'], check=True, capture_output=True)


def llama_logits(llama, model, ids, prefix):
    # Writes prefix.{f16,q8_0,q4_0}.f32.
    subprocess.run([llama, model, ','.join(map(str, ids)), '2', prefix], check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--owl', default='build/owl')
    ap.add_argument('--llama')
    ap.add_argument('--prompts', default='golden')
    ap.add_argument('--models', default=','.join(MODELS))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='kv_kl.')
    engines = ['owl'] + (['llama.cpp'] if a.llama else [])
    print('| model | type | ' + ' | '.join('%s mean KL | %s median row KL | %s argmax' % (e, e, e) for e in engines) +
          (' | owl / llama.cpp mean KL |' if a.llama else ' |'))
    print('|---' * (2 + 3 * len(engines) + (1 if a.llama else 0)) + '|')
    for name in a.models.split(','):
        model = os.path.join(GOLDEN, name, 'f32.gguf')
        with open(os.path.join(GOLDEN, name, 'f32.cases.json')) as f:
            meta = json.load(f)
        vocab = meta['n_vocab']
        if a.prompts == 'golden':
            prompts = [meta['cases'][2]['tokens']]
        else:
            prompts = []
            for seed in range(1, int(a.prompts) + 1):
                r = random.Random(seed)
                prompts.append([r.randrange(vocab) for _ in range(256)])
        kls = {(e, t): [] for e in engines for t in TYPES}
        agree = {(e, t): 0 for e in engines for t in TYPES}
        for i, ids in enumerate(prompts):
            runs = {}
            for t in ['f16'] + TYPES:
                out = os.path.join(tmp, 'owl.%d.%s.f32' % (i, t))
                owl_logits(a.owl, model, ids, t, out)
                runs[('owl', t)] = load(out, vocab)
            if a.llama:
                prefix = os.path.join(tmp, 'llama.%d' % i)
                llama_logits(a.llama, model, ids, prefix)
                for t in ['f16'] + TYPES:
                    runs[('llama.cpp', t)] = load('%s.%s.f32' % (prefix, t), vocab)
            for e in engines:
                for t in TYPES:
                    base, other = runs[(e, 'f16')], runs[(e, t)]
                    kls[(e, t)] += row_kls(base, other)
                    agree[(e, t)] += sum(argmax(p) == argmax(q) for p, q in zip(base, other))
        for t in TYPES:
            cells, means = [], []
            for e in engines:
                k = sorted(kls[(e, t)])
                mean = sum(k) / len(k)
                means.append(mean)
                cells.append('%.3g | %.3g | %.1f%%' % (mean, k[len(k) // 2], 100.0 * agree[(e, t)] / len(k)))
            ratio = ' | %.2f' % (means[0] / means[1]) if a.llama else ''
            print('| %s | %s | %s%s |' % (name, t, ' | '.join(cells), ratio))


if __name__ == '__main__':
    main()
