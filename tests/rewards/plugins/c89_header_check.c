/* Compiled as strict C89 (-std=c89 -pedantic-errors): chainrl/reward.h must stay plain C. */
#include <chainrl/reward.h>

int chainrl_c89_header_check(const chainrl_reward_descriptor* d) {
  return d->abi_version == CHAINRL_REWARD_ABI_VERSION && d->struct_size >= sizeof(*d);
}
