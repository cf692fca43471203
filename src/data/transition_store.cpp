#include "data/transition_store.h"

#include <hdf5.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "base/error.h"
#include "data/data_error.h"

namespace crsm::data {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// One HDF5 identifier, closed with its kind's close function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
    return *this;
  }
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5 prints its error stack on every failure unless told not to; ours say it better.
// Debian's HDF5 is thread-safe, which makes the switch per thread: every entry point
// calls this in the thread it runs in (the writer's thread included).
void quiet() {
  thread_local const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

hid_t must(hid_t id, const std::string& path, const std::string& what) {
  if (id < 0) throw DataError(path + ": " + what);
  return id;
}

// An integer column's HDF5 types: in the file (little-endian) and in memory.
hid_t file_integer_type(at::ScalarType type) { return type == at::kLong ? H5T_STD_I64LE : H5T_STD_I32LE; }
hid_t native_integer_type(at::ScalarType type) { return type == at::kLong ? H5T_NATIVE_INT64 : H5T_NATIVE_INT32; }

// The same rows, each column transformed by `f`.
template <typename F>
TransitionRows each_column(const TransitionRows& r, F f) {
  TransitionRows out;
  for (const auto& c : kTransitionColumns) out.*c.rows = f(r.*c.rows);
  return out;
}

// IEEE half precision as h5py defines float16.
Handle half_type() {
  Handle t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  return t;
}

Handle float_file_type(TransitionDtype dtype) {
  return dtype == TransitionDtype::kFloat16 ? half_type() : Handle(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
}

Handle file_access() {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  return fapl;
}

void write_attribute(hid_t file, const std::string& path, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(must(H5Acreate2(file, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                   std::string("cannot create attribute ") + name),
              H5Aclose);
  if (H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) throw DataError(path + ": cannot write attribute " + name);
}

void write_attribute(hid_t file, const std::string& path, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(must(H5Acreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                   std::string("cannot create attribute ") + name),
              H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (H5Awrite(attr.get(), type.get(), padded.data()) < 0) throw DataError(path + ": cannot write attribute " + name);
}

void write_schema(hid_t file, const std::string& path, const TransitionSchema& s) {
  write_attribute(file, path, "format_version", int64_t{kTransitionFormatVersion});
  write_attribute(file, path, "num_layers", s.num_layers);
  write_attribute(file, path, "d_model", s.d_model);
  write_attribute(file, path, "vocab_size", s.vocab_size);
  write_attribute(file, path, "dtype", to_string(s.dtype));
  write_attribute(file, path, "backbone_sha256", s.backbone_sha256);
  write_attribute(file, path, "plan", s.plan);
}

int64_t read_int_attribute(hid_t file, const std::string& path, const char* name) {
  if (H5Aexists(file, name) <= 0) throw DataError(path + ": attribute '" + std::string(name) + "' is missing");
  Handle attr(must(H5Aopen(file, name, H5P_DEFAULT), path, std::string("attribute '") + name + "' is unreadable"), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  int64_t v = 0;
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1 ||
      H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0)
    throw DataError(path + ": attribute '" + std::string(name) + "' must be one integer");
  return v;
}

std::string read_string_attribute(hid_t file, const std::string& path, const char* name) {
  if (H5Aexists(file, name) <= 0) throw DataError(path + ": attribute '" + std::string(name) + "' is missing");
  Handle attr(must(H5Aopen(file, name, H5P_DEFAULT), path, std::string("attribute '") + name + "' is unreadable"), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const std::string bad = path + ": attribute '" + std::string(name) + "' must be one string";
  if (H5Tget_class(type.get()) != H5T_STRING || H5Sget_simple_extent_npoints(space.get()) != 1) throw DataError(bad);
  if (H5Tis_variable_str(type.get()) > 0) {
    char* text = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    if (H5Aread(attr.get(), mem.get(), &text) < 0 || !text) throw DataError(bad);
    std::string out(text);
    H5free_memory(text);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (1 << 20)) throw DataError(bad);
  std::string buffer(size, '\0');
  if (H5Aread(attr.get(), type.get(), buffer.data()) < 0) throw DataError(bad);
  return buffer.substr(0, buffer.find('\0'));
}

// Opens a file for reading: SWMR read first (a file whose writer was killed keeps its
// "open for writing" mark and opens no other way), then plainly.
Handle open_for_reading(const std::string& path) {
  quiet();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw DataError(path + ": no such transition file");
  // One read attempt: under SWMR HDF5 retries a failed metadata checksum (a writer may
  // be mid-update) up to 100 times, which on a damaged file looks like a hang.
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_metadata_read_attempts(fapl.get(), 1);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw DataError(path + ": not a readable HDF5 file (truncated, damaged or not HDF5)");
  return Handle(id, H5Fclose);
}

// Rows of one dataset, after checking its rank, trailing shape and type class.
int64_t check_dataset(hid_t file, const std::string& path, const char* name, const TransitionSchema& s,
                      bool floating) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) throw DataError(path + ": dataset /" + std::string(name) + " is missing");
  Handle ds(must(H5Dopen2(file, name, H5P_DEFAULT), path, "dataset /" + std::string(name) + " is unreadable"), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  const int want = floating ? 3 : 1;
  hsize_t dims[3] = {0, 0, 0};
  if (rank != want || H5Sget_simple_extent_dims(space.get(), dims, nullptr) < 0)
    throw DataError(path + ": dataset /" + std::string(name) + " must have " + std::to_string(want) + " dimensions");
  if (floating && (static_cast<int64_t>(dims[1]) != s.num_layers || static_cast<int64_t>(dims[2]) != s.d_model))
    throw DataError(path + ": dataset /" + std::string(name) + " is [N, " + std::to_string(dims[1]) + ", " +
                    std::to_string(dims[2]) + "], the attributes say [N, " + std::to_string(s.num_layers) + ", " +
                    std::to_string(s.d_model) + "]");
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  if (floating) {
    const size_t want_size = s.dtype == TransitionDtype::kFloat16 ? 2 : 4;
    if (cls != H5T_FLOAT || size != want_size)
      throw DataError(path + ": dataset /" + std::string(name) + " is not " + to_string(s.dtype) +
                      " as the attribute 'dtype' says");
  } else if (cls != H5T_INTEGER) {
    throw DataError(path + ": dataset /" + std::string(name) + " must hold integers");
  }
  return static_cast<int64_t>(dims[0]);
}

TransitionFileInfo inspect_open(hid_t file, const std::string& path);

// A rank file's datasets' filter and chunk rows (a master's are virtual: none).
void read_layout(hid_t file, TransitionFileInfo& info) {
  Handle ds(H5Dopen2(file, kTransitionColumns[0].name, H5P_DEFAULT), H5Dclose);
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return;
  unsigned flags = 0;
  size_t values = 0;
  info.compression = H5Pget_filter_by_id2(dcpl.get(), H5Z_FILTER_DEFLATE, &flags, &values, nullptr, 0, nullptr, nullptr) >= 0
                         ? Compression::kGzip
                         : Compression::kNone;
  hsize_t chunk[3] = {0, 0, 0};
  if (H5Pget_chunk(dcpl.get(), 3, chunk) == 3) info.chunk_rows = static_cast<int64_t>(chunk[0]);
}

// A master file's datasets are virtual: HDF5 reads a missing or damaged source as fill
// values, so every rank file it maps is inspected too and must hold the rows mapped, of
// the master's schema and plan (another collection's file with as many rows would pass
// for it otherwise).
void check_virtual_sources(hid_t file, TransitionFileInfo& info) {
  const std::string& path = info.path;
  // The last column: one row per element, and written last, so it counts committed rows.
  Handle ds(H5Dopen2(file, std::end(kTransitionColumns)[-1].name, H5P_DEFAULT), H5Dclose);
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_VIRTUAL) return;
  size_t count = 0;
  if (H5Pget_virtual_count(dcpl.get(), &count) < 0) throw DataError(path + ": unreadable virtual dataset /pos");
  const fs::path dir = fs::absolute(path).parent_path();
  for (size_t i = 0; i < count; ++i) {
    std::string name(static_cast<size_t>(std::max<ssize_t>(0, H5Pget_virtual_filename(dcpl.get(), i, nullptr, 0))), '\0');
    H5Pget_virtual_filename(dcpl.get(), i, name.data(), name.size() + 1);
    const std::string source = fs::path(name).is_absolute() ? name : (dir / name).string();
    Handle vspace(H5Pget_virtual_vspace(dcpl.get(), i), H5Sclose);
    const auto mapped = static_cast<int64_t>(H5Sget_select_npoints(vspace.get()));
    hsize_t lo[1] = {0}, hi[1] = {0};
    H5Sget_select_bounds(vspace.get(), lo, hi);
    TransitionFileInfo src;
    {
      const Handle f = open_for_reading(source);
      src = inspect_open(f.get(), source);
    }
    check_schema(src, info.schema);
    if (src.schema.plan != info.schema.plan)
      throw DataError(source + ": field 'plan' is \"" + src.schema.plan + "\", but the master " + path + " that joins it has \"" +
                      info.schema.plan + "\": the file belongs to another collection");
    if (src.rows < mapped)
      throw DataError(path + ": joins " + source + " as " + std::to_string(mapped) + " rows, but it holds " +
                      std::to_string(src.rows));
    info.sources.push_back({source, static_cast<int64_t>(lo[0]), mapped});
  }
}

TransitionFileInfo inspect_open(hid_t file, const std::string& path) {
  TransitionFileInfo info;
  info.path = path;
  info.format_version = static_cast<int>(read_int_attribute(file, path, "format_version"));
  if (info.format_version != kTransitionFormatVersion)
    throw DataError(path + ": attribute 'format_version' is " + std::to_string(info.format_version) + ", expected " +
                    std::to_string(kTransitionFormatVersion));
  auto& s = info.schema;
  const auto positive = [&](const char* name) {
    const int64_t v = read_int_attribute(file, path, name);
    if (v < 1 || v > (int64_t{1} << 31)) throw DataError(path + ": attribute '" + std::string(name) + "' is out of range");
    return v;
  };
  s.num_layers = positive("num_layers");
  s.d_model = positive("d_model");
  s.vocab_size = positive("vocab_size");
  const std::string dtype = read_string_attribute(file, path, "dtype");
  if (dtype != "float32" && dtype != "float16")
    throw DataError(path + ": attribute 'dtype' is \"" + dtype + "\", expected \"float32\" or \"float16\"");
  s.dtype = dtype == "float16" ? TransitionDtype::kFloat16 : TransitionDtype::kFloat32;
  s.backbone_sha256 = read_string_attribute(file, path, "backbone_sha256");
  s.plan = read_string_attribute(file, path, "plan");
  int64_t rows = -1;
  for (const auto& c : kTransitionColumns) {
    const int64_t n = check_dataset(file, path, c.name, s, c.per_layer);
    rows = rows < 0 ? n : std::min(rows, n);
  }
  info.rows = rows;  // a killed writer may have extended some datasets past /pos
  read_layout(file, info);
  check_virtual_sources(file, info);
  return info;
}

// Reads rows [first, first + count) of dataset `name` into `out` (memory type `mem`).
void read_rows(hid_t file, const std::string& path, const char* name, int64_t first, int64_t count, hid_t mem,
               void* out) {
  Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_virtual_prefix(dapl.get(), "${ORIGIN}");
  Handle ds(must(H5Dopen2(file, name, dapl.get()), path, "dataset /" + std::string(name) + " is unreadable"), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  hsize_t dims[3] = {0, 0, 0}, start[3] = {static_cast<hsize_t>(first), 0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  dims[0] = static_cast<hsize_t>(count);
  if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, dims, nullptr) < 0)
    throw DataError(path + ": rows outside dataset /" + std::string(name));
  Handle memspace(H5Screate_simple(rank, dims, nullptr), H5Sclose);
  if (H5Dread(ds.get(), mem, memspace.get(), space.get(), H5P_DEFAULT, out) < 0)
    throw DataError(path + ": reading rows " + std::to_string(first) + ".." + std::to_string(first + count) +
                    " of /" + name + " failed (damaged file?)");
}

TransitionRows read_open(hid_t file, const TransitionFileInfo& info, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first + count > info.rows)
    throw DataError(info.path + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                    ") are outside the file's " + std::to_string(info.rows));
  const auto& s = info.schema;
  TransitionRows r;
  // float16 is read as stored and widened by LibTorch (HDF5's own conversion of a
  // non-native float is a slow bit-by-bit loop).
  const bool half = s.dtype == TransitionDtype::kFloat16;
  const Handle states = half ? half_type() : Handle(H5Tcopy(H5T_NATIVE_FLOAT), H5Tclose);
  for (const auto& c : kTransitionColumns) {
    auto& t = r.*c.rows;
    t = c.per_layer ? torch::empty({count, s.num_layers, s.d_model}, half ? torch::kHalf : torch::kFloat)
                    : torch::empty({count}, c.type);
    if (count > 0)
      read_rows(file, info.path, c.name, first, count, c.per_layer ? states.get() : native_integer_type(c.type),
                t.data_ptr());
    if (c.per_layer) t = t.to(torch::kFloat);
  }
  return r;
}

// A new, empty transition file open for SWMR writing.
Handle create_file(const std::string& path, const TransitionSchema& s, const WriterOptions& o) {
  quiet();
  const Handle fapl = file_access();
  Handle file(must(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), path, "cannot be created"), H5Fclose);
  write_schema(file.get(), path, s);
  const auto make = [&](const char* name, hid_t type, int rank) {
    hsize_t dims[3] = {0, static_cast<hsize_t>(s.num_layers), static_cast<hsize_t>(s.d_model)};
    hsize_t max[3] = {H5S_UNLIMITED, dims[1], dims[2]};
    hsize_t chunk[3] = {static_cast<hsize_t>(o.chunk_rows), dims[1], dims[2]};
    Handle space(H5Screate_simple(rank, dims, max), H5Sclose);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(dcpl.get(), rank, chunk);
    if (o.compression == Compression::kGzip) {
      H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), 4);
      // A checksum per chunk, checked first on reading: a damaged compressed chunk is
      // refused before it reaches inflate, where HDF5 1.10 copies a short chunk past its
      // buffer. (Uncompressed chunks go without: it would halve the writer's speed.)
      H5Pset_fletcher32(dcpl.get());
    }
    Handle ds(must(H5Dcreate2(file.get(), name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), path,
                   "cannot create dataset /" + std::string(name)),
              H5Dclose);
  };
  const Handle ftype = float_file_type(s.dtype);
  for (const auto& c : kTransitionColumns)
    make(c.name, c.per_layer ? ftype.get() : file_integer_type(c.type), c.per_layer ? 3 : 1);
  if (H5Fstart_swmr_write(file.get()) < 0) throw DataError(path + ": cannot start SWMR writing");
  return file;
}

