// Unit tests of the model and the bucket conversions (torch).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "resnet.hpp"

namespace gt = gradcomp::train;

namespace {

// Parameters of the CIFAR ResNet with n blocks per stage, counted from the architecture:
// conv k x k (cin -> cout, no bias) = k*k*cin*cout, BN(c) = 2c (weight, bias), Linear = in*out +
// out.
struct Count {
  std::uint64_t params, tensors;
};
Count expected_count(std::uint64_t n) {
  auto conv = [](std::uint64_t k, std::uint64_t ci, std::uint64_t co) { return k * k * ci * co; };
  auto bn = [](std::uint64_t c) { return 2 * c; };
  std::uint64_t p = conv(3, 1, 16) + bn(16), t = 3;  // stem
  const std::uint64_t w[3] = {16, 32, 64};
  std::uint64_t in = 16;
  for (int s = 0; s < 3; ++s) {
    for (std::uint64_t b = 0; b < n; ++b) {
      p += conv(3, in, w[s]) + bn(w[s]) + conv(3, w[s], w[s]) + bn(w[s]);
      t += 6;
      if (in != w[s]) {  // projection shortcut
        p += conv(1, in, w[s]) + bn(w[s]);
        t += 3;
      }
      in = w[s];
    }
  }
  return {p + 64 * 10 + 10, t + 2};
}

}  // namespace

TEST(TrainResNet, ParameterCountsMatchTheArchitecture) {
  // Cross-check of the formula itself against the published ResNet-20 size (0.27M, He et al.
  // Table 6, with 3 input channels: 3*9*16 - 1*9*16 = 288 more).
  EXPECT_EQ(expected_count(3).params + 288, 272474u);
  for (auto [name, n] : {std::pair<const char*, int>{"resnet8", 1}, {"resnet20", 3}}) {
    auto m = gt::ResNet::create(name);
    ASSERT_TRUE(m.ok());
    const auto params = (*m)->parameters();
    const Count want = expected_count(static_cast<std::uint64_t>(n));
    EXPECT_EQ(gt::total_numel(params), want.params) << name;
    EXPECT_EQ(params.size(), want.tensors) << name;
    EXPECT_EQ(gt::tensor_shapes(params).size(), params.size());
  }
  EXPECT_FALSE(gt::ResNet::create("resnet50").ok());
}

TEST(TrainResNet, ForwardShapeAndSeededInit) {
  torch::manual_seed(3);
  auto a = std::move(gt::ResNet::create("resnet8").value());
  torch::manual_seed(3);
  auto b = std::move(gt::ResNet::create("resnet8").value());
  std::vector<float> fa, fb;
  ASSERT_TRUE(gt::flatten_tensors(a->parameters(), fa).ok());
  ASSERT_TRUE(gt::flatten_tensors(b->parameters(), fb).ok());
  EXPECT_EQ(fa, fb);
  const auto y = a->forward(torch::randn({4, 1, 28, 28}));
  EXPECT_EQ(y.sizes(), (std::vector<std::int64_t>{4, 10}));
}

TEST(TrainResNet, FlattenUnflattenRoundTrip) {
  torch::manual_seed(0);
  auto m = std::move(gt::ResNet::create("resnet8").value());
  const auto params = m->parameters();
  const auto shapes = gt::tensor_shapes(params);
  EXPECT_EQ(shapes[0], (std::vector<std::uint64_t>{16, 1, 3, 3}));  // stem conv
  std::vector<float> flat;
  ASSERT_TRUE(gt::flatten_tensors(params, flat).ok());
  ASSERT_EQ(flat.size(), gt::total_numel(params));
  // Element 9*16 is the first BN weight (1 after init): the layout is registration order.
  EXPECT_EQ(flat[9 * 16], 1.0f);
  EXPECT_EQ(flat[0], params[0].view(-1)[0].item<float>());
  // Write a known pattern, read it back through the tensors.
  std::vector<float> pattern(flat.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<float>(i) * 0.5f - 3;
  ASSERT_TRUE(gt::unflatten_tensors(pattern, params).ok());
  EXPECT_EQ(params[1].view(-1)[2].item<float>(), pattern[9 * 16 + 2]);
  std::vector<float> back;
  ASSERT_TRUE(gt::flatten_tensors(params, back).ok());
  EXPECT_EQ(back, pattern);
  std::vector<float> short_flat(pattern.size() - 1);
  EXPECT_EQ(gt::unflatten_tensors(short_flat, params).code(),
            gradcomp::StatusCode::kInvalidArgument);
}

TEST(TrainResNet, BackwardWritesIntoTheBoundBucket) {
  torch::manual_seed(1);
  auto a = std::move(gt::ResNet::create("resnet8").value());
  torch::manual_seed(1);
  auto b = std::move(gt::ResNet::create("resnet8").value());
  const auto x = torch::randn({8, 1, 28, 28});
  const auto y = torch::randint(0, 10, {8}, torch::kLong);
  // a: ordinary grads, concatenated afterwards. b: grads bound to a flat bucket.
  torch::nn::functional::cross_entropy(a->forward(x), y).backward();
  const auto pb = b->parameters();
  at::Tensor flat = gt::bind_flat_grads(pb);
  torch::nn::functional::cross_entropy(b->forward(x), y).backward();
  std::vector<torch::Tensor> ga;
  for (const auto& p : a->parameters()) ga.push_back(p.grad().reshape(-1));
  EXPECT_TRUE(torch::equal(torch::cat(ga), flat));
  EXPECT_GT(flat.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(pb[1].grad().data_ptr<float>(), flat.data_ptr<float>() + 16 * 9);
  // Zeroing the bucket zeroes the grads and keeps the aliasing for the next step.
  flat.zero_();
  torch::nn::functional::cross_entropy(b->forward(x), y).backward();
  EXPECT_TRUE(torch::equal(torch::cat(ga), flat));
}

TEST(TrainResNet, BuffersSerializeRoundTrip) {
  torch::manual_seed(2);
  auto m = std::move(gt::ResNet::create("resnet8").value());
  // One training-mode forward moves the running statistics off their init values.
  m->train(true);
  m->forward(torch::randn({4, 1, 28, 28}));
  const auto buffers = m->buffers();
  const auto fb = gt::float_buffers(buffers);
  // resnet8 has 9 BN layers: stem, 2 per block (3 blocks), 1 per projection (2).
  EXPECT_EQ(fb.size(), 2u * 9u);       // running mean + var
  EXPECT_EQ(buffers.size(), 3u * 9u);  // + num_batches_tracked
  const auto bytes = gt::serialize_buffers(buffers);
  std::vector<at::Tensor> saved;
  for (const auto& b : buffers) saved.push_back(b.clone());
  for (const auto& b : buffers) b.fill_(0);
  ASSERT_TRUE(gt::deserialize_buffers(bytes, buffers).ok());
  for (std::size_t i = 0; i < buffers.size(); ++i) EXPECT_TRUE(torch::equal(buffers[i], saved[i]));
  EXPECT_EQ(buffers.back().item<std::int64_t>(), 1);  // num_batches_tracked after one batch
  // A truncated or resized blob changes nothing.
  for (const auto& b : buffers) b.fill_(7);
  std::vector<std::uint8_t> cut(bytes.begin(), bytes.end() - 1);
  EXPECT_FALSE(gt::deserialize_buffers(cut, buffers).ok());
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(gt::deserialize_buffers(longer, buffers).ok());
  for (const auto& b : buffers) EXPECT_EQ(b.max().item<double>(), 7.0);
}
