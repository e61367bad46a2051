// The daemon's short-lived helpers (capsa-monitor run, exec) started without
// fork(): libuv's uv_spawn forks the whole daemon, copying its page tables
// while the event loop waits (about 5 ms per spawn measured on a busy
// 2-core node), where posix_spawn shares the memory (CLONE_VM|CLONE_VFORK)
// until the child execs.
#include "common.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

extern char** environ;

namespace capsa {

// spawnDetached(file, argv) -> { pid, stdout, stderr }: the child gets
// /dev/null as stdin, pipes as stdout and stderr (their read ends, close-on-
// exec, are the caller's), a session of its own, default signal dispositions
// and no blocked signal, and the daemon's environment. The caller reaps it
// (waitPid): libuv knows nothing of it.
static Napi::Value SpawnDetached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string file;
  if (!ArgString(info, 0, &file)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArray()) {
    Napi::TypeError::New(env, "argument 1 must be an array of strings").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<std::string> args;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "argument 1 must be an array of strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    args.push_back(v.As<Napi::String>().Utf8Value());
  }
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0) return ThrowErrno(env, errno, "pipe2", file);
  if (pipe2(err, O_CLOEXEC) < 0) {
    int e = errno;
    close(out[0]);
    close(out[1]);
    return ThrowErrno(env, e, "pipe2", file);
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, file.c_str(), &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return ThrowErrno(env, rc, "posix_spawn", file);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("pid", Napi::Number::New(env, pid));
  r.Set("stdout", Napi::Number::New(env, out[0]));
  r.Set("stderr", Napi::Number::New(env, err[0]));
  return r;
}

// waitPid(pid) -> null while the child runs, else { code, signal } (one of
// them null), once: the child is reaped.
static Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double pidArg;
  if (!ArgNumber(info, 0, &pidArg)) return env.Undefined();
  int st = 0;
  pid_t r;
  do {
    r = waitpid(static_cast<pid_t>(pidArg), &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(env, errno, "waitpid", "");
  if (r == 0) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("code", WIFEXITED(st) ? Napi::Number::New(env, WEXITSTATUS(st)) : env.Null());
  o.Set("signal", WIFSIGNALED(st) ? Napi::Number::New(env, WTERMSIG(st)) : env.Null());
  return o;
}

void InitSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("spawnDetached", Napi::Function::New(env, SpawnDetached));
  exports.Set("waitPid", Napi::Function::New(env, WaitPid));
}

}  // namespace capsa
