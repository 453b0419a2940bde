//! Read routing against a real PostgreSQL primary and hot standby.
