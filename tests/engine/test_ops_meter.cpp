// meter_begin / meter_end: the reading of a region's forward and of its backward, on a clock the
// test advances by hand inside ops' forward and backward, so the accounting is checked exactly.
#include <catch2/catch.hpp>

#include "engine/engine.h"

using namespace engine;

namespace {

double now = 0;

// An identity op that advances the clock by `forward` when it runs and by `backward` when its
// backward runs: a stand-in for work inside or outside a metered region.
Tensor busy(const Tensor& x, double forward, double backward) {
  now += forward;
  Tensor y = make_view(x, x.shape(), x.strides(), x.offset());
  if (needs_grad({x}))
    record(y, {x}, [backward](const Tensor& dy, GradSink& g) {
      now += backward;
      g.add(0, dy);
    });
  return y;
}

std::shared_ptr<Meter> fake_meter() {
  auto m = std::make_shared<Meter>();
  m->read = [] { return now; };
  return m;
}

}  // namespace

TEST_CASE("meter: a region's forward and backward readings, and nothing outside it", "[meter]") {
  now = 100;
  auto m = fake_meter();
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3});
  x.set_requires_grad(true);
  Tensor before = busy(x, 1, 10);                                     // outside: not counted
  Tensor inside = meter_end(busy(meter_begin(before, m), 2, 20), m);  // the region
  Tensor after = busy(inside, 4, 40);                                 // outside: not counted
  CHECK(m->forward == 2);
  CHECK(m->backward == 0);
  backward(sum_all(scale(after, 3.0)));
  CHECK(m->backward == 20);
  CHECK(m->total() == 22);
  // The brackets pass the gradient through untouched.
  CHECK(x.grad().to_vector() == std::vector<double>{3, 3, 3});
}

TEST_CASE("meter: regions that follow one another pair their own brackets in backward", "[meter]") {
  now = 0;
  auto m = fake_meter();
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2});
  x.set_requires_grad(true);
  Tensor first = meter_end(busy(meter_begin(x, m), 1, 5), m);
  Tensor between = busy(first, 0, 100);  // between the two regions: never counted
  Tensor second = meter_end(busy(meter_begin(between, m), 1, 7), m);
  backward(sum_all(second));
  CHECK(m->forward == 2);
  CHECK(m->backward == 12);
  m->reset();
  CHECK(m->total() == 0);
}

TEST_CASE("meter: without a gradient only the forward is read", "[meter]") {
  now = 0;
  auto m = fake_meter();
  NoGradScope no_grad;
  Tensor x = Tensor::from_vector(std::vector<double>{1}, {1});
  meter_end(busy(meter_begin(x, m), 3, 9), m);
  CHECK(m->forward == 3);
  CHECK(m->backward == 0);
  CHECK(tape_size() == 0);
}

TEST_CASE("meter: a meter without a reading is refused", "[meter]") {
  auto m = std::make_shared<Meter>();
  Tensor x = Tensor::zeros({2}, DType::f32);
  CHECK_THROWS_WITH(meter_begin(x, m), Catch::Contains("without a reading"));
}

TEST_CASE("meter: a region whose input needs no gradient puts nothing on the tape", "[meter]") {
  now = 0;
  auto m = fake_meter();
  Tensor w = Tensor::from_vector(std::vector<double>{2}, {1});
  w.set_requires_grad(true);  // the region's weights need a gradient, its input does not
  const Tensor x = Tensor::from_vector(std::vector<double>{3}, {1});
  const size_t before = tape_size();
  Tensor y = meter_end(busy(mul(meter_begin(x, m), w), 1, 50), m);
  CHECK(tape_size() == before + 2);  // mul and busy only: no bracket
  CHECK(m->forward == 1);
  backward(sum_all(y));
  CHECK(m->backward == 0);
  CHECK_FALSE(m->backward_open);  // nothing left open to swallow a later region's reading
  CHECK(w.grad().to_vector() == std::vector<double>{3});
}
