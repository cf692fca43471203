#include "model/parameter_count.h"

namespace crsm::model {

int64_t analytic_parameter_count(const ModelConfig& c) {
  const int64_t di = c.d_inner(), r = c.resolved_dt_rank(), n = c.d_state, d = c.d_model;
  const int64_t mixer = d * 2 * di             // in_proj
                        + di * c.d_conv + di   // conv1d weight, bias
                        + di * (r + 2 * n)     // x_proj
                        + r * di + di          // dt_proj weight, bias
                        + di * n + di          // A_log, D
                        + di * d;              // out_proj
  const int64_t ffn = d * c.d_ffn + c.d_ffn + c.d_ffn * d + d;
  const int64_t block = d + mixer + d + ffn;  // norm, mixer, ffn_norm, ffn
  const int64_t value_head = d + 1;
  const int64_t embedding = c.vocab_size * d;
  const int64_t lm_head = c.tie_embeddings ? 0 : c.vocab_size * d;
  return embedding + c.num_layers * (block + value_head) + d + lm_head;
}

}  // namespace crsm::model
