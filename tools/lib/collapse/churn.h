// Routing churn: between two routing traces of the same probe tokens (tools/lib/train/
// routing_trace.h), the share of tokens whose top-1 expert changed, per MoE layer. High churn
// late in training means the router has not settled: tokens keep moving between experts, and the
// experts keep seeing other data. Pure functions over the stored traces.
#pragma once
#include <cstdint>
#include <vector>

namespace collapse {

// experts: [trace][layer][token][k] row-major, best first. Returns [trace - 1][layer]: entry
// (i, l) compares trace i + 1 with trace i. Throws std::invalid_argument on a size mismatch.
std::vector<double> routing_churn(const std::vector<int32_t>& experts, int64_t traces, int64_t layers, int64_t tokens,
                                  int64_t k);

}  // namespace collapse
