#!/usr/bin/env python3
"""Copy a GGUF file with its routed-expert stacks (ffn_{gate,up,down}_exps) retyped to a
low-bit block type filled with random bits (a small normal fp16 d per block): the layout
`owl quantize --recipe dynamic-moe LOWTYPE` writes from this Q4_K_M file (only the expert
stacks change), without the hours of importance-weighted search on this loaded machine.
Speed benchmark only: the values are random.
usage: lowbit_experts.py IN.gguf OUT.gguf iq2_xxs|iq1_s"""
import os, random, struct, sys

TYPES = {"iq2_xxs": (16, 66, 0), "iq1_s": (19, 50, 0)}  # ggml id, bytes per 256, offset of fp16 d
FTYPE = {"iq2_xxs": 19, "iq1_s": 24}  # llama_ftype MOSTLY_IQ2_XXS, MOSTLY_IQ1_S
BLOCK = {0: (1, 4), 1: (1, 2), 12: (256, 144), 14: (256, 210), 16: (256, 66), 19: (256, 50)}

src, dst, low = sys.argv[1], sys.argv[2], sys.argv[3]
ltype, lbytes, doff = TYPES[low]
f = open(src, "rb")
buf = f.read(64 << 20)  # header and metadata
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, buf, pos); pos += struct.calcsize(fmt); return v[0]
def rstr():
    global pos
    n = rd("Q"); s = buf[pos:pos + n].decode(); pos += n; return s
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip_val(t):
    global pos
    if t == 8: rstr()
    elif t == 9:
        et = rd("I"); n = rd("Q")
        for _ in range(n): skip_val(et)
    else: pos += SIZES[t]
assert buf[:4] == b"GGUF"
pos = 4
version = rd("I"); n_t = rd("Q"); n_kv = rd("Q")
align, ftype_pos = 32, None
for _ in range(n_kv):
    k = rstr(); t = rd("I")
    if k == "general.alignment": align = struct.unpack_from("<I", buf, pos)[0]
    if k == "general.file_type": ftype_pos = pos
    skip_val(t)
kv_end = pos
tensors = []
for _ in range(n_t):
    name = rstr(); nd = rd("I"); dims = [rd("Q") for _ in range(nd)]; t = rd("I"); off = rd("Q")
    tensors.append([name, dims, t, off])
data_start = (pos + align - 1) // align * align
def nbytes(dims, t):
    be, bb = BLOCK[t]; n = 1
    for d in dims: n *= d
    return n // be * bb
out = bytearray(buf[:kv_end])
if ftype_pos is not None: struct.pack_into("<I", out, ftype_pos, FTYPE[low])
new_off, plan = 0, []
for name, dims, t, off in tensors:
    size_in = nbytes(dims, t)
    nt = ltype if "_exps.weight" in name else t
    plan.append((name, dims, t, off, size_in, nt, nbytes(dims, nt), new_off))
    out += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", nt, new_off)
    new_off = (new_off + nbytes(dims, nt) + align - 1) // align * align
out += b"\0" * ((-len(out)) % align)
rng = random.Random(42)
# one random 4 MiB pattern of blocks, d set per block to 0.001..0.016, tiled over every expert stack
nblk = (4 << 20) // lbytes
pat = bytearray(rng.randbytes(nblk * lbytes))
for i in range(nblk):
    struct.pack_into("<e", pat, i * lbytes + doff, 0.001 * (1 + rng.randrange(16)))
with open(dst + ".tmp", "wb") as o:
    o.write(out)
    for name, dims, t, off, size_in, nt, size_out, noff in plan:
        assert o.tell() == len(out) + noff
        if nt == t:
            f.seek(data_start + off); left = size_in
            while left:
                chunk = f.read(min(left, 64 << 20)); o.write(chunk); left -= len(chunk)
        else:
            left = size_out
            while left:
                n = min(left, len(pat)); o.write(pat[:n]); left -= n
        o.write(b"\0" * ((-o.tell()) % align))
os.rename(dst + ".tmp", dst)
print(f"{dst}: {sum(1 for p in plan if p[5] != p[2])} expert stacks -> {low}, {os.path.getsize(dst) / 1e9:.2f} GB")
