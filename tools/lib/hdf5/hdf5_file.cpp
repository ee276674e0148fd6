#include "tools/lib/hdf5/hdf5_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "tools/lib/fileio/fileio.h"

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
  // Closes now and returns HDF5's status: closing a dataset writes what its buffers still hold.
  herr_t close() {
    const hid_t id = id_;
    id_ = -1;
    return id >= 0 ? close_(id) : 0;
  }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints its error stack by default; this layer reports errors itself.
//
// It also skips HDF5's exit-time cleanup (H5dont_atexit, before the library starts): that
// cleanup closes every file still open, and a file whose close failed (its last flush hit a
// write error) stays registered half torn down in HDF5 1.10, so closing it again crashes. Every
// file this layer opens is closed by its File, so the cleanup has nothing else to do.
void silence_hdf5() {
  static const bool done = [] {
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// The system's reason behind the HDF5 call that just failed, as ": No space left on device",
// or "" when the failure did not come from the operating system. HDF5 does not return errno;
// its file driver writes it into the error stack ("errno = 28, error message = ..."), which
// stays readable until the next HDF5 call.
std::string system_reason() {
  int err = 0;
  auto visit = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    const char* at = e->desc ? std::strstr(e->desc, "errno = ") : nullptr;
    if (at) *static_cast<int*>(data) = std::atoi(at + 8);
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, visit, &err);
  return err > 0 ? ": " + fileio::reason(err) : "";
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
    if (file_ < 0) {
      const std::string why = system_reason();
      throw Error(path + ": cannot create the file" + (why.empty() ? " (is the folder writable?)" : why));
    }
    writable_ = true;
    fd_ = find_descriptor();
    return;
  }
  const std::string unreadable = fileio::unreadable_reason(path);
  if (!unreadable.empty()) throw Error(path + ": " + unreadable + (unreadable == "is a directory" ? ", not a file" : ""));
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 <= 0) throw Error(path + ": not an HDF5 file (or unreadable)");
  file_ = H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (file_ < 0) throw Error(path + ": cannot open the HDF5 file (truncated or corrupted?)");
  writable_ = mode == Mode::read_write;
  if (writable_) fd_ = find_descriptor();
}

File::~File() {
  if (file_ < 0) return;
  if (broken_) {
    discard();
  } else {
    H5Fclose(file_);
  }
}

// The descriptor of HDF5's default (sec2) file driver, or -1 under any other driver.
int File::find_descriptor() const {
  Handle fapl(H5Fget_access_plist(file_), H5Pclose);
  void* handle = nullptr;
  if (!fapl.ok() || H5Pget_driver(fapl.get()) != H5FD_SEC2 || H5Fget_vfd_handle(file_, fapl.get(), &handle) < 0 ||
      !handle)
    return -1;
  return *static_cast<int*>(handle);
}

// HDF5 1.10 does not survive a failed metadata write: after a failed flush its metadata cache
// is inconsistent and the file can never be closed, and a dataset whose creation failed (the
// cache, making room, could not write out older entries) stays registered, holding the file
// open. Metadata only goes to addresses HDF5 has already allocated (below its end-of-allocation
// address), so before each write and before the flush the file is given disk blocks up to that
// address: a full disk is then reported here, with the system's reason, and HDF5's own writes
// of metadata cannot fail for want of room. Returns 0, or the errno of a failed reservation.
int File::reserve() {
#if defined(__linux__) && H5_VERSION_GE(1, 10, 2)  // fallocate; H5Fget_eoa (absolute: the user block included)
  haddr_t eoa = 0;
  if (!writable_ || fd_ < 0 || H5Fget_eoa(file_, &eoa) < 0 || eoa <= reserved_) return 0;
  // KEEP_SIZE: the file's length stays what HDF5 makes it; only the blocks are set aside.
  if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(reserved_), static_cast<off_t>(eoa - reserved_)) == 0) {
    reserved_ = eoa;
    return 0;
  }
  const int err = errno;
  if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) {  // a filesystem that cannot reserve: write anyway
    fd_ = -1;
    return 0;
  }
  broken_ = true;
  return err;
#else
  return 0;
#endif
}

