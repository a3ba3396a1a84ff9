// The CIFAR-style ResNet of gradcomp-train (He et al. 2016, §4.2) for 1 x 28 x 28 inputs, and
// the conversions between its tensors and the flat fp32 bucket the distributed optimizer uses.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace torch::nn {
class Module;
}

namespace gradcomp::train {

// stem conv3x3(1->16)-BN-ReLU; three stages of `blocks` BasicBlocks (widths 16/32/64, strides
// 1/2/2, 1x1-conv+BN projection where the shape changes); global average pool; Linear(64->10).
// Convolutions have no bias (BN follows) and Kaiming-normal (fan_out, ReLU) initialisation.
// resnet8 = 1 block per stage, resnet20 = 3. Initial weights come from torch's global
// generator: call torch::manual_seed first for a seeded model.
class ResNet {
 public:
  static Result<std::unique_ptr<ResNet>> create(const std::string& name);
  ~ResNet();

  at::Tensor forward(const at::Tensor& x);  // [N, 1, 28, 28] -> logits [N, 10]
  void train(bool on);
  std::vector<at::Tensor> parameters() const;  // registration order: the bucket layout
  std::vector<at::Tensor> buffers() const;     // BN running_mean/var (fp32), num_batches_tracked
  torch::nn::Module& module();

 private:
  ResNet() = default;
  std::shared_ptr<torch::nn::Module> impl_;
  at::Tensor (*forward_)(torch::nn::Module&, const at::Tensor&) = nullptr;
};

// Layout of the bucket: one shape per tensor, as DistributedOptimizer::create() takes it.
std::vector<std::vector<std::uint64_t>> tensor_shapes(const std::vector<at::Tensor>& ts);
std::uint64_t total_numel(const std::vector<at::Tensor>& ts);

// Concatenates fp32 tensors (in order, row-major) into out, resized to total_numel.
Status flatten_tensors(const std::vector<at::Tensor>& ts, std::vector<float>& out);
// Copies flat back into the tensors (without autograd); flat.size() must equal total_numel.
Status unflatten_tensors(Span<const float> flat, const std::vector<at::Tensor>& ts);

// Makes every parameter's .grad a view into one zeroed fp32 tensor and returns it, so that
// backward() accumulates straight into the bucket (zero it with .zero_(), not optimizer
// zero_grad(), which would detach the views).
at::Tensor bind_flat_grads(const std::vector<at::Tensor>& params);

// The float buffers (BN running statistics) only: what ranks average each epoch.
std::vector<at::Tensor> float_buffers(const std::vector<at::Tensor>& buffers);

// All buffers as bytes (per buffer: u8 dtype 0 = fp32 / 1 = int64, u64 numel, raw data) and back;
// deserialize checks every dtype and size and changes nothing on error.
std::vector<std::uint8_t> serialize_buffers(const std::vector<at::Tensor>& buffers);
Status deserialize_buffers(Span<const std::uint8_t> bytes, const std::vector<at::Tensor>& buffers);

}  // namespace gradcomp::train
