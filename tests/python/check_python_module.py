"""Holds python/crsm.py to crsm_train (run by test_python_module.cpp).

    check_python_module.py MODEL REFERENCE GREEDY --run RUN --prompt TEXT --max-length N [--perturb NAME] [--hf DIR]

MODEL is what `crsm_train export` wrote; REFERENCE the C++ model's outputs on fixed
tokens (safetensors: tokens, parallel_*, recurrent_*, prefill_logits; metadata
"prefill", the prompt length of the prefill run); GREEDY the stdout of `crsm_train
generate --temperature 0` on TEXT; RUN the run directory, whose tokenizer is used.
--perturb adds 1e-3 to one element of a weight, so that the test can show the check
notices it. --hf DIR is `crsm_train export --format hf` of the same model: its
config.json keys and tensor names are checked against transformers' and the module's
load of it must give MODEL's logits. Exit 1 on any mismatch."""

import argparse
import json
import sys

import torch

import crsm

TOLERANCE = 1e-4
HF_TOLERANCE = 1e-5

# What transformers' MambaForCausalLM reads, written down from its source
# (huggingface/transformers, src/transformers/models/mamba/configuration_mamba.py:
# MambaConfig.__init__'s arguments and the intermediate_size it sets; the rest are
# PretrainedConfig's, src/transformers/configuration_utils.py).
HF_CONFIG_KEYS = {
    "vocab_size", "hidden_size", "state_size", "num_hidden_layers", "layer_norm_epsilon",
    "pad_token_id", "bos_token_id", "eos_token_id", "expand", "conv_kernel", "use_bias",
    "use_conv_bias", "hidden_act", "initializer_range", "residual_in_fp32", "time_step_rank",
    "time_step_scale", "time_step_min", "time_step_max", "time_step_init_scheme",
    "time_step_floor", "rescale_prenorm_residual", "use_cache", "use_mambapy",
    "intermediate_size",
    "architectures", "model_type", "tie_word_embeddings", "torch_dtype",
}
# Values the arithmetic depends on: MambaMixer's in_proj/out_proj without bias, conv1d
# with bias, SiLU (modeling_mamba.py); the class that from_pretrained builds.
HF_REQUIRED = {"model_type": "mamba", "architectures": ["MambaForCausalLM"], "use_bias": False,
               "use_conv_bias": True, "hidden_act": "silu"}


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


def hf_tensor_shapes(c):
    """MambaForCausalLM's parameters by name and shape for config.json `c`, from
    src/transformers/models/mamba/modeling_mamba.py (MambaForCausalLM: backbone, lm_head;
    MambaModel: embeddings, layers, norm_f; MambaBlock: norm, mixer; MambaMixer: in_proj,
    conv1d, x_proj, dt_proj, A_log, D, out_proj). A tied lm_head is not stored."""
    h, i, s, k, r, v = (c["hidden_size"], c["intermediate_size"], c["state_size"], c["conv_kernel"],
                        c["time_step_rank"], c["vocab_size"])
    shapes = {"backbone.embeddings.weight": [v, h], "backbone.norm_f.weight": [h]}
    for n in range(c["num_hidden_layers"]):
        b = f"backbone.layers.{n}."
        shapes.update({b + "norm.weight": [h], b + "mixer.in_proj.weight": [2 * i, h],
                       b + "mixer.conv1d.weight": [i, 1, k], b + "mixer.conv1d.bias": [i],
                       b + "mixer.x_proj.weight": [r + 2 * s, i], b + "mixer.dt_proj.weight": [i, r],
                       b + "mixer.dt_proj.bias": [i], b + "mixer.A_log": [i, s], b + "mixer.D": [i],
                       b + "mixer.out_proj.weight": [h, i]})
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [v, h]
    return shapes


def check_hf_layout(directory, model):
    """Why the directory is not what transformers reads for `model` (a list, empty if it is)."""
    with open(f"{directory}/config.json") as f:
        c = json.load(f)
    problems = [f"config.json: {k} is not a MambaConfig key" for k in sorted(set(c) - HF_CONFIG_KEYS)]
    problems += [f"config.json: {k} is {c.get(k)!r}, expected {v!r}" for k, v in HF_REQUIRED.items() if c.get(k) != v]
    cfg = model.config
    ours = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "state_size": cfg.d_state,
            "num_hidden_layers": cfg.num_layers, "expand": cfg.expand, "intermediate_size": cfg.d_inner,
            "conv_kernel": cfg.d_conv, "time_step_rank": cfg.resolved_dt_rank,
            "tie_word_embeddings": cfg.tie_embeddings, "layer_norm_epsilon": model.norm_f.eps}
    problems += [f"config.json: {k} is {c.get(k)!r}, the model's is {v!r}" for k, v in ours.items() if c.get(k) != v]
    if problems:
        return problems
    tensors, metadata = crsm.read_safetensors(f"{directory}/model.safetensors")
    if metadata.get("format") != "pt":
        problems.append(f"model.safetensors: metadata format {metadata.get('format')!r}; transformers wants 'pt'")
    got = {name: list(t.shape) for name, t in tensors.items()}
    expected = hf_tensor_shapes(c)
    problems += [f"model.safetensors: no {n}" for n in sorted(set(expected) - set(got))]
    problems += [f"model.safetensors: {n} is not a MambaForCausalLM parameter" for n in sorted(set(got) - set(expected))]
    problems += [f"model.safetensors: {n} has shape {got[n]}, expected {expected[n]}"
                 for n in sorted(set(got) & set(expected)) if got[n] != expected[n]]
    return problems


def logits_by_steps(model, tokens):
    """Logits [batch, T, vocab] one step at a time from the empty state."""
    state, logits = model.empty_state(tokens.shape[0]), []
    for t in range(tokens.shape[1]):
        step_logits, _, state = model.step(tokens[:, t], state)
        logits.append(step_logits)
    return torch.stack(logits, 1)


def compare_hf(model, hf_model, tokens):
    """[(what, max |diff|)] between the two loads of one model, parallel and by steps."""
    logits, _, _ = model(tokens)
    hf_logits, hf_values, _ = hf_model(tokens)
    assert hf_values is None, "a Hugging Face model has no value heads"
    stepped = logits_by_steps(hf_model, tokens) - logits_by_steps(model, tokens)
    return [("Hugging Face load's parallel logits", float((hf_logits - logits).abs().max())),
            ("Hugging Face load's recurrent logits", float(stepped.abs().max()))]


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
    parser.add_argument("--hf")
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
        if args.hf:
            failures += check_hf_layout(args.hf, model)
            for what, difference in compare_hf(model, crsm.load(args.hf), ref["tokens"]):
                print(f"{what}: max |hf - crsm export| = {difference:.3g}")
                if not difference <= HF_TOLERANCE:
                    failures.append(f"{what} differ from the crsm export's by {difference:.3g} (tolerance {HF_TOLERANCE})")
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
