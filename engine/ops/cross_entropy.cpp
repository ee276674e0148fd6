#include "engine/ops/cross_entropy.h"

#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/fast_math.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, int32_t ignore_index) {
  ENGINE_CHECK(is_floating(logits_in.dtype()) && logits_in.ndim() >= 1, "cross_entropy",
               "logits must be a floating tensor [..., V], got " + logits_in.str());
  ENGINE_CHECK(targets_in.dtype() == DType::i32, "cross_entropy", "targets must be i32, got " + targets_in.str());
  const Shape rows_shape(logits_in.shape().begin(), logits_in.shape().end() - 1);
  ENGINE_CHECK(
      targets_in.shape() == rows_shape, "cross_entropy",
      "targets " + targets_in.str() + " must have the logits' shape without the last axis " + shape_str(rows_shape));
  ENGINE_CHECK(targets_in.device() == logits_in.device(), "cross_entropy", "logits and targets on different devices");
  Tensor logits = kernel_input(logits_in), targets = kernel_input(targets_in);
  const int64_t vocab = logits.size(-1), rows = targets.numel();
  logits = make_view(logits, {rows, vocab}, {vocab, 1}, logits.offset());
  // bf16 logits: log-sum-exp, loss and everything after in f32; only d logits is bf16.
  const DType acc = compute_dtype(logits.dtype());
  Tensor lse = Tensor::empty({rows}, acc, logits.device());
  double loss_sum = 0.0;
  int64_t count = 0;
  ON_DEVICE(logits, cross_entropy_forward, logits, targets, ignore_index, lse, &loss_sum, &count);
  const double loss = count > 0 ? loss_sum / static_cast<double>(count) : 0.0;
  Tensor out = Tensor::full({1}, loss, acc, logits.device());
  if (needs_grad({logits_in})) {
    const Shape logits_shape = logits_in.shape();
    record(out, {logits_in}, [=](const Tensor& dy, GradSink& g) {
      const double grad_scale = count > 0 ? dy.item() / static_cast<double>(count) : 0.0;
      Tensor dlogits = Tensor::empty({rows, vocab}, logits.dtype(), logits.device());
      ON_DEVICE(logits, cross_entropy_backward, logits, targets, lse, ignore_index, grad_scale, dlogits);
      g.add(0, make_view(dlogits, logits_shape, contiguous_strides(logits_shape), 0));
    });
  }
  return out;
}

namespace cpu {

namespace {

// X: the logits' storage type; T = acc_t<X>: the math's.
template <class X, class T = acc_t<X>>
ENGINE_SIMD_CLONES void row_logsumexp(const X* __restrict x, int64_t rows, int64_t vocab, T* __restrict lse) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* xr = x + r * vocab;
    T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < vocab; ++j) {
      const T v = static_cast<T>(xr[j]);
      m = v > m ? v : m;
    }
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < vocab; ++j) total += engine_exp(static_cast<T>(xr[j]) - m);
    lse[r] = m + std::log(total);
  }
}

// d logits = scale * (softmax - onehot(target)); zero for ignored rows.
template <class X, class T = acc_t<X>>
ENGINE_SIMD_CLONES void softmax_minus_onehot(const X* __restrict x, const T* __restrict lse,
                                             const int32_t* __restrict targets, int64_t rows, int64_t vocab,
                                             int32_t ignore_index, T scale, X* __restrict dx) {
  for (int64_t r = 0; r < rows; ++r) {
    X* dr = dx + r * vocab;
    if (targets[r] == ignore_index) {
      std::fill(dr, dr + vocab, X(0));
      continue;
    }
    const X* xr = x + r * vocab;
    const T l = lse[r];
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) dr[j] = scale * engine_exp(static_cast<T>(xr[j]) - l);
    const int32_t t = targets[r];  // (p_t - 1) in f32, then rounded once
    dr[t] = scale * (engine_exp(static_cast<T>(xr[t]) - l) - T(1));
  }
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index, Tensor& lse,
                           double* loss_sum, int64_t* count) {
  const int64_t rows = targets.numel(), vocab = logits.size(-1);
  const int32_t* pt = targets.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = pt[r];
    if (t != ignore_index && (t < 0 || t >= vocab))
      throw std::invalid_argument("cross_entropy: target " + std::to_string(t) + " at row " + std::to_string(r) +
                                  " is outside [0, " + std::to_string(vocab) + ") and is not ignore_index (" +
                                  std::to_string(ignore_index) + ")");
  }
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  DISPATCH_FLOAT_BF16(logits.dtype(), "cross_entropy", {
    const scalar_t* px = logits.data<scalar_t>();
    acc_t<scalar_t>* pl = lse.data<acc_t<scalar_t>>();
    parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(vocab, 1)), [&](int64_t b, int64_t e) {
      row_logsumexp(px + b * vocab, e - b, vocab, pl + b);
      for (int64_t r = b; r < e; ++r)
        if (pt[r] != ignore_index)
          row_loss[r] = static_cast<double>(pl[r]) - static_cast<double>(px[r * vocab + pt[r]]);
    });
  });
  double total = 0.0;  // summed in row order: the same result for any thread count
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (pt[r] == ignore_index) continue;
    total += row_loss[r];
    ++n;
  }
  *loss_sum = total;
  *count = n;
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int32_t ignore_index,
                            double grad_scale, Tensor& dlogits) {
  const int64_t rows = targets.numel(), vocab = logits.size(-1);
  const int32_t* pt = targets.data<int32_t>();
  DISPATCH_FLOAT_BF16(logits.dtype(), "cross_entropy_backward", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = logits.data<scalar_t>();
    const acc* pl = lse.data<acc>();
    scalar_t* pd = dlogits.data<scalar_t>();
    const acc s = static_cast<acc>(grad_scale);
    parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(vocab, 1)), [&](int64_t b, int64_t e) {
      softmax_minus_onehot(px + b * vocab, pl + b, pt + b, e - b, vocab, ignore_index, s, pd + b * vocab);
    });
  });
}

}  // namespace cpu
}  // namespace engine
