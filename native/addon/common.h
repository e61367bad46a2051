// Shared helpers for the addon: argument checks and errno -> JS Error.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace capsa {

// Throws a JS Error carrying `code` (e.g. "EPERM"), `errno`, `syscall`
// and `path`, shaped like Node's own fs errors so callers can switch on
// err.code.
Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path);

// Returns false (with a TypeError pending) if info[i] is not a string.
bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out);
bool ArgNumber(const Napi::CallbackInfo& info, size_t i, double* out);

void InitFs(Napi::Env env, Napi::Object exports);
void InitMount(Napi::Env env, Napi::Object exports);
void InitMountAt(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitNs(Napi::Env env, Napi::Object exports);
void InitIdmap(Napi::Env env, Napi::Object exports);
void InitSpawn(Napi::Env env, Napi::Object exports);

}  // namespace capsa
