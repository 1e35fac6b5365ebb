// CHAINRL_CHECK: fail fast on a broken invariant, printing file:line and the values involved.
// For bugs only; expected failures (bad input, peers, files) are Status values (core/status.h).
// Usage: CHAINRL_CHECK(n > 0, "n = " << n); the message part is optional.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>

#define CHAINRL_CHECK(cond, ...)                                                                 \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::ostringstream _chainrl_os;                                                            \
      _chainrl_os << "" __VA_OPT__(<<) __VA_ARGS__;                                              \
      std::fprintf(stderr, "chainrl: check failed at %s:%d: %s %s\n", __FILE__, __LINE__, #cond, \
                   _chainrl_os.str().c_str());                                                   \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)
