"""Paper trading: the dry-run execution simulator's engine, books, views and users (no I/O here
except where a module says so)."""
