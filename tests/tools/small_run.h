// The tools tests' small training run, shared so that a change of the model every such test
// trains is made once: two layers of d_model 16 with 4 experts of width 12 on 64 token ids,
// 6 steps of 2 x 16 tokens, logged at every step into `out`. A test's own settings come as
// overrides after these (a later value of a key wins).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "tools/lib/config/run_config.h"

namespace runtest {

inline runconfig::RunConfig small_run(const std::filesystem::path& out, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> o = {"model.vocab_size=64",
                                "model.d_model=16",
                                "model.n_layers=2",
                                "model.n_heads=2",
                                "model.max_seq_len=16",
                                "model.d_ff=24",
                                "moe.num_experts=4",
                                "moe.d_expert=12",
                                "model.embedding_init_std=0.5",
                                "training.batch_size=2",
                                "training.seq_len=16",
                                "training.steps=6",
                                "schedule.warmup_steps=2",
                                "logging.every=1",
                                "logging.out_dir=" + out.string()};
  o.insert(o.end(), extra.begin(), extra.end());
  return runconfig::parse_run_config("{}", "test", o);
}

}  // namespace runtest
