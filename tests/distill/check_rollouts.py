#!/usr/bin/env python3
"""Reads CRSM rollout files with h5py, as a user would, and checks them (byte tokenizer).

  check_rollouts.py describe FILE              rows, dtypes, attributes (JSON)
  check_rollouts.py same A B                   A and B hold the same rows in the same order
  check_rollouts.py labels FILE TASKS.jsonl    every row's prompt is its task's, and its label says
                                               whether its answer is the task's answer and its line end
  check_rollouts.py answer-with FILE TASKS.jsonl OUT.jsonl N
                                               TASKS with N tasks' answers replaced by one of their
                                               sampled answers that ended its line (the first N that have one)
"""
import json
import sys

import h5py
import numpy as np

COLUMNS = ("task", "test_index", "item", "sample", "prompt_length", "prompt", "answer_length", "answer",
           "logprob", "cells_right", "cells", "label")


def open_file(path):
    # A file whose writer was killed still carries its SWMR mark.
    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)


def load(path):
    with open_file(path) as f:
        n = min(f[k].shape[0] for k in COLUMNS)
        return {k: f[k][:n] for k in COLUMNS}, dict(f.attrs)


def bytes_of(tokens, length):
    return bytes(int(t) for t in tokens[:length] if t < 256)


def text_of(tokens, length):
    return bytes_of(tokens, length).decode("utf-8", "replace")


def describe(path):
    rows, attrs = load(path)
    print(json.dumps({
        "rows": int(len(rows["label"])),
        "dtypes": {k: str(v.dtype) for k, v in rows.items()},
        "attrs": {k: (int(v) if np.issubdtype(type(v), np.integer) else v.decode()) for k, v in attrs.items()},
        "right": int(rows["label"].sum()),
    }))


def same(a, b):
    x, _ = load(a)
    y, _ = load(b)
    for k in COLUMNS:
        assert x[k].shape == y[k].shape, f"/{k}: {x[k].shape} in {a}, {y[k].shape} in {b}"
        assert np.array_equal(x[k], y[k]), f"/{k} differs between {a} and {b}"
    print(f"same: {len(x['label'])} rows")


def read_tasks(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def labels(path, tasks_path):
    rows, _ = load(path)
    tasks = read_tasks(tasks_path)
    right = 0
    for r in range(len(rows["label"])):
        task = tasks[int(rows["item"][r])]
        prompt = text_of(rows["prompt"][r], rows["prompt_length"][r])
        assert prompt == task["prompt"], f"row {r}: prompt {prompt!r}, task's {task['prompt']!r}"
        answer = bytes_of(rows["answer"][r], rows["answer_length"][r])
        assert all(t == -1 for t in rows["answer"][r][rows["answer_length"][r]:]), f"row {r}: padding is not -1"
        exact = answer == (task["answer"] + "\n").encode()
        assert bool(rows["label"][r]) == exact, f"row {r}: label {rows['label'][r]}, answer {answer!r}, task's {task['answer']!r}"
        assert rows["cells"][r] == 0 and rows["cells_right"][r] == 0, f"row {r}: a text answer has no cells"
        assert np.isfinite(rows["logprob"][r]) and rows["logprob"][r] <= 0, f"row {r}: logprob {rows['logprob'][r]}"
        right += exact
    print(f"labels: {len(rows['label'])} rows, {right} right")


def answer_with(path, tasks_path, out, n):
    rows, _ = load(path)
    tasks = read_tasks(tasks_path)
    replaced = 0
    for i in range(len(tasks)):
        ended = []
        for r in range(len(rows["label"])):
            answer = bytes_of(rows["answer"][r], rows["answer_length"][r])
            if rows["item"][r] == i and answer.endswith(b"\n") and len(answer) > 1:
                try:  # a task file is JSON: its answer must be text
                    ended.append(answer.decode("utf-8"))
                except UnicodeDecodeError:
                    pass
        if ended and replaced < n:
            tasks[i]["answer"] = ended[-1][:-1]
            replaced += 1
    assert replaced == n, f"only {replaced} tasks have a sampled answer that ended its line as UTF-8 text"
    with open(out, "w") as f:
        for t in tasks:
            f.write(json.dumps(t) + "\n")


def main(argv):
    command = argv[1]
    if command == "describe":
        describe(argv[2])
    elif command == "same":
        same(argv[2], argv[3])
    elif command == "labels":
        labels(argv[2], argv[3])
    elif command == "answer-with":
        answer_with(argv[2], argv[3], argv[4], int(argv[5]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except AssertionError as e:
        print(f"check_rollouts: {e}")
        sys.exit(1)