// Appends rows to every dataset, /pos last, then flushes: the block is committed.
// float16 rows are rounded by LibTorch (as .to(kHalf) rounds them) and written as stored.
int64_t append_rows(hid_t file, const std::string& path, TransitionDtype dtype, const TransitionRows& rows) {
  const int64_t n = rows.size();
  int64_t bytes = 0;
  const auto put = [&](const char* name, hid_t mem, const at::Tensor& t) {
    Handle ds(must(H5Dopen2(file, name, H5P_DEFAULT), path, "dataset /" + std::string(name) + " is missing"), H5Dclose);
    Handle space(H5Dget_space(ds.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    hsize_t dims[3] = {0, 0, 0};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    const hsize_t old = dims[0];
    dims[0] = old + static_cast<hsize_t>(n);
    if (H5Dset_extent(ds.get(), dims) < 0) throw DataError(path + ": cannot extend /" + std::string(name));
    Handle file_space(H5Dget_space(ds.get()), H5Sclose);
    hsize_t start[3] = {old, 0, 0}, count[3] = {static_cast<hsize_t>(n), dims[1], dims[2]};
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    Handle mem_space(H5Screate_simple(rank, count, nullptr), H5Sclose);
    const auto c = t.contiguous();
    if (H5Dwrite(ds.get(), mem, mem_space.get(), file_space.get(), H5P_DEFAULT, c.data_ptr()) < 0)
      throw DataError(path + ": writing /" + std::string(name) + " failed (disk full?)");
    bytes += static_cast<int64_t>(c.nbytes());
  };
  const bool half = dtype == TransitionDtype::kFloat16;
  const Handle states = half ? half_type() : Handle(H5Tcopy(H5T_NATIVE_FLOAT), H5Tclose);
  for (const auto& c : kTransitionColumns) {
    const auto& t = rows.*c.rows;
    if (c.per_layer) put(c.name, states.get(), half ? t.to(torch::kHalf) : t);
    else put(c.name, native_integer_type(c.type), t);
  }
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) throw DataError(path + ": flush failed (disk full?)");
  return bytes;
}

TransitionRows copy_of(const TransitionRows& r) {
  return each_column(r, [](const at::Tensor& t) { return t.clone(); });
}

TransitionRows concat(const TransitionRows& a, const TransitionRows& b) {
  if (a.size() == 0) return b;
  TransitionRows out;
  for (const auto& c : kTransitionColumns) out.*c.rows = torch::cat({a.*c.rows, b.*c.rows});
  return out;
}

void check_field(const std::string& path, const char* field, const std::string& got, const std::string& want) {
  if (got != want)
    throw DataError(path + ": field '" + std::string(field) + "' is " + got + ", but the model in use has " + want);
}

}  // namespace

