// mountat(dir, source, target, fstype, flags, data): mount(2) with the
// working directory set to `dir`, so relative paths in `data` (overlay's
// lowerdir=l/1:l/2…) resolve against it. That keeps the option string short
// enough for the one-page limit with hundreds of layers. The daemon's own cwd
// is shared by all its threads, so the chdir happens in a short-lived child
// made with clone(CLONE_VM | CLONE_VFORK) and no CLONE_FS: it has its own cwd,
// calls only chdir and mount (async-signal-safe), hands errno back through
// the shared memory and exits; the calling thread waits meanwhile.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "common.h"

namespace capsa {

namespace {

struct MountAtArgs {
  const char* dir;
  const char* source;
  const char* target;
  const char* fstype;
  unsigned long flags;
  const char* data;
  int err;  // written by the child
  const char* failed;
};

int MountAtChild(void* p) {
  auto* a = static_cast<MountAtArgs*>(p);
  if (chdir(a->dir) != 0) {
    a->err = errno;
    a->failed = "chdir";
    return 1;
  }
  if (mount(a->source, a->target, a->fstype, a->flags, a->data) != 0) {
    a->err = errno;
    a->failed = "mount";
    return 1;
  }
  a->err = 0;
  return 0;
}

}  // namespace

static Napi::Value MountAt(const Napi::CallbackInfo& info) {
  std::string dir, source, target, fstype, data;
  double flags;
  if (!ArgString(info, 0, &dir) || !ArgString(info, 1, &source) || !ArgString(info, 2, &target) ||
      !ArgString(info, 3, &fstype) || !ArgNumber(info, 4, &flags) || !ArgString(info, 5, &data))
    return info.Env().Undefined();
  MountAtArgs args{dir.c_str(),
                   source.empty() ? nullptr : source.c_str(),
                   target.c_str(),
                   fstype.empty() ? nullptr : fstype.c_str(),
                   static_cast<unsigned long>(flags),
                   data.empty() ? nullptr : data.c_str(),
                   EINVAL,
                   "clone"};
  const size_t kStack = 64 * 1024;
  std::vector<char> stack(kStack);
  // The child shares our memory: block every signal around clone (as
  // posix_spawn does) so no handler of ours ever runs in it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(MountAtChild, stack.data() + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ThrowErrno(info.Env(), cloneErr, "clone", dir);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ThrowErrno(info.Env(), errno, "waitpid", dir);
  }
  if (args.err != 0) return ThrowErrno(info.Env(), args.err, args.failed, args.failed[0] == 'c' ? dir : target);
  return info.Env().Undefined();
}

void InitMountAt(Napi::Env env, Napi::Object exports) {
  exports.Set("mountat", Napi::Function::New(env, MountAt, "mountat"));
}

}  // namespace capsa
