// idmapBind(source, target, usernsFile): an idmapped bind mount of `source`
// on `target` through the user namespace pinned at `usernsFile` (a pod's):
// open_tree(OPEN_TREE_CLONE), mount_setattr(MOUNT_ATTR_IDMAP), move_mount.
// Kernel >= 5.12 and a filesystem that allows idmapped mounts (ext4, xfs,
// btrfs, tmpfs >= 6.3, ...); otherwise the error says which call failed
// (EINVAL from mount_setattr: the filesystem cannot be idmapped). No new
// process: the user namespace comes as a file descriptor.
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

namespace capsa {

namespace {

Napi::Value IdmapBind(const Napi::CallbackInfo& info) {
  std::string source, target, userns;
  if (!ArgString(info, 0, &source) || !ArgString(info, 1, &target) || !ArgString(info, 2, &userns))
    return info.Env().Undefined();
  int ns = open(userns.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return ThrowErrno(info.Env(), errno, "open user namespace", userns);
  int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) {
    int e = errno;
    close(ns);
    return ThrowErrno(info.Env(), e, "open_tree", source);
  }
  struct mount_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(ns);
  int rc = static_cast<int>(syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)));
  int e = errno;
  close(ns);
  if (rc != 0) {
    close(tree);
    return ThrowErrno(info.Env(), e, "mount_setattr(MOUNT_ATTR_IDMAP)", source);
  }
  rc = static_cast<int>(syscall(SYS_move_mount, tree, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH));
  e = errno;
  close(tree);
  if (rc != 0) return ThrowErrno(info.Env(), e, "move_mount", target);
  return info.Env().Undefined();
}

}  // namespace

void InitIdmap(Napi::Env env, Napi::Object exports) {
  exports.Set("idmapBind", Napi::Function::New(env, IdmapBind, "idmapBind"));
}

}  // namespace capsa
