// meter_begin / meter_end: what a region of the computation costs, forward and backward together.
//
//   rows = meter_begin(rows, m);  ... the region's ops ...;  out = meter_end(out, m);
//
// Both return their input unchanged (a view; the gradient passes straight through). In forward,
// m.forward gains read() at meter_end minus read() at meter_begin. The tape runs its entries
// newest first on one thread, so in backward the region's entries run after meter_end's and
// before meter_begin's: m.backward gains the reading between those two. `read` is any quantity
// that only grows: wall seconds (steady_seconds), a communicator's waited_seconds().
// Regions may follow one another (micro-batches whose backward runs at once): each bracket pairs
// with its own. They must not interleave. A region whose input needs no gradient has no backward
// to time: neither bracket goes on the tape.
// Pitfall: CUDA ops are asynchronous, so a wall-clock reading of device work must synchronize
// first (device_seconds does), or it measures kernel launches.
#pragma once
#include <functional>
#include <memory>

#include "engine/core/device.h"
#include "engine/core/tensor.h"

namespace engine {

struct Meter {
  std::function<double()> read;
  double forward = 0, backward = 0;
  double total() const { return forward + backward; }
  void reset() {
    forward = backward = 0;
    armed = backward_open = false;
  }

  // Set by the bracket ops: the reading at the start of the open region, and whether the
  // region's start is on the tape (its input needs a gradient), so that its end goes there too.
  double forward_start = 0, backward_start = 0;
  bool armed = false, backward_open = false;
};

// engine::steady_seconds (engine/core/profile.h), after synchronize(device) on a GPU.
std::function<double()> device_seconds(Device device);

Tensor meter_begin(const Tensor& x, const std::shared_ptr<Meter>& meter);
Tensor meter_end(const Tensor& x, const std::shared_ptr<Meter>& meter);

}  // namespace engine
