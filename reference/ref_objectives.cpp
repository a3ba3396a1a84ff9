// Synthetic objectives of the simulator: data generation, losses and analytic gradients in
// double, worker splits and minibatches (objectives.hpp, docs/simulator.md).
#include "gradcomp/ref/objectives.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "gradcomp/rng.hpp"

namespace gradcomp::ref {
namespace {

RngStream data_stream(std::uint64_t seed, DataTensor tensor, std::uint32_t step = 0,
                      std::uint32_t rank = 0) {
  return RngStream(seed, RngPurpose::kTestData, step, static_cast<std::uint32_t>(tensor), rank);
}

bool is_classification(ObjectiveKind kind) { return kind != ObjectiveKind::kLeastSquares; }

// Teacher logits z = W* a + b* of sample s (classification data).
void teacher_logits(const ObjectiveSpec& spec, const std::vector<float>& planted, const float* a,
                    std::vector<double>& z) {
  const std::uint32_t f_count = spec.features, c_count = spec.outputs;
  const float* b = planted.data() + static_cast<std::size_t>(c_count) * f_count;
  for (std::uint32_t c = 0; c < c_count; ++c) {
    double acc = b[c];
    for (std::uint32_t f = 0; f < f_count; ++f)
      acc += static_cast<double>(planted[static_cast<std::size_t>(c) * f_count + f]) * a[f];
    z[c] = acc;
  }
}

// Softmax cross-entropy of logits z against `label`: returns the loss, writes d = p - onehot.
double softmax_xent(const std::vector<double>& z, std::uint32_t label, std::vector<double>& d) {
  const double zmax = *std::max_element(z.begin(), z.end());
  double sum = 0.0;
  for (double v : z) sum += std::exp(v - zmax);
  const double lse = zmax + std::log(sum);
  for (std::size_t c = 0; c < z.size(); ++c) d[c] = std::exp(z[c] - lse);
  d[label] -= 1.0;
  return lse - z[label];
}

}  // namespace

std::vector<std::vector<std::uint64_t>> parameter_shapes(const ObjectiveSpec& spec) {
  const std::uint64_t f = spec.features, o = spec.outputs, h = spec.hidden;
  switch (spec.kind) {
    case ObjectiveKind::kLeastSquares: return {{o, f}};
    case ObjectiveKind::kLogistic: return {{o, f}, {o}};
    case ObjectiveKind::kMlp: return {{h, f}, {h}, {o, h}, {o}};
  }
  return {};
}

std::uint64_t parameter_count(const ObjectiveSpec& spec) {
  std::uint64_t n = 0;
  for (const auto& shape : parameter_shapes(spec)) {
    std::uint64_t count = 1;
    for (std::uint64_t dim : shape) count *= dim;
    n += count;
  }
  return n;
}

Status validate(const ObjectiveSpec& spec) {
  GRADCOMP_CHECK_ARG(spec.features >= 1, "objective: features must be >= 1");
  GRADCOMP_CHECK_ARG(spec.outputs >= (is_classification(spec.kind) ? 2u : 1u),
                     "objective: outputs must be >= 1 (>= 2 classes for classification), got ",
                     spec.outputs);
  GRADCOMP_CHECK_ARG(spec.kind != ObjectiveKind::kMlp || spec.hidden >= 1,
                     "objective: the MLP needs hidden >= 1");
  GRADCOMP_CHECK_ARG(spec.samples >= 1, "objective: need at least one sample");
  GRADCOMP_CHECK_ARG(std::isfinite(spec.noise) && spec.noise >= 0.0,
                     "objective: noise must be finite and >= 0, got ", spec.noise);
  // Flat indices of the data and of the parameters are element counters of the RNG and
  // std::size_t offsets: keep them far from overflow.
  const double data_elems =
      static_cast<double>(spec.samples) * std::max(spec.features, spec.outputs);
  GRADCOMP_CHECK_ARG(data_elems < 4e9, "objective: data set too large for the simulator (",
                     data_elems, " values)");
  GRADCOMP_CHECK_ARG(static_cast<double>(parameter_count(spec)) < 4e9,
                     "objective: too many parameters");
  return Status::success();
}

Result<Dataset> make_dataset(const ObjectiveSpec& spec) {
  GRADCOMP_TRY(validate(spec));
  Dataset data;
  data.spec = spec;
  const std::size_t n_samples = spec.samples, f_count = spec.features, o_count = spec.outputs;

  const RngStream features = data_stream(spec.seed, DataTensor::kFeatures);
  data.x.resize(n_samples * f_count);
  for (std::size_t i = 0; i < data.x.size(); ++i)
    data.x[i] = static_cast<float>(features.normal(i));

  const RngStream planted = data_stream(spec.seed, DataTensor::kPlanted);
  const RngStream noise = data_stream(spec.seed, DataTensor::kNoise);
  if (!is_classification(spec.kind)) {
    // W* ~ N(0, 1); y = W* a + noise * N(0, 1), in double, stored as float.
    data.planted.resize(o_count * f_count);
    for (std::size_t i = 0; i < data.planted.size(); ++i)
      data.planted[i] = static_cast<float>(planted.normal(i));
    data.y.resize(n_samples * o_count);
    for (std::size_t s = 0; s < n_samples; ++s) {
      for (std::size_t o = 0; o < o_count; ++o) {
        double acc = 0.0;
        for (std::size_t f = 0; f < f_count; ++f)
          acc += static_cast<double>(data.planted[o * f_count + f]) * data.x[s * f_count + f];
        if (spec.noise > 0) acc += spec.noise * noise.normal(s * o_count + o);
        data.y[s * o_count + o] = static_cast<float>(acc);
      }
    }
    // Labels: equal-count buckets of the first target (ties by sample index).
    std::vector<std::uint32_t> order(n_samples);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return data.y[a * o_count] < data.y[b * o_count];
    });
    data.labels.resize(n_samples);
    for (std::size_t rank = 0; rank < n_samples; ++rank)
      data.labels[order[rank]] = static_cast<std::uint32_t>(rank * o_count / n_samples);
    return data;
  }
  // Teacher: W* ~ N(0, 4 / features) (logits of standard deviation about 2), b* ~ N(0, 1/4);
  // label = argmax_c (z_c + noise * N(0, 1)), the lowest class on ties.
  const double w_scale = 2.0 / std::sqrt(static_cast<double>(f_count));
  data.planted.resize(o_count * f_count + o_count);
  for (std::size_t i = 0; i < o_count * f_count; ++i)
    data.planted[i] = static_cast<float>(w_scale * planted.normal(i));
  for (std::size_t c = 0; c < o_count; ++c) {
    const std::size_t i = o_count * f_count + c;
    data.planted[i] = static_cast<float>(0.5 * planted.normal(i));
  }
  data.labels.resize(n_samples);
  std::vector<double> z(o_count);
  for (std::size_t s = 0; s < n_samples; ++s) {
    teacher_logits(spec, data.planted, &data.x[s * f_count], z);
    if (spec.noise > 0)
      for (std::size_t c = 0; c < o_count; ++c) z[c] += spec.noise * noise.normal(s * o_count + c);
    data.labels[s] = static_cast<std::uint32_t>(std::max_element(z.begin(), z.end()) - z.begin());
  }
  return data;
}

