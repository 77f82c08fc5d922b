// Components of the native core (such as the simulated accelerator) add their Python
// bindings here, each as a submodule of byoc_sdk._native, without touching bindings.cpp:
//
//   static void BindSimAccel(pybind11::module_& m) { ... }
//   BYOC_REGISTER_BINDINGS(simaccel, BindSimAccel)
//
// which makes byoc_sdk._native.simaccel.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

namespace byoc {

using Binder = void (*)(pybind11::module_&);

// Every registered (submodule name, binder); filled by static initialisers at load time.
inline std::vector<std::pair<const char*, Binder>>& Binders() {
  static std::vector<std::pair<const char*, Binder>> binders;
  return binders;
}

inline int RegisterBinder(const char* name, Binder binder) {
  Binders().emplace_back(name, binder);
  return 0;
}

}  // namespace byoc

#define BYOC_REGISTER_BINDINGS(name, binder) \
  static const int byoc_registered_##name = ::byoc::RegisterBinder(#name, binder);
