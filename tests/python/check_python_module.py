"""Holds python/crsm.py to crsm_train (run by test_python_module.cpp).

    check_python_module.py MODEL REFERENCE GREEDY --run RUN --prompt TEXT --max-length N [--perturb NAME]

MODEL is what `crsm_train export` wrote; REFERENCE the C++ model's outputs on fixed
tokens (safetensors: tokens, parallel_*, recurrent_*, prefill_logits; metadata
"prefill", the prompt length of the prefill run); GREEDY the stdout of `crsm_train
generate --temperature 0` on TEXT; RUN the run directory, whose tokenizer is used.
--perturb adds 1e-3 to one element of a weight, so that the test can show the check
notices it. Exit 1 on any mismatch."""

import argparse
import sys

import torch

import crsm

TOLERANCE = 1e-4


def outputs_by_steps(model, tokens, state, first):
    logits, values = [], []
    for t in range(first, tokens.shape[1]):
        step_logits, step_values, state = model.step(tokens[:, t], state)
        logits.append(step_logits)
        values.append(step_values)
    return torch.stack(logits, 1), torch.stack(values, 1)


def compare_logits(model, ref, prefill):
    """[(what, max |diff|)] for the parallel forward and both recurrent paths."""
    tokens = ref["tokens"]
    logits, values, _ = model(tokens)
    stepped_logits, stepped_values = outputs_by_steps(model, tokens, model.empty_state(tokens.shape[0]), 0)
    prompt_logits, _, state = model(tokens[:, :prefill])
    after_logits, _ = outputs_by_steps(model, tokens, state, prefill)
    after = torch.cat([prompt_logits[:, -1:], after_logits], 1)

    def diff(a, b):
        assert a.shape == b.shape, f"shape {tuple(a.shape)}, C++ {tuple(b.shape)}"
        return float((a - b).abs().max())
    return [("parallel logits", diff(logits, ref["parallel_logits"])),
            ("parallel values", diff(values, ref["parallel_values"])),
            ("recurrent logits (steps from the empty state)", diff(stepped_logits, ref["recurrent_logits"])),
            ("recurrent values (steps from the empty state)", diff(stepped_values, ref["recurrent_values"])),
            ("recurrent logits (steps after a parallel prefill)", diff(after, ref["prefill_logits"]))]


def check_greedy(model, tok, prompt, max_length, greedy_path):
    """None when the greedy continuation is crsm_train's byte for byte, else why not."""
    new = model.generate([tok.bos] + tok.encode(prompt), max_length, temperature=0, stop_token=tok.eos)
    with open(greedy_path, "rb") as f:
        expected = f.read()
    got = prompt.encode("utf-8") + tok.decode_bytes(new) + b"\n"
    print(f"greedy: {len(new)} new tokens: {got!r}")
    if got == expected:
        return None
    at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    return f"greedy text differs from crsm_train generate's at byte {at}: crsm_train wrote {expected!r}"


def check_sampling(model, tok, prompt, max_length):
    """None when sampling keeps its rules (top_k=1 is greedy, a seed repeats), else why not.
    Its draws come from torch's generator, not crsm_train's: they are not compared."""
    ids = [tok.bos] + tok.encode(prompt)
    greedy = model.generate(ids, max_length, temperature=0, stop_token=tok.eos)
    if model.generate(ids, max_length, temperature=0.8, top_k=1, stop_token=tok.eos) != greedy:
        return "sampling with top_k=1 is not greedy"
    draws = [model.generate(ids, max_length, temperature=1.0, top_p=0.9, stop_token=tok.eos,
                            generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    if draws[0] != draws[1]:
        return "sampling with the same seed drew different tokens"
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("reference")
    parser.add_argument("greedy")
    parser.add_argument("--run", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--perturb")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = crsm.load(args.model)
    if args.perturb:
        with torch.no_grad():
            model.get_parameter(args.perturb).view(-1)[0] += 1e-3
    ref, metadata = crsm.read_safetensors(args.reference)
    failures = []
    with torch.no_grad():
        for what, difference in compare_logits(model, ref, int(metadata["prefill"])):
            print(f"{what}: max |python - C++| = {difference:.3g}")
            if not difference <= TOLERANCE:
                failures.append(f"{what} differ from C++ by {difference:.3g} (tolerance {TOLERANCE})")
    tok = crsm.load_tokenizer(args.run)
    for failure in (check_greedy(model, tok, args.prompt, args.max_length, args.greedy),
                    check_sampling(model, tok, args.prompt, args.max_length)):
        if failure:
            failures.append(failure)
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
