// Row exchanges over NCCL for CUDA tensors (grouped ncclSend/ncclRecv); everything else goes
// through the host (MPI) communicator. Tensor sums are engine::all_reduce_sum over these
// exchanges, never ncclAllReduce, whose ring or tree (and so the order of floating-point
// additions) NCCL picks by size and topology. Plain C++ against the CUDA runtime and NCCL
// headers: no kernel of its own.
#include "engine/dist/nccl_communicator.h"

#include <stdexcept>

#ifdef ENGINE_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/profile.h"
#include "engine/cuda/runtime.h"
#endif

namespace engine::dist {

#ifdef ENGINE_WITH_NCCL

namespace {

void nccl_check(ncclResult_t result, const char* what, ncclComm_t comm = nullptr) {
  if (result == ncclSuccess) return;
  std::string text = std::string("NCCL ") + what + " failed: " + ncclGetErrorString(result);
  // The last error often says which rank, device or transport; empty when NCCL has nothing more.
  const char* detail = ncclGetLastError(comm);
  if (detail && *detail) text += std::string(" (") + detail + ")";
  throw std::runtime_error(text);
}

void cuda_check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error in NCCL ") + what + ": " + cudaGetErrorString(err));
}

// An error between ncclGroupStart and ncclGroupEnd would leave the thread's group open and every
// later NCCL call queued into it; the destructor closes it on the way out.
class Group {
 public:
  explicit Group(const char* what) : what_(what) { nccl_check(ncclGroupStart(), what_); }
  ~Group() {
    if (open_) ncclGroupEnd();
  }
  void end(ncclComm_t comm) {
    open_ = false;
    nccl_check(ncclGroupEnd(), what_, comm);
  }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

 private:
  const char* what_;
  bool open_ = true;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> host, ncclComm_t comm, int device)
      : host_(std::move(host)), comm_(comm), device_(device) {}
  // No DeviceGuard here: it throws, and at process exit the CUDA runtime may already be gone.
  ~NcclCommunicator() override {
    int previous = -1;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) cudaSetDevice(device_);
    ncclCommDestroy(comm_);
    if (previous >= 0 && previous != device_) cudaSetDevice(previous);
  }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override { return "nccl"; }

  void all_reduce_sum(std::vector<double>& v) override { host().all_reduce_sum(v); }
  void all_reduce_sum(std::vector<int64_t>& v) override { host().all_reduce_sum(v); }
  std::vector<int64_t> all_gather(const std::vector<int64_t>& mine) override { return host().all_gather(mine); }
  std::vector<double> all_gather(const std::vector<double>& mine) override { return host().all_gather(mine); }
  std::vector<int64_t> all_to_all(const std::vector<int64_t>& send) override { return host().all_to_all(send); }

  Tensor exchange_rows(const Tensor& src_in, const std::vector<int64_t>& send_rows,
                       const std::vector<int64_t>& recv_rows, const char* stage_name) override {
    check_rows_exchange(*this, src_in, send_rows, recv_rows);
    if (src_in.device().is_cpu()) return host().exchange_rows(src_in, send_rows, recv_rows, stage_name);
    check_device(src_in, "all_to_all_rows");
    const int p = size();
    // Alone, a mismatch is visible here; NCCL would not report it.
    if (p == 1 && send_rows[0] != recv_rows[0])
      throw std::invalid_argument("all_to_all_rows: one rank sends " + std::to_string(send_rows[0]) +
                                  " rows to itself but expects " + std::to_string(recv_rows[0]));
    for (int q = 0; q < p; ++q)
      if (send_rows[q] < 0 || recv_rows[q] < 0)
        throw std::invalid_argument("all_to_all_rows: negative row count for rank " + std::to_string(q));
    cuda::DeviceGuard guard(device_);
    const Tensor src = src_in.contiguous();
    int64_t total = 0;
    for (int64_t r : recv_rows) total += r;
    Tensor out = Tensor::empty({total, src.size(1)}, src.dtype(), src.device());
    const size_t row_bytes = static_cast<size_t>(src.size(1)) * dtype_size(src.dtype());
    const char* sdata = static_cast<const char*>(src.raw_data());
    char* rdata = static_cast<char*>(out.raw_data());
    wait_for_all();
    StageTimer stage(stage_name);
    {
      Group group("all_to_all_rows");
      size_t s_off = 0, r_off = 0;
      for (int q = 0; q < p; ++q) {
        const size_t s_bytes = static_cast<size_t>(send_rows[q]) * row_bytes;
        const size_t r_bytes = static_cast<size_t>(recv_rows[q]) * row_bytes;
        // Both sides skip an empty message, so the pairs still match (and no null pointer of an
        // empty tensor reaches NCCL).
        if (s_bytes)
          nccl_check(ncclSend(sdata + s_off, s_bytes, ncclUint8, q, comm_, cuda::stream()), "all_to_all_rows (send)",
                     comm_);
        if (r_bytes)
          nccl_check(ncclRecv(rdata + r_off, r_bytes, ncclUint8, q, comm_, cuda::stream()), "all_to_all_rows (recv)",
                     comm_);
        s_off += s_bytes;
        r_off += r_bytes;
      }
      group.end(comm_);
    }
    // src may be a temporary of the caller's whose memory the host could reuse, and the counts
    // of the next exchange are computed on the host: return only once the rows have landed.
    cuda_check(cudaStreamSynchronize(cuda::stream()), "all_to_all_rows");
    return out;
  }

  std::string broadcast(const std::string& bytes, int root) override { return host().broadcast(bytes, root); }
  void send(const std::string& bytes, int dest) override { host().send(bytes, dest); }
  std::string receive(int source) override { return host().receive(source); }
  void barrier() override { host().barrier(); }

  std::shared_ptr<Communicator> split(int color) override;
  // The host's barriers (before the collectives it carries for this communicator) count too.
  double waited_seconds() const override { return Communicator::waited_seconds() + host_->waited_seconds(); }

 private:
  // set_measure_wait is not virtual: the host picks the setting up when a call goes through it.
  Communicator& host() {
    host_->set_measure_wait(measure_wait_);
    return *host_;
  }

  void check_device(const Tensor& t, const char* what) const {
    if (t.device().index != device_)
      throw std::invalid_argument(std::string(what) + ": the tensor is on " + t.device().str() +
                                  ", this NCCL communicator on cuda:" + std::to_string(device_));
  }

  // The work queued before a collective is this rank's own, not waiting on the others: it is
  // drained first, so "wait" holds only the barrier.
  void wait_for_all() {
    if (!measure_wait_ || size() == 1) return;
    cuda_check(cudaStreamSynchronize(cuda::stream()), "barrier");
    timed_barrier([this] { host_->barrier(); });
  }

  std::shared_ptr<Communicator> host_;
  ncclComm_t comm_;
  int device_;
};

