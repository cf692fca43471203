#include "train/adamw.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "model/cpu_kernels.h"

namespace crsm::train {
namespace {

// The step's scalars, as float once, for the fused update.
struct Coefficients {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias2, eps, step_size;
};

bool fusable(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v) {
  if (!model::fused_cpu_kernels()) return false;
  for (const auto* t : {&p, &g, &m, &v})
    if (!t->is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous()) return false;
  return true;
}

// One pass over a slot's elements instead of the plain form's nine, which on a small
// model is memory traffic, not arithmetic. Element by element, so pieces of a parameter
// update exactly like the whole (built without FMA contraction for the same reason:
// vector body and scalar tail round alike).
void fused_update(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, const Coefficients& c) {
  float* __restrict pp = p.data_ptr<float>();
  const float* __restrict gp = g.data_ptr<float>();
  float* __restrict mp = m.data_ptr<float>();
  float* __restrict vp = v.data_ptr<float>();
  at::parallel_for(0, p.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = gp[i];
      const float mi = mp[i] * c.beta1 + gi * c.one_minus_beta1;
      const float vi = vp[i] * c.beta2 + gi * gi * c.one_minus_beta2;
      mp[i] = mi;
      vp[i] = vi;
      const float denom = std::sqrt(vi) / c.sqrt_bias2 + c.eps;
      pp[i] = pp[i] * c.decay + c.step_size * (mi / denom);
    }
  });
}

}  // namespace

AdamW::AdamW(std::vector<Slot> slots, AdamWOptions options)
    : slots_(std::move(slots)), options_(options) {
  for (const auto& s : slots_) {
    exp_avg_.push_back(torch::zeros_like(s.value));
    exp_avg_sq_.push_back(torch::zeros_like(s.value));
  }
}

void AdamW::step(double lr, const std::vector<at::Tensor>& grads) {
  TORCH_CHECK(grads.size() == slots_.size(), "AdamW::step: ", grads.size(), " gradients for ",
              slots_.size(), " slots");
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& p = slots_[i].value;
    const auto& g = grads[i];
    auto &m = exp_avg_[i], &v = exp_avg_sq_[i];
    const double decay = slots_[i].decay ? 1.0 - lr * options_.weight_decay : 1.0;
    if (fusable(p, g, m, v)) {
      fused_update(p, g, m, v,
                   {static_cast<float>(decay), static_cast<float>(options_.beta1),
                    static_cast<float>(1.0 - options_.beta1), static_cast<float>(options_.beta2),
                    static_cast<float>(1.0 - options_.beta2), static_cast<float>(std::sqrt(bias2)),
                    static_cast<float>(options_.eps), static_cast<float>(-lr / bias1)});
      continue;
    }
    // The plain form, for any device and dtype, and the reference of the fused one.
    if (slots_[i].decay) p.mul_(decay);
    m.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    const auto denom = (v.sqrt() / std::sqrt(bias2)).add_(options_.eps);
    p.addcdiv_(m, denom, -lr / bias1);
  }
}

model::NamedTensors AdamW::state() const {
  model::NamedTensors out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string key = slots_[i].param + "@" + std::to_string(slots_[i].offset);
    out.emplace_back(key + ".exp_avg", exp_avg_[i].reshape(-1));
    out.emplace_back(key + ".exp_avg_sq", exp_avg_sq_[i].reshape(-1));
  }
  out.emplace_back("step", torch::tensor(steps_, torch::kLong));
  return out;
}