TransitionRows TransitionRows::slice(int64_t first, int64_t n) const {
  return each_column(*this, [&](const at::Tensor& t) { return t.narrow(0, first, n); });
}

TransitionDtype parse_transition_dtype(const std::string& word) {
  if (word == "float32") return TransitionDtype::kFloat32;
  if (word == "float16") return TransitionDtype::kFloat16;
  throw UsageError("dtype \"" + word + "\": expected float32 or float16");
}

std::string to_string(TransitionDtype dtype) { return dtype == TransitionDtype::kFloat16 ? "float16" : "float32"; }

Compression parse_compression(const std::string& word) {
  if (word == "none") return Compression::kNone;
  if (word == "gzip") return Compression::kGzip;
  throw UsageError("compression \"" + word + "\": expected none or gzip");
}

std::string to_string(Compression c) { return c == Compression::kGzip ? "gzip" : "none"; }

TransitionFileInfo inspect_transition_file(const std::string& path) {
  quiet();
  const Handle file = open_for_reading(path);
  return inspect_open(file.get(), path);
}

void check_schema(const TransitionFileInfo& info, const TransitionSchema& e) {
  const auto& s = info.schema;
  check_field(info.path, "num_layers", std::to_string(s.num_layers), std::to_string(e.num_layers));
  check_field(info.path, "d_model", std::to_string(s.d_model), std::to_string(e.d_model));
  check_field(info.path, "vocab_size", std::to_string(s.vocab_size), std::to_string(e.vocab_size));
  check_field(info.path, "dtype", to_string(s.dtype), to_string(e.dtype));
  check_field(info.path, "backbone_sha256", s.backbone_sha256, e.backbone_sha256);
}

