#include "data/row_store.h"

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

std::string dataset(const RowColumn& c) { return "dataset /" + c.name; }

// ---- Column types ----------------------------------------------------------------

// IEEE half precision as h5py defines float16.
Handle half_type() {
  Handle t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  return t;
}

Handle string_type(int64_t width) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), static_cast<size_t>(width));
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  return t;
}

// A column's element type in the file (little-endian).
Handle file_type(const RowColumn& c) {
  switch (c.stored) {
    case StoredType::kInt32: return Handle(H5Tcopy(H5T_STD_I32LE), H5Tclose);
    case StoredType::kInt64: return Handle(H5Tcopy(H5T_STD_I64LE), H5Tclose);
    case StoredType::kUInt8: return Handle(H5Tcopy(H5T_STD_U8LE), H5Tclose);
    case StoredType::kFloat16: return half_type();
    case StoredType::kFloat32: return Handle(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
    case StoredType::kFloat64: return Handle(H5Tcopy(H5T_IEEE_F64LE), H5Tclose);
    case StoredType::kString: return string_type(c.shape.at(0));
  }
  throw std::logic_error("file_type: unknown column type");
}

// The tensor type HDF5 reads into and writes from: float16 as stored (HDF5's own
// conversion of a non-native float is a slow bit-by-bit loop; LibTorch widens and rounds).
at::ScalarType buffer_scalar(StoredType t) {
  switch (t) {
    case StoredType::kInt32: return at::kInt;
    case StoredType::kInt64: return at::kLong;
    case StoredType::kUInt8:
    case StoredType::kString: return at::kByte;
    case StoredType::kFloat16: return at::kHalf;
    case StoredType::kFloat32: return at::kFloat;
    case StoredType::kFloat64: return at::kDouble;
  }
  throw std::logic_error("buffer_scalar: unknown column type");
}

at::ScalarType memory_scalar(StoredType t) { return t == StoredType::kFloat16 ? at::kFloat : buffer_scalar(t); }

// The buffer's HDF5 memory type.
Handle memory_type(const RowColumn& c) {
  switch (c.stored) {
    case StoredType::kInt32: return Handle(H5Tcopy(H5T_NATIVE_INT32), H5Tclose);
    case StoredType::kInt64: return Handle(H5Tcopy(H5T_NATIVE_INT64), H5Tclose);
    case StoredType::kUInt8: return Handle(H5Tcopy(H5T_NATIVE_UINT8), H5Tclose);
    case StoredType::kFloat16: return half_type();
    case StoredType::kFloat32: return Handle(H5Tcopy(H5T_NATIVE_FLOAT), H5Tclose);
    case StoredType::kFloat64: return Handle(H5Tcopy(H5T_NATIVE_DOUBLE), H5Tclose);
    case StoredType::kString: return string_type(c.shape.at(0));
  }
  throw std::logic_error("memory_type: unknown column type");
}

const char* type_name(StoredType t) {
  switch (t) {
    case StoredType::kInt32: return "int32";
    case StoredType::kInt64: return "int64";
    case StoredType::kUInt8: return "uint8";
    case StoredType::kFloat16: return "float16";
    case StoredType::kFloat32: return "float32";
    case StoredType::kFloat64: return "float64";
    case StoredType::kString: return "fixed-width strings";
  }
  return "?";
}

// The dataset's dimensions: N, then the column's shape (a string's width is its type's).
std::vector<hsize_t> dims_of(const RowColumn& c, int64_t n) {
  std::vector<hsize_t> dims{static_cast<hsize_t>(n)};
  if (c.stored != StoredType::kString)
    for (int64_t d : c.shape) dims.push_back(static_cast<hsize_t>(d));
  return dims;
}

// The tensor shape of n rows of the column.
std::vector<int64_t> shape_of(const RowColumn& c, int64_t n) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), c.shape.begin(), c.shape.end());
  return shape;
}

int64_t row_bytes(const RowColumn& c) {
  int64_t bytes = static_cast<int64_t>(torch::elementSize(buffer_scalar(c.stored)));
  for (int64_t d : c.shape) bytes *= d;
  return bytes;
}

std::string describe_dims(const std::vector<hsize_t>& dims) {
  std::string s = "[N";
  for (size_t i = 1; i < dims.size(); ++i) s += ", " + std::to_string(dims[i]);
  return s + "]";
}

// ---- Attributes --------------------------------------------------------------------

