/* test.h — the tiny assertion header of ringlb's C unit tests.
 *
 * Each tests/unit/test_X.c defines test functions with TEST(name), lists them in main() with
 * RUN(name) and ends with `return TEST_SUMMARY();`, which prints "N passed, N failed" (the
 * closing line CI reads) and returns non-zero when anything failed. A failed CHECK reports
 * FILE:LINE and the expression and continues with the next check of the same test.
 */
#ifndef RINGLB_TEST_H
#define RINGLB_TEST_H

#include <stdio.h>
#include <string.h>

static int test_checks_failed_;
static int test_passed_, test_failed_;

#define TEST(name) static void name(void)

#define CHECK(expr)                                                                   \
    do {                                                                              \
        if (!(expr)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);  \
            test_checks_failed_++;                                                    \
        }                                                                             \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                            \
    do {                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                           \
        if (a_ != b_) {                                                               \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s = %lld, %s = %lld\n",     \
                    __FILE__, __LINE__, #a, a_, #b, b_);                              \
            test_checks_failed_++;                                                    \
        }                                                                             \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                            \
    do {                                                                              \
        const char *a_ = (a), *b_ = (b);                                              \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                      \
            fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: %s = \"%s\", %s = \"%s\"\n", \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)", #b, b_ ? b_ : "(null)"); \
            test_checks_failed_++;                                                    \
        }                                                                             \
    } while (0)

#define RUN(name)                                                                     \
    do {                                                                              \
        int before_ = test_checks_failed_;                                            \
        name();                                                                       \
        if (test_checks_failed_ == before_) {                                         \
            test_passed_++;                                                           \
            printf("ok   %s\n", #name);                                               \
        } else {                                                                      \
            test_failed_++;                                                           \
            printf("FAIL %s\n", #name);                                               \
        }                                                                             \
    } while (0)

#define TEST_SUMMARY()                                                                \
    (printf("%d passed, %d failed\n", test_passed_, test_failed_), test_failed_ != 0)

#endif
