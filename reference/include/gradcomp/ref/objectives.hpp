// Synthetic objectives of the P-worker simulator (docs/simulator.md): least squares, multinomial
// logistic regression and a tiny tanh MLP on data generated from a seed, worker splits (IID and
// label-skewed) and deterministic minibatches. Everything here is a pure function of its
// arguments, so the MPI runs of a later issue can regenerate the same data on every rank.
//
// Keying: every random number is RngStream(seed, RngPurpose::kTestData, step, tensor id, rank)
// with the tensor ids below (step = 0 and rank = 0 except for minibatches).
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/ref/simulator.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

// Tensor ids of the kTestData streams. Part of the data contract: never renumber.
enum class DataTensor : std::uint32_t {
  kFeatures = 1,   // a[s][f] = normal(s * features + f)
  kPlanted = 2,    // planted model W* (least squares) / teacher (W*, b*) for the labels
  kNoise = 3,      // target noise (least squares) / logit noise (classification)
  kInitial = 4,    // initial point x0
  kShuffle = 5,    // the seeded shuffle of the IID split and the tie order of the non-IID split
  kMinibatch = 6,  // minibatch draws: step = t, rank = worker
};

struct ObjectiveSpec {
  ObjectiveKind kind = ObjectiveKind::kLeastSquares;
  std::uint32_t features = 16;
  std::uint32_t outputs = 4;  // regression outputs / classes
  std::uint32_t hidden = 8;   // MLP only
  std::uint32_t samples = 256;
  double noise = 0.0;
  std::uint64_t seed = 1;
};

// A generated data set.
struct Dataset {
  ObjectiveSpec spec;
  std::vector<float> x;  // samples x features, row-major
  std::vector<float> y;  // least squares: samples x outputs targets; classification: empty
  // Classification: the class of each sample. Least squares: the bucket of the sample's first
  // target among `outputs` equal-count buckets (what the non-IID split sorts by).
  std::vector<std::uint32_t> labels;
  // The planted model in the parameter layout of the objective (least squares: W*, the optimum
  // when noise = 0; logistic: the teacher (W*, b*); MLP: the linear teacher, (W*, b*)).
  std::vector<float> planted;
};

// The parameter layout: the tensors of the model in order, concatenated row-major.
//   least squares: W [outputs, features]
//   logistic:      W [outputs, features], b [outputs]
//   MLP:           W1 [hidden, features], b1 [hidden], W2 [outputs, hidden], b2 [outputs]
std::vector<std::vector<std::uint64_t>> parameter_shapes(const ObjectiveSpec& spec);
std::uint64_t parameter_count(const ObjectiveSpec& spec);

Status validate(const ObjectiveSpec& spec);
Result<Dataset> make_dataset(const ObjectiveSpec& spec);

// x0: weight matrices N(0, 1/fan_in), biases 0 (kInitial stream, element = flat index).
std::vector<float> initial_point(const ObjectiveSpec& spec);

// Mean loss over the samples `idx` (all samples when idx is empty), accumulated in double in
// index order. grad (optional): the gradient of that mean loss, in double, size
// parameter_count. params must have parameter_count elements.
Status evaluate(const Dataset& data, Span<const float> params, Span<const std::uint32_t> idx,
                double* loss, std::vector<double>* grad);

// Which samples each worker holds. IID: a seeded shuffle dealt round-robin. Non-IID: samples
// sorted by label (ties in shuffled order) and cut into `workers` contiguous chunks; worker i
// keeps the first round(skew * |chunk_i|) of its chunk, the rest of every chunk is pooled (chunk
// order) and dealt round-robin. skew = 1: disjoint label ranges; skew = 0: sorted deal.
Result<std::vector<std::vector<std::uint32_t>>> split_samples(const Dataset& data,
                                                              std::uint32_t workers,
                                                              DataSplit split, double skew);

// Worker `worker`'s minibatch at step t: `batch` distinct samples of its shard by a partial
// Fisher-Yates shuffle keyed (seed, kMinibatch, t, worker); batch = 0: the whole shard in order.
Result<std::vector<std::uint32_t>> minibatch(const std::vector<std::uint32_t>& shard,
                                             std::uint32_t batch, std::uint64_t seed,
                                             std::uint32_t step, std::uint32_t worker);

// FNV-1a 64 of the little-endian bytes of the floats (the trajectory's parameter checksum).
std::uint64_t fnv1a64(Span<const float> values);

}  // namespace gradcomp::ref
