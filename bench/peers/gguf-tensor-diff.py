#!/usr/bin/env python3
"""Compares the tensors of two GGUF files byte for byte (standard library only).

usage: gguf-tensor-diff.py A.gguf B.gguf
Prints one line per tensor (name, type in A, type in B, identical / differs / missing) and a
summary; exits 0 when every tensor present in both with the same type is identical.
"""
import struct
import sys

TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}
# (elements per block, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def value(t):
        if t in SCALAR:
            return take(SCALAR[t])
        if t == 8:
            return string()
        if t == 9:
            inner, n = take("I"), take("Q")
            return [value(inner) for _ in range(n)]
        raise ValueError(f"{path}: unknown metadata type {t}")

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            alignment = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    start = (pos + alignment - 1) // alignment * alignment
    tensors = {}
    for name, dims, t, off in infos:
        count = 1
        for d in dims:
            count *= d
        per, size = BLOCKS[t]
        tensors[name] = (t, data[start + off:start + off + count // per * size])
    return tensors


def main():
    a, b = read_tensors(sys.argv[1]), read_tensors(sys.argv[2])
    same = differ = other = 0
    for name in sorted(set(a) | set(b)):
        ta, tb = a.get(name, (None, None)), b.get(name, (None, None))
        na, nb = TYPE_NAMES.get(ta[0], "-"), TYPE_NAMES.get(tb[0], "-")
        if ta[0] is None or tb[0] is None or ta[0] != tb[0]:
            verdict = "missing" if ta[0] is None or tb[0] is None else "types differ"
            other += 1
        elif ta[1] == tb[1]:
            verdict = "identical"
            same += 1
        else:
            verdict = "DIFFERS"
            differ += 1
        print(f"{name:32s} {na:6s} {nb:6s} {verdict}")
    print(f"{same} identical, {differ} differ, {other} not comparable (missing or other type)")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