Handle file_access() {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  return fapl;
}

void write_attribute(hid_t file, const std::string& path, const std::string& name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(must(H5Acreate2(file, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                   "cannot create attribute " + name),
              H5Aclose);
  if (H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) throw DataError(path + ": cannot write attribute " + name);
}

void write_attribute(hid_t file, const std::string& path, const std::string& name, const std::string& value) {
  const Handle type = string_type(std::max<int64_t>(1, static_cast<int64_t>(value.size())));
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(must(H5Acreate2(file, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                   "cannot create attribute " + name),
              H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (H5Awrite(attr.get(), type.get(), padded.data()) < 0) throw DataError(path + ": cannot write attribute " + name);
}

void write_attributes(hid_t file, const std::string& path, const RowFormat& format, const RowAttributes& a) {
  write_attribute(file, path, "format_version", format.version);
  for (const auto& key : format.integer_keys) write_attribute(file, path, key, a.integers.at(key));
  for (const auto& key : format.text_keys) write_attribute(file, path, key, a.texts.at(key));
}

Handle open_attribute(hid_t file, const std::string& path, const std::string& name) {
  if (H5Aexists(file, name.c_str()) <= 0) throw DataError(path + ": attribute '" + name + "' is missing");
  return Handle(must(H5Aopen(file, name.c_str(), H5P_DEFAULT), path, "attribute '" + name + "' is unreadable"), H5Aclose);
}

int64_t read_int_attribute(hid_t file, const std::string& path, const std::string& name) {
  const Handle attr = open_attribute(file, path, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  int64_t v = 0;
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1 ||
      H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0)
    throw DataError(path + ": attribute '" + name + "' must be one integer");
  return v;
}

std::string read_string_attribute(hid_t file, const std::string& path, const std::string& name) {
  const Handle attr = open_attribute(file, path, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const std::string bad = path + ": attribute '" + name + "' must be one string";
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

RowAttributes read_attributes(hid_t file, const std::string& path, const RowFormat& format) {
  const int64_t version = read_int_attribute(file, path, "format_version");
  if (version != format.version)
    throw DataError(path + ": attribute 'format_version' is " + std::to_string(version) + ", expected " +
                    std::to_string(format.version));
  RowAttributes a;
  for (const auto& key : format.integer_keys) a.integers[key] = read_int_attribute(file, path, key);
  for (const auto& key : format.text_keys) a.texts[key] = read_string_attribute(file, path, key);
  return a;
}

// ---- Reading -------------------------------------------------------------------------

// Opens a file for reading: SWMR read first (a file whose writer was killed keeps its
// "open for writing" mark and opens no other way), then plainly.
Handle open_for_reading(const RowFormat& format, const std::string& path) {
  quiet();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw DataError(path + ": no such " + format.kind + " file");
  // One read attempt: under SWMR HDF5 retries a failed metadata checksum (a writer may
  // be mid-update) up to 100 times, which on a damaged file looks like a hang.
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_metadata_read_attempts(fapl.get(), 1);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw DataError(path + ": not a readable HDF5 file (truncated, damaged or not HDF5)");
  return Handle(id, H5Fclose);
}

// Rows of one column's dataset, after checking its dimensions and element type.
int64_t check_dataset(hid_t file, const std::string& path, const RowColumn& c) {
  if (H5Lexists(file, c.name.c_str(), H5P_DEFAULT) <= 0) throw DataError(path + ": " + dataset(c) + " is missing");
  Handle ds(must(H5Dopen2(file, c.name.c_str(), H5P_DEFAULT), path, dataset(c) + " is unreadable"), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  const auto want = dims_of(c, 0);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(std::max(rank, 1), 0);
  if (rank != static_cast<int>(want.size()) || H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
    throw DataError(path + ": " + dataset(c) + " must have " + std::to_string(want.size()) + " dimensions");
  for (size_t i = 1; i < want.size(); ++i)
    if (dims[i] != want[i])
      throw DataError(path + ": " + dataset(c) + " is " + describe_dims(dims) + ", the attributes say " + describe_dims(want));
  const Handle expected = file_type(c);
  const bool same_class = H5Tget_class(type.get()) == H5Tget_class(expected.get());
  if (!same_class || H5Tget_size(type.get()) != H5Tget_size(expected.get()))
    throw DataError(path + ": " + dataset(c) + " must hold " + type_name(c.stored) +
                    (c.stored == StoredType::kString ? " of " + std::to_string(c.shape.at(0)) + " bytes" : std::string()));
  return static_cast<int64_t>(dims[0]);
}

RowFileInfo inspect_open(const RowFormat& format, hid_t file, const std::string& path);

// A rank file's datasets' filter and chunk rows (a master's are virtual: none).
void read_layout(hid_t file, RowFileInfo& info) {
  Handle ds(H5Dopen2(file, info.columns.front().name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return;
  unsigned flags = 0;
  size_t values = 0;
  info.compression = H5Pget_filter_by_id2(dcpl.get(), H5Z_FILTER_DEFLATE, &flags, &values, nullptr, 0, nullptr, nullptr) >= 0
                         ? Compression::kGzip
                         : Compression::kNone;
  hsize_t chunk[8] = {0};
  if (H5Pget_chunk(dcpl.get(), 8, chunk) >= 1) info.chunk_rows = static_cast<int64_t>(chunk[0]);
}

// A master file's datasets are virtual: HDF5 reads a missing or damaged source as fill
// values, so every rank file it maps is inspected too and must hold the rows mapped, with
// the master's attributes (another collection's file with as many rows would pass for it
// otherwise).
void check_virtual_sources(const RowFormat& format, hid_t file, RowFileInfo& info) {
  const std::string& path = info.path;
  // The last column: one row per element, and written last, so it counts committed rows.
  const RowColumn& last = info.columns.back();
  Handle ds(H5Dopen2(file, last.name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_VIRTUAL) return;
  size_t count = 0;
  if (H5Pget_virtual_count(dcpl.get(), &count) < 0) throw DataError(path + ": unreadable virtual " + dataset(last));
  const fs::path dir = fs::absolute(path).parent_path();
  for (size_t i = 0; i < count; ++i) {
    std::string name(static_cast<size_t>(std::max<ssize_t>(0, H5Pget_virtual_filename(dcpl.get(), i, nullptr, 0))), '\0');
    H5Pget_virtual_filename(dcpl.get(), i, name.data(), name.size() + 1);
    const std::string source = fs::path(name).is_absolute() ? name : (dir / name).string();
    Handle vspace(H5Pget_virtual_vspace(dcpl.get(), i), H5Sclose);
    const auto mapped = static_cast<int64_t>(H5Sget_select_npoints(vspace.get()));
    hsize_t lo[1] = {0}, hi[1] = {0};
    H5Sget_select_bounds(vspace.get(), lo, hi);
    RowFileInfo src;
    {
      const Handle f = open_for_reading(format, source);
      src = inspect_open(format, f.get(), source);
    }
    check_same_attributes(format, src, info.attributes, "the master " + path + " that joins it",
                          ": the file belongs to another collection");
    if (src.rows < mapped)
      throw DataError(path + ": joins " + source + " as " + std::to_string(mapped) + " rows, but it holds " +
                      std::to_string(src.rows));
    info.sources.push_back({source, static_cast<int64_t>(lo[0]), mapped});
  }
}

RowFileInfo inspect_open(const RowFormat& format, hid_t file, const std::string& path) {
  RowFileInfo info;
  info.path = path;
  info.attributes = read_attributes(file, path, format);
  try {
    info.columns = format.columns(info.attributes);
  } catch (const DataError& e) {
    throw DataError(path + ": " + e.what());
  }
  int64_t rows = -1;
  for (const auto& c : info.columns) {
    const int64_t n = check_dataset(file, path, c);
    rows = rows < 0 ? n : std::min(rows, n);
  }
  info.rows = rows;  // a killed writer may have extended some datasets past the last column
  read_layout(file, info);
  check_virtual_sources(format, file, info);
  return info;
}

// Reads rows [first, first + count) of a column into `out`.
void read_rows(hid_t file, const std::string& path, const RowColumn& c, int64_t first, int64_t count, void* out) {
  Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_virtual_prefix(dapl.get(), "${ORIGIN}");
  Handle ds(must(H5Dopen2(file, c.name.c_str(), dapl.get()), path, dataset(c) + " is unreadable"), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  auto dims = dims_of(c, count);
  std::vector<hsize_t> start(dims.size(), 0);
  start[0] = static_cast<hsize_t>(first);
  if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, dims.data(), nullptr) < 0)
    throw DataError(path + ": rows outside " + dataset(c));
  Handle memspace(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  const Handle mem = memory_type(c);
  if (H5Dread(ds.get(), mem.get(), memspace.get(), space.get(), H5P_DEFAULT, out) < 0)
    throw DataError(path + ": reading rows " + std::to_string(first) + ".." + std::to_string(first + count) + " of /" +
                    c.name + " failed (damaged file?)");
}

RowBlock read_open(hid_t file, const RowFileInfo& info, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first + count > info.rows)
    throw DataError(info.path + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                    ") are outside the file's " + std::to_string(info.rows));
  RowBlock block;
  for (const auto& c : info.columns) {
    auto t = torch::empty(shape_of(c, count), buffer_scalar(c.stored));
    if (count > 0) read_rows(file, info.path, c, first, count, t.data_ptr());
    block.push_back(t.to(memory_scalar(c.stored)));
  }
  return block;
}

// ---- Writing -------------------------------------------------------------------------

// A new, empty row file open for SWMR writing.
Handle create_file(const std::string& path, const RowFormat& format, const RowAttributes& attributes,
                   const std::vector<RowColumn>& columns, const WriterOptions& o) {
  quiet();
  const Handle fapl = file_access();
  Handle file(must(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), path, "cannot be created"), H5Fclose);
  write_attributes(file.get(), path, format, attributes);
  for (const auto& c : columns) {
    auto dims = dims_of(c, 0), max = dims, chunk = dims;
    max[0] = H5S_UNLIMITED;
    chunk[0] = static_cast<hsize_t>(o.chunk_rows);
    Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max.data()), H5Sclose);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    if (o.compression == Compression::kGzip) {
      H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), 4);
      // A checksum per chunk, checked first on reading: a damaged compressed chunk is
      // refused before it reaches inflate, where HDF5 1.10 copies a short chunk past its
      // buffer. (Uncompressed chunks go without: it would halve the writer's speed.)
      H5Pset_fletcher32(dcpl.get());
    }
    const Handle type = file_type(c);
    Handle ds(must(H5Dcreate2(file.get(), c.name.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                   path, "cannot create " + dataset(c)),
              H5Dclose);
  }
  if (H5Fstart_swmr_write(file.get()) < 0) throw DataError(path + ": cannot start SWMR writing");
  return file;
}

// Appends rows to every dataset, the last column last, then flushes: the block is committed.
int64_t append_rows(hid_t file, const std::string& path, const std::vector<RowColumn>& columns, const RowBlock& rows) {
  const int64_t n = block_rows(rows);
  int64_t bytes = 0;
  for (size_t i = 0; i < columns.size(); ++i) {
    const RowColumn& c = columns[i];
    Handle ds(must(H5Dopen2(file, c.name.c_str(), H5P_DEFAULT), path, dataset(c) + " is missing"), H5Dclose);
    auto dims = dims_of(c, 0);
    {
      Handle space(H5Dget_space(ds.get()), H5Sclose);
      H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    }
    const hsize_t old = dims[0];
    dims[0] = old + static_cast<hsize_t>(n);
    if (H5Dset_extent(ds.get(), dims.data()) < 0) throw DataError(path + ": cannot extend /" + c.name);
    Handle file_space(H5Dget_space(ds.get()), H5Sclose);
    auto start = std::vector<hsize_t>(dims.size(), 0), count = dims;
    start[0] = old;
    count[0] = static_cast<hsize_t>(n);
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    Handle mem_space(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
    const auto t = rows[i].to(buffer_scalar(c.stored)).contiguous();
    const Handle mem = memory_type(c);
    if (H5Dwrite(ds.get(), mem.get(), mem_space.get(), file_space.get(), H5P_DEFAULT, t.data_ptr()) < 0)
      throw DataError(path + ": writing /" + c.name + " failed (disk full?)");
    bytes += static_cast<int64_t>(t.nbytes());
  }
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) throw DataError(path + ": flush failed (disk full?)");
  return bytes;
}

RowBlock copy_of(const RowBlock& r) {
  RowBlock out;
  for (const auto& t : r) out.push_back(t.clone());
  return out;
}

RowBlock concat(const RowBlock& a, const RowBlock& b) {
  if (block_rows(a) == 0) return b;
  RowBlock out;
  for (size_t i = 0; i < a.size(); ++i) out.push_back(torch::cat({a[i], b[i]}));
  return out;
}

std::string shown(const std::string& text) { return "\"" + text + "\""; }

}  // namespace

int64_t block_rows(const RowBlock& block) { return block.empty() || !block.front().defined() ? 0 : block.front().size(0); }

RowBlock slice_rows(const RowBlock& block, int64_t first, int64_t n) {
  RowBlock out;
  for (const auto& t : block) out.push_back(t.narrow(0, first, n));
  return out;
}

Compression parse_compression(const std::string& word) {
  if (word == "none") return Compression::kNone;
  if (word == "gzip") return Compression::kGzip;
  throw UsageError("compression \"" + word + "\": expected none or gzip");
}

std::string to_string(Compression c) { return c == Compression::kGzip ? "gzip" : "none"; }

RowFileInfo inspect_row_file(const RowFormat& format, const std::string& path) {
  quiet();
  const Handle file = open_for_reading(format, path);
  return inspect_open(format, file.get(), path);
}

void check_same_attributes(const RowFormat& format, const RowFileInfo& info, const RowAttributes& expected,
                           const std::string& whose, const std::string& consequence) {
  const auto differs = [&](const std::string& key, const std::string& got, const std::string& want) {
    throw DataError(info.path + ": field '" + key + "' is " + got + ", but " + whose + " has " + want + consequence);
  };
  for (const auto& key : format.integer_keys) {
    const int64_t got = info.attributes.integers.at(key), want = expected.integers.at(key);
    if (got != want) differs(key, std::to_string(got), std::to_string(want));
  }
  for (const auto& key : format.text_keys) {
    const std::string& got = info.attributes.texts.at(key);
    const std::string& want = expected.texts.at(key);
    if (got != want) differs(key, shown(got), shown(want));
  }
}

int64_t max_chunk_rows(const std::vector<RowColumn>& columns) {
  int64_t widest = 1;
  for (const auto& c : columns) widest = std::max(widest, row_bytes(c));
  return std::max<int64_t>(1, ((int64_t{1} << 32) - 1) / widest);
}

RowWriter::RowWriter(const RowFormat& format, std::string path, RowAttributes attributes, WriterOptions options)
    : path_(std::move(path)), columns_(format.columns(attributes)), options_(options) {
  if (options_.chunk_rows < 1 || options_.queue_blocks < 1 || options_.chunk_rows > max_chunk_rows(columns_))
    throw std::invalid_argument("RowWriter: chunk_rows must be from 1 to max_chunk_rows, queue_blocks >= 1");
  quiet();
  std::error_code ec;
  const std::string resume = path_ + ".resume";
  fs::remove(resume, ec);  // left by a crash while resuming: the file itself is intact
  fs::remove(path_ + ".new", ec);  // left by a crash while creating: it never held a row
  if (fs::exists(path_, ec)) {
    // Keep the committed rows: copy them to a fresh file and put it in the old one's place.
    const Handle old = open_for_reading(format, path_);
    const RowFileInfo info = inspect_open(format, old.get(), path_);
    check_same_attributes(format, info, attributes, "this run",
                          ": remove it to start anew, or rerun the original command");
    Handle fresh = create_file(resume, format, attributes, columns_, options_);
    // In whole chunks of about 32 MiB, flushed once each: a file may be far larger than memory.
    int64_t bytes_per_row = 0;
    for (const auto& c : columns_) bytes_per_row += row_bytes(c);
    const int64_t piece =
        options_.chunk_rows * std::max<int64_t>(1, (int64_t{32} << 20) / (options_.chunk_rows * bytes_per_row));
    for (int64_t at = 0; at < info.rows; at += piece)
      append_rows(fresh.get(), resume, columns_, read_open(old.get(), info, at, std::min(piece, info.rows - at)));
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
      created = create_file(fresh, format, attributes, columns_, options_);
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

RowWriter::~RowWriter() {
  try {
    close();
  } catch (...) {
  }
}

void RowWriter::append(RowBlock rows) {
  if (rows.size() != columns_.size())
    throw std::invalid_argument("RowWriter::append: " + std::to_string(rows.size()) + " columns, expected " +
                                std::to_string(columns_.size()));
  const int64_t n = block_rows(rows);
  for (size_t i = 0; i < columns_.size(); ++i) {
    const RowColumn& c = columns_[i];
    const auto& t = rows[i];
    if (!t.defined() || t.sizes() != at::IntArrayRef(shape_of(c, n)) || t.scalar_type() != memory_scalar(c.stored))
      throw std::invalid_argument("RowWriter::append: column " + c.name + " has the wrong shape or type");
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (closing_) throw std::logic_error("RowWriter::append after close");
  const auto start = Clock::now();
  changed_.wait(lock, [&] { return error_ || static_cast<int64_t>(queue_.size()) < options_.queue_blocks; });
  stats_.append_wait_s += std::chrono::duration<double>(Clock::now() - start).count();
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(std::move(rows));
  appended_ += n;
  changed_.notify_all();
}

void RowWriter::write_block(const RowBlock& rows) {
  const auto start = Clock::now();
  const int64_t bytes = append_rows(static_cast<hid_t>(file_), path_, columns_, rows);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.write_s += std::chrono::duration<double>(Clock::now() - start).count();
  stats_.bytes += bytes;
}

void RowWriter::run() {
  quiet();
  try {
    for (;;) {
      RowBlock block;
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
      if (block_rows(block) > 0) pending_ = concat(pending_, block);
      int64_t at = 0;
      while (block_rows(pending_) - at >= options_.chunk_rows) {
        write_block(slice_rows(pending_, at, options_.chunk_rows));
        at += options_.chunk_rows;
      }
      if (at > 0) pending_ = copy_of(slice_rows(pending_, at, block_rows(pending_) - at));
      if (last) {
        if (block_rows(pending_) > 0) write_block(pending_);
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

WriterStats RowWriter::close() {
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

RowReader::RowReader(const RowFormat& format, const std::string& path) : format_(format) {
  Handle file = open_for_reading(format_, path);
  info_ = inspect_open(format_, file.get(), path);
  file_ = file.release();
}

RowReader::~RowReader() {
  quiet();
  if (file_ >= 0) H5Fclose(static_cast<hid_t>(file_));
}

RowBlock RowReader::read(int64_t first, int64_t count) const {
  quiet();
  try {
    return read_open(static_cast<hid_t>(file_), info_, first, count);
  } catch (const DataError& e) {
    // Through a master a damaged rank file fails the read: name the one that does.
    for (const auto& src : info_.sources) {
      const int64_t lo = std::max(first, src.first), hi = std::min(first + count, src.first + src.rows);
      if (lo >= hi) continue;
      try {
        RowReader(format_, src.path).read(lo - src.first, hi - lo);
      } catch (const DataError& damaged) {
        throw DataError(info_.path + ": rows " + std::to_string(lo) + ".." + std::to_string(hi) + " come from " +
                        src.path + ", which cannot be read: " + damaged.what());
      }
    }
    throw;
  }
}

void write_master_file(const RowFormat& format, const std::string& master, const std::vector<std::string>& rank_files) {
  quiet();
  if (rank_files.empty()) throw DataError(master + ": no rank files to join");
  std::vector<RowFileInfo> infos;
  for (const auto& f : rank_files) {
    infos.push_back(inspect_row_file(format, f));
    check_same_attributes(format, infos.back(), infos.front().attributes, rank_files.front(),
                          ": the files are of different collections");
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
    write_attributes(file.get(), tmp, format, infos.front().attributes);
    int64_t total = 0;
    for (const auto& i : infos) total += i.rows;
    for (const auto& c : infos.front().columns) {
      const auto dims = dims_of(c, total);
      const int rank = static_cast<int>(dims.size());
      Handle vspace(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose);
      Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      int64_t offset = 0;
      for (const auto& i : infos) {
        if (i.rows == 0) continue;
        auto start = std::vector<hsize_t>(dims.size(), 0), count = dims_of(c, i.rows);
        start[0] = static_cast<hsize_t>(offset);
        H5Sselect_hyperslab(vspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
        Handle src(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
        // Relative to the master's directory, so the collection moves as one piece.
        const std::string source = fs::relative(fs::absolute(i.path), dir).string();
        if (H5Pset_virtual(dcpl.get(), vspace.get(), source.c_str(), c.name.c_str(), src.get()) < 0)
          throw DataError(tmp + ": cannot map " + i.path + " into /" + c.name);
        offset += i.rows;
      }
      H5Sselect_all(vspace.get());
      const Handle type = file_type(c);
      Handle ds(must(H5Dcreate2(file.get(), c.name.c_str(), type.get(), vspace.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                     tmp, "cannot create the virtual " + dataset(c)),
                H5Dclose);
    }
    if (H5Fclose(file.release()) < 0) throw DataError(tmp + ": closing failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, master, ec);
  if (ec) throw DataError(master + ": cannot be replaced by " + tmp + ": " + ec.message());
}

}  // namespace crsm::data