int64_t max_chunk_rows(const TransitionSchema& s) {
  const int64_t element = s.dtype == TransitionDtype::kFloat16 ? 2 : 4;
  return std::max<int64_t>(1, ((int64_t{1} << 32) - 1) / std::max<int64_t>(1, s.num_layers * s.d_model * element));
}

TransitionWriter::TransitionWriter(std::string path, TransitionSchema schema, WriterOptions options)
    : path_(std::move(path)), schema_(std::move(schema)), options_(options) {
  if (options_.chunk_rows < 1 || options_.queue_blocks < 1 || options_.chunk_rows > max_chunk_rows(schema_))
    throw std::invalid_argument("TransitionWriter: chunk_rows must be from 1 to max_chunk_rows, queue_blocks >= 1");
  quiet();
  std::error_code ec;
  const std::string resume = path_ + ".resume";
  fs::remove(resume, ec);  // left by a crash while resuming: the file itself is intact
  fs::remove(path_ + ".new", ec);  // left by a crash while creating: it never held a row
  if (fs::exists(path_, ec)) {
    // Keep the committed rows: copy them to a fresh file and put it in the old one's place.
    const Handle old = open_for_reading(path_);
    const TransitionFileInfo info = inspect_open(old.get(), path_);
    check_schema(info, schema_);
    if (info.schema.plan != schema_.plan)
      throw DataError(path_ + ": field 'plan' is \"" + info.schema.plan + "\", but this collection's is \"" +
                      schema_.plan + "\": remove the directory to collect anew, or rerun the original command");
    Handle fresh = create_file(resume, schema_, options_);
    // In whole chunks of about 32 MiB, flushed once each: a file may be far larger than memory.
    const int64_t row_bytes = 2 * schema_.num_layers * schema_.d_model * 4 + 16;
    const int64_t piece = options_.chunk_rows * std::max<int64_t>(1, (int64_t{32} << 20) / (options_.chunk_rows * row_bytes));
    for (int64_t at = 0; at < info.rows; at += piece)
      append_rows(fresh.get(), resume, schema_.dtype, read_open(old.get(), info, at, std::min(piece, info.rows - at)));
    fs::rename(resume, path_, ec);
    if (ec) throw DataError(path_ + ": cannot replace it with " + resume + ": " + ec.message());
    rows_at_open_ = info.rows;
    file_ = fresh.release();
  } else {
    // Created under another name and renamed once whole: a file that failed half-way
    // (a dataset HDF5 refused) never stands in the way of the next run.
    const std::string fresh = path_ + ".new";
    Handle created;
    try {
      created = create_file(fresh, schema_, options_);
    } catch (...) {
      fs::remove(fresh, ec);
      throw;
    }
    fs::rename(fresh, path_, ec);
    if (ec) throw DataError(path_ + ": cannot be created from " + fresh + ": " + ec.message());
    file_ = created.release();
  }
  stats_.rows_at_open = rows_at_open_;
  thread_ = std::thread([this] { run(); });
}

