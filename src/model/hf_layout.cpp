#include "model/hf_layout.h"

#include <stdexcept>

#include "model/rms_norm.h"

namespace crsm::model {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Our name's place in MambaForCausalLM: its backbone (MambaModel) holds the embedding,
// the blocks and the final norm, beside the LM head. "" for a value head (none there).
std::string hf_name(const std::string& name) {
  if (name == "embedding.weight") return "backbone.embeddings.weight";
  if (name == "norm_f.weight") return "backbone.norm_f.weight";
  if (name == "lm_head.weight") return name;
  if (starts_with(name, "value_heads.")) return "";
  // A block's norm and mixer keep their names: ours follow the reference Mamba module.
  if (starts_with(name, "layers.") && name.find(".ffn") == std::string::npos) return "backbone." + name;
  throw std::invalid_argument("hf layout: MambaForCausalLM has no place for the tensor " + name);
}

}  // namespace

std::string hf_incompatibility(const ModelConfig& cfg) {
  if (cfg.d_ffn > 0)
    return "its blocks have the feed-forward branch (d_ffn = " + std::to_string(cfg.d_ffn) +
           "), which transformers' MambaBlock (x + Mixer(Norm(x)) alone) has no place for; a model trained with "
           "d_ffn: 0 (--set d_ffn=0) has the Mamba-1 block and exports";
  if (cfg.norm != "rmsnorm") return "its norm is " + cfg.norm + "; MambaForCausalLM's is RMSNorm";
  return "";
}

nlohmann::json hf_config(const ModelConfig& cfg, const HfTokenIds& ids) {
  return {
      {"architectures", nlohmann::json::array({"MambaForCausalLM"})},
      {"model_type", "mamba"},
      {"vocab_size", cfg.vocab_size},
      {"hidden_size", cfg.d_model},
      {"state_size", cfg.d_state},
      {"num_hidden_layers", cfg.num_layers},
      {"expand", cfg.expand},
      {"intermediate_size", cfg.d_inner()},
      {"conv_kernel", cfg.d_conv},
      {"time_step_rank", cfg.resolved_dt_rank()},
      // in_proj and out_proj have no bias, conv1d has one; silu is the conv's and the
      // gate's activation.
      {"use_bias", false},
      {"use_conv_bias", true},
      {"hidden_act", "silu"},
      {"layer_norm_epsilon", kRmsNormEps},
      // Our residual stream is float32 throughout, under bf16 autocast too.
      {"residual_in_fp32", true},
      {"tie_word_embeddings", cfg.tie_embeddings},
      {"bos_token_id", ids.bos},
      {"eos_token_id", ids.eos},
      {"pad_token_id", ids.pad},
      {"torch_dtype", "float32"},
      {"use_cache", true},
      // How dt_proj's bias and out_proj started here (mamba_mixer.cpp): only a model
      // re-initialised by transformers reads them.
      {"time_step_min", 1e-3},
      {"time_step_max", 1e-1},
      {"time_step_floor", 1e-4},
      {"time_step_scale", 1.0},
      {"time_step_init_scheme", "random"},
      {"rescale_prenorm_residual", true},
  };
}

NamedTensors hf_tensors(const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, tensor] : tensors)
    if (const std::string renamed = hf_name(name); !renamed.empty()) out.emplace_back(renamed, tensor);
  return out;
}

}  // namespace crsm::model
