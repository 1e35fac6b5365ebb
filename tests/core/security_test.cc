// The [security] keys as the learner and the actors read them: what is refused (naming the key to
// set) and what each side ends up with.
#include "core/security.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "apps/run_config.h"

namespace chainrl::transport {
namespace {

namespace fs = std::filesystem;

class SecurityConfigTest : public ::testing::Test {
 protected:
  SecurityConfigTest() {
    char tmpl[] = "/tmp/chainrl_security_XXXXXX";
    dir_ = mkdtemp(tmpl);
    learner_ = *MakeCurveKeyPair();
    actor_ = *MakeCurveKeyPair();
    EXPECT_TRUE(WriteKeyFiles(dir_, "learner", learner_).ok());
    EXPECT_TRUE(WriteKeyFiles(dir_, "host-a", actor_).ok());
  }
  ~SecurityConfigTest() override { fs::remove_all(dir_); }
  Config Make(const std::vector<std::string>& sets) {
    auto c = ParseConfig("[model]\npath = \"/models/tiny\"\n", "run.toml", sets);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return *c;
  }
  std::string P(const std::string& name) { return dir_ + "/" + name; }
  std::string dir_;
  CurveKeyPair learner_, actor_;
};

TEST_F(SecurityConfigTest, BeyondLoopbackNeedsKeysOrADeclaredTrustedNetwork) {
  for (const char* bind :
       {"ipc://", "tcp://127.0.0.1:5555", "tcp://[::1]:5555", "tcp://localhost:5555"}) {
    auto s = LearnerSecurityFromConfig(Make({}), bind);
    ASSERT_TRUE(s.ok()) << bind << ": " << s.status().ToString();
    EXPECT_FALSE(s->keys.enabled());
    EXPECT_FALSE(s->open_beyond_loopback);
  }
  for (const char* bind : {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://[::]:5555"}) {
    auto s = LearnerSecurityFromConfig(Make({}), bind);
    ASSERT_FALSE(s.ok()) << bind;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("security.learner_secret_key_file"), std::string::npos)
        << s.status().message();
    EXPECT_NE(s.status().message().find(bind), std::string::npos);
    auto trusted = LearnerSecurityFromConfig(Make({"security.trusted_network=true"}), bind);
    ASSERT_TRUE(trusted.ok());
    EXPECT_TRUE(trusted->open_beyond_loopback);
  }
  auto keyed =
      LearnerSecurityFromConfig(Make({"security.learner_secret_key_file=" + P("learner.key"),
                                      "security.authorized_keys_file=" + P("host-a.pub")}),
                                "tcp://0.0.0.0:5555");
  ASSERT_TRUE(keyed.ok()) << keyed.status().ToString();
  EXPECT_TRUE(keyed->keys.server());
  EXPECT_EQ(keyed->keys.secret_key, learner_.secret_key);
  ASSERT_EQ(keyed->allowed.size(), 1u);
  EXPECT_EQ(keyed->allowed[0].name, "host-a");
}

TEST_F(SecurityConfigTest, HalfAKeySetIsRefusedNamingTheMissingKey) {
  struct Case {
    std::vector<std::string> sets;
    std::string names;
  };
  for (const Case& c : std::vector<Case>{
           {{"security.learner_secret_key_file=" + P("learner.key")},
            "security.authorized_keys_file is not"},
           {{"security.authorized_keys_file=" + P("host-a.pub")},
            "security.learner_secret_key_file is not"},
           {{"security.learner_secret_key_file=" + P("nope.key"),
             "security.authorized_keys_file=" + P("host-a.pub")},
            "security.learner_secret_key_file: key file " + P("nope.key")},
       }) {
    auto s = LearnerSecurityFromConfig(Make(c.sets), "ipc://");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find(c.names), std::string::npos) << s.status().message();
  }
  // A world-readable learner key.
  const std::string open_key = P("open.key");
  fs::copy_file(P("learner.key"), open_key);
  chmod(open_key.c_str(), 0644);
  auto s = LearnerSecurityFromConfig(Make({"security.learner_secret_key_file=" + open_key,
                                           "security.authorized_keys_file=" + P("host-a.pub")}),
                                     "ipc://");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("mode 0644"), std::string::npos) << s.status().message();
}

TEST_F(SecurityConfigTest, ActorsTakeTheirPairAndTheLearnersPublicKey) {
  auto none = ActorSecurityFromConfig(Make({}));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled());
  for (const std::string& learner_key : {learner_.public_key, P("learner.pub"), std::string()}) {
    std::vector<std::string> sets{"security.actor_secret_key_file=" + P("host-a.key")};
    if (learner_key.empty())  // the launcher's actors: same host, same config as the learner
      sets.push_back("security.learner_secret_key_file=" + P("learner.key"));
    else
      sets.push_back("security.learner_public_key=\"" + learner_key + "\"");
    auto k = ActorSecurityFromConfig(Make(sets));
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    EXPECT_FALSE(k->server());
    EXPECT_EQ(k->server_key, learner_.public_key);
    EXPECT_EQ(k->secret_key, actor_.secret_key);
    EXPECT_EQ(k->public_key, actor_.public_key);
  }
  auto missing_own =
      ActorSecurityFromConfig(Make({"security.learner_secret_key_file=" + P("learner.key"),
                                    "security.authorized_keys_file=" + P("host-a.pub")}));
  ASSERT_FALSE(missing_own.ok());
  EXPECT_NE(missing_own.status().message().find("security.actor_secret_key_file"),
            std::string::npos);
  auto missing_learner =
      ActorSecurityFromConfig(Make({"security.actor_secret_key_file=" + P("host-a.key")}));
  ASSERT_FALSE(missing_learner.ok());
  EXPECT_NE(missing_learner.status().message().find("security.learner_public_key"),
            std::string::npos);
  auto bad = ActorSecurityFromConfig(Make(
      {"security.actor_secret_key_file=" + P("host-a.key"), "security.learner_public_key=short"}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("security.learner_public_key"), std::string::npos);
}

}  // namespace
}  // namespace chainrl::transport
