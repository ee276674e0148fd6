#include "engine/ops/all_reduce.h"

#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/shape.h"

namespace engine {

void all_reduce_sum(Tensor& t, dist::Communicator& group) {
  ENGINE_CHECK(t.defined() && (t.dtype() == DType::f32 || t.dtype() == DType::f64), "all_reduce_sum",
               "an f32 or f64 tensor is summed, got " + (t.defined() ? t.str() : std::string("none")));
  const int R = group.size(), me = group.rank();
  const int64_t n = t.numel();
  if (R == 1 || n == 0) return;
  NoGradScope no_grad;
  std::vector<int64_t> chunk(R);  // rank q sums elements [n q / R, n (q + 1) / R)
  for (int q = 0; q < R; ++q) chunk[q] = n * (q + 1) / R - n * q / R;
  const int64_t mine = chunk[me];
  // Elements as rows of one, so chunks of any length travel as rows.
  const Tensor flat = contiguous(t).reshape({n, 1});
  const Tensor pieces = group.exchange_rows(flat, chunk, std::vector<int64_t>(R, mine), "all_reduce");
  Tensor sum = slice(pieces, 0, 0, mine);
  for (int q = 1; q < R; ++q) sum = add(sum, slice(pieces, 0, q * mine, (q + 1) * mine));
  const Tensor copies = concat(std::vector<Tensor>(R, contiguous(sum)), 0);
  const Tensor whole = group.exchange_rows(copies, std::vector<int64_t>(R, mine), chunk, "all_reduce");
  copy_into(whole.reshape(t.shape()), t);
}

}  // namespace engine
