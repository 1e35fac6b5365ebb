// The [security] keys of a run config, read into the CURVE keys of the learner's endpoints and of
// the actors that connect to them (core/curve.h; the trust model: docs/SECURITY.md).
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/curve.h"
#include "core/status.h"

namespace chainrl::transport {

struct LearnerSecurity {
  CurveKeys keys;                      // server keys; empty: plain ZMTP
  std::vector<AuthorizedKey> allowed;  // who may connect, when keys are set
  bool open_beyond_loopback = false;   // no keys, a bind beyond loopback, trusted_network set
};

// security.* for a learner binding `bind` (learner.bind). InvalidArgument naming the key to set:
// a secret key without an authorized keys file or the reverse, a file that cannot be read or
// parsed, and a bind beyond loopback without keys unless security.trusted_network is set.
Result<LearnerSecurity> LearnerSecurityFromConfig(const Config& config, const std::string& bind);

// The warning a learner without keys bound beyond loopback (open_beyond_loopback) logs at start.
std::string OpenNetworkWarning(const std::string& bind);

// security.* for an actor: its key pair and the learner's public key, or no CURVE at all.
// security.learner_public_key empty: taken from security.learner_secret_key_file when that file
// is set (the learner's host). InvalidArgument naming the key when only one half is given.
Result<CurveKeys> ActorSecurityFromConfig(const Config& config);

}  // namespace chainrl::transport
