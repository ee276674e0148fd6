// Tensors: creation, views vs copies, element types, the caching allocator, device errors.
#include <catch2/catch.hpp>
#include <new>
#include <set>
#include <stdexcept>
#include <string>

#include "tests/support/gradcheck.h"

using namespace engine;

TEST_CASE("tensor creation, shape queries and read-back", "[tensor]") {
  Tensor t = Tensor::full({2, 3}, 1.5);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.dtype() == DType::f32);
  CHECK(t.device().is_cpu());
  CHECK(t.is_contiguous());
  CHECK(t.size(-1) == 3);
  CHECK(t.to_vector() == std::vector<double>(6, 1.5));
  CHECK(Tensor::zeros({0, 4}).numel() == 0);
  CHECK_THROWS_WITH(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}),
                    Catch::Contains("3 values do not fill shape (2, 2)"));
  CHECK_THROWS_WITH(t.size(2), Catch::Contains("axis 2 out of range"));
  CHECK_THROWS_WITH(t.data<double>(), Catch::Contains("tensor is f32, asked for f64"));
  CHECK_THROWS_WITH(t.item(), Catch::Contains("more than one element"));
}

TEST_CASE("views share storage, contiguous() copies only when needed", "[tensor][shape]") {
  Tensor a = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor r = a.reshape({3, 2});
  CHECK(r.same_storage(a));
  Tensor t = transpose(a, 0, 1);
  CHECK(t.same_storage(a));
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor c = t.contiguous();
  CHECK_FALSE(c.same_storage(a));
  CHECK(c.is_contiguous());
  CHECK(a.contiguous().same_storage(a));
  Tensor s = slice(a, 1, 1, 3);
  CHECK(s.same_storage(a));
  CHECK(s.to_vector() == std::vector<double>{1, 2, 4, 5});
  // Writing through a view is visible in the base.
  Tensor window = slice(a, 0, 1, 2);
  copy_into(Tensor::full({1, 3}, 9.0), window);
  CHECK(a.to_vector() == std::vector<double>{0, 1, 2, 9, 9, 9});
}

TEST_CASE("casts between element types", "[tensor][cast]") {
  Tensor a = Tensor::from_vector(std::vector<float>{1.5f, -2.0f}, {2});
  CHECK(a.to(DType::f64).dtype() == DType::f64);
  CHECK(a.to(DType::f64).to_vector() == std::vector<double>{1.5, -2.0});
  CHECK(a.to(DType::i32).to_int_vector() == std::vector<int32_t>{1, -2});
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return cast(cast(in[0], DType::f32), DType::f64); },
                    std::vector<Tensor>({engine::testing::random_tensor({3}, 1)}),
                    engine::testing::GradCheckOptions{1e-3, 1e-4, 1e-3});
}

TEST_CASE("caching allocator reuses freed blocks and counts bytes", "[allocator]") {
  CachingAllocator& alloc = allocator_for(Device::cpu());
  alloc.release_cached();
  const MemoryStats before = alloc.stats();
  { Tensor warm = Tensor::empty({1000, 100}); }
  const size_t raw_after_warmup = alloc.stats().raw_allocations;
  for (int step = 0; step < 10; ++step) {
    Tensor t = Tensor::empty({1000, 100});
    CHECK(alloc.stats().bytes_in_use >= before.bytes_in_use + 400000);
  }
  CHECK(alloc.stats().raw_allocations == raw_after_warmup);  // no new malloc after warm-up
  CHECK(alloc.stats().reuses >= before.reuses + 10);
  CHECK(alloc.stats().bytes_in_use == before.bytes_in_use);
  CHECK(alloc.stats().peak_bytes >= before.bytes_in_use + 400000);
  alloc.release_cached();
  CHECK(alloc.stats().bytes_cached == 0);
}

TEST_CASE("allocator size classes bound the waste", "[allocator]") {
  for (size_t bytes : {1ul, 511ul, 513ul, 4096ul, (1ul << 20) + 1, 3000000ul, 123456789ul}) {
    const size_t r = CachingAllocator::round_size(bytes);
    CHECK(r >= bytes);
    CHECK(static_cast<double>(r) <= bytes * 1.125 + 512);
  }
  // An expert's activations for 400..600 rows of 256 floats: 201 sizes, six classes (512 B steps
  // would have made 201 classes, one cached block per row count).
  std::set<size_t> classes;
  for (size_t rows = 400; rows <= 600; ++rows) classes.insert(CachingAllocator::round_size(rows * 256 * 4));
  CHECK(classes.size() <= 6);
}

namespace {
// Raw functions standing in for cudaMalloc: one device that is always full, one whose calls
// fail for another reason (a sticky kernel fault comes back from cudaMalloc like this).
int full_device_calls = 0;
void* full_device_alloc(size_t) {
  ++full_device_calls;
  return nullptr;
}
void* faulted_device_alloc(size_t) { throw std::runtime_error("CUDA error at runtime.cu:1: an illegal memory access"); }
void ignore_free(void*) {}
}  // namespace

TEST_CASE("allocator reports out of memory with the bytes and device and passes other faults through", "[allocator]") {
  CachingAllocator full(full_device_alloc, ignore_free, Device::cuda(1));
  size_t rounded = 0;
  full_device_calls = 0;
  try {
    full.allocate(3000, &rounded);
    FAIL("no exception");
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("out of memory on cuda:1") != std::string::npos);
    CHECK(what.find("asked for 3000 bytes") != std::string::npos);
    CHECK(what.find("in use by tensors") != std::string::npos);
  }
  CHECK(full_device_calls == 2);                                 // retried once after releasing the cache
  CHECK_THROWS_AS(full.allocate(10, &rounded), std::bad_alloc);  // old handlers still catch it

  CachingAllocator faulted(faulted_device_alloc, ignore_free, Device::cuda(0));
  try {
    faulted.allocate(10, &rounded);
    FAIL("no exception");
  } catch (const std::bad_alloc&) {
    FAIL("a fault was reported as out of memory");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("illegal memory access") != std::string::npos);
  }
  CHECK(faulted.stats().bytes_in_use == 0);
}

TEST_CASE("CUDA tensors fail clearly when no CUDA device is usable", "[tensor][device]") {
  std::string why;
  if (cuda_available(&why)) {
    WARN("a CUDA device exists; this case checks the no-device path only");
    return;
  }
  CHECK_FALSE(why.empty());
  CHECK_THROWS(Tensor::zeros({2}, DType::f32, Device::cuda()));
}
