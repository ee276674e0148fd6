// The catalog (models/routers/routers.def, models/balance/losses.def) walked entry by entry:
// every router and loss is accepted by the config loader with the rules its entry states,
// documented in configs/README.md as the catalog generates it, and covered by a committed
// PyTorch reference (tests/data/reference/ROUTER__LOSS.h5).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/catalog.h"
#include "tools/lib/config/run_config.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const fs::path kSource = ENGINE_SOURCE_DIR;

std::string moe_yaml(const moe::RouterInfo& r, const std::string& losses = "{}") {
  const bool one = r.experts_per_token == moe::ExpertsPerToken::one;
  const bool capacity = r.capacity == moe::CapacityRule::required;
  return std::string("moe:\n  router: ") + r.key + "\n  top_k: " + (one ? "1" : "2") +
         "\n  capacity_factor: " + (capacity ? "1.0" : "0.0") + "\n  losses: " + losses + "\n";
}

bool reference_exists(const std::string& name) { return fs::exists(kSource / "tests/data/reference" / (name + ".h5")); }

}  // namespace

TEST_CASE("catalog: every router is accepted by the config loader, with its rules", "[catalog][config]") {
  for (const moe::RouterInfo& r : moe::router_infos()) {
    INFO("router " << r.key);
    const runconfig::RunConfig c = runconfig::parse_run_config(moe_yaml(r), "catalog.yaml");
    CHECK(c.moe.router == r.kind);
    CHECK(std::string(runconfig::to_string(c.moe.router)) == r.key);
    if (r.experts_per_token == moe::ExpertsPerToken::one)
      CHECK_THROWS_WITH(runconfig::parse_run_config(moe_yaml(r), "catalog.yaml", {"moe.top_k=2"}),
                        Contains("moe.top_k: router " + std::string(r.key) + " routes each token to one expert"));
    if (r.capacity == moe::CapacityRule::required)
      CHECK_THROWS_WITH(runconfig::parse_run_config(moe_yaml(r), "catalog.yaml", {"moe.capacity_factor=0"}),
                        Contains("moe.capacity_factor: router " + std::string(r.key) + " needs a capacity"));
  }
  CHECK_THROWS_WITH(runconfig::parse_run_config("moe: {router: nope}\n", "catalog.yaml"),
                    Contains("allowed: " + moe::router_keys()));
}

TEST_CASE("catalog: every balance loss is a config key, refused where its router lacks its input",
          "[catalog][config]") {
  for (const moe::LossInfo& l : moe::balance_loss_infos()) {
    for (const moe::RouterInfo& r : moe::router_infos()) {
      INFO("loss " << l.key << " with router " << r.key);
      const std::string yaml = moe_yaml(r, std::string("{") + l.key + ": 0.25}");
      if (r.provides(l.needs)) {
        const runconfig::RunConfig c = runconfig::parse_run_config(yaml, "catalog.yaml");
        CHECK(c.moe.losses.of(l.key) == 0.25);
      } else {
        CHECK_THROWS_WITH(runconfig::parse_run_config(yaml, "catalog.yaml"),
                          Contains(std::string("moe.losses.") + l.key + ": the " + l.key + " loss needs"));
      }
    }
  }
  CHECK_THROWS_WITH(runconfig::parse_run_config("moe:\n  losses: {nope: 1}\n", "catalog.yaml"), Contains("nope"));
}

TEST_CASE("catalog: configs/README.md holds the tables the catalog generates", "[catalog][docs]") {
  std::ifstream in(kSource / "configs/README.md");
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  // On failure: build/bin/moe-catalog --write configs/README.md
  CHECK(moe::with_catalog_markdown(text.str()) == text.str());
  for (const moe::RouterInfo& r : moe::router_infos()) CHECK_THAT(text.str(), Contains(std::string("`") + r.key + "`"));
  for (const moe::LossInfo& l : moe::balance_loss_infos())
    CHECK_THAT(text.str(), Contains(std::string("`moe.losses.") + l.key + "`"));
  CHECK_THROWS_WITH(moe::with_catalog_markdown("no markers here"), Contains("no generated catalog section"));
}

TEST_CASE("catalog: every router and every balance loss has a committed PyTorch reference", "[catalog][reference]") {
  for (const moe::RouterInfo& r : moe::router_infos()) {
    INFO("router " << r.key);
    CHECK(reference_exists(std::string(r.key) + "__ce_only"));
    for (const moe::LossInfo& l : moe::balance_loss_infos()) {
      INFO("loss " << l.key);
      if (r.provides(l.needs)) CHECK(reference_exists(std::string(r.key) + "__" + l.key));
    }
  }
}
