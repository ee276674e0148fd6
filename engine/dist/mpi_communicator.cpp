// Collectives over MPI. Sums of host values are not left to MPI_Allreduce, whose algorithm (and
// so the order of floating-point additions) OpenMPI picks by message size and group size: a
// reduce-scatter (MPI_Alltoallv: rank q receives every rank's q-th chunk) is summed in rank
// order, then gathered back (MPI_Allgatherv), the algorithm engine::all_reduce_sum uses for
// tensors. The result is the same on every rank and in every run.
#include "engine/dist/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <cstring>
#include <stdexcept>

#include "engine/core/profile.h"

namespace engine::dist {

namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(text, len));
}

int as_int(int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX)
    throw std::runtime_error(std::string("MPI ") + what + ": count " + std::to_string(n) +
                             " does not fit MPI's int counts");
  return static_cast<int>(n);
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<int64_t>() {
  return MPI_INT64_T;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_sum(std::vector<double>& v) override { ordered_sum(v.data(), static_cast<int64_t>(v.size())); }
  void all_reduce_sum(std::vector<int64_t>& v) override { ordered_sum(v.data(), static_cast<int64_t>(v.size())); }

  std::vector<int64_t> all_gather(const std::vector<int64_t>& mine) override { return gather(mine); }
  std::vector<double> all_gather(const std::vector<double>& mine) override { return gather(mine); }

  std::vector<int64_t> all_to_all(const std::vector<int64_t>& send) override {
    if (send.size() % static_cast<size_t>(size_) != 0)
      throw std::invalid_argument("all_to_all: " + std::to_string(send.size()) + " values is not a multiple of " +
                                  std::to_string(size_) + " ranks");
    std::vector<int64_t> recv(send.size());
    const int each = as_int(static_cast<int64_t>(send.size()) / size_, "all_to_all");
    wait_for_all();
    StageTimer stage("all_to_all");
    check(MPI_Alltoall(send.data(), each, MPI_INT64_T, recv.data(), each, MPI_INT64_T, comm_), "all_to_all");
    return recv;
  }

  Tensor exchange_rows(const Tensor& src_in, const std::vector<int64_t>& send_rows,
                       const std::vector<int64_t>& recv_rows, const char* stage_name) override {
    check_rows_exchange(*this, src_in, send_rows, recv_rows);
    if (!src_in.device().is_cpu())  // no CUDA-aware MPI assumed: through the host
      return exchange_rows(src_in.to(Device::cpu()), send_rows, recv_rows, stage_name).to(src_in.device());
    const Tensor src = src_in.contiguous();
    int64_t total = 0;
    for (int64_t r : recv_rows) total += r;
    Tensor out = Tensor::empty({total, src.size(1)}, src.dtype(), src.device());
    const int64_t row_bytes = src.size(1) * static_cast<int64_t>(dtype_size(src.dtype()));
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t s_off = 0, r_off = 0;
    for (int q = 0; q < size_; ++q) {
      sc[q] = as_int(send_rows[q], "all_to_all_rows");
      rc[q] = as_int(recv_rows[q], "all_to_all_rows");
      sd[q] = as_int(s_off, "all_to_all_rows");
      rd[q] = as_int(r_off, "all_to_all_rows");
      s_off += send_rows[q];
      r_off += recv_rows[q];
    }
    MPI_Datatype row;
    check(MPI_Type_contiguous(as_int(row_bytes, "all_to_all_rows"), MPI_BYTE, &row), "type_contiguous");
    MPI_Type_commit(&row);
    wait_for_all();
    int code;
    {
      StageTimer stage(stage_name);
      code = MPI_Alltoallv(src.numel() ? src.raw_data() : nullptr, sc.data(), sd.data(), row,
                           out.numel() ? out.raw_data() : nullptr, rc.data(), rd.data(), row, comm_);
    }
    MPI_Type_free(&row);
    check(code, "all_to_all_rows");
    return out;
  }

  std::string broadcast(const std::string& bytes, int root) override {
    int64_t n = static_cast<int64_t>(bytes.size());
    check(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_), "broadcast");
    std::string out = rank_ == root ? bytes : std::string(static_cast<size_t>(n), '\0');
    check(MPI_Bcast(out.data(), as_int(n, "broadcast"), MPI_BYTE, root, comm_), "broadcast");
    return out;
  }

  void send(const std::string& bytes, int dest) override {
    const int64_t n = static_cast<int64_t>(bytes.size());
    check(MPI_Send(&n, 1, MPI_INT64_T, dest, kTag, comm_), "send");
    for (int64_t off = 0; off < n; off += kChunk) {
      const int len = static_cast<int>(std::min<int64_t>(kChunk, n - off));
      check(MPI_Send(bytes.data() + off, len, MPI_BYTE, dest, kTag, comm_), "send");
    }
  }

  std::string receive(int source) override {
    int64_t n = 0;
    check(MPI_Recv(&n, 1, MPI_INT64_T, source, kTag, comm_, MPI_STATUS_IGNORE), "receive");
    std::string out(static_cast<size_t>(n), '\0');
    for (int64_t off = 0; off < n; off += kChunk) {
      const int len = static_cast<int>(std::min<int64_t>(kChunk, n - off));
      check(MPI_Recv(out.data() + off, len, MPI_BYTE, source, kTag, comm_, MPI_STATUS_IGNORE), "receive");
    }
    return out;
  }

  void barrier() override { check(MPI_Barrier(comm_), "barrier"); }

  std::shared_ptr<Communicator> split(int color) override {
    MPI_Comm sub;
    check(MPI_Comm_split(comm_, color, rank_, &sub), "split");
    return std::make_shared<MpiCommunicator>(sub, true);
  }

 private:
  static constexpr int kTag = 7301;
  static constexpr int64_t kChunk = int64_t{1} << 30;

  void wait_for_all() {
    if (!measure_wait_ || size_ == 1) return;
    timed_barrier([this] { check(MPI_Barrier(comm_), "barrier"); });
  }

  template <class T>
  std::vector<T> gather(const std::vector<T>& mine) {
    std::vector<T> all(mine.size() * static_cast<size_t>(size_));
    const int n = as_int(static_cast<int64_t>(mine.size()), "all_gather");
    wait_for_all();
    StageTimer stage("all_reduce");
    check(MPI_Allgather(mine.data(), n, mpi_type<T>(), all.data(), n, mpi_type<T>(), comm_), "all_gather");
    return all;
  }

  template <class T>
  void ordered_sum(T* data, int64_t n) {
    if (size_ == 1 || n == 0) return;
    std::vector<int> counts(size_), displs(size_);
    for (int q = 0; q < size_; ++q) {
      const int64_t begin = n * q / size_, end = n * (q + 1) / size_;
      counts[q] = as_int(end - begin, "all_reduce_sum");
      displs[q] = as_int(begin, "all_reduce_sum");
    }
    const int mine = counts[rank_];
    std::vector<T> pieces(static_cast<size_t>(mine) * size_), sum(static_cast<size_t>(mine));
    std::vector<int> rc(size_, mine), rd(size_);
    for (int q = 0; q < size_; ++q) rd[q] = q * mine;
    wait_for_all();
    StageTimer stage("all_reduce");
    const MPI_Datatype type = mpi_type<T>();
    check(MPI_Alltoallv(data, counts.data(), displs.data(), type, pieces.data(), rc.data(), rd.data(), type, comm_),
          "all_reduce_sum");
    for (int i = 0; i < mine; ++i) {
      T acc = pieces[i];
      for (int q = 1; q < size_; ++q) acc += pieces[static_cast<size_t>(q) * mine + i];
      sum[i] = acc;
    }
    check(MPI_Allgatherv(sum.data(), mine, type, data, counts.data(), displs.data(), type, comm_), "all_reduce_sum");
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::shared_ptr<Communicator> mpi_world() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
  }
  // Errors come back as codes and are thrown with MPI's text, naming the collective.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, false);
}

void mpi_finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void mpi_abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace engine::dist
