// Sealing a checkpoint edited on purpose (tools/lib/assemble/seal.h): an edit made through the
// HDF5 API, as h5py makes it, is refused by every reader until sealed, then loads, diagnoses and
// resumes; an edit that would not load is refused naming the tensor, with nothing written; an
// unedited file is left byte for byte as it was.
#include <hdf5.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "tests/tools/small_run.h"
#include "tools/lib/assemble/seal.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/diagnose/diagnose.h"
#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/trainer.h"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("seal_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

// A checkpoint of the tools tests' small run after 3 steps, and the folder it is in.
std::string trained_checkpoint(const fs::path& dir) {
  std::ostringstream quiet;
  train::Trainer t(runtest::small_run(dir), quiet);
  for (int s = 0; s < 3; ++s) t.step();
  return t.save_checkpoint();
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string copy_of(const std::string& from, const fs::path& to) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  return to.string();
}

// What h5py's `del f[name]` does: the link goes (the tests need it to replace a dataset by one
// of another shape or type, which h5::File refuses to do on purpose).
void delete_object(const std::string& path, const std::string& object) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  const herr_t rc = H5Ldelete(f, object.c_str(), H5P_DEFAULT);
  H5Fclose(f);
  REQUIRE(rc >= 0);
}

const ckpt::NamedArray& named(const std::vector<ckpt::NamedArray>& arrays, const std::string& name) {
  for (const ckpt::NamedArray& a : arrays)
    if (a.name == name) return a;
  FAIL("no tensor " << name);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("seal: an edit through HDF5 is refused until sealed and then loads and diagnoses and resumes", "[seal]") {
  const fs::path dir = fresh_dir("edit");
  const std::string original = trained_checkpoint(dir / "run");
  const std::string edited = copy_of(original, dir / "edited.h5");
  const std::string router = "/model/layers.1.moe.router.weight", norm = "/model/layers.1.norm2.bias";
  {
    // Block 1's router sees norm2(x) = gain * x_hat + bias: a large bias along one feature, and
    // that feature in expert 3's router row, lift expert 3's logit for every token.
    h5::File f(edited, h5::File::Mode::read_write);
    h5::Dims dims;
    std::vector<float> w = f.read_floats(router, &dims);
    w[3 * dims[1] + 0] += 10.0f;
    f.write_floats(router, w, dims);
    std::vector<float> b = f.read_floats(norm, &dims);
    b[0] = 3.0f;
    f.write_floats(norm, b, dims);
  }
  CHECK_THROWS_WITH(ckpt::read_checkpoint(edited), Contains(edited + ": corrupted checkpoint"));
  const std::string edited_bytes = bytes_of(edited);

  const std::string sealed = (dir / "sealed.h5").string();
  const assemble::SealResult r = assemble::seal_checkpoint(edited, sealed);
  CHECK_FALSE(r.found.header);
  CHECK_FALSE(r.found.checksum);
  CHECK(r.wrote);
  CHECK(r.tensors > 3 * 10);
  CHECK(bytes_of(edited) == edited_bytes);  // the edited file stays as it was
  CHECK_FALSE(fs::exists(sealed + ".tmp"));

  // The sealed file holds the edit and nothing else changed.
  const ckpt::Checkpoint before = ckpt::read_checkpoint(original), after = ckpt::read_checkpoint(sealed);
  REQUIRE(after.params.size() == before.params.size());
  for (size_t i = 0; i < before.params.size(); ++i) {
    const std::string& name = before.params[i].name;
    INFO(name);
    if ("/model/" + name == router || "/model/" + name == norm)
      CHECK(after.params[i].values != before.params[i].values);
    else
      CHECK(after.params[i].values == before.params[i].values);
    CHECK(after.adam_m[i].values == before.adam_m[i].values);
  }
  const std::vector<float>& w = named(after.params, "layers.1.moe.router.weight").values;
  const int64_t d = named(after.params, "layers.1.moe.router.weight").shape[1];
  CHECK(w[3 * d] == named(before.params, "layers.1.moe.router.weight").values[3 * d] + 10.0f);
  CHECK(after.metrics.expert_counts == before.metrics.expert_counts);
  CHECK(after.step == before.step);

  SECTION("diagnosed: the edited layer favours expert 3 and the other layer is as before") {
    diagnose::Options o;
    o.batches = 2;
    const diagnose::Result a = diagnose::run(original, o), b = diagnose::run(sealed, o);
    REQUIRE(b.layers.size() == 2);
    CHECK(b.layers[0].stats.counts == a.layers[0].stats.counts);
    CHECK(b.layers[1].stats.busiest[0] == 3);
    CHECK(b.layers[1].stats.share[3] > 0.45);  // top-1 of nearly every token, k = 2
    CHECK(b.layers[1].verdict.verdict != collapse::Verdict::healthy);
  }
  SECTION("resumed: training continues from the edited weights") {
    std::ostringstream quiet;
    train::Trainer t(runtest::small_run(dir / "resumed"), quiet);
    t.resume(sealed);
    CHECK(t.steps_done() == 3);
    CHECK(t.model().params().get("layers.1.moe.router.weight").to_float_vector() == w);
    CHECK(std::isfinite(t.step().loss));
  }
  SECTION("sealed in place when asked") {
    const assemble::SealResult in_place = assemble::seal_checkpoint(edited, edited);
    CHECK(in_place.wrote);
    CHECK(ckpt::read_checkpoint(edited).params.size() == before.params.size());
    CHECK_FALSE(fs::exists(edited + ".tmp"));
  }
}

TEST_CASE("seal: an edit that would not load is refused naming the tensor and nothing is written", "[seal][errors]") {
  const fs::path dir = fresh_dir("refuse");
  const std::string original = trained_checkpoint(dir / "run");
  const std::string p = copy_of(original, dir / "bad.h5"), out = (dir / "out.h5").string();
  const std::string qkv = "/model/layers.0.attn.qkv.weight";
  std::string expected;
  SECTION("a shape broken") {
    const std::vector<float> w = h5::File(p, h5::File::Mode::read).read_floats(qkv);
    delete_object(p, qkv);
    h5::File(p, h5::File::Mode::read_write).write_floats(qkv, w, {static_cast<int64_t>(w.size())});
    expected = qkv + ": has shape";
  }
  SECTION("a NaN added") {
    h5::File f(p, h5::File::Mode::read_write);
    h5::Dims dims;
    std::vector<float> w = f.read_floats(qkv, &dims);
    w[1 * dims[1] + 2] = std::numeric_limits<float>::quiet_NaN();
    f.write_floats(qkv, w, dims);
    expected = qkv + ": holds NaN at [1, 2]";
  }
  SECTION("a tensor deleted") {
    delete_object(p, qkv);
    expected = qkv + ": missing";
  }
  SECTION("an optimizer entry deleted") {
    delete_object(p, "/optimizer/m/layers.0.attn.qkv.weight");
    expected =
        "/optimizer/m/layers.0.attn.qkv.weight: missing (AdamW's first moment of /model/layers.0.attn.qkv.weight)";
  }
  SECTION("a tensor stored as float64") {
    h5::Dims dims;
    const std::vector<float> w = h5::File(p, h5::File::Mode::read).read_floats(qkv, &dims);
    delete_object(p, qkv);
    h5::File(p, h5::File::Mode::read_write).write_doubles(qkv, std::vector<double>(w.begin(), w.end()), dims);
    expected = qkv + ": stored as float64";
  }
  SECTION("a second moment made negative") {
    const std::string v = "/optimizer/v/layers.0.norm1.weight";
    h5::File f(p, h5::File::Mode::read_write);
    h5::Dims dims;
    std::vector<float> values = f.read_floats(v, &dims);
    values[4] = -1.0f;
    f.write_floats(v, values, dims);
    expected = v + ": holds -1 at [4]";
  }
  SECTION("a router bias deleted") {
    delete_object(p, "/router/1");
    expected = "/router/1/bias: missing (block 1 is a MoE layer of 4 experts)";
  }
  SECTION("a tensor the model does not have") {
    h5::File(p, h5::File::Mode::read_write).write_floats("/model/layers.0.extra", {1.0f}, {1});
    expected = "/model/layers.0.extra: not a parameter of the model built from its config";
  }
  SECTION("a generator's state deleted (a resume restores it)") {
    delete_object(p, "/state/rng/dropout");
    expected = "/state/rng/dropout: missing";
  }
  const std::string bad_bytes = bytes_of(p);
  CHECK_THROWS_WITH(assemble::seal_checkpoint(p, out), Contains(p + ": " + expected));
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(out + ".tmp"));
  CHECK_THROWS_WITH(assemble::seal_checkpoint(p, p), Contains(p + ": " + expected));
  CHECK(bytes_of(p) == bad_bytes);
  CHECK_FALSE(fs::exists(p + ".tmp"));
}

