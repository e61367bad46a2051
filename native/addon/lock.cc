// flock(2): the daemon's single-instance lock on its root dir. The kernel
// drops the lock when the process dies, so a crash never leaves it stale.
#include <sys/file.h>

#include "common.h"

namespace capsa {

// flock(fd, exclusive, nonblocking) -> true when taken, false when busy (EWOULDBLOCK).
static Napi::Value Flock(const Napi::CallbackInfo& info) {
  double fd;
  if (!ArgNumber(info, 0, &fd)) return info.Env().Undefined();
  bool exclusive = info.Length() > 1 && info[1].ToBoolean();
  bool nonblock = info.Length() > 2 && info[2].ToBoolean();
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblock ? LOCK_NB : 0);
  if (flock(static_cast<int>(fd), op) != 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    return ThrowErrno(info.Env(), errno, "flock", "");
  }
  return Napi::Boolean::New(info.Env(), true);
}

void InitLock(Napi::Env env, Napi::Object exports) { exports.Set("flock", Napi::Function::New(env, Flock, "flock")); }

}  // namespace capsa
