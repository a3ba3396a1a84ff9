// gradcomp-train: data-parallel training of a CIFAR-style ResNet on Fashion-MNIST, one MPI rank
// per worker, every gradient going through gradcomp's DistributedOptimizer (any preset).
// See docs/train.md for the options, what is measured and the checkpoint format.
#include <mpi.h>
#include <sched.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint.hpp"
#include "fmnist.hpp"
#include "gradcomp/coll/distributed_optimizer.hpp"
#include "gradcomp/coll/mpi_communicator.hpp"
#include "lr_schedule.hpp"
#include "options.hpp"
#include "resnet.hpp"
#include "split.hpp"
#include "train_json.hpp"

namespace gt = gradcomp::train;
namespace coll = gradcomp::coll;
using gradcomp::make_status;
using gradcomp::Result;
using gradcomp::Span;
using gradcomp::Status;
using gradcomp::StatusCode;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct World {
  int rank = 0, size = 1;
};

// Collective: every rank learns whether every rank succeeded, so that a failure on one rank
// (a missing file, a bad checkpoint) stops all of them instead of leaving the rest in a
// collective that never completes.
Status agree(const Status& s) {
  int ok = s.ok() ? 1 : 0, all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (all == 1) return Status::success();
  if (!s.ok()) return s;
  return make_status(StatusCode::kInternal, "another rank failed (see its message)");
}

// Torch threads per rank: the CPUs this process may run on, shared by the ranks on this node.
std::uint32_t default_threads() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 1;
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<std::uint32_t>(std::max(1, cpus / std::max(1, local)));
}

// Whether rank 0's output reaches a terminal. Open MPI's mpiexec gives the ranks a
// pseudo-terminal stdout even when its own output goes to a file or pipe, so under Open MPI the
// launcher's (our parent's) stdout decides.
bool stdout_is_terminal() {
  if (isatty(STDOUT_FILENO) == 0) return false;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) return true;
  const std::string fd = "/proc/" + std::to_string(getppid()) + "/fd/1";
  char buf[256];
  const ssize_t n = readlink(fd.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  const std::string target(buf, static_cast<std::size_t>(n));
  return target.rfind("/dev/pts/", 0) == 0 || target.rfind("/dev/tty", 0) == 0;
}

// Normalised images [n, 1, rows, cols] and int64 labels for the listed image indices.
void to_tensors(const gt::ImageSet& s, const std::vector<std::uint32_t>& idx, at::Tensor* x,
                at::Tensor* y) {
  const auto n = static_cast<std::int64_t>(idx.size());
  const std::int64_t hw = std::int64_t(s.rows) * s.cols;
  *x = torch::empty({n, 1, s.rows, s.cols}, torch::kFloat);
  *y = torch::empty({n}, torch::kLong);
  float* px = x->data_ptr<float>();
  std::int64_t* py = y->data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t* src = s.pixels.data() + std::int64_t(idx[i]) * hw;
    for (std::int64_t j = 0; j < hw; ++j) {
      px[i * hw + j] = (float(src[j]) / 255.0f - gt::kFmnistMean) / gt::kFmnistStd;
    }
    py[i] = s.labels[idx[i]];
  }
}

// Everything a resumed run must share with the checkpoint (docs/train.md).
std::string run_config(const gt::TrainOptions& o, const gt::RunPreset& p, const World& w,
                       std::uint64_t train_images, std::uint64_t test_images) {
  std::ostringstream os;
  os.precision(17);
  os << "model=" << o.model << "\npreset=" << p.desc.to_string() << "\nranks=" << w.size
     << "\nsplit=" << gt::split_name(o.split) << "\ntrain_images=" << train_images
     << "\ntest_images=" << test_images << "\nbatch=" << o.batch << "\nlr=" << o.lr.describe()
     << "\nseed=" << o.seed << "\ncoupled_wd=" << p.coupled_wd << "\n";
  // The cosine schedule depends on the run's length; the others do not, so they can be extended.
  if (o.lr.kind == gt::LrSchedule::Kind::kCosine) os << "epochs=" << o.epochs << "\n";
  return os.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "\n" : "") + v[i];
  return s;
}

