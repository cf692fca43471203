#include "model/tensor_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

namespace crsm::model {
namespace {

using nlohmann::json;

// Guards against absurd header lengths in a damaged file before allocating.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

const std::vector<std::pair<std::string, at::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, at::ScalarType>> names = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool}};
  return names;
}

std::string dtype_name(at::ScalarType t) {
  for (const auto& [name, type] : dtype_names())
    if (type == t) return name;
  throw TensorFileError(std::string("no safetensors dtype for ") + c10::toString(t));
}

bool dtype_from_name(const std::string& name, at::ScalarType* out) {
  for (const auto& [n, type] : dtype_names())
    if (n == name) {
      *out = type;
      return true;
    }
  return false;
}

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw TensorFileError(path + ": write failed: " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

}  // namespace

void save_tensor_file(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> blobs;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!names.insert(name).second) throw TensorFileError(path + ": duplicate tensor " + name);
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = t.numel() * t.element_size();
    header[name] = {{"dtype", dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    blobs.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  const uint64_t header_len = text.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(header_len >> (8 * i));

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw TensorFileError(tmp + ": cannot create: " + std::strerror(errno));
  try {
    write_all(fd, len_bytes, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (const auto& t : blobs) write_all(fd, t.data_ptr(), t.numel() * t.element_size(), tmp);
    if (::fsync(fd) != 0) throw TensorFileError(tmp + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw TensorFileError(path + ": rename failed: " + std::strerror(errno));
  }
  const int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

NamedTensors load_tensor_file(const std::string& path,
                              std::map<std::string, std::string>* metadata) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw TensorFileError(path + ": cannot open tensor file");
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) throw TensorFileError(path + ": truncated: shorter than its 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8)
    throw TensorFileError(path + ": truncated or not a safetensors file (header length " +
                          std::to_string(header_len) + ", file size " +
                          std::to_string(file_size) + ")");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    throw TensorFileError(path + ": malformed header: " + e.what());
  }
  if (!header.is_object()) throw TensorFileError(path + ": malformed header: not an object");
  const uint64_t data_size = file_size - 8 - header_len;

  NamedTensors out;
  std::vector<std::pair<uint64_t, size_t>> order;  // data offset -> index in out
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const json& e = item.value();
    if (name == "__metadata__") {
      if (metadata) *metadata = e.get<std::map<std::string, std::string>>();
      continue;
    }
    at::ScalarType type;
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
        !dtype_from_name(e["dtype"].get<std::string>(), &type) || !e.contains("shape") ||
        !e["shape"].is_array() || !e.contains("data_offsets") ||
        !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      throw TensorFileError(path + ": malformed entry for tensor " + name);
    const auto shape = e["shape"].get<std::vector<int64_t>>();
    const uint64_t begin = e["data_offsets"][0].get<uint64_t>();
    const uint64_t end = e["data_offsets"][1].get<uint64_t>();
    at::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
    const uint64_t bytes = t.numel() * t.element_size();
    if (end < begin || end - begin != bytes)
      throw TensorFileError(path + ": tensor " + name + " has " + std::to_string(end - begin) +
                            " bytes for shape " + shape_string(shape) + ", expected " +
                            std::to_string(bytes));
    if (end > data_size)
      throw TensorFileError(path + ": truncated: tensor " + name + " ends at byte " +
                            std::to_string(end) + " of a " + std::to_string(data_size) +
                            "-byte data section");
    in.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
    if (!in) throw TensorFileError(path + ": read failed for tensor " + name);
    order.emplace_back(begin, out.size());
    out.emplace_back(name, t);
  }
  std::sort(order.begin(), order.end());
  NamedTensors sorted;
  for (const auto& [offset, index] : order) sorted.push_back(std::move(out[index]));
  return sorted;
}

NamedTensors module_tensors(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_module_tensors(torch::nn::Module& module, const NamedTensors& tensors,
                         const std::string& source) {
  std::map<std::string, at::Tensor> given;
  for (const auto& [name, t] : tensors) given[name] = t;
  const NamedTensors targets = module_tensors(module);
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end()) throw TensorFileError(source + ": missing tensor " + name);
    if (it->second.sizes() != target.sizes())
      throw TensorFileError(source + ": tensor " + name + " has shape " +
                            shape_string(it->second.sizes()) + ", the model expects " +
                            shape_string(target.sizes()));
    if (it->second.scalar_type() != target.scalar_type())
      throw TensorFileError(source + ": tensor " + name + " is " +
                            c10::toString(it->second.scalar_type()) + ", the model expects " +
                            c10::toString(target.scalar_type()));
  }
  for (const auto& [name, t] : given)
    if (!expected.count(name))
      throw TensorFileError(source + ": unexpected tensor " + name + " (not in the model)");
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    auto dst = target;  // shares storage with the parameter
    dst.copy_(given.at(name));
  }
}

}  // namespace crsm::model
