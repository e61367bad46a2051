// Namespace pinning for pod sandboxes, without forking the daemon.
//
// pinNamespaces() starts a short-lived pthread that unshare(2)s the
// requested namespaces. Namespaces belong to a task, so only that thread
// moves: the rest of Node is untouched. Inside, the thread sets the
// hostname (UTS), brings "lo" up (net), writes the namespaced sysctls, then
// bind-mounts /proc/thread-self/ns/<type> onto the target files, which keeps
// each namespace alive after the thread exits. Any failure undoes the pins
// already made and reports the failing operation and path.
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/securebits.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "common.h"

namespace capsa {

namespace {

struct Pin {
  int flag;          // CLONE_NEW*
  const char* type;  // name under /proc/thread-self/ns
  std::string target;
};

struct PinJob {
  std::vector<Pin> pins;
  // Join the pinned files instead of creating and pinning: the namespaces
  // of a pod in a user namespace, made by capsa-pause userns (a thread
  // cannot enter a new user namespace), still get hostname, lo, sysctls here.
  bool join = false;
  // With join: the user namespace's root (host ids) to write the sysctls as.
  // IPC sysctls of an IPC namespace a user namespace owns are writable by
  // that namespace's root only (ipc_permissions compares the euid), not by
  // the host's root.
  long owner_uid = -1, owner_gid = -1;
  std::string hostname;
  bool loopback = false;
  std::vector<std::pair<std::string, std::string>> sysctls;  // path under /proc/sys, value
  // result
  int err = 0;
  const char* op = nullptr;
  std::string path;
};

bool Fail(PinJob* job, int err, const char* op, const std::string& path) {
  job->err = err;
  job->op = op;
  job->path = path;
  return false;
}

bool LoopbackUp(PinJob* job) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(job, errno, "socket(AF_INET) for loopback", "lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    int e = errno;
    close(fd);
    return Fail(job, e, "ioctl(SIOCGIFFLAGS)", "lo");
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
    int e = errno;
    close(fd);
    return Fail(job, e, "ioctl(SIOCSIFFLAGS)", "lo");
  }
  if (close(fd) != 0) return Fail(job, errno, "close", "loopback socket");
  return true;
}

bool WriteSysctl(PinJob* job, const std::string& rel, const std::string& value) {
  std::string file = "/proc/sys/" + rel;
  int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Fail(job, errno, "open", file);
  ssize_t n = write(fd, value.data(), value.size());
  if (n < 0 || static_cast<size_t>(n) != value.size()) {
    int e = n < 0 ? errno : EIO;
    close(fd);
    return Fail(job, e, "write", file);
  }
  if (close(fd) != 0) return Fail(job, errno, "close", file);
  return true;
}

bool PinOne(PinJob* job, const Pin& pin) {
  int fd = open(pin.target.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0) return Fail(job, errno, "create", pin.target);
  if (close(fd) != 0) {
    int e = errno;
    unlink(pin.target.c_str());
    return Fail(job, e, "close", pin.target);
  }
  std::string source = std::string("/proc/thread-self/ns/") + pin.type;
  if (mount(source.c_str(), pin.target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int e = errno;
    unlink(pin.target.c_str());
    return Fail(job, e, "mount(MS_BIND) of the namespace", pin.target);
  }
  return true;
}

void Unpin(const std::string& target) {
  // Best effort: the caller already has the error that made us undo.
  umount2(target.c_str(), MNT_DETACH);
  unlink(target.c_str());
}

void* PinThread(void* arg) {
  PinJob* job = static_cast<PinJob*>(arg);
  int flags = 0;
  for (const Pin& p : job->pins) flags |= p.flag;
  if (job->join) {
    for (const Pin& p : job->pins) {
      int fd = open(p.target.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        Fail(job, errno, "open", p.target);
        return nullptr;
      }
      int rc = setns(fd, p.flag);
      int e = errno;
      close(fd);
      if (rc != 0) {
        Fail(job, e, "setns", p.target);
        return nullptr;
      }
    }
  } else if (flags != 0 && unshare(flags) != 0) {
    Fail(job, errno, "unshare", "");
    return nullptr;
  }
  if (!job->hostname.empty() && sethostname(job->hostname.data(), job->hostname.size()) != 0) {
    Fail(job, errno, "sethostname", job->hostname);
    return nullptr;
  }
  if (job->loopback && !LoopbackUp(job)) return nullptr;
  // Raw syscalls: glibc's setresuid would change every thread of the daemon.
  // This thread's effective ids only (it ends after the job), keeping its
  // capabilities (SECBIT_NO_SETUID_FIXUP): net sysctls want CAP_NET_ADMIN
  // over the namespace, IPC ones its root's euid.
  if (job->join && job->owner_uid >= 0 && !job->sysctls.empty()) {
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) != 0) return Fail(job, errno, "prctl(PR_SET_SECUREBITS)", ""), nullptr;
    if (syscall(SYS_setresgid, -1, job->owner_gid, -1) != 0) return Fail(job, errno, "setresgid", ""), nullptr;
    if (syscall(SYS_setresuid, -1, job->owner_uid, -1) != 0) return Fail(job, errno, "setresuid", ""), nullptr;
  }
  for (const auto& kv : job->sysctls) {
    if (!WriteSysctl(job, kv.first, kv.second)) return nullptr;
  }
  if (job->join) return nullptr;
  std::vector<std::string> done;
  for (const Pin& p : job->pins) {
    if (!PinOne(job, p)) {
      for (const std::string& t : done) Unpin(t);
      return nullptr;
    }
    done.push_back(p.target);
  }
  return nullptr;
}

