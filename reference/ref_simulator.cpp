// The P-worker simulator (simulator.hpp, docs/simulator.md): one process runs every worker of a
// preset on a synthetic objective and records the trajectory the MPI runs must reproduce.
#include "gradcomp/ref/simulator.hpp"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "gradcomp/case_string.hpp"
#include "gradcomp/ref/objectives.hpp"

namespace gradcomp::ref {
namespace {

Status check_config(const SimulatorConfig& cfg) {
  GRADCOMP_CHECK_ARG(cfg.workers >= 1, "simulate: need at least one worker");
  GRADCOMP_CHECK_ARG(cfg.steps_per_epoch >= 1, "simulate: steps_per_epoch must be >= 1");
  GRADCOMP_CHECK_ARG(std::isfinite(cfg.lr) && cfg.lr >= 0.0,
                     "simulate: lr must be finite and >= 0, got ", cfg.lr);
  GRADCOMP_CHECK_ARG(std::isfinite(cfg.lr_decay) && cfg.lr_decay >= 0.0,
                     "simulate: lr_decay must be finite and >= 0, got ", cfg.lr_decay);
  GRADCOMP_CHECK_ARG(cfg.samples != 0 || cfg.samples_per_worker >= 1,
                     "simulate: samples_per_worker must be >= 1");
  GRADCOMP_CHECK_ARG(cfg.samples != 0 || std::uint64_t{cfg.samples_per_worker} * cfg.workers <=
                                             std::numeric_limits<std::uint32_t>::max(),
                     "simulate: samples_per_worker * workers overflows");
  return Status::success();
}

ObjectiveSpec spec_of(const SimulatorConfig& cfg) {
  ObjectiveSpec spec;
  spec.kind = cfg.objective;
  spec.features = cfg.features;
  spec.outputs = cfg.outputs;
  spec.hidden = cfg.hidden;
  spec.samples = cfg.samples != 0 ? cfg.samples : cfg.samples_per_worker * cfg.workers;
  spec.noise = cfg.noise;
  spec.seed = cfg.seed;
  return spec;
}

// eta_t = lr * decay^(number of milestones m with t >= m), by repeated multiplication so that
// every implementation rounds the same way.
double lr_at(const SimulatorConfig& cfg, std::uint32_t step) {
  double lr = cfg.lr;
  for (std::uint32_t m : cfg.lr_milestones)
    if (step >= m) lr *= cfg.lr_decay;
  return lr;
}

Status with_context(const Status& s, const std::string& preset, std::uint32_t step) {
  return make_status(s.code(), "simulate ", preset, ", step ", step, ": ", s.message());
}

// ---- JSON output ------------------------------------------------------------------------------

// Shortest text that reads back to the same double (or, for parameters, the same float).
void json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  out += format_double(v);
}
void json_float(std::string& out, float v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  out += buf;
}
void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}
template <class T>
void json_uints(std::string& out, const std::vector<T>& v) {
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(v[i]);
  }
  out += ']';
}
void json_floats(std::string& out, const std::vector<float>& v) {
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    json_float(out, v[i]);
  }
  out += ']';
}
std::string hex64(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

}  // namespace

const char* objective_name(ObjectiveKind kind) {
  switch (kind) {
    case ObjectiveKind::kLeastSquares: return "ls";
    case ObjectiveKind::kLogistic: return "logistic";
    case ObjectiveKind::kMlp: return "mlp";
  }
  return "?";
}

const char* split_name(DataSplit split) { return split == DataSplit::kIid ? "iid" : "noniid"; }

Result<Trajectory> simulate(const SimulatorConfig& cfg) {
  return simulate(cfg, [](const PresetDesc& preset, std::uint32_t workers, Span<const float> x0,
                          const std::vector<std::vector<std::uint64_t>>& shapes) {
    return Optimizer::create(preset, workers, x0, shapes);
  });
}