class Trainer {
 public:
  Trainer(const gt::TrainOptions& o, World w) : o_(o), w_(w) {}
  Status run();

 private:
  Status setup();
  Status resume();
  Status train_epoch(std::uint32_t epoch);
  Status save_checkpoint(std::uint32_t epochs_done);
  void progress(std::uint32_t epoch, std::uint64_t s, std::uint64_t steps, double loss,
                double elapsed, bool last);

  gt::TrainOptions o_;
  World w_;
  bool bar_ = false, lines_ = true;
  gt::RunPreset preset_;
  gt::RunContext ctx_;
  std::string config_;
  std::uint32_t threads_ = 1;
  at::Tensor train_x_, train_y_, test_x_, test_y_;
  std::uint32_t shard_ = 0;
  std::uint64_t steps_per_epoch_ = 0;
  std::unique_ptr<gt::ResNet> net_;
  std::vector<at::Tensor> params_;
  at::Tensor flat_grad_;
  std::uint64_t n_ = 0;
  std::unique_ptr<gradcomp::Communicator> comm_;
  std::unique_ptr<coll::DistributedOptimizer> opt_;
  std::uint64_t step_ = 0;
  std::uint32_t start_epoch_ = 0;
  std::vector<std::string> records_;
};

Status Trainer::setup() {
  threads_ = o_.threads != 0 ? o_.threads : default_threads();
  torch::set_num_threads(static_cast<int>(threads_));
  try {
    at::set_num_interop_threads(1);  // no inter-op parallelism in a sequential model
  } catch (const std::exception&) {
    // Already set: harmless.
  }
  const bool tty = w_.rank == 0 && stdout_is_terminal();
  bar_ = w_.rank == 0 && (o_.progress == "bar" || (o_.progress == "auto" && tty));
  lines_ = w_.rank == 0 && o_.progress != "none";

  auto preset = gt::resolve_run_preset(o_.preset, o_.seed, o_.weight_decay);
  if (!preset.ok()) return preset.status();
  preset_ = preset.value();

  // Data: every rank reads the files (0.4 s for 20k images) and keeps its shard.
  std::string dir = o_.data_dir;
  if (dir.empty()) {
    const char* env = std::getenv("GRADCOMP_FMNIST_DIR");
    dir = env != nullptr ? env : gt::kDefaultFmnistDir;
  }
  auto train = gt::load_fmnist(dir, /*train=*/true, o_.train_subset);
  GRADCOMP_TRY(agree(train.ok() ? Status::success() : train.status()));
  auto test = gt::load_fmnist(dir, /*train=*/false, o_.test_subset);
  GRADCOMP_TRY(agree(test.ok() ? Status::success() : test.status()));
  auto shards =
      gt::make_shards(train->labels, static_cast<std::uint32_t>(w_.size), o_.split, o_.seed);
  if (!shards.ok()) return shards.status();
  const auto& mine = (*shards)[static_cast<std::size_t>(w_.rank)];
  shard_ = static_cast<std::uint32_t>(mine.size());
  GRADCOMP_CHECK_ARG(shard_ >= o_.batch, "each rank's shard has ", shard_,
                     " images, fewer than --batch ", o_.batch, " (use more --train-subset)");
  // Every rank has the same shard size, so the same number of full batches: the last partial
  // batch is dropped so that all steps have the same size.
  steps_per_epoch_ = shard_ / o_.batch;
  to_tensors(*train, mine, &train_x_, &train_y_);
  // Test images are shared out round-robin; accuracies are summed over ranks.
  std::vector<std::uint32_t> test_idx;
  for (std::uint32_t i = static_cast<std::uint32_t>(w_.rank); i < test->n;
       i += static_cast<std::uint32_t>(w_.size))
    test_idx.push_back(i);
  to_tensors(*test, test_idx, &test_x_, &test_y_);

  // Model: the same seeded initialisation on every rank.
  torch::manual_seed(o_.seed);
  auto net = gt::ResNet::create(o_.model);
  if (!net.ok()) return net.status();
  net_ = std::move(net.value());
  params_ = net_->parameters();
  n_ = gt::total_numel(params_);
  std::vector<float> x0;
  GRADCOMP_TRY(gt::flatten_tensors(params_, x0));
  flat_grad_ = gt::bind_flat_grads(params_);

  auto comm = coll::make_mpi_communicator(MPI_COMM_WORLD);
  if (!comm.ok()) return comm.status();
  comm_ = std::move(comm.value());
  coll::DistributedOptions dopt;
  dopt.compute = o_.compute;
  dopt.algorithm = o_.algorithm;
  dopt.mode = o_.deterministic ? coll::ReductionMode::kDeterministic : coll::ReductionMode::kFast;
  auto opt = coll::DistributedOptimizer::create(preset_.desc, *comm_, x0,
                                                gt::tensor_shapes(params_), dopt);
  if (!opt.ok()) return opt.status();
  opt_ = std::move(opt.value());

  const std::uint64_t train_images = std::uint64_t(shard_) * std::uint64_t(w_.size);
  config_ = run_config(o_, preset_, w_, train_images, test->n);
  ctx_.preset = o_.preset;
  ctx_.model = o_.model;
  ctx_.ranks = static_cast<std::uint32_t>(w_.size);
  ctx_.split = gt::split_name(o_.split);
  ctx_.train_images = train_images;
  ctx_.test_images = test->n;
  ctx_.batch_per_worker = o_.batch;
  ctx_.epochs = o_.epochs;
  ctx_.seed = o_.seed;
  ctx_.device = gt::cpu_model();
  ctx_.hostname = gt::host_name();
  ctx_.git_sha = gt::git_sha(GRADCOMP_SOURCE_DIR);
  ctx_.date = gt::iso8601_now();
  if (w_.rank == 0 && o_.progress != "none") {
    std::printf(
        "gradcomp-train: %s, %s, %d ranks x %u threads, %llu train images (%s), %llu test, "
        "batch %u/worker, %llu steps/epoch, %llu parameters, lr %s\n",
        preset_.desc.to_string().c_str(), o_.model.c_str(), w_.size, threads_,
        static_cast<unsigned long long>(train_images), ctx_.split.c_str(),
        static_cast<unsigned long long>(test->n), o_.batch,
        static_cast<unsigned long long>(steps_per_epoch_), static_cast<unsigned long long>(n_),
        o_.lr.describe().c_str());
    if (preset_.coupled_wd > 0) {
      std::printf(
          "gradcomp-train: preset has no wd option: weight decay %g added as L2 to the "
          "gradient\n",
          preset_.coupled_wd);
    }
    std::fflush(stdout);
  }
  return Status::success();
}

