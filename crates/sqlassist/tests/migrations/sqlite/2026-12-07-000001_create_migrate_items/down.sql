DROP TABLE migrate_items_sqlite;
