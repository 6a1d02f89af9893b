/* SPDX-License-Identifier: MIT */
/* main() shared by every suite: runs the suite defined by the test file, exits non-zero on failure.
 */
#include <check.h>
#include <stdlib.h>

#include "support.h"

int main(void)
{
    SRunner *sr = srunner_create(rill_test_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
