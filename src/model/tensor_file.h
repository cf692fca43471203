#pragma once

// Named tensors on disk in the safetensors format (an 8-byte little-endian header
// length, a JSON header giving each tensor's dtype, shape and byte range, then the
// raw little-endian data), so a Python user reads our files with `safetensors` or a
// dozen lines of numpy.

#include <ATen/core/Tensor.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace torch::nn {
class Module;
}

namespace crsm::model {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class TensorFileError : public Error {
 public:
  using Error::Error;
};

// Writes through base::AtomicFile, so an existing file is replaced only by a complete
// one. Tensors are copied to CPU; names must be unique.
void save_tensor_file(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor (CPU, in file order). A truncated or malformed file throws
// TensorFileError naming the file and, where it applies, the tensor.
NamedTensors load_tensor_file(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

// The module's parameters and buffers by their dotted names.
NamedTensors module_tensors(const torch::nn::Module& module);

// Copies `tensors` into the module's parameters and buffers. Strict: a missing, extra
// or mis-shaped (or differently typed) tensor throws TensorFileError naming it;
// nothing is copied unless everything matches. `source` names the origin in messages.
void load_module_tensors(torch::nn::Module& module, const NamedTensors& tensors,
                         const std::string& source);

}  // namespace crsm::model
