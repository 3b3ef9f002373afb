// The one doctest main shared by every test binary (built once, linked everywhere). CTest runs
// each test case as `binary --test-case=<name>` (doctest_discover_tests); a filter that matches
// no test case would pass having run nothing (CTest splits a name at ';', for one), so here it
// fails instead.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

namespace {

// Test cases started in this run. doctest calls its reporters on the main thread only.
unsigned started = 0;

struct count_test_cases : doctest::IReporter {
  explicit count_test_cases(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++started; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("xenbus-count-test-cases", 1, count_test_cases);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit() || rc != 0) return rc;
  bool filtered = false;
  for (int i = 1; i < argc; ++i)
    filtered = filtered || std::strncmp(argv[i], "--test-case=", 12) == 0 || std::strncmp(argv[i], "-tc=", 4) == 0;
  if (filtered && started == 0) {
    std::fprintf(stderr, "%s: the test-case filter matched no test case (CTest splits a test name at ';')\n",
                 argc > 0 ? argv[0] : "test");
    return 1;
  }
  return rc;
}
