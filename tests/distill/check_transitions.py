#!/usr/bin/env python3
"""Reads CRSM transition files with h5py, as a user would, and checks them.

  check_transitions.py describe FILE...        shapes, dtypes, attributes, rows (JSON)
  check_transitions.py same A B TOL            A and B hold the same rows, matched by (seq, pos)
  check_transitions.py consistent FILE         (seq, pos) unique and gap-free per window; delta(t) = state(t+1) - state(t)
  check_transitions.py rows FILE FIRST N        the rows as JSON lists (state, delta, action, seq, pos)
  check_transitions.py truncate FILE N         keeps the first N rows of a rank file, as a writer killed there would
"""
import json
import sys

import h5py
import numpy as np


def open_file(path):
    # A file whose writer was killed still carries its SWMR mark.
    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)


def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def load(path):
    with open_file(path) as f:
        n = min(f[k].shape[0] for k in ("state", "delta", "action", "seq", "pos"))
        return {k: f[k][:n] for k in ("state", "delta", "action", "seq", "pos")}


def describe(paths):
    out = []
    for path in paths:
        with open_file(path) as f:
            out.append({
                "path": path,
                "datasets": {k: {"shape": list(f[k].shape), "dtype": str(f[k].dtype), "virtual": bool(f[k].is_virtual)}
                             for k in f.keys()},
                "attrs": {k: (int(v) if np.issubdtype(type(v), np.integer) else text(v)) for k, v in f.attrs.items()},
            })
    print(json.dumps(out))


def keyed(rows):
    order = np.lexsort((rows["pos"], rows["seq"]))
    return {k: v[order] for k, v in rows.items()}


def same(a, b, tol):
    x, y = keyed(load(a)), keyed(load(b))
    assert len(x["seq"]) == len(y["seq"]), f"{a} has {len(x['seq'])} rows, {b} has {len(y['seq'])}"
    for k in ("seq", "pos", "action"):
        assert np.array_equal(x[k], y[k]), f"/{k} differs"
    for k in ("state", "delta"):
        err = float(np.max(np.abs(x[k].astype(np.float64) - y[k].astype(np.float64))))
        assert err <= tol, f"/{k} differs by {err} > {tol}"
    print(f"same: {len(x['seq'])} rows")


def consistent(path):
    r = keyed(load(path))
    key = r["seq"].astype(np.int64) * (1 << 32) + r["pos"]
    assert len(np.unique(key)) == len(key), "duplicate (seq, pos)"
    for s in np.unique(r["seq"]):
        pos = r["pos"][r["seq"] == s]
        assert np.array_equal(pos, np.arange(len(pos))), f"window {s} has gaps"
    nxt = np.flatnonzero((r["seq"][1:] == r["seq"][:-1]) & (r["pos"][1:] == r["pos"][:-1] + 1))
    err = np.abs(r["state"][nxt + 1].astype(np.float64) - r["state"][nxt] - r["delta"][nxt]).max() if len(nxt) else 0.0
    assert err < 1e-3, f"delta(t) != state(t+1) - state(t): {err}"
    print(f"consistent: {len(key)} rows")


def rows(path, first, n):
    with open_file(path) as f:
        print(json.dumps({k: f[k][first:first + n].tolist() for k in ("state", "delta", "action", "seq", "pos")}))


def truncate(path, n):
    with h5py.File(path, "r+") as f:
        for k in ("pos", "state", "delta", "action", "seq"):
            f[k].resize(n, axis=0)
    print(f"truncated: {n} rows")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "describe":
        describe(args)
    elif cmd == "same":
        same(args[0], args[1], float(args[2]))
    elif cmd == "consistent":
        consistent(args[0])
    elif cmd == "rows":
        rows(args[0], int(args[1]), int(args[2]))
    elif cmd == "truncate":
        truncate(args[0], int(args[1]))
    else:
        sys.exit(f"unknown command {cmd}")