TransitionWriter::~TransitionWriter() {
  try {
    close();
  } catch (...) {
  }
}

void TransitionWriter::append(TransitionRows rows) {
  const int64_t n = rows.size();
  const auto& s = schema_;
  const auto shape_is = [&](const at::Tensor& t, std::vector<int64_t> shape, at::ScalarType type, const char* name) {
    if (!t.defined() || t.sizes() != at::IntArrayRef(shape) || t.scalar_type() != type)
      throw std::invalid_argument(std::string("TransitionWriter::append: ") + name + " has the wrong shape or type");
  };
  for (const auto& c : kTransitionColumns)
    shape_is(rows.*c.rows, c.per_layer ? std::vector<int64_t>{n, s.num_layers, s.d_model} : std::vector<int64_t>{n},
             c.type, c.name);
  std::unique_lock<std::mutex> lock(mutex_);
  if (closing_) throw std::logic_error("TransitionWriter::append after close");
  const auto start = Clock::now();
  changed_.wait(lock, [&] { return error_ || static_cast<int64_t>(queue_.size()) < options_.queue_blocks; });
  stats_.append_wait_s += std::chrono::duration<double>(Clock::now() - start).count();
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(std::move(rows));
  appended_ += n;
  changed_.notify_all();
}

void TransitionWriter::write_block(const TransitionRows& rows) {
  const auto start = Clock::now();
  const int64_t bytes = append_rows(static_cast<hid_t>(file_), path_, schema_.dtype, rows);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.write_s += std::chrono::duration<double>(Clock::now() - start).count();
  stats_.bytes += bytes;
}

