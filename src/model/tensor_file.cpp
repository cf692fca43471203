#include "model/tensor_file.h"

#include <torch/torch.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"

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

  base::AtomicFile file(path);
  file.write(len_bytes, 8);
  file.write(text);
  for (const auto& t : blobs) file.write(t.data_ptr(), t.numel() * t.element_size());
  file.commit();
}

namespace {

// One tensor of a safetensors header, checked against the file before anything is
// allocated for it.
struct Entry {
  std::string name;
  at::ScalarType type;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

Entry parse_entry(const std::string& name, const json& e, uint64_t data_size, const std::string& path) {
  const std::string where = path + ": tensor " + name;
  Entry entry{name, at::kFloat, {}, 0, 0};
  if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
      !dtype_from_name(e["dtype"].get<std::string>(), &entry.type))
    throw TensorFileError(where + ": expected an object with a known \"dtype\"");
  const json& shape = e.contains("shape") ? e["shape"] : json();
  const json& offsets = e.contains("data_offsets") ? e["data_offsets"] : json();
  if (!shape.is_array() || !offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw TensorFileError(where + ": expected \"shape\" and two non-negative integer \"data_offsets\"");
  // Each size and the running element count stay within the data section's bytes, so
  // the product cannot overflow.
  uint64_t elements = 1;
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > data_size ||
        (d.get<uint64_t>() > 0 && elements > data_size / d.get<uint64_t>()))
      throw TensorFileError(where + ": shape " + shape.dump() + " is not non-negative sizes that fit the " +
                            std::to_string(data_size) + "-byte data section");
    entry.shape.push_back(d.get<int64_t>());
    elements *= d.get<uint64_t>();
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  const uint64_t bytes = elements * c10::elementSize(entry.type);
  if (entry.end > data_size)
    throw TensorFileError(path + ": truncated: tensor " + name + " ends at byte " + std::to_string(entry.end) +
                          " of a " + std::to_string(data_size) + "-byte data section");
  if (entry.end < entry.begin || entry.end - entry.begin != bytes)
    throw TensorFileError(where + " has " + offsets.dump() + " as data offsets for shape " + shape.dump() +
                          ", which needs " + std::to_string(bytes) + " bytes");
  return entry;
}

}  // namespace

NamedTensors load_tensor_file(const std::string& path,
                              std::map<std::string, std::string>* metadata) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw TensorFileError(path + ": cannot open tensor file");
  const auto end_position = in.tellg();
  if (end_position < 0) throw TensorFileError(path + ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(end_position);
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
  const json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    throw TensorFileError(path + ": malformed header (expected a JSON object)");
  const uint64_t data_size = file_size - 8 - header_len;

  std::vector<Entry> entries;
  for (const auto& item : header.items()) {
    if (item.key() != "__metadata__") {
      entries.push_back(parse_entry(item.key(), item.value(), data_size, path));
      continue;
    }
    std::map<std::string, std::string> strings;
    for (const auto& field : item.value().items()) {
      if (!field.value().is_string())
        throw TensorFileError(path + ": __metadata__ \"" + field.key() + "\" must be a string");
      strings[field.key()] = field.value().get<std::string>();
    }
    if (!item.value().is_object()) throw TensorFileError(path + ": __metadata__ must be an object of strings");
    if (metadata) *metadata = std::move(strings);
  }
  // Disjoint ranges: together the tensors take no more memory than the file holds.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end)
      throw TensorFileError(path + ": tensors " + entries[i - 1].name + " and " + entries[i].name +
                            " overlap in the data section");

  NamedTensors out;
  for (const auto& e : entries) {
    at::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.type));
    in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) throw TensorFileError(path + ": read failed for tensor " + e.name);
    out.emplace_back(e.name, t);
  }
  return out;
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
