// Unit tests of gradcomp_train_lib's torch-free parts: IDX reader, split, lr schedule,
// checkpoint format, JSON, options.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include "checkpoint.hpp"
#include "fmnist.hpp"
#include "lr_schedule.hpp"
#include "options.hpp"
#include "split.hpp"
#include "train_json.hpp"

namespace gt = gradcomp::train;
using gradcomp::StatusCode;

namespace {

std::string tmp_path(const std::string& name) {
  const char* d = std::getenv("GRADCOMP_TEST_TMPDIR");
  return std::string(d != nullptr ? d : "/tmp") + "/train_unit_" + name;
}

// An IDX file written by hand: magic, big-endian dims, bytes.
std::vector<std::uint8_t> idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims,
                                    const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_plain(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream os(path, std::ios::binary);
  os.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  gzclose(f);
}

}  // namespace

// ---- IDX reader --------------------------------------------------------------------------------

TEST(TrainIdx, ReadsPlainAndGzipFiles) {
  // 3 images of 2 x 3 pixels with values 0..17.
  std::vector<std::uint8_t> px(18);
  for (int i = 0; i < 18; ++i) px[i] = static_cast<std::uint8_t>(10 * i);
  const auto file = idx_bytes(0x08, {3, 2, 3}, px);
  write_plain(tmp_path("a.idx"), file);
  write_gz(tmp_path("a.idx.gz"), file);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    auto r = gt::read_idx(tmp_path(name));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->dims, (std::vector<std::uint32_t>{3, 2, 3}));
    EXPECT_EQ(r->data, px);
  }
  // max_items reads only the first images.
  auto two = gt::read_idx(tmp_path("a.idx.gz"), 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->dims[0], 2u);
  EXPECT_EQ(two->data, std::vector<std::uint8_t>(px.begin(), px.begin() + 12));
}

TEST(TrainIdx, CorruptHeadersAreClearErrors) {
  const std::vector<std::uint8_t> px(8, 1);
  struct Case {
    std::vector<std::uint8_t> bytes;
    const char* expect;
  };
  auto bad_magic = idx_bytes(0x08, {2, 2, 2}, px);
  bad_magic[0] = 0x1f;
  auto truncated = idx_bytes(0x08, {2, 2, 2}, px);
  truncated.resize(truncated.size() - 3);
  const std::vector<Case> cases = {
      {bad_magic, "not an IDX file"},
      {idx_bytes(0x0D, {2, 2, 2}, px), "type code"},         // float IDX: not supported
      {idx_bytes(0x08, {2, 0, 2}, {}), "dimension 1 is 0"},  // zero dimension
      {truncated, "file ends inside the data"},
      {std::vector<std::uint8_t>{0, 0, 8, 3, 0, 0}, "file ends inside the header"},
      {idx_bytes(0x08, {}, {}), "0 dimensions"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string p = tmp_path("bad" + std::to_string(i) + ".idx");
    write_plain(p, cases[i].bytes);
    auto r = gt::read_idx(p);
    ASSERT_FALSE(r.ok()) << "case " << i;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruptPayload) << "case " << i;
    EXPECT_NE(r.status().message().find(cases[i].expect), std::string::npos)
        << "case " << i << ": " << r.status().to_string();
  }
  auto missing = gt::read_idx(tmp_path("does-not-exist.idx"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
}

TEST(TrainIdx, LoadFmnistChecksLabelsAndCounts) {
  const std::string dir = tmp_path("fm");
  ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
  std::vector<std::uint8_t> px(4 * 2 * 2);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i);
  write_gz(dir + "/t10k-images-idx3-ubyte.gz", idx_bytes(0x08, {4, 2, 2}, px));
  write_gz(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes(0x08, {4}, {3, 1, 4, 1}));
  auto ok = gt::load_fmnist(dir, /*train=*/false, 0);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->n, 4u);
  EXPECT_EQ(ok->rows, 2u);
  EXPECT_EQ(ok->labels, (std::vector<std::uint8_t>{3, 1, 4, 1}));
  EXPECT_EQ(ok->pixels, px);
  // Asking for more images than the file has.
  EXPECT_EQ(gt::load_fmnist(dir, false, 5).status().code(), StatusCode::kInvalidArgument);
  // A label outside 0..9.
  write_gz(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes(0x08, {4}, {3, 1, 10, 1}));
  auto bad = gt::load_fmnist(dir, false, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("label 2 is 10"), std::string::npos);
  // Counts that disagree.
  write_gz(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes(0x08, {3}, {3, 1, 4}));
  EXPECT_EQ(gt::load_fmnist(dir, false, 0).status().code(), StatusCode::kCorruptPayload);
}