std::vector<AdamW::SavedPiece> AdamW::parse_state(const model::NamedTensors& state,
                                                  const std::string& source, int64_t* step) {
  std::map<std::pair<std::string, int64_t>, SavedPiece> pieces;
  bool have_step = false;
  for (const auto& [name, tensor] : state) {
    if (name == "step") {
      if (tensor.numel() != 1 || tensor.scalar_type() != torch::kLong)
        throw model::TensorFileError(source + ": optimizer tensor step must be one int64");
      *step = tensor.item<int64_t>();
      have_step = true;
      continue;
    }
    const auto at = name.rfind('@');
    const auto dot = name.find('.', at == std::string::npos ? 0 : at);
    if (at == std::string::npos || dot == std::string::npos)
      throw model::TensorFileError(source + ": unexpected optimizer entry " + name);
    const std::string param = name.substr(0, at);
    const std::string which = name.substr(dot + 1);
    int64_t offset = 0;
    try {
      offset = std::stoll(name.substr(at + 1, dot - at - 1));
    } catch (const std::exception&) {
      throw model::TensorFileError(source + ": malformed optimizer entry " + name);
    }
    auto& piece = pieces[{param, offset}];
    piece.param = param;
    piece.offset = offset;
    if (which == "exp_avg")
      piece.exp_avg = tensor.reshape(-1);
    else if (which == "exp_avg_sq")
      piece.exp_avg_sq = tensor.reshape(-1);
    else
      throw model::TensorFileError(source + ": unexpected optimizer entry " + name);
  }
  if (!have_step) throw model::TensorFileError(source + ": missing optimizer tensor step");
  std::vector<SavedPiece> out;
  for (auto& [key, piece] : pieces) {
    if (!piece.exp_avg.defined() || !piece.exp_avg_sq.defined() ||
        piece.exp_avg.numel() != piece.exp_avg_sq.numel())
      throw model::TensorFileError(source + ": incomplete optimizer state for " + key.first + "@" +
                                   std::to_string(key.second));
    out.push_back(std::move(piece));
  }
  return out;
}

void AdamW::load_state(const std::vector<SavedPiece>& pieces, int64_t step, const std::string& source) {
  std::multimap<std::string, const SavedPiece*> by_param;
  for (const auto& p : pieces) by_param.emplace(p.param, &p);
  std::vector<at::Tensor> avg, avg_sq;
  for (const auto& slot : slots_) {
    const int64_t begin = slot.offset, end = slot.offset + slot.value.numel();
    auto m = torch::empty({slot.value.numel()}, slot.value.options().device(torch::kCPU));
    auto v = torch::empty_like(m);
    int64_t covered = 0;
    auto range = by_param.equal_range(slot.param);
    for (auto it = range.first; it != range.second; ++it) {
      const SavedPiece& piece = *it->second;
      const int64_t lo = std::max(begin, piece.offset);
      const int64_t hi = std::min(end, piece.offset + piece.exp_avg.numel());
      if (lo >= hi) continue;
      m.narrow(0, lo - begin, hi - lo).copy_(piece.exp_avg.narrow(0, lo - piece.offset, hi - lo));
      v.narrow(0, lo - begin, hi - lo).copy_(piece.exp_avg_sq.narrow(0, lo - piece.offset, hi - lo));
      covered += hi - lo;
    }
    if (covered != slot.value.numel())
      throw model::TensorFileError(source + ": optimizer state for " + slot.param + " elements [" +
                                   std::to_string(begin) + ", " + std::to_string(end) +
                                   ") is missing or overlaps");
    avg.push_back(m);
    avg_sq.push_back(v);
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    exp_avg_[i].copy_(avg[i].view_as(exp_avg_[i]));
    exp_avg_sq_[i].copy_(avg_sq[i].view_as(exp_avg_sq_[i]));
  }
  steps_ = step;
}

int64_t AdamW::state_bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < slots_.size(); ++i)
    n += (exp_avg_[i].numel() + exp_avg_sq_[i].numel()) * exp_avg_[i].element_size();
  return n;
}

bool decays(const std::string& name, int64_t dim) {
  const bool is_state_matrix = name.size() >= 5 && name.compare(name.size() - 5, 5, "A_log") == 0;
  return dim >= 2 && !is_state_matrix;
}

std::vector<AdamW::Piece> AdamW::pieces() const {
  std::vector<Piece> out;
  for (const auto& slot : slots_) out.push_back({slot.param, slot.offset, slot.value});
  return out;
}

void AdamW::load_state(const std::vector<SavedFile>& files, const std::string& dir) {
  std::vector<SavedPiece> pieces;
  int64_t step = -1;
  for (const auto& file : files)
    for (auto& piece : parse_state(file.tensors, file.path, &step)) pieces.push_back(std::move(piece));
  if (step < 0 && !slots_.empty())
    throw model::TensorFileError(dir + ": no optimizer state in any rank file of the manifest");
  load_state(pieces, step, dir);
}

}  // namespace crsm::train
