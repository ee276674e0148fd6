// Collective communication between the processes of one run (expert and data parallelism).
//
// A Communicator is a fixed group of ranks 0..size()-1. The engine, the model and the trainer talk
// to the group only through this interface, so one process (SelfCommunicator, no MPI needed),
// MPI between processes (mpi_communicator.cpp) and NCCL between GPUs (nccl_communicator.cpp)
// are interchangeable.
//
// Contract, for every implementation:
// - Every rank of the group calls the same collectives in the same order (as MPI requires).
// - Sums are added in rank order 0, 1, ..., size-1 on every rank, never in the order messages
//   arrive, so all ranks hold bit-identical results and a run repeats bit for bit. Tensors are
//   summed by engine::all_reduce_sum, one algorithm over exchange_rows for every transport.
// - Tensors passed in are contiguous; an implementation that cannot reach a device's memory
//   stages through the host.
// Each collective is charged to a profile stage ("all_to_all", "all_reduce"); with
// set_measure_wait(true) a barrier before it is charged to "wait" first, so a profile separates
// the time a rank waits for the slowest one from the time the transfer takes; waited_seconds()
// adds those barriers up, so a caller can charge the waits of its own collectives (an MoE
// layer's all-to-alls) by reading it before and after.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace engine::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "self", "mpi", "nccl"

  // Host values summed over the ranks (a tensor's sum: engine::all_reduce_sum in
  // engine/ops/all_reduce.h, built on exchange_rows so that every transport sums alike).
  virtual void all_reduce_sum(std::vector<double>& values) = 0;
  virtual void all_reduce_sum(std::vector<int64_t>& values) = 0;
  // Every rank's vector (all of one length), concatenated in rank order.
  virtual std::vector<int64_t> all_gather(const std::vector<int64_t>& mine) = 0;
  virtual std::vector<double> all_gather(const std::vector<double>& mine) = 0;
  // `send` holds send.size() / size() values for each rank, in rank order; returns what each
  // rank sent to this one, in rank order.
  virtual std::vector<int64_t> all_to_all(const std::vector<int64_t>& send) = 0;
  // Rows of a 2-D tensor: src [sum(send_rows), d] holds send_rows[q] rows for rank q, in rank
  // order; returns [sum(recv_rows), d] holding recv_rows[q] rows from rank q, in rank order, on
  // src's device. The time is charged to the profile stage `stage`.
  virtual Tensor exchange_rows(const Tensor& src, const std::vector<int64_t>& send_rows,
                               const std::vector<int64_t>& recv_rows, const char* stage) = 0;
  Tensor all_to_all_rows(const Tensor& src, const std::vector<int64_t>& send_rows,
                         const std::vector<int64_t>& recv_rows) {
    return exchange_rows(src, send_rows, recv_rows, "all_to_all");
  }
  // root's bytes on every rank.
  virtual std::string broadcast(const std::string& bytes, int root) = 0;
  // Point to point, for gathering checkpoint pieces on one rank.
  virtual void send(const std::string& bytes, int dest) = 0;
  virtual std::string receive(int source) = 0;
  virtual void barrier() = 0;
  // The ranks with the same color form a new group, ordered by their rank here.
  virtual std::shared_ptr<Communicator> split(int color) = 0;

  void set_measure_wait(bool on) { measure_wait_ = on; }
  bool measure_wait() const { return measure_wait_; }
  // Seconds spent in the measure_wait barriers since this communicator was made.
  virtual double waited_seconds() const { return waited_; }

 protected:
  // An implementation's barrier before a collective, when measure_wait is on: charged to the
  // profile stage "wait" and to waited_seconds().
  void timed_barrier(const std::function<void()>& barrier);

  bool measure_wait_ = false;

 private:
  double waited_ = 0;
};

// One process: every collective returns its input.
std::shared_ptr<Communicator> self_communicator();

// Checks shared by the implementations: counts have one entry per rank, rows fit the tensor.
void check_rows_exchange(const Communicator& comm, const Tensor& src, const std::vector<int64_t>& send_rows,
                         const std::vector<int64_t>& recv_rows);

}  // namespace engine::dist