Status Trainer::resume() {
  gt::Checkpoint ck;
  Status s = [&]() -> Status {
    auto bytes = gt::read_file(o_.resume);
    if (!bytes.ok()) return bytes.status();
    auto d = gt::decode_checkpoint(*bytes);
    if (!d.ok()) return make_status(d.status().code(), o_.resume, ": ", d.status().message());
    ck = std::move(d.value());
    const std::string diff = gt::config_mismatch(ck.config, config_);
    GRADCOMP_CHECK_ARG(diff.empty(), o_.resume, ": the run's configuration differs: ", diff);
    GRADCOMP_CHECK_ARG(ck.ranks.size() == std::size_t(w_.size), o_.resume, ": saved by ",
                       ck.ranks.size(), " ranks, this run has ", w_.size);
    GRADCOMP_CHECK_ARG(ck.epochs_done < o_.epochs, o_.resume, ": already ", ck.epochs_done,
                       " epochs done; --epochs ", o_.epochs, " leaves nothing to train");
    GRADCOMP_TRY(gt::deserialize_buffers(ck.ranks[std::size_t(w_.rank)].buffers, net_->buffers()));
    return Status::success();
  }();
  GRADCOMP_TRY(agree(s));
  // restore() is local but must succeed everywhere before anyone trains on.
  GRADCOMP_TRY(agree(opt_->restore(ck.ranks[std::size_t(w_.rank)].optimizer)));
  start_epoch_ = ck.epochs_done;
  step_ = ck.step;
  records_ = split_lines(ck.epochs_json);
  if (w_.rank == 0 && o_.progress != "none") {
    std::printf("gradcomp-train: resumed from %s after epoch %u (step %llu)\n", o_.resume.c_str(),
                ck.epochs_done, static_cast<unsigned long long>(ck.step));
  }
  return Status::success();
}

