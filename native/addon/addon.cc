// capsa's native addon: the few syscalls Node does not expose. Each
// function is synchronous and small; anything that must not block the
// event loop for long is not done here.
#include "common.h"

namespace capsa {

static const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTSUP: return "ENOTSUP";
    case ENODATA: return "ENODATA";
    case ENOSPC: return "ENOSPC";
    case ERANGE: return "ERANGE";
    case ELOOP: return "ELOOP";
    case ESRCH: return "ESRCH";
    case ENOSYS: return "ENOSYS";
    case E2BIG: return "E2BIG";
    default: return "EUNKNOWN";
  }
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  std::string msg = std::string(ErrnoName(err)) + ": " + strerror(err) + ", " + syscall;
  if (!path.empty()) msg += " '" + path + "'";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

bool ArgNumber(const Napi::CallbackInfo& info, size_t i, double* out) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().DoubleValue();
  return true;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitFs(env, exports);
  InitMount(env, exports);
  InitMountAt(env, exports);
  InitLock(env, exports);
  InitNs(env, exports);
  InitIdmap(env, exports);
  InitSpawn(env, exports);
  return exports;
}

}  // namespace capsa

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return capsa::Init(env, exports); }

NODE_API_MODULE(capsa_native, InitAddon)
