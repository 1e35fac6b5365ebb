/* chainrl reward plugin ABI: the one C header a reward plugin (a shared library loaded at run
 * time) is built against. Plain C (C89 and later) and C++; the ABI is C so a plugin may be written
 * in any language that can export a C function. See rewards/README.md, "Write your own reward". */
#ifndef CHAINRL_REWARD_H_
#define CHAINRL_REWARD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. A plugin records the version it was built against in
 * its descriptor; chainrl refuses to load a plugin whose version differs from its own. Bumped on
 * any incompatible change to the structs or functions below. */
#define CHAINRL_REWARD_ABI_VERSION 1u

/* Name of the single symbol a plugin exports (see chainrl_reward_entry_fn). */
#define CHAINRL_REWARD_ENTRY_SYMBOL "chainrl_reward_entry"

#if defined(_WIN32)
#define CHAINRL_REWARD_EXPORT __declspec(dllexport)
#else
#define CHAINRL_REWARD_EXPORT __attribute__((visibility("default")))
#endif

/* Return codes of init and score. */
#define CHAINRL_REWARD_OK 0
#define CHAINRL_REWARD_ERROR 1

/* One sample to score. Every pointer is owned by chainrl and valid only during the score call
 * that received it; copy what you need to keep. Strings are UTF-8 and NUL-terminated; prompt and
 * response also carry their length in bytes. */
typedef struct chainrl_reward_input {
  const char* example_id; /* the dataset example's id ("" when it has none) */
  const char* prompt;     /* the prompt text as given to the model (chat template applied) */
  size_t prompt_len;
  const char* response; /* the generated text, without the prompt */
  size_t response_len;
  const int32_t* token_ids; /* the response's token ids (num_tokens of them) */
  size_t num_tokens;
  const char* finish_reason; /* "stop" (end-of-sequence or stop string), "length" (token budget
                                reached) or "abort" */
  const char* answer_json;   /* the example's reference answer as a JSON value ("null" if none) */
  const char* metadata_json; /* the example's metadata as a JSON object ("{}" if none) */
} chainrl_reward_input;

/* The result slot of one sample. chainrl initialises score to 0 and status to
 * CHAINRL_REWARD_OK before the call; the plugin sets score, and sets status to
 * CHAINRL_REWARD_ERROR when it cannot score this sample (the sample then gets the reward's
 * configured error score). A score that is NaN or infinite is also treated as an error. */
typedef struct chainrl_reward_output {
  double score;
  int status;
  void* host_data; /* chainrl's; a plugin passes the slot to chainrl_reward_host functions */
} chainrl_reward_output;

/* Functions chainrl gives the plugin during a score call to attach optional extras to one
 * sample's output. chainrl copies `name` and `message` before returning: the plugin keeps
 * ownership of its strings. Components are named numbers reported as metrics (for example
 * "format" 1.0 and "length_tokens" 812); they do not change the score. set_message records one
 * diagnostic line (the last call wins; kept up to 4 KiB), logged by chainrl with the example id. */
typedef struct chainrl_reward_host {
  void (*add_component)(chainrl_reward_output* output, const char* name, double value);
  void (*set_message)(chainrl_reward_output* output, const char* message);
} chainrl_reward_host;

/* The plugin descriptor, returned by the entry point. It and the strings it points to are owned
 * by the plugin and must stay valid until the library is unloaded (a static object is typical).
 * abi_version and struct_size come first so that chainrl can read them from a plugin built for
 * any ABI version before trusting the rest of the layout. */
typedef struct chainrl_reward_descriptor {
  uint32_t abi_version; /* CHAINRL_REWARD_ABI_VERSION of the header the plugin was built with */
  uint32_t struct_size; /* sizeof(chainrl_reward_descriptor) */
  const char* name;     /* the plugin's name, e.g. "unit_tests" */
  const char* version;  /* the plugin's own version, e.g. "1.2.0" */

  /* Creates one instance from the reward's TOML table (`options_toml`, a NUL-terminated TOML
   * document; "" when the config gives no options) and stores it in *instance. Returns
   * CHAINRL_REWARD_OK, or CHAINRL_REWARD_ERROR after writing a NUL-terminated message of at most
   * error_size bytes (including the NUL) into `error`. Called once per worker process. */
  int (*init)(const char* options_toml, void** instance, char* error, size_t error_size);

  /* Scores `count` samples: reads inputs[i], writes outputs[i]. Returns CHAINRL_REWARD_OK, or
   * CHAINRL_REWARD_ERROR (with a message in `error` as for init) if the whole call failed; chainrl
   * then retries the samples one at a time to find which ones fail. Must be a pure function of its
   * inputs: after a crash or a deadline chainrl may score the same sample again. Calls on one
   * instance never overlap; different instances live in different processes. */
  int (*score)(void* instance, const chainrl_reward_host* host, const chainrl_reward_input* inputs,
               chainrl_reward_output* outputs, size_t count, char* error, size_t error_size);

  /* Frees an instance made by init. Not called when the worker process is killed. */
  void (*destroy)(void* instance);
} chainrl_reward_descriptor;

/* The entry point every plugin exports under the name CHAINRL_REWARD_ENTRY_SYMBOL:
 *
 *   CHAINRL_REWARD_EXPORT const chainrl_reward_descriptor* chainrl_reward_entry(void);
 *
 * It must be cheap, have no side effects, and return the same pointer on every call. */
typedef const chainrl_reward_descriptor* (*chainrl_reward_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CHAINRL_REWARD_H_ */
