// Loading compiled byoc modules: dlopen, symbol lookup, ABI version check.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

namespace byoc {

// A module that cannot be loaded or lacks a symbol it must export.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An open shared library: a private instance, with static state of its own even when
// another Library opened the same file. Shared by every function bound to it, and
// closed when the last of them goes away.
class Library {
 public:
  // Opens `path` and checks that it exports byoc_abi_version() == BYOC_ABI_VERSION.
  static std::shared_ptr<Library> Open(const std::string& path);
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  // The address of `name`, or nullptr when the library does not export it.
  void* Find(const std::string& name) const;
  // The address of `name`; throws LoadError naming the library when it is missing.
  void* Require(const std::string& name) const;

  const std::string& path() const { return path_; }
  int abi_version() const { return abi_version_; }

 private:
  Library(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}
  void* handle_;
  std::string path_;
  int abi_version_ = 0;
};

}  // namespace byoc
