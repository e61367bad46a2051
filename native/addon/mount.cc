// mount(2) and umount2(2): rootfs backends (overlay, bind) and the pinned
// namespace files need them, and Node has neither.
#include <sys/mount.h>

#include "common.h"

namespace capsa {

// mount(source, target, fstype, flags, data)
static Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source, target, fstype, data;
  double flags;
  if (!ArgString(info, 0, &source) || !ArgString(info, 1, &target) || !ArgString(info, 2, &fstype) ||
      !ArgNumber(info, 3, &flags) || !ArgString(info, 4, &data))
    return info.Env().Undefined();
  if (mount(source.empty() ? nullptr : source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(),
            static_cast<unsigned long>(flags), data.empty() ? nullptr : data.c_str()) != 0)
    return ThrowErrno(info.Env(), errno, "mount", target);
  return info.Env().Undefined();
}

// umount2(target, flags)
static Napi::Value Umount2(const Napi::CallbackInfo& info) {
  std::string target;
  double flags;
  if (!ArgString(info, 0, &target) || !ArgNumber(info, 1, &flags)) return info.Env().Undefined();
  if (umount2(target.c_str(), static_cast<int>(flags)) != 0) return ThrowErrno(info.Env(), errno, "umount2", target);
  return info.Env().Undefined();
}

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("MS_RDONLY", Napi::Number::New(env, MS_RDONLY));
  c.Set("MS_NOSUID", Napi::Number::New(env, MS_NOSUID));
  c.Set("MS_NODEV", Napi::Number::New(env, MS_NODEV));
  c.Set("MS_NOEXEC", Napi::Number::New(env, MS_NOEXEC));
  c.Set("MS_REMOUNT", Napi::Number::New(env, MS_REMOUNT));
  c.Set("MS_BIND", Napi::Number::New(env, MS_BIND));
  c.Set("MS_REC", Napi::Number::New(env, MS_REC));
  c.Set("MS_PRIVATE", Napi::Number::New(env, MS_PRIVATE));
  c.Set("MS_SLAVE", Napi::Number::New(env, MS_SLAVE));
  c.Set("MS_SHARED", Napi::Number::New(env, MS_SHARED));
  c.Set("MNT_DETACH", Napi::Number::New(env, MNT_DETACH));
  c.Set("MNT_FORCE", Napi::Number::New(env, MNT_FORCE));
  exports.Set("constants", c);
}

}  // namespace capsa
