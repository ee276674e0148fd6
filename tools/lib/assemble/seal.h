// Sealing a checkpoint edited on purpose. A checkpoint's header hash and checksum refuse any
// change to its bytes, which protects against damage but also refuses a researcher's deliberate
// edit (a router row scaled, an expert zeroed or copied, the loss-free bias perturbed, with h5py).
// Sealing checks the edited file against the model its own stored config builds, tensor by
// tensor, then writes it anew with a fresh header hash and checksum, so that moe-inspect,
// moe-diagnose and --resume accept it. It lives here, not in tools/lib/checkpoint, because what a
// tensor's shape must be is known only to the model (the checkpoint library knows no engine).
//
// Contract: seal_checkpoint reads IN, checks it and then writes OUT atomically (OUT.tmp, fsync,
// rename; OUT may be IN itself: in place). A refusal throws ckpt::CheckpointError
// "IN: /GROUP/NAME: what is wrong" naming the first tensor that would not load, and writes
// nothing: IN and OUT stay as they were. A file whose seals already match its contents is not
// rewritten: in place it is left alone, elsewhere it is copied byte for byte.
#pragma once
#include <cstdint>
#include <string>

#include "tools/lib/checkpoint/checkpoint.h"

namespace assemble {

struct SealResult {
  ckpt::Seals found;    // the seals IN had: both true means it was not edited since its save
  bool wrote = false;   // OUT was written (rewritten with new seals, or copied byte for byte)
  int64_t tensors = 0;  // tensors checked: /model, /optimizer/m, /optimizer/v, /router/<block>/bias
};

// Every check that loading, diagnosing or resuming makes of the tensors, on a checkpoint read by
// ckpt::read_edited_checkpoint from `path`: each parameter of the model its stored config builds
// present in /model, /optimizer/m and /optimizer/v with that parameter's shape, stored as float32,
// finite (and the second moments not negative), nothing else there; one loss-free bias of E
// float32 finite values per MoE block, and none for other blocks; the generators and data
// cursors a resume restores; then ckpt::check_consistency.
// Returns the number of tensors checked; throws ckpt::CheckpointError naming the first that fails.
int64_t check_edited_tensors(const ckpt::Checkpoint& c, const std::string& path);

SealResult seal_checkpoint(const std::string& in, const std::string& out);

}  // namespace assemble