void TransitionWriter::run() {
  quiet();
  try {
    for (;;) {
      TransitionRows block;
      bool last = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (!queue_.empty()) {
          block = std::move(queue_.front());
          queue_.pop_front();
          changed_.notify_all();
        }
        last = closing_ && queue_.empty();
      }
      if (block.size() > 0) pending_ = concat(pending_, block);
      int64_t at = 0;
      while (pending_.size() - at >= options_.chunk_rows) {
        write_block(pending_.slice(at, options_.chunk_rows));
        at += options_.chunk_rows;
      }
      if (at > 0) pending_ = copy_of(pending_.slice(at, pending_.size() - at));
      if (last) {
        if (pending_.size() > 0) write_block(pending_);
        pending_ = {};
        return;
      }
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    changed_.notify_all();
  }
}

WriterStats TransitionWriter::close() {
  if (closed_) return stats_;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  closed_ = true;
  quiet();
  const herr_t closed = file_ >= 0 ? H5Fclose(static_cast<hid_t>(file_)) : 0;
  file_ = -1;
  if (error_) std::rethrow_exception(error_);
  if (closed < 0) throw DataError(path_ + ": closing failed (disk full?)");
  stats_.rows = rows();
  return stats_;
}

TransitionReader::TransitionReader(const std::string& path) {
  Handle file = open_for_reading(path);
  info_ = inspect_open(file.get(), path);
  file_ = file.release();
}

