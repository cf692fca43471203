#pragma once

// The backbone in the layout of Hugging Face transformers' MambaForCausalLM, so that
// `MambaForCausalLM.from_pretrained(DIR)` loads what `crsm_train export --format hf`
// writes: config.json with MambaConfig's keys and model.safetensors with its parameter
// names. Names and keys follow transformers' src/transformers/models/mamba/
// configuration_mamba.py and modeling_mamba.py. Its block is x + Mixer(Norm(x)) with
// the same mixer arithmetic as ours (mamba_mixer.cpp) and RMSNorm with
// layer_norm_epsilon, so only a backbone without the feed-forward branch has that form.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model_config.h"
#include "model/tensor_file.h"

namespace crsm::model {

// Why a backbone of `cfg` has no MambaForCausalLM form, or "" when it has one.
std::string hf_incompatibility(const ModelConfig& cfg);

// The special token ids the tokenizer defines; transformers wants a pad id too.
struct HfTokenIds {
  int64_t bos = 0, eos = 0, pad = 0;
};

// config.json: MambaConfig's keys for `cfg` (which hf_incompatibility accepts).
nlohmann::json hf_config(const ModelConfig& cfg, const HfTokenIds& ids);

// The backbone's tensors (module_tensors) under MambaForCausalLM's names. The value
// heads are dropped: MambaForCausalLM has none. With tied embeddings there is no
// lm_head.weight, as transformers' own save_pretrained writes it: config.json's
// tie_word_embeddings makes the model borrow backbone.embeddings.weight.
// std::invalid_argument for a name with no place there (an ffn weight).
NamedTensors hf_tensors(const NamedTensors& tensors);

}  // namespace crsm::model
