#include "resnet.hpp"

#include <torch/torch.h>

#include <cstring>

namespace gradcomp::train {
namespace {

namespace nn = torch::nn;

struct BasicBlockImpl : nn::Module {
  BasicBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride)
      : conv1(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)),
        bn1(out),
        conv2(nn::Conv2dOptions(out, out, 3).stride(1).padding(1).bias(false)),
        bn2(out) {
    register_module("conv1", conv1);
    register_module("bn1", bn1);
    register_module("conv2", conv2);
    register_module("bn2", bn2);
    if (stride != 1 || in != out) {
      proj_conv = register_module(
          "proj_conv", nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      proj_bn = register_module("proj_bn", nn::BatchNorm2d(out));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    auto shortcut = proj_conv ? proj_bn(proj_conv(x)) : x;
    return torch::relu(y + shortcut);
  }
  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Conv2d proj_conv{nullptr};
  nn::BatchNorm2d proj_bn{nullptr};
};
TORCH_MODULE(BasicBlock);

struct ResNetImpl : nn::Module {
  explicit ResNetImpl(int blocks)
      : stem(nn::Conv2dOptions(1, 16, 3).stride(1).padding(1).bias(false)),
        stem_bn(16),
        fc(64, 10) {
    register_module("stem", stem);
    register_module("stem_bn", stem_bn);
    const std::int64_t widths[3] = {16, 32, 64};
    std::int64_t in = 16;
    for (int s = 0; s < 3; ++s) {
      for (int b = 0; b < blocks; ++b) {
        const std::int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stages->push_back(BasicBlock(in, widths[s], stride));
        in = widths[s];
      }
    }
    register_module("stages", stages);
    register_module("fc", fc);
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      }
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(stem_bn(stem(x)));
    y = stages->forward(y);
    y = torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1);
    return fc(y);
  }
  nn::Conv2d stem;
  nn::BatchNorm2d stem_bn;
  nn::Sequential stages;
  nn::Linear fc;
};

at::Tensor forward_resnet(nn::Module& m, const at::Tensor& x) {
  return static_cast<ResNetImpl&>(m).forward(x);
}

}  // namespace

Result<std::unique_ptr<ResNet>> ResNet::create(const std::string& name) {
  int blocks = 0;
  if (name == "resnet8") blocks = 1;
  if (name == "resnet20") blocks = 3;
  GRADCOMP_CHECK_ARG(blocks > 0, "model '", name, "' is not known (use resnet8 or resnet20)");
  std::unique_ptr<ResNet> r(new ResNet());
  r->impl_ = std::make_shared<ResNetImpl>(blocks);
  r->forward_ = &forward_resnet;
  return r;
}

ResNet::~ResNet() = default;
at::Tensor ResNet::forward(const at::Tensor& x) { return forward_(*impl_, x); }
void ResNet::train(bool on) { impl_->train(on); }
std::vector<at::Tensor> ResNet::parameters() const { return impl_->parameters(); }
std::vector<at::Tensor> ResNet::buffers() const { return impl_->buffers(); }
torch::nn::Module& ResNet::module() { return *impl_; }

std::vector<std::vector<std::uint64_t>> tensor_shapes(const std::vector<at::Tensor>& ts) {
  std::vector<std::vector<std::uint64_t>> shapes;
  for (const auto& t : ts) {
    std::vector<std::uint64_t> s;
    for (auto d : t.sizes()) s.push_back(static_cast<std::uint64_t>(d));
    shapes.push_back(std::move(s));
  }
  return shapes;
}

std::uint64_t total_numel(const std::vector<at::Tensor>& ts) {
  std::uint64_t n = 0;
  for (const auto& t : ts) n += static_cast<std::uint64_t>(t.numel());
  return n;
}

Status flatten_tensors(const std::vector<at::Tensor>& ts, std::vector<float>& out) {
  out.resize(total_numel(ts));
  std::size_t off = 0;
  for (const auto& t : ts) {
    GRADCOMP_CHECK_ARG(t.scalar_type() == at::kFloat, "flatten_tensors: tensor of type ",
                       t.scalar_type(), " (expected float32)");
    const at::Tensor c = t.detach().contiguous();
    std::memcpy(out.data() + off, c.data_ptr<float>(), sizeof(float) * c.numel());
    off += static_cast<std::size_t>(c.numel());
  }
  return Status::success();
}

