// PickFreePort: a loopback TCP port that can be bound right after it was picked. The endpoints
// file read from its contents (ParseEndpointsJson).
#include "core/endpoints.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace chainrl {
namespace {

TEST(EndpointsTest, PickFreePortGivesABindableLoopbackPort) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_GE(*port, 1);
  EXPECT_LE(*port, 65535);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(*port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << "port " << *port;
  close(fd);
}

TEST(EndpointsTest, ParseEndpointsJsonReadsTheThreeEndpointsOrNamesTheProblem) {
  auto e = ParseEndpointsJson(
      R"({"work": "tcp://h:1", "trajectories": "tcp://h:2", "weights": "tcp://h:3", "pid": 7})",
      "run/endpoints.json");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->work, "tcp://h:1");
  EXPECT_EQ(e->trajectories, "tcp://h:2");
  EXPECT_EQ(e->weights, "tcp://h:3");
  auto bad = ParseEndpointsJson(R"({"work": "tcp://h:1", "trajectories": "", "weights": 3})",
                                "run/endpoints.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "run/endpoints.json: key 'trajectories' must be a non-empty string");
  EXPECT_EQ(ParseEndpointsJson("[1]", "run/endpoints.json").status().message(),
            "run/endpoints.json: not a JSON object");
  EXPECT_EQ(ParseEndpointsJson("{", "run/endpoints.json")
                .status()
                .message()
                .rfind("run/endpoints.json: not valid JSON", 0),
            0u);
}

}  // namespace
}  // namespace chainrl
