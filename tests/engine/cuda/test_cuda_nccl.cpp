// The NCCL communicator (engine/dist/nccl_communicator.h).
// - One rank: over a one-process group it either works (every collective runs through NCCL to
//   itself and must give back its input) or, in a build without NCCL, is refused with a message
//   saying so.
// - Several ranks: needs two GPUs and MPI; run `mpirun -n 2 cuda_tests "[nccl]"`. Otherwise the
//   case prints why it is skipped and checks nothing. Sums are compared bit for bit with the
//   rank-order sum computed on the host and with the MPI backend's.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/dist/nccl_communicator.h"
#include "engine/dist/world.h"
#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

namespace {

// Rows a rank sends: 1000 * from + 100 * to + 10 * row + column, so a misplaced row shows.
Tensor tagged_rows(int from, const std::vector<int64_t>& rows_per_rank, int64_t d, bool receiving) {
  std::vector<float> v;
  for (size_t q = 0; q < rows_per_rank.size(); ++q)
    for (int64_t k = 0; k < rows_per_rank[q]; ++k)
      for (int64_t c = 0; c < d; ++c) {
        const int src = receiving ? static_cast<int>(q) : from, dst = receiving ? from : static_cast<int>(q);
        v.push_back(static_cast<float>(1000 * src + 100 * dst + 10 * k + c));
      }
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size()) / d, d});
}

}  // namespace

TEST_CASE("nccl communicator over one rank works, or is refused without NCCL", "[cuda][nccl]") {
  auto host = dist::self_communicator();
  if (!dist::built_with_nccl()) {
    CHECK_THROWS_WITH(dist::nccl_communicator(host), Catch::Contains("this build has no NCCL"));
    return;
  }
  auto comm = dist::nccl_communicator(host);
  CHECK(comm->backend() == "nccl");
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);
  for (DType dt : kFloatTypes) {
    INFO(dtype_name(dt));
    Tensor x = rnd({7, 3}, 41, dt);
    Tensor g = x.to(kGpu);
    engine::all_reduce_sum(g, *comm);
    CHECK(g.device() == kGpu);
    CHECK(g.to(kCpu).to_vector() == x.to_vector());
  }
  Tensor ints = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {3}, kGpu);
  CHECK_THROWS_AS(engine::all_reduce_sum(ints, *comm), std::invalid_argument);

  Tensor rows = rnd({5, 3}, 43, DType::f32);
  Tensor back = comm->all_to_all_rows(rows.to(kGpu), {5}, {5});
  CHECK(back.device() == kGpu);
  CHECK(back.shape() == Shape{5, 3});
  CHECK(back.to(kCpu).to_vector() == rows.to_vector());
  CHECK_THROWS_AS(comm->all_to_all_rows(rows.to(kGpu), {5}, {4}), std::invalid_argument);
  CHECK(comm->all_to_all_rows(Tensor::empty({0, 3}, DType::f32, kGpu), {0}, {0}).numel() == 0);

  // CPU tensors and host values go through the host communicator.
  Tensor cpu = rnd({4}, 44, DType::f64);
  Tensor cpu_copy = cpu.clone();
  engine::all_reduce_sum(cpu_copy, *comm);
  CHECK(cpu_copy.device() == kCpu);
  CHECK(cpu_copy.to_vector() == cpu.to_vector());
  CHECK(comm->all_to_all_rows(rows, {5}, {5}).device() == kCpu);
  CHECK(comm->all_gather(std::vector<int64_t>{3, 4}) == std::vector<int64_t>{3, 4});
  CHECK(comm->broadcast("id", 0) == "id");

  auto sub = comm->split(3);
  CHECK(sub->backend() == "nccl");
  CHECK(sub->size() == 1);
  Tensor y = rnd({9}, 45, DType::f32);
  Tensor yg = y.to(kGpu);
  engine::all_reduce_sum(yg, *sub);
  CHECK(yg.to(kCpu).to_vector() == y.to_vector());
}

TEST_CASE("nccl communicator across GPUs sums in rank order and exchanges rows", "[cuda][nccl]") {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  const int launched = dist::launched_world_size();
  if (!dist::built_with_nccl() || devices < 2 || launched < 2 || launched > devices) {
    WARN("SKIPPED: needs 2 GPUs and mpirun, one rank per GPU (this build "
         << (dist::built_with_nccl() ? "has" : "has no") << " NCCL; " << devices << " CUDA device(s), " << launched
         << " rank(s)); run: mpirun -n 2 cuda_tests \"[nccl]\"");
    return;
  }
  auto world = dist::world();
  const int p = world->size(), me = world->rank();
  // One node: the world rank is the local rank.
  const Device dev = Device::cuda(me % devices);
  REQUIRE(cudaSetDevice(dev.index) == cudaSuccess);
  auto comm = dist::nccl_communicator(world);
  REQUIRE(comm->size() == p);
  REQUIRE(comm->rank() == me);

  // 21 elements do not split evenly (the padded path), 8 do for two ranks (in place).
  for (const Shape& shape : {Shape{7, 3}, Shape{4, 2}})
    for (DType dt : kFloatTypes) {
      INFO(dtype_name(dt) << " " << shape_str(shape));
      // Every rank can build every rank's input; magnitudes differ so the order of additions
      // matters to the last bit.
      std::vector<Tensor> inputs;
      for (int q = 0; q < p; ++q) inputs.push_back(rnd(shape, 50 + q, dt, q % 2 ? 1e-3 : 1e3));
      std::vector<double> expected = inputs[0].to_vector();
      for (size_t i = 0; i < expected.size(); ++i) {
        if (dt == DType::f32) {
          float acc = static_cast<float>(expected[i]);
          for (int q = 1; q < p; ++q) acc += static_cast<float>(inputs[q].to_vector()[i]);
          expected[i] = acc;
        } else {
          for (int q = 1; q < p; ++q) expected[i] += inputs[q].to_vector()[i];
        }
      }
      Tensor g = inputs[me].to(dev);
      engine::all_reduce_sum(g, *comm);
      Tensor over_mpi = inputs[me].clone();
      engine::all_reduce_sum(over_mpi, *world);
      CHECK(g.to(kCpu).to_vector() == expected);
      CHECK(over_mpi.to_vector() == expected);
    }

  // Rank a sends a + b + 1 rows to rank b, so counts differ per pair and agree between ranks.
  std::vector<int64_t> send_rows(p), recv_rows(p);
  for (int q = 0; q < p; ++q) send_rows[q] = recv_rows[q] = me + q + 1;
  Tensor src = tagged_rows(me, send_rows, 3, false);
  Tensor out = comm->all_to_all_rows(src.to(dev), send_rows, recv_rows);
  CHECK(out.device() == dev);
  CHECK(out.to(kCpu).to_vector() == tagged_rows(me, recv_rows, 3, true).to_vector());
  CHECK(out.to(kCpu).to_vector() == world->all_to_all_rows(src, send_rows, recv_rows).to_vector());

  // Each rank alone in its group: the sum is its own tensor.
  auto alone = comm->split(me);
  CHECK(alone->backend() == "nccl");
  CHECK(alone->size() == 1);
  Tensor z = rnd({5}, 60 + me, DType::f32);
  Tensor zg = z.to(dev);
  engine::all_reduce_sum(zg, *alone);
  CHECK(zg.to(kCpu).to_vector() == z.to_vector());
}
