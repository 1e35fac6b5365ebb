// Learner endpoint derivation, the endpoints file and free local ports (see endpoints.h).
#include "core/endpoints.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "core/json_file.h"

namespace chainrl {

Result<LearnerEndpoints> ResolveLearnerEndpoints(const std::string& address) {
  auto ends_with = [&](const std::string& suffix) {
    return address.size() >= suffix.size() &&
           address.compare(address.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".json")) return ReadEndpointsFile(address);
  LearnerEndpoints e;
  if (address.rfind("ipc://", 0) == 0 && address.size() > 6) {
    e.work = address;
    e.trajectories = address + ".traj";
    e.weights = address + ".weights";
    return e;
  }
  if (address.rfind("tcp://", 0) == 0) {
    const size_t colon = address.rfind(':');
    if (colon != std::string::npos && colon > 6) {
      const std::string host = address.substr(0, colon);
      const std::string port_text = address.substr(colon + 1);
      int port = 0;
      bool digits = !port_text.empty() && port_text.size() <= 5 &&
                    port_text.find_first_not_of("0123456789") == std::string::npos;
      if (digits) port = std::stoi(port_text);
      if (digits && port >= 1 && port <= 65533) {
        e.work = host + ":" + std::to_string(port);
        e.trajectories = host + ":" + std::to_string(port + 1);
        e.weights = host + ":" + std::to_string(port + 2);
        return e;
      }
    }
    return InvalidArgument("learner address '" + address +
                           "': tcp://HOST:PORT needs a port in [1, 65533] (the learner uses PORT, "
                           "PORT+1 and PORT+2)");
  }
  return InvalidArgument("learner address '" + address +
                         "' is neither tcp://HOST:PORT, ipc://PATH nor an endpoints .json file");
}

Result<LearnerEndpoints> ReadEndpointsFile(const std::string& path) {
  auto read = ReadFileBounded(path, kMaxSmallJsonBytes);
  if (!read.ok() && read.status().code() == StatusCode::kNotFound)
    return NotFound(path + ": cannot open the learner's endpoints file");
  CHAINRL_ASSIGN_OR_RETURN(const std::string text, std::move(read));
  return ParseEndpointsJson(text, path);
}

Result<LearnerEndpoints> ParseEndpointsJson(std::string_view text, const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(const nlohmann::json j, ParseJson(text, path));
  if (!j.is_object()) return InvalidArgument(path + ": not a JSON object");
  LearnerEndpoints e;
  for (auto [key, field] : {std::pair{"work", &e.work}, std::pair{"trajectories", &e.trajectories},
                            std::pair{"weights", &e.weights}}) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty())
      return InvalidArgument(path + ": key '" + key + "' must be a non-empty string");
    *field = j[key].get<std::string>();
  }
  return e;
}

Status WriteEndpointsFile(const std::string& path, const LearnerEndpoints& e, int pid) {
  nlohmann::json j = {
      {"work", e.work}, {"trajectories", e.trajectories}, {"weights", e.weights}, {"pid", pid}};
  return WriteFileAtomic(path, j.dump(1) + "\n");
}

Result<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return IoError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    close(fd);
    return IoError(std::string("bind 127.0.0.1:0: ") + std::strerror(e));
  }
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace chainrl
