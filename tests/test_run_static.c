/* SPDX-License-Identifier: MIT */
/* test_run_static.c - a statically linked program: uzram-run must refuse it. */
int main(void)
{
    return 0;
}