// ---- split -------------------------------------------------------------------------------------

namespace {
std::vector<std::uint8_t> balanced_labels(std::uint32_t n) {
  std::vector<std::uint8_t> l(n);
  for (std::uint32_t i = 0; i < n; ++i) l[i] = static_cast<std::uint8_t>((i * 7) % 10);
  return l;
}
void expect_partition(const std::vector<std::vector<std::uint32_t>>& shards, std::uint32_t n) {
  const std::uint32_t m = n / static_cast<std::uint32_t>(shards.size());
  std::set<std::uint32_t> seen;
  for (const auto& s : shards) {
    EXPECT_EQ(s.size(), m);
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    for (auto i : s) {
      EXPECT_LT(i, n);
      EXPECT_TRUE(seen.insert(i).second) << "image " << i << " in two shards";
    }
  }
}
}  // namespace

TEST(TrainSplit, IidShardsArePartitionsWithBalancedLabels) {
  const std::uint32_t n = 2003;
  const auto labels = balanced_labels(n);
  for (std::uint32_t p : {1u, 2u, 3u, 4u}) {
    auto shards = gt::make_shards(labels, p, gt::Split::kIid, 42);
    ASSERT_TRUE(shards.ok());
    ASSERT_EQ(shards->size(), p);
    expect_partition(*shards, n);
    for (const auto& s : *shards) {
      std::map<int, int> count;
      for (auto i : s) ++count[labels[i]];
      // ~m/10 per class; a random shard of this size is within +-40% with overwhelming odds,
      // a label-sorted one is not.
      for (int c = 0; c < 10; ++c) {
        EXPECT_NEAR(count[c], double(s.size()) / 10, 0.4 * double(s.size()) / 10) << "class " << c;
      }
    }
  }
  // Same seed, same split; another seed, another split.
  EXPECT_EQ(*gt::make_shards(labels, 2, gt::Split::kIid, 42),
            *gt::make_shards(labels, 2, gt::Split::kIid, 42));
  EXPECT_NE(*gt::make_shards(labels, 2, gt::Split::kIid, 42),
            *gt::make_shards(labels, 2, gt::Split::kIid, 43));
}

TEST(TrainSplit, NonIidShardsAreLabelSkewed) {
  const std::uint32_t n = 1000;  // 100 images per class
  const auto labels = balanced_labels(n);
  auto two = gt::make_shards(labels, 2, gt::Split::kNonIid, 0);
  ASSERT_TRUE(two.ok());
  expect_partition(*two, n);
  for (auto i : (*two)[0]) EXPECT_LT(labels[i], 5);
  for (auto i : (*two)[1]) EXPECT_GE(labels[i], 5);
  auto four = gt::make_shards(labels, 4, gt::Split::kNonIid, 0);
  ASSERT_TRUE(four.ok());
  expect_partition(*four, n);
  for (const auto& s : *four) {
    std::set<int> classes;
    for (auto i : s) classes.insert(labels[i]);
    EXPECT_LE(classes.size(), 4u);  // 250 images of sorted labels span at most 4 classes
  }
}

