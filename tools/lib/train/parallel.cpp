#include "tools/lib/train/parallel.h"

#include <cmath>
#include <cstring>
#include <regex>
#include <stdexcept>

#include "engine/dist/nccl_communicator.h"
#include "engine/dist/world.h"
#include "tools/lib/config/run_config.h"

namespace train {

using engine::Tensor;

ProcessGroups ProcessGroups::make(std::shared_ptr<engine::dist::Communicator> world, int expert_parallel, bool cuda) {
  const int R = world->size();
  if (expert_parallel < 1 || R % expert_parallel != 0)
    throw runconfig::ConfigError("parallel.expert: " + std::to_string(expert_parallel) +
                                 " must divide the number of ranks (" + std::to_string(R) +
                                 "): each copy of the experts is spread over parallel.expert ranks");
  ProcessGroups g;
  g.world = world;
  g.expert_parallel = expert_parallel;
  const int r = world->rank();
  g.expert_group = world->split(r / expert_parallel);
  g.expert_replicas = world->split(r % expert_parallel);
  if (cuda) {
    const int gpus = engine::cuda_device_count(), local = engine::dist::launched_local_size();
    if (R > 1 && local > gpus)
      throw runconfig::ConfigError("device: cuda with " + std::to_string(local) + " ranks on this machine and " +
                                   std::to_string(gpus) + " GPUs; one rank per GPU (mpirun -np at most " +
                                   std::to_string(gpus) + " per machine)");
    g.device = engine::Device::cuda(R > 1 ? engine::dist::launched_local_rank() : 0);
    engine::set_cuda_device(g.device.index);  // this rank's GPU from now on, for every op
    if (R > 1 && engine::dist::built_with_nccl()) {
      g.world = engine::dist::nccl_communicator(g.world, g.device.index);
      g.expert_group = engine::dist::nccl_communicator(g.expert_group, g.device.index);
      g.expert_replicas = engine::dist::nccl_communicator(g.expert_replicas, g.device.index);
    }
  }
  return g;
}

ProcessGroups ProcessGroups::single() {
  ProcessGroups g;
  g.world = g.expert_group = g.expert_replicas = engine::dist::self_communicator();
  return g;
}

bool is_expert_tensor(const std::string& name) { return expert_index(name) >= 0; }

int64_t expert_index(const std::string& name) {
  static const std::regex pattern(R"(^layers\.\d+\.moe\.experts\.(\d+)\..*)");
  std::smatch m;
  return std::regex_match(name, m, pattern) ? std::stoll(m[1]) : -1;
}

namespace {

// The parameters of one kind (experts or replicated), their gradients flattened into one buffer.
struct Bucket {
  std::vector<Tensor> params;
  int64_t numel = 0;
};

void sum_bucket(const Bucket& b, engine::dist::Communicator& over, double scale_by) {
  if (b.params.empty()) return;
  engine::NoGradScope no_grad;
  // A parameter no rank computed a gradient for (an expert no token reached) keeps none, as in
  // one process, where AdamW then leaves it and its moments alone; a zero gradient would not.
  std::vector<int64_t> has_grad;
  for (const Tensor& p : b.params) has_grad.push_back(p.grad().defined() ? 1 : 0);
  over.all_reduce_sum(has_grad);
  const engine::Device device = b.params.front().device();
  Tensor flat = Tensor::zeros({b.numel}, engine::DType::f32, device);
  int64_t offset = 0;
  for (const Tensor& p : b.params) {
    const int64_t n = p.numel();
    if (p.grad().defined()) {
      Tensor dst = engine::slice(flat, 0, offset, offset + n);
      engine::copy_into(engine::reshape(p.grad(), {n}).to(engine::DType::f32), dst);
    }
    offset += n;
  }
  engine::all_reduce_sum(flat, over);
  offset = 0;
  for (size_t i = 0; i < b.params.size(); ++i) {
    const Tensor& p = b.params[i];
    const int64_t n = p.numel();
    if (has_grad[i] == 0) {
      offset += n;
      continue;
    }
    Tensor g =
        engine::reshape(engine::scale(engine::slice(flat, 0, offset, offset + n), scale_by), p.shape()).to(p.dtype());
    Tensor mutable_p = p;
    if (p.grad().defined()) {
      Tensor dst = p.grad();
      engine::copy_into(g, dst);
    } else {
      mutable_p.set_grad(g.clone());
    }
    offset += n;
  }
}

}  // namespace

void average_gradients(const std::vector<moe::NamedParam>& params, const ProcessGroups& groups) {
  if (!groups.distributed()) return;
  Bucket replicated, experts;
  for (const moe::NamedParam& p : params) {
    Bucket& b = is_expert_tensor(p.name) ? experts : replicated;
    b.params.push_back(p.tensor);
    b.numel += p.tensor.numel();
  }
  const double inverse = 1.0 / groups.size();
  sum_bucket(replicated, *groups.world, inverse);
  sum_bucket(experts, *groups.expert_replicas, inverse);
}

double clip_global_grad_norm(const std::vector<moe::NamedParam>& params, const ProcessGroups& groups, double max_norm) {
  std::vector<Tensor> replicated, experts, all;
  for (const moe::NamedParam& p : params) {
    (is_expert_tensor(p.name) ? experts : replicated).push_back(p.tensor);
    all.push_back(p.tensor);
  }
  // Replicated gradients are equal on every rank: counted once. Each expert lives on one member
  // of every expert group, equal across the copies: summed over one group.
  std::vector<double> expert_sq = {engine::grad_sum_squares(experts)};
  groups.expert_group->all_reduce_sum(expert_sq);
  const double norm = std::sqrt(engine::grad_sum_squares(replicated) + expert_sq[0]);
  engine::scale_grads_to_norm(all, norm, max_norm);
  return norm;
}

std::string pack_arrays(const std::vector<ckpt::NamedArray>& arrays) {
  std::string out;
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const uint64_t count = arrays.size();
  put(&count, sizeof count);
  for (const ckpt::NamedArray& a : arrays) {
    const uint64_t name = a.name.size(), dims = a.shape.size(), values = a.values.size();
    put(&name, sizeof name);
    put(a.name.data(), a.name.size());
    put(&dims, sizeof dims);
    put(a.shape.data(), dims * sizeof(int64_t));
    put(&values, sizeof values);
    put(a.values.data(), values * sizeof(float));
  }
  return out;
}

std::vector<ckpt::NamedArray> unpack_arrays(const std::string& bytes) {
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (at + n > bytes.size()) throw std::runtime_error("unpack_arrays: truncated message");
    std::memcpy(p, bytes.data() + at, n);
    at += n;
  };
  uint64_t count = 0;
  get(&count, sizeof count);
  std::vector<ckpt::NamedArray> out(count);
  for (ckpt::NamedArray& a : out) {
    uint64_t name = 0, dims = 0, values = 0;
    get(&name, sizeof name);
    a.name.resize(name);
    get(a.name.data(), name);
    get(&dims, sizeof dims);
    a.shape.resize(dims);
    get(a.shape.data(), dims * sizeof(int64_t));
    get(&values, sizeof values);
    a.values.resize(values);
    get(a.values.data(), values * sizeof(float));
  }
  return out;
}

void gather_expert_tensors(const ProcessGroups& groups, std::vector<ckpt::NamedArray>& params,
                           std::vector<ckpt::NamedArray>& m, std::vector<ckpt::NamedArray>& v) {
  if (!groups.distributed() || groups.expert_parallel == 1) return;
  if (groups.rank() >= groups.expert_parallel) return;  // another copy: rank 0 has its own
  engine::dist::Communicator& group = *groups.expert_group;
  if (group.rank() != 0) {
    for (const std::vector<ckpt::NamedArray>* list : {&params, &m, &v}) {
      std::vector<ckpt::NamedArray> mine;
      for (const ckpt::NamedArray& a : *list)
        if (is_expert_tensor(a.name)) mine.push_back(a);
      group.send(pack_arrays(mine), 0);
    }
    return;
  }
  for (int q = 1; q < group.size(); ++q)
    for (std::vector<ckpt::NamedArray>* list : {&params, &m, &v})
      for (ckpt::NamedArray& a : unpack_arrays(group.receive(q))) list->push_back(std::move(a));
}

}  // namespace train
