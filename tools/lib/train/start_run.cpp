#include "tools/lib/train/start_run.h"

#include "engine/dist/world.h"
#include "tools/lib/train/launch.h"

namespace train {

namespace rc = runconfig;

namespace {

// Every rank of the run must train the same run: rank 0's config is the reference.
void check_same_config(engine::dist::Communicator& world, const rc::RunConfig& config) {
  const std::string mine = rc::to_yaml(config);
  const std::string reference = world.broadcast(mine, 0);
  if (reference == mine) return;
  std::string keys;
  for (const std::string& k : rc::keys_differing(rc::parse_run_config(reference, "rank 0's config"), config))
    keys += (keys.empty() ? "" : ", ") + k;
  throw rc::ConfigError("the config differs from rank 0's in " + keys +
                        "; every rank must read the same config and --set flags");
}

}  // namespace

StartedRun start_run(const StartRequest& request, std::ostream& out, std::ostream& err,
                     const std::function<void(StartPhase)>& on_phase) {
  StartedRun run;
  try {
    run.world = engine::dist::world();
  } catch (const std::exception& e) {
    err << "moe-train: " << e.what() << "\n";
    run.exit_code = 2;
    return run;
  }
  engine::dist::Communicator& world = *run.world;
  const bool several = world.size() > 1, speaks = world.rank() == 0;
  run.quiet = std::make_unique<std::ostream>(nullptr);
  std::ostream& progress = speaks ? out : *run.quiet;
  // One phase: its error, if any rank has one, ends every rank with the same status. A body may
  // use collectives only where every rank reaches them (before anything that can throw on some).
  auto phase = [&](StartPhase which, auto&& body) -> bool {
    on_phase(which);
    int code = 0;
    std::string message;
    try {
      body();
    } catch (const rc::ConfigError& e) {
      code = 2;
      message = e.what();
    } catch (const std::exception& e) {
      code = 1;
      message = e.what();
    }
    std::string report = message;
    run.exit_code = several ? agree(world, code, message, &report) : code;
    if (run.exit_code == 0) return true;
    if (speaks) {
      out.flush();
      err << "moe-train: " << report << std::endl;
    }
    // No rank leaves before rank 0 has spoken: mpirun ends the others as soon as one exits
    // non-zero, and rank 0 would then say it was stopped instead of why the start failed.
    if (several) world.barrier();
    on_phase(StartPhase::leaving);
    return false;
  };

  rc::RunConfig config;
  StartRequest r = request;
  if (!r.out_dir.empty()) r.overrides.push_back("logging.out_dir=" + r.out_dir);
  if (!phase(StartPhase::config, [&] {
        config = rc::load_run_config(r.config_path, r.overrides,
                                     [](std::string* why) { return engine::cuda_available(why); });
      }))
    return run;
  if (!phase(StartPhase::config, [&] {
        if (!r.init_from.empty() && !r.resume.empty())
          throw rc::ConfigError(
              "--init-from and --resume together: --init-from starts a new run from a dense "
              "checkpoint, --resume continues one (an upcycled run resumes with --resume alone)");
        if (r.upcycle_noise < 0 || (r.upcycle_noise > 0 && r.init_from.empty()))
          throw rc::ConfigError("--upcycle-noise must be >= 0 and needs --init-from");
        if (several) check_same_config(world, config);
        if (!several && config.parallel.expert > 1)
          throw rc::ConfigError(
              "parallel.expert = " + std::to_string(config.parallel.expert) +
              " needs that many processes or a multiple: start with mpirun -np N (N a multiple of " +
              std::to_string(config.parallel.expert) + ")" +
              (engine::dist::built_with_mpi() ? "" : "; this build has no MPI (install libopenmpi-dev, rebuild)"));
      }))
    return run;
  // A phase of its own: making the groups is collective, so every rank must have got this far.
  if (!phase(StartPhase::config, [&] {
        run.groups = ProcessGroups::make(run.world, config.parallel.expert, config.device == rc::DeviceKind::cuda);
      }))
    return run;
  std::string resume_path = r.resume;
  if (!phase(StartPhase::locking, [&] {
        if (speaks) run.lock = std::make_unique<RunLock>(config.logging.out_dir);
        if (r.resume == "latest" && speaks) {
          on_phase(StartPhase::finding_latest);
          std::vector<std::string> skipped;
          resume_path = latest_checkpoint(config.logging.out_dir, &skipped);
          for (const std::string& why : skipped) out << "moe-train: skipping " << why << "\n";
        }
      }))
    return run;
  if (several) resume_path = world.broadcast(resume_path, 0);  // rank 0's --resume for every rank
  if (!phase(StartPhase::building,
             [&] { run.trainer = std::make_unique<Trainer>(config, progress, nullptr, run.groups); }))
    return run;
  if (!phase(StartPhase::loading, [&] {
        if (!resume_path.empty()) run.trainer->resume(resume_path);
        if (!r.init_from.empty()) run.trainer->upcycle(r.init_from, r.upcycle_noise);
      }))
    return run;
  // The run folder is checked (no earlier run's checkpoints in it) before training, so that a
  // refusal is one message from every rank, not an error in the middle of a collective.
  phase(StartPhase::loading, [&] { run.trainer->start_outputs(); });
  return run;
}

int train_to_end(StartedRun& run, const std::atomic<bool>* stop, const std::function<int()>& signal_number,
                 std::ostream& out, std::ostream& err) {
  const bool several = run.world->size() > 1;
  try {
    if (run.trainer->run(stop) == RunEnd::stopped) {
      const int sig = signal_number() != 0 ? signal_number() : SIGTERM;  // another rank's signal
      if (run.world->rank() == 0)
        out << "moe-train: stopped by " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " after step "
            << run.trainer->steps_done() << "; continue with --resume latest" << std::endl;
      // Exiting non-zero makes mpirun end the other ranks: none leaves before rank 0 has spoken.
      if (several) run.world->barrier();
      return 128 + sig;
    }
  } catch (const std::exception& e) {
    out.flush();
    err << "moe-train: " << (several ? "rank " + std::to_string(run.world->rank()) + ": " : "") << e.what() << "\n";
    const int code = dynamic_cast<const rc::ConfigError*>(&e) ? 2 : 1;
    if (several) engine::dist::abort_all(code);  // the other ranks wait in a collective: end them
    return code;
  }
  return 0;
}

}  // namespace train
