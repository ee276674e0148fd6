#include "engine/ops/meter.h"

#include "engine/core/profile.h"
#include "engine/core/tape.h"

namespace engine {

std::function<double()> device_seconds(Device device) {
  if (device.is_cpu()) return steady_seconds;
  return [device] {
    synchronize(device);
    return steady_seconds();
  };
}

namespace {

// A view of x that the tape sees as a new tensor, so a closure can run at this point of backward.
Tensor pass_through(const Tensor& x, std::function<void()> in_backward) {
  Tensor y = make_view(x, x.shape(), x.strides(), x.offset());
  if (is_floating(x.dtype()) && needs_grad({x}))
    record(y, {x}, [in_backward = std::move(in_backward)](const Tensor& dy, GradSink& g) {
      in_backward();
      g.add(0, dy);
    });
  return y;
}

}  // namespace

Tensor meter_begin(const Tensor& x, const std::shared_ptr<Meter>& meter) {
  ENGINE_CHECK(meter && meter->read, "meter_begin", "no meter, or a meter without a reading");
  meter->forward_start = meter->read();
  meter->armed = is_floating(x.dtype()) && needs_grad({x});
  if (!meter->armed) return x;
  // Runs last of the region in backward: closes the backward reading opened by meter_end.
  return pass_through(x, [meter] {
    if (!meter->backward_open) return;  // meter_end's entry got no gradient: nothing was timed
    meter->backward += meter->read() - meter->backward_start;
    meter->backward_open = false;
  });
}

Tensor meter_end(const Tensor& x, const std::shared_ptr<Meter>& meter) {
  ENGINE_CHECK(meter && meter->read, "meter_end", "no meter, or a meter without a reading");
  meter->forward += meter->read() - meter->forward_start;
  if (!meter->armed) return x;
  meter->armed = false;
  return pass_through(x, [meter] {
    meter->backward_start = meter->read();
    meter->backward_open = true;
  });
}

}  // namespace engine
