// File-system syscalls Node lacks: mknod (device nodes, overlay
// whiteouts) and extended attributes on the link itself (l*xattr), which
// layer unpacking needs to keep xattrs and mark opaque directories.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <vector>

#include "common.h"

namespace capsa {

// mknod(path, mode, major, minor): mode includes the file type bits.
static Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path;
  double mode, major, minor;
  if (!ArgString(info, 0, &path) || !ArgNumber(info, 1, &mode) || !ArgNumber(info, 2, &major) ||
      !ArgNumber(info, 3, &minor))
    return info.Env().Undefined();
  dev_t dev = makedev(static_cast<unsigned>(major), static_cast<unsigned>(minor));
  if (mknod(path.c_str(), static_cast<mode_t>(mode), dev) != 0) return ThrowErrno(info.Env(), errno, "mknod", path);
  return info.Env().Undefined();
}

// lsetxattr(path, name, value: Buffer, flags)
static Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  std::string path, name;
  if (!ArgString(info, 0, &path) || !ArgString(info, 1, &name)) return info.Env().Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) {
    Napi::TypeError::New(info.Env(), "argument 2 must be a Buffer").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto value = info[2].As<Napi::Buffer<uint8_t>>();
  int flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  if (lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), flags) != 0)
    return ThrowErrno(info.Env(), errno, "lsetxattr", path);
  return info.Env().Undefined();
}

// lgetxattr(path, name) -> Buffer | null (null when the attribute is absent)
static Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  std::string path, name;
  if (!ArgString(info, 0, &path) || !ArgString(info, 1, &name)) return info.Env().Undefined();
  for (;;) {
    ssize_t n = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENODATA) return info.Env().Null();
      return ThrowErrno(info.Env(), errno, "lgetxattr", path);
    }
    std::vector<uint8_t> buf(static_cast<size_t>(n));
    ssize_t m = lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (m < 0) {
      if (errno == ERANGE) continue;  // grew between the two calls
      if (errno == ENODATA) return info.Env().Null();
      return ThrowErrno(info.Env(), errno, "lgetxattr", path);
    }
    return Napi::Buffer<uint8_t>::Copy(info.Env(), buf.data(), static_cast<size_t>(m));
  }
}

// llistxattr(path) -> string[]
static Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  std::string path;
  if (!ArgString(info, 0, &path)) return info.Env().Undefined();
  for (;;) {
    ssize_t n = llistxattr(path.c_str(), nullptr, 0);
    if (n < 0) return ThrowErrno(info.Env(), errno, "llistxattr", path);
    std::vector<char> buf(static_cast<size_t>(n) + 1);
    ssize_t m = llistxattr(path.c_str(), buf.data(), buf.size());
    if (m < 0) {
      if (errno == ERANGE) continue;
      return ThrowErrno(info.Env(), errno, "llistxattr", path);
    }
    Napi::Array out = Napi::Array::New(info.Env());
    uint32_t idx = 0;
    for (ssize_t off = 0; off < m;) {
      std::string name(buf.data() + off);
      off += static_cast<ssize_t>(name.size()) + 1;
      if (!name.empty()) out.Set(idx++, Napi::String::New(info.Env(), name));
    }
    return out;
  }
}

void InitFs(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr, "lgetxattr"));
  exports.Set("llistxattr", Napi::Function::New(env, Llistxattr, "llistxattr"));
}

}  // namespace capsa
