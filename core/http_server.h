// A minimal HTTP/1.1 server for GET endpoints such as /metrics: one thread, connections served one
// at a time and closed after each response. Small on purpose: it must work inside any process
// (LibTorch's large thread-local storage rules out servers with tiny fixed thread stacks).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"

namespace chainrl {

class HttpServer {
 public:
  // Returns the body for a GET of its path (content type text/plain; version=0.0.4).
  using Handler = std::function<std::string()>;

  // Binds `listen` ("HOST:PORT", IPv4 address or "localhost" or "0.0.0.0"; port 0 = a free port)
  // and serves `handlers` (path -> handler; other paths get 404) on a background thread.
  // IoError naming the address when it cannot be bound.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                   std::map<std::string, Handler> handlers);
  ~HttpServer();  // stops the thread within ~100 ms and closes the socket

  int port() const { return port_; }

 private:
  HttpServer() = default;
  void Serve();
  void ServeOne(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::map<std::string, Handler> handlers_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace chainrl
