// Parameters on another device than the activations are refused before any kernel runs. A CPU
// build cannot hold CUDA memory, so a CPU tensor is tagged as cuda:0 for the check (the ops only
// compare devices before reading data) and tagged back before it is freed.
#include <catch2/catch.hpp>
#include <functional>
#include <stdexcept>
#include <string>

#include "tests/support/gradcheck.h"

using namespace engine;

namespace {
// Holds t's storage as claiming `device` for the object's lifetime; the storage goes back to
// the CPU allocator that owns it on destruction.
class DeviceTag {
 public:
  DeviceTag(const Tensor& t, Device device) : t_(t) { t_.storage()->device = device; }
  ~DeviceTag() { t_.storage()->device = Device::cpu(); }
  DeviceTag(const DeviceTag&) = delete;
  DeviceTag& operator=(const DeviceTag&) = delete;

 private:
  Tensor t_;
};

void check_refused(const std::function<void()>& call, const std::string& needle) {
  try {
    call();
    FAIL("the call was not refused");
  } catch (const std::invalid_argument& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("linear refuses a weight or bias on another device than its input", "[matmul][device]") {
  Generator gen(1);
  const Tensor x = randn({3, 4}, gen), w = randn({5, 4}, gen), b = randn({5}, gen);
  {
    DeviceTag tag(b, Device::cuda());
    check_refused([&] { linear(x, w, b); }, "must be on the input's device");
  }
  {
    DeviceTag tag(w, Device::cuda());
    check_refused([&] { linear(x, w, b); }, "must be on the input's device");
    check_refused([&] { linear(x, w, Tensor()); }, "must be on the input's device");
  }
  {
    DeviceTag tag(x, Device::cuda());
    check_refused([&] { linear(x, w, b); }, "cuda:0");
  }
  CHECK(linear(x, w, b).shape() == Shape{3, 5});  // untagged, the same call runs
}

TEST_CASE("layernorm and rmsnorm refuse a scale or shift on another device than the input", "[norm][device]") {
  Generator gen(2);
  const Tensor x = randn({3, 6}, gen), gamma = randn({6}, gen), beta = randn({6}, gen);
  {
    DeviceTag tag(gamma, Device::cuda());
    check_refused([&] { layernorm(x, gamma, beta); }, "must be on the input's device");
    check_refused([&] { rmsnorm(x, gamma); }, "must be on the input's device");
  }
  {
    DeviceTag tag(beta, Device::cuda());
    check_refused([&] { layernorm(x, gamma, beta); }, "must be on the input's device");
  }
  CHECK(layernorm(x, gamma, beta).shape() == Shape{3, 6});
}
