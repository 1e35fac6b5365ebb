// The [security] keys; see security.h.
#include "core/security.h"

#include "core/channel.h"

namespace chainrl::transport {

Result<LearnerSecurity> LearnerSecurityFromConfig(const Config& c, const std::string& bind) {
  LearnerSecurity s;
  const std::string key_file = c.GetString("security.learner_secret_key_file");
  const std::string allowed_file = c.GetString("security.authorized_keys_file");
  if (key_file.empty() != allowed_file.empty())
    return InvalidArgument(
        key_file.empty()
            ? "security.authorized_keys_file is set but security.learner_secret_key_file is not: "
              "the learner needs its own key pair to authenticate actors (chainrl keys learner)"
            : "security.learner_secret_key_file is set but security.authorized_keys_file is not: "
              "name the file of the actors' public keys allowed to connect");
  if (!key_file.empty()) {
    auto pair = ReadKeyPairFile(key_file);
    if (!pair.ok()) return pair.status().WithPrefix("security.learner_secret_key_file");
    auto allowed = ReadAuthorizedKeys(allowed_file);
    if (!allowed.ok()) return allowed.status().WithPrefix("security.authorized_keys_file");
    s.keys = CurveServer(*pair);
    s.allowed = std::move(allowed).value();
    return s;
  }
  bool loopback = true;
  if (bind != "ipc://") {
    auto e = ParseEndpoint(bind);
    if (!e.ok()) return e.status().WithPrefix("learner.bind");
    loopback = e->IsLoopback();
  }
  if (loopback) return s;
  if (!c.GetBool("security.trusted_network"))
    return InvalidArgument(
        "learner.bind = \"" + bind +
        "\" reaches beyond this host, and the learner has no keys: anyone who can reach the port "
        "could pull the weights, read prompts and answers and submit trajectories. Set "
        "security.learner_secret_key_file and security.authorized_keys_file (make keys with "
        "`chainrl keys NAME`; docs/SECURITY.md), or set security.trusted_network = true if every "
        "machine that can reach it is trusted");
  s.open_beyond_loopback = true;
  return s;
}

std::string OpenNetworkWarning(const std::string& bind) {
  return "SECURITY: learner.bind = " + bind +
         " is reachable beyond this host WITHOUT authentication or encryption "
         "(security.trusted_network = true): anyone who can reach its ports can pull the weights, "
         "read prompts and answers, and submit trajectories that will be trained on";
}

Result<CurveKeys> ActorSecurityFromConfig(const Config& c) {
  const std::string own_file = c.GetString("security.actor_secret_key_file");
  std::string learner = c.GetString("security.learner_public_key");
  const std::string learner_pair = c.GetString("security.learner_secret_key_file");
  if (own_file.empty()) {
    if (!learner.empty())
      return InvalidArgument(
          "security.learner_public_key is set but security.actor_secret_key_file is not: an "
          "actor needs its own key pair, whose public key the learner authorizes");
    if (!learner_pair.empty())
      return InvalidArgument(
          "the learner has keys (security.learner_secret_key_file) but this actor has none: set "
          "security.actor_secret_key_file to a key pair whose public key is in "
          "security.authorized_keys_file");
    return CurveKeys{};
  }
  auto own = ReadKeyPairFile(own_file);
  if (!own.ok()) return own.status().WithPrefix("security.actor_secret_key_file");
  if (learner.empty()) {
    if (learner_pair.empty())
      return InvalidArgument(
          "security.actor_secret_key_file is set but security.learner_public_key is not: name "
          "the learner's public key (its .pub file or its 40 characters)");
    auto pair = ReadKeyPairFile(learner_pair);
    if (!pair.ok())
      return pair.status().WithPrefix(
          "security.learner_public_key is empty and security.learner_secret_key_file");
    learner = pair->public_key;
  } else {
    auto pub = ReadPublicKey(learner);
    if (!pub.ok()) return pub.status().WithPrefix("security.learner_public_key");
    learner = *pub;
  }
  return CurveClient(*own, learner);
}

}  // namespace chainrl::transport
