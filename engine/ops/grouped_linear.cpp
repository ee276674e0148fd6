#include "engine/ops/grouped_linear.h"

#include <string>

#include "engine/core/dispatch.h"
#include "engine/core/profile.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"

namespace engine {

namespace {

// Rows begin..end-1 of a contiguous 2-D tensor, as a contiguous view.
Tensor row_block(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t cols = t.size(1);
  return make_view(t, {end - begin, cols}, {cols, 1}, t.offset() + begin * cols);
}

void check_grouped_inputs(const Tensor& x, const std::vector<int64_t>& offsets, const std::vector<Tensor>& weights,
                          const std::vector<Tensor>& biases) {
  const char* op = "grouped_linear";
  ENGINE_CHECK(x.defined() && x.ndim() == 2, op, "x must be [rows, in], got " + x.str());
  ENGINE_CHECK(!weights.empty(), op, "needs at least one group (weight)");
  const size_t G = weights.size();
  ENGINE_CHECK(
      offsets.size() == G + 1, op,
      std::to_string(G) + " weights need " + std::to_string(G + 1) + " offsets, got " + std::to_string(offsets.size()));
  ENGINE_CHECK(offsets.front() == 0 && offsets.back() == x.size(0), op,
               "offsets must run from 0 to the row count " + std::to_string(x.size(0)) + ", got " +
                   std::to_string(offsets.front()) + " .. " + std::to_string(offsets.back()));
  for (size_t g = 0; g < G; ++g)
    ENGINE_CHECK(offsets[g] <= offsets[g + 1], op,
                 "offsets must not decrease: offsets[" + std::to_string(g) + "] = " + std::to_string(offsets[g]) +
                     " > offsets[" + std::to_string(g + 1) + "] = " + std::to_string(offsets[g + 1]));
  const Tensor& w0 = weights.front();
  ENGINE_CHECK(w0.defined() && w0.ndim() == 2 && w0.size(1) == x.size(1), op,
               "weight 0 " + w0.str() + " must be [out, " + std::to_string(x.size(1)) + "] for input " + x.str());
  ENGINE_CHECK(is_floating(x.dtype()), op, "needs floating-point tensors, got " + x.str());
  // bf16 rows take f32 weights (master weights), rounded for the products.
  const DType w_type = compute_dtype(x.dtype());
  for (size_t g = 0; g < G; ++g) {
    const Tensor& w = weights[g];
    ENGINE_CHECK(w.defined() && w.shape() == w0.shape() && w.dtype() == w_type && w.device() == x.device(), op,
                 "weight " + std::to_string(g) + " " + (w.defined() ? w.str() : "undefined") + " must match weight 0 " +
                     w0.str() + ", be " + dtype_name(w_type) + " and on the input's device (" + x.str() + ")");
  }
  ENGINE_CHECK(biases.empty() || biases.size() == G, op,
               "biases: none or one per weight (" + std::to_string(G) + "), got " + std::to_string(biases.size()));
  for (size_t g = 0; g < biases.size(); ++g) {
    const Tensor& b = biases[g];
    ENGINE_CHECK(b.defined() && b.shape() == Shape{w0.size(0)} && b.dtype() == w_type && b.device() == x.device(),
                 op,
                 "bias " + std::to_string(g) + " " + (b.defined() ? b.str() : "undefined") + " must be [" +
                     std::to_string(w0.size(0)) + "] like the input " + x.str());
  }
}

void run_groups(const std::vector<GemmCall>& groups) {
  if (groups.empty()) return;
  ON_DEVICE(groups.front().c, grouped_gemm, groups);
}

}  // namespace

Tensor grouped_linear(const Tensor& x_in, const std::vector<int64_t>& offsets, const std::vector<Tensor>& weights_in,
                      const std::vector<Tensor>& biases_in) {
  check_grouped_inputs(x_in, offsets, weights_in, biases_in);
  const int64_t G = static_cast<int64_t>(weights_in.size()), rows = x_in.size(0), in = x_in.size(1),
                out = weights_in.front().size(0);
  const MatmulPrecision precision = matmul_precision();
  Tensor x = kernel_input(x_in);
  std::vector<Tensor> w, b;
  for (const Tensor& t : weights_in) w.push_back(kernel_input(t, x.dtype()));  // bf16 copies serve backward too
  for (const Tensor& t : biases_in) b.push_back(kernel_input(t));
  Tensor y = Tensor::empty({rows, out}, x.dtype(), x.device());
  std::vector<GemmCall> groups;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t begin = offsets[g], end = offsets[g + 1];
    if (begin == end) continue;
    groups.push_back({batched_gemm_args(1, end - begin, out, in, false, true), row_block(x, begin, end), w[g],
                      b.empty() ? Tensor() : b[g], row_block(y, begin, end)});
  }
  run_groups(groups);

