// Run configuration: what a resumed run may change, and the values keys resolve to where a
// comparison must see the setting a run trains with rather than how it is spelled. Contract in
// run_config.h.
#include "tools/lib/config/run_config.h"

namespace runconfig {

bool fixed_on_resume(const std::string& key) {
  return key.rfind("model.", 0) == 0 || key.rfind("moe.", 0) == 0 || key.rfind("data.", 0) == 0 ||
         key == "training.seed";
}

int device_groups(const RunConfig& cfg) {
  return cfg.moe.device_groups > 0 ? cfg.moe.device_groups : cfg.parallel.expert;
}

ResumeChanges resume_changes(const RunConfig& saved, const RunConfig& resumed) {
  RunConfig before = saved, after = resumed;
  before.moe.device_groups = device_groups(saved);
  after.moe.device_groups = device_groups(resumed);
  const bool grouping_trains = saved.moe.losses.device_aux.peak() > 0 || resumed.moe.losses.device_aux.peak() > 0;
  ResumeChanges out;
  for (const std::string& k : keys_differing(before, after)) {
    const bool fixed = k == "moe.device_groups" ? grouping_trains : fixed_on_resume(k);
    (fixed ? out.fixed : out.changed).push_back(k);
  }
  return out;
}

}  // namespace runconfig