std::vector<float> initial_point(const ObjectiveSpec& spec) {
  const RngStream init = data_stream(spec.seed, DataTensor::kInitial);
  std::vector<float> x0;
  x0.reserve(parameter_count(spec));
  for (const auto& shape : parameter_shapes(spec)) {
    if (shape.size() == 1) {  // bias
      x0.insert(x0.end(), shape[0], 0.0f);
      continue;
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(shape[1]));
    for (std::uint64_t i = 0; i < shape[0] * shape[1]; ++i)
      x0.push_back(static_cast<float>(scale * init.normal(x0.size())));
  }
  return x0;
}

Status evaluate(const Dataset& data, Span<const float> params, Span<const std::uint32_t> idx,
                double* loss, std::vector<double>* grad) {
  const ObjectiveSpec& spec = data.spec;
  const std::uint64_t n = parameter_count(spec);
  GRADCOMP_CHECK_ARG(params.size() == n, "objective: got ", params.size(),
                     " parameters, the model has ", n);
  for (std::uint32_t s : idx)
    GRADCOMP_CHECK_ARG(s < spec.samples, "objective: sample ", s, " out of range");
  const std::size_t count = idx.empty() ? spec.samples : idx.size();
  auto sample_at = [&](std::size_t j) -> std::size_t { return idx.empty() ? j : idx[j]; };

  const std::size_t f_count = spec.features, o_count = spec.outputs, h_count = spec.hidden;
  std::vector<double> g(grad ? n : 0, 0.0);
  double total = 0.0;
  std::vector<double> z(o_count), d(o_count), h(h_count), dh(h_count);
  // Per sample: the loss and its gradient, summed in sample order, then divided by the count.
  for (std::size_t j = 0; j < count; ++j) {
    const std::size_t s = sample_at(j);
    const float* a = &data.x[s * f_count];
    switch (spec.kind) {
      case ObjectiveKind::kLeastSquares: {
        // 0.5 ||W a - y||^2; dW = r a^T.
        for (std::size_t o = 0; o < o_count; ++o) {
          double r = -static_cast<double>(data.y[s * o_count + o]);
          for (std::size_t f = 0; f < f_count; ++f)
            r += static_cast<double>(params[o * f_count + f]) * a[f];
          total += 0.5 * r * r;
          if (grad)
            for (std::size_t f = 0; f < f_count; ++f) g[o * f_count + f] += r * a[f];
        }
        break;
      }
      case ObjectiveKind::kLogistic: {
        const std::size_t b_off = o_count * f_count;
        for (std::size_t c = 0; c < o_count; ++c) {
          double acc = params[b_off + c];
          for (std::size_t f = 0; f < f_count; ++f)
            acc += static_cast<double>(params[c * f_count + f]) * a[f];
          z[c] = acc;
        }
        total += softmax_xent(z, data.labels[s], d);
        if (grad) {
          for (std::size_t c = 0; c < o_count; ++c) {
            for (std::size_t f = 0; f < f_count; ++f) g[c * f_count + f] += d[c] * a[f];
            g[b_off + c] += d[c];
          }
        }
        break;
      }
      case ObjectiveKind::kMlp: {
        // Offsets of W1 [h, f], b1 [h], W2 [o, h], b2 [o].
        const std::size_t b1 = h_count * f_count, w2 = b1 + h_count, b2 = w2 + o_count * h_count;
        for (std::size_t k = 0; k < h_count; ++k) {
          double acc = params[b1 + k];
          for (std::size_t f = 0; f < f_count; ++f)
            acc += static_cast<double>(params[k * f_count + f]) * a[f];
          h[k] = std::tanh(acc);
        }
        for (std::size_t c = 0; c < o_count; ++c) {
          double acc = params[b2 + c];
          for (std::size_t k = 0; k < h_count; ++k)
            acc += static_cast<double>(params[w2 + c * h_count + k]) * h[k];
          z[c] = acc;
        }
        total += softmax_xent(z, data.labels[s], d);
        if (grad) {
          for (std::size_t k = 0; k < h_count; ++k) dh[k] = 0.0;
          for (std::size_t c = 0; c < o_count; ++c) {
            for (std::size_t k = 0; k < h_count; ++k) {
              g[w2 + c * h_count + k] += d[c] * h[k];
              dh[k] += static_cast<double>(params[w2 + c * h_count + k]) * d[c];
            }
            g[b2 + c] += d[c];
          }
          for (std::size_t k = 0; k < h_count; ++k) {
            const double dpre = dh[k] * (1.0 - h[k] * h[k]);  // tanh' = 1 - tanh^2
            for (std::size_t f = 0; f < f_count; ++f) g[k * f_count + f] += dpre * a[f];
            g[b1 + k] += dpre;
          }
        }
        break;
      }
    }
  }
  const double inv = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;
  if (loss) *loss = total * inv;
  if (grad) {
    for (double& v : g) v *= inv;
    grad->swap(g);
  }
  return Status::success();
}