  std::vector<Tensor> inputs{x_in};
  inputs.insert(inputs.end(), weights_in.begin(), weights_in.end());
  inputs.insert(inputs.end(), biases_in.begin(), biases_in.end());
  if (!needs_grad(inputs)) return y;
  bool any_weight_grad = false;
  for (const Tensor& t : weights_in) any_weight_grad = any_weight_grad || t.requires_grad();
  Tensor keep_x = any_weight_grad ? x : Tensor();                                 // dW reads X
  std::vector<Tensor> keep_w = x_in.requires_grad() ? w : std::vector<Tensor>();  // dX reads W
  const bool has_bias = !b.empty();
  const DType x_type = x.dtype(), w_type = weights_in.front().dtype();
  record(y, inputs,
         [keep_x, keep_w, offsets, precision, G, rows, in, out, has_bias, x_type, w_type](const Tensor& dy_in,
                                                                                         GradSink& grads) {
           MatmulPrecisionScope scope(precision);
           Tensor dy = kernel_input(dy_in, x_type);
           if (grads.wants(0)) {
             StageTimer t("bw:grouped_linear_dx");
             Tensor dx = Tensor::empty({rows, in}, dy.dtype(), dy.device());  // empty groups own no rows
             std::vector<GemmCall> groups;
             for (int64_t g = 0; g < G; ++g) {
               const int64_t begin = offsets[g], end = offsets[g + 1];
               if (begin == end) continue;
               groups.push_back({batched_gemm_args(1, end - begin, in, out, false, false), row_block(dy, begin, end),
                                 keep_w[g], Tensor(), row_block(dx, begin, end)});
             }
             run_groups(groups);
             grads.add(0, dx);
           }
           {
             StageTimer t("bw:grouped_linear_dw");
             std::vector<GemmCall> groups;
             std::vector<int64_t> owners;
             for (int64_t g = 0; g < G; ++g) {
               const int64_t begin = offsets[g], end = offsets[g + 1];
               if (begin == end || !grads.wants(1 + g)) continue;
               groups.push_back({batched_gemm_args(1, out, in, end - begin, true, false), row_block(dy, begin, end),
                                 row_block(keep_x, begin, end), Tensor(),
                                 Tensor::empty({out, in}, w_type, dy.device())});  // f32 from bf16 operands
               owners.push_back(g);
             }
             run_groups(groups);
             for (size_t i = 0; i < owners.size(); ++i) grads.add(1 + owners[i], groups[i].c);
           }
           if (has_bias) {
             StageTimer t("bw:grouped_linear_db");
             for (int64_t g = 0; g < G; ++g) {
               const int64_t begin = offsets[g], end = offsets[g + 1];
               if (begin != end && grads.wants(1 + G + g)) grads.add(1 + G + g, sum(row_block(dy, begin, end), 0));
             }
           }
         });
  return y;
}

namespace cpu {

void grouped_gemm(const std::vector<GemmCall>& groups) { gemm_concurrent(groups); }

}  // namespace cpu
}  // namespace engine
