// Synthetic multi-domain token streams for studying expert specialisation.
// Contract: D first-order Markov chains over `vocab` tokens, all fixed by `seed`. In each
// domain every token a has a few favoured successors (chosen and weighted per domain from the
// seed); with probability `concentration` the next token is drawn from those favoured
// successors, otherwise uniformly from the whole vocabulary. Different domains therefore have
// clearly different next-token distributions (the signal a router can specialise on), and
// concentration in [0, 1] tunes how strong it is (0: every domain is uniform noise).
// Each sequence comes from one domain chosen uniformly and starts at a uniform token; its
// domain is returned in Batch::domains. Batches are reproducible from (seed, offset).
#pragma once
#include "data/batch.h"

namespace data {

class SyntheticDomains : public TokenSource {
 public:
  SyntheticDomains(int32_t vocab, int num_domains, uint64_t seed, double concentration);

  Batch next_batch(int64_t batch, int64_t seq_len) override;
  int32_t vocab_size() const override { return vocab_; }
  int num_domains() const { return num_domains_; }

 private:
  int32_t vocab_;
  int num_domains_;
  double concentration_;
  int k_;                      // favoured successors per (domain, token)
  std::vector<int32_t> succ_;  // [D, V, k] favoured successor ids
  std::vector<float> cum_;     // [D, V, k] cumulative weights, last one 1
};

}  // namespace data