Status unflatten_tensors(Span<const float> flat, const std::vector<at::Tensor>& ts) {
  const std::uint64_t n = total_numel(ts);
  GRADCOMP_CHECK_ARG(flat.size() == n, "unflatten_tensors: ", flat.size(),
                     " values for tensors of ", n, " elements");
  at::NoGradGuard no_grad;
  std::size_t off = 0;
  for (const auto& t : ts) {
    GRADCOMP_CHECK_ARG(t.scalar_type() == at::kFloat && t.is_contiguous(),
                       "unflatten_tensors: tensors must be contiguous float32");
    std::memcpy(t.data_ptr<float>(), flat.data() + off, sizeof(float) * t.numel());
    off += static_cast<std::size_t>(t.numel());
  }
  return Status::success();
}

at::Tensor bind_flat_grads(const std::vector<at::Tensor>& params) {
  at::Tensor flat = torch::zeros({static_cast<std::int64_t>(total_numel(params))}, torch::kFloat);
  std::int64_t off = 0;
  for (auto p : params) {
    p.mutable_grad() = flat.narrow(0, off, p.numel()).view_as(p);
    off += p.numel();
  }
  return flat;
}

std::vector<at::Tensor> float_buffers(const std::vector<at::Tensor>& buffers) {
  std::vector<at::Tensor> out;
  for (const auto& b : buffers)
    if (b.scalar_type() == at::kFloat) out.push_back(b);
  return out;
}

std::vector<std::uint8_t> serialize_buffers(const std::vector<at::Tensor>& buffers) {
  std::vector<std::uint8_t> out;
  for (const auto& b : buffers) {
    const at::Tensor c = b.detach().contiguous();
    out.push_back(c.scalar_type() == at::kFloat ? 0 : 1);
    const auto n = static_cast<std::uint64_t>(c.numel());
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
    const auto* p = static_cast<const std::uint8_t*>(c.data_ptr());
    out.insert(out.end(), p, p + c.numel() * c.element_size());
  }
  return out;
}

Status deserialize_buffers(Span<const std::uint8_t> bytes, const std::vector<at::Tensor>& buffers) {
  // Check everything first so that an error leaves the buffers untouched.
  std::size_t pos = 0;
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    const auto& b = buffers[i];
    GRADCOMP_CHECK_ARG(b.scalar_type() == at::kFloat || b.scalar_type() == at::kLong,
                       "deserialize_buffers: buffer ", i, " has unsupported type ",
                       b.scalar_type());
    GRADCOMP_CHECK_PAYLOAD(bytes.size() - pos >= 9, "model buffers: truncated at buffer ", i);
    const int want = b.scalar_type() == at::kFloat ? 0 : 1;
    GRADCOMP_CHECK_PAYLOAD(bytes[pos] == want, "model buffers: buffer ", i, " has dtype code ",
                           int(bytes[pos]), ", the model has ", want);
    std::uint64_t n = 0;
    for (int k = 0; k < 8; ++k) n |= std::uint64_t(bytes[pos + 1 + k]) << (8 * k);
    GRADCOMP_CHECK_PAYLOAD(n == static_cast<std::uint64_t>(b.numel()), "model buffers: buffer ", i,
                           " has ", n, " elements, the model has ", b.numel());
    pos += 9;
    const std::size_t len = static_cast<std::size_t>(n) * b.element_size();
    GRADCOMP_CHECK_PAYLOAD(bytes.size() - pos >= len, "model buffers: truncated in buffer ", i);
    offsets.push_back(pos);
    pos += len;
  }
  GRADCOMP_CHECK_PAYLOAD(pos == bytes.size(), "model buffers: ", bytes.size() - pos,
                         " bytes more than the model has");
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    GRADCOMP_CHECK_ARG(buffers[i].is_contiguous(), "deserialize_buffers: buffer ", i,
                       " is not contiguous");
    std::memcpy(buffers[i].data_ptr(), bytes.data() + offsets[i],
                buffers[i].numel() * buffers[i].element_size());
  }
  return Status::success();
}

}  // namespace gradcomp::train