Result<Trajectory> simulate(const SimulatorConfig& cfg, const OptimizerFactory& factory) {
  GRADCOMP_TRY(check_config(cfg));
  auto preset = parse_preset(cfg.preset);
  if (!preset.ok()) return preset.status();
  const std::string name = preset->to_string();
  const ObjectiveSpec spec = spec_of(cfg);
  auto data = make_dataset(spec);
  if (!data.ok()) return data.status();
  auto shards = split_samples(data.value(), cfg.workers, cfg.split, cfg.skew);
  if (!shards.ok()) return shards.status();
  for (std::uint32_t w = 0; w < cfg.workers; ++w) {
    GRADCOMP_CHECK_ARG(cfg.batch <= shards.value()[w].size(), "simulate: batch ", cfg.batch,
                       " is larger than worker ", w, "'s shard of ", shards.value()[w].size(),
                       " samples");
  }
  const std::vector<float> x0 = initial_point(spec);
  auto created = factory(preset.value(), cfg.workers, x0, parameter_shapes(spec));
  if (!created.ok()) return created.status();
  Optimizer& opt = *created.value();
  if (opt.workers() != cfg.workers || opt.size() != x0.size())
    return make_status(StatusCode::kInternal, "simulate: the optimizer has the wrong shape");

  Trajectory traj;
  traj.preset = name;
  GRADCOMP_TRY(evaluate(data.value(), x0, {}, &traj.initial_loss, nullptr));
  traj.steps.reserve(cfg.steps);

  std::vector<std::vector<float>> grads(cfg.workers);
  std::vector<double> grad;
  for (std::uint32_t t = 0; t < cfg.steps; ++t) {
    StepInput in;
    in.step = t;
    in.epoch = t / cfg.steps_per_epoch;
    in.lr = lr_at(cfg, t);
    // S0: each worker's gradient of its mean minibatch loss at its gradient point, in double,
    // stored as float.
    for (std::uint32_t w = 0; w < cfg.workers; ++w) {
      auto batch = minibatch(shards.value()[w], cfg.batch, cfg.seed, t, w);
      if (!batch.ok()) return with_context(batch.status(), name, t);
      Status s = evaluate(data.value(), opt.gradient_point(w), batch.value(), nullptr, &grad);
      if (!s.ok()) return with_context(s, name, t);
      grads[w].assign(grad.size(), 0.0f);
      for (std::size_t i = 0; i < grad.size(); ++i) grads[w][i] = static_cast<float>(grad[i]);
    }
    CommRecord comm;
    Status s = opt.step(in, grads, &comm);
    if (!s.ok()) return with_context(s, name, t);
    if (comm.up.size() != cfg.workers || comm.down.size() != cfg.workers) {
      return with_context(Status(StatusCode::kInternal,
                                 "the CommRecord does not have one entry "
                                 "per worker"),
                          name, t);
    }
    StepTrace trace;
    trace.step = t;
    trace.lr = in.lr;
    const std::vector<float> eval = opt.evaluation_model();
    s = evaluate(data.value(), eval, {}, &trace.loss, nullptr);
    if (!s.ok()) return with_context(s, name, t);
    trace.checksum = fnv1a64(eval);
    trace.bytes_up = std::move(comm.up);
    trace.bytes_down = std::move(comm.down);
    if (cfg.record_params) trace.params = eval;
    traj.steps.push_back(std::move(trace));
  }
  traj.final_params = opt.evaluation_model();
  for (std::uint32_t w = 0; w < cfg.workers; ++w) {
    Span<const float> m = opt.model(w);
    traj.final_models.emplace_back(m.begin(), m.end());
  }
  return traj;
}

std::string trajectory_json(const SimulatorConfig& cfg, const Trajectory& traj) {
  std::string out = "{\"format\":\"gradcomp-trajectory-1\",\"config\":{\"preset\":";
  json_string(out, traj.preset);
  const ObjectiveSpec spec = spec_of(cfg);
  out += ",\"workers\":" + std::to_string(cfg.workers);
  out += ",\"objective\":\"" + std::string(objective_name(cfg.objective)) + "\"";
  out += ",\"split\":\"" + std::string(split_name(cfg.split)) + "\"";
  out += ",\"skew\":";
  json_double(out, cfg.skew);
  out += ",\"features\":" + std::to_string(cfg.features);
  out += ",\"outputs\":" + std::to_string(cfg.outputs);
  out += ",\"hidden\":" + std::to_string(cfg.hidden);
  out += ",\"samples\":" + std::to_string(spec.samples);
  out += ",\"batch\":" + std::to_string(cfg.batch);
  out += ",\"noise\":";
  json_double(out, cfg.noise);
  out += ",\"steps\":" + std::to_string(cfg.steps);
  out += ",\"steps_per_epoch\":" + std::to_string(cfg.steps_per_epoch);
  out += ",\"lr\":";
  json_double(out, cfg.lr);
  out += ",\"lr_decay\":";
  json_double(out, cfg.lr_decay);
  out += ",\"lr_milestones\":";
  json_uints(out, cfg.lr_milestones);
  out += ",\"seed\":" + std::to_string(cfg.seed);
  out += ",\"n\":" + std::to_string(parameter_count(spec));
  out += ",\"shapes\":[";
  const auto shapes = parameter_shapes(spec);
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    if (i) out += ',';
    json_uints(out, shapes[i]);
  }
  out += "]},\"initial_loss\":";
  json_double(out, traj.initial_loss);
  out += ",\"steps\":[";
  for (std::size_t i = 0; i < traj.steps.size(); ++i) {
    const StepTrace& st = traj.steps[i];
    if (i) out += ',';
    out += "\n{\"step\":" + std::to_string(st.step) + ",\"lr\":";
    json_double(out, st.lr);
    out += ",\"loss\":";
    json_double(out, st.loss);
    out += ",\"checksum\":\"" + hex64(st.checksum) + "\",\"bytes_up\":";
    json_uints(out, st.bytes_up);
    out += ",\"bytes_down\":";
    json_uints(out, st.bytes_down);
    if (cfg.record_params) {
      out += ",\"params\":";
      json_floats(out, st.params);
    }
    out += '}';
  }
  out += "],\n\"final_checksum\":\"" + hex64(fnv1a64(traj.final_params)) + "\"";
  if (cfg.record_params) {
    out += ",\"final_params\":";
    json_floats(out, traj.final_params);
  }
  out += "}\n";
  return out;
}

}  // namespace gradcomp::ref
