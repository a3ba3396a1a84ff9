#include "train_json.hpp"

#include <unistd.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

namespace gradcomp::train {

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  // The shortest text that reads back as the same double.
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string epoch_json(const EpochRecord& e) {
  std::ostringstream os;
  os << "{\"epoch\": " << e.epoch << ", \"train_loss\": " << json_number(e.train_loss)
     << ", \"test_accuracy\": " << json_number(e.test_accuracy)
     << ", \"images_per_s\": " << json_number(e.images_per_s)
     << ", \"wall_s\": " << json_number(e.wall_s) << ", \"compute_s\": " << json_number(e.compute_s)
     << ", \"compress_s\": " << json_number(e.compress_s)
     << ", \"communicate_s\": " << json_number(e.communicate_s)
     << ", \"update_s\": " << json_number(e.update_s)
     << ", \"bytes_up_per_worker\": " << json_number(e.bytes_up_per_worker)
     << ", \"bytes_down_per_worker\": " << json_number(e.bytes_down_per_worker)
     << ", \"compression_ratio\": " << json_number(e.compression_ratio) << "}";
  return os.str();
}

std::string run_json(const RunContext& c, const std::vector<std::string>& records) {
  std::ostringstream os;
  auto str = [](const std::string& s) { return "\"" + json_escape(s) + "\""; };
  os << "{\n  \"context\": {\"tool\": \"gradcomp-train\", \"preset\": " << str(c.preset)
     << ", \"model\": " << str(c.model) << ", \"ranks\": " << c.ranks
     << ", \"split\": " << str(c.split) << ", \"train_images\": " << c.train_images
     << ", \"test_images\": " << c.test_images << ", \"batch_per_worker\": " << c.batch_per_worker
     << ", \"epochs\": " << c.epochs << ", \"seed\": " << c.seed
     << ", \"device\": " << str(c.device) << ", \"hostname\": " << str(c.hostname)
     << ", \"git_sha\": " << str(c.git_sha) << ", \"date\": " << str(c.date)
     << "},\n  \"epochs\": [";
  // One record per line keeps diffs of committed results readable.
  for (std::size_t i = 0; i < records.size(); ++i) {
    os << (i ? ",\n    " : "\n    ") << records[i];
  }
  if (!records.empty()) os << "\n  ";
  os << "]\n}\n";
  return os.str();
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream os(path, std::ios::trunc);
  if (!os) return make_status(StatusCode::kIoError, path, ": cannot open for writing");
  os << text;
  os.flush();
  if (!os) return make_status(StatusCode::kIoError, path, ": write failed");
  return Status::success();
}

std::string cpu_model() {
  std::ifstream is("/proc/cpuinfo");
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      if (c != std::string::npos) {
        const auto b = line.find_first_not_of(" \t", c + 1);
        if (b != std::string::npos) return line.substr(b);
      }
    }
  }
  return "unknown";
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0) return "unknown";
  return buf.data();
}

std::string iso8601_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string git_sha(const std::string& source_dir) {
  std::string out;
  const std::string cmd = "git -C '" + source_dir + "' rev-parse HEAD 2>/dev/null";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    std::array<char, 128> buf{};
    while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) out += buf.data();
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

}  // namespace gradcomp::train