TEST_CASE("seal: an undamaged checkpoint is left byte for byte the same", "[seal]") {
  const fs::path dir = fresh_dir("same");
  const std::string original = trained_checkpoint(dir / "run");
  const std::string bytes = bytes_of(original);
  const auto mtime = fs::last_write_time(original);
  const assemble::SealResult in_place = assemble::seal_checkpoint(original, original);
  CHECK(in_place.found.header);
  CHECK(in_place.found.checksum);
  CHECK_FALSE(in_place.wrote);
  CHECK(bytes_of(original) == bytes);
  CHECK(fs::last_write_time(original) == mtime);  // not even rewritten with the same bytes

  const std::string copy = (dir / "copy.h5").string();
  const assemble::SealResult elsewhere = assemble::seal_checkpoint(original, copy);
  CHECK(elsewhere.wrote);
  CHECK(bytes_of(copy) == bytes);
  CHECK(in_place.tensors == elsewhere.tensors);

  // A sealed edit sealed again is unchanged too.
  {
    h5::File f(copy, h5::File::Mode::read_write);
    std::vector<float> b = f.read_floats("/router/0/bias");
    b[1] += 0.25f;
    f.write_floats("/router/0/bias", b, {static_cast<int64_t>(b.size())});
  }
  assemble::seal_checkpoint(copy, copy);
  const std::string sealed_bytes = bytes_of(copy);
  CHECK(sealed_bytes != bytes);
  CHECK_FALSE(assemble::seal_checkpoint(copy, copy).wrote);
  CHECK(bytes_of(copy) == sealed_bytes);
  CHECK(ckpt::read_checkpoint(copy).router_bias.at(0)[1] ==
        ckpt::read_checkpoint(original).router_bias.at(0)[1] + 0.25f);
}
