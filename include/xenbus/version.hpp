// [freestanding] Library version and the versioned inline namespace every header opens.
#pragma once

#define XENBUS_VERSION_MAJOR 0
#define XENBUS_VERSION_MINOR 2
#define XENBUS_VERSION_PATCH 0
/// Single integer version: major * 10000 + minor * 100 + patch.
#define XENBUS_VERSION 200

// The ABI of every type lives in an inline namespace so that two incompatible
// versions linked into one program do not silently violate the ODR.
#define XENBUS_BEGIN_NAMESPACE \
  namespace xenbus {           \
  inline namespace v0 {
#define XENBUS_END_NAMESPACE \
  }                          \
  }