bool OptionalString(Napi::Env env, Napi::Object o, const char* key, std::string* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return true;
  if (!v.IsString()) {
    Napi::TypeError::New(env, std::string("option ") + key + " must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

// A sysctl path relative to /proc/sys: no "..", no leading "/", only the
// characters sysctl names use. The daemon validates too; this is the last
// line before open(2).
bool SafeSysctlPath(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find("..") != std::string::npos) return false;
  for (char c : p) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '/';
    if (!ok) return false;
  }
  return true;
}

// pinNamespaces({ net?, uts?, ipc?: target file, join?, owner?, hostname?, loopback?, sysctls?: [path, value][] })
Napi::Value PinNamespaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "argument 0 must be an options object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  PinJob job;
  std::string net, uts, ipc;
  if (!OptionalString(env, o, "net", &net) || !OptionalString(env, o, "uts", &uts) ||
      !OptionalString(env, o, "ipc", &ipc) || !OptionalString(env, o, "hostname", &job.hostname))
    return env.Undefined();
  if (!net.empty()) job.pins.push_back({CLONE_NEWNET, "net", net});
  if (!uts.empty()) job.pins.push_back({CLONE_NEWUTS, "uts", uts});
  if (!ipc.empty()) job.pins.push_back({CLONE_NEWIPC, "ipc", ipc});
  if (!job.hostname.empty() && uts.empty()) {
    Napi::TypeError::New(env, "hostname needs a new UTS namespace (uts)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value jv = o.Get("join");
  job.join = jv.IsBoolean() && jv.As<Napi::Boolean>().Value();
  Napi::Value ov = o.Get("owner");
  if (ov.IsObject()) {
    Napi::Value u = ov.As<Napi::Object>().Get("uid"), g = ov.As<Napi::Object>().Get("gid");
    if (!u.IsNumber() || !g.IsNumber()) {
      Napi::TypeError::New(env, "owner must be { uid, gid }").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    job.owner_uid = u.As<Napi::Number>().Int64Value();
    job.owner_gid = g.As<Napi::Number>().Int64Value();
  }
  Napi::Value lo = o.Get("loopback");
  job.loopback = lo.IsBoolean() && lo.As<Napi::Boolean>().Value();
  if (job.loopback && net.empty()) {
    Napi::TypeError::New(env, "loopback needs a new network namespace (net)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value sc = o.Get("sysctls");
  if (!sc.IsUndefined() && !sc.IsNull()) {
    if (!sc.IsArray()) {
      Napi::TypeError::New(env, "sysctls must be an array of [path, value]").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array arr = sc.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value e = arr.Get(i);
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 2 || !e.As<Napi::Array>().Get(0u).IsString() ||
          !e.As<Napi::Array>().Get(1u).IsString()) {
        Napi::TypeError::New(env, "sysctls must be an array of [path, value]").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      std::string k = e.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value();
      std::string v = e.As<Napi::Array>().Get(1u).As<Napi::String>().Utf8Value();
      if (!SafeSysctlPath(k)) {
        Napi::TypeError::New(env, "sysctl path '" + k + "' is not a plain /proc/sys path")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      job.sysctls.emplace_back(k, v);
    }
  }
  if (job.pins.empty()) return env.Undefined();

  pthread_t t;
  int rc = pthread_create(&t, nullptr, PinThread, &job);
  if (rc != 0) return ThrowErrno(env, rc, "pthread_create", "");
  rc = pthread_join(t, nullptr);
  if (rc != 0) return ThrowErrno(env, rc, "pthread_join", "");
  if (job.err != 0) return ThrowErrno(env, job.err, job.op, job.path);
  return env.Undefined();
}

// readNetDev(nsPath): the text of /proc/net/dev as seen from the network
// namespace pinned at nsPath. A pod with no process left in its netns (capsa
// runs no pause process) has no /proc/<pid>/net to read, so a short-lived
// thread joins the namespace (setns moves only that thread) and reads
// /proc/thread-self/net/dev there.
struct NetDevJob {
  std::string nsPath;
  std::string out;
  int err = 0;
  const char* op = nullptr;
};

void* NetDevThread(void* arg) {
  auto* job = static_cast<NetDevJob*>(arg);
  int fd = open(job->nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err = errno;
    job->op = "open";
    return nullptr;
  }
  // EINVAL when the file is not a network namespace.
  if (setns(fd, CLONE_NEWNET) != 0) {
    job->err = errno;
    job->op = "setns(CLONE_NEWNET)";
    close(fd);
    return nullptr;
  }
  close(fd);
  int dev = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
  if (dev < 0) {
    job->err = errno;
    job->op = "open /proc/thread-self/net/dev";
    return nullptr;
  }
  char buf[8192];
  for (;;) {
    ssize_t n = read(dev, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      job->err = errno;
      job->op = "read /proc/thread-self/net/dev";
      break;
    }
    if (n == 0) break;
    job->out.append(buf, static_cast<size_t>(n));
    if (job->out.size() > (1u << 20)) break;  // thousands of interfaces: enough
  }
  close(dev);
  return nullptr;
}

Napi::Value ReadNetDev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "argument 0 must be the path of a network namespace").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  NetDevJob job;
  job.nsPath = info[0].As<Napi::String>().Utf8Value();
  pthread_t t;
  int rc = pthread_create(&t, nullptr, NetDevThread, &job);
  if (rc != 0) return ThrowErrno(env, rc, "pthread_create", "");
  rc = pthread_join(t, nullptr);
  if (rc != 0) return ThrowErrno(env, rc, "pthread_join", "");
  if (job.err != 0) return ThrowErrno(env, job.err, job.op, job.nsPath);
  return Napi::String::New(env, job.out);
}

}  // namespace

void InitNs(Napi::Env env, Napi::Object exports) {
  exports.Set("pinNamespaces", Napi::Function::New(env, PinNamespaces, "pinNamespaces"));
  exports.Set("readNetDev", Napi::Function::New(env, ReadNetDev, "readNetDev"));
}

}  // namespace capsa
