// How a run is spread over processes: the process groups, and the trainer's collective steps
// (gradient averaging, the global gradient norm, summing metrics, assembling one checkpoint).
//
// Layout: world rank r = copy * EP + member, EP = parallel.expert. The EP ranks of one copy form
// an expert group and hold one copy of every expert between them (member q holds experts
// [q E/EP, (q+1) E/EP)); the world / EP ranks with the same member hold the same experts (the
// expert replicas). Every other parameter is replicated on every rank.
//
// Gradients: every rank's loss is its own micro-batch's mean, and the run trains the mean over
// ranks. A replicated parameter's gradient is summed over the world; an expert's gradient
// already holds every token of its expert group (the all-to-all's backward brought them) and is
// summed over its replicas; both are then divided by the world size. Sums run in rank order
// (engine/dist/communicator.h), so every rank holds the same gradient and a run repeats bit
// for bit.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/engine.h"
#include "models/params.h"
#include "tools/lib/checkpoint/checkpoint.h"

namespace train {

struct ProcessGroups {
  std::shared_ptr<engine::dist::Communicator> world, expert_group, expert_replicas;
  int expert_parallel = 1;
  engine::Device device = engine::Device::cpu();  // where this rank's model lives

  // Throws runconfig::ConfigError when expert_parallel does not divide the world size. With
  // cuda, every rank takes one GPU (its index among this machine's ranks, modulo the GPUs) and,
  // in a build with NCCL, its groups exchange GPU tensors over NCCL (else through the host).
  static ProcessGroups make(std::shared_ptr<engine::dist::Communicator> world, int expert_parallel, bool cuda = false);
  static ProcessGroups single();  // one process: every group is this process alone
  int rank() const { return world->rank(); }
  int size() const { return world->size(); }
  bool distributed() const { return world->size() > 1; }
};

// True for a routed expert's tensor ("layers.L.moe.experts.E.<...>"), which lives on one rank of
// each expert group; shared experts and everything else are replicated.
bool is_expert_tensor(const std::string& name);
// The expert index of such a name (-1 for other names).
int64_t expert_index(const std::string& name);

// Replaces every parameter's gradient by the run's gradient (see above). A parameter without a
// gradient on this rank (an expert no token reached) takes part with zeros.
void average_gradients(const std::vector<moe::NamedParam>& params, const ProcessGroups& groups);

// The global L2 norm of the gradients (every parameter counted once over the run), and clipping
// to max_norm (<= 0: no clipping). Returns the norm before clipping.
double clip_global_grad_norm(const std::vector<moe::NamedParam>& params, const ProcessGroups& groups, double max_norm);

// Checkpoints are one file written by world rank 0: the tensors of the experts held by the
// other members of rank 0's expert group travel to rank 0 (a collective over that group; the
// other copies send nothing). `params`, `m`, `v` hold this rank's tensors and, on rank 0,
// gain everyone else's.
void gather_expert_tensors(const ProcessGroups& groups, std::vector<ckpt::NamedArray>& params,
                           std::vector<ckpt::NamedArray>& m, std::vector<ckpt::NamedArray>& v);

// Serialized arrays (for gather_expert_tensors, and tests).
std::string pack_arrays(const std::vector<ckpt::NamedArray>& arrays);
std::vector<ckpt::NamedArray> unpack_arrays(const std::string& bytes);

}  // namespace train
