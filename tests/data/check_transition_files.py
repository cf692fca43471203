#!/usr/bin/env python3
"""Checks CRSM transition files with h5py, as a user reads them (test_transition_store.cpp).

  check_transition_files.py verify MODE PATH ROWS DTYPE PLAN [PATH ROWS DTYPE PLAN ...]
      MODE "plain" opens with h5py.File(path, "r") (a cleanly closed file), "swmr" with
      swmr=True (a file whose writer was killed). Checks the datasets' shapes, dtypes and
      layout, the root attributes, and every row against known_rows() of the C++ test.
  check_transition_files.py opens-plain PATH
      exit 0 when h5py.File(path, "r") opens PATH, 3 when it raises OSError.
  check_transition_files.py damage SRC KIND ARG DST [KIND ARG DST ...]
      copies SRC to each DST and damages the copy: drop-dataset NAME, drop-attr NAME,
      format-version N, dtype-attr WORD, flat-dataset NAME (one dimension),
      float-dataset NAME (float64 in place of integers).
"""
import shutil
import sys

import h5py
import numpy as np

L, D = 2, 8
SETS = ("state", "delta", "action", "seq", "pos")


def known_rows(first, n):
    """The rows the C++ test writes: every value a function of the row index, exact in float16."""
    i = np.arange(first, first + n, dtype=np.float64).reshape(n, 1, 1)
    grid = np.arange(L * D, dtype=np.float64).reshape(1, L, D)
    k = np.arange(first, first + n, dtype=np.int64)
    return {
        "state": i + grid / 8,
        "delta": -(i / 2) - grid / 4,
        "action": k % 50,
        "seq": (1 << 33) + k // 7,
        "pos": k % 7,
    }


def text(v):
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def fail(path, what):
    sys.exit(f"{path}: {what}")


def verify(mode, path, rows, dtype, plan):
    with h5py.File(path, "r", swmr=(mode == "swmr")) as f:
        want_types = {"state": dtype, "delta": dtype, "action": "int32", "seq": "int64", "pos": "int32"}
        for name in SETS:
            ds = f[name]
            shape = (rows, L, D) if name in ("state", "delta") else (rows,)
            if ds.shape != shape:
                fail(path, f"/{name} has shape {ds.shape}, expected {shape}")
            if str(ds.dtype) != want_types[name]:
                fail(path, f"/{name} is {ds.dtype}, expected {want_types[name]}")
        a = f.attrs
        ints = {"format_version": 1, "num_layers": L, "d_model": D, "vocab_size": 50}
        for k, v in ints.items():
            if not np.issubdtype(type(a[k]), np.integer) or int(a[k]) != v:
                fail(path, f"attribute {k} is {a[k]!r}, expected the integer {v}")
        strings = {"dtype": dtype, "backbone_sha256": "a" * 64, "plan": plan}
        for k, v in strings.items():
            if text(a[k]) != v:
                fail(path, f"attribute {k} is {a[k]!r}, expected {v!r}")
        want = known_rows(0, rows)
        for name in SETS:
            got = f[name][:]
            if not np.array_equal(got.astype(np.float64), want[name].astype(np.float64)):
                bad = int(np.flatnonzero((got.reshape(rows, -1) != want[name].reshape(rows, -1)).any(axis=1))[0])
                fail(path, f"/{name} row {bad} is {got[bad].tolist()}, expected {want[name][bad].tolist()}")
        return f["pos"].is_virtual


def damage(src, kind, arg, dst):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        if kind == "drop-dataset":
            del f[arg]
        elif kind == "drop-attr":
            del f.attrs[arg]
        elif kind == "format-version":
            f.attrs["format_version"] = np.int64(int(arg))
        elif kind == "dtype-attr":
            f.attrs["dtype"] = arg
        elif kind == "flat-dataset":
            n = f[arg].shape[0]
            del f[arg]
            f.create_dataset(arg, data=np.zeros(n, np.float32))
        elif kind == "float-dataset":
            n = f[arg].shape[0]
            del f[arg]
            f.create_dataset(arg, data=np.zeros(n, np.float64))
        else:
            sys.exit(f"unknown damage {kind}")


def main(cmd, args):
    if cmd == "verify":
        mode, specs = args[0], args[1:]
        for at in range(0, len(specs), 4):
            path, rows, dtype, plan = specs[at], int(specs[at + 1]), specs[at + 2], specs[at + 3]
            virtual = verify(mode, path, rows, dtype, plan)
            print(f"{path}: {rows} rows as written{' (virtual)' if virtual else ''}")
    elif cmd == "opens-plain":
        try:
            h5py.File(args[0], "r").close()
        except OSError as e:
            print(e)
            sys.exit(3)
    elif cmd == "damage":
        src, specs = args[0], args[1:]
        for at in range(0, len(specs), 3):
            damage(src, *specs[at:at + 3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
