#include "tools/lib/hdf5/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <memory>

namespace h5 {

namespace {

// Owns one HDF5 identifier and closes it with the matching H5*close.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints its error stack by default; this layer reports errors itself.
void silence_hdf5() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

std::string dims_str(const Dims& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

int64_t count(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

}  // namespace

File::File(const std::string& path, Mode mode, uint64_t userblock_bytes) : path_(path) {
  silence_hdf5();
  if (mode == Mode::create) {
    Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    if (userblock_bytes > 0 && H5Pset_userblock(fcpl.get(), userblock_bytes) < 0)
      throw Error(path + ": invalid user block size " + std::to_string(userblock_bytes));
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT);
    if (file_ < 0) throw Error(path + ": cannot create the file (is the folder writable?)");
    return;
  }
  if (!std::filesystem::exists(path)) throw Error(path + ": no such file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 <= 0) throw Error(path + ": not an HDF5 file (or unreadable)");
  file_ = H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (file_ < 0) throw Error(path + ": cannot open the HDF5 file (truncated or corrupted?)");
}

File::~File() {
  if (file_ >= 0) H5Fclose(file_);
}

void File::close() {
  if (file_ < 0) return;
  const herr_t rc = H5Fclose(file_);
  file_ = -1;
  if (rc < 0) throw Error(path_ + ": closing the file failed (disk full?)");
}

void File::fail(const std::string& object, const std::string& what) const {
  throw Error(path_ + ": " + object + ": " + what);
}

bool File::exists(const std::string& object) const {
  if (object == "/") return true;
  // H5Lexists fails when an intermediate group is missing, so walk the path link by link.
  std::string prefix;
  size_t start = object.front() == '/' ? 1 : 0;
  while (start <= object.size()) {
    const size_t end = std::min(object.find('/', start), object.size());
    prefix += "/" + object.substr(start, end - start);
    if (H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

std::vector<std::string> File::members(const std::string& group) const {
  if (!exists(group)) fail(group, "no such group");
  Handle g(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) fail(group, "is not a group");
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) fail(group, "cannot list the group");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail(group, "cannot read member names");
    std::string name(static_cast<size_t>(len), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

int64_t File::open_dataset(const std::string& dataset, int type_class) const {
  if (!exists(dataset)) fail(dataset, "missing");
  const hid_t d = H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT);
  if (d < 0) fail(dataset, "is not a dataset");
  Handle type(H5Dget_type(d), H5Tclose);
  if (H5Tget_class(type.get()) != static_cast<H5T_class_t>(type_class)) {
    H5Dclose(d);
    fail(dataset, type_class == H5T_FLOAT ? "must hold floating-point numbers" : "must hold integers");
  }
  return d;
}

Dims File::dims(const std::string& dataset) const {
  if (!exists(dataset)) fail(dataset, "missing");
  Handle d(H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) fail(dataset, "is not a dataset");
  Handle space(H5Dget_space(d.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(dataset, "has no simple shape");
  std::vector<hsize_t> h(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), h.data(), nullptr);
  return Dims(h.begin(), h.end());
}

template <class T>
static std::vector<T> read_as(const File& f, hid_t dataset, hid_t mem_type, const std::string& name, Dims* out_dims) {
  Handle d(dataset, H5Dclose);
  const Dims shape = f.dims(name);
  // Shapes come from the file: a damaged header must not make us allocate terabytes.
  int64_t n = 1;
  for (int64_t v : shape) {
    if (v < 0 || (v > 0 && n > (int64_t{1} << 34) / v)) throw Error(f.path() + ": " + name + ": implausible shape");
    n *= v;
  }
  Handle plist(H5Dget_create_plist(d.get()), H5Pclose);
  Handle file_type(H5Dget_type(d.get()), H5Tclose);
  if (plist.ok() && file_type.ok() && H5Pget_layout(plist.get()) == H5D_CONTIGUOUS && n > 0 &&
      H5Dget_storage_size(d.get()) < static_cast<hsize_t>(n) * H5Tget_size(file_type.get()))
    throw Error(f.path() + ": " + name + ": holds less data than its shape says (truncated file?)");
  std::vector<T> values(static_cast<size_t>(count(shape)));
  if (!values.empty() && H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
    throw Error(f.path() + ": " + name + ": cannot read the data (truncated or corrupted file?)");
  if (out_dims) *out_dims = shape;
  return values;
}

std::vector<float> File::read_floats(const std::string& dataset, Dims* out_dims) const {
  return read_as<float>(*this, open_dataset(dataset, H5T_FLOAT), H5T_NATIVE_FLOAT, dataset, out_dims);
}

std::vector<double> File::read_doubles(const std::string& dataset, Dims* out_dims) const {
  return read_as<double>(*this, open_dataset(dataset, H5T_FLOAT), H5T_NATIVE_DOUBLE, dataset, out_dims);
}

std::vector<int32_t> File::read_ints(const std::string& dataset, Dims* out_dims) const {
  return read_as<int32_t>(*this, open_dataset(dataset, H5T_INTEGER), H5T_NATIVE_INT32, dataset, out_dims);
}

std::vector<int64_t> File::read_int64s(const std::string& dataset, Dims* out_dims) const {
  return read_as<int64_t>(*this, open_dataset(dataset, H5T_INTEGER), H5T_NATIVE_INT64, dataset, out_dims);
}

std::vector<uint64_t> File::read_uint64s(const std::string& dataset, Dims* out_dims) const {
  return read_as<uint64_t>(*this, open_dataset(dataset, H5T_INTEGER), H5T_NATIVE_UINT64, dataset, out_dims);
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  return exists(object) && H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

void File::flush() {
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) throw Error(path_ + ": flush failed (disk full?)");
}

double File::read_scalar(const std::string& dataset) const {
  Dims d;
  std::vector<double> v = read_as<double>(*this, open_dataset(dataset, H5T_FLOAT), H5T_NATIVE_DOUBLE, dataset, &d);
  if (v.size() != 1) fail(dataset, "must hold one value, has shape " + dims_str(d));
  return v[0];
}

std::string File::read_string_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) fail(object, "missing");
  if (H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) <= 0)
    fail(object, "has no attribute '" + name + "'");
  Handle attr(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) fail(object, "attribute '" + name + "' is not a string");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) fail(object, "attribute '" + name + "' must be one string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* text = nullptr;
    if (H5Aread(attr.get(), mem.get(), &text) < 0 || !text) fail(object, "cannot read attribute '" + name + "'");
    std::string out(text);
    H5free_memory(text);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  std::string out(size, '\0');
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.get(), size);
  if (H5Aread(attr.get(), mem.get(), out.data()) < 0) fail(object, "cannot read attribute '" + name + "'");
  return out.substr(0, out.find('\0'));
}

void File::make_groups(const std::string& object) {
  size_t pos = 1;
  while ((pos = object.find('/', pos)) != std::string::npos) {
    const std::string group = object.substr(0, pos);
    if (H5Lexists(file_, group.c_str(), H5P_DEFAULT) <= 0) {
      Handle g(H5Gcreate2(file_, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      if (!g.ok()) fail(group, "cannot create the group");
    }
    ++pos;
  }
}

void File::write(const std::string& dataset, const void* data, size_t values, int64_t mem_type, int64_t file_type,
                 const Dims& dims) {
  if (static_cast<int64_t>(values) != count(dims)) fail(dataset, "value count does not match " + dims_str(dims));
  if (exists(dataset)) {
    if (this->dims(dataset) != dims)
      fail(dataset, "exists with shape " + dims_str(this->dims(dataset)) + ", cannot write " + dims_str(dims));
    Handle d(H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
    if (H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail(dataset, "write failed");
    return;
  }
  make_groups(dataset);
  std::vector<hsize_t> h(dims.begin(), dims.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(h.size()), h.data(), nullptr),
               H5Sclose);
  Handle d(H5Dcreate2(file_, dataset.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!d.ok()) fail(dataset, "cannot create the dataset");
  if (count(dims) > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(dataset, "write failed");
}

void File::write_floats(const std::string& dataset, const std::vector<float>& values, const Dims& dims) {
  write(dataset, values.data(), values.size(), H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, dims);
}

void File::write_doubles(const std::string& dataset, const std::vector<double>& values, const Dims& dims) {
  write(dataset, values.data(), values.size(), H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, dims);
}

void File::write_ints(const std::string& dataset, const std::vector<int32_t>& values, const Dims& dims) {
  write(dataset, values.data(), values.size(), H5T_NATIVE_INT32, H5T_STD_I32LE, dims);
}

void File::write_int64s(const std::string& dataset, const std::vector<int64_t>& values, const Dims& dims) {
  write(dataset, values.data(), values.size(), H5T_NATIVE_INT64, H5T_STD_I64LE, dims);
}

void File::write_uint64s(const std::string& dataset, const std::vector<uint64_t>& values, const Dims& dims) {
  write(dataset, values.data(), values.size(), H5T_NATIVE_UINT64, H5T_STD_U64LE, dims);
}

void File::write_string_attribute(const std::string& object, const std::string& name, const std::string& value) {
  if (object != "/" && !exists(object)) fail(object, "missing");
  if (H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0)
    H5Adelete_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate_by_name(file_, object.c_str(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT),
              H5Aclose);
  const char* text = value.c_str();
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), &text) < 0) fail(object, "cannot write attribute '" + name + "'");
}

}  // namespace h5