TEST(TrainSplit, BadArguments) {
  EXPECT_EQ(gt::make_shards({1, 2}, 3, gt::Split::kIid, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gt::make_shards({1, 2}, 0, gt::Split::kIid, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(gt::parse_split("random").ok());
  EXPECT_EQ(*gt::parse_split("noniid"), gt::Split::kNonIid);
}

TEST(TrainSplit, PermutationsAreUniformAndKeyed) {
  // All 6 orders of 3 elements over 6000 streams: each about 1000 times (sd ~ 29). The naive
  // shuffle (j drawn from all n) gives 889 or 1111, outside the +-90 band.
  std::map<std::vector<std::uint32_t>, int> count;
  for (std::uint64_t s = 0; s < 6000; ++s) ++count[gt::seeded_permutation(3, 7, s)];
  ASSERT_EQ(count.size(), 6u);
  for (const auto& kv : count) EXPECT_NEAR(kv.second, 1000, 90);
  const auto a = gt::epoch_order(500, 1, 0, 0);
  std::vector<std::uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (std::uint32_t i = 0; i < 500; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, gt::epoch_order(500, 1, 0, 0));
  EXPECT_NE(a, gt::epoch_order(500, 1, 1, 0));  // next epoch
  EXPECT_NE(a, gt::epoch_order(500, 1, 0, 1));  // other rank
  EXPECT_NE(a, gt::epoch_order(500, 2, 0, 0));  // other seed
}

// ---- lr schedule -------------------------------------------------------------------------------

TEST(TrainLr, ValuesFollowTheFormulas) {
  gt::LrSchedule s;
  s.base = 0.1;
  // 10 steps per epoch, 4 epochs.
  s.kind = gt::LrSchedule::Kind::kConstant;
  EXPECT_DOUBLE_EQ(s.at(0, 10, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.at(39, 10, 4), 0.1);
  s.warmup_epochs = 1;  // steps 0..9: 0.1 * (t + 1) / 10
  EXPECT_DOUBLE_EQ(s.at(0, 10, 4), 0.01);
  EXPECT_DOUBLE_EQ(s.at(4, 10, 4), 0.05);
  EXPECT_DOUBLE_EQ(s.at(9, 10, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.at(10, 10, 4), 0.1);

  s.kind = gt::LrSchedule::Kind::kSteps;
  s.warmup_epochs = 0;
  s.milestones = {2, 3};
  s.gamma = 0.1;
  EXPECT_DOUBLE_EQ(s.at(19, 10, 4), 0.1);    // epoch 2 still at base
  EXPECT_DOUBLE_EQ(s.at(20, 10, 4), 0.01);   // after 2 epochs
  EXPECT_DOUBLE_EQ(s.at(30, 10, 4), 0.001);  // after 3
  EXPECT_DOUBLE_EQ(s.at(39, 10, 4), 0.001);

  s.kind = gt::LrSchedule::Kind::kCosine;
  s.min_lr = 0.0;
  EXPECT_DOUBLE_EQ(s.at(0, 10, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.at(20, 10, 4), 0.05);                              // half way: cos(pi/2) = 0
  EXPECT_NEAR(s.at(10, 10, 4), 0.1 * (1 + std::sqrt(0.5)) / 2, 1e-15);  // cos(pi/4)
  s.min_lr = 0.02;
  EXPECT_DOUBLE_EQ(s.at(20, 10, 4), 0.06);  // 0.02 + 0.08 / 2
  s.min_lr = 0.0;
  s.warmup_epochs = 1;  // cosine over the 30 steps after warm-up
  EXPECT_DOUBLE_EQ(s.at(9, 10, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.at(10, 10, 4), 0.1);
  EXPECT_DOUBLE_EQ(s.at(25, 10, 4), 0.05);
}

TEST(TrainLr, BadValuesAreRejected) {
  gt::LrSchedule s;
  s.base = -1;
  EXPECT_FALSE(s.validate(3).ok());
  s.base = 0.1;
  s.warmup_epochs = 3;
  EXPECT_FALSE(s.validate(3).ok());
  s.warmup_epochs = 0;
  s.kind = gt::LrSchedule::Kind::kSteps;
  EXPECT_FALSE(s.validate(3).ok());  // steps without milestones
  EXPECT_FALSE(gt::parse_milestones("3,2").ok());
  EXPECT_FALSE(gt::parse_milestones("1,,2").ok());
  EXPECT_FALSE(gt::parse_milestones("-1").ok());
  EXPECT_EQ(*gt::parse_milestones("1,5"), (std::vector<std::uint32_t>{1, 5}));
}

// ---- checkpoint --------------------------------------------------------------------------------

namespace {
gt::Checkpoint sample_checkpoint() {
  gt::Checkpoint c;
  c.config = "model=resnet8\npreset=sgdm\n";
  c.epochs_done = 3;
  c.step = 123456789012ull;
  c.epochs_json = "{\"epoch\": 1}\n{\"epoch\": 2}";
  for (int r = 0; r < 3; ++r) {
    gt::RankState s;
    for (int i = 0; i < 100 + r; ++i) s.optimizer.push_back(static_cast<std::uint8_t>(i * 31 + r));
    s.buffers = {static_cast<std::uint8_t>(r), 0, 255};
    c.ranks.push_back(s);
  }
  return c;
}
}  // namespace

TEST(TrainCheckpoint, RoundTripAndFile) {
  const auto c = sample_checkpoint();
  const auto bytes = gt::encode_checkpoint(c);
  auto d = gt::decode_checkpoint(bytes);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->config, c.config);
  EXPECT_EQ(d->epochs_done, 3u);
  EXPECT_EQ(d->step, c.step);
  EXPECT_EQ(d->epochs_json, c.epochs_json);
  ASSERT_EQ(d->ranks.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(d->ranks[r].optimizer, c.ranks[r].optimizer);
    EXPECT_EQ(d->ranks[r].buffers, c.ranks[r].buffers);
  }
  const std::string path = tmp_path("ck.bin");
  ASSERT_TRUE(gt::write_file_atomic(path, bytes).ok());
  auto back = gt::read_file(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, bytes);
  EXPECT_EQ(gt::read_file(tmp_path("no-such-ck")).status().code(), StatusCode::kIoError);
}

TEST(TrainCheckpoint, CorruptionIsDetected) {
  const auto good = gt::encode_checkpoint(sample_checkpoint());
  // Every single flipped byte is caught (magic or checksum).
  for (std::size_t i = 0; i < good.size(); i += 7) {
    auto b = good;
    b[i] ^= 0x40;
    auto d = gt::decode_checkpoint(b);
    ASSERT_FALSE(d.ok()) << "flip at " << i;
    EXPECT_EQ(d.status().code(), StatusCode::kCorruptPayload);
  }
  for (std::size_t len : {std::size_t(0), std::size_t(10), good.size() - 1}) {
    std::vector<std::uint8_t> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_EQ(gt::decode_checkpoint(b).status().code(), StatusCode::kCorruptPayload);
  }
}

TEST(TrainCheckpoint, ConfigMismatchNamesTheKey) {
  EXPECT_EQ(gt::config_mismatch("a=1\nb=2\n", "a=1\nb=2\n"), "");
  const auto m = gt::config_mismatch("a=1\nb=2\n", "a=1\nb=3\n");
  EXPECT_NE(m.find("b: checkpoint has '2', this run has '3'"), std::string::npos) << m;
  EXPECT_NE(gt::config_mismatch("a=1\n", "a=1\nc=0\n").find("c:"), std::string::npos);
}

// ---- JSON --------------------------------------------------------------------------------------

TEST(TrainJson, NumbersAndEscapes) {
  EXPECT_EQ(gt::json_number(std::nan("")), "null");
  EXPECT_EQ(gt::json_number(INFINITY), "null");
  EXPECT_EQ(gt::json_number(0.5), "0.5");
  EXPECT_EQ(std::strtod(gt::json_number(0.1).c_str(), nullptr), 0.1);  // round trip
  EXPECT_EQ(gt::json_escape("a\"b\\c\n\x01"), "a\\\"b\\\\c\\n\\u0001");
}

TEST(TrainJson, PythonReadsTheSchema) {
  gt::RunContext c;
  c.preset = "dgc:density=0.01";
  c.model = "resnet8";
  c.ranks = 2;
  c.split = "iid";
  c.train_images = 512;
  c.test_images = 256;
  c.batch_per_worker = 32;
  c.epochs = 2;
  c.seed = 5;
  c.device = "Some \"CPU\"";
  c.hostname = "h";
  c.git_sha = "abc";
  c.date = gt::iso8601_now();
  gt::EpochRecord e;
  e.epoch = 1;
  e.train_loss = 2.25;
  e.compression_ratio = std::nan("");
  gt::EpochRecord f = e;
  f.epoch = 2;
  f.bytes_up_per_worker = 1e6;
  const std::string path = tmp_path("run.json");
  ASSERT_TRUE(
      gt::write_text_file(path, gt::run_json(c, {gt::epoch_json(e), gt::epoch_json(f)})).ok());
  if (std::system("/usr/bin/python3 -c 'import json' 2>/dev/null") != 0) {
    GTEST_SKIP() << "no /usr/bin/python3 to parse the JSON with";
  }
  const std::string check =
      "/usr/bin/python3 -c \"import json,sys; d=json.load(open(sys.argv[1])); c=d['context']; "
      "assert c['tool']=='gradcomp-train' and c['ranks']==2 and c['device']=='Some \\\"CPU\\\"'; "
      "keys={'epoch','train_loss','test_accuracy','images_per_s','wall_s','compute_s',"
      "'compress_s','communicate_s','update_s','bytes_up_per_worker','bytes_down_per_worker',"
      "'compression_ratio'}; "
      "assert [set(r) for r in d['epochs']]==[keys,keys]; "
      "assert d['epochs'][0]['compression_ratio'] is None and d['epochs'][1]['epoch']==2; "
      "assert d['epochs'][1]['bytes_up_per_worker']==1e6\" '" +
      path + "'";
  EXPECT_EQ(std::system(check.c_str()), 0) << check;
}

// ---- options -----------------------------------------------------------------------------------

TEST(TrainOptions, ParsesAndRejects) {
  auto o = gt::parse_train_args({"--preset", "dgc", "--model=resnet20", "--epochs", "5",
                                 "--lr-schedule", "steps", "--lr-milestones", "2,4", "--split",
                                 "noniid", "--batch", "32", "--weight-decay", "5e-4"});
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->preset, "dgc");
  EXPECT_EQ(o->model, "resnet20");
  EXPECT_EQ(o->epochs, 5u);
  EXPECT_EQ(o->batch, 32u);
  EXPECT_EQ(o->lr.kind, gt::LrSchedule::Kind::kSteps);
  EXPECT_EQ(o->lr.milestones, (std::vector<std::uint32_t>{2, 4}));
  EXPECT_EQ(o->split, gt::Split::kNonIid);
  EXPECT_DOUBLE_EQ(o->weight_decay, 5e-4);
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--bogus", "1"},
                                              {"--epochs", "0"},
                                              {"--epochs", "x"},
                                              {"--batch"},
                                              {"--model", "resnet50"},
                                              {"--lr", "nan"},
                                              {"--lr-milestones", "2"},
                                              {"--weight-decay", "-1"},
                                              {"--reduction", "maybe"},
                                              {"--warmup-epochs", "3"}}) {
    auto r = gt::parse_train_args(bad);
    EXPECT_FALSE(r.ok()) << bad[0];
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(TrainOptions, PresetGetsSeedAndWeightDecay) {
  auto a = gt::resolve_run_preset("sgdm", 7, 5e-4);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(std::strtod(a->desc.get("wd").c_str(), nullptr), 5e-4);
  EXPECT_EQ(a->desc.get("seed"), "7");
  EXPECT_EQ(a->coupled_wd, 0.0);
  // gmc has no wd option: the trainer adds L2 to the gradient.
  auto b = gt::resolve_run_preset("gmc", 1, 1e-4);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(b->coupled_wd, 1e-4);
  // Without --weight-decay the preset's own value stays.
  auto c = gt::resolve_run_preset("sgdm:wd=0.001", 0, -1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::strtod(c->desc.get("wd").c_str(), nullptr), 0.001);
  EXPECT_TRUE(gt::resolve_run_preset("sgdm:wd=0.001", 0, 0.001).ok());
  EXPECT_EQ(gt::resolve_run_preset("sgdm:wd=0.001", 0, 0.002).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gt::resolve_run_preset("sgdm:seed=3", 9, -1)->desc.get("seed"), "3");
  EXPECT_FALSE(gt::resolve_run_preset("no-such-preset", 0, -1).ok());
}
