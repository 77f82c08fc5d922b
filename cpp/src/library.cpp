#include "library.h"

#include <dlfcn.h>

#include "byoc/abi.h"

namespace byoc {

std::shared_ptr<Library> Library::Open(const std::string& path) {
  // RTLD_LOCAL: two modules may define the same helper symbols without clashing.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    throw LoadError("cannot load module " + path + ": " + (reason ? reason : "unknown error"));
  }
  std::shared_ptr<Library> library(new Library(handle, path));
  auto version = reinterpret_cast<byoc_abi_version_fn>(library->Find("byoc_abi_version"));
  if (version == nullptr) {
    throw LoadError("module " + path +
                    " is not a byoc module: it does not export byoc_abi_version()");
  }
  library->abi_version_ = version();
  if (library->abi_version_ != BYOC_ABI_VERSION) {
    throw LoadError("module " + path + " was built for byoc ABI version " +
                    std::to_string(library->abi_version_) + ", this runtime speaks version " +
                    std::to_string(BYOC_ABI_VERSION) + "; rebuild the package");
  }
  return library;
}

Library::~Library() {
  if (handle_ != nullptr) dlclose(handle_);
}

void* Library::Find(const std::string& name) const {
  dlerror();  // clear any stale error
  return dlsym(handle_, name.c_str());
}

void* Library::Require(const std::string& name) const {
  void* symbol = Find(name);
  if (symbol == nullptr) {
    throw LoadError("module " + path_ + " does not export '" + name + "'");
  }
  return symbol;
}

}  // namespace byoc
