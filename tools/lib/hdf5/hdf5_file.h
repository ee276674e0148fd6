// A small typed layer over the HDF5 C library for the engine's files (reference files now,
// checkpoints later). Objects are named by absolute paths ("/expected/grads/tok_embedding.weight").
//
// Contract: every failure throws h5::Error with a message "FILE: /OBJECT: what is wrong", never
// an HDF5 error stack on stderr and never a crash: a missing object, a dataset of the wrong
// class (float vs integer), an unreadable or non-HDF5 file, a directory or an empty file, a
// failed write (with the system's reason: "write failed: No space left on device"). Reads
// convert from any stored float (or integer) width to the requested one, as h5py writes
// float32 or float64.
//
// Writing: after a failed write the file is broken; its File only discards it (closes it
// without the data reaching the disk; the caller deletes it). Each write, flush() and close()
// first reserve disk space for the metadata HDF5 may write out, so a full disk is reported by
// this layer while the file can still be closed (HDF5 1.10 cannot close a file after a failed
// metadata write).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace h5 {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Dims = std::vector<int64_t>;

class File {
 public:
  enum class Mode { read, read_write, create };  // create truncates an existing file
  // userblock_bytes (create only; 0 or a power of two >= 512): room HDF5 leaves untouched at
  // the start of the file, for a header of the caller's own.
  File(const std::string& path, Mode mode, uint64_t userblock_bytes = 0);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  bool exists(const std::string& object) const;                      // any link along the path may be missing
  std::vector<std::string> members(const std::string& group) const;  // names, sorted
  Dims dims(const std::string& dataset) const;                       // {} for a scalar
  // How the file stores a dataset's elements, in numpy's words: "float32", "float64", "int64",
  // "uint64", "string", or "another type". The readers convert; this tells what was stored.
  std::string element_type(const std::string& dataset) const;

  std::vector<float> read_floats(const std::string& dataset, Dims* dims = nullptr) const;
  std::vector<double> read_doubles(const std::string& dataset, Dims* dims = nullptr) const;
  std::vector<int32_t> read_ints(const std::string& dataset, Dims* dims = nullptr) const;
  std::vector<int64_t> read_int64s(const std::string& dataset, Dims* dims = nullptr) const;
  std::vector<uint64_t> read_uint64s(const std::string& dataset, Dims* dims = nullptr) const;
  double read_scalar(const std::string& dataset) const;  // a float dataset holding one value
  std::string read_string_attribute(const std::string& object, const std::string& name) const;
  bool has_attribute(const std::string& object, const std::string& name) const;

  // Writes create missing groups along the path; an existing dataset of the same shape is
  // overwritten in place, one of another shape is an error.
  void write_floats(const std::string& dataset, const std::vector<float>& values, const Dims& dims);
  void write_doubles(const std::string& dataset, const std::vector<double>& values, const Dims& dims);
  void write_ints(const std::string& dataset, const std::vector<int32_t>& values, const Dims& dims);
  void write_int64s(const std::string& dataset, const std::vector<int64_t>& values, const Dims& dims);
  void write_uint64s(const std::string& dataset, const std::vector<uint64_t>& values, const Dims& dims);
  void flush();    // pushes HDF5's buffers to the operating system (not to the disk: fsync the closed file)
  void close();    // closes now and throws if HDF5 could not write everything out; the destructor cannot
  void discard();  // closes without finishing a file that will be deleted; never throws
  bool broken() const { return broken_; }  // a write failed: only discard() remains
  void write_string_attribute(const std::string& object, const std::string& name, const std::string& value);

 private:
  [[noreturn]] void fail(const std::string& object, const std::string& what) const;
  int64_t open_dataset(const std::string& dataset, int type_class) const;  // an hid_t; checks the class
  // Checks that `values` elements fill `dims`, then writes (see the public writers).
  void write(const std::string& dataset, const void* data, size_t values, int64_t mem_type, int64_t file_type,
             const Dims& dims);
  void make_groups(const std::string& object);
  [[noreturn]] void write_failed(const std::string& object, const std::string& what);
  void prepare_write(const std::string& object);
  int find_descriptor() const;
  int reserve();

  std::string path_;
  int64_t file_ = -1;      // hid_t
  int fd_ = -1;            // HDF5's descriptor of a file open for writing (-1: unknown, or no reserving)
  uint64_t reserved_ = 0;  // bytes from the start given disk blocks by reserve()
  bool writable_ = false, broken_ = false;
};

}  // namespace h5