void Trainer::progress(std::uint32_t epoch, std::uint64_t s, std::uint64_t steps, double loss,
                       double elapsed, bool last) {
  if (!bar_) return;
  constexpr int kWidth = 30;
  const int filled =
      static_cast<int>(kWidth * double(s) / double(std::max<std::uint64_t>(steps, 1)));
  const double ips = elapsed > 0 ? double(s) * o_.batch * w_.size / elapsed : 0.0;
  std::printf("\repoch %u/%u [%s%s] %llu/%llu loss %.4f %.0f img/s", epoch + 1, o_.epochs,
              std::string(std::size_t(filled), '#').c_str(),
              std::string(std::size_t(kWidth - filled), '.').c_str(),
              static_cast<unsigned long long>(s), static_cast<unsigned long long>(steps), loss,
              ips);
  if (last) std::printf("\r\033[K");  // the epoch line replaces the bar
  std::fflush(stdout);
}

Status Trainer::train_epoch(std::uint32_t epoch) {
  const auto order = gt::epoch_order(shard_, o_.seed, epoch, static_cast<std::uint32_t>(w_.rank));
  double compute = 0, compress = 0, communicate = 0, update = 0, loss_sum = 0;
  double bytes_up = 0, bytes_down = 0;
  net_->train(true);
  const auto t_epoch = Clock::now();
  auto last_bar = t_epoch;
  for (std::uint64_t s = 0; s < steps_per_epoch_; ++s) {
    std::vector<std::int64_t> idx(o_.batch);
    for (std::uint32_t i = 0; i < o_.batch; ++i) idx[i] = order[s * o_.batch + i];
    const at::Tensor sel = torch::tensor(idx, torch::kLong);
    const at::Tensor xb = train_x_.index_select(0, sel);
    const at::Tensor yb = train_y_.index_select(0, sel);

    const auto t0 = Clock::now();
    // The optimizer owns the parameters: the gradient is taken at its gradient point.
    const Span<const float> point = opt_->gradient_point();
    GRADCOMP_TRY(gt::unflatten_tensors(point, params_));
    flat_grad_.zero_();
    const at::Tensor loss = torch::nn::functional::cross_entropy(net_->forward(xb), yb);
    loss.backward();
    if (preset_.coupled_wd > 0) {
      const at::Tensor x = torch::from_blob(const_cast<float*>(point.data()),
                                            {static_cast<std::int64_t>(n_)}, torch::kFloat);
      flat_grad_.add_(x, preset_.coupled_wd);
    }
    const double l = loss.item<double>();
    compute += since(t0);
    loss_sum += l;

    coll::StepInput in;
    in.step = static_cast<std::uint32_t>(step_);
    in.epoch = epoch;
    in.lr = o_.lr.at(step_, steps_per_epoch_, o_.epochs);
    coll::StepStats st;
    const Status ss = opt_->step(in, Span<const float>(flat_grad_.data_ptr<float>(), n_), &st);
    if (!ss.ok()) {
      return make_status(ss.code(), "epoch ", epoch + 1, " step ", step_, ": ", ss.message());
    }
    compress += st.seconds_compress;
    communicate += st.seconds_communicate;
    update += st.seconds_update;
    bytes_up += double(st.bytes_up);
    bytes_down += double(st.bytes_down);
    ++step_;
    if (bar_ && (since(last_bar) > 0.2 || s + 1 == steps_per_epoch_)) {
      progress(epoch, s + 1, steps_per_epoch_, loss_sum / double(s + 1), since(t_epoch), false);
      last_bar = Clock::now();
    }
  }
  const double wall = since(t_epoch);
  progress(epoch, steps_per_epoch_, steps_per_epoch_, 0, wall, true);

  // BatchNorm running statistics are local to each rank; average them once per epoch so that
  // every rank evaluates (and checkpoints) the same statistics.
  const auto fbuf = gt::float_buffers(net_->buffers());
  std::vector<float> stats;
  GRADCOMP_TRY(gt::flatten_tensors(fbuf, stats));
  MPI_Allreduce(MPI_IN_PLACE, stats.data(), static_cast<int>(stats.size()), MPI_FLOAT, MPI_SUM,
                MPI_COMM_WORLD);
  for (float& v : stats) v /= static_cast<float>(w_.size);
  GRADCOMP_TRY(gt::unflatten_tensors(stats, fbuf));

  // Evaluation on the optimizer's evaluation model (the replicas' mean for local-step
  // presets), this rank's share of the test set.
  const auto t_eval = Clock::now();
  std::vector<float> eval_model;
  GRADCOMP_TRY(opt_->evaluation_model(eval_model));
  GRADCOMP_TRY(gt::unflatten_tensors(eval_model, params_));
  double correct = 0;
  {
    net_->train(false);
    torch::NoGradGuard no_grad;
    const std::int64_t nt = test_x_.size(0);
    for (std::int64_t b = 0; b < nt; b += 500) {
      const std::int64_t len = std::min<std::int64_t>(500, nt - b);
      const at::Tensor pred = net_->forward(test_x_.narrow(0, b, len)).argmax(1);
      correct += pred.eq(test_y_.narrow(0, b, len)).sum().item<double>();
    }
  }
  const double eval_s = since(t_eval);

  double sums[11] = {loss_sum,    double(steps_per_epoch_),
                     correct,     double(test_x_.size(0)),
                     compute,     compress,
                     communicate, update,
                     bytes_up,    bytes_down,
                     wall};
  MPI_Allreduce(MPI_IN_PLACE, sums, 11, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const double p = w_.size;
  gt::EpochRecord r;
  r.epoch = epoch + 1;
  r.train_loss = sums[0] / sums[1];
  r.test_accuracy = sums[3] > 0 ? sums[2] / sums[3] : std::nan("");
  r.wall_s = sums[10] / p;
  r.images_per_s = double(steps_per_epoch_) * o_.batch * p / r.wall_s;
  r.compute_s = sums[4] / p;
  r.compress_s = sums[5] / p;
  r.communicate_s = sums[6] / p;
  r.update_s = sums[7] / p;
  r.bytes_up_per_worker = sums[8] / p;
  r.bytes_down_per_worker = sums[9] / p;
  const double dense = double(steps_per_epoch_) * double(n_) * sizeof(float);
  r.compression_ratio = r.bytes_up_per_worker > 0 ? dense / r.bytes_up_per_worker : std::nan("");
  records_.push_back(gt::epoch_json(r));
  if (lines_) {
    std::printf(
        "epoch %u/%u  loss %.4f  test acc %.4f  %.0f img/s  wall %.2f s (compute %.2f, compress "
        "%.2f, comm %.2f, update %.2f; eval %.2f)  up %.3g MB/worker  ratio %.1f\n",
        r.epoch, o_.epochs, r.train_loss, r.test_accuracy, r.images_per_s, r.wall_s, r.compute_s,
        r.compress_s, r.communicate_s, r.update_s, eval_s, r.bytes_up_per_worker / 1e6,
        r.compression_ratio);
    std::fflush(stdout);
  }
  if (!std::isfinite(r.train_loss)) {
    return make_status(StatusCode::kNonFinite, "epoch ", r.epoch, ": training loss is ",
                       r.train_loss);
  }
  return Status::success();
}

Status Trainer::save_checkpoint(std::uint32_t epochs_done) {
  std::vector<std::uint8_t> state;
  GRADCOMP_TRY(agree(opt_->save(state)));
  const std::vector<std::uint8_t> buffers = gt::serialize_buffers(net_->buffers());
  // Rank blob = optimizer state then buffers; rank 0 gathers them (ints: < 2 GiB each).
  unsigned long long sizes_mine[2] = {state.size(), buffers.size()};
  std::vector<unsigned long long> sizes(2 * std::size_t(w_.size));
  MPI_Gather(sizes_mine, 2, MPI_UNSIGNED_LONG_LONG, sizes.data(), 2, MPI_UNSIGNED_LONG_LONG, 0,
             MPI_COMM_WORLD);
  std::vector<std::uint8_t> blob(state);
  blob.insert(blob.end(), buffers.begin(), buffers.end());
  std::vector<int> counts(std::size_t(w_.size)), displs(std::size_t(w_.size));
  std::vector<std::uint8_t> all;
  if (w_.rank == 0) {
    long long off = 0;
    for (int r = 0; r < w_.size; ++r) {
      counts[std::size_t(r)] =
          static_cast<int>(sizes[2 * std::size_t(r)] + sizes[2 * std::size_t(r) + 1]);
      displs[std::size_t(r)] = static_cast<int>(off);
      off += counts[std::size_t(r)];
    }
    all.resize(static_cast<std::size_t>(off));
  }
  MPI_Gatherv(blob.data(), static_cast<int>(blob.size()), MPI_BYTE, all.data(), counts.data(),
              displs.data(), MPI_BYTE, 0, MPI_COMM_WORLD);
  Status s;
  if (w_.rank == 0) {
    gt::Checkpoint ck;
    ck.config = config_;
    ck.epochs_done = epochs_done;
    ck.step = step_;
    ck.epochs_json = join_lines(records_);
    for (int r = 0; r < w_.size; ++r) {
      const auto* p = all.data() + displs[std::size_t(r)];
      const auto so = static_cast<std::ptrdiff_t>(sizes[2 * std::size_t(r)]);
      gt::RankState rs;
      rs.optimizer.assign(p, p + so);
      rs.buffers.assign(p + so, p + counts[std::size_t(r)]);
      ck.ranks.push_back(std::move(rs));
    }
    s = gt::write_file_atomic(o_.checkpoint, gt::encode_checkpoint(ck));
  }
  return agree(s);
}

Status Trainer::run() {
  GRADCOMP_TRY(agree(setup()));
  if (!o_.resume.empty()) GRADCOMP_TRY(resume());
  for (std::uint32_t e = start_epoch_; e < o_.epochs; ++e) {
    GRADCOMP_TRY(train_epoch(e));
    if (!o_.checkpoint.empty()) GRADCOMP_TRY(save_checkpoint(e + 1));
    if (w_.rank == 0 && !o_.json.empty()) {
      GRADCOMP_TRY(agree(gt::write_text_file(o_.json, gt::run_json(ctx_, records_))));
    } else if (!o_.json.empty()) {
      GRADCOMP_TRY(agree(Status::success()));
    }
  }
  return Status::success();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  World w;
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  int rc = 0;
  auto opts = gt::parse_train_args(std::vector<std::string>(argv + 1, argv + argc));
  if (!opts.ok()) {
    // Every rank parses the same arguments, so every rank stops here.
    if (w.rank == 0)
      std::fprintf(stderr, "gradcomp-train: %s\n", opts.status().to_string().c_str());
    rc = 2;
  } else if (opts->help) {
    if (w.rank == 0) std::fputs(gt::train_usage().c_str(), stdout);
  } else {
    try {
      Trainer t(*opts, w);
      const Status s = t.run();
      if (!s.ok()) {
        // A rank reports its own error; rank 0 also reports one that came from elsewhere.
        if (w.rank == 0 || s.message() != "another rank failed (see its message)") {
          std::fprintf(stderr, "gradcomp-train: rank %d: %s\n", w.rank, s.to_string().c_str());
        }
        rc = 1;
      }
    } catch (const std::exception& e) {
      // A torch error on one rank would leave the others waiting in a collective: abort all.
      std::fprintf(stderr, "gradcomp-train: rank %d: unexpected exception: %s\n", w.rank, e.what());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  MPI_Finalize();
  return rc;
}
