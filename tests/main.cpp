// The doctest runner: the only translation unit with DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN.
// Every unit-<concern>.cpp and every example is linked with it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
