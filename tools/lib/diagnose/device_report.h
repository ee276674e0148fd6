// moe-diagnose's device view: what the routing of a checkpoint would cost on N expert-parallel
// ranks. The kept slots of the evaluation batches are grouped as N ranks hold the experts
// (contiguous blocks, as training places them) and the predicted slowdown of each layer's expert
// work against a perfectly balanced step is the busiest rank's slots over the mean
// (tools/lib/collapse/devices.h). A checkpoint of any number of processes holds every expert,
// so the prediction is the same whatever layout trained it; what training measured on its own
// ranks comes from the checkpoint's history.
#pragma once
#include <ostream>

#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/diagnose/diagnose.h"

namespace diagnose {

// Throws std::runtime_error when ranks does not divide the number of experts.
DevicePrediction predict_devices(const std::vector<LayerResult>& layers, int64_t ranks);
// Fills r.devices (options.ep first, then the report's counts) and r.measured; trained_devices:
// the grouping the run's device metrics used.
void add_device_view(Result& r, const Options& options, const ckpt::MetricsHistory& history, int64_t trained_devices);

void print_devices(const Result& r, std::ostream& out);
void write_devices_json(const Result& r, std::ostream& out);  // the value of "devices": {...}
void write_devices_html(const Result& r, std::ostream& out);  // <section id="devices">

}  // namespace diagnose
