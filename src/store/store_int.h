/*
 * store_int.h - internals shared by the store backends and their tests.
 */
#ifndef SL_STORE_INT_H
#define SL_STORE_INT_H

/* Fault injection (tests): when set to N > 0, the N-th sqlite3_step from
 * now fails with an I/O error. Not thread-safe; tests only. */
extern int sl_store_sqlite_fail_at;

#endif
