{
  "targets": [
    {
      "target_name": "capsa_native",
      "sources": ["addon/addon.cc", "addon/fs.cc", "addon/mount.cc", "addon/lock.cc", "addon/mountat.cc", "addon/ns.cc", "addon/idmap.cc", "addon/spawn.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