// Closing flushes HDF5's cached metadata, which on a full disk would fail again and leave the
// file half closed. So the file's descriptor is first pointed at an anonymous in-memory file
// (dup2 closes the real one): HDF5's last writes succeed there and vanish, and the caller
// removes what was written before.
void File::discard() {
  if (file_ < 0) return;
  const int fd = fd_ >= 0 ? fd_ : find_descriptor();
  if (fd >= 0) {
#ifdef __linux__
    const int sink = memfd_create("moe-engine-discarded-hdf5", MFD_CLOEXEC);
#else
    char name[] = "/tmp/moe-engine-discarded-XXXXXX";
    const int sink = mkstemp(name);
    if (sink >= 0) ::unlink(name);
#endif
    if (sink >= 0) {
      ::dup2(sink, fd);
      ::close(sink);
    }
  }
  H5Fclose(file_);
  file_ = -1;
}

void File::close() {
  if (file_ < 0) return;
  if (broken_) {
    discard();
    throw Error(path_ + ": closed without finishing it: an earlier write failed");
  }
  if (const int err = reserve()) {
    discard();
    throw Error(path_ + ": no room to finish the file: " + fileio::reason(err));
  }
  const herr_t rc = H5Fclose(file_);
  file_ = -1;
  if (rc < 0) throw Error(path_ + ": closing the file failed" + system_reason());
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

std::string File::element_type(const std::string& dataset) const {
  if (!exists(dataset)) fail(dataset, "missing");
  Handle d(H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) fail(dataset, "is not a dataset");
  Handle type(H5Dget_type(d.get()), H5Tclose);
  const std::string bits = std::to_string(8 * H5Tget_size(type.get()));
  switch (H5Tget_class(type.get())) {
    case H5T_FLOAT:
      return "float" + bits;
    case H5T_INTEGER:
      return (H5Tget_sign(type.get()) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_STRING:
      return "string";
    default:
      return "another type";
  }
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
  if (broken_) fail("/", "cannot flush: an earlier write failed");
  if (const int err = reserve()) throw Error(path_ + ": no room to finish the file: " + fileio::reason(err));
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) {
    broken_ = true;
    fail("/", "flush failed" + system_reason());
  }
}

// Marks the file broken (only discard() may close it) and throws "write failed" with the reason.
void File::write_failed(const std::string& object, const std::string& what) {
  const std::string why = system_reason();
  broken_ = true;
  fail(object, what + why);
}

// Before a write: room for what HDF5 may write out while doing it (see reserve), or the test
// hook (fileio::injected_failure) failing it as on a full disk.
void File::prepare_write(const std::string& object) {
  int err = reserve();
  if (!err && fileio::injected_failure(path_)) err = ENOSPC;
  if (!err) return;
  broken_ = true;
  fail(object, "write failed: " + fileio::reason(err));
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
      if (!g.ok()) write_failed(group, "cannot create the group");
    }
    ++pos;
  }
}

void File::write(const std::string& dataset, const void* data, size_t values, int64_t mem_type, int64_t file_type,
                 const Dims& dims) {
  if (static_cast<int64_t>(values) != count(dims)) fail(dataset, "value count does not match " + dims_str(dims));
  prepare_write(dataset);
  if (exists(dataset)) {
    if (this->dims(dataset) != dims)
      fail(dataset, "exists with shape " + dims_str(this->dims(dataset)) + ", cannot write " + dims_str(dims));
    Handle d(H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), H5Dclose);
    if (H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) write_failed(dataset, "write failed");
    if (d.close() < 0) write_failed(dataset, "write failed");
    return;
  }
  make_groups(dataset);
  std::vector<hsize_t> h(dims.begin(), dims.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(h.size()), h.data(), nullptr),
               H5Sclose);
  Handle d(H5Dcreate2(file_, dataset.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!d.ok()) write_failed(dataset, "cannot create the dataset");
  if (count(dims) > 0 && H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    write_failed(dataset, "write failed");
  // A small dataset's values wait in HDF5's buffer until the dataset closes: that write is checked too.
  if (d.close() < 0) write_failed(dataset, "write failed");
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
  prepare_write(object);
  if (H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0 &&
      H5Adelete_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) < 0)
    write_failed(object, "cannot replace attribute '" + name + "'");
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate_by_name(file_, object.c_str(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT),
              H5Aclose);
  const char* text = value.c_str();
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), &text) < 0 || attr.close() < 0)
    write_failed(object, "cannot write attribute '" + name + "'");
}

}  // namespace h5