TransitionReader::~TransitionReader() {
  quiet();
  if (file_ >= 0) H5Fclose(static_cast<hid_t>(file_));
}

TransitionRows TransitionReader::read(int64_t first, int64_t count) const {
  quiet();
  try {
    return read_open(static_cast<hid_t>(file_), info_, first, count);
  } catch (const DataError& e) {
    // Through a master a damaged rank file fails the read: name the one that does.
    for (const auto& src : info_.sources) {
      const int64_t lo = std::max(first, src.first), hi = std::min(first + count, src.first + src.rows);
      if (lo >= hi) continue;
      try {
        TransitionReader(src.path).read(lo - src.first, hi - lo);
      } catch (const DataError& damaged) {
        throw DataError(info_.path + ": rows " + std::to_string(lo) + ".." + std::to_string(hi) + " come from " +
                        src.path + ", which cannot be read: " + damaged.what());
      }
    }
    throw;
  }
}

void write_master_file(const std::string& master, const std::vector<std::string>& rank_files) {
  quiet();
  if (rank_files.empty()) throw DataError(master + ": no rank files to join");
  std::vector<TransitionFileInfo> infos;
  for (const auto& f : rank_files) {
    infos.push_back(inspect_transition_file(f));
    check_schema(infos.back(), infos.front().schema);
    if (infos.back().schema.plan != infos.front().schema.plan)
      throw DataError(f + ": field 'plan' is \"" + infos.back().schema.plan + "\", but " + rank_files.front() +
                      " has \"" + infos.front().schema.plan + "\": the files are of different collections");
  }
  const fs::path dir = fs::absolute(master).parent_path();
  const std::string tmp = master + ".tmp";
  // The temporary file goes whatever happens; the master appears only whole.
  struct RemoveTmp {
    const std::string& path;
    ~RemoveTmp() {
      std::error_code ec;
      fs::remove(path, ec);
    }
  } remove_tmp{tmp};
  {
    const Handle fapl = file_access();
    Handle file(must(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), tmp, "cannot be created"), H5Fclose);
    write_schema(file.get(), tmp, infos.front().schema);
    int64_t total = 0;
    for (const auto& i : infos) total += i.rows;
    const auto& s = infos.front().schema;
    const Handle ftype = float_file_type(s.dtype);
    for (const auto& c : kTransitionColumns) {
      const char* name = c.name;
      const bool floating = c.per_layer;
      const int rank = floating ? 3 : 1;
      hsize_t dims[3] = {static_cast<hsize_t>(total), static_cast<hsize_t>(s.num_layers), static_cast<hsize_t>(s.d_model)};
      Handle vspace(H5Screate_simple(rank, dims, nullptr), H5Sclose);
      Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      int64_t offset = 0;
      for (const auto& i : infos) {
        if (i.rows == 0) continue;
        hsize_t start[3] = {static_cast<hsize_t>(offset), 0, 0};
        hsize_t count[3] = {static_cast<hsize_t>(i.rows), dims[1], dims[2]};
        H5Sselect_hyperslab(vspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
        Handle src(H5Screate_simple(rank, count, nullptr), H5Sclose);
        // Relative to the master's directory, so the collection moves as one piece.
        const std::string source = fs::relative(fs::absolute(i.path), dir).string();
        if (H5Pset_virtual(dcpl.get(), vspace.get(), source.c_str(), name, src.get()) < 0)
          throw DataError(tmp + ": cannot map " + i.path + " into /" + name);
        offset += i.rows;
      }
      H5Sselect_all(vspace.get());
      hid_t type = floating ? ftype.get() : file_integer_type(c.type);
      Handle ds(must(H5Dcreate2(file.get(), name, type, vspace.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), tmp,
                     "cannot create the virtual dataset /" + std::string(name)),
                H5Dclose);
    }
    if (H5Fclose(file.release()) < 0) throw DataError(tmp + ": closing failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, master, ec);
  if (ec) throw DataError(master + ": cannot be replaced by " + tmp + ": " + ec.message());
}

}  // namespace crsm::data
