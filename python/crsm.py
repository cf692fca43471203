"""CRSM-dist backbones in plain PyTorch.

Loads the file `crsm_train export` writes and runs the model as crsm_train does: the
parallel forward over a sequence, the recurrent O(1) step with a per-layer state, and
greedy or sampled generation. Parameter names and shapes are the C++ model's
(src/model/*.cpp), so the export loads with a strict load_state_dict. Needs only
PyTorch (1.13 or newer). It also loads a Hugging Face Mamba directory (config.json of
model_type "mamba" and model.safetensors), such as `crsm_train export --format hf`
writes: that model has no value heads, so its values are None.

    import crsm
    model = crsm.load("model.safetensors")              # or crsm.load("hf_dir")
    logits, values, state = model(tokens)               # tokens [batch, T]
    logits, values, state = model.step(next_tokens, state)  # next_tokens [batch]
"""

import json
import os
import struct
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path):
    """Returns ({name: tensor}, {metadata key: string}) of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise ValueError(f"{path}: truncated or not a safetensors file")
    header = json.loads(blob[8:8 + header_len])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if end > len(data):
            raise ValueError(f"{path}: truncated: tensor {name} ends past the end of the file")
        dtype = _DTYPES[entry["dtype"]]
        # bytearray: frombuffer wants a writable buffer; the file format is little-endian,
        # as is every machine PyTorch runs on.
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin \
            else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"])
    return tensors, metadata


@dataclass
class Config:
    """The model's shape: the keys of the run's config that the weights depend on."""
    vocab_size: int
    d_model: int
    d_state: int
    d_ffn: int
    num_layers: int
    expand: int = 2
    d_conv: int = 4
    dt_rank: int = 0  # 0: ceil(d_model / 16), the config's "auto"
    tie_embeddings: bool = False
    dropout: float = 0.0
    norm_eps: float = 1e-5  # every RMSNorm's
    value_heads: bool = True  # a Hugging Face Mamba model has none
    value_target: str = "next_token"  # "outcome": the heads' outputs go through a sigmoid

    @property
    def d_inner(self):
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self):
        return self.dt_rank if self.dt_rank > 0 else (self.d_model + 15) // 16

    @classmethod
    def from_run_config(cls, run_config):
        keys = {k: run_config[k] for k in cls.__dataclass_fields__ if k in run_config}
        if keys.get("dt_rank") == "auto":
            keys["dt_rank"] = 0
        if keys.get("value_target", "next_token") not in ("next_token", "outcome"):
            raise ValueError(f"value_target {keys['value_target']!r}: expected next_token or outcome")
        if run_config.get("norm", "rmsnorm") != "rmsnorm":
            raise ValueError(f"norm {run_config['norm']!r}: only rmsnorm is known here")
        return cls(**keys)

    @classmethod
    def from_hf_config(cls, hf, path):
        """The shape of a transformers MambaConfig (config.json): its block is ours with
        d_ffn 0. Keys that would change the arithmetic away from ours are refused."""
        def key(name, default=None):
            if name not in hf and default is None:
                raise ValueError(f"{path}: config.json has no {name}")
            return hf.get(name, default)
        for name, supported in (("use_bias", False), ("use_conv_bias", True), ("hidden_act", "silu")):
            if key(name, supported) != supported:
                raise ValueError(f"{path}: config.json has {name} {hf[name]!r}; this module supports only {supported!r}")
        rank = key("time_step_rank", "auto")
        cfg = cls(vocab_size=key("vocab_size"), d_model=key("hidden_size"), d_state=key("state_size"), d_ffn=0,
                  num_layers=key("num_hidden_layers"), expand=key("expand", 2), d_conv=key("conv_kernel", 4),
                  dt_rank=0 if rank == "auto" else rank,
                  # transformers' PretrainedConfig ties by default
                  tie_embeddings=key("tie_word_embeddings", True),
                  norm_eps=key("layer_norm_epsilon", 1e-5), value_heads=False)
        if key("intermediate_size", cfg.d_inner) != cfg.d_inner:
            raise ValueError(f"{path}: config.json has intermediate_size {hf['intermediate_size']}, "
                             f"not expand * hidden_size = {cfg.d_inner}")
        return cfg


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaMixer(nn.Module):
    """The selective SSM: per channel d and state n,
        h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,   y_t = (C_t . h_t + D x_t) silu(z_t).
    Its state is (conv_state [batch, d_inner, d_conv], the last conv inputs oldest first;
    ssm_state [batch, d_inner, d_state])."""

    def __init__(self, cfg):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv = cfg.d_inner, cfg.d_state, cfg.d_conv
        self.dt_rank = cfg.resolved_dt_rank
        self.in_proj = nn.Linear(cfg.d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, self.d_conv, groups=self.d_inner)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, cfg.d_model, bias=False)
        self.A_log = nn.Parameter(torch.zeros(self.d_inner, self.d_state))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def _selection(self, xc):
        """dt, B, C from the convolved input: what makes the scan input-dependent."""
        proj = self.x_proj(xc)
        dt_in, B, C = proj.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt_in)), B, C

    def forward(self, u):
        """u [batch, T, d_model] -> (out [batch, T, d_model], state after the last position)."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        padded = F.pad(x.transpose(1, 2), (self.d_conv - 1, 0))  # causal: zeros before t = 0
        xc = F.silu(F.conv1d(padded, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner))
        xc = xc.transpose(1, 2)
        dt, B, C = self._selection(xc)
        decay = torch.exp(dt.unsqueeze(-1) * -torch.exp(self.A_log))  # [batch, T, d_inner, d_state]
        inflow = (dt * xc).unsqueeze(-1) * B.unsqueeze(2)
        # The scan itself is sequential; a loop over time keeps it the plain reference.
        h = u.new_zeros(u.shape[0], self.d_inner, self.d_state)
        states = []
        for t in range(u.shape[1]):
            h = decay[:, t] * h + inflow[:, t]
            states.append(h)
        y = (torch.stack(states, 1) * C.unsqueeze(2)).sum(-1) + self.D * xc
        return self.out_proj(y * F.silu(z)), (padded[..., -self.d_conv:], h)

    def step(self, u, state):
        """u [batch, d_model] -> (out [batch, d_model], next state)."""
        conv_state, h = state
        x, z = self.in_proj(u).chunk(2, dim=-1)
        conv_state = torch.cat([conv_state[..., 1:], x.unsqueeze(-1)], dim=-1)
        xc = F.silu((conv_state * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, B, C = self._selection(xc)
        decay = torch.exp(dt.unsqueeze(-1) * -torch.exp(self.A_log))
        h = decay * h + (dt * xc).unsqueeze(-1) * B.unsqueeze(1)
        y = (h * C.unsqueeze(1)).sum(-1) + self.D * xc
        return self.out_proj(y * F.silu(z)), (conv_state, h)

    def empty_state(self, batch, device=None, dtype=torch.float32):
        return (torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype),
                torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype))