std::shared_ptr<Communicator> make_nccl(std::shared_ptr<Communicator> host) {
  if (!host) throw std::invalid_argument("nccl_communicator: no host communicator");
  // A rank that fails alone would leave the others waiting in ncclCommInitRank: agree first.
  std::string why;
  const bool usable = cuda_available(&why);
  const std::vector<int64_t> ok = host->all_gather(std::vector<int64_t>{usable ? 1 : 0});
  for (int q = 0; q < host->size(); ++q)
    if (!ok[q])
      throw std::runtime_error("nccl_communicator: rank " + std::to_string(q) + " has no usable CUDA device" +
                               (q == host->rank() ? ": " + why : std::string()));
  int device = 0;
  cuda_check(cudaGetDevice(&device), "init");

  ncclUniqueId id;
  std::string bytes;
  if (host->rank() == 0) {
    // On failure rank 0 broadcasts nothing, so the others throw too instead of waiting.
    const ncclResult_t made = ncclGetUniqueId(&id);
    if (made == ncclSuccess) bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
    host->broadcast(bytes, 0);
    nccl_check(made, "init (ncclGetUniqueId)");
  } else {
    bytes = host->broadcast(bytes, 0);
    if (bytes.size() != sizeof id)
      throw std::runtime_error("nccl_communicator: rank 0 could not create an NCCL id (got " +
                               std::to_string(bytes.size()) + " bytes)");
    std::memcpy(&id, bytes.data(), sizeof id);
  }
  ncclComm_t comm = nullptr;
  nccl_check(ncclCommInitRank(&comm, host->size(), id, host->rank()), "init (ncclCommInitRank)");
  return std::make_shared<NcclCommunicator>(std::move(host), comm, device);
}

std::shared_ptr<Communicator> NcclCommunicator::split(int color) {
  cuda::DeviceGuard guard(device_);  // the sub-group's communicator binds to the current device
  return make_nccl(host_->split(color));
}

}  // namespace

bool built_with_nccl() { return true; }

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> host) {
  return make_nccl(std::move(host));
}

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> host, int device) {
  cuda::DeviceGuard guard(device);
  return make_nccl(std::move(host));
}

#else  // no NCCL in this build

bool built_with_nccl() { return false; }

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> host, int) {
  return nccl_communicator(std::move(host));
}

std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator>) {
  throw std::runtime_error(
      "nccl_communicator: this build has no NCCL (it needs the CUDA backend, MPI and NCCL: configure with "
      "-DENGINE_CUDA=ON -DENGINE_MPI=ON and NCCL installed, e.g. in /usr/local/cuda)");
}

#endif

}  // namespace engine::dist