Result<std::vector<std::vector<std::uint32_t>>> split_samples(const Dataset& data,
                                                              std::uint32_t workers,
                                                              DataSplit split, double skew) {
  const std::uint32_t n_samples = data.spec.samples;
  GRADCOMP_CHECK_ARG(workers >= 1, "split: need at least one worker");
  GRADCOMP_CHECK_ARG(n_samples >= workers, "split: ", n_samples, " samples cannot give each of ",
                     workers, " workers one");
  GRADCOMP_CHECK_ARG(skew >= 0.0 && skew <= 1.0, "split: skew must be in [0, 1], got ", skew);
  // The seeded shuffle (Fisher-Yates from the end; draw element = position).
  const RngStream shuffle = data_stream(data.spec.seed, DataTensor::kShuffle);
  std::vector<std::uint32_t> order(n_samples);
  std::iota(order.begin(), order.end(), 0u);
  for (std::uint32_t i = n_samples - 1; i >= 1; --i)
    std::swap(order[i], order[shuffle.uniform_below(std::uint64_t{i} + 1, i)]);

  std::vector<std::vector<std::uint32_t>> shards(workers);
  if (split == DataSplit::kIid) {
    for (std::uint32_t pos = 0; pos < n_samples; ++pos) shards[pos % workers].push_back(order[pos]);
    return shards;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return data.labels[a] < data.labels[b];
  });
  std::vector<std::uint32_t> pool;
  for (std::uint32_t w = 0; w < workers; ++w) {
    const std::uint64_t begin = std::uint64_t{n_samples} * w / workers;
    const std::uint64_t end = std::uint64_t{n_samples} * (w + 1) / workers;
    const auto keep =
        static_cast<std::uint64_t>(std::llround(skew * static_cast<double>(end - begin)));
    for (std::uint64_t pos = begin; pos < end; ++pos)
      (pos - begin < keep ? shards[w] : pool).push_back(order[pos]);
  }
  for (std::size_t q = 0; q < pool.size(); ++q) shards[q % workers].push_back(pool[q]);
  return shards;
}

Result<std::vector<std::uint32_t>> minibatch(const std::vector<std::uint32_t>& shard,
                                             std::uint32_t batch, std::uint64_t seed,
                                             std::uint32_t step, std::uint32_t worker) {
  if (batch == 0) return shard;
  GRADCOMP_CHECK_ARG(batch <= shard.size(), "minibatch of ", batch, " from a shard of ",
                     shard.size(), " samples (worker ", worker, ")");
  const RngStream draws = data_stream(seed, DataTensor::kMinibatch, step, worker);
  std::vector<std::uint32_t> pick = shard;
  for (std::uint32_t j = 0; j < batch; ++j)
    std::swap(pick[j], pick[j + draws.uniform_below(pick.size() - j, j)]);
  pick.resize(batch);
  return pick;
}

std::uint64_t fnv1a64(Span<const float> values) {
  std::uint64_t h = 14695981039346656037ull;
  for (float v : values) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int byte = 0; byte < 4; ++byte) {  // little-endian byte order on every host
      h ^= (bits >> (8 * byte)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

}  // namespace gradcomp::ref
