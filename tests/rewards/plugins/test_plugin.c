/* Test reward plugins written against the C ABI in C, one source built into several modules
 * (tests/rewards/CMakeLists.txt): a well-behaved scorer whose score is response_len +
 * 0.5 * num_tokens, plus per MISBEHAVIOUR a crash, hang, NaN or exit on a marked response. */
#define _POSIX_C_SOURCE 200809L /* getsid, nanosleep */
#include <chainrl/reward.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MISBEHAVE_NONE 0
#define MISBEHAVE_CRASH 1 /* raise(SIGSEGV) on "CRASH" */
#define MISBEHAVE_HANG 2  /* sleep forever on "HANG" */
/* score NaN on "NAN", 1e308 on "HUGE", a 1 MiB error message on "LONGMSG", fork a child that
 * never exits on "FORK" (its pid as the message), fork such a child and crash on "FORKCRASH", fork
 * one that calls setsid on "SETSID" (and then hang on "SETSIDHANG") */
#define MISBEHAVE_NAN 3
#define MISBEHAVE_EXIT 4  /* _exit(7) on "EXIT" */
#ifndef MISBEHAVIOUR
#define MISBEHAVIOUR MISBEHAVE_NONE
#endif
#ifndef ABI_VERSION
#define ABI_VERSION CHAINRL_REWARD_ABI_VERSION
#endif

typedef struct instance {
  double scale;
} instance;

static int plugin_init(const char* options, void** out, char* error, size_t error_size) {
  instance* self;
  const char* scale;
  if (strstr(options, "fail_init") != NULL) {
    snprintf(error, error_size, "%s", "init refused: fail_init is set");
    return CHAINRL_REWARD_ERROR;
  }
  self = (instance*)malloc(sizeof(instance));
  if (self == NULL) return CHAINRL_REWARD_ERROR;
  self->scale = 1.0;
  scale = strstr(options, "scale =");
  if (scale != NULL) self->scale = atof(scale + 7);
  *out = self;
  return CHAINRL_REWARD_OK;
}

static int plugin_score(void* inst, const chainrl_reward_host* host,
                        const chainrl_reward_input* inputs, chainrl_reward_output* outputs,
                        size_t count, char* error, size_t error_size) {
  const instance* self = (const instance*)inst;
  size_t i;
  volatile double zero = 0.0;
  for (i = 0; i < count; ++i) {
    const chainrl_reward_input* in = &inputs[i];
    if (MISBEHAVIOUR == MISBEHAVE_CRASH && strstr(in->response, "CRASH")) raise(SIGSEGV);
    if (MISBEHAVIOUR == MISBEHAVE_HANG && strstr(in->response, "HANG"))
      for (;;) sleep(1);
    if (MISBEHAVIOUR == MISBEHAVE_EXIT && strstr(in->response, "EXIT")) _exit(7);
    if (strstr(in->response, "REJECT")) {
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], "rejected by the test plugin");
      continue;
    }
    outputs[i].score = self->scale * ((double)in->response_len + 0.5 * (double)in->num_tokens);
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "NAN"))
      outputs[i].score = zero / zero;
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "HUGE")) outputs[i].score = 1e308;
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "SETSID")) {
      /* A child that leaves the worker's process group and session, as a daemon would; its pid
       * goes to $CHAINRL_TEST_PID_FILE, then "SETSIDHANG" hangs and "SETSID" returns. */
      const char* pid_file = getenv("CHAINRL_TEST_PID_FILE");
      pid_t child = fork();
      if (child == 0) {
        setsid();
        for (;;) pause();
      }
      /* The pid is told once the child leads its own session (up to 2 s). */
      {
        const struct timespec ms = {0, 1000000};
        int waited;
        for (waited = 0; child > 0 && getsid(child) != child && waited < 2000; ++waited)
          nanosleep(&ms, NULL);
      }
      if (pid_file != NULL) {
        FILE* f = fopen(pid_file, "w");
        if (f != NULL) {
          fprintf(f, "%d\n", (int)child);
          fclose(f);
        }
      }
      if (strstr(in->response, "SETSIDHANG"))
        for (;;) sleep(1);
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], "left a child in its own session");
      continue;
    }
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "FORKCRASH")) {
      /* A child that keeps the worker's socket open, then a crash. */
      if (fork() == 0)
        for (;;) pause();
      raise(SIGSEGV);
    }
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "FORK")) {
      /* A child that would outlive everything: its pid goes back as the sample's message. */
      char pid_text[32];
      pid_t child = fork();
      if (child == 0)
        for (;;) pause();
      snprintf(pid_text, sizeof pid_text, "%d", (int)child);
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], pid_text);
      continue;
    }
    if (MISBEHAVIOUR == MISBEHAVE_NAN && strstr(in->response, "LONGMSG")) {
      static char message[(1 << 20) + 1];
      memset(message, 'm', 1 << 20);
      message[1 << 20] = '\0';
      outputs[i].status = CHAINRL_REWARD_ERROR;
      host->set_message(&outputs[i], message);
      continue;
    }
    host->add_component(&outputs[i], "len", (double)in->response_len);
    if (strcmp(in->finish_reason, "length") == 0) host->set_message(&outputs[i], "truncated");
  }
  (void)error;
  (void)error_size;
  return CHAINRL_REWARD_OK;
}

static void plugin_destroy(void* inst) { free(inst); }

static const chainrl_reward_descriptor descriptor = {
    ABI_VERSION, sizeof(chainrl_reward_descriptor), "test_plugin", "0.1",
    plugin_init, plugin_score, plugin_destroy};

#ifndef NO_ENTRY_POINT
CHAINRL_REWARD_EXPORT const chainrl_reward_descriptor* chainrl_reward_entry(void) {
  return &descriptor;
}
#else
CHAINRL_REWARD_EXPORT const chainrl_reward_descriptor* some_other_name(void) { return &descriptor; }
#endif