class Block(nn.Module):
    """Pre-norm residual block: x + Mixer(Norm(x)), then + FFN(Norm(.)); with d_ffn 0 the
    first branch alone, the Mamba-1 block (transformers' MambaBlock)."""

    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = MambaMixer(cfg)
        self.has_ffn = cfg.d_ffn > 0
        if self.has_ffn:
            self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
            # Indices 0 and 3 hold the weights, as in the C++ block.
            self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ffn), nn.GELU(),
                                     nn.Dropout(cfg.dropout), nn.Linear(cfg.d_ffn, cfg.d_model))

    def _ffn_branch(self, h):
        return h + self.ffn(self.ffn_norm(h)) if self.has_ffn else h

    def forward(self, x):
        mixed, state = self.mixer(self.norm(x))
        return self._ffn_branch(x + mixed), state

    def step(self, x, state):
        mixed, state = self.mixer.step(self.norm(x), state)
        return self._ffn_branch(x + mixed), state


class CRSM(nn.Module):
    """Mamba language model with one value head per layer (read from the layer's output).

    forward(tokens [batch, T]) and step(tokens [batch], state) both return
    (logits, values, state): logits [..., vocab], values [..., num_layers] (None for a
    model without value heads) and the per-layer list of mixer states that the next step
    continues from."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        if cfg.value_heads:
            self.value_heads = nn.ModuleList(nn.Linear(cfg.d_model, 1) for _ in range(cfg.num_layers))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def _outputs(self, latents):
        """Logits from the last layer's output; each value head on its own layer's."""
        head = self.embedding.weight if self.config.tie_embeddings else self.lm_head.weight
        logits = F.linear(self.norm_f(latents[-1]), head)
        if not self.config.value_heads:
            return logits, None
        values = torch.cat([v(h) for v, h in zip(self.value_heads, latents)], dim=-1)
        # Outcome heads say the probability that the answer is right (SPEC §3).
        return logits, values.sigmoid() if self.config.value_target == "outcome" else values

    def forward(self, tokens):
        h = self.embedding(tokens)
        latents, states = [], []
        for layer in self.layers:
            h, state = layer(h)
            latents.append(h)
            states.append(state)
        return (*self._outputs(latents), states)

    def step(self, tokens, state):
        h = self.embedding(tokens)
        latents, states = [], []
        for layer, layer_state in zip(self.layers, state):
            h, layer_state = layer.step(h, layer_state)
            latents.append(h)
            states.append(layer_state)
        return (*self._outputs(latents), states)

    def empty_state(self, batch):
        """The state before any token: step() from it equals forward() position by position."""
        weight = self.embedding.weight
        return [layer.mixer.empty_state(batch, weight.device, weight.dtype) for layer in self.layers]

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0,
                 stop_token=None, generator=None):
        """Continues `prompt` (a non-empty list of ids) by up to max_new_tokens ids: the prompt
        runs once in parallel, then one step per token. temperature 0 is greedy; stops before
        stop_token. Returns the new ids."""
        device = self.embedding.weight.device
        logits, _, state = self(torch.tensor([prompt], device=device))
        logits = logits[:, -1]
        new = []
        for _ in range(max_new_tokens):
            token = sample_token(logits[0], temperature, top_k, top_p, generator)
            if token == stop_token:
                break
            new.append(token)
            if len(new) == max_new_tokens:
                break
            logits, _, state = self.step(torch.tensor([token], device=device), state)
        return new


def sample_token(logits, temperature=0.0, top_k=0, top_p=1.0, generator=None):
    """One id from logits [vocab], with crsm_train's rules: greedy at temperature 0, else
    the top_k most likely ids, cut to the smallest prefix holding top_p of the mass."""
    scores = logits.detach().double().cpu()
    if not torch.isfinite(scores).all():
        raise ValueError("the model's logits are not finite")
    if temperature <= 0:
        return int(scores.argmax())
    # Shifted so the largest is 0: a tiny temperature cannot overflow to inf - inf.
    probs, order = torch.softmax((scores - scores.max()) / temperature, 0).sort(descending=True)
    keep = len(probs) if top_k <= 0 else min(len(probs), top_k)
    if top_p < 1.0:
        keep = min(keep, int((probs.cumsum(0) < top_p).sum()) + 1)
    pick = torch.multinomial(probs[:keep], 1, generator=generator)
    return int(order[pick])


def load(path, device="cpu"):
    """The model in a file `crsm_train export` wrote, or in a Hugging Face Mamba directory
    (`crsm_train export --format hf`), in eval mode."""
    if os.path.isdir(path):
        return load_hf(path, device)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != "crsm-backbone" or "config" not in metadata:
        raise ValueError(f"{path}: not a crsm_train export (no crsm-backbone format and config in its metadata)")
    model = CRSM(Config.from_run_config(json.loads(metadata["config"])))
    model.load_state_dict(tensors)  # strict: any name or shape the two disagree on is an error
    return model.to(device).eval()


def load_hf(directory, device="cpu"):
    """A transformers MambaForCausalLM directory: config.json (model_type "mamba") and
    model.safetensors, the names renamed to ours (backbone.embeddings -> embedding,
    backbone.layers/norm_f -> layers/norm_f, lm_head as it is)."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"{directory}: no config.json: not a Hugging Face model directory")
    with open(config_path) as f:
        hf = json.load(f)
    if hf.get("model_type") != "mamba":
        raise ValueError(f"{config_path}: model_type {hf.get('model_type')!r}; this module loads only 'mamba'")
    cfg = Config.from_hf_config(hf, config_path)
    tensors, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
    ours = {}
    for name, tensor in tensors.items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # a copy of the embedding that some writers keep; the tied model has none
        renamed = name[len("backbone."):] if name.startswith("backbone.") else name
        # transformers renames the old "embedding." to "embeddings." when it loads; both come here.
        renamed = renamed.replace("embeddings.", "embedding.", 1) if renamed.startswith("embeddings.") else renamed
        ours[renamed] = tensor
    model = CRSM(cfg)
    model.load_state_dict(ours)  # strict, as above
    return model.to(device).eval()


class ByteTokenizer:
    """crsm_train's byte tokenizer: ids 0..255 are bytes, 256 <bos>, 257 <eos>."""
    bos, eos, vocab_size = 256, 257, 258

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids):
        return bytes(i for i in ids if i < 256)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def load_tokenizer(directory):
    """The tokenizer a checkpoint directory holds, or a run directory's newest checkpoint.
    Only the byte tokenizer: SentencePiece would need the sentencepiece package, so
    with those models pass token ids."""
    path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(path):
        with open(os.path.join(directory, "checkpoints", "latest")) as f:
            path = os.path.join(directory, "checkpoints", f.read().strip(), "tokenizer.json")
    with open(path) as f:
        kind = json.load(f)["kind"]
    if kind != "byte":
        raise NotImplementedError(f"{path}: a {kind} tokenizer; this module has only the byte "
                                  "tokenizer, so pass token ids to generate()")
    return ByteTokenizer()
