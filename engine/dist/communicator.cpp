#include "engine/dist/communicator.h"

#include <chrono>
#include <numeric>
#include <stdexcept>

#include "engine/core/profile.h"

namespace engine::dist {

namespace {

class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  void all_reduce_sum(std::vector<double>&) override {}
  void all_reduce_sum(std::vector<int64_t>&) override {}
  std::vector<int64_t> all_gather(const std::vector<int64_t>& mine) override { return mine; }
  std::vector<double> all_gather(const std::vector<double>& mine) override { return mine; }
  std::vector<int64_t> all_to_all(const std::vector<int64_t>& send) override { return send; }
  Tensor exchange_rows(const Tensor& src, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows,
                       const char*) override {
    check_rows_exchange(*this, src, send_rows, recv_rows);
    if (send_rows[0] != recv_rows[0])
      throw std::invalid_argument("all_to_all_rows: one rank sends " + std::to_string(send_rows[0]) +
                                  " rows to itself but expects " + std::to_string(recv_rows[0]));
    return src;
  }
  std::string broadcast(const std::string& bytes, int) override { return bytes; }
  void send(const std::string&, int) override {
    throw std::logic_error("Communicator::send: a one-process group has no other rank");
  }
  std::string receive(int) override {
    throw std::logic_error("Communicator::receive: a one-process group has no other rank");
  }
  void barrier() override {}
  std::shared_ptr<Communicator> split(int) override { return std::make_shared<SelfCommunicator>(); }
};

}  // namespace

void Communicator::timed_barrier(const std::function<void()>& barrier) {
  StageTimer stage("wait");
  const auto start = std::chrono::steady_clock::now();
  barrier();
  waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::shared_ptr<Communicator> self_communicator() { return std::make_shared<SelfCommunicator>(); }

void check_rows_exchange(const Communicator& comm, const Tensor& src, const std::vector<int64_t>& send_rows,
                         const std::vector<int64_t>& recv_rows) {
  const size_t n = static_cast<size_t>(comm.size());
  if (send_rows.size() != n || recv_rows.size() != n)
    throw std::invalid_argument("all_to_all_rows: need one row count per rank (" + std::to_string(n) + "), got " +
                                std::to_string(send_rows.size()) + " to send and " + std::to_string(recv_rows.size()) +
                                " to receive");
  if (!src.defined() || src.ndim() != 2)
    throw std::invalid_argument("all_to_all_rows: src must be [rows, d], got " + (src.defined() ? src.str() : "none"));
  const int64_t total = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  if (total != src.size(0))
    throw std::invalid_argument("all_to_all_rows: the send counts add up to " + std::to_string(total) +
                                " rows, src has " + std::to_string(src.size(0)));
}

}  // namespace engine::dist
