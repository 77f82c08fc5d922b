#include "library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "byoc/abi.h"

namespace byoc {

namespace {

// A private copy of the file at `path`, for dlopen. dlopen returns the same instance for
// the same file, so two models whose regions compiled to the same cached library would
// share the module's static state (the constants _init stored): each Library loads its
// own copy instead, which is unlinked once open.
std::string PrivateCopy(const std::string& path) {
  std::ifstream source(path, std::ios::binary);
  if (!source) throw LoadError("cannot load module " + path + ": cannot read the file");
  std::vector<char> bytes((std::istreambuf_iterator<char>(source)),
                          std::istreambuf_iterator<char>());
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/byoc-module-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  if (fd < 0) {
    throw LoadError("cannot load module " + path + ": no private copy (" +
                    std::strerror(errno) + ")");
  }
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
    if (n <= 0) {
      close(fd);
      unlink(name.data());
      throw LoadError("cannot load module " + path + ": writing its private copy failed");
    }
    written += static_cast<size_t>(n);
  }
  close(fd);
  return std::string(name.data());
}

}  // namespace

std::shared_ptr<Library> Library::Open(const std::string& path) {
  const std::string copy = PrivateCopy(path);
  // RTLD_LOCAL: two modules may define the same helper symbols without clashing.
  // RTLD_NODELETE: a module's code stays mapped after dlclose; an OpenMP runtime it
  // brought may still have worker threads parked in that code, which would crash.
  void* handle = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  unlink(copy.c_str());  // the mapping stays valid; nothing is left behind on disk
  if (handle == nullptr) {
    const char* reason = dlerror();
    std::string text = reason ? reason : "unknown error";
    // dlerror names the private copy; name the file the caller gave instead.
    for (size_t at = text.find(copy); at != std::string::npos; at = text.find(copy)) {
      text.replace(at, copy.size(), path);
    }
    throw LoadError("cannot load module " + path + ": " + text);
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
